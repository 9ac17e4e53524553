//! Crash and resume at the engine level: a node dies while an effect is in
//! flight; a new node on the same database waits until that call can no
//! longer land (the in-flight rule), then reconciles and finishes the run
//! without duplicating the effect.
//!
//! The first node runs on its own single-threaded runtime in its own
//! thread. Stopping that runtime abandons every task at its current await
//! point, so nothing after `effect.started` is ever written: to the
//! database it looks exactly like a killed process.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use domain::event::kind;
use expect_test::expect;
use serde_json::json;
use store::{EffectStatus, RunStatus, Store};
use store_sqlite::{Durability, Role, SqliteStore};
use test_kit::FakeHttp;
use test_kit::fixture::{
    TIMEOUT, TempDir, assert_chain, engine_on, events, eventually, wait_status,
};
use tokio::sync::oneshot;

use crate::detail;

fn workflow(fake: &FakeHttp) -> String {
    r#"
name: crashy
steps:
  - id: call
    http:
      url: "$URL/effect"
      timeout: 3s
      body: { order: "{{ input.order }}" }
  - id: after
    rules:
      - when: call.body.ok
        then: { review: skip }
"#
    .replace("$URL", &fake.url())
}

/// Starts a node on `db` in a thread of its own, submits one run, and
/// returns the run id and a handle that "kills" the node.
async fn doomed_node(db: PathBuf, yaml: String) -> (String, Kill) {
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
            let engine = engine_on(store, &yaml, &[]).await;
            let s = engine
                .submit("crashy", json!({ "order": "A-1" }), None, "test")
                .await
                .expect("submit");
            id_tx.send(s.run_id).expect("send the run id");
            let _ = stop_rx.await;
        });
        // Every task is dropped where it stands; the store, its writer and
        // its lock file go with them.
        rt.shutdown_timeout(Duration::from_secs(5));
    });
    let id = id_rx.await.expect("the node submitted a run");
    (id, Kill { stop_tx, thread })
}

struct Kill {
    stop_tx: oneshot::Sender<()>,
    thread: std::thread::JoinHandle<()>,
}

impl Kill {
    async fn now(self) {
        let _ = self.stop_tx.send(());
        let thread = self.thread;
        tokio::task::spawn_blocking(move || thread.join())
            .await
            .expect("join task")
            .expect("the doomed node's thread did not panic");
    }
}

/// The call's timeout (3 s) plus the test engines' in-flight margin.
const WINDOW_MS: i64 = 3_000 + 200;

#[tokio::test]
async fn a_run_killed_mid_effect_waits_out_the_call_then_resumes_without_duplicating_it() {
    let fake = FakeHttp::start().await;
    // The receiver performs the effect, then takes its time to answer: the
    // node dies before it hears back.
    fake.delay(60_000);
    let dir = TempDir::new("crash");
    let db = dir.path().join("countersign.db");
    let yaml = workflow(&fake);

    let (run_id, kill) = doomed_node(db.clone(), yaml.clone()).await;
    let key = format!("{run_id}:call");
    eventually("the call reaches the receiver", TIMEOUT, || {
        fake.has_effect(&key)
    })
    .await;
    kill.now().await;
    fake.delay(0);

    let store: Arc<dyn Store> = Arc::new(
        SqliteStore::open(&db, Durability::CrashSafe, Role::Worker)
            .expect("reopen after the crash"),
    );
    let before = store.run(&run_id).await.unwrap().unwrap();
    assert!(
        !before.status.is_terminal(),
        "the crash left the run unfinished: {before:#?}"
    );
    let open = detail(&store, &run_id).await.effects;
    assert_eq!(
        open.iter()
            .map(|e| (e.key.as_str(), e.status))
            .collect::<Vec<_>>(),
        [(key.as_str(), EffectStatus::Started)],
        "the journal shows a started, uncompleted effect"
    );

    let engine = engine_on(store.clone(), &yaml, &[]).await;
    // Resumed before the earlier call's window passed: the run waits (a
    // due work item) and nobody looks or calls yet.
    let waiting = wait_status(
        &store,
        &run_id,
        |r| r.status == RunStatus::Waiting || r.status.is_terminal(),
        TIMEOUT,
    )
    .await;
    assert_eq!(
        (waiting.status, waiting.wait),
        (RunStatus::Waiting, Some(domain::run::WaitReason::Retry)),
        "{waiting:#?}"
    );
    assert_eq!(fake.count(&key), 1, "no second call inside the window");
    let early = events(&store, &run_id).await;
    assert!(
        !early.iter().any(|e| e.kind == kind::EFFECT_RECONCILED),
        "no reconciliation inside the window"
    );
    let run = wait_status(&store, &run_id, |r| r.status.is_terminal(), TIMEOUT).await;
    assert_eq!(run.status, RunStatus::Completed, "{run:#?}");
    assert_eq!(
        run.version, 1,
        "the same source is the same version after restart"
    );

    assert_eq!(fake.effects(), 1, "exactly one effect");
    assert_eq!(
        fake.count(&key),
        2,
        "sent again under the same key after the crash"
    );
    assert_eq!(fake.hits(), 2);

    let log = events(&store, &run_id).await;
    let kinds: Vec<&str> = log.iter().map(|e| e.kind.as_str()).collect();
    let reconciled: Vec<serde_json::Value> = log
        .iter()
        .filter(|e| e.kind == kind::EFFECT_RECONCILED)
        .map(|e| serde_json::from_str(&e.data).unwrap())
        .collect();
    assert_eq!(reconciled.len(), 1, "{kinds:?}");
    assert_eq!(reconciled[0]["key"], key);
    assert_eq!(
        reconciled[0]["result"], "unknown",
        "a generic endpoint cannot be asked"
    );
    let pos = |k: &str, nth: usize| {
        kinds
            .iter()
            .enumerate()
            .filter(|(_, x)| **x == k)
            .nth(nth)
            .map(|(i, _)| i)
            .unwrap_or_else(|| panic!("no {k} #{nth} in {kinds:?}"))
    };
    assert!(
        pos(kind::RUN_RESUMED, 0) < pos(kind::EFFECT_RECONCILED, 0),
        "{kinds:?}"
    );
    assert!(
        pos(kind::EFFECT_RECONCILED, 0) < pos(kind::EFFECT_STARTED, 1),
        "reconciliation is logged before the effect is sent again: {kinds:?}"
    );
    assert!(
        pos(kind::EFFECT_IN_FLIGHT, 0) < pos(kind::EFFECT_RECONCILED, 0),
        "{kinds:?}"
    );
    let (first_start, looked) = (
        log[pos(kind::EFFECT_STARTED, 0)].at_ms,
        log[pos(kind::EFFECT_RECONCILED, 0)].at_ms,
    );
    assert!(
        looked >= first_start + WINDOW_MS,
        "reconciled {} ms after the call started, inside its {WINDOW_MS} ms window",
        looked - first_start
    );
    assert!(
        pos(kind::EFFECT_STARTED, 1) < pos(kind::EFFECT_COMPLETED, 0),
        "{kinds:?}"
    );

    let effects = detail(&store, &run_id).await.effects;
    assert_eq!(effects.len(), 1);
    assert_eq!(
        (effects[0].status, effects[0].external_id.as_deref()),
        (EffectStatus::Completed, Some("fake-1"))
    );
    assert_eq!(crate::output(&store, &run_id, "call").await["body"]["n"], 1);
    expect![[r#"
        status: completed, outcome: completed
        run.received test {"idempotency_key":null,"input":{"order":"A-1"},"version":1,"workflow":"crashy"}
        effect.started system {"key":"<run>:call","request_digest":"<hash>","step":"call"}
        run.resumed system {"from_status":"running","step":"call","wait":null}
        effect.in_flight system {"action":"wait until the earlier call can no longer land, then look","key":"<run>:call","step":"call","window_ms":"<ms>"}
        run.resumed system {"from_status":"waiting","step":"call","wait":"retry"}
        effect.reconciled system {"action":"perform again under the same idempotency key","key":"<run>:call","result":"unknown","step":"call"}
        effect.started system {"key":"<run>:call","request_digest":"<hash>","step":"call"}
        effect.completed system {"external_id":"fake-1","key":"<run>:call","step":"call"}
        step.completed system {"attempt":1,"output":{"body":{"key":"<run>:call","n":1,"ok":true},"status":200},"step":"call"}
        step.completed system {"attempt":1,"output":{"fail":null,"finish":null,"matched":[0],"review":"skip","review_rule":{"index":0,"when":"call.body.ok"}},"step":"after"}
        run.completed system {"outcome":"completed"}
    "#]]
    .assert_eq(&test_kit::transcript(&store, &run_id).await);
    assert_chain(&store, &run_id).await;
    engine.shutdown(Duration::from_secs(1)).await;
}
