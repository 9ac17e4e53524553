//! One identity per person (issue 12): every channel — inbox, API token,
//! Slack member, email link — decides as the user behind it, so one person
//! through two channels counts once; a link or button decides only what
//! its user may decide now; escalation aims only at known queues.

use std::sync::Arc;

use axum::http::StatusCode;
use countersign_server::integrations::slack::APPROVE_ACTION;
use engine::links::{Action, Secret};
use store::{Review, ReviewStatus, UserRole};

use crate::inbox::{add_user, form, sign_in};
use crate::integrations::{
    Chat, LINK_SECRET, click, harness, later, now_s, post_form, send_signed,
};
use crate::support::{Harness, mint_for};

/// Submits a `four-eyes` run (two distinct approvers, queue
/// `operations`); returns the review task's id.
async fn four_eyes(h: &Harness) -> String {
    let r = h
        .post(
            "/api/v1/workflows/four-eyes/runs?wait=10",
            Some(&h.tokens.writer),
            r#"{"text":"Printer on fire","priority":"high"}"#,
        )
        .await;
    assert_eq!(r.json["status"], "waiting", "{}", r.text);
    let run_id = r.json["run_id"].as_str().unwrap();
    h.store
        .review_for_step(run_id, 1)
        .await
        .unwrap()
        .expect("a review task")
        .id
}

/// An email link to `to` for the task while it waits in `queue`.
fn link_for(review_id: &str, action: Action, to: &str, queue: &str) -> String {
    format!(
        "/review/{}",
        Secret::new(LINK_SECRET).sign(review_id, action, later(), to, queue)
    )
}

async fn task(h: &Harness, id: &str) -> Review {
    h.store.review(id).await.unwrap().unwrap()
}

fn people(t: &Review) -> Vec<(&str, Option<&str>)> {
    t.acts
        .iter()
        .map(|a| (a.actor.as_str(), a.user_id.as_deref()))
        .collect()
}

const APPROVE: &str = r#"{"decision":"approve"}"#;

#[tokio::test]
async fn one_person_through_the_inbox_and_their_own_link_counts_once() {
    let h = harness(Arc::new(Chat::default())).await;
    add_user(&h, "r1@example.com", UserRole::Reviewer, &["operations"]).await;
    add_user(&h, "r2@example.com", UserRole::Reviewer, &["operations"]).await;
    let id = four_eyes(&h).await;
    let r1 = sign_in(&h, "r1@example.com").await;
    let post = h
        .send(form(
            &format!("/inbox/{id}/decision"),
            &r1.cookie,
            &format!("csrf={}&decision=approve", r1.csrf),
        ))
        .await;
    assert_eq!(post.status, StatusCode::SEE_OTHER, "{}", post.text);
    let r = post_form(
        &h,
        &link_for(&id, Action::Approve, "r1@example.com", "operations"),
    )
    .await;
    assert_eq!(r.status, StatusCode::CONFLICT, "{}", r.text);
    assert!(r.text.contains("already approved"), "{}", r.text);
    let t = task(&h, &id).await;
    assert_eq!(t.status, ReviewStatus::Pending, "one person is not two");
    assert_eq!(
        people(&t),
        [("user:r1@example.com", Some("u-r1@example.com"))]
    );
    // Another person's link completes it, recorded as that user.
    let r = post_form(
        &h,
        &link_for(&id, Action::Approve, "r2@example.com", "operations"),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let t = task(&h, &id).await;
    assert_eq!(t.status, ReviewStatus::Approved);
    assert_eq!(
        people(&t),
        [
            ("user:r1@example.com", Some("u-r1@example.com")),
            ("user:r2@example.com", Some("u-r2@example.com"))
        ]
    );
}

#[tokio::test]
async fn a_token_without_a_user_cannot_approve_a_task_that_needs_two_people() {
    let h = Harness::new().await;
    add_user(&h, "r2@example.com", UserRole::Reviewer, &["operations"]).await;
    let id = four_eyes(&h).await;
    let path = format!("/api/v1/reviews/{id}/decision");
    let r = h.post(&path, Some(&h.tokens.reviewer), APPROVE).await;
    r.assert_problem(StatusCode::FORBIDDEN, "four-eyes");
    assert!(
        r.json["detail"]
            .as_str()
            .unwrap()
            .contains("not tied to a user"),
        "{}",
        r.text
    );
    assert!(task(&h, &id).await.acts.is_empty());

    // `token create --user`: the token decides as that user.
    let (secret, _) = mint_for(
        &h.store,
        "r2-cli",
        &["reviews:decide"],
        false,
        Some("u-r2@example.com"),
    )
    .await;
    let r = h.post(&path, Some(&secret), APPROVE).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.json["decisions"][0]["actor"], "token:tok-r2-cli");
    assert_eq!(r.json["decisions"][0]["user_id"], "u-r2@example.com");
    // The same person in the inbox is not a second approver.
    let r2 = sign_in(&h, "r2@example.com").await;
    let post = h
        .send(form(
            &format!("/inbox/{id}/decision"),
            &r2.cookie,
            &format!("csrf={}&decision=approve", r2.csrf),
        ))
        .await;
    assert_eq!(post.status, StatusCode::FORBIDDEN, "{}", post.text);
    assert!(post.text.contains("already approved"), "{}", post.text);
    assert_eq!(task(&h, &id).await.acts.len(), 1);
}

#[tokio::test]
async fn a_link_sent_before_an_escalation_decides_nothing() {
    let h = harness(Arc::new(Chat::default())).await;
    add_user(&h, "ops@example.com", UserRole::Reviewer, &["operations"]).await;
    add_user(&h, "boss@example.com", UserRole::Reviewer, &["managers"]).await;
    let (_, id) = crate::integrations::waiting(&h).await;
    let early = link_for(&id, Action::Approve, "ops@example.com", "operations");
    let r = h
        .post(
            &format!("/api/v1/reviews/{id}/decision"),
            Some(&h.tokens.admin),
            r#"{"decision":"escalate","queue":"managers"}"#,
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    for r in [h.get(&early, None).await, post_form(&h, &early).await] {
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.text);
        assert!(
            r.text.contains("moved to the `managers` queue"),
            "{}",
            r.text
        );
    }
    // Even a link naming the new queue decides only for a user who holds
    // it now, as the inbox would.
    let r = post_form(
        &h,
        &link_for(&id, Action::Approve, "ops@example.com", "managers"),
    )
    .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.text);
    assert!(
        r.text
            .contains("may not decide tasks of the `managers` queue"),
        "{}",
        r.text
    );
    assert_eq!(task(&h, &id).await.status, ReviewStatus::Pending);
    let r = post_form(
        &h,
        &link_for(&id, Action::Approve, "boss@example.com", "managers"),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let t = task(&h, &id).await;
    assert_eq!(
        (t.status, t.decided_by.as_deref()),
        (ReviewStatus::Approved, Some("user:boss@example.com"))
    );
}

#[tokio::test]
async fn a_slack_member_mapped_to_a_user_counts_as_that_user() {
    // The harness maps Slack member U0ANN to `ann@example.com`.
    let h = harness(Arc::new(Chat::default())).await;
    add_user(&h, "ann@example.com", UserRole::Reviewer, &["operations"]).await;
    let id = four_eyes(&h).await;
    let r = send_signed(&h, &click("U0ANN", APPROVE_ACTION, &id), now_s()).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert!(
        r.json["text"]
            .as_str()
            .unwrap()
            .contains("Approval counted"),
        "{}",
        r.text
    );
    let t = task(&h, &id).await;
    assert_eq!(
        people(&t),
        [("user:ann@example.com", Some("u-ann@example.com"))]
    );
    // Ann's email link and Ann's API token are Ann again.
    let r = post_form(
        &h,
        &link_for(&id, Action::Approve, "ann@example.com", "operations"),
    )
    .await;
    assert_eq!(r.status, StatusCode::CONFLICT, "{}", r.text);
    let (secret, _) = mint_for(
        &h.store,
        "ann-cli",
        &["reviews:decide"],
        false,
        Some("u-ann@example.com"),
    )
    .await;
    h.post(
        &format!("/api/v1/reviews/{id}/decision"),
        Some(&secret),
        APPROVE,
    )
    .await
    .assert_problem(StatusCode::FORBIDDEN, "four-eyes");
    let t = task(&h, &id).await;
    assert_eq!((t.status, t.acts.len()), (ReviewStatus::Pending, 1));
}

#[tokio::test]
async fn escalation_to_an_unknown_queue_is_refused_naming_the_field() {
    let h = Harness::new().await;
    add_user(&h, "ops@example.com", UserRole::Reviewer, &["operations"]).await;
    let (_, id) = crate::reviews::waiting(&h).await;
    let path = format!("/api/v1/reviews/{id}/decision");
    let r = h
        .post(
            &path,
            Some(&h.tokens.admin),
            r#"{"decision":"escalate","queue":"finance-typo"}"#,
        )
        .await;
    r.assert_problem(StatusCode::UNPROCESSABLE_ENTITY, "validation");
    assert_eq!(r.json["errors"][0]["pointer"], "/queue", "{}", r.text);
    assert!(
        r.json["errors"][0]["detail"]
            .as_str()
            .unwrap()
            .contains("finance-typo"),
        "{}",
        r.text
    );
    let ops = sign_in(&h, "ops@example.com").await;
    let page = h
        .send(form(
            &format!("/inbox/{id}/decision"),
            &ops.cookie,
            &format!("csrf={}&decision=escalate&queue=finance-typo", ops.csrf),
        ))
        .await;
    assert_eq!(
        page.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        page.text
    );
    assert!(
        page.text.contains("no queue `finance-typo`"),
        "{}",
        page.text
    );
    let t = task(&h, &id).await;
    assert_eq!((t.queue.as_str(), t.acts.len()), ("operations", 0));
    // A queue some workflow names is a valid target.
    let r = h
        .post(
            &path,
            Some(&h.tokens.admin),
            r#"{"decision":"escalate","queue":"managers"}"#,
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
}

#[tokio::test]
async fn a_disabled_user_decides_nothing_through_any_channel_and_is_signed_out() {
    let h = harness(Arc::new(Chat::default())).await;
    add_user(&h, "r1@example.com", UserRole::Reviewer, &["operations"]).await;
    let id = four_eyes(&h).await;
    let r1 = sign_in(&h, "r1@example.com").await;
    let user = h
        .store
        .user_by_email("r1@example.com")
        .await
        .unwrap()
        .unwrap();
    assert!(h.store.set_disabled(&user.id, Some(1)).await.unwrap());

    // Their session ended: the inbox sends them to sign in.
    let inbox = h.send(crate::inbox::get("/inbox", &r1.cookie)).await;
    assert_eq!(inbox.status, StatusCode::SEE_OTHER, "{}", inbox.text);
    // Their email link no longer decides (the link's queue does not stand
    // in for them).
    let r = post_form(
        &h,
        &link_for(&id, Action::Approve, "r1@example.com", "operations"),
    )
    .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.text);
    assert!(task(&h, &id).await.acts.is_empty());

    // Enabled again, the same link decides as them.
    assert!(h.store.set_disabled(&user.id, None).await.unwrap());
    let r = post_form(
        &h,
        &link_for(&id, Action::Approve, "r1@example.com", "operations"),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(
        people(&task(&h, &id).await),
        [("user:r1@example.com", Some("u-r1@example.com"))]
    );
}
