//! Liveness and readiness probes.

use axum::Json;
use axum::extract::State;
use store::RunFilter;

use crate::AppState;
use crate::error::{ApiError, Problem};
use crate::views::Health;

/// Liveness: the process answers.
#[utoipa::path(
    get,
    path = "/healthz",
    tag = "health",
    responses((status = 200, description = "Alive", body = Health)),
    security(())
)]
pub async fn healthz() -> Json<Health> {
    Json(Health {
        status: "ok".into(),
    })
}

/// Readiness: the store answers a cheap query.
#[utoipa::path(
    get,
    path = "/readyz",
    tag = "health",
    responses(
        (status = 200, description = "Ready", body = Health),
        (status = 503, description = "The store does not answer", body = Problem, content_type = "application/problem+json"),
    ),
    security(())
)]
pub async fn readyz(State(state): State<AppState>) -> Result<Json<Health>, ApiError> {
    let probe = RunFilter {
        limit: 1,
        ..RunFilter::default()
    };
    match state.engine.store().list_runs(&probe).await {
        Ok(_) => Ok(Json(Health {
            status: "ok".into(),
        })),
        Err(e) => {
            tracing::warn!(error = %e, "readiness probe: store does not answer");
            Err(ApiError::Unavailable)
        }
    }
}

/// Prometheus metrics of this node (text exposition format).
#[utoipa::path(
    get,
    path = "/metrics",
    tag = "health",
    responses((status = 200, description = "Prometheus text format", content_type = "text/plain"))
)]
pub async fn metrics(State(state): State<AppState>) -> axum::response::Response {
    use axum::response::IntoResponse;
    let mut text = state.engine.metrics_text();
    queue_metrics(&state, engine::now_ms(), &mut text).await;
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        text,
    )
        .into_response()
}

/// Review queue depth and the oldest pending task's age, read from the
/// store at scrape time (one grouped query over pending tasks): the same
/// numbers on every node. When the store does not answer, the gauges are
/// left out and `countersign_review_queues_up` says 0.
async fn queue_metrics(state: &AppState, now_ms: i64, out: &mut String) {
    use engine::metrics::escape;
    let depth = state.engine.store().pending_by_queue().await;
    out.push_str("# HELP countersign_review_queues_up Whether the review queue gauges could be read from the store.\n# TYPE countersign_review_queues_up gauge\n");
    let depth = match depth {
        Ok(d) => {
            out.push_str("countersign_review_queues_up 1\n");
            d
        }
        Err(e) => {
            tracing::warn!(error = %e, "metrics: reading review queues failed");
            out.push_str("countersign_review_queues_up 0\n");
            return;
        }
    };
    out.push_str("# HELP countersign_review_queue_depth Pending review tasks by queue.\n# TYPE countersign_review_queue_depth gauge\n");
    for d in &depth {
        out.push_str(&format!(
            "countersign_review_queue_depth{{queue=\"{}\"}} {}\n",
            escape(&d.queue),
            d.pending
        ));
    }
    out.push_str("# HELP countersign_review_queue_oldest_age_seconds Age of the oldest pending review task by queue.\n# TYPE countersign_review_queue_oldest_age_seconds gauge\n");
    for d in &depth {
        out.push_str(&format!(
            "countersign_review_queue_oldest_age_seconds{{queue=\"{}\"}} {}\n",
            escape(&d.queue),
            (now_ms - d.oldest_created_at_ms).max(0) as f64 / 1000.0
        ));
    }
}
