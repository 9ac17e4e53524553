//! Workflow versions: a run finishes on the version it started with.

use serde_json::json;
use store::RunStatus;
use test_kit::fixture::{TIMEOUT, assert_all_chains, engine_with, wait_status};

use crate::attempts;

fn edition(step: &str) -> String {
    format!(
        r#"
name: versioned
steps:
  - id: pause
    wait: 500ms
  - id: {step}
    rules:
      - when: "true"
        then: {{ review: skip }}
"#
    )
}

#[tokio::test]
async fn a_waiting_run_finishes_on_its_version_and_new_runs_use_the_new_one() {
    let (engine, store) = engine_with(&edition("first_edition")).await;
    let old = engine
        .submit("versioned", json!({}), None, "test")
        .await
        .unwrap();
    wait_status(
        &store,
        &old.run_id,
        |r| r.status == RunStatus::Waiting,
        TIMEOUT,
    )
    .await;

    let v2 = engine
        .catalog()
        .load_source(&edition("second_edition"), "test.yaml")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(v2.version, 2);
    assert_eq!(engine.catalog().get("versioned").unwrap().version, 2);
    let again = engine
        .catalog()
        .load_source(&edition("second_edition"), "test.yaml")
        .await
        .unwrap();
    assert_eq!(again.version, 2, "the same source is not a new version");

    let new = engine
        .submit("versioned", json!({}), None, "test")
        .await
        .unwrap();
    let old_run = wait_status(&store, &old.run_id, |r| r.status.is_terminal(), TIMEOUT).await;
    let new_run = wait_status(&store, &new.run_id, |r| r.status.is_terminal(), TIMEOUT).await;

    assert_eq!((old_run.status, old_run.version), (RunStatus::Completed, 1));
    assert_eq!((new_run.status, new_run.version), (RunStatus::Completed, 2));
    let steps =
        |a: Vec<(String, u32, &'static str)>| a.into_iter().map(|(s, _, _)| s).collect::<Vec<_>>();
    assert_eq!(
        steps(attempts(&store, &old.run_id).await),
        ["pause", "first_edition"]
    );
    assert_eq!(
        steps(attempts(&store, &new.run_id).await),
        ["pause", "second_edition"]
    );

    let stored = store
        .workflow_version("versioned", 1)
        .await
        .unwrap()
        .unwrap();
    assert!(
        stored.source.contains("first_edition"),
        "version 1 stays in the store"
    );
    assert_all_chains(&store).await;
}

#[tokio::test]
async fn a_workflow_name_belongs_to_one_file() {
    let (engine, _store) = engine_with(&edition("first_edition")).await;
    let err = engine
        .catalog()
        .load_source(&edition("second_edition"), "other.yaml")
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("already defined in test.yaml"),
        "{err}"
    );
    assert_eq!(engine.catalog().get("versioned").unwrap().version, 1);
}
