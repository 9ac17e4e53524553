//! An in-process Gmail API and Google OAuth token endpoint for the `email`
//! step's tests: `POST /token` (refresh-token grant), `messages.send`,
//! `drafts.create`, and `messages.list` / `drafts.list` with an
//! `rfc822msgid:` query.
//!
//! It checks what it is sent against specs/CONTRACTS.md §4: the form grant
//! (`grant_type=refresh_token`, client id and secret, refresh token), the
//! bearer token it issued, a JSON body whose `raw` is base64url (no `+` or
//! `/`) and decodes to an RFC 5322 message with `From` (the configured
//! sender), `To`, an ASCII-only `Subject` (RFC 2047 encoded words for
//! UTF-8), `Message-ID`, `MIME-Version: 1.0` and `Content-Type`. A bad
//! request is answered as Gmail would (400 with its error body) and the
//! problem kept for the test (`problems`).
//!
//! Fault modes: `fail_next` (429 with `Retry-After`, 403 rate limits, 5xx),
//! `expire_tokens` (the next call gets a 401 and a refresh is needed),
//! `refuse_search` (a token that may send but not search) and
//! `delay` (the message is stored *before* the delay, like a server that
//! did the work but is slow to say so).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use serde_json::{Value as Json, json};

pub const CLIENT_ID: &str = "fake-client-id.apps.googleusercontent.com";
pub const CLIENT_SECRET: &str = "GOCSPX-fake-client-secret-4242";
pub const REFRESH_TOKEN: &str = "1//fake-refresh-token-0123456789";
pub const SENDER: &str = "ops@example.com";

/// A message as stored (sent or drafted).
#[derive(Debug, Clone, PartialEq)]
pub struct Stored {
    pub id: String,
    pub draft_id: Option<String>,
    /// Header names lower-cased, values as sent (unfolded).
    pub headers: BTreeMap<String, String>,
    /// The `Subject` with encoded words decoded.
    pub subject: String,
    pub message_id: String,
    pub raw: String,
}

/// A running fake; stops when dropped.
#[derive(Debug)]
pub struct FakeGmail {
    addr: SocketAddr,
    shared: Arc<Mutex<Book>>,
    task: tokio::task::JoinHandle<()>,
}

#[derive(Debug, Default)]
struct Book {
    messages: Vec<Stored>,
    calls: Vec<String>,
    problems: Vec<String>,
    tokens_issued: u32,
    valid_tokens: Vec<String>,
    fail_next: Option<(u32, u16, Option<u64>)>,
    /// Searches (`messages.list`, `drafts.list`) refused for want of a
    /// scope, as for a token granted `gmail.send` only.
    refuse_search: bool,
    delay_ms: u64,
    next_id: u64,
}

impl FakeGmail {
    pub async fn start() -> FakeGmail {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the fake Gmail");
        let addr = listener.local_addr().expect("local address");
        let shared = Arc::new(Mutex::new(Book::default()));
        let app = Router::new().fallback(handle).with_state(shared.clone());
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        FakeGmail { addr, shared, task }
    }

    /// `GMAIL_API_URL`: the root `/gmail/v1/users/me/…` is appended to.
    pub fn api_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// `GMAIL_TOKEN_URL`.
    pub fn token_url(&self) -> String {
        format!("http://{}/token", self.addr)
    }

    /// Sent messages (not drafts).
    pub fn sent(&self) -> Vec<Stored> {
        self.book()
            .messages
            .iter()
            .filter(|m| m.draft_id.is_none())
            .cloned()
            .collect()
    }

    pub fn drafts(&self) -> Vec<Stored> {
        self.book()
            .messages
            .iter()
            .filter(|m| m.draft_id.is_some())
            .cloned()
            .collect()
    }

    /// Messages and drafts whose `Message-ID` is `id`.
    pub fn count_message_id(&self, id: &str) -> usize {
        self.book()
            .messages
            .iter()
            .filter(|m| m.message_id == id)
            .count()
    }

    /// Every call as `METHOD /path?query`.
    pub fn calls(&self) -> Vec<String> {
        self.book().calls.clone()
    }

    /// Access tokens handed out so far.
    pub fn tokens_issued(&self) -> u32 {
        self.book().tokens_issued
    }

    /// Why requests were not what Gmail accepts; empty when all were valid.
    pub fn problems(&self) -> Vec<String> {
        self.book().problems.clone()
    }

    /// Answers the next `n` API calls (not token calls) with `status`
    /// (429 gets `Retry-After`; 403 is `userRateLimitExceeded`).
    pub fn fail_next(&self, n: u32, status: u16, retry_after: Option<u64>) {
        self.book().fail_next = (n > 0).then_some((n, status, retry_after));
    }

    /// Refuses searches with 403 `insufficientPermissions` (a token that
    /// may send but not read), or stops refusing them.
    pub fn refuse_search(&self, refuse: bool) {
        self.book().refuse_search = refuse;
    }

    /// Revokes every access token issued so far.
    pub fn expire_tokens(&self) {
        self.book().valid_tokens.clear();
    }

    /// Holds every API answer back by `ms`, after doing the work.
    pub fn delay(&self, ms: u64) {
        self.book().delay_ms = ms;
    }

    fn book(&self) -> MutexGuard<'_, Book> {
        self.shared.lock().expect("fake state")
    }
}

impl Drop for FakeGmail {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn google_error(status: u16, reason: &str, message: &str) -> Response {
    let code = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST);
    (
        code,
        axum::Json(json!({ "error": {
            "code": status,
            "message": message,
            "errors": [{ "domain": "global", "reason": reason, "message": message }],
            "status": code.canonical_reason().unwrap_or("ERROR").to_uppercase().replace(' ', "_"),
        }})),
    )
        .into_response()
}

async fn handle(
    State(shared): State<Arc<Mutex<Book>>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let path = uri.path().to_string();
    let (resp, delay) = {
        let mut book = shared.lock().expect("fake state");
        book.calls.push(format!(
            "{method} {path}{}",
            uri.query().map(|q| format!("?{q}")).unwrap_or_default()
        ));
        if path == "/token" {
            (token(&mut book, &headers, &body), 0)
        } else {
            (
                api(&mut book, &method, &path, uri.query(), &headers, &body),
                book.delay_ms,
            )
        }
    };
    if delay > 0 {
        tokio::time::sleep(Duration::from_millis(delay)).await;
    }
    resp
}

fn token(book: &mut Book, headers: &HeaderMap, body: &[u8]) -> Response {
    let ct = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    if !ct.starts_with("application/x-www-form-urlencoded") {
        book.problems
            .push(format!("token: content type {ct:?} is not a form"));
    }
    let form: BTreeMap<String, String> = url::form_urlencoded::parse(body)
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    let bad = |code: StatusCode, e: &str, d: &str| {
        (
            code,
            axum::Json(json!({ "error": e, "error_description": d })),
        )
            .into_response()
    };
    if form.get("grant_type").map(String::as_str) != Some("refresh_token") {
        book.problems
            .push(format!("token: grant_type is {:?}", form.get("grant_type")));
        return bad(
            StatusCode::BAD_REQUEST,
            "unsupported_grant_type",
            "Invalid grant_type",
        );
    }
    if form.get("client_id").map(String::as_str) != Some(CLIENT_ID)
        || form.get("client_secret").map(String::as_str) != Some(CLIENT_SECRET)
    {
        return bad(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            "The OAuth client was not found.",
        );
    }
    if form.get("refresh_token").map(String::as_str) != Some(REFRESH_TOKEN) {
        return bad(
            StatusCode::BAD_REQUEST,
            "invalid_grant",
            "Token has been expired or revoked.",
        );
    }
    book.tokens_issued += 1;
    let tok = format!("ya29.fake-access-{}", book.tokens_issued);
    book.valid_tokens.push(tok.clone());
    axum::Json(json!({
        "access_token": tok,
        "expires_in": 3599,
        "scope": "https://www.googleapis.com/auth/gmail.compose",
        "token_type": "Bearer",
    }))
    .into_response()
}

fn api(
    book: &mut Book,
    method: &Method,
    path: &str,
    query: Option<&str>,
    headers: &HeaderMap,
    body: &[u8],
) -> Response {
    let auth = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or_default()
        .to_string();
    if !book.valid_tokens.contains(&auth) {
        return google_error(401, "authError", "Invalid Credentials");
    }
    if let Some((n, status, retry)) = book.fail_next {
        book.fail_next = (n > 1).then_some((n - 1, status, retry));
        let mut r = match status {
            403 => google_error(403, "userRateLimitExceeded", "User-rate limit exceeded"),
            429 => google_error(429, "rateLimitExceeded", "Too many requests"),
            s => google_error(s, "backendError", "Backend Error"),
        };
        if let Some(s) = retry {
            r.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(s));
        }
        return r;
    }
    let Some(rest) = path.strip_prefix("/gmail/v1/users/me/") else {
        book.problems.push(format!("unknown path {path}"));
        return google_error(404, "notFound", "Not Found");
    };
    match (method.as_str(), rest) {
        ("POST", "messages/send") => {
            let Some(raw) = json_body(book, headers, body, &["raw", "threadId"]) else {
                return google_error(400, "invalidArgument", "Invalid JSON payload");
            };
            store(book, &raw["raw"], None)
        }
        ("POST", "drafts") => {
            let Some(b) = json_body(book, headers, body, &["message", "id"]) else {
                return google_error(400, "invalidArgument", "Invalid JSON payload");
            };
            book.next_id += 1;
            let draft = format!("r-{:016x}", book.next_id);
            store(book, &b["message"]["raw"], Some(draft))
        }
        ("GET", "messages" | "drafts") if book.refuse_search => google_error(
            403,
            "insufficientPermissions",
            "Request had insufficient authentication scopes.",
        ),
        ("GET", "messages" | "drafts") => {
            let drafts = rest == "drafts";
            let q: BTreeMap<String, String> =
                url::form_urlencoded::parse(query.unwrap_or_default().as_bytes())
                    .map(|(k, v)| (k.into_owned(), v.into_owned()))
                    .collect();
            for k in q.keys() {
                if ![
                    "q",
                    "includeSpamTrash",
                    "maxResults",
                    "pageToken",
                    "labelIds",
                ]
                .contains(&k.as_str())
                {
                    book.problems
                        .push(format!("{rest}.list: unknown parameter {k}"));
                }
            }
            let want = q
                .get("q")
                .and_then(|q| q.strip_prefix("rfc822msgid:"))
                .map(|s| {
                    s.trim()
                        .trim_start_matches('<')
                        .trim_end_matches('>')
                        .to_string()
                });
            let Some(want) = want else {
                book.problems
                    .push(format!("{rest}.list: expected q=rfc822msgid:…, got {q:?}"));
                return google_error(400, "invalidArgument", "Invalid query");
            };
            let found: Vec<Json> = book
                .messages
                .iter()
                .filter(|m| m.draft_id.is_some() == drafts)
                .filter(|m| m.message_id.trim_start_matches('<').trim_end_matches('>') == want)
                .map(|m| {
                    let msg = json!({ "id": m.id, "threadId": m.id });
                    match &m.draft_id {
                        Some(d) => json!({ "id": d, "message": msg }),
                        None => msg,
                    }
                })
                .collect();
            let mut r = json!({ "resultSizeEstimate": found.len() });
            if !found.is_empty() {
                r[if drafts { "drafts" } else { "messages" }] = json!(found);
            }
            axum::Json(r).into_response()
        }
        _ => {
            book.problems
                .push(format!("unknown method {method} {path}"));
            google_error(404, "notFound", "Not Found")
        }
    }
}

fn json_body(book: &mut Book, headers: &HeaderMap, body: &[u8], allowed: &[&str]) -> Option<Json> {
    let ct = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    if !ct.starts_with("application/json") {
        book.problems
            .push(format!("content type {ct:?} is not JSON"));
    }
    let v: Json = match serde_json::from_slice(body) {
        Ok(v) => v,
        Err(e) => {
            book.problems.push(format!("body is not JSON: {e}"));
            return None;
        }
    };
    for k in v
        .as_object()
        .map(|o| o.keys().collect::<Vec<_>>())
        .unwrap_or_default()
    {
        if !allowed.contains(&k.as_str()) {
            book.problems.push(format!("unknown body field {k}"));
        }
    }
    Some(v)
}

fn store(book: &mut Book, raw: &Json, draft_id: Option<String>) -> Response {
    let Some(raw) = raw.as_str() else {
        book.problems.push("`raw` is missing".into());
        return google_error(
            400,
            "invalidArgument",
            "'raw' RFC822 payload message string or uploading message via /upload/* URL required",
        );
    };
    match check_raw(raw) {
        Ok((headers, subject)) => {
            book.next_id += 1;
            let id = format!("18c{:013x}", book.next_id);
            let message_id = headers.get("message-id").cloned().unwrap_or_default();
            book.messages.push(Stored {
                id: id.clone(),
                draft_id: draft_id.clone(),
                headers,
                subject,
                message_id,
                raw: raw.to_string(),
            });
            let msg = json!({
                "id": id,
                "threadId": id,
                "labelIds": if draft_id.is_some() { json!(["DRAFT"]) } else { json!(["SENT"]) },
            });
            axum::Json(match draft_id {
                Some(d) => json!({ "id": d, "message": msg }),
                None => msg,
            })
            .into_response()
        }
        Err(p) => {
            book.problems.push(p.clone());
            google_error(400, "invalidArgument", &p)
        }
    }
}

/// Decodes `raw` and checks the headers; answers them and the decoded subject.
fn check_raw(raw: &str) -> Result<(BTreeMap<String, String>, String), String> {
    if raw.contains(['+', '/']) {
        return Err("raw is not base64url (it has `+` or `/`)".into());
    }
    let bytes = base64::engine::general_purpose::URL_SAFE
        .decode(raw)
        .or_else(|_| base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(raw))
        .map_err(|e| format!("raw does not decode as base64url: {e}"))?;
    let text = String::from_utf8(bytes).map_err(|_| "the message is not UTF-8".to_string())?;
    let head = text
        .split("\r\n\r\n")
        .next()
        .ok_or("the message has no header/body separator")?;
    if !text.contains("\r\n\r\n") {
        return Err("the message has no CRLF CRLF between headers and body".into());
    }
    let mut headers = BTreeMap::new();
    let mut last: Option<String> = None;
    for line in head.split("\r\n") {
        if line.starts_with([' ', '\t']) {
            if let Some(k) = &last
                && let Some(v) = headers.get_mut(k)
            {
                let v: &mut String = v;
                v.push_str(line);
            }
            continue;
        }
        let (k, v) = line
            .split_once(':')
            .ok_or_else(|| format!("header line {line:?} has no colon"))?;
        let k = k.trim().to_ascii_lowercase();
        headers.insert(k.clone(), v.trim().to_string());
        last = Some(k);
    }
    if !head.is_ascii() {
        return Err("the headers are not 7-bit ASCII (UTF-8 needs RFC 2047 encoded words)".into());
    }
    for h in [
        "from",
        "to",
        "subject",
        "message-id",
        "mime-version",
        "content-type",
    ] {
        if !headers.contains_key(h) {
            return Err(format!("the message has no {h} header"));
        }
    }
    if !headers["from"].contains(SENDER) {
        return Err(format!(
            "From is {:?}, not the sender {SENDER}",
            headers["from"]
        ));
    }
    if headers["mime-version"] != "1.0" {
        return Err(format!("MIME-Version is {:?}", headers["mime-version"]));
    }
    let mid = &headers["message-id"];
    if !(mid.starts_with('<') && mid.ends_with('>') && mid.contains('@')) {
        return Err(format!("Message-ID {mid:?} is not <left@right>"));
    }
    let subject = decode_words(&headers["subject"])?;
    Ok((headers, subject))
}

/// Decodes RFC 2047 encoded words (`=?utf-8?b?…?=`, `=?utf-8?q?…?=`).
pub fn decode_words(s: &str) -> Result<String, String> {
    let mut out = String::new();
    let mut prev_word = false;
    for token in s.split([' ', '\t']).filter(|t| !t.is_empty()) {
        let word = token
            .strip_prefix("=?")
            .and_then(|t| t.strip_suffix("?="))
            .and_then(|t| {
                let mut p = t.splitn(3, '?');
                Some((p.next()?, p.next()?, p.next()?))
            });
        match word {
            Some((charset, enc, text)) => {
                if !charset.eq_ignore_ascii_case("utf-8") {
                    return Err(format!("encoded word charset {charset:?}"));
                }
                let bytes = if enc.eq_ignore_ascii_case("b") {
                    base64::engine::general_purpose::STANDARD
                        .decode(text)
                        .map_err(|e| format!("bad encoded word {token:?}: {e}"))?
                } else if enc.eq_ignore_ascii_case("q") {
                    q_decode(text)?
                } else {
                    return Err(format!("encoding {enc:?} in {token:?}"));
                };
                let text = String::from_utf8(bytes)
                    .map_err(|_| format!("encoded word {token:?} is not UTF-8"))?;
                // Space between adjacent encoded words is not part of the text.
                if !out.is_empty() && !prev_word {
                    out.push(' ');
                }
                out.push_str(&text);
                prev_word = true;
            }
            None => {
                if !out.is_empty() {
                    out.push(' ');
                }
                out.push_str(token);
                prev_word = false;
            }
        }
    }
    Ok(out)
}

fn q_decode(s: &str) -> Result<Vec<u8>, String> {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'_' => out.push(b' '),
            b'=' if i + 2 < b.len() => {
                let h = std::str::from_utf8(&b[i + 1..i + 3]).map_err(|e| e.to_string())?;
                out.push(u8::from_str_radix(h, 16).map_err(|e| e.to_string())?);
                i += 2;
            }
            c => out.push(c),
        }
        i += 1;
    }
    Ok(out)
}
