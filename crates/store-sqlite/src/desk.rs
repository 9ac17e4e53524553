//! Soft claims and task views (the [`store::Desk`] half of the store).

use async_trait::async_trait;
use rusqlite::params;
use store::{Claim, Desk, Result};

use crate::SqliteStore;
use crate::ops::db;

#[async_trait]
impl Desk for SqliteStore {
    async fn claim_review(&self, c: Claim, stale_before_ms: i64, take_over: bool) -> Result<Claim> {
        self.write(move |conn| {
            conn.execute(
                "INSERT INTO review_claims (review_id, user_id, email, at) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (review_id) DO UPDATE SET user_id = excluded.user_id, email = excluded.email, at = excluded.at
                 WHERE review_claims.user_id = excluded.user_id OR review_claims.at < ?5 OR ?6",
                params![c.review_id, c.user_id, c.email, c.at_ms, stale_before_ms, take_over],
            )
            .map_err(db)?;
            conn.query_row(
                "SELECT review_id, user_id, email, at FROM review_claims WHERE review_id = ?1",
                [&c.review_id],
                |r| {
                    Ok(Claim {
                        review_id: r.get(0)?,
                        user_id: r.get(1)?,
                        email: r.get(2)?,
                        at_ms: r.get(3)?,
                    })
                },
            )
            .map_err(db)
        })
        .await
    }

    async fn review_claims(&self, review_ids: &[String]) -> Result<Vec<Claim>> {
        if review_ids.is_empty() {
            return Ok(Vec::new());
        }
        let ids = serde_json::to_string(review_ids).unwrap_or_else(|_| "[]".into());
        self.read(move |conn| {
            let mut stmt = conn
                .prepare_cached(
                    "SELECT review_id, user_id, email, at FROM review_claims
                     WHERE review_id IN (SELECT value FROM json_each(?1))",
                )
                .map_err(db)?;
            let rows = stmt
                .query_map([ids], |r| {
                    Ok(Claim {
                        review_id: r.get(0)?,
                        user_id: r.get(1)?,
                        email: r.get(2)?,
                        at_ms: r.get(3)?,
                    })
                })
                .map_err(db)?;
            rows.collect::<rusqlite::Result<_>>().map_err(db)
        })
        .await
    }

    async fn record_review_view(&self, review_id: &str, user_id: &str, at_ms: i64) -> Result<()> {
        let (review_id, user_id) = (review_id.to_string(), user_id.to_string());
        self.write(move |conn| {
            conn.execute(
                "INSERT INTO review_views (review_id, user_id, at) VALUES (?1, ?2, ?3)",
                params![review_id, user_id, at_ms],
            )
            .map_err(db)?;
            Ok(())
        })
        .await
    }

    async fn review_views(&self, review_id: &str) -> Result<Vec<(String, i64)>> {
        let review_id = review_id.to_string();
        self.read(move |conn| {
            let mut stmt = conn
                .prepare_cached(
                    "SELECT user_id, at FROM review_views WHERE review_id = ?1 ORDER BY at, rowid",
                )
                .map_err(db)?;
            let rows = stmt
                .query_map([review_id], |r| Ok((r.get(0)?, r.get(1)?)))
                .map_err(db)?;
            rows.collect::<rusqlite::Result<_>>().map_err(db)
        })
        .await
    }
}
