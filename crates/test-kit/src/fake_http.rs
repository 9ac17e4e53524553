//! An in-process HTTP receiver standing in for a Make.com/n8n webhook or
//! any endpoint the `http` step calls.
//!
//! It behaves like a well-mannered idempotent API: every request must carry
//! an `Idempotency-Key` (400 otherwise), the first request under a key
//! performs the "effect" and later ones get the stored response back. Tests
//! read what it saw (`hits`, `effects`, `count`, `keys`, `requests`) and
//! switch fault modes at run time (`fail_next`, `delay`, `set_status`).
//!
//! It listens on real TCP (127.0.0.1, a free port), so a child process (the
//! server binary in an end-to-end test) can call it too.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value as Json, json};

/// One request as received.
#[derive(Debug, Clone, PartialEq)]
pub struct Recorded {
    pub method: String,
    pub path: String,
    /// The `Idempotency-Key` header, if any.
    pub key: Option<String>,
    /// Header names lower-cased; repeated headers keep the last value.
    pub headers: BTreeMap<String, String>,
    /// The body as JSON; a non-JSON body becomes a string, an empty one null.
    pub body: Json,
}

/// A running fake; stops when dropped.
#[derive(Debug)]
pub struct FakeHttp {
    addr: SocketAddr,
    shared: Arc<Shared>,
    task: tokio::task::JoinHandle<()>,
}

#[derive(Debug, Default)]
struct Shared {
    state: Mutex<Book>,
}

/// What the fake has seen and how it is told to misbehave.
#[derive(Debug, Default)]
struct Book {
    requests: Vec<Recorded>,
    /// Times each key was seen, in first-seen order kept by `order`.
    seen: BTreeMap<String, u64>,
    order: Vec<String>,
    /// The stored answer per key whose effect happened.
    effects: BTreeMap<String, Json>,
    fail_next: Option<Fault>,
    delay_ms: u64,
    /// A permanent refusal answered to every request while set.
    status: Option<u16>,
}

#[derive(Debug, Clone, Copy)]
struct Fault {
    remaining: u32,
    status: u16,
    retry_after: Option<u64>,
}

impl FakeHttp {
    /// Binds 127.0.0.1 on a free port and serves in the background.
    pub async fn start() -> FakeHttp {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the fake HTTP receiver");
        let addr = listener.local_addr().expect("local address");
        let shared = Arc::new(Shared::default());
        let app = Router::new().fallback(handle).with_state(shared.clone());
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        FakeHttp { addr, shared, task }
    }

    /// Base URL without a trailing slash, e.g. `http://127.0.0.1:40123`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Every request received, including refused and repeated ones.
    pub fn hits(&self) -> u64 {
        self.book().requests.len() as u64
    }

    /// Distinct keys whose effect happened (the dedupe-adjusted count).
    pub fn effects(&self) -> u64 {
        self.book().effects.len() as u64
    }

    /// How many requests carried `key`, whatever was answered.
    pub fn count(&self, key: &str) -> u64 {
        self.book().seen.get(key).copied().unwrap_or(0)
    }

    /// Keys seen, in the order first seen.
    pub fn keys(&self) -> Vec<String> {
        self.book().order.clone()
    }

    /// Whether the effect under `key` happened.
    pub fn has_effect(&self, key: &str) -> bool {
        self.book().effects.contains_key(key)
    }

    pub fn requests(&self) -> Vec<Recorded> {
        self.book().requests.clone()
    }

    /// Answers the next `n` requests with `status` (e.g. 503 or 429), with a
    /// `Retry-After: <seconds>` header when given, without performing the
    /// effect.
    pub fn fail_next(&self, n: u32, status: u16, retry_after: Option<u64>) {
        self.book().fail_next = (n > 0).then_some(Fault {
            remaining: n,
            status,
            retry_after,
        });
    }

    /// Holds every answer back by `ms` (0 turns it off). The effect of a
    /// new key happens *before* the delay, like a server that did the work
    /// but is slow to say so: a caller that gives up or dies meanwhile has
    /// caused an effect it never heard about.
    pub fn delay(&self, ms: u64) {
        self.book().delay_ms = ms;
    }

    /// Answers every request with `status` from now on without performing
    /// the effect (a permanent refusal such as 400 or 403); a 2xx status
    /// restores normal service.
    pub fn set_status(&self, status: u16) {
        self.book().status = (!(200..300).contains(&status)).then_some(status);
    }

    /// The message a refusal set by [`FakeHttp::set_status`] carries in its body.
    pub fn refusal_message(status: u16) -> String {
        format!("fake refused the request with status {status}")
    }

    fn book(&self) -> MutexGuard<'_, Book> {
        self.shared.state.lock().expect("fake state")
    }
}

impl Drop for FakeHttp {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn handle(
    State(shared): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let key = headers
        .get("idempotency-key")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let (answer, delay_ms) = {
        let mut book = shared.state.lock().expect("fake state");
        book.requests.push(Recorded {
            method: method.to_string(),
            path: uri.path().to_string(),
            key: key.clone(),
            headers: headers
                .iter()
                .map(|(k, v)| {
                    (
                        k.as_str().to_string(),
                        String::from_utf8_lossy(v.as_bytes()).into_owned(),
                    )
                })
                .collect(),
            body: if body.is_empty() {
                Json::Null
            } else {
                serde_json::from_slice(&body)
                    .unwrap_or_else(|_| Json::String(String::from_utf8_lossy(&body).into_owned()))
            },
        });
        (decide(&mut book, key), book.delay_ms)
    };
    if delay_ms > 0 {
        tokio::time::sleep(Duration::from_millis(delay_ms)).await;
    }
    answer
}

/// Applies the fault modes and the dedupe rule to one request.
fn decide(book: &mut Book, key: Option<String>) -> Response {
    let Some(key) = key else {
        return (
            StatusCode::BAD_REQUEST,
            axum::Json(json!({ "ok": false, "error": "missing Idempotency-Key header" })),
        )
            .into_response();
    };
    let seen = book.seen.entry(key.clone()).or_insert(0);
    *seen += 1;
    if *seen == 1 {
        book.order.push(key.clone());
    }
    if let Some(f) = &mut book.fail_next {
        let fault = *f;
        f.remaining -= 1;
        if f.remaining == 0 {
            book.fail_next = None;
        }
        let status = StatusCode::from_u16(fault.status).unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
        let mut resp = (
            status,
            axum::Json(json!({ "ok": false, "error": format!("fake transient failure ({})", fault.status) })),
        )
            .into_response();
        if let Some(secs) = fault.retry_after {
            resp.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        return resp;
    }
    if let Some(code) = book.status {
        let status = StatusCode::from_u16(code).unwrap_or(StatusCode::BAD_REQUEST);
        return (
            status,
            axum::Json(json!({ "ok": false, "error": FakeHttp::refusal_message(code) })),
        )
            .into_response();
    }
    let n = book.effects.len() + 1;
    let stored = book
        .effects
        .entry(key.clone())
        .or_insert_with(|| json!({ "ok": true, "key": key, "n": n }))
        .clone();
    let mut resp = axum::Json(stored.clone()).into_response();
    if let Some(n) = stored.get("n").and_then(Json::as_u64)
        && let Ok(v) = HeaderValue::from_str(&format!("fake-{n}"))
    {
        resp.headers_mut().insert("x-request-id", v);
    }
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn post(
        client: &reqwest::Client,
        url: &str,
        key: Option<&str>,
    ) -> (u16, Option<String>, Json) {
        let mut rb = client.post(url).json(&json!({ "hello": "world" }));
        if let Some(k) = key {
            rb = rb.header("Idempotency-Key", k);
        }
        let resp = rb.send().await.expect("send");
        let status = resp.status().as_u16();
        let retry_after = resp
            .headers()
            .get("retry-after")
            .map(|v| v.to_str().unwrap().to_string());
        (status, retry_after, resp.json().await.unwrap_or(Json::Null))
    }

    #[tokio::test]
    async fn dedupes_by_key_and_applies_faults() {
        let fake = FakeHttp::start().await;
        let c = reqwest::Client::new();
        let url = format!("{}/hook", fake.url());

        let (s, _, b) = post(&c, &url, None).await;
        assert_eq!((s, b["ok"].clone()), (400, json!(false)));

        let (s, _, b) = post(&c, &url, Some("a")).await;
        assert_eq!((s, b), (200, json!({ "ok": true, "key": "a", "n": 1 })));
        let (s, _, b) = post(&c, &url, Some("a")).await;
        assert_eq!(
            (s, b["n"].clone()),
            (200, json!(1)),
            "a repeat gets the stored answer"
        );

        fake.fail_next(2, 429, Some(3));
        let (s, ra, _) = post(&c, &url, Some("b")).await;
        assert_eq!((s, ra.as_deref()), (429, Some("3")));
        let (s, _, _) = post(&c, &url, Some("b")).await;
        assert_eq!(s, 429);
        assert!(
            !fake.has_effect("b"),
            "a transient failure performs nothing"
        );
        let (s, _, b) = post(&c, &url, Some("b")).await;
        assert_eq!((s, b["n"].clone()), (200, json!(2)));

        fake.set_status(422);
        let (s, _, b) = post(&c, &url, Some("c")).await;
        assert_eq!(
            (s, b["error"].clone()),
            (422, json!(FakeHttp::refusal_message(422)))
        );
        fake.set_status(200);
        let (s, _, _) = post(&c, &url, Some("c")).await;
        assert_eq!(s, 200);

        assert_eq!(fake.hits(), 8);
        assert_eq!(fake.effects(), 3);
        assert_eq!(
            (fake.count("a"), fake.count("b"), fake.count("c")),
            (2, 3, 2)
        );
        assert_eq!(fake.keys(), ["a", "b", "c"]);
        let r = &fake.requests()[1];
        assert_eq!(
            (r.method.as_str(), r.path.as_str(), r.key.as_deref()),
            ("POST", "/hook", Some("a"))
        );
        assert_eq!(r.body, json!({ "hello": "world" }));
    }
}
