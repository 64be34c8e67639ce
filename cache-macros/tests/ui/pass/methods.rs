//! Methods: `&self`, `&mut self`, `self: Arc<Self>`; placeholders reading `self`; the cache
//! taken from `self`.
#![deny(warnings)]

use std::sync::Arc;

use cache_runtime::{Cache, cached, invalidates};

struct Service {
    tenant: String,
    cache: Cache,
    calls: u32,
}

impl Service {
    #[cached(key = "tenants:<self.tenant>:users:<id>", cache = self.cache)]
    async fn get_user(&self, id: i32) -> Option<String> {
        Some(format!("{}:{id}", self.tenant))
    }

    #[cached(key = "users:<id>:mut")]
    async fn get_user_counting(&mut self, id: i32) -> Option<String> {
        self.calls += 1;
        Some(id.to_string())
    }

    #[cached(key = "users:<id>:arc")]
    async fn get_user_arc(self: Arc<Self>, id: i32) -> Option<String> {
        Some(format!("{}:{id}", self.tenant))
    }

    #[invalidates("tenants:<self.tenant>:*", cache = self.cache)]
    async fn update_user(&self, id: i32) -> Result<(), String> {
        let _ = id;
        Ok(())
    }

    #[invalidates("users:<id>:*")]
    async fn consume(self, id: i32) -> Result<Self, String> {
        Ok(self)
    }
}

fn main() {
    let _ = Service::get_user;
    let _ = Service::get_user_counting;
    let _ = Service::get_user_arc;
    let _ = Service::update_user;
    let _ = Service::consume;
}
