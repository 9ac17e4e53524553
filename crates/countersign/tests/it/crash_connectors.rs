//! The crash test extended to the connectors: a real `countersign serve`
//! child process runs `slack` + `crm` (Monday) + `email` (Gmail API) steps
//! against the in-process vendor fakes and is SIGKILLed at random moments.
//! Every run must complete with exactly one Slack message, one Monday item
//! and one email per idempotency key. Also: a Monday `create_item` still
//! in flight inside the vendor when `serve` is killed is found after the
//! restart, not created twice; `validate --online` against the fake
//! Monday board.

use std::collections::{HashMap, HashSet};
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use test_kit::fake_gmail::{self, FakeGmail};
use test_kit::fake_monday::{self, FakeMonday};
use test_kit::fake_slack::{self, FakeSlack};

use crate::{Proc, TempDir, bin, free_port, token, wait_healthy};

const RUNS: usize = 100;
const KILLS: usize = 6;
const BOARD: &str = "4242";

const WORKFLOW: &str = r##"
name: connectors
input:
  schema: { type: object, required: [n], properties: { n: { type: integer } } }
steps:
  - id: notify
    retry: { max_attempts: 100, initial: 20ms, max: 300ms }
    timeout: 1s
    slack:
      channel: "#ops-intake"
      text: "Request {{ input.n }}"
  - id: crm
    retry: { max_attempts: 100, initial: 20ms, max: 300ms }
    timeout: 1s
    crm:
      monday:
        board: "4242"
        upsert_by: { column: email, value: "user-{{ input.n }}@example.com" }
        item_name: "Request {{ input.n }}"
        key_column: cs_key
        columns:
          email: { email: "user-{{ input.n }}@example.com" }
          notes: { long_text: "request {{ input.n }}" }
  - id: mail
    retry: { max_attempts: 100, initial: 20ms, max: 300ms }
    timeout: 1s
    email:
      to: "user-{{ input.n }}@example.com"
      subject: "Request {{ input.n }} — reçu"
      body: "We got request {{ input.n }}."
"##;

struct Fakes {
    slack: FakeSlack,
    monday: FakeMonday,
    gmail: FakeGmail,
}

impl Fakes {
    async fn start() -> Fakes {
        let monday = FakeMonday::start().await;
        monday.board(
            BOARD,
            &[
                ("email", "email", &[]),
                ("notes", "long_text", &[]),
                ("cs_key", "text", &[]),
            ],
        );
        Fakes {
            slack: FakeSlack::start().await,
            monday,
            gmail: FakeGmail::start().await,
        }
    }

    fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("SLACK_API_URL", self.slack.url()),
            ("SLACK_BOT_TOKEN", fake_slack::TOKEN.into()),
            ("MONDAY_API_URL", self.monday.url()),
            ("MONDAY_API_TOKEN", fake_monday::TOKEN.into()),
            ("GMAIL_API_URL", self.gmail.api_url()),
            ("GMAIL_TOKEN_URL", self.gmail.token_url()),
            ("GMAIL_CLIENT_ID", fake_gmail::CLIENT_ID.into()),
            ("GMAIL_CLIENT_SECRET", fake_gmail::CLIENT_SECRET.into()),
            ("GMAIL_REFRESH_TOKEN", fake_gmail::REFRESH_TOKEN.into()),
            ("GMAIL_SENDER", fake_gmail::SENDER.into()),
        ]
    }

    /// The vendors answer late, after doing the work, so kills land
    /// between a call and its answer (Monday's writes are serialised per
    /// board, so its delay stays short).
    fn delay(&self, slack: u64, monday: u64, gmail: u64) {
        self.slack.delay(slack);
        self.monday.delay(monday);
        self.gmail.delay(gmail);
    }
}

/// A pseudo-random number in `lo..hi` from the clock: kill moments differ
/// from one test run to the next.
fn jitter(lo: u64, hi: u64) -> u64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos() as u64);
    lo + nanos.wrapping_mul(0x9E37_79B9_7F4A_7C15) % (hi - lo)
}

/// Every run of the workflow, by status.
async fn statuses(client: &reqwest::Client, base: &str, secret: &str) -> Vec<Value> {
    statuses_of(client, base, secret, "connectors").await
}

/// Every run of `workflow`, by status.
async fn statuses_of(
    client: &reqwest::Client,
    base: &str,
    secret: &str,
    workflow: &str,
) -> Vec<Value> {
    let mut out = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut url = format!("{base}/api/v1/runs?workflow={workflow}&limit=200");
        if let Some(c) = &cursor {
            url.push_str(&format!("&cursor={c}"));
        }
        let page: Value = client
            .get(url)
            .bearer_auth(secret)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        out.extend(page["items"].as_array().unwrap().iter().cloned());
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_string()),
            None => return out,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_mid_vendor_call_duplicates_no_message_item_or_email() {
    let fakes = Fakes::start().await;
    fakes.delay(120, 20, 60);
    let env = fakes.env();
    let dir = TempDir::new("crash-connectors");
    std::fs::create_dir_all(dir.0.join("workflows")).unwrap();
    std::fs::write(dir.0.join("workflows/connectors.yaml"), WORKFLOW).unwrap();
    let secret = token(&dir);
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();

    let mut server = Some(Proc::serve(&dir, port, &env));
    wait_healthy(&client, &base).await;

    let mut kills = 0;
    let mut next_kill = Instant::now() + Duration::from_millis(jitter(30, 150));
    let mut ids: HashMap<String, usize> = HashMap::new();
    let mut n = 0;
    while n < RUNS {
        if kills < KILLS && Instant::now() >= next_kill {
            server.take().expect("server").sigkill();
            kills += 1;
            server = Some(Proc::serve(&dir, port, &env));
            wait_healthy(&client, &base).await;
            next_kill = Instant::now() + Duration::from_millis(jitter(60, 250));
        }
        let sent = client
            .post(format!("{base}/api/v1/workflows/connectors/runs"))
            .bearer_auth(&secret)
            .header("Idempotency-Key", format!("conn-{n}"))
            .json(&json!({ "n": n }))
            .send()
            .await;
        match sent {
            Ok(r) if r.status().is_success() => {
                let body: Value = r.json().await.unwrap();
                ids.insert(body["run_id"].as_str().unwrap().to_string(), n);
                n += 1;
            }
            Ok(r) => panic!("intake answered {}", r.status()),
            Err(_) => wait_healthy(&client, &base).await,
        }
    }
    // Keep killing while runs are still in flight.
    while kills < KILLS + 3 {
        tokio::time::sleep(Duration::from_millis(jitter(50, 250))).await;
        server.take().expect("server").sigkill();
        kills += 1;
        server = Some(Proc::serve(&dir, port, &env));
        wait_healthy(&client, &base).await;
    }
    assert_eq!(ids.len(), RUNS, "one run per idempotency key");
    fakes.delay(0, 0, 0);

    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        let runs = statuses(&client, &base, &secret).await;
        assert_eq!(runs.len(), RUNS, "runs lost or duplicated");
        for r in &runs {
            assert_ne!(r["status"], "failed", "run failed: {r}");
        }
        let done = runs.iter().filter(|r| r["status"] == "completed").count();
        if done == RUNS {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "only {done} of {RUNS} runs completed"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Exactly one effect per idempotency key, at every vendor.
    let items = fakes.monday.items(BOARD);
    let sent = fakes.gmail.sent();
    for (id, n) in &ids {
        let key = format!("{id}:notify");
        assert_eq!(fakes.slack.count_key(&key), 1, "Slack messages for {key}");
        let addr = format!("user-{n}@example.com");
        let on_board = items
            .iter()
            .filter(|i| i.values.get("email").is_some_and(|v| v["email"] == addr))
            .count();
        assert_eq!(on_board, 1, "Monday items for {addr}");
        let mails = sent
            .iter()
            .filter(|m| m.headers.get("to").is_some_and(|t| t.contains(&addr)))
            .count();
        assert_eq!(mails, 1, "emails to {addr}");
    }
    assert_eq!(fakes.slack.posted().len(), RUNS);
    assert_eq!(items.len(), RUNS);
    assert_eq!(sent.len(), RUNS);
    let distinct: HashSet<_> = sent.iter().map(|m| m.message_id.clone()).collect();
    assert_eq!(distinct.len(), RUNS, "one Message-ID per key");
    assert_eq!(fakes.slack.problems(), Vec::<String>::new());
    assert_eq!(fakes.monday.problems(), Vec::<String>::new());
    assert_eq!(fakes.gmail.problems(), Vec::<String>::new());
    // The kills landed mid-call: some effects were reconciled.
    let gmail_searches = fakes
        .gmail
        .calls()
        .iter()
        .filter(|c| c.contains("rfc822msgid"))
        .count();
    let slack_searches = fakes
        .slack
        .calls()
        .iter()
        .filter(|(m, _)| m == "conversations.history")
        .count();
    // One lookup per item, plus one per reconciliation or resumed attempt.
    let monday_lookups = fakes
        .monday
        .documents()
        .iter()
        .filter(|(q, _)| !q.starts_with("mutation"))
        .count()
        - RUNS;
    eprintln!(
        "connector crash test: {kills} kills; reconciliations: {gmail_searches} Gmail searches, {slack_searches} Slack history reads, {monday_lookups} extra Monday lookups; {} Gmail calls, {} Monday documents, {} Slack calls for {RUNS} runs",
        fakes.gmail.calls().len(),
        fakes.monday.documents().len(),
        fakes.slack.calls().len()
    );
    assert!(
        gmail_searches + slack_searches + monday_lookups > 0,
        "no kill landed between effect.started and effect.completed"
    );
}

const IN_FLIGHT: &str = r##"
name: inflight
steps:
  - id: crm
    timeout: 3s
    retry: { max_attempts: 20, initial: 20ms, max: 300ms }
    crm:
      monday:
        board: "4242"
        upsert_by: { column: email, value: "ada@example.com" }
        item_name: "Ada"
        columns:
          email: { email: "ada@example.com" }
"##;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_create_in_flight_when_serve_is_killed_lands_once() {
    let fakes = Fakes::start().await;
    // Monday performs the create 2 s after it arrives, also when the caller
    // died meanwhile (within the step's 3 s timeout).
    fakes.monday.land_creates_after(2_000);
    let env = fakes.env();
    let dir = TempDir::new("crash-in-flight");
    std::fs::create_dir_all(dir.0.join("workflows")).unwrap();
    std::fs::write(dir.0.join("workflows/inflight.yaml"), IN_FLIGHT).unwrap();
    let secret = token(&dir);
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    let mut server = Proc::serve(&dir, port, &env);
    wait_healthy(&client, &base).await;
    let r = client
        .post(format!("{base}/api/v1/workflows/inflight/runs"))
        .bearer_auth(&secret)
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "intake answered {}", r.status());
    let deadline = Instant::now() + Duration::from_secs(20);
    while fakes.monday.creates_received() == 0 {
        assert!(Instant::now() < deadline, "create_item never arrived");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    server.sigkill();
    assert!(fakes.monday.items(BOARD).is_empty(), "not landed yet");
    let _server = Proc::serve(&dir, port, &env);
    wait_healthy(&client, &base).await;

    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let runs = statuses_of(&client, &base, &secret, "inflight").await;
        assert_eq!(runs.len(), 1);
        assert_ne!(runs[0]["status"], "failed", "{}", runs[0]);
        if runs[0]["status"] == "completed" {
            break;
        }
        assert!(Instant::now() < deadline, "not completed: {}", runs[0]);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        fakes.monday.items(BOARD).len(),
        1,
        "one item per upsert key"
    );
    assert_eq!(fakes.monday.creates_received(), 1, "no second create_item");
    assert_eq!(fakes.monday.problems(), Vec::<String>::new());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn validate_online_reports_mapping_errors_and_exits_2() {
    let fakes = Fakes::start().await;
    let dir = TempDir::new("validate-online");
    let good = dir.0.join("good.yaml");
    std::fs::write(&good, WORKFLOW).unwrap();
    let bad = dir.0.join("bad.yaml");
    std::fs::write(
        &bad,
        WORKFLOW.replace(
            "          notes: { long_text:",
            "          next_step: { text: \"call\" }\n          notes: { long_text:",
        ),
    )
    .unwrap();
    let validate = |file: &std::path::Path, online: bool| {
        let mut args = vec!["validate".to_string()];
        if online {
            args.push("--online".into());
        }
        args.push(file.display().to_string());
        let out = Command::new(bin())
            .args(&args)
            .envs(fakes.env())
            .output()
            .expect("run validate");
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).to_string()
                + &String::from_utf8_lossy(&out.stderr),
        )
    };
    let (code, text) = tokio::task::block_in_place(|| validate(&good, true));
    assert_eq!(code, Some(0), "{text}");
    assert!(text.contains("checked online"), "{text}");
    // Offline, the unknown column goes unnoticed; online, it is reported.
    let (code, text) = tokio::task::block_in_place(|| validate(&bad, false));
    assert_eq!(code, Some(0), "{text}");
    let (code, text) = tokio::task::block_in_place(|| validate(&bad, true));
    assert_eq!(code, Some(2), "{text}");
    assert!(
        text.contains("columns.next_step") && text.contains("no column `next_step`"),
        "{text}"
    );
    assert!(!text.contains(fake_monday::TOKEN), "{text}");
}
