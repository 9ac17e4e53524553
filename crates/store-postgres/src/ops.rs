//! `Store` operations as SQL (the hot path's writes are in `batch`).

use std::time::Duration;

use async_trait::async_trait;
use domain::event::{Hashed, chain_hash};
use domain::run::{Position, RunStatus, StepStatus, WaitReason};
use store::{
    ChainHead, Claimed, Commit, Created, Effect, EffectStatus, Error, Event, NewEvent, NewRun,
    OpResult, Result, Run, RunDetail, RunFilter, StepRecord, Store, Token, WorkflowVersion,
};
use tokio::sync::oneshot;
use tokio_postgres::{GenericClient, Row};

use crate::batch::Request;
use crate::{CHANNEL, PgStore, SETTLED_CHANNEL, db, now_ms};

const RUN_COLS: &str = "id, workflow, version, status, wait, step_index, failed_attempts, outcome, error, input, idempotency_key, rev, created_at, updated_at";

/// A `steps` row whose first eight columns are step_index, step_id,
/// attempt, status, output, error, started_at, finished_at.
pub(crate) fn step_from(r: &Row) -> StepRecord {
    let status: String = r.get(3);
    StepRecord {
        index: r.get::<_, i64>(0) as usize,
        step_id: r.get(1),
        attempt: r.get::<_, i64>(2) as u32,
        status: step_status(&status),
        output: r.get(4),
        error: r.get(5),
        started_at_ms: r.get(6),
        finished_at_ms: r.get(7),
    }
}

fn run_from(r: &Row) -> Run {
    let status: String = r.get(3);
    let wait: Option<String> = r.get(4);
    Run {
        id: r.get(0),
        workflow: r.get(1),
        version: r.get(2),
        status: status.parse().unwrap_or(RunStatus::Failed),
        wait: wait.as_deref().and_then(WaitReason::parse),
        position: Position {
            index: r.get::<_, i64>(5) as usize,
            failed_attempts: r.get::<_, i64>(6) as u32,
        },
        outcome: r.get(7),
        error: r.get(8),
        input: r.get(9),
        idempotency_key: r.get(10),
        rev: r.get(11),
        created_at_ms: r.get(12),
        updated_at_ms: r.get(13),
    }
}

pub(crate) fn step_status(s: &str) -> StepStatus {
    match s {
        "completed" => StepStatus::Completed,
        "skipped" => StepStatus::Skipped,
        "waiting" => StepStatus::Waiting,
        _ => StepStatus::Failed,
    }
}

fn effect_from(r: &Row) -> Effect {
    let status: String = r.get(3);
    Effect {
        key: r.get(0),
        run_id: r.get(1),
        step_id: r.get(2),
        status: EffectStatus::parse(&status),
        request_digest: r.get(4),
        external_id: r.get(5),
        at_ms: r.get(6),
    }
}

fn token_from(r: &Row) -> Token {
    let scopes: String = r.get(3);
    Token {
        id: r.get(0),
        name: r.get(1),
        hash: r.get(2),
        scopes: scopes
            .split(',')
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect(),
        created_at_ms: r.get(4),
        revoked_at_ms: r.get(5),
        user_id: r.get(6),
    }
}

const LOAD_RUN: &str = "SELECT id, workflow, version, status, wait, step_index, failed_attempts, outcome, error, input, idempotency_key, rev, created_at, updated_at FROM runs WHERE id = $1";
const LOCK_RUN: &str = "SELECT id, workflow, version, status, wait, step_index, failed_attempts, outcome, error, input, idempotency_key, rev, created_at, updated_at, event_seq, last_hash FROM runs WHERE id = $1 FOR UPDATE";

/// One statement: pick due or lease-expired items (skipping rows other
/// nodes are locking), lease them, and bump their runs' revisions so any
/// previous holder is fenced out. The status and wait returned are those
/// the run is resumed from (every part of the statement sees one snapshot);
/// the stored row becomes `running`. `= ANY(ARRAY(…))` keeps every step on
/// primary-key look-ups whatever the planner estimates.
const CLAIM: &str = "WITH due AS (
        SELECT run_id FROM work WHERE locked_by IS NULL AND run_at <= $2
        ORDER BY run_at LIMIT $4 FOR UPDATE SKIP LOCKED
    ), expired AS (
        SELECT run_id FROM work WHERE locked_by IS NOT NULL AND lease_until < $2
        ORDER BY lease_until LIMIT $4 FOR UPDATE SKIP LOCKED
    ), picked AS (
        SELECT run_id FROM due UNION SELECT run_id FROM expired LIMIT $4
    ), leased AS (
        UPDATE work SET locked_by = $1, lease_until = $3
        WHERE run_id = ANY(ARRAY(SELECT run_id FROM picked)) RETURNING run_id
    ), before AS (
        SELECT id, status, wait FROM runs WHERE id = ANY(ARRAY(SELECT run_id FROM leased))
    )
    UPDATE runs r SET rev = r.rev + 1, status = 'running', wait = NULL, updated_at = $2
    FROM before WHERE r.id = before.id AND r.id = ANY(ARRAY(SELECT id FROM before))
    RETURNING r.id, r.workflow, r.version, before.status, before.wait, r.step_index, r.failed_attempts, r.outcome, r.error, r.input, r.idempotency_key, r.rev, r.created_at, r.updated_at";
/// Sorted in Rust: an `ORDER BY` here tempts the planner into walking the
/// whole primary key in order.
const CLAIM_OUTPUTS: &str = "SELECT run_id, step_index, output, seq FROM steps WHERE run_id = ANY($1::text[]) AND status IN ('completed', 'skipped')";
const CLAIM_EFFECTS: &str = "SELECT key, run_id, step_id, status, request_digest, external_id, COALESCE(completed_at, started_at) FROM effects WHERE run_id = ANY($1::text[]) AND status = 'started'";
/// Rows being committed right now are skipped: their commit sets the lease.
const RENEW: &str = "UPDATE work SET lease_until = $2 WHERE run_id IN (
        SELECT run_id FROM work WHERE locked_by = $1 AND run_id = ANY($3) FOR UPDATE SKIP LOCKED)";
const RELEASE: &str = "UPDATE work SET locked_by = NULL, lease_until = NULL WHERE run_id IN (
        SELECT run_id FROM work WHERE locked_by = $1 ORDER BY run_id FOR UPDATE)";
const NEXT_DUE: &str = "SELECT LEAST(
        (SELECT MIN(run_at) FROM work WHERE locked_by IS NULL),
        (SELECT MIN(lease_until) FROM work WHERE locked_by IS NOT NULL))";

impl PgStore {
    async fn send(&self, r: Request) -> Result<()> {
        self.writer
            .send(r)
            .map_err(|_| Error::Backend("the database writer has stopped".into()))
    }

    /// Appends one operator event to a run whose row this transaction has
    /// locked; returns nothing, updates the chain head.
    async fn operator_event(
        &self,
        tx: &impl GenericClient,
        run_id: &str,
        seq: i64,
        prev: &str,
        e: NewEvent,
    ) -> Result<()> {
        let seq = seq + 1;
        let hash = chain_hash(
            prev,
            Hashed {
                run_id,
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
        tx.execute(
            "UPDATE runs SET event_seq = $2, last_hash = $3 WHERE id = $1",
            &[&run_id, &seq, &hash],
        )
        .await
        .map_err(db)?;
        self.pool.count(2);
        Ok(())
    }

    /// Shared body of retry and cancel: lock the work row, then the run row
    /// (the global lock order), check, record the event, apply `change`.
    async fn operator(
        &self,
        id: &str,
        actor: &str,
        now_ms: i64,
        allowed: fn(RunStatus) -> bool,
        event: impl FnOnce(&Run) -> (&'static str, String),
        retry: bool,
    ) -> Result<OpResult> {
        let mut conn = self.pool.get().await?;
        let tx = conn.client.transaction().await.map_err(db)?;
        tx.query("SELECT 1 FROM work WHERE run_id = $1 FOR UPDATE", &[&id])
            .await
            .map_err(db)?;
        let Some(row) = tx.query_opt(LOCK_RUN, &[&id]).await.map_err(db)? else {
            return Ok(OpResult::NotFound);
        };
        self.pool.count(4);
        let run = run_from(&row);
        if !allowed(run.status) {
            return Ok(OpResult::Refused(run.status));
        }
        let (kind, data) = event(&run);
        let (seq, prev): (i64, String) = (row.get(14), row.get(15));
        self.operator_event(
            &tx,
            id,
            seq,
            &prev,
            NewEvent {
                kind: kind.into(),
                actor: actor.into(),
                data,
                at_ms: now_ms,
            },
        )
        .await?;
        if retry {
            tx.execute(
                "UPDATE runs SET status = 'queued', wait = NULL, failed_attempts = 0, error = NULL, rev = rev + 1, updated_at = $2 WHERE id = $1",
                &[&id, &now_ms],
            )
            .await
            .map_err(db)?;
            tx.execute(
                "INSERT INTO work (run_id, run_at) VALUES ($1, $2) ON CONFLICT (run_id) DO UPDATE SET run_at = excluded.run_at, locked_by = NULL, lease_until = NULL",
                &[&id, &now_ms],
            )
            .await
            .map_err(db)?;
            tx.execute("SELECT pg_notify($1, $2)", &[&CHANNEL, &now_ms.to_string()])
                .await
                .map_err(db)?;
            self.pool.count(3);
        } else {
            tx.execute(
                "UPDATE runs SET status = 'cancelled', wait = NULL, rev = rev + 1, updated_at = $2 WHERE id = $1",
                &[&id, &now_ms],
            )
            .await
            .map_err(db)?;
            tx.execute("DELETE FROM work WHERE run_id = $1", &[&id])
                .await
                .map_err(db)?;
            // `?wait=` callers on other nodes learn of it at once.
            tx.execute("SELECT pg_notify($1, $2)", &[&SETTLED_CHANNEL, &id])
                .await
                .map_err(db)?;
            self.pool.count(3);
        }
        let run = tx
            .query_one(LOAD_RUN, &[&id])
            .await
            .map(|r| run_from(&r))
            .map_err(db)?;
        tx.commit().await.map_err(db)?;
        self.pool.count(2);
        Ok(OpResult::Done(run))
    }
}

#[async_trait]
impl Store for PgStore {
    fn backend(&self) -> &'static str {
        "postgres"
    }

    async fn save_workflow(
        &self,
        name: &str,
        hash: &str,
        source: &str,
        path: &str,
        now_ms: i64,
    ) -> Result<i64> {
        let mut conn = self.pool.get().await?;
        let tx = conn.client.transaction().await.map_err(db)?;
        // Nodes starting together load the same files: serialise per name.
        tx.execute("SELECT pg_advisory_xact_lock(hashtext($1))", &[&name])
            .await
            .map_err(db)?;
        let found = tx
            .query_opt(
                "SELECT version FROM workflows WHERE name = $1 AND hash = $2",
                &[&name, &hash],
            )
            .await
            .map_err(db)?;
        let v = match found {
            Some(r) => r.get(0),
            None => {
                let v: i64 = tx
                    .query_one(
                        "SELECT COALESCE(MAX(version), 0) + 1 FROM workflows WHERE name = $1",
                        &[&name],
                    )
                    .await
                    .map_err(db)?
                    .get(0);
                tx.execute(
                    "INSERT INTO workflows (name, version, hash, source, path, created_at) VALUES ($1, $2, $3, $4, $5, $6)",
                    &[&name, &v, &hash, &source, &path, &now_ms],
                )
                .await
                .map_err(db)?;
                v
            }
        };
        tx.commit().await.map_err(db)?;
        self.pool.count(6);
        Ok(v)
    }

    async fn workflow_version(&self, name: &str, version: i64) -> Result<Option<WorkflowVersion>> {
        let mut conn = self.pool.get().await?;
        let st = conn
            .stmt("SELECT name, version, hash, source, path, created_at FROM workflows WHERE name = $1 AND version = $2")
            .await?;
        self.pool.count(1);
        Ok(conn
            .client
            .query_opt(&st, &[&name, &version])
            .await
            .map_err(db)?
            .map(|r| WorkflowVersion {
                name: r.get(0),
                version: r.get(1),
                hash: r.get(2),
                source: r.get(3),
                path: r.get(4),
                created_at_ms: r.get(5),
            }))
    }

    async fn create_run(&self, run: NewRun) -> Result<Created> {
        let (tx, rx) = oneshot::channel();
        self.send(Request::Create(Box::new(run), tx)).await?;
        rx.await
            .map_err(|_| Error::Backend("the database writer dropped a request".into()))?
    }

    async fn commit(&self, commit: Commit) -> Result<i64> {
        let (tx, rx) = oneshot::channel();
        self.send(Request::Commit(Box::new(commit), tx)).await?;
        rx.await
            .map_err(|_| Error::Backend("the database writer dropped a request".into()))?
    }

    async fn claim(
        &self,
        node: &str,
        now_ms: i64,
        lease_until_ms: i64,
        limit: usize,
    ) -> Result<Vec<Claimed>> {
        let mut conn = self.pool.get().await?;
        let st = conn.stmt(CLAIM).await?;
        let limit = limit as i64;
        let rows = conn
            .client
            .query(&st, &[&node, &now_ms, &lease_until_ms, &limit])
            .await
            .map_err(db)?;
        self.pool.count(1);
        if rows.is_empty() {
            return Ok(Vec::new());
        }
        self.pool.churned(rows.len() as u64);
        let runs: Vec<Run> = rows.iter().map(run_from).collect();
        let ids: Vec<String> = runs.iter().map(|r| r.id.clone()).collect();
        let st_out = conn.stmt(CLAIM_OUTPUTS).await?;
        let st_eff = conn.stmt(CLAIM_EFFECTS).await?;
        let p: [&(dyn tokio_postgres::types::ToSql + Sync); 1] = [&ids];
        let (outputs, effects) = tokio::join!(
            conn.client.query(&st_out, &p),
            conn.client.query(&st_eff, &p)
        );
        self.pool.count(2);
        let (outputs, effects) = (outputs.map_err(db)?, effects.map_err(db)?);
        let mut claimed: Vec<Claimed> = runs
            .into_iter()
            .map(|run| Claimed {
                run,
                outputs: Vec::new(),
                open_effects: Vec::new(),
            })
            .collect();
        let index: std::collections::HashMap<String, usize> = claimed
            .iter()
            .enumerate()
            .map(|(i, c)| (c.run.id.clone(), i))
            .collect();
        let mut outputs = outputs;
        outputs.sort_by_cached_key(|r| (r.get::<_, String>(0), r.get::<_, i64>(3)));
        for r in &outputs {
            let run_id: String = r.get(0);
            let Some(&i) = index.get(&run_id) else {
                continue;
            };
            let c = &mut claimed[i];
            let step = r.get::<_, i64>(1) as usize;
            if step >= c.run.position.index {
                continue;
            }
            // The latest completed attempt of each step wins.
            c.outputs.retain(|(j, _)| *j != step);
            c.outputs.push((step, r.get(2)));
        }
        for r in &effects {
            let e = effect_from(r);
            if let Some(&i) = index.get(&e.run_id) {
                claimed[i].open_effects.push(e);
            }
        }
        Ok(claimed)
    }

    async fn renew_leases(&self, node: &str, runs: &[String], lease_until_ms: i64) -> Result<u64> {
        if runs.is_empty() {
            return Ok(0);
        }
        let mut conn = self.pool.get().await?;
        let st = conn.stmt(RENEW).await?;
        self.pool.count(1);
        conn.client
            .execute(&st, &[&node, &lease_until_ms, &runs])
            .await
            .map_err(db)
    }

    async fn release_leases(&self, node: &str) -> Result<u64> {
        let mut conn = self.pool.get().await?;
        let st = conn.stmt(RELEASE).await?;
        let n = conn.client.execute(&st, &[&node]).await.map_err(db)?;
        self.pool.count(1);
        if n > 0 {
            // Other nodes may take these over at once.
            conn.client
                .execute(
                    "SELECT pg_notify($1, $2)",
                    &[&CHANNEL, &now_ms().to_string()],
                )
                .await
                .map_err(db)?;
            self.pool.count(1);
        }
        Ok(n)
    }

    async fn next_due(&self) -> Result<Option<i64>> {
        let mut conn = self.pool.get().await?;
        let st = conn.stmt(NEXT_DUE).await?;
        self.pool.count(1);
        Ok(conn.client.query_one(&st, &[]).await.map_err(db)?.get(0))
    }

    fn settled_feed(&self) -> Option<tokio::sync::broadcast::Receiver<store::SettledNews>> {
        Some(self.settled_feed_start())
    }

    async fn wait_for_work(&self, timeout: Duration) {
        self.ensure_listener();
        let mut deadline = tokio::time::Instant::now() + timeout;
        loop {
            tokio::select! {
                _ = self.wake.notify.notified() => {
                    let Some(at) = self.wake.take() else { continue };
                    let wait = at - now_ms();
                    if wait <= 0 {
                        return;
                    }
                    // Work due later: sleep no longer than until then.
                    deadline = deadline.min(tokio::time::Instant::now() + Duration::from_millis(wait as u64));
                }
                _ = tokio::time::sleep_until(deadline) => return,
            }
        }
    }

    async fn retry_run(&self, id: &str, actor: &str, now_ms: i64) -> Result<OpResult> {
        self.operator(
            id,
            actor,
            now_ms,
            RunStatus::can_retry,
            |run| {
                (
                    domain::event::kind::RUN_RETRIED,
                    serde_json::json!({ "from_step": run.position.index, "previous_error": run.error })
                        .to_string(),
                )
            },
            true,
        )
        .await
    }

    async fn cancel_run(&self, id: &str, actor: &str, now_ms: i64) -> Result<OpResult> {
        self.operator(
            id,
            actor,
            now_ms,
            RunStatus::can_cancel,
            |run| {
                (
                    domain::event::kind::RUN_CANCELLED,
                    serde_json::json!({ "from_status": run.status.as_str(), "at_step": run.position.index })
                        .to_string(),
                )
            },
            false,
        )
        .await
    }

    async fn run(&self, id: &str) -> Result<Option<Run>> {
        let mut conn = self.pool.get().await?;
        let st = conn.stmt(LOAD_RUN).await?;
        self.pool.count(1);
        Ok(conn
            .client
            .query_opt(&st, &[&id])
            .await
            .map_err(db)?
            .map(|r| run_from(&r)))
    }

    async fn run_detail(&self, id: &str) -> Result<Option<RunDetail>> {
        Ok(self.run_details(&[id.to_string()]).await?.pop())
    }

    async fn run_details(&self, ids: &[String]) -> Result<Vec<RunDetail>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let mut conn = self.pool.get().await?;
        // One snapshot, three statements, however many runs.
        let tx = conn
            .client
            .build_transaction()
            .isolation_level(tokio_postgres::IsolationLevel::RepeatableRead)
            .read_only(true)
            .start()
            .await
            .map_err(db)?;
        let p: [&(dyn tokio_postgres::types::ToSql + Sync); 1] = [&ids];
        let runs_sql = format!("SELECT {RUN_COLS} FROM runs WHERE id = ANY($1)");
        let (runs, steps, effects) = tokio::join!(
            tx.query(&runs_sql, &p),
            tx.query("SELECT step_index, step_id, attempt, status, output, error, started_at, finished_at, run_id FROM steps WHERE run_id = ANY($1) ORDER BY run_id, seq", &p),
            tx.query("SELECT key, run_id, step_id, status, request_digest, external_id, COALESCE(completed_at, started_at) FROM effects WHERE run_id = ANY($1) ORDER BY run_id, started_at", &p)
        );
        self.pool.count(5);
        let mut out: Vec<RunDetail> = runs
            .map_err(db)?
            .iter()
            .map(|r| RunDetail {
                run: run_from(r),
                steps: Vec::new(),
                effects: Vec::new(),
            })
            .collect();
        let at: std::collections::HashMap<String, usize> = out
            .iter()
            .enumerate()
            .map(|(i, d)| (d.run.id.clone(), i))
            .collect();
        for r in steps.map_err(db)?.iter() {
            if let Some(&i) = at.get(r.get::<_, &str>(8)) {
                out[i].steps.push(step_from(r));
            }
        }
        for r in effects.map_err(db)?.iter() {
            if let Some(&i) = at.get(r.get::<_, &str>(1)) {
                out[i].effects.push(effect_from(r));
            }
        }
        tx.commit().await.map_err(db)?;
        Ok(out)
    }

    async fn list_runs(&self, f: &RunFilter) -> Result<Vec<Run>> {
        let mut sql = format!("SELECT {RUN_COLS} FROM runs WHERE TRUE");
        let mut args: Vec<String> = Vec::new();
        if let Some(w) = &f.workflow {
            args.push(w.clone());
            sql.push_str(&format!(" AND workflow = ${}", args.len()));
        }
        if let Some(s) = f.status {
            args.push(s.as_str().to_string());
            sql.push_str(&format!(" AND status = ${}", args.len()));
        }
        if let Some(b) = &f.before {
            args.push(b.clone());
            sql.push_str(&format!(" AND id < ${}", args.len()));
        }
        if let Some(t) = &f.text {
            // Only letters and digits reach the query text; `input_words`
            // is indexed.
            let query = store::search_words(t)
                .iter()
                .map(|w| format!("{}{}", w.word, if w.prefix { ":*" } else { "" }))
                .collect::<Vec<_>>()
                .join(" & ");
            if query.is_empty() {
                return Ok(Vec::new());
            }
            args.push(query);
            sql.push_str(&format!(
                " AND input_words @@ to_tsquery('simple', ${})",
                args.len()
            ));
        }
        sql.push_str(&format!(
            " ORDER BY id DESC LIMIT {}",
            f.limit.clamp(1, 1000)
        ));
        let conn = self.pool.get().await?;
        let params: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> = args
            .iter()
            .map(|a| a as &(dyn tokio_postgres::types::ToSql + Sync))
            .collect();
        self.pool.count(1);
        Ok(conn
            .client
            .query(&sql, &params)
            .await
            .map_err(db)?
            .iter()
            .map(run_from)
            .collect())
    }

    async fn events(&self, run_id: &str, after_seq: i64, limit: usize) -> Result<Vec<Event>> {
        let mut conn = self.pool.get().await?;
        let st = conn
            .stmt("SELECT run_id, seq, kind, actor, data, at, prev_hash, hash FROM events WHERE run_id = $1 AND seq > $2 ORDER BY seq LIMIT $3")
            .await?;
        self.pool.count(1);
        Ok(conn
            .client
            .query(&st, &[&run_id, &after_seq, &(limit as i64)])
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

    async fn run_ids(&self, after: Option<&str>, limit: usize) -> Result<Vec<String>> {
        let mut conn = self.pool.get().await?;
        let st = conn
            .stmt("SELECT id FROM runs WHERE id > $1 ORDER BY id LIMIT $2")
            .await?;
        self.pool.count(1);
        Ok(conn
            .client
            .query(&st, &[&after.unwrap_or(""), &(limit as i64)])
            .await
            .map_err(db)?
            .iter()
            .map(|r| r.get(0))
            .collect())
    }

    async fn chain_heads(&self, after: Option<&str>, limit: usize) -> Result<Vec<ChainHead>> {
        let mut conn = self.pool.get().await?;
        let st = conn
            .stmt("SELECT id, event_seq, last_hash FROM runs WHERE id > $1 ORDER BY id LIMIT $2")
            .await?;
        self.pool.count(1);
        Ok(conn
            .client
            .query(&st, &[&after.unwrap_or(""), &(limit as i64)])
            .await
            .map_err(db)?
            .iter()
            .map(|r| ChainHead {
                run_id: r.get(0),
                seq: r.get(1),
                hash: r.get(2),
            })
            .collect())
    }

    async fn prunable_runs(
        &self,
        before_ms: i64,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<store::PrunedRun>> {
        self.prunable(before_ms, after.unwrap_or(""), limit).await
    }

    async fn prune_run(&self, summary: &store::PrunedRun) -> Result<bool> {
        self.prune(summary).await
    }

    async fn pruned_runs(
        &self,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<store::PrunedRun>> {
        self.pruned(after.unwrap_or(""), limit).await
    }

    async fn create_token(&self, t: Token) -> Result<()> {
        let conn = self.pool.get().await?;
        self.pool.count(1);
        conn.client
            .execute(
                "INSERT INTO tokens (id, name, hash, scopes, created_at, revoked_at, user_id) VALUES ($1, $2, $3, $4, $5, $6, $7)",
                &[&t.id, &t.name, &t.hash, &t.scopes.join(","), &t.created_at_ms, &t.revoked_at_ms, &t.user_id],
            )
            .await
            .map_err(db)?;
        Ok(())
    }

    async fn token_by_hash(&self, hash: &str) -> Result<Option<Token>> {
        let mut conn = self.pool.get().await?;
        let st = conn
            .stmt(
                "SELECT id, name, hash, scopes, created_at, revoked_at, user_id FROM tokens WHERE hash = $1",
            )
            .await?;
        self.pool.count(1);
        Ok(conn
            .client
            .query_opt(&st, &[&hash])
            .await
            .map_err(db)?
            .map(|r| token_from(&r)))
    }

    async fn token(&self, id: &str) -> Result<Option<Token>> {
        let conn = self.pool.get().await?;
        self.pool.count(1);
        Ok(conn
            .client
            .query_opt(
                "SELECT id, name, hash, scopes, created_at, revoked_at, user_id FROM tokens WHERE id = $1",
                &[&id],
            )
            .await
            .map_err(db)?
            .map(|r| token_from(&r)))
    }

    async fn list_tokens(&self) -> Result<Vec<Token>> {
        let conn = self.pool.get().await?;
        self.pool.count(1);
        Ok(conn
            .client
            .query(
                "SELECT id, name, hash, scopes, created_at, revoked_at, user_id FROM tokens ORDER BY created_at",
                &[],
            )
            .await
            .map_err(db)?
            .iter()
            .map(token_from)
            .collect())
    }

    async fn revoke_token(&self, id_or_name: &str, now_ms: i64) -> Result<bool> {
        let conn = self.pool.get().await?;
        self.pool.count(1);
        conn.client
            .execute(
                "UPDATE tokens SET revoked_at = $2 WHERE (id = $1 OR name = $1) AND revoked_at IS NULL",
                &[&id_or_name, &now_ms],
            )
            .await
            .map(|n| n > 0)
            .map_err(db)
    }
}
