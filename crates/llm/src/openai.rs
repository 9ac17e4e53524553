//! The OpenAI-compatible provider: `POST {OPENAI_BASE_URL}/chat/completions`
//! with `response_format: json_schema, strict: true` (CONTRACTS.md §1).
//!
//! Written on the shared `reqwest` client and serde rather than
//! async-openai: we need the raw body for the audit log, the status and
//! headers of failures (`Retry-After`, `x-ratelimit-reset-*`,
//! `x-request-id`) to classify them, and no retries inside the client —
//! the step and the engine's durable retry decide (ARCHITECTURE.md).
//!
//! The API key goes into one header and nowhere else; anything the server
//! echoes back is scrubbed of it before it is returned.

use std::collections::BTreeMap;
use std::time::Duration;

use async_trait::async_trait;
use reqwest::header::HeaderMap;
use serde_json::{Value as Json, json};

use crate::provider::{Completion, Detail, Error, LlmProvider, Request, Usage};

/// The public endpoint.
pub const DEFAULT_BASE_URL: &str = "https://api.openai.com/v1";

/// Bodies kept for the audit log, at most.
const MAX_RAW: usize = 256 * 1024;

/// Connection settings, read once at start-up.
#[derive(Clone)]
pub struct Settings {
    pub base_url: String,
    pub api_key: Option<String>,
}

impl std::fmt::Debug for Settings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Settings")
            .field("base_url", &self.base_url)
            .field("api_key", &self.api_key.as_ref().map(|_| "[redacted]"))
            .finish()
    }
}

/// An OpenAI-compatible chat completions endpoint.
pub struct OpenAi {
    client: reqwest::Client,
    settings: Settings,
    url: String,
    /// Azure OpenAI takes the key in `api-key` rather than a bearer token.
    azure: bool,
}

impl std::fmt::Debug for OpenAi {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpenAi").field("url", &self.url).finish()
    }
}

impl OpenAi {
    pub fn new(client: reqwest::Client, settings: Settings) -> OpenAi {
        let base = settings.base_url.trim_end_matches('/').to_string();
        let azure = base.contains(".openai.azure.com");
        OpenAi {
            client,
            url: format!("{base}/chat/completions"),
            settings,
            azure,
        }
    }

    fn scrub(&self, text: &str) -> String {
        match &self.settings.api_key {
            Some(k) if k.len() >= 4 => text.replace(k.as_str(), "[redacted]"),
            _ => text.to_string(),
        }
    }

    fn scrub_json(&self, v: Json) -> Json {
        match &self.settings.api_key {
            Some(k) if k.len() >= 4 && v.to_string().contains(k.as_str()) => {
                serde_json::from_str(&self.scrub(&v.to_string())).unwrap_or(Json::Null)
            }
            _ => v,
        }
    }

    /// The request body, as sent (and recorded).
    pub fn body(req: &Request<'_>) -> Json {
        let mut body = json!({
            "model": req.model,
            "messages": req.messages.iter().map(|m| m.to_json()).collect::<Vec<_>>(),
            "response_format": {
                "type": "json_schema",
                "json_schema": { "name": req.schema_name, "strict": true, "schema": req.schema },
            },
            "max_completion_tokens": req.max_tokens,
        });
        if let Some(t) = req.temperature {
            body["temperature"] = json!(t);
        }
        body
    }
}

#[async_trait]
impl LlmProvider for OpenAi {
    fn name(&self) -> &str {
        "openai"
    }

    fn unavailable(&self) -> Option<String> {
        match &self.settings.api_key {
            Some(k) if !k.trim().is_empty() => None,
            _ => Some("OPENAI_API_KEY is not set".into()),
        }
    }

    fn secrets(&self) -> Vec<String> {
        self.settings
            .api_key
            .iter()
            .filter(|k| k.len() >= 4)
            .cloned()
            .collect()
    }

    /// Traced as the `llm` call `chat.completions`.
    async fn complete(&self, req: &Request<'_>) -> Result<Completion, Error> {
        engine::trace::call(
            "llm",
            "chat.completions",
            self.complete_untraced(req),
            |answer| match answer {
                Ok(_) => "ok",
                Err(Error::RateLimited { .. }) => "rate_limited",
                Err(Error::Transient { .. }) => "transient",
                Err(Error::Permanent { .. }) => "permanent",
            },
        )
        .await
    }
}

impl OpenAi {
    async fn complete_untraced(&self, req: &Request<'_>) -> Result<Completion, Error> {
        let Some(key) = self.settings.api_key.as_deref() else {
            return Err(Error::Permanent {
                detail: Detail {
                    message: "OPENAI_API_KEY is not set".into(),
                    ..Detail::default()
                },
            });
        };
        let mut rb = self
            .client
            .post(&self.url)
            .timeout(req.timeout)
            .header("Content-Type", "application/json")
            .body(Self::body(req).to_string());
        rb = if self.azure {
            rb.header("api-key", key)
        } else {
            rb.bearer_auth(key)
        };
        let resp = match rb.send().await {
            Ok(r) => r,
            Err(e) => return Err(transport(&e, req.timeout, |s| self.scrub(s))),
        };
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let request_id = header(&headers, "x-request-id");
        let bytes = match resp.bytes().await {
            Ok(b) => b,
            Err(e) => return Err(transport(&e, req.timeout, |s| self.scrub(s))),
        };
        let raw = self.scrub_json(raw_json(&bytes));
        if (200..300).contains(&status) {
            return parse_success(raw, status, request_id, &headers).map_err(|message| {
                Error::Transient {
                    detail: Detail {
                        message,
                        http_status: Some(status),
                        code: None,
                        raw: None,
                        request_id: header(&headers, "x-request-id"),
                    },
                }
            });
        }
        Err(classify(status, &headers, raw, request_id))
    }
}

/// Reads a successful body: the first choice's message, finish reason, usage.
fn parse_success(
    raw: Json,
    status: u16,
    request_id: Option<String>,
    headers: &HeaderMap,
) -> Result<Completion, String> {
    let choice = raw.get("choices").and_then(|c| c.get(0)).ok_or_else(|| {
        format!(
            "malformed response: no `choices[0]` in {}",
            crate::schema::clip(&raw.to_string(), 200)
        )
    })?;
    let message = choice
        .get("message")
        .ok_or("malformed response: `choices[0]` has no `message`")?;
    let text = |v: Option<&Json>| v.and_then(Json::as_str).map(str::to_string);
    let usage = raw.get("usage").filter(|u| u.is_object()).map(|u| {
        let n = |k: &str| u.get(k).and_then(Json::as_u64).unwrap_or(0);
        Usage {
            prompt_tokens: n("prompt_tokens"),
            completion_tokens: n("completion_tokens"),
            total_tokens: n("total_tokens"),
        }
    });
    let limits = [
        "x-ratelimit-remaining-requests",
        "x-ratelimit-remaining-tokens",
        "x-ratelimit-reset-requests",
        "x-ratelimit-reset-tokens",
    ]
    .iter()
    .filter_map(|h| header(headers, h).map(|v| (h.to_string(), v)))
    .collect();
    Ok(Completion {
        content: text(message.get("content")),
        refusal: text(message.get("refusal")).filter(|r| !r.is_empty()),
        finish_reason: text(choice.get("finish_reason")),
        usage,
        model: text(raw.get("model")),
        http_status: Some(status),
        request_id,
        limits,
        raw: clip_json(raw),
    })
}

/// Maps an error response to a class the step can act on.
fn classify(status: u16, headers: &HeaderMap, raw: Json, request_id: Option<String>) -> Error {
    let err = raw.get("error");
    let field = |k: &str| {
        err.and_then(|e| e.get(k))
            .and_then(Json::as_str)
            .map(str::to_string)
    };
    let code = field("code").or_else(|| field("type"));
    let message = field("message").unwrap_or_else(|| match &raw {
        Json::String(s) => crate::schema::clip(s, 300),
        _ => String::new(),
    });
    let detail = Detail {
        message: format!(
            "HTTP {status}{}{}",
            code.as_deref().map(|c| format!(" {c}")).unwrap_or_default(),
            if message.is_empty() {
                String::new()
            } else {
                format!(": {}", crate::schema::clip(&message, 300))
            }
        ),
        http_status: Some(status),
        code: code.clone(),
        raw: Some(clip_json(raw.clone())),
        request_id,
    };
    let quota = field("code").as_deref() == Some("insufficient_quota")
        || field("type").as_deref() == Some("insufficient_quota");
    match status {
        429 if quota => Error::Permanent { detail },
        429 => Error::RateLimited {
            retry_after_ms: retry_after_ms(headers),
            detail,
        },
        408 | 409 | 500..=599 => Error::Transient { detail },
        _ => Error::Permanent { detail },
    }
}

/// When to try again: `Retry-After` (seconds), `retry-after-ms`, or else the
/// later of the `x-ratelimit-reset-*` durations.
pub fn retry_after_ms(headers: &HeaderMap) -> Option<u64> {
    if let Some(s) = header(headers, "retry-after-ms").and_then(|v| v.trim().parse::<f64>().ok()) {
        return (s.is_finite() && s >= 0.0).then_some(s as u64);
    }
    if let Some(s) = header(headers, "retry-after").and_then(|v| v.trim().parse::<f64>().ok()) {
        return (s.is_finite() && s >= 0.0).then_some((s * 1000.0) as u64);
    }
    ["x-ratelimit-reset-requests", "x-ratelimit-reset-tokens"]
        .iter()
        .filter_map(|h| header(headers, h).and_then(|v| go_duration_ms(&v)))
        .max()
}

/// Parses a Go duration such as `20ms`, `1.5s`, `6m0s`, `1h2m`.
pub fn go_duration_ms(s: &str) -> Option<u64> {
    let s = s.trim();
    if s.is_empty() {
        return None;
    }
    let mut total = 0.0f64;
    let mut rest = s;
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        if num_len == 0 {
            return None;
        }
        let n: f64 = rest[..num_len].parse().ok()?;
        rest = &rest[num_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let factor = match &rest[..unit_len] {
            "ns" => 1e-6,
            "us" | "µs" => 1e-3,
            "ms" => 1.0,
            "s" => 1_000.0,
            "m" => 60_000.0,
            "h" => 3_600_000.0,
            _ => return None,
        };
        total += n * factor;
        rest = &rest[unit_len..];
    }
    (total.is_finite() && total >= 0.0).then(|| total.ceil() as u64)
}

fn header(h: &HeaderMap, name: &str) -> Option<String> {
    h.get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

fn raw_json(bytes: &[u8]) -> Json {
    if bytes.is_empty() {
        return Json::Null;
    }
    serde_json::from_slice(bytes).unwrap_or_else(|_| {
        Json::String(String::from_utf8_lossy(&bytes[..bytes.len().min(MAX_RAW)]).into_owned())
    })
}

fn clip_json(v: Json) -> Json {
    let text = v.to_string();
    if text.len() <= MAX_RAW {
        v
    } else {
        json!({ "truncated": true, "bytes": text.len(), "head": crate::schema::clip(&text, MAX_RAW / 2) })
    }
}

/// A transport failure, described without the URL.
fn transport(e: &reqwest::Error, timeout: Duration, scrub: impl Fn(&str) -> String) -> Error {
    let message = if e.is_timeout() {
        format!("no answer within {} ms", timeout.as_millis())
    } else {
        let what = if e.is_connect() {
            "could not connect"
        } else if e.is_body() || e.is_decode() {
            "failed reading the response"
        } else {
            "request failed"
        };
        let mut cause = String::new();
        let mut src = std::error::Error::source(e);
        while let Some(s) = src {
            cause = s.to_string();
            src = s.source();
        }
        if cause.is_empty() {
            what.to_string()
        } else {
            format!("{what}: {cause}")
        }
    };
    Error::Transient {
        detail: Detail {
            message: scrub(&message),
            code: e.is_timeout().then(|| "timeout".to_string()),
            ..Detail::default()
        },
    }
}

/// Headers recorded with a successful answer, for rate-limit insight.
pub fn limits_json(l: &BTreeMap<String, String>) -> Json {
    Json::Object(
        l.iter()
            .map(|(k, v)| (k.clone(), Json::String(v.clone())))
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

    #[test]
    fn go_durations() {
        assert_eq!(go_duration_ms("20ms"), Some(20));
        assert_eq!(go_duration_ms("1.5s"), Some(1_500));
        assert_eq!(go_duration_ms("6m0s"), Some(360_000));
        assert_eq!(go_duration_ms("1h2m"), Some(3_720_000));
        assert_eq!(go_duration_ms("soon"), None);
        assert_eq!(go_duration_ms("5"), None);
    }

    #[test]
    fn retry_after_prefers_the_explicit_header() {
        let mut h = HeaderMap::new();
        h.insert("x-ratelimit-reset-requests", HeaderValue::from_static("1s"));
        h.insert("x-ratelimit-reset-tokens", HeaderValue::from_static("6m0s"));
        assert_eq!(retry_after_ms(&h), Some(360_000));
        h.insert("retry-after", HeaderValue::from_static("7"));
        assert_eq!(retry_after_ms(&h), Some(7_000));
        h.insert("retry-after-ms", HeaderValue::from_static("250"));
        assert_eq!(retry_after_ms(&h), Some(250));
    }

    #[test]
    fn errors_are_classified() {
        let h = HeaderMap::new();
        let body = |code: &str| json!({"error": {"message": "m", "type": "t", "param": null, "code": code}});
        assert!(matches!(
            classify(429, &h, body("rate_limit_exceeded"), None),
            Error::RateLimited { .. }
        ));
        assert!(matches!(
            classify(429, &h, body("insufficient_quota"), None),
            Error::Permanent { .. }
        ));
        assert!(matches!(
            classify(503, &h, Json::String("busy".into()), None),
            Error::Transient { .. }
        ));
        assert!(matches!(
            classify(401, &h, body("invalid_api_key"), None),
            Error::Permanent { .. }
        ));
        let e = classify(400, &h, body("bad_schema"), None);
        assert_eq!(e.detail().message, "HTTP 400 bad_schema: m");
    }
}
