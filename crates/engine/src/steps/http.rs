//! `http`: a generic outbound call (a Make.com or n8n webhook, an internal
//! API). It is an effect: journalled before and after, and sent with an
//! `Idempotency-Key: run_id:step_id` header so the receiver can drop
//! repeats. A generic endpoint cannot be asked whether a call happened, so
//! after a crash the call is sent again under the same key (at-least-once
//! with a dedupe key).

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use domain::expr::{Scope, Vars, value_from_json};
use domain::run::StepOutcome;
use domain::steps::{HttpSpec, parse_http};
use domain::workflow::{Cx, StepDef};
use serde_json::{Value as Json, json};
use sha2::{Digest, Sha256};

use crate::preview::{ActionPreview, Labelled};
use crate::step::{Step, StepCx, StepKind};

/// Response bodies kept in the run, at most.
const MAX_BODY: usize = 1 << 20;

pub struct Kind {
    client: reqwest::Client,
}

impl Kind {
    pub fn new(client: reqwest::Client) -> Kind {
        Kind { client }
    }
}

impl StepKind for Kind {
    fn name(&self) -> &'static str {
        "http"
    }

    fn compile(&self, def: &StepDef, scope: &Scope, cx: &mut Cx) -> Option<Arc<dyn Step>> {
        let spec = parse_http(&def.body, scope, def.timeout_ms, cx)?;
        Some(Arc::new(Http {
            spec,
            client: self.client.clone(),
        }))
    }
}

struct Http {
    spec: HttpSpec,
    client: reqwest::Client,
}

struct Request {
    url: String,
    headers: Vec<(String, String)>,
    body: Option<Vec<u8>>,
}

impl Http {
    fn render(&self, vars: &Vars) -> Result<Request, String> {
        let url = self.spec.url.render(vars)?;
        let mut headers = Vec::with_capacity(self.spec.headers.len());
        for (k, t) in &self.spec.headers {
            headers.push((k.clone(), t.render(vars)?));
        }
        let body = match &self.spec.body {
            Some(b) => Some(serde_json::to_vec(&b.render(vars)?).map_err(|e| e.to_string())?),
            None => None,
        };
        Ok(Request { url, headers, body })
    }

    /// The call as people see it: method, URL and JSON body (headers are
    /// left out: they mostly carry credentials).
    fn preview_of(&self, req: &Request) -> ActionPreview {
        let method = self.spec.method.as_str();
        let mut values = vec![
            Labelled::text("method", "Method", method),
            Labelled::text("url", "URL", req.url.clone()),
        ];
        if let Some(b) = &req.body {
            let value: Json = serde_json::from_slice(b).unwrap_or(Json::Null);
            values.push(Labelled {
                name: "body".into(),
                label: "Body".into(),
                text: String::from_utf8_lossy(b).into_owned(),
                value,
            });
        }
        // The whole URL, so that a secret one is redacted whole.
        ActionPreview::new("http", method, format!("HTTP {method} {}", req.url), values)
    }
}

#[async_trait]
impl Step for Http {
    /// One request after `effect.started`, cut off at its timeout.
    fn call_window_ms(&self) -> Option<u64> {
        Some(self.spec.timeout_ms)
    }

    fn preview(&self, vars: &Vars) -> Option<Result<ActionPreview, String>> {
        Some(self.render(vars).map(|r| self.preview_of(&r)))
    }

    async fn run(&self, cx: &mut StepCx<'_>) -> StepOutcome {
        if let Some(skipped) = cx.unticked().await {
            return skipped;
        }
        let req = match self.render(cx.vars) {
            Ok(r) => r,
            Err(error) => return StepOutcome::Permanent { error },
        };
        let mut h = Sha256::new();
        h.update(self.spec.method.as_bytes());
        h.update(b"\n");
        h.update(req.url.as_bytes());
        h.update(b"\n");
        h.update(req.body.as_deref().unwrap_or_default());
        let digest = hex::encode(h.finalize());
        if let Err(e) = cx.effect_started(&digest).await {
            return StepOutcome::Transient {
                error: format!("could not journal the effect: {e}"),
                retry_after_ms: None,
            };
        }
        let method = reqwest::Method::from_bytes(self.spec.method.as_bytes())
            .unwrap_or(reqwest::Method::POST);
        let mut rb = self
            .client
            .request(method, &req.url)
            .timeout(Duration::from_millis(self.spec.timeout_ms))
            .header("Idempotency-Key", cx.idempotency_key());
        for (k, v) in &req.headers {
            rb = rb.header(k, v);
        }
        if let Some(body) = req.body {
            rb = rb.header("Content-Type", "application/json").body(body);
        }
        let resp = match rb.send().await {
            Ok(r) => {
                cx.effect_answered();
                r
            }
            Err(e) => {
                if e.is_connect() {
                    // Never left: nothing of this attempt can land later.
                    cx.effect_answered();
                }
                return StepOutcome::Transient {
                    error: describe_reqwest(&e),
                    retry_after_ms: None,
                };
            }
        };
        let status = resp.status();
        let retry_after_ms = resp
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(parse_retry_after);
        let request_id = ["x-request-id", "x-correlation-id"]
            .iter()
            .find_map(|h| resp.headers().get(*h)?.to_str().ok().map(str::to_string));
        let bytes = match resp.bytes().await {
            Ok(b) => b,
            Err(e) => {
                return StepOutcome::Transient {
                    error: describe_reqwest(&e),
                    retry_after_ms: None,
                };
            }
        };
        let body = body_json(&bytes);
        if status.is_success() {
            cx.effect_completed(request_id);
            let response = json!({ "status": status.as_u16(), "body": body });
            let output = match &self.spec.output {
                None => response,
                Some(map) => {
                    let mut vars = cx.vars.clone();
                    vars.insert("response".into(), value_from_json(&response));
                    let mut out = serde_json::Map::new();
                    for (k, t) in map {
                        match t.render_json(&vars) {
                            Ok(v) => {
                                out.insert(k.clone(), v);
                            }
                            Err(error) => return StepOutcome::Permanent { error },
                        }
                    }
                    Json::Object(out)
                }
            };
            return StepOutcome::Done { output };
        }
        let detail = format!(
            "{} {} answered {}: {}",
            self.spec.method,
            self.spec.url.source(),
            status,
            snippet(&bytes)
        );
        if status.as_u16() == 429 || status.as_u16() == 408 || status.is_server_error() {
            StepOutcome::Transient {
                error: detail,
                retry_after_ms,
            }
        } else {
            cx.effect_failed();
            StepOutcome::Permanent { error: detail }
        }
    }
}

fn body_json(bytes: &[u8]) -> Json {
    if bytes.is_empty() {
        return Json::Null;
    }
    serde_json::from_slice(bytes).unwrap_or_else(|_| {
        let s = String::from_utf8_lossy(&bytes[..bytes.len().min(MAX_BODY)]);
        Json::String(s.into_owned())
    })
}

fn snippet(bytes: &[u8]) -> String {
    let s = String::from_utf8_lossy(&bytes[..bytes.len().min(300)]);
    s.trim().to_string()
}

/// Describes a transport error without the URL (it may carry a secret).
fn describe_reqwest(e: &reqwest::Error) -> String {
    let what = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "could not connect"
    } else if e.is_body() || e.is_decode() {
        "failed reading the response"
    } else {
        "failed"
    };
    let mut cause = String::new();
    let mut src = std::error::Error::source(e);
    while let Some(s) = src {
        cause = s.to_string();
        src = s.source();
    }
    if cause.is_empty() {
        format!("request {what}")
    } else {
        format!("request {what}: {cause}")
    }
}

/// `Retry-After` as seconds (HTTP dates are rare from APIs; treated as absent).
pub fn parse_retry_after(v: &str) -> Option<u64> {
    let secs: f64 = v.trim().parse().ok()?;
    (secs.is_finite() && secs >= 0.0).then_some((secs * 1000.0) as u64)
}
