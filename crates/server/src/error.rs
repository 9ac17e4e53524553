//! The one error type of the HTTP boundary and its RFC 9457 problem+json form.
//!
//! Every handler returns `Result<_, ApiError>`. Each variant has a stable
//! `type` URI clients can match on. Internal failures are logged here, with
//! their detail, and answered with a generic 500: nothing internal leaks.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

/// Base of every problem `type` URI.
pub const PROBLEM_BASE: &str = "https://countersign.dev/problems/";

/// Media type of every error body.
pub const PROBLEM_JSON: &str = "application/problem+json";

/// An RFC 9457 problem details body.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Problem {
    /// Stable URI naming the kind of problem, e.g. `https://countersign.dev/problems/validation`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Short summary of the kind of problem; the same for every occurrence.
    pub title: String,
    /// The HTTP status code.
    pub status: u16,
    /// What went wrong this time, for people.
    pub detail: String,
    /// One entry per bad field, query parameter or header.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<FieldProblem>,
    /// The run's status when a command was refused (409).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub run_status: Option<String>,
    /// The scope the request lacked (403).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub required_scope: Option<String>,
}

/// One bad field: exactly one of `pointer`, `parameter` or `header` names it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct FieldProblem {
    /// JSON Pointer (RFC 6901) into the request body, e.g. `/email`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pointer: Option<String>,
    /// Name of a query parameter.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parameter: Option<String>,
    /// Name of a request header.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub header: Option<String>,
    pub detail: String,
}

impl FieldProblem {
    pub fn pointer(pointer: impl Into<String>, detail: impl Into<String>) -> FieldProblem {
        FieldProblem {
            pointer: Some(pointer.into()),
            parameter: None,
            header: None,
            detail: detail.into(),
        }
    }

    pub fn parameter(name: impl Into<String>, detail: impl Into<String>) -> FieldProblem {
        FieldProblem {
            pointer: None,
            parameter: Some(name.into()),
            header: None,
            detail: detail.into(),
        }
    }

    pub fn header(name: impl Into<String>, detail: impl Into<String>) -> FieldProblem {
        FieldProblem {
            pointer: None,
            parameter: None,
            header: Some(name.into()),
            detail: detail.into(),
        }
    }
}

/// Why a request failed, as the client may act on it.
#[derive(Debug)]
pub enum ApiError {
    /// 422: the input broke the workflow's schema; one entry per field.
    Validation(Vec<FieldProblem>),
    /// 400: the body is not JSON.
    MalformedJson(String),
    /// 400: a query parameter or header is unusable.
    BadRequest(FieldProblem),
    /// 404, with what was not found.
    NotFound(String),
    /// 405.
    MethodNotAllowed,
    /// 409: the run's state does not allow the command.
    Conflict {
        detail: String,
        run_status: Option<String>,
    },
    /// 413.
    PayloadTooLarge { limit: usize },
    /// 415.
    UnsupportedMediaType,
    /// 401 for bearer auth: no usable token (`invalid` when one was sent).
    Unauthorized { detail: &'static str, invalid: bool },
    /// 401 for webhooks: signature missing or wrong.
    BadSignature(&'static str),
    /// 409 for webhooks: this signed request was accepted before.
    Replayed,
    /// 403: the token lacks this scope.
    Forbidden { scope: &'static str },
    /// 403: the token may not act on this review queue.
    ForbiddenQueue(String),
    /// 403: a queue-limited caller asked for a list that spans every queue.
    ForbiddenList(&'static str),
    /// 403: the decision breaks the four-eyes rule.
    FourEyes(String),
    /// 409: the review task is no longer pending, or its run has ended.
    ReviewConflict {
        detail: String,
        run_status: Option<String>,
    },
    /// 408: the request body did not arrive within the server's limit.
    RequestTimeout,
    /// 503 with `Retry-After`: a dependency (the store) does not answer.
    Unavailable,
    /// 500; the text goes to the log only.
    Internal(String),
}

impl ApiError {
    /// Logs a lower-level failure and hides it behind a generic 500.
    pub fn internal(context: &str, e: impl std::fmt::Display) -> ApiError {
        ApiError::Internal(format!("{context}: {e}"))
    }

    fn parts(self) -> (StatusCode, Problem) {
        let mut p = Problem {
            kind: String::new(),
            title: String::new(),
            status: 0,
            detail: String::new(),
            errors: Vec::new(),
            run_status: None,
            required_scope: None,
        };
        let (status, slug, title) = match self {
            ApiError::Validation(errors) => {
                p.detail = match errors.len() {
                    1 => "1 field is invalid".to_string(),
                    n => format!("{n} fields are invalid"),
                };
                p.errors = errors;
                (
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "validation",
                    "Input is invalid",
                )
            }
            ApiError::MalformedJson(detail) => {
                p.detail = format!("the body is not valid JSON: {detail}");
                (StatusCode::BAD_REQUEST, "malformed-json", "Malformed JSON")
            }
            ApiError::BadRequest(field) => {
                let name = field
                    .parameter
                    .as_deref()
                    .map(|n| format!("query parameter `{n}`"))
                    .or_else(|| field.header.as_deref().map(|h| format!("header `{h}`")))
                    .or_else(|| field.pointer.as_deref().map(|ptr| format!("field `{ptr}`")))
                    .unwrap_or_else(|| "request".to_string());
                p.detail = format!("{name}: {}", field.detail);
                p.errors = vec![field];
                (
                    StatusCode::BAD_REQUEST,
                    "invalid-parameter",
                    "Invalid request parameter",
                )
            }
            ApiError::NotFound(detail) => {
                p.detail = detail;
                (StatusCode::NOT_FOUND, "not-found", "Not found")
            }
            ApiError::MethodNotAllowed => {
                p.detail = "this method is not allowed on this resource".into();
                (
                    StatusCode::METHOD_NOT_ALLOWED,
                    "method-not-allowed",
                    "Method not allowed",
                )
            }
            ApiError::Conflict { detail, run_status } => {
                p.detail = detail;
                p.run_status = run_status;
                (
                    StatusCode::CONFLICT,
                    "run-state-conflict",
                    "Not allowed in the run's current state",
                )
            }
            ApiError::PayloadTooLarge { limit } => {
                p.detail = format!("the body is larger than the limit of {limit} bytes");
                (
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "payload-too-large",
                    "Payload too large",
                )
            }
            ApiError::UnsupportedMediaType => {
                p.detail = "send the body as `Content-Type: application/json`".into();
                (
                    StatusCode::UNSUPPORTED_MEDIA_TYPE,
                    "unsupported-media-type",
                    "Unsupported media type",
                )
            }
            ApiError::Unauthorized { detail, .. } => {
                p.detail = detail.into();
                (
                    StatusCode::UNAUTHORIZED,
                    "unauthorized",
                    "Authentication required",
                )
            }
            ApiError::BadSignature(detail) => {
                p.detail = detail.into();
                (
                    StatusCode::UNAUTHORIZED,
                    "invalid-signature",
                    "Invalid signature",
                )
            }
            ApiError::Replayed => {
                p.detail = "this signed request was already accepted; to send it again, \
                            sign it again with a fresh X-Countersign-Timestamp (keep the Idempotency-Key)"
                    .into();
                (StatusCode::CONFLICT, "replayed-request", "Replayed request")
            }
            ApiError::Forbidden { scope } => {
                p.detail = format!("this token lacks the `{scope}` scope");
                p.required_scope = Some(scope.into());
                (StatusCode::FORBIDDEN, "forbidden", "Insufficient scope")
            }
            ApiError::ForbiddenQueue(queue) => {
                p.detail = format!("this token may not act on review queue `{queue}`");
                (
                    StatusCode::FORBIDDEN,
                    "forbidden-queue",
                    "Queue not allowed",
                )
            }
            ApiError::ForbiddenList(detail) => {
                p.detail = detail.to_string();
                (
                    StatusCode::FORBIDDEN,
                    "forbidden-queue",
                    "Queue not allowed",
                )
            }
            ApiError::FourEyes(detail) => {
                p.detail = detail;
                (
                    StatusCode::FORBIDDEN,
                    "four-eyes",
                    "Another person must decide",
                )
            }
            ApiError::ReviewConflict { detail, run_status } => {
                p.detail = detail;
                p.run_status = run_status;
                (
                    StatusCode::CONFLICT,
                    "review-state-conflict",
                    "Not allowed in the review's current state",
                )
            }
            ApiError::RequestTimeout => {
                p.detail = "the request body did not arrive in time; send it again".into();
                (
                    StatusCode::REQUEST_TIMEOUT,
                    "request-timeout",
                    "Request timeout",
                )
            }
            ApiError::Unavailable => {
                p.detail = "the store does not answer".into();
                (
                    StatusCode::SERVICE_UNAVAILABLE,
                    "unavailable",
                    "Service unavailable",
                )
            }
            ApiError::Internal(msg) => {
                tracing::error!(error = %msg, "request failed");
                p.detail = "an internal error occurred; it has been logged".into();
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal",
                    "Internal server error",
                )
            }
        };
        p.kind = format!("{PROBLEM_BASE}{slug}");
        p.title = title.into();
        p.status = status.as_u16();
        (status, p)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let unavailable = matches!(self, ApiError::Unavailable);
        let www_authenticate = match &self {
            ApiError::Unauthorized { invalid: false, .. } => Some("Bearer"),
            ApiError::Unauthorized { invalid: true, .. } => Some("Bearer error=\"invalid_token\""),
            ApiError::Forbidden { .. } => Some("Bearer error=\"insufficient_scope\""),
            _ => None,
        };
        let (status, problem) = self.parts();
        let body = serde_json::to_vec(&problem).unwrap_or_else(|_| b"{}".to_vec());
        let mut res = (status, body).into_response();
        let headers = res.headers_mut();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
        if let Some(v) = www_authenticate {
            headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static(v));
        }
        if unavailable {
            headers.insert(
                header::RETRY_AFTER,
                HeaderValue::from_static(RETRY_AFTER_SECS),
            );
        }
        res
    }
}

/// `Retry-After` on a 503: long enough for a database restart to begin
/// answering; a client retrying with its `Idempotency-Key` gets the run the
/// failed request may have created.
const RETRY_AFTER_SECS: &str = "2";

impl From<store::Error> for ApiError {
    /// A backend failure (the database is down, restarting or refusing the
    /// write) is a 503 the client may retry; anything else reaching here is
    /// a bug, a 500. The detail goes to the log either way.
    fn from(e: store::Error) -> ApiError {
        match e {
            store::Error::Backend(detail) => {
                tracing::warn!(error = %detail, "the store failed; answering 503");
                ApiError::Unavailable
            }
            e => ApiError::internal("store", e),
        }
    }
}
