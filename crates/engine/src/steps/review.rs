//! `review`: pauses the run until people approve (optionally editing),
//! reject or escalate the reviewed fields (see `domain::review`).
//!
//! One attempt does one of:
//! - skip by policy (`when:` false, or a `rules` step said `review: skip`):
//!   recorded as decided by `policy`, naming the rule; `approved.*` are the
//!   AI drafts;
//! - create the task (idempotently), notify people (`notify: [slack,
//!   email]`, through the [`Notifier`] the kind was built with; each
//!   notification journalled under its own key, so sent at most once) and
//!   suspend until its deadline (or, when a notification should be tried
//!   again, until the retry is due);
//! - after a final approval: complete with the approved values;
//! - after the deadline: apply `on_deadline`. An escalation moves the task
//!   and keeps waiting; a rejection or auto-approval is committed as a
//!   decision by `system`, which fences this attempt (its commit then
//!   conflicts) and, for an approval, queues the run again.

use std::sync::Arc;

use async_trait::async_trait;
use domain::event::{SYSTEM, kind};
use domain::expr::Scope;
use domain::review::{self, Field, OnDeadline, ReviewSpec, Verdict};
use domain::run::{StepOutcome, WaitReason};
use domain::workflow::{Cx, StepDef};
use serde_json::{Value as Json, json};
use store::{NewEvent, NewReview, Review, ReviewAct, ReviewStatus};

use crate::notify::{Notice, Notifier};
use crate::now_ms;
use crate::review::{fields_of, persist, results_of};
use crate::step::{Step, StepCx, StepKind};

/// The `review` kind; [`Kind::with_notifier`] makes it notify people.
#[derive(Default)]
pub struct Kind {
    notifier: Option<Arc<dyn Notifier>>,
}

impl Kind {
    pub fn with_notifier(notifier: Arc<dyn Notifier>) -> Kind {
        Kind {
            notifier: Some(notifier),
        }
    }
}

impl StepKind for Kind {
    fn name(&self) -> &'static str {
        "review"
    }

    fn compile(&self, def: &StepDef, scope: &Scope, cx: &mut Cx) -> Option<Arc<dyn Step>> {
        self.compile_in(&[], def, scope, cx)
    }

    fn compile_in(
        &self,
        earlier: &[StepDef],
        def: &StepDef,
        _scope: &Scope,
        cx: &mut Cx,
    ) -> Option<Arc<dyn Step>> {
        let before = cx.errors.len();
        let spec = review::parse_review(&def.body, earlier, cx)?;
        if let Some(notifier) = &self.notifier {
            for channel in &spec.notify {
                let named = match channel.as_str() {
                    "slack" => spec.slack_channel.is_some(),
                    "email" => !spec.notify_email.is_empty(),
                    _ => true,
                };
                if named || notifier.has_target(channel, &spec.queue) {
                    continue;
                }
                let (key, var, example) = match channel.as_str() {
                    "slack" => ("slack_channel", "COUNTERSIGN_SLACK_CHANNELS", "#reviewers"),
                    _ => (
                        "notify_email",
                        "COUNTERSIGN_REVIEW_EMAILS",
                        "ops@example.com",
                    ),
                };
                let at = match &def.body.value {
                    domain::yaml::Value::Map(m) => {
                        m.iter().find(|(k, _)| k == "notify").map(|(_, n)| n)
                    }
                    _ => None,
                }
                .unwrap_or(&def.body);
                cx.errors.push(at.error(format!(
                    "`notify: [{channel}]` has nowhere to send tasks of queue `{q}`: set `{key}:` on the step, or {var} in the environment (e.g. `{q}={example}`)",
                    q = spec.queue
                )));
            }
        }
        (cx.errors.len() == before).then(|| {
            Arc::new(ReviewStep {
                spec,
                notifier: self.notifier.clone(),
            }) as Arc<dyn Step>
        })
    }
}

struct ReviewStep {
    spec: ReviewSpec,
    notifier: Option<Arc<dyn Notifier>>,
}

fn var_json(cx: &StepCx<'_>, name: &str) -> Json {
    cx.vars
        .get(name)
        .and_then(|v| serde_json::to_value(v).ok())
        .unwrap_or(Json::Null)
}

impl ReviewStep {
    fn drafts(&self, cx: &StepCx<'_>) -> Vec<Field> {
        self.spec
            .fields
            .iter()
            .map(|f| Field {
                name: f.name.clone(),
                step: f.step.clone(),
                draft: var_json(cx, &f.step)
                    .get(&f.name)
                    .cloned()
                    .unwrap_or(Json::Null),
                schema: f.schema.clone(),
            })
            .collect()
    }

    /// The step's output once decided: the per-field results and `approved`.
    fn decided(&self, cx: &StepCx<'_>, review: Json, results: &[review::FieldResult]) -> Json {
        let mut steps: Vec<&str> = self.spec.fields.iter().map(|f| f.step.as_str()).collect();
        steps.dedup();
        let outputs: Vec<Json> = steps.iter().map(|s| var_json(cx, s)).collect();
        let previous = var_json(cx, "approved");
        let approved = review::approved_values(
            Some(&previous),
            &outputs.iter().collect::<Vec<_>>(),
            results,
        );
        let mut out = review.as_object().cloned().unwrap_or_default();
        out.insert("fields".into(), review::results_json(results));
        out.insert(
            "changed".into(),
            results
                .iter()
                .filter(|r| r.changed)
                .map(|r| r.name.clone())
                .collect(),
        );
        out.insert("approved".into(), approved);
        Json::Object(out)
    }

    fn skip_policy(&self, cx: &StepCx<'_>) -> Result<Option<Json>, String> {
        if let Some(when) = &cx.step.when
            && !when.eval(cx.vars)?
        {
            return Ok(Some(
                json!({ "policy": "when", "step": cx.step.id, "when": when.source() }),
            ));
        }
        Ok(review::skip_policy(&self.rules_outputs(cx)))
    }

    /// The outputs of the `rules` steps this review obeys, in order.
    fn rules_outputs(&self, cx: &StepCx<'_>) -> Vec<(String, Json)> {
        self.spec
            .rules_steps
            .iter()
            .map(|s| (s.clone(), var_json(cx, s)))
            .collect()
    }

    fn waiting(&self, r: &Review) -> StepOutcome {
        StepOutcome::Suspend {
            output: json!({ "review": r.id, "status": "pending", "queue": r.queue }),
            reason: WaitReason::Review,
            deadline_ms: r.deadline_at_ms,
        }
    }

    /// Notifies the channels of `notify:` (each at most once, journalled by
    /// the notifier); answers when to try again, if a channel asked to.
    async fn notify(&self, cx: &mut StepCx<'_>, r: &Review) -> Option<u64> {
        let notifier = self.notifier.as_ref()?;
        if self.spec.notify.is_empty() {
            return None;
        }
        // An escalated task notifies its new queue once, under its own key,
        // to the queue's configured targets (the step's are the first queue's).
        let escalated = r.queue != self.spec.queue;
        let notice = Notice {
            review: r,
            channels: &self.spec.notify,
            slack_channel: if escalated {
                None
            } else {
                self.spec.slack_channel.as_deref()
            },
            emails: if escalated {
                &[]
            } else {
                &self.spec.notify_email
            },
            key: if escalated {
                format!("{}:escalated-{}", cx.idempotency_key(), r.queue)
            } else {
                cx.idempotency_key()
            },
            in_flight_margin_ms: cx.in_flight_margin_ms(),
        };
        let done = notifier.notify(cx.store, &notice).await;
        for (kind, data) in &done.events {
            cx.record(kind, data);
        }
        done.retry_after_ms
    }

    /// The deadline passed: apply `on_deadline`.
    async fn expire(&self, cx: &mut StepCx<'_>, r: &Review, now: i64) -> StepOutcome {
        let Some(policy) =
            OnDeadline::from_json(&serde_json::from_str(&r.on_deadline).unwrap_or(Json::Null))
        else {
            return self.waiting(&Review {
                deadline_at_ms: None,
                ..r.clone()
            });
        };
        let (verdict, decision) = match &policy {
            OnDeadline::Escalate(q) => (Verdict::Escalated { queue: q.clone() }, "escalate"),
            OnDeadline::Reject => (
                Verdict::Rejected {
                    reason: "the review deadline passed".into(),
                },
                "reject",
            ),
            OnDeadline::Approve => (
                Verdict::Approved(
                    fields_of(r)
                        .iter()
                        .map(|f| review::FieldResult {
                            name: f.name.clone(),
                            draft: f.draft.clone(),
                            value: f.draft.clone(),
                            changed: false,
                            by: SYSTEM.into(),
                            at_ms: now,
                            comment: Some("approved automatically at the deadline".into()),
                        })
                        .collect(),
                ),
                "approve",
            ),
        };
        let act = ReviewAct {
            seq: 0,
            actor: SYSTEM.into(),
            decision: decision.into(),
            values: "{}".into(),
            comment: Some("the review deadline passed".into()),
            reason: matches!(policy, OnDeadline::Reject)
                .then(|| "the review deadline passed".into()),
            queue: match &policy {
                OnDeadline::Escalate(q) => Some(q.clone()),
                _ => None,
            },
            at_ms: now,
            user_id: None,
        };
        let expired = NewEvent {
            kind: kind::REVIEW_EXPIRED.into(),
            actor: SYSTEM.into(),
            data: json!({ "review": r.id, "step": r.step_id, "queue": r.queue,
                "deadline_ms": r.deadline_at_ms, "action": policy.to_json() })
            .to_string(),
            at_ms: now,
        };
        match persist(cx.store, r, act, verdict, vec![expired]).await {
            // Escalated: keep waiting, now without a deadline. Approved or
            // rejected: the decision bumped the run's revision, so this
            // attempt's commit is refused and the run goes on from the
            // decision (queued again, or ended).
            Ok(store::Decided::Done(after)) => {
                if after.status == ReviewStatus::Pending {
                    // Escalated: tell the new queue. A failed notification
                    // is retried when the step runs again (its timer).
                    let retry_ms = self.notify(cx, &after).await;
                    if let (StepOutcome::Suspend { output, reason, .. }, Some(ms)) =
                        (self.waiting(&after), retry_ms)
                    {
                        return StepOutcome::Suspend {
                            output,
                            reason,
                            deadline_ms: Some(now + ms as i64),
                        };
                    }
                }
                self.waiting(&after)
            }
            Ok(_) => self.waiting(r),
            Err(e) => StepOutcome::Transient {
                error: format!("recording the deadline decision failed: {e}"),
                retry_after_ms: None,
            },
        }
    }
}

#[async_trait]
impl Step for ReviewStep {
    fn evaluates_when(&self) -> bool {
        true
    }

    fn approves(&self) -> Option<(Vec<String>, Vec<String>)> {
        let fields = &self.spec.fields;
        Some((
            fields.iter().map(|f| f.step.clone()).collect(),
            fields.iter().map(|f| f.name.clone()).collect(),
        ))
    }

    async fn run(&self, cx: &mut StepCx<'_>) -> StepOutcome {
        let now = now_ms();
        let policy = match self.skip_policy(cx) {
            Ok(p) => p,
            Err(error) => return StepOutcome::Permanent { error },
        };
        if let Some(policy) = policy {
            let results = review::skipped(&self.drafts(cx), now);
            let output = self.decided(
                cx,
                json!({ "review": null, "decision": "skipped", "decided_by": review::POLICY, "policy": policy }),
                &results,
            );
            cx.record(
                kind::REVIEW_DECIDED,
                &json!({ "review": null, "step": cx.step.id, "decision": "approve", "final": true,
                    "decided_by": review::POLICY, "policy": policy, "changed": [],
                    "fields": review::results_json(&results) }),
            );
            return StepOutcome::Done { output };
        }
        let existing = match cx.store.review_for_step(cx.run_id, cx.step.index).await {
            Ok(r) => r,
            Err(e) => {
                return StepOutcome::Transient {
                    error: format!("reading the review task failed: {e}"),
                    retry_after_ms: None,
                };
            }
        };
        let r = match existing {
            Some(r) => r,
            None => {
                let fields = self.drafts(cx);
                let queue = review::routed_queue(&self.rules_outputs(cx))
                    .unwrap_or_else(|| self.spec.queue.clone());
                let new = NewReview {
                    id: uuid::Uuid::now_v7().to_string(),
                    run_id: cx.run_id.to_string(),
                    step_index: cx.step.index,
                    step_id: cx.step.id.clone(),
                    workflow: var_json(cx, "run")
                        .get("workflow")
                        .and_then(Json::as_str)
                        .unwrap_or_default()
                        .to_string(),
                    queue,
                    fields: Json::Array(fields.iter().map(Field::to_json).collect()).to_string(),
                    min_approvals: self.spec.min_approvals,
                    deadline_at_ms: self.spec.deadline_ms.map(|d| now + d as i64),
                    on_deadline: self
                        .spec
                        .on_deadline
                        .as_ref()
                        .map_or(Json::Null, OnDeadline::to_json)
                        .to_string(),
                    notify: json!(self.spec.notify).to_string(),
                    created_at_ms: now,
                };
                let id = new.id.clone();
                let r = match cx.store.create_review(new).await {
                    Ok(r) => r,
                    Err(e) => {
                        return StepOutcome::Transient {
                            error: format!("creating the review task failed: {e}"),
                            retry_after_ms: None,
                        };
                    }
                };
                if r.id == id {
                    cx.record(
                        kind::REVIEW_REQUESTED,
                        &json!({ "review": r.id, "step": r.step_id, "queue": r.queue,
                            "fields": fields.iter().map(|f| f.name.as_str()).collect::<Vec<_>>(),
                            "min_approvals": r.min_approvals, "deadline_ms": r.deadline_at_ms,
                            "notify": self.spec.notify }),
                    );
                }
                r
            }
        };
        match r.status {
            ReviewStatus::Approved => {
                let results = results_of(&r);
                let output = self.decided(
                    cx,
                    json!({ "review": r.id, "decision": "approved", "decided_by": r.decided_by }),
                    &results,
                );
                StepOutcome::Done { output }
            }
            ReviewStatus::Rejected => StepOutcome::Permanent {
                error: format!(
                    "review {} was rejected: {}",
                    r.id,
                    r.reason.as_deref().unwrap_or("")
                ),
            },
            // The decision's transaction ended the run `handed_off`; a
            // step that still sees the task ends the run the same way.
            ReviewStatus::HandedOff => StepOutcome::Finish {
                output: json!({ "review": r.id, "decision": "handed_off", "reason": r.reason,
                    "decided_by": r.decided_by }),
                outcome: "handed_off".into(),
            },
            ReviewStatus::Pending => match r.deadline_at_ms {
                Some(d) if d <= now => self.expire(cx, &r, now).await,
                _ => {
                    let retry_ms = self.notify(cx, &r).await;
                    match (self.waiting(&r), retry_ms) {
                        (
                            StepOutcome::Suspend {
                                output,
                                reason,
                                deadline_ms,
                            },
                            Some(ms),
                        ) => {
                            let retry_at = now + ms as i64;
                            StepOutcome::Suspend {
                                output,
                                reason,
                                deadline_ms: Some(
                                    deadline_ms.map_or(retry_at, |d| d.min(retry_at)),
                                ),
                            }
                        }
                        (outcome, _) => outcome,
                    }
                }
            },
        }
    }
}
