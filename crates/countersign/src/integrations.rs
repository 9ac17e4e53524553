//! `countersign slack map|list` and the wiring of review integrations
//! (Slack interactivity, email approval links) into the HTTP server.
//!
//! A Slack identity says which Countersign actor a Slack member decides as
//! and which queues they may decide. `user create --slack-user` fills the
//! same table for inbox users; `slack map` also serves people who decide
//! only from Slack (the two will merge into the users table).

use std::sync::Arc;

use store_sqlite::Role;

use crate::DbArgs;
use crate::Failure;
use crate::commands::open_store;

fn list(s: &str) -> Vec<String> {
    let mut out: Vec<String> = s
        .split(',')
        .map(|q| q.trim().to_string())
        .filter(|q| !q.is_empty())
        .collect();
    out.sort();
    out.dedup();
    out
}

pub async fn slack_map(
    db: &DbArgs,
    slack_user: &str,
    actor: &str,
    queues: &str,
) -> Result<(), Failure> {
    let slack_user = slack_user.trim();
    if slack_user.is_empty() || !slack_user.chars().all(|c| c.is_ascii_alphanumeric()) {
        return Err(Failure::usage(format!(
            "--slack-user: {slack_user:?} is not a Slack member id such as U012AB3CD"
        )));
    }
    let actor = actor.trim();
    if actor.is_empty() || actor.len() > 320 || actor.chars().any(char::is_whitespace) {
        return Err(Failure::usage(format!(
            "--actor: {actor:?} must be a non-empty name without spaces (e.g. an email address)"
        )));
    }
    let queues = list(queues);
    let valid = |q: &str| {
        q == "*"
            || (q.len() <= 64
                && q.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-'))
    };
    if queues.is_empty() {
        return Err(Failure::usage(
            "--queues: give at least one queue (e.g. --queues operations,managers; `*` for all)",
        ));
    }
    if let Some(bad) = queues.iter().find(|q| !valid(q)) {
        return Err(Failure::usage(format!(
            "--queues: {bad:?} is not a queue name"
        )));
    }
    let store = open_store(db, Role::Admin).await?;
    store
        .map_slack_user(store::SlackIdentity {
            slack_user: slack_user.to_string(),
            actor: actor.to_string(),
            queues: queues.clone(),
            created_at_ms: engine::now_ms(),
        })
        .await
        .map_err(|e| Failure {
            code: 1,
            message: e.to_string(),
        })?;
    println!(
        "Slack {slack_user} decides as {actor} in {}",
        queues.join(",")
    );
    Ok(())
}

pub async fn slack_list(db: &DbArgs) -> Result<(), Failure> {
    let store = open_store(db, Role::Admin).await?;
    let all = store.list_slack_identities().await.map_err(|e| Failure {
        code: 1,
        message: e.to_string(),
    })?;
    println!("{:<14} {:<36} queues", "slack user", "actor");
    for i in all {
        println!(
            "{:<14} {:<36} {}",
            i.slack_user,
            i.actor,
            i.queues.join(",")
        );
    }
    Ok(())
}

/// The server's integration settings from the environment, with the Slack
/// message updater when a bot token is set.
pub fn server_settings(http: reqwest::Client) -> Result<server::integrations::Settings, Failure> {
    let env = |k: &str| std::env::var(k).ok();
    let mut s = server::integrations::Settings::from_env(&env);
    let connectors = connectors::Config::from_env(&env).map_err(Failure::usage)?;
    if let Some(slack) = connectors.slack {
        s.chat = Some(Arc::new(connectors::notify::SlackUpdater::new(
            http,
            slack,
            connectors.review,
        )));
    }
    Ok(s)
}
