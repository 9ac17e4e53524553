//! Intake: input validation, normalisation and idempotent submission.

use std::time::Duration;

use countersign_engine::SubmitError;
use expect_test::expect;
use serde_json::json;
use store::RunFilter;
use test_kit::fixture::{engine_with, wait_settled};

const CONTACT: &str = r#"
name: contact
input:
  schema:
    type: object
    required: [name, email, message]
    properties:
      name:    { type: string, minLength: 1, maxLength: 200 }
      email:   { type: string, format: email }
      message: { type: string, minLength: 1 }
  normalize: { email: [trim, lowercase], name: [trim] }
steps:
  - id: check
    rules:
      - when: "'urgent' in input.message"
        then: { review: required }
"#;

#[tokio::test]
async fn invalid_input_lists_every_field_and_creates_no_run() {
    let (engine, store) = engine_with(CONTACT).await;
    let err = engine
        .submit(
            "contact",
            json!({ "name": "", "email": "not-an-email" }),
            None,
            "test",
        )
        .await
        .expect_err("the input is invalid");
    let SubmitError::InvalidInput(fields) = err else {
        panic!("expected InvalidInput, got {err:?}");
    };
    let pointers: Vec<&str> = fields.iter().map(|f| f.pointer.as_str()).collect();
    assert_eq!(pointers, ["/email", "/message", "/name"], "{fields:#?}");
    assert!(fields.iter().all(|f| !f.message.is_empty()));
    let runs = store
        .list_runs(&RunFilter {
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(
        runs.is_empty(),
        "a refused submission writes nothing: {runs:#?}"
    );
    assert!(store.run_ids(None, 10).await.unwrap().is_empty());
}

#[tokio::test]
async fn unknown_workflow_is_refused() {
    let (engine, _store) = engine_with(CONTACT).await;
    let err = engine
        .submit("nope", json!({}), None, "test")
        .await
        .unwrap_err();
    assert!(
        matches!(err, SubmitError::UnknownWorkflow(ref n) if n == "nope"),
        "{err:?}"
    );
}

#[tokio::test]
async fn input_is_normalised_before_the_run_sees_it() {
    let t = test_kit::check(
        CONTACT,
        json!({ "name": "  Ada  ", "email": "  Ada@Example.COM ", "message": "this is urgent" }),
    )
    .await;
    expect![[r#"
        status: completed, outcome: completed
        run.received test {"idempotency_key":null,"input":{"email":"ada@example.com","message":"this is urgent","name":"Ada"},"version":1,"workflow":"contact"}
        input.normalized system {"fields":["email","name"]}
        step.completed system {"attempt":1,"output":{"fail":null,"finish":null,"matched":[0],"review":"required","review_rule":{"index":0,"when":"'urgent' in input.message"}},"step":"check"}
        run.completed system {"outcome":"completed"}
    "#]]
    .assert_eq(&t);
}

#[tokio::test]
async fn rejected_input_renders_field_errors() {
    let t = test_kit::check(
        CONTACT,
        json!({ "name": "Ada", "email": "ada@example.com" }),
    )
    .await;
    expect![[r#"
        rejected: invalid input
          /message: "message" is a required property
        runs created: 0
    "#]]
    .assert_eq(&t);
}

#[tokio::test]
async fn idempotency_key_returns_the_existing_run() {
    let (engine, store) = engine_with(CONTACT).await;
    let input = json!({ "name": "Ada", "email": "ada@example.com", "message": "hello" });
    let first = engine
        .submit("contact", input.clone(), Some("req-1".into()), "test")
        .await
        .unwrap();
    assert!(first.created);
    wait_settled(&store, &first.run_id).await;
    let again = engine
        .submit("contact", input.clone(), Some("req-1".into()), "test")
        .await
        .unwrap();
    assert!(!again.created, "a repeated key creates nothing");
    assert_eq!(again.run_id, first.run_id);
    assert_eq!(
        again.status,
        store::RunStatus::Completed,
        "the existing run's status is returned"
    );
    let other = engine
        .submit("contact", input, Some("req-2".into()), "test")
        .await
        .unwrap();
    assert!(other.created);
    assert_ne!(other.run_id, first.run_id);
    let runs = store
        .list_runs(&RunFilter {
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(runs.len(), 2);
    let done = engine
        .wait_settled(&other.run_id, Duration::from_secs(20))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(done.status, store::RunStatus::Completed);
}

#[tokio::test]
async fn idempotency_field_dedupes_without_a_header() {
    let wf = r#"
name: intake
input:
  idempotency_field: message_id
steps:
  - id: noop
    rules:
      - when: "false"
        then: { review: skip }
"#;
    let (engine, _store) = engine_with(wf).await;
    let a = engine
        .submit("intake", json!({ "message_id": "m-1" }), None, "test")
        .await
        .unwrap();
    let b = engine
        .submit(
            "intake",
            json!({ "message_id": "m-1", "extra": 1 }),
            None,
            "test",
        )
        .await
        .unwrap();
    let c = engine
        .submit("intake", json!({ "message_id": "m-2" }), None, "test")
        .await
        .unwrap();
    assert!(a.created && !b.created && c.created);
    assert_eq!(a.run_id, b.run_id);
}
