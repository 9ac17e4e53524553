//! Engines on throwaway SQLite stores, and the waiting and reading helpers
//! engine tests share.
//!
//! Nothing here sleeps to let time pass: helpers poll the store with a
//! deadline and fail loudly, with the run's state and events, when the
//! deadline passes.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use domain::event::{Hashed, verify_chain};
use engine::{Catalog, Config, Engine, Env, StepKinds};
use store::{Event, Run, Store};
use store_sqlite::SqliteStore;

/// How long helpers wait for a run by default. Generous: a loaded 2-core
/// CI machine is slow, and a passing test never waits this long.
pub const TIMEOUT: Duration = Duration::from_secs(20);

/// How often the polling helpers look.
const POLL: Duration = Duration::from_millis(10);

/// Engine settings for tests: a quick poller, leases long enough never to
/// expire by accident.
/// Who decides in a test: `user:NAME` is user `NAME`, allowed every
/// queue; any other actor (`token:…`) is tied to no user.
pub fn person(actor: &str) -> engine::review::Decider {
    engine::review::Decider {
        actor: actor.into(),
        user_id: actor.strip_prefix("user:").map(str::to_string),
        queues: None,
    }
}

pub fn config() -> Config {
    Config {
        poll_ms: 50,
        lease_ms: 10_000,
        // Fakes answer at once or land what they delay within the call's
        // timeout: a short margin keeps crash tests quick.
        in_flight_margin_ms: 200,
        ..Config::default()
    }
}

/// An `${env:…}` lookup over fixed pairs.
pub fn env(pairs: &[(&str, &str)]) -> Env {
    let pairs: Vec<(String, String)> = pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    Arc::new(move |name: &str| {
        pairs
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    })
}

/// An engine serving the workflow `yaml` (as `test.yaml`) on a fresh
/// temporary SQLite store. Panics with the rendered diagnostics when the
/// workflow does not load.
pub async fn engine_with(yaml: &str) -> (Engine, Arc<dyn Store>) {
    engine_with_env(yaml, &[]).await
}

/// [`engine_with`] with `${env:NAME}` values.
pub async fn engine_with_env(yaml: &str, vars: &[(&str, &str)]) -> (Engine, Arc<dyn Store>) {
    let store: Arc<dyn Store> =
        Arc::new(SqliteStore::open_temp().expect("open a temporary SQLite store"));
    let engine = engine_on(store.clone(), yaml, vars).await;
    (engine, store)
}

/// An engine serving `yaml` on an existing store (e.g. one reopened after a
/// simulated crash). Loading the same source again reuses its version.
pub async fn engine_on(store: Arc<dyn Store>, yaml: &str, vars: &[(&str, &str)]) -> Engine {
    let catalog = Catalog::new(
        StepKinds::builtin(reqwest::Client::new()),
        env(vars),
        store.clone(),
    );
    if let Err(e) = catalog.load_source(yaml, "test.yaml").await {
        panic!("the test workflow does not load:\n{e}");
    }
    Engine::start(store, Arc::new(catalog), config())
}

/// The name of the one workflow an engine from this module serves.
pub fn workflow_name(engine: &Engine) -> String {
    let names = engine.catalog().names();
    assert_eq!(names.len(), 1, "expected one workflow, found {names:?}");
    names[0].clone()
}

/// Polls until `pred` holds for the run, and returns it. On timeout, panics
/// with `what`, the run's last state and its events.
pub async fn wait_status(
    store: &Arc<dyn Store>,
    run_id: &str,
    pred: impl Fn(&Run) -> bool,
    timeout: Duration,
) -> Run {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let run = store.run(run_id).await.expect("read the run");
        match run {
            Some(r) if pred(&r) => return r,
            last if tokio::time::Instant::now() >= deadline => {
                let events = events(store, run_id).await;
                let lines: Vec<String> = events
                    .iter()
                    .map(|e| format!("  {} {}", e.kind, e.data))
                    .collect();
                panic!(
                    "run {run_id} did not reach the expected state within {timeout:?}; last seen: {last:#?}\nevents:\n{}",
                    lines.join("\n")
                );
            }
            _ => tokio::time::sleep(POLL).await,
        }
    }
}

/// Polls until the run is terminal or waits for a person.
pub async fn wait_settled(store: &Arc<dyn Store>, run_id: &str) -> Run {
    wait_status(store, run_id, |r| r.status.is_settled(r.wait), TIMEOUT).await
}

/// Polls a synchronous condition (e.g. a fake's counters) until it holds;
/// panics naming `what` on timeout.
pub async fn eventually(what: &str, timeout: Duration, mut cond: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + timeout;
    while !cond() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out after {timeout:?} waiting for: {what}"
        );
        tokio::time::sleep(POLL).await;
    }
}

/// Polls an asynchronous condition until it yields `Some`.
pub async fn eventually_some<T, F, Fut>(what: &str, timeout: Duration, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out after {timeout:?} waiting for: {what}"
        );
        tokio::time::sleep(POLL).await;
    }
}

/// Every event of a run, oldest first.
pub async fn events(store: &Arc<dyn Store>, run_id: &str) -> Vec<Event> {
    let mut out: Vec<Event> = Vec::new();
    loop {
        let after = out.last().map_or(0, |e| e.seq);
        let page = store.events(run_id, after, 500).await.expect("read events");
        if page.is_empty() {
            return out;
        }
        out.extend(page);
    }
}

/// Events of `kind`, with their data parsed.
pub async fn events_of(store: &Arc<dyn Store>, run_id: &str, kind: &str) -> Vec<serde_json::Value> {
    events(store, run_id)
        .await
        .into_iter()
        .filter(|e| e.kind == kind)
        .map(|e| serde_json::from_str(&e.data).expect("event data is JSON"))
        .collect()
}

/// Asserts the run's audit chain verifies; returns how many events it has.
pub async fn assert_chain(store: &Arc<dyn Store>, run_id: &str) -> usize {
    let events = events(store, run_id).await;
    let checked = verify_chain(events.iter().map(|e| {
        (
            Hashed {
                run_id: &e.run_id,
                seq: e.seq,
                kind: &e.kind,
                actor: &e.actor,
                data: &e.data,
                at_ms: e.at_ms,
            },
            e.prev_hash.as_str(),
            e.hash.as_str(),
        )
    }));
    match checked {
        Ok(n) => {
            assert!(n > 0, "run {run_id} has no events");
            n
        }
        Err(seq) => panic!("run {run_id}: the audit chain breaks at event {seq}"),
    }
}

/// Asserts every run in the store has a verifying audit chain.
pub async fn assert_all_chains(store: &Arc<dyn Store>) -> usize {
    let mut after: Option<String> = None;
    let mut runs = 0;
    loop {
        let ids = store
            .run_ids(after.as_deref(), 200)
            .await
            .expect("list run ids");
        if ids.is_empty() {
            return runs;
        }
        for id in &ids {
            assert_chain(store, id).await;
        }
        runs += ids.len();
        after = ids.last().cloned();
    }
}

/// A temporary directory removed (with its contents) on drop.
#[derive(Debug)]
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new(label: &str) -> TempDir {
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let path = std::env::temp_dir().join(format!(
            "countersign-{label}-{}-{n}-{nanos}",
            std::process::id()
        ));
        std::fs::create_dir_all(&path).expect("create a temporary directory");
        TempDir(path)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
