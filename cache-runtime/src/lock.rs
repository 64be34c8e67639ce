//! Distributed locks with fencing tokens (work in progress).
