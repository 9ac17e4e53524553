//! Review notifications: the hook a `review` step calls once its task
//! exists, so people hear about it in Slack or by email.
//!
//! The engine does not know Slack or SMTP: a [`Notifier`] (the connectors
//! crate builds one) carries notifications out. It journals each one under
//! an idempotency key in the store (`run_id:step_id:notify-slack`, …) so a
//! crash between sending and recording never sends twice, and answers the
//! audit events to add and whether to try again later.

use async_trait::async_trait;
use serde_json::Value as Json;
use store::{Review, Store};

/// One notification request: the task and where to send it.
#[derive(Debug, Clone)]
pub struct Notice<'a> {
    pub review: &'a Review,
    /// Channels asked for: `slack`, `email`.
    pub channels: &'a [String],
    /// The step's `slack_channel:`, if any.
    pub slack_channel: Option<&'a str>,
    /// The step's `notify_email:` addresses.
    pub emails: &'a [String],
    /// `run_id:step_id`; each channel appends `:notify-CHANNEL`.
    pub key: String,
    /// [`crate::Config::in_flight_margin_ms`]: a notification journalled
    /// as started is looked up only once its call timeout plus this has
    /// passed since that attempt (the in-flight rule).
    pub in_flight_margin_ms: u64,
}

/// What a notification attempt produced.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Notified {
    /// Audit events `(kind, data)` to record on the run (actor `system`).
    pub events: Vec<(String, Json)>,
    /// A channel failed in a way another attempt may fix: call again after
    /// this long (the review step re-runs on a timer; sent channels are not
    /// sent again).
    pub retry_after_ms: Option<u64>,
}

/// Carries out review notifications.
#[async_trait]
pub trait Notifier: Send + Sync {
    async fn notify(&self, store: &dyn Store, notice: &Notice<'_>) -> Notified;

    /// Whether `channel` (`slack`, `email`) has somewhere to send a task
    /// of `queue` when the step names no target itself (the deployment's
    /// per-queue settings). Checked at load: a `notify:` that could only
    /// ever fail is refused there, not recorded as a failure on every run.
    fn has_target(&self, channel: &str, queue: &str) -> bool {
        let _ = (channel, queue);
        true
    }
}

/// Why a chat message could not be updated.
#[derive(Debug, Clone, PartialEq)]
pub enum UpdateFailed {
    /// Another attempt may work (after `after_ms` when the target said so).
    Retry {
        after_ms: Option<u64>,
        message: String,
    },
    /// It will not work (the message is gone, the token is refused).
    Permanent(String),
}

/// Updates a posted review message once the task is decided (Slack's
/// `chat.update`), so the channel shows who decided.
#[async_trait]
pub trait ChatUpdate: Send + Sync {
    async fn show_decision(
        &self,
        review: &Review,
        channel: &str,
        ts: &str,
        decision: &str,
        by: &str,
    ) -> Result<(), UpdateFailed>;
}
