//! `countersign bench --postgres URL`: the 3-step workflow on PostgreSQL
//! with 1, 2 and 3 worker engines sharing one database, and the idle load.
//! Engines run in this process (each with its own store and connections, as
//! separate nodes would have), so they share the machine's cores with the
//! database and the load generator. A benchmark, not a test: nothing here
//! asserts timings.

use std::sync::Arc;
use std::time::{Duration, Instant};

use engine::{Catalog, Config, Engine, StepKinds};
use serde_json::json;
use store::{RunFilter, RunStatus, Store};
use store_postgres::PgStore;
use store_postgres::scratch::ScratchDb;

use crate::Failure;

const THREE_STEPS: &str = r#"
name: bench3
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

fn fail(e: impl std::fmt::Display) -> Failure {
    Failure {
        code: 1,
        message: e.to_string(),
    }
}

/// One node: its own store (connections, writers, LISTEN) and engine.
struct Node {
    store: Arc<PgStore>,
    engine: Engine,
}

async fn node(url: &str, workers: bool) -> Result<Node, Failure> {
    let store = Arc::new(PgStore::connect(url).await.map_err(fail)?);
    let dyn_store: Arc<dyn Store> = store.clone();
    let catalog = Arc::new(Catalog::new(
        StepKinds::builtin(reqwest::Client::new()),
        crate::commands::process_env(),
        dyn_store.clone(),
    ));
    catalog
        .load_source(THREE_STEPS, "bench.yaml")
        .await
        .map_err(fail)?;
    let engine = Engine::start(
        dyn_store,
        catalog,
        Config {
            workers,
            ..Config::default()
        },
    );
    Ok(Node { store, engine })
}

fn pct(sorted: &[i64], p: f64) -> i64 {
    if sorted.is_empty() {
        return 0;
    }
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

/// Waits until no run is queued or running; returns when that was seen.
async fn drained(store: &PgStore) -> Result<Instant, Failure> {
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        let mut busy = false;
        for status in [RunStatus::Queued, RunStatus::Running] {
            let f = RunFilter {
                workflow: Some("bench3".into()),
                status: Some(status),
                before: None,
                text: None,
                limit: 1,
            };
            busy |= !store.list_runs(&f).await.map_err(fail)?.is_empty();
        }
        if !busy {
            return Ok(Instant::now());
        }
        if Instant::now() > deadline {
            return Err(fail("runs did not finish within 10 minutes"));
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// For a sample of the newest runs: (created → first step started,
/// first step started → completed) in ms, each sorted.
async fn breakdown(store: &PgStore, n: usize) -> Result<(Vec<i64>, Vec<i64>), Failure> {
    let page = store
        .list_runs(&RunFilter {
            workflow: Some("bench3".into()),
            status: None,
            before: None,
            text: None,
            limit: n,
        })
        .await
        .map_err(fail)?;
    let (mut pickup, mut exec) = (Vec::new(), Vec::new());
    for r in page {
        let Some(d) = store.run_detail(&r.id).await.map_err(fail)? else {
            continue;
        };
        if let Some(first) = d.steps.iter().map(|s| s.started_at_ms).min() {
            pickup.push(first - r.created_at_ms);
            exec.push(r.updated_at_ms - first);
        }
    }
    pickup.sort_unstable();
    exec.sort_unstable();
    Ok((pickup, exec))
}

/// Per-run latency (created → completed, from the rows) of the newest `n` runs.
async fn latencies(store: &PgStore, n: usize) -> Result<Vec<i64>, Failure> {
    let mut out = Vec::with_capacity(n);
    let mut before = None;
    while out.len() < n {
        let page = store
            .list_runs(&RunFilter {
                workflow: Some("bench3".into()),
                status: None,
                before: before.clone(),
                text: None,
                limit: 1000,
            })
            .await
            .map_err(fail)?;
        if page.is_empty() {
            break;
        }
        before = page.last().map(|r| r.id.clone());
        for r in page.iter().take(n - out.len()) {
            if r.status != RunStatus::Completed {
                return Err(fail(format!("bench run {} ended {}", r.id, r.status)));
            }
            out.push(r.updated_at_ms - r.created_at_ms);
        }
    }
    out.sort_unstable();
    Ok(out)
}

/// Submits `runs` runs through `api` from 64 submitters, as fast as it takes them.
async fn flood(api: &Engine, runs: usize) -> Result<(), Failure> {
    let mut tasks = Vec::new();
    for w in 0..64 {
        let api = api.clone();
        tasks.push(tokio::spawn(async move {
            for i in (w..runs).step_by(64) {
                api.submit("bench3", json!({ "n": i }), None, "bench")
                    .await
                    .map_err(fail)?;
            }
            Ok::<(), Failure>(())
        }));
    }
    for t in tasks {
        t.await.map_err(fail)??;
    }
    Ok(())
}

struct Row {
    workers: usize,
    queue_runs_per_s: f64,
    direct_runs_per_s: f64,
    p50: i64,
    p99: i64,
    paced_rate: usize,
}

/// One configuration: an API-only node plus `workers` worker nodes.
async fn measure(
    admin_url: &str,
    workers: usize,
    runs: usize,
    latency_runs: usize,
) -> Result<(Row, Option<(f64, f64)>), Failure> {
    let db = ScratchDb::create(admin_url, "bench").await.map_err(fail)?;
    let api = node(db.url(), false).await?;
    let mut nodes = Vec::new();
    for _ in 0..workers {
        nodes.push(node(db.url(), true).await?);
    }
    // Warm up connections and prepared statements.
    flood(&api.engine, 500).await?;
    drained(&api.store).await?;

    // 1. Queue path: the API node creates runs, workers claim them.
    let start = Instant::now();
    flood(&api.engine, runs).await?;
    let end = drained(&api.store).await?;
    let queue_runs_per_s = runs as f64 / (end - start).as_secs_f64();

    // 2. Latency at a paced load through the queue path.
    let paced_rate = 200;
    let every = Duration::from_micros(1_000_000 / paced_rate as u64);
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut submits = Vec::with_capacity(latency_runs);
    for i in 0..latency_runs {
        tick.tick().await;
        let api = api.engine.clone();
        submits.push(tokio::spawn(async move {
            let t = Instant::now();
            let _ = api.submit("bench3", json!({ "n": i }), None, "bench").await;
            t.elapsed().as_micros() as i64
        }));
    }
    let mut submit_us = Vec::with_capacity(latency_runs);
    for s in submits {
        submit_us.push(s.await.map_err(fail)?);
    }
    submit_us.sort_unstable();
    drained(&api.store).await?;
    let lat = latencies(&api.store, latency_runs).await?;
    let (pickup, exec) = breakdown(&api.store, latency_runs.min(300)).await?;
    eprintln!(
        "bench: {workers} worker(s), paced: intake commit p50 {} µs; created → first step p50 {} ms / p99 {} ms; first step → completed p50 {} ms / p99 {} ms",
        pct(&submit_us, 0.5),
        pct(&pickup, 0.5),
        pct(&pickup, 0.99),
        pct(&exec, 0.5),
        pct(&exec, 0.99)
    );

    // 3. Direct path: every worker node also takes submissions and drives
    //    its runs at once (closed loop, 256 in flight over all nodes).
    let start = Instant::now();
    let mut tasks = Vec::new();
    for w in 0..256 {
        let e = nodes[w % nodes.len()].engine.clone();
        tasks.push(tokio::spawn(async move {
            for i in (w..runs).step_by(256) {
                let s = e
                    .submit("bench3", json!({ "n": i }), None, "bench")
                    .await
                    .map_err(fail)?;
                e.wait_settled(&s.run_id, Duration::from_secs(60))
                    .await
                    .map_err(fail)?;
            }
            Ok::<(), Failure>(())
        }));
    }
    for t in tasks {
        t.await.map_err(fail)??;
    }
    drained(&api.store).await?;
    let direct_runs_per_s = runs as f64 / start.elapsed().as_secs_f64();

    // 4. Idle load: no work for 10 s; count the statements every node sends.
    let idle = if workers == 3 {
        tokio::time::sleep(Duration::from_secs(2)).await;
        let count = |ns: &[Node]| ns.iter().map(|n| n.store.queries()).sum::<u64>();
        let (w0, a0) = (count(&nodes), api.store.queries());
        let secs = 10.0;
        tokio::time::sleep(Duration::from_secs_f64(secs)).await;
        let (w1, a1) = (count(&nodes), api.store.queries());
        Some((
            (w1 - w0) as f64 / secs / workers as f64,
            (a1 - a0) as f64 / secs,
        ))
    } else {
        None
    };

    api.engine.shutdown(Duration::from_secs(5)).await;
    for n in &nodes {
        n.engine.shutdown(Duration::from_secs(5)).await;
    }
    for n in nodes.iter().chain([&api]) {
        n.store.close();
    }
    drop(nodes);
    drop(api);
    db.drop_now().await.map_err(fail)?;
    Ok((
        Row {
            workers,
            queue_runs_per_s,
            direct_runs_per_s,
            p50: pct(&lat, 0.5),
            p99: pct(&lat, 0.99),
            paced_rate,
        },
        idle,
    ))
}

pub async fn run(url: &str, runs: usize, latency_runs: usize) -> Result<(), Failure> {
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    eprintln!(
        "bench: {cpus} CPUs; PostgreSQL at {url}; a scratch database per configuration; engines in this process"
    );
    let mut rows = Vec::new();
    let mut idle = None;
    for workers in 1..=3 {
        eprintln!("bench: {workers} worker(s)…");
        let (row, i) = measure(url, workers, runs, latency_runs).await?;
        idle = idle.or(i);
        rows.push(row);
    }
    println!(
        "| workers | queue path: API node + workers, 3-step runs/s ({runs} runs) | direct path: each node takes and drives runs, runs/s | latency p50 / p99 at {} runs/s offered (queue path) |",
        rows.first().map_or(0, |r| r.paced_rate)
    );
    println!("|---|---|---|---|");
    for r in &rows {
        println!(
            "| {} | {:.0} | {:.0} | {} ms / {} ms |",
            r.workers, r.queue_runs_per_s, r.direct_runs_per_s, r.p50, r.p99
        );
    }
    if let Some((per_worker, api)) = idle {
        println!();
        println!(
            "Idle load (no work, 10 s): {per_worker:.1} statements/s per worker node, {api:.1} statements/s for the API-only node."
        );
    }
    Ok(())
}
