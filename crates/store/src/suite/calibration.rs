//! Suite case for the calibration read, and the fixture of reviewed runs
//! with known edits that the engine, API and CLI tests measure too.

use std::sync::Arc;

use serde_json::json;

use super::*;
use crate::{
    CalibrationQuery, DecideReview, Decided, NewReview, ReviewAct, ReviewChange, ReviewField,
};

/// Monday 2026-11-02 09:00 UTC: the fixture's first week.
pub const CAL_WEEK1: i64 = 1_793_610_000_000;
/// A week later.
pub const CAL_WEEK2: i64 = CAL_WEEK1 + 7 * 86_400_000;

/// How a fixture task is decided.
enum Then {
    /// Approved by `by`, with these values replacing the drafts.
    Approve(&'static str, Vec<(&'static str, serde_json::Value)>),
    Reject(&'static str),
    HandOff(&'static str),
    /// Escalated by the first to `managers`, then approved unchanged by the second.
    EscalateThenApprove(&'static str, &'static str),
    /// Approved unchanged by the deadline policy.
    Deadline,
    /// Approved unchanged in a bulk of two.
    Bulk(&'static str),
    Pending,
}

struct Case {
    run: &'static str,
    workflow: &'static str,
    version: i64,
    queue: &'static str,
    provider: &'static str,
    model: &'static str,
    intent: &'static str,
    summary: &'static str,
    at: i64,
    then: Then,
}

fn cases() -> Vec<Case> {
    let case = |run, intent, summary, at, then| Case {
        run,
        workflow: "intake",
        version: 1,
        queue: "operations",
        provider: "openai",
        model: "gpt-4o-mini",
        intent,
        summary,
        at,
        then,
    };
    let w1 = CAL_WEEK1;
    let w2 = CAL_WEEK2;
    vec![
        case(
            "c01",
            "billing",
            "Customer asks for a refund.",
            w1,
            Then::Approve("user:ann", vec![]),
        ),
        case(
            "c02",
            "billing",
            "Refund asked",
            w1 + 60_000,
            Then::Approve("user:bob", vec![("summary", json!("  refund   ASKED "))]),
        ),
        Case {
            provider: "heuristic",
            model: "heuristic-v1",
            ..case(
                "c03",
                "billing",
                "Wants money back",
                w1 + 120_000,
                Then::Approve(
                    "user:ann",
                    vec![
                        ("intent", json!("complaint")),
                        ("summary", json!("Wants their money back")),
                    ],
                ),
            )
        },
        case(
            "c04",
            "sales_lead",
            "Asks for a demo",
            w2,
            Then::Reject("user:bob"),
        ),
        case(
            "c05",
            "support_request",
            "Login fails",
            w2 + 60_000,
            Then::EscalateThenApprove("user:ann", "user:cy"),
        ),
        case("c06", "billing", "Late", w2 + 120_000, Then::Deadline),
        case(
            "c07",
            "billing",
            "Bulk",
            w2 + 180_000,
            Then::Bulk("user:ann"),
        ),
        case("c08", "billing", "Waiting", w2 + 240_000, Then::Pending),
        Case {
            version: 2,
            ..case(
                "c09",
                "support_request",
                "Password reset",
                w2 + 300_000,
                Then::Approve("user:bob", vec![]),
            )
        },
        Case {
            workflow: "refunds",
            queue: "finance",
            ..case(
                "c10",
                "billing",
                "Other workflow",
                w2 + 360_000,
                Then::Approve("user:ann", vec![]),
            )
        },
        case(
            "c11",
            "complaint",
            "Threatens to sue",
            w2 + 420_000,
            Then::HandOff("user:ann"),
        ),
    ]
}

fn cal_act(actor: &str, decision: &str, at: i64, comment: Option<String>) -> ReviewAct {
    ReviewAct {
        seq: 0,
        actor: actor.into(),
        user_id: actor.strip_prefix("user:").map(|n| format!("u-{n}")),
        decision: decision.into(),
        values: "{}".into(),
        comment,
        reason: (decision == "reject" || decision == "hand_off").then(|| "not right".into()),
        queue: (decision == "escalate").then(|| "managers".into()),
        at_ms: at,
    }
}

fn approval(
    c: &Case,
    by: &str,
    edits: &[(&str, serde_json::Value)],
    at: i64,
) -> (ReviewAct, ReviewChange) {
    let drafts = [("intent", json!(c.intent)), ("summary", json!(c.summary))];
    let results = drafts
        .iter()
        .map(|(name, draft)| {
            let value = edits
                .iter()
                .find(|(n, _)| n == name)
                .map_or_else(|| draft.clone(), |(_, v)| v.clone());
            ReviewField {
                field: (*name).into(),
                draft: draft.to_string(),
                value: value.to_string(),
                changed: value != *draft,
                decided_by: by.into(),
                decided_at_ms: at,
                comment: None,
            }
        })
        .collect();
    let mut act = cal_act(by, "approve", at, None);
    act.values = json!(
        edits
            .iter()
            .map(|(n, v)| ((*n).to_string(), v.clone()))
            .collect::<serde_json::Map<_, _>>()
    )
    .to_string();
    (act, ReviewChange::Approve { results })
}

async fn apply(store: &Arc<dyn Store>, review_id: &str, act: ReviewAct, change: ReviewChange) {
    let rev = store
        .review(review_id)
        .await
        .expect("review")
        .expect("the review exists")
        .rev;
    let at = act.at_ms;
    let d = store
        .decide_review(DecideReview {
            review_id: review_id.into(),
            expect_rev: rev,
            act,
            change,
            events: vec![event(kind::REVIEW_DECIDED, r#"{"review":"x"}"#, at)],
            at_ms: at,
        })
        .await
        .expect("decide_review");
    assert!(matches!(d, Decided::Done(_)), "{review_id}: {d:?}");
}

/// Eleven runs of the `intake` workflow (one of `refunds`), each with an
/// `llm` step (`triage`, index 1) that drafted `intent` and `summary` and a
/// review (`review`, index 2, id `v` + the run id) decided as the cases
/// say: approved unchanged, edited only in case and spacing, edited,
/// rejected, escalated then approved, decided by the deadline, approved in
/// bulk, still pending, on version 2, another workflow, handed off.
pub async fn seed_calibration(store: &Arc<dyn Store>) {
    for (wf, hash) in [
        ("intake", "hash-t1"),
        ("intake", "hash-t2"),
        ("refunds", "hash-r1"),
    ] {
        store
            .save_workflow(wf, hash, "source", "wf.yaml", CAL_WEEK1 - 1_000)
            .await
            .expect("save_workflow");
    }
    // Seeded runs stay leased to a node that never lets go: an engine
    // running on the same store (the API and browser tests) must not take
    // a run over mid-seed, which an expired lease in the past invited.
    const HELD: i64 = i64::MAX / 4;
    for c in cases() {
        let start = c.at - 10_000;
        let mut run = new_run(c.run, c.workflow, start, None, Some(("n1", HELD)));
        run.version = c.version;
        created(store, run).await;
        let output = json!({
            "intent": c.intent, "summary": c.summary, "status": "ok",
            "provider": c.provider, "model": c.model, "reason": null,
        });
        let mut done = commit(
            c.run,
            rev(store, c.run).await,
            RunStatus::Running,
            pos(2, 0),
            Work::Keep {
                lease_until_ms: HELD,
            },
            start + 1_000,
        );
        done.step = Some(step(
            1,
            "triage",
            1,
            StepStatus::Completed,
            Some(&output.to_string()),
            start + 1_000,
        ));
        store.commit(done).await.expect("llm step");
        let review_id = format!("v{}", c.run);
        let fields = json!([
            { "name": "intent", "step": "triage", "draft": c.intent,
              "schema": { "enum": ["billing", "complaint", "sales_lead", "support_request"] } },
            { "name": "summary", "step": "triage", "draft": c.summary,
              "schema": { "type": "string" } },
        ]);
        store
            .create_review(NewReview {
                id: review_id.clone(),
                run_id: c.run.into(),
                step_index: 2,
                step_id: "review".into(),
                workflow: c.workflow.into(),
                queue: c.queue.into(),
                fields: fields.to_string(),
                min_approvals: 1,
                deadline_at_ms: None,
                on_deadline: "null".into(),
                notify: "[]".into(),
                created_at_ms: start + 2_000,
            })
            .await
            .expect("create_review");
        let mut wait = commit(
            c.run,
            rev(store, c.run).await,
            RunStatus::Waiting,
            pos(2, 0),
            Work::Remove,
            start + 2_000,
        );
        wait.wait = Some(WaitReason::Review);
        store.commit(wait).await.expect("suspend");
        match c.then {
            Then::Approve(by, ref edits) => {
                let (act, change) = approval(&c, by, edits, c.at);
                apply(store, &review_id, act, change).await;
            }
            Then::Reject(by) => {
                let change = ReviewChange::Reject {
                    reason: "not right".into(),
                };
                apply(store, &review_id, cal_act(by, "reject", c.at, None), change).await;
            }
            Then::HandOff(by) => {
                let change = ReviewChange::HandOff {
                    reason: "not right".into(),
                };
                apply(
                    store,
                    &review_id,
                    cal_act(by, "hand_off", c.at, None),
                    change,
                )
                .await;
            }
            Then::EscalateThenApprove(first, second) => {
                let change = ReviewChange::Escalate {
                    queue: "managers".into(),
                    deadline_at_ms: None,
                };
                apply(
                    store,
                    &review_id,
                    cal_act(first, "escalate", c.at, None),
                    change,
                )
                .await;
                let (act, change) = approval(&c, second, &[], c.at + 30_000);
                apply(store, &review_id, act, change).await;
            }
            Then::Deadline => {
                let (mut act, change) = approval(&c, domain::event::SYSTEM, &[], c.at);
                act.comment = Some("approved automatically at the deadline".into());
                apply(store, &review_id, act, change).await;
            }
            Then::Bulk(by) => {
                let (mut act, change) = approval(&c, by, &[], c.at);
                act.comment = Some(domain::review::bulk_comment(false, 2));
                apply(store, &review_id, act, change).await;
            }
            Then::Pending => {}
        }
    }
}

/// The calibration read returns decided tasks (and escalated ones), newest
/// first, with acts, results, the run's version and hash and the `llm`
/// output that drafted the fields; filters by workflow, time, queue and
/// limit; leaves pending tasks out.
pub async fn calibration_reads_decided_reviews(store: Arc<dyn Store>) {
    seed_calibration(&store).await;
    let read = |q: CalibrationQuery| {
        let store = store.clone();
        async move {
            store
                .calibration_reviews(&q)
                .await
                .expect("calibration_reviews")
        }
    };
    let ids = |rows: &[crate::CalibrationReview]| {
        rows.iter().map(|c| c.review.id.clone()).collect::<Vec<_>>()
    };
    let all = read(CalibrationQuery {
        limit: 100,
        ..CalibrationQuery::default()
    })
    .await;
    assert_eq!(
        ids(&all),
        [
            "vc11", "vc10", "vc09", "vc07", "vc06", "vc05", "vc04", "vc03", "vc02", "vc01"
        ],
        "newest first, the pending vc08 left out"
    );
    let c03 = all.iter().find(|c| c.review.id == "vc03").unwrap();
    assert_eq!(
        (c03.version, c03.version_hash.as_deref()),
        (1, Some("hash-t1"))
    );
    assert_eq!(
        c03.review
            .results
            .iter()
            .map(|f| (
                f.field.as_str(),
                f.draft.as_str(),
                f.value.as_str(),
                f.changed
            ))
            .collect::<Vec<_>>(),
        [
            ("intent", r#""billing""#, r#""complaint""#, true),
            (
                "summary",
                r#""Wants money back""#,
                r#""Wants their money back""#,
                true
            )
        ]
    );
    assert_eq!(
        c03.sources
            .iter()
            .map(|s| (s.index, s.step_id.as_str()))
            .collect::<Vec<_>>(),
        [(1, "triage")]
    );
    let out: serde_json::Value =
        serde_json::from_str(c03.sources[0].output.as_deref().unwrap()).unwrap();
    assert_eq!(
        (&out["provider"], &out["model"]),
        (&json!("heuristic"), &json!("heuristic-v1"))
    );
    let c05 = all.iter().find(|c| c.review.id == "vc05").unwrap();
    assert_eq!(
        c05.review
            .acts
            .iter()
            .map(|a| (a.actor.as_str(), a.decision.as_str()))
            .collect::<Vec<_>>(),
        [("user:ann", "escalate"), ("user:cy", "approve")],
        "acts in order"
    );
    let c09 = all.iter().find(|c| c.review.id == "vc09").unwrap();
    assert_eq!(
        (c09.version, c09.version_hash.as_deref()),
        (2, Some("hash-t2"))
    );

    let refunds = read(CalibrationQuery {
        workflow: Some("refunds".into()),
        limit: 100,
        ..CalibrationQuery::default()
    })
    .await;
    assert_eq!(ids(&refunds), ["vc10"]);
    let week2 = read(CalibrationQuery {
        workflow: Some("intake".into()),
        since_ms: Some(CAL_WEEK2),
        limit: 100,
        ..CalibrationQuery::default()
    })
    .await;
    assert_eq!(
        ids(&week2),
        ["vc11", "vc09", "vc07", "vc06", "vc05", "vc04"]
    );
    let queues = read(CalibrationQuery {
        queues: Some(vec!["finance".into(), "managers".into()]),
        limit: 100,
        ..CalibrationQuery::default()
    })
    .await;
    assert_eq!(
        ids(&queues),
        ["vc10", "vc05"],
        "the escalated task is in managers now"
    );
    let none = read(CalibrationQuery {
        queues: Some(vec![]),
        limit: 100,
        ..CalibrationQuery::default()
    })
    .await;
    assert!(none.is_empty(), "no queue, no task");
    let newest = read(CalibrationQuery {
        limit: 2,
        ..CalibrationQuery::default()
    })
    .await;
    assert_eq!(ids(&newest), ["vc11", "vc10"]);
}
