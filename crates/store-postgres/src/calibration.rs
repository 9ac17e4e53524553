//! The calibration read: decided review tasks with their acts, field
//! results, run versions and model outputs, in four statements however
//! many tasks there are (ids passed as one array; the last three pipelined).

use std::collections::HashMap;

use store::{CalibrationQuery, CalibrationReview, Result, StepRecord};
use tokio_postgres::types::ToSql;

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

const SOURCES: &str =
    "SELECT step_index, step_id, attempt, status, output, error, started_at, finished_at, run_id
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
        let mut runs: Vec<String> = reviews.iter().map(|c| c.review.run_id.clone()).collect();
        runs.sort_unstable();
        runs.dedup();
        let sources = conn.stmt(SOURCES).await?;
        let c = &conn.client;
        let by_runs: [&(dyn ToSql + Sync); 1] = [&runs];
        // Pipelined: decisions, field results and the drafting steps.
        let ((), sources) = tokio::try_join!(
            crate::reviews::fill(c, reviews.iter_mut().map(|r| &mut r.review).collect()),
            async { c.query(&sources, &by_runs).await.map_err(db) },
        )?;
        self.pool.count(3);
        let mut by_run: HashMap<String, Vec<StepRecord>> = HashMap::new();
        for x in &sources {
            by_run
                .entry(x.get(8))
                .or_default()
                .push(crate::ops::step_from(x));
        }
        for c in &mut reviews {
            c.sources = by_run.get(&c.review.run_id).cloned().unwrap_or_default();
        }
        Ok(reviews)
    }
}
