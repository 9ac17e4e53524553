//! `Engine::preview_actions` without any connector: the built-in `http`
//! step after a review, rendered with proposed values, its `when:`
//! honoured and the workflow's secrets redacted.

use std::sync::Arc;

use countersign_engine::{Catalog, Engine, StepKinds};
use serde_json::{Map, json};
use store::{ReviewFilter, ReviewStatus, RunStatus, Store};
use store_sqlite::SqliteStore;
use test_kit::fixture::{TIMEOUT, config, env, wait_status};

const FLOW: &str = r#"
name: hooked
steps:
  - id: draft
    validate:
      value: "{{ input }}"
      schema: { type: object }
  - id: review
    review:
      fields: [draft.valid]
      queue: operations
      covers: [hook]
  - id: hook
    when: approved.valid
    http:
      url: "${env:HOOK_URL}"
      body: { note: "{{ input.note }}", valid: "{{ approved.valid }}" }
"#;

#[tokio::test]
async fn an_http_action_after_a_review_is_previewed_with_secrets_redacted() {
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open_temp().expect("temporary store"));
    let catalog = Catalog::new(
        StepKinds::builtin(reqwest::Client::new()),
        env(&[("HOOK_URL", "https://hooks.example.com/t0ps3cret")]),
        store.clone(),
    );
    catalog
        .load_source(FLOW, "test.yaml")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let engine = Engine::start(store.clone(), Arc::new(catalog), config());
    let run = engine
        .submit("hooked", json!({ "note": "hi" }), None, "test")
        .await
        .expect("submit");
    let r = wait_status(
        &store,
        &run.run_id,
        |r| r.status.is_settled(r.wait),
        TIMEOUT,
    )
    .await;
    assert_eq!(r.status, RunStatus::Waiting, "{r:#?}");
    let task = engine
        .reviews(&ReviewFilter {
            status: Some(ReviewStatus::Pending),
            limit: 10,
            ..ReviewFilter::default()
        })
        .await
        .unwrap()
        .remove(0);

    let shown = engine
        .preview_actions(&task, &Map::new())
        .await
        .expect("preview");
    assert_eq!(shown.len(), 1, "{shown:?}");
    let hook = &shown[0];
    assert_eq!(
        (hook.step.as_str(), hook.covered, &hook.skipped),
        ("hook", true, &None)
    );
    let action = hook.action.as_ref().expect("rendered");
    assert_eq!(action.title, "HTTP POST [redacted]");
    assert_eq!(
        action.get("url").map(|v| v.text.as_str()),
        Some("[redacted]")
    );
    assert_eq!(
        action.get("body").map(|v| &v.value),
        Some(&json!({ "note": "hi", "valid": true }))
    );
    let text = format!("{shown:?}");
    assert!(!text.contains("t0ps3cret"), "{text}");

    let off = engine
        .preview_actions(&task, json!({ "valid": false }).as_object().unwrap())
        .await
        .expect("preview");
    assert_eq!(
        off[0].skipped.as_deref(),
        Some("will not run: `when: approved.valid` is false")
    );
    assert_eq!(off[0].to_json()["runs"], json!(false));
}
