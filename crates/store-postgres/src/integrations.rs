//! Review integrations as SQL (the [`store::Integrations`] half of the
//! store): Slack identities, single-use nonces, the notification journal
//! and settings.
//!
//! A nonce is inserted first in the decision's transaction: a concurrent
//! use of the same nonce waits on the primary key and then finds it taken.

use async_trait::async_trait;
use store::{
    DecideReview, Decided, Integrations, Notification, NotificationStatus, Once, Result,
    SlackIdentity,
};
use tokio_postgres::Row;

use crate::{PgStore, db};

fn queues_from(s: &str) -> Vec<String> {
    s.split(',')
        .filter(|q| !q.is_empty())
        .map(str::to_string)
        .collect()
}

fn identity_from(r: &Row) -> SlackIdentity {
    SlackIdentity {
        slack_user: r.get(0),
        actor: r.get(1),
        queues: queues_from(&r.get::<_, String>(2)),
        created_at_ms: r.get(3),
    }
}

fn notification_from(r: &Row) -> Notification {
    Notification {
        key: r.get(0),
        review_id: r.get(1),
        channel: r.get(2),
        status: NotificationStatus::parse(&r.get::<_, String>(3)),
        external_id: r.get(4),
        attempts: r.get::<_, i64>(5) as u32,
        updated_at_ms: r.get(6),
    }
}

const NOTIFICATION_COLS: &str =
    "key, review_id, channel, status, external_id, attempts, updated_at";

#[async_trait]
impl Integrations for PgStore {
    async fn map_slack_user(&self, i: SlackIdentity) -> Result<()> {
        let conn = self.pool.get().await?;
        conn.client
            .execute(
                "INSERT INTO slack_identities (slack_user, actor, queues, created_at) VALUES ($1, $2, $3, $4)
                 ON CONFLICT (slack_user) DO UPDATE SET actor = excluded.actor, queues = excluded.queues",
                &[&i.slack_user, &i.actor, &i.queues.join(","), &i.created_at_ms],
            )
            .await
            .map_err(db)?;
        Ok(())
    }

    async fn slack_identity(&self, slack_user: &str) -> Result<Option<SlackIdentity>> {
        let conn = self.pool.get().await?;
        Ok(conn
            .client
            .query_opt(
                "SELECT slack_user, actor, queues, created_at FROM slack_identities WHERE slack_user = $1",
                &[&slack_user],
            )
            .await
            .map_err(db)?
            .as_ref()
            .map(identity_from))
    }

    async fn list_slack_identities(&self) -> Result<Vec<SlackIdentity>> {
        let conn = self.pool.get().await?;
        Ok(conn
            .client
            .query(
                "SELECT slack_user, actor, queues, created_at FROM slack_identities ORDER BY slack_user",
                &[],
            )
            .await
            .map_err(db)?
            .iter()
            .map(identity_from)
            .collect())
    }

    async fn decide_review_once(&self, nonce: &str, d: DecideReview) -> Result<Once> {
        let mut conn = self.pool.get().await?;
        let tx = conn.client.transaction().await.map_err(db)?;
        let inserted = tx
            .execute(
                "INSERT INTO used_nonces (nonce, review_id, used_at) VALUES ($1, $2, $3) ON CONFLICT (nonce) DO NOTHING",
                &[&nonce, &d.review_id, &d.at_ms],
            )
            .await
            .map_err(db)?;
        if inserted == 0 {
            return Ok(Once::Used);
        }
        let r = self.decide_in(&tx, &d).await?;
        if matches!(r, Decided::Done(_)) {
            tx.commit().await.map_err(db)?;
        }
        Ok(Once::Decided(r))
    }

    async fn nonce_used(&self, nonce: &str) -> Result<bool> {
        let conn = self.pool.get().await?;
        Ok(conn
            .client
            .query_opt("SELECT 1 FROM used_nonces WHERE nonce = $1", &[&nonce])
            .await
            .map_err(db)?
            .is_some())
    }

    async fn remember_signature(
        &self,
        signature: &str,
        at_ms: i64,
        expires_at_ms: i64,
    ) -> Result<bool> {
        let conn = self.pool.get().await?;
        conn.client
            .execute(
                "DELETE FROM seen_signatures WHERE expires_at <= $1",
                &[&at_ms],
            )
            .await
            .map_err(db)?;
        let inserted = conn
            .client
            .execute(
                "INSERT INTO seen_signatures (signature, expires_at) VALUES ($1, $2)
                 ON CONFLICT (signature) DO NOTHING",
                &[&signature, &expires_at_ms],
            )
            .await
            .map_err(db)?;
        Ok(inserted == 1)
    }

    async fn start_notification(
        &self,
        key: &str,
        review_id: &str,
        channel: &str,
        at_ms: i64,
    ) -> Result<Option<Notification>> {
        let mut conn = self.pool.get().await?;
        let tx = conn.client.transaction().await.map_err(db)?;
        tx.execute(
            "INSERT INTO notifications (key, review_id, channel, status, external_id, attempts, created_at, updated_at)
             VALUES ($1, $2, $3, 'started', NULL, 0, $4, $4) ON CONFLICT (key) DO NOTHING",
            &[&key, &review_id, &channel, &at_ms],
        )
        .await
        .map_err(db)?;
        let row = tx
            .query_one(
                &format!("SELECT {NOTIFICATION_COLS} FROM notifications WHERE key = $1 FOR UPDATE"),
                &[&key],
            )
            .await
            .map_err(db)?;
        let now = notification_from(&row);
        if now.status == NotificationStatus::Started {
            tx.execute(
                "UPDATE notifications SET attempts = attempts + 1, updated_at = $2 WHERE key = $1",
                &[&key, &at_ms],
            )
            .await
            .map_err(db)?;
        }
        tx.commit().await.map_err(db)?;
        // Attempts 0 means this call inserted the row: no earlier attempt.
        Ok((now.attempts > 0 || now.status != NotificationStatus::Started).then_some(now))
    }

    async fn finish_notification(
        &self,
        key: &str,
        status: NotificationStatus,
        external_id: Option<&str>,
        at_ms: i64,
    ) -> Result<()> {
        let conn = self.pool.get().await?;
        conn.client
            .execute(
                "UPDATE notifications SET status = $2, external_id = COALESCE($3, external_id), updated_at = $4 WHERE key = $1",
                &[&key, &status.as_str(), &external_id, &at_ms],
            )
            .await
            .map_err(db)?;
        Ok(())
    }

    async fn notifications(&self, review_id: &str) -> Result<Vec<Notification>> {
        let conn = self.pool.get().await?;
        Ok(conn
            .client
            .query(
                &format!(
                    "SELECT {NOTIFICATION_COLS} FROM notifications WHERE review_id = $1 ORDER BY key"
                ),
                &[&review_id],
            )
            .await
            .map_err(db)?
            .iter()
            .map(notification_from)
            .collect())
    }

    async fn setting_or_insert(&self, name: &str, value: &str) -> Result<String> {
        let conn = self.pool.get().await?;
        conn.client
            .execute(
                "INSERT INTO integration_settings (name, value) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING",
                &[&name, &value],
            )
            .await
            .map_err(db)?;
        Ok(conn
            .client
            .query_one(
                "SELECT value FROM integration_settings WHERE name = $1",
                &[&name],
            )
            .await
            .map_err(db)?
            .get(0))
    }
}
