//! Cancellation safety: once a run is committed, its execution belongs to
//! the engine, never to the future of the request that created it; and a
//! lease this node holds on a run that no driver here drives expires
//! instead of being renewed for as long as the node lives.
//!
//! The promise tested is the issue's: every accepted run completes without
//! a restart, within the lease plus 30 s. The engines here use a short
//! lease so a stranded run is found out quickly.

use std::future::Future;
use std::path::Path;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use countersign_engine::{Catalog, Config, Engine, StepKinds};
use domain::event::kind;
use serde_json::json;
use store::{RunFilter, RunStatus, Store};
use store_sqlite::{Durability, Role, SqliteStore};
use test_kit::fixture::{TIMEOUT, TempDir, config, env, events_of, eventually_some, wait_status};

const LEASE_MS: i64 = 1_000;

/// "Completes without a restart": within the lease plus 30 s.
const BOUND: Duration = Duration::from_millis(LEASE_MS as u64 + 30_000);

const QUICK: &str = r#"
name: quick
steps:
  - id: only
    rules:
      - when: "input.n > 1000000"
        then: { finish: big }
"#;

/// An engine with a short lease serving `QUICK` on `store`.
async fn engine(store: Arc<dyn Store>) -> Engine {
    let catalog = Catalog::new(
        StepKinds::builtin(reqwest::Client::new()),
        env(&[]),
        store.clone(),
    );
    catalog
        .load_source(QUICK, "quick.yaml")
        .await
        .expect("the workflow loads");
    Engine::start(
        store,
        Arc::new(catalog),
        Config {
            lease_ms: LEASE_MS,
            ..config()
        },
    )
}

/// Polls `fut` at most `polls` times, yielding to the runtime between
/// polls, then drops it: a caller that hangs up at that point.
async fn abandon_after<F: Future>(fut: F, polls: usize) -> Option<F::Output> {
    let mut fut = std::pin::pin!(fut);
    for _ in 0..polls {
        let poll = std::future::poll_fn(|cx| Poll::Ready(fut.as_mut().poll(cx))).await;
        if let Poll::Ready(out) = poll {
            return Some(out);
        }
        tokio::task::yield_now().await;
    }
    None
}

async fn all_runs(store: &Arc<dyn Store>) -> Vec<store::Run> {
    store
        .list_runs(&RunFilter {
            limit: 10_000,
            ..RunFilter::default()
        })
        .await
        .expect("list runs")
}

/// Waits until the store holds `n` runs, then asserts each completes
/// within [`BOUND`].
async fn all_complete(store: &Arc<dyn Store>, n: usize) {
    let runs = eventually_some("every submission sent is stored", TIMEOUT, || async {
        let runs = all_runs(store).await;
        (runs.len() >= n).then_some(runs)
    })
    .await;
    assert_eq!(runs.len(), n, "one run per submission sent");
    for r in &runs {
        let done = wait_status(store, &r.id, |r| r.status.is_terminal(), BOUND).await;
        assert_eq!(done.status, RunStatus::Completed, "{done:#?}");
    }
}

#[tokio::test]
async fn submissions_abandoned_at_any_point_still_complete() {
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open_temp().expect("open a store"));
    let engine = engine(store.clone()).await;
    // A submission polled once has asked for its run: the run must exist
    // and complete, whether or not its caller stays for the answer.
    let (mut sent, mut answered) = (0, 0);
    for polls in 0..40 {
        let submit = engine.submit(
            "quick",
            json!({ "n": polls }),
            Some(format!("one-{polls}")),
            "test",
        );
        sent += usize::from(polls % 8 > 0);
        if let Some(r) = abandon_after(submit, polls % 8).await {
            r.expect("submit");
            answered += 1;
        }
    }
    // Many callers hanging up together, right after sending.
    let burst: Vec<_> = (0..64)
        .map(|i| {
            let engine = engine.clone();
            tokio::spawn(async move {
                let submit = engine.submit(
                    "quick",
                    json!({ "n": i }),
                    Some(format!("burst-{i}")),
                    "test",
                );
                abandon_after(submit, 1 + i % 3).await.is_some()
            })
        })
        .collect();
    for b in burst {
        sent += 1;
        answered += usize::from(b.await.expect("task"));
    }
    assert!(
        sent > answered,
        "some callers hung up before the answer ({sent} sent, {answered} answered): the test exercises that case"
    );
    all_complete(&store, sent).await;
}

/// A store on `db` whose first commit taking a run from `queued` straight
/// to `completed` fails: a trigger aborts it, as a writer failing a commit
/// would. The retry after the lease expired goes `running` → `completed`.
fn failing_once(db: &Path) -> Arc<dyn Store> {
    let store = SqliteStore::open(db, Durability::CrashSafe, Role::Worker).expect("open the store");
    let conn = rusqlite::Connection::open(db).expect("open a second connection");
    conn.execute_batch(
        "CREATE TRIGGER fail_commit BEFORE UPDATE OF status ON runs
         WHEN OLD.status = 'queued' AND NEW.status = 'completed'
         BEGIN SELECT RAISE(ABORT, 'injected commit failure'); END;",
    )
    .expect("add the trigger");
    Arc::new(store)
}

#[tokio::test]
async fn a_failed_commit_does_not_strand_the_run() {
    let dir = TempDir::new("failed-commit");
    let store = failing_once(&dir.path().join("cs.db"));
    let engine = engine(store.clone()).await;
    let s = engine
        .submit("quick", json!({ "n": 1 }), None, "test")
        .await
        .expect("submit");
    let done = wait_status(&store, &s.run_id, |r| r.status.is_terminal(), BOUND).await;
    assert_eq!(done.status, RunStatus::Completed, "{done:#?}");
    let resumed = events_of(&store, &s.run_id, kind::RUN_RESUMED).await;
    assert_eq!(
        resumed.len(),
        1,
        "taken over once its lease expired: {resumed:#?}"
    );
    assert!(
        engine
            .metrics_text()
            .lines()
            .any(|l| l.starts_with("countersign_commit_errors_total") && l.ends_with(" 1")),
        "the commit did fail:\n{}",
        engine.metrics_text()
    );
}
