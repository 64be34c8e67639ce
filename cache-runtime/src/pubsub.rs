//! Typed publish/subscribe on the shared Redis client (work in progress).
