//! Retention: summaries of pruned runs and the one transaction that keeps
//! a summary and deletes the run (see `Store::prune_run`).

use rusqlite::{Connection, Row, params};
use store::{PrunedRun, Result, RunStatus};

use crate::ops::db;

/// `'completed', 'cancelled', …`: the statuses retention may delete.
fn prunable_statuses() -> String {
    RunStatus::ALL
        .into_iter()
        .filter(|s| s.may_prune())
        .map(|s| format!("'{}'", s.as_str()))
        .collect::<Vec<_>>()
        .join(", ")
}

fn summary_from(r: &Row<'_>) -> rusqlite::Result<PrunedRun> {
    let status: String = r.get(3)?;
    Ok(PrunedRun {
        run_id: r.get(0)?,
        workflow: r.get(1)?,
        version: r.get(2)?,
        status: status.parse().unwrap_or(RunStatus::Completed),
        created_at_ms: r.get(4)?,
        updated_at_ms: r.get(5)?,
        seq: r.get(6)?,
        hash: r.get(7)?,
        pruned_at_ms: r.get(8)?,
        mac: r.get(9)?,
    })
}

pub(crate) fn prunable(
    conn: &Connection,
    before_ms: i64,
    after: &str,
    limit: usize,
) -> Result<Vec<PrunedRun>> {
    let sql = format!(
        "SELECT id, workflow, version, status, created_at, updated_at, event_seq, last_hash, 0, NULL \
         FROM runs WHERE updated_at < ?1 AND id > ?2 AND status IN ({}) ORDER BY id LIMIT ?3",
        prunable_statuses()
    );
    let mut stmt = conn.prepare_cached(&sql).map_err(db)?;
    let rows = stmt
        .query_map(params![before_ms, after, limit as i64], summary_from)
        .map_err(db)?;
    rows.collect::<rusqlite::Result<_>>().map_err(db)
}

pub(crate) fn prune(conn: &Connection, s: &PrunedRun) -> Result<bool> {
    let still = format!(
        "SELECT count(*) FROM runs WHERE id = ?1 AND event_seq = ?2 AND last_hash = ?3 AND status IN ({})",
        prunable_statuses()
    );
    let n: i64 = conn
        .query_row(&still, params![s.run_id, s.seq, s.hash], |r| r.get(0))
        .map_err(db)?;
    if n == 0 {
        return Ok(false);
    }
    conn.execute(
        "INSERT INTO pruned_runs (run_id, workflow, version, status, created_at, updated_at, seq, hash, pruned_at, mac) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
        params![
            s.run_id,
            s.workflow,
            s.version,
            s.status.as_str(),
            s.created_at_ms,
            s.updated_at_ms,
            s.seq,
            s.hash,
            s.pruned_at_ms,
            s.mac
        ],
    )
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
        conn.execute(
            &format!(
                "DELETE FROM {table} WHERE review_id IN (SELECT id FROM reviews WHERE run_id = ?1)"
            ),
            [&s.run_id],
        )
        .map_err(db)?;
    }
    for table in ["reviews", "steps", "work", "effects", "events"] {
        conn.execute(
            &format!("DELETE FROM {table} WHERE run_id = ?1"),
            [&s.run_id],
        )
        .map_err(db)?;
    }
    conn.execute("DELETE FROM runs WHERE id = ?1", [&s.run_id])
        .map_err(db)?;
    Ok(true)
}

pub(crate) fn pruned(conn: &Connection, after: &str, limit: usize) -> Result<Vec<PrunedRun>> {
    let mut stmt = conn
        .prepare_cached(
            "SELECT run_id, workflow, version, status, created_at, updated_at, seq, hash, pruned_at, mac \
             FROM pruned_runs WHERE run_id > ?1 ORDER BY run_id LIMIT ?2",
        )
        .map_err(db)?;
    let rows = stmt
        .query_map(params![after, limit as i64], summary_from)
        .map_err(db)?;
    rows.collect::<rusqlite::Result<_>>().map_err(db)
}
