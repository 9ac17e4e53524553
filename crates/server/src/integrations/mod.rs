//! Review decisions from outside the inbox: Slack buttons
//! (`POST /integrations/slack/interactivity`) and email approval links
//! (`GET|POST /review/{token}`).
//!
//! Both decide through the engine with a single-use nonce
//! (`Engine::decide_review_once`), so a replayed Slack request or a reused
//! link writes nothing, and "used" is recorded in the decision's own
//! transaction. Secrets (the Slack signing secret, the link secret) live in
//! [`Settings`], whose `Debug` never shows them, and never reach a log
//! line, an event or a response.

pub mod links;
pub mod slack;

use std::sync::Arc;

use engine::notify::ChatUpdate;

/// Configuration of the integrations, read once at start-up.
#[derive(Clone)]
pub struct Settings {
    /// `SLACK_SIGNING_SECRET`; without it the Slack endpoint answers 404.
    pub slack_signing_secret: Option<String>,
    /// `COUNTERSIGN_LINK_SECRET`; without it the secret is generated and
    /// kept in the database (setting `link_secret`) on first use.
    pub link_secret: Option<String>,
    /// `COUNTERSIGN_PUBLIC_URL`: where the web inbox is (`/inbox/{id}`).
    pub public_url: String,
    /// `chat.update` after a Slack decision; `None`: not updated (no bot token).
    pub chat: Option<Arc<dyn ChatUpdate>>,
}

impl Default for Settings {
    fn default() -> Settings {
        Settings {
            slack_signing_secret: None,
            link_secret: None,
            public_url: "http://127.0.0.1:8080".into(),
            chat: None,
        }
    }
}

impl std::fmt::Debug for Settings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Settings")
            .field(
                "slack_signing_secret",
                &self.slack_signing_secret.as_ref().map(|_| "[redacted]"),
            )
            .field(
                "link_secret",
                &self.link_secret.as_ref().map(|_| "[redacted]"),
            )
            .field("public_url", &self.public_url)
            .field("chat", &self.chat.is_some())
            .finish()
    }
}

impl Settings {
    /// Reads `SLACK_SIGNING_SECRET`, `COUNTERSIGN_LINK_SECRET` and
    /// `COUNTERSIGN_PUBLIC_URL` (the chat updater is the caller's to wire).
    pub fn from_env(env: &dyn Fn(&str) -> Option<String>) -> Settings {
        let get = |k: &str| {
            env(k)
                .map(|v| v.trim().to_string())
                .filter(|v| !v.is_empty())
        };
        Settings {
            slack_signing_secret: get("SLACK_SIGNING_SECRET"),
            link_secret: get("COUNTERSIGN_LINK_SECRET"),
            public_url: get("COUNTERSIGN_PUBLIC_URL")
                .map(|u| u.trim_end_matches('/').to_string())
                .unwrap_or_else(|| Settings::default().public_url),
            chat: None,
        }
    }

    pub fn inbox_url(&self, review_id: &str) -> String {
        format!("{}/inbox/{review_id}", self.public_url)
    }
}
