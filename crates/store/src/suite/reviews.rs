//! Suite cases for review tasks: creation, decisions and the run resume
//! they commit with.

use std::sync::Arc;

use super::*;
use crate::{
    DecideReview, Decided, NewReview, ReviewAct, ReviewChange, ReviewField, ReviewFilter,
    ReviewStatus,
};

pub(super) fn new_review(id: &str, run_id: &str, queue: &str, at: i64) -> NewReview {
    NewReview {
        id: id.into(),
        run_id: run_id.into(),
        step_index: 1,
        step_id: "review".into(),
        workflow: "wf".into(),
        queue: queue.into(),
        fields: r#"[{"name":"priority","step":"triage","draft":"low","schema":null}]"#.into(),
        min_approvals: 1,
        deadline_at_ms: Some(at + 60_000),
        on_deadline: r#"{"escalate":"managers"}"#.into(),
        notify: "[]".into(),
        created_at_ms: at,
    }
}

/// A run waiting for review at step 1, with its task.
async fn waiting(store: &Arc<dyn Store>, run_id: &str, review_id: &str, queue: &str) {
    created(
        store,
        new_run(run_id, "wf", T0, None, Some(("n1", T0 + 30_000))),
    )
    .await;
    let r = store
        .create_review(new_review(review_id, run_id, queue, T0))
        .await
        .expect("create_review");
    assert_eq!(r.status, ReviewStatus::Pending);
    let mut c = commit(
        run_id,
        rev(store, run_id).await,
        RunStatus::Waiting,
        pos(1, 0),
        Work::At {
            run_at_ms: T0 + 60_000,
        },
        T0,
    );
    c.wait = Some(WaitReason::Review);
    store.commit(c).await.expect("suspend");
}

fn act(actor: &str, decision: &str, at: i64) -> ReviewAct {
    ReviewAct {
        seq: 0,
        actor: actor.into(),
        decision: decision.into(),
        values: "{}".into(),
        comment: None,
        reason: None,
        queue: None,
        at_ms: at,
        // A person's act carries their user id; `deadline` and such do not.
        user_id: actor.strip_prefix("user:").map(|n| format!("u-{n}")),
    }
}

fn decide(review_id: &str, expect_rev: i64, act: ReviewAct, change: ReviewChange) -> DecideReview {
    let at = act.at_ms;
    DecideReview {
        review_id: review_id.into(),
        expect_rev,
        act,
        change,
        events: vec![event(kind::REVIEW_DECIDED, r#"{"review":"x"}"#, at)],
        at_ms: at,
    }
}

/// Creating a task twice for the same run and step returns the first one;
/// the submitter is the actor of the run's first event.
pub async fn reviews_are_created_once_per_step(store: Arc<dyn Store>) {
    waiting(&store, "r1", "v1", "operations").await;
    let again = store
        .create_review(new_review("v2", "r1", "other", T0 + 5))
        .await
        .unwrap();
    assert_eq!(
        (again.id.as_str(), again.queue.as_str()),
        ("v1", "operations")
    );
    assert_eq!(again.submitter.as_deref(), Some("system"));
    assert_eq!(again.deadline_at_ms, Some(T0 + 60_000));
    assert_eq!(store.review("v2").await.unwrap(), None);
    assert_eq!(
        store.review_for_step("r1", 1).await.unwrap().map(|r| r.id),
        Some("v1".to_string())
    );
    assert_eq!(store.review_for_step("r1", 2).await.unwrap(), None);
}

/// An approval stores the act and the per-field results, and in the same
/// transaction queues the run again (work due now, revision bumped) so a
/// worker still holding the old revision is fenced off.
pub async fn approving_a_review_resumes_the_run(store: Arc<dyn Store>) {
    waiting(&store, "r1", "v1", "operations").await;
    let before = store.run("r1").await.unwrap().unwrap();
    let at = T0 + 1_000;
    let mut a = act("user:ann", "approve", at);
    a.values = r#"{"priority":"high"}"#.into();
    a.comment = Some("urgent customer".into());
    let results = vec![ReviewField {
        field: "priority".into(),
        draft: r#""low""#.into(),
        value: r#""high""#.into(),
        changed: true,
        decided_by: "user:ann".into(),
        decided_at_ms: at,
        comment: Some("urgent customer".into()),
    }];
    assert_eq!(
        store
            .decide_review(decide("v1", 7, a.clone(), ReviewChange::Counted))
            .await
            .unwrap(),
        Decided::Stale,
        "a stale task revision writes nothing"
    );
    let d = store
        .decide_review(decide(
            "v1",
            1,
            a.clone(),
            ReviewChange::Approve {
                results: results.clone(),
            },
        ))
        .await
        .unwrap();
    let Decided::Done(review) = d else {
        panic!("{d:?}")
    };
    assert_eq!(review.status, ReviewStatus::Approved);
    assert_eq!(review.decided_by.as_deref(), Some("user:ann"));
    assert_eq!(review.decided_at_ms, Some(at));
    assert_eq!(review.results, results);
    assert_eq!(review.acts.len(), 1);
    assert_eq!(
        (
            review.acts[0].seq,
            review.acts[0].values.as_str(),
            review.acts[0].comment.as_deref(),
            review.acts[0].user_id.as_deref()
        ),
        (
            1,
            r#"{"priority":"high"}"#,
            Some("urgent customer"),
            Some("u-ann")
        ),
        "the act keeps the readable actor and the user id"
    );
    let run = store.run("r1").await.unwrap().unwrap();
    assert_eq!((run.status, run.wait), (RunStatus::Queued, None));
    assert_eq!(run.rev, before.rev + 1);
    assert_eq!(store.next_due().await.unwrap(), Some(at), "work is due now");
    assert!(is_conflict(
        store
            .commit(commit(
                "r1",
                before.rev,
                RunStatus::Running,
                pos(1, 0),
                Work::Remove,
                at
            ))
            .await
    ));
    assert_eq!(claim_ids(&store, "n2", at, at + 30_000).await, ["r1"]);
    assert_eq!(
        store
            .decide_review(decide("v1", review.rev, a, ReviewChange::Counted))
            .await
            .unwrap(),
        Decided::Closed(ReviewStatus::Approved)
    );
    assert_eq!(chain_len(&store, "r1").await, 3);
    let events = store.events("r1", 0, 100).await.unwrap();
    assert_eq!(events[2].kind, kind::REVIEW_DECIDED);
}

/// Partial approvals and escalations keep the run waiting; a rejection
/// ends it; a cancelled run takes no decision. Lists filter by status and
/// queue.
pub async fn a_hand_off_ends_the_run_handed_off(store: Arc<dyn Store>) {
    waiting(&store, "h1", "w1", "operations").await;
    let at = T0 + 1_000;
    let mut a = act("user:ann", "hand_off", at);
    a.reason = Some("legal dispute: call the customer".into());
    let Decided::Done(v) = store
        .decide_review(decide(
            "w1",
            1,
            a,
            ReviewChange::HandOff {
                reason: "legal dispute: call the customer".into(),
            },
        ))
        .await
        .unwrap()
    else {
        panic!("handed off")
    };
    assert_eq!(
        (v.status, v.reason.as_deref(), v.decided_by.as_deref()),
        (
            ReviewStatus::HandedOff,
            Some("legal dispute: call the customer"),
            Some("user:ann")
        )
    );
    assert_eq!(v.acts[0].decision, "hand_off");
    let run = store.run("h1").await.unwrap().unwrap();
    assert_eq!(
        (
            run.status,
            run.outcome.as_deref(),
            run.wait,
            run.error.as_deref()
        ),
        (
            RunStatus::HandedOff,
            Some("handed_off"),
            None,
            Some("legal dispute: call the customer")
        )
    );
    // Nothing is left to execute, and a second decision finds it decided.
    assert!(
        claim_ids(&store, "node", at + 10_000, at + 70_000)
            .await
            .is_empty()
    );
    assert_eq!(
        store
            .decide_review(decide(
                "w1",
                2,
                act("user:bob", "approve", at),
                ReviewChange::Counted
            ))
            .await
            .unwrap(),
        Decided::Closed(ReviewStatus::HandedOff)
    );
    let reloaded = store.review("w1").await.unwrap().unwrap();
    assert_eq!(reloaded.status, ReviewStatus::HandedOff);
}

pub async fn review_decisions_reject_escalate_and_filter(store: Arc<dyn Store>) {
    waiting(&store, "r1", "v1", "operations").await;
    waiting(&store, "r2", "v2", "operations").await;
    waiting(&store, "r3", "v3", "sales").await;
    let at = T0 + 1_000;
    let rev_r1 = rev(&store, "r1").await;
    let Decided::Done(v) = store
        .decide_review(decide(
            "v1",
            1,
            act("user:ann", "approve", at),
            ReviewChange::Counted,
        ))
        .await
        .unwrap()
    else {
        panic!("counted")
    };
    assert_eq!((v.status, v.rev), (ReviewStatus::Pending, 2));
    let Decided::Done(v) = store
        .decide_review(decide(
            "v1",
            2,
            act("user:bob", "escalate", at),
            ReviewChange::Escalate {
                queue: "managers".into(),
                deadline_at_ms: None,
            },
        ))
        .await
        .unwrap()
    else {
        panic!("escalated")
    };
    assert_eq!(
        (v.queue.as_str(), v.deadline_at_ms, v.acts.len()),
        ("managers", None, 2)
    );
    let r1 = store.run("r1").await.unwrap().unwrap();
    assert_eq!(
        (r1.status, r1.rev),
        (RunStatus::Waiting, rev_r1),
        "still waiting, unfenced"
    );

    let mut a = act("user:ann", "reject", at);
    a.reason = Some("spam".into());
    let Decided::Done(v) = store
        .decide_review(decide(
            "v2",
            1,
            a,
            ReviewChange::Reject {
                reason: "spam".into(),
            },
        ))
        .await
        .unwrap()
    else {
        panic!("rejected")
    };
    assert_eq!(
        (v.status, v.reason.as_deref()),
        (ReviewStatus::Rejected, Some("spam"))
    );
    let r2 = store.run("r2").await.unwrap().unwrap();
    assert_eq!(
        (r2.status, r2.outcome.as_deref(), r2.wait),
        (RunStatus::Rejected, Some("rejected"), None)
    );

    assert!(matches!(
        store.cancel_run("r3", "op", at).await.unwrap(),
        OpResult::Done(_)
    ));
    assert_eq!(
        store
            .decide_review(decide(
                "v3",
                1,
                act("user:ann", "approve", at),
                ReviewChange::Counted
            ))
            .await
            .unwrap(),
        Decided::RunEnded(RunStatus::Cancelled)
    );
    assert_eq!(
        store
            .decide_review(decide(
                "nope",
                1,
                act("user:ann", "approve", at),
                ReviewChange::Counted
            ))
            .await
            .unwrap(),
        Decided::NotFound
    );

    let list = |status: Option<ReviewStatus>, queue: Option<&str>, queues: Option<Vec<&str>>| {
        let store = store.clone();
        let filter = ReviewFilter {
            status,
            queue: queue.map(str::to_string),
            queues: queues.map(|q| q.into_iter().map(str::to_string).collect()),
            before: None,
            limit: 50,
        };
        async move {
            store
                .list_reviews(&filter)
                .await
                .unwrap()
                .into_iter()
                .map(|r| r.id)
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(list(None, None, None).await, ["v3", "v2", "v1"]);
    assert_eq!(
        list(Some(ReviewStatus::Pending), None, None).await,
        ["v3", "v1"]
    );
    assert_eq!(
        list(Some(ReviewStatus::Pending), Some("managers"), None).await,
        ["v1"]
    );
    assert_eq!(list(None, None, Some(vec!["sales", "x"])).await, ["v3"]);
    assert!(list(None, None, Some(vec![])).await.is_empty());
    for run in ["r1", "r2", "r3"] {
        chain_len(&store, run).await;
    }
}

/// Soft claims: a fresh claim holds against others, a stale one or a
/// take-over passes it on, the holder refreshes it; views are recorded in
/// order.
pub async fn desk_claims_and_views(store: Arc<dyn Store>) {
    let claim = |user: &str, at: i64| crate::Claim {
        review_id: "rv-1".into(),
        user_id: user.into(),
        email: format!("{user}@example.com"),
        at_ms: at,
    };
    let got = store
        .claim_review(claim("ann", T0), T0 - 600_000, false)
        .await
        .unwrap();
    assert_eq!(got, claim("ann", T0));
    // Bob opens it a minute later: Ann's claim is fresh, it holds.
    let got = store
        .claim_review(claim("bob", T0 + 60_000), T0 + 60_000 - 600_000, false)
        .await
        .unwrap();
    assert_eq!(got, claim("ann", T0));
    // Ann refreshes her own claim.
    let got = store
        .claim_review(claim("ann", T0 + 120_000), T0 + 120_000 - 600_000, false)
        .await
        .unwrap();
    assert_eq!(got, claim("ann", T0 + 120_000));
    // Bob takes it over with a confirmation.
    let got = store
        .claim_review(claim("bob", T0 + 130_000), T0 + 130_000 - 600_000, true)
        .await
        .unwrap();
    assert_eq!(got, claim("bob", T0 + 130_000));
    // Eleven idle minutes later the claim is stale: Ann gets it back.
    let later = T0 + 130_000 + 660_000;
    let got = store
        .claim_review(claim("ann", later), later - 600_000, false)
        .await
        .unwrap();
    assert_eq!(got, claim("ann", later));
    let all = store
        .review_claims(&["rv-1".to_string(), "rv-none".to_string()])
        .await
        .unwrap();
    assert_eq!(all, [claim("ann", later)]);
    assert!(store.review_claims(&[]).await.unwrap().is_empty());

    store.record_review_view("rv-1", "ann", T0).await.unwrap();
    store
        .record_review_view("rv-1", "bob", T0 + 5)
        .await
        .unwrap();
    store
        .record_review_view("rv-2", "bob", T0 + 6)
        .await
        .unwrap();
    assert_eq!(
        store.review_views("rv-1").await.unwrap(),
        [("ann".to_string(), T0), ("bob".to_string(), T0 + 5)]
    );
}

/// `pending_by_queue` counts pending tasks per queue with the oldest's
/// creation time, queues in name order.
pub async fn pending_reviews_count_by_queue(store: Arc<dyn Store>) {
    assert!(store.pending_by_queue().await.unwrap().is_empty());
    waiting(&store, "r1", "v1", "ops").await;
    waiting(&store, "r2", "v2", "ops").await;
    waiting(&store, "r3", "v3", "sales").await;
    let depth = store.pending_by_queue().await.unwrap();
    assert_eq!(
        depth
            .iter()
            .map(|d| (d.queue.as_str(), d.pending, d.oldest_created_at_ms))
            .collect::<Vec<_>>(),
        [("ops", 2, T0), ("sales", 1, T0)]
    );
}

/// Retention: only runs that ended for good and changed before the cutoff
/// are offered; pruning keeps the summary and removes the run with its
/// events and review task; a changed or already pruned run is left alone.
pub async fn pruning_keeps_a_summary_and_removes_the_run(store: Arc<dyn Store>) {
    waiting(&store, "p1", "pw1", "operations").await;
    waiting(&store, "p2", "pw2", "operations").await;
    let at = T0 + 1_000;
    let mut a = act("user:ann", "hand_off", at);
    a.reason = Some("call them".into());
    let Decided::Done(_) = store
        .decide_review(decide(
            "pw1",
            1,
            a,
            ReviewChange::HandOff {
                reason: "call them".into(),
            },
        ))
        .await
        .unwrap()
    else {
        panic!("handed off")
    };
    // p2 still waits for a person: never offered, whatever its age.
    assert!(store.prunable_runs(at, None, 10).await.unwrap().is_empty());
    let offered = store.prunable_runs(at + 1, None, 10).await.unwrap();
    assert_eq!(offered.len(), 1, "{offered:?}");
    let head = store
        .chain_heads(None, 10)
        .await
        .unwrap()
        .into_iter()
        .find(|h| h.run_id == "p1")
        .unwrap();
    let mut summary = offered[0].clone();
    assert_eq!(
        (
            summary.run_id.as_str(),
            summary.status,
            summary.seq,
            &summary.hash,
            summary.updated_at_ms,
            summary.created_at_ms
        ),
        ("p1", RunStatus::HandedOff, head.seq, &head.hash, at, T0)
    );
    assert_eq!(
        store.prunable_runs(at + 1, Some("p1"), 10).await.unwrap(),
        vec![],
        "paged by id"
    );

    // A summary whose head is not the run's: nothing happens.
    let mut stale = summary.clone();
    stale.seq -= 1;
    assert!(!store.prune_run(&stale).await.unwrap());
    assert!(store.run("p1").await.unwrap().is_some());

    summary.pruned_at_ms = at + 5_000;
    summary.mac = Some("ab12".into());
    assert!(store.prune_run(&summary).await.unwrap());
    assert!(store.run("p1").await.unwrap().is_none());
    assert!(store.events("p1", 0, 100).await.unwrap().is_empty());
    assert!(store.review("pw1").await.unwrap().is_none());
    assert!(
        store
            .chain_heads(None, 10)
            .await
            .unwrap()
            .iter()
            .all(|h| h.run_id != "p1")
    );
    assert_eq!(
        store.pruned_runs(None, 10).await.unwrap(),
        vec![summary.clone()]
    );
    assert!(store.pruned_runs(Some("p1"), 10).await.unwrap().is_empty());
    // Again: the run is gone, nothing to do; the other run is untouched.
    assert!(!store.prune_run(&summary).await.unwrap());
    assert!(store.run("p2").await.unwrap().is_some());
    assert!(!store.events("p2", 0, 100).await.unwrap().is_empty());
    assert!(store.review("pw2").await.unwrap().is_some());
}
