//! The calibration read: decided review tasks with their acts, field
//! results, run versions and model outputs, in four statements however
//! many tasks there are (ids passed as one JSON array).

use std::collections::HashMap;

use rusqlite::{Connection, params};
use store::{CalibrationQuery, CalibrationReview, Result, ReviewAct, ReviewField, StepRecord};

use crate::ops::{db, step_status};
use crate::reviews::{COLS, review_from};

/// The tasks, newest first; see [`store::Reviews::calibration_reviews`].
pub(crate) fn read(conn: &Connection, q: &CalibrationQuery) -> Result<Vec<CalibrationReview>> {
    let cols = COLS
        .split(", ")
        .map(|c| format!("r.{c}"))
        .collect::<Vec<_>>()
        .join(", ");
    let queues = q
        .queues
        .as_ref()
        .map(|qs| serde_json::to_string(qs).unwrap_or_else(|_| "[]".into()));
    let mut reviews: Vec<CalibrationReview> = conn
        .prepare_cached(&format!(
            "SELECT {cols}, ru.version, w.hash FROM reviews r
             JOIN runs ru ON ru.id = r.run_id
             LEFT JOIN workflows w ON w.name = ru.workflow AND w.version = ru.version
             WHERE (?1 IS NULL OR r.workflow = ?1)
               AND (r.status <> 'pending'
                    OR EXISTS (SELECT 1 FROM review_acts a WHERE a.review_id = r.id AND a.decision = 'escalate'))
               AND (?2 IS NULL OR EXISTS (SELECT 1 FROM review_acts a WHERE a.review_id = r.id AND a.at >= ?2))
               AND (?3 IS NULL OR r.queue IN (SELECT value FROM json_each(?3)))
             ORDER BY r.id DESC LIMIT ?4"
        ))
        .map_err(db)?
        .query_map(
            params![q.workflow, q.since_ms, queues, q.limit.max(1) as i64],
            |r| {
                Ok(CalibrationReview {
                    review: review_from(r)?,
                    version: r.get(18)?,
                    version_hash: r.get(19)?,
                    sources: Vec::new(),
                })
            },
        )
        .map_err(db)?
        .collect::<rusqlite::Result<_>>()
        .map_err(db)?;
    if reviews.is_empty() {
        return Ok(reviews);
    }
    let ids = serde_json::to_string(&reviews.iter().map(|c| &c.review.id).collect::<Vec<_>>())
        .unwrap_or_else(|_| "[]".into());
    let at: HashMap<String, usize> = reviews
        .iter()
        .enumerate()
        .map(|(i, c)| (c.review.id.clone(), i))
        .collect();
    let mut stmt = conn
        .prepare_cached(
            "SELECT review_id, seq, actor, decision, edits, comment, reason, queue, at, user_id
             FROM review_acts WHERE review_id IN (SELECT value FROM json_each(?1))
             ORDER BY review_id, seq",
        )
        .map_err(db)?;
    let acts = stmt
        .query_map([&ids], |x| {
            Ok((
                x.get::<_, String>(0)?,
                ReviewAct {
                    seq: x.get(1)?,
                    actor: x.get(2)?,
                    decision: x.get(3)?,
                    values: x.get(4)?,
                    comment: x.get(5)?,
                    reason: x.get(6)?,
                    queue: x.get(7)?,
                    at_ms: x.get(8)?,
                    user_id: x.get(9)?,
                },
            ))
        })
        .map_err(db)?;
    for a in acts {
        let (id, act) = a.map_err(db)?;
        if let Some(&i) = at.get(&id) {
            reviews[i].review.acts.push(act);
        }
    }
    let mut stmt = conn
        .prepare_cached(
            "SELECT review_id, field, draft, value, changed, decided_by, decided_at, comment
             FROM review_fields WHERE review_id IN (SELECT value FROM json_each(?1))
             ORDER BY review_id, pos",
        )
        .map_err(db)?;
    let fields = stmt
        .query_map([&ids], |x| {
            Ok((
                x.get::<_, String>(0)?,
                ReviewField {
                    field: x.get(1)?,
                    draft: x.get(2)?,
                    value: x.get(3)?,
                    changed: x.get::<_, i64>(4)? != 0,
                    decided_by: x.get(5)?,
                    decided_at_ms: x.get(6)?,
                    comment: x.get(7)?,
                },
            ))
        })
        .map_err(db)?;
    for f in fields {
        let (id, field) = f.map_err(db)?;
        if let Some(&i) = at.get(&id) {
            reviews[i].review.results.push(field);
        }
    }
    let mut runs: Vec<&str> = reviews.iter().map(|c| c.review.run_id.as_str()).collect();
    runs.sort_unstable();
    runs.dedup();
    let run_ids = serde_json::to_string(&runs).unwrap_or_else(|_| "[]".into());
    let mut stmt = conn
        .prepare_cached(
            "SELECT run_id, step_index, step_id, attempt, status, output, error, started_at, finished_at
             FROM steps
             WHERE run_id IN (SELECT value FROM json_each(?1)) AND status = 'completed'
               AND output LIKE '%\"provider\"%'
             ORDER BY run_id, seq",
        )
        .map_err(db)?;
    let rows = stmt
        .query_map([&run_ids], |x| {
            let status: String = x.get(4)?;
            Ok((
                x.get::<_, String>(0)?,
                StepRecord {
                    index: x.get::<_, i64>(1)? as usize,
                    step_id: x.get(2)?,
                    attempt: x.get(3)?,
                    status: step_status(&status),
                    output: x.get(5)?,
                    error: x.get(6)?,
                    started_at_ms: x.get(7)?,
                    finished_at_ms: x.get(8)?,
                },
            ))
        })
        .map_err(db)?;
    let mut by_run: HashMap<String, Vec<StepRecord>> = HashMap::new();
    for row in rows {
        let (run, step) = row.map_err(db)?;
        by_run.entry(run).or_default().push(step);
    }
    for c in &mut reviews {
        c.sources = by_run.get(&c.review.run_id).cloned().unwrap_or_default();
    }
    Ok(reviews)
}
