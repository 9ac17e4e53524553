//! `countersign user create|list|disable|enable` and `session revoke`:
//! people who sign in to the review inbox.

use std::io::BufRead;

use store_sqlite::Role;

use crate::commands::open_store;
use crate::{DbArgs, Failure};

fn failed(e: impl std::fmt::Display) -> Failure {
    Failure {
        code: 1,
        message: e.to_string(),
    }
}

fn list_arg(s: Option<&str>) -> Vec<String> {
    let mut out: Vec<String> = s
        .unwrap_or("")
        .split(',')
        .map(|q| q.trim().to_string())
        .filter(|q| !q.is_empty())
        .collect();
    out.dedup();
    out
}

/// What `user create` was asked.
pub struct NewUser<'a> {
    pub email: &'a str,
    pub role: &'a str,
    pub queues: Option<&'a str>,
    pub slack_users: Option<&'a str>,
    pub password_stdin: bool,
}

pub async fn create(db: &DbArgs, u: NewUser<'_>) -> Result<(), Failure> {
    let email = u.email.trim().to_lowercase();
    if !email.contains('@') || email.len() > 320 || email.chars().any(char::is_whitespace) {
        return Err(Failure::usage(format!(
            "--email: {:?} is not an email address",
            u.email
        )));
    }
    let role = store::UserRole::parse(u.role).ok_or_else(|| {
        Failure::usage(format!(
            "--role: {:?} is not a role; expected admin, reviewer or viewer",
            u.role
        ))
    })?;
    let queues = list_arg(u.queues);
    if role == store::UserRole::Reviewer && queues.is_empty() {
        return Err(Failure::usage(
            "--queues: a reviewer needs at least one queue (e.g. --queues operations,managers)",
        ));
    }
    let slack_users = list_arg(u.slack_users);
    if let Some(bad) = slack_users
        .iter()
        .find(|s| !s.chars().all(|c| c.is_ascii_alphanumeric()))
    {
        return Err(Failure::usage(format!(
            "--slack-user: {bad:?} is not a Slack member id such as U012AB3CD"
        )));
    }
    let (password, generated) = if u.password_stdin {
        let mut line = String::new();
        std::io::stdin()
            .lock()
            .read_line(&mut line)
            .map_err(|e| Failure::usage(format!("--password-stdin: {e}")))?;
        let p = line.trim_end_matches(['\r', '\n']).to_string();
        if p.chars().count() < 12 {
            return Err(Failure::usage(
                "--password-stdin: use at least 12 characters",
            ));
        }
        (p, false)
    } else {
        (server::new_password(), true)
    };
    let hash = tokio::task::spawn_blocking(move || {
        server::hash_password(&password).map(|h| (h, password))
    })
    .await
    .map_err(failed)?
    .map_err(failed)?;
    let store = open_store(db, Role::Admin).await?;
    let now = engine::now_ms();
    let user = store::User {
        id: uuid::Uuid::now_v7().to_string(),
        email: email.clone(),
        role,
        queues: queues.clone(),
        password_hash: hash.0,
        created_at_ms: now,
        disabled_at_ms: None,
    };
    store.create_user(user.clone()).await.map_err(|e| match e {
        store::Error::Duplicate(_) => {
            Failure::usage(format!("--email: a user {email} already exists"))
        }
        e => failed(e),
    })?;
    for s in &slack_users {
        store
            .map_slack_user(store::SlackIdentity {
                slack_user: s.clone(),
                actor: user.actor(),
                queues: queues.clone(),
                created_at_ms: now,
            })
            .await
            .map_err(failed)?;
    }
    eprintln!(
        "user {email} ({}) role {}{}{}",
        user.id,
        role.as_str(),
        if queues.is_empty() {
            String::new()
        } else {
            format!(", queues {}", queues.join(","))
        },
        if slack_users.is_empty() {
            String::new()
        } else {
            format!(", Slack {}", slack_users.join(","))
        }
    );
    if generated {
        eprintln!("generated password — shown only now:");
        println!("{}", hash.1);
    }
    Ok(())
}

/// `COUNTERSIGN_SECURE_COOKIES`: `auto` (default: `Secure` when the request
/// came over https, as a TLS-terminating proxy says with
/// `X-Forwarded-Proto`), `always`, or `never`.
pub fn secure_cookies() -> Result<Option<bool>, Failure> {
    match std::env::var("COUNTERSIGN_SECURE_COOKIES").as_deref() {
        Err(_) | Ok("" | "auto") => Ok(None),
        Ok("always") => Ok(Some(true)),
        Ok("never") => Ok(Some(false)),
        Ok(other) => Err(Failure::usage(format!(
            "COUNTERSIGN_SECURE_COOKIES: {other:?} is not auto, always or never"
        ))),
    }
}

pub async fn list(db: &DbArgs) -> Result<(), Failure> {
    let store = open_store(db, Role::Admin).await?;
    let users = store.list_users().await.map_err(failed)?;
    println!(
        "{:<38} {:<32} {:<9} {:<24} status",
        "id", "email", "role", "queues"
    );
    for u in users {
        println!(
            "{:<38} {:<32} {:<9} {:<24} {}",
            u.id,
            u.email,
            u.role.as_str(),
            u.queues.join(","),
            if u.disabled_at_ms.is_some() {
                "disabled"
            } else {
                "active"
            }
        );
    }
    Ok(())
}

async fn user_by_email(store: &dyn store::Store, email: &str) -> Result<store::User, Failure> {
    store
        .user_by_email(email.trim())
        .await
        .map_err(failed)?
        .ok_or_else(|| Failure::usage(format!("--email: no user {:?}", email.trim())))
}

/// `user disable|enable --email E`.
pub async fn set_disabled(db: &DbArgs, email: &str, disable: bool) -> Result<(), Failure> {
    let store = open_store(db, Role::Admin).await?;
    let u = user_by_email(store.as_ref(), email).await?;
    let at = disable.then(engine::now_ms);
    store.set_disabled(&u.id, at).await.map_err(failed)?;
    if disable {
        println!("disabled {} (signed out everywhere)", u.email);
    } else {
        println!("enabled {}", u.email);
    }
    Ok(())
}

/// `session revoke --email E`.
pub async fn revoke_sessions(db: &DbArgs, email: &str) -> Result<(), Failure> {
    let store = open_store(db, Role::Admin).await?;
    let u = user_by_email(store.as_ref(), email).await?;
    let n = store.delete_user_sessions(&u.id).await.map_err(failed)?;
    println!("ended {n} session(s) of {}", u.email);
    Ok(())
}
