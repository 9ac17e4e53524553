//! Review notifications (`notify: [slack, email]` on a `review` step)
//! against the spec-checking fakes: the Block Kit message, one post across
//! a crash, the outbox without credentials, one email per reviewer, and
//! `chat.update` after a decision.

use std::sync::Arc;

use connectors::email::{Transport, gmail};
use connectors::notify::{APPROVE_ACTION, OPEN_ACTION, REJECT_ACTION, SlackUpdater};
use engine::notify::ChatUpdate;
use serde_json::{Value as Json, json};
use store::{NotificationStatus, RunStatus, Store, WaitReason};
use test_kit::fake_gmail::{self, FakeGmail};
use test_kit::fake_slack::{FakeSlack, TOKEN};
use test_kit::fixture::{self, TIMEOUT, TempDir, events_of, eventually};

use crate::*;

const WF: &str = r#"
name: reviewed
steps:
  - id: check
    rules:
      - when: input.amount > 100
        then: { review: required }
  - id: review
    review:
      fields: [check.review]
      queue: operations
      notify: $NOTIFY
      $EXTRA
"#;

fn wf(notify: &str, extra: &str) -> String {
    WF.replace("$NOTIFY", notify).replace("$EXTRA", extra)
}

fn slack_config(fake: &FakeSlack) -> connectors::Config {
    let mut c = connectors::Config {
        slack: Some(connectors::slack::Settings {
            url: fake.url(),
            token: TOKEN.into(),
        }),
        ..Default::default()
    };
    c.review.public_url = "https://countersign.example".into();
    c
}

async fn waiting_for_review(store: &Arc<dyn Store>, run_id: &str) -> store::Run {
    fixture::wait_status(
        store,
        run_id,
        |r| r.status == RunStatus::Waiting && r.wait == Some(WaitReason::Review),
        TIMEOUT,
    )
    .await
}

async fn submit(engine: &Engine, store: &Arc<dyn Store>) -> String {
    let name = fixture::workflow_name(engine);
    let s = engine
        .submit(&name, json!({ "amount": 500 }), None, "test")
        .await
        .expect("submit");
    waiting_for_review(store, &s.run_id).await;
    s.run_id
}

#[tokio::test]
async fn a_review_posts_one_block_kit_message_with_the_task_on_each_button() {
    let fake = FakeSlack::start().await;
    let (engine, store) = engine(
        &wf("[slack]", "slack_channel: \"#reviewers\""),
        slack_config(&fake),
    )
    .await;
    let run_id = submit(&engine, &store).await;
    let review = store.review_for_step(&run_id, 1).await.unwrap().unwrap();
    assert_eq!(fake.problems(), Vec::<String>::new());
    let posted = fake.posted();
    assert_eq!(posted.len(), 1, "{posted:#?}");
    let key = format!("{run_id}:review:notify-slack");
    assert_eq!(posted[0].channel, "C0REVIEWERS");
    assert_eq!(
        posted[0].metadata,
        Some(json!({ "event_type": "countersign_effect", "event_payload": { "key": key } }))
    );
    assert!(posted[0].text.contains(&review.id), "{}", posted[0].text);
    let blocks = posted[0].blocks.clone().unwrap();
    let buttons: Vec<&Json> = blocks
        .as_array()
        .unwrap()
        .iter()
        .filter(|b| b["type"] == "actions")
        .flat_map(|b| b["elements"].as_array().unwrap())
        .collect();
    let ids: Vec<&str> = buttons
        .iter()
        .map(|b| b["action_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [APPROVE_ACTION, REJECT_ACTION, OPEN_ACTION]);
    assert!(buttons.iter().all(|b| b["value"] == review.id.as_str()));
    assert_eq!(
        buttons[2]["url"],
        format!("https://countersign.example/inbox/{}", review.id).as_str()
    );
    let notified = events_of(&store, &run_id, connectors::notify::kind::REVIEW_NOTIFIED).await;
    assert_eq!(notified.len(), 1, "{notified:?}");
    assert_eq!(notified[0]["ts"], posted[0].ts.as_str());
    let journal = store.notifications(&review.id).await.unwrap();
    assert_eq!(journal.len(), 1);
    assert_eq!(journal[0].status, NotificationStatus::Completed);
    assert_eq!(
        journal[0].external_id.as_deref(),
        Some(format!("C0REVIEWERS:{}", posted[0].ts).as_str())
    );
    assert!(
        !fixture::events(&store, &run_id)
            .await
            .iter()
            .any(|e| e.data.contains(TOKEN))
    );
}

#[tokio::test]
async fn a_crash_mid_notification_is_reconciled_from_history() {
    let fake = FakeSlack::start().await;
    // Slack posts, then never answers before the node dies.
    fake.delay(60_000);
    let dir = TempDir::new("review-notify-crash");
    let db = dir.path().join("cs.db");
    let yaml = wf("[slack]", "slack_channel: \"#reviewers\"");
    let (run_id, kill) = doomed(
        db.clone(),
        yaml.clone(),
        slack_config(&fake),
        json!({ "amount": 500 }),
    )
    .await;
    let key = format!("{run_id}:review:notify-slack");
    eventually("the message is posted", TIMEOUT, || {
        fake.count_key(&key) == 1
    })
    .await;
    kill.now().await;
    fake.delay(0);
    let store = reopen(&db);
    let _engine = engine_on(store.clone(), &yaml, slack_config(&fake)).await;
    waiting_for_review(&store, &run_id).await;
    let review = store.review_for_step(&run_id, 1).await.unwrap().unwrap();
    let journal =
        fixture::eventually_some("the notification is journalled complete", TIMEOUT, || {
            let store = store.clone();
            let id = review.id.clone();
            async move {
                store
                    .notifications(&id)
                    .await
                    .unwrap()
                    .into_iter()
                    .find(|n| n.status == NotificationStatus::Completed)
            }
        })
        .await;
    assert_eq!(fake.count_key(&key), 1, "exactly one message");
    assert_eq!(journal.attempts, 2);
    let notified = events_of(&store, &run_id, connectors::notify::kind::REVIEW_NOTIFIED).await;
    assert_eq!(
        notified.last().unwrap()["reconciled"],
        json!(true),
        "{notified:?}"
    );
    assert_eq!(fake.problems(), Vec::<String>::new());
}

#[tokio::test]
async fn a_notification_still_in_flight_across_a_crash_is_posted_once() {
    let fake = FakeSlack::start().await;
    // Slack posts 1.5 s after the request arrives, also when the caller
    // died meanwhile (well inside the notification's 10 s timeout).
    fake.land_posts_after(1_500);
    let dir = TempDir::new("review-notify-in-flight");
    let db = dir.path().join("cs.db");
    let yaml = wf("[slack]", "slack_channel: \"#reviewers\"");
    let (run_id, kill) = doomed(
        db.clone(),
        yaml.clone(),
        slack_config(&fake),
        json!({ "amount": 500 }),
    )
    .await;
    let key = format!("{run_id}:review:notify-slack");
    let posts = |fake: &FakeSlack| {
        fake.calls()
            .iter()
            .filter(|(m, _)| m == "chat.postMessage")
            .count()
    };
    eventually("the post is on its way", TIMEOUT, || posts(&fake) == 1).await;
    kill.now().await;
    assert_eq!(fake.count_key(&key), 0, "not landed yet");
    let store = reopen(&db);
    let _engine = engine_on(store.clone(), &yaml, slack_config(&fake)).await;
    waiting_for_review(&store, &run_id).await;
    let review = store.review_for_step(&run_id, 1).await.unwrap().unwrap();
    fixture::eventually_some("the notification is journalled complete", TIMEOUT, || {
        let store = store.clone();
        let id = review.id.clone();
        async move {
            store
                .notifications(&id)
                .await
                .unwrap()
                .into_iter()
                .find(|n| n.status == NotificationStatus::Completed)
        }
    })
    .await;
    assert_eq!(fake.count_key(&key), 1, "exactly one message");
    assert_eq!(posts(&fake), 1, "no second chat.postMessage");
    assert_eq!(fake.problems(), Vec::<String>::new());
}

#[tokio::test]
async fn without_a_bot_token_the_message_goes_to_the_outbox() {
    let (engine, store) = engine(
        &wf(
            "[slack, email]",
            "slack_channel: \"#reviewers\"\n      notify_email: [ann@example.com]",
        ),
        connectors::Config::default(),
    )
    .await;
    let run_id = submit(&engine, &store).await;
    let outbox = events_of(&store, &run_id, connectors::effect::kind::OUTBOX_RECORDED).await;
    assert_eq!(outbox.len(), 2, "{outbox:?}");
    assert_eq!(outbox[0]["connector"], "slack");
    assert_eq!(outbox[0]["to"], "#reviewers");
    assert_eq!(outbox[1]["connector"], "email");
    // The links are credentials: never in the audit log.
    assert!(!outbox[1].to_string().contains("/review/"), "{}", outbox[1]);
}

#[tokio::test]
async fn email_reviewers_each_get_their_own_message_once() {
    let fake = FakeGmail::start().await;
    let config = connectors::Config {
        email: Transport::Gmail(gmail::Settings {
            api_url: fake.api_url(),
            token_url: fake.token_url(),
            client_id: fake_gmail::CLIENT_ID.into(),
            client_secret: fake_gmail::CLIENT_SECRET.into(),
            refresh_token: fake_gmail::REFRESH_TOKEN.into(),
            sender: format!("Ops <{}>", fake_gmail::SENDER),
        }),
        ..Default::default()
    };
    let (engine, store) = engine(
        &wf(
            "[email]",
            "notify_email: [ann@example.com, bob@example.com]",
        ),
        config,
    )
    .await;
    let run_id = submit(&engine, &store).await;
    assert_eq!(fake.problems(), Vec::<String>::new());
    let sent = fake.sent();
    let to: Vec<&str> = sent.iter().map(|m| m.headers["to"].as_str()).collect();
    assert_eq!(to, ["ann@example.com", "bob@example.com"], "{sent:#?}");
    assert_ne!(sent[0].message_id, sent[1].message_id);
    assert!(
        sent[0].subject.starts_with("Review needed"),
        "{}",
        sent[0].subject
    );
    let notified = events_of(&store, &run_id, connectors::notify::kind::REVIEW_NOTIFIED).await;
    assert_eq!(notified.len(), 2, "{notified:?}");
    let secret = store
        .setting_or_insert(engine::links::SECRET_SETTING, "unused")
        .await
        .unwrap();
    assert_ne!(secret, "unused", "a link secret was generated and stored");
    assert!(
        !fixture::events(&store, &run_id)
            .await
            .iter()
            .any(|e| e.data.contains(&secret) || e.data.contains("/review/"))
    );
}

#[tokio::test]
async fn chat_update_shows_who_decided() {
    let fake = FakeSlack::start().await;
    let config = slack_config(&fake);
    let (engine, store) = engine(
        &wf("[slack]", "slack_channel: \"#reviewers\""),
        config.clone(),
    )
    .await;
    let run_id = submit(&engine, &store).await;
    let review = store.review_for_step(&run_id, 1).await.unwrap().unwrap();
    let ts = fake.posted()[0].ts.clone();
    let updater = SlackUpdater::new(reqwest::Client::new(), config.slack.unwrap(), config.review);
    updater
        .show_decision(&review, "C0REVIEWERS", &ts, "Approved", "ann@example.com")
        .await
        .expect("chat.update");
    assert_eq!(fake.problems(), Vec::<String>::new());
    let after = &fake.posted()[0];
    assert_eq!(
        after.text,
        "Approved by ann@example.com: reviewed (queue operations)"
    );
    let blocks = after.blocks.clone().unwrap().to_string();
    assert!(
        !blocks.contains("\"actions\""),
        "the buttons are gone: {blocks}"
    );
    assert!(fake.calls().iter().any(|(m, _)| m == "chat.update"));
}

#[tokio::test]
async fn a_missing_channel_fails_the_notification_not_the_run() {
    let fake = FakeSlack::start().await;
    let (engine, store) = engine(
        &wf("[slack]", "slack_channel: \"#nowhere\""),
        slack_config(&fake),
    )
    .await;
    let run_id = submit(&engine, &store).await;
    let failed = events_of(
        &store,
        &run_id,
        connectors::notify::kind::REVIEW_NOTIFY_FAILED,
    )
    .await;
    assert_eq!(failed.len(), 1, "{failed:?}");
    assert!(
        failed[0]["error"].as_str().unwrap().contains("channel"),
        "{failed:?}"
    );
    assert_eq!(
        store.run(&run_id).await.unwrap().unwrap().status,
        RunStatus::Waiting
    );
}

#[test]
fn a_notify_channel_with_nowhere_to_send_is_refused_at_load() {
    let e = load_errors(&wf("[slack]", ""), connectors::Config::default());
    assert!(
        e.contains("steps[1].review.notify: `notify: [slack]` has nowhere to send tasks of queue `operations`: set `slack_channel:` on the step, or COUNTERSIGN_SLACK_CHANNELS in the environment (e.g. `operations=#reviewers`)"),
        "{e}"
    );
    let e = load_errors(&wf("[email]", ""), connectors::Config::default());
    assert!(
        e.contains(
            "`notify: [email]` has nowhere to send tasks of queue `operations`: set `notify_email:`"
        ),
        "{e}"
    );
    // A target on the step, or one for the queue (or `*`) in the
    // deployment's settings, is enough.
    assert_eq!(
        load_errors(
            &wf("[slack]", "slack_channel: \"#r\""),
            connectors::Config::default()
        ),
        ""
    );
    let mut config = connectors::Config::default();
    config
        .review
        .slack_channels
        .insert("*".into(), "#reviewers".into());
    assert_eq!(load_errors(&wf("[slack]", ""), config), "");
}

#[tokio::test]
async fn an_escalation_notifies_the_new_queue_once() {
    let fake = FakeSlack::start().await;
    let mut config = slack_config(&fake);
    config
        .review
        .slack_channels
        .insert("managers".into(), "#reviewers".into());
    let yaml = wf(
        "[slack]",
        "slack_channel: \"#ops-intake\"\n      deadline: 50ms\n      on_deadline: { escalate: managers }",
    );
    let (engine, store) = engine(&yaml, config).await;
    let name = fixture::workflow_name(&engine);
    let s = engine
        .submit(&name, json!({ "amount": 500 }), None, "test")
        .await
        .expect("submit");
    let key = format!("{}:review:escalated-managers:notify-slack", s.run_id);
    eventually("the new queue is notified", TIMEOUT, || {
        fake.count_key(&key) == 1
    })
    .await;
    let review = store.review_for_step(&s.run_id, 1).await.unwrap().unwrap();
    assert_eq!(review.queue, "managers");
    let channels: Vec<String> = fake.posted().iter().map(|p| p.channel.clone()).collect();
    assert_eq!(channels, ["C0OPSINTAKE", "C0REVIEWERS"]);
    waiting_for_review(&store, &s.run_id).await;
    assert_eq!(fake.count_key(&key), 1);
    assert_eq!(fake.problems(), Vec::<String>::new());
}
