//! Generic functions: type and const parameters go into the hash.
#![deny(warnings)]

use serde::Serialize;
use serde::de::DeserializeOwned;

use cache_runtime::cached;

#[cached(key = "defaults")]
async fn default_of<T: Default + Serialize + DeserializeOwned>() -> T {
    T::default()
}

#[cached(key = "arrays:<fill>")]
async fn array<const N: usize>(fill: u8) -> Vec<u8> {
    vec![fill; N]
}

#[cached(key = "echo")]
async fn echo<'a, T>(value: &'a T) -> String
where
    T: Serialize + ?Sized,
{
    serde_json::to_string(value).unwrap_or_default()
}

#[cached(key = "shown")]
async fn shown(value: impl Serialize) -> Option<String> {
    serde_json::to_string(&value).ok()
}

fn main() {
    let _ = (default_of::<u8>(), array::<3>(1), echo("x"), shown(1));
}
