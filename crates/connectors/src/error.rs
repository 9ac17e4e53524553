//! The one error type every connector returns, with variants the retry
//! policy can act on (STYLE habit 8), and its mapping to a step outcome.

use domain::run::StepOutcome;

/// What went wrong talking to a target system.
#[derive(Debug, Clone, PartialEq)]
pub enum Error {
    /// The target asked us to slow down (HTTP 429, Slack `rate_limited`,
    /// Monday `ComplexityException`): retried after `retry_after_ms`.
    RateLimited {
        retry_after_ms: Option<u64>,
        message: String,
    },
    /// A refused connection, a 5xx: the target answered (or was never
    /// reached); another attempt may work.
    Transient(String),
    /// No answer came (a timeout, a connection lost mid-request): the
    /// target may still perform the call. Retried like `Transient`, but an
    /// effect it leaves open waits out its in-flight window before anyone
    /// looks whether it happened.
    NoAnswer(String),
    /// The credentials were refused. `field` names the setting to fix
    /// (e.g. `MONDAY_API_TOKEN`).
    Unauthorized { field: String, message: String },
    /// The request itself is wrong (a missing board, column, label or
    /// channel; an invalid body). `field` names what to fix.
    Permanent { field: String, message: String },
}

impl Error {
    pub fn permanent(field: impl Into<String>, message: impl Into<String>) -> Error {
        Error::Permanent {
            field: field.into(),
            message: message.into(),
        }
    }

    /// True when the call certainly did not change the target (so the
    /// journalled effect can be marked failed rather than left open).
    pub fn is_permanent(&self) -> bool {
        matches!(self, Error::Unauthorized { .. } | Error::Permanent { .. })
    }

    /// The error's class as a trace span records it (never its message).
    pub fn class(&self) -> &'static str {
        match self {
            Error::RateLimited { .. } => "rate_limited",
            Error::Transient(_) => "transient",
            Error::NoAnswer(_) => "no_answer",
            Error::Unauthorized { .. } => "unauthorized",
            Error::Permanent { .. } => "permanent",
        }
    }

    /// The message shown on the run, with every secret in `secrets`
    /// replaced by `[redacted]`.
    pub fn describe(&self, secrets: &[String]) -> String {
        let text = match self {
            Error::RateLimited { message, .. } => format!("rate limited: {message}"),
            Error::Transient(m) | Error::NoAnswer(m) => m.clone(),
            Error::Unauthorized { field, message } => {
                format!("{field}: the credentials were refused: {message}")
            }
            Error::Permanent { field, message } => format!("{field}: {message}"),
        };
        domain::workflow::redact(secrets, &text)
    }

    /// The step outcome for this error: transient kinds are retried per
    /// the step's policy (honouring `Retry-After`), the others fail the run.
    pub fn into_outcome(self, secrets: &[String]) -> StepOutcome {
        let error = self.describe(secrets);
        match self {
            Error::RateLimited { retry_after_ms, .. } => StepOutcome::Transient {
                error,
                retry_after_ms,
            },
            Error::Transient(_) | Error::NoAnswer(_) => StepOutcome::Transient {
                error,
                retry_after_ms: None,
            },
            Error::Unauthorized { .. } | Error::Permanent { .. } => {
                StepOutcome::Permanent { error }
            }
        }
    }
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.describe(&[]))
    }
}

impl std::error::Error for Error {}

/// Classifies a transport failure without quoting the URL (it may carry a
/// secret, e.g. an incoming-webhook URL).
pub fn transport(e: &reqwest::Error) -> Error {
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
    let message = if cause.is_empty() {
        format!("request {what}")
    } else {
        format!("request {what}: {cause}")
    };
    if e.is_connect() {
        // Never sent: nothing of it can land later.
        Error::Transient(message)
    } else {
        Error::NoAnswer(message)
    }
}

/// `Retry-After` in milliseconds (seconds form; HTTP dates count as absent).
pub fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<u64> {
    headers
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(engine::steps::http::parse_retry_after)
}

/// The first `max` characters of a response body, for messages.
pub fn snippet(bytes: &[u8], max: usize) -> String {
    let s = String::from_utf8_lossy(&bytes[..bytes.len().min(max)]);
    s.trim().to_string()
}

/// The outcome a connector span records for a call's answer: `ok` or the
/// error's [`Error::class`].
pub fn outcome<T>(answer: &Result<T, Error>) -> &'static str {
    match answer {
        Ok(_) => "ok",
        Err(e) => e.class(),
    }
}
