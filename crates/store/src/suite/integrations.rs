//! Suite cases for review integrations: Slack identities, single-use
//! nonces decided in the decision's transaction, the notification journal
//! and settings.

use std::sync::Arc;

use super::*;
use crate::{
    DecideReview, Decided, NewReview, NotificationStatus, Once, ReviewAct, ReviewChange,
    ReviewStatus, SlackIdentity,
};

async fn waiting_task(store: &Arc<dyn Store>, run_id: &str, review_id: &str) {
    created(
        store,
        new_run(run_id, "wf", T0, None, Some(("n1", T0 + 30_000))),
    )
    .await;
    store
        .create_review(NewReview {
            id: review_id.into(),
            run_id: run_id.into(),
            step_index: 1,
            step_id: "review".into(),
            workflow: "wf".into(),
            queue: "operations".into(),
            fields: r#"[{"name":"priority","step":"triage","draft":"low","schema":null}]"#.into(),
            min_approvals: 1,
            deadline_at_ms: None,
            on_deadline: "null".into(),
            notify: r#"["slack"]"#.into(),
            created_at_ms: T0,
        })
        .await
        .expect("create_review");
}

fn reject(review_id: &str, rev: i64, at: i64) -> DecideReview {
    DecideReview {
        review_id: review_id.into(),
        expect_rev: rev,
        act: ReviewAct {
            seq: 0,
            actor: "ann@example.com".into(),
            decision: "reject".into(),
            values: "{}".into(),
            comment: None,
            reason: Some("no".into()),
            queue: None,
            at_ms: at,
            user_id: None,
        },
        change: ReviewChange::Reject {
            reason: "no".into(),
        },
        events: vec![event(kind::REVIEW_DECIDED, r#"{"review":"v1"}"#, at)],
        at_ms: at,
    }
}

/// A mapping is created, read back, and replaced by a second `map`.
pub async fn slack_identities_map_and_replace(store: Arc<dyn Store>) {
    assert_eq!(store.slack_identity("U1").await.unwrap(), None);
    let mut i = SlackIdentity {
        slack_user: "U1".into(),
        actor: "ann@example.com".into(),
        queues: vec!["operations".into(), "sales".into()],
        created_at_ms: T0,
    };
    store.map_slack_user(i.clone()).await.unwrap();
    assert_eq!(store.slack_identity("U1").await.unwrap(), Some(i.clone()));
    i.actor = "bob@example.com".into();
    i.queues = vec!["managers".into()];
    store.map_slack_user(i.clone()).await.unwrap();
    let got = store.slack_identity("U1").await.unwrap().unwrap();
    assert_eq!(
        (got.actor.as_str(), got.queues.clone()),
        ("bob@example.com", vec!["managers".to_string()])
    );
    assert_eq!(store.list_slack_identities().await.unwrap().len(), 1);
}

/// A nonce decides once; a decision that is not `Done` leaves it unused;
/// a used nonce writes nothing, even against another task.
pub async fn a_nonce_decides_once(store: Arc<dyn Store>) {
    waiting_task(&store, "r1", "v1").await;
    waiting_task(&store, "r2", "v2").await;
    let stale = store
        .decide_review_once("n-1", reject("v1", 9, T0 + 1))
        .await
        .unwrap();
    assert_eq!(stale, Once::Decided(Decided::Stale));
    assert!(
        !store.nonce_used("n-1").await.unwrap(),
        "a stale decision consumes nothing"
    );
    let done = store
        .decide_review_once("n-1", reject("v1", 1, T0 + 2))
        .await
        .unwrap();
    assert!(
        matches!(done, Once::Decided(Decided::Done(ref r)) if r.status == ReviewStatus::Rejected)
    );
    assert!(store.nonce_used("n-1").await.unwrap());
    let again = store
        .decide_review_once("n-1", reject("v2", 1, T0 + 3))
        .await
        .unwrap();
    assert_eq!(again, Once::Used);
    let v2 = store.review("v2").await.unwrap().unwrap();
    assert_eq!(
        (v2.status, v2.acts.len()),
        (ReviewStatus::Pending, 0),
        "a used nonce writes nothing"
    );
}

/// The journal tells a first attempt, a retry after a crash (still
/// `started`), and a finished notification apart; settings keep the first
/// value written.
pub async fn notifications_journal_and_settings(store: Arc<dyn Store>) {
    let k = "r1:review:notify-slack";
    assert_eq!(
        store
            .start_notification(k, "v1", "slack", T0)
            .await
            .unwrap(),
        None
    );
    let before = store
        .start_notification(k, "v1", "slack", T0 + 1)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (before.status, before.attempts),
        (NotificationStatus::Started, 1)
    );
    store
        .finish_notification(k, NotificationStatus::Completed, Some("C1:1.2"), T0 + 2)
        .await
        .unwrap();
    let done = store
        .start_notification(k, "v1", "slack", T0 + 3)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (done.status, done.attempts, done.external_id.as_deref()),
        (NotificationStatus::Completed, 2, Some("C1:1.2"))
    );
    let all = store.notifications("v1").await.unwrap();
    assert_eq!(all.len(), 1);
    assert_eq!(
        all[0].attempts, 2,
        "a finished notification counts no more attempts"
    );
    assert!(store.notifications("v2").await.unwrap().is_empty());

    assert_eq!(
        store.setting_or_insert("link_secret", "a").await.unwrap(),
        "a"
    );
    assert_eq!(
        store.setting_or_insert("link_secret", "b").await.unwrap(),
        "a"
    );
}

/// The webhook replay cache: a signature is accepted once until it
/// expires, and expired entries make room for nothing but themselves.
pub async fn signatures_are_remembered_until_they_expire(store: Arc<dyn Store>) {
    assert!(
        store
            .remember_signature("v1=aa", 1_000, 5_000)
            .await
            .unwrap()
    );
    assert!(
        !store
            .remember_signature("v1=aa", 2_000, 6_000)
            .await
            .unwrap(),
        "a replay within the window is refused"
    );
    assert!(
        store
            .remember_signature("v1=bb", 2_000, 6_000)
            .await
            .unwrap()
    );
    // Once expired the entry is gone (the request's timestamp is refused
    // by then anyway, by the window check in front of the cache).
    assert!(
        store
            .remember_signature("v1=aa", 5_000, 9_000)
            .await
            .unwrap()
    );
    assert!(
        !store
            .remember_signature("v1=bb", 5_000, 9_000)
            .await
            .unwrap()
    );
}
