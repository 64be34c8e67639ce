//! `GET /events`: every completed write, on any instance sharing the Redis, as Server-Sent
//! Events.
//!
//! A write's handler publishes one [`Change`] on the channel of its topic (`events:user`,
//! `events:task`, under the cache's key prefix) after the service call returned, that is after
//! the database commit and the cache invalidation. Each `/events` stream subscribes to the
//! topics it asked for through the process's one subscriber connection
//! ([`cache_runtime::pubsub`]). Delivery is at most once: what is published while Redis is
//! unreachable is lost, and the stream says so with `event: gap` once its subscription is
//! back (also when this stream fell behind and messages were dropped for it). With Redis
//! disabled, the stream carries this instance's events.

use std::convert::Infallible;
use std::time::Duration;

use axum::response::sse::{self, KeepAlive, Sse};
use cache_runtime::pubsub::{Event, PubSub, PubSubError, Subscription};
use futures_util::{Stream, StreamExt as _, stream};
use sea_orm::prelude::DateTimeUtc;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::error::Error;

/// A comment line this often keeps idle streams open through proxies.
const KEEP_ALIVE: Duration = Duration::from_secs(15);

/// What changed: the SSE `event:` field.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub enum Kind {
    /// A user was created.
    #[serde(rename = "user.created")]
    UserCreated,
    /// A user was updated.
    #[serde(rename = "user.updated")]
    UserUpdated,
    /// A user was deleted (with their tasks).
    #[serde(rename = "user.deleted")]
    UserDeleted,
    /// A task was created (also by an import).
    #[serde(rename = "task.created")]
    TaskCreated,
    /// A task was updated.
    #[serde(rename = "task.updated")]
    TaskUpdated,
    /// A task was deleted (also by an import that replaced it).
    #[serde(rename = "task.deleted")]
    TaskDeleted,
}

impl Kind {
    /// The name in the stream, `user.created`.
    pub fn name(self) -> &'static str {
        match self {
            Self::UserCreated => "user.created",
            Self::UserUpdated => "user.updated",
            Self::UserDeleted => "user.deleted",
            Self::TaskCreated => "task.created",
            Self::TaskUpdated => "task.updated",
            Self::TaskDeleted => "task.deleted",
        }
    }

    fn topic(self) -> Topic {
        match self {
            Self::UserCreated | Self::UserUpdated | Self::UserDeleted => Topic::User,
            _ => Topic::Task,
        }
    }
}

/// The SSE `data:` of a change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Change {
    /// The user's or the task's id.
    pub id: i32,
    /// The user the change belongs to (the user's own id for user events).
    pub user_id: i32,
    /// When the write completed.
    #[schema(value_type = chrono::DateTime<chrono::Utc>)]
    pub at: DateTimeUtc,
}

/// A change as published: its kind beside its data. A message that does not decode into this
/// (another program's, or a newer version's kind) is counted and skipped by the subscriber.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Published {
    kind: Kind,
    #[serde(flatten)]
    change: Change,
}

/// The topics of `?topics=`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Topic {
    /// `user.*` events.
    User,
    /// `task.*` events.
    Task,
}

impl Topic {
    const ALL: [Self; 2] = [Self::User, Self::Task];

    fn channel(self) -> &'static str {
        match self {
            Self::User => "events:user",
            Self::Task => "events:task",
        }
    }

    /// Parses `user,task` (whitespace around names allowed, duplicates ignored); absent means
    /// every topic.
    ///
    /// # Errors
    /// 422 for an empty list or an unknown topic.
    pub fn parse_list(list: Option<&str>) -> Result<Vec<Self>, Error> {
        let Some(list) = list else {
            return Ok(Self::ALL.to_vec());
        };
        let mut topics = Vec::new();
        for name in list.split(',').map(str::trim) {
            let topic = match name {
                "user" => Self::User,
                "task" => Self::Task,
                other => {
                    return Err(Error::Invalid(format!(
                        "unknown topic {other:?} in `topics` (expected `user` and/or `task`)"
                    )));
                }
            };
            if !topics.contains(&topic) {
                topics.push(topic);
            }
        }
        Ok(topics)
    }
}

/// The app's event feed: publishes changes and opens `/events` streams. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Events {
    pubsub: PubSub,
}

impl Events {
    /// Events on `pubsub` (Redis, or in process).
    pub fn new(pubsub: PubSub) -> Self {
        Self { pubsub }
    }

    /// The pub/sub handle (for its stats).
    pub fn pubsub(&self) -> &PubSub {
        &self.pubsub
    }

    /// Publishes `kind` for `id` of `user_id`, now. A failure (Redis unreachable) loses the
    /// event, as the contract allows, and never fails the write that made it: it is logged
    /// and counted in the pub/sub stats.
    pub async fn publish(&self, kind: Kind, id: i32, user_id: i32) {
        let message = Published {
            kind,
            change: Change {
                id,
                user_id,
                at: crate::service::now(),
            },
        };
        if let Err(e) = self.pubsub.publish(kind.topic().channel(), &message).await {
            tracing::warn!(error = %e, event = kind.name(), id, "event not published");
        }
    }

    /// Publishes `kind` for each of `ids` of `user_id`, concurrently.
    pub async fn publish_all(&self, kind: Kind, ids: &[i32], user_id: i32) {
        futures_util::future::join_all(ids.iter().map(|&id| self.publish(kind, id, user_id))).await;
    }

    /// The SSE stream of `topics`: subscribed before this returns, so every change completed
    /// afterwards is in it.
    ///
    /// # Errors
    /// 503 when Redis is enabled but unreachable (nothing could be delivered).
    pub async fn stream(
        &self,
        topics: &[Topic],
    ) -> Result<Sse<impl Stream<Item = Result<sse::Event, Infallible>> + use<>>, Error> {
        let mut subscriptions = Vec::with_capacity(topics.len());
        for topic in topics {
            let subscription: Subscription<Published> = self
                .pubsub
                .subscribe(topic.channel())
                .await
                .map_err(|e| match e {
                    PubSubError::Unavailable => {
                        Error::Unavailable("events are unavailable: Redis is unreachable".into())
                    }
                    other => Error::Internal(format!("subscribing to events: {other}")),
                })?;
            subscriptions.push(subscription);
        }
        let events = stream::select_all(subscriptions).map(|event| Ok(to_sse(event)));
        Ok(Sse::new(events).keep_alive(KeepAlive::new().interval(KEEP_ALIVE)))
    }
}

fn to_sse(event: Event<Published>) -> sse::Event {
    match event {
        Event::Message { value, .. } => sse::Event::default()
            .event(value.kind.name())
            .json_data(&value.change)
            .unwrap_or_else(|_| sse::Event::default().event("gap").data("{}")),
        // Messages were dropped for this stream: to its reader, as much a gap as an outage.
        Event::Lagged(dropped) => sse::Event::default()
            .event("gap")
            .data(format!("{{\"dropped\":{dropped}}}")),
        // `Event::Gap`, and whatever else says the stream may have missed something.
        _ => sse::Event::default().event("gap").data("{}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topics_parse() {
        assert_eq!(Topic::parse_list(None).unwrap(), Topic::ALL);
        assert_eq!(
            Topic::parse_list(Some("task, user,task")).unwrap(),
            [Topic::Task, Topic::User]
        );
        assert!(Topic::parse_list(Some("")).is_err());
        assert!(Topic::parse_list(Some("users")).is_err());
    }

    #[test]
    fn a_published_change_is_kind_beside_data() {
        let at = "2026-12-01T10:00:00Z".parse().unwrap();
        let message = Published {
            kind: Kind::TaskDeleted,
            change: Change {
                id: 7,
                user_id: 3,
                at,
            },
        };
        let json = serde_json::to_value(&message).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"kind": "task.deleted", "id": 7, "user_id": 3, "at": "2026-12-01T10:00:00Z"})
        );
        assert!(
            serde_json::from_str::<Published>(
                r#"{"kind":"user.renamed","id":1,"user_id":1,"at":"2026-12-01T10:00:00Z"}"#
            )
            .is_err()
        );
    }
}
