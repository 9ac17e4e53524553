//! Connector integration tests: real engines on temporary SQLite stores,
//! the vendors played by the spec-checking fakes in `test_kit`. One binary
//! (STYLE habit 12).

pub use countersign_connectors as connectors;

mod action_review;
mod email;
mod monday;
mod preview;
mod review_notify;
mod slack;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use engine::{Catalog, Config, Engine, StepKinds};
use serde_json::Value as Json;
use store::{Run, Store};
use store_sqlite::{Durability, Role, SqliteStore};
use test_kit::fixture::{self, TIMEOUT};
use tokio::sync::oneshot;

/// Engine settings: a quick poller and short leases, so a node that took
/// over after a "crash" claims the run quickly.
pub fn engine_config() -> Config {
    Config {
        poll_ms: 20,
        lease_ms: 1_000,
        // The fakes land a delayed call before they answer: a short margin
        // past each step's `timeout:` keeps the crash tests quick.
        in_flight_margin_ms: 200,
        ..Config::default()
    }
}

/// The built-in kinds plus the connectors under `config`.
pub fn kinds(config: connectors::Config) -> StepKinds {
    let client = reqwest::Client::new();
    let mut k = StepKinds::builtin(client.clone());
    connectors::register(&mut k, client, config);
    k
}

/// An engine serving `yaml` on `store`.
pub async fn engine_on(store: Arc<dyn Store>, yaml: &str, config: connectors::Config) -> Engine {
    let catalog = Catalog::new(kinds(config), fixture::env(&[]), store.clone());
    if let Err(e) = catalog.load_source(yaml, "test.yaml").await {
        panic!("the test workflow does not load:\n{e}");
    }
    Engine::start(store, Arc::new(catalog), engine_config())
}

/// A fresh temporary store and an engine on it.
pub async fn engine(yaml: &str, config: connectors::Config) -> (Engine, Arc<dyn Store>) {
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open_temp().expect("temp store"));
    (engine_on(store.clone(), yaml, config).await, store)
}

/// Compiles `yaml` and returns the rendered diagnostics (empty when it loads).
pub fn load_errors(yaml: &str, config: connectors::Config) -> String {
    match engine::compile(yaml, "test.yaml", &kinds(config), &fixture::env(&[])) {
        Ok(_) => String::new(),
        Err(e) => e.to_string(),
    }
}

/// Submits `input` to the engine's one workflow and waits until it settles.
pub async fn run(engine: &Engine, store: &Arc<dyn Store>, input: Json) -> Run {
    let name = fixture::workflow_name(engine);
    let s = engine
        .submit(&name, input, None, "test")
        .await
        .expect("submit");
    fixture::wait_settled(store, &s.run_id).await
}

/// The step outputs of a run, by step id.
pub async fn outputs(store: &Arc<dyn Store>, run_id: &str) -> serde_json::Map<String, Json> {
    let d = store.run_detail(run_id).await.unwrap().unwrap();
    d.steps
        .iter()
        .filter_map(|s| {
            Some((
                s.step_id.clone(),
                serde_json::from_str(s.output.as_deref()?).ok()?,
            ))
        })
        .collect()
}

/// Everything the store keeps about a run as text: for secret scans.
pub async fn everything(store: &Arc<dyn Store>, run_id: &str) -> String {
    let d = store.run_detail(run_id).await.unwrap().unwrap();
    let mut out = format!("{d:?}\n");
    for e in fixture::events(store, run_id).await {
        out.push_str(&format!("{} {}\n", e.kind, e.data));
    }
    out
}

/// A node on `db` in a thread of its own: submits one run and returns its
/// id and a handle that "kills" the node (its runtime is dropped with every
/// task where it stands, as a SIGKILL would leave the database).
pub async fn doomed(
    db: PathBuf,
    yaml: String,
    config: connectors::Config,
    input: Json,
) -> (String, Kill) {
    let (id_tx, id_rx) = oneshot::channel();
    let (stop_tx, stop_rx) = oneshot::channel::<()>();
    let thread = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(async move {
            let store: Arc<dyn Store> = Arc::new(
                SqliteStore::open(&db, Durability::CrashSafe, Role::Worker)
                    .expect("open the store"),
            );
            let engine = engine_on(store, &yaml, config).await;
            let name = fixture::workflow_name(&engine);
            let s = engine
                .submit(&name, input, None, "test")
                .await
                .expect("submit");
            id_tx.send(s.run_id).expect("send the run id");
            let _ = stop_rx.await;
        });
        rt.shutdown_timeout(Duration::from_secs(5));
    });
    let id = id_rx.await.expect("the node submitted a run");
    (id, Kill { stop_tx, thread })
}

pub struct Kill {
    stop_tx: oneshot::Sender<()>,
    thread: std::thread::JoinHandle<()>,
}

impl Kill {
    pub async fn now(self) {
        let _ = self.stop_tx.send(());
        let thread = self.thread;
        tokio::task::spawn_blocking(move || thread.join())
            .await
            .expect("join task")
            .expect("the doomed node's thread did not panic");
    }
}

/// Reopens the database a doomed node used.
pub fn reopen(db: &std::path::Path) -> Arc<dyn Store> {
    Arc::new(SqliteStore::open(db, Durability::CrashSafe, Role::Worker).expect("reopen"))
}

/// Waits for a terminal status.
pub async fn wait_terminal(store: &Arc<dyn Store>, run_id: &str) -> Run {
    fixture::wait_status(store, run_id, |r| r.status.is_terminal(), TIMEOUT).await
}
