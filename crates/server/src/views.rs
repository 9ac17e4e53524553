//! Wire types of the API and their construction from store rows.
//!
//! These are the API's own types (serialise at the edges): store rows and
//! domain types can change without changing what clients see. Stored JSON
//! text is parsed back into JSON values; times are RFC 3339 in UTC.

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::Value as Json;
use utoipa::ToSchema;

/// Where to find a run and its audit log.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Links {
    /// The run: `GET /api/v1/runs/{id}`.
    #[serde(rename = "self")]
    pub run: String,
    /// Its audit log: `GET /api/v1/runs/{id}/events`.
    pub events: String,
}

impl Links {
    pub fn for_run(id: &str) -> Links {
        Links {
            run: format!("/api/v1/runs/{id}"),
            events: format!("/api/v1/runs/{id}/events"),
        }
    }
}

/// Answer to a run submission (API or webhook).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Submission {
    pub run_id: String,
    /// `queued`, `running`, `waiting`, `completed`, `failed`, `cancelled` or `rejected`.
    #[schema(example = "queued")]
    pub status: String,
    /// False when an `Idempotency-Key` (or the workflow's idempotency field)
    /// matched an earlier run, which is returned instead.
    pub created: bool,
    /// Why a waiting run waits (`review`, `timer`, `retry`); only with `?wait=`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub wait: Option<String>,
    /// Named outcome of a finished run (e.g. `completed`, `discarded`); only with `?wait=`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub outcome: Option<String>,
    /// Why the run failed; only with `?wait=`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Output of each completed step by step id; only with `?wait=` once settled.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub outputs: Option<BTreeMap<String, Json>>,
    pub links: Links,
}

/// One run in a listing.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct RunSummary {
    pub id: String,
    pub workflow: String,
    /// The workflow version the run executes.
    pub version: i64,
    #[schema(example = "completed")]
    pub status: String,
    /// Why a waiting run waits: `review`, `timer` or `retry`.
    pub wait: Option<String>,
    pub outcome: Option<String>,
    pub error: Option<String>,
    /// RFC 3339.
    pub created_at: String,
    /// RFC 3339.
    pub updated_at: String,
    pub links: Links,
}

impl RunSummary {
    pub fn from_run(r: &store::Run) -> RunSummary {
        RunSummary {
            id: r.id.clone(),
            workflow: r.workflow.clone(),
            version: r.version,
            status: r.status.as_str().into(),
            wait: r.wait.map(|w| w.as_str().into()),
            outcome: r.outcome.clone(),
            error: r.error.clone(),
            created_at: rfc3339(r.created_at_ms),
            updated_at: rfc3339(r.updated_at_ms),
            links: Links::for_run(&r.id),
        }
    }
}

/// A page of runs, newest first.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct RunPage {
    pub items: Vec<RunSummary>,
    /// Pass as `cursor` to get the next page; absent on the last page.
    pub next_cursor: Option<String>,
}

/// Everything about one run.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct RunView {
    #[serde(flatten)]
    pub summary: RunSummary,
    /// The validated, normalised input.
    pub input: Json,
    pub idempotency_key: Option<String>,
    /// The step the run is on (or stopped at).
    pub position: PositionView,
    /// Output of the latest completed attempt of each step, by step id.
    pub outputs: BTreeMap<String, Json>,
    /// Every attempt of every step, in order.
    pub steps: Vec<StepAttempt>,
    /// The effect journal: calls that changed outside systems.
    pub effects: Vec<EffectView>,
    /// The run's current review task: the pending one, else the latest;
    /// null when the run has none.
    pub review: Option<RunReviewView>,
}

/// The review task of a run, in brief; the full task is at `links.self`.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct RunReviewView {
    pub id: String,
    /// Id of the `review` step.
    pub step: String,
    pub queue: String,
    /// pending, approved, rejected.
    pub status: String,
    pub deadline_at_ms: Option<i64>,
    pub links: RunReviewLinks,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct RunReviewLinks {
    /// The task: `GET /api/v1/reviews/{id}`.
    #[serde(rename = "self")]
    pub review: String,
    /// The task in the web inbox: `/inbox/{id}`.
    pub inbox: String,
}

impl RunReviewView {
    pub fn from_review(r: &store::Review) -> RunReviewView {
        RunReviewView {
            id: r.id.clone(),
            step: r.step_id.clone(),
            queue: r.queue.clone(),
            status: r.status.as_str().into(),
            deadline_at_ms: r.deadline_at_ms,
            links: RunReviewLinks {
                review: format!("/api/v1/reviews/{}", r.id),
                inbox: format!("/inbox/{}", r.id),
            },
        }
    }
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct PositionView {
    pub step_index: usize,
    pub failed_attempts: u32,
}

/// One execution attempt of a step.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct StepAttempt {
    pub index: usize,
    pub step_id: String,
    pub attempt: u32,
    /// `completed`, `skipped`, `failed` or `waiting`.
    pub status: String,
    pub output: Option<Json>,
    pub error: Option<String>,
    pub started_at: String,
    pub finished_at: String,
}

/// One entry of the effect journal.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct EffectView {
    /// The idempotency key sent to the outside system.
    pub key: String,
    pub step_id: String,
    /// `started`, `completed` or `failed`.
    pub status: String,
    pub request_digest: Option<String>,
    pub external_id: Option<String>,
    pub at: String,
}

impl RunView {
    pub fn from_detail(d: &store::RunDetail) -> RunView {
        RunView {
            summary: RunSummary::from_run(&d.run),
            input: parse_json(&d.run.input),
            idempotency_key: d.run.idempotency_key.clone(),
            position: PositionView {
                step_index: d.run.position.index,
                failed_attempts: d.run.position.failed_attempts,
            },
            outputs: outputs(&d.steps),
            steps: d
                .steps
                .iter()
                .map(|s| StepAttempt {
                    index: s.index,
                    step_id: s.step_id.clone(),
                    attempt: s.attempt,
                    status: s.status.as_str().into(),
                    output: s.output.as_deref().map(parse_json),
                    error: s.error.clone(),
                    started_at: rfc3339(s.started_at_ms),
                    finished_at: rfc3339(s.finished_at_ms),
                })
                .collect(),
            effects: d
                .effects
                .iter()
                .map(|e| EffectView {
                    key: e.key.clone(),
                    step_id: e.step_id.clone(),
                    status: e.status.as_str().into(),
                    request_digest: e.request_digest.clone(),
                    external_id: e.external_id.clone(),
                    at: rfc3339(e.at_ms),
                })
                .collect(),
            review: None,
        }
    }
}

/// One audit event.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct EventView {
    /// Position in the run's log, from 1.
    pub seq: i64,
    /// e.g. `run.received`, `step.completed`, `run.completed`.
    pub kind: String,
    /// `system`, `webhook`, `token:<id>` or `user:<id>`.
    pub actor: String,
    pub data: Json,
    /// RFC 3339.
    pub at: String,
    /// SHA-256 chaining this event to `prev_hash` (see `countersign audit verify`).
    pub hash: String,
    pub prev_hash: String,
}

impl EventView {
    pub fn from_event(e: &store::Event) -> EventView {
        EventView {
            seq: e.seq,
            kind: e.kind.clone(),
            actor: e.actor.clone(),
            data: parse_json(&e.data),
            at: rfc3339(e.at_ms),
            hash: e.hash.clone(),
            prev_hash: e.prev_hash.clone(),
        }
    }
}

/// A page of a run's audit log, oldest first.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct EventPage {
    pub items: Vec<EventView>,
    /// Pass as `after` to get the next page; absent on the last page.
    pub next_after: Option<i64>,
}

/// Health check answer.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Health {
    #[schema(example = "ok")]
    pub status: String,
}

/// Output of the latest completed attempt of each step, by step id.
pub fn outputs(steps: &[store::StepRecord]) -> BTreeMap<String, Json> {
    let mut out = BTreeMap::new();
    for s in steps {
        // Later attempts come later: the last one wins.
        if s.status == store::StepStatus::Completed
            && let Some(o) = &s.output
        {
            out.insert(s.step_id.clone(), parse_json(o));
        }
    }
    out
}

/// Stored JSON text as a value; text that is not JSON is served as a string.
/// A string schema whose values are `names` (the engine's own list, so a
/// new status or decision cannot be missing from the document).
fn names_schema(
    names: impl IntoIterator<Item = &'static str>,
    description: &str,
) -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
    utoipa::openapi::ObjectBuilder::new()
        .schema_type(utoipa::openapi::schema::Type::String)
        .enum_values(Some(names))
        .description(Some(description))
        .into()
}

/// Names one of [`domain::run::RunStatus::ALL`] in the document.
pub struct RunStatusName;

impl utoipa::PartialSchema for RunStatusName {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        names_schema(
            domain::run::RunStatus::ALL.map(domain::run::RunStatus::as_str),
            "A run's status.",
        )
    }
}

impl ToSchema for RunStatusName {}

/// Names one of [`store::ReviewStatus::ALL`], or `all`, in the document.
pub struct ReviewStatusName;

impl utoipa::PartialSchema for ReviewStatusName {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        names_schema(
            store::ReviewStatus::ALL
                .map(store::ReviewStatus::as_str)
                .into_iter()
                .chain(["all"]),
            "A review task's status, or `all`.",
        )
    }
}

impl ToSchema for ReviewStatusName {}

/// Names one of [`domain::review::Decision::NAMES`] in the document.
pub struct DecisionName;

impl utoipa::PartialSchema for DecisionName {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        names_schema(domain::review::Decision::NAMES, "What a reviewer decides.")
    }
}

impl ToSchema for DecisionName {}

/// For `Option<String>` query parameters: an empty value (`?status=`)
/// means the parameter is absent, as HTML forms and generated clients send
/// it.
pub fn empty_as_none<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    let v: Option<String> = serde::Deserialize::deserialize(d)?;
    Ok(v.filter(|s| !s.is_empty()))
}

pub fn parse_json(text: &str) -> Json {
    serde_json::from_str(text).unwrap_or_else(|_| Json::String(text.to_string()))
}

/// Milliseconds since the epoch as RFC 3339 UTC with milliseconds.
pub fn rfc3339(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .unwrap_or_default()
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_rfc3339_utc() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339(1_700_000_000_123), "2023-11-14T22:13:20.123Z");
    }

    #[test]
    fn stored_text_that_is_not_json_stays_a_string() {
        assert_eq!(parse_json("{\"a\":1}")["a"], 1);
        assert_eq!(parse_json("oops"), Json::String("oops".into()));
    }
}
