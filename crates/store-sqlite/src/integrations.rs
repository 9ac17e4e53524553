//! Review integrations as SQL (the [`store::Integrations`] half of the
//! store): Slack identities, single-use nonces, the notification journal
//! and settings.

use async_trait::async_trait;
use rusqlite::{OptionalExtension, Row, params};
use store::{
    DecideReview, Decided, Integrations, Notification, NotificationStatus, Once, Result,
    SlackIdentity,
};

use crate::SqliteStore;
use crate::ops::db;
use crate::reviews::decide;

/// Queue names never contain a comma (letters, digits, `_`, `-`).
fn queues_from(s: &str) -> Vec<String> {
    s.split(',')
        .filter(|q| !q.is_empty())
        .map(str::to_string)
        .collect()
}

fn identity_from(r: &Row<'_>) -> rusqlite::Result<SlackIdentity> {
    Ok(SlackIdentity {
        slack_user: r.get(0)?,
        actor: r.get(1)?,
        queues: queues_from(&r.get::<_, String>(2)?),
        created_at_ms: r.get(3)?,
    })
}

fn notification_from(r: &Row<'_>) -> rusqlite::Result<Notification> {
    Ok(Notification {
        key: r.get(0)?,
        review_id: r.get(1)?,
        channel: r.get(2)?,
        status: NotificationStatus::parse(&r.get::<_, String>(3)?),
        external_id: r.get(4)?,
        attempts: r.get::<_, i64>(5)? as u32,
        updated_at_ms: r.get(6)?,
    })
}

const NOTIFICATION_COLS: &str =
    "key, review_id, channel, status, external_id, attempts, updated_at";

#[async_trait]
impl Integrations for SqliteStore {
    async fn map_slack_user(&self, i: SlackIdentity) -> Result<()> {
        self.write(move |conn| {
            conn.execute(
                "INSERT INTO slack_identities (slack_user, actor, queues, created_at) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (slack_user) DO UPDATE SET actor = excluded.actor, queues = excluded.queues",
                params![i.slack_user, i.actor, i.queues.join(","), i.created_at_ms],
            )
            .map_err(db)?;
            Ok(())
        })
        .await
    }

    async fn slack_identity(&self, slack_user: &str) -> Result<Option<SlackIdentity>> {
        let u = slack_user.to_string();
        self.read(move |conn| {
            conn.query_row(
                "SELECT slack_user, actor, queues, created_at FROM slack_identities WHERE slack_user = ?1",
                [&u],
                identity_from,
            )
            .optional()
            .map_err(db)
        })
        .await
    }

    async fn list_slack_identities(&self) -> Result<Vec<SlackIdentity>> {
        self.read(|conn| {
            conn.prepare("SELECT slack_user, actor, queues, created_at FROM slack_identities ORDER BY slack_user")
                .map_err(db)?
                .query_map([], identity_from)
                .map_err(db)?
                .collect::<rusqlite::Result<_>>()
                .map_err(db)
        })
        .await
    }

    async fn decide_review_once(&self, nonce: &str, d: DecideReview) -> Result<Once> {
        let nonce = nonce.to_string();
        // The writer thread runs one request at a time, so the check and
        // the insert cannot interleave with another use of the nonce.
        self.write(move |conn| {
            let used = conn
                .query_row(
                    "SELECT 1 FROM used_nonces WHERE nonce = ?1",
                    [&nonce],
                    |_| Ok(()),
                )
                .optional()
                .map_err(db)?
                .is_some();
            if used {
                return Ok(Once::Used);
            }
            let r = decide(conn, &d)?;
            if matches!(r, Decided::Done(_)) {
                conn.execute(
                    "INSERT INTO used_nonces (nonce, review_id, used_at) VALUES (?1, ?2, ?3)",
                    params![nonce, d.review_id, d.at_ms],
                )
                .map_err(db)?;
            }
            Ok(Once::Decided(r))
        })
        .await
    }

    async fn nonce_used(&self, nonce: &str) -> Result<bool> {
        let nonce = nonce.to_string();
        self.read(move |conn| {
            Ok(conn
                .query_row(
                    "SELECT 1 FROM used_nonces WHERE nonce = ?1",
                    [&nonce],
                    |_| Ok(()),
                )
                .optional()
                .map_err(db)?
                .is_some())
        })
        .await
    }

    async fn remember_signature(
        &self,
        signature: &str,
        at_ms: i64,
        expires_at_ms: i64,
    ) -> Result<bool> {
        let signature = signature.to_string();
        self.write(move |conn| {
            conn.execute(
                "DELETE FROM seen_signatures WHERE expires_at <= ?1",
                [at_ms],
            )
            .map_err(db)?;
            let inserted = conn
                .execute(
                    "INSERT INTO seen_signatures (signature, expires_at) VALUES (?1, ?2)
                     ON CONFLICT (signature) DO NOTHING",
                    params![signature, expires_at_ms],
                )
                .map_err(db)?;
            Ok(inserted == 1)
        })
        .await
    }

    async fn start_notification(
        &self,
        key: &str,
        review_id: &str,
        channel: &str,
        at_ms: i64,
    ) -> Result<Option<Notification>> {
        let (key, review_id, channel) =
            (key.to_string(), review_id.to_string(), channel.to_string());
        self.write(move |conn| {
            let before = conn
                .query_row(
                    &format!("SELECT {NOTIFICATION_COLS} FROM notifications WHERE key = ?1"),
                    [&key],
                    notification_from,
                )
                .optional()
                .map_err(db)?;
            match &before {
                None => {
                    conn.execute(
                        "INSERT INTO notifications (key, review_id, channel, status, external_id, attempts, created_at, updated_at)
                         VALUES (?1, ?2, ?3, 'started', NULL, 1, ?4, ?4)",
                        params![key, review_id, channel, at_ms],
                    )
                    .map_err(db)?;
                }
                Some(n) if n.status == NotificationStatus::Started => {
                    conn.execute(
                        "UPDATE notifications SET attempts = attempts + 1, updated_at = ?2 WHERE key = ?1",
                        params![key, at_ms],
                    )
                    .map_err(db)?;
                }
                Some(_) => {}
            }
            Ok(before)
        })
        .await
    }

    async fn finish_notification(
        &self,
        key: &str,
        status: NotificationStatus,
        external_id: Option<&str>,
        at_ms: i64,
    ) -> Result<()> {
        let (key, ext) = (key.to_string(), external_id.map(str::to_string));
        self.write(move |conn| {
            conn.execute(
                "UPDATE notifications SET status = ?2, external_id = COALESCE(?3, external_id), updated_at = ?4 WHERE key = ?1",
                params![key, status.as_str(), ext, at_ms],
            )
            .map_err(db)?;
            Ok(())
        })
        .await
    }

    async fn notifications(&self, review_id: &str) -> Result<Vec<Notification>> {
        let id = review_id.to_string();
        self.read(move |conn| {
            conn.prepare(&format!(
                "SELECT {NOTIFICATION_COLS} FROM notifications WHERE review_id = ?1 ORDER BY key"
            ))
            .map_err(db)?
            .query_map([&id], notification_from)
            .map_err(db)?
            .collect::<rusqlite::Result<_>>()
            .map_err(db)
        })
        .await
    }

    async fn setting_or_insert(&self, name: &str, value: &str) -> Result<String> {
        let (name, value) = (name.to_string(), value.to_string());
        self.write(move |conn| {
            conn.execute(
                "INSERT INTO integration_settings (name, value) VALUES (?1, ?2) ON CONFLICT (name) DO NOTHING",
                params![name, value],
            )
            .map_err(db)?;
            conn.query_row(
                "SELECT value FROM integration_settings WHERE name = ?1",
                [&name],
                |r| r.get(0),
            )
            .map_err(db)
        })
        .await
    }
}
