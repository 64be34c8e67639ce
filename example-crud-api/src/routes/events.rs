//! `GET /events`.

use axum::extract::State;
use axum::response::IntoResponse;
use serde::Deserialize;
use utoipa::IntoParams;

use crate::AppState;
use crate::error::{Error, ErrorBody};
use crate::events::Topic;
use crate::extract::Query;

/// Query of `GET /events`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct EventsQuery {
    /// Comma-separated topics, `user` and/or `task` (default both).
    #[param(example = "user,task")]
    topics: Option<String>,
}

/// Every completed write on any instance sharing the Redis, as Server-Sent Events:
/// `event: user.created|user.updated|user.deleted|task.created|task.updated|task.deleted` with
/// `data: {"id","user_id","at"}`, published after the database commit and the cache
/// invalidation. Delivery is at most once: `event: gap` says that events may have been lost
/// (the subscription resumed after Redis was unreachable, or this stream fell behind). A
/// comment line every 15 s keeps the stream open. With Redis disabled, this instance's events.
#[utoipa::path(
    get,
    path = "/events",
    operation_id = "events",
    tag = "events",
    params(EventsQuery),
    responses(
        (
            status = 200,
            description = "An endless `text/event-stream`",
            content_type = "text/event-stream",
            body = String,
            example = "event: task.created\ndata: {\"id\":7,\"user_id\":3,\"at\":\"2026-12-01T10:00:00Z\"}\n\n"
        ),
        (status = 422, description = "An unknown topic", body = ErrorBody),
        (status = 503, description = "Redis is enabled but unreachable", body = ErrorBody),
    )
)]
pub(crate) async fn stream(
    State(state): State<AppState>,
    Query(query): Query<EventsQuery>,
) -> Result<impl IntoResponse, Error> {
    let topics = Topic::parse_list(query.topics.as_deref())?;
    state.events.stream(&topics).await
}
