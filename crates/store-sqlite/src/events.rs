//! Events across runs (the [`store::EventsByKind`] half of the store): by
//! kind, newest first, and by time for exports through the
//! `events_by_time` index.

use async_trait::async_trait;
use rusqlite::params;
use store::{Event, EventRange, EventsByKind, Result, RunEvent};

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

    async fn events_between(&self, range: &EventRange) -> Result<Vec<RunEvent>> {
        // Start the index range at the cursor's time when it is later than
        // `since`, so a deep page seeks rather than scans.
        let (from, run_id, seq) = match &range.after {
            Some(c) => (range.since_ms.max(c.at_ms), c.run_id.clone(), c.seq),
            None => (range.since_ms, String::new(), i64::MIN),
        };
        let after_at = range.after.as_ref().map_or(i64::MIN, |c| c.at_ms);
        let until = range.until_ms;
        let workflow = range.workflow.clone();
        let (queues, unreviewed) = match &range.queues {
            Some(q) => (
                Some(serde_json::to_string(&q.queues).map_err(crate::backend)?),
                q.unreviewed,
            ),
            None => (None, false),
        };
        let limit = range.limit as i64;
        self.read(move |conn| {
            let mut stmt = conn
                .prepare_cached(
                    "SELECT e.run_id, e.seq, e.kind, e.actor, e.data, e.at, e.prev_hash, e.hash, r.workflow \
                     FROM events e INDEXED BY events_by_time JOIN runs r ON r.id = e.run_id \
                     WHERE e.at >= ?1 AND e.at < ?2 AND (e.at, e.run_id, e.seq) > (?3, ?4, ?5) \
                     AND (?6 IS NULL OR r.workflow = ?6) \
                     AND (?7 IS NULL \
                          OR EXISTS (SELECT 1 FROM reviews t WHERE t.run_id = e.run_id AND t.queue IN (SELECT value FROM json_each(?7))) \
                          OR (?8 AND NOT EXISTS (SELECT 1 FROM reviews t WHERE t.run_id = e.run_id))) \
                     ORDER BY e.at, e.run_id, e.seq LIMIT ?9",
                )
                .map_err(db)?;
            let rows = stmt
                .query_map(
                    params![from, until, after_at, run_id, seq, workflow, queues, unreviewed, limit],
                    |r| {
                        Ok(RunEvent {
                            event: Event {
                                run_id: r.get(0)?,
                                seq: r.get(1)?,
                                kind: r.get(2)?,
                                actor: r.get(3)?,
                                data: r.get(4)?,
                                at_ms: r.get(5)?,
                                prev_hash: r.get(6)?,
                                hash: r.get(7)?,
                            },
                            workflow: r.get(8)?,
                        })
                    },
                )
                .map_err(db)?;
            rows.collect::<rusqlite::Result<_>>().map_err(db)
        })
        .await
    }
}
