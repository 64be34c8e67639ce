//! Who is calling (features `axum` and `sessions`): the [`Principal`] and [`CurrentSession`]
//! extractors, and the `Set-Cookie` values for login and logout.
//!
//! Credentials, read from every place at once:
//! - `Cookie: session_id=<id>`, `Authorization: Session <id>`, `X-Session-ID: <id>`: a session;
//! - `Authorization: Bearer <jwt>`: a token ([`Jwt`]).
//!
//! Precedence: there is none to exploit. One credential, given any number of times with the
//! same value, is used; two different ones (a cookie and another session id in a header, a
//! session and a token) answer 400, so a stale cookie can never shadow, or be shadowed by, what
//! the client meant to send. No credential: 401 (or `None` for `Option<Principal>`); unknown,
//! expired, malformed or ended: 401; a role check that fails: 403; a session store that cannot
//! answer: 503 with `Retry-After`, never anonymous and never another user. Token-authenticated
//! requests do not touch the session store, so they keep working while Redis is down.
//!
//! ```
//! use axum::{Router, routing::get};
//! use cache_runtime::axum::auth::{Auth, Principal};
//! use cache_runtime::session::{SessionConfig, SessionStore};
//!
//! async fn me(principal: Principal) -> String {
//!     format!("hello {}", principal.username)
//! }
//!
//! let auth = Auth::new(SessionStore::memory(SessionConfig::default()));
//! let app: Router = Router::new().route("/me", get(me)).with_state(auth);
//! ```
//!
//! An application with its own state implements `FromRef<AppState> for Auth`.

use std::sync::Arc;

use axum_core::extract::{FromRef, FromRequestParts, OptionalFromRequestParts};
use axum_core::response::{IntoResponse, Response};
use http::header::{AUTHORIZATION, COOKIE, HeaderValue, RETRY_AFTER};
use http::request::Parts;
use http::{HeaderMap, StatusCode};

use crate::session::{Claims, Jwt, Session, SessionError, SessionId, SessionStore};

/// The cookie that carries a session id.
pub const COOKIE_NAME: &str = "session_id";
/// The header that may carry a session id instead.
pub const SESSION_HEADER: &str = "x-session-id";

/// What the extractors need: the session store, the token keys (none: tokens are rejected),
/// and the cookie settings. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Auth {
    inner: Arc<AuthInner>,
}

#[derive(Debug)]
struct AuthInner {
    sessions: SessionStore,
    jwt: Option<Jwt>,
    secure_cookies: bool,
}

impl Auth {
    /// Sessions only, cookies without `Secure`.
    pub fn new(sessions: SessionStore) -> Self {
        Self {
            inner: Arc::new(AuthInner {
                sessions,
                jwt: None,
                secure_cookies: false,
            }),
        }
    }

    /// Also accepts (and lets the app issue) bearer tokens.
    #[must_use]
    pub fn with_jwt(self, jwt: Jwt) -> Self {
        self.map(|inner| inner.jwt = Some(jwt))
    }

    /// Marks the cookies `Secure` (`COOKIE_SECURE=true`: the app is served over HTTPS).
    #[must_use]
    pub fn secure_cookies(self, secure: bool) -> Self {
        self.map(|inner| inner.secure_cookies = secure)
    }

    fn map(self, f: impl FnOnce(&mut AuthInner)) -> Self {
        let mut inner = Arc::try_unwrap(self.inner).unwrap_or_else(|shared| AuthInner {
            sessions: shared.sessions.clone(),
            jwt: shared.jwt.clone(),
            secure_cookies: shared.secure_cookies,
        });
        f(&mut inner);
        Self {
            inner: Arc::new(inner),
        }
    }

    /// The session store.
    pub fn sessions(&self) -> &SessionStore {
        &self.inner.sessions
    }

    /// The token keys, if tokens are enabled.
    pub fn jwt(&self) -> Option<&Jwt> {
        self.inner.jwt.as_ref()
    }

    /// `Set-Cookie` for a login: `HttpOnly`, `SameSite=Lax`, `Path=/`, `Max-Age` of the
    /// absolute timeout, and `Secure` when configured.
    ///
    /// ```
    /// # use cache_runtime::axum::auth::Auth;
    /// # use cache_runtime::session::{SessionConfig, SessionId, SessionStore};
    /// let auth = Auth::new(SessionStore::memory(SessionConfig::default())).secure_cookies(true);
    /// let id = SessionId::generate()?;
    /// let cookie = auth.login_cookie(&id);
    /// assert!(cookie.to_str()?.ends_with("; HttpOnly; SameSite=Lax; Path=/; Max-Age=604800; Secure"));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn login_cookie(&self, id: &SessionId) -> HeaderValue {
        let max_age = self.inner.sessions.config().absolute_ttl.as_secs();
        self.cookie(id.expose(), max_age)
    }

    /// `Set-Cookie` for a logout: the cookie emptied, `Max-Age=0`.
    pub fn logout_cookie(&self) -> HeaderValue {
        self.cookie("", 0)
    }

    fn cookie(&self, value: &str, max_age: u64) -> HeaderValue {
        let secure = if self.inner.secure_cookies {
            "; Secure"
        } else {
            ""
        };
        let text = format!(
            "{COOKIE_NAME}={value}; HttpOnly; SameSite=Lax; Path=/; Max-Age={max_age}{secure}"
        );
        // Hex ids and fixed attributes: always a valid header value.
        HeaderValue::from_str(&text).unwrap_or_else(|_| HeaderValue::from_static(""))
    }
}

/// How a request authenticated.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum Via {
    /// A session: its id and its record, as the lookup found it.
    Session {
        /// The id (never log it; [`SessionId::hint`] is for logs).
        id: SessionId,
        /// The record.
        session: Box<Session>,
    },
    /// A bearer token.
    Jwt(Claims),
}

/// The authenticated caller: a session or a token, already checked.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Principal {
    /// The user id.
    pub user_id: String,
    /// The user's name.
    pub username: String,
    /// The user's role.
    pub role: String,
    /// The credential it came from.
    pub via: Via,
}

impl Principal {
    /// Whether the role is `admin`.
    pub fn is_admin(&self) -> bool {
        self.role == "admin"
    }

    /// `Ok` for an admin, 403 otherwise.
    ///
    /// # Errors
    /// [`AuthRejection::Forbidden`].
    pub fn require_admin(&self) -> Result<(), AuthRejection> {
        if self.is_admin() {
            Ok(())
        } else {
            Err(AuthRejection::Forbidden)
        }
    }

    /// The session id, when the caller came with a session.
    pub fn session_id(&self) -> Option<&SessionId> {
        match &self.via {
            Via::Session { id, .. } => Some(id),
            Via::Jwt(_) => None,
        }
    }
}

/// The caller's session: like [`Principal`], but a token answers 400 (the route needs a
/// session, e.g. to store data in it).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct CurrentSession {
    /// Its id.
    pub id: SessionId,
    /// Its record.
    pub session: Session,
}

/// Why a request was not authenticated; answers the status below with `{"error": message}`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AuthRejection {
    /// 401: no credential.
    #[error("authentication required")]
    Missing,
    /// 401: unknown, expired, malformed or ended.
    #[error("invalid or expired credentials")]
    Invalid,
    /// 400: two different credentials in one request.
    #[error("conflicting credentials: send one session id or one bearer token")]
    Conflict,
    /// 400: the route needs a session and the caller sent a token.
    #[error("this route needs a session, not a bearer token")]
    NotASession,
    /// 403: authenticated, but not allowed.
    #[error("admin role required")]
    Forbidden,
    /// 503: the session store cannot answer now.
    #[error("session store unavailable, retry later")]
    Unavailable,
}

impl AuthRejection {
    /// Its HTTP status.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::Missing | Self::Invalid => StatusCode::UNAUTHORIZED,
            Self::Conflict | Self::NotASession => StatusCode::BAD_REQUEST,
            Self::Forbidden => StatusCode::FORBIDDEN,
            Self::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        }
    }
}

impl IntoResponse for AuthRejection {
    fn into_response(self) -> Response {
        let body = serde_json::json!({ "error": self.to_string() }).to_string();
        let mut response = (
            self.status(),
            [(http::header::CONTENT_TYPE, "application/json")],
            body,
        )
            .into_response();
        if self == Self::Unavailable {
            // The breaker probes Redis at least every 2 s.
            response
                .headers_mut()
                .insert(RETRY_AFTER, HeaderValue::from_static("2"));
        }
        response
    }
}

/// The one credential a request carries, if any.
#[derive(Debug, PartialEq, Eq)]
enum Credential<'a> {
    Session(&'a str),
    Bearer(&'a str),
}

fn credential(headers: &HeaderMap) -> Result<Option<Credential<'_>>, AuthRejection> {
    let mut offered: Vec<Credential<'_>> = Vec::new();
    for value in headers.get_all(COOKIE) {
        for pair in text(value)?.split(';') {
            if let Some((name, v)) = pair.trim().split_once('=')
                && name.trim() == COOKIE_NAME
                && !v.trim().is_empty()
            {
                offered.push(Credential::Session(v.trim()));
            }
        }
    }
    for value in headers.get_all(AUTHORIZATION) {
        let (scheme, rest) = text(value)?
            .trim()
            .split_once(' ')
            .ok_or(AuthRejection::Invalid)?;
        offered.push(if scheme.eq_ignore_ascii_case("session") {
            Credential::Session(rest.trim())
        } else if scheme.eq_ignore_ascii_case("bearer") {
            Credential::Bearer(rest.trim())
        } else {
            return Err(AuthRejection::Invalid);
        });
    }
    for value in headers.get_all(SESSION_HEADER) {
        offered.push(Credential::Session(text(value)?.trim()));
    }
    let mut offered = offered.into_iter();
    let first = offered.next();
    if offered.any(|c| Some(&c) != first.as_ref()) {
        return Err(AuthRejection::Conflict);
    }
    Ok(first)
}

/// Every well-formed session id `headers` present, however many and wherever: for a login,
/// which ends them (the client gets a new id, never keeps one it sent), whatever else the
/// request carries.
pub fn presented_session_ids(headers: &HeaderMap) -> Vec<SessionId> {
    let cookies = headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| {
            let (name, value) = pair.trim().split_once('=')?;
            (name.trim() == COOKIE_NAME).then_some(value.trim())
        });
    let authorization = headers
        .get_all(AUTHORIZATION)
        .iter()
        .filter_map(|v| v.to_str().ok()?.trim().split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("session"))
        .map(|(_, id)| id.trim());
    let header = headers
        .get_all(SESSION_HEADER)
        .iter()
        .filter_map(|v| v.to_str().ok());
    let mut ids: Vec<SessionId> = cookies
        .chain(authorization)
        .chain(header)
        .filter_map(SessionId::parse)
        .collect();
    ids.dedup();
    ids
}

/// A header's text; one that is not visible ASCII is a malformed credential (401), not
/// ignored.
fn text(value: &HeaderValue) -> Result<&str, AuthRejection> {
    value.to_str().map_err(|_| AuthRejection::Invalid)
}

/// Authenticates `parts` once per request (later extractors reuse the result).
pub(super) async fn authenticate(
    parts: &mut Parts,
    auth: &Auth,
) -> Result<Option<Principal>, AuthRejection> {
    if let Some(done) = parts.extensions.get::<Authenticated>() {
        return done.0.clone();
    }
    let result = lookup(&parts.headers, auth).await;
    parts.extensions.insert(Authenticated(result.clone()));
    result
}

#[derive(Clone)]
struct Authenticated(Result<Option<Principal>, AuthRejection>);

async fn lookup(headers: &HeaderMap, auth: &Auth) -> Result<Option<Principal>, AuthRejection> {
    match credential(headers)? {
        None => Ok(None),
        Some(Credential::Bearer(token)) => {
            let claims = auth
                .jwt()
                .and_then(|jwt| jwt.verify(token))
                .ok_or(AuthRejection::Invalid)?;
            Ok(Some(Principal {
                user_id: claims.sub.clone(),
                username: claims.name.clone(),
                role: claims.role.clone(),
                via: Via::Jwt(claims),
            }))
        }
        Some(Credential::Session(text)) => {
            let id = SessionId::parse(text).ok_or(AuthRejection::Invalid)?;
            let session = match auth.sessions().get(&id).await {
                Ok(Some(session)) => session,
                Ok(None) => return Err(AuthRejection::Invalid),
                Err(SessionError::Unavailable) => {
                    tracing::warn!(
                        session = %id.hint(),
                        "session store unavailable; answering 503"
                    );
                    return Err(AuthRejection::Unavailable);
                }
                Err(_) => return Err(AuthRejection::Invalid),
            };
            Ok(Some(Principal {
                user_id: session.user_id.clone(),
                username: session.username.clone(),
                role: session.role.clone(),
                via: Via::Session {
                    id,
                    session: Box::new(session),
                },
            }))
        }
    }
}

impl<S> FromRequestParts<S> for Principal
where
    Auth: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = AuthRejection;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        authenticate(parts, &Auth::from_ref(state))
            .await?
            .ok_or(AuthRejection::Missing)
    }
}

impl<S> OptionalFromRequestParts<S> for Principal
where
    Auth: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = AuthRejection;

    /// `None` without credentials; bad or conflicting credentials are still rejected.
    async fn from_request_parts(
        parts: &mut Parts,
        state: &S,
    ) -> Result<Option<Self>, Self::Rejection> {
        authenticate(parts, &Auth::from_ref(state)).await
    }
}

impl<S> FromRequestParts<S> for CurrentSession
where
    Auth: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = AuthRejection;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let principal = authenticate(parts, &Auth::from_ref(state))
            .await?
            .ok_or(AuthRejection::Missing)?;
        match principal.via {
            Via::Session { id, session } => Ok(Self {
                id,
                session: *session,
            }),
            Via::Jwt(_) => Err(AuthRejection::NotASession),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(
                http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
                HeaderValue::from_str(value).unwrap(),
            );
        }
        map
    }

    #[test]
    fn one_credential_from_any_place() {
        let cases: [(&[(&str, &str)], _); 6] = [
            (&[], None),
            (
                &[("cookie", "a=1; session_id=abc; b=2")],
                Some(Credential::Session("abc")),
            ),
            (
                &[("authorization", "Session abc")],
                Some(Credential::Session("abc")),
            ),
            (&[("x-session-id", "abc")], Some(Credential::Session("abc"))),
            (
                &[("authorization", "bearer t.t.t")],
                Some(Credential::Bearer("t.t.t")),
            ),
            // The same id twice is one credential.
            (
                &[("cookie", "session_id=abc"), ("x-session-id", "abc")],
                Some(Credential::Session("abc")),
            ),
        ];
        for (given, expected) in cases {
            assert_eq!(credential(&headers(given)), Ok(expected), "{given:?}");
        }
    }

    #[test]
    fn different_credentials_conflict_and_odd_ones_are_invalid() {
        let conflicts: [&[(&str, &str)]; 4] = [
            &[("cookie", "session_id=abc"), ("x-session-id", "abd")],
            &[("cookie", "session_id=abc"), ("authorization", "Bearer t")],
            &[("cookie", "session_id=a; session_id=b")],
            &[
                ("authorization", "Session abc"),
                ("authorization", "Bearer t"),
            ],
        ];
        for given in conflicts {
            assert_eq!(
                credential(&headers(given)),
                Err(AuthRejection::Conflict),
                "{given:?}"
            );
        }
        for given in [
            &[("authorization", "Basic dTpw")][..],
            &[("authorization", "token")],
        ] {
            assert_eq!(
                credential(&headers(given)),
                Err(AuthRejection::Invalid),
                "{given:?}"
            );
        }
    }
}
