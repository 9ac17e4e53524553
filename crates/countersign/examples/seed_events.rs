//! Fills a database with audit events for measuring `countersign export`
//! (BENCHMARKS.md): `seed_events DATABASE_URL EVENTS` writes runs of ten
//! events each through the store API, as the engine would. Not run in CI.
#![allow(clippy::print_stdout)]

use std::sync::Arc;

use store::{NewEvent, NewRun, Store};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let (Some(url), Some(n)) = (args.get(1), args.get(2)) else {
        anyhow::bail!("usage: seed_events sqlite://PATH|postgres://URL EVENTS");
    };
    let events: usize = n.parse()?;
    let store: Arc<dyn Store> = if let Some(path) = url.strip_prefix("sqlite://") {
        Arc::new(store_sqlite::SqliteStore::open(
            std::path::Path::new(path),
            store_sqlite::Durability::CrashSafe,
            store_sqlite::Role::Admin,
        )?)
    } else {
        Arc::new(store_postgres::PgStore::connect(url).await?)
    };
    let per_run = 10;
    let t0: i64 = 1_764_547_200_000; // 2025-12-01
    let mut tasks = tokio::task::JoinSet::new();
    for r in 0..events.div_ceil(per_run) {
        let store = store.clone();
        tasks.spawn(async move {
            let at = t0 + (r as i64) * 1000;
            let run = NewRun {
                id: format!("run-{r:08}"),
                workflow: if r % 2 == 0 { "leads" } else { "refunds" }.into(),
                version: 1,
                input: r#"{"email":"a@example.com","text":"Printer on fire"}"#.into(),
                idempotency_key: None,
                created_at_ms: at,
                lease: None,
                events: (0..per_run)
                    .map(|i| NewEvent {
                        kind: "step.completed".into(),
                        actor: "system".into(),
                        data: format!(
                            r#"{{"step":"triage","index":{i},"output":{{"summary":"Printer on fire, \"urgent\"","priority":"high"}}}}"#
                        ),
                        at_ms: at + i as i64,
                    })
                    .collect(),
            };
            store.create_run(run).await
        });
        while tasks.len() >= 256 {
            tasks.join_next().await.expect("a task")??;
        }
    }
    while let Some(t) = tasks.join_next().await {
        t??;
    }
    println!(
        "{} events in {} runs",
        events.div_ceil(per_run) * per_run,
        events.div_ceil(per_run)
    );
    Ok(())
}
