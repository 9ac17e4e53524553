//! The provider boundary: one request in, one answer or one classified
//! error out. Providers do not retry, fall back or validate: the step does,
//! so every call is visible in the audit log.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde_json::{Value as Json, json};

use crate::heuristic::Task;

/// One chat message.
#[derive(Debug, Clone, PartialEq)]
pub struct Message {
    /// `system`, `user` or `assistant`.
    pub role: &'static str,
    pub content: String,
}

impl Message {
    pub fn to_json(&self) -> Json {
        json!({ "role": self.role, "content": self.content })
    }
}

/// What a provider is asked for.
#[derive(Debug)]
pub struct Request<'a> {
    pub model: &'a str,
    pub messages: &'a [Message],
    /// `response_format.json_schema.name`: `[a-zA-Z0-9_-]{1,64}`.
    pub schema_name: &'a str,
    /// The output schema in strict form.
    pub schema: &'a Json,
    pub max_tokens: u32,
    pub temperature: Option<f64>,
    pub timeout: Duration,
    /// The structured task, for providers that do not read prompts (the
    /// heuristic).
    pub task: &'a Task<'a>,
}

/// Token counts as the provider reported them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Usage {
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    pub total_tokens: u64,
}

/// A provider's answer (HTTP 200 for remote ones), before validation.
#[derive(Debug, Clone, Default)]
pub struct Completion {
    /// `message.content`: the JSON text the model produced, if any.
    pub content: Option<String>,
    /// `message.refusal`: set when the model declined.
    pub refusal: Option<String>,
    /// `stop`, `length`, `content_filter`, …
    pub finish_reason: Option<String>,
    pub usage: Option<Usage>,
    /// The model that answered (may name a snapshot of the one asked for).
    pub model: Option<String>,
    /// The whole response body (secrets removed), for the audit log.
    pub raw: Json,
    pub http_status: Option<u16>,
    /// `x-request-id`, for the provider's support.
    pub request_id: Option<String>,
    /// Rate-limit headers worth keeping (`x-ratelimit-remaining-*`).
    pub limits: BTreeMap<String, String>,
}

/// Why a call gave no answer. The class decides what the step does next.
#[derive(Debug, Clone, PartialEq)]
pub enum Error {
    /// 429 `rate_limit_exceeded`: wait, then try again.
    RateLimited {
        retry_after_ms: Option<u64>,
        detail: Detail,
    },
    /// 5xx, timeouts, connection failures, malformed bodies.
    Transient { detail: Detail },
    /// Trying again will not help with this provider: 4xx (bad key, bad
    /// request, unknown model) or `insufficient_quota`.
    Permanent { detail: Detail },
}

/// What is known about a failed call.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Detail {
    pub message: String,
    pub http_status: Option<u16>,
    /// The API's `error.code` / `error.type` when it sent one.
    pub code: Option<String>,
    pub raw: Option<Json>,
    pub request_id: Option<String>,
}

impl Error {
    pub fn detail(&self) -> &Detail {
        match self {
            Error::RateLimited { detail, .. }
            | Error::Transient { detail }
            | Error::Permanent { detail } => detail,
        }
    }

    /// `transient` or `permanent`, as recorded.
    pub fn class(&self) -> &'static str {
        match self {
            Error::RateLimited { .. } | Error::Transient { .. } => "transient",
            Error::Permanent { .. } => "permanent",
        }
    }

    pub fn retry_after_ms(&self) -> Option<u64> {
        match self {
            Error::RateLimited { retry_after_ms, .. } => *retry_after_ms,
            _ => None,
        }
    }
}

/// A source of structured answers: a model behind an API, or rules.
#[async_trait]
pub trait LlmProvider: Send + Sync {
    /// The name workflows use (`openai`, `heuristic`).
    fn name(&self) -> &str;

    /// Why this provider cannot be called at all right now (e.g. no API
    /// key), so the step skips it without a call.
    fn unavailable(&self) -> Option<String> {
        None
    }

    /// Whether a model is required (`model:`) when this provider is used.
    fn needs_model(&self) -> bool {
        true
    }

    /// Whether a failed answer is worth a repair turn (models: yes; rules: no).
    fn repairs(&self) -> bool {
        true
    }

    /// Whether calls cost money (a cost estimate is recorded); free
    /// providers record a cost of 0.
    fn priced(&self) -> bool {
        true
    }

    /// Values to redact from everything recorded (API keys).
    fn secrets(&self) -> Vec<String> {
        Vec::new()
    }

    /// One call. Must return within `req.timeout`.
    async fn complete(&self, req: &Request<'_>) -> Result<Completion, Error>;
}

/// The providers a node knows, by name.
#[derive(Clone, Default)]
pub struct Providers {
    list: Vec<Arc<dyn LlmProvider>>,
}

impl std::fmt::Debug for Providers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.list.iter().map(|p| p.name().to_string()))
            .finish()
    }
}

impl Providers {
    /// Adds (or replaces) a provider.
    pub fn with(mut self, p: Arc<dyn LlmProvider>) -> Providers {
        self.list.retain(|q| q.name() != p.name());
        self.list.push(p);
        self
    }

    pub fn get(&self, name: &str) -> Option<&Arc<dyn LlmProvider>> {
        self.list.iter().find(|p| p.name() == name)
    }

    pub fn names(&self) -> Vec<&str> {
        self.list.iter().map(|p| p.name()).collect()
    }
}
