//! `review`: runs wait for people, who approve (with edits), reject or
//! escalate; rules skip reviews by policy; deadlines fire across restarts;
//! four-eyes needs distinct approvers.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use countersign_engine::{Catalog, Engine, ReviewError, StepKinds};
use domain::event::kind;
use domain::review::{Decision, DecisionError};
use serde_json::{Value as Json, json};
use store::{ReviewFilter, ReviewStatus, RunStatus, Store, WaitReason};
use store_sqlite::{Durability, Role, SqliteStore};
use test_kit::fixture::{
    TIMEOUT, TempDir, assert_chain, config, env, events_of, person, wait_status,
};
use tokio::sync::oneshot;

use crate::{attempts, output};

use test_kit::emit::Emit;

const FLOW: &str = r#"
name: intake
steps:
  - id: triage
    emit:
      output:
        summary: { type: string, maxLength: 40 }
        priority: { enum: [low, medium, high, urgent] }
      values:
        summary: "{{ input.text }}"
        priority: "{{ input.priority }}"
  - id: check
    rules:
      - when: input.priority == "low"
        then: { review: skip }
      - when: input.priority in ["high", "urgent"]
        then: { review: required }
  - id: review
    review:
      fields: [summary, triage.priority]
      queue: operations
      $EXTRA
  - id: after
    emit:
      values:
        summary: "{{ approved.summary }}"
        priority: "{{ approved.priority }}"
"#;

fn flow(extra: &str) -> String {
    FLOW.replace("$EXTRA", extra)
}

async fn start(store: Arc<dyn Store>, yaml: &str) -> Engine {
    let mut kinds = StepKinds::builtin(reqwest::Client::new());
    kinds.register(Arc::new(Emit));
    let catalog = Catalog::new(kinds, env(&[]), store.clone());
    if let Err(e) = catalog.load_source(yaml, "test.yaml").await {
        panic!("the test workflow does not load:\n{e}");
    }
    Engine::start(store, Arc::new(catalog), config())
}

async fn node(yaml: &str) -> (Engine, Arc<dyn Store>) {
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open_temp().expect("temporary store"));
    (start(store.clone(), yaml).await, store)
}

async fn submit(engine: &Engine, priority: &str, actor: &str) -> String {
    engine
        .submit(
            "intake",
            json!({ "text": "Printer on fire", "priority": priority }),
            None,
            actor,
        )
        .await
        .expect("submit")
        .run_id
}

/// Waits until the run waits for review; returns its task id.
async fn waiting_review(engine: &Engine, store: &Arc<dyn Store>, run_id: &str) -> String {
    let run = wait_status(store, run_id, |r| r.status.is_settled(r.wait), TIMEOUT).await;
    assert_eq!(
        (run.status, run.wait, run.position.index),
        (RunStatus::Waiting, Some(WaitReason::Review), 2),
        "{run:#?}"
    );
    let tasks = engine
        .reviews(&ReviewFilter {
            status: Some(ReviewStatus::Pending),
            limit: 10,
            ..ReviewFilter::default()
        })
        .await
        .unwrap();
    tasks
        .into_iter()
        .find(|t| t.run_id == run_id)
        .expect("a pending task for the run")
        .id
}

fn approve(values: Json, comment: &str) -> Decision {
    Decision::Approve {
        values: values.as_object().cloned().unwrap_or_default(),
        comment: Some(comment.into()),
    }
}

#[tokio::test]
async fn a_required_review_waits_and_an_edited_approval_flows_downstream() {
    let (engine, store) = node(&flow("")).await;
    let run_id = submit(&engine, "high", "token:intake").await;
    let id = waiting_review(&engine, &store, &run_id).await;
    let task = engine.review(&id).await.unwrap().unwrap();
    assert_eq!(
        (
            task.queue.as_str(),
            task.submitter.as_deref(),
            task.step_id.as_str()
        ),
        ("operations", Some("token:intake"), "review")
    );
    let fields: Json = serde_json::from_str(&task.fields).unwrap();
    assert_eq!(fields[0]["draft"], "Printer on fire");
    assert_eq!(
        fields[1]["schema"]["enum"][3], "urgent",
        "typed from the producing step"
    );

    let bad = engine
        .decide_review(
            &id,
            approve(json!({"priority": "asap"}), "x"),
            &person("user:ann"),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(&bad, ReviewError::Refused(DecisionError::Invalid(e)) if e[0].pointer == "/values/priority"),
        "{bad:?}"
    );

    let decided = engine
        .decide_review(
            &id,
            approve(json!({"summary": "Printer smoking"}), "calmer wording"),
            &person("user:ann"),
        )
        .await
        .unwrap();
    assert_eq!(decided.status, ReviewStatus::Approved);
    let calibration: Vec<(&str, &str, &str, bool, &str)> = decided
        .results
        .iter()
        .map(|f| {
            (
                f.field.as_str(),
                f.draft.as_str(),
                f.value.as_str(),
                f.changed,
                f.decided_by.as_str(),
            )
        })
        .collect();
    assert_eq!(
        calibration,
        [
            (
                "summary",
                "\"Printer on fire\"",
                "\"Printer smoking\"",
                true,
                "user:ann"
            ),
            ("priority", "\"high\"", "\"high\"", false, "user:ann")
        ]
    );

    let run = wait_status(&store, &run_id, |r| r.status.is_terminal(), TIMEOUT).await;
    assert_eq!(run.status, RunStatus::Completed, "{run:#?}");
    assert_eq!(
        output(&store, &run_id, "after").await,
        json!({"summary": "Printer smoking", "priority": "high"}),
        "downstream steps see the approved values"
    );
    let review_out = output(&store, &run_id, "review").await;
    assert_eq!(review_out["changed"], json!(["summary"]));
    assert_eq!(
        events_of(&store, &run_id, kind::REVIEW_REQUESTED)
            .await
            .len(),
        1
    );
    let decided = events_of(&store, &run_id, kind::REVIEW_DECIDED).await;
    assert_eq!(decided.len(), 1);
    assert_eq!(decided[0]["changed"], json!(["summary"]));
    assert!(matches!(
        engine
            .decide_review(&id, approve(json!({}), ""), &person("user:bob"))
            .await,
        Err(ReviewError::Closed(ReviewStatus::Approved))
    ));
    assert_chain(&store, &run_id).await;
}

#[tokio::test]
async fn a_rejection_ends_the_run_rejected() {
    let (engine, store) = node(&flow("")).await;
    let run_id = submit(&engine, "urgent", "token:intake").await;
    let id = waiting_review(&engine, &store, &run_id).await;
    let no_reason = Decision::Reject {
        reason: " ".into(),
        comment: None,
    };
    assert!(matches!(
        engine
            .decide_review(&id, no_reason, &person("user:ann"))
            .await,
        Err(ReviewError::Refused(DecisionError::ReasonRequired))
    ));
    let reject = Decision::Reject {
        reason: "duplicate of an open ticket".into(),
        comment: None,
    };
    let r = engine
        .decide_review(&id, reject, &person("user:ann"))
        .await
        .unwrap();
    assert_eq!(r.status, ReviewStatus::Rejected);
    let run = wait_status(&store, &run_id, |r| r.status.is_terminal(), TIMEOUT).await;
    assert_eq!(
        (run.status, run.outcome.as_deref()),
        (RunStatus::Rejected, Some("rejected"))
    );
    assert_eq!(
        events_of(&store, &run_id, kind::RUN_REJECTED).await.len(),
        1
    );
    assert!(
        !attempts(&store, &run_id)
            .await
            .iter()
            .any(|(s, _, _)| s == "after"),
        "nothing runs after a rejection"
    );
    assert_chain(&store, &run_id).await;
}

#[tokio::test]
async fn a_rule_skips_the_review_as_a_policy_decision() {
    let (engine, store) = node(&flow("")).await;
    let run_id = submit(&engine, "low", "token:intake").await;
    let run = wait_status(&store, &run_id, |r| r.status.is_terminal(), TIMEOUT).await;
    assert_eq!(run.status, RunStatus::Completed, "{run:#?}");
    let out = output(&store, &run_id, "review").await;
    assert_eq!(out["decided_by"], "policy");
    assert_eq!(out["policy"]["step"], "check");
    assert_eq!(out["policy"]["rule"]["when"], "input.priority == \"low\"");
    assert_eq!(
        output(&store, &run_id, "after").await,
        json!({"summary": "Printer on fire", "priority": "low"}),
        "approved.* equal the AI draft"
    );
    let decided = events_of(&store, &run_id, kind::REVIEW_DECIDED).await;
    assert_eq!(decided.len(), 1);
    assert_eq!(decided[0]["decided_by"], "policy");
    assert!(
        engine
            .reviews(&ReviewFilter {
                limit: 10,
                ..ReviewFilter::default()
            })
            .await
            .unwrap()
            .is_empty(),
        "no task for people"
    );

    // `when:` on the review step skips it the same way, naming the condition.
    let (engine, store) = node(&flow("when: input.priority == \"urgent\"")).await;
    let run_id = submit(&engine, "high", "token:intake").await;
    let run = wait_status(&store, &run_id, |r| r.status.is_terminal(), TIMEOUT).await;
    assert_eq!(run.status, RunStatus::Completed, "{run:#?}");
    let out = output(&store, &run_id, "review").await;
    assert_eq!(
        (
            out["policy"]["policy"].as_str(),
            out["policy"]["when"].as_str()
        ),
        (Some("when"), Some("input.priority == \"urgent\""))
    );
}

/// Runs one node on `db` in a thread of its own until the run waits for
/// review, then stops it (the whole runtime is dropped).
fn first_node(db: &Path, yaml: &str) -> (String, String) {
    let (db, yaml) = (db.to_path_buf(), yaml.to_string());
    let (tx, rx) = oneshot::channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(async move {
            let store: Arc<dyn Store> = Arc::new(
                SqliteStore::open(&db, Durability::CrashSafe, Role::Worker).expect("open"),
            );
            let engine = start(store.clone(), &yaml).await;
            let run_id = submit(&engine, "high", "token:intake").await;
            waiting_review(&engine, &store, &run_id).await;
            engine.shutdown(Duration::from_secs(5)).await;
            let task = store.review_for_step(&run_id, 2).await.unwrap().unwrap();
            let _ = tx.send((run_id, task.queue));
        });
        rt.shutdown_timeout(Duration::from_secs(5));
    })
    .join()
    .expect("the first node did not panic");
    rx.blocking_recv().expect("the first node submitted a run")
}

#[tokio::test]
async fn a_deadline_escalates_after_a_restart() {
    let yaml = flow("deadline: 1s\n      on_deadline: { escalate: managers }");
    let dir = TempDir::new("review-deadline");
    let db = dir.path().join("countersign.db");
    let (run_id, queue) = {
        let (db, yaml) = (db.clone(), yaml.clone());
        tokio::task::spawn_blocking(move || first_node(&db, &yaml))
            .await
            .unwrap()
    };
    assert_eq!(
        queue, "operations",
        "the first node stopped before the deadline"
    );
    let store: Arc<dyn Store> =
        Arc::new(SqliteStore::open(&db, Durability::CrashSafe, Role::Worker).expect("reopen"));
    let engine = start(store.clone(), &yaml).await;
    let deadline = tokio::time::Instant::now() + TIMEOUT;
    let task = loop {
        let t = store
            .review_for_step(&run_id, 2)
            .await
            .unwrap()
            .expect("task");
        if t.queue == "managers" {
            break t;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "never escalated: {t:#?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(
        (task.status, task.deadline_at_ms),
        (ReviewStatus::Pending, None)
    );
    let expired = events_of(&store, &run_id, kind::REVIEW_EXPIRED).await;
    assert_eq!(expired.len(), 1);
    assert_eq!(expired[0]["action"], json!({"escalate": "managers"}));
    let escalated = events_of(&store, &run_id, kind::REVIEW_ESCALATED).await;
    assert_eq!(
        (escalated[0]["from"].as_str(), escalated[0]["to"].as_str()),
        (Some("operations"), Some("managers"))
    );
    let run = wait_status(&store, &run_id, |r| r.status == RunStatus::Waiting, TIMEOUT).await;
    assert_eq!(run.wait, Some(WaitReason::Review));

    engine
        .decide_review(
            &task.id,
            approve(json!({}), "fine"),
            &person("user:manager"),
        )
        .await
        .unwrap();
    let run = wait_status(&store, &run_id, |r| r.status.is_terminal(), TIMEOUT).await;
    assert_eq!(run.status, RunStatus::Completed, "{run:#?}");
    assert_chain(&store, &run_id).await;
}

#[tokio::test]
async fn a_deadline_can_reject_or_approve_the_draft() {
    let (engine, store) = node(&flow("deadline: 200ms\n      on_deadline: reject")).await;
    let run_id = submit(&engine, "high", "token:intake").await;
    let run = wait_status(&store, &run_id, |r| r.status.is_terminal(), TIMEOUT).await;
    assert_eq!(run.status, RunStatus::Rejected, "{run:#?}");
    assert_eq!(
        events_of(&store, &run_id, kind::REVIEW_EXPIRED).await.len(),
        1
    );
    assert_chain(&store, &run_id).await;

    let (engine, store) = node(&flow(
        "deadline: 200ms\n      on_deadline: approve\n      allow_auto_approve: true",
    ))
    .await;
    let run_id = submit(&engine, "high", "token:intake").await;
    let run = wait_status(&store, &run_id, |r| r.status.is_terminal(), TIMEOUT).await;
    assert_eq!(run.status, RunStatus::Completed, "{run:#?}");
    assert_eq!(
        output(&store, &run_id, "after").await,
        json!({"summary": "Printer on fire", "priority": "high"})
    );
    let task = store.review_for_step(&run_id, 2).await.unwrap().unwrap();
    assert_eq!(task.decided_by.as_deref(), Some("system"));
    assert_chain(&store, &run_id).await;
}

#[tokio::test]
async fn four_eyes_needs_two_distinct_approvers_besides_the_submitter() {
    let (engine, store) = node(&flow("min_approvals: 2")).await;
    let run_id = submit(&engine, "high", "user:alice").await;
    let id = waiting_review(&engine, &store, &run_id).await;
    assert!(matches!(
        engine
            .decide_review(&id, approve(json!({}), ""), &person("user:alice"))
            .await,
        Err(ReviewError::Refused(DecisionError::SelfApproval))
    ));
    let r = engine
        .decide_review(
            &id,
            approve(json!({"priority": "urgent"}), "raise"),
            &person("user:bob"),
        )
        .await
        .unwrap();
    assert_eq!(r.status, ReviewStatus::Pending);
    assert!(matches!(
        engine
            .decide_review(&id, approve(json!({}), ""), &person("user:bob"))
            .await,
        Err(ReviewError::Refused(DecisionError::AlreadyApproved(_)))
    ));
    let run = store.run(&run_id).await.unwrap().unwrap();
    assert_eq!(run.status, RunStatus::Waiting, "one approval is not enough");
    let r = engine
        .decide_review(&id, approve(json!({}), "ok"), &person("user:carol"))
        .await
        .unwrap();
    assert_eq!(r.status, ReviewStatus::Approved);
    let people: Vec<(&str, Option<&str>)> = r
        .acts
        .iter()
        .map(|a| (a.actor.as_str(), a.user_id.as_deref()))
        .collect();
    assert_eq!(
        people,
        [("user:bob", Some("bob")), ("user:carol", Some("carol"))],
        "each act keeps the readable actor and the user id"
    );
    let decided = events_of(&store, &run_id, kind::REVIEW_DECIDED).await;
    assert_eq!(decided[1]["user_id"], "carol");
    let run = wait_status(&store, &run_id, |r| r.status.is_terminal(), TIMEOUT).await;
    assert_eq!(run.status, RunStatus::Completed, "{run:#?}");
    assert_eq!(output(&store, &run_id, "after").await["priority"], "urgent");
    assert_chain(&store, &run_id).await;
}
