//! Suite cases for users and sessions.

use std::sync::Arc;

use super::*;
use crate::{Session, User, UserRole};

fn user(id: &str, email: &str, role: UserRole, queues: &[&str], at: i64) -> User {
    User {
        id: id.into(),
        email: email.into(),
        role,
        queues: queues.iter().map(|q| q.to_string()).collect(),
        password_hash: format!("$argon2id$fake${id}"),
        created_at_ms: at,
        disabled_at_ms: None,
    }
}

pub async fn users_and_sessions(store: Arc<dyn Store>) {
    let ann = user(
        "u1",
        "ann@example.com",
        UserRole::Reviewer,
        &["ops", "sales"],
        T0,
    );
    store.create_user(ann.clone()).await.expect("create ann");
    let bob = user("u2", "bob@example.com", UserRole::Viewer, &[], T0 + 1);
    store.create_user(bob.clone()).await.expect("create bob");
    assert!(
        matches!(
            store
                .create_user(user("u3", "ann@example.com", UserRole::Admin, &[], T0))
                .await,
            Err(Error::Duplicate(_))
        ),
        "emails are unique"
    );
    assert_eq!(store.user("u1").await.unwrap(), Some(ann.clone()));
    assert_eq!(
        store.user_by_email("ANN@example.com").await.unwrap(),
        Some(ann.clone()),
        "emails compare lowercase"
    );
    assert_eq!(store.user_by_email("nobody@x").await.unwrap(), None);
    assert_eq!(store.list_users().await.unwrap(), vec![ann.clone(), bob]);
    assert!(store.set_password("u1", "$argon2id$new").await.unwrap());
    assert!(!store.set_password("nope", "$argon2id$new").await.unwrap());
    assert_eq!(
        store.user("u1").await.unwrap().unwrap().password_hash,
        "$argon2id$new"
    );

    let session = |hash: &str, user_id: &str, expires: i64| Session {
        hash: hash.into(),
        user_id: user_id.into(),
        csrf: format!("csrf-{hash}"),
        created_at_ms: T0,
        expires_at_ms: expires,
    };
    store
        .create_session(session("s1", "u1", T0 + 1_000))
        .await
        .unwrap();
    store
        .create_session(session("s2", "u2", T0 + 5_000))
        .await
        .unwrap();
    let (s, u) = store.session("s1", T0 + 999).await.unwrap().expect("live");
    assert_eq!(s, session("s1", "u1", T0 + 1_000));
    assert_eq!(u.email, "ann@example.com");
    assert_eq!(u.password_hash, "$argon2id$new");
    assert!(
        store.session("s1", T0 + 1_000).await.unwrap().is_none(),
        "a session is dead at its expiry"
    );
    assert!(store.session("nope", T0).await.unwrap().is_none());
    assert_eq!(store.delete_expired_sessions(T0 + 1_000).await.unwrap(), 1);
    assert!(store.session("s2", T0 + 10).await.unwrap().is_some());
    store.delete_session("s2").await.unwrap();
    assert!(store.session("s2", T0 + 10).await.unwrap().is_none());
    assert_eq!(store.delete_expired_sessions(T0 + 10_000).await.unwrap(), 0);

    // Signing a user out everywhere ends only their sessions.
    for (h, u) in [("a1", "u1"), ("a2", "u1"), ("b1", "u2")] {
        store
            .create_session(session(h, u, T0 + 50_000))
            .await
            .unwrap();
    }
    assert_eq!(store.delete_user_sessions("u1").await.unwrap(), 2);
    assert!(store.session("a1", T0 + 10).await.unwrap().is_none());
    assert!(store.session("b1", T0 + 10).await.unwrap().is_some());
    assert_eq!(store.delete_user_sessions("u1").await.unwrap(), 0);

    // Disabling ends the sessions too; enabling does not bring them back,
    // and the user can sign in again.
    store
        .create_session(session("b2", "u2", T0 + 50_000))
        .await
        .unwrap();
    assert!(store.set_disabled("u2", Some(T0 + 20)).await.unwrap());
    assert_eq!(
        store.user("u2").await.unwrap().unwrap().disabled_at_ms,
        Some(T0 + 20)
    );
    assert!(store.session("b1", T0 + 30).await.unwrap().is_none());
    assert!(store.set_disabled("u2", None).await.unwrap());
    assert_eq!(
        store.user("u2").await.unwrap().unwrap().disabled_at_ms,
        None
    );
    assert!(store.session("b2", T0 + 30).await.unwrap().is_none());
    store
        .create_session(session("b3", "u2", T0 + 50_000))
        .await
        .unwrap();
    assert!(store.session("b3", T0 + 30).await.unwrap().is_some());
    assert!(!store.set_disabled("nobody", Some(T0)).await.unwrap());
}
