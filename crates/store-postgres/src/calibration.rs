//! The calibration read: decided review tasks with their acts, field
//! results, run versions and model outputs, in four statements however
//! many tasks there are (ids passed as one array).

use std::collections::HashMap;

use store::{CalibrationQuery, CalibrationReview, Result, ReviewAct, ReviewField, StepRecord};
use tokio_postgres::types::ToSql;

use crate::ops::step_status;
use crate::reviews::review_from;
use crate::{PgStore, db};

/// The task columns in `review_from`'s order, then the run's version and
/// the version's hash.
const TASKS: &str = "SELECT r.id, r.run_id, r.step_index, r.step_id, r.workflow, r.queue, r.status, r.fields, r.min_approvals, r.submitter, r.deadline_at, r.on_deadline, r.notify, r.created_at, r.decided_at, r.decided_by, r.reason, r.rev,
        ru.version, w.hash
    FROM reviews r
    JOIN runs ru ON ru.id = r.run_id
    LEFT JOIN workflows w ON w.name = ru.workflow AND w.version = ru.version
    WHERE ($1::text IS NULL OR r.workflow = $1)
      AND (r.status <> 'pending'
           OR EXISTS (SELECT 1 FROM review_acts a WHERE a.review_id = r.id AND a.decision = 'escalate'))
      AND ($2::bigint IS NULL OR EXISTS (SELECT 1 FROM review_acts a WHERE a.review_id = r.id AND a.at >= $2))
      AND ($3::text[] IS NULL OR r.queue = ANY($3))
    ORDER BY r.id DESC LIMIT $4";

const ACTS: &str =
    "SELECT review_id, seq, actor, decision, edits, comment, reason, queue, at, user_id
    FROM review_acts WHERE review_id = ANY($1) ORDER BY review_id, seq";

const FIELDS: &str =
    "SELECT review_id, field, draft, value, changed, decided_by, decided_at, comment
    FROM review_fields WHERE review_id = ANY($1) ORDER BY review_id, pos";

const SOURCES: &str =
    "SELECT run_id, step_index, step_id, attempt, status, output, error, started_at, finished_at
    FROM steps
    WHERE run_id = ANY($1) AND status = 'completed' AND output LIKE '%\"provider\"%'
    ORDER BY run_id, seq";

impl PgStore {
    /// The tasks, newest first; see [`store::Reviews::calibration_reviews`].
    pub(crate) async fn calibration_read(
        &self,
        q: &CalibrationQuery,
    ) -> Result<Vec<CalibrationReview>> {
        let mut conn = self.pool.get().await?;
        let tasks = conn.stmt(TASKS).await?;
        let limit = q.limit.max(1) as i64;
        let mut reviews: Vec<CalibrationReview> = conn
            .client
            .query(&tasks, &[&q.workflow, &q.since_ms, &q.queues, &limit])
            .await
            .map_err(db)?
            .iter()
            .map(|r| CalibrationReview {
                review: review_from(r),
                version: r.get(18),
                version_hash: r.get(19),
                sources: Vec::new(),
            })
            .collect();
        self.pool.count(1);
        if reviews.is_empty() {
            return Ok(reviews);
        }
        let ids: Vec<String> = reviews.iter().map(|c| c.review.id.clone()).collect();
        let at: HashMap<String, usize> = ids
            .iter()
            .enumerate()
            .map(|(i, id)| (id.clone(), i))
            .collect();
        let mut runs: Vec<String> = reviews.iter().map(|c| c.review.run_id.clone()).collect();
        runs.sort_unstable();
        runs.dedup();
        let (acts, fields, sources) = (
            conn.stmt(ACTS).await?,
            conn.stmt(FIELDS).await?,
            conn.stmt(SOURCES).await?,
        );
        let c = &conn.client;
        let (by_ids, by_runs): ([&(dyn ToSql + Sync); 1], [&(dyn ToSql + Sync); 1]) =
            ([&ids], [&runs]);
        // Pipelined: three statements, one round trip's wait.
        let (acts, fields, sources) = tokio::try_join!(
            c.query(&acts, &by_ids),
            c.query(&fields, &by_ids),
            c.query(&sources, &by_runs),
        )
        .map_err(db)?;
        self.pool.count(3);
        for x in &acts {
            if let Some(&i) = at.get(&x.get::<_, String>(0)) {
                reviews[i].review.acts.push(ReviewAct {
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
        }
        for x in &fields {
            if let Some(&i) = at.get(&x.get::<_, String>(0)) {
                reviews[i].review.results.push(ReviewField {
                    field: x.get(1),
                    draft: x.get(2),
                    value: x.get(3),
                    changed: x.get(4),
                    decided_by: x.get(5),
                    decided_at_ms: x.get(6),
                    comment: x.get(7),
                });
            }
        }
        let mut by_run: HashMap<String, Vec<StepRecord>> = HashMap::new();
        for x in &sources {
            let status: String = x.get(4);
            by_run.entry(x.get(0)).or_default().push(StepRecord {
                index: x.get::<_, i64>(1) as usize,
                step_id: x.get(2),
                attempt: x.get::<_, i64>(3) as u32,
                status: step_status(&status),
                output: x.get(5),
                error: x.get(6),
                started_at_ms: x.get(7),
                finished_at_ms: x.get(8),
            });
        }
        for c in &mut reviews {
            c.sources = by_run.get(&c.review.run_id).cloned().unwrap_or_default();
        }
        Ok(reviews)
    }
}
