//! `control: review` on side-effecting steps: the step's concrete action
//! (the exact email, Slack text, CRM column values) becomes a review task
//! before it is performed.
//!
//! A connector renders its action, then calls [`StepCx::require_approval`]
//! with the action's editable parts. The first attempt creates the task
//! (idempotently: one per run and step, through the same store machinery as
//! the `review` step) and answers [`Approval::Pending`] with the outcome
//! that suspends the run; the reviewer's decision goes through
//! `Engine::decide_review` like any task. After a final approval the run is
//! queued again and the step answers [`Approval::Approved`] with the
//! approved (possibly edited) values, which the connector applies before it
//! performs the effect, journalled as usual. A rejection ends the run
//! `rejected` in the decision's transaction; should the step still run, it
//! answers [`Approval::Rejected`] with a permanent failure. Nothing is
//! performed before approval.

use domain::event::kind;
use domain::review::Field;
use domain::run::{StepOutcome, WaitReason};
use serde_json::{Map, Value as Json, json};
use store::{NewReview, ReviewStatus};

use crate::now_ms;
use crate::preview::ActionPreview;
use crate::review::results_of;
use crate::step::StepCx;

/// The queue of action reviews when the step names none.
pub const DEFAULT_QUEUE: &str = "default";

/// One editable part of an action (e.g. an email's `subject`).
#[derive(Debug, Clone, PartialEq)]
pub struct ActionField {
    pub name: String,
    /// The value the step would use unreviewed.
    pub draft: Json,
    /// JSON Schema of the value (type, enum, maxLength); edits are
    /// validated against it.
    pub schema: Option<Json>,
}

impl ActionField {
    /// A free-text field.
    pub fn text(name: &str, draft: impl Into<String>) -> ActionField {
        ActionField {
            name: name.into(),
            draft: Json::String(draft.into()),
            schema: Some(json!({ "type": "string" })),
        }
    }
}

/// Where an action under `control: review` stands.
#[derive(Debug)]
pub enum Approval {
    /// Not decided yet: return this outcome (it suspends the run; or, when
    /// the task could not be read or created, asks for a retry).
    Pending(StepOutcome),
    /// Approved: perform the action with these values, by field name.
    Approved(Map<String, Json>),
    /// Rejected: return this outcome (a permanent failure; the decision
    /// has already ended the run `rejected`).
    Rejected(StepOutcome),
}

fn transient(error: String) -> Approval {
    Approval::Pending(StepOutcome::Transient {
        error,
        retry_after_ms: None,
    })
}

impl StepCx<'_> {
    /// Asks people to approve this step's concrete action before it runs
    /// (`control: review`). `fields` are the action's editable parts,
    /// `preview` the whole action as shown with the task, `queue` the
    /// review queue. See the module documentation.
    pub async fn require_approval(
        &mut self,
        queue: &str,
        fields: Vec<ActionField>,
        preview: &ActionPreview,
    ) -> Approval {
        let action = preview.to_json();
        let existing = match self
            .store
            .review_for_step(self.run_id, self.step.index)
            .await
        {
            Ok(r) => r,
            Err(e) => return transient(format!("reading the review task failed: {e}")),
        };
        let r = match existing {
            Some(r) => r,
            None => {
                let now = now_ms();
                let stored: Vec<Field> = fields
                    .iter()
                    .map(|f| Field {
                        name: f.name.clone(),
                        step: self.step.id.clone(),
                        draft: f.draft.clone(),
                        schema: f.schema.clone(),
                    })
                    .collect();
                let workflow = self
                    .vars
                    .get("run")
                    .and_then(|v| serde_json::to_value(v).ok())
                    .and_then(|v| v.get("workflow").and_then(Json::as_str).map(String::from))
                    .unwrap_or_default();
                let new = NewReview {
                    id: uuid::Uuid::now_v7().to_string(),
                    run_id: self.run_id.to_string(),
                    step_index: self.step.index,
                    step_id: self.step.id.clone(),
                    workflow,
                    queue: queue.to_string(),
                    fields: Json::Array(stored.iter().map(Field::to_json).collect()).to_string(),
                    min_approvals: 1,
                    deadline_at_ms: None,
                    on_deadline: Json::Null.to_string(),
                    notify: "[]".into(),
                    created_at_ms: now,
                };
                let id = new.id.clone();
                let r = match self.store.create_review(new).await {
                    Ok(r) => r,
                    Err(e) => return transient(format!("creating the review task failed: {e}")),
                };
                if r.id == id {
                    self.record(
                        kind::REVIEW_REQUESTED,
                        &json!({ "review": r.id, "step": r.step_id, "queue": r.queue,
                            "fields": fields.iter().map(|f| f.name.as_str()).collect::<Vec<_>>(),
                            "min_approvals": 1, "deadline_ms": null, "notify": [],
                            "control": "review", "action": action }),
                    );
                }
                r
            }
        };
        match r.status {
            ReviewStatus::Approved => Approval::Approved(
                results_of(&r)
                    .into_iter()
                    .map(|f| (f.name, f.value))
                    .collect(),
            ),
            ReviewStatus::Rejected => Approval::Rejected(StepOutcome::Permanent {
                error: format!(
                    "review {} of the action was rejected: {}",
                    r.id,
                    r.reason.as_deref().unwrap_or("")
                ),
            }),
            ReviewStatus::Pending => Approval::Pending(StepOutcome::Suspend {
                output: json!({ "review": r.id, "status": "pending", "queue": r.queue,
                    "control": "review", "action": action }),
                reason: WaitReason::Review,
                deadline_ms: None,
            }),
        }
    }

    /// The approved values of this step's action, if its task was
    /// approved; never creates a task (for `Step::reconcile`, which runs
    /// only after an approved attempt journalled its effect).
    pub async fn approved_action(&mut self) -> Option<Map<String, Json>> {
        let r = self
            .store
            .review_for_step(self.run_id, self.step.index)
            .await
            .ok()??;
        (r.status == ReviewStatus::Approved).then(|| {
            results_of(&r)
                .into_iter()
                .map(|f| (f.name, f.value))
                .collect()
        })
    }
}
