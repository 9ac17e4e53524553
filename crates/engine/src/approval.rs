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

/// How long an action's own review task may wait before the inbox shows it
/// overdue (nothing is decided automatically).
pub const ACTION_DEADLINE_MS: i64 = 24 * 60 * 60 * 1000;

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
                // A rule raised this action to review: it asks a person
                // itself, whatever a covering review approved.
                let raised = self.raised();
                // `covers:`: a person approved exactly this action with
                // the covering review, so it does not ask again.
                let cover = match (&raised, &self.step.covered_by) {
                    (Some(r), Some(by)) => Some(Err(json!({ "covered_by": by,
                        "why": format!("a rule raised this action to review: {}", r["why"].as_str().unwrap_or_default()) }))),
                    (Some(_), None) => None,
                    (None, _) => match self.cover(preview).await {
                        Ok(c) => c,
                        Err(e) => return transient(e),
                    },
                };
                let cover = match cover {
                    Some(Ok(covered)) => {
                        self.record(kind::REVIEW_COVERED, &covered);
                        return Approval::Approved(Map::new());
                    }
                    Some(Err(why)) => Some(why),
                    None => None,
                };
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
                    deadline_at_ms: Some(now + ACTION_DEADLINE_MS),
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
                    let mut data = json!({ "review": r.id, "step": r.step_id, "queue": r.queue,
                        "fields": fields.iter().map(|f| f.name.as_str()).collect::<Vec<_>>(),
                        "min_approvals": 1, "deadline_ms": r.deadline_at_ms, "notify": [],
                        "control": "review", "title": preview.title,
                        "priority": self.priority(), "action": action });
                    if let Some(why) = cover {
                        data["cover"] = why;
                    }
                    if let Some(raised) = raised {
                        data["raised"] = raised;
                    }
                    self.record(kind::REVIEW_REQUESTED, &data);
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
            // The decision's transaction ended the run `handed_off`; a
            // step that still sees the task ends the run the same way.
            ReviewStatus::HandedOff => Approval::Rejected(StepOutcome::Finish {
                output: json!({ "review": r.id, "decision": "handed_off", "reason": r.reason }),
                outcome: "handed_off".into(),
            }),
            ReviewStatus::Pending => Approval::Pending(StepOutcome::Suspend {
                output: json!({ "review": r.id, "status": "pending", "queue": r.queue,
                    "control": "review", "action": action }),
                reason: WaitReason::Review,
                deadline_ms: None,
            }),
        }
    }

    /// For a step a review covers: `Some(outcome)` when the reviewer
    /// unticked it on the approval (`skip_actions`), so it is skipped and
    /// `action.unticked` recorded, or when the audit log could not be read
    /// (a retry); `None`: go on. Call before rendering or asking anything.
    pub async fn unticked(&mut self) -> Option<StepOutcome> {
        let review_step = self.step.covered_by.clone()?;
        let decided = match covering_decision(self.store, self.run_id, &review_step).await {
            Ok(d) => d?,
            Err(error) => {
                return Some(StepOutcome::Transient {
                    error,
                    retry_after_ms: None,
                });
            }
        };
        let step = self.step.id.clone();
        let unticked = decided
            .get("unticked")
            .and_then(Json::as_array)
            .is_some_and(|u| u.iter().any(|s| s.as_str() == Some(step.as_str())));
        if !unticked {
            return None;
        }
        let reason = format!("unticked on the review `{review_step}`: not performed");
        self.record(
            kind::ACTION_UNTICKED,
            &json!({ "step": step, "covered_by": review_step, "review": decided["review"],
                "reason": reason }),
        );
        Some(StepOutcome::Skipped { reason })
    }

    /// Whether a rule on this run raised this step to `review` (see
    /// `StepDef::raised_by`): the rules step, the rule's index and why.
    pub fn raised(&self) -> Option<Json> {
        self.step.raised_by.iter().find_map(|rules| {
            let out = serde_json::to_value(self.vars.get(rules)?).ok()?;
            let (rule, why) = domain::steps::raised_in(out.as_object()?, &self.step.id)?;
            Some(json!({ "control": domain::steps::RAISED_LEVEL, "rules": rules, "rule": rule, "why": why }))
        })
    }

    /// The run's priority, as people set it: `approved.priority` (a
    /// reviewed field), else `null`.
    fn priority(&self) -> Json {
        self.vars
            .get("approved")
            .and_then(|v| serde_json::to_value(v).ok())
            .and_then(|a| a.get("priority").filter(|p| p.is_string()).cloned())
            .unwrap_or(Json::Null)
    }

    /// Whether the covering review (`covers:`) approved this action:
    /// `None` when no review covers the step; `Some(Ok(event data))`
    /// when a person's final approval recorded this preview's digest;
    /// `Some(Err(why not))` otherwise. `Err`: the audit log could not be
    /// read (try again).
    async fn cover(
        &mut self,
        preview: &ActionPreview,
    ) -> Result<Option<Result<Json, Json>>, String> {
        let Some(review_step) = self.step.covered_by.clone() else {
            return Ok(None);
        };
        let decided = covering_decision(self.store, self.run_id, &review_step).await?;
        let step = self.step.id.clone();
        let not = |why: String| Ok(Some(Err(json!({ "covered_by": review_step, "why": why }))));
        let Some(d) = decided else {
            return not(format!(
                "the covering review `{review_step}` has no final approval on record"
            ));
        };
        if d["decided_by"] == json!(domain::review::POLICY) || d["review"].is_null() {
            return not(format!(
                "the covering review `{review_step}` was skipped by policy, not decided by a person"
            ));
        }
        let Some(covers) = d.get("covers").and_then(Json::as_object) else {
            return not(format!(
                "the covering review `{review_step}` was not approved by a person (no previews were approved with it)"
            ));
        };
        match covers.get(&step).and_then(Json::as_str) {
            Some(approved) if approved == preview.digest => Ok(Some(Ok(json!({
                "step": step, "covered_by": review_step, "review": d["review"],
                "digest": preview.digest, "title": preview.title,
                "why": format!("approved with the review `{review_step}` as previewed"),
            })))),
            Some(approved) => not(format!(
                "the action differs from the one approved with the review `{review_step}` (digest {} now, {} approved)",
                preview.digest, approved
            )),
            None => not(format!(
                "no preview of this action was approved with the review `{review_step}` (it would not run, or could not be rendered, when the review was decided)"
            )),
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

/// The data of the latest final approval (`review.decided`) of the
/// review step `review_step` in the run's audit log.
async fn covering_decision(
    store: &dyn store::Store,
    run_id: &str,
    review_step: &str,
) -> Result<Option<Json>, String> {
    let mut after = 0;
    let mut found = None;
    loop {
        let page = store
            .events(run_id, after, 500)
            .await
            .map_err(|e| format!("reading the audit log failed: {e}"))?;
        let Some(last) = page.last() else {
            return Ok(found);
        };
        after = last.seq;
        for e in page.iter().filter(|e| e.kind == kind::REVIEW_DECIDED) {
            let Ok(d) = serde_json::from_str::<Json>(&e.data) else {
                continue;
            };
            if d["step"] == json!(review_step)
                && d["decision"] == json!("approve")
                && d["final"] == json!(true)
            {
                found = Some(d);
            }
        }
    }
}
