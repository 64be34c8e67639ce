//! [`JsonText`]: a value serialized to JSON once, when it is loaded, and served as is.
//!
//! The service layer's cached reads return `JsonText<T>` instead of `T`. The cache stores a
//! value as JSON anyway, so the entry under a key is exactly the one `T` would have made, but a
//! hit no longer decodes a list of rows into structs (and their timestamps into `DateTime`s)
//! only for the handler to encode them back into the same JSON: the cached text becomes the
//! response body as it is.

use std::fmt;
use std::marker::PhantomData;

use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::value::RawValue;

/// The JSON text of a `T`. It serializes as that JSON (not as a string) and deserializes from
/// any JSON value, kept verbatim; as a response it is a 200 with `content-type:
/// application/json` and the text as body.
///
/// `T` only documents what the text holds: deserializing does not check it (that would cost
/// the decode a hit saves), and [`decode`] turns the text back into a `T`. What keeps a wrong
/// text out of a cached read is the cache's envelope: `#[cached]` tags it with the value's type
/// (here `JsonText<T>`), so an entry written under the same key by another function, for
/// another type, is a miss. An entry of this very type written by another version of the
/// application (a rolling deploy that changed the JSON of a row) is served as it is: when a
/// cached type's JSON changes, change its keys too (`users:v2:<id>`), or clear the cache.
///
/// ```
/// use example_crud_api::JsonText;
///
/// let text = JsonText::encode(&vec![1, 2, 3])?;
/// assert_eq!(text.as_str(), "[1,2,3]");
/// assert_eq!(text.decode()?, vec![1, 2, 3]);
/// // Inside another value it is the JSON itself, not a string.
/// assert_eq!(serde_json::to_string(&[&text])?, "[[1,2,3]]");
/// # Ok::<(), serde_json::Error>(())
/// ```
///
/// [`decode`]: JsonText::decode
pub struct JsonText<T> {
    raw: Box<RawValue>,
    of: PhantomData<fn() -> T>,
}

impl<T: Serialize> JsonText<T> {
    /// Serializes `value`.
    ///
    /// # Errors
    /// When `T`'s `Serialize` fails (a map with non-string keys, a custom error).
    pub fn encode(value: &T) -> Result<Self, serde_json::Error> {
        serde_json::value::to_raw_value(value).map(Self::from_raw)
    }
}

impl<T: DeserializeOwned> JsonText<T> {
    /// Parses the text back into a `T`.
    ///
    /// # Errors
    /// When the text does not hold a `T`.
    pub fn decode(&self) -> Result<T, serde_json::Error> {
        serde_json::from_str(self.raw.get())
    }
}

impl<T> JsonText<T> {
    fn from_raw(raw: Box<RawValue>) -> Self {
        Self {
            raw,
            of: PhantomData,
        }
    }

    /// The JSON text.
    pub fn as_str(&self) -> &str {
        self.raw.get()
    }
}

impl<T> Clone for JsonText<T> {
    fn clone(&self) -> Self {
        Self::from_raw(self.raw.clone())
    }
}

impl<T> fmt::Debug for JsonText<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("JsonText").field(&self.as_str()).finish()
    }
}

impl<T> Serialize for JsonText<T> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.raw.serialize(serializer)
    }
}

impl<'de, T> Deserialize<'de> for JsonText<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Box::<RawValue>::deserialize(deserializer).map(Self::from_raw)
    }
}

impl<T> IntoResponse for JsonText<T> {
    fn into_response(self) -> Response {
        let text: Box<str> = self.raw.into();
        // The content type `axum::Json` answers with.
        let json = HeaderValue::from_static("application/json");
        ([(header::CONTENT_TYPE, json)], String::from(text)).into_response()
    }
}

#[cfg(test)]
mod tests {
    use axum::body::to_bytes;

    use super::*;

    #[test]
    fn round_trips_inside_other_values() {
        let text = JsonText::encode(&vec!["a".to_owned(), "b\"".to_owned()]).unwrap();
        let outer = serde_json::to_string(&(1, &text)).unwrap();
        assert_eq!(outer, r#"[1,["a","b\""]]"#);
        let (_, back): (u8, JsonText<Vec<String>>) = serde_json::from_str(&outer).unwrap();
        assert_eq!(back.as_str(), text.as_str());
        assert_eq!(
            back.decode().unwrap(),
            vec!["a".to_owned(), "b\"".to_owned()]
        );
    }

    #[tokio::test]
    async fn responds_with_the_text_as_json() {
        let response = JsonText::encode(&serde_json::json!({"k": [1, null]}))
            .unwrap()
            .into_response();
        assert_eq!(response.status(), 200);
        assert_eq!(
            response.headers()[header::CONTENT_TYPE],
            axum::Json(()).into_response().headers()[header::CONTENT_TYPE]
        );
        let body = to_bytes(response.into_body(), 1 << 20).await.unwrap();
        assert_eq!(&body[..], br#"{"k":[1,null]}"#);
    }
}
