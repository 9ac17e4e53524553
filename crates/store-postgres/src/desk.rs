//! Soft claims and task views (the [`store::Desk`] half of the store).

use async_trait::async_trait;
use store::{Claim, Desk, Result};

use crate::{PgStore, db};

fn claim_of(r: &tokio_postgres::Row) -> Claim {
    Claim {
        review_id: r.get(0),
        user_id: r.get(1),
        email: r.get(2),
        at_ms: r.get(3),
    }
}

#[async_trait]
impl Desk for PgStore {
    async fn claim_review(&self, c: Claim, stale_before_ms: i64, take_over: bool) -> Result<Claim> {
        let mut conn = self.pool.get().await?;
        let upsert = conn
            .stmt(
                "INSERT INTO review_claims (review_id, user_id, email, at) VALUES ($1, $2, $3, $4)
                 ON CONFLICT (review_id) DO UPDATE SET user_id = excluded.user_id, email = excluded.email, at = excluded.at
                 WHERE review_claims.user_id = excluded.user_id OR review_claims.at < $5 OR $6",
            )
            .await?;
        let read = conn
            .stmt("SELECT review_id, user_id, email, at FROM review_claims WHERE review_id = $1")
            .await?;
        self.pool.count(2);
        conn.client
            .execute(
                &upsert,
                &[
                    &c.review_id,
                    &c.user_id,
                    &c.email,
                    &c.at_ms,
                    &stale_before_ms,
                    &take_over,
                ],
            )
            .await
            .map_err(db)?;
        let row = conn
            .client
            .query_one(&read, &[&c.review_id])
            .await
            .map_err(db)?;
        Ok(claim_of(&row))
    }

    async fn review_claims(&self, review_ids: &[String]) -> Result<Vec<Claim>> {
        if review_ids.is_empty() {
            return Ok(Vec::new());
        }
        let mut conn = self.pool.get().await?;
        let st = conn
            .stmt(
                "SELECT review_id, user_id, email, at FROM review_claims WHERE review_id = ANY($1)",
            )
            .await?;
        self.pool.count(1);
        Ok(conn
            .client
            .query(&st, &[&review_ids])
            .await
            .map_err(db)?
            .iter()
            .map(claim_of)
            .collect())
    }

    async fn record_review_view(&self, review_id: &str, user_id: &str, at_ms: i64) -> Result<()> {
        let mut conn = self.pool.get().await?;
        let st = conn
            .stmt("INSERT INTO review_views (review_id, user_id, at) VALUES ($1, $2, $3)")
            .await?;
        self.pool.count(1);
        conn.client
            .execute(&st, &[&review_id, &user_id, &at_ms])
            .await
            .map_err(db)?;
        Ok(())
    }

    async fn review_views(&self, review_id: &str) -> Result<Vec<(String, i64)>> {
        let mut conn = self.pool.get().await?;
        let st = conn
            .stmt("SELECT user_id, at FROM review_views WHERE review_id = $1 ORDER BY at")
            .await?;
        self.pool.count(1);
        Ok(conn
            .client
            .query(&st, &[&review_id])
            .await
            .map_err(db)?
            .iter()
            .map(|r| (r.get(0), r.get(1)))
            .collect())
    }
}
