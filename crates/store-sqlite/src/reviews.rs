//! Review tasks as SQL (the [`store::Reviews`] half of the store).

use async_trait::async_trait;
use rusqlite::{Connection, OptionalExtension, Row, params};
use store::{
    DecideReview, Decided, Error, NewReview, Result, Review, ReviewAct, ReviewChange, ReviewField,
    ReviewFilter, ReviewStatus, Reviews, RunStatus,
};

use crate::SqliteStore;
use crate::ops::{append_events, chain_head, db};

pub(crate) const COLS: &str = "id, run_id, step_index, step_id, workflow, queue, status, fields, min_approvals, submitter, deadline_at, on_deadline, notify, created_at, decided_at, decided_by, reason, rev";

pub(crate) fn review_from(r: &Row<'_>) -> rusqlite::Result<Review> {
    let status: String = r.get(6)?;
    Ok(Review {
        id: r.get(0)?,
        run_id: r.get(1)?,
        step_index: r.get::<_, i64>(2)? as usize,
        step_id: r.get(3)?,
        workflow: r.get(4)?,
        queue: r.get(5)?,
        status: ReviewStatus::parse(&status).unwrap_or(ReviewStatus::Pending),
        fields: r.get(7)?,
        min_approvals: r.get::<_, i64>(8)? as u32,
        submitter: r.get(9)?,
        deadline_at_ms: r.get(10)?,
        on_deadline: r.get(11)?,
        notify: r.get(12)?,
        created_at_ms: r.get(13)?,
        decided_at_ms: r.get(14)?,
        decided_by: r.get(15)?,
        reason: r.get(16)?,
        rev: r.get(17)?,
        acts: Vec::new(),
        results: Vec::new(),
    })
}

/// Loads the task `WHERE {clause}` with its acts and field results.
fn load(conn: &Connection, clause: &str, args: impl rusqlite::Params) -> Result<Option<Review>> {
    let Some(mut r) = conn
        .prepare_cached(&format!("SELECT {COLS} FROM reviews WHERE {clause}"))
        .map_err(db)?
        .query_row(args, review_from)
        .optional()
        .map_err(db)?
    else {
        return Ok(None);
    };
    fill(conn, &mut r)?;
    Ok(Some(r))
}

fn fill(conn: &Connection, r: &mut Review) -> Result<()> {
    r.acts = conn
        .prepare_cached("SELECT seq, actor, decision, edits, comment, reason, queue, at, user_id FROM review_acts WHERE review_id = ?1 ORDER BY seq")
        .map_err(db)?
        .query_map([&r.id], |x| {
            Ok(ReviewAct {
                seq: x.get(0)?,
                actor: x.get(1)?,
                decision: x.get(2)?,
                values: x.get(3)?,
                comment: x.get(4)?,
                reason: x.get(5)?,
                queue: x.get(6)?,
                at_ms: x.get(7)?,
                user_id: x.get(8)?,
            })
        })
        .map_err(db)?
        .collect::<rusqlite::Result<_>>()
        .map_err(db)?;
    r.results = conn
        .prepare_cached("SELECT field, draft, value, changed, decided_by, decided_at, comment FROM review_fields WHERE review_id = ?1 ORDER BY pos")
        .map_err(db)?
        .query_map([&r.id], |x| {
            Ok(ReviewField {
                field: x.get(0)?,
                draft: x.get(1)?,
                value: x.get(2)?,
                changed: x.get::<_, i64>(3)? != 0,
                decided_by: x.get(4)?,
                decided_at_ms: x.get(5)?,
                comment: x.get(6)?,
            })
        })
        .map_err(db)?
        .collect::<rusqlite::Result<_>>()
        .map_err(db)?;
    Ok(())
}

pub(crate) fn decide(conn: &Connection, d: &DecideReview) -> Result<Decided> {
    let Some(review) = load(conn, "id = ?1", [&d.review_id])? else {
        return Ok(Decided::NotFound);
    };
    if review.status != ReviewStatus::Pending {
        return Ok(Decided::Closed(review.status));
    }
    if review.rev != d.expect_rev {
        return Ok(Decided::Stale);
    }
    let (_, seq, hash, status, _) = chain_head(conn, &review.run_id)?.ok_or(Error::NotFound)?;
    let run_status: RunStatus = status.parse().unwrap_or(RunStatus::Failed);
    if run_status.is_terminal() {
        return Ok(Decided::RunEnded(run_status));
    }
    let a = &d.act;
    conn.prepare_cached("INSERT INTO review_acts (review_id, seq, actor, decision, edits, comment, reason, queue, at, user_id) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)")
        .map_err(db)?
        .execute(params![d.review_id, review.acts.len() as i64 + 1, a.actor, a.decision, a.values, a.comment, a.reason, a.queue, a.at_ms, a.user_id])
        .map_err(db)?;
    let (seq, hash) = append_events(conn, &review.run_id, seq, hash, &d.events)?;
    conn.prepare_cached("UPDATE runs SET event_seq = ?2, last_hash = ?3 WHERE id = ?1")
        .map_err(db)?
        .execute(params![review.run_id, seq, hash])
        .map_err(db)?;
    match &d.change {
        ReviewChange::Counted => {
            conn.execute("UPDATE reviews SET rev = rev + 1 WHERE id = ?1", [&d.review_id])
        }
        ReviewChange::Escalate {
            queue,
            deadline_at_ms,
        } => conn.execute(
            "UPDATE reviews SET rev = rev + 1, queue = ?2, deadline_at = ?3 WHERE id = ?1",
            params![d.review_id, queue, deadline_at_ms],
        ),
        ReviewChange::Approve { results } => {
            for (pos, f) in results.iter().enumerate() {
                conn.prepare_cached("INSERT INTO review_fields (review_id, field, pos, draft, value, changed, decided_by, decided_at, comment) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)")
                    .map_err(db)?
                    .execute(params![d.review_id, f.field, pos as i64, f.draft, f.value, f.changed as i64, f.decided_by, f.decided_at_ms, f.comment])
                    .map_err(db)?;
            }
            conn.execute(
                "UPDATE reviews SET rev = rev + 1, status = 'approved', decided_at = ?2, decided_by = ?3 WHERE id = ?1",
                params![d.review_id, d.at_ms, a.actor],
            )
            .map_err(db)?;
            conn.execute(
                "UPDATE runs SET status = 'queued', wait = NULL, rev = rev + 1, updated_at = ?2 WHERE id = ?1",
                params![review.run_id, d.at_ms],
            )
            .map_err(db)?;
            conn.execute(
                "INSERT INTO work (run_id, run_at, locked_by, lease_until) VALUES (?1, ?2, NULL, NULL)
                 ON CONFLICT (run_id) DO UPDATE SET run_at = excluded.run_at, locked_by = NULL, lease_until = NULL",
                params![review.run_id, d.at_ms],
            )
        }
        ReviewChange::Reject { .. } | ReviewChange::HandOff { .. } => {
            let (status, reason) = d.change.ends_run().expect("a change that ends the run");
            conn.execute(
                "UPDATE reviews SET rev = rev + 1, status = ?5, decided_at = ?2, decided_by = ?3, reason = ?4 WHERE id = ?1",
                params![d.review_id, d.at_ms, a.actor, reason, status],
            )
            .map_err(db)?;
            conn.execute(
                "UPDATE runs SET status = ?4, wait = NULL, outcome = ?4, error = ?3, rev = rev + 1, updated_at = ?2 WHERE id = ?1",
                params![review.run_id, d.at_ms, reason, status],
            )
            .map_err(db)?;
            conn.execute("DELETE FROM work WHERE run_id = ?1", [&review.run_id])
        }
    }
    .map_err(db)?;
    Ok(Decided::Done(Box::new(
        load(conn, "id = ?1", [&d.review_id])?.ok_or(Error::NotFound)?,
    )))
}

#[async_trait]
impl Reviews for SqliteStore {
    async fn create_review(&self, r: NewReview) -> Result<Review> {
        self.write(move |conn| {
            conn.execute(
                "INSERT INTO reviews (id, run_id, step_index, step_id, workflow, queue, status, fields, min_approvals, submitter, deadline_at, on_deadline, notify, created_at, rev)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, 'pending', ?7, ?8,
                         (SELECT actor FROM events WHERE run_id = ?2 ORDER BY seq LIMIT 1),
                         ?9, ?10, ?11, ?12, 1)
                 ON CONFLICT (run_id, step_index) DO NOTHING",
                params![r.id, r.run_id, r.step_index as i64, r.step_id, r.workflow, r.queue, r.fields, r.min_approvals, r.deadline_at_ms, r.on_deadline, r.notify, r.created_at_ms],
            )
            .map_err(db)?;
            load(conn, "run_id = ?1 AND step_index = ?2", params![r.run_id, r.step_index as i64])?
                .ok_or(Error::NotFound)
        })
        .await
    }

    async fn review(&self, id: &str) -> Result<Option<Review>> {
        let id = id.to_string();
        self.read(move |conn| load(conn, "id = ?1", [&id])).await
    }

    async fn review_for_step(&self, run_id: &str, step_index: usize) -> Result<Option<Review>> {
        let run_id = run_id.to_string();
        self.read(move |conn| {
            load(
                conn,
                "run_id = ?1 AND step_index = ?2",
                params![run_id, step_index as i64],
            )
        })
        .await
    }

    async fn pending_by_queue(&self) -> Result<Vec<store::QueueDepth>> {
        self.read(|conn| {
            let mut stmt = conn
                .prepare_cached("SELECT queue, count(*), min(created_at) FROM reviews WHERE status = 'pending' GROUP BY queue ORDER BY queue")
                .map_err(db)?;
            let rows = stmt
                .query_map([], |r| {
                    Ok(store::QueueDepth {
                        queue: r.get(0)?,
                        pending: r.get::<_, i64>(1)?.max(0) as u64,
                        oldest_created_at_ms: r.get(2)?,
                    })
                })
                .map_err(db)?;
            rows.collect::<rusqlite::Result<_>>().map_err(db)
        })
        .await
    }

    async fn calibration_reviews(
        &self,
        q: &store::CalibrationQuery,
    ) -> Result<Vec<store::CalibrationReview>> {
        let q = q.clone();
        self.read(move |conn| crate::calibration::read(conn, &q))
            .await
    }

    async fn list_reviews(&self, f: &ReviewFilter) -> Result<Vec<Review>> {
        let f = f.clone();
        self.read(move |conn| {
            let mut sql = format!("SELECT {COLS} FROM reviews WHERE 1 = 1");
            let mut args: Vec<String> = Vec::new();
            if let Some(s) = f.status {
                args.push(s.as_str().to_string());
                sql.push_str(&format!(" AND status = ?{}", args.len()));
            }
            if let Some(q) = &f.queue {
                args.push(q.clone());
                sql.push_str(&format!(" AND queue = ?{}", args.len()));
            }
            if let Some(qs) = &f.queues {
                let mut marks = Vec::new();
                for q in qs {
                    args.push(q.clone());
                    marks.push(format!("?{}", args.len()));
                }
                if marks.is_empty() {
                    return Ok(Vec::new());
                }
                sql.push_str(&format!(" AND queue IN ({})", marks.join(", ")));
            }
            if let Some(b) = &f.before {
                args.push(b.clone());
                sql.push_str(&format!(" AND id < ?{}", args.len()));
            }
            sql.push_str(&format!(
                " ORDER BY id DESC LIMIT {}",
                f.limit.clamp(1, 1000)
            ));
            let mut rows: Vec<Review> = conn
                .prepare(&sql)
                .map_err(db)?
                .query_map(rusqlite::params_from_iter(args.iter()), review_from)
                .map_err(db)?
                .collect::<rusqlite::Result<_>>()
                .map_err(db)?;
            for r in &mut rows {
                fill(conn, r)?;
            }
            Ok(rows)
        })
        .await
    }

    async fn decide_review(&self, d: DecideReview) -> Result<Decided> {
        self.write(move |conn| decide(conn, &d)).await
    }
}
