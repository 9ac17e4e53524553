//! `control: review` on side-effecting steps: the concrete action becomes a
//! review task; nothing is performed before approval, exactly once after,
//! with the reviewer's edits; a rejection performs nothing.

use connectors::email::{Transport, gmail};
use domain::event::kind;
use domain::review::Decision;
use serde_json::{Map, Value as Json, json};
use store::{ReviewStatus, RunStatus};
use test_kit::fake_gmail::{self, FakeGmail};
use test_kit::fake_monday::{FakeMonday, TOKEN as MONDAY_TOKEN};
use test_kit::fake_slack::{FakeSlack, TOKEN as SLACK_TOKEN};
use test_kit::fixture::events_of;

use crate::*;

fn approve(values: Json) -> Decision {
    Decision::Approve {
        values: values.as_object().cloned().unwrap_or_else(Map::new),
        comment: Some("looks right".into()),
    }
}

/// The pending task of a run waiting on its action review.
async fn task_of(store: &Arc<dyn Store>, run_id: &str, step_index: usize) -> store::Review {
    store
        .review_for_step(run_id, step_index)
        .await
        .expect("read the task")
        .expect("a review task for the action")
}

fn draft_of(r: &store::Review, name: &str) -> Json {
    engine::review::fields_of(r)
        .into_iter()
        .find(|f| f.name == name)
        .map(|f| f.draft)
        .unwrap_or(Json::Null)
}

const EMAIL_WF: &str = r#"
name: mail
steps:
  - id: reply
    control: review
    retry: { max_attempts: 3, initial: 10ms, max: 50ms, jitter: none }
    email:
      to: "{{ input.name }} <{{ input.email }}>"
      subject: "About your request, {{ input.name }}"
      body: "Hello {{ input.name }}, we got your request."
      review_queue: support
"#;

fn gmail_config(fake: &FakeGmail) -> connectors::Config {
    connectors::Config {
        email: Transport::Gmail(gmail::Settings {
            api_url: fake.api_url(),
            token_url: fake.token_url(),
            client_id: fake_gmail::CLIENT_ID.into(),
            client_secret: fake_gmail::CLIENT_SECRET.into(),
            refresh_token: fake_gmail::REFRESH_TOKEN.into(),
            sender: format!("Ops <{}>", fake_gmail::SENDER),
        }),
        ..Default::default()
    }
}

#[tokio::test]
async fn email_under_review_is_sent_once_after_approval_with_the_edits() {
    let fake = FakeGmail::start().await;
    let (engine, store) = engine(EMAIL_WF, gmail_config(&fake)).await;
    let input = json!({ "name": "Ada", "email": "ada@example.org" });
    let r = run(&engine, &store, input).await;
    assert_eq!(r.status, RunStatus::Waiting, "{r:#?}");
    assert!(fake.sent().is_empty(), "nothing is sent before approval");
    let task = task_of(&store, &r.id, 0).await;
    assert_eq!(task.queue, "support");
    assert_eq!(task.status, ReviewStatus::Pending);
    assert_eq!(draft_of(&task, "subject"), json!("About your request, Ada"));
    assert_eq!(
        draft_of(&task, "body"),
        json!("Hello Ada, we got your request.")
    );
    let requested = events_of(&store, &r.id, kind::REVIEW_REQUESTED).await;
    assert_eq!(requested[0]["control"], json!("review"), "{requested:?}");
    let action = &requested[0]["action"];
    assert_eq!(
        (&action["title"], &action["values"][0]["label"]),
        (
            &json!("Email to ada@example.org — About your request, Ada"),
            &json!("To")
        ),
        "the task says what the action does: {requested:?}"
    );
    assert!(
        action["values"][0]["text"]
            .as_str()
            .is_some_and(|t| t.contains("ada@example.org")),
        "the task shows the recipient: {requested:?}"
    );

    engine
        .decide_review(
            &task.id,
            approve(json!({ "body": "Hello Ada, an edited reply." })),
            &test_kit::fixture::person("user:alice"),
        )
        .await
        .expect("approve");
    let done = wait_terminal(&store, &r.id).await;
    assert_eq!(done.status, RunStatus::Completed, "{done:#?}");
    let sent = fake.sent();
    assert_eq!(sent.len(), 1, "sent exactly once");
    assert_eq!(sent[0].subject, "About your request, Ada");
    let raw = {
        use base64::Engine as _;
        let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(sent[0].raw.trim_end_matches('='))
            .expect("base64url RFC 822");
        String::from_utf8_lossy(&bytes).into_owned()
    };
    assert!(raw.contains("Hello Ada, an edited reply."), "{raw}");
    assert!(!raw.contains("we got your request"), "{raw}");
    assert_eq!(fake.problems(), Vec::<String>::new());
    assert_eq!(
        outputs(&store, &r.id).await["reply"]["performed"],
        json!(true)
    );
    assert_eq!(
        events_of(&store, &r.id, kind::EFFECT_COMPLETED).await.len(),
        1
    );
}

#[tokio::test]
async fn email_under_review_that_is_rejected_is_never_sent() {
    let fake = FakeGmail::start().await;
    let (engine, store) = engine(EMAIL_WF, gmail_config(&fake)).await;
    let r = run(
        &engine,
        &store,
        json!({ "name": "Bo", "email": "bo@example.org" }),
    )
    .await;
    assert_eq!(r.status, RunStatus::Waiting, "{r:#?}");
    let task = task_of(&store, &r.id, 0).await;
    engine
        .decide_review(
            &task.id,
            Decision::Reject {
                reason: "wrong tone".into(),
                comment: None,
            },
            &test_kit::fixture::person("user:alice"),
        )
        .await
        .expect("reject");
    let done = wait_terminal(&store, &r.id).await;
    assert_eq!(done.status, RunStatus::Rejected, "{done:#?}");
    assert!(fake.sent().is_empty());
    assert!(
        events_of(&store, &r.id, kind::EFFECT_STARTED)
            .await
            .is_empty()
    );
}

#[tokio::test]
async fn slack_under_review_posts_the_edited_text_once() {
    let fake = FakeSlack::start().await;
    let yaml = r##"
name: notify
steps:
  - id: notify
    control: review
    slack:
      channel: "#ops-intake"
      text: "New request from {{ input.name }}"
"##;
    let config = connectors::Config {
        slack: Some(connectors::slack::Settings {
            url: fake.url(),
            token: SLACK_TOKEN.into(),
        }),
        ..Default::default()
    };
    let (engine, store) = engine(yaml, config).await;
    let r = run(&engine, &store, json!({ "name": "Ada" })).await;
    assert_eq!(r.status, RunStatus::Waiting, "{r:#?}");
    assert!(
        fake.posted().is_empty(),
        "nothing is posted before approval"
    );
    let task = task_of(&store, &r.id, 0).await;
    assert_eq!(task.queue, "default");
    assert_eq!(draft_of(&task, "text"), json!("New request from Ada"));
    engine
        .decide_review(
            &task.id,
            approve(json!({ "text": "Urgent: new request from Ada" })),
            &test_kit::fixture::person("user:alice"),
        )
        .await
        .expect("approve");
    let done = wait_terminal(&store, &r.id).await;
    assert_eq!(done.status, RunStatus::Completed, "{done:#?}");
    let posted = fake.posted();
    assert_eq!(posted.len(), 1);
    assert_eq!(posted[0].text, "Urgent: new request from Ada");
    assert_eq!(fake.problems(), Vec::<String>::new());
}

#[tokio::test]
async fn crm_under_review_writes_the_approved_column_values_once() {
    let fake = FakeMonday::start().await;
    fake.board(
        "4242",
        &[("email", "email", &[]), ("next_step", "text", &[])],
    );
    let yaml = r#"
name: crm
steps:
  - id: crm
    control: review
    crm:
      monday:
        board: "4242"
        upsert_by: { column: email, value: "{{ input.email }}" }
        item_name: "{{ input.name }}"
        columns:
          email:     { email: "{{ input.email }}" }
          next_step: { text: "call back" }
"#;
    let config = connectors::Config {
        monday: Some(connectors::monday::Settings {
            url: fake.url(),
            token: MONDAY_TOKEN.into(),
        }),
        ..Default::default()
    };
    let (engine, store) = engine(yaml, config).await;
    let r = run(
        &engine,
        &store,
        json!({ "name": "Ada", "email": "ada@example.com" }),
    )
    .await;
    assert_eq!(r.status, RunStatus::Waiting, "{r:#?}");
    assert!(
        fake.items("4242").is_empty(),
        "nothing written before approval"
    );
    let task = task_of(&store, &r.id, 0).await;
    let names: Vec<String> = engine::review::fields_of(&task)
        .into_iter()
        .map(|f| f.name)
        .collect();
    assert_eq!(
        names,
        ["item_name", "next_step"],
        "the upsert key is not editable"
    );
    assert_eq!(draft_of(&task, "next_step"), json!("call back"));
    engine
        .decide_review(
            &task.id,
            approve(json!({ "next_step": "send the invoice", "item_name": "Ada L." })),
            &test_kit::fixture::person("user:alice"),
        )
        .await
        .expect("approve");
    let done = wait_terminal(&store, &r.id).await;
    assert_eq!(done.status, RunStatus::Completed, "{done:#?}");
    let items = fake.items("4242");
    assert_eq!(items.len(), 1);
    assert_eq!(items[0].name, "Ada L.");
    assert_eq!(items[0].values["next_step"], json!("send the invoice"));
    assert_eq!(fake.problems(), Vec::<String>::new());
}
