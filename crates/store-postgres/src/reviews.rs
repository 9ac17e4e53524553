//! Review tasks as SQL (the [`store::Reviews`] half of the store).
//!
//! A decision takes the global lock order: the run's `work` row, then its
//! `runs` row, then the task row; the task is re-read under its lock.

use async_trait::async_trait;
use domain::event::{Hashed, chain_hash};
use store::{
    DecideReview, Decided, Error, NewReview, Result, Review, ReviewAct, ReviewChange, ReviewField,
    ReviewFilter, ReviewStatus, Reviews, RunStatus,
};
use tokio_postgres::types::ToSql;
use tokio_postgres::{GenericClient, Row};

use crate::{CHANNEL, PgStore, db};

const COLS: &str = "id, run_id, step_index, step_id, workflow, queue, status, fields, min_approvals, submitter, deadline_at, on_deadline, notify, created_at, decided_at, decided_by, reason, rev";

pub(crate) fn review_from(r: &Row) -> Review {
    let status: String = r.get(6);
    Review {
        id: r.get(0),
        run_id: r.get(1),
        step_index: r.get::<_, i64>(2) as usize,
        step_id: r.get(3),
        workflow: r.get(4),
        queue: r.get(5),
        status: ReviewStatus::parse(&status).unwrap_or(ReviewStatus::Pending),
        fields: r.get(7),
        min_approvals: r.get::<_, i64>(8) as u32,
        submitter: r.get(9),
        deadline_at_ms: r.get(10),
        on_deadline: r.get(11),
        notify: r.get(12),
        created_at_ms: r.get(13),
        decided_at_ms: r.get(14),
        decided_by: r.get(15),
        reason: r.get(16),
        rev: r.get(17),
        acts: Vec::new(),
        results: Vec::new(),
    }
}

/// Each review's decisions and field results, in two pipelined statements
/// however many reviews (one round trip's wait, not two per review).
pub(crate) async fn fill(c: &impl GenericClient, mut reviews: Vec<&mut Review>) -> Result<()> {
    if reviews.is_empty() {
        return Ok(());
    }
    let ids: Vec<String> = reviews.iter().map(|r| r.id.clone()).collect();
    let at: std::collections::HashMap<&str, usize> = ids
        .iter()
        .enumerate()
        .map(|(i, id)| (id.as_str(), i))
        .collect();
    let p: [&(dyn ToSql + Sync); 1] = [&ids];
    let (acts, fields) = tokio::try_join!(
        c.query("SELECT review_id, seq, actor, decision, edits, comment, reason, queue, at, user_id FROM review_acts WHERE review_id = ANY($1) ORDER BY review_id, seq", &p),
        c.query("SELECT review_id, field, draft, value, changed, decided_by, decided_at, comment FROM review_fields WHERE review_id = ANY($1) ORDER BY review_id, pos", &p),
    )
    .map_err(db)?;
    for x in &acts {
        let Some(&i) = at.get(x.get::<_, &str>(0)) else {
            continue;
        };
        reviews[i].acts.push(ReviewAct {
            seq: x.get(1),
            actor: x.get(2),
            decision: x.get(3),
            values: x.get(4),
            comment: x.get(5),
            reason: x.get(6),
            queue: x.get(7),
            at_ms: x.get(8),
            user_id: x.get(9),
        });
    }
    for x in &fields {
        let Some(&i) = at.get(x.get::<_, &str>(0)) else {
            continue;
        };
        reviews[i].results.push(ReviewField {
            field: x.get(1),
            draft: x.get(2),
            value: x.get(3),
            changed: x.get(4),
            decided_by: x.get(5),
            decided_at_ms: x.get(6),
            comment: x.get(7),
        });
    }
    Ok(())
}

async fn load(
    c: &impl GenericClient,
    clause: &str,
    args: &[&(dyn ToSql + Sync)],
) -> Result<Option<Review>> {
    let Some(row) = c
        .query_opt(&format!("SELECT {COLS} FROM reviews WHERE {clause}"), args)
        .await
        .map_err(db)?
    else {
        return Ok(None);
    };
    let mut r = review_from(&row);
    fill(c, vec![&mut r]).await?;
    Ok(Some(r))
}

impl PgStore {
    pub(crate) async fn decide_in(
        &self,
        tx: &tokio_postgres::Transaction<'_>,
        d: &DecideReview,
    ) -> Result<Decided> {
        let Some(run_id) = tx
            .query_opt("SELECT run_id FROM reviews WHERE id = $1", &[&d.review_id])
            .await
            .map_err(db)?
            .map(|r| r.get::<_, String>(0))
        else {
            return Ok(Decided::NotFound);
        };
        tx.query(
            "SELECT 1 FROM work WHERE run_id = $1 FOR UPDATE",
            &[&run_id],
        )
        .await
        .map_err(db)?;
        let Some(run) = tx
            .query_opt(
                "SELECT status, event_seq, last_hash FROM runs WHERE id = $1 FOR UPDATE",
                &[&run_id],
            )
            .await
            .map_err(db)?
        else {
            return Err(Error::NotFound);
        };
        let review = load(tx, "id = $1 FOR UPDATE", &[&d.review_id])
            .await?
            .ok_or(Error::NotFound)?;
        self.pool.count(5);
        if review.status != ReviewStatus::Pending {
            return Ok(Decided::Closed(review.status));
        }
        if review.rev != d.expect_rev {
            return Ok(Decided::Stale);
        }
        let run_status: RunStatus = run.get::<_, String>(0).parse().unwrap_or(RunStatus::Failed);
        if run_status.is_terminal() {
            return Ok(Decided::RunEnded(run_status));
        }
        let (mut seq, mut prev): (i64, String) = (run.get(1), run.get(2));
        let a = &d.act;
        tx.execute(
            "INSERT INTO review_acts (review_id, seq, actor, decision, edits, comment, reason, queue, at, user_id) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
            &[&d.review_id, &(review.acts.len() as i64 + 1), &a.actor, &a.decision, &a.values, &a.comment, &a.reason, &a.queue, &a.at_ms, &a.user_id],
        )
        .await
        .map_err(db)?;
        for e in &d.events {
            seq += 1;
            let hash = chain_hash(
                &prev,
                Hashed {
                    run_id: &run_id,
                    seq,
                    kind: &e.kind,
                    actor: &e.actor,
                    data: &e.data,
                    at_ms: e.at_ms,
                },
            );
            tx.execute(
                "INSERT INTO events (run_id, seq, kind, actor, data, at, prev_hash, hash) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
                &[&run_id, &seq, &e.kind, &e.actor, &e.data, &e.at_ms, &prev, &hash],
            )
            .await
            .map_err(db)?;
            prev = hash;
        }
        tx.execute(
            "UPDATE runs SET event_seq = $2, last_hash = $3 WHERE id = $1",
            &[&run_id, &seq, &prev],
        )
        .await
        .map_err(db)?;
        match &d.change {
            ReviewChange::Counted => {
                tx.execute(
                    "UPDATE reviews SET rev = rev + 1 WHERE id = $1",
                    &[&d.review_id],
                )
                .await
                .map_err(db)?;
            }
            ReviewChange::Escalate {
                queue,
                deadline_at_ms,
            } => {
                tx.execute(
                    "UPDATE reviews SET rev = rev + 1, queue = $2, deadline_at = $3 WHERE id = $1",
                    &[&d.review_id, queue, deadline_at_ms],
                )
                .await
                .map_err(db)?;
            }
            ReviewChange::Approve { results } => {
                for (pos, f) in results.iter().enumerate() {
                    tx.execute(
                        "INSERT INTO review_fields (review_id, field, pos, draft, value, changed, decided_by, decided_at, comment) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
                        &[&d.review_id, &f.field, &(pos as i64), &f.draft, &f.value, &f.changed, &f.decided_by, &f.decided_at_ms, &f.comment],
                    )
                    .await
                    .map_err(db)?;
                }
                tx.execute(
                    "UPDATE reviews SET rev = rev + 1, status = 'approved', decided_at = $2, decided_by = $3 WHERE id = $1",
                    &[&d.review_id, &d.at_ms, &a.actor],
                )
                .await
                .map_err(db)?;
                tx.execute(
                    "UPDATE runs SET status = 'queued', wait = NULL, rev = rev + 1, updated_at = $2 WHERE id = $1",
                    &[&run_id, &d.at_ms],
                )
                .await
                .map_err(db)?;
                tx.execute(
                    "INSERT INTO work (run_id, run_at) VALUES ($1, $2) ON CONFLICT (run_id) DO UPDATE SET run_at = excluded.run_at, locked_by = NULL, lease_until = NULL",
                    &[&run_id, &d.at_ms],
                )
                .await
                .map_err(db)?;
                tx.execute(
                    "SELECT pg_notify($1, $2)",
                    &[&CHANNEL, &d.at_ms.to_string()],
                )
                .await
                .map_err(db)?;
            }
            ReviewChange::Reject { .. } | ReviewChange::HandOff { .. } => {
                let (status, reason) = d.change.ends_run().expect("a change that ends the run");
                tx.execute(
                    "UPDATE reviews SET rev = rev + 1, status = $5, decided_at = $2, decided_by = $3, reason = $4 WHERE id = $1",
                    &[&d.review_id, &d.at_ms, &a.actor, &reason, &status],
                )
                .await
                .map_err(db)?;
                tx.execute(
                    "UPDATE runs SET status = $4, wait = NULL, outcome = $4, error = $3, rev = rev + 1, updated_at = $2 WHERE id = $1",
                    &[&run_id, &d.at_ms, &reason, &status],
                )
                .await
                .map_err(db)?;
                tx.execute("DELETE FROM work WHERE run_id = $1", &[&run_id])
                    .await
                    .map_err(db)?;
            }
        }
        self.pool.count(4 + d.events.len() as u64);
        let review = load(tx, "id = $1", &[&d.review_id])
            .await?
            .ok_or(Error::NotFound)?;
        Ok(Decided::Done(Box::new(review)))
    }
}

#[async_trait]
impl Reviews for PgStore {
    async fn create_review(&self, r: NewReview) -> Result<Review> {
        let conn = self.pool.get().await?;
        let c = &conn.client;
        c.execute(
            "INSERT INTO reviews (id, run_id, step_index, step_id, workflow, queue, status, fields, min_approvals, submitter, deadline_at, on_deadline, notify, created_at, rev)
             VALUES ($1, $2, $3, $4, $5, $6, 'pending', $7, $8,
                     (SELECT actor FROM events WHERE run_id = $2 ORDER BY seq LIMIT 1),
                     $9, $10, $11, $12, 1)
             ON CONFLICT (run_id, step_index) DO NOTHING",
            &[&r.id, &r.run_id, &(r.step_index as i64), &r.step_id, &r.workflow, &r.queue, &r.fields, &(r.min_approvals as i64), &r.deadline_at_ms, &r.on_deadline, &r.notify, &r.created_at_ms],
        )
        .await
        .map_err(db)?;
        self.pool.count(4);
        load(
            c,
            "run_id = $1 AND step_index = $2",
            &[&r.run_id, &(r.step_index as i64)],
        )
        .await?
        .ok_or(Error::NotFound)
    }

    async fn review(&self, id: &str) -> Result<Option<Review>> {
        let conn = self.pool.get().await?;
        self.pool.count(3);
        load(&conn.client, "id = $1", &[&id]).await
    }

    async fn review_for_step(&self, run_id: &str, step_index: usize) -> Result<Option<Review>> {
        let conn = self.pool.get().await?;
        self.pool.count(3);
        load(
            &conn.client,
            "run_id = $1 AND step_index = $2",
            &[&run_id, &(step_index as i64)],
        )
        .await
    }

    async fn pending_by_queue(&self) -> Result<Vec<store::QueueDepth>> {
        let mut conn = self.pool.get().await?;
        let st = conn
            .stmt("SELECT queue, count(*), min(created_at) FROM reviews WHERE status = 'pending' GROUP BY queue ORDER BY queue")
            .await?;
        self.pool.count(1);
        Ok(conn
            .client
            .query(&st, &[])
            .await
            .map_err(db)?
            .iter()
            .map(|r| store::QueueDepth {
                queue: r.get(0),
                pending: r.get::<_, i64>(1).max(0) as u64,
                oldest_created_at_ms: r.get(2),
            })
            .collect())
    }

    async fn calibration_reviews(
        &self,
        q: &store::CalibrationQuery,
    ) -> Result<Vec<store::CalibrationReview>> {
        self.calibration_read(q).await
    }

    async fn list_reviews(&self, f: &ReviewFilter) -> Result<Vec<Review>> {
        let conn = self.pool.get().await?;
        let c = &conn.client;
        let status = f.status.map(|s| s.as_str().to_string());
        let queues: Option<Vec<String>> = f.queues.clone();
        let limit = f.limit.clamp(1, 1000) as i64;
        let rows = c
            .query(
                &format!(
                    "SELECT {COLS} FROM reviews WHERE ($1::text IS NULL OR status = $1) AND ($2::text IS NULL OR queue = $2)
                     AND ($3::text[] IS NULL OR queue = ANY($3)) AND ($4::text IS NULL OR id < $4) ORDER BY id DESC LIMIT $5"
                ),
                &[&status, &f.queue, &queues, &f.before, &limit],
            )
            .await
            .map_err(db)?;
        let mut out: Vec<Review> = rows.iter().map(review_from).collect();
        fill(c, out.iter_mut().collect()).await?;
        self.pool.count(3);
        Ok(out)
    }

    async fn decide_review(&self, d: DecideReview) -> Result<Decided> {
        let mut conn = self.pool.get().await?;
        let tx = conn.client.transaction().await.map_err(db)?;
        let r = self.decide_in(&tx, &d).await?;
        if matches!(r, Decided::Done(_)) {
            tx.commit().await.map_err(db)?;
        }
        Ok(r)
    }
}
