//! `engine::replay`: a step of a finished run executed again on the side,
//! with the variables it saw then; an action is stopped before it sends,
//! a review is refused, and nothing is written.

use std::sync::Arc;

use countersign_engine::replay::{NO_EFFECTS, ReplayError, replay_step, vars_before};
use countersign_engine::{Catalog, Engine, StepKinds};
use domain::run::StepOutcome;
use serde_json::json;
use store::{RunStatus, Store};
use store_sqlite::SqliteStore;
use test_kit::emit::Emit;
use test_kit::fake_http::FakeHttp;
use test_kit::fixture::{TIMEOUT, config, env, wait_status};

use crate::detail;

const FLOW: &str = r#"
name: replayed
steps:
  - id: draft
    emit:
      values:
        text: "{{ input.text }}"
  - id: shout
    when: draft.text != "quiet"
    emit:
      values:
        loud: "{{ draft.text | upper }}!"
  - id: call
    http:
      url: "$URL/hook"
      body: { loud: "{{ shout.loud }}" }
"#;

#[tokio::test]
async fn a_replay_sees_the_runs_values_sends_nothing_and_writes_nothing() {
    let sink = FakeHttp::start().await;
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open_temp().expect("temporary store"));
    let mut kinds = StepKinds::builtin(reqwest::Client::new());
    kinds.register(Arc::new(Emit));
    let catalog = Arc::new(Catalog::new(kinds, env(&[]), store.clone()));
    let wf = catalog
        .load_source(&FLOW.replace("$URL", &sink.url()), "replayed.yaml")
        .await
        .expect("the workflow loads");
    let engine = Engine::start(store.clone(), catalog.clone(), config());
    let run_id = engine
        .submit("replayed", json!({ "text": "hello" }), None, "test")
        .await
        .expect("submit")
        .run_id;
    let run = wait_status(&store, &run_id, |r| r.status.is_terminal(), TIMEOUT).await;
    assert_eq!(run.status, RunStatus::Completed, "{run:#?}");
    assert_eq!(sink.effects(), 1);
    let d = detail(&store, &run_id).await;
    let events = store.events(&run_id, 0, 1_000).await.unwrap().len();

    // The second step, with the first one's stored output.
    let vars = vars_before(&wf, &d, 1);
    let r = replay_step(&wf, 1, &run_id, &vars, store.as_ref())
        .await
        .unwrap();
    assert_eq!(
        (r.outcome, r.attempts),
        (
            StepOutcome::Done {
                output: json!({ "loud": "HELLO!" })
            },
            1
        )
    );

    // Its `when:`, evaluated on the values given.
    let mut quiet = vars.clone();
    quiet.insert(
        "draft".into(),
        domain::expr::value_from_json(&json!({ "text": "quiet" })),
    );
    let r = replay_step(&wf, 1, &run_id, &quiet, store.as_ref())
        .await
        .unwrap();
    assert!(
        matches!(r.outcome, StepOutcome::Skipped { .. }),
        "{:?}",
        r.outcome
    );

    // The action stops before it sends, at once (no retries).
    let vars = vars_before(&wf, &d, 2);
    let r = replay_step(&wf, 2, &run_id, &vars, store.as_ref())
        .await
        .unwrap();
    match &r.outcome {
        StepOutcome::Permanent { error } => assert!(error.contains(NO_EFFECTS), "{error}"),
        other => panic!("{other:?}"),
    }
    assert_eq!(r.attempts, 1);
    assert_eq!((sink.hits(), sink.effects()), (1, 1));

    assert!(matches!(
        replay_step(&wf, 7, &run_id, &vars, store.as_ref()).await,
        Err(ReplayError::NoStep { index: 7, .. })
    ));
    let after = detail(&store, &run_id).await;
    assert_eq!(
        (after.run.rev, after.steps.len(), after.effects.len()),
        (d.run.rev, d.steps.len(), d.effects.len())
    );
    assert_eq!(store.events(&run_id, 0, 1_000).await.unwrap().len(), events);
    engine.shutdown(std::time::Duration::from_secs(5)).await;
}

#[tokio::test]
async fn a_review_is_not_replayed() {
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open_temp().expect("temporary store"));
    let mut kinds = StepKinds::builtin(reqwest::Client::new());
    kinds.register(Arc::new(Emit));
    let catalog = Catalog::new(kinds, env(&[]), store.clone());
    let wf = catalog
        .load_source(
            r#"
name: reviewed
steps:
  - id: draft
    emit:
      output: { text: { type: string } }
      values: { text: "{{ input.text }}" }
  - id: check
    review:
      fields: [text]
      queue: operations
"#,
            "reviewed.yaml",
        )
        .await
        .expect("the workflow loads");
    let vars = domain::expr::Vars::new();
    assert_eq!(
        replay_step(&wf, 1, "run-x", &vars, store.as_ref())
            .await
            .unwrap_err(),
        ReplayError::Review("check".into())
    );
}
