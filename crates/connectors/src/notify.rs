//! Review notifications (`review` steps with `notify: [slack, email]`): a
//! Block Kit message with Approve / Reject / Open buttons, and an email
//! with signed, single-use, expiring approve / reject / open links.
//!
//! Each notification is journalled in the store under
//! `run_id:step_id:notify-slack` (or `notify-email`) before it goes out and
//! marked completed after, like a step's effect:
//! - Slack: the message carries the key in its `metadata`; after a crash
//!   between the two writes the channel's history is searched for it and
//!   the message adopted instead of posting again (exactly once).
//! - Email: one message per reviewer (links signed for them), each under
//!   `run_id:step_id:notify-email:ADDRESS`. Gmail is searched by
//!   `rfc822msgid:` (exactly once); SMTP cannot be asked, so it is
//!   at-least-once under a stable `Message-ID`.
//! - Without `SLACK_BOT_TOKEN` (or any mail transport) the notification is
//!   recorded in the outbox (`outbox.recorded`) instead.
//!
//! Where to: the step's `slack_channel:` / `notify_email:`, else the
//! queue's entry in `COUNTERSIGN_SLACK_CHANNELS` / `COUNTERSIGN_REVIEW_EMAILS`
//! (`queue=value;queue=value`, `*` for every other queue).

use std::collections::BTreeMap;
use std::str::FromStr;
use std::sync::Arc;

use async_trait::async_trait;
use engine::links::{Action, Secret};
use engine::notify::{Notice, Notified, Notifier};
use lettre::message::Mailbox;
use serde_json::{Value as Json, json};
use store::{Notification, NotificationStatus, Review, Store};

use crate::effect;
use crate::email::{self, gmail, mime, smtp};
use crate::error::Error;
use crate::slack;

/// Action ids of the review message's buttons (unique within the message).
pub const APPROVE_ACTION: &str = "countersign_review_approve";
pub const REJECT_ACTION: &str = "countersign_review_reject";
pub const OPEN_ACTION: &str = "countersign_review_open";
/// How long an email link stays valid by default: 72 hours.
pub const DEFAULT_LINK_TTL_MS: i64 = 72 * 3_600_000;
const TIMEOUT_MS: u64 = 10_000;
/// Retry a transient notification failure after this long.
const RETRY_MS: u64 = 30_000;
const OUTBOX_FROM: &str = "Countersign outbox <outbox@countersign.invalid>";

/// Audit events added by review notifications.
pub mod kind {
    pub const REVIEW_NOTIFIED: &str = "review.notified";
    pub const REVIEW_NOTIFY_FAILED: &str = "review.notify_failed";
}

/// Where and how review notifications go, read once from the environment.
#[derive(Clone)]
pub struct Settings {
    /// `COUNTERSIGN_PUBLIC_URL`: the base of Open buttons and email links.
    pub public_url: String,
    /// `COUNTERSIGN_LINK_SECRET`; `None`: generated and kept in the database.
    pub link_secret: Option<String>,
    /// `COUNTERSIGN_LINK_TTL_HOURS` in milliseconds.
    pub link_ttl_ms: i64,
    /// `COUNTERSIGN_SLACK_CHANNELS`: queue (or `*`) → channel.
    pub slack_channels: BTreeMap<String, String>,
    /// `COUNTERSIGN_REVIEW_EMAILS`: queue (or `*`) → addresses.
    pub emails: BTreeMap<String, Vec<String>>,
}

impl std::fmt::Debug for Settings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Settings")
            .field("public_url", &self.public_url)
            .field(
                "link_secret",
                &self.link_secret.as_ref().map(|_| "[redacted]"),
            )
            .field("slack_channels", &self.slack_channels)
            .field("emails", &self.emails)
            .finish_non_exhaustive()
    }
}

impl Default for Settings {
    fn default() -> Settings {
        Settings {
            public_url: "http://127.0.0.1:8080".into(),
            link_secret: None,
            link_ttl_ms: DEFAULT_LINK_TTL_MS,
            slack_channels: BTreeMap::new(),
            emails: BTreeMap::new(),
        }
    }
}

/// Parses `queue=value;queue=value`.
fn queue_map(var: &str, text: &str) -> Result<BTreeMap<String, String>, String> {
    let mut out = BTreeMap::new();
    for entry in text.split(';').map(str::trim).filter(|e| !e.is_empty()) {
        let Some((q, v)) = entry.split_once('=') else {
            return Err(format!("{var}: {entry:?} is not `queue=value`"));
        };
        out.insert(q.trim().to_string(), v.trim().to_string());
    }
    Ok(out)
}

impl Settings {
    /// Reads `COUNTERSIGN_PUBLIC_URL`, `COUNTERSIGN_LINK_SECRET`,
    /// `COUNTERSIGN_LINK_TTL_HOURS`, `COUNTERSIGN_SLACK_CHANNELS` and
    /// `COUNTERSIGN_REVIEW_EMAILS`. Errors name the variable, never a value
    /// of the secret.
    pub fn from_env(env: &dyn Fn(&str) -> Option<String>) -> Result<Settings, String> {
        let get = |k: &str| {
            env(k)
                .map(|v| v.trim().to_string())
                .filter(|v| !v.is_empty())
        };
        let mut s = Settings::default();
        if let Some(u) = get("COUNTERSIGN_PUBLIC_URL") {
            if !(u.starts_with("http://") || u.starts_with("https://")) {
                return Err(format!(
                    "COUNTERSIGN_PUBLIC_URL: {u:?} must start with http:// or https://"
                ));
            }
            s.public_url = u.trim_end_matches('/').to_string();
        }
        s.link_secret = get("COUNTERSIGN_LINK_SECRET");
        if let Some(h) = get("COUNTERSIGN_LINK_TTL_HOURS") {
            let hours: i64 = h
                .parse()
                .ok()
                .filter(|h| (1..=24 * 90).contains(h))
                .ok_or("COUNTERSIGN_LINK_TTL_HOURS: a whole number of hours, 1 to 2160")?;
            s.link_ttl_ms = hours * 3_600_000;
        }
        if let Some(t) = get("COUNTERSIGN_SLACK_CHANNELS") {
            s.slack_channels = queue_map("COUNTERSIGN_SLACK_CHANNELS", &t)?;
        }
        if let Some(t) = get("COUNTERSIGN_REVIEW_EMAILS") {
            for (q, list) in queue_map("COUNTERSIGN_REVIEW_EMAILS", &t)? {
                mime::mailboxes(&list).map_err(|e| format!("COUNTERSIGN_REVIEW_EMAILS: {e}"))?;
                s.emails.insert(
                    q,
                    list.split(',')
                        .map(str::trim)
                        .filter(|a| !a.is_empty())
                        .map(str::to_string)
                        .collect(),
                );
            }
        }
        Ok(s)
    }

    fn channel_for(&self, queue: &str) -> Option<&str> {
        self.slack_channels
            .get(queue)
            .or_else(|| self.slack_channels.get("*"))
            .map(String::as_str)
    }

    fn emails_for(&self, queue: &str) -> &[String] {
        self.emails
            .get(queue)
            .or_else(|| self.emails.get("*"))
            .map_or(&[], Vec::as_slice)
    }

    /// The web inbox page of a task.
    pub fn inbox_url(&self, review_id: &str) -> String {
        format!("{}/inbox/{review_id}", self.public_url)
    }
}

enum Mail {
    Gmail(Arc<gmail::Gmail>, Mailbox),
    Smtp(smtp::Smtp),
    Outbox,
    Broken(String),
}

/// The [`Notifier`] the `review` kind is built with (see [`crate::register`]).
pub struct ReviewNotifier {
    settings: Settings,
    slack: Option<slack::Api>,
    mail: Mail,
}

impl ReviewNotifier {
    pub fn new(
        client: reqwest::Client,
        slack: Option<slack::Settings>,
        mail: email::Transport,
        settings: Settings,
    ) -> ReviewNotifier {
        let mail = match mail {
            email::Transport::Gmail(s) => match Mailbox::from_str(&s.sender) {
                Ok(from) => Mail::Gmail(Arc::new(gmail::Gmail::new(client.clone(), s)), from),
                Err(e) => Mail::Broken(format!("GMAIL_SENDER is not an email address: {e}")),
            },
            email::Transport::Smtp(s) => match smtp::Smtp::new(s) {
                Ok(t) => Mail::Smtp(t),
                Err(e) => Mail::Broken(e),
            },
            email::Transport::Outbox => Mail::Outbox,
        };
        ReviewNotifier {
            settings,
            slack: slack.map(|s| slack::Api::new(client, s)),
            mail,
        }
    }

    fn secrets(&self) -> Vec<String> {
        let mut v: Vec<String> = self.settings.link_secret.iter().cloned().collect();
        match &self.mail {
            Mail::Gmail(g, _) => v.extend(g.secrets()),
            Mail::Smtp(s) => v.extend(s.settings().secrets()),
            _ => {}
        }
        v
    }
}

/// Escapes text for Slack mrkdwn (`&`, `<`, `>`).
fn mrkdwn(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

fn cut(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_string()
    } else {
        let mut t: String = s.chars().take(max.saturating_sub(1)).collect();
        t.push('…');
        t
    }
}

/// `(name, draft as text)` of the task's reviewed fields.
fn drafts(r: &Review) -> Vec<(String, String)> {
    serde_json::from_str::<Vec<Json>>(&r.fields)
        .unwrap_or_default()
        .iter()
        .map(|f| {
            let name = f["name"].as_str().unwrap_or("?").to_string();
            let draft = match &f["draft"] {
                Json::String(s) => s.clone(),
                Json::Null => "—".into(),
                other => other.to_string(),
            };
            (name, draft)
        })
        .collect()
}

/// The review message: summary, key fields, Approve / Reject / Open.
/// Every button's `value` is the task id.
pub fn review_message(r: &Review, open_url: &str) -> (String, Json) {
    let text = format!(
        "Review needed: {} (queue {}), task {}",
        r.workflow, r.queue, r.id
    );
    let fields: Vec<Json> = drafts(r)
        .iter()
        .take(10)
        .map(|(n, d)| {
            json!({ "type": "mrkdwn", "text": cut(&format!("*{}*\n{}", mrkdwn(n), mrkdwn(d)), 2_000) })
        })
        .collect();
    let mut blocks = vec![json!({
        "type": "section",
        "block_id": "countersign_summary",
        "text": { "type": "mrkdwn", "text": cut(&format!(
            "*Review needed* · {} · queue `{}`\nStep `{}` of run `{}`",
            mrkdwn(&r.workflow), mrkdwn(&r.queue), mrkdwn(&r.step_id), mrkdwn(&r.run_id)
        ), 3_000) },
    })];
    if !fields.is_empty() {
        blocks
            .push(json!({ "type": "section", "block_id": "countersign_fields", "fields": fields }));
    }
    blocks.push(json!({
        "type": "actions",
        "block_id": "countersign_actions",
        "elements": [
            { "type": "button", "action_id": APPROVE_ACTION, "style": "primary", "value": r.id,
              "text": { "type": "plain_text", "text": "Approve" } },
            { "type": "button", "action_id": REJECT_ACTION, "style": "danger", "value": r.id,
              "text": { "type": "plain_text", "text": "Reject" },
              "confirm": {
                  "title": { "type": "plain_text", "text": "Reject this request?" },
                  "text": { "type": "plain_text", "text": "The run ends as rejected. To edit values instead, use Open." },
                  "confirm": { "type": "plain_text", "text": "Reject" },
                  "deny": { "type": "plain_text", "text": "Cancel" } } },
            { "type": "button", "action_id": OPEN_ACTION, "value": r.id, "url": cut(open_url, 3_000),
              "text": { "type": "plain_text", "text": "Open" } },
        ],
    }));
    (text, Json::Array(blocks))
}

/// The message after a decision: the summary and who decided, no buttons.
pub fn decided_message(r: &Review, decided: &str, by: &str, open_url: &str) -> (String, Json) {
    let text = format!("{decided} by {by}: {} (queue {})", r.workflow, r.queue);
    let mut blocks = vec![json!({
        "type": "section",
        "block_id": "countersign_summary",
        "text": { "type": "mrkdwn", "text": cut(&format!(
            "*{}* by {} · {} · queue `{}`\n<{}|Open task>",
            mrkdwn(decided), mrkdwn(by), mrkdwn(&r.workflow), mrkdwn(&r.queue), open_url
        ), 3_000) },
    })];
    let fields: Vec<Json> = drafts(r)
        .iter()
        .take(10)
        .map(|(n, d)| json!({ "type": "mrkdwn", "text": cut(&format!("*{}*\n{}", mrkdwn(n), mrkdwn(d)), 2_000) }))
        .collect();
    if !fields.is_empty() {
        blocks
            .push(json!({ "type": "section", "block_id": "countersign_fields", "fields": fields }));
    }
    (text, Json::Array(blocks))
}

fn event(kind: &str, data: Json) -> (String, Json) {
    (kind.to_string(), data)
}

/// The in-flight rule for notification `key`: while an earlier attempt
/// journalled as started may still land (less than `window_ms` since it
/// started), nobody looks whether it did; a retry is asked for once the
/// window has passed and `true` answered.
fn in_flight(
    journal: &[Notification],
    key: &str,
    window_ms: u64,
    now: i64,
    out: &mut Notified,
) -> bool {
    let Some(p) = journal
        .iter()
        .find(|p| p.key == key && p.status == NotificationStatus::Started)
    else {
        return false;
    };
    let until = p
        .updated_at_ms
        .saturating_add(i64::try_from(window_ms).unwrap_or(i64::MAX));
    if now >= until {
        return false;
    }
    let wait = u64::try_from(until - now).unwrap_or(RETRY_MS).max(1);
    tracing::info!(
        key,
        wait_ms = wait,
        "an earlier notification attempt may still land; looking after its window"
    );
    out.retry_after_ms = Some(out.retry_after_ms.map_or(wait, |w| w.min(wait)));
    true
}

impl ReviewNotifier {
    async fn slack(
        &self,
        store: &dyn Store,
        journal: &[Notification],
        n: &Notice<'_>,
        out: &mut Notified,
    ) {
        let r = n.review;
        let key = format!("{}:notify-slack", n.key);
        let channel = n
            .slack_channel
            .map(str::to_string)
            .or_else(|| self.settings.channel_for(&r.queue).map(str::to_string));
        let now = engine::now_ms();
        // One `chat.postMessage` after the attempt is journalled.
        let window = TIMEOUT_MS.saturating_add(n.in_flight_margin_ms);
        if in_flight(journal, &key, window, now, out) {
            return;
        }
        let before = match store.start_notification(&key, &r.id, "slack", now).await {
            Ok(b) => b,
            Err(e) => {
                tracing::warn!(error = %e, review = %r.id, "journalling a Slack notification failed");
                out.retry_after_ms = Some(RETRY_MS);
                return;
            }
        };
        if before
            .as_ref()
            .is_some_and(|b| b.status != NotificationStatus::Started)
        {
            return;
        }
        let Some(channel) = channel else {
            let _ = store
                .finish_notification(&key, NotificationStatus::Failed, None, now)
                .await;
            out.events.push(event(kind::REVIEW_NOTIFY_FAILED, json!({
                "review": r.id, "channel": "slack", "key": key,
                "error": "slack_channel: no channel for this review (set `slack_channel:` on the step or COUNTERSIGN_SLACK_CHANNELS)",
            })));
            return;
        };
        let (text, blocks) = review_message(r, &self.settings.inbox_url(&r.id));
        let Some(api) = &self.slack else {
            let _ = store
                .finish_notification(&key, NotificationStatus::Completed, Some("outbox"), now)
                .await;
            out.events.push(event(effect::kind::OUTBOX_RECORDED, json!({
                "key": key, "step": r.step_id, "connector": "slack", "action": "chat.postMessage",
                "to": channel, "payload": { "text": text, "blocks": blocks },
                "note": "OUTBOX — not sent: SLACK_BOT_TOKEN not set, so this review notification was recorded locally",
            })));
            return;
        };
        let secrets = self.secrets();
        // An earlier attempt started and never finished: look before posting.
        if before.is_some() {
            let found = match api.channel_id(&channel, TIMEOUT_MS).await {
                Ok(id) => api
                    .find_by_key(&id, &key, TIMEOUT_MS)
                    .await
                    .map(|m| m.map(|m| (id, m))),
                Err(e) => Err(e),
            };
            match found {
                Ok(Some((id, m))) => {
                    let ts = m["ts"].as_str().unwrap_or_default();
                    let ext = format!("{id}:{ts}");
                    let _ = store
                        .finish_notification(&key, NotificationStatus::Completed, Some(&ext), now)
                        .await;
                    out.events.push(event(kind::REVIEW_NOTIFIED, json!({
                        "review": r.id, "channel": "slack", "key": key, "to": id, "ts": ts, "reconciled": true,
                    })));
                    return;
                }
                Ok(None) => {}
                Err(e) => {
                    self.failed(store, &key, "slack", r, e, &secrets, out).await;
                    return;
                }
            }
            // The post goes out now: its window starts here, not before the lookup.
            if let Err(e) = store
                .start_notification(&key, &r.id, "slack", engine::now_ms())
                .await
            {
                tracing::warn!(error = %e, review = %r.id, "journalling a Slack notification failed");
                out.retry_after_ms = Some(RETRY_MS);
                return;
            }
        }
        let body = json!({
            "channel": channel,
            "text": text,
            "blocks": blocks,
            "unfurl_links": false,
            "metadata": { "event_type": slack::EVENT_TYPE, "event_payload": { "key": key } },
        });
        match api.post("chat.postMessage", &body, TIMEOUT_MS).await {
            Ok(resp) => {
                let id = resp["channel"].as_str().unwrap_or_default();
                let ts = resp["ts"].as_str().unwrap_or_default();
                let ext = format!("{id}:{ts}");
                let _ = store
                    .finish_notification(
                        &key,
                        NotificationStatus::Completed,
                        Some(&ext),
                        engine::now_ms(),
                    )
                    .await;
                out.events.push(event(
                    kind::REVIEW_NOTIFIED,
                    json!({
                        "review": r.id, "channel": "slack", "key": key, "to": id, "ts": ts,
                    }),
                ));
            }
            Err(e) => self.failed(store, &key, "slack", r, e, &secrets, out).await,
        }
    }

    #[allow(clippy::too_many_arguments)]
    async fn failed(
        &self,
        store: &dyn Store,
        key: &str,
        channel: &str,
        r: &Review,
        e: Error,
        secrets: &[String],
        out: &mut Notified,
    ) {
        let error = e.describe(secrets);
        if e.is_permanent() {
            let _ = store
                .finish_notification(key, NotificationStatus::Failed, None, engine::now_ms())
                .await;
            out.events.push(event(
                kind::REVIEW_NOTIFY_FAILED,
                json!({
                    "review": r.id, "channel": channel, "key": key, "error": error,
                }),
            ));
        } else {
            tracing::info!(review = %r.id, channel, error, "review notification will be retried");
            let wait = match e {
                Error::RateLimited {
                    retry_after_ms: Some(ms),
                    ..
                } => ms.max(1_000),
                _ => RETRY_MS,
            };
            out.retry_after_ms = Some(out.retry_after_ms.map_or(wait, |w| w.min(wait)));
        }
    }

    /// One email per recipient, each with links signed for them, each
    /// journalled under `run_id:step_id:notify-email:ADDRESS`.
    async fn email(
        &self,
        store: &dyn Store,
        journal: &[Notification],
        n: &Notice<'_>,
        out: &mut Notified,
    ) {
        let r = n.review;
        let listed: Vec<String> = if n.emails.is_empty() {
            self.settings.emails_for(&r.queue).to_vec()
        } else {
            n.emails.to_vec()
        };
        let base = format!("{}:notify-email", n.key);
        let fail = |why: String| {
            (
                kind::REVIEW_NOTIFY_FAILED.to_string(),
                json!({ "review": r.id, "channel": "email", "key": base, "error": why }),
            )
        };
        let to = match mime::mailboxes(&listed.join(",")) {
            Ok(t) if !t.is_empty() => t,
            Ok(_) => {
                if !self.failed_once(store, &base, r).await {
                    out.events.push(fail("notify_email: no address for this review (set `notify_email:` on the step or COUNTERSIGN_REVIEW_EMAILS)".into()));
                }
                return;
            }
            Err(e) => {
                if !self.failed_once(store, &base, r).await {
                    out.events.push(fail(format!("notify_email: {e}")));
                }
                return;
            }
        };
        let from = match &self.mail {
            Mail::Gmail(_, from) => from.clone(),
            Mail::Smtp(s) => s.settings().from.clone(),
            Mail::Outbox => Mailbox::from_str(OUTBOX_FROM).expect("a valid outbox address"),
            Mail::Broken(e) => {
                if !self.failed_once(store, &base, r).await {
                    out.events.push(fail(e.clone()));
                }
                return;
            }
        };
        let secret = match Secret::load(self.settings.link_secret.as_deref(), store).await {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "loading the link secret failed");
                out.retry_after_ms = Some(RETRY_MS);
                return;
            }
        };
        // Gmail: a token and the send, each tried twice when the token is
        // refused; SMTP: one timed send.
        let calls = if matches!(self.mail, Mail::Gmail(..)) {
            4
        } else {
            1
        };
        let window = TIMEOUT_MS
            .saturating_mul(calls)
            .saturating_add(n.in_flight_margin_ms);
        for rcpt in to {
            let key = format!("{base}:{}", rcpt.email);
            if in_flight(journal, &key, window, engine::now_ms(), out) {
                continue;
            }
            self.email_one(store, r, &base, &from, rcpt, &secret, out)
                .await;
        }
    }

    /// Journals a configuration failure once; true if it was already.
    async fn failed_once(&self, store: &dyn Store, key: &str, r: &Review) -> bool {
        let now = engine::now_ms();
        match store.start_notification(key, &r.id, "email", now).await {
            Ok(Some(b)) if b.status != NotificationStatus::Started => true,
            _ => {
                let _ = store
                    .finish_notification(key, NotificationStatus::Failed, None, now)
                    .await;
                false
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    async fn email_one(
        &self,
        store: &dyn Store,
        r: &Review,
        base: &str,
        from: &Mailbox,
        rcpt: Mailbox,
        secret: &Secret,
        out: &mut Notified,
    ) {
        let key = format!("{base}:{}", rcpt.email);
        let now = engine::now_ms();
        let before = match store.start_notification(&key, &r.id, "email", now).await {
            Ok(b) => b,
            Err(e) => {
                tracing::warn!(error = %e, review = %r.id, "journalling an email notification failed");
                out.retry_after_ms = Some(RETRY_MS);
                return;
            }
        };
        if before
            .as_ref()
            .is_some_and(|b| b.status != NotificationStatus::Started)
        {
            return;
        }
        let secrets = self.secrets();
        let actor = rcpt.email.to_string();
        let expires = now + self.settings.link_ttl_ms;
        let link = |a: Action| {
            format!(
                "{}/review/{}",
                self.settings.public_url,
                secret.sign(&r.id, a, expires, &actor, &r.queue)
            )
        };
        let (approve, reject, open) = (
            link(Action::Approve),
            link(Action::Reject),
            link(Action::Open),
        );
        let fields = drafts(r);
        let mut text = format!(
            "A review is waiting for you: {} (queue {}).\n\n",
            r.workflow, r.queue
        );
        for (name, d) in &fields {
            text.push_str(&format!("{name}: {}\n", cut(d, 500)));
        }
        text.push_str(&format!(
            "\nApprove: {approve}\nReject: {reject}\nOpen (to edit): {open}\n\nEach link asks you to confirm, works once, and expires in {} hours. The links act as you: do not forward this email.\n",
            self.settings.link_ttl_ms / 3_600_000
        ));
        let esc = |s: &str| {
            s.replace('&', "&amp;")
                .replace('<', "&lt;")
                .replace('>', "&gt;")
                .replace('"', "&quot;")
        };
        let mut html = format!(
            "<p>A review is waiting for you: <b>{}</b> (queue {}).</p><table>",
            esc(&r.workflow),
            esc(&r.queue)
        );
        for (name, d) in &fields {
            html.push_str(&format!(
                "<tr><th align=\"left\">{}</th><td>{}</td></tr>",
                esc(name),
                esc(&cut(d, 500))
            ));
        }
        html.push_str(&format!(
            "</table><p><a href=\"{}\">Approve</a> · <a href=\"{}\">Reject</a> · <a href=\"{}\">Open to edit</a></p><p>Each link asks you to confirm, works once, and expires. The links act as you: do not forward this email.</p>",
            esc(&approve),
            esc(&reject),
            esc(&open)
        ));
        let mail = mime::Email {
            message_id: mime::message_id(&key, from),
            from: from.clone(),
            to: vec![rcpt],
            cc: Vec::new(),
            reply_to: None,
            subject: format!("Review needed: {} ({})", r.workflow, r.queue),
            text: Some(text),
            html: Some(html),
        };
        let sent: Result<String, Error> = match &self.mail {
            Mail::Outbox | Mail::Broken(_) => {
                let _ = store
                    .finish_notification(&key, NotificationStatus::Completed, Some("outbox"), now)
                    .await;
                // The links are credentials: the outbox shows where they go, not them.
                let mut preview = mail.preview();
                preview["body"] = json!("[review links withheld from the outbox]");
                preview["html"] = Json::Null;
                out.events.push(event(effect::kind::OUTBOX_RECORDED, json!({
                    "key": key, "step": r.step_id, "connector": "email", "action": "send",
                    "to": preview["to"], "payload": preview,
                    "note": "OUTBOX — not sent: no mail transport (GMAIL_* or SMTP_URL) set, so this review notification was recorded locally",
                })));
                return;
            }
            Mail::Gmail(g, _) => {
                let found = if before.is_some() {
                    match g.find(&mail.message_id, false, TIMEOUT_MS).await {
                        // The send goes out now: its window starts here.
                        Ok(None) => store
                            .start_notification(&key, &r.id, "email", engine::now_ms())
                            .await
                            .map(|_| None)
                            .map_err(|e| Error::Transient(format!("journalling the email: {e}"))),
                        other => other,
                    }
                } else {
                    Ok(None)
                };
                match found {
                    Ok(Some(s)) => Ok(s.id),
                    Ok(None) => match mail.build() {
                        Ok(m) => g
                            .send(&m.formatted(), false, TIMEOUT_MS)
                            .await
                            .map(|s| s.id),
                        Err(e) => Err(Error::permanent("email", e)),
                    },
                    Err(e) => Err(e),
                }
            }
            Mail::Smtp(s) => match mail.build() {
                Ok(m) => s.send(m, TIMEOUT_MS).await.map(|_| mail.message_id.clone()),
                Err(e) => Err(Error::permanent("email", e)),
            },
        };
        match sent {
            Ok(id) => {
                let _ = store
                    .finish_notification(
                        &key,
                        NotificationStatus::Completed,
                        Some(&id),
                        engine::now_ms(),
                    )
                    .await;
                out.events.push(event(
                    kind::REVIEW_NOTIFIED,
                    json!({
                        "review": r.id, "channel": "email", "key": key,
                        "to": mail.to.iter().map(ToString::to_string).collect::<Vec<_>>(),
                        "message_id": mail.message_id,
                    }),
                ));
            }
            Err(e) => self.failed(store, &key, "email", r, e, &secrets, out).await,
        }
    }
}

#[async_trait]
impl Notifier for ReviewNotifier {
    fn has_target(&self, channel: &str, queue: &str) -> bool {
        match channel {
            "slack" => self.settings.channel_for(queue).is_some(),
            "email" => !self.settings.emails_for(queue).is_empty(),
            _ => true,
        }
    }

    async fn notify(&self, store: &dyn Store, n: &Notice<'_>) -> Notified {
        let mut out = Notified::default();
        // Read once, without counting an attempt: the in-flight rule needs
        // when each unfinished one started.
        let journal = match store.notifications(&n.review.id).await {
            Ok(j) => j,
            Err(e) => {
                tracing::warn!(error = %e, review = %n.review.id, "reading the notification journal failed");
                out.retry_after_ms = Some(RETRY_MS);
                return out;
            }
        };
        for c in n.channels {
            match c.as_str() {
                "slack" => self.slack(store, &journal, n, &mut out).await,
                "email" => self.email(store, &journal, n, &mut out).await,
                _ => {}
            }
        }
        out
    }
}

/// `chat.update` of a review message after its decision (the server calls
/// it, best-effort, once the decision is committed).
pub struct SlackUpdater {
    api: slack::Api,
    settings: Settings,
}

impl SlackUpdater {
    pub fn new(
        client: reqwest::Client,
        slack: slack::Settings,
        settings: Settings,
    ) -> SlackUpdater {
        SlackUpdater {
            api: slack::Api::new(client, slack),
            settings,
        }
    }
}

#[async_trait]
impl engine::notify::ChatUpdate for SlackUpdater {
    async fn show_decision(
        &self,
        review: &Review,
        channel: &str,
        ts: &str,
        decision: &str,
        by: &str,
    ) -> Result<(), engine::notify::UpdateFailed> {
        use engine::notify::UpdateFailed;
        let (text, blocks) =
            decided_message(review, decision, by, &self.settings.inbox_url(&review.id));
        let body = json!({ "channel": channel, "ts": ts, "text": text, "blocks": blocks });
        match self.api.post("chat.update", &body, TIMEOUT_MS).await {
            Ok(_) => Ok(()),
            Err(Error::RateLimited {
                retry_after_ms,
                message,
            }) => Err(UpdateFailed::Retry {
                after_ms: retry_after_ms,
                message,
            }),
            Err(Error::Transient(m) | Error::NoAnswer(m)) => Err(UpdateFailed::Retry {
                after_ms: None,
                message: m,
            }),
            Err(e) => Err(UpdateFailed::Permanent(e.describe(&[]))),
        }
    }
}
