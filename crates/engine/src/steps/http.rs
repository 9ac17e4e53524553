//! `http`: a generic outbound call (a Make.com or n8n webhook, an internal
//! API). It is an effect: journalled before and after, and sent with an
//! `Idempotency-Key: run_id:step_id` header so the receiver can drop
//! repeats. A generic endpoint cannot be asked whether a call happened, so
//! after a crash the call is sent again under the same key (at-least-once
//! with a dedupe key).
//!
//! Outbound safety: values are percent-encoded per URL component and the
//! origin is fixed in the workflow file (or checked against `allow_hosts`,
//! see `domain::url`); redirects are not followed unless the step says
//! `follow_redirects: true`, and then the workflow's headers never go to
//! another origin; a response larger than `max_response_bytes` (1 MiB by
//! default) fails the step, read incrementally so it is never held whole.

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

/// Redirects followed at most, when a step follows them at all.
const MAX_REDIRECTS: usize = 5;

/// Where a deployment lets `http` steps connect.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Policy {
    /// Refuse loopback, private, link-local and other non-public addresses
    /// (SSRF protection). A host name is resolved once and the call goes
    /// to the addresses checked, so a second lookup cannot rebind it. Off
    /// by default: tests and local setups call fakes on 127.0.0.1.
    pub deny_private: bool,
}

pub struct Kind {
    client: reqwest::Client,
    policy: Policy,
}

impl Kind {
    /// Builds the step's own client: it never follows a redirect by itself
    /// (a shared client may), so every hop passes this step's checks.
    pub fn new() -> Kind {
        Kind::with_policy(Policy::default())
    }

    pub fn with_policy(policy: Policy) -> Kind {
        let mut b = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(Duration::from_secs(10))
            .pool_idle_timeout(Duration::from_secs(60))
            .user_agent(concat!("countersign/", env!("CARGO_PKG_VERSION")));
        if policy.deny_private {
            b = b.dns_resolver(Arc::new(PublicOnly));
        }
        Kind {
            client: b.build().unwrap_or_default(),
            policy,
        }
    }
}

/// Resolves host names and refuses any that has a non-public address; the
/// connection uses the addresses returned here (no second lookup).
struct PublicOnly;

impl reqwest::dns::Resolve for PublicOnly {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let host = name.as_str().to_string();
        Box::pin(async move {
            let addrs: Vec<std::net::SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            if let Some(a) = addrs.iter().find(|a| !is_public(a.ip())) {
                return Err(format!(
                    "{host} resolves to the non-public address {}, refused by COUNTERSIGN_HTTP_DENY_PRIVATE",
                    a.ip()
                )
                .into());
            }
            Ok(Box::new(addrs.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

/// Whether `ip` is a public unicast address (not loopback, private,
/// link-local, shared, documentation, multicast, reserved…).
pub fn is_public(ip: std::net::IpAddr) -> bool {
    use std::net::IpAddr;
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, ..] = v4.octets();
            !(v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_broadcast()
                || v4.is_documentation()
                || v4.is_unspecified()
                || v4.is_multicast()
                || a == 0
                || a >= 240
                || (a == 100 && (64..128).contains(&b))
                || (a == 198 && (b == 18 || b == 19))
                || (a == 192 && b == 0 && v4.octets()[2] == 0))
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_public(IpAddr::V4(v4));
            }
            let s = v6.segments();
            !(v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (s[0] & 0xfe00) == 0xfc00
                || (s[0] & 0xffc0) == 0xfe80
                || (s[0] == 0x2001 && s[1] == 0x0db8)
                || s[0] == 0x0064 && s[1] == 0xff9b)
        }
    }
}

impl Default for Kind {
    fn default() -> Kind {
        Kind::new()
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
            policy: self.policy,
        }))
    }
}

struct Http {
    spec: HttpSpec,
    client: reqwest::Client,
    policy: Policy,
}

struct Request {
    url: String,
    headers: Vec<(String, String)>,
    body: Option<Vec<u8>>,
}

impl Http {
    fn render(&self, vars: &Vars) -> Result<Request, String> {
        let url = self.spec.url.render(vars)?;
        let parsed = reqwest::Url::parse(&url)
            .map_err(|e| format!("url is not valid after rendering: {e}"))?;
        self.check_target(&parsed, true)?;
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
        // Whether the call got an answer (or never left): then nothing of
        // this attempt can land later (the in-flight rule).
        let mut answered = false;
        let operation = method.clone();
        let sent = crate::trace::call(
            "http",
            operation.as_str(),
            self.send(method, &req, cx.idempotency_key(), &mut answered),
            |sent| match sent {
                Ok(r) if r.status().is_success() => "ok",
                Ok(r) if r.status().is_client_error() => "client_error",
                Ok(r) if r.status().is_server_error() => "server_error",
                Ok(_) => "other_status",
                Err(o) => crate::trace::outcome_label(o),
            },
        )
        .await;
        if answered {
            cx.effect_answered();
        }
        let resp = match sent {
            Ok(r) => r,
            Err(outcome) => {
                if matches!(outcome, StepOutcome::Permanent { .. }) {
                    cx.effect_failed();
                }
                return outcome;
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
        let max = usize::try_from(self.spec.max_response_bytes).unwrap_or(usize::MAX);
        let (bytes, too_large) = match read_limited(resp, max).await {
            Ok(r) => r,
            Err(e) => {
                return StepOutcome::Transient {
                    error: describe_reqwest(&e),
                    retry_after_ms: None,
                };
            }
        };
        if status.is_success() && too_large {
            // The call was made and answered; only its answer is refused.
            cx.effect_completed(request_id);
            return StepOutcome::Permanent {
                error: format!(
                    "{} {} answered {status} with a response larger than max_response_bytes ({} bytes); \
                     raise max_response_bytes on the step or ask the endpoint for less",
                    self.spec.method,
                    self.spec.url.source(),
                    self.spec.max_response_bytes
                ),
            };
        }
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
        let hint = if status.is_redirection() {
            " (redirects are not followed unless the step sets follow_redirects: true)"
        } else {
            ""
        };
        let detail = format!(
            "{} {} answered {}{hint}: {}",
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

impl Http {
    /// Whether `url` may be called: http(s), on the origin written in the
    /// file, or on a host of `allow_hosts`.
    fn check_target(&self, url: &reqwest::Url, first: bool) -> Result<(), String> {
        if !matches!(url.scheme(), "http" | "https") {
            return Err(format!(
                "url scheme {:?} is not http or https",
                url.scheme()
            ));
        }
        // Host names are checked by the resolver; literal addresses here.
        if self.policy.deny_private
            && let Some(ip) = url.host_str().and_then(|h| {
                h.trim_start_matches('[')
                    .trim_end_matches(']')
                    .parse::<std::net::IpAddr>()
                    .ok()
            })
            && !is_public(ip)
        {
            return Err(format!(
                "{ip} is not a public address, refused by COUNTERSIGN_HTTP_DENY_PRIVATE"
            ));
        }
        if !self.spec.allow_hosts.is_empty() {
            let host = url.host_str().unwrap_or_default().to_ascii_lowercase();
            let port = url.port_or_known_default().unwrap_or_default();
            let with_port = format!("{host}:{port}");
            if !self
                .spec
                .allow_hosts
                .iter()
                .any(|h| *h == host || *h == with_port)
            {
                return Err(format!(
                    "host {host:?} is not in the step's allow_hosts ({})",
                    self.spec.allow_hosts.join(", ")
                ));
            }
        } else if first
            && let Some(origin) = self.spec.url.fixed_origin()
            && reqwest::Url::parse(origin).map(|o| o.origin()).ok() != Some(url.origin())
        {
            return Err("the url's values changed its origin".into());
        }
        Ok(())
    }

    /// Sends the request, following redirects only when the step says so:
    /// at most [`MAX_REDIRECTS`], each target checked like the first, and
    /// with no header of the workflow's (nor the idempotency key) once the
    /// call has left the first origin.
    async fn send(
        &self,
        mut method: reqwest::Method,
        req: &Request,
        idempotency_key: String,
        answered: &mut bool,
    ) -> Result<reqwest::Response, StepOutcome> {
        let permanent = |error: String| StepOutcome::Permanent { error };
        // Parsed and checked by `render`.
        let mut url = reqwest::Url::parse(&req.url)
            .map_err(|e| permanent(format!("url is not valid after rendering: {e}")))?;
        let origin = url.origin();
        let mut body = req.body.clone();
        let mut hops = 0;
        loop {
            let same_origin = url.origin() == origin;
            let mut rb = self
                .client
                .request(method.clone(), url.clone())
                .timeout(Duration::from_millis(self.spec.timeout_ms));
            if same_origin {
                rb = rb.header("Idempotency-Key", &idempotency_key);
                for (k, v) in &req.headers {
                    rb = rb.header(k, v);
                }
            }
            if let Some(b) = &body {
                rb = rb
                    .header("Content-Type", "application/json")
                    .body(b.clone());
            }
            let resp = rb.send().await.map_err(|e| {
                if e.is_connect() {
                    // Never left: nothing of this call can land later.
                    *answered = true;
                }
                StepOutcome::Transient {
                    error: describe_reqwest(&e),
                    retry_after_ms: None,
                }
            })?;
            *answered = true;
            let status = resp.status();
            let location = resp
                .headers()
                .get(reqwest::header::LOCATION)
                .and_then(|v| v.to_str().ok());
            let (true, true, Some(location)) = (
                self.spec.follow_redirects,
                status.is_redirection(),
                location,
            ) else {
                return Ok(resp);
            };
            hops += 1;
            if hops > MAX_REDIRECTS {
                return Err(permanent(format!(
                    "more than {MAX_REDIRECTS} redirects from {}",
                    self.spec.url.source()
                )));
            }
            let next = url
                .join(location)
                .map_err(|e| permanent(format!("redirect to an invalid url: {e}")))?;
            self.check_target(&next, false)
                .map_err(|e| permanent(format!("refused a redirect: {e}")))?;
            if matches!(status.as_u16(), 301..=303) && method != reqwest::Method::HEAD {
                method = reqwest::Method::GET;
                body = None;
            }
            url = next;
        }
    }
}

/// Reads at most `max` bytes of the body, chunk by chunk; `true` when the
/// body was longer (the rest is never read).
async fn read_limited(
    mut resp: reqwest::Response,
    max: usize,
) -> Result<(Vec<u8>, bool), reqwest::Error> {
    if resp
        .content_length()
        .is_some_and(|n| n > u64::try_from(max).unwrap_or(u64::MAX))
    {
        return Ok((Vec::new(), true));
    }
    let mut out = Vec::new();
    while let Some(chunk) = resp.chunk().await? {
        if out.len() + chunk.len() > max {
            let room = max - out.len();
            out.extend_from_slice(&chunk[..room]);
            return Ok((out, true));
        }
        out.extend_from_slice(&chunk);
    }
    Ok((out, false))
}

fn body_json(bytes: &[u8]) -> Json {
    if bytes.is_empty() {
        return Json::Null;
    }
    serde_json::from_slice(bytes)
        .unwrap_or_else(|_| Json::String(String::from_utf8_lossy(bytes).into_owned()))
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

#[cfg(test)]
mod tests {
    use super::is_public;

    #[test]
    fn public_addresses() {
        for a in ["93.184.216.34", "2606:4700::1111", "8.8.8.8"] {
            assert!(is_public(a.parse().unwrap()), "{a}");
        }
        for a in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "::1",
            "fd00::1",
            "fe80::1",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
        ] {
            assert!(!is_public(a.parse().unwrap()), "{a}");
        }
    }
}
