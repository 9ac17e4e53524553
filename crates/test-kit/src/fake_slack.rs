//! An in-process Slack Web API for the `slack` step's tests:
//! `chat.postMessage`, `chat.update`, `conversations.history` and
//! `conversations.list`.
//!
//! It checks what it is sent: the bearer token, the JSON content type,
//! every argument name against the method's parameters in
//! `slack_web_openapi_v2.json` (plus the newer `metadata` /
//! `include_all_metadata`, which the 2020 spec predates), required
//! arguments, the Block Kit shape (at most 50 blocks, a `type` on each,
//! section text ≤ 3,000, button text ≤ 75, unique `action_id`s) and the
//! `metadata` shape. A bad request gets Slack's own answer (HTTP 200,
//! `ok: false`) and the problem is kept for the test (`problems`).
//!
//! Channels: `#ops-intake` is `C0OPSINTAKE`, `#reviewers` is `C0REVIEWERS`;
//! anything else is `channel_not_found`. Fault modes: `fail_next` (429 with
//! `Retry-After`, or 5xx), `delay` (the message is posted *before* the
//! delay, like a server that did the work but is slow to say so) and
//! `missing_scope` (a token without the scope a method needs).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, LazyLock, Mutex, MutexGuard};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value as Json, json};

/// The bot token the fake accepts.
pub const TOKEN: &str = "xoxb-fake-0123456789-secret";

/// A message as posted.
#[derive(Debug, Clone, PartialEq)]
pub struct Posted {
    pub channel: String,
    pub ts: String,
    pub text: String,
    pub blocks: Option<Json>,
    pub metadata: Option<Json>,
}

/// A running fake; stops when dropped.
#[derive(Debug)]
pub struct FakeSlack {
    addr: SocketAddr,
    shared: Arc<Mutex<Book>>,
    task: tokio::task::JoinHandle<()>,
}

#[derive(Debug, Default)]
struct Book {
    posted: Vec<Posted>,
    calls: Vec<(String, Json)>,
    problems: Vec<String>,
    fail_next: Option<(u32, u16, Option<u64>)>,
    delay_ms: u64,
    /// `chat.postMessage` performed only this long after it arrives.
    post_lands_after_ms: u64,
    next_ts: u64,
    /// Method → the scope the token lacks for it.
    missing_scopes: BTreeMap<String, String>,
}

const CHANNELS: &[(&str, &str)] = &[("ops-intake", "C0OPSINTAKE"), ("reviewers", "C0REVIEWERS")];

impl FakeSlack {
    pub async fn start() -> FakeSlack {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the fake Slack");
        let addr = listener.local_addr().expect("local address");
        let shared = Arc::new(Mutex::new(Book::default()));
        let app = Router::new().fallback(handle).with_state(shared.clone());
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        FakeSlack { addr, shared, task }
    }

    /// `SLACK_API_URL`: ends in `/api`.
    pub fn url(&self) -> String {
        format!("http://{}/api", self.addr)
    }

    pub fn posted(&self) -> Vec<Posted> {
        self.book().posted.clone()
    }

    /// Messages whose metadata carries `key`.
    pub fn count_key(&self, key: &str) -> usize {
        self.book()
            .posted
            .iter()
            .filter(|p| {
                p.metadata
                    .as_ref()
                    .is_some_and(|m| m["event_payload"]["key"] == key)
            })
            .count()
    }

    /// Every call as `(method, arguments)`.
    pub fn calls(&self) -> Vec<(String, Json)> {
        self.book().calls.clone()
    }

    /// Why requests were not what Slack accepts; empty when all were valid.
    pub fn problems(&self) -> Vec<String> {
        self.book().problems.clone()
    }

    /// Answers the next `n` calls with `status` (429 gets `Retry-After`).
    pub fn fail_next(&self, n: u32, status: u16, retry_after: Option<u64>) {
        self.book().fail_next = (n > 0).then_some((n, status, retry_after));
    }

    /// Answers `method` as Slack does when the token lacks `scope`
    /// (`missing_scope`, with `needed`); `None` grants it again.
    pub fn missing_scope(&self, method: &str, scope: Option<&str>) {
        let mut book = self.book();
        match scope {
            Some(s) => book.missing_scopes.insert(method.into(), s.into()),
            None => book.missing_scopes.remove(method),
        };
    }

    /// Performs each `chat.postMessage` only `ms` after it arrives, then
    /// answers, and posts it even when the caller has gone by then (a
    /// request still in flight inside Slack when the caller died).
    pub fn land_posts_after(&self, ms: u64) {
        self.book().post_lands_after_ms = ms;
    }

    /// Holds every answer back by `ms`, after doing the work.
    pub fn delay(&self, ms: u64) {
        self.book().delay_ms = ms;
    }

    fn book(&self) -> MutexGuard<'_, Book> {
        self.shared.lock().expect("fake state")
    }
}

impl Drop for FakeSlack {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn ok_false(code: &str) -> Response {
    axum::Json(json!({ "ok": false, "error": code })).into_response()
}

async fn handle(
    State(shared): State<Arc<Mutex<Book>>>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let method = uri.path().trim_start_matches("/api/").to_string();
    let (resp, delay) = {
        let mut book = shared.lock().expect("fake state");
        let args: Json = if body.is_empty() {
            let q: BTreeMap<String, String> = uri.query().map(url_pairs).unwrap_or_default();
            json!(q)
        } else {
            serde_json::from_slice(&body).unwrap_or(Json::Null)
        };
        book.calls.push((method.clone(), args.clone()));
        if method == "chat.postMessage" && book.post_lands_after_ms > 0 {
            (Err(args), book.post_lands_after_ms)
        } else {
            (
                Ok(answer(&mut book, &method, &headers, !body.is_empty(), args)),
                book.delay_ms,
            )
        }
    };
    let resp = match resp {
        Ok(r) => r,
        Err(args) => {
            // Posted by a task of its own after `delay`: dropping this
            // handler (the client hung up) does not stop it.
            let landed = tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(delay)).await;
                let mut book = shared.lock().expect("fake state");
                answer(&mut book, &method, &headers, true, args)
            });
            return landed
                .await
                .unwrap_or_else(|_| axum::http::StatusCode::INTERNAL_SERVER_ERROR.into_response());
        }
    };
    if delay > 0 {
        tokio::time::sleep(Duration::from_millis(delay)).await;
    }
    resp
}

fn url_pairs(q: &str) -> BTreeMap<String, String> {
    url::form_urlencoded::parse(q.as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

fn answer(
    book: &mut Book,
    method: &str,
    headers: &HeaderMap,
    has_body: bool,
    args: Json,
) -> Response {
    if let Some((n, status, retry)) = book.fail_next {
        book.fail_next = (n > 1).then_some((n - 1, status, retry));
        let mut r = (
            StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            "fake failure",
        )
            .into_response();
        if let Some(s) = retry {
            r.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(s));
        }
        return r;
    }
    let auth = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    if auth != Some(&format!("Bearer {TOKEN}")) {
        return ok_false(if auth.is_none() {
            "not_authed"
        } else {
            "invalid_auth"
        });
    }
    if let Some(needed) = book.missing_scopes.get(method) {
        return axum::Json(json!({ "ok": false, "error": "missing_scope", "needed": needed, "provided": "chat:write" }))
            .into_response();
    }
    let Some(params) = spec_params(method) else {
        return ok_false("unknown_method");
    };
    let Json::Object(map) = &args else {
        book.problems
            .push(format!("{method}: the body is not a JSON object"));
        return ok_false("json_not_object");
    };
    if has_body {
        let ct = headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        if !ct.starts_with("application/json") {
            book.problems.push(format!(
                "{method}: Content-Type {ct:?} is not application/json"
            ));
            return ok_false("invalid_post_type");
        }
    }
    for k in map.keys() {
        if !params.iter().any(|(p, _)| p == k) && !NEWER.contains(&(method, k.as_str())) {
            book.problems
                .push(format!("{method}: argument {k:?} is not in the spec"));
            return ok_false("invalid_arg_name");
        }
    }
    for (p, required) in &params {
        if *required && p != "token" && !map.contains_key(p) {
            book.problems
                .push(format!("{method}: required argument {p:?} missing"));
            return ok_false("invalid_arguments");
        }
    }
    match method {
        "chat.postMessage" => post_message(book, map),
        "chat.update" => update_message(book, map),
        "conversations.history" => history(book, map),
        "conversations.list" => axum::Json(json!({
            "ok": true,
            "channels": CHANNELS.iter().map(|(n, id)| json!({ "id": id, "name": n })).collect::<Vec<_>>(),
            "response_metadata": { "next_cursor": "" },
        }))
        .into_response(),
        _ => ok_false("unknown_method"),
    }
}

/// Arguments the 2020 spec predates, accepted by today's Slack.
const NEWER: &[(&str, &str)] = &[
    ("chat.postMessage", "metadata"),
    ("conversations.history", "include_all_metadata"),
];

fn channel_id(c: &str) -> Option<&'static str> {
    let name = c.trim_start_matches('#');
    CHANNELS
        .iter()
        .find(|(n, id)| *n == name || *id == c)
        .map(|(_, id)| *id)
}

fn post_message(book: &mut Book, args: &serde_json::Map<String, Json>) -> Response {
    let Some(channel) = args
        .get("channel")
        .and_then(Json::as_str)
        .and_then(channel_id)
    else {
        return ok_false("channel_not_found");
    };
    let text = args
        .get("text")
        .and_then(Json::as_str)
        .unwrap_or("")
        .to_string();
    let blocks = args.get("blocks").cloned();
    if text.is_empty() && blocks.is_none() {
        return ok_false("no_text");
    }
    if let Some(b) = &blocks
        && let Err(p) = check_blocks(b)
    {
        book.problems.push(format!("chat.postMessage: {p}"));
        return ok_false("invalid_blocks");
    }
    let metadata = args.get("metadata").cloned();
    if let Some(m) = &metadata
        && !(m["event_type"].is_string() && m["event_payload"].is_object())
    {
        book.problems
            .push("chat.postMessage: metadata needs event_type and event_payload".into());
        return ok_false("invalid_metadata_format");
    }
    book.next_ts += 1;
    let ts = format!("1700000000.{:06}", book.next_ts);
    book.posted.push(Posted {
        channel: channel.to_string(),
        ts: ts.clone(),
        text: text.clone(),
        blocks,
        metadata,
    });
    axum::Json(
        json!({ "ok": true, "channel": channel, "ts": ts, "message": { "text": text, "ts": ts } }),
    )
    .into_response()
}

/// `chat.update`: replaces the text and blocks of a posted message,
/// found by channel ID and `ts`.
fn update_message(book: &mut Book, args: &serde_json::Map<String, Json>) -> Response {
    let Some(channel) = args
        .get("channel")
        .and_then(Json::as_str)
        .filter(|c| CHANNELS.iter().any(|(_, id)| id == c))
    else {
        return ok_false("channel_not_found");
    };
    let ts = args.get("ts").and_then(Json::as_str).unwrap_or("");
    let blocks = args.get("blocks").cloned();
    if let Some(b) = &blocks
        && let Err(p) = check_blocks(b)
    {
        book.problems.push(format!("chat.update: {p}"));
        return ok_false("invalid_blocks");
    }
    let Some(m) = book
        .posted
        .iter_mut()
        .find(|p| p.channel == channel && p.ts == ts)
    else {
        return ok_false("message_not_found");
    };
    if let Some(t) = args.get("text").and_then(Json::as_str) {
        m.text = t.to_string();
    }
    m.blocks = blocks;
    let text = m.text.clone();
    axum::Json(json!({ "ok": true, "channel": channel, "ts": ts, "text": text })).into_response()
}

fn history(book: &mut Book, args: &serde_json::Map<String, Json>) -> Response {
    let Some(c) = args.get("channel").and_then(Json::as_str) else {
        return ok_false("channel_not_found");
    };
    // History takes an ID only: names are Slack's `channel_not_found` here.
    if !CHANNELS.iter().any(|(_, id)| *id == c) {
        return ok_false("channel_not_found");
    }
    let with_meta = args.get("include_all_metadata").and_then(Json::as_str) == Some("true");
    let messages: Vec<Json> = book
        .posted
        .iter()
        .rev()
        .filter(|p| p.channel == c)
        .map(|p| {
            let mut m = json!({ "type": "message", "ts": p.ts, "text": p.text });
            if with_meta && let Some(md) = &p.metadata {
                m["metadata"] = md.clone();
            }
            m
        })
        .collect();
    axum::Json(json!({ "ok": true, "messages": messages, "has_more": false, "response_metadata": { "next_cursor": "" } }))
        .into_response()
}

/// Block Kit rules the fake enforces.
pub fn check_blocks(b: &Json) -> Result<(), String> {
    let list = b.as_array().ok_or("blocks is not a list")?;
    if list.len() > 50 {
        return Err(format!("{} blocks (max 50)", list.len()));
    }
    let mut action_ids = std::collections::HashSet::new();
    for (i, blk) in list.iter().enumerate() {
        let ty = blk["type"]
            .as_str()
            .ok_or(format!("block {i} has no type"))?;
        match ty {
            "section" | "header" | "context" | "divider" | "actions" | "image" | "input"
            | "rich_text" => {}
            other => return Err(format!("block {i}: unknown type {other:?}")),
        }
        if ty == "section" {
            let t = blk["text"]["text"].as_str().unwrap_or("");
            if blk.get("text").is_some()
                && !matches!(blk["text"]["type"].as_str(), Some("mrkdwn" | "plain_text"))
            {
                return Err(format!(
                    "block {i}: section text needs type mrkdwn or plain_text"
                ));
            }
            if t.chars().count() > 3000 {
                return Err(format!("block {i}: section text over 3000 characters"));
            }
        }
        if ty == "actions" {
            let els = blk["elements"]
                .as_array()
                .ok_or(format!("block {i}: actions without elements"))?;
            if els.len() > 25 {
                return Err(format!("block {i}: more than 25 elements"));
            }
            for e in els {
                if e["type"] == "button" {
                    if e["text"]["text"].as_str().map_or(0, |t| t.chars().count()) > 75 {
                        return Err(format!("block {i}: button text over 75 characters"));
                    }
                    if let Some(a) = e["action_id"].as_str()
                        && !action_ids.insert(a.to_string())
                    {
                        return Err(format!("block {i}: duplicate action_id {a:?}"));
                    }
                }
            }
        }
    }
    Ok(())
}

/// `(name, required)` of a method's parameters in the Slack spec.
fn spec_params(method: &str) -> Option<Vec<(String, bool)>> {
    let spec = SPEC
        .as_ref()
        .unwrap_or_else(|e| panic!("the fake Slack cannot load its spec: {e}"));
    let path = spec["paths"].get(format!("/{method}"))?;
    let op = path.get("post").or_else(|| path.get("get"))?;
    Some(
        op["parameters"]
            .as_array()?
            .iter()
            .filter_map(|p| Some((p["name"].as_str()?.to_string(), p["required"] == true)))
            .collect(),
    )
}

static SPEC: LazyLock<Result<Json, String>> = LazyLock::new(|| {
    let path = specs_dir().join("slack_web_openapi_v2.json");
    let text = std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))
});

/// `COUNTERSIGN_SPECS_DIR`, or `../shared/specs` beside the repository.
pub fn specs_dir() -> PathBuf {
    std::env::var_os("COUNTERSIGN_SPECS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/../../../shared/specs"
            ))
        })
}
