//! OpenTelemetry traces from the real `serve`: with
//! `OTEL_EXPORTER_OTLP_ENDPOINT` pointing at an in-process collector, each
//! run of the reference workflow arrives as one trace (its id derived from
//! the run id), holding a `run` span per drive, a span per step attempt
//! named after the step's kind, and a span per connector call inside its
//! step — and no credential, input or body anywhere in what was sent. A
//! run whose node dies mid-call stays in its trace on the node that
//! finishes it.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use serde_json::json;
use sha2::Digest as _;
use test_kit::fake_gmail;
use test_kit::fake_monday;
use test_kit::fake_openai::{FakeOpenAi, Reply};
use test_kit::fake_otlp::{FakeCollector, Span};
use test_kit::fake_slack;

use crate::reference::{Reference, get};
use crate::{Proc, TempDir, free_port, token, wait_healthy};

const OPENAI_KEY: &str = "sk-proj-fakeTraceKey0123456789abcdef";

/// The reference workflow's steps, by id, and their kinds (from
/// `examples/inbound-request.yaml`).
const STEPS: [(&str, &str); 7] = [
    ("triage", "llm"),
    ("screen", "rules"),
    ("review", "review"),
    ("record", "validate"),
    ("crm", "crm"),
    ("notify", "slack"),
    ("reply", "email"),
];

/// `sha256(run id)`: bytes 0..16 are the trace id, 16..24 the remote
/// parent every drive of the run hangs from (docs/operations.md, "Traces").
fn derived(run_id: &str) -> (String, String) {
    let d = sha2::Sha256::digest(run_id.as_bytes());
    (hex::encode(&d[..16]), hex::encode(&d[16..24]))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_run_is_one_trace_of_its_steps_and_connector_calls() {
    let collector = FakeCollector::start().await;
    // The model refuses the key (401), so every run also has a failed
    // `llm` call before the heuristic fallback drafts.
    let openai = FakeOpenAi::start(Reply::EchoKey).await;
    let mut r = Reference::start(
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", collector.url()),
            ("OPENAI_API_KEY", OPENAI_KEY.into()),
            ("OPENAI_BASE_URL", openai.url()),
        ],
        None,
    )
    .await;
    const N: usize = 3;
    let mut runs = Vec::new();
    for i in 0..N {
        let run = r
            .submit(&format!(
                "Please call me about pricing for {} seats",
                10 + i
            ))
            .await;
        assert_eq!(run["wait"], json!("review"), "{run}");
        runs.push(run["run_id"].as_str().unwrap().to_string());
    }
    let pending = get(
        &r.client,
        format!("{}/api/v1/reviews?status=pending&limit=100", r.base),
        &r.secret,
    )
    .await;
    let tasks = pending["items"].as_array().unwrap();
    assert_eq!(tasks.len(), N, "{pending}");
    for task in tasks {
        let decided = r
            .client
            .post(format!(
                "{}/api/v1/reviews/{}/decision",
                r.base,
                task["id"].as_str().unwrap()
            ))
            .bearer_auth(&r.secret)
            .json(&json!({ "decision": "approve", "values": { "intent": "sales_lead" } }))
            .send()
            .await
            .unwrap();
        assert!(decided.status().is_success());
    }
    for id in &runs {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let run = get(&r.client, format!("{}/api/v1/runs/{id}", r.base), &r.secret).await;
            if run["status"] == json!("completed") {
                break;
            }
            assert!(Instant::now() < deadline, "run never completed: {run}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    assert_eq!(r.gmail.sent().len(), N, "every run sent its email");
    // The batch is flushed at shutdown.
    r.stop().await;

    assert_eq!(collector.problems(), Vec::<String>::new());
    let spans = collector.spans();
    assert!(spans.iter().all(|s| s.service == "countersign"));
    let traces: BTreeSet<&str> = spans.iter().map(|s| s.trace_id.as_str()).collect();
    let expected: BTreeSet<String> = runs.iter().map(|id| derived(id).0).collect();
    assert_eq!(
        traces,
        expected.iter().map(String::as_str).collect(),
        "exactly one trace per run, its id derived from the run id"
    );
    let by_id: BTreeMap<&str, &Span> = spans.iter().map(|s| (s.span_id.as_str(), s)).collect();
    let parent = |s: &Span| by_id.get(s.parent.as_str()).copied();
    let (mut token_refreshes, mut creates) = (0, 0);
    for id in &runs {
        let (trace_id, remote_parent) = derived(id);
        let trace: Vec<&Span> = spans.iter().filter(|s| s.trace_id == trace_id).collect();

        // One `run` span per drive: before the review and after it, each
        // parented on the run's remote span context.
        let drives: Vec<&Span> = trace.iter().copied().filter(|s| s.name == "run").collect();
        assert!(drives.len() >= 2, "{drives:#?}");
        for d in &drives {
            assert_eq!(d.parent, remote_parent, "{d:#?}");
            assert_eq!(
                (d.attr("run_id"), d.attr("workflow")),
                (id.as_str(), "inbound-request")
            );
        }

        // Every step attempt, named after its kind, inside a drive of its run.
        let steps: Vec<&Span> = trace
            .iter()
            .copied()
            .filter(|s| s.attributes.contains_key("step_id"))
            .collect();
        for s in &steps {
            assert_eq!(parent(s).map(|p| p.name.as_str()), Some("run"), "{s:#?}");
            assert_eq!(s.attr("run_id"), id.as_str());
            let kind = STEPS
                .iter()
                .find(|(step, _)| *step == s.attr("step_id"))
                .map(|(_, kind)| *kind);
            assert_eq!(Some(s.name.as_str()), kind, "{s:#?}");
            assert_eq!(s.attr("attempt"), "1", "{s:#?}");
        }
        let completed: BTreeSet<&str> = steps
            .iter()
            .filter(|s| s.attr("status") == "completed")
            .map(|s| s.attr("step_id"))
            .collect();
        assert_eq!(
            completed,
            STEPS.iter().map(|(step, _)| *step).collect(),
            "every step completed once"
        );
        assert!(
            steps
                .iter()
                .any(|s| s.attr("step_id") == "review" && s.attr("status") == "waiting"),
            "the review waited first"
        );

        // Connector calls, each inside the step (or the call) that made it.
        let calls: Vec<&Span> = trace
            .iter()
            .copied()
            .filter(|s| s.attributes.contains_key("connector"))
            .collect();
        let step_of = |s: &Span| {
            let mut p = parent(s);
            while let Some(x) = p.filter(|x| x.attributes.contains_key("connector")) {
                p = parent(x);
            }
            p.filter(|x| x.attributes.contains_key("step_id"))
                .map(|x| x.attr("step_id").to_string())
        };
        let seen: BTreeSet<(String, &str, &str, &str)> = calls
            .iter()
            .map(|c| {
                (
                    step_of(c).unwrap_or_else(|| panic!("a call outside a step: {c:#?}")),
                    c.attr("connector"),
                    c.attr("operation"),
                    c.attr("outcome"),
                )
            })
            .collect();
        // (step, connector, operation or any, outcome)
        for want in [
            ("triage", "llm", Some("chat.completions"), "permanent"),
            ("crm", "monday", None, "ok"),
            ("notify", "slack", Some("chat.postMessage"), "ok"),
            ("reply", "gmail", Some("messages.send"), "ok"),
        ] {
            assert!(
                seen.iter().any(|(step, connector, op, outcome)| {
                    (step.as_str(), *connector, *outcome) == (want.0, want.1, want.3)
                        && want.2.is_none_or(|w| w == *op)
                }),
                "{want:?} not in {seen:#?}"
            );
        }
        creates += calls
            .iter()
            .filter(|c| c.attr("operation") == "mutation Create")
            .count();
        for c in &calls {
            assert_eq!(
                c.name,
                format!("{} {}", c.attr("connector"), c.attr("operation"))
            );
            assert_eq!(c.status == 2, c.attr("outcome") != "ok", "{c:#?}");
        }
        token_refreshes += calls
            .iter()
            .filter(|c| c.attr("operation") == "oauth2.token")
            .count();
    }
    assert!(token_refreshes >= 1, "the Gmail token refresh is traced");
    assert_eq!(creates, 1, "one Monday item created, then updated");

    // Nothing secret or personal in what left: no credential, no API
    // token, no input (message, email address), no request body.
    let sent: Vec<String> = collector
        .bodies()
        .iter()
        .map(|b| String::from_utf8_lossy(b).into_owned())
        .collect();
    assert!(
        sent.iter().any(|b| b.contains(runs[0].as_str())),
        "attributes travel as plain text, so the search below can find a leak"
    );
    for needle in [
        OPENAI_KEY,
        fake_monday::TOKEN,
        fake_slack::TOKEN,
        fake_gmail::CLIENT_SECRET,
        fake_gmail::REFRESH_TOKEN,
        "ya29.fake-access",
        r.secret.as_str(),
        "pricing for",
        "ana@example.com",
        "Ana — Acme",
    ] {
        assert!(
            sent.iter().all(|b| !b.contains(needle)),
            "{needle:?} was sent to the collector"
        );
    }
}

const CRASH_WORKFLOW: &str = r#"
name: crash-trace
steps:
  - id: screen
    rules:
      - when: input.n < 0
        then: { finish: negative }
  - id: call
    http:
      url: "${env:CRASH_FAKE_URL}"
      body: { n: "{{ input.n }}" }
      timeout: 3s
  - id: after
    rules:
      - when: call.status != 200
        then: { fail: "unexpected status" }
"#;

/// A run whose node is SIGKILLed mid-call and which another node (a new
/// process, its own OpenTelemetry resource) finishes stays one trace:
/// the spans both nodes exported carry the run's derived trace id.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_resumed_on_another_node_stays_in_its_trace() {
    let collector = FakeCollector::start().await;
    let fake = test_kit::FakeHttp::start().await;
    fake.delay(2_000); // the call is still in flight when node a dies
    let dir = TempDir::new("crash-trace");
    std::fs::create_dir_all(dir.0.join("workflows")).unwrap();
    std::fs::write(dir.0.join("workflows/crash-trace.yaml"), CRASH_WORKFLOW).unwrap();
    let secret = token(&dir);
    let client = reqwest::Client::new();
    let env = |node: &str| {
        vec![
            ("CRASH_FAKE_URL", fake.url()),
            ("OTEL_EXPORTER_OTLP_ENDPOINT", collector.url()),
            (
                "OTEL_RESOURCE_ATTRIBUTES",
                format!("countersign.node={node}"),
            ),
            // Export finished spans at once: node a never shuts down.
            ("OTEL_BSP_SCHEDULE_DELAY", "20".into()),
            ("COUNTERSIGN_LEASE", "1s".into()),
        ]
    };
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let mut a = Proc::serve(&dir, port, &env("a"));
    wait_healthy(&client, &base).await;
    let run: serde_json::Value = client
        .post(format!("{base}/api/v1/workflows/crash-trace/runs"))
        .bearer_auth(&secret)
        .json(&json!({ "n": 1 }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let run_id = run["run_id"].as_str().unwrap().to_string();
    let deadline = Instant::now() + Duration::from_secs(30);
    while fake.hits() == 0
        || !collector.spans().iter().any(|s| {
            s.attr("step_id") == "screen"
                && s.resource.get("countersign.node").is_some_and(|n| n == "a")
        })
    {
        assert!(
            Instant::now() < deadline,
            "node a never called out or exported its first step"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    a.sigkill();
    fake.delay(0);

    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let mut b = Proc::serve(&dir, port, &env("b"));
    wait_healthy(&client, &base).await;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let r = get(&client, format!("{base}/api/v1/runs/{run_id}"), &secret).await;
        if r["status"] == json!("completed") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "node b never finished the run: {r}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    b.sigterm();
    let deadline = Instant::now() + Duration::from_secs(30);
    while b.try_wait().is_none() {
        assert!(Instant::now() < deadline, "node b did not stop on SIGTERM");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    assert_eq!(collector.problems(), Vec::<String>::new());
    let spans = collector.spans();
    let (trace_id, remote_parent) = derived(&run_id);
    assert!(spans.iter().all(|s| s.trace_id == trace_id), "one trace");
    let on = |node: &str| -> Vec<&Span> {
        spans
            .iter()
            .filter(|s| {
                s.resource
                    .get("countersign.node")
                    .is_some_and(|n| n == node)
            })
            .collect()
    };
    let (on_a, on_b) = (on("a"), on("b"));
    assert!(
        on_a.iter()
            .any(|s| s.name == "rules" && s.attr("step_id") == "screen")
    );
    // Node b's drives (the in-flight rule may park the run once before
    // the look-up) all hang from the run's remote parent.
    let drives_b: Vec<&str> = on_b
        .iter()
        .filter(|s| s.name == "run")
        .map(|s| {
            assert_eq!(s.parent, remote_parent, "{s:#?}");
            s.span_id.as_str()
        })
        .collect();
    assert!(!drives_b.is_empty(), "{on_b:#?}");
    let call = on_b
        .iter()
        .find(|s| s.attr("step_id") == "call" && s.attr("status") == "completed")
        .expect("node b completed the call step");
    assert_eq!(call.name, "http");
    assert!(drives_b.contains(&call.parent.as_str()), "{call:#?}");
    assert!(
        on_b.iter()
            .any(|s| s.attr("connector") == "http" && s.parent == call.span_id),
        "node b's http call (or its look-up) is inside the step"
    );
}

/// A bad endpoint is a configuration error: exit 2, naming the variable.
#[test]
fn a_bad_otlp_endpoint_exits_2() {
    let out = std::process::Command::new(crate::bin())
        .args(["run", "no-such-file.yaml"])
        .env("OTEL_EXPORTER_OTLP_ENDPOINT", "collector:4318")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("OTEL_EXPORTER_OTLP_ENDPOINT"), "{err}");
}
