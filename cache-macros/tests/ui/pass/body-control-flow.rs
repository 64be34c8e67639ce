//! The body's `return` and `?` behave as in the plain function.
#![deny(warnings)]

use cache_runtime::{cached, invalidates};

#[derive(Debug)]
struct AppError;

impl From<std::num::ParseIntError> for AppError {
    fn from(_: std::num::ParseIntError) -> Self {
        AppError
    }
}

#[cached(key = "parsed:<text>")]
async fn parse(text: String) -> Result<u64, AppError> {
    let n: u32 = text.parse()?;
    if n == 0 {
        return Err(AppError);
    }
    Ok(n.into())
}

#[cached(key = "first:<text>")]
async fn first(text: String) -> Option<char> {
    let c = text.chars().next()?;
    Some(c)
}

#[invalidates("parsed:<text>")]
async fn store(text: String) -> Result<u64, AppError> {
    let n: u32 = text.parse()?;
    if n == 0 {
        return Err(AppError);
    }
    Ok(n.into())
}

type AppResult<T> = Result<T, AppError>;

#[cached(key = "alias:<text>", result = true)]
async fn alias(text: String) -> AppResult<Option<u64>> {
    Ok(Some(text.parse::<u64>()?))
}

#[invalidates("alias:<text>", result)]
async fn alias_store(text: String) -> AppResult<u64> {
    Ok(text.parse::<u64>()?)
}

fn main() {
    let _ = (parse(String::new()), first(String::new()), store(String::new()));
    let _ = (alias(String::new()), alias_store(String::new()));
}
