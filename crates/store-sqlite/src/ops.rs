//! `Store` operations as SQL.

use async_trait::async_trait;
use domain::event::{GENESIS, Hashed, chain_hash};
use domain::run::{Position, RunStatus, StepStatus, WaitReason};
use rusqlite::{Connection, OptionalExtension, Row, params};
use store::{
    Claimed, Commit, Created, Effect, EffectStatus, Error, Event, NewEvent, NewRun, OpResult,
    Result, Run, RunDetail, RunFilter, StepRecord, Store, Token, Work, WorkflowVersion,
};

use crate::{SqliteStore, backend};

pub(crate) fn random_suffix() -> String {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    format!("{:016x}", h.finish())
}

pub(crate) fn db(e: rusqlite::Error) -> Error {
    match &e {
        rusqlite::Error::SqliteFailure(f, msg)
            if f.code == rusqlite::ErrorCode::ConstraintViolation =>
        {
            Error::Duplicate(msg.clone().unwrap_or_default())
        }
        _ => backend(e),
    }
}

const RUN_COLS: &str = "id, workflow, version, status, wait, step_index, failed_attempts, outcome, error, input, idempotency_key, rev, created_at, updated_at";

fn run_from(r: &Row<'_>) -> rusqlite::Result<Run> {
    let status: String = r.get(3)?;
    let wait: Option<String> = r.get(4)?;
    Ok(Run {
        id: r.get(0)?,
        workflow: r.get(1)?,
        version: r.get(2)?,
        status: status.parse().unwrap_or(RunStatus::Failed),
        wait: wait.as_deref().and_then(WaitReason::parse),
        position: Position {
            index: r.get::<_, i64>(5)? as usize,
            failed_attempts: r.get::<_, i64>(6)? as u32,
        },
        outcome: r.get(7)?,
        error: r.get(8)?,
        input: r.get(9)?,
        idempotency_key: r.get(10)?,
        rev: r.get(11)?,
        created_at_ms: r.get(12)?,
        updated_at_ms: r.get(13)?,
    })
}

pub(crate) fn step_status(s: &str) -> StepStatus {
    match s {
        "completed" => StepStatus::Completed,
        "skipped" => StepStatus::Skipped,
        "waiting" => StepStatus::Waiting,
        _ => StepStatus::Failed,
    }
}

pub(crate) fn load_run(conn: &Connection, id: &str) -> Result<Option<Run>> {
    conn.prepare_cached(&format!("SELECT {RUN_COLS} FROM runs WHERE id = ?1"))
        .map_err(db)?
        .query_row([id], run_from)
        .optional()
        .map_err(db)
}

/// Appends events to a run's chain; returns the new (seq, hash).
pub(crate) fn append_events(
    conn: &Connection,
    run_id: &str,
    mut seq: i64,
    mut prev: String,
    events: &[NewEvent],
) -> Result<(i64, String)> {
    let mut stmt = conn
        .prepare_cached("INSERT INTO events (run_id, seq, kind, actor, data, at, prev_hash, hash) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)")
        .map_err(db)?;
    for e in events {
        seq += 1;
        let hash = chain_hash(
            &prev,
            Hashed {
                run_id,
                seq,
                kind: &e.kind,
                actor: &e.actor,
                data: &e.data,
                at_ms: e.at_ms,
            },
        );
        stmt.execute(params![
            run_id, seq, e.kind, e.actor, e.data, e.at_ms, prev, hash
        ])
        .map_err(db)?;
        prev = hash;
    }
    Ok((seq, prev))
}

/// `(rev, event_seq, last_hash, status, step_seq)` of a run.
type ChainHead = (i64, i64, String, String, i64);

pub(crate) fn chain_head(conn: &Connection, run_id: &str) -> Result<Option<ChainHead>> {
    conn.prepare_cached(
        "SELECT rev, event_seq, last_hash, status, step_seq FROM runs WHERE id = ?1",
    )
    .map_err(db)?
    .query_row([run_id], |r| {
        Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
    })
    .optional()
    .map_err(db)
}

fn upsert_effect(conn: &Connection, e: &Effect) -> Result<()> {
    match e.status {
        EffectStatus::Started => conn
            .prepare_cached(
                "INSERT INTO effects (key, run_id, step_id, status, request_digest, started_at) VALUES (?1, ?2, ?3, 'started', ?4, ?5)
                 ON CONFLICT (key) DO UPDATE SET status = 'started', request_digest = excluded.request_digest, started_at = excluded.started_at, completed_at = NULL",
            )
            .map_err(db)?
            .execute(params![e.key, e.run_id, e.step_id, e.request_digest, e.at_ms]),
        EffectStatus::Completed | EffectStatus::Failed => conn
            .prepare_cached(
                "INSERT INTO effects (key, run_id, step_id, status, external_id, started_at, completed_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?6)
                 ON CONFLICT (key) DO UPDATE SET status = excluded.status, external_id = excluded.external_id, completed_at = excluded.completed_at",
            )
            .map_err(db)?
            .execute(params![e.key, e.run_id, e.step_id, e.status.as_str(), e.external_id, e.at_ms]),
    }
    .map_err(db)?;
    Ok(())
}

fn apply_commit(conn: &Connection, c: &Commit) -> Result<i64> {
    let (rev, seq, hash, _, step_seq) = chain_head(conn, &c.run_id)?.ok_or(Error::NotFound)?;
    if rev != c.expect_rev {
        return Err(Error::Conflict(c.run_id.clone()));
    }
    let (seq, hash) = append_events(conn, &c.run_id, seq, hash, &c.events)?;
    let mut step_seq = step_seq;
    if let Some(s) = &c.step {
        step_seq += 1;
        conn.prepare_cached(
            "INSERT INTO steps (run_id, seq, step_index, step_id, attempt, status, output, error, started_at, finished_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
        )
        .map_err(db)?
        .execute(params![
            c.run_id,
            step_seq,
            s.index as i64,
            s.step_id,
            s.attempt,
            s.status.as_str(),
            s.output,
            s.error,
            s.started_at_ms,
            s.finished_at_ms
        ])
        .map_err(db)?;
    }
    if let Some(e) = &c.effect {
        upsert_effect(conn, e)?;
    }
    conn.prepare_cached(
        "UPDATE runs SET status = ?2, wait = ?3, step_index = ?4, failed_attempts = ?5, outcome = ?6, error = ?7,
         rev = rev + 1, event_seq = ?8, last_hash = ?9, step_seq = ?10, updated_at = ?11 WHERE id = ?1",
    )
    .map_err(db)?
    .execute(params![
        c.run_id,
        c.status.as_str(),
        c.wait.map(WaitReason::as_str),
        c.position.index as i64,
        c.position.failed_attempts,
        c.outcome,
        c.error,
        seq,
        hash,
        step_seq,
        c.at_ms
    ])
    .map_err(db)?;
    match c.work {
        Work::Keep { lease_until_ms } => conn
            .prepare_cached("UPDATE work SET lease_until = ?2 WHERE run_id = ?1")
            .map_err(db)?
            .execute(params![c.run_id, lease_until_ms]),
        Work::At { run_at_ms } => conn
            .prepare_cached(
                "INSERT INTO work (run_id, run_at, locked_by, lease_until) VALUES (?1, ?2, NULL, NULL)
                 ON CONFLICT (run_id) DO UPDATE SET run_at = excluded.run_at, locked_by = NULL, lease_until = NULL",
            )
            .map_err(db)?
            .execute(params![c.run_id, run_at_ms]),
        Work::Remove => conn
            .prepare_cached("DELETE FROM work WHERE run_id = ?1")
            .map_err(db)?
            .execute([&c.run_id]),
    }
    .map_err(db)?;
    Ok(rev + 1)
}

fn claim(
    conn: &Connection,
    node: &str,
    now: i64,
    until: i64,
    limit: usize,
) -> Result<Vec<Claimed>> {
    let mut ids: Vec<String> = conn
        .prepare_cached("SELECT run_id FROM work WHERE locked_by IS NULL AND run_at <= ?1 ORDER BY run_at LIMIT ?2")
        .map_err(db)?
        .query_map(params![now, limit as i64], |r| r.get(0))
        .map_err(db)?
        .collect::<rusqlite::Result<_>>()
        .map_err(db)?;
    if ids.len() < limit {
        let expired: Vec<String> = conn
            .prepare_cached(
                "SELECT run_id FROM work WHERE locked_by IS NOT NULL AND lease_until < ?1 LIMIT ?2",
            )
            .map_err(db)?
            .query_map(params![now, (limit - ids.len()) as i64], |r| r.get(0))
            .map_err(db)?
            .collect::<rusqlite::Result<_>>()
            .map_err(db)?;
        ids.extend(expired);
    }
    let mut out = Vec::with_capacity(ids.len());
    for id in ids {
        conn.prepare_cached("UPDATE work SET locked_by = ?2, lease_until = ?3 WHERE run_id = ?1")
            .map_err(db)?
            .execute(params![id, node, until])
            .map_err(db)?;
        // What the run is resumed from (for `run.resumed`): the row itself becomes `running`.
        let before: Option<(String, Option<String>)> = conn
            .prepare_cached("SELECT status, wait FROM runs WHERE id = ?1")
            .map_err(db)?
            .query_row([&id], |r| Ok((r.get(0)?, r.get(1)?)))
            .optional()
            .map_err(db)?;
        // Bump the revision: whoever held the run before is now fenced out.
        conn.prepare_cached("UPDATE runs SET rev = rev + 1, status = 'running', wait = NULL, updated_at = ?2 WHERE id = ?1")
            .map_err(db)?
            .execute(params![id, now])
            .map_err(db)?;
        let Some(mut run) = load_run(conn, &id)? else {
            continue;
        };
        if let Some((status, wait)) = before {
            run.status = status.parse().unwrap_or(run.status);
            run.wait = wait.as_deref().and_then(WaitReason::parse);
        }
        let mut outputs: Vec<(usize, Option<String>)> = Vec::new();
        {
            let mut stmt = conn
                .prepare_cached("SELECT step_index, output FROM steps WHERE run_id = ?1 AND status IN ('completed', 'skipped') AND step_index < ?2 ORDER BY seq")
                .map_err(db)?;
            let rows = stmt
                .query_map(params![id, run.position.index as i64], |r| {
                    Ok((r.get::<_, i64>(0)? as usize, r.get(1)?))
                })
                .map_err(db)?;
            for row in rows {
                let (i, o) = row.map_err(db)?;
                outputs.retain(|(j, _)| *j != i);
                outputs.push((i, o));
            }
        }
        let open_effects = effects_of(conn, &id, true)?;
        out.push(Claimed {
            run,
            outputs,
            open_effects,
        });
    }
    Ok(out)
}

fn effects_of(conn: &Connection, run_id: &str, open_only: bool) -> Result<Vec<Effect>> {
    let sql = if open_only {
        "SELECT key, run_id, step_id, status, request_digest, external_id, COALESCE(completed_at, started_at) FROM effects WHERE run_id = ?1 AND status = 'started'"
    } else {
        "SELECT key, run_id, step_id, status, request_digest, external_id, COALESCE(completed_at, started_at) FROM effects WHERE run_id = ?1 ORDER BY started_at"
    };
    let mut stmt = conn.prepare_cached(sql).map_err(db)?;
    let rows = stmt
        .query_map([run_id], |r| {
            let status: String = r.get(3)?;
            Ok(Effect {
                key: r.get(0)?,
                run_id: r.get(1)?,
                step_id: r.get(2)?,
                status: EffectStatus::parse(&status),
                request_digest: r.get(4)?,
                external_id: r.get(5)?,
                at_ms: r.get(6)?,
            })
        })
        .map_err(db)?;
    rows.collect::<rusqlite::Result<_>>().map_err(db)
}

fn operator_event(
    conn: &Connection,
    run_id: &str,
    kind: &str,
    actor: &str,
    data: String,
    now: i64,
) -> Result<()> {
    let (_, seq, hash, _, _) = chain_head(conn, run_id)?.ok_or(Error::NotFound)?;
    let (seq, hash) = append_events(
        conn,
        run_id,
        seq,
        hash,
        &[NewEvent {
            kind: kind.into(),
            actor: actor.into(),
            data,
            at_ms: now,
        }],
    )?;
    conn.prepare_cached("UPDATE runs SET event_seq = ?2, last_hash = ?3 WHERE id = ?1")
        .map_err(db)?
        .execute(params![run_id, seq, hash])
        .map_err(db)?;
    Ok(())
}

fn token_from(r: &Row<'_>) -> rusqlite::Result<Token> {
    let scopes: String = r.get(3)?;
    Ok(Token {
        id: r.get(0)?,
        name: r.get(1)?,
        hash: r.get(2)?,
        scopes: scopes
            .split(',')
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect(),
        created_at_ms: r.get(4)?,
        revoked_at_ms: r.get(5)?,
        user_id: r.get(6)?,
    })
}

#[async_trait]
impl Store for SqliteStore {
    fn backend(&self) -> &'static str {
        "sqlite"
    }

    async fn save_workflow(
        &self,
        name: &str,
        hash: &str,
        source: &str,
        path: &str,
        now_ms: i64,
    ) -> Result<i64> {
        let (name, hash, source, path) = (
            name.to_string(),
            hash.to_string(),
            source.to_string(),
            path.to_string(),
        );
        self.write(move |conn| {
            if let Some(v) = conn
                .query_row("SELECT version FROM workflows WHERE name = ?1 AND hash = ?2", params![name, hash], |r| r.get(0))
                .optional()
                .map_err(db)?
            {
                return Ok(v);
            }
            let v: i64 = conn
                .query_row("SELECT COALESCE(MAX(version), 0) + 1 FROM workflows WHERE name = ?1", [&name], |r| r.get(0))
                .map_err(db)?;
            conn.execute(
                "INSERT INTO workflows (name, version, hash, source, path, created_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![name, v, hash, source, path, now_ms],
            )
            .map_err(db)?;
            Ok(v)
        })
        .await
    }

    async fn workflow_version(&self, name: &str, version: i64) -> Result<Option<WorkflowVersion>> {
        let name = name.to_string();
        self.read(move |conn| {
            conn.query_row(
                "SELECT name, version, hash, source, path, created_at FROM workflows WHERE name = ?1 AND version = ?2",
                params![name, version],
                |r| {
                    Ok(WorkflowVersion {
                        name: r.get(0)?,
                        version: r.get(1)?,
                        hash: r.get(2)?,
                        source: r.get(3)?,
                        path: r.get(4)?,
                        created_at_ms: r.get(5)?,
                    })
                },
            )
            .optional()
            .map_err(db)
        })
        .await
    }

    async fn create_run(&self, run: NewRun) -> Result<Created> {
        self.write(move |conn| {
            if let Some(key) = &run.idempotency_key {
                let existing: Option<(String, String)> = conn
                    .prepare_cached("SELECT id, status FROM runs WHERE workflow = ?1 AND idempotency_key = ?2")
                    .map_err(db)?
                    .query_row(params![run.workflow, key], |r| Ok((r.get(0)?, r.get(1)?)))
                    .optional()
                    .map_err(db)?;
                if let Some((id, status)) = existing {
                    return Ok(Created::Existing { id, status: status.parse().unwrap_or(RunStatus::Queued) });
                }
            }
            let (seq, hash) = append_events(conn, &run.id, 0, GENESIS.to_string(), &run.events)?;
            conn.prepare_cached(
                "INSERT INTO runs (id, workflow, version, status, input, idempotency_key, rev, event_seq, last_hash, created_at, updated_at)
                 VALUES (?1, ?2, ?3, 'queued', ?4, ?5, 1, ?6, ?7, ?8, ?8)",
            )
            .map_err(db)?
            .execute(params![run.id, run.workflow, run.version, run.input, run.idempotency_key, seq, hash, run.created_at_ms])
            .map_err(db)?;
            conn.prepare_cached("INSERT INTO work (run_id, run_at, locked_by, lease_until) VALUES (?1, ?2, ?3, ?4)")
                .map_err(db)?
                .execute(params![
                    run.id,
                    run.created_at_ms,
                    run.lease.as_ref().map(|l| l.node.clone()),
                    run.lease.as_ref().map(|l| l.until_ms)
                ])
                .map_err(db)?;
            Ok(Created::New)
        })
        .await
    }

    async fn commit(&self, commit: Commit) -> Result<i64> {
        self.write(move |conn| apply_commit(conn, &commit)).await
    }

    async fn claim(
        &self,
        node: &str,
        now_ms: i64,
        lease_until_ms: i64,
        limit: usize,
    ) -> Result<Vec<Claimed>> {
        let node = node.to_string();
        self.write(move |conn| claim(conn, &node, now_ms, lease_until_ms, limit))
            .await
    }

    async fn renew_leases(&self, node: &str, runs: &[String], lease_until_ms: i64) -> Result<u64> {
        if runs.is_empty() {
            return Ok(0);
        }
        let node = node.to_string();
        let runs = serde_json::to_string(runs).map_err(|e| Error::Backend(e.to_string()))?;
        self.write(move |conn| {
            conn.execute(
                "UPDATE work SET lease_until = ?2 WHERE locked_by = ?1 AND run_id IN (SELECT value FROM json_each(?3))",
                params![node, lease_until_ms, runs],
            )
            .map(|n| n as u64)
            .map_err(db)
        })
        .await
    }

    async fn release_leases(&self, node: &str) -> Result<u64> {
        let node = node.to_string();
        self.write(move |conn| {
            conn.execute(
                "UPDATE work SET locked_by = NULL, lease_until = NULL WHERE locked_by = ?1",
                [node],
            )
            .map(|n| n as u64)
            .map_err(db)
        })
        .await
    }

    async fn next_due(&self) -> Result<Option<i64>> {
        self.read(|conn| {
            let a: Option<i64> = conn
                .query_row(
                    "SELECT MIN(run_at) FROM work WHERE locked_by IS NULL",
                    [],
                    |r| r.get(0),
                )
                .map_err(db)?;
            let b: Option<i64> = conn
                .query_row(
                    "SELECT MIN(lease_until) FROM work WHERE locked_by IS NOT NULL",
                    [],
                    |r| r.get(0),
                )
                .map_err(db)?;
            Ok(match (a, b) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            })
        })
        .await
    }

    async fn retry_run(&self, id: &str, actor: &str, now_ms: i64) -> Result<OpResult> {
        let (id, actor) = (id.to_string(), actor.to_string());
        self.write(move |conn| {
            let Some(run) = load_run(conn, &id)? else { return Ok(OpResult::NotFound) };
            if !run.status.can_retry() {
                return Ok(OpResult::Refused(run.status));
            }
            operator_event(
                conn,
                &id,
                domain::event::kind::RUN_RETRIED,
                &actor,
                serde_json::json!({ "from_step": run.position.index, "previous_error": run.error }).to_string(),
                now_ms,
            )?;
            conn.execute(
                "UPDATE runs SET status = 'queued', wait = NULL, failed_attempts = 0, error = NULL, rev = rev + 1, updated_at = ?2 WHERE id = ?1",
                params![id, now_ms],
            )
            .map_err(db)?;
            conn.execute(
                "INSERT INTO work (run_id, run_at) VALUES (?1, ?2) ON CONFLICT (run_id) DO UPDATE SET run_at = excluded.run_at, locked_by = NULL, lease_until = NULL",
                params![id, now_ms],
            )
            .map_err(db)?;
            Ok(OpResult::Done(load_run(conn, &id)?.ok_or(Error::NotFound)?))
        })
        .await
    }

    async fn cancel_run(&self, id: &str, actor: &str, now_ms: i64) -> Result<OpResult> {
        let (id, actor) = (id.to_string(), actor.to_string());
        self.write(move |conn| {
            let Some(run) = load_run(conn, &id)? else { return Ok(OpResult::NotFound) };
            if !run.status.can_cancel() {
                return Ok(OpResult::Refused(run.status));
            }
            operator_event(
                conn,
                &id,
                domain::event::kind::RUN_CANCELLED,
                &actor,
                serde_json::json!({ "from_status": run.status.as_str(), "at_step": run.position.index }).to_string(),
                now_ms,
            )?;
            conn.execute(
                "UPDATE runs SET status = 'cancelled', wait = NULL, rev = rev + 1, updated_at = ?2 WHERE id = ?1",
                params![id, now_ms],
            )
            .map_err(db)?;
            conn.execute("DELETE FROM work WHERE run_id = ?1", [&id]).map_err(db)?;
            Ok(OpResult::Done(load_run(conn, &id)?.ok_or(Error::NotFound)?))
        })
        .await
    }

    async fn run(&self, id: &str) -> Result<Option<Run>> {
        let id = id.to_string();
        self.read(move |conn| load_run(conn, &id)).await
    }

    async fn run_detail(&self, id: &str) -> Result<Option<RunDetail>> {
        let id = id.to_string();
        self.read(move |conn| {
            let Some(run) = load_run(conn, &id)? else { return Ok(None) };
            let mut stmt = conn
                .prepare_cached("SELECT step_index, step_id, attempt, status, output, error, started_at, finished_at FROM steps WHERE run_id = ?1 ORDER BY seq")
                .map_err(db)?;
            let steps = stmt
                .query_map([&id], |r| {
                    let status: String = r.get(3)?;
                    Ok(StepRecord {
                        index: r.get::<_, i64>(0)? as usize,
                        step_id: r.get(1)?,
                        attempt: r.get(2)?,
                        status: step_status(&status),
                        output: r.get(4)?,
                        error: r.get(5)?,
                        started_at_ms: r.get(6)?,
                        finished_at_ms: r.get(7)?,
                    })
                })
                .map_err(db)?
                .collect::<rusqlite::Result<Vec<_>>>()
                .map_err(db)?;
            let effects = effects_of(conn, &id, false)?;
            Ok(Some(RunDetail { run, steps, effects }))
        })
        .await
    }

    async fn list_runs(&self, f: &RunFilter) -> Result<Vec<Run>> {
        let f = f.clone();
        self.read(move |conn| {
            let mut sql = format!("SELECT {RUN_COLS} FROM runs WHERE 1 = 1");
            let mut args: Vec<String> = Vec::new();
            if let Some(w) = &f.workflow {
                args.push(w.clone());
                sql.push_str(&format!(" AND workflow = ?{}", args.len()));
            }
            if let Some(s) = f.status {
                args.push(s.as_str().to_string());
                sql.push_str(&format!(" AND status = ?{}", args.len()));
            }
            if let Some(b) = &f.before {
                args.push(b.clone());
                sql.push_str(&format!(" AND id < ?{}", args.len()));
            }
            if let Some(t) = &f.text {
                // Only letters and digits, so the quotes are safe.
                let query = store::search_words(t)
                    .iter()
                    .map(|w| format!("\"{}\"{}", w.word, if w.prefix { "*" } else { "" }))
                    .collect::<Vec<_>>()
                    .join(" AND ");
                if query.is_empty() {
                    return Ok(Vec::new());
                }
                args.push(query);
                sql.push_str(&format!(
                    " AND id IN (SELECT t.run_id FROM runs_fts JOIN run_text t ON t.rowid = runs_fts.rowid WHERE runs_fts MATCH ?{})",
                    args.len()
                ));
            }
            sql.push_str(&format!(
                " ORDER BY id DESC LIMIT {}",
                f.limit.clamp(1, 1000)
            ));
            let mut stmt = conn.prepare_cached(&sql).map_err(db)?;
            let rows = stmt
                .query_map(rusqlite::params_from_iter(args.iter()), run_from)
                .map_err(db)?;
            rows.collect::<rusqlite::Result<_>>().map_err(db)
        })
        .await
    }

    async fn events(&self, run_id: &str, after_seq: i64, limit: usize) -> Result<Vec<Event>> {
        let run_id = run_id.to_string();
        self.read(move |conn| {
            let mut stmt = conn
                .prepare_cached("SELECT run_id, seq, kind, actor, data, at, prev_hash, hash FROM events WHERE run_id = ?1 AND seq > ?2 ORDER BY seq LIMIT ?3")
                .map_err(db)?;
            let rows = stmt
                .query_map(params![run_id, after_seq, limit as i64], |r| {
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

    async fn run_ids(&self, after: Option<&str>, limit: usize) -> Result<Vec<String>> {
        let after = after.unwrap_or("").to_string();
        self.read(move |conn| {
            let mut stmt = conn
                .prepare_cached("SELECT id FROM runs WHERE id > ?1 ORDER BY id LIMIT ?2")
                .map_err(db)?;
            let rows = stmt
                .query_map(params![after, limit as i64], |r| r.get(0))
                .map_err(db)?;
            rows.collect::<rusqlite::Result<_>>().map_err(db)
        })
        .await
    }

    async fn chain_heads(
        &self,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<store::ChainHead>> {
        let after = after.unwrap_or("").to_string();
        self.read(move |conn| {
            let mut stmt = conn
                .prepare_cached(
                    "SELECT id, event_seq, last_hash FROM runs WHERE id > ?1 ORDER BY id LIMIT ?2",
                )
                .map_err(db)?;
            let rows = stmt
                .query_map(params![after, limit as i64], |r| {
                    Ok(store::ChainHead {
                        run_id: r.get(0)?,
                        seq: r.get(1)?,
                        hash: r.get(2)?,
                    })
                })
                .map_err(db)?;
            rows.collect::<rusqlite::Result<_>>().map_err(db)
        })
        .await
    }

    async fn prunable_runs(
        &self,
        before_ms: i64,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<store::PrunedRun>> {
        let after = after.unwrap_or("").to_string();
        self.read(move |conn| crate::prune::prunable(conn, before_ms, &after, limit))
            .await
    }

    async fn prune_run(&self, summary: &store::PrunedRun) -> Result<bool> {
        let summary = summary.clone();
        self.write(move |conn| crate::prune::prune(conn, &summary))
            .await
    }

    async fn pruned_runs(
        &self,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<store::PrunedRun>> {
        let after = after.unwrap_or("").to_string();
        self.read(move |conn| crate::prune::pruned(conn, &after, limit))
            .await
    }

    async fn create_token(&self, t: Token) -> Result<()> {
        self.write(move |conn| {
            conn.execute(
                "INSERT INTO tokens (id, name, hash, scopes, created_at, revoked_at, user_id) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                params![t.id, t.name, t.hash, t.scopes.join(","), t.created_at_ms, t.revoked_at_ms, t.user_id],
            )
            .map_err(db)?;
            Ok(())
        })
        .await
    }

    async fn token_by_hash(&self, hash: &str) -> Result<Option<Token>> {
        let hash = hash.to_string();
        self.read(move |conn| {
            conn.prepare_cached(
                "SELECT id, name, hash, scopes, created_at, revoked_at, user_id FROM tokens WHERE hash = ?1",
            )
            .map_err(db)?
            .query_row([hash], token_from)
            .optional()
            .map_err(db)
        })
        .await
    }

    async fn token(&self, id: &str) -> Result<Option<Token>> {
        let id = id.to_string();
        self.read(move |conn| {
            conn.prepare_cached(
                "SELECT id, name, hash, scopes, created_at, revoked_at, user_id FROM tokens WHERE id = ?1",
            )
            .map_err(db)?
            .query_row([id], token_from)
            .optional()
            .map_err(db)
        })
        .await
    }

    async fn list_tokens(&self) -> Result<Vec<Token>> {
        self.read(|conn| {
            let mut stmt = conn
                .prepare_cached("SELECT id, name, hash, scopes, created_at, revoked_at, user_id FROM tokens ORDER BY created_at")
                .map_err(db)?;
            let rows = stmt.query_map([], token_from).map_err(db)?;
            rows.collect::<rusqlite::Result<_>>().map_err(db)
        })
        .await
    }

    async fn revoke_token(&self, id_or_name: &str, now_ms: i64) -> Result<bool> {
        let key = id_or_name.to_string();
        self.write(move |conn| {
            conn.execute(
                "UPDATE tokens SET revoked_at = ?2 WHERE (id = ?1 OR name = ?1) AND revoked_at IS NULL",
                params![key, now_ms],
            )
            .map(|n| n > 0)
            .map_err(db)
        })
        .await
    }
}
