//! What a run's page says, gathered from what the store holds: the run
//! row with its step attempts and effects, its audit events, its review
//! tasks, and the steps of the workflow version it ran. Pure: no I/O, no
//! clock (the caller passes `now`), so every answer is unit-tested here.
//!
//! The nine answers come first (what came in, what the AI drafted, why a
//! person reviewed it, who changed what, CRM, Slack, email, failures,
//! fallbacks); then a timeline, the AI calls, the effects, the workflow
//! diagram and the event log. Events are redacted before they are stored
//! (secrets never reach this module), and every value leaves it as text
//! for an auto-escaping template.

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::{Map, Value};
use store::{Event, Review, ReviewStatus, RunDetail, StepStatus};

use super::ui::{span, when};

/// A step of the workflow version the run used: id and kind (`llm`,
/// `crm`, `slack`, `email`, `rules`, `review`, …), in order.
#[derive(Debug, Clone)]
pub(crate) struct StepInfo {
    pub id: String,
    pub kind: String,
}

/// Everything the page is built from.
pub(crate) struct Sources<'a> {
    pub detail: &'a RunDetail,
    pub events: &'a [Event],
    pub reviews: &'a [Review],
    /// Empty when the workflow version could not be read.
    pub steps: &'a [StepInfo],
    pub now_ms: i64,
}

/// One of the nine answers: the question, the answer in a sentence, and
/// optional details (one per line).
#[derive(Debug, Serialize)]
pub(crate) struct Answer {
    pub key: &'static str,
    pub question: &'static str,
    pub answer: String,
    pub lines: Vec<String>,
    /// `ok`, `warn`, `bad` or empty: how the answer is marked.
    pub tone: &'static str,
}

/// One step attempt on the timeline.
#[derive(Debug, Serialize)]
pub(crate) struct Attempt {
    pub step: String,
    pub kind: String,
    pub attempt: u32,
    pub status: &'static str,
    pub started_at_ms: i64,
    pub duration: String,
    /// Time between the previous attempt's end and this start (a review,
    /// a timer or a retry back-off), when it is at least a second.
    pub waited: String,
    pub error: String,
}

/// One LLM event, as read.
#[derive(Debug, Serialize)]
pub(crate) struct AiEvent {
    pub kind: String,
    pub step: String,
    pub summary: String,
    /// `role: content` of each message sent (requests only).
    pub messages: Vec<(String, String)>,
    pub raw: String,
    pub parsed: String,
    pub errors: Vec<String>,
    pub at_ms: i64,
}

/// One effect in the journal, or one recorded in the outbox.
#[derive(Debug, Serialize)]
pub(crate) struct EffectRow {
    pub step: String,
    pub status: String,
    pub key: String,
    pub external_id: String,
    pub at_ms: i64,
}

/// One audit event with its place in the hash chain.
#[derive(Debug, Serialize)]
pub(crate) struct EventRow {
    pub seq: i64,
    pub kind: String,
    pub actor: String,
    pub at_ms: i64,
    pub data: String,
    pub prev_hash: String,
    pub hash: String,
}

/// A box of the workflow diagram.
#[derive(Debug, Serialize)]
pub(crate) struct Node {
    pub id: String,
    pub kind: String,
    /// `done`, `failed`, `skipped`, `current` or `ahead`.
    pub state: &'static str,
    pub note: String,
    /// `note` clipped to fit the box (the full text is its tooltip).
    pub short: String,
    pub x: i64,
    pub y: i64,
    pub w: i64,
    pub h: i64,
    /// Baselines of the two text lines.
    pub ty1: i64,
    pub ty2: i64,
}

/// An arrow between two boxes.
#[derive(Debug, Serialize)]
pub(crate) struct Edge {
    pub x: i64,
    pub y1: i64,
    pub y2: i64,
    pub taken: bool,
}

/// The server-rendered SVG of the workflow version.
#[derive(Debug, Serialize)]
pub(crate) struct Diagram {
    pub width: i64,
    pub height: i64,
    pub nodes: Vec<Node>,
    pub edges: Vec<Edge>,
}

/// The page's content.
#[derive(Debug, Serialize)]
pub(crate) struct RunFacts {
    pub answers: Vec<Answer>,
    pub timeline: Vec<Attempt>,
    pub ai: Vec<AiEvent>,
    pub tokens: Option<i64>,
    pub cost_usd: Option<f64>,
    /// `$0.0123`, when a cost was recorded.
    pub cost: Option<String>,
    pub effects: Vec<EffectRow>,
    pub events: Vec<EventRow>,
    pub diagram: Diagram,
}

fn parse(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or(Value::Null)
}

/// A JSON value as short text.
pub(crate) fn text(v: &Value) -> String {
    match v {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        Value::Array(items) => items.iter().map(text).collect::<Vec<_>>().join(", "),
        Value::Object(m) => m
            .iter()
            .filter(|(_, v)| !text(v).is_empty())
            .map(|(k, v)| format!("{k}: {}", text(v)))
            .collect::<Vec<_>>()
            .join(", "),
        other => other.to_string(),
    }
}

fn clip(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_string();
    }
    let mut out: String = s.chars().take(max).collect();
    out.push('…');
    out
}

/// `user:ada@example.com` → `ada@example.com`; other actors as they are.
pub(crate) fn who(actor: &str) -> String {
    actor.strip_prefix("user:").unwrap_or(actor).to_string()
}

fn pretty(v: &Value) -> String {
    match v {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        v => serde_json::to_string_pretty(v).unwrap_or_default(),
    }
}

impl Sources<'_> {
    fn kind_of(&self, step: &str) -> String {
        self.steps
            .iter()
            .find(|s| s.id == step)
            .map(|s| s.kind.clone())
            .unwrap_or_default()
    }

    /// Latest completed output of each step of `kind`, in step order.
    fn outputs_of(&self, kind: &str) -> Vec<(String, Map<String, Value>)> {
        let mut latest: BTreeMap<usize, (String, Map<String, Value>)> = BTreeMap::new();
        for s in &self.detail.steps {
            if s.status != StepStatus::Completed || self.kind_of(&s.step_id) != kind {
                continue;
            }
            if let Some(Value::Object(m)) = s.output.as_deref().map(parse) {
                latest.insert(s.index, (s.step_id.clone(), m));
            }
        }
        latest.into_values().collect()
    }

    fn events_of<'e>(&'e self, kind: &'e str) -> impl Iterator<Item = (&'e Event, Value)> + 'e {
        self.events
            .iter()
            .filter(move |e| e.kind == kind)
            .map(|e| (e, parse(&e.data)))
    }

    fn has_kind(&self, kind: &str) -> bool {
        self.steps.iter().any(|s| s.kind == kind)
    }

    /// Why a step of `kind` was skipped, when one was.
    fn skipped(&self, kind: &str) -> Option<String> {
        let step = self
            .detail
            .steps
            .iter()
            .rev()
            .find(|s| s.status == StepStatus::Skipped && self.kind_of(&s.step_id) == kind)?;
        Some(self.skip_reason(&step.step_id))
    }

    fn skip_reason(&self, step: &str) -> String {
        self.events_of(domain::event::kind::STEP_SKIPPED)
            .filter(|(_, d)| d["step"] == step)
            .map(|(_, d)| text(&d["reason"]))
            .last()
            .filter(|r| !r.is_empty())
            .unwrap_or_else(|| "its condition was false".into())
    }

    /// A failed attempt of a step of `kind` that never completed later.
    fn failed_step(&self, kind: &str) -> Option<String> {
        let mut out = None;
        for s in &self.detail.steps {
            if self.kind_of(&s.step_id) != kind {
                continue;
            }
            match s.status {
                StepStatus::Failed => out = s.error.clone().or(Some("failed".into())),
                StepStatus::Completed => out = None,
                _ => {}
            }
        }
        out
    }
}

/// Gathers the page's content.
pub(crate) fn gather(src: &Sources<'_>) -> RunFacts {
    let mut tokens = None;
    let mut cost = None;
    for (_, d) in src.events_of("llm.responded") {
        if let Some(t) = d["usage"]["total_tokens"].as_i64() {
            *tokens.get_or_insert(0) += t;
        }
        if let Some(c) = d["cost_usd"].as_f64() {
            *cost.get_or_insert(0.0) += c;
        }
    }
    RunFacts {
        answers: vec![
            came_in(src),
            ai_answer(src, tokens, cost),
            review_required(src),
            decided(src),
            crm(src),
            slack(src),
            email(src),
            failures(src),
            fallbacks(src),
        ],
        timeline: timeline(src),
        ai: ai_events(src),
        tokens,
        cost_usd: cost,
        cost: cost.map(|c| format!("${c:.4}")),
        effects: effects(src),
        events: src
            .events
            .iter()
            .map(|e| EventRow {
                seq: e.seq,
                kind: e.kind.clone(),
                actor: e.actor.clone(),
                at_ms: e.at_ms,
                data: pretty(&parse(&e.data)),
                prev_hash: e.prev_hash.clone(),
                hash: e.hash.clone(),
            })
            .collect(),
        diagram: diagram(src),
    }
}

fn answer(
    key: &'static str,
    question: &'static str,
    tone: &'static str,
    answer: String,
    lines: Vec<String>,
) -> Answer {
    Answer {
        key,
        question,
        answer,
        lines,
        tone,
    }
}

fn came_in(src: &Sources<'_>) -> Answer {
    let run = &src.detail.run;
    let by = src
        .events
        .iter()
        .find(|e| e.kind == domain::event::kind::RUN_RECEIVED)
        .map(|e| who(&e.actor))
        .unwrap_or_else(|| "unknown".into());
    let input = parse(&run.input);
    let mut lines = Vec::new();
    if let Value::Object(m) = &input {
        for (k, v) in m.iter().take(8) {
            lines.push(format!("{k}: {}", clip(&text(v), 160)));
        }
    } else if !input.is_null() {
        lines.push(clip(&text(&input), 300));
    }
    answer(
        "input",
        "What came in",
        "",
        format!(
            "A request to {}, submitted by {by} at {}",
            run.workflow,
            when(run.created_at_ms)
        ),
        lines,
    )
}

fn ai_answer(src: &Sources<'_>, tokens: Option<i64>, cost: Option<f64>) -> Answer {
    const Q: &str = "What the AI generated";
    let outs = src.outputs_of("llm");
    if outs.is_empty() {
        let text = if src.has_kind("llm") {
            "Nothing yet: the AI step has not completed."
        } else {
            "No AI step in this workflow."
        };
        return answer("ai", Q, "", text.into(), Vec::new());
    }
    let mut lines = Vec::new();
    let mut tone = "ok";
    let mut heads = Vec::new();
    for (step, m) in &outs {
        let provider = m.get("provider").map(text).unwrap_or_default();
        let model = m.get("model").map(text).unwrap_or_default();
        let reason = m.get("reason").map(text).unwrap_or_default();
        match m.get("status").and_then(Value::as_str) {
            Some("needs_review") => {
                tone = "bad";
                heads.push(format!("{step}: no valid draft — {reason}"));
            }
            _ => {
                heads.push(format!("{step}: drafted by {provider} / {model}"));
                if !reason.is_empty() {
                    tone = "warn";
                    lines.push(format!("Fallback: {reason}"));
                }
            }
        }
        for (k, v) in m {
            if !["status", "provider", "model", "reason"].contains(&k.as_str()) {
                lines.push(format!("{k}: {}", clip(&text(v), 200)));
            }
        }
    }
    if let Some(t) = tokens {
        let mut l = format!("{t} tokens");
        if let Some(c) = cost {
            l.push_str(&format!(", about ${c:.4}"));
        }
        lines.push(l);
    }
    answer("ai", Q, tone, heads.join("; "), lines)
}

fn review_required(src: &Sources<'_>) -> Answer {
    const Q: &str = "Was review required, and why";
    let mut rule = None;
    for (_, m) in src.outputs_of("rules") {
        if m.get("review").and_then(Value::as_str) == Some("required") {
            let r = m.get("review_rule");
            let when = r.and_then(|r| r.get("when")).map(text).unwrap_or_default();
            rule = Some(match r.and_then(|r| r.get("why")).map(text) {
                Some(why) if !why.is_empty() => format!("{why} (rule `{when}`)"),
                _ if when.is_empty() => String::new(),
                _ => format!("rule `{when}`"),
            });
        }
    }
    let skipped: Vec<String> = src
        .events_of("review.decided")
        .filter(|(_, d)| d["review"].is_null() && !d["policy"].is_null())
        .map(|(_, d)| format!("{} (step {})", text(&d["policy"]), text(&d["step"])))
        .collect();
    if let Some(r) = src.reviews.first() {
        let queues: Vec<String> = src
            .reviews
            .iter()
            .map(|r| format!("{} (step {})", r.queue, r.step_id))
            .collect();
        let because = match rule.as_deref() {
            Some(w) if !w.is_empty() => w.to_string(),
            Some(_) => "a rule asked for it".into(),
            None if src.kind_of(&r.step_id) == "review" => {
                "the workflow reviews every request at this step".into()
            }
            None => format!("step {} runs under control: review", r.step_id),
        };
        return answer(
            "review",
            Q,
            "",
            format!("Yes — {because}"),
            vec![format!("Queue: {}", queues.join(", "))],
        );
    }
    if !skipped.is_empty() {
        return answer(
            "review",
            Q,
            "",
            format!("No — skipped by policy: {}", skipped.join(", ")),
            Vec::new(),
        );
    }
    let text = if src.has_kind("review") {
        "No review has been asked for."
    } else {
        "No — the workflow has no review step."
    };
    answer("review", Q, "", text.into(), Vec::new())
}

fn decided(src: &Sources<'_>) -> Answer {
    const Q: &str = "Who approved or changed what";
    if src.reviews.is_empty() {
        return answer("decision", Q, "", "Nobody: no review.".into(), Vec::new());
    }
    let mut heads = Vec::new();
    let mut lines = Vec::new();
    let mut tone = "";
    let several = src.reviews.len() > 1;
    for r in src.reviews {
        let by = r.decided_by.as_deref().map(who).unwrap_or_default();
        let at = r.decided_at_ms.map(when).unwrap_or_default();
        match r.status {
            ReviewStatus::Pending => {
                tone = "warn";
                heads.push(format!(
                    "Waiting in queue {} for {}",
                    r.queue,
                    span(src.now_ms - r.created_at_ms)
                ));
            }
            ReviewStatus::Approved => {
                tone = "ok";
                let changed = r.results.iter().filter(|f| f.changed).count();
                heads.push(if changed == 0 {
                    format!("Approved unchanged by {by}, {at}")
                } else {
                    format!("Approved by {by}, {at}, with {changed} change(s)")
                });
            }
            ReviewStatus::HandedOff => {
                tone = "warn";
                heads.push(format!(
                    "Handed off to a person by {by}, {at}: {}",
                    r.reason.as_deref().unwrap_or("no reason given")
                ));
            }
            ReviewStatus::Rejected => {
                tone = "bad";
                heads.push(format!(
                    "Rejected by {by}, {at}: {}",
                    r.reason.as_deref().unwrap_or("no reason given")
                ));
            }
        }
        if several && let Some(h) = heads.pop() {
            heads.push(format!("{}: {h}", r.step_id));
        }
        for f in r.results.iter().filter(|f| f.changed) {
            lines.push(format!(
                "{}: {} → {} (by {}, {})",
                f.field,
                clip(&text(&parse(&f.draft)), 120),
                clip(&text(&parse(&f.value)), 120),
                who(&f.decided_by),
                when(f.decided_at_ms)
            ));
        }
        for a in &r.acts {
            if let Some(c) = a.comment.as_deref().filter(|c| !c.is_empty()) {
                lines.push(format!("Comment by {}: {c}", who(&a.actor)));
            }
            if a.decision == "escalate" {
                lines.push(format!(
                    "Escalated by {} to {}",
                    who(&a.actor),
                    a.queue.as_deref().unwrap_or("another queue")
                ));
            }
        }
    }
    answer("decision", Q, tone, heads.join("; "), lines)
}

/// An effect step's answer: performed, recorded in the outbox, failed,
/// or not reached.
fn effect_answer(
    src: &Sources<'_>,
    key: &'static str,
    question: &'static str,
    kind: &str,
    describe: impl Fn(&Map<String, Value>) -> String,
) -> Answer {
    if let Some(err) = src.failed_step(kind) {
        return answer(
            key,
            question,
            "bad",
            format!("No — failed: {err}"),
            Vec::new(),
        );
    }
    let outs = src.outputs_of(kind);
    if outs.is_empty() {
        if let Some(reason) = src.skipped(kind) {
            return answer(
                key,
                question,
                "",
                format!("No — skipped: {reason}"),
                Vec::new(),
            );
        }
        let text = if src.has_kind(kind) {
            "Not yet: the step has not run."
        } else {
            "No such step in this workflow."
        };
        return answer(key, question, "", text.into(), Vec::new());
    }
    let mut heads = Vec::new();
    let mut tone = "ok";
    for (_, m) in &outs {
        if m.get("outbox").and_then(Value::as_bool) == Some(true) {
            tone = "warn";
            heads.push(format!(
                "Recorded in the outbox, not sent — {}",
                text(&m.get("to").cloned().unwrap_or(Value::Null))
            ));
        } else if m.get("control").and_then(Value::as_str) == Some("suggest") {
            tone = "";
            heads.push("Suggested only, not performed".into());
        } else {
            heads.push(describe(m));
        }
    }
    answer(key, question, tone, heads.join("; "), Vec::new())
}

fn crm(src: &Sources<'_>) -> Answer {
    effect_answer(src, "crm", "Was the CRM updated", "crm", |m| {
        let get = |k: &str| m.get(k).map(text).unwrap_or_default();
        format!(
            "Yes — item {} on board {} ({})",
            get("item_id"),
            get("board"),
            get("action")
        )
    })
}

fn slack(src: &Sources<'_>) -> Answer {
    let mut a = effect_answer(src, "slack", "Did Slack go out", "slack", |m| {
        let get = |k: &str| m.get(k).map(text).unwrap_or_default();
        let mut s = if get("via") == "incoming_webhook" {
            "Yes — posted through the incoming webhook".to_string()
        } else {
            format!("Yes — channel {}, ts {}", get("channel"), get("ts"))
        };
        if let Some(p) = m.get("permalink").and_then(Value::as_str) {
            s.push_str(&format!(", {p}"));
        }
        s
    });
    a.lines.extend(notices(src, "slack"));
    a
}

/// Reviewer notifications sent (or not) over `channel` (`slack`, `email`).
fn notices(src: &Sources<'_>, channel: &str) -> Vec<String> {
    let mut out = Vec::new();
    for e in src.events {
        let d = parse(&e.data);
        if text(&d["channel"]) != channel {
            continue;
        }
        match e.kind.as_str() {
            "review.notified" => {
                let mut l = format!("Reviewer notice sent to {}", text(&d["to"]));
                if !d["ts"].is_null() {
                    l.push_str(&format!(", ts {}", text(&d["ts"])));
                }
                out.push(l);
            }
            "review.notify_failed" => out.push(format!(
                "Reviewer notice failed: {}",
                clip(&text(&d["error"]), 200)
            )),
            _ => {}
        }
    }
    out
}

fn email(src: &Sources<'_>) -> Answer {
    let mut a = effect_answer(
        src,
        "email",
        "Was the email sent or drafted",
        "email",
        |m| {
            let get = |k: &str| m.get(k).map(text).unwrap_or_default();
            let verb = if get("control") == "draft" || m.contains_key("draft_id") {
                "Drafted"
            } else {
                "Sent"
            };
            format!(
                "{verb} via {} to {} — Message-ID {}",
                get("via"),
                get("to"),
                get("message_id")
            )
        },
    );
    a.lines.extend(notices(src, "email"));
    a
}

fn failures(src: &Sources<'_>) -> Answer {
    const Q: &str = "Did any step fail";
    let failed: Vec<&store::StepRecord> = src
        .detail
        .steps
        .iter()
        .filter(|s| s.status == StepStatus::Failed)
        .collect();
    let mut lines: Vec<String> = failed
        .iter()
        .map(|s| {
            format!(
                "{} attempt {}: {} ({})",
                s.step_id,
                s.attempt,
                s.error.as_deref().unwrap_or("failed"),
                when(s.finished_at_ms)
            )
        })
        .collect();
    let run = &src.detail.run;
    let next_retry = src
        .events_of(domain::event::kind::STEP_RETRY_SCHEDULED)
        .last()
        .filter(|_| run.wait == Some(store::WaitReason::Retry))
        .map(|(e, d)| {
            format!(
                "Next retry: attempt {} at {}",
                text(&d["next_attempt"]),
                when(e.at_ms + d["delay_ms"].as_i64().unwrap_or(0))
            )
        });
    for (e, _) in src.events_of(domain::event::kind::RUN_RETRIED) {
        lines.push(format!("Retried by {}, {}", who(&e.actor), when(e.at_ms)));
    }
    for (_, d) in src.events_of(domain::event::kind::EFFECT_FAILED) {
        lines.push(format!(
            "Effect failed: step {}, key {}",
            text(&d["step"]),
            text(&d["key"])
        ));
    }
    if failed.is_empty() {
        return answer(Q_KEY_FAIL, Q, "ok", "No.".into(), lines);
    }
    let (head, tone) = if run.status == store::RunStatus::Failed {
        (
            format!(
                "Yes — the run failed: {}",
                run.error.as_deref().unwrap_or("no error recorded")
            ),
            "bad",
        )
    } else if let Some(n) = next_retry {
        (format!("Yes — retrying. {n}"), "warn")
    } else {
        (
            format!("Yes, then recovered ({} failed attempt(s))", failed.len()),
            "warn",
        )
    };
    answer(Q_KEY_FAIL, Q, tone, head, lines)
}

const Q_KEY_FAIL: &str = "failures";

fn fallbacks(src: &Sources<'_>) -> Answer {
    const Q: &str = "Which fallback was used";
    let mut lines: Vec<String> = src
        .events_of("llm.fallback")
        .map(|(_, d)| {
            format!(
                "AI: {} → {} ({}: {})",
                text(&d["from"]),
                text(&d["to"]),
                text(&d["class"]),
                clip(&text(&d["reason"]), 200)
            )
        })
        .collect();
    for (_, d) in src.events_of("outbox.recorded") {
        lines.push(format!(
            "Outbox: {} {} recorded locally, not sent",
            text(&d["connector"]),
            text(&d["action"])
        ));
    }
    for (_, m) in src.outputs_of("llm") {
        if m.get("status").and_then(Value::as_str) == Some("needs_review") {
            lines.push("AI: no valid draft, a person fills the fields".into());
        }
    }
    if lines.is_empty() {
        return answer("fallback", Q, "ok", "None.".into(), lines);
    }
    let head = lines[0].clone();
    answer("fallback", Q, "warn", head, lines.split_off(1))
}

fn timeline(src: &Sources<'_>) -> Vec<Attempt> {
    let mut prev_end = src.detail.run.created_at_ms;
    src.detail
        .steps
        .iter()
        .map(|s| {
            let gap = s.started_at_ms - prev_end;
            prev_end = s.finished_at_ms.max(prev_end);
            Attempt {
                step: s.step_id.clone(),
                kind: src.kind_of(&s.step_id),
                attempt: s.attempt,
                status: s.status.as_str(),
                started_at_ms: s.started_at_ms,
                duration: millis(s.finished_at_ms - s.started_at_ms),
                waited: if gap >= 1000 {
                    span(gap)
                } else {
                    String::new()
                },
                error: s.error.clone().unwrap_or_default(),
            }
        })
        .collect()
}

/// A short duration: `340 ms`, `2.4 s`, then [`span`].
fn millis(ms: i64) -> String {
    match ms.max(0) {
        ms @ 0..1000 => format!("{ms} ms"),
        ms @ 1000..60_000 => format!("{:.1} s", ms as f64 / 1000.0),
        ms => span(ms),
    }
}

fn ai_events(src: &Sources<'_>) -> Vec<AiEvent> {
    src.events
        .iter()
        .filter(|e| e.kind.starts_with("llm."))
        .map(|e| {
            let d = parse(&e.data);
            let get = |k: &str| text(&d[k]);
            let summary = match e.kind.as_str() {
                "llm.requested" => format!(
                    "{} / {}, round {}{}",
                    get("provider"),
                    get("model"),
                    get("round"),
                    if d["repair"] == Value::Bool(true) {
                        " (repair)"
                    } else {
                        ""
                    }
                ),
                "llm.responded" => {
                    let mut s = format!(
                        "{} / {}: {}, {} ms",
                        get("provider"),
                        get("model"),
                        if d["valid"] == Value::Bool(true) {
                            "valid"
                        } else {
                            "not valid"
                        },
                        get("latency_ms")
                    );
                    if let Some(u) = d["usage"].as_object() {
                        s.push_str(&format!(
                            ", tokens {} in / {} out",
                            text(&u["prompt_tokens"]),
                            text(&u["completion_tokens"])
                        ));
                    }
                    if let Some(c) = d["cost_usd"].as_f64() {
                        s.push_str(&format!(", ${c:.4}"));
                    }
                    s
                }
                "llm.invalid" => format!(
                    "{} answer ({}){}",
                    get("kind"),
                    get("provider"),
                    if d["repair"] == Value::Bool(true) {
                        ", asking for a repair"
                    } else {
                        ""
                    }
                ),
                "llm.failed" => format!(
                    "{} / {}: {} — {}",
                    get("provider"),
                    get("model"),
                    get("class"),
                    get("error")
                ),
                "llm.fallback" => format!("{} → {}: {}", get("from"), get("to"), get("reason")),
                _ => String::new(),
            };
            AiEvent {
                kind: e.kind.clone(),
                step: get("step"),
                summary,
                messages: d["messages"]
                    .as_array()
                    .map(|ms| {
                        ms.iter()
                            .map(|m| (text(&m["role"]), text(&m["content"])))
                            .collect()
                    })
                    .unwrap_or_default(),
                raw: pretty(&d["raw"]),
                parsed: pretty(&d["parsed"]),
                errors: d["errors"]
                    .as_array()
                    .map(|a| a.iter().map(text).collect())
                    .unwrap_or_default(),
                at_ms: e.at_ms,
            }
        })
        .collect()
}

fn effects(src: &Sources<'_>) -> Vec<EffectRow> {
    let mut rows: Vec<EffectRow> = src
        .detail
        .effects
        .iter()
        .map(|e| EffectRow {
            step: e.step_id.clone(),
            status: e.status.as_str().into(),
            key: e.key.clone(),
            external_id: e.external_id.clone().unwrap_or_default(),
            at_ms: e.at_ms,
        })
        .collect();
    for (e, d) in src.events_of("outbox.recorded") {
        rows.push(EffectRow {
            step: text(&d["step"]),
            status: "outbox (not sent)".into(),
            key: text(&d["key"]),
            external_id: String::new(),
            at_ms: e.at_ms,
        });
    }
    rows
}

/// Box geometry of the diagram (SVG user units).
const BOX_W: i64 = 300;
const BOX_H: i64 = 44;
const GAP: i64 = 22;
const PAD: i64 = 10;

fn diagram(src: &Sources<'_>) -> Diagram {
    let run = &src.detail.run;
    // The latest attempt of each step decides its colour.
    let mut last: BTreeMap<&str, &store::StepRecord> = BTreeMap::new();
    for s in &src.detail.steps {
        last.insert(s.step_id.as_str(), s);
    }
    let steps: Vec<StepInfo> = if src.steps.is_empty() {
        // No workflow version: draw what ran, in order.
        let mut seen: Vec<StepInfo> = Vec::new();
        for s in &src.detail.steps {
            if !seen.iter().any(|x| x.id == s.step_id) {
                seen.push(StepInfo {
                    id: s.step_id.clone(),
                    kind: String::new(),
                });
            }
        }
        seen
    } else {
        src.steps.to_vec()
    };
    let finished = matches!(
        run.status,
        store::RunStatus::Completed | store::RunStatus::Cancelled | store::RunStatus::Rejected
    );
    let mut nodes = Vec::new();
    let mut edges = Vec::new();
    for (i, s) in steps.iter().enumerate() {
        let y = PAD + i as i64 * (BOX_H + GAP);
        let (state, note) = match last.get(s.id.as_str()).map(|r| r.status) {
            Some(StepStatus::Completed) => ("done", "done".to_string()),
            Some(StepStatus::Skipped) => {
                ("skipped", format!("skipped: {}", src.skip_reason(&s.id)))
            }
            Some(StepStatus::Failed) if run.status == store::RunStatus::Failed => {
                ("failed", "failed".into())
            }
            Some(StepStatus::Failed) => ("current", "failed, retrying".into()),
            Some(StepStatus::Waiting) => (
                "current",
                run.wait.map_or("waiting".to_string(), |w| {
                    format!("waiting: {}", w.as_str())
                }),
            ),
            None if !finished && i == run.position.index => (
                "current",
                run.wait
                    .map_or("next".to_string(), |w| format!("waiting: {}", w.as_str())),
            ),
            None if finished => ("skipped", "not reached: the run ended before".into()),
            None => ("ahead", "not reached yet".into()),
        };
        nodes.push(Node {
            id: s.id.clone(),
            kind: s.kind.clone(),
            state,
            short: clip(&note, 42),
            note,
            x: PAD,
            y,
            w: BOX_W,
            h: BOX_H,
            ty1: y + 18,
            ty2: y + 35,
        });
        if i > 0 {
            // The path runs into every step that ran; skipped ones stay grey.
            let taken = matches!(state, "done" | "failed" | "current");
            edges.push(Edge {
                x: PAD + BOX_W / 2,
                y1: y - GAP,
                y2: y - 3,
                taken,
            });
        }
    }
    let n = steps.len().max(1) as i64;
    Diagram {
        width: BOX_W + 2 * PAD,
        height: PAD * 2 + n * BOX_H + (n - 1) * GAP,
        nodes,
        edges,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use store::{
        Effect, EffectStatus, Position, ReviewAct, ReviewField, Run, RunStatus, StepRecord,
    };

    fn ev(seq: i64, kind: &str, actor: &str, data: Value) -> Event {
        Event {
            run_id: "r1".into(),
            seq,
            kind: kind.into(),
            actor: actor.into(),
            data: data.to_string(),
            at_ms: 1_000 * seq,
            prev_hash: format!("h{}", seq - 1),
            hash: format!("h{seq}"),
        }
    }

    fn step(
        index: usize,
        id: &str,
        attempt: u32,
        status: StepStatus,
        output: Value,
        error: Option<&str>,
    ) -> StepRecord {
        StepRecord {
            index,
            step_id: id.into(),
            attempt,
            status,
            output: Some(output.to_string()),
            error: error.map(str::to_string),
            started_at_ms: 10_000 * index as i64,
            finished_at_ms: 10_000 * index as i64 + 250,
        }
    }

    fn info(pairs: &[(&str, &str)]) -> Vec<StepInfo> {
        pairs
            .iter()
            .map(|(id, kind)| StepInfo {
                id: (*id).into(),
                kind: (*kind).into(),
            })
            .collect()
    }

    fn run(status: RunStatus, position: usize) -> Run {
        Run {
            id: "r1".into(),
            workflow: "leads".into(),
            version: 1,
            status,
            wait: None,
            position: Position {
                index: position,
                failed_attempts: 0,
            },
            outcome: None,
            error: None,
            input: json_text(
                serde_json::json!({"email": "ada@example.com", "message": "<script>x</script>"}),
            ),
            idempotency_key: None,
            rev: 3,
            created_at_ms: 0,
            updated_at_ms: 0,
        }
    }

    fn json_text(v: Value) -> String {
        v.to_string()
    }

    fn by_key<'a>(f: &'a RunFacts, key: &str) -> &'a Answer {
        f.answers.iter().find(|a| a.key == key).unwrap()
    }

    /// A full run: AI fell back to the heuristic, a rule asked for review,
    /// a reviewer changed the summary, CRM and email performed, Slack in
    /// the outbox, the CRM step failed once before it succeeded.
    #[test]
    fn a_full_run_answers_all_nine() {
        use serde_json::json;
        let steps = info(&[
            ("draft", "llm"),
            ("route", "rules"),
            ("review", "review"),
            ("crm", "crm"),
            ("notify", "slack"),
            ("reply", "email"),
        ]);
        let detail = RunDetail {
            run: run(RunStatus::Completed, 6),
            steps: vec![
                step(
                    0,
                    "draft",
                    1,
                    StepStatus::Completed,
                    json!({"summary": "Wants 5 seats", "status": "ok", "provider": "heuristic", "model": "keywords-v1", "reason": "fell back after: openai: rate limited"}),
                    None,
                ),
                step(
                    1,
                    "route",
                    1,
                    StepStatus::Completed,
                    json!({"review": "required", "review_rule": {"when": "input.seats > 3"}}),
                    None,
                ),
                step(
                    2,
                    "review",
                    1,
                    StepStatus::Completed,
                    json!({"decision": "approved"}),
                    None,
                ),
                step(
                    3,
                    "crm",
                    1,
                    StepStatus::Failed,
                    Value::Null,
                    Some("monday: 503"),
                ),
                step(
                    3,
                    "crm",
                    2,
                    StepStatus::Completed,
                    json!({"performed": true, "board": "42", "item_id": "9001", "action": "created"}),
                    None,
                ),
                step(
                    4,
                    "notify",
                    1,
                    StepStatus::Completed,
                    json!({"outbox": true, "performed": false, "to": {"channel": "#sales"}}),
                    None,
                ),
                step(
                    5,
                    "reply",
                    1,
                    StepStatus::Completed,
                    json!({"performed": true, "via": "smtp", "control": "auto", "message_id": "<m1@example.com>", "to": ["ada@example.com"]}),
                    None,
                ),
            ],
            effects: vec![Effect {
                key: "r1:crm".into(),
                run_id: "r1".into(),
                step_id: "crm".into(),
                status: EffectStatus::Completed,
                request_digest: None,
                external_id: Some("9001".into()),
                at_ms: 5,
            }],
        };
        let events = vec![
            ev(1, "run.received", "token:intake", json!({})),
            ev(
                2,
                "llm.requested",
                "system",
                json!({"provider": "openai", "model": "gpt-x", "round": 1, "messages": [{"role": "user", "content": "Classify"}]}),
            ),
            ev(
                3,
                "llm.failed",
                "system",
                json!({"provider": "openai", "model": "gpt-x", "class": "rate_limited", "error": "429"}),
            ),
            ev(
                4,
                "llm.fallback",
                "system",
                json!({"from": "openai", "to": "heuristic", "class": "rate_limited", "reason": "429"}),
            ),
            ev(
                5,
                "llm.responded",
                "system",
                json!({"provider": "heuristic", "model": "keywords-v1", "valid": true, "usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15}, "cost_usd": 0.0}),
            ),
            ev(
                6,
                "outbox.recorded",
                "system",
                json!({"key": "r1:notify", "step": "notify", "connector": "slack", "action": "chat.postMessage"}),
            ),
        ];
        let reviews = vec![Review {
            id: "t1".into(),
            run_id: "r1".into(),
            step_index: 2,
            step_id: "review".into(),
            workflow: "leads".into(),
            queue: "sales".into(),
            status: ReviewStatus::Approved,
            fields: "[]".into(),
            min_approvals: 1,
            submitter: None,
            deadline_at_ms: None,
            on_deadline: "null".into(),
            notify: "[]".into(),
            created_at_ms: 20_000,
            decided_at_ms: Some(30_000),
            decided_by: Some("user:bob@example.com".into()),
            reason: None,
            rev: 2,
            acts: vec![ReviewAct {
                seq: 1,
                actor: "user:bob@example.com".into(),
                user_id: Some("u-bob".into()),
                decision: "approve".into(),
                values: "{}".into(),
                comment: Some("shorter".into()),
                reason: None,
                queue: None,
                at_ms: 30_000,
            }],
            results: vec![ReviewField {
                field: "summary".into(),
                draft: json!("Wants 5 seats").to_string(),
                value: json!("5 seats, Q1").to_string(),
                changed: true,
                decided_by: "user:bob@example.com".into(),
                decided_at_ms: 30_000,
                comment: None,
            }],
        }];
        let f = gather(&Sources {
            detail: &detail,
            events: &events,
            reviews: &reviews,
            steps: &steps,
            now_ms: 60_000,
        });
        assert_eq!(f.answers.len(), 9);
        let a = |k| by_key(&f, k).answer.clone();
        let lines = |k| by_key(&f, k).lines.join("\n");
        assert!(
            a("input").starts_with("A request to leads, submitted by token:intake at "),
            "{}",
            a("input")
        );
        assert!(lines("input").contains("message: <script>x</script>"));
        assert_eq!(a("ai"), "draft: drafted by heuristic / keywords-v1");
        assert!(lines("ai").contains("Fallback: fell back after: openai: rate limited"));
        assert!(lines("ai").contains("15 tokens"));
        assert_eq!(a("review"), "Yes — rule `input.seats > 3`");
        assert!(
            a("decision").starts_with("Approved by bob@example.com"),
            "{}",
            a("decision")
        );
        assert!(
            lines("decision").contains("summary: Wants 5 seats → 5 seats, Q1 (by bob@example.com")
        );
        assert!(lines("decision").contains("Comment by bob@example.com: shorter"));
        assert_eq!(a("crm"), "Yes — item 9001 on board 42 (created)");
        assert!(
            a("slack").starts_with("Recorded in the outbox, not sent — channel: #sales"),
            "{}",
            a("slack")
        );
        assert_eq!(
            a("email"),
            "Sent via smtp to ada@example.com — Message-ID <m1@example.com>"
        );
        assert_eq!(a("failures"), "Yes, then recovered (1 failed attempt(s))");
        assert!(lines("failures").contains("crm attempt 1: monday: 503"));
        assert_eq!(a("fallback"), "AI: openai → heuristic (rate_limited: 429)");
        assert!(lines("fallback").contains("Outbox: slack chat.postMessage"));
        // Tokens and the AI call.
        assert_eq!(f.tokens, Some(15));
        assert_eq!(f.ai.len(), 4);
        assert_eq!(
            f.ai[0].messages,
            vec![("user".to_string(), "Classify".to_string())]
        );
        // Effects: the journal and the outbox.
        assert_eq!(f.effects.len(), 2);
        assert_eq!(f.effects[0].external_id, "9001");
        // The diagram: every step done, every arrow on the path.
        assert!(f.diagram.nodes.iter().all(|n| n.state == "done"));
        assert!(f.diagram.edges.iter().all(|e| e.taken));
        assert_eq!(f.diagram.nodes.len(), 6);
        // The timeline: the wait before the retry shows.
        assert_eq!(f.timeline.len(), 7);
        assert_eq!(f.timeline[0].duration, "250 ms");
    }

    #[test]
    fn a_failed_run_says_why_and_greys_what_it_never_reached() {
        use serde_json::json;
        let steps = info(&[
            ("check", "rules"),
            ("skip-me", "emit"),
            ("crm", "crm"),
            ("after", "emit"),
        ]);
        let mut r = run(RunStatus::Failed, 2);
        r.error = Some("monday: unauthorized".into());
        let detail = RunDetail {
            run: r,
            steps: vec![
                step(0, "check", 1, StepStatus::Completed, json!({}), None),
                step(1, "skip-me", 1, StepStatus::Skipped, Value::Null, None),
                step(
                    2,
                    "crm",
                    1,
                    StepStatus::Failed,
                    Value::Null,
                    Some("monday: unauthorized"),
                ),
            ],
            effects: vec![],
        };
        let events = vec![
            ev(1, "run.received", "webhook", json!({})),
            ev(
                2,
                "step.skipped",
                "system",
                json!({"step": "skip-me", "reason": "when: input.x was false"}),
            ),
        ];
        let f = gather(&Sources {
            detail: &detail,
            events: &events,
            reviews: &[],
            steps: &steps,
            now_ms: 0,
        });
        let a = |k| by_key(&f, k).answer.clone();
        assert_eq!(a("failures"), "Yes — the run failed: monday: unauthorized");
        assert_eq!(by_key(&f, "failures").tone, "bad");
        assert_eq!(a("crm"), "No — failed: monday: unauthorized");
        assert_eq!(a("ai"), "No AI step in this workflow.");
        assert_eq!(a("review"), "No — the workflow has no review step.");
        assert_eq!(a("fallback"), "None.");
        let states: Vec<_> = f
            .diagram
            .nodes
            .iter()
            .map(|n| (n.id.as_str(), n.state))
            .collect();
        assert_eq!(
            states,
            vec![
                ("check", "done"),
                ("skip-me", "skipped"),
                ("crm", "failed"),
                ("after", "ahead")
            ]
        );
        assert_eq!(f.diagram.nodes[1].note, "skipped: when: input.x was false");
        assert_eq!(f.diagram.nodes[3].note, "not reached yet");
        let taken: Vec<bool> = f.diagram.edges.iter().map(|e| e.taken).collect();
        assert_eq!(taken, vec![false, true, false]);
    }

    #[test]
    fn durations_read_as_people_read_them() {
        assert_eq!(millis(340), "340 ms");
        assert_eq!(millis(2_400), "2.4 s");
        assert_eq!(millis(120_000), "2m");
        assert_eq!(who("user:a@b.c"), "a@b.c");
        assert_eq!(who("system"), "system");
        assert_eq!(clip("abcdef", 3), "abc…");
    }
}
