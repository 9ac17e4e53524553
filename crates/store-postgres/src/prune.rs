//! Retention: summaries of pruned runs and the one transaction that keeps
//! a summary and deletes the run (see `Store::prune_run`).

use store::{PrunedRun, Result, RunStatus};
use tokio_postgres::Row;

use crate::{PgStore, db};

/// The statuses retention may delete, as a text array parameter.
fn prunable_statuses() -> Vec<&'static str> {
    RunStatus::ALL
        .into_iter()
        .filter(|s| s.may_prune())
        .map(RunStatus::as_str)
        .collect()
}

fn summary_from(r: &Row) -> PrunedRun {
    let status: String = r.get(3);
    PrunedRun {
        run_id: r.get(0),
        workflow: r.get(1),
        version: r.get(2),
        status: status.parse().unwrap_or(RunStatus::Completed),
        created_at_ms: r.get(4),
        updated_at_ms: r.get(5),
        seq: r.get(6),
        hash: r.get(7),
        pruned_at_ms: r.get(8),
        mac: r.get(9),
    }
}

impl PgStore {
    pub(crate) async fn prunable(
        &self,
        before_ms: i64,
        after: &str,
        limit: usize,
    ) -> Result<Vec<PrunedRun>> {
        let conn = self.pool.get().await?;
        self.pool.count(1);
        let rows = conn
            .client
            .query(
                "SELECT id, workflow, version, status, created_at, updated_at, event_seq, last_hash, 0::BIGINT, NULL::TEXT \
                 FROM runs WHERE updated_at < $1 AND id > $2 AND status = ANY($3) ORDER BY id LIMIT $4",
                &[&before_ms, &after, &prunable_statuses(), &(limit as i64)],
            )
            .await
            .map_err(db)?;
        Ok(rows.iter().map(summary_from).collect())
    }

    pub(crate) async fn prune(&self, s: &PrunedRun) -> Result<bool> {
        let mut conn = self.pool.get().await?;
        self.pool.count(1);
        let tx = conn.client.transaction().await.map_err(db)?;
        let still = tx
            .query_opt(
                "SELECT id FROM runs WHERE id = $1 AND event_seq = $2 AND last_hash = $3 AND status = ANY($4) FOR UPDATE",
                &[&s.run_id, &s.seq, &s.hash, &prunable_statuses()],
            )
            .await
            .map_err(db)?;
        if still.is_none() {
            return Ok(false);
        }
        tx.execute(
            "INSERT INTO pruned_runs (run_id, workflow, version, status, created_at, updated_at, seq, hash, pruned_at, mac) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
            &[
                &s.run_id,
                &s.workflow,
                &s.version,
                &s.status.as_str(),
                &s.created_at_ms,
                &s.updated_at_ms,
                &s.seq,
                &s.hash,
                &s.pruned_at_ms,
                &s.mac,
            ],
        )
        .await
        .map_err(db)?;
        // Everything hanging off the run's review tasks, then the run's own.
        for table in [
            "review_acts",
            "review_fields",
            "review_claims",
            "review_views",
            "used_nonces",
            "notifications",
        ] {
            tx.execute(
                &format!(
                    "DELETE FROM {table} WHERE review_id IN (SELECT id FROM reviews WHERE run_id = $1)"
                ),
                &[&s.run_id],
            )
            .await
            .map_err(db)?;
        }
        for table in ["reviews", "steps", "work", "effects", "events"] {
            tx.execute(
                &format!("DELETE FROM {table} WHERE run_id = $1"),
                &[&s.run_id],
            )
            .await
            .map_err(db)?;
        }
        tx.execute("DELETE FROM runs WHERE id = $1", &[&s.run_id])
            .await
            .map_err(db)?;
        tx.commit().await.map_err(db)?;
        Ok(true)
    }

    pub(crate) async fn pruned(&self, after: &str, limit: usize) -> Result<Vec<PrunedRun>> {
        let conn = self.pool.get().await?;
        self.pool.count(1);
        let rows = conn
            .client
            .query(
                "SELECT run_id, workflow, version, status, created_at, updated_at, seq, hash, pruned_at, mac \
                 FROM pruned_runs WHERE run_id > $1 ORDER BY run_id LIMIT $2",
                &[&after, &(limit as i64)],
            )
            .await
            .map_err(db)?;
        Ok(rows.iter().map(summary_from).collect())
    }
}
