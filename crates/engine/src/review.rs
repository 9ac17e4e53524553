//! Deciding review tasks: the pure rules of `domain::review` turned into
//! one store transaction (decision, per-field results, audit events, run
//! resume), retried when another decision raced us.

use domain::event::kind;
use domain::review::{self, Approval, Field, FieldResult, Task, Verdict};
use domain::run::RunStatus;
use serde_json::{Map, Value as Json, json};
use store::{
    DecideReview, Decided, NewEvent, Review, ReviewAct, ReviewChange, ReviewField, ReviewFilter,
    ReviewStatus, Store,
};

pub use domain::review::{Decider, Decision, DecisionError};

use crate::engine::Engine;
use crate::now_ms;

/// Why a decision was not applied. Nothing was written.
#[derive(Debug, thiserror::Error)]
pub enum ReviewError {
    #[error("no such review")]
    NotFound,
    #[error("the review is already {}", .0.as_str())]
    Closed(ReviewStatus),
    #[error("the run is already {0}")]
    RunEnded(RunStatus),
    #[error(transparent)]
    Refused(#[from] review::DecisionError),
    #[error(transparent)]
    Store(#[from] store::Error),
}

/// The reviewed fields of a stored task.
pub fn fields_of(r: &Review) -> Vec<Field> {
    serde_json::from_str::<Vec<Json>>(&r.fields)
        .unwrap_or_default()
        .iter()
        .filter_map(Field::from_json)
        .collect()
}

/// Approvals already counted on a pending task (four-eyes).
fn approvals_of(r: &Review) -> Vec<Approval> {
    r.acts
        .iter()
        .filter(|a| a.decision == "approve")
        .map(|a| Approval {
            actor: a.actor.clone(),
            user_id: a.user_id.clone(),
            values: serde_json::from_str::<Map<String, Json>>(&a.values).unwrap_or_default(),
            comment: a.comment.clone(),
            at_ms: a.at_ms,
        })
        .collect()
}

/// Stored per-field results back as domain values.
pub fn results_of(r: &Review) -> Vec<FieldResult> {
    let parse = |s: &str| serde_json::from_str(s).unwrap_or(Json::Null);
    r.results
        .iter()
        .map(|f| FieldResult {
            name: f.field.clone(),
            draft: parse(&f.draft),
            value: parse(&f.value),
            changed: f.changed,
            by: f.decided_by.clone(),
            at_ms: f.decided_at_ms,
            comment: f.comment.clone(),
        })
        .collect()
}

fn event(kind: &str, actor: &str, data: Json, at_ms: i64) -> NewEvent {
    NewEvent {
        kind: kind.into(),
        actor: actor.into(),
        data: data.to_string(),
        at_ms,
    }
}

/// Persists `verdict` on `r` as one transaction. `prefix` events (e.g.
/// `review.expired`) go first.
pub(crate) async fn persist(
    store: &dyn Store,
    r: &Review,
    act: ReviewAct,
    verdict: Verdict,
    events: Vec<NewEvent>,
) -> store::Result<Decided> {
    store
        .decide_review(decision_of(r, act, verdict, events))
        .await
}

/// The store write that records `verdict` on `r`.
fn decision_of(
    r: &Review,
    act: ReviewAct,
    verdict: Verdict,
    mut events: Vec<NewEvent>,
) -> DecideReview {
    let at = act.at_ms;
    let actor = act.actor.clone();
    let base =
        json!({ "review": r.id, "step": r.step_id, "queue": r.queue, "user_id": act.user_id });
    let with = |extra: Json| {
        let mut m = base.as_object().cloned().unwrap_or_default();
        if let Json::Object(e) = extra {
            m.extend(e);
        }
        Json::Object(m)
    };
    let change = match verdict {
        Verdict::Approved(results) => {
            let changed: Vec<&str> = results
                .iter()
                .filter(|f| f.changed)
                .map(|f| f.name.as_str())
                .collect();
            events.push(event(
                kind::REVIEW_DECIDED,
                &actor,
                with(
                    json!({ "decision": "approve", "final": true, "changed": changed,
                    "fields": review::results_json(&results), "comment": act.comment }),
                ),
                at,
            ));
            ReviewChange::Approve {
                results: results
                    .iter()
                    .map(|f| ReviewField {
                        field: f.name.clone(),
                        draft: f.draft.to_string(),
                        value: f.value.to_string(),
                        changed: f.changed,
                        decided_by: f.by.clone(),
                        decided_at_ms: f.at_ms,
                        comment: f.comment.clone(),
                    })
                    .collect(),
            }
        }
        Verdict::Pending { approvals, needed } => {
            events.push(event(
                kind::REVIEW_DECIDED,
                &actor,
                with(
                    json!({ "decision": "approve", "final": false, "approvals": approvals,
                    "needed": needed, "comment": act.comment }),
                ),
                at,
            ));
            ReviewChange::Counted
        }
        Verdict::Rejected { reason } => {
            events.push(event(
                kind::REVIEW_DECIDED,
                &actor,
                with(json!({ "decision": "reject", "final": true, "reason": reason, "comment": act.comment })),
                at,
            ));
            events.push(event(
                kind::RUN_REJECTED,
                &actor,
                json!({ "review": r.id, "step": r.step_id, "reason": reason }),
                at,
            ));
            ReviewChange::Reject { reason }
        }
        Verdict::HandedOff { reason } => {
            events.push(event(
                kind::REVIEW_DECIDED,
                &actor,
                with(json!({ "decision": "hand_off", "final": true, "reason": reason, "comment": act.comment })),
                at,
            ));
            events.push(event(
                kind::RUN_HANDED_OFF,
                &actor,
                json!({ "review": r.id, "step": r.step_id, "reason": reason }),
                at,
            ));
            ReviewChange::HandOff { reason }
        }
        Verdict::Escalated { queue } => {
            events.push(event(
                kind::REVIEW_ESCALATED,
                &actor,
                with(json!({ "from": r.queue, "to": queue, "comment": act.comment })),
                at,
            ));
            ReviewChange::Escalate {
                queue,
                deadline_at_ms: None,
            }
        }
    };
    DecideReview {
        review_id: r.id.clone(),
        expect_rev: r.rev,
        act,
        change,
        events,
        at_ms: at,
    }
}

fn act_for(decision: &Decision, by: &Decider, at_ms: i64) -> ReviewAct {
    let (values, comment, reason, queue) = match decision {
        Decision::Approve { values, comment } => (
            Json::Object(values.clone()).to_string(),
            comment.clone(),
            None,
            None,
        ),
        Decision::Reject { reason, comment } | Decision::HandOff { reason, comment } => {
            ("{}".into(), comment.clone(), Some(reason.clone()), None)
        }
        Decision::Escalate { queue, comment } => {
            ("{}".into(), comment.clone(), None, Some(queue.clone()))
        }
    };
    ReviewAct {
        seq: 0,
        actor: by.actor.clone(),
        user_id: by.user_id.clone(),
        decision: decision.name().to_string(),
        values,
        comment,
        reason,
        queue,
        at_ms,
    }
}

impl Engine {
    /// Applies a decision by `by` (resolved to a user by the channel; see
    /// [`Decider`]). A final approval queues the run again (downstream
    /// steps see `approved.*`); a rejection ends it `rejected`; both happen
    /// in the decision's transaction. Whether `by` may decide is checked
    /// against the task as it is now, not as it was when a link or button
    /// was sent.
    pub async fn decide_review(
        &self,
        review_id: &str,
        decision: Decision,
        by: &Decider,
    ) -> Result<Review, ReviewError> {
        self.decide_review_unticking(review_id, decision, by, &[])
            .await
    }

    /// [`Engine::decide_review`] where a final approval leaves out some of
    /// the actions the review covers (`skip_actions`: their step ids, each
    /// one the review's `covers:` names): those steps are not performed,
    /// and `review.decided` (`unticked`) and `action.unticked` say so.
    /// Naming any other step, or unticking on a decision that is not a
    /// final approval, is refused (`DecisionError::Invalid`, pointer
    /// `/skip_actions/N`).
    pub async fn decide_review_unticking(
        &self,
        review_id: &str,
        decision: Decision,
        by: &Decider,
        skip_actions: &[String],
    ) -> Result<Review, ReviewError> {
        match self
            .decide(review_id, decision, by, None, skip_actions)
            .await?
        {
            Some(r) => Ok(r),
            None => Err(ReviewError::Store(store::Error::Conflict(
                review_id.to_string(),
            ))),
        }
    }

    /// [`Engine::decide_review`] that uses up `nonce` (an email link's, a
    /// signed Slack request's) in the decision's transaction. `Ok(None)`:
    /// the nonce was used before and nothing was written.
    pub async fn decide_review_once(
        &self,
        review_id: &str,
        decision: Decision,
        by: &Decider,
        nonce: &str,
    ) -> Result<Option<Review>, ReviewError> {
        self.decide(review_id, decision, by, Some(nonce), &[]).await
    }

    /// The user id behind a run's submitter (`token:<id>` of a token tied
    /// to a user, or `user:<email>`), for "not your own request".
    async fn submitter_user(&self, submitter: Option<&str>) -> store::Result<Option<String>> {
        let store = &self.inner.store;
        Ok(match submitter {
            Some(s) if s.starts_with("token:") => store
                .token(&s["token:".len()..])
                .await?
                .and_then(|t| t.user_id),
            Some(s) if s.starts_with("user:") => store
                .user_by_email(&s["user:".len()..])
                .await?
                .map(|u| u.id),
            _ => None,
        })
    }

    /// Queues this deployment knows: those the current workflows' review
    /// steps name and those some user holds. Escalation aims only at these.
    pub async fn known_queues(&self) -> store::Result<Vec<String>> {
        let mut known = self.inner.catalog.review_queues();
        for u in self.inner.store.list_users().await? {
            known.extend(u.queues.into_iter().filter(|q| q != "*"));
        }
        Ok(known.into_iter().collect())
    }

    async fn decide(
        &self,
        review_id: &str,
        decision: Decision,
        by: &Decider,
        nonce: Option<&str>,
        skip_actions: &[String],
    ) -> Result<Option<Review>, ReviewError> {
        let known = match decision {
            Decision::Escalate { .. } => Some(self.known_queues().await?),
            _ => None,
        };
        let mut submitter: Option<Option<String>> = None;
        // A concurrent decision on the same task makes ours stale: re-read
        // and decide again against what it left.
        for _ in 0..8 {
            let r = self
                .inner
                .store
                .review(review_id)
                .await?
                .ok_or(ReviewError::NotFound)?;
            if r.status != ReviewStatus::Pending {
                return Err(ReviewError::Closed(r.status));
            }
            if submitter.is_none() && r.min_approvals >= 2 {
                submitter = Some(self.submitter_user(r.submitter.as_deref()).await?);
            }
            let fields = fields_of(&r);
            let approvals = approvals_of(&r);
            let now = now_ms();
            let verdict = review::decide(
                Task {
                    fields: &fields,
                    queue: &r.queue,
                    min_approvals: r.min_approvals,
                    submitter: r.submitter.as_deref(),
                    submitter_user: submitter.as_ref().and_then(Option::as_deref),
                    approvals: &approvals,
                    known_queues: known.as_deref(),
                },
                &decision,
                by,
                now,
            )?;
            let resumes = matches!(verdict, Verdict::Approved(_));
            // A person's final approval approves the covered actions as
            // previewed now (`covers:`, minus unticked ones): on the record.
            let covers = self.covering(&r, &verdict, skip_actions).await?;
            let act = act_for(&decision, by, now);
            let mut write = decision_of(&r, act, verdict, Vec::new());
            if let Some(covers) = covers {
                crate::plan::add_to_decided(&mut write.events, covers);
            }
            let decided = match nonce {
                None => self.inner.store.decide_review(write).await?,
                Some(n) => match self.inner.store.decide_review_once(n, write).await? {
                    store::Once::Used => return Ok(None),
                    store::Once::Decided(d) => d,
                },
            };
            match decided {
                Decided::Done(r) => {
                    if resumes {
                        self.inner.wake.notify_one();
                    } else if r.status == ReviewStatus::Rejected {
                        self.inner.settled(&r.run_id);
                    }
                    return Ok(Some(*r));
                }
                Decided::Stale => continue,
                Decided::NotFound => return Err(ReviewError::NotFound),
                Decided::Closed(s) => return Err(ReviewError::Closed(s)),
                Decided::RunEnded(s) => return Err(ReviewError::RunEnded(s)),
            }
        }
        Err(ReviewError::Store(store::Error::Conflict(
            review_id.to_string(),
        )))
    }

    /// One review task with its decisions.
    pub async fn review(&self, id: &str) -> store::Result<Option<Review>> {
        self.inner.store.review(id).await
    }

    /// Review tasks, newest first.
    pub async fn reviews(&self, filter: &ReviewFilter) -> store::Result<Vec<Review>> {
        self.inner.store.list_reviews(filter).await
    }
}
