//! `countersign eval`: tests a prompt or a model on history before it
//! ships. The inputs of reviews people decided are replayed through a
//! candidate (the workflow's `llm` step with its prompt and/or model
//! replaced), and what the candidate drafts is compared, field by field,
//! with what people approved — next to the agreement the drafts actually
//! shown to them had, on the same inputs (paired).
//!
//! Read-only: reviews, runs, outputs, events and workflow versions are read
//! from the store, nothing is written to it, no run is touched. The step is
//! executed by `engine::replay` through the same `Step::run` the engine
//! calls (prompt rendering, provider chain, schema validation, repair
//! turns, fallbacks), with a journal that keeps its events in memory and
//! refuses effects; no other step runs.
//!
//! Evidence is selected and compared by `domain::calibration`: only reviews
//! a person decided count; rejected, escalated and handed-off reviews count
//! as disagreement on every field; deadline and bulk decisions do not
//! count. Free text is compared normalised (trimmed, whitespace collapsed,
//! case-folded), every other field exactly.
#![allow(clippy::print_stdout)]

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;
use std::sync::Arc;

use domain::calibration::{self, Excluded, Query, Sample, Tally, Task};
use domain::run::StepOutcome;
use domain::workflow::Workflow;
use domain::yaml::{Node, Value as YamlValue};
use engine::replay::{Replayed, replay_step, vars_before};
use engine::{Compiled, Files, StepKinds};
use serde::Serialize;
use serde_json::{Map, Value as Json};
use sha2::{Digest, Sha256};
use store::{CalibrationQuery, Event, RunDetail, Store};
use store_sqlite::Role;

use crate::commands::{http_client, llm_config, open_store, process_env, step_kinds_with};
use crate::{DbArgs, Failure};

/// Largest prompt file accepted (the limit of a file a workflow includes).
const MAX_PROMPT_BYTES: usize = domain::workflow::MAX_INCLUDE_BYTES;
/// Runs read per store call.
const DETAIL_BATCH: usize = 100;
/// Events read per run for the recorded calls.
const EVENT_LIMIT: usize = 10_000;
/// The provider `--model heuristic` selects.
pub const HEURISTIC: &str = "heuristic";

/// What to replay and how to judge it.
#[derive(Debug)]
pub struct Request<'a> {
    pub workflow: &'a str,
    pub step: &'a str,
    pub prompt: Option<&'a Path>,
    pub model: Option<&'a str>,
    pub base_url: Option<&'a str>,
    pub limit: usize,
    pub since: Option<&'a str>,
    pub max_drop: f64,
    pub min_samples: usize,
    pub fields: Option<&'a str>,
    pub concurrency: usize,
    pub report: Option<&'a Path>,
}

// ---------------------------------------------------------------- report

/// A 95 % Wilson interval.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Interval {
    pub low: f64,
    pub high: f64,
}

/// Agreement of one side (the recorded drafts or the candidate's) on one field.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Side {
    /// Agreements by the field's comparison (`compared`).
    pub agreed: u64,
    pub agreement: f64,
    pub interval: Interval,
    /// Exact JSON equality, whatever the field.
    pub exact_agreement: f64,
    /// Free text only: agreement after normalising.
    pub normalised_agreement: Option<f64>,
    /// Free text only: mean Levenshtein distance to the approved text, over
    /// approved reviews.
    pub mean_edit_distance: Option<f64>,
}

/// One field, current against candidate.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FieldResult {
    pub field: String,
    /// Free text (a string without an `enum`).
    pub text: bool,
    /// `exact`, or `normalised` for free text.
    pub compared: &'static str,
    /// Reviewed inputs compared (the same for both sides).
    pub reviews: u64,
    pub current: Side,
    pub candidate: Side,
    /// `candidate.agreement - current.agreement`.
    pub change: f64,
    /// Inputs where the candidate agrees and the recorded draft did not.
    pub gained: u64,
    /// Inputs where the recorded draft agreed and the candidate does not.
    pub lost: u64,
    /// The drop is larger than `max_drop`.
    pub dropped: bool,
}

/// Latency over inputs, in milliseconds.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Latency {
    pub mean_ms: f64,
    pub p95_ms: u64,
    pub max_ms: u64,
}

/// Calls, tokens, money and time of one side.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Cost {
    /// Inputs these figures cover (the recorded side: those whose run
    /// still has the step's `llm.responded` events).
    pub inputs: u64,
    /// Answers received (repair turns included).
    pub calls: u64,
    /// Calls that were repair turns (after an invalid answer).
    pub repairs: u64,
    /// Moves to a next provider in the chain.
    pub fallbacks: u64,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    /// Estimated USD of the priced calls (the heuristic costs 0).
    pub usd: f64,
    /// Calls whose model has no price (not in `usd`).
    pub unpriced_calls: u64,
    /// Per input: the step's model calls (the recorded side) or the whole
    /// replay, waits between attempts included (the candidate).
    pub latency: Option<Latency>,
}

/// The candidate, as asked for.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Candidate {
    /// `--prompt`, as given; `None`: each version's own prompt.
    pub prompt_file: Option<String>,
    /// `sha256:<hex>` of the candidate prompt's text.
    pub prompt_hash: Option<String>,
    /// `--model`; `None`: each version's own model.
    pub model: Option<String>,
    pub base_url: Option<String>,
}

/// One field of one input.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct InputField {
    /// What people approved; `None` when the review was rejected,
    /// escalated or handed off (disagreement on every field).
    pub approved: Option<Json>,
    /// The recorded draft shown to the reviewer.
    pub current: Json,
    pub candidate: Json,
    pub current_agrees: bool,
    pub candidate_agrees: bool,
}

/// One replayed input.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct InputResult {
    pub review_id: String,
    pub run_id: String,
    pub version: i64,
    /// `approved`, `rejected`, `escalated`, `handed_off`.
    pub outcome: &'static str,
    /// `ok` (a valid answer), `needs_review` (no valid answer: every field
    /// null), `skipped` (the step's `when:` is false), `failed`.
    pub status: String,
    /// The provider and model that answered (`provider/model`).
    pub answered_by: Option<String>,
    /// Why there is no valid answer, or which fallbacks happened.
    pub reason: Option<String>,
    pub latency_ms: u64,
    pub fields: BTreeMap<String, InputField>,
}

/// Reviews that are not evidence, by why.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ExcludedCounts {
    pub undecided: u64,
    pub expired: u64,
    pub bulk: u64,
    pub before_window: u64,
}

/// The report `--report` writes.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Report {
    pub workflow: String,
    pub step: String,
    pub candidate: Candidate,
    pub since: Option<String>,
    pub limit: usize,
    pub min_samples: usize,
    pub max_drop: f64,
    /// Reviewed inputs replayed (after `limit`).
    pub inputs: u64,
    /// Reviewed inputs that counted as evidence before `limit`.
    pub available: u64,
    /// The workflow versions the inputs ran on.
    pub versions: Vec<i64>,
    pub excluded: ExcludedCounts,
    /// The store read stopped at `engine::calibration::READ_LIMIT` reviews.
    pub truncated: bool,
    pub fields: Vec<FieldResult>,
    pub cost: BTreeMap<&'static str, Cost>,
    /// Inputs by the provider and model that answered them.
    pub answered_by: BTreeMap<String, u64>,
    /// Inputs by status (`ok`, `needs_review`, `skipped`, `failed`).
    pub statuses: BTreeMap<String, u64>,
    /// Fields whose agreement dropped more than `max_drop`.
    pub dropped: Vec<String>,
    /// 1 when a field dropped more than `max_drop`, else 0.
    pub exit_code: u8,
    /// Per input, newest decision first.
    pub details: Vec<InputResult>,
}

// ---------------------------------------------------------------- command

pub async fn run(db: &DbArgs, req: Request<'_>) -> Result<(), Failure> {
    let args = check(&req)?;
    let store = open_store(db, Role::Admin).await?;
    let selected = select(store.as_ref(), &req, args.since_ms, args.fields.as_ref()).await?;
    let mut config = llm_config()?;
    if let Some(url) = req.base_url {
        config.openai.base_url = url.trim_end_matches('/').to_string();
    }
    let kinds = step_kinds_with(http_client()?, config)?;
    let details = read_runs(store.as_ref(), &selected.inputs).await?;
    let versions = compile_versions(store.as_ref(), &req, &args, &kinds, &details).await?;
    let replays = replay_all(&store, &req, &selected.inputs, &details, &versions).await;
    let recorded = recorded_calls(store.as_ref(), req.step, &selected.inputs).await?;
    let report = judge(&req, &args, &selected, &details, &replays, &recorded);
    if let Some(path) = req.report {
        let text = serde_json::to_string_pretty(&report)
            .map_err(|e| anyhow::anyhow!("writing the report: {e}"))?;
        std::fs::write(path, text + "\n")
            .map_err(|e| anyhow::anyhow!("--report {}: {e}", path.display()))?;
    }
    print!("{}", table(&report));
    if report.exit_code == 1 {
        return Err(Failure {
            code: 1,
            message: format!(
                "eval: {} dropped more than {} (--max-drop) against the current drafts",
                report.dropped.join(", "),
                report.max_drop
            ),
        });
    }
    Ok(())
}

/// The arguments, checked.
struct Args {
    since_ms: Option<i64>,
    fields: Option<BTreeSet<String>>,
    /// `(file name inside the version, text)` of `--prompt`.
    prompt: Option<(String, String)>,
}

fn check(req: &Request<'_>) -> Result<Args, Failure> {
    if !(req.max_drop.is_finite() && (0.0..=1.0).contains(&req.max_drop)) {
        return Err(Failure::usage(format!(
            "--max-drop: {} is not a share between 0 and 1 (0.05 allows 5 points less agreement)",
            req.max_drop
        )));
    }
    if req.limit == 0 {
        return Err(Failure::usage("--limit: give at least 1"));
    }
    if req.min_samples == 0 {
        return Err(Failure::usage("--min-samples: give at least 1"));
    }
    if !(1..=64).contains(&req.concurrency) {
        return Err(Failure::usage("--concurrency: give 1 to 64"));
    }
    if let Some(m) = req.model
        && m.trim().is_empty()
    {
        return Err(Failure::usage("--model: empty"));
    }
    if let Some(url) = req.base_url
        && !(url.starts_with("http://") || url.starts_with("https://"))
    {
        return Err(Failure::usage(format!(
            "--base-url: {url:?} must start with http:// or https://"
        )));
    }
    let since_ms = req
        .since
        .map(|s| {
            server::calibration::parse_since(s, engine::now_ms())
                .map_err(|e| Failure::usage(format!("--since: {e}")))
        })
        .transpose()?;
    let fields = req.fields.map(|f| {
        f.split(',')
            .map(str::trim)
            .filter(|f| !f.is_empty())
            .map(str::to_string)
            .collect::<BTreeSet<_>>()
    });
    if fields.as_ref().is_some_and(BTreeSet::is_empty) {
        return Err(Failure::usage("--fields: name at least one field"));
    }
    let prompt = req
        .prompt
        .map(|p| {
            let text = std::fs::read_to_string(p)
                .map_err(|e| Failure::usage(format!("--prompt {}: {e}", p.display())))?;
            if text.len() > MAX_PROMPT_BYTES {
                return Err(Failure::usage(format!(
                    "--prompt {}: larger than {} KiB",
                    p.display(),
                    MAX_PROMPT_BYTES / 1024
                )));
            }
            Ok((prompt_name(p), text))
        })
        .transpose()?;
    Ok(Args {
        since_ms,
        fields,
        prompt,
    })
}

/// The name the candidate prompt has inside the version: its file name
/// when that is a plain one (it appears in template error messages).
fn prompt_name(p: &Path) -> String {
    p.file_name()
        .and_then(|n| n.to_str())
        .filter(|n| {
            !n.starts_with('.')
                && n.chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
        })
        .unwrap_or("candidate-prompt.j2")
        .to_string()
}

// ---------------------------------------------------------------- selection

/// One reviewed input: the task and its evidence (the step's fields).
struct Input {
    task: Task,
    samples: Vec<Sample>,
}

struct Selected {
    inputs: Vec<Input>,
    available: u64,
    excluded: BTreeMap<Excluded, u64>,
    truncated: bool,
}

/// The newest `limit` reviews of the workflow a person decided, with the
/// fields `step` drafted (`fields` of them, when given), judged by the
/// calibration evidence rules.
async fn select(
    store: &dyn Store,
    req: &Request<'_>,
    since_ms: Option<i64>,
    fields: Option<&BTreeSet<String>>,
) -> Result<Selected, Failure> {
    let rows = store
        .calibration_reviews(&CalibrationQuery {
            workflow: Some(req.workflow.to_string()),
            since_ms,
            queues: None,
            limit: engine::calibration::READ_LIMIT,
        })
        .await
        .map_err(|e| anyhow::anyhow!("reading reviews: {e}"))?;
    let truncated = rows.len() >= engine::calibration::READ_LIMIT;
    let all: Vec<Task> = rows.iter().map(engine::calibration::task_of).collect();
    if all.is_empty() {
        return Err(Failure::usage(format!(
            "--workflow: no decided review of workflow `{}`{} (is the name right?)",
            req.workflow,
            if since_ms.is_some() {
                " in this window"
            } else {
                ""
            }
        )));
    }
    let drafted: BTreeSet<&str> = all
        .iter()
        .flat_map(|t| t.fields.iter().map(|f| f.step.as_str()))
        .collect();
    if !drafted.contains(req.step) {
        return Err(Failure::usage(format!(
            "--step: no review of `{}` covers fields drafted by step `{}`; steps whose drafts were reviewed: {}",
            req.workflow,
            req.step,
            drafted.into_iter().collect::<Vec<_>>().join(", ")
        )));
    }
    if let Some(wanted) = fields {
        let known: BTreeSet<&str> = all
            .iter()
            .flat_map(|t| t.fields.iter())
            .filter(|f| f.step == req.step)
            .map(|f| f.name.as_str())
            .collect();
        if let Some(unknown) = wanted.iter().find(|f| !known.contains(f.as_str())) {
            return Err(Failure::usage(format!(
                "--fields: `{unknown}` is not a reviewed field drafted by `{}` (those are: {})",
                req.step,
                known.into_iter().collect::<Vec<_>>().join(", ")
            )));
        }
    }
    let tasks: Vec<Task> = all
        .into_iter()
        .filter_map(|mut t| {
            t.fields.retain(|f| {
                f.step == req.step && fields.is_none_or(|w| w.contains(f.name.as_str()))
            });
            (!t.fields.is_empty()).then_some(t)
        })
        .collect();
    let ev = calibration::evidence(&tasks, &Query { since_ms, by: None });
    let mut by_review: HashMap<&str, Vec<Sample>> = HashMap::new();
    for s in &ev.samples {
        by_review
            .entry(s.review_id.as_str())
            .or_default()
            .push(s.clone());
    }
    // Newest first, as read; the task order is kept.
    let mut inputs: Vec<Input> = tasks
        .iter()
        .filter_map(|t| {
            let samples = by_review.remove(t.review_id.as_str())?;
            Some(Input {
                task: t.clone(),
                samples,
            })
        })
        .collect();
    // An escalation counts when it happened: order by the evidence's time.
    inputs.sort_by(|a, b| {
        (b.samples[0].at_ms, &b.task.review_id).cmp(&(a.samples[0].at_ms, &a.task.review_id))
    });
    let available = inputs.len() as u64;
    if (available as usize) < req.min_samples {
        return Err(Failure::usage(format!(
            "too few reviewed inputs: {available} review{} of `{}` step `{}` count{} as evidence, --min-samples is {}; \
             widen --since, lower --min-samples, or wait for more reviews",
            if available == 1 { "" } else { "s" },
            req.workflow,
            req.step,
            if available == 1 { "s" } else { "" },
            req.min_samples
        )));
    }
    inputs.truncate(req.limit);
    Ok(Selected {
        inputs,
        available,
        excluded: ev.excluded,
        truncated,
    })
}

async fn read_runs(
    store: &dyn Store,
    inputs: &[Input],
) -> Result<HashMap<String, RunDetail>, Failure> {
    let ids: Vec<String> = inputs.iter().map(|i| i.task.run_id.clone()).collect();
    let mut out = HashMap::new();
    for chunk in ids.chunks(DETAIL_BATCH) {
        for d in store
            .run_details(chunk)
            .await
            .map_err(|e| anyhow::anyhow!("reading runs: {e}"))?
        {
            out.insert(d.run.id.clone(), d);
        }
    }
    Ok(out)
}

// ---------------------------------------------------------------- candidate

/// A version compiled with the candidate step, and where that step is.
struct Version {
    compiled: Arc<Compiled>,
    index: usize,
}

/// Compiles each version the inputs ran on with the step replaced.
async fn compile_versions(
    store: &dyn Store,
    req: &Request<'_>,
    args: &Args,
    kinds: &StepKinds,
    details: &HashMap<String, RunDetail>,
) -> Result<BTreeMap<i64, Version>, Failure> {
    let wanted: BTreeSet<i64> = details.values().map(|d| d.run.version).collect();
    let env = process_env();
    let mut out = BTreeMap::new();
    for v in wanted {
        let Some(row) = store
            .workflow_version(req.workflow, v)
            .await
            .map_err(|e| anyhow::anyhow!("reading workflow versions: {e}"))?
        else {
            return Err(Failure::usage(format!(
                "workflow `{}` version {v} is not stored: its reviews cannot be replayed",
                req.workflow
            )));
        };
        let (src, mut files) = engine::unbundle(&row.source);
        if let Some((name, text)) = &args.prompt {
            files.insert(0, (name.clone(), text.clone()));
        }
        let prompt = args.prompt.as_ref().map(|(name, _)| name.as_str());
        let compiled =
            engine::compile_edited(src, &row.path, kinds, &env, &Files::Given(files), |wf| {
                edit_step(wf, req.step, prompt, req.model)
            })
            .map_err(|e| {
                Failure::usage(format!(
                    "the candidate does not load (workflow `{}` version {v}):\n{e}",
                    req.workflow
                ))
            })?;
        let Some(def) = compiled.def.steps.iter().find(|s| s.id == req.step) else {
            return Err(Failure::usage(format!(
                "--step: workflow `{}` version {v} has no step `{}`",
                req.workflow, req.step
            )));
        };
        if def.kind != "llm" {
            return Err(Failure::usage(format!(
                "--step: `{}` is a `{}` step in version {v}; eval replays `llm` steps",
                req.step, def.kind
            )));
        }
        let index = def.index;
        let mut compiled = compiled;
        compiled.version = v;
        out.insert(
            v,
            Version {
                compiled: Arc::new(compiled),
                index,
            },
        );
    }
    Ok(out)
}

/// Replaces the `llm` step's prompt (by a file of the version named
/// `prompt`) and model in its body, before it compiles. `heuristic` as the
/// model makes the offline heuristic the only provider; another model goes
/// to the step's provider (`openai` when that was the heuristic), and to
/// fallbacks that name no model of their own, as `model:` does in a file.
fn edit_step(wf: &mut Workflow, step: &str, prompt: Option<&str>, model: Option<&str>) {
    let Some(def) = wf
        .steps
        .iter_mut()
        .find(|s| s.id == step && s.kind == "llm")
    else {
        return;
    };
    let at = def.body.clone();
    let node = |key: &str, value: YamlValue| Node {
        value,
        pos: at.pos,
        path: format!("{}.{key}", at.path),
        from_env: false,
        key_pos: None,
    };
    let YamlValue::Map(entries) = &mut def.body.value else {
        return;
    };
    if let Some(file) = prompt {
        let file = node("prompt.file", YamlValue::Str(file.to_string()));
        let prompt = node("prompt", YamlValue::Map(vec![("file".into(), file)]));
        set_key(entries, "prompt", Some(prompt));
    }
    match model {
        Some(HEURISTIC) => {
            let provider = node("provider", YamlValue::Str(HEURISTIC.into()));
            set_key(entries, "provider", Some(provider));
            set_key(entries, "model", None);
            set_key(
                entries,
                "fallback",
                Some(node("fallback", YamlValue::Seq(Vec::new()))),
            );
        }
        Some(m) => {
            let heuristic_first = entries
                .iter()
                .any(|(k, v)| k == "provider" && v.value == YamlValue::Str(HEURISTIC.into()));
            if heuristic_first {
                let provider = node("provider", YamlValue::Str("openai".into()));
                set_key(entries, "provider", Some(provider));
            }
            set_key(
                entries,
                "model",
                Some(node("model", YamlValue::Str(m.to_string()))),
            );
        }
        None => {}
    }
}

/// Sets (or, with `None`, removes) `key` of a mapping, keeping its place.
fn set_key(entries: &mut Vec<(String, Node)>, key: &str, value: Option<Node>) {
    let i = entries.iter().position(|(k, _)| k == key);
    match (i, value) {
        (Some(i), Some(v)) => entries[i].1 = v,
        (None, Some(v)) => entries.push((key.to_string(), v)),
        (Some(i), None) => {
            entries.remove(i);
        }
        (None, None) => {}
    }
}

// ---------------------------------------------------------------- replay

/// One model call, from an `llm.responded` event.
#[derive(Debug, Clone, Default)]
struct Call {
    prompt_tokens: u64,
    completion_tokens: u64,
    cost_usd: Option<f64>,
    latency_ms: u64,
    repair: bool,
}

/// The model calls among events, and the fallbacks.
fn calls_of<'a>(events: impl Iterator<Item = (&'a str, &'a str)>) -> (Vec<Call>, Vec<String>) {
    let mut calls = Vec::new();
    let mut fallbacks = Vec::new();
    for (kind, data) in events {
        let d: Json = serde_json::from_str(data).unwrap_or(Json::Null);
        match kind {
            llm::step::kind::RESPONDED => {
                let n = |k: &str| d["usage"][k].as_u64().unwrap_or(0);
                calls.push(Call {
                    prompt_tokens: n("prompt_tokens"),
                    completion_tokens: n("completion_tokens"),
                    cost_usd: d["cost_usd"].as_f64(),
                    latency_ms: d["latency_ms"].as_u64().unwrap_or(0),
                    repair: d["round"].as_u64().is_some_and(|r| r > 1),
                });
            }
            llm::step::kind::FALLBACK => fallbacks.push(format!(
                "{} → {}: {}",
                d["from"].as_str().unwrap_or("?"),
                d["to"].as_str().unwrap_or("?"),
                d["reason"].as_str().unwrap_or("")
            )),
            _ => {}
        }
    }
    (calls, fallbacks)
}

/// What the candidate made of one input.
struct Answer {
    status: String,
    output: Map<String, Json>,
    answered_by: Option<String>,
    reason: Option<String>,
    calls: Vec<Call>,
    fallbacks: u64,
    latency_ms: u64,
}

fn outcome_of(r: Result<Replayed, String>) -> Answer {
    let r = match r {
        Ok(r) => r,
        Err(reason) => {
            return Answer {
                status: "failed".into(),
                output: Map::new(),
                answered_by: None,
                reason: Some(reason),
                calls: Vec::new(),
                fallbacks: 0,
                latency_ms: 0,
            };
        }
    };
    let (calls, fallbacks) = calls_of(r.events.iter().map(|e| (e.kind.as_str(), e.data.as_str())));
    let (status, output, reason) = match r.outcome {
        StepOutcome::Done { output }
        | StepOutcome::Finish { output, .. }
        | StepOutcome::Sleep { output, .. }
        | StepOutcome::Suspend { output, .. } => {
            let map = output.as_object().cloned().unwrap_or_default();
            let status = map
                .get("status")
                .and_then(Json::as_str)
                .unwrap_or("ok")
                .to_string();
            let reason = map.get("reason").and_then(Json::as_str).map(str::to_string);
            (status, map, reason)
        }
        StepOutcome::Skipped { reason } => ("skipped".into(), Map::new(), Some(reason)),
        StepOutcome::Transient { error, .. } | StepOutcome::Permanent { error } => {
            ("failed".into(), Map::new(), Some(error))
        }
    };
    let answered_by = match (
        output.get("provider").and_then(Json::as_str),
        output.get("model").and_then(Json::as_str),
    ) {
        (Some(p), Some(m)) => Some(format!("{p}/{m}")),
        (Some(p), None) => Some(p.to_string()),
        _ => None,
    };
    Answer {
        status,
        output,
        answered_by,
        reason,
        calls,
        fallbacks: fallbacks.len() as u64,
        latency_ms: r.elapsed_ms,
    }
}

/// Replays every input, `concurrency` at a time; results in input order.
async fn replay_all(
    store: &Arc<dyn Store>,
    req: &Request<'_>,
    inputs: &[Input],
    details: &HashMap<String, RunDetail>,
    versions: &BTreeMap<i64, Version>,
) -> Vec<Answer> {
    let permits = Arc::new(tokio::sync::Semaphore::new(req.concurrency));
    let mut set = tokio::task::JoinSet::new();
    for (i, input) in inputs.iter().enumerate() {
        let job = details.get(&input.task.run_id).and_then(|d| {
            let v = versions.get(&d.run.version)?;
            Some((
                v.compiled.clone(),
                v.index,
                vars_before(&v.compiled, d, v.index),
            ))
        });
        let store = store.clone();
        let permits = permits.clone();
        let run_id = input.task.run_id.clone();
        set.spawn(async move {
            let Some((compiled, index, vars)) = job else {
                return (i, Err(format!("run {run_id} is no longer stored")));
            };
            let _permit = permits.acquire_owned().await;
            let r = replay_step(&compiled, index, &run_id, &vars, store.as_ref())
                .await
                .map_err(|e| e.to_string());
            (i, r)
        });
    }
    let mut out: Vec<Option<Answer>> = (0..inputs.len()).map(|_| None).collect();
    while let Some(joined) = set.join_next().await {
        match joined {
            Ok((i, r)) => out[i] = Some(outcome_of(r)),
            Err(e) => tracing::error!(error = %e, "a replay panicked"),
        }
    }
    out.into_iter()
        .map(|o| o.unwrap_or_else(|| outcome_of(Err("the replay panicked".into()))))
        .collect()
}

/// The calls the step made when each input's run drafted it: the
/// `llm.responded` events committed with the step's attempts (`None` when
/// the run's events no longer hold them).
async fn recorded_calls(
    store: &dyn Store,
    step: &str,
    inputs: &[Input],
) -> Result<Vec<Option<(Vec<Call>, u64)>>, Failure> {
    let mut out = Vec::with_capacity(inputs.len());
    for input in inputs {
        let events = store
            .events(&input.task.run_id, 0, EVENT_LIMIT)
            .await
            .map_err(|e| anyhow::anyhow!("reading events: {e}"))?;
        out.push(step_calls(&events, step));
    }
    Ok(out)
}

/// The `llm.*` events of `step`: those committed before one of its
/// `step.*` events, since the previous `step.*` event.
fn step_calls(events: &[Event], step: &str) -> Option<(Vec<Call>, u64)> {
    let mut pending: Vec<&Event> = Vec::new();
    let mut mine: Vec<&Event> = Vec::new();
    for e in events {
        if e.kind.starts_with("llm.") {
            pending.push(e);
        } else if e.kind.starts_with("step.") {
            let d: Json = serde_json::from_str(&e.data).unwrap_or(Json::Null);
            if d["step"].as_str() == Some(step) {
                mine.append(&mut pending);
            }
            pending.clear();
        }
    }
    let (calls, fallbacks) = calls_of(mine.iter().map(|e| (e.kind.as_str(), e.data.as_str())));
    (!calls.is_empty() || !fallbacks.is_empty()).then_some((calls, fallbacks.len() as u64))
}

// ---------------------------------------------------------------- judging

fn round4(x: f64) -> f64 {
    (x * 10_000.0).round() / 10_000.0
}

fn share(k: u64, n: u64) -> f64 {
    if n == 0 {
        0.0
    } else {
        round4(k as f64 / n as f64)
    }
}

/// Whether a sample agrees by the field's comparison.
fn agrees(s: &Sample) -> bool {
    if s.text {
        s.agrees_normalised()
    } else {
        s.agrees()
    }
}

fn side(samples: &[&Sample], text: bool) -> Side {
    let mut t = Tally::default();
    for s in samples {
        t.add(s);
    }
    let agreed = if text { t.agree_normalised } else { t.agree };
    let i = calibration::wilson(agreed, t.n).unwrap_or(calibration::Interval {
        low: 0.0,
        high: 1.0,
    });
    Side {
        agreed,
        agreement: share(agreed, t.n),
        interval: Interval {
            low: round4(i.low),
            high: round4(i.high),
        },
        exact_agreement: share(t.agree, t.n),
        normalised_agreement: text.then(|| share(t.agree_normalised, t.n)),
        mean_edit_distance: text.then(|| t.mean_edit_distance().map(round4)).flatten(),
    }
}

fn latency(mut ms: Vec<u64>) -> Option<Latency> {
    if ms.is_empty() {
        return None;
    }
    ms.sort_unstable();
    let n = ms.len();
    let rank = (n * 95).div_ceil(100).max(1) - 1;
    Some(Latency {
        mean_ms: round4(ms.iter().sum::<u64>() as f64 / n as f64),
        p95_ms: ms[rank],
        max_ms: ms[n - 1],
    })
}

fn cost<'a>(per_input: impl Iterator<Item = (&'a [Call], u64, u64)>) -> Cost {
    let mut c = Cost {
        inputs: 0,
        calls: 0,
        repairs: 0,
        fallbacks: 0,
        prompt_tokens: 0,
        completion_tokens: 0,
        usd: 0.0,
        unpriced_calls: 0,
        latency: None,
    };
    let mut times = Vec::new();
    for (calls, fallbacks, ms) in per_input {
        c.inputs += 1;
        c.fallbacks += fallbacks;
        times.push(ms);
        for call in calls {
            c.calls += 1;
            c.repairs += u64::from(call.repair);
            c.prompt_tokens += call.prompt_tokens;
            c.completion_tokens += call.completion_tokens;
            match call.cost_usd {
                Some(usd) => c.usd += usd,
                None => c.unpriced_calls += 1,
            }
        }
    }
    c.usd = (c.usd * 1e8).round() / 1e8;
    c.latency = latency(times);
    c
}

fn rfc3339(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .unwrap_or_default()
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

fn judge(
    req: &Request<'_>,
    args: &Args,
    selected: &Selected,
    details: &HashMap<String, RunDetail>,
    replays: &[Answer],
    recorded: &[Option<(Vec<Call>, u64)>],
) -> Report {
    // The candidate's samples: the recorded ones with the candidate's
    // value in place of the draft.
    let mut current: Vec<&Sample> = Vec::new();
    let mut candidate: Vec<Sample> = Vec::new();
    let mut details_out = Vec::new();
    for (input, replay) in selected.inputs.iter().zip(replays) {
        let mut fields = BTreeMap::new();
        for s in &input.samples {
            let value = replay.output.get(&s.field).cloned().unwrap_or(Json::Null);
            let c = Sample {
                draft: value.clone(),
                ..s.clone()
            };
            fields.insert(
                s.field.clone(),
                InputField {
                    approved: s.value.clone(),
                    current: s.draft.clone(),
                    candidate: value,
                    current_agrees: agrees(s),
                    candidate_agrees: agrees(&c),
                },
            );
            current.push(s);
            candidate.push(c);
        }
        let outcome = input.samples[0].outcome;
        details_out.push(InputResult {
            review_id: input.task.review_id.clone(),
            run_id: input.task.run_id.clone(),
            version: details
                .get(&input.task.run_id)
                .map_or(input.task.version, |d| d.run.version),
            outcome: outcome.as_str(),
            status: replay.status.clone(),
            answered_by: replay.answered_by.clone(),
            reason: replay.reason.clone(),
            latency_ms: replay.latency_ms,
            fields,
        });
    }
    // Fields in the order the reviews list them.
    let mut order: Vec<&str> = Vec::new();
    for s in &current {
        if !order.contains(&s.field.as_str()) {
            order.push(&s.field);
        }
    }
    let mut fields = Vec::new();
    for name in order {
        let cur: Vec<&Sample> = current
            .iter()
            .copied()
            .filter(|s| s.field == name)
            .collect();
        let cand: Vec<&Sample> = candidate.iter().filter(|s| s.field == name).collect();
        let text = cur.iter().any(|s| s.text);
        let (a, b) = (side(&cur, text), side(&cand, text));
        let n = cur.len() as u64;
        let gained = cur
            .iter()
            .zip(&cand)
            .filter(|(c, k)| !agrees(c) && agrees(k))
            .count() as u64;
        let lost = cur
            .iter()
            .zip(&cand)
            .filter(|(c, k)| agrees(c) && !agrees(k))
            .count() as u64;
        let drop = (a.agreed as f64 - b.agreed as f64) / n.max(1) as f64;
        fields.push(FieldResult {
            field: name.to_string(),
            text,
            compared: if text { "normalised" } else { "exact" },
            reviews: n,
            change: round4((b.agreed as f64 - a.agreed as f64) / n.max(1) as f64),
            current: a,
            candidate: b,
            gained,
            lost,
            dropped: drop > req.max_drop + 1e-9,
        });
    }
    let dropped: Vec<String> = fields
        .iter()
        .filter(|f| f.dropped)
        .map(|f| f.field.clone())
        .collect();
    let mut costs = BTreeMap::new();
    costs.insert(
        "current",
        cost(recorded.iter().flatten().map(|(calls, fallbacks)| {
            (
                calls.as_slice(),
                *fallbacks,
                calls.iter().map(|c| c.latency_ms).sum::<u64>(),
            )
        })),
    );
    costs.insert(
        "candidate",
        cost(
            replays
                .iter()
                .map(|r| (r.calls.as_slice(), r.fallbacks, r.latency_ms)),
        ),
    );
    let mut answered_by = BTreeMap::new();
    let mut statuses = BTreeMap::new();
    for r in replays {
        *answered_by
            .entry(r.answered_by.clone().unwrap_or_else(|| "(none)".into()))
            .or_insert(0) += 1;
        *statuses.entry(r.status.clone()).or_insert(0) += 1;
    }
    let excluded = |e: Excluded| selected.excluded.get(&e).copied().unwrap_or(0);
    Report {
        workflow: req.workflow.to_string(),
        step: req.step.to_string(),
        candidate: Candidate {
            prompt_file: req.prompt.map(|p| p.display().to_string()),
            prompt_hash: args.prompt.as_ref().map(|(_, text)| {
                format!("sha256:{}", hex::encode(Sha256::digest(text.as_bytes())))
            }),
            model: req.model.map(str::to_string),
            base_url: req.base_url.map(str::to_string),
        },
        since: args.since_ms.map(rfc3339),
        limit: req.limit,
        min_samples: req.min_samples,
        max_drop: req.max_drop,
        inputs: selected.inputs.len() as u64,
        available: selected.available,
        versions: details
            .values()
            .map(|d| d.run.version)
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect(),
        excluded: ExcludedCounts {
            undecided: excluded(Excluded::Undecided),
            expired: excluded(Excluded::Expired),
            bulk: excluded(Excluded::Bulk),
            before_window: excluded(Excluded::BeforeWindow),
        },
        truncated: selected.truncated,
        fields,
        cost: costs,
        answered_by,
        statuses,
        exit_code: u8::from(!dropped.is_empty()),
        dropped,
        details: details_out,
    }
}

// ---------------------------------------------------------------- table

fn pad(rows: &[Vec<String>], left: usize) -> String {
    let cols = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..cols)
        .map(|i| {
            rows.iter()
                .filter_map(|r| r.get(i))
                .map(|c| c.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for r in rows {
        let mut line = String::new();
        for (i, cell) in r.iter().enumerate() {
            let gap = " ".repeat(widths[i] - cell.chars().count());
            if i < left {
                line.push_str(cell);
                line.push_str(&gap);
            } else {
                line.push_str(&gap);
                line.push_str(cell);
            }
            line.push_str("  ");
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

fn signed(x: f64) -> String {
    if x > 0.0 {
        format!("+{x:.4}")
    } else {
        format!("{x:.4}")
    }
}

/// The report for the terminal.
pub fn table(r: &Report) -> String {
    let mut out = String::new();
    let versions = r
        .versions
        .iter()
        .map(i64::to_string)
        .collect::<Vec<_>>()
        .join(", ");
    out.push_str(&format!(
        "eval · {} · step {} · {} reviewed input{} (version{} {versions})\n",
        r.workflow,
        r.step,
        r.inputs,
        if r.inputs == 1 { "" } else { "s" },
        if r.versions.len() == 1 { "" } else { "s" },
    ));
    let c = &r.candidate;
    let prompt = match (&c.prompt_file, &c.prompt_hash) {
        (Some(f), Some(h)) => format!("prompt {f} ({})", h.chars().take(19).collect::<String>()),
        _ => "the version's prompt".into(),
    };
    let model = c.model.as_deref().map_or_else(
        || "the version's model".to_string(),
        |m| format!("model {m}"),
    );
    let url = c
        .base_url
        .as_deref()
        .map(|u| format!(" at {u}"))
        .unwrap_or_default();
    out.push_str(&format!("candidate: {prompt}, {model}{url}\n\n"));
    let mut rows = vec![
        [
            "field",
            "compared",
            "reviews",
            "current",
            "candidate",
            "change",
            "gained",
            "lost",
            "",
        ]
        .map(String::from)
        .to_vec(),
    ];
    for f in &r.fields {
        rows.push(vec![
            f.field.clone(),
            f.compared.into(),
            f.reviews.to_string(),
            format!("{:.4}", f.current.agreement),
            format!("{:.4}", f.candidate.agreement),
            signed(f.change),
            f.gained.to_string(),
            f.lost.to_string(),
            if f.dropped { "DROP" } else { "" }.into(),
        ]);
    }
    out.push_str(&pad(&rows, 2));
    out.push('\n');
    let mut rows = vec![
        [
            "",
            "inputs",
            "calls",
            "tokens in",
            "tokens out",
            "USD",
            "mean ms",
            "p95 ms",
        ]
        .map(String::from)
        .to_vec(),
    ];
    for (name, k) in &r.cost {
        let (mean, p95) = k.latency.as_ref().map_or_else(
            || ("-".to_string(), "-".to_string()),
            |l| (format!("{:.0}", l.mean_ms), l.p95_ms.to_string()),
        );
        let usd = if k.unpriced_calls > 0 {
            format!("{:.4}+?", k.usd)
        } else {
            format!("{:.4}", k.usd)
        };
        rows.push(vec![
            (*name).to_string(),
            k.inputs.to_string(),
            k.calls.to_string(),
            k.prompt_tokens.to_string(),
            k.completion_tokens.to_string(),
            usd,
            mean,
            p95,
        ]);
    }
    out.push_str(&pad(&rows, 1));
    out.push('\n');
    let by = r
        .answered_by
        .iter()
        .map(|(k, n)| format!("{k} {n}"))
        .collect::<Vec<_>>()
        .join(", ");
    out.push_str(&format!("answered by: {by}\n"));
    let not_ok: Vec<String> = r
        .statuses
        .iter()
        .filter(|(s, _)| s.as_str() != "ok")
        .map(|(s, n)| format!("{n} {s}"))
        .collect();
    if !not_ok.is_empty() {
        out.push_str(&format!(
            "no valid answer: {} (each counts as disagreement on every field; see the report's details)\n",
            not_ok.join(", ")
        ));
    }
    let fell_back = r.cost.get("candidate").map_or(0, |k| k.fallbacks);
    if fell_back > 0 {
        out.push_str(&format!(
            "the candidate's chain fell back {fell_back} time{}\n",
            if fell_back == 1 { "" } else { "s" }
        ));
    }
    let not = server::calibration::not_counted(&server::calibration::ExcludedCounts {
        undecided: r.excluded.undecided,
        expired: r.excluded.expired,
        bulk: r.excluded.bulk,
        before_window: r.excluded.before_window,
    });
    if !not.is_empty() {
        out.push_str(&format!("not counted: {not}\n"));
    }
    if r.inputs < r.available {
        out.push_str(&format!(
            "replayed the newest {} of {} reviewed inputs (--limit)\n",
            r.inputs, r.available
        ));
    }
    if r.truncated {
        out.push_str(&format!(
            "only the newest {} reviews were read; narrow with --since\n",
            engine::calibration::READ_LIMIT
        ));
    }
    out.push_str(&if r.dropped.is_empty() {
        format!(
            "\nno field dropped more than {} (--max-drop).\n",
            r.max_drop
        )
    } else {
        format!(
            "\n{} dropped more than {} (--max-drop).\n",
            r.dropped.join(", "),
            r.max_drop
        )
    });
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn p95_is_the_nearest_rank() {
        let l = latency((1..=100).collect()).unwrap();
        assert_eq!((l.p95_ms, l.max_ms, l.mean_ms), (95, 100, 50.5));
        let one = latency(vec![7]).unwrap();
        assert_eq!((one.p95_ms, one.max_ms), (7, 7));
        assert!(latency(Vec::new()).is_none());
    }

    #[test]
    fn prompt_names_are_plain_file_names() {
        assert_eq!(
            prompt_name(Path::new("/tmp/x/triage-v2.md.j2")),
            "triage-v2.md.j2"
        );
        assert_eq!(prompt_name(Path::new("odd name.j2")), "candidate-prompt.j2");
        assert_eq!(prompt_name(Path::new(".hidden")), "candidate-prompt.j2");
    }
}
