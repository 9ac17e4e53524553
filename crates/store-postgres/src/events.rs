//! Events across runs (the [`store::EventsByKind`] half of the store): by
//! kind, newest first, and by time for exports through the
//! `events_by_time` index.

use async_trait::async_trait;
use store::{Event, EventRange, EventsByKind, Result, RunEvent};

use crate::{PgStore, db};

#[async_trait]
impl EventsByKind for PgStore {
    async fn events_by_kind(
        &self,
        kind: &str,
        before_ms: Option<i64>,
        limit: usize,
    ) -> Result<Vec<Event>> {
        let before = before_ms.unwrap_or(i64::MAX);
        let mut conn = self.pool.get().await?;
        let st = conn
            .stmt("SELECT run_id, seq, kind, actor, data, at, prev_hash, hash FROM events WHERE kind = $1 AND at < $2 ORDER BY at DESC, run_id DESC, seq DESC LIMIT $3")
            .await?;
        self.pool.count(1);
        Ok(conn
            .client
            .query(&st, &[&kind, &before, &(limit as i64)])
            .await
            .map_err(db)?
            .iter()
            .map(|r| Event {
                run_id: r.get(0),
                seq: r.get(1),
                kind: r.get(2),
                actor: r.get(3),
                data: r.get(4),
                at_ms: r.get(5),
                prev_hash: r.get(6),
                hash: r.get(7),
            })
            .collect())
    }

    async fn events_between(&self, range: &EventRange) -> Result<Vec<RunEvent>> {
        let (from, after_at, run_id, seq) = match &range.after {
            Some(c) => (
                range.since_ms.max(c.at_ms),
                c.at_ms,
                c.run_id.clone(),
                c.seq,
            ),
            None => (range.since_ms, i64::MIN, String::new(), i64::MIN),
        };
        let (queues, unreviewed) = match &range.queues {
            Some(q) => (Some(q.queues.clone()), q.unreviewed),
            None => (None, false),
        };
        let mut conn = self.pool.get().await?;
        // The row comparison and the ORDER BY use the same collation, so
        // a cursor continues exactly where its page ended.
        let st = conn
            .stmt(
                "SELECT e.run_id, e.seq, e.kind, e.actor, e.data, e.at, e.prev_hash, e.hash, r.workflow \
                 FROM events e JOIN runs r ON r.id = e.run_id \
                 WHERE e.at >= $1 AND e.at < $2 AND (e.at, e.run_id, e.seq) > ($3, $4, $5) \
                 AND ($6::text IS NULL OR r.workflow = $6) \
                 AND ($7::text[] IS NULL \
                      OR EXISTS (SELECT 1 FROM reviews t WHERE t.run_id = e.run_id AND t.queue = ANY($7)) \
                      OR ($8 AND NOT EXISTS (SELECT 1 FROM reviews t WHERE t.run_id = e.run_id))) \
                 ORDER BY e.at, e.run_id, e.seq LIMIT $9",
            )
            .await?;
        self.pool.count(1);
        Ok(conn
            .client
            .query(
                &st,
                &[
                    &from,
                    &range.until_ms,
                    &after_at,
                    &run_id,
                    &seq,
                    &range.workflow,
                    &queues,
                    &unreviewed,
                    &(range.limit as i64),
                ],
            )
            .await
            .map_err(db)?
            .iter()
            .map(|r| RunEvent {
                event: Event {
                    run_id: r.get(0),
                    seq: r.get(1),
                    kind: r.get(2),
                    actor: r.get(3),
                    data: r.get(4),
                    at_ms: r.get(5),
                    prev_hash: r.get(6),
                    hash: r.get(7),
                },
                workflow: r.get(8),
            })
            .collect())
    }
}
