//! An in-process OpenAI-compatible chat completions server for the `llm`
//! step's tests.
//!
//! It speaks the real wire format and checks what it is sent: every request
//! body is validated against `CreateChatCompletionRequest` from the OpenAI
//! OpenAPI document in `../shared/specs` (extracted once per process, `$ref`s
//! resolved by the jsonschema crate), and the `response_format` schema
//! against the structured-outputs strict-mode rules. A request that fails
//! either is answered `400 invalid_request_error`, like the real API, and
//! the problems are kept for the test to assert on. Its own answers can be
//! checked against `CreateChatCompletionResponse` ([`response_problems`]).
//!
//! Tests script the answers: [`FakeOpenAi::push`] queues one, and when the
//! queue is empty the default answer ([`FakeOpenAi::set_default`]) is used;
//! [`FakeOpenAi::answer_with`] answers by the request's body first (for
//! concurrent requests, whose order is not known).
//! Base URL: [`FakeOpenAi::url`] (ends in `/v1`, like `OPENAI_BASE_URL`).

use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, LazyLock, Mutex, MutexGuard};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde_json::{Value as Json, json};

/// One scripted answer.
#[derive(Debug, Clone, PartialEq)]
pub enum Reply {
    /// `message.content` is this JSON, serialised; `finish_reason: stop`.
    Json(Json),
    /// `message.content` is this text as it is (e.g. not JSON at all).
    Text(String),
    /// `message.refusal` is set, `content` is null.
    Refusal(String),
    /// `finish_reason: length` with this (cut-off) content.
    Truncated(String),
    /// `finish_reason: content_filter`, no content.
    ContentFilter,
    /// 429 `rate_limit_exceeded`, with `Retry-After: <seconds>` when given
    /// and `x-ratelimit-reset-requests` always.
    RateLimited { retry_after_s: Option<u64> },
    /// 429 `insufficient_quota` (billing): retrying does not help.
    QuotaExhausted,
    /// Any error status with an OpenAI error body.
    Error {
        status: u16,
        code: String,
        message: String,
    },
    /// A 200 whose body is not JSON.
    Garbage,
    /// Waits this long, then answers the inner reply (a slow server).
    Slow(Duration, Box<Reply>),
    /// 401 whose message repeats the bearer token it was sent, as a careless
    /// server might: the client must scrub it.
    EchoKey,
}

/// A request as received.
#[derive(Debug, Clone)]
pub struct Seen {
    pub path: String,
    /// Header names lower-cased.
    pub headers: BTreeMap<String, String>,
    pub body: Json,
    /// Why the request is not what the real API accepts; empty when valid.
    pub problems: Vec<String>,
}

/// A running fake; stops when dropped.
#[derive(Debug)]
pub struct FakeOpenAi {
    addr: SocketAddr,
    shared: Arc<Shared>,
    task: tokio::task::JoinHandle<()>,
}

#[derive(Debug)]
struct Shared {
    book: Mutex<Book>,
}

/// Answers a request by its body (see [`FakeOpenAi::answer_with`]).
pub type Responder = Arc<dyn Fn(&Json) -> Option<Reply> + Send + Sync>;

struct Book {
    /// Consulted first; `None` falls through to the script.
    responder: Option<Responder>,
    script: VecDeque<Reply>,
    default: Reply,
    seen: Vec<Seen>,
    served: Vec<Json>,
}

impl std::fmt::Debug for Book {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Book")
            .field("responder", &self.responder.is_some())
            .field("script", &self.script)
            .field("default", &self.default)
            .field("seen", &self.seen.len())
            .finish()
    }
}

impl FakeOpenAi {
    /// Binds 127.0.0.1 on a free port; answers `default` when nothing is queued.
    pub async fn start(default: Reply) -> FakeOpenAi {
        // Fail here, loudly, if the spec cannot be loaded.
        let _ = spec();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the fake OpenAI server");
        let addr = listener.local_addr().expect("local address");
        let shared = Arc::new(Shared {
            book: Mutex::new(Book {
                responder: None,
                script: VecDeque::new(),
                default,
                seen: Vec::new(),
                served: Vec::new(),
            }),
        });
        let app = Router::new().fallback(handle).with_state(shared.clone());
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        FakeOpenAi { addr, shared, task }
    }

    /// The base URL to use as `OPENAI_BASE_URL`, e.g. `http://127.0.0.1:40123/v1`.
    pub fn url(&self) -> String {
        format!("http://{}/v1", self.addr)
    }

    /// Queues an answer for the next request.
    pub fn push(&self, reply: Reply) {
        self.book().script.push_back(reply);
    }

    /// Answers each valid request by its body when `f` returns a reply
    /// (scripted per request, whatever order requests arrive in); `None`
    /// falls through to the queue and the default.
    pub fn answer_with(&self, f: impl Fn(&Json) -> Option<Reply> + Send + Sync + 'static) {
        self.book().responder = Some(Arc::new(f));
    }

    pub fn set_default(&self, reply: Reply) {
        self.book().default = reply;
    }

    /// Every request received, in order.
    pub fn requests(&self) -> Vec<Seen> {
        self.book().seen.clone()
    }

    pub fn hits(&self) -> usize {
        self.book().seen.len()
    }

    /// Every problem of every request received (empty when all were valid).
    pub fn problems(&self) -> Vec<String> {
        self.book()
            .seen
            .iter()
            .flat_map(|s| s.problems.clone())
            .collect()
    }

    /// The 200 bodies served so far.
    pub fn served(&self) -> Vec<Json> {
        self.book().served.clone()
    }

    fn book(&self) -> MutexGuard<'_, Book> {
        self.shared.book.lock().expect("fake state")
    }
}

impl Drop for FakeOpenAi {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn handle(
    State(shared): State<Arc<Shared>>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let header_map: BTreeMap<String, String> = headers
        .iter()
        .map(|(k, v)| {
            (
                k.as_str().to_string(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect();
    let parsed: Result<Json, String> =
        serde_json::from_slice(&body).map_err(|e| format!("body is not JSON: {e}"));
    let mut problems = Vec::new();
    if uri.path() != "/v1/chat/completions" {
        problems.push(format!("unknown path {}", uri.path()));
    }
    let bearer = header_map
        .get("authorization")
        .and_then(|a| a.strip_prefix("Bearer "))
        .map(str::to_string);
    if bearer.as_deref().is_none_or(str::is_empty) {
        problems.push("no `Authorization: Bearer <key>` header".into());
    }
    match &parsed {
        Ok(b) => problems.extend(request_problems(b)),
        Err(e) => problems.push(e.clone()),
    }
    let reply = {
        let mut book = shared.book.lock().expect("fake state");
        book.seen.push(Seen {
            path: uri.path().to_string(),
            headers: header_map,
            body: parsed.clone().unwrap_or(Json::Null),
            problems: problems.clone(),
        });
        if problems.is_empty() {
            let by_body = match (&book.responder, &parsed) {
                (Some(f), Ok(body)) => f(body),
                _ => None,
            };
            let next = by_body.or_else(|| book.script.pop_front());
            Some(next.unwrap_or_else(|| book.default.clone()))
        } else {
            None
        }
    };
    let Some(mut reply) = reply else {
        return error(400, "invalid_request_error", None, &problems.join("; "));
    };
    while let Reply::Slow(d, inner) = reply {
        tokio::time::sleep(d).await;
        reply = *inner;
    }
    let model = parsed
        .ok()
        .and_then(|b| b.get("model").and_then(Json::as_str).map(str::to_string))
        .unwrap_or_default();
    let ok = |content: Option<String>, refusal: Option<String>, finish: &str| {
        let body = completion_body(&model, content, refusal, finish);
        shared
            .book
            .lock()
            .expect("fake state")
            .served
            .push(body.clone());
        (
            StatusCode::OK,
            [
                ("content-type", "application/json"),
                ("x-request-id", "req_fake_1"),
                ("x-ratelimit-remaining-requests", "99"),
            ],
            body.to_string(),
        )
            .into_response()
    };
    match reply {
        Reply::Json(v) => ok(Some(v.to_string()), None, "stop"),
        Reply::Text(t) => ok(Some(t), None, "stop"),
        Reply::Refusal(r) => ok(None, Some(r), "stop"),
        Reply::Truncated(t) => ok(Some(t), None, "length"),
        Reply::ContentFilter => ok(None, None, "content_filter"),
        Reply::RateLimited { retry_after_s } => {
            let mut r = error(
                429,
                "rate_limit_exceeded",
                Some("requests"),
                "Rate limit reached for requests",
            );
            let h = r.headers_mut();
            h.insert(
                "x-ratelimit-reset-requests",
                "20ms".parse().expect("header"),
            );
            if let Some(s) = retry_after_s {
                h.insert("retry-after", s.to_string().parse().expect("header"));
            }
            r
        }
        Reply::QuotaExhausted => error(
            429,
            "insufficient_quota",
            None,
            "You exceeded your current quota, please check your plan and billing details.",
        ),
        Reply::Error {
            status,
            code,
            message,
        } => error(status, &code, None, &message),
        Reply::Garbage => (StatusCode::OK, "<html>proxy error</html>").into_response(),
        Reply::EchoKey => error(
            401,
            "invalid_api_key",
            None,
            &format!(
                "Incorrect API key provided: {}.",
                bearer.unwrap_or_default()
            ),
        ),
        Reply::Slow(..) => unreachable!("unwrapped above"),
    }
}

/// A `CreateChatCompletionResponse` body.
fn completion_body(
    model: &str,
    content: Option<String>,
    refusal: Option<String>,
    finish: &str,
) -> Json {
    json!({
        "id": "chatcmpl-fake",
        "object": "chat.completion",
        "created": 1_764_000_000,
        "model": format!("{model}-fake-snapshot"),
        "choices": [{
            "index": 0,
            "message": { "role": "assistant", "content": content, "refusal": refusal, "annotations": [] },
            "finish_reason": finish,
            "logprobs": null,
        }],
        "usage": {
            "prompt_tokens": 1000,
            "completion_tokens": 200,
            "total_tokens": 1200,
            "prompt_tokens_details": { "cached_tokens": 0, "audio_tokens": 0 },
            "completion_tokens_details": { "reasoning_tokens": 0, "audio_tokens": 0, "accepted_prediction_tokens": 0, "rejected_prediction_tokens": 0 },
        },
        "system_fingerprint": "fp_fake",
        "service_tier": "default",
    })
}

/// An `ErrorResponse` with `status`.
fn error(status: u16, code: &str, param: Option<&str>, message: &str) -> Response {
    let kind = match status {
        429 if code == "insufficient_quota" => "insufficient_quota",
        429 => "requests",
        400 => "invalid_request_error",
        401 => "invalid_request_error",
        _ => "server_error",
    };
    let body =
        json!({ "error": { "message": message, "type": kind, "param": param, "code": code } });
    (
        StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
        [
            ("content-type", "application/json"),
            ("x-request-id", "req_fake_err"),
        ],
        body.to_string(),
    )
        .into_response()
}

// ---------------------------------------------------------------- the spec

struct Spec {
    request: jsonschema::Validator,
    response: jsonschema::Validator,
}

/// Where the shared specs live: `COUNTERSIGN_SPECS_DIR`, or `../shared/specs`
/// beside the repository.
fn specs_dir() -> PathBuf {
    std::env::var_os("COUNTERSIGN_SPECS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/../../../shared/specs"
            ))
        })
}

static SPEC: LazyLock<Result<Spec, String>> = LazyLock::new(load_spec);

fn spec() -> &'static Spec {
    match &*SPEC {
        Ok(s) => s,
        Err(e) => panic!("the fake OpenAI server cannot load its spec: {e}"),
    }
}

fn load_spec() -> Result<Spec, String> {
    let path = specs_dir().join("openai-chat-completions-extract.yaml");
    let text = std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    let doc = domain::yaml::parse(&text, &|_| None)
        .map_err(|es| {
            format!(
                "{}: {}",
                path.display(),
                es.iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join("; ")
            )
        })?
        .to_json();
    let schemas = doc
        .pointer("/components/schemas")
        .cloned()
        .ok_or_else(|| format!("{}: no components.schemas", path.display()))?;
    let build = |name: &str| -> Result<jsonschema::Validator, String> {
        if schemas.get(name).is_none() {
            return Err(format!("{}: no schema {name}", path.display()));
        }
        let root = json!({
            "$ref": format!("#/components/schemas/{name}"),
            "components": { "schemas": schemas },
        });
        jsonschema::options()
            .with_draft(jsonschema::Draft::Draft202012)
            .build(&root)
            .map_err(|e| format!("{name}: {e}"))
    };
    Ok(Spec {
        request: build("CreateChatCompletionRequest")?,
        response: build("CreateChatCompletionResponse")?,
    })
}

fn problems_of(v: &jsonschema::Validator, body: &Json) -> Vec<String> {
    v.iter_errors(body)
        .map(|e| {
            let mut msg = e.to_string();
            if msg.len() > 300 {
                msg.truncate(300);
            }
            format!("{}: {msg}", e.instance_path())
        })
        .collect()
}

/// Why `body` is not a request the API accepts: the OpenAPI schema, then
/// the structured-outputs rules for `response_format`.
pub fn request_problems(body: &Json) -> Vec<String> {
    let mut out = problems_of(&spec().request, body);
    if let Some(rf) = body.get("response_format")
        && rf.get("type").and_then(Json::as_str) == Some("json_schema")
    {
        let js = &rf["json_schema"];
        let name = js.get("name").and_then(Json::as_str).unwrap_or_default();
        if name.is_empty()
            || name.len() > 64
            || !name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        {
            out.push(format!(
                "response_format.json_schema.name {name:?} must be 1-64 of [a-zA-Z0-9_-]"
            ));
        }
        if js.get("strict") == Some(&Json::Bool(true)) {
            let schema = js.get("schema").cloned().unwrap_or(Json::Null);
            if schema.get("type").and_then(Json::as_str) != Some("object") {
                out.push("strict schema: the root must be an object".into());
            }
            strict_problems(&schema, "#", &mut out);
        }
    }
    out
}

/// Why the fake's own answer is not a `CreateChatCompletionResponse`.
pub fn response_problems(body: &Json) -> Vec<String> {
    problems_of(&spec().response, body)
}

/// Keywords OpenAI strict mode accepts (CONTRACTS.md §1).
const STRICT_KEYWORDS: &[&str] = &[
    "type",
    "enum",
    "const",
    "description",
    "properties",
    "items",
    "required",
    "additionalProperties",
    "anyOf",
    "pattern",
    "format",
    "minimum",
    "maximum",
    "exclusiveMinimum",
    "exclusiveMaximum",
    "multipleOf",
    "minItems",
    "maxItems",
    "$defs",
    "$ref",
];

fn strict_problems(s: &Json, at: &str, out: &mut Vec<String>) {
    let Json::Object(m) = s else {
        out.push(format!("strict schema {at}: not an object"));
        return;
    };
    for k in m.keys() {
        if !STRICT_KEYWORDS.contains(&k.as_str()) {
            out.push(format!(
                "strict schema {at}: keyword `{k}` is not supported"
            ));
        }
    }
    if let Some(Json::Object(props)) = m.get("properties") {
        if m.get("additionalProperties") != Some(&Json::Bool(false)) {
            out.push(format!(
                "strict schema {at}: additionalProperties must be false"
            ));
        }
        let required: Vec<&str> = m
            .get("required")
            .and_then(Json::as_array)
            .map(|r| r.iter().filter_map(Json::as_str).collect())
            .unwrap_or_default();
        for name in props.keys() {
            if !required.contains(&name.as_str()) {
                out.push(format!(
                    "strict schema {at}: property `{name}` must be listed in required"
                ));
            }
        }
        for (name, p) in props {
            strict_problems(p, &format!("{at}/properties/{name}"), out);
        }
    }
    if let Some(items) = m.get("items") {
        strict_problems(items, &format!("{at}/items"), out);
    }
    if let Some(Json::Array(any)) = m.get("anyOf") {
        for (i, a) in any.iter().enumerate() {
            strict_problems(a, &format!("{at}/anyOf/{i}"), out);
        }
    }
}
