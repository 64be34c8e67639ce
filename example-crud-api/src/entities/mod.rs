//! sea-orm entities. `Serialize`/`Deserialize` on the models make them both the JSON the API
//! returns and the values `#[cached]` stores.

pub mod task;
pub mod user;
