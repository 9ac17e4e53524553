//! The crash test: a real `countersign serve` child process is SIGKILLed at
//! random moments while 300 runs with an `http` effect go through it. Every
//! run must complete, none may be lost or duplicated, and the receiving
//! fake must see each effect once per idempotency key.

use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use test_kit::fake_http::FakeHttp;

use crate::{Proc, TempDir, bin, free_port, token, wait_healthy};

const RUNS: usize = 300;
const KILLS: usize = 5;

const WORKFLOW: &str = r#"
name: crash
input:
  schema: { type: object, required: [n], properties: { n: { type: integer } } }
steps:
  - id: screen
    rules:
      - when: input.n < 0
        then: { finish: negative }
  - id: call
    http:
      url: "${env:CRASH_FAKE_URL}"
      body: { n: "{{ input.n }}", run: "{{ run.id }}" }
      timeout: 5s
    retry: { max_attempts: 100, initial: 20ms, max: 500ms }
  - id: after
    rules:
      - when: call.status != 200
        then: { fail: "unexpected status" }
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_loses_no_run_and_duplicates_no_effect() {
    let fake = FakeHttp::start().await;
    fake.delay(15); // keep calls in flight so kills land mid-effect
    let dir = TempDir::new("crash");
    std::fs::create_dir_all(dir.0.join("workflows")).unwrap();
    std::fs::write(dir.0.join("workflows/crash.yaml"), WORKFLOW).unwrap();
    let secret = token(&dir);
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();

    let mut server = Some(Proc::serve(&dir, port, &[("CRASH_FAKE_URL", fake.url())]));
    wait_healthy(&client, &base).await;

    // Submit every run, each under its own Idempotency-Key, re-sending
    // through crashes until accepted; kill the server now and then.
    let mut kills = 0;
    let mut next_kill = Instant::now() + Duration::from_millis(150);
    let mut ids = std::collections::HashSet::new();
    let mut n = 0;
    while n < RUNS {
        if kills < KILLS && Instant::now() >= next_kill {
            server.take().expect("server").sigkill();
            kills += 1;
            server = Some(Proc::serve(&dir, port, &[("CRASH_FAKE_URL", fake.url())]));
            wait_healthy(&client, &base).await;
            next_kill = Instant::now() + Duration::from_millis(100 + (n as u64 * 37) % 250);
        }
        let sent = client
            .post(format!("{base}/api/v1/workflows/crash/runs"))
            .bearer_auth(&secret)
            .header("Idempotency-Key", format!("crash-{n}"))
            .json(&json!({ "n": n }))
            .send()
            .await;
        match sent {
            Ok(r) if r.status().is_success() => {
                let body: Value = r.json().await.unwrap();
                ids.insert(body["run_id"].as_str().unwrap().to_string());
                n += 1;
            }
            Ok(r) => panic!("intake answered {}", r.status()),
            Err(_) => wait_healthy(&client, &base).await,
        }
    }
    // Keep killing while runs are still in flight, at least KILLS times in all.
    while kills < KILLS + 2 {
        tokio::time::sleep(Duration::from_millis(120)).await;
        server.take().expect("server").sigkill();
        kills += 1;
        server = Some(Proc::serve(&dir, port, &[("CRASH_FAKE_URL", fake.url())]));
        wait_healthy(&client, &base).await;
    }
    assert_eq!(ids.len(), RUNS, "one run per idempotency key");

    // Every run completes.
    let deadline = Instant::now() + Duration::from_secs(120);
    let completed = loop {
        let mut completed = 0;
        let mut cursor: Option<String> = None;
        let mut total = 0;
        loop {
            let mut url = format!("{base}/api/v1/runs?workflow=crash&limit=200");
            if let Some(c) = &cursor {
                url.push_str(&format!("&cursor={c}"));
            }
            let page: Value = client
                .get(url)
                .bearer_auth(&secret)
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            let items = page["items"].as_array().unwrap();
            total += items.len();
            completed += items.iter().filter(|r| r["status"] == "completed").count();
            for r in items {
                assert_ne!(r["status"], "failed", "run failed: {r}");
            }
            match page["next_cursor"].as_str() {
                Some(c) => cursor = Some(c.to_string()),
                None => break,
            }
        }
        assert_eq!(total, RUNS, "runs lost or duplicated");
        if completed == RUNS || Instant::now() > deadline {
            break completed;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(completed, RUNS, "every run completes");

    // Each effect reached the fake once per idempotency key.
    assert_eq!(fake.effects(), RUNS as u64, "distinct effects");
    for id in &ids {
        let key = format!("{id}:call");
        assert!(fake.keys().contains(&key), "no effect for {key}");
    }
    eprintln!(
        "crash test: {kills} kills, {} requests for {} effects",
        fake.hits(),
        fake.effects()
    );

    // The audit log of every run still verifies.
    drop(server);
    let out = Command::new(bin())
        .args([
            "audit",
            "verify",
            "--database",
            &format!("sqlite://{}", dir.0.join("cs.db").display()),
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}
