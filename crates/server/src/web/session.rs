//! Sign-in, sessions and CSRF: argon2 password checks, the session cookie,
//! the [`WebUser`] extractor, and the same-origin and token checks every
//! POST passes.

use std::sync::OnceLock;
use std::time::Duration;

use argon2::{Argon2, PasswordHasher, PasswordVerifier};
use axum::body::Bytes;
use axum::extract::{FromRequestParts, Query, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use store::{Session, User};
use subtle::ConstantTimeEq;

use super::see_other;
use super::ui::{self, Me};
use crate::AppState;
use crate::auth::{hash_token, new_token_secret};
use crate::client::ClientIp;
use crate::forms::url_decode_pairs;

/// Name of the session cookie.
pub const SESSION_COOKIE: &str = "cs_session";
/// Cookie tying the sign-in form to the browser that loaded it.
const LOGIN_COOKIE: &str = "cs_login";
/// How long a session lives after sign-in.
const SESSION_TTL: Duration = Duration::from_secs(12 * 3600);
/// Failed sign-ins per email within [`FAILURE_WINDOW`] before refusing.
const MAX_FAILURES: u32 = 5;
const FAILURE_WINDOW: Duration = Duration::from_secs(15 * 60);

/// State of the inbox shared by all requests: the sign-in throttle.
///
/// Failures count per account *and* source address: someone guessing from
/// elsewhere locks only their own address out of that account, never the
/// reviewer at their desk.
#[derive(Debug, Clone, Default)]
pub struct WebState {
    failures: crate::client::Counter,
}

impl WebState {
    fn key(email: &str, from: ClientIp) -> String {
        format!("{email}|{}", from.label())
    }

    /// True when `email` failed too often lately from `from`.
    fn throttled(&self, email: &str, from: ClientIp) -> bool {
        self.failures
            .reached(&Self::key(email, from), MAX_FAILURES, FAILURE_WINDOW)
    }

    fn failed(&self, email: &str, from: ClientIp) {
        let _ = self
            .failures
            .hit(&Self::key(email, from), MAX_FAILURES, FAILURE_WINDOW);
    }

    fn succeeded(&self, email: &str, from: ClientIp) {
        self.failures.clear(&Self::key(email, from));
    }
}

/// An argon2id hash (PHC string) of `password` with a random salt.
pub fn hash_password(password: &str) -> Result<String, String> {
    Argon2::default()
        .hash_password(password.as_bytes())
        .map(|h| h.to_string())
        .map_err(|e| format!("cannot hash the password: {e}"))
}

/// Whether `password` matches the PHC string `hash`.
pub fn verify_password(password: &str, hash: &str) -> bool {
    Argon2::default()
        .verify_password(password.as_bytes(), hash)
        .is_ok()
}

/// A random password for `user create` without one: 20 characters from an
/// alphabet without look-alikes (about 110 bits).
pub fn new_password() -> String {
    const ALPHABET: &[u8] = b"abcdefghijkmnpqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789";
    (0..20)
        .map(|_| ALPHABET[rand::random_range(0..ALPHABET.len())] as char)
        .collect()
}

/// A hash to verify against when the email is unknown, so a wrong email
/// costs as long as a wrong password.
fn dummy_hash() -> &'static str {
    static H: OnceLock<String> = OnceLock::new();
    H.get_or_init(|| hash_password("not a password").unwrap_or_default())
}

fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// Whether cookies get `Secure`: as configured, else when the request came
/// over https (directly or through a proxy that says so).
fn secure(state: &AppState, headers: &HeaderMap) -> bool {
    state.config.secure_cookies.unwrap_or_else(|| {
        headers
            .get("x-forwarded-proto")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|p| p.eq_ignore_ascii_case("https"))
    })
}

fn set_cookie(name: &str, value: &str, max_age_s: u64, secure: bool) -> HeaderValue {
    let s = format!(
        "{name}={value}; Path=/; HttpOnly; SameSite=Lax; Max-Age={max_age_s}{}",
        if secure { "; Secure" } else { "" }
    );
    HeaderValue::from_str(&s).expect("cookie values are hex")
}

/// The live session (and its user) the request's cookie names.
pub(crate) async fn current(state: &AppState, headers: &HeaderMap) -> Option<(Session, User)> {
    let secret = cookie(headers, SESSION_COOKIE)?;
    if secret.is_empty() || secret.len() > 128 {
        return None;
    }
    match state
        .engine
        .store()
        .session(&hash_token(secret), engine::now_ms())
        .await
    {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(error = %e, "session lookup failed");
            None
        }
    }
}

/// The API caller a session cookie stands for, if the request has one.
/// Requests that change state must also pass the origin check and carry
/// the session's CSRF token in `X-CSRF-Token`.
pub async fn session_caller(
    state: &AppState,
    parts: &Parts,
) -> Option<Result<(Session, User), &'static str>> {
    let (session, user) = current(state, &parts.headers).await?;
    let safe = matches!(parts.method.as_str(), "GET" | "HEAD" | "OPTIONS");
    if !safe {
        let token = parts
            .headers
            .get("x-csrf-token")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        if !same_origin(&parts.headers) || !token_eq(token, &session.csrf) {
            return Some(Err(
                "a request with a session cookie that changes state needs `X-CSRF-Token` from the same origin",
            ));
        }
    }
    Some(Ok((session, user)))
}

fn token_eq(a: &str, b: &str) -> bool {
    !a.is_empty() && a.as_bytes().ct_eq(b.as_bytes()).into()
}

/// False when the browser says the request comes from another origin
/// (`Origin`, else `Referer`, compared with `Host`). Clients that send
/// neither (curl) are judged by the CSRF token alone.
pub(crate) fn same_origin(headers: &HeaderMap) -> bool {
    let host = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let from = headers
        .get(header::ORIGIN)
        .or_else(|| headers.get(header::REFERER))
        .and_then(|v| v.to_str().ok());
    match from {
        None => true,
        Some(o) => {
            let rest = o
                .strip_prefix("https://")
                .or_else(|| o.strip_prefix("http://"))
                .unwrap_or("");
            let origin_host = rest.split('/').next().unwrap_or("");
            !host.is_empty() && origin_host.eq_ignore_ascii_case(host)
        }
    }
}

/// A signed-in person. Pages that need one redirect to `/login` without.
pub(crate) struct WebUser {
    pub user: User,
    pub session: Session,
}

impl WebUser {
    /// Who is signed in, for the page header.
    pub fn header(&self) -> Option<Me> {
        Some(Me {
            email: self.user.email.clone(),
            csrf: self.session.csrf.clone(),
            role: self.user.role.as_str(),
        })
    }

    /// Decodes a POSTed form and checks it (same origin, the session's
    /// CSRF token); a refused form is a 403 page saying what to reload.
    #[allow(
        clippy::result_large_err,
        reason = "the error is the finished page, returned at once"
    )]
    pub fn form(
        &self,
        headers: &HeaderMap,
        body: &[u8],
        reload: &str,
    ) -> Result<Vec<(String, String)>, Response> {
        let pairs = url_decode_pairs(body);
        if self.check_form(headers, &pairs) {
            Ok(pairs)
        } else {
            Err(super::message(
                StatusCode::FORBIDDEN,
                "Forbidden",
                &format!(
                    "The form expired or came from another site. Reload {reload} and try again."
                ),
                self.header(),
            ))
        }
    }

    /// Checks a POSTed form: same origin and the session's CSRF token.
    pub fn check_form(&self, headers: &HeaderMap, pairs: &[(String, String)]) -> bool {
        let token = pairs
            .iter()
            .find(|(k, _)| k == "csrf")
            .map_or("", |(_, v)| v.as_str());
        same_origin(headers) && token_eq(token, &self.session.csrf)
    }
}

impl FromRequestParts<AppState> for WebUser {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<WebUser, Response> {
        match current(state, &parts.headers).await {
            Some((session, user)) => Ok(WebUser { user, session }),
            None => {
                // After sign-in the browser GETs `next`: only a page, never
                // a form's target.
                let next = match parts.method.as_str() {
                    "GET" | "HEAD" => parts
                        .uri
                        .path_and_query()
                        .map_or("/inbox", |p| p.as_str())
                        .to_string(),
                    _ => "/inbox".to_string(),
                };
                Err(see_other(&format!("/login?next={}", encode(&next))))
            }
        }
    }
}

/// Percent-encodes a query value.
fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b'/' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Only local paths are followed after sign-in (no open redirect).
fn safe_next(next: Option<&str>) -> &str {
    match next {
        // Browsers drop tabs and newlines from URLs, so "/\t/evil" would
        // become "//evil": refuse any whitespace or control character.
        Some(n)
            if n.starts_with('/')
                && !n.starts_with("//")
                && !n.contains('\\')
                && !n.chars().any(|c| c.is_whitespace() || c.is_control()) =>
        {
            n
        }
        _ => "/inbox",
    }
}

#[derive(Debug, Deserialize)]
pub(crate) struct LoginQuery {
    next: Option<String>,
}

#[derive(Serialize)]
struct LoginPage<'a> {
    me: Option<Me>,
    nav: &'static str,
    title: &'static str,
    next: &'a str,
    email: &'a str,
    nonce: &'a str,
    error: Option<&'a str>,
}

/// A fresh sign-in form with its double-submit cookie.
fn fresh_login(
    state: &AppState,
    headers: &HeaderMap,
    status: StatusCode,
    next: &str,
    email: &str,
    error: Option<&str>,
) -> Response {
    let nonce = hex::encode(rand::random::<[u8; 16]>());
    let mut res = ui::render(
        status,
        "login.html",
        LoginPage {
            me: None,
            nav: "",
            title: "Sign in",
            next,
            email,
            nonce: &nonce,
            error,
        },
    );
    res.headers_mut().append(
        header::SET_COOKIE,
        set_cookie(LOGIN_COOKIE, &nonce, 3600, secure(state, headers)),
    );
    res
}

/// `GET /login`.
pub(crate) async fn login_form(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(q): Query<LoginQuery>,
) -> Response {
    if current(&state, &headers).await.is_some() {
        return see_other(safe_next(q.next.as_deref()));
    }
    fresh_login(
        &state,
        &headers,
        StatusCode::OK,
        safe_next(q.next.as_deref()),
        "",
        None,
    )
}

/// `POST /login`: checks the password (argon2; as slow for unknown emails),
/// throttles repeated failures, starts a session.
pub(crate) async fn login(
    State(state): State<AppState>,
    from: ClientIp,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let pairs = url_decode_pairs(&body);
    let get = |k: &str| {
        pairs
            .iter()
            .find(|(n, _)| n == k)
            .map_or("", |(_, v)| v.as_str())
    };
    let next = safe_next(Some(get("next"))).to_string();
    let email = get("email").trim().to_lowercase();
    let password = get("password").to_string();
    let nonce_ok = cookie(&headers, LOGIN_COOKIE).is_some_and(|c| token_eq(get("csrf"), c));
    if !same_origin(&headers) || !nonce_ok {
        return fresh_login(
            &state,
            &headers,
            StatusCode::FORBIDDEN,
            &next,
            &email,
            Some("The sign-in form expired or came from another site. Please try again."),
        );
    }
    if state.web.throttled(&email, from) {
        return fresh_login(
            &state,
            &headers,
            StatusCode::TOO_MANY_REQUESTS,
            &next,
            &email,
            Some("Too many failed attempts. Wait a few minutes and try again."),
        );
    }
    let user = match state.engine.store().user_by_email(&email).await {
        Ok(u) => u.filter(|u| u.disabled_at_ms.is_none()),
        Err(e) => {
            tracing::warn!(error = %e, "user lookup failed");
            return super::message(
                StatusCode::SERVICE_UNAVAILABLE,
                "Unavailable",
                "Signing in is not possible right now.",
                None,
            );
        }
    };
    let hash = user
        .as_ref()
        .map_or_else(|| dummy_hash().to_string(), |u| u.password_hash.clone());
    // argon2 is CPU-heavy: keep it off the async workers.
    let ok = tokio::task::spawn_blocking(move || verify_password(&password, &hash))
        .await
        .unwrap_or(false);
    let Some(user) = user.filter(|_| ok) else {
        tracing::info!(%email, from = %from.label(), "failed sign-in");
        state.web.failed(&email, from);
        return fresh_login(
            &state,
            &headers,
            StatusCode::UNAUTHORIZED,
            &next,
            &email,
            Some("Wrong email or password."),
        );
    };
    state.web.succeeded(&email, from);
    let secret = new_token_secret();
    let now = engine::now_ms();
    let store = state.engine.store();
    let _ = store.delete_expired_sessions(now).await;
    if let Err(e) = store
        .create_session(Session {
            hash: hash_token(&secret),
            user_id: user.id.clone(),
            csrf: hex::encode(rand::random::<[u8; 32]>()),
            created_at_ms: now,
            expires_at_ms: now + SESSION_TTL.as_millis() as i64,
        })
        .await
    {
        tracing::warn!(error = %e, "cannot create a session");
        return super::message(
            StatusCode::SERVICE_UNAVAILABLE,
            "Unavailable",
            "Signing in is not possible right now.",
            None,
        );
    }
    tracing::info!(user = %user.actor(), "signed in");
    let mut res = see_other(&next);
    let sec = secure(&state, &headers);
    let h = res.headers_mut();
    h.append(
        header::SET_COOKIE,
        set_cookie(SESSION_COOKIE, &secret, SESSION_TTL.as_secs(), sec),
    );
    h.append(header::SET_COOKIE, set_cookie(LOGIN_COOKIE, "", 0, sec));
    res
}

/// `POST /logout`: ends the session (CSRF-checked, so another site cannot
/// sign a reviewer out).
pub(crate) async fn logout(
    State(state): State<AppState>,
    user: WebUser,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if !user.check_form(&headers, &url_decode_pairs(&body)) {
        return super::message(
            StatusCode::FORBIDDEN,
            "Forbidden",
            "The form expired or came from another site.",
            user.header(),
        );
    }
    let _ = state
        .engine
        .store()
        .delete_session(&user.session.hash)
        .await;
    let mut res = see_other("/login");
    res.headers_mut().append(
        header::SET_COOKIE,
        set_cookie(SESSION_COOKIE, "", 0, secure(&state, &headers)),
    );
    res.into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_hash_and_verify() {
        let h = hash_password("correct horse").unwrap();
        assert!(h.starts_with("$argon2id$"), "{h}");
        assert!(verify_password("correct horse", &h));
        assert!(!verify_password("correct hors", &h));
        assert!(!verify_password("x", "not a hash"));
        assert_ne!(new_password(), new_password());
        assert_eq!(new_password().len(), 20);
    }

    #[test]
    fn origin_checks_compare_hosts() {
        let mut h = HeaderMap::new();
        h.insert(header::HOST, HeaderValue::from_static("inbox.example:8080"));
        assert!(same_origin(&h), "no Origin: judged by the token");
        h.insert(
            header::ORIGIN,
            HeaderValue::from_static("https://inbox.example:8080"),
        );
        assert!(same_origin(&h));
        h.insert(
            header::ORIGIN,
            HeaderValue::from_static("https://evil.example"),
        );
        assert!(!same_origin(&h));
        h.insert(header::ORIGIN, HeaderValue::from_static("null"));
        assert!(!same_origin(&h));
    }

    #[test]
    fn only_local_paths_are_followed() {
        assert_eq!(safe_next(Some("/inbox/r1")), "/inbox/r1");
        assert_eq!(safe_next(Some("//evil.example")), "/inbox");
        assert_eq!(safe_next(Some("https://evil.example")), "/inbox");
        assert_eq!(safe_next(Some("/\\evil")), "/inbox");
        assert_eq!(safe_next(Some("/\t/evil.example")), "/inbox");
        assert_eq!(safe_next(Some("/\n/evil.example")), "/inbox");
        assert_eq!(safe_next(None), "/inbox");
    }
}
