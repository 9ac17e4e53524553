//! Group commit for the hot path: `create_run` and `commit` requests from
//! many runs applied in one transaction with array statements.
//!
//! Round trips per batch: `BEGIN` + the inserts of new runs + the row locks
//! of committing runs (pipelined); the look-up of idempotency-key repeats
//! (only when some create found an existing run); every write + `COMMIT`
//! (pipelined). A batch holds at most one request per run, so the chain
//! head each commit extends is the one read under its row lock. Joins with
//! `UNNEST` also name the keys as `= ANY($1)`, so the planner looks rows up
//! by primary key instead of hashing a whole table.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use domain::event::{GENESIS, Hashed, chain_hash};
use domain::run::WaitReason;
use store::{Commit, Created, EffectStatus, Error, NewEvent, NewRun, Result, RunStatus, Work};
use tokio::sync::{mpsc, oneshot};
use tokio_postgres::types::ToSql;

use crate::{CHANNEL, Conn, Pool, SETTLED_CHANNEL, db};

pub(crate) enum Request {
    Create(Box<NewRun>, oneshot::Sender<Result<Created>>),
    Commit(Box<Commit>, oneshot::Sender<Result<i64>>),
}

impl Request {
    fn run_id(&self) -> &str {
        match self {
            Request::Create(r, _) => &r.id,
            Request::Commit(c, _) => &c.run_id,
        }
    }

    fn answer(self, outcome: Result<Outcome>) {
        match (self, outcome) {
            (Request::Create(_, tx), Ok(Outcome::Created(c))) => {
                let _ = tx.send(Ok(c));
            }
            (Request::Commit(_, tx), Ok(Outcome::Committed(r))) => {
                let _ = tx.send(r);
            }
            (Request::Create(_, tx), Err(e)) => {
                let _ = tx.send(Err(e));
            }
            (Request::Commit(_, tx), Err(e)) => {
                let _ = tx.send(Err(e));
            }
            (Request::Create(_, tx), Ok(_)) => {
                let _ = tx.send(Err(Error::Backend("internal: mismatched answer".into())));
            }
            (Request::Commit(_, tx), Ok(_)) => {
                let _ = tx.send(Err(Error::Backend("internal: mismatched answer".into())));
            }
        }
    }
}

pub(crate) enum Outcome {
    Created(Created),
    /// `Conflict` and `NotFound` are per-request answers inside a batch
    /// that committed.
    Committed(Result<i64>),
}

type Rx = Arc<tokio::sync::Mutex<mpsc::UnboundedReceiver<Request>>>;

/// One writer: owns a connection, drains the queue, applies batches.
pub(crate) async fn writer(pool: Arc<Pool>, rx: Rx, max: usize) {
    let mut conn: Option<Conn> = None;
    let mut carry: Vec<Request> = Vec::new();
    loop {
        let mut batch = std::mem::take(&mut carry);
        {
            let mut rx = rx.lock().await;
            if batch.is_empty() {
                match rx.recv().await {
                    Some(r) => batch.push(r),
                    None => return,
                }
            }
            while batch.len() < max {
                match rx.try_recv() {
                    Ok(r) => batch.push(r),
                    Err(_) => break,
                }
            }
        }
        // One request per run per transaction; repeats wait for the next.
        let mut seen = HashSet::with_capacity(batch.len());
        let (now, later): (Vec<Request>, Vec<Request>) = batch
            .into_iter()
            .partition(|r| seen.insert(r.run_id().to_string()));
        carry = later;
        if conn.as_ref().is_none_or(|c| c.client.is_closed()) {
            match pool.open().await {
                Ok(c) => conn = Some(c),
                Err(e) => {
                    tracing::error!(error = %e, "the database writer cannot connect");
                    for r in now {
                        r.answer(Err(Error::Backend(e.to_string())));
                    }
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    continue;
                }
            }
        }
        let c = conn.as_mut().expect("connected above");
        let refs: Vec<&Request> = now.iter().collect();
        match apply(c, &pool, &refs).await {
            Ok(outcomes) => {
                for (r, o) in now.into_iter().zip(outcomes) {
                    r.answer(Ok(o));
                }
            }
            Err(e) if now.len() == 1 => {
                if let Some(r) = now.into_iter().next() {
                    r.answer(Err(e));
                }
            }
            Err(e) => {
                // Replay one by one so a single bad request fails alone.
                tracing::warn!(error = %e, size = now.len(), "group commit failed; replaying its requests one by one");
                for r in now {
                    if c.client.is_closed() {
                        match pool.open().await {
                            Ok(nc) => *c = nc,
                            Err(e) => {
                                r.answer(Err(e));
                                continue;
                            }
                        }
                    }
                    let out = apply(c, &pool, &[&r]).await;
                    r.answer(out.map(|mut v| v.pop().expect("one outcome")));
                }
            }
        }
    }
}

const INSERT_RUNS: &str = "INSERT INTO runs (id, workflow, version, status, input, idempotency_key, rev, event_seq, last_hash, created_at, updated_at)
    SELECT u.id, u.workflow, u.version, 'queued', u.input, u.key, 1, u.seq, u.hash, u.at, u.at
    FROM UNNEST($1::text[], $2::text[], $3::int8[], $4::text[], $5::text[], $6::int8[], $7::text[], $8::int8[])
      AS u(id, workflow, version, input, key, seq, hash, at)
    ON CONFLICT DO NOTHING RETURNING id";
const FIND_EXISTING: &str = "SELECT id, workflow, idempotency_key, status FROM runs
    WHERE id = ANY($1::text[])
       OR (workflow, idempotency_key) IN (SELECT * FROM UNNEST($2::text[], $3::text[]))";
const LOCK_WORK: &str =
    "SELECT run_id FROM work WHERE run_id = ANY($1::text[]) ORDER BY run_id FOR UPDATE";
const LOCK_RUNS: &str = "SELECT id, rev, event_seq, last_hash, step_seq FROM runs WHERE id = ANY($1::text[]) ORDER BY id FOR UPDATE";
const INSERT_EVENTS: &str = "INSERT INTO events (run_id, seq, kind, actor, data, at, prev_hash, hash)
    SELECT * FROM UNNEST($1::text[], $2::int8[], $3::text[], $4::text[], $5::text[], $6::int8[], $7::text[], $8::text[])";
const INSERT_STEPS: &str = "INSERT INTO steps (run_id, seq, step_index, step_id, attempt, status, output, error, started_at, finished_at)
    SELECT * FROM UNNEST($1::text[], $2::int8[], $3::int8[], $4::text[], $5::int8[], $6::text[], $7::text[], $8::text[], $9::int8[], $10::int8[])";
const UPDATE_RUNS: &str = "UPDATE runs r SET status = u.status, wait = u.wait, step_index = u.step_index,
    failed_attempts = u.failed_attempts, outcome = u.outcome, error = u.error, rev = r.rev + 1,
    event_seq = u.seq, last_hash = u.hash, step_seq = u.step_seq, updated_at = u.at
    FROM UNNEST($1::text[], $2::text[], $3::text[], $4::int8[], $5::int8[], $6::text[], $7::text[], $8::int8[], $9::text[], $10::int8[], $11::int8[])
      AS u(id, status, wait, step_index, failed_attempts, outcome, error, seq, hash, step_seq, at)
    WHERE r.id = u.id AND r.id = ANY($1::text[])";
const EFFECTS_STARTED: &str = "INSERT INTO effects (key, run_id, step_id, status, request_digest, started_at)
    SELECT u.key, u.run_id, u.step_id, 'started', u.digest, u.at
    FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::int8[]) AS u(key, run_id, step_id, digest, at)
    ON CONFLICT (key) DO UPDATE SET status = 'started', request_digest = excluded.request_digest,
      started_at = excluded.started_at, completed_at = NULL";
const EFFECTS_ENDED: &str = "INSERT INTO effects (key, run_id, step_id, status, external_id, started_at, completed_at)
    SELECT u.key, u.run_id, u.step_id, u.status, u.external_id, u.at, u.at
    FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::int8[]) AS u(key, run_id, step_id, status, external_id, at)
    ON CONFLICT (key) DO UPDATE SET status = excluded.status, external_id = excluded.external_id,
      completed_at = excluded.completed_at";
/// Extends a lease only when less than half of the requested term is left
/// (`$3` is each commit's time): the node's renewal keeps leases long, so a
/// step commit seldom rewrites the work row — each rewrite is a new row
/// version in every index of the hottest table.
const WORK_KEEP: &str = "UPDATE work w SET lease_until = u.lease_until
    FROM UNNEST($1::text[], $2::int8[], $3::int8[]) AS u(run_id, lease_until, at)
    WHERE w.run_id = u.run_id AND w.run_id = ANY($1::text[])
      AND (w.lease_until IS NULL OR w.lease_until - u.at < (u.lease_until - u.at) / 2)";
const WORK_SET: &str = "INSERT INTO work (run_id, run_at, locked_by, lease_until)
    SELECT * FROM UNNEST($1::text[], $2::int8[], $3::text[], $4::int8[])
    ON CONFLICT (run_id) DO UPDATE SET run_at = excluded.run_at, locked_by = excluded.locked_by,
      lease_until = excluded.lease_until";
const WORK_REMOVE: &str = "DELETE FROM work WHERE run_id = ANY($1::text[])";
const NOTIFY: &str = "SELECT pg_notify($1, $2)";

/// Column arrays for the events insert.
#[derive(Default)]
struct Events {
    run_id: Vec<String>,
    seq: Vec<i64>,
    kind: Vec<String>,
    actor: Vec<String>,
    data: Vec<String>,
    at: Vec<i64>,
    prev: Vec<String>,
    hash: Vec<String>,
}

impl Events {
    /// Appends `events` to the chain whose head is `(seq, prev)`.
    fn chain(
        &mut self,
        run_id: &str,
        mut seq: i64,
        mut prev: String,
        events: &[NewEvent],
    ) -> (i64, String) {
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
            self.run_id.push(run_id.to_string());
            self.seq.push(seq);
            self.kind.push(e.kind.clone());
            self.actor.push(e.actor.clone());
            self.data.push(e.data.clone());
            self.at.push(e.at_ms);
            self.prev.push(std::mem::replace(&mut prev, hash.clone()));
            self.hash.push(hash);
        }
        (seq, prev)
    }

    fn truncate_to(&mut self, keep: &[bool]) {
        macro_rules! filter {
            ($($f:ident),*) => {$(
                let mut i = 0;
                self.$f.retain(|_| { let k = keep[i]; i += 1; k });
            )*};
        }
        filter!(run_id, seq, kind, actor, data, at, prev, hash);
    }
}

#[derive(Default)]
struct WorkSet {
    run_id: Vec<String>,
    run_at: Vec<i64>,
    locked_by: Vec<Option<String>>,
    lease_until: Vec<Option<i64>>,
}

/// Applies `reqs` (at most one per run) in one transaction.
pub(crate) async fn apply(c: &mut Conn, pool: &Pool, reqs: &[&Request]) -> Result<Vec<Outcome>> {
    let r = apply_inner(c, pool, reqs).await;
    if r.is_err() && !c.client.is_closed() {
        // Leave the connection clean for the next batch.
        let _ = c.client.batch_execute("ROLLBACK").await;
    }
    r
}

async fn apply_inner(c: &mut Conn, pool: &Pool, reqs: &[&Request]) -> Result<Vec<Outcome>> {
    let creates: Vec<(usize, &NewRun)> = reqs
        .iter()
        .enumerate()
        .filter_map(|(i, r)| match r {
            Request::Create(n, _) => Some((i, &**n)),
            _ => None,
        })
        .collect();
    let commits: Vec<(usize, &Commit)> = reqs
        .iter()
        .enumerate()
        .filter_map(|(i, r)| match r {
            Request::Commit(cm, _) => Some((i, &**cm)),
            _ => None,
        })
        .collect();
    let st_insert_runs = c.stmt(INSERT_RUNS).await?;
    let st_find = c.stmt(FIND_EXISTING).await?;
    let st_lock_work = c.stmt(LOCK_WORK).await?;
    let st_lock_runs = c.stmt(LOCK_RUNS).await?;
    let st_events = c.stmt(INSERT_EVENTS).await?;
    let st_steps = c.stmt(INSERT_STEPS).await?;
    let st_runs = c.stmt(UPDATE_RUNS).await?;
    let st_eff_started = c.stmt(EFFECTS_STARTED).await?;
    let st_eff_ended = c.stmt(EFFECTS_ENDED).await?;
    let st_keep = c.stmt(WORK_KEEP).await?;
    let st_set = c.stmt(WORK_SET).await?;
    let st_remove = c.stmt(WORK_REMOVE).await?;
    let st_notify = c.stmt(NOTIFY).await?;
    let client = &c.client;
    let mut notify_at: Option<i64> = None;
    let mut due = |at: i64| notify_at = Some(notify_at.map_or(at, |x: i64| x.min(at)));

    // ---- round trip 1: BEGIN, insert new runs, lock committing runs.
    let mut new_events = Events::default();
    let mut new_keep: Vec<Vec<bool>> = Vec::new();
    let (mut ids, mut wfs, mut versions, mut inputs, mut keys, mut seqs, mut hashes, mut ats) = (
        vec![],
        vec![],
        vec![],
        vec![],
        vec![],
        vec![],
        vec![],
        vec![],
    );
    for (_, n) in &creates {
        let before = new_events.run_id.len();
        let (seq, hash) = new_events.chain(&n.id, 0, GENESIS.to_string(), &n.events);
        new_keep.push(vec![true; new_events.run_id.len() - before]);
        ids.push(n.id.clone());
        wfs.push(n.workflow.clone());
        versions.push(n.version);
        inputs.push(n.input.clone());
        keys.push(n.idempotency_key.clone());
        seqs.push(seq);
        hashes.push(hash);
        ats.push(n.created_at_ms);
    }
    let commit_ids: Vec<String> = {
        let mut v: Vec<String> = commits.iter().map(|(_, c)| c.run_id.clone()).collect();
        v.sort();
        v
    };
    let begin = client.batch_execute("BEGIN");
    let insert_runs = async {
        if creates.is_empty() {
            return Ok(Vec::new());
        }
        client
            .query(
                &st_insert_runs,
                &[&ids, &wfs, &versions, &inputs, &keys, &seqs, &hashes, &ats],
            )
            .await
    };
    let lock_work = async {
        if commits.is_empty() {
            return Ok(Vec::new());
        }
        client.query(&st_lock_work, &[&commit_ids]).await
    };
    let lock_runs = async {
        if commits.is_empty() {
            return Ok(Vec::new());
        }
        client.query(&st_lock_runs, &[&commit_ids]).await
    };
    let (b, inserted, _locked_work, heads) = tokio::join!(begin, insert_runs, lock_work, lock_runs);
    pool.count(1 + u64::from(!creates.is_empty()) + 2 * u64::from(!commits.is_empty()));
    b.map_err(db)?;
    let inserted: HashSet<String> = inserted.map_err(db)?.iter().map(|r| r.get(0)).collect();
    let heads = heads.map_err(db)?;

    // ---- round trip 2 (only for repeats): who already has these keys?
    let mut created: Vec<Created> = Vec::with_capacity(creates.len());
    let missing: Vec<&NewRun> = creates
        .iter()
        .map(|(_, n)| *n)
        .filter(|n| !inserted.contains(&n.id))
        .collect();
    let mut existing_by_id: HashSet<String> = HashSet::new();
    let mut existing_by_key: HashMap<(String, String), (String, String)> = HashMap::new();
    if !missing.is_empty() {
        let mids: Vec<String> = missing.iter().map(|n| n.id.clone()).collect();
        let (mwf, mkey): (Vec<String>, Vec<String>) = missing
            .iter()
            .filter_map(|n| Some((n.workflow.clone(), n.idempotency_key.clone()?)))
            .unzip();
        pool.count(1);
        for row in client
            .query(&st_find, &[&mids, &mwf, &mkey])
            .await
            .map_err(db)?
        {
            let id: String = row.get(0);
            if mids.contains(&id) {
                existing_by_id.insert(id.clone());
            }
            if let Some(k) = row.get::<_, Option<String>>(2) {
                existing_by_key.insert((row.get(1), k), (id, row.get(3)));
            }
        }
    }
    let mut work_set = WorkSet::default();
    let mut keep_events: Vec<bool> = Vec::with_capacity(new_events.run_id.len());
    for ((_, n), keep) in creates.iter().zip(new_keep) {
        let is_new = inserted.contains(&n.id);
        keep_events.extend(keep.iter().map(|_| is_new));
        if is_new {
            work_set.run_id.push(n.id.clone());
            work_set.run_at.push(n.created_at_ms);
            work_set
                .locked_by
                .push(n.lease.as_ref().map(|l| l.node.clone()));
            work_set
                .lease_until
                .push(n.lease.as_ref().map(|l| l.until_ms));
            if n.lease.is_none() {
                due(n.created_at_ms);
            }
            created.push(Created::New);
        } else if existing_by_id.contains(&n.id) {
            // A replay after a commit whose answer was lost: it is ours.
            created.push(Created::New);
        } else {
            let found = n
                .idempotency_key
                .as_ref()
                .and_then(|k| existing_by_key.get(&(n.workflow.clone(), k.clone())));
            match found {
                Some((id, status)) => created.push(Created::Existing {
                    id: id.clone(),
                    status: status.parse().unwrap_or(RunStatus::Queued),
                }),
                None => {
                    return Err(Error::Backend(format!(
                        "run {} was neither inserted nor found",
                        n.id
                    )));
                }
            }
        }
    }
    new_events.truncate_to(&keep_events);

    // ---- commits: check fencing against the heads read under lock.
    let mut head: HashMap<String, (i64, i64, String, i64)> = heads
        .iter()
        .map(|r| (r.get(0), (r.get(1), r.get(2), r.get(3), r.get(4))))
        .collect();
    let mut events = new_events;
    let mut committed: Vec<Result<i64>> = Vec::with_capacity(commits.len());
    let mut steps = (
        vec![],
        vec![],
        vec![],
        vec![],
        vec![],
        vec![],
        vec![],
        vec![],
        vec![],
        vec![],
    );
    let mut runs = (
        vec![],
        vec![],
        vec![],
        vec![],
        vec![],
        vec![],
        vec![],
        vec![],
        vec![],
        vec![],
        vec![],
    );
    let mut started = (vec![], vec![], vec![], vec![], vec![]);
    let mut ended = (vec![], vec![], vec![], vec![], vec![], vec![]);
    let (mut keep_ids, mut keep_until, mut keep_at) = (vec![], vec![], vec![]);
    let mut remove: Vec<String> = vec![];
    let mut settled: Vec<String> = vec![];
    for (_, cm) in &commits {
        let Some((rev, seq, hash, step_seq)) = head.remove(&cm.run_id) else {
            committed.push(Err(Error::NotFound));
            continue;
        };
        if rev != cm.expect_rev {
            committed.push(Err(Error::Conflict(cm.run_id.clone())));
            continue;
        }
        let (seq, hash) = events.chain(&cm.run_id, seq, hash, &cm.events);
        let mut step_seq = step_seq;
        if let Some(s) = &cm.step {
            step_seq += 1;
            steps.0.push(cm.run_id.clone());
            steps.1.push(step_seq);
            steps.2.push(s.index as i64);
            steps.3.push(s.step_id.clone());
            steps.4.push(i64::from(s.attempt));
            steps.5.push(s.status.as_str().to_string());
            steps.6.push(s.output.clone());
            steps.7.push(s.error.clone());
            steps.8.push(s.started_at_ms);
            steps.9.push(s.finished_at_ms);
        }
        if let Some(e) = &cm.effect {
            match e.status {
                EffectStatus::Started => {
                    started.0.push(e.key.clone());
                    started.1.push(e.run_id.clone());
                    started.2.push(e.step_id.clone());
                    started.3.push(e.request_digest.clone());
                    started.4.push(e.at_ms);
                }
                EffectStatus::Completed | EffectStatus::Failed => {
                    ended.0.push(e.key.clone());
                    ended.1.push(e.run_id.clone());
                    ended.2.push(e.step_id.clone());
                    ended.3.push(e.status.as_str().to_string());
                    ended.4.push(e.external_id.clone());
                    ended.5.push(e.at_ms);
                }
            }
        }
        runs.0.push(cm.run_id.clone());
        runs.1.push(cm.status.as_str().to_string());
        runs.2
            .push(cm.wait.map(WaitReason::as_str).map(str::to_string));
        runs.3.push(cm.position.index as i64);
        runs.4.push(i64::from(cm.position.failed_attempts));
        runs.5.push(cm.outcome.clone());
        runs.6.push(cm.error.clone());
        runs.7.push(seq);
        runs.8.push(hash);
        runs.9.push(step_seq);
        runs.10.push(cm.at_ms);
        match cm.work {
            Work::Keep { lease_until_ms } => {
                keep_ids.push(cm.run_id.clone());
                keep_until.push(lease_until_ms);
                keep_at.push(cm.at_ms);
            }
            Work::At { run_at_ms } => {
                work_set.run_id.push(cm.run_id.clone());
                work_set.run_at.push(run_at_ms);
                work_set.locked_by.push(None);
                work_set.lease_until.push(None);
                due(run_at_ms);
            }
            Work::Remove => remove.push(cm.run_id.clone()),
        }
        if cm.status.is_settled(cm.wait) {
            settled.push(cm.run_id.clone());
        }
        committed.push(Ok(rev + 1));
    }

    // ---- round trip 3: every write, then COMMIT.
    pool.churned(
        (work_set.run_id.len() - created.len().min(work_set.run_id.len())
            + remove.len()
            + keep_ids.len()) as u64,
    );
    let payload = notify_at.map(|at| at.to_string());
    let settled_payloads = crate::settled_payloads(&settled);
    macro_rules! params {
        ($($x:expr),* $(,)?) => { vec![$(&$x as &(dyn ToSql + Sync)),*] };
    }
    let e = &events;
    let p_events = params![
        e.run_id, e.seq, e.kind, e.actor, e.data, e.at, e.prev, e.hash
    ];
    let p_steps = params![
        steps.0, steps.1, steps.2, steps.3, steps.4, steps.5, steps.6, steps.7, steps.8, steps.9
    ];
    let p_runs = params![
        runs.0, runs.1, runs.2, runs.3, runs.4, runs.5, runs.6, runs.7, runs.8, runs.9, runs.10
    ];
    let p_started = params![started.0, started.1, started.2, started.3, started.4];
    let p_ended = params![ended.0, ended.1, ended.2, ended.3, ended.4, ended.5];
    let p_keep = params![keep_ids, keep_until, keep_at];
    let p_set = params![
        work_set.run_id,
        work_set.run_at,
        work_set.locked_by,
        work_set.lease_until
    ];
    let p_remove = params![remove];
    let writes = [
        exec(client, &st_events, !e.run_id.is_empty(), &p_events),
        exec(client, &st_steps, !steps.0.is_empty(), &p_steps),
        exec(client, &st_runs, !runs.0.is_empty(), &p_runs),
        exec(client, &st_eff_started, !started.0.is_empty(), &p_started),
        exec(client, &st_eff_ended, !ended.0.is_empty(), &p_ended),
        exec(client, &st_keep, !keep_ids.is_empty(), &p_keep),
        exec(client, &st_set, !work_set.run_id.is_empty(), &p_set),
        exec(client, &st_remove, !remove.is_empty(), &p_remove),
    ];
    let sent = 1
        + [
            !e.run_id.is_empty(),
            !steps.0.is_empty(),
            !runs.0.is_empty(),
            !started.0.is_empty(),
            !ended.0.is_empty(),
            !keep_ids.is_empty(),
            !work_set.run_id.is_empty(),
            !remove.is_empty(),
            payload.is_some(),
        ]
        .iter()
        .filter(|b| **b)
        .count() as u64
        + settled_payloads.len() as u64;
    let notify = async {
        match &payload {
            Some(p) => client.query(&st_notify, &[&CHANNEL, p]).await.map(|_| ()),
            None => Ok(()),
        }
    };
    // Waiters on other nodes (`?wait=`) learn which runs settled.
    let notify_settled = futures_util::future::join_all(settled_payloads.iter().map(|p| {
        let st = &st_notify;
        async move { client.query(st, &[&SETTLED_CHANNEL, p]).await }
    }));
    let commit = client.batch_execute("COMMIT");
    let (written, notified, notified_settled, done) = tokio::join!(
        futures_util::future::join_all(writes),
        notify,
        notify_settled,
        commit
    );
    pool.count(sent);
    for w in written {
        w.map_err(db)?;
    }
    notified.map_err(db)?;
    for n in notified_settled {
        n.map_err(db)?;
    }
    done.map_err(db)?;

    // Answers in request order.
    let mut created = created.into_iter();
    let mut committed = committed.into_iter();
    Ok(reqs
        .iter()
        .map(|r| match r {
            Request::Create(..) => Outcome::Created(created.next().expect("one per create")),
            Request::Commit(..) => Outcome::Committed(committed.next().expect("one per commit")),
        })
        .collect())
}

/// Runs one write of a batch, or nothing when its arrays are empty.
async fn exec(
    client: &tokio_postgres::Client,
    st: &tokio_postgres::Statement,
    on: bool,
    params: &[&(dyn ToSql + Sync)],
) -> std::result::Result<(), tokio_postgres::Error> {
    if on {
        client.execute(st, params).await.map(|_| ())
    } else {
        Ok(())
    }
}
