//! Events across runs by kind (the [`store::EventsByKind`] half of the
//! store): a scan of the append-only `events` table, newest first.

use async_trait::async_trait;
use rusqlite::params;
use store::{Event, EventsByKind, Result};

use crate::SqliteStore;
use crate::ops::db;

#[async_trait]
impl EventsByKind for SqliteStore {
    async fn events_by_kind(
        &self,
        kind: &str,
        before_ms: Option<i64>,
        limit: usize,
    ) -> Result<Vec<Event>> {
        let kind = kind.to_string();
        let before = before_ms.unwrap_or(i64::MAX);
        self.read(move |conn| {
            let mut stmt = conn
                .prepare_cached("SELECT run_id, seq, kind, actor, data, at, prev_hash, hash FROM events WHERE kind = ?1 AND at < ?2 ORDER BY at DESC, run_id DESC, seq DESC LIMIT ?3")
                .map_err(db)?;
            let rows = stmt
                .query_map(params![kind, before, limit as i64], |r| {
                    Ok(Event {
                        run_id: r.get(0)?,
                        seq: r.get(1)?,
                        kind: r.get(2)?,
                        actor: r.get(3)?,
                        data: r.get(4)?,
                        at_ms: r.get(5)?,
                        prev_hash: r.get(6)?,
                        hash: r.get(7)?,
                    })
                })
                .map_err(db)?;
            rows.collect::<rusqlite::Result<_>>().map_err(db)
        })
        .await
    }
}
