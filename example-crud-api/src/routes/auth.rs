//! `/auth/…` and `/cache/session…`: logins, tokens, logouts and the caller's session.
//! Credentials come from the database, never from a cache; sessions from the session store.

use axum::extract::State;
use axum::http::header::SET_COOKIE;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use cache_runtime::axum::auth::{CurrentSession, Principal, Via, presented_session_ids};
use cache_runtime::session::{NewSession, Session, SessionError};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use utoipa::ToSchema;

use crate::AppState;
use crate::entities::user;
use crate::error::{Error, ErrorBody};
use crate::extract::Json;
use crate::service::accounts;

/// Largest body `POST /cache/session/update` accepts.
const MAX_SESSION_UPDATE: usize = 4 * 1024;

/// Body of `POST /auth/login` and `POST /auth/token`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct Credentials {
    /// The account's email.
    email: String,
    /// Its password.
    #[schema(format = Password)]
    password: String,
}

/// The answer of `POST /auth/login`.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct LoggedIn {
    /// The new session's id (also in the `session_id` cookie).
    session_id: String,
    /// Who logged in.
    user: user::Model,
    /// When the session ends unless used before.
    expires_at: DateTime<Utc>,
}

/// The answer of `POST /auth/token`.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct Token {
    /// An HS256 JWT with `sub`, `name`, `role`, `iat`, `exp`, `jti`.
    access_token: String,
    /// Always `Bearer`.
    token_type: &'static str,
    /// Seconds until it expires.
    expires_in: u64,
}

/// One of the caller's sessions in `GET /auth/sessions`.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct SessionItem {
    /// 8 hex characters of the id's hash: tells sessions apart, is not the id.
    id_hint: String,
    created_at: DateTime<Utc>,
    last_accessed: DateTime<Utc>,
    expires_at: DateTime<Utc>,
    /// Whether this is the session of the request.
    current: bool,
}

/// The answer of `GET /cache/session/info`.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct SessionInfo {
    /// Whether the caller came with a session (false for a bearer token).
    session_active: bool,
    /// `Session` or `JWT`.
    authentication_method: &'static str,
    /// The session's id, for a session.
    #[serde(skip_serializing_if = "Option::is_none")]
    session_id: Option<String>,
    user_id: String,
    username: String,
    role: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    created_at: Option<DateTime<Utc>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    last_accessed: Option<DateTime<Utc>>,
    /// The session's custom data (empty for a token).
    session_data: Map<String, Value>,
}

fn utc(t: std::time::SystemTime) -> DateTime<Utc> {
    DateTime::<Utc>::from(t)
}

pub(crate) fn session_error(e: SessionError) -> Error {
    match e {
        SessionError::InvalidData(message) => Error::Invalid(message),
        _ => Error::Auth(cache_runtime::axum::auth::AuthRejection::Unavailable),
    }
}

async fn check(state: &AppState, credentials: Credentials) -> Result<user::Model, Error> {
    accounts::authenticate(&state.db, &credentials.email, credentials.password)
        .await?
        .ok_or(Error::Rejected {
            status: StatusCode::UNAUTHORIZED,
            // One message for an unknown email and a wrong password.
            message: "invalid email or password".to_owned(),
        })
}

/// Logs in: a new session (never an id the client sent; any it sent end) and its cookie.
#[utoipa::path(
    post,
    path = "/auth/login",
    operation_id = "login",
    tag = "auth",
    request_body = Credentials,
    responses(
        (status = 200, description = "Logged in; `Set-Cookie: session_id=…; HttpOnly; SameSite=Lax; Path=/`", body = LoggedIn,
            headers(("Set-Cookie" = String, description = "The session cookie"))),
        (status = 401, description = "Unknown email or wrong password", body = ErrorBody),
        (status = 422, description = "Malformed body", body = ErrorBody),
        (status = 503, description = "The session store is unavailable", body = ErrorBody),
    )
)]
pub(crate) async fn login(
    State(state): State<AppState>,
    headers: HeaderMap,
    Json(credentials): Json<Credentials>,
) -> Result<Response, Error> {
    let user = check(&state, credentials).await?;
    let sessions = state.auth.sessions();
    for old in presented_session_ids(&headers) {
        sessions.delete(&old).await.map_err(session_error)?;
    }
    let new = NewSession::new(user.id.to_string(), &user.name, &user.role);
    let (id, session) = sessions.create(new).await.map_err(session_error)?;
    tracing::info!(user_id = user.id, session = %id.hint(), "logged in");
    let cookie = state.auth.login_cookie(&id);
    let body = LoggedIn {
        session_id: id.expose().to_owned(),
        user,
        expires_at: utc(session.expires_at),
    };
    Ok(([(SET_COOKIE, cookie)], Json(body)).into_response())
}

/// Issues a bearer token (a JWT; not revocable before it expires: keep `JWT_TTL` short).
#[utoipa::path(
    post,
    path = "/auth/token",
    operation_id = "token",
    tag = "auth",
    request_body = Credentials,
    responses(
        (status = 200, description = "A token", body = Token),
        (status = 401, description = "Unknown email or wrong password", body = ErrorBody),
        (status = 422, description = "Malformed body", body = ErrorBody),
    )
)]
pub(crate) async fn token(
    State(state): State<AppState>,
    Json(credentials): Json<Credentials>,
) -> Result<Json<Token>, Error> {
    let user = check(&state, credentials).await?;
    let jwt = state.auth.jwt().ok_or_else(|| Error::Rejected {
        status: StatusCode::NOT_FOUND,
        message: "tokens are disabled".to_owned(),
    })?;
    let (access_token, _) = jwt
        .issue(&user.id.to_string(), &user.name, &user.role)
        .map_err(session_error)?;
    Ok(Json(Token {
        access_token,
        token_type: "Bearer",
        expires_in: jwt.ttl().as_secs(),
    }))
}

fn logged_out(state: &AppState) -> Response {
    (
        StatusCode::NO_CONTENT,
        [(SET_COOKIE, state.auth.logout_cookie())],
    )
        .into_response()
}

/// Ends the caller's session.
#[utoipa::path(
    post,
    path = "/auth/logout",
    operation_id = "logout",
    tag = "auth",
    responses(
        (status = 204, description = "The session is gone; the cookie is cleared"),
        (status = 400, description = "A bearer token, not a session", body = ErrorBody),
        (status = 401, description = "No valid session", body = ErrorBody),
    ),
    security(("session_cookie" = []), ("session_authorization" = []), ("session_header" = []))
)]
pub(crate) async fn logout(
    State(state): State<AppState>,
    current: CurrentSession,
) -> Result<Response, Error> {
    state
        .auth
        .sessions()
        .delete(&current.id)
        .await
        .map_err(session_error)?;
    Ok(logged_out(&state))
}

/// Ends every session of the caller's user, on every instance.
#[utoipa::path(
    post,
    path = "/auth/logout-all",
    operation_id = "logout_all",
    tag = "auth",
    responses(
        (status = 204, description = "Every session of the user is gone"),
        (status = 401, description = "Not authenticated", body = ErrorBody),
    ),
    security(("session_cookie" = []), ("session_authorization" = []), ("session_header" = []), ("bearer" = []))
)]
pub(crate) async fn logout_all(
    State(state): State<AppState>,
    principal: Principal,
) -> Result<Response, Error> {
    let ended = state
        .auth
        .sessions()
        .delete_user(&principal.user_id)
        .await
        .map_err(session_error)?;
    tracing::info!(user_id = %principal.user_id, ended, "logged out everywhere");
    Ok(logged_out(&state))
}

/// The caller's user's sessions (never their ids).
#[utoipa::path(
    get,
    path = "/auth/sessions",
    operation_id = "list_sessions",
    tag = "auth",
    responses(
        (status = 200, description = "The sessions, oldest first", body = [SessionItem]),
        (status = 401, description = "Not authenticated", body = ErrorBody),
    ),
    security(("session_cookie" = []), ("session_authorization" = []), ("session_header" = []), ("bearer" = []))
)]
pub(crate) async fn sessions(
    State(state): State<AppState>,
    principal: Principal,
) -> Result<Json<Vec<SessionItem>>, Error> {
    let current = principal.session_id().map(|id| id.hint());
    let list = state
        .auth
        .sessions()
        .list_user(&principal.user_id)
        .await
        .map_err(session_error)?;
    Ok(Json(
        list.into_iter()
            .map(|s| SessionItem {
                current: current.as_deref() == Some(s.id_hint.as_str()),
                id_hint: s.id_hint,
                created_at: utc(s.session.created_at),
                last_accessed: utc(s.session.last_accessed),
                expires_at: utc(s.session.expires_at),
            })
            .collect(),
    ))
}

fn info(principal: &Principal, session: Option<&Session>) -> SessionInfo {
    let session = session.or(match &principal.via {
        Via::Session { session, .. } => Some(session),
        _ => None,
    });
    SessionInfo {
        session_active: session.is_some(),
        authentication_method: if session.is_some() { "Session" } else { "JWT" },
        session_id: principal.session_id().map(|id| id.expose().to_owned()),
        user_id: principal.user_id.clone(),
        username: principal.username.clone(),
        role: principal.role.clone(),
        created_at: session.map(|s| utc(s.created_at)),
        last_accessed: session.map(|s| utc(s.last_accessed)),
        session_data: session.map(|s| s.data.clone()).unwrap_or_default(),
    }
}

/// Who the caller is, and their session.
#[utoipa::path(
    get,
    path = "/cache/session/info",
    operation_id = "session_info",
    tag = "auth",
    responses(
        (status = 200, description = "The caller", body = SessionInfo),
        (status = 401, description = "Not authenticated", body = ErrorBody),
    ),
    security(("session_cookie" = []), ("session_authorization" = []), ("session_header" = []), ("bearer" = []))
)]
pub(crate) async fn session_info(principal: Principal) -> Json<SessionInfo> {
    Json(info(&principal, None))
}

/// Merges a JSON object (at most 4 KiB) into the session's data; `null` removes a field.
#[utoipa::path(
    post,
    path = "/cache/session/update",
    operation_id = "update_session",
    tag = "auth",
    request_body = serde_json::Value,
    responses(
        (status = 200, description = "The caller, with the merged data", body = SessionInfo),
        (status = 400, description = "A bearer token, not a session", body = ErrorBody),
        (status = 401, description = "No valid session", body = ErrorBody),
        (status = 422, description = "Not a JSON object, or over 4 KiB", body = ErrorBody),
    ),
    security(("session_cookie" = []), ("session_authorization" = []), ("session_header" = []))
)]
pub(crate) async fn update_session(
    State(state): State<AppState>,
    principal: Principal,
    body: axum::body::Bytes,
) -> Result<Json<SessionInfo>, Error> {
    let Some(id) = principal.session_id() else {
        return Err(Error::Auth(
            cache_runtime::axum::auth::AuthRejection::NotASession,
        ));
    };
    if body.len() > MAX_SESSION_UPDATE {
        return Err(Error::Invalid(format!(
            "body: at most {MAX_SESSION_UPDATE} bytes"
        )));
    }
    let patch: Map<String, Value> = serde_json::from_slice(&body)
        .map_err(|e| Error::Invalid(format!("body: expected a JSON object: {e}")))?;
    let session = state
        .auth
        .sessions()
        .update(id, patch)
        .await
        .map_err(session_error)?
        // Ended between the lookup and now (a concurrent logout): not recreated.
        .ok_or(Error::Auth(
            cache_runtime::axum::auth::AuthRejection::Invalid,
        ))?;
    Ok(Json(info(&principal, Some(&session))))
}

/// Ends the caller's session (as `POST /auth/logout`).
#[utoipa::path(
    delete,
    path = "/cache/session",
    operation_id = "end_session",
    tag = "auth",
    responses(
        (status = 204, description = "The session is gone; the cookie is cleared"),
        (status = 400, description = "A bearer token, not a session", body = ErrorBody),
        (status = 401, description = "No valid session", body = ErrorBody),
    ),
    security(("session_cookie" = []), ("session_authorization" = []), ("session_header" = []))
)]
pub(crate) async fn end_session(
    state: State<AppState>,
    current: CurrentSession,
) -> Result<Response, Error> {
    logout(state, current).await
}
