//! The HTTP interface: the JSON API, webhook intake, health probes and the
//! OpenAPI document, as one axum [`Router`] built by [`app`].
//!
//! API boundary: handlers only translate between HTTP and the engine; they
//! hold no business logic and never see SQL. Every error leaves through
//! [`ApiError`] as RFC 9457 problem+json; internal detail goes to the log.
//!
//! Routes:
//! - `POST /api/v1/workflows/{name}/runs` (`runs:write`; `Idempotency-Key`; `?wait=`)
//! - `POST /hooks/{name}` (webhook; HMAC-SHA256 of timestamp and body in
//!   `X-Countersign-Signature`, each signature accepted once)
//! - `GET /api/v1/runs`, `GET /api/v1/runs/{id}`, `GET /api/v1/runs/{id}/events`,
//!   `GET /api/v1/calibration` (`runs:read`)
//! - `POST /api/v1/runs/{id}/retry`, `POST /api/v1/runs/{id}/cancel` (`runs:write`)
//! - `GET /api/v1/reviews`, `GET /api/v1/reviews/{id}`,
//!   `POST /api/v1/reviews/{id}/decision` (`reviews:decide`; `queue:NAME`
//!   entries in a token's scopes restrict it to those queues)
//! - `GET|POST /forms/{name}` (HTML form trigger built from the input schema)
//! - `POST /integrations/slack/interactivity` (Slack-signed buttons),
//!   `GET|POST /review/{token}` (email approval links; GET never decides)
//! - `GET|POST /login`, `POST /logout`, `GET /inbox`, `GET /inbox/{id}`,
//!   `POST /inbox/{id}/decision`, `GET /assets/inbox.js` (the review inbox
//!   for signed-in users)
//! - `GET /healthz`, `GET /readyz`, `GET /metrics`, `GET /api/openapi.json`

mod auth;
pub mod calibration;
mod client;
mod error;
pub mod export;
mod forms;
mod health;
mod identity;
mod intake;
pub mod integrations;
mod listen;
mod openapi;
mod reviews;
mod runs;
mod views;
mod web;

use std::future::Future;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{DefaultBodyLimit, Request};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use engine::Engine;

pub use auth::{
    Caller, QUEUE_PREFIX, Scope, TOKEN_PREFIX, hash_token, new_token_secret, parse_scopes,
};
pub use error::{ApiError, FieldProblem, PROBLEM_BASE, PROBLEM_JSON, Problem};
pub use intake::{SIGNATURE_HEADER, TIMESTAMP_HEADER, sign_body};
pub use listen::{ConnLimits, serve as serve_router};
pub use openapi::{ApiDoc, document as openapi_document};
pub use web::{SESSION_COOKIE, hash_password, new_password, verify_password};

/// Limits of the HTTP layer.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Largest accepted request body in bytes (larger → 413).
    pub body_limit: usize,
    /// Cap on `?wait=` at intake.
    pub max_wait: Duration,
    /// `Secure` on inbox cookies: `None` sets it when the request came
    /// over https (`X-Forwarded-Proto: https` from a proxy).
    pub secure_cookies: Option<bool>,
    /// Slack interactivity and email approval links.
    pub integrations: integrations::Settings,
    /// The reverse proxy whose `X-Forwarded-For` names the client (for
    /// per-address limits); from anyone else the header is ignored.
    pub trusted_proxy: Option<std::net::IpAddr>,
    /// Hosted form submissions accepted per client address per minute.
    pub form_limit_per_minute: u32,
    /// Connection count and read deadlines of [`serve`].
    pub conn_limits: ConnLimits,
}

impl Default for ServerConfig {
    fn default() -> ServerConfig {
        ServerConfig {
            body_limit: 1024 * 1024,
            max_wait: Duration::from_secs(30),
            secure_cookies: None,
            integrations: integrations::Settings::default(),
            trusted_proxy: None,
            form_limit_per_minute: 10,
            conn_limits: ConnLimits::default(),
        }
    }
}

/// What every handler can reach: the engine (and through it the store and
/// the catalog) and the limits.
#[derive(Debug, Clone)]
pub struct AppState {
    pub engine: Engine,
    pub config: ServerConfig,
    /// The inbox's sign-in throttle.
    pub(crate) web: web::WebState,
    /// Hosted form submissions per client address.
    pub(crate) form_hits: client::Counter,
}

impl AppState {
    pub fn new(engine: Engine, config: ServerConfig) -> AppState {
        AppState {
            engine,
            config,
            web: web::WebState::default(),
            form_hits: client::Counter::default(),
        }
    }
}

/// The whole HTTP interface as a router, ready for `axum::serve` or, in
/// tests, `tower::ServiceExt::oneshot`.
pub fn app(state: AppState) -> Router {
    let body_limit = state.config.body_limit;
    Router::new()
        .route("/api/v1/workflows/{name}/runs", post(intake::submit_run))
        .route("/hooks/{name}", post(intake::webhook))
        .route("/forms/{name}", get(forms::show).post(forms::submit))
        .route("/api/v1/runs", get(runs::list_runs))
        .route("/api/v1/events", get(export::events))
        .route("/api/v1/calibration", get(calibration::calibration))
        .route("/api/v1/runs/{id}", get(runs::get_run))
        .route("/api/v1/runs/{id}/events", get(runs::run_events))
        .route("/api/v1/runs/{id}/retry", post(runs::retry_run))
        .route("/api/v1/runs/{id}/cancel", post(runs::cancel_run))
        .route("/api/v1/reviews", get(reviews::list_reviews))
        .route("/api/v1/reviews/{id}", get(reviews::get_review))
        .route("/api/v1/reviews/{id}/decision", post(reviews::decide))
        .route(
            "/integrations/slack/interactivity",
            post(integrations::slack::interactivity),
        )
        .route(
            "/review/{token}",
            get(integrations::links::show).post(integrations::links::confirm),
        )
        .merge(web::routes())
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .route("/metrics", get(health::metrics))
        .route("/api/openapi.json", get(openapi_json))
        .fallback(|| async { ApiError::NotFound("no such resource".into()) })
        .method_not_allowed_fallback(|| async { ApiError::MethodNotAllowed })
        .layer(DefaultBodyLimit::max(body_limit))
        .layer(middleware::from_fn(log_request))
        .with_state(state)
}

/// Serves [`app`] on `listener` until `shutdown` resolves, then lets
/// in-flight requests finish; connections are capped and timed by the
/// state's [`ConnLimits`].
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let limits = state.config.conn_limits;
    listen::serve(listener, app(state), limits, shutdown).await
}

async fn openapi_json() -> Response {
    static DOC: OnceLock<String> = OnceLock::new();
    let body = DOC.get_or_init(|| {
        openapi::document()
            .to_json()
            .expect("the OpenAPI document serialises")
    });
    (
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        body.clone(),
    )
        .into_response()
}

/// One log line per request: method, path (never the query, which may
/// carry data), status and latency. Successes log at `debug` so the intake
/// hot path does not pay for a line per request; refusals at `info`, server
/// errors at `warn`.
async fn log_request(req: Request, next: Next) -> Response {
    let method = req.method().clone();
    let path = match req.uri().path() {
        // An approval link's path is a credential: never in the log.
        p if p.starts_with("/review/") => "/review/[token]".to_string(),
        p => p.to_string(),
    };
    let started = Instant::now();
    let res = next.run(req).await;
    let status = res.status().as_u16();
    let ms = started.elapsed().as_millis() as u64;
    match status {
        500.. => tracing::warn!(%method, path, status, ms, "request"),
        400..=499 => tracing::info!(%method, path, status, ms, "request"),
        _ => tracing::debug!(%method, path, status, ms, "request"),
    }
    res
}
