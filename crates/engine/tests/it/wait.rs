//! `wait`: a durable timer — the run waits as a row, then carries on.

use domain::event::kind;
use serde_json::json;
use store::{RunStatus, WaitReason};
use test_kit::fixture::{TIMEOUT, assert_chain, engine_with, events_of, wait_status};

use crate::{attempts, detail};

const PAUSE: &str = r#"
name: pause
steps:
  - id: nap
    wait: 300ms
  - id: after
    rules:
      - when: "true"
        then: { review: skip }
"#;

#[tokio::test]
async fn a_timer_makes_the_run_wait_then_complete() {
    let (engine, store) = engine_with(PAUSE).await;
    let s = engine
        .submit("pause", json!({}), None, "test")
        .await
        .unwrap();

    let waiting = wait_status(
        &store,
        &s.run_id,
        |r| r.status == RunStatus::Waiting,
        TIMEOUT,
    )
    .await;
    assert_eq!(waiting.wait, Some(WaitReason::Timer));
    assert_eq!(waiting.position.index, 1, "the timer guards the next step");

    let done = wait_status(&store, &s.run_id, |r| r.status.is_terminal(), TIMEOUT).await;
    assert_eq!((done.status, done.wait), (RunStatus::Completed, None));
    assert_eq!(
        attempts(&store, &s.run_id).await,
        [
            ("nap".to_string(), 1, "completed"),
            ("after".to_string(), 1, "completed")
        ]
    );

    let started = events_of(&store, &s.run_id, kind::WAIT_STARTED).await;
    assert_eq!(started.len(), 1);
    let until = started[0]["until_ms"].as_i64().expect("until_ms");
    let after = detail(&store, &s.run_id).await.steps[1].started_at_ms;
    assert!(
        after >= until,
        "the next step started at {after}, before the timer was due at {until}"
    );

    let resumed = events_of(&store, &s.run_id, kind::RUN_RESUMED).await;
    assert_eq!(resumed.len(), 1, "{resumed:#?}");
    assert_eq!(
        (
            resumed[0]["step"].as_str(),
            resumed[0]["from_status"].as_str(),
            resumed[0]["wait"].as_str()
        ),
        (Some("after"), Some("waiting"), Some("timer")),
        "run.resumed says what the run was waiting for"
    );
    assert_chain(&store, &s.run_id).await;
}
