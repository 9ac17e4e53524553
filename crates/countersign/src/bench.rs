//! `countersign bench`: engine throughput, per-step overhead, end-to-end
//! latency and HTTP intake on this machine, printed as a Markdown table
//! for BENCHMARKS.md. A benchmark, not a test: nothing here asserts timings.

use std::sync::Arc;
use std::time::{Duration, Instant};

use engine::{Catalog, Config, Engine, StepKinds};
use serde_json::json;
use store::{RunStatus, Store};
use store_sqlite::SqliteStore;

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

const ONE_STEP: &str = r#"
name: bench1
steps:
  - id: a
    rules:
      - when: input.n < 0
        then: { finish: negative }
"#;

fn fail(e: impl std::fmt::Display) -> Failure {
    Failure {
        code: 1,
        message: e.to_string(),
    }
}

async fn engine() -> Result<Engine, Failure> {
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open_temp().map_err(fail)?);
    let catalog = Arc::new(Catalog::new(
        StepKinds::builtin(reqwest::Client::new()),
        crate::commands::process_env(),
        store.clone(),
    ));
    for src in [THREE_STEPS, ONE_STEP] {
        catalog.load_source(src, "bench.yaml").await.map_err(fail)?;
    }
    Ok(Engine::start(store, catalog, Config::default()))
}

fn pct(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

async fn one(engine: &Engine, wf: &str, n: usize) -> Result<RunStatus, Failure> {
    let s = engine
        .submit(wf, json!({ "n": n }), None, "bench")
        .await
        .map_err(fail)?;
    let run = engine
        .wait_settled(&s.run_id, Duration::from_secs(60))
        .await
        .map_err(fail)?
        .ok_or_else(|| fail("run vanished"))?;
    Ok(run.status)
}

async fn latency(engine: &Engine, wf: &str, runs: usize) -> Result<Vec<Duration>, Failure> {
    let mut lat = Vec::with_capacity(runs);
    for i in 0..runs {
        let t = Instant::now();
        let st = one(engine, wf, i).await?;
        if st != RunStatus::Completed {
            return Err(fail(format!("bench run ended {st}")));
        }
        lat.push(t.elapsed());
    }
    lat.sort();
    Ok(lat)
}

pub async fn run(
    runs: usize,
    latency_runs: usize,
    requests: usize,
    clients: usize,
) -> Result<(), Failure> {
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    let threads = tokio::runtime::Handle::current().metrics().num_workers();
    eprintln!(
        "bench: {cpus} CPUs, {threads} runtime worker threads; SQLite (WAL, synchronous=NORMAL) in the temp folder"
    );

    // 1. Latency at low load: one run at a time.
    let e = engine().await?;
    latency(&e, "bench3", latency_runs / 10 + 1).await?; // warm up
    let l3 = latency(&e, "bench3", latency_runs).await?;
    let l1 = latency(&e, "bench1", latency_runs).await?;
    let overhead = (pct(&l3, 0.5).saturating_sub(pct(&l1, 0.5))) / 2;

    // 2. Throughput: many runs in flight (closed loop, 256 submitters).
    let start = Instant::now();
    let mut tasks = Vec::new();
    let per = runs / 256 + 1;
    for w in 0..256 {
        let e = e.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..per {
                if w * per + i >= runs {
                    break;
                }
                one(&e, "bench3", i).await?;
            }
            Ok::<(), Failure>(())
        }));
    }
    for t in tasks {
        t.await.map_err(fail)??;
    }
    let took = start.elapsed();
    let runs_per_s = runs as f64 / took.as_secs_f64();
    let amortised_step = took / (runs as u32 * 3);
    e.shutdown(Duration::from_secs(5)).await;

    // 3. HTTP intake: POST /api/v1/workflows/bench3/runs over keep-alive connections.
    let e = engine().await?;
    let secret = server::new_token_secret();
    e.store()
        .create_token(store::Token {
            id: "bench".into(),
            name: "bench".into(),
            hash: server::hash_token(&secret),
            scopes: vec!["runs:write".into()],
            created_at_ms: engine::now_ms(),
            revoked_at_ms: None,
            user_id: None,
        })
        .await
        .map_err(fail)?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(fail)?;
    let addr = listener.local_addr().map_err(fail)?;
    // The production accept loop, limits and all.
    let state = server::AppState::new(e.clone(), server::ServerConfig::default());
    tokio::spawn(server::serve(listener, state, std::future::pending()));
    let url = format!("http://{addr}/api/v1/workflows/bench3/runs");
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(clients)
        .build()
        .map_err(fail)?;
    let start = Instant::now();
    let mut tasks = Vec::new();
    let per = requests / clients.max(1);
    for _ in 0..clients.max(1) {
        let (client, url, auth) = (client.clone(), url.clone(), format!("Bearer {secret}"));
        tasks.push(tokio::spawn(async move {
            for i in 0..per {
                let r = client
                    .post(&url)
                    .header("Authorization", &auth)
                    .json(&json!({ "n": i }))
                    .send()
                    .await
                    .map_err(fail)?;
                if r.status().as_u16() != 202 {
                    return Err(fail(format!("intake answered {}", r.status())));
                }
            }
            Ok::<(), Failure>(())
        }));
    }
    for t in tasks {
        t.await.map_err(fail)??;
    }
    let intake = (per * clients.max(1)) as f64 / start.elapsed().as_secs_f64();
    e.shutdown(Duration::from_secs(5)).await;

    let ms = |d: Duration| format!("{:.3} ms", d.as_secs_f64() * 1000.0);
    println!("| measure | result |");
    println!("|---|---|");
    println!("| completed 3-step runs/s ({runs} runs, 256 in flight) | {runs_per_s:.0} |");
    println!(
        "| amortised engine cost per step at that load | {} |",
        ms(amortised_step)
    );
    println!(
        "| engine overhead per step, low load ((p50 3-step − p50 1-step) / 2) | {} |",
        ms(overhead)
    );
    println!(
        "| end-to-end latency 3-step run, p50 | {} |",
        ms(pct(&l3, 0.5))
    );
    println!(
        "| end-to-end latency 3-step run, p99 | {} |",
        ms(pct(&l3, 0.99))
    );
    println!(
        "| end-to-end latency 1-step run, p50 / p99 | {} / {} |",
        ms(pct(&l1, 0.5)),
        ms(pct(&l1, 0.99))
    );
    println!(
        "| HTTP intake requests/s ({requests} POSTs, {clients} keep-alive clients, client in the same process) | {intake:.0} |"
    );
    Ok(())
}
