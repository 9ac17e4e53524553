//! `?wait=` across nodes on PostgreSQL: an API node (no workers) waits for a
//! run that another engine on the same database drives. The waiter must be
//! woken by the store's settled feed (LISTEN/NOTIFY), not by its periodic
//! look, which this test pushes past the wait's own deadline: the wake-up
//! source is asserted, never a duration.

use std::sync::Arc;
use std::time::Duration;

use engine::{Catalog, Config, Engine, StepKinds, WaitWakeups};
use serde_json::json;
use store::{RunStatus, Store};
use store_postgres::PgStore;
use store_postgres::scratch::ScratchDb;

const WORKFLOW: &str = r#"
name: three
steps:
  - id: a
    rules:
      - when: input.n < 0
        then: { finish: negative }
  - id: b
    rules:
      - when: a.finish == "never"
        then: { review: required }
  - id: c
    rules:
      - when: input.n > 1000000000
        then: { fail: "too large" }
"#;

async fn node(url: &str, workers: bool) -> (Arc<PgStore>, Engine) {
    let store = Arc::new(PgStore::connect(url).await.expect("connect"));
    let dyn_store: Arc<dyn Store> = store.clone();
    let catalog = Arc::new(Catalog::new(
        StepKinds::builtin(reqwest::Client::new()),
        test_kit::fixture::env(&[]),
        dyn_store.clone(),
    ));
    catalog
        .load_source(WORKFLOW, "three.yaml")
        .await
        .expect("load the workflow");
    let engine = Engine::start(
        dyn_store,
        catalog,
        Config {
            workers,
            poll_ms: 50,
            // The safety net would first look after the wait's deadline.
            wait_poll_ms: 600_000,
            ..Config::default()
        },
    );
    (store, engine)
}

/// Polls `cond` until it holds; panics after 30 s.
async fn until(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while !cond() {
        assert!(tokio::time::Instant::now() < deadline, "timed out: {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_settled_by_another_engine_wakes_the_waiting_api_node() {
    let db = ScratchDb::for_test("waitfeed")
        .await
        .expect("scratch database");
    let (api_store, api) = node(db.url(), false).await;
    let s = api
        .submit("three", json!({ "n": 1 }), None, "test")
        .await
        .expect("submit");
    assert_eq!(s.status, RunStatus::Queued, "an API node drives nothing");

    // The store's feed announces "maybe missed" once its LISTEN is in
    // place; the engine's relay shares that connection.
    let mut feed = api_store.settled_feed().expect("PostgreSQL has a feed");
    let first = tokio::time::timeout(Duration::from_secs(30), feed.recv())
        .await
        .expect("the feed connects")
        .expect("a message");
    assert_eq!(first, store::SettledNews::MaybeMissed);

    let waiter = tokio::spawn({
        let (api, id) = (api.clone(), s.run_id.clone());
        async move { api.wait_settled(&id, Duration::from_secs(30)).await }
    });
    until("the waiter is asleep", || api.parked_waiters() == 1).await;
    assert_eq!(
        api_store
            .run(&s.run_id)
            .await
            .expect("read")
            .map(|r| r.status),
        Some(RunStatus::Queued),
        "nobody has driven the run yet"
    );

    // Another engine on the same database claims and completes the run.
    let (_worker_store, worker) = node(db.url(), true).await;
    let run = waiter
        .await
        .expect("the waiter task")
        .expect("read the run")
        .expect("the run exists");
    assert_eq!(run.status, RunStatus::Completed);
    let woken = api.wait_wakeups();
    assert_eq!(
        (woken.notified, woken.polled, woken.local),
        (1, 0, 0),
        "the settled feed, not the periodic look, woke the waiter: {woken:?}"
    );
    assert_eq!(
        tokio::time::timeout(Duration::from_secs(30), feed.recv())
            .await
            .expect("the feed announces the run")
            .expect("news"),
        store::SettledNews::Runs(vec![s.run_id.clone()]),
        "the worker's commit announced exactly this run"
    );
    assert_eq!(
        worker.wait_wakeups(),
        WaitWakeups::default(),
        "nobody waited on the worker"
    );
    worker.shutdown(Duration::from_secs(5)).await;
    api.shutdown(Duration::from_secs(5)).await;
}
