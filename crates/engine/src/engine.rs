//! The engine handle: intake, operator commands, and the background loops
//! (poller, lease renewal) that keep runs moving.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use domain::event::kind;
use domain::run::{Position, RunStatus};
use domain::workflow::FieldError;
use serde_json::{Value as Json, json};
use store::{Created, Lease, NewEvent, NewRun, OpResult, Store};
use tokio::sync::{Notify, Semaphore, oneshot};

use crate::catalog::Catalog;
use crate::now_ms;

/// Engine tuning. Defaults suit one node on SQLite.
/// [`Config::in_flight_margin_ms`] unless configured.
pub const DEFAULT_IN_FLIGHT_MARGIN_MS: u64 = 30_000;

#[derive(Debug, Clone)]
pub struct Config {
    /// Runs driven at once by this node.
    pub max_in_flight: usize,
    /// How long a claim holds without renewal.
    pub lease_ms: i64,
    /// Longest sleep of the poller between looks at the queue.
    pub poll_ms: u64,
    /// Execute work on this node (false for an API-only node).
    pub workers: bool,
    /// How long after a call's own deadline it may still land at the
    /// target (queues, retries inside the vendor): an effect that started
    /// and never completed is reconciled only once its step's call window
    /// plus this margin has passed since `effect.started`.
    pub in_flight_margin_ms: u64,
    /// How often a `?wait=` caller looks at the store itself, in case no
    /// wake-up reaches it (another node drives the run). With a store that
    /// announces settled runs (PostgreSQL) this is only a safety net and
    /// the look is at most every 2 s.
    pub wait_poll_ms: u64,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            max_in_flight: 512,
            lease_ms: 30_000,
            poll_ms: 1_000,
            workers: true,
            in_flight_margin_ms: DEFAULT_IN_FLIGHT_MARGIN_MS,
            wait_poll_ms: 250,
        }
    }
}

/// Why a submission was refused. Nothing was written.
#[derive(Debug, thiserror::Error)]
pub enum SubmitError {
    #[error("unknown workflow {0:?}")]
    UnknownWorkflow(String),
    #[error("input is invalid")]
    InvalidInput(Vec<FieldError>),
    #[error(transparent)]
    Store(#[from] store::Error),
}

/// A run created (or found by idempotency key).
#[derive(Debug, Clone, PartialEq)]
pub struct Submitted {
    pub run_id: String,
    pub status: RunStatus,
    /// False when the idempotency key returned an existing run.
    pub created: bool,
}

pub(crate) struct Inner {
    pub store: Arc<dyn Store>,
    pub catalog: Arc<Catalog>,
    pub config: Config,
    pub node: String,
    pub permits: Arc<Semaphore>,
    pub wake: Notify,
    pub stopping: AtomicBool,
    waiters: std::sync::Mutex<HashMap<String, Vec<oneshot::Sender<WakeSource>>>>,
    waiting: AtomicUsize,
    /// The store's settled feed, once the first `?wait=` asked for it:
    /// `Some(true)` when the store has one (see [`Engine::wait_settled`]).
    feed: std::sync::OnceLock<bool>,
    /// `?wait=` callers asleep now (registered, looked, not yet woken).
    parked: AtomicUsize,
    /// Runs a driver on this node is driving: the only leases lease
    /// renewal extends (see [`crate::driver::Driving`]). A lease this node
    /// holds on any other run is left to expire, so the poller (here or on
    /// another node) takes the run over: a run is never stranded behind a
    /// live node's lease that no driver uses.
    pub(crate) driving: std::sync::Mutex<HashSet<String>>,
    /// Open effects whose call this node saw answered (`key` → the
    /// `effect.started` time): nothing of that attempt is in flight, so
    /// later attempts here reconcile without waiting out the window. Lost
    /// with the process, which then waits: the safe side. An entry goes
    /// when its effect completes or starts again.
    pub(crate) answered: std::sync::Mutex<HashMap<String, i64>>,
    pub metrics: crate::metrics::Metrics,
}

/// What woke a `?wait=` caller (counted in `/metrics`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum WakeSource {
    /// A driver on this node settled the run.
    Local,
    /// The store announced that the run settled (another node drove it).
    Notified,
    /// The store's feed may have missed news (it reconnected): look again.
    Resync,
}

/// How `?wait=` callers were woken since start, by source.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct WaitWakeups {
    /// A driver on this node settled the run.
    pub local: u64,
    /// The store's settled feed announced the run (another node).
    pub notified: u64,
    /// The feed reconnected, so every waiter looked again.
    pub resync: u64,
    /// The periodic look (the safety net) found nothing had woken it.
    pub polled: u64,
}

impl Inner {
    /// Tells `?wait=` callers that a run settled. Costs one atomic load
    /// when nobody waits.
    pub(crate) fn settled(&self, run_id: &str) {
        self.wake_waiters(std::iter::once(run_id), WakeSource::Local);
    }

    fn wake_waiters<'a>(&self, run_ids: impl IntoIterator<Item = &'a str>, source: WakeSource) {
        if self.waiting.load(Ordering::Acquire) == 0 {
            return;
        }
        let mut senders = Vec::new();
        {
            let mut w = self.waiters.lock().expect("waiters lock");
            for id in run_ids {
                if let Some(list) = w.remove(id) {
                    senders.extend(list);
                }
            }
        }
        for s in senders {
            let _ = s.send(source);
        }
    }

    fn wake_all_waiters(&self) {
        let senders: Vec<_> = std::mem::take(&mut *self.waiters.lock().expect("waiters lock"))
            .into_values()
            .flatten()
            .collect();
        for s in senders {
            let _ = s.send(WakeSource::Resync);
        }
    }
}

/// Counts one sleeping `?wait=` caller for as long as it lives.
struct Parked<'a>(&'a AtomicUsize);

impl<'a> Parked<'a> {
    fn new(n: &'a AtomicUsize) -> Parked<'a> {
        n.fetch_add(1, Ordering::AcqRel);
        Parked(n)
    }
}

impl Drop for Parked<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Relays the store's settled feed to this node's waiters until the
/// engine goes away.
async fn relay_settled(
    inner: std::sync::Weak<Inner>,
    mut feed: tokio::sync::broadcast::Receiver<store::SettledNews>,
) {
    use tokio::sync::broadcast::error::RecvError;
    loop {
        let news = feed.recv().await;
        let Some(inner) = inner.upgrade() else { return };
        match news {
            Ok(store::SettledNews::Runs(ids)) => {
                inner.wake_waiters(ids.iter().map(String::as_str), WakeSource::Notified);
            }
            Ok(store::SettledNews::MaybeMissed) | Err(RecvError::Lagged(_)) => {
                inner.wake_all_waiters();
            }
            Err(RecvError::Closed) => return,
        }
    }
}

/// A cheap, cloneable handle on a running engine.
#[derive(Clone)]
pub struct Engine {
    pub(crate) inner: Arc<Inner>,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("node", &self.inner.node)
            .finish()
    }
}

impl Engine {
    /// Starts the engine: with `config.workers`, the poller and lease
    /// renewal run in the background until [`Engine::shutdown`].
    pub fn start(store: Arc<dyn Store>, catalog: Arc<Catalog>, config: Config) -> Engine {
        let permits = Arc::new(Semaphore::new(config.max_in_flight));
        let inner = Arc::new(Inner {
            store,
            catalog,
            node: format!("node-{}", uuid::Uuid::now_v7()),
            permits,
            wake: Notify::new(),
            stopping: AtomicBool::new(false),
            waiters: Default::default(),
            waiting: AtomicUsize::new(0),
            feed: std::sync::OnceLock::new(),
            parked: AtomicUsize::new(0),
            driving: Default::default(),
            answered: Default::default(),
            metrics: Default::default(),
            config,
        });
        let engine = Engine { inner };
        if engine.inner.config.workers {
            tokio::spawn(poll_loop(engine.inner.clone()));
            tokio::spawn(renew_loop(engine.inner.clone()));
        }
        engine
    }

    pub fn store(&self) -> &Arc<dyn Store> {
        &self.inner.store
    }

    pub fn catalog(&self) -> &Arc<Catalog> {
        &self.inner.catalog
    }

    pub fn node(&self) -> &str {
        &self.inner.node
    }

    /// Validates and normalises `input`, creates the run and starts it.
    /// A re-sent idempotency key returns the existing run.
    pub async fn submit(
        &self,
        workflow: &str,
        input: Json,
        idempotency_key: Option<String>,
        actor: &str,
    ) -> Result<Submitted, SubmitError> {
        let wf = self
            .inner
            .catalog
            .get(workflow)
            .ok_or_else(|| SubmitError::UnknownWorkflow(workflow.to_string()))?;
        let (input, changed) = wf
            .def
            .input
            .check(input)
            .map_err(SubmitError::InvalidInput)?;
        let idempotency_key = idempotency_key.or_else(|| {
            let field = wf.def.input.idempotency_field.as_ref()?;
            match input.get(field)? {
                Json::String(s) => Some(s.clone()),
                Json::Null => None,
                other => Some(other.to_string()),
            }
        });
        let now = now_ms();
        let id = uuid::Uuid::now_v7().to_string();
        let new_id = id.clone();
        // The input is serialised once: the run row and `run.received`
        // share the text (spliced, not re-encoded through a value tree).
        let input_text = input.to_string();
        let received = format!(
            r#"{{"idempotency_key":{},"input":{input_text},"version":{},"workflow":{}}}"#,
            json!(idempotency_key),
            wf.version,
            json!(wf.def.name),
        );
        let mut events = vec![NewEvent {
            kind: kind::RUN_RECEIVED.into(),
            actor: actor.to_string(),
            data: received,
            at_ms: now,
        }];
        if !changed.is_empty() {
            events.push(NewEvent {
                kind: kind::INPUT_NORMALIZED.into(),
                actor: domain::event::SYSTEM.into(),
                data: json!({ "fields": changed }).to_string(),
                at_ms: now,
            });
        }
        // Drive the run here at once when there is room; otherwise leave it
        // to the poller. The guard registers the run for lease renewal
        // before the lease is written.
        let driving = if self.inner.config.workers && !self.inner.stopping.load(Ordering::Relaxed) {
            self.inner
                .permits
                .clone()
                .try_acquire_owned()
                .ok()
                .map(|permit| crate::driver::Driving::new(self.inner.clone(), &id, permit))
        } else {
            None
        };
        let lease = driving.as_ref().map(|_| Lease {
            node: self.inner.node.clone(),
            until_ms: now + self.inner.config.lease_ms,
        });
        let new_run = NewRun {
            id: id.clone(),
            workflow: wf.def.name.clone(),
            version: wf.version,
            input: input_text,
            idempotency_key,
            created_at_ms: now,
            lease,
            events,
        };
        // Architecture invariant: once the store is asked to create the run,
        // what happens to it no longer depends on this future. The commit
        // and the driver live in a task of their own; the caller only
        // awaits the answer, and may go away (a client hanging up drops
        // the request's future at its next await) without stranding the
        // run.
        let (tx, rx) = oneshot::channel();
        let inner = self.inner.clone();
        tokio::spawn(async move {
            let created = inner.store.create_run(new_run).await;
            let start = matches!(created, Ok(Created::New));
            match &created {
                Ok(Created::New) => crate::metrics::Metrics::inc(&inner.metrics.runs_submitted),
                Ok(Created::Existing { .. }) => {
                    crate::metrics::Metrics::inc(&inner.metrics.runs_deduplicated)
                }
                Err(_) => {}
            }
            let _ = tx.send(created);
            if !start {
                // Not created, or the store's answer was lost: a lease
                // written anyway is not renewed (the guard goes here) and
                // expires into the poller's hands.
                return;
            }
            match driving {
                Some(driving) => {
                    let state = crate::driver::RunState::fresh(id, wf, input);
                    crate::driver::drive(inner, state, driving).await;
                }
                None => inner.wake.notify_one(),
            }
        });
        let created = rx.await.map_err(|_| {
            store::Error::Backend("the intake task ended before the store answered".into())
        })??;
        Ok(match created {
            Created::Existing { id, status } => Submitted {
                run_id: id,
                status,
                created: false,
            },
            Created::New => Submitted {
                run_id: new_id,
                status: RunStatus::Queued,
                created: true,
            },
        })
    }

    /// Waits until the run settles (completes, fails, or waits for a
    /// person) or `timeout` passes; returns its row either way.
    pub async fn wait_settled(
        &self,
        run_id: &str,
        timeout: Duration,
    ) -> store::Result<Option<store::Run>> {
        let deadline = tokio::time::Instant::now() + timeout;
        let fed = *self
            .inner
            .feed
            .get_or_init(|| match self.inner.store.settled_feed() {
                Some(feed) => {
                    tokio::spawn(relay_settled(Arc::downgrade(&self.inner), feed));
                    true
                }
                None => false,
            });
        let every = if fed {
            Duration::from_millis(self.inner.config.wait_poll_ms.max(2_000))
        } else {
            Duration::from_millis(self.inner.config.wait_poll_ms.max(1))
        };
        loop {
            let (tx, rx) = oneshot::channel();
            self.inner.waiting.fetch_add(1, Ordering::AcqRel);
            self.inner
                .waiters
                .lock()
                .expect("waiters lock")
                .entry(run_id.to_string())
                .or_default()
                .push(tx);
            let run = self.inner.store.run(run_id).await;
            let done = match &run {
                Ok(Some(r)) => r.status.is_settled(r.wait),
                _ => true,
            };
            if done || tokio::time::Instant::now() >= deadline {
                self.forget_waiter(run_id);
                return run;
            }
            // Another node may drive the run: its settling reaches us
            // through the store's feed (when it has one); the periodic look
            // is the safety net.
            let nap = tokio::time::sleep_until(deadline.min(tokio::time::Instant::now() + every));
            let m = &self.inner.metrics;
            let woken = {
                // Counted while asleep, also if the caller goes away.
                let _parked = Parked::new(&self.inner.parked);
                tokio::select! {
                    source = rx => source.ok(),
                    _ = nap => None,
                }
            };
            match woken {
                Some(WakeSource::Local) => crate::metrics::Metrics::inc(&m.wait_wakeups_local),
                Some(WakeSource::Notified) => {
                    crate::metrics::Metrics::inc(&m.wait_wakeups_notified)
                }
                Some(WakeSource::Resync) => crate::metrics::Metrics::inc(&m.wait_wakeups_resync),
                None => crate::metrics::Metrics::inc(&m.wait_wakeups_polled),
            }
            self.forget_waiter(run_id);
        }
    }

    /// `?wait=` callers asleep on this node now (registered and waiting
    /// for a wake-up or the periodic look).
    pub fn parked_waiters(&self) -> usize {
        self.inner.parked.load(Ordering::Acquire)
    }

    /// How `?wait=` callers on this node were woken since start.
    pub fn wait_wakeups(&self) -> WaitWakeups {
        let m = &self.inner.metrics;
        let c = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);
        WaitWakeups {
            local: c(&m.wait_wakeups_local),
            notified: c(&m.wait_wakeups_notified),
            resync: c(&m.wait_wakeups_resync),
            polled: c(&m.wait_wakeups_polled),
        }
    }

    fn forget_waiter(&self, run_id: &str) {
        let mut w = self.inner.waiters.lock().expect("waiters lock");
        if let Some(list) = w.get_mut(run_id) {
            list.retain(|s| !s.is_closed());
            if list.is_empty() {
                w.remove(run_id);
            }
        }
        self.inner.waiting.fetch_sub(1, Ordering::AcqRel);
    }

    /// Prometheus text for `/metrics`.
    pub fn metrics_text(&self) -> String {
        let in_flight = if self.inner.config.workers {
            self.inner.config.max_in_flight - self.inner.permits.available_permits()
        } else {
            0
        };
        self.inner.metrics.render(in_flight)
    }

    /// Operator retry of a failed run, from the failed step.
    pub async fn retry(&self, run_id: &str, actor: &str) -> store::Result<OpResult> {
        let r = self.inner.store.retry_run(run_id, actor, now_ms()).await?;
        if matches!(r, OpResult::Done(_)) {
            self.inner.wake.notify_one();
        }
        Ok(r)
    }

    /// Operator cancel. A worker driving the run stops at its next commit.
    pub async fn cancel(&self, run_id: &str, actor: &str) -> store::Result<OpResult> {
        let r = self.inner.store.cancel_run(run_id, actor, now_ms()).await?;
        if matches!(r, OpResult::Done(_)) {
            self.inner.settled(run_id);
        }
        Ok(r)
    }

    /// Stops taking new work, waits up to `grace` for in-flight steps, then
    /// releases this node's leases so other nodes can take over at once.
    pub async fn shutdown(&self, grace: Duration) {
        self.inner.stopping.store(true, Ordering::SeqCst);
        self.inner.wake.notify_waiters();
        let all = self.inner.config.max_in_flight as u32;
        let _ = tokio::time::timeout(grace, self.inner.permits.acquire_many(all)).await;
        if let Err(e) = self.inner.store.release_leases(&self.inner.node).await {
            tracing::warn!(error = %e, "releasing leases at shutdown failed");
        }
    }
}

/// Claims due work (timers, retries, orphaned runs) whenever there is room.
async fn poll_loop(inner: Arc<Inner>) {
    loop {
        if inner.stopping.load(Ordering::SeqCst) {
            return;
        }
        let free = inner.permits.available_permits().min(256);
        let mut claimed_full = false;
        if free > 0 {
            let now = now_ms();
            match inner
                .store
                .claim(&inner.node, now, now + inner.config.lease_ms, free)
                .await
            {
                Ok(batch) => {
                    claimed_full = batch.len() == free;
                    for c in batch {
                        // Should a submission have taken the last permit
                        // meanwhile, the rest of the batch stays leased but
                        // undriven: its leases are not renewed and expire.
                        let Ok(permit) = inner.permits.clone().try_acquire_owned() else {
                            break;
                        };
                        crate::metrics::Metrics::inc(&inner.metrics.runs_resumed);
                        let driving = crate::driver::Driving::new(inner.clone(), &c.run.id, permit);
                        tokio::spawn(crate::driver::resume(inner.clone(), c, driving));
                    }
                }
                Err(e) => tracing::warn!(error = %e, "claiming work failed"),
            }
        }
        if claimed_full {
            tokio::task::yield_now().await;
            continue;
        }
        if free == 0 {
            // Wait for a driver to finish before looking again (no query:
            // a busy node must not poll the database 50 times a second).
            tokio::time::sleep(Duration::from_millis(20)).await;
            continue;
        }
        let sleep_ms = match inner.store.next_due().await {
            Ok(Some(at)) => (at - now_ms()).clamp(0, inner.config.poll_ms as i64) as u64,
            _ => inner.config.poll_ms,
        };
        // The store's wait is a plain sleep on SQLite; on PostgreSQL it also
        // ends when another node announces new work.
        tokio::select! {
            _ = inner.wake.notified() => {}
            _ = inner.store.wait_for_work(Duration::from_millis(sleep_ms.max(1))) => {}
        }
    }
}

/// Keeps alive the leases of the runs this node's drivers are driving, in
/// one statement. A lease on a run no driver here drives (its driver's
/// commit failed, or the store's answer to a create or claim was lost) is
/// not renewed: it expires and the run is claimed again.
async fn renew_loop(inner: Arc<Inner>) {
    let every = Duration::from_millis((inner.config.lease_ms / 3).max(100) as u64);
    loop {
        tokio::time::sleep(every).await;
        if inner.stopping.load(Ordering::SeqCst) {
            return;
        }
        let runs: Vec<String> = inner
            .driving
            .lock()
            .expect("driving lock")
            .iter()
            .cloned()
            .collect();
        if runs.is_empty() {
            continue;
        }
        if let Err(e) = inner
            .store
            .renew_leases(&inner.node, &runs, now_ms() + inner.config.lease_ms)
            .await
        {
            tracing::warn!(error = %e, "renewing leases failed");
        }
    }
}

/// The initial position of a run.
pub(crate) const START: Position = Position {
    index: 0,
    failed_attempts: 0,
};
