//! Functions in trait impls, including traits whose futures must be `Send`.
#![deny(warnings)]

use std::future::Future;

use cache_runtime::{cached, invalidates};

trait Users {
    async fn get(&self, id: i32) -> Option<String>;
    fn get_send(&self, id: i32) -> impl Future<Output = Option<String>> + Send;
    async fn update(&self, id: i32) -> Result<(), String>;
}

struct Repo;

impl Users for Repo {
    #[cached(key = "users:<id>")]
    async fn get(&self, id: i32) -> Option<String> {
        Some(id.to_string())
    }

    #[cached(key = "users:<id>:send")]
    async fn get_send(&self, id: i32) -> Option<String> {
        Some(id.to_string())
    }

    #[invalidates("users:<id>")]
    async fn update(&self, id: i32) -> Result<(), String> {
        let _ = id;
        Ok(())
    }
}

fn main() {
    let _ = (Repo.get(1), Repo.get_send(1), Repo.update(1));
}
