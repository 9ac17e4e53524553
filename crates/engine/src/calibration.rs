//! Calibration evidence from the store: decided review tasks read once
//! (`Reviews::calibration_reviews`), turned into `domain::calibration`
//! tasks and judged by its evidence rules. The CLI, the API and the
//! console all measure through [`measure`].

use std::collections::BTreeMap;

use domain::calibration::{self, Act, Approved, Evidence, Query, State, Task};
use serde_json::Value as Json;
use store::{CalibrationQuery, CalibrationReview, ReviewStatus, Store};

use crate::review::fields_of;

/// Tasks read at most for one measure (the newest).
pub const READ_LIMIT: usize = 20_000;

/// Which tasks to measure.
#[derive(Debug, Clone, Default)]
pub struct Scope {
    pub workflow: Option<String>,
    pub since_ms: Option<i64>,
    /// A caller limited to these queues; `None`: every queue.
    pub queues: Option<Vec<String>>,
    /// Slice by `provider`, `model` or a reviewed field's draft.
    pub by: Option<String>,
}

/// The evidence of a scope.
#[derive(Debug, Clone)]
pub struct Measured {
    pub evidence: Evidence,
    /// [`READ_LIMIT`] tasks were read: older ones were left out.
    pub truncated: bool,
    /// The hash of each `(workflow, version)` measured, when stored.
    pub hashes: BTreeMap<(String, i64), String>,
}

impl Measured {
    /// The slice names nothing any counted task has (likely misspelt).
    pub fn unknown_slice(&self) -> bool {
        self.evidence.tasks > 0 && !self.evidence.slice_found
    }
}

/// Reads and judges the evidence of `scope`.
pub async fn measure(store: &dyn Store, scope: &Scope) -> store::Result<Measured> {
    let rows = store
        .calibration_reviews(&CalibrationQuery {
            workflow: scope.workflow.clone(),
            since_ms: scope.since_ms,
            queues: scope.queues.clone(),
            limit: READ_LIMIT,
        })
        .await?;
    let tasks: Vec<Task> = rows.iter().map(task_of).collect();
    let hashes = rows
        .iter()
        .filter_map(|c| {
            c.version_hash
                .clone()
                .map(|h| ((c.review.workflow.clone(), c.version), h))
        })
        .collect();
    Ok(Measured {
        evidence: calibration::evidence(
            &tasks,
            &Query {
                since_ms: scope.since_ms,
                by: scope.by.clone(),
            },
        ),
        truncated: rows.len() >= READ_LIMIT,
        hashes,
    })
}

/// A stored task as the evidence rules read it.
pub fn task_of(c: &CalibrationReview) -> Task {
    let r = &c.review;
    let parse = |s: &str| serde_json::from_str::<Json>(s).unwrap_or(Json::Null);
    // The latest completed attempt of each step before the review's.
    let mut models = BTreeMap::new();
    for s in c.sources.iter().filter(|s| s.index < r.step_index) {
        let out = s.output.as_deref().map(parse).unwrap_or(Json::Null);
        let text = |k: &str| out.get(k).and_then(Json::as_str).map(str::to_string);
        models.insert(s.step_id.clone(), (text("provider"), text("model")));
    }
    Task {
        review_id: r.id.clone(),
        run_id: r.run_id.clone(),
        workflow: r.workflow.clone(),
        version: c.version,
        step: r.step_id.clone(),
        state: match r.status {
            ReviewStatus::Pending => State::Pending,
            ReviewStatus::Approved => State::Approved,
            ReviewStatus::Rejected => State::Rejected,
            ReviewStatus::HandedOff => State::HandedOff,
        },
        fields: fields_of(r),
        approved: r
            .results
            .iter()
            .map(|f| Approved {
                field: f.field.clone(),
                value: parse(&f.value),
                by: f.decided_by.clone(),
                at_ms: f.decided_at_ms,
            })
            .collect(),
        acts: r
            .acts
            .iter()
            .map(|a| Act {
                actor: a.actor.clone(),
                decision: a.decision.clone(),
                comment: a.comment.clone(),
                at_ms: a.at_ms,
            })
            .collect(),
        models,
    }
}
