//! The `slack` step against the spec-checking fake Slack.

use domain::event::kind;
use serde_json::json;
use store::RunStatus;
use test_kit::fake_slack::{FakeSlack, TOKEN};
use test_kit::fixture::{TIMEOUT, TempDir, events_of, eventually};

use crate::*;

fn config(fake: &FakeSlack, token: &str) -> connectors::Config {
    connectors::Config {
        slack: Some(connectors::slack::Settings {
            url: fake.url(),
            token: token.into(),
        }),
        ..Default::default()
    }
}

const WF: &str = r#"
name: notify
steps:
  - id: notify
    retry: { max_attempts: 3, initial: 10ms, max: 50ms, jitter: none }
    timeout: 1s
    slack:
      channel: "$CHANNEL"
      text: "New request from {{ input.name }}"
      blocks:
        - { type: section, text: { type: mrkdwn, text: "*{{ input.name }}* wrote in" } }
        - type: actions
          elements:
            - { type: button, action_id: open, text: { type: plain_text, text: Open }, value: "{{ run.id }}" }
"#;

fn wf(channel: &str) -> String {
    WF.replace("$CHANNEL", channel)
}

#[tokio::test]
async fn posts_once_with_the_key_in_metadata() {
    let fake = FakeSlack::start().await;
    let (engine, store) = engine(&wf("#ops-intake"), config(&fake, TOKEN)).await;
    let r = run(&engine, &store, json!({ "name": "Ada" })).await;
    assert_eq!(r.status, RunStatus::Completed, "{r:#?}");
    assert_eq!(fake.problems(), Vec::<String>::new());
    let posted = fake.posted();
    assert_eq!(posted.len(), 1);
    let key = format!("{}:notify", r.id);
    assert_eq!(posted[0].channel, "C0OPSINTAKE");
    assert_eq!(posted[0].text, "New request from Ada");
    assert_eq!(
        posted[0].metadata,
        Some(json!({ "event_type": "countersign_effect", "event_payload": { "key": key } }))
    );
    let out = &outputs(&store, &r.id).await["notify"];
    assert_eq!(
        (out["performed"].clone(), out["channel"].clone()),
        (json!(true), json!("C0OPSINTAKE"))
    );
    let done = events_of(&store, &r.id, kind::EFFECT_COMPLETED).await;
    assert_eq!(
        done[0]["external_id"],
        json!(format!("C0OPSINTAKE:{}", posted[0].ts))
    );
}

#[tokio::test]
async fn channel_not_found_fails_naming_the_field() {
    let fake = FakeSlack::start().await;
    let (engine, store) = engine(&wf("#nowhere"), config(&fake, TOKEN)).await;
    let r = run(&engine, &store, json!({ "name": "Ada" })).await;
    assert_eq!(r.status, RunStatus::Failed);
    let err = r.error.unwrap_or_default();
    assert!(
        err.contains("steps[0].slack.channel") && err.contains("channel_not_found"),
        "{err}"
    );
    assert_eq!(fake.calls().len(), 1, "a permanent error is not retried");
    assert_eq!(events_of(&store, &r.id, kind::EFFECT_FAILED).await.len(), 1);
}

#[tokio::test]
async fn rate_limits_wait_for_retry_after() {
    let fake = FakeSlack::start().await;
    fake.fail_next(1, 429, Some(1));
    let (engine, store) = engine(&wf("#ops-intake"), config(&fake, TOKEN)).await;
    let r = run(&engine, &store, json!({ "name": "Ada" })).await;
    assert_eq!(r.status, RunStatus::Completed, "{r:#?}");
    let sched = events_of(&store, &r.id, kind::STEP_RETRY_SCHEDULED).await;
    assert_eq!(sched.len(), 1);
    assert_eq!(sched[0]["retry_after_ms"], json!(1000));
    assert!(sched[0]["delay_ms"].as_u64().unwrap() >= 1000, "{sched:?}");
    assert_eq!(fake.posted().len(), 1);
}

#[tokio::test]
async fn server_errors_are_retried() {
    let fake = FakeSlack::start().await;
    fake.fail_next(2, 503, None);
    let (engine, store) = engine(&wf("#ops-intake"), config(&fake, TOKEN)).await;
    let r = run(&engine, &store, json!({ "name": "Ada" })).await;
    assert_eq!(r.status, RunStatus::Completed, "{r:#?}");
    assert_eq!(fake.posted().len(), 1);
}

#[tokio::test]
async fn a_refused_token_fails_and_never_leaks() {
    let fake = FakeSlack::start().await;
    let wrong = "xoxb-wrong-token-9876543210";
    let (engine, store) = engine(&wf("#ops-intake"), config(&fake, wrong)).await;
    let r = run(&engine, &store, json!({ "name": "Ada" })).await;
    assert_eq!(r.status, RunStatus::Failed);
    let err = r.error.clone().unwrap_or_default();
    assert!(
        err.contains("SLACK_BOT_TOKEN") && err.contains("invalid_auth"),
        "{err}"
    );
    let all = everything(&store, &r.id).await;
    assert!(!all.contains(wrong), "the token leaked:\n{all}");
}

#[tokio::test]
async fn without_a_token_the_message_goes_to_the_outbox() {
    let (engine, store) = engine(&wf("#ops-intake"), connectors::Config::default()).await;
    let r = run(&engine, &store, json!({ "name": "Ada" })).await;
    assert_eq!(r.status, RunStatus::Completed, "{r:#?}");
    let out = &outputs(&store, &r.id).await["notify"];
    assert_eq!(out["outbox"], json!(true));
    assert_eq!(out["to"], json!({ "channel": "#ops-intake" }));
    assert_eq!(out["payload"]["text"], json!("New request from Ada"));
    assert!(out["note"].as_str().unwrap().starts_with("OUTBOX"));
    let rec = events_of(&store, &r.id, "outbox.recorded").await;
    assert_eq!(rec.len(), 1);
    assert_eq!(rec[0]["connector"], json!("slack"));
    assert!(
        events_of(&store, &r.id, kind::EFFECT_STARTED)
            .await
            .is_empty()
    );
}

#[tokio::test]
async fn suggest_records_and_never_posts() {
    let fake = FakeSlack::start().await;
    let yaml = wf("#ops-intake").replace("    slack:\n", "    control: suggest\n    slack:\n");
    let (engine, store) = engine(&yaml, config(&fake, TOKEN)).await;
    let r = run(&engine, &store, json!({ "name": "Ada" })).await;
    assert_eq!(r.status, RunStatus::Completed);
    assert!(fake.calls().is_empty());
    assert_eq!(events_of(&store, &r.id, "effect.suggested").await.len(), 1);
    assert_eq!(
        outputs(&store, &r.id).await["notify"]["performed"],
        json!(false)
    );
}

#[tokio::test]
async fn bad_review_queues_and_bad_bodies_are_refused_at_load() {
    let yaml = wf("#ops-intake").replace("    slack:\n", "    control: review\n    slack:\n");
    assert_eq!(load_errors(&yaml, connectors::Config::default()), "");
    let yaml = wf("#ops-intake").replace(
        "    slack:\n",
        "    control: review\n    slack:\n      review_queue: \"bad queue\"\n",
    );
    let e = load_errors(&yaml, connectors::Config::default());
    assert!(
        e.contains("review_queue must be") && e.contains("steps[0].slack"),
        "{e}"
    );
    let e = load_errors(
        "name: x\nsteps:\n  - id: s\n    slack: { channel: '#a', txt: hi }\n",
        connectors::Config::default(),
    );
    assert!(
        e.contains("unknown field `txt`") && e.contains("needs `text`"),
        "{e}"
    );
    let e = load_errors(
        "name: x\nsteps:\n  - id: s\n    control: draft\n    slack: { channel: '#a', text: hi }\n",
        connectors::Config::default(),
    );
    assert!(e.contains("draft_channel"), "{e}");
}

#[tokio::test]
async fn draft_posts_to_the_draft_channel() {
    let fake = FakeSlack::start().await;
    let yaml = wf("#ops-intake").replace(
        "    slack:\n",
        "    control: draft\n    slack:\n      draft_channel: \"#reviewers\"\n",
    );
    let (engine, store) = engine(&yaml, config(&fake, TOKEN)).await;
    let r = run(&engine, &store, json!({ "name": "Ada" })).await;
    assert_eq!(r.status, RunStatus::Completed, "{r:#?}");
    let p = fake.posted();
    assert_eq!((p.len(), p[0].channel.as_str()), (1, "C0REVIEWERS"));
    assert!(
        p[0].text.starts_with("[draft for #ops-intake]"),
        "{}",
        p[0].text
    );
}

#[tokio::test]
async fn a_crash_mid_post_is_reconciled_from_history() {
    let fake = FakeSlack::start().await;
    fake.delay(60_000);
    let dir = TempDir::new("slack-crash");
    let db = dir.path().join("cs.db");
    let yaml = wf("#ops-intake");
    let (run_id, kill) = doomed(
        db.clone(),
        yaml.clone(),
        config(&fake, TOKEN),
        json!({ "name": "Ada" }),
    )
    .await;
    let key = format!("{run_id}:notify");
    eventually("the message is posted", TIMEOUT, || {
        fake.count_key(&key) == 1
    })
    .await;
    kill.now().await;
    fake.delay(0);
    let store = reopen(&db);
    let _engine = engine_on(store.clone(), &yaml, config(&fake, TOKEN)).await;
    let r = wait_terminal(&store, &run_id).await;
    assert_eq!(r.status, RunStatus::Completed, "{r:#?}");
    assert_eq!(fake.count_key(&key), 1, "exactly one message");
    let rec = events_of(&store, &run_id, kind::EFFECT_RECONCILED).await;
    assert_eq!(rec[0]["result"], json!("found"), "{rec:?}");
    assert_eq!(
        outputs(&store, &run_id).await["notify"]["reconciled"],
        json!(true)
    );
    assert_eq!(fake.problems(), Vec::<String>::new());
}

/// After a crash with the post in flight, the history lookup is refused
/// for good (the token lacks `channels:history`): the step fails saying
/// why, and nothing is posted again. Once the scope is granted, an
/// operator retry finds the message and completes the run.
#[tokio::test]
async fn a_lookup_refused_for_good_fails_the_step_and_never_posts_again() {
    let fake = FakeSlack::start().await;
    fake.delay(60_000);
    let dir = TempDir::new("slack-scope");
    let db = dir.path().join("cs.db");
    let yaml = wf("#ops-intake");
    let (run_id, kill) = doomed(
        db.clone(),
        yaml.clone(),
        config(&fake, TOKEN),
        json!({ "name": "Ada" }),
    )
    .await;
    let key = format!("{run_id}:notify");
    eventually("the message is posted", TIMEOUT, || {
        fake.count_key(&key) == 1
    })
    .await;
    kill.now().await;
    fake.delay(0);
    fake.missing_scope("conversations.history", Some("channels:history"));

    let store = reopen(&db);
    let engine = engine_on(store.clone(), &yaml, config(&fake, TOKEN)).await;
    let r = wait_terminal(&store, &run_id).await;
    assert_eq!(r.status, RunStatus::Failed, "{r:#?}");
    let error = r.error.clone().unwrap_or_default();
    for part in [
        "not posted again",
        "missing_scope",
        "channels:history",
        "retry the run",
    ] {
        assert!(error.contains(part), "{part:?} missing from {error:?}");
    }
    assert!(!error.contains(TOKEN), "{error}");
    assert_eq!(fake.count_key(&key), 1, "no second message");
    let rec = events_of(&store, &run_id, kind::EFFECT_RECONCILED).await;
    assert_eq!(rec.len(), 1, "{rec:?}");
    assert_eq!(rec[0]["result"], json!("failed"), "{rec:?}");

    fake.missing_scope("conversations.history", None);
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
    assert_eq!(fake.count_key(&key), 1, "exactly one message");
    let rec = events_of(&store, &run_id, kind::EFFECT_RECONCILED).await;
    assert_eq!(rec.len(), 2, "{rec:?}");
    assert_eq!(rec[1]["result"], json!("found"), "{rec:?}");
    assert_eq!(
        outputs(&store, &run_id).await["notify"]["reconciled"],
        json!(true)
    );
    assert_eq!(fake.problems(), Vec::<String>::new());
}
