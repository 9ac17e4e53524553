//! Review integrations (Slack approvals, email approval links): rows and the
//! [`Integrations`] half of the store boundary.
//!
//! - Slack identities map a Slack user id to the Countersign actor who
//!   decides as them and the queues they may decide (filled by
//!   `countersign slack map`; to be merged with the `Users` table).
//! - Single-use nonces make an approval link, or one signed Slack request,
//!   decide at most once: the nonce is written in the decision's own
//!   transaction, so "used" and "decided" cannot disagree.
//! - Notifications journal each review notification (one Slack message,
//!   one email) under an idempotency key, so a crash never sends twice.
//! - Settings hold server-generated secrets (the link signing secret when
//!   `COUNTERSIGN_LINK_SECRET` is not set); the first writer wins.

use async_trait::async_trait;

use crate::{DecideReview, Decided, Result};

/// A Slack user allowed to decide reviews from Slack.
#[derive(Debug, Clone, PartialEq)]
pub struct SlackIdentity {
    /// Slack's user id (`U…`).
    pub slack_user: String,
    /// The actor decisions are recorded as (e.g. an email address).
    pub actor: String,
    /// Review queues this user may decide.
    pub queues: Vec<String>,
    pub created_at_ms: i64,
}

/// Where a notification stands in its journal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotificationStatus {
    /// Sending started; a crash leaves it here and the next attempt
    /// reconciles before sending again.
    Started,
    /// Sent (or recorded in the outbox); never sent again.
    Completed,
    /// Refused permanently by the target; not retried.
    Failed,
}

impl NotificationStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            NotificationStatus::Started => "started",
            NotificationStatus::Completed => "completed",
            NotificationStatus::Failed => "failed",
        }
    }

    pub fn parse(s: &str) -> NotificationStatus {
        match s {
            "completed" => NotificationStatus::Completed,
            "failed" => NotificationStatus::Failed,
            _ => NotificationStatus::Started,
        }
    }
}

/// One journalled notification of a review task.
#[derive(Debug, Clone, PartialEq)]
pub struct Notification {
    /// Idempotency key, e.g. `run_id:step_id:notify-slack`.
    pub key: String,
    pub review_id: String,
    /// `slack` or `email`.
    pub channel: String,
    pub status: NotificationStatus,
    /// The target's id once sent (Slack: `channel:ts`; email: Message-ID).
    pub external_id: Option<String>,
    /// Attempts started so far.
    pub attempts: u32,
    pub updated_at_ms: i64,
}

/// Result of [`Integrations::decide_review_once`].
#[derive(Debug, Clone, PartialEq)]
pub enum Once {
    /// The nonce was used before: nothing was written.
    Used,
    /// The decision's result; the nonce is recorded only with `Done`.
    Decided(Decided),
}

/// Slack identities, single-use nonces, notification journal, settings:
/// the supertrait of [`crate::Store`].
#[async_trait]
pub trait Integrations: Send + Sync {
    /// Creates or replaces the mapping of `identity.slack_user`.
    async fn map_slack_user(&self, identity: SlackIdentity) -> Result<()>;
    async fn slack_identity(&self, slack_user: &str) -> Result<Option<SlackIdentity>>;
    async fn list_slack_identities(&self) -> Result<Vec<SlackIdentity>>;

    /// Applies `decision` and records `nonce` as used, in one transaction.
    /// A nonce seen before returns [`Once::Used`] and writes nothing; a
    /// decision that is not `Done` leaves the nonce unused.
    async fn decide_review_once(&self, nonce: &str, decision: DecideReview) -> Result<Once>;
    async fn nonce_used(&self, nonce: &str) -> Result<bool>;

    /// The replay cache of signed intake requests, shared by every node:
    /// remembers `signature` until `expires_at_ms` and answers `true` when
    /// it is new, `false` when it was seen and has not expired (a replay).
    /// Entries expired at `at_ms` are removed on the way.
    async fn remember_signature(
        &self,
        signature: &str,
        at_ms: i64,
        expires_at_ms: i64,
    ) -> Result<bool>;

    /// Journals the start of an attempt at notification `key`: inserts it
    /// as `Started` (attempts 1) or, when it exists and is still `Started`,
    /// counts one more attempt. Returns the row as it was *before* this
    /// call (`None`: first attempt), so the caller knows whether to
    /// reconcile (was `Started`) or do nothing (`Completed`/`Failed`).
    async fn start_notification(
        &self,
        key: &str,
        review_id: &str,
        channel: &str,
        at_ms: i64,
    ) -> Result<Option<Notification>>;
    async fn finish_notification(
        &self,
        key: &str,
        status: NotificationStatus,
        external_id: Option<&str>,
        at_ms: i64,
    ) -> Result<()>;
    /// The notifications of a task (for chat.update and the UI).
    async fn notifications(&self, review_id: &str) -> Result<Vec<Notification>>;

    /// The setting `name`, storing `value` first if it has none (the
    /// first writer wins; every caller gets the stored value).
    async fn setting_or_insert(&self, name: &str, value: &str) -> Result<String>;
}
