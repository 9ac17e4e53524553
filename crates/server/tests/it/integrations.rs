//! Review decisions from Slack buttons and email links: signature, window,
//! replay and identity checks on `/integrations/slack/interactivity`;
//! confirmation, single use, expiry and tampering on `/review/{token}`.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use countersign_server::ServerConfig;
use countersign_server::integrations::Settings;
use countersign_server::integrations::slack::{APPROVE_ACTION, REJECT_ACTION, sign};
use engine::links::{Action, Secret};
use engine::notify::{ChatUpdate, UpdateFailed};
use serde_json::json;
use store::{Review, ReviewStatus, RunStatus, SlackIdentity};

use crate::support::{Harness, Reply};

const SIGNING_SECRET: &str = "8f742231b10e8888abcd99yyyzzz85a5";
pub(crate) const LINK_SECRET: &str = "link-secret-for-tests";

/// Records `chat.update` calls: `(channel, ts, decision, by)`.
#[derive(Default)]
pub(crate) struct Chat {
    calls: Mutex<Vec<(String, String, String, String)>>,
}

#[async_trait]
impl ChatUpdate for Chat {
    async fn show_decision(
        &self,
        _review: &Review,
        channel: &str,
        ts: &str,
        decision: &str,
        by: &str,
    ) -> Result<(), UpdateFailed> {
        self.calls
            .lock()
            .unwrap()
            .push((channel.into(), ts.into(), decision.into(), by.into()));
        Ok(())
    }
}

pub(crate) async fn harness(chat: Arc<Chat>) -> Harness {
    let h = Harness::with_config(ServerConfig {
        integrations: Settings {
            slack_signing_secret: Some(SIGNING_SECRET.into()),
            link_secret: Some(LINK_SECRET.into()),
            public_url: "https://countersign.example".into(),
            chat: Some(chat),
        },
        ..ServerConfig::default()
    })
    .await;
    h.store
        .map_slack_user(SlackIdentity {
            slack_user: "U0ANN".into(),
            actor: "ann@example.com".into(),
            queues: vec!["operations".into()],
            created_at_ms: 0,
        })
        .await
        .unwrap();
    h.store
        .map_slack_user(SlackIdentity {
            slack_user: "U0BOB".into(),
            actor: "bob@example.com".into(),
            queues: vec!["managers".into()],
            created_at_ms: 0,
        })
        .await
        .unwrap();
    h
}

/// Submits a `reviewed` run that needs review; returns `(run_id, review_id)`.
pub(crate) async fn waiting(h: &Harness) -> (String, String) {
    let r = h
        .post(
            "/api/v1/workflows/reviewed/runs?wait=10",
            Some(&h.tokens.writer),
            r#"{"text":"Printer on fire","priority":"high"}"#,
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.json["status"], "waiting", "{}", r.text);
    let run_id = r.json["run_id"].as_str().unwrap().to_string();
    let review = h
        .store
        .review_for_step(&run_id, 2)
        .await
        .unwrap()
        .expect("a review task");
    (run_id, review.id)
}

async fn review(h: &Harness, id: &str) -> Review {
    h.store.review(id).await.unwrap().unwrap()
}

async fn wait_terminal(h: &Harness, run_id: &str) -> store::Run {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let run = h.store.run(run_id).await.unwrap().unwrap();
        if run.status.is_terminal() {
            return run;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "run never ended: {run:#?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn percent(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// A `block_actions` form body as Slack sends it.
pub(crate) fn click(user: &str, action_id: &str, review_id: &str) -> String {
    let payload = json!({
        "type": "block_actions",
        "user": { "id": user, "username": "someone", "name": "someone", "team_id": "T0TEAM" },
        "team": { "id": "T0TEAM", "domain": "example" },
        "api_app_id": "A0APP",
        "container": { "type": "message", "message_ts": "1700000000.000001", "channel_id": "C0REVIEWERS", "is_ephemeral": false },
        "channel": { "id": "C0REVIEWERS", "name": "reviewers" },
        "message": { "ts": "1700000000.000001" },
        "trigger_id": "13345224609.738474920.8088930838d88f008e0",
        "response_url": "https://hooks.slack.com/actions/T0TEAM/1/abc",
        "actions": [{ "type": "button", "action_id": action_id, "block_id": "countersign_actions",
                      "value": review_id, "text": { "type": "plain_text", "text": "Approve" },
                      "action_ts": "1700000001.000002" }],
    });
    format!("payload={}", percent(&payload.to_string()))
}

pub(crate) fn now_s() -> i64 {
    engine::now_ms() / 1000
}

fn slack_request(body: &str, ts: i64, signature: &str) -> Request<Body> {
    Request::post("/integrations/slack/interactivity")
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .header("X-Slack-Request-Timestamp", ts.to_string())
        .header("X-Slack-Signature", signature)
        .body(Body::from(body.to_string()))
        .unwrap()
}

pub(crate) async fn send_signed(h: &Harness, body: &str, ts: i64) -> Reply {
    let sig = sign(SIGNING_SECRET, &ts.to_string(), body.as_bytes());
    h.send(slack_request(body, ts, &sig)).await
}

async fn chat_calls(chat: &Chat, n: usize) -> Vec<(String, String, String, String)> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let calls = chat.calls.lock().unwrap().clone();
        if calls.len() >= n {
            return calls;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "chat.update was not called {n} time(s): {calls:?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn a_signed_slack_approval_decides_and_updates_the_message() {
    let chat = Arc::new(Chat::default());
    let h = harness(chat.clone()).await;
    let (run_id, id) = waiting(&h).await;
    let r = send_signed(&h, &click("U0ANN", APPROVE_ACTION, &id), now_s()).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.json["text"], "Approved by ann@example.com.", "{}", r.text);
    let t = review(&h, &id).await;
    assert_eq!(t.status, ReviewStatus::Approved);
    assert_eq!(t.decided_by.as_deref(), Some("ann@example.com"));
    assert_eq!(
        wait_terminal(&h, &run_id).await.status,
        RunStatus::Completed
    );
    let calls = chat_calls(&chat, 1).await;
    assert_eq!(
        calls[0],
        (
            "C0REVIEWERS".into(),
            "1700000000.000001".into(),
            "Approved".into(),
            "ann@example.com".into()
        )
    );
}

#[tokio::test]
async fn a_slack_rejection_records_the_fixed_reason() {
    let chat = Arc::new(Chat::default());
    let h = harness(chat.clone()).await;
    let (run_id, id) = waiting(&h).await;
    let r = send_signed(&h, &click("U0ANN", REJECT_ACTION, &id), now_s()).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let t = review(&h, &id).await;
    assert_eq!(t.status, ReviewStatus::Rejected);
    assert_eq!(
        t.reason.as_deref(),
        Some("Rejected in Slack by ann@example.com")
    );
    assert_eq!(wait_terminal(&h, &run_id).await.status, RunStatus::Rejected);
    assert_eq!(chat_calls(&chat, 1).await[0].2, "Rejected");
}

#[tokio::test]
async fn a_wrong_or_missing_slack_signature_decides_nothing() {
    let chat = Arc::new(Chat::default());
    let h = harness(chat.clone()).await;
    let (_, id) = waiting(&h).await;
    let body = click("U0ANN", APPROVE_ACTION, &id);
    let ts = now_s();
    let wrong = sign("not-the-secret", &ts.to_string(), body.as_bytes());
    let r = h.send(slack_request(&body, ts, &wrong)).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{}", r.text);
    // A signature over another body does not carry over.
    let other = sign(SIGNING_SECRET, &ts.to_string(), b"payload=%7B%7D");
    let r = h.send(slack_request(&body, ts, &other)).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{}", r.text);
    let r = h.send(slack_request(&body, ts, "")).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{}", r.text);
    assert!(!r.text.contains(SIGNING_SECRET));
    let t = review(&h, &id).await;
    assert_eq!((t.status, t.acts.len()), (ReviewStatus::Pending, 0));
    assert!(chat.calls.lock().unwrap().is_empty());
}

#[tokio::test]
async fn a_stale_slack_timestamp_is_refused_even_when_signed() {
    let h = harness(Arc::new(Chat::default())).await;
    let (_, id) = waiting(&h).await;
    let body = click("U0ANN", APPROVE_ACTION, &id);
    for ts in [now_s() - 301, now_s() + 301] {
        let r = send_signed(&h, &body, ts).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{}", r.text);
        assert!(r.text.contains("5 minutes"), "{}", r.text);
    }
    let t = review(&h, &id).await;
    assert_eq!((t.status, t.acts.len()), (ReviewStatus::Pending, 0));
}

#[tokio::test]
async fn a_replayed_slack_request_makes_no_second_decision() {
    let chat = Arc::new(Chat::default());
    let h = harness(chat.clone()).await;
    let (_, id) = waiting(&h).await;
    let body = click("U0ANN", APPROVE_ACTION, &id);
    let ts = now_s();
    let first = send_signed(&h, &body, ts).await;
    assert_eq!(first.status, StatusCode::OK, "{}", first.text);
    let again = send_signed(&h, &body, ts).await;
    assert_eq!(again.status, StatusCode::CONFLICT, "{}", again.text);
    assert!(again.text.contains("replayed"), "{}", again.text);
    // The same signature with its hex in upper case is the same request.
    let sig = sign(SIGNING_SECRET, &ts.to_string(), body.as_bytes());
    let upper = format!("v0={}", sig["v0=".len()..].to_uppercase());
    assert_ne!(upper, sig);
    let recased = h.send(slack_request(&body, ts, &upper)).await;
    assert_eq!(recased.status, StatusCode::CONFLICT, "{}", recased.text);
    assert!(recased.text.contains("replayed"), "{}", recased.text);
    assert_eq!(review(&h, &id).await.acts.len(), 1);
    chat_calls(&chat, 1).await;
}

#[tokio::test]
async fn an_unknown_or_unentitled_slack_user_decides_nothing() {
    let h = harness(Arc::new(Chat::default())).await;
    let (_, id) = waiting(&h).await;
    let r = send_signed(&h, &click("U0NOBODY", APPROVE_ACTION, &id), now_s()).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert!(
        r.json["text"].as_str().unwrap().contains("not linked"),
        "{}",
        r.text
    );
    // Bob is mapped, but only to `managers`; the task is in `operations`.
    let r = send_signed(&h, &click("U0BOB", APPROVE_ACTION, &id), now_s()).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert!(
        r.json["text"].as_str().unwrap().contains("may not decide"),
        "{}",
        r.text
    );
    let t = review(&h, &id).await;
    assert_eq!((t.status, t.acts.len()), (ReviewStatus::Pending, 0));
}

#[tokio::test]
async fn without_a_signing_secret_the_slack_endpoint_is_absent() {
    let h = Harness::new().await;
    let body = "payload=%7B%7D";
    let r = h
        .send(slack_request(
            body,
            now_s(),
            &sign("x", "1", body.as_bytes()),
        ))
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "{}", r.text);
}

fn link(review_id: &str, action: Action, expires_ms: i64) -> String {
    format!(
        "/review/{}",
        Secret::new(LINK_SECRET).sign(
            review_id,
            action,
            expires_ms,
            "carol@example.com",
            "operations"
        )
    )
}

pub(crate) fn later() -> i64 {
    engine::now_ms() + 3_600_000
}

pub(crate) async fn post_form(h: &Harness, path: &str) -> Reply {
    h.send(
        Request::post(path)
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(Body::empty())
            .unwrap(),
    )
    .await
}

#[tokio::test]
async fn an_email_link_get_confirms_only_and_post_decides_once() {
    let h = harness(Arc::new(Chat::default())).await;
    let (run_id, id) = waiting(&h).await;
    let path = link(&id, Action::Approve, later());
    // Mail scanners prefetch: GET, even repeated, decides nothing.
    for _ in 0..2 {
        let r = h.get(&path, None).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
        assert!(r.text.contains("Approve this request?"), "{}", r.text);
        assert!(r.text.contains("method=\"post\""), "{}", r.text);
        assert!(r.text.contains("Printer on fire"), "{}", r.text);
    }
    assert_eq!(review(&h, &id).await.acts.len(), 0);
    let r = post_form(&h, &path).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let t = review(&h, &id).await;
    assert_eq!(t.status, ReviewStatus::Approved);
    assert_eq!(t.decided_by.as_deref(), Some("carol@example.com"));
    assert_eq!(
        wait_terminal(&h, &run_id).await.status,
        RunStatus::Completed
    );
    // Second use: refused, by GET and by POST.
    let r = post_form(&h, &path).await;
    assert_eq!(r.status, StatusCode::GONE, "{}", r.text);
    assert!(r.text.contains("already used"), "{}", r.text);
    let r = h.get(&path, None).await;
    assert_eq!(r.status, StatusCode::GONE, "{}", r.text);
    assert_eq!(review(&h, &id).await.acts.len(), 1);
}

#[tokio::test]
async fn expired_tampered_and_malformed_links_are_refused() {
    let h = harness(Arc::new(Chat::default())).await;
    let (_, id) = waiting(&h).await;
    let expired = link(&id, Action::Approve, engine::now_ms() - 1);
    for r in [h.get(&expired, None).await, post_form(&h, &expired).await] {
        assert_eq!(r.status, StatusCode::GONE, "{}", r.text);
        assert!(r.text.contains("expired"), "{}", r.text);
    }
    // Turning a reject link into an approve link breaks the signature.
    let tampered = link(&id, Action::Reject, later()).replacen(".reject.", ".approve.", 1);
    for r in [h.get(&tampered, None).await, post_form(&h, &tampered).await] {
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.text);
    }
    let forged = format!(
        "/review/{}",
        Secret::new("someone-elses-secret").sign(
            &id,
            Action::Approve,
            later(),
            "carol@example.com",
            "operations"
        )
    );
    assert_eq!(post_form(&h, &forged).await.status, StatusCode::FORBIDDEN);
    let r = post_form(&h, "/review/not-a-token").await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.text);
    let t = review(&h, &id).await;
    assert_eq!((t.status, t.acts.len()), (ReviewStatus::Pending, 0));
}

#[tokio::test]
async fn a_reject_link_rejects_and_an_open_link_redirects_to_the_inbox() {
    let h = harness(Arc::new(Chat::default())).await;
    let (run_id, id) = waiting(&h).await;
    let r = h.get(&link(&id, Action::Open, later()), None).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.text);
    assert_eq!(
        r.headers[header::LOCATION],
        format!("https://countersign.example/inbox/{id}").as_str()
    );
    let r = post_form(&h, &link(&id, Action::Reject, later())).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let t = review(&h, &id).await;
    assert_eq!(
        t.reason.as_deref(),
        Some("Rejected by email link by carol@example.com")
    );
    assert_eq!(wait_terminal(&h, &run_id).await.status, RunStatus::Rejected);
    // Another, unused approve link for the decided task is refused too.
    let r = post_form(&h, &link(&id, Action::Approve, later())).await;
    assert_eq!(r.status, StatusCode::GONE, "{}", r.text);
}
