//! `countersign bench --console N`: the operations console over N runs.
//! N runs of a two-step workflow (one in fifty fails) on a fresh SQLite
//! database (or a scratch PostgreSQL one), each input with a name, a company, a message and a unique
//! ticket word; then, over HTTP on loopback as a signed-in admin: the runs
//! list, its status filter, a text search for a rare and a common word,
//! and run pages. Printed as a Markdown table for BENCHMARKS.md. A
//! benchmark, not a test.

use std::time::{Duration, Instant};

use crate::Failure;
use crate::bench_desk::{Place, Signed, get_page, print_table, serve_signed_in};

fn fail(e: impl std::fmt::Display) -> Failure {
    Failure {
        code: 1,
        message: e.to_string(),
    }
}

const WORKFLOW: &str = r#"
name: console
steps:
  - id: screen
    rules:
      - when: input.n % 50 == 0
        then: { fail: "needs a person" }
  - id: route
    rules:
      - when: input.n < 0
        then: { finish: negative }
"#;

const TEXTS: [&str; 4] = [
    "Our invoice is wrong and we were charged twice, please call me urgently",
    "We would like a quote for 40 seats and a demo next week",
    "The export button is broken since yesterday, error 500",
    "Can you tell me your opening hours?",
];

pub async fn run(runs: usize, samples: usize, postgres: Option<&str>) -> Result<(), Failure> {
    let (db, place) = Place::new("console", postgres).await?;
    let engine = crate::commands::node_for(&db, WORKFLOW).await?;

    let started = Instant::now();
    let mut pending = Vec::new();
    // Run pages are sampled across the whole history, old and new.
    let step = (runs / samples.max(1)).max(1);
    let mut ids = Vec::with_capacity(samples);
    let mut seen = 0usize;
    for i in 0..runs {
        let input = serde_json::json!({
            "name": format!("Customer {i}"),
            "email": format!("c{i}@example.com"),
            "company": format!("Company {}", i % 97),
            "message": format!("{} (ticket t{i}x)", TEXTS[i % TEXTS.len()]),
            "n": i,
        });
        let e = engine.clone();
        pending.push(tokio::spawn(async move {
            e.submit("console", input, None, "bench").await
        }));
        if pending.len() >= 512 || i + 1 == runs {
            for p in pending.drain(..) {
                let run = p.await.map_err(fail)?.map_err(fail)?;
                if seen.is_multiple_of(step) && ids.len() < samples {
                    ids.push(run.run_id);
                }
                seen += 1;
            }
        }
    }
    let fill_s = started.elapsed().as_secs_f64();
    // Let the last runs settle.
    tokio::time::sleep(Duration::from_secs(2)).await;

    let Signed {
        base, http, jar, ..
    } = serve_signed_in(&engine).await?;
    let get = |path: String| get_page(&http, &base, &jar, path);
    let mut rows = Vec::new();
    for (what, paths) in [
        (
            "runs list, first page (`GET /runs`)",
            vec!["/runs".to_string(); samples],
        ),
        (
            "runs list, failed (`?status=failed`)",
            vec!["/runs?status=failed".to_string(); samples],
        ),
        (
            "text search, one run matches (`?q=t{i}x`)",
            (0..samples)
                .map(|k| format!("/runs?q=t{}x", (k * step) % runs.max(1)))
                .collect(),
        ),
        (
            "text search, a quarter match (`?q=invoice`)",
            vec!["/runs?q=invoice".to_string(); samples],
        ),
        (
            "run page (`GET /runs/{id}`)",
            ids.iter().map(|id| format!("/runs/{id}")).collect(),
        ),
    ] {
        let Some(first) = paths.first() else { continue };
        get(first.clone()).await?; // warm
        let mut ms = Vec::new();
        for p in paths {
            ms.push(get(p).await?.0);
        }
        rows.push((what, ms));
    }
    print_table(
        &format!("{runs} runs, {}, filled in {fill_s:.0} s", place.backend()),
        rows,
    );
    engine.shutdown(Duration::from_secs(5)).await;
    place.remove().await;
    Ok(())
}
