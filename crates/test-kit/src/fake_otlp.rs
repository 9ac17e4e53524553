//! An in-process OpenTelemetry collector for trace tests: it accepts
//! `POST /v1/traces` with an OTLP/HTTP protobuf body, decodes it as an
//! `ExportTraceServiceRequest` (a body that does not decode is a problem,
//! answered 400), and keeps both the raw bytes (to grep for secrets) and
//! the spans, flattened.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use prost::Message as _;

/// One received span, ids in lowercase hex (`parent` empty for a root).
#[derive(Debug, Clone, PartialEq)]
pub struct Span {
    pub trace_id: String,
    pub span_id: String,
    pub parent: String,
    pub name: String,
    /// Attribute values as text (strings as they are, numbers and
    /// booleans formatted).
    pub attributes: BTreeMap<String, String>,
    /// The span status code: 0 unset, 1 ok, 2 error.
    pub status: i32,
    /// The resource's `service.name`.
    pub service: String,
    /// Every attribute of the resource that sent the span, as text.
    pub resource: BTreeMap<String, String>,
}

impl Span {
    /// The attribute `key`, or "" when absent.
    pub fn attr(&self, key: &str) -> &str {
        self.attributes.get(key).map_or("", String::as_str)
    }
}

/// A running fake; stops when dropped.
#[derive(Debug)]
pub struct FakeCollector {
    addr: SocketAddr,
    shared: Arc<Mutex<Book>>,
    task: tokio::task::JoinHandle<()>,
}

#[derive(Debug, Default)]
struct Book {
    bodies: Vec<Vec<u8>>,
    spans: Vec<Span>,
    problems: Vec<String>,
}

impl FakeCollector {
    pub async fn start() -> FakeCollector {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the fake collector");
        let addr = listener.local_addr().expect("local address");
        let shared = Arc::new(Mutex::new(Book::default()));
        let app = Router::new()
            .route("/v1/traces", post(traces))
            .with_state(shared.clone());
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        FakeCollector { addr, shared, task }
    }

    /// The base URL, for `OTEL_EXPORTER_OTLP_ENDPOINT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn book(&self) -> MutexGuard<'_, Book> {
        self.shared.lock().expect("collector lock")
    }

    /// Every span received so far, in arrival order.
    pub fn spans(&self) -> Vec<Span> {
        self.book().spans.clone()
    }

    /// Every request body received, as sent.
    pub fn bodies(&self) -> Vec<Vec<u8>> {
        self.book().bodies.clone()
    }

    /// What was wrong with the requests received (empty when all decoded).
    pub fn problems(&self) -> Vec<String> {
        self.book().problems.clone()
    }
}

impl Drop for FakeCollector {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn traces(
    State(shared): State<Arc<Mutex<Book>>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let mut book = shared.lock().expect("collector lock");
    book.bodies.push(body.to_vec());
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    if content_type != "application/x-protobuf" {
        book.problems.push(format!(
            "content-type {content_type:?}, not application/x-protobuf"
        ));
        return StatusCode::UNSUPPORTED_MEDIA_TYPE.into_response();
    }
    let request = match ExportTraceServiceRequest::decode(body.as_ref()) {
        Ok(r) => r,
        Err(e) => {
            book.problems
                .push(format!("not an ExportTraceServiceRequest: {e}"));
            return StatusCode::BAD_REQUEST.into_response();
        }
    };
    for resource in request.resource_spans {
        let attrs: BTreeMap<String, String> = resource
            .resource
            .iter()
            .flat_map(|r| &r.attributes)
            .map(|kv| {
                (
                    kv.key.clone(),
                    text(kv.value.as_ref().and_then(|v| v.value.as_ref())),
                )
            })
            .collect();
        let service = attrs.get("service.name").cloned().unwrap_or_default();
        for scope in resource.scope_spans {
            for s in scope.spans {
                book.spans.push(Span {
                    trace_id: hex::encode(&s.trace_id),
                    span_id: hex::encode(&s.span_id),
                    parent: hex::encode(&s.parent_span_id),
                    name: s.name,
                    attributes: s
                        .attributes
                        .iter()
                        .map(|kv| {
                            (
                                kv.key.clone(),
                                text(kv.value.as_ref().and_then(|v| v.value.as_ref())),
                            )
                        })
                        .collect(),
                    status: s.status.map_or(0, |st| st.code),
                    service: service.clone(),
                    resource: attrs.clone(),
                });
            }
        }
    }
    (
        [(header::CONTENT_TYPE, "application/x-protobuf")],
        ExportTraceServiceResponse::default().encode_to_vec(),
    )
        .into_response()
}

fn text(v: Option<&Value>) -> String {
    match v {
        Some(Value::StringValue(s)) => s.clone(),
        Some(Value::BoolValue(b)) => b.to_string(),
        Some(Value::IntValue(i)) => i.to_string(),
        Some(Value::DoubleValue(d)) => d.to_string(),
        Some(other) => format!("{other:?}"),
        None => String::new(),
    }
}
