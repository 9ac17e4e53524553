//! `countersign eval`: forty reviewed runs seeded by a real engine (the
//! drafts from the fake OpenAI server, the approved values from people's
//! decisions, an `http` effect after each approval), then replayed by the
//! real binary through candidates the fake answers by script. The report's
//! agreement is exactly what the script differs in; no effect reaches any
//! fake and nothing in the store changes; the exit code honours
//! `--max-drop` and `--min-samples`.

use std::path::Path;
use std::process::{Command, Output};
use std::sync::Arc;
use std::time::Duration;

use domain::review::Decision;
use engine::{Catalog, Engine, Files, StepKinds};
use serde_json::{Value as Json, json};
use store::{RunStatus, Store, WaitReason};
use store_sqlite::{Durability, Role, SqliteStore};
use test_kit::fake_http::FakeHttp;
use test_kit::fake_openai::{FakeOpenAi, Reply};
use test_kit::fixture::{self, TIMEOUT, person, wait_status};

use crate::{TempDir, bin};

const KEY: &str = "sk-test-eval-key-0001";
const INPUTS: usize = 40;

const WORKFLOW: &str = r#"
name: intake
input:
  schema:
    type: object
    required: [message]
    properties:
      message: { type: string }
steps:
  - id: triage
    llm:
      model: gpt-4o-mini
      prompt: prompts/triage.md.j2
      output:
        intent:  { enum: [billing, sales_lead, support_request, spam] }
        summary: { type: string }
  - id: review
    review:
      fields: [intent, summary]
      queue: operations
  - id: notify
    http:
      url: "$URL/hook"
      body: { intent: "{{ approved.intent }}", summary: "{{ approved.summary }}" }
"#;

const PROMPT: &str = "Triage this request.\n{{ input.message }}\n";
const CANDIDATE: &str = "Candidate v2: classify the request.\n{{ input.message }}\n";

fn message(i: usize) -> String {
    format!("Request {i:02}: please look at my account.")
}

/// The number of the request a chat completion body is about.
fn request_of(body: &Json) -> Option<usize> {
    let user = body["messages"][1]["content"].as_str()?;
    let at = user.find("Request ")? + "Request ".len();
    user.get(at..at + 2)?.parse().ok()
}

/// What the drafts said when the runs ran.
fn recorded(i: usize) -> Json {
    json!({ "intent": "billing", "summary": format!("Summary for request {i}.") })
}

/// What the candidate answers: against the recorded drafts it gains
/// `intent` on 0–3 and loses it on 10–11; it gains `summary` on 6 and
/// loses it on 12–14.
fn candidate(i: usize) -> Json {
    let intent = match i {
        0..=3 => "sales_lead",
        10 | 11 => "spam",
        _ => "billing",
    };
    let summary = match i {
        6 => "A different summary.".to_string(),
        12..=14 => "Something else.".to_string(),
        _ => format!("Summary for request {i}."),
    };
    json!({ "intent": intent, "summary": summary })
}

/// What people did: rejected 9, 19, 29, 39; changed `intent` on 0–5 and
/// `summary` on 6–7; on 8 changed only the case and spacing of `summary`.
fn decision(i: usize) -> Decision {
    if i % 10 == 9 {
        return Decision::Reject {
            reason: "not for us".into(),
            comment: None,
        };
    }
    let mut values = serde_json::Map::new();
    if i <= 5 {
        values.insert("intent".into(), json!("sales_lead"));
    }
    match i {
        6 | 7 => {
            values.insert("summary".into(), json!("A different summary."));
        }
        8 => {
            values.insert(
                "summary".into(),
                json!(format!("  summary FOR request {i}. ")),
            );
        }
        _ => {}
    }
    Decision::Approve {
        values,
        comment: None,
    }
}

fn kinds(base_url: &str) -> StepKinds {
    let client = reqwest::Client::new();
    let config = llm::Config {
        openai: llm::openai::Settings {
            base_url: base_url.to_string(),
            api_key: Some(KEY.into()),
        },
        prices: llm::Prices::default(),
    };
    let mut kinds = StepKinds::builtin(client.clone());
    kinds.register(Arc::new(llm::Kind::new(client, config)));
    kinds
}

/// Forty runs through a real engine: drafted by the fake, decided as
/// [`decision`] says, the approved ones posted to `sink`.
async fn seed(path: &Path, openai: &FakeOpenAi, sink: &FakeHttp) {
    let store: Arc<dyn Store> =
        Arc::new(SqliteStore::open(path, Durability::CrashSafe, Role::Worker).unwrap());
    let catalog = Catalog::new(kinds(&openai.url()), fixture::env(&[]), store.clone());
    let files = Files::Given(vec![("prompts/triage.md.j2".into(), PROMPT.into())]);
    let yaml = WORKFLOW.replace("$URL", &sink.url());
    if let Err(e) = catalog.load_source_with(&yaml, "intake.yaml", &files).await {
        panic!("the test workflow does not load:\n{e}");
    }
    let engine = Engine::start(store.clone(), Arc::new(catalog), fixture::config());
    for i in 0..INPUTS {
        let run_id = engine
            .submit("intake", json!({ "message": message(i) }), None, "test")
            .await
            .expect("submit")
            .run_id;
        let run = wait_status(&store, &run_id, |r| r.status.is_settled(r.wait), TIMEOUT).await;
        assert_eq!(
            (run.status, run.wait),
            (RunStatus::Waiting, Some(WaitReason::Review)),
            "{run:#?}"
        );
        let review = store
            .review_for_step(&run_id, 1)
            .await
            .unwrap()
            .expect("the run's review task");
        engine
            .decide_review(&review.id, decision(i), &person("user:ann"))
            .await
            .expect("decide");
        let run = wait_status(&store, &run_id, |r| r.status.is_terminal(), TIMEOUT).await;
        let want = if i % 10 == 9 {
            RunStatus::Rejected
        } else {
            RunStatus::Completed
        };
        assert_eq!(run.status, want, "{run:#?}");
    }
    engine.shutdown(Duration::from_secs(5)).await;
}

/// Every row of the tables a run, a review or an effect lives in.
fn snapshot(path: &Path) -> Vec<String> {
    let conn = rusqlite::Connection::open(path).unwrap();
    let mut out = Vec::new();
    for table in [
        "workflows",
        "runs",
        "steps",
        "work",
        "effects",
        "events",
        "reviews",
        "review_acts",
        "review_fields",
        "notifications",
    ] {
        let mut stmt = conn.prepare(&format!("SELECT * FROM {table}")).unwrap();
        let n = stmt.column_count();
        let mut rows: Vec<String> = stmt
            .query_map([], |row| {
                Ok((0..n)
                    .map(|c| format!("{:?}", row.get_ref(c).unwrap()))
                    .collect::<Vec<_>>()
                    .join("|"))
            })
            .unwrap()
            .map(Result::unwrap)
            .collect();
        rows.sort();
        out.push(format!("{table}: {} rows", rows.len()));
        out.extend(rows.into_iter().map(|r| format!("{table}: {r}")));
    }
    out
}

fn count(snapshot: &[String], table: &str) -> String {
    snapshot
        .iter()
        .find(|l| l.starts_with(&format!("{table}: ")) && l.ends_with(" rows"))
        .cloned()
        .unwrap_or_default()
}

/// Runs `countersign eval` off the runtime's threads: the fakes it calls
/// are served by this test's runtime.
async fn eval(db: &str, args: &[&str]) -> Output {
    let mut cmd = Command::new(bin());
    cmd.arg("eval")
        .args(["--workflow", "intake", "--step", "triage"])
        .args(args)
        .args(["--database", db])
        .env("OPENAI_API_KEY", KEY)
        .env_remove("OPENAI_BASE_URL")
        .env_remove("COUNTERSIGN_DATABASE_URL")
        .env("COUNTERSIGN_LOG", "warn");
    tokio::task::spawn_blocking(move || cmd.output().unwrap())
        .await
        .unwrap()
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn read(path: &Path) -> Json {
    serde_json::from_str(&std::fs::read_to_string(path).expect("the report")).expect("JSON")
}

/// `(field, compared, reviews, current agreed, candidate agreed, gained, lost, dropped)`.
type Figures = (String, String, u64, u64, u64, u64, u64, bool);

fn figures(report: &Json) -> Vec<Figures> {
    report["fields"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            let n = |k: &str| f[k].as_u64().unwrap();
            (
                f["field"].as_str().unwrap().to_string(),
                f["compared"].as_str().unwrap().to_string(),
                n("reviews"),
                f["current"]["agreed"].as_u64().unwrap(),
                f["candidate"]["agreed"].as_u64().unwrap(),
                n("gained"),
                n("lost"),
                f["dropped"].as_bool().unwrap(),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eval_replays_reviewed_inputs_through_a_candidate_and_gates_on_the_drop() {
    let dir = TempDir::new("eval");
    let path = dir.0.join("cs.db");
    let openai = FakeOpenAi::start(Reply::Error {
        status: 500,
        code: "unscripted".into(),
        message: "no scripted answer for this request".into(),
    })
    .await;
    openai.answer_with(|body| {
        let i = request_of(body)?;
        let user = body["messages"][1]["content"].as_str()?;
        let answer = if user.starts_with("Candidate v2") {
            candidate(i)
        } else {
            recorded(i)
        };
        Some(Reply::Json(answer))
    });
    let sink = FakeHttp::start().await;
    seed(&path, &openai, &sink).await;
    assert_eq!(openai.hits(), INPUTS);
    assert_eq!(sink.effects(), 36, "one post per approved run");
    let (sink_hits, before) = (sink.hits(), snapshot(&path));
    assert_eq!(count(&before, "effects"), "effects: 36 rows");

    let db = format!("sqlite://{}", path.display());
    let prompt = dir.0.join("triage-v2.md.j2");
    std::fs::write(&prompt, CANDIDATE).unwrap();
    let prompt_arg = prompt.display().to_string();
    let report = dir.0.join("report.json");
    let report_arg = report.display().to_string();
    let candidate_args = |max_drop: &'static str| {
        vec![
            "--prompt".to_string(),
            prompt_arg.clone(),
            "--model".into(),
            "gpt-4o".into(),
            "--base-url".into(),
            openai.url(),
            "--max-drop".into(),
            max_drop.into(),
            "--report".into(),
            report_arg.clone(),
        ]
    };

    // A drop of exactly 0.05 is allowed by --max-drop 0.05.
    let args = candidate_args("0.05");
    let o = eval(&db, &args.iter().map(String::as_str).collect::<Vec<_>>()).await;
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert_eq!(openai.hits(), 2 * INPUTS, "one call per reviewed input");
    let r = read(&report);
    let want = |dropped: bool| -> Vec<Figures> {
        vec![
            // 36 approved, intent changed on 0–5, 4 rejected: 30 agree; the
            // candidate gains 0–3 and loses 10–11.
            ("intent".into(), "exact".into(), 40, 30, 32, 4, 2, false),
            // summary changed on 6–7 (8 only in case and spacing): 34 agree
            // normalised; the candidate gains 6 and loses 12–14.
            (
                "summary".into(),
                "normalised".into(),
                40,
                34,
                32,
                1,
                3,
                dropped,
            ),
        ]
    };
    assert_eq!(figures(&r), want(false), "{r:#}");
    let f = &r["fields"];
    assert_eq!(
        (
            f[0]["current"]["agreement"].as_f64(),
            f[0]["candidate"]["agreement"].as_f64(),
            f[0]["change"].as_f64(),
            f[1]["current"]["agreement"].as_f64(),
            f[1]["candidate"]["agreement"].as_f64(),
            f[1]["change"].as_f64(),
        ),
        (
            Some(0.75),
            Some(0.8),
            Some(0.05),
            Some(0.85),
            Some(0.8),
            Some(-0.05)
        )
    );
    assert_eq!(
        (
            f[1]["current"]["exact_agreement"].as_f64(),
            f[1]["candidate"]["exact_agreement"].as_f64(),
            f[0]["current"]["interval"]["low"].as_f64(),
            f[0]["current"]["interval"]["high"].as_f64(),
        ),
        (Some(0.825), Some(0.775), Some(0.5981), Some(0.8581)),
        "exact for free text is reported too; the interval is Wilson's"
    );
    assert_eq!(
        (
            r["inputs"].as_u64(),
            r["versions"].clone(),
            r["exit_code"].as_u64(),
            r["answered_by"].clone(),
            r["statuses"].clone(),
        ),
        (
            Some(40),
            json!([1]),
            Some(0),
            json!({ "openai/gpt-4o": 40 }),
            json!({ "ok": 40 })
        )
    );
    // Fake usage is 1000 prompt and 200 completion tokens a call.
    let cost = |side: &str| {
        let c = &r["cost"][side];
        (
            c["inputs"].as_u64(),
            c["calls"].as_u64(),
            c["prompt_tokens"].as_u64(),
            c["completion_tokens"].as_u64(),
            c["usd"].as_f64(),
            c["latency"]["p95_ms"].is_u64(),
        )
    };
    assert_eq!(
        cost("current"),
        (
            Some(40),
            Some(40),
            Some(40_000),
            Some(8_000),
            Some(0.0108),
            true
        )
    );
    assert_eq!(
        cost("candidate"),
        (
            Some(40),
            Some(40),
            Some(40_000),
            Some(8_000),
            Some(0.18),
            true
        )
    );
    // Per input: rejected 9 disagrees on both sides; 6 is gained.
    let details = r["details"].as_array().unwrap();
    let of = |i: usize| {
        details
            .iter()
            .find(|d| {
                d["fields"]["summary"]["current"] == json!(format!("Summary for request {i}."))
            })
            .unwrap()
    };
    assert_eq!(of(9)["outcome"], "rejected");
    assert_eq!(of(9)["fields"]["intent"]["approved"], Json::Null);
    assert_eq!(
        (
            of(6)["fields"]["summary"]["current_agrees"].as_bool(),
            of(6)["fields"]["summary"]["candidate_agrees"].as_bool()
        ),
        (Some(false), Some(true))
    );
    // The candidate was asked what the candidate says, and the table shows it.
    let asked: Vec<Json> = openai.requests()[INPUTS..]
        .iter()
        .map(|s| s.body.clone())
        .collect();
    assert!(asked.iter().all(|b| b["model"] == "gpt-4o"));
    assert!(asked.iter().all(|b| {
        b["messages"][1]["content"]
            .as_str()
            .unwrap()
            .starts_with("Candidate v2")
    }));
    assert_eq!(openai.problems(), Vec::<String>::new());
    let out = String::from_utf8_lossy(&o.stdout);
    for line in [
        "eval · intake · step triage · 40 reviewed inputs (version 1)",
        "intent   exact            40   0.7500     0.8000  +0.0500       4     2",
        "summary  normalised       40   0.8500     0.8000  -0.0500       1     3",
        "answered by: openai/gpt-4o 40",
        "no field dropped more than 0.05 (--max-drop).",
    ] {
        assert!(out.contains(line), "missing {line:?} in:\n{out}");
    }

    // The same drop fails a gate of 0.04: exit 1 naming the field.
    let args = candidate_args("0.04");
    let o = eval(&db, &args.iter().map(String::as_str).collect::<Vec<_>>()).await;
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr)
            .contains("eval: summary dropped more than 0.04 (--max-drop)"),
        "{}",
        text(&o)
    );
    let r = read(&report);
    assert_eq!(figures(&r), want(true));
    assert_eq!(
        (r["exit_code"].as_u64(), r["dropped"].clone()),
        (Some(1), json!(["summary"]))
    );
    assert_eq!(openai.hits(), 3 * INPUTS);

    // The offline heuristic as a baseline: no model is asked.
    let o = eval(
        &db,
        &[
            "--model",
            "heuristic",
            "--max-drop",
            "1",
            "--report",
            &report_arg,
        ],
    )
    .await;
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let r = read(&report);
    assert_eq!(
        (
            r["answered_by"].clone(),
            r["cost"]["candidate"]["usd"].as_f64(),
            r["fields"][0]["current"]["agreed"].as_u64(),
        ),
        (json!({ "heuristic/keywords-v1": 40 }), Some(0.0), Some(30))
    );
    assert_eq!(openai.hits(), 3 * INPUTS, "the heuristic calls nobody");

    // Fewer reviewed inputs than --min-samples: exit 2, nothing asked.
    let o = eval(&db, &["--min-samples", "41", "--base-url", &openai.url()]).await;
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains(
            "too few reviewed inputs: 40 reviews of `intake` step `triage` count as evidence, --min-samples is 41"
        ),
        "{}",
        text(&o)
    );
    assert!(o.stdout.is_empty());
    // A window no review is in: exit 2 saying so.
    let o = eval(&db, &["--since", "2999-01-01"]).await;
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("no decided review of workflow `intake` in this window"));

    // Bad arguments exit 2 naming what is wrong, before any call.
    let bad_prompt = dir.0.join("bad.md.j2");
    std::fs::write(&bad_prompt, "Classify {{ inptu.message }}").unwrap();
    for (args, says) in [
        (vec!["--max-drop", "1.5"], "--max-drop"),
        (vec!["--model", " "], "--model"),
        (vec!["--base-url", "ftp://x"], "--base-url"),
        (vec!["--fields", "colour"], "--fields"),
        (
            vec!["--prompt", bad_prompt.to_str().unwrap()],
            "unknown variable \"inptu\"",
        ),
    ] {
        let o = eval(&db, &args).await;
        assert_eq!(o.status.code(), Some(2), "{args:?}: {}", text(&o));
        assert!(text(&o).contains(says), "{args:?}: {}", text(&o));
    }
    let o = Command::new(bin())
        .args([
            "eval",
            "--workflow",
            "intake",
            "--step",
            "review",
            "--database",
            &db,
        ])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("--step"), "{}", text(&o));
    assert_eq!(openai.hits(), 3 * INPUTS);

    // Nothing reached any fake but the candidate model, nothing was written.
    assert_eq!((sink.hits(), sink.effects()), (sink_hits, 36));
    let after = snapshot(&path);
    assert_eq!(count(&after, "events"), count(&before, "events"));
    assert_eq!(count(&after, "effects"), count(&before, "effects"));
    assert!(before == after, "the store changed during eval");
}
