//! Reading runs and operator commands: list, detail, audit events, retry,
//! cancel.

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use serde::Deserialize;
use store::{OpResult, RunFilter, RunStatus};
use utoipa::IntoParams;

use crate::AppState;
use crate::auth::{Caller, Scope};
use crate::error::{ApiError, FieldProblem, Problem};
use crate::views::{EventPage, EventView, RunPage, RunReviewView, RunSummary, RunView};

const DEFAULT_RUNS: usize = 50;
const MAX_RUNS: usize = 200;
const DEFAULT_EVENTS: usize = 100;
const MAX_EVENTS: usize = 1000;

/// Filters and paging of `GET /api/v1/runs`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// Only runs of this workflow.
    #[serde(default, deserialize_with = "crate::views::empty_as_none")]
    pub workflow: Option<String>,
    /// Only runs in this status.
    #[param(value_type = Option<crate::views::RunStatusName>)]
    pub status: Option<String>,
    /// Page size, 1–200 (default 50; larger values are capped).
    #[param(value_type = Option<u64>, minimum = 1)]
    pub limit: Option<String>,
    /// `next_cursor` of the previous page.
    #[serde(default, deserialize_with = "crate::views::empty_as_none")]
    pub cursor: Option<String>,
}

/// Paging of `GET /api/v1/runs/{id}/events`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct EventsQuery {
    /// Only events with `seq` greater than this (default 0).
    #[param(value_type = Option<i64>, minimum = 0)]
    pub after: Option<String>,
    /// Page size, 1–1000 (default 100; larger values are capped).
    #[param(value_type = Option<u64>, minimum = 1)]
    pub limit: Option<String>,
}

/// Lists runs, newest first.
#[utoipa::path(
    get,
    path = "/api/v1/runs",
    tag = "runs",
    params(ListQuery),
    responses(
        (status = 200, description = "A page of runs", body = RunPage),
        (status = 400, description = "Bad parameter; `errors` names it", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Missing or unknown token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Token lacks `runs:read`, or is limited to review queues this run has no task in (a list: any queue limit)", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = ["runs:read"]))
)]
pub async fn list_runs(
    State(state): State<AppState>,
    caller: Caller,
    query: Result<Query<ListQuery>, QueryRejection>,
) -> Result<Json<RunPage>, ApiError> {
    caller.require(Scope::RunsRead)?;
    if caller.queues().is_some() {
        return Err(ApiError::ForbiddenList(
            "this caller is limited to some review queues and the run list spans every queue; list your tasks with GET /api/v1/reviews and read their runs one by one",
        ));
    }
    let Query(q) = query.map_err(query_rejection)?;
    let status = q
        .status
        .as_deref()
        .map(|s| s.parse::<RunStatus>())
        .transpose()
        .map_err(|e| ApiError::BadRequest(FieldProblem::parameter("status", e)))?;
    let limit = count_param("limit", q.limit.as_deref(), DEFAULT_RUNS, MAX_RUNS)?;
    if let Some(c) = &q.cursor
        && (c.is_empty() || c.len() > 128)
    {
        return Err(ApiError::BadRequest(FieldProblem::parameter(
            "cursor",
            "is not a cursor this server issued",
        )));
    }
    let mut runs = state
        .engine
        .store()
        .list_runs(&RunFilter {
            workflow: q.workflow.filter(|w| !w.is_empty()),
            status,
            before: q.cursor,
            text: None,
            limit: limit + 1,
        })
        .await?;
    let next_cursor = if runs.len() > limit {
        runs.truncate(limit);
        runs.last().map(|r| r.id.clone())
    } else {
        None
    };
    Ok(Json(RunPage {
        items: runs.iter().map(RunSummary::from_run).collect(),
        next_cursor,
    }))
}

/// One run with its step attempts, outputs and effects.
#[utoipa::path(
    get,
    path = "/api/v1/runs/{id}",
    tag = "runs",
    params(("id" = String, Path, description = "Run id")),
    responses(
        (status = 200, description = "The run", body = RunView),
        (status = 401, description = "Missing or unknown token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Token lacks `runs:read`, or is limited to review queues this run has no task in (a list: any queue limit)", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "Unknown run", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = ["runs:read"]))
)]
pub async fn get_run(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<RunView>, ApiError> {
    caller.require(Scope::RunsRead)?;
    let detail = state
        .engine
        .store()
        .run_detail(&id)
        .await?
        .ok_or_else(|| unknown_run(&id))?;
    let reviews = reviews_of(&state, &detail).await?;
    if let Some(mine) = caller.queues() {
        require_queue_of(mine, &reviews)?;
    }
    let mut view = RunView::from_detail(&detail);
    // The pending task, else the latest: the highest step that made one.
    view.review = reviews.last().map(RunReviewView::from_review);
    Ok(Json(view))
}

/// A caller limited to some queues (a `queue:` token, a reviewer) reads
/// only runs with a review task in one of them
/// ([`crate::identity::may_read_run`], as in the web console): a run's
/// input and drafts are for the people who work its queue.
async fn require_run_queue(
    state: &AppState,
    caller: &Caller,
    d: &store::RunDetail,
) -> Result<(), ApiError> {
    match caller.queues() {
        Some(mine) => require_queue_of(mine, &reviews_of(state, d).await?),
        None => Ok(()),
    }
}

fn require_queue_of(mine: &[String], reviews: &[store::Review]) -> Result<(), ApiError> {
    if crate::identity::may_read_run(mine, reviews) {
        return Ok(());
    }
    let queues: Vec<&str> = reviews.iter().map(|r| r.queue.as_str()).collect();
    Err(ApiError::ForbiddenQueue(if queues.is_empty() {
        engine::approval::DEFAULT_QUEUE.to_string()
    } else {
        queues.join(", ")
    }))
}

/// [`require_run_queue`] by run id (a queue-limited caller only).
async fn check_queue_by_id(state: &AppState, caller: &Caller, id: &str) -> Result<(), ApiError> {
    if caller.queues().is_none() {
        return Ok(());
    }
    let detail = state
        .engine
        .store()
        .run_detail(id)
        .await?
        .ok_or_else(|| unknown_run(id))?;
    require_run_queue(state, caller, &detail).await
}

/// The run's review tasks, by step: at most one per step that ran (and
/// the step it is on).
async fn reviews_of(
    state: &AppState,
    d: &store::RunDetail,
) -> Result<Vec<store::Review>, ApiError> {
    let mut indices: Vec<usize> = d.steps.iter().map(|s| s.index).collect();
    indices.push(d.run.position.index);
    indices.sort_unstable();
    indices.dedup();
    let mut out = Vec::new();
    for index in indices {
        if let Some(r) = state
            .engine
            .store()
            .review_for_step(&d.run.id, index)
            .await?
        {
            out.push(r);
        }
    }
    Ok(out)
}

/// A run's audit log, oldest first.
#[utoipa::path(
    get,
    path = "/api/v1/runs/{id}/events",
    tag = "runs",
    params(("id" = String, Path, description = "Run id"), EventsQuery),
    responses(
        (status = 200, description = "A page of events", body = EventPage),
        (status = 400, description = "Bad parameter", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Missing or unknown token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Token lacks `runs:read`, or is limited to review queues this run has no task in (a list: any queue limit)", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "Unknown run", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = ["runs:read"]))
)]
pub async fn run_events(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    query: Result<Query<EventsQuery>, QueryRejection>,
) -> Result<Json<EventPage>, ApiError> {
    caller.require(Scope::RunsRead)?;
    let Query(q) = query.map_err(query_rejection)?;
    let after = match q.after.as_deref() {
        None => 0,
        Some(s) => s
            .trim()
            .parse::<i64>()
            .ok()
            .filter(|n| *n >= 0)
            .ok_or_else(|| {
                ApiError::BadRequest(FieldProblem::parameter(
                    "after",
                    "must be a whole number ≥ 0",
                ))
            })?,
    };
    let limit = count_param("limit", q.limit.as_deref(), DEFAULT_EVENTS, MAX_EVENTS)?;
    let store = state.engine.store();
    check_queue_by_id(&state, &caller, &id).await?;
    let mut events = store.events(&id, after, limit + 1).await?;
    // Every run has at least `run.received`; no events may mean no run.
    if events.is_empty() && store.run(&id).await?.is_none() {
        return Err(unknown_run(&id));
    }
    let next_after = if events.len() > limit {
        events.truncate(limit);
        events.last().map(|e| e.seq)
    } else {
        None
    };
    Ok(Json(EventPage {
        items: events.iter().map(EventView::from_event).collect(),
        next_after,
    }))
}

/// Retries a failed run from the step that failed.
#[utoipa::path(
    post,
    path = "/api/v1/runs/{id}/retry",
    tag = "runs",
    params(("id" = String, Path, description = "Run id")),
    responses(
        (status = 200, description = "The run, queued again", body = RunSummary),
        (status = 401, description = "Missing or unknown token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Token lacks `runs:write`, or is limited to review queues this run has no task in", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "Unknown run", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Only failed runs can be retried; `run_status` says where it stands", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = ["runs:write"]))
)]
pub async fn retry_run(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<RunSummary>, ApiError> {
    caller.require(Scope::RunsWrite)?;
    check_queue_by_id(&state, &caller, &id).await?;
    let r = state.engine.retry(&id, &caller.actor()).await;
    op_answer(r, &id, "retried")
}

/// Cancels a run that has not finished (or a failed one).
#[utoipa::path(
    post,
    path = "/api/v1/runs/{id}/cancel",
    tag = "runs",
    params(("id" = String, Path, description = "Run id")),
    responses(
        (status = 200, description = "The run, cancelled", body = RunSummary),
        (status = 401, description = "Missing or unknown token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Token lacks `runs:write`, or is limited to review queues this run has no task in", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "Unknown run", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The run already finished; `run_status` says how", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = ["runs:write"]))
)]
pub async fn cancel_run(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<RunSummary>, ApiError> {
    caller.require(Scope::RunsWrite)?;
    check_queue_by_id(&state, &caller, &id).await?;
    let r = state.engine.cancel(&id, &caller.actor()).await;
    op_answer(r, &id, "cancelled")
}

fn op_answer(
    r: store::Result<OpResult>,
    id: &str,
    verb: &str,
) -> Result<Json<RunSummary>, ApiError> {
    match r {
        Ok(OpResult::Done(run)) => Ok(Json(RunSummary::from_run(&run))),
        Ok(OpResult::NotFound) | Err(store::Error::NotFound) => Err(unknown_run(id)),
        Ok(OpResult::Refused(status)) => Err(ApiError::Conflict {
            detail: format!("a {status} run cannot be {verb}"),
            run_status: Some(status.as_str().into()),
        }),
        Err(store::Error::Conflict(_)) => Err(ApiError::Conflict {
            detail: "the run changed concurrently; read it and try again".into(),
            run_status: None,
        }),
        Err(e) => Err(e.into()),
    }
}

fn unknown_run(id: &str) -> ApiError {
    ApiError::NotFound(format!("no run with id `{id}`"))
}

pub(crate) fn query_rejection(e: QueryRejection) -> ApiError {
    ApiError::BadRequest(FieldProblem::parameter("query", e.body_text()))
}

/// A page size: a whole number ≥ 1, clamped to `max`; `default` when absent.
pub(crate) fn count_param(
    name: &str,
    raw: Option<&str>,
    default: usize,
    max: usize,
) -> Result<usize, ApiError> {
    let Some(raw) = raw else { return Ok(default) };
    // An int64 as the document says; larger is refused, not clamped.
    raw.trim()
        .parse::<i64>()
        .ok()
        .filter(|n| *n >= 1)
        .map(|n| usize::try_from(n).unwrap_or(usize::MAX).min(max))
        .ok_or_else(|| {
            ApiError::BadRequest(FieldProblem::parameter(
                name,
                format!("must be a whole number of at least 1 (values above {max} count as {max})"),
            ))
        })
}
