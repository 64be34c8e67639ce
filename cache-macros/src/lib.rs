//! Implementation detail of `cache-runtime`: use `cache_runtime::{cached, invalidates}`.
use proc_macro::TokenStream;

/// Placeholder until the macro issue lands.
#[proc_macro_attribute]
pub fn cached(_args: TokenStream, item: TokenStream) -> TokenStream {
    item
}

/// Placeholder until the macro issue lands.
#[proc_macro_attribute]
pub fn invalidates(_args: TokenStream, item: TokenStream) -> TokenStream {
    item
}
