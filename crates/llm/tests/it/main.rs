//! The `llm` step's integration tests: real engines on temporary SQLite
//! stores, the model played by `test_kit::fake_openai` (which checks every
//! request against the OpenAI spec). One binary (STYLE habit 12).
//!
//! Each case asserts the outcome and snapshots the *path* the audit log
//! records (`path()`): `UPDATE_EXPECT=1 cargo test -p countersign-llm`
//! rewrites snapshots after an intended change.

mod answers;
mod failures;
mod injection;
mod load;
mod secrets;
mod spec;

use std::sync::Arc;

use engine::{Catalog, Engine, Files, StepKinds};
use serde_json::{Value as Json, json};
use store::{Run, Store};
use store_sqlite::SqliteStore;
use test_kit::fixture;

/// The triage prompt the tests use.
pub const PROMPT: &str =
    "Triage this inbound request.\nFrom: {{ input.name }}\nMessage:\n{{ input.message }}\n";

/// The reference triage step, with `$FALLBACK` and `$EXTRA` to fill in.
pub const WORKFLOW: &str = r#"
name: triage-test
steps:
  - id: triage
    retry: { max_attempts: 3, initial: 10ms, max: 50ms, jitter: none }
    llm:
      model: gpt-4o-mini
      fallback: $FALLBACK
      prompt: prompts/triage.md.j2
      call_timeout: 2s
$EXTRA      output:
        summary:               { type: string, maxLength: 600 }
        intent:                { enum: [support_request, sales_lead, billing, complaint, partnership, spam, other] }
        priority:              { enum: [low, medium, high, urgent] }
        recommended_next_step: { type: string }
        customer_reply_draft:  { type: string }
        crm_update_required:   { type: boolean }
        human_review_required: { type: boolean }
        confidence:            { type: number, minimum: 0, maximum: 1 }
  - id: route
    rules:
      - when: triage.status == "needs_review"
        then: { review: required }
      - when: triage.intent == "spam"
        then: { finish: discarded }
      - when: triage.priority in ["high", "urgent"] or triage.confidence < 0.8
        then: { review: required }
"#;

/// The workflow with a fallback list (YAML flow sequence) and extra `llm` keys.
pub fn workflow(fallback: &str, extra: &str) -> String {
    WORKFLOW
        .replace("$FALLBACK", fallback)
        .replace("$EXTRA", extra)
}

/// A valid triage answer.
pub fn good_answer() -> Json {
    json!({
        "summary": "The customer says their invoice is wrong and asks for a call.",
        "intent": "billing",
        "priority": "high",
        "recommended_next_step": "Check invoice 42 and call the customer.",
        "customer_reply_draft": "Hello Ada, we are checking your invoice and will call you today.",
        "crm_update_required": true,
        "human_review_required": false,
        "confidence": 0.92
    })
}

pub fn input() -> Json {
    json!({ "name": "Ada", "message": "Our invoice is wrong, please call me urgently." })
}

/// An engine serving `yaml` (with the test prompt as `prompts/triage.md.j2`)
/// whose `openai` provider talks to `base_url` with `key`.
pub async fn engine(yaml: &str, base_url: &str, key: Option<&str>) -> (Engine, Arc<dyn Store>) {
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open_temp().expect("temporary store"));
    let engine = engine_on(
        store.clone(),
        yaml,
        &[("prompts/triage.md.j2", PROMPT)],
        base_url,
        key,
    )
    .await;
    (engine, store)
}

pub fn kinds(base_url: &str, key: Option<&str>) -> StepKinds {
    let client = reqwest::Client::new();
    let config = countersign_llm::Config {
        openai: countersign_llm::openai::Settings {
            base_url: base_url.to_string(),
            api_key: key.map(str::to_string),
        },
        prices: countersign_llm::Prices::default(),
    };
    let mut kinds = StepKinds::builtin(client.clone());
    kinds.register(Arc::new(countersign_llm::Kind::new(client, config)));
    kinds
}

pub async fn engine_on(
    store: Arc<dyn Store>,
    yaml: &str,
    files: &[(&str, &str)],
    base_url: &str,
    key: Option<&str>,
) -> Engine {
    let catalog = Catalog::new(kinds(base_url, key), fixture::env(&[]), store.clone());
    let files = Files::Given(
        files
            .iter()
            .map(|(p, c)| (p.to_string(), c.to_string()))
            .collect(),
    );
    if let Err(e) = catalog.load_source_with(yaml, "test.yaml", &files).await {
        panic!("the test workflow does not load:\n{e}");
    }
    Engine::start(store, Arc::new(catalog), fixture::config())
}

/// Submits `input` and waits until the run settles.
pub async fn run(engine: &Engine, store: &Arc<dyn Store>, input: Json) -> Run {
    let name = fixture::workflow_name(engine);
    let s = engine
        .submit(&name, input, None, "test")
        .await
        .expect("submit");
    let run = fixture::wait_settled(store, &s.run_id).await;
    fixture::assert_chain(store, &run.id).await;
    run
}

/// The parsed output of the latest completed attempt of `step`.
pub async fn output(store: &Arc<dyn Store>, run_id: &str, step: &str) -> Json {
    let d = store
        .run_detail(run_id)
        .await
        .expect("read")
        .expect("run exists");
    let rec = d
        .steps
        .iter()
        .rev()
        .find(|s| s.step_id == step && s.output.is_some())
        .unwrap_or_else(|| panic!("step {step} has no output: {:#?}", d.steps));
    serde_json::from_str(rec.output.as_deref().expect("checked")).expect("JSON output")
}

/// The path a run took, one line per event: the `llm.*` events with what
/// decided the next move, other events by name.
pub async fn path(store: &Arc<dyn Store>, run_id: &str) -> String {
    let mut out = String::new();
    for e in fixture::events(store, run_id).await {
        let d: Json = serde_json::from_str(&e.data).unwrap_or(Json::Null);
        let s = |k: &str| {
            d.get(k).map_or(String::new(), |v| {
                v.as_str().map_or_else(|| v.to_string(), str::to_string)
            })
        };
        let line = match e.kind.as_str() {
            "llm.requested" => format!(
                "llm.requested {}/{} round={} messages={}",
                s("provider"),
                s("model"),
                s("round"),
                d["messages"].as_array().map_or(0, Vec::len)
            ),
            "llm.responded" => format!(
                "llm.responded {} round={} valid={} finish={} tokens={} cost_usd={}",
                s("provider"),
                s("round"),
                s("valid"),
                s("finish_reason"),
                d["usage"]["total_tokens"],
                d["cost_usd"]
            ),
            "llm.invalid" => format!(
                "llm.invalid {} round={} kind={} repair={} errors={}",
                s("provider"),
                s("round"),
                s("kind"),
                s("repair"),
                d["errors"].as_array().map_or(0, Vec::len)
            ),
            "llm.failed" => format!(
                "llm.failed {} round={} class={} status={} retry_after_ms={}",
                s("provider"),
                s("round"),
                s("class"),
                s("http_status"),
                s("retry_after_ms")
            ),
            "llm.fallback" => format!("llm.fallback {} -> {} ({})", s("from"), s("to"), s("class")),
            "step.completed" => format!("step.completed {}", s("step")),
            "step.failed" => format!("step.failed {} class={}", s("step"), s("class")),
            "step.retry_scheduled" => format!(
                "step.retry_scheduled {} retry_after_ms={}",
                s("step"),
                s("retry_after_ms")
            ),
            "run.completed" => format!("run.completed {}", s("outcome")),
            other => other.to_string(),
        };
        out.push_str(&line);
        out.push('\n');
    }
    out
}

/// The data of every event of `kind`.
pub async fn events_of(store: &Arc<dyn Store>, run_id: &str, kind: &str) -> Vec<Json> {
    fixture::events_of(store, run_id, kind).await
}
