//! Review tasks over HTTP: list, read, decide (scope `reviews:decide`;
//! a token restricted to queues sees and decides only those).

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use engine::ReviewError;
use engine::review::{Decision, DecisionError};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use store::{Review, ReviewFilter, ReviewStatus};
use utoipa::{IntoParams, ToSchema};

use crate::AppState;
use crate::auth::{Caller, Scope};
use crate::error::{ApiError, FieldProblem, Problem};
use crate::intake::json_body;
use crate::runs::{count_param, query_rejection};

const DEFAULT_REVIEWS: usize = 50;
const MAX_REVIEWS: usize = 200;

/// Filters and paging of `GET /api/v1/reviews`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ReviewQuery {
    /// pending (default), approved, rejected, handed_off, or `all`.
    #[param(value_type = Option<crate::views::ReviewStatusName>)]
    pub status: Option<String>,
    /// Only tasks of this queue.
    #[serde(default, deserialize_with = "crate::views::empty_as_none")]
    pub queue: Option<String>,
    /// Page size, 1–200 (default 50; larger values are capped).
    #[param(value_type = Option<u64>, minimum = 1)]
    pub limit: Option<String>,
    /// `next_cursor` of the previous page.
    #[serde(default, deserialize_with = "crate::views::empty_as_none")]
    pub cursor: Option<String>,
}

/// One reviewed field: the AI draft and, once approved, the final value.
#[derive(Debug, Serialize, ToSchema)]
pub struct ReviewFieldView {
    pub name: String,
    /// The step whose output holds the draft.
    pub step: String,
    pub draft: Value,
    /// JSON Schema edits are checked against (absent: the draft's JSON type).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub schema: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub changed: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub decided_by: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub decided_at_ms: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
}

/// One decision act on a task.
#[derive(Debug, Serialize, ToSchema)]
pub struct ReviewActView {
    pub seq: i64,
    /// Readable: `user:EMAIL`, `token:ID`, a link's address, `system`.
    pub actor: String,
    /// The user behind the act, whatever the channel; null for a channel
    /// tied to no user (a service token, a deadline).
    pub user_id: Option<String>,
    /// approve, reject, escalate.
    pub decision: String,
    pub values: Value,
    pub comment: Option<String>,
    pub reason: Option<String>,
    #[serde(default, deserialize_with = "crate::views::empty_as_none")]
    pub queue: Option<String>,
    pub at_ms: i64,
}

/// A review task.
#[derive(Debug, Serialize, ToSchema)]
pub struct ReviewView {
    pub id: String,
    pub run_id: String,
    pub workflow: String,
    pub step: String,
    pub queue: String,
    /// pending, approved, rejected.
    pub status: String,
    pub fields: Vec<ReviewFieldView>,
    /// Distinct approvers needed (four-eyes when 2 or more).
    pub min_approvals: u32,
    /// Approvals counted so far.
    pub approvals: usize,
    pub submitter: Option<String>,
    pub deadline_at_ms: Option<i64>,
    /// `{"escalate": QUEUE}`, `"reject"`, `"approve"` or null.
    pub on_deadline: Value,
    pub created_at_ms: i64,
    pub decided_at_ms: Option<i64>,
    pub decided_by: Option<String>,
    pub reason: Option<String>,
    pub decisions: Vec<ReviewActView>,
}

/// A page of review tasks, newest first.
#[derive(Debug, Serialize, ToSchema)]
pub struct ReviewPage {
    pub items: Vec<ReviewView>,
    pub next_cursor: Option<String>,
}

/// `POST /api/v1/reviews/{id}/decision`.
#[derive(Debug, Deserialize, ToSchema)]
pub struct DecisionBody {
    /// approve, reject, escalate or hand_off (a person takes the case over; the run ends `handed_off`).
    #[schema(value_type = crate::views::DecisionName)]
    pub decision: String,
    /// approve: edited values by field name (each checked against the field's type).
    pub values: Option<Map<String, Value>>,
    pub comment: Option<String>,
    /// reject and hand_off: why (required).
    pub reason: Option<String>,
    /// escalate: the queue to move the task to (required).
    #[serde(default, deserialize_with = "crate::views::empty_as_none")]
    pub queue: Option<String>,
}

fn parse(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or(Value::Null)
}

impl ReviewView {
    pub fn from_review(r: &Review) -> ReviewView {
        let fields = engine::review::fields_of(r)
            .into_iter()
            .map(|f| {
                let result = r.results.iter().find(|x| x.field == f.name);
                ReviewFieldView {
                    value: result.map(|x| parse(&x.value)),
                    changed: result.map(|x| x.changed),
                    decided_by: result.map(|x| x.decided_by.clone()),
                    decided_at_ms: result.map(|x| x.decided_at_ms),
                    comment: result.and_then(|x| x.comment.clone()),
                    name: f.name,
                    step: f.step,
                    draft: f.draft,
                    schema: f.schema,
                }
            })
            .collect();
        ReviewView {
            id: r.id.clone(),
            run_id: r.run_id.clone(),
            workflow: r.workflow.clone(),
            step: r.step_id.clone(),
            queue: r.queue.clone(),
            status: r.status.as_str().into(),
            fields,
            min_approvals: r.min_approvals,
            approvals: r.acts.iter().filter(|a| a.decision == "approve").count(),
            submitter: r.submitter.clone(),
            deadline_at_ms: r.deadline_at_ms,
            on_deadline: parse(&r.on_deadline),
            created_at_ms: r.created_at_ms,
            decided_at_ms: r.decided_at_ms,
            decided_by: r.decided_by.clone(),
            reason: r.reason.clone(),
            decisions: r
                .acts
                .iter()
                .map(|a| ReviewActView {
                    seq: a.seq,
                    actor: a.actor.clone(),
                    user_id: a.user_id.clone(),
                    decision: a.decision.clone(),
                    values: parse(&a.values),
                    comment: a.comment.clone(),
                    reason: a.reason.clone(),
                    queue: a.queue.clone(),
                    at_ms: a.at_ms,
                })
                .collect(),
        }
    }
}

/// Lists review tasks, newest first (pending ones by default).
#[utoipa::path(
    get,
    path = "/api/v1/reviews",
    tag = "reviews",
    params(ReviewQuery),
    responses(
        (status = 200, description = "A page of review tasks", body = ReviewPage),
        (status = 400, description = "Bad parameter; `errors` names it", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Missing or unknown token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Token lacks `reviews:decide`, or may not see this queue", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = ["reviews:decide"]))
)]
pub async fn list_reviews(
    State(state): State<AppState>,
    caller: Caller,
    query: Result<Query<ReviewQuery>, QueryRejection>,
) -> Result<Json<ReviewPage>, ApiError> {
    caller.require(Scope::ReviewsDecide)?;
    let Query(q) = query.map_err(query_rejection)?;
    let status = match q.status.as_deref().unwrap_or("pending") {
        "all" => None,
        s => Some(ReviewStatus::parse(s).ok_or_else(|| {
            ApiError::BadRequest(FieldProblem::parameter(
                "status",
                "must be pending, approved, rejected, handed_off or all",
            ))
        })?),
    };
    let queue = q.queue.filter(|s| !s.is_empty());
    if let Some(queue) = &queue {
        caller.require_queue(queue)?;
    }
    let limit = count_param("limit", q.limit.as_deref(), DEFAULT_REVIEWS, MAX_REVIEWS)?;
    if let Some(c) = &q.cursor
        && (c.is_empty() || c.len() > 128)
    {
        return Err(ApiError::BadRequest(FieldProblem::parameter(
            "cursor",
            "is not a cursor this server issued",
        )));
    }
    let mut items = state
        .engine
        .reviews(&ReviewFilter {
            status,
            queue,
            queues: caller.queues().map(<[String]>::to_vec),
            before: q.cursor,
            limit: limit + 1,
        })
        .await?;
    let next_cursor = if items.len() > limit {
        items.truncate(limit);
        items.last().map(|r| r.id.clone())
    } else {
        None
    };
    Ok(Json(ReviewPage {
        items: items.iter().map(ReviewView::from_review).collect(),
        next_cursor,
    }))
}

async fn visible(state: &AppState, caller: &Caller, id: &str) -> Result<Review, ApiError> {
    let r = state
        .engine
        .review(id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("no review with id `{id}`")))?;
    caller.require_queue(&r.queue)?;
    Ok(r)
}

/// One review task: drafts, schemas, decisions and (once approved) values.
#[utoipa::path(
    get,
    path = "/api/v1/reviews/{id}",
    tag = "reviews",
    params(("id" = String, Path, description = "Review id")),
    responses(
        (status = 200, description = "The task", body = ReviewView),
        (status = 401, description = "Missing or unknown token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Token lacks `reviews:decide`, or may not see this queue", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "Unknown review", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = ["reviews:decide"]))
)]
pub async fn get_review(
    State(state): State<AppState>,
    Path(id): Path<String>,
    caller: Caller,
) -> Result<Json<ReviewView>, ApiError> {
    caller.require(Scope::ReviewsDecide)?;
    let r = visible(&state, &caller, &id).await?;
    Ok(Json(ReviewView::from_review(&r)))
}

/// Decides a task: approve (optionally with edited `values`), reject (with
/// a `reason`) or escalate (to `queue`). A final approval resumes the run
/// with the approved values; a rejection ends it `rejected`.
#[utoipa::path(
    post,
    path = "/api/v1/reviews/{id}/decision",
    tag = "reviews",
    params(("id" = String, Path, description = "Review id")),
    request_body(content = DecisionBody, content_type = "application/json"),
    responses(
        (status = 200, description = "Recorded; the task as it now stands", body = ReviewView),
        (status = 400, description = "Malformed JSON", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Missing or unknown token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Token lacks `reviews:decide`, it or its user may not act on this queue, or the four-eyes rule forbids it (including a token tied to no user approving a task that needs distinct people)", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "Unknown review", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Already decided, or the run has ended", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "Body too large", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "Body is not `application/json`", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid decision; `errors` names each bad field (`/values/<field>`, `/reason`, `/queue`: also a queue no workflow or user knows)", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = ["reviews:decide"]))
)]
pub async fn decide(
    State(state): State<AppState>,
    Path(id): Path<String>,
    caller: Caller,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<ReviewView>, ApiError> {
    caller.require(Scope::ReviewsDecide)?;
    let value = json_body(&headers, body, state.config.body_limit)?;
    let body: DecisionBody = serde_json::from_value(value)
        .map_err(|e| ApiError::Validation(vec![FieldProblem::pointer("", e.to_string())]))?;
    let decision = to_decision(body)?;
    visible(&state, &caller, &id).await?;
    match state
        .engine
        .decide_review(&id, decision, &caller.decider())
        .await
    {
        Ok(r) => Ok(Json(ReviewView::from_review(&r))),
        Err(e) => Err(match e {
            ReviewError::NotFound => ApiError::NotFound(format!("no review with id `{id}`")),
            ReviewError::Closed(s) => ApiError::ReviewConflict {
                detail: format!("the review is already {}", s.as_str()),
                run_status: None,
            },
            ReviewError::RunEnded(s) => ApiError::ReviewConflict {
                detail: format!("the run is already {s}"),
                run_status: Some(s.as_str().into()),
            },
            ReviewError::Refused(d) => match d {
                DecisionError::Invalid(errors) => ApiError::Validation(
                    errors
                        .into_iter()
                        .map(|f| FieldProblem::pointer(f.pointer, f.message))
                        .collect(),
                ),
                DecisionError::ReasonRequired => ApiError::Validation(vec![FieldProblem::pointer(
                    "/reason",
                    "a rejection needs a reason",
                )]),
                e @ DecisionError::HandOffReasonRequired => {
                    ApiError::Validation(vec![FieldProblem::pointer("/reason", e.to_string())])
                }
                DecisionError::QueueRequired => ApiError::Validation(vec![FieldProblem::pointer(
                    "/queue",
                    "name a queue other than the task's own",
                )]),
                e @ DecisionError::UnknownQueue(_) => {
                    ApiError::Validation(vec![FieldProblem::pointer("/queue", e.to_string())])
                }
                DecisionError::NotAllowed { queue, .. } => ApiError::ForbiddenQueue(queue),
                e @ (DecisionError::SelfApproval
                | DecisionError::AlreadyApproved(_)
                | DecisionError::Unidentified(..)) => ApiError::FourEyes(e.to_string()),
            },
            ReviewError::Store(e) => ApiError::from(e),
        }),
    }
}

fn to_decision(b: DecisionBody) -> Result<Decision, ApiError> {
    let comment = b.comment.filter(|c| !c.trim().is_empty());
    Ok(match b.decision.as_str() {
        "approve" => Decision::Approve {
            values: b.values.unwrap_or_default(),
            comment,
        },
        "reject" => Decision::Reject {
            reason: b.reason.unwrap_or_default(),
            comment,
        },
        "escalate" => Decision::Escalate {
            queue: b.queue.unwrap_or_default(),
            comment,
        },
        "hand_off" => Decision::HandOff {
            reason: b.reason.unwrap_or_default(),
            comment,
        },
        _ => {
            return Err(ApiError::Validation(vec![FieldProblem::pointer(
                "/decision",
                "must be approve, reject, escalate or hand_off",
            )]));
        }
    })
}
