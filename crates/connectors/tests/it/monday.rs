//! The `crm` step (Monday.com) against the schema-checking fake.

use connectors::monday::{self, client};
use domain::event::kind;
use serde_json::json;
use store::RunStatus;
use test_kit::fake_monday::{FakeMonday, Fault, TOKEN, validate};
use test_kit::fixture::{TIMEOUT, TempDir, events_of, eventually, wait_settled};

use crate::*;

const BOARD: &str = "4242";

fn fake_board(fake: &FakeMonday) {
    fake.board(
        BOARD,
        &[
            ("email", "email", &[]),
            ("notes", "long_text", &[]),
            ("category", "status", &["Support", "Sales", "Billing"]),
            ("next_step", "text", &[]),
            ("cs_key", "text", &[]),
        ],
    );
}

fn config(fake: &FakeMonday, token: &str) -> connectors::Config {
    connectors::Config {
        monday: Some(monday::Settings {
            url: fake.url(),
            token: token.into(),
        }),
        ..Default::default()
    }
}

const WF: &str = r#"
name: crm
steps:
  - id: crm
    retry: { max_attempts: 4, initial: 10ms, max: 50ms, jitter: none }
    timeout: 1s
    crm:
      monday:
        board: "4242"
        upsert_by: { column: email, value: "{{ input.email }}" }
        item_name: "{{ input.name }}"
$EXTRA        columns:
          email:     { email: "{{ input.email }}" }
          notes:     { long_text: "{{ input.summary }}" }
          category:  { status: "{{ input.intent }}", map: { support_request: Support, sales_lead: Sales, billing: Billing, complaint: Complaint } }
          next_step: { text: "call back" }
"#;

fn wf(extra: &str) -> String {
    WF.replace("$EXTRA", extra)
}

fn input(email: &str, intent: &str) -> serde_json::Value {
    json!({ "email": email, "name": "Ada", "summary": "Invoice wrong", "intent": intent })
}

#[test]
fn every_document_the_client_sends_is_valid_against_the_sdl() {
    for d in client::DOCUMENTS {
        assert_eq!(validate(d), Vec::<String>::new(), "{d}");
    }
    // The check can fail: a wrong field, a wrong argument, a missing selection.
    let bad = validate(
        "query { items_page_by_column_values(board_id: 1, nope: 2) { items { id bogus } } boards { id columns } }",
    );
    assert_eq!(bad.len(), 3, "{bad:?}");
}

#[tokio::test]
async fn upsert_creates_then_updates_the_same_item() {
    let fake = FakeMonday::start().await;
    fake_board(&fake);
    let (engine, store) = engine(&wf(""), config(&fake, TOKEN)).await;
    let r1 = run(&engine, &store, input("ada@example.com", "billing")).await;
    assert_eq!(r1.status, RunStatus::Completed, "{r1:#?}");
    let o1 = &outputs(&store, &r1.id).await["crm"];
    assert_eq!(o1["action"], json!("created"));
    let r2 = run(&engine, &store, input("ada@example.com", "support_request")).await;
    assert_eq!(r2.status, RunStatus::Completed, "{r2:#?}");
    let o2 = &outputs(&store, &r2.id).await["crm"];
    assert_eq!(
        (o2["action"].clone(), o2["item_id"].clone()),
        (json!("updated"), o1["item_id"].clone())
    );
    let items = fake.items(BOARD);
    assert_eq!(items.len(), 1);
    assert_eq!(items[0].values["category"], json!({ "label": "Support" }));
    assert_eq!(
        items[0].values["email"],
        json!({ "email": "ada@example.com", "text": "ada@example.com" })
    );
    assert_eq!(items[0].values["notes"], json!({ "text": "Invoice wrong" }));
    assert_eq!(fake.problems(), Vec::<String>::new());
    let done = events_of(&store, &r2.id, kind::EFFECT_COMPLETED).await;
    assert_eq!(done[0]["external_id"], o1["item_id"]);
}

#[tokio::test]
async fn a_label_missing_on_the_board_fails_naming_the_column() {
    let fake = FakeMonday::start().await;
    fake_board(&fake);
    let (engine, store) = engine(&wf(""), config(&fake, TOKEN)).await;
    let r = run(&engine, &store, input("ada@example.com", "complaint")).await;
    assert_eq!(r.status, RunStatus::Failed);
    let err = r.error.unwrap_or_default();
    assert!(
        err.contains("steps[0].crm.monday.columns.category")
            && err.contains("ColumnValueException"),
        "{err}"
    );
    assert!(fake.items(BOARD).is_empty());
}

#[tokio::test]
async fn a_value_without_a_label_map_entry_fails_before_any_call() {
    let fake = FakeMonday::start().await;
    fake_board(&fake);
    let (engine, store) = engine(&wf(""), config(&fake, TOKEN)).await;
    let r = run(&engine, &store, input("ada@example.com", "spam")).await;
    assert_eq!(r.status, RunStatus::Failed);
    let err = r.error.unwrap_or_default();
    assert!(
        err.contains("columns.category") && err.contains("\"spam\" has no entry in `map`"),
        "{err}"
    );
    assert!(fake.documents().is_empty());
}

#[tokio::test]
async fn complexity_and_429_wait_as_told() {
    let fake = FakeMonday::start().await;
    fake_board(&fake);
    fake.fail_next(&[
        Fault::Complexity(2),
        Fault::Status(429, Some(1)),
        Fault::Status(503, None),
    ]);
    let (engine, store) = engine(&wf(""), config(&fake, TOKEN)).await;
    let r = run(&engine, &store, input("ada@example.com", "billing")).await;
    assert_eq!(r.status, RunStatus::Completed, "{r:#?}");
    let waits: Vec<_> = events_of(&store, &r.id, kind::STEP_RETRY_SCHEDULED)
        .await
        .iter()
        .map(|e| e["retry_after_ms"].clone())
        .collect();
    assert_eq!(waits, [json!(2000), json!(1000), json!(null)]);
    assert_eq!(fake.items(BOARD).len(), 1);
}

#[tokio::test]
async fn a_refused_token_fails_and_never_leaks() {
    let fake = FakeMonday::start().await;
    fake_board(&fake);
    let wrong = "monday-wrong-token-55555";
    let (engine, store) = engine(&wf(""), config(&fake, wrong)).await;
    let r = run(&engine, &store, input("ada@example.com", "billing")).await;
    assert_eq!(r.status, RunStatus::Failed);
    assert!(
        r.error
            .clone()
            .unwrap_or_default()
            .contains("MONDAY_API_TOKEN"),
        "{r:#?}"
    );
    assert!(!everything(&store, &r.id).await.contains(wrong));
}

#[tokio::test]
async fn a_missing_board_fails_naming_the_board() {
    let fake = FakeMonday::start().await;
    let (engine, store) = engine(&wf(""), config(&fake, TOKEN)).await;
    let r = run(&engine, &store, input("ada@example.com", "billing")).await;
    assert_eq!(r.status, RunStatus::Failed);
    let err = r.error.unwrap_or_default();
    assert!(
        err.contains("steps[0].crm.monday.board") && err.contains("4242"),
        "{err}"
    );
}

#[tokio::test]
async fn writes_to_one_board_are_serialised() {
    let fake = FakeMonday::start().await;
    fake_board(&fake);
    fake.delay(30);
    let (engine, store) = engine(&wf(""), config(&fake, TOKEN)).await;
    let mut ids = Vec::new();
    for i in 0..4 {
        let s = engine
            .submit(
                "crm",
                input(&format!("p{i}@example.com"), "billing"),
                None,
                "test",
            )
            .await
            .unwrap();
        ids.push(s.run_id);
    }
    for id in &ids {
        assert_eq!(wait_settled(&store, id).await.status, RunStatus::Completed);
    }
    assert_eq!(fake.items(BOARD).len(), 4);
    assert_eq!(
        fake.problems(),
        Vec::<String>::new(),
        "no concurrent mutations on one board"
    );
}

#[tokio::test]
async fn without_a_token_the_upsert_goes_to_the_outbox() {
    let (engine, store) = engine(&wf(""), connectors::Config::default()).await;
    let r = run(&engine, &store, input("ada@example.com", "billing")).await;
    assert_eq!(r.status, RunStatus::Completed);
    let o = &outputs(&store, &r.id).await["crm"];
    assert_eq!(o["outbox"], json!(true));
    assert_eq!(
        o["payload"]["column_values"]["category"],
        json!({ "label": "Billing" })
    );
    assert_eq!(events_of(&store, &r.id, "outbox.recorded").await.len(), 1);
}

async fn crash_mid_create(
    extra: &str,
) -> (
    FakeMonday,
    String,
    std::sync::Arc<dyn store::Store>,
    TempDir,
) {
    let fake = FakeMonday::start().await;
    fake_board(&fake);
    fake.delay(60_000);
    let dir = TempDir::new("monday-crash");
    let db = dir.path().join("cs.db");
    let yaml = wf(extra);
    let (run_id, kill) = doomed(
        db.clone(),
        yaml.clone(),
        config(&fake, TOKEN),
        input("ada@example.com", "billing"),
    )
    .await;
    eventually("the item is created", TIMEOUT, || {
        fake.items(BOARD).len() == 1
    })
    .await;
    kill.now().await;
    fake.delay(0);
    let store = reopen(&db);
    let engine = engine_on(store.clone(), &yaml, config(&fake, TOKEN)).await;
    let r = wait_terminal(&store, &run_id).await;
    assert_eq!(r.status, RunStatus::Completed, "{r:#?}");
    engine.shutdown(std::time::Duration::from_secs(1)).await;
    (fake, run_id, store, dir)
}

#[tokio::test]
async fn a_crash_mid_create_leaves_exactly_one_item() {
    let (fake, run_id, store, _dir) = crash_mid_create("").await;
    assert_eq!(
        fake.items(BOARD).len(),
        1,
        "exactly one item per upsert key"
    );
    assert_eq!(
        outputs(&store, &run_id).await["crm"]["action"],
        json!("updated")
    );
    let rec = events_of(&store, &run_id, kind::EFFECT_RECONCILED).await;
    assert_eq!(rec[0]["result"], json!("not_done"));
}

#[tokio::test]
async fn a_create_still_in_flight_across_a_crash_is_found_not_sent_again() {
    // Monday performs the create 2 s after it arrives, also when the caller
    // died meanwhile; the step's timeout (3 s) bounds when it can land.
    let fake = FakeMonday::start().await;
    fake_board(&fake);
    fake.land_creates_after(2_000);
    let dir = TempDir::new("monday-in-flight");
    let db = dir.path().join("cs.db");
    let yaml = wf("").replace("timeout: 1s", "timeout: 3s");
    let (run_id, kill) = doomed(
        db.clone(),
        yaml.clone(),
        config(&fake, TOKEN),
        input("ada@example.com", "billing"),
    )
    .await;
    eventually("the create is on its way", TIMEOUT, || {
        fake.creates_received() == 1
    })
    .await;
    kill.now().await;
    assert!(fake.items(BOARD).is_empty(), "not landed yet");
    let store = reopen(&db);
    let engine = engine_on(store.clone(), &yaml, config(&fake, TOKEN)).await;
    let r = wait_terminal(&store, &run_id).await;
    assert_eq!(r.status, RunStatus::Completed, "{r:#?}");
    assert_eq!(
        fake.items(BOARD).len(),
        1,
        "exactly one item per upsert key"
    );
    assert_eq!(fake.creates_received(), 1, "no second create_item");
    assert_eq!(
        outputs(&store, &run_id).await["crm"]["action"],
        json!("updated"),
        "the landed item was found and updated"
    );
    assert_eq!(
        events_of(&store, &run_id, kind::EFFECT_IN_FLIGHT)
            .await
            .len(),
        1
    );
    assert_eq!(fake.problems(), Vec::<String>::new());
    engine.shutdown(std::time::Duration::from_secs(1)).await;
}

#[tokio::test]
async fn with_a_key_column_the_crashed_create_is_adopted() {
    let (fake, run_id, store, _dir) = crash_mid_create("        key_column: cs_key\n").await;
    let items = fake.items(BOARD);
    assert_eq!(items.len(), 1);
    assert_eq!(items[0].values["cs_key"], json!(format!("{run_id}:crm")));
    let rec = events_of(&store, &run_id, kind::EFFECT_RECONCILED).await;
    assert_eq!(rec[0]["result"], json!("found"));
    assert_eq!(
        outputs(&store, &run_id).await["crm"]["reconciled"],
        json!(true)
    );
    let writes = fake
        .documents()
        .iter()
        .filter(|(q, _)| q.starts_with("mutation"))
        .count();
    assert_eq!(writes, 1, "no second write after the crash");
}

#[tokio::test]
async fn crm_check_reports_mapping_errors_before_any_run() {
    let fake = FakeMonday::start().await;
    fake.board(
        BOARD,
        &[
            ("email", "email", &[]),
            ("category", "status", &["Support"]),
            ("notes", "text", &[]),
        ],
    );
    let yaml = wf("");
    let problems = connectors::check_workflow(
        &yaml,
        "test.yaml",
        &fixture_env(),
        reqwest::Client::new(),
        &config(&fake, TOKEN),
    )
    .await
    .unwrap();
    let text: Vec<String> = problems
        .iter()
        .map(|p| format!("{}: {}", p.path, p.message))
        .collect();
    assert!(
        text.iter()
            .any(|t| t.contains("columns.notes") && t.contains("type text, not long_text")),
        "{text:?}"
    );
    assert!(
        text.iter()
            .any(|t| t.contains("columns.category") && t.contains("\"Sales\" is not on column")),
        "{text:?}"
    );
    assert!(
        text.iter()
            .any(|t| t.contains("columns.next_step") && t.contains("no column `next_step`")),
        "{text:?}"
    );
    assert_eq!(fake.problems(), Vec::<String>::new());
}

fn fixture_env() -> engine::Env {
    test_kit::fixture::env(&[])
}

const UPDATE_WF: &str = r#"
name: crm-note
steps:
  - id: note
    retry: { max_attempts: 4, initial: 10ms, max: 50ms, jitter: none }
    timeout: 1s
    crm:
      monday:
        board: "4242"
        update:
          item_by: { column: email, value: "{{ input.email }}" }
          body: "Reply sent to {{ input.name }}: {{ input.summary }}"
"#;

fn existing_item(fake: &FakeMonday) -> String {
    fake.add_item(
        BOARD,
        "Ada",
        json!({ "email": { "email": "ada@example.com", "text": "ada@example.com" } }),
    )
}

#[tokio::test]
async fn create_update_adds_one_update_carrying_a_hidden_key_marker() {
    let fake = FakeMonday::start().await;
    fake_board(&fake);
    let item = existing_item(&fake);
    let (engine, store) = engine(UPDATE_WF, config(&fake, TOKEN)).await;
    let r = run(&engine, &store, input("ada@example.com", "billing")).await;
    assert_eq!(r.status, RunStatus::Completed, "{r:#?}");
    assert_eq!(fake.problems(), Vec::<String>::new());
    let updates = fake.updates(&item);
    assert_eq!(updates.len(), 1);
    assert!(
        updates[0]
            .body
            .starts_with("Reply sent to Ada: Invoice wrong"),
        "{:?}",
        updates[0].body
    );
    assert!(
        updates[0]
            .body
            .ends_with(&monday::update::marker(&format!("{}:note", r.id))),
        "{:?}",
        updates[0].body
    );
    let out = &outputs(&store, &r.id).await["note"];
    assert_eq!(
        (
            out["action"].clone(),
            out["item_id"].clone(),
            out["update_id"].clone()
        ),
        (json!("update"), json!(item), json!(updates[0].id))
    );
    let done = events_of(&store, &r.id, kind::EFFECT_COMPLETED).await;
    assert_eq!(done[0]["external_id"], json!(updates[0].id));
    assert_eq!(fake.items(BOARD).len(), 1, "no item created");
}

#[tokio::test]
async fn create_update_without_the_item_fails_naming_item_by() {
    let fake = FakeMonday::start().await;
    fake_board(&fake);
    let (engine, store) = engine(UPDATE_WF, config(&fake, TOKEN)).await;
    let r = run(&engine, &store, input("nobody@example.com", "billing")).await;
    assert_eq!(r.status, RunStatus::Failed, "{r:#?}");
    let err = r.error.unwrap_or_default();
    assert!(
        err.contains("steps[0].crm.monday.update.item_by") && err.contains("no item"),
        "{err}"
    );
    assert!(
        !fake
            .documents()
            .iter()
            .any(|(q, _)| q.starts_with("mutation")),
        "nothing written"
    );
    let e = load_errors(
        &UPDATE_WF.replace(
            "        update:\n",
            "        item_name: x\n        update:\n",
        ),
        connectors::Config::default(),
    );
    assert!(e.contains("`item_name` belongs to an upsert"), "{e}");
    // The online check finds a missing `item_by` column before any run.
    let problems = connectors::check_workflow(
        &UPDATE_WF.replace("column: email", "column: e_mail"),
        "test.yaml",
        &fixture_env(),
        reqwest::Client::new(),
        &config(&fake, TOKEN),
    )
    .await
    .unwrap();
    assert!(
        problems
            .iter()
            .any(|p| p.path == "steps[0].crm.monday.update.item_by.column"
                && p.message.contains("no column `e_mail`")),
        "{problems:?}"
    );
}

#[tokio::test]
async fn a_crash_mid_create_update_is_reconciled_by_the_marker() {
    let fake = FakeMonday::start().await;
    fake_board(&fake);
    let item = existing_item(&fake);
    fake.delay(60_000);
    let dir = TempDir::new("monday-update-crash");
    let db = dir.path().join("cs.db");
    let (run_id, kill) = doomed(
        db.clone(),
        UPDATE_WF.to_string(),
        config(&fake, TOKEN),
        input("ada@example.com", "billing"),
    )
    .await;
    eventually("the update is posted", TIMEOUT, || {
        fake.updates(&item).len() == 1
    })
    .await;
    kill.now().await;
    fake.delay(0);
    let store = reopen(&db);
    let engine = engine_on(store.clone(), UPDATE_WF, config(&fake, TOKEN)).await;
    let r = wait_terminal(&store, &run_id).await;
    assert_eq!(r.status, RunStatus::Completed, "{r:#?}");
    engine.shutdown(std::time::Duration::from_secs(1)).await;
    let updates = fake.updates(&item);
    assert_eq!(updates.len(), 1, "exactly one update per idempotency key");
    let rec = events_of(&store, &run_id, kind::EFFECT_RECONCILED).await;
    assert_eq!(rec[0]["result"], json!("found"), "{rec:?}");
    let out = &outputs(&store, &run_id).await["note"];
    assert_eq!(
        (out["reconciled"].clone(), out["update_id"].clone()),
        (json!(true), json!(updates[0].id))
    );
    assert_eq!(fake.problems(), Vec::<String>::new());
}

#[tokio::test]
async fn an_update_lookup_refused_after_a_crash_fails_the_step_and_never_adds_again() {
    let fake = FakeMonday::start().await;
    fake_board(&fake);
    let item = existing_item(&fake);
    fake.delay(60_000);
    let dir = TempDir::new("monday-update-refused");
    let db = dir.path().join("cs.db");
    let (run_id, kill) = doomed(
        db.clone(),
        UPDATE_WF.to_string(),
        config(&fake, TOKEN),
        input("ada@example.com", "billing"),
    )
    .await;
    eventually("the update is posted", TIMEOUT, || {
        fake.updates(&item).len() == 1
    })
    .await;
    kill.now().await;
    fake.delay(0);
    // The reconciliation's lookup is refused (the token lost its access).
    fake.fail_next(&[Fault::Status(403, None)]);
    let store = reopen(&db);
    let engine = engine_on(store.clone(), UPDATE_WF, config(&fake, TOKEN)).await;
    let r = wait_terminal(&store, &run_id).await;
    assert_eq!(r.status, RunStatus::Failed, "{r:#?}");
    let error = r.error.clone().unwrap_or_default();
    for part in ["not added again", "MONDAY_API_TOKEN", "retry the run"] {
        assert!(error.contains(part), "{part:?} missing from {error:?}");
    }
    assert!(!error.contains(TOKEN), "{error}");
    assert_eq!(fake.updates(&item).len(), 1, "no second update");
    let rec = events_of(&store, &run_id, kind::EFFECT_RECONCILED).await;
    assert_eq!(rec.len(), 1, "{rec:?}");
    assert_eq!(rec[0]["result"], json!("failed"), "{rec:?}");

    let retried = engine.retry(&run_id, "operator").await.expect("retry");
    assert!(matches!(retried, store::OpResult::Done(_)), "{retried:?}");
    let r = test_kit::fixture::wait_status(
        &store,
        &run_id,
        |r| r.status == RunStatus::Completed,
        TIMEOUT,
    )
    .await;
    assert_eq!(r.error, None, "{r:#?}");
    assert_eq!(fake.updates(&item).len(), 1, "exactly one update");
    let rec = events_of(&store, &run_id, kind::EFFECT_RECONCILED).await;
    assert_eq!(rec[1]["result"], json!("found"), "{rec:?}");
    engine.shutdown(std::time::Duration::from_secs(1)).await;
}
