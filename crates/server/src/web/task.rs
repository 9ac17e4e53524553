//! The task page: the decision first. At the top the request in a person's
//! words and why a person is asked, beside the AI draft as editable fields
//! with human labels and the Approve / Reject / Escalate controls; below,
//! what will happen after approval and the task's history.
//!
//! After any decision the next task in the reviewer's order opens with a
//! short confirmation; a task decided elsewhere (Slack, an email link,
//! another reviewer) says so and moves on, deciding nothing twice.

use std::collections::HashMap;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use domain::review::Field;
use domain::yaml::{Node, Value as Yaml};
use engine::ReviewError;
use engine::review::{Decision, DecisionError, fields_of};
use serde::Serialize;
use serde_json::{Map, Value};
use store::{Event, Review, ReviewStatus, RunDetail, UserRole};

use super::desk::{
    Refusal, Request, Why, approved_by, as_text, may_decide, may_see, shorten, shown,
};
use super::inbox::{InboxQuery, Notice, done_notice, encode, pending};
use super::session::WebUser;
use super::ui::{self, Me, label, span};
use super::{message, see_other};
use crate::AppState;
use crate::forms::url_decode_pairs;

/// One reviewed field as the page draws it.
#[derive(Debug, Serialize)]
struct FieldView {
    name: String,
    /// The form control's name: `f.NAME`.
    input: String,
    label: String,
    help: Option<String>,
    /// `select`, `textarea`, `text` or `number`.
    kind: &'static str,
    options: Vec<Opt>,
    rows: usize,
    /// The control's current text (the draft, or what was submitted).
    value: String,
    /// The draft, as text (compared by the page script to mark edits).
    draft: String,
    /// The draft as a person reads it (enum labels, yes/no).
    draft_label: String,
    changed: bool,
    wide: bool,
    error: Option<String>,
    /// Decided tasks: the approved value, and whether it was edited.
    final_label: Option<String>,
    final_changed: bool,
}

#[derive(Debug, Serialize)]
struct Opt {
    value: String,
    label: String,
}

/// The schema a field's edits are checked against: its own, else the
/// draft's JSON type.
fn kind_of(f: &Field) -> (&'static str, Option<Vec<Value>>) {
    if let Some(s) = &f.schema {
        if let Some(e) = s.get("enum").and_then(Value::as_array) {
            return ("enum", Some(e.clone()));
        }
        let t = match s.get("type") {
            Some(Value::String(t)) => t.as_str(),
            Some(Value::Array(ts)) => ts
                .iter()
                .filter_map(Value::as_str)
                .find(|t| *t != "null")
                .unwrap_or(""),
            _ => "",
        };
        match t {
            "string" => return ("string", None),
            "integer" => return ("integer", None),
            "number" => return ("number", None),
            "boolean" => return ("boolean", None),
            "object" | "array" => return ("json", None),
            _ => {}
        }
    }
    match &f.draft {
        Value::String(_) | Value::Null => ("string", None),
        Value::Number(n) if n.is_i64() || n.is_u64() => ("integer", None),
        Value::Number(_) => ("number", None),
        Value::Bool(_) => ("boolean", None),
        _ => ("json", None),
    }
}

/// Reads one submitted field back into JSON by its type; `Err` names the
/// problem the way a person can fix it.
fn parse_field(f: &Field, text: &str) -> Result<Value, String> {
    let (kind, options) = kind_of(f);
    let t = text.trim();
    match kind {
        "enum" => options
            .unwrap_or_default()
            .into_iter()
            .find(|o| as_text(o) == text)
            .ok_or_else(|| "choose one of the listed values".to_string()),
        "boolean" => match t {
            "true" => Ok(Value::Bool(true)),
            "false" => Ok(Value::Bool(false)),
            _ => Err("choose yes or no".into()),
        },
        "integer" if t.is_empty() => Ok(Value::Null),
        "integer" => t
            .parse::<i64>()
            .map(Value::from)
            .map_err(|_| "enter a whole number".into()),
        "number" if t.is_empty() => Ok(Value::Null),
        "number" => t
            .parse::<f64>()
            .ok()
            .and_then(serde_json::Number::from_f64)
            .map(Value::Number)
            .ok_or_else(|| "enter a number".into()),
        "json" if t.is_empty() => Ok(Value::Null),
        "json" => serde_json::from_str(t).map_err(|e| format!("not valid JSON: {e}")),
        _ if text.is_empty() && f.draft.is_null() => Ok(Value::Null),
        // Browsers submit textarea line ends as CRLF.
        _ => Ok(Value::String(text.replace("\r\n", "\n"))),
    }
}

fn view(
    f: &Field,
    text: &str,
    error: Option<String>,
    result: Option<&store::ReviewField>,
) -> FieldView {
    let (kind, options) = kind_of(f);
    let draft = as_text(&f.draft);
    let title = f
        .schema
        .as_ref()
        .and_then(|s| s.get("title"))
        .and_then(Value::as_str)
        .map_or_else(|| label(&f.name), str::to_string);
    let help = f
        .schema
        .as_ref()
        .and_then(|s| s.get("description"))
        .and_then(Value::as_str)
        .map(str::to_string);
    let max_len = f
        .schema
        .as_ref()
        .and_then(|s| s.get("maxLength"))
        .and_then(Value::as_u64);
    let long = text.chars().count() > 60 || text.contains('\n') || max_len.is_none_or(|m| m > 200);
    let (kind, options) = match kind {
        "enum" => (
            "select",
            options
                .unwrap_or_default()
                .iter()
                .map(|o| {
                    let v = as_text(o);
                    Opt {
                        label: if o.is_null() { "—".into() } else { label(&v) },
                        value: v,
                    }
                })
                .collect(),
        ),
        "boolean" => (
            "select",
            vec![
                Opt {
                    value: "true".into(),
                    label: "yes".into(),
                },
                Opt {
                    value: "false".into(),
                    label: "no".into(),
                },
            ],
        ),
        "integer" | "number" => ("number", Vec::new()),
        "string" if !long => ("text", Vec::new()),
        _ => ("textarea", Vec::new()),
    };
    let chars = text.chars().count();
    let rows = if kind == "textarea" {
        // Enough to read the start; the box grows on demand.
        (chars / 70 + text.lines().count()).clamp(2, 5)
    } else {
        1
    };
    let final_value = result.map(|x| serde_json::from_str(&x.value).unwrap_or(Value::Null));
    FieldView {
        name: f.name.clone(),
        input: format!("f.{}", f.name),
        label: title,
        help,
        kind,
        options,
        rows,
        changed: text != draft,
        wide: kind == "textarea",
        value: text.to_string(),
        draft_label: shown(f, &f.draft),
        draft,
        error,
        final_label: final_value.as_ref().map(|v| shown(f, v)),
        final_changed: result.is_some_and(|x| x.changed),
    }
}

/// What the decision forms show again after a refused decision.
#[derive(Debug, Default)]
struct FormState {
    /// Submitted text by form field name (`f.NAME`, `reason`, `queue`, `comment`).
    values: HashMap<String, String>,
    /// Error messages by the same names.
    errors: HashMap<String, String>,
    banner: Option<String>,
    /// Covered actions left ticked on a refused approval (`None`: all).
    kept: Option<Vec<String>>,
}

#[derive(Debug, Serialize)]
struct TaskHead {
    id: String,
    workflow: String,
    queue: String,
    status: &'static str,
    priority: String,
    created_at_ms: i64,
    age: String,
    deadline_at_ms: Option<i64>,
    deadline: String,
    overdue: bool,
    approvals_needed: u32,
    approvals_so_far: usize,
}

#[derive(Debug, Serialize)]
struct ClaimView {
    email: String,
    ago: String,
}

/// A claim idle this long is free to take.
pub(crate) const CLAIM_IDLE_MS: i64 = 10 * 60_000;

/// Claims the task for a reviewer who opens it (or refreshes their claim);
/// records that it was shown to them. Returns someone else's fresh claim.
async fn claim_and_record(
    state: &AppState,
    user: &WebUser,
    r: &Review,
    decide: bool,
    take_over: bool,
) -> Option<ClaimView> {
    let now = engine::now_ms();
    let store = state.engine.store();
    if let Err(e) = store.record_review_view(&r.id, &user.user.id, now).await {
        tracing::warn!(error = %e, review = %r.id, "recording a task view failed");
    }
    if !decide {
        return None;
    }
    let mine = store::Claim {
        review_id: r.id.clone(),
        user_id: user.user.id.clone(),
        email: user.user.email.clone(),
        at_ms: now,
    };
    match store
        .claim_review(mine, now - CLAIM_IDLE_MS, take_over)
        .await
    {
        Ok(c) if c.user_id != user.user.id => Some(ClaimView {
            email: c.email,
            ago: span(now - c.at_ms),
        }),
        Ok(_) => None,
        Err(e) => {
            tracing::warn!(error = %e, review = %r.id, "claiming a task failed");
            None
        }
    }
}

#[derive(Debug, Serialize)]
struct Decided {
    ok: bool,
    text: String,
}

/// One action after approval, as the page lists it: rendered by the
/// engine from the values on the page (the same `ActionPreview` the step
/// executes).
#[derive(Debug, Serialize)]
pub(crate) struct After {
    pub(crate) step: String,
    pub(crate) title: String,
    /// What approving does to it: "approved with this review", "asks for
    /// its own approval", "suggested only" …
    control: Option<String>,
    note: Option<String>,
    skipped: bool,
    /// Covered by this review: the reviewer may untick it.
    untickable: bool,
    /// Ticked (will run) when untickable.
    ticked: bool,
    values: Vec<(String, String)>,
}

#[derive(Debug, Serialize)]
pub(crate) struct RawStep {
    id: String,
    kind: String,
    json: String,
}

#[derive(Debug, Serialize)]
struct HistoryRow {
    at_ms: i64,
    what: String,
    who: String,
}

#[derive(Serialize)]
struct TaskPage {
    me: Option<Me>,
    nav: &'static str,
    title: String,
    heading: String,
    notice: Option<Notice>,
    task: TaskHead,
    position: Option<(usize, usize)>,
    prev: Option<String>,
    next: Option<String>,
    back_query: String,
    nav_query: String,
    from: String,
    request: Request,
    why: Vec<String>,
    run_id: Option<String>,
    run_short: String,
    decide: bool,
    /// Someone else holds a fresh claim on the task: who, since when.
    claimed_by: Option<ClaimView>,
    readonly_reason: String,
    blocked: Option<String>,
    decided: Option<Decided>,
    fields: Vec<FieldView>,
    comment: String,
    reason: String,
    handoff_reason: String,
    queue: String,
    queues: Vec<String>,
    errors: HashMap<String, String>,
    after: Vec<After>,
    after_error: Option<String>,
    raw_steps: Vec<RawStep>,
    history: Vec<HistoryRow>,
}

/// JSON of a step's configuration with values that came from the
/// environment (secrets, URLs with credentials) hidden.
fn masked(node: &Node) -> Value {
    if node.from_env {
        return Value::String("(set from the environment)".into());
    }
    match &node.value {
        Yaml::Seq(items) => Value::Array(items.iter().map(masked).collect()),
        Yaml::Map(entries) => Value::Object(
            entries
                .iter()
                .map(|(k, v)| (k.clone(), masked(v)))
                .collect(),
        ),
        _ => node.to_json(),
    }
}

/// The actions after approval, rendered by the engine with `proposed`
/// values over the draft (what the reviewer sees is what executes), and
/// for admins the later steps' configuration as written. `kept`: covered
/// actions the reviewer left ticked (`None`: all).
pub(crate) async fn after(
    state: &AppState,
    r: &Review,
    proposed: &Map<String, Value>,
    kept: Option<&[String]>,
    admin: bool,
) -> (Vec<After>, Option<String>, Vec<RawStep>) {
    let pending = r.status == ReviewStatus::Pending;
    let (list, error) = match state.engine.preview_actions(r, proposed).await {
        Ok(previews) => (
            previews
                .into_iter()
                .map(|p| {
                    let untickable = pending && p.covered && p.skipped.is_none();
                    let ticked = kept.is_none_or(|k| k.contains(&p.step));
                    let control = match (p.covered, p.control.as_str()) {
                        _ if p.skipped.is_some() => None,
                        _ if p.raised.is_some() => Some(format!(
                            "asks again: a rule raised it to review ({})",
                            p.raised.as_deref().unwrap_or_default()
                        )),
                        (true, _) => Some("approved with this review".to_string()),
                        (false, "review") if p.index != r.step_index => {
                            Some("asks for its own approval".to_string())
                        }
                        (false, "draft") => Some("saved as a draft, not sent".to_string()),
                        (false, "suggest") => Some("suggested only, not performed".to_string()),
                        _ => None,
                    };
                    let (title, values, note) = match &p.action {
                        Ok(a) => (
                            a.title.clone(),
                            a.values
                                .iter()
                                .map(|v| (v.label.clone(), v.text.clone()))
                                .collect(),
                            p.skipped.clone(),
                        ),
                        Err(e) => (
                            format!("{} — {}", label(&p.step), action_name(&p.kind)),
                            Vec::new(),
                            Some(format!("cannot be shown with these values: {e}")),
                        ),
                    };
                    After {
                        step: p.step.clone(),
                        title,
                        control,
                        note,
                        skipped: p.skipped.is_some(),
                        untickable,
                        ticked,
                        values,
                    }
                })
                .collect(),
            None,
        ),
        Err(e) => (
            Vec::new(),
            Some(format!("The actions cannot be shown: {e}.")),
        ),
    };
    let mut raw = Vec::new();
    if admin {
        let version = state
            .engine
            .store()
            .run(&r.run_id)
            .await
            .ok()
            .flatten()
            .map_or(1, |run| run.version);
        if let Ok(Some(compiled)) = state.engine.catalog().version(&r.workflow, version).await {
            for st in compiled.def.steps.iter().filter(|s| s.index > r.step_index) {
                raw.push(RawStep {
                    id: st.id.clone(),
                    kind: st.kind.clone(),
                    json: serde_json::to_string_pretty(&masked(&st.body)).unwrap_or_default(),
                });
            }
        }
    }
    (list, error, raw)
}

fn action_name(kind: &str) -> String {
    match kind {
        "crm" => "update the CRM".into(),
        "slack" => "post to Slack".into(),
        "email" => "send an email".into(),
        "http" => "call an HTTP endpoint".into(),
        "validate" => "check the record".into(),
        "rules" => "apply business rules".into(),
        "review" => "another review".into(),
        "llm" => "ask the model".into(),
        "wait" => "wait".into(),
        other => label(other),
    }
}

/// An audit event in a sentence.
fn describe(e: &Event) -> String {
    let d: Value = serde_json::from_str(&e.data).unwrap_or(Value::Null);
    let s = |k: &str| {
        d.get(k)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string()
    };
    let step = s("step");
    let on = if step.is_empty() {
        String::new()
    } else {
        format!(" — {step}")
    };
    match e.kind.as_str() {
        "run.received" => "Request received".into(),
        "run.started" => "Run started".into(),
        "step.completed" => format!("Step completed{on}"),
        "step.skipped" => format!("Step skipped{on}"),
        "step.failed" => format!("Step failed{on}: {}", shorten(&s("error"), 160)),
        "step.retry_scheduled" => format!("Retry scheduled{on}"),
        "review.requested" => format!("Review requested in queue {}", s("queue")),
        "review.decided" => format!("Decision: {}{}", s("decision"), {
            let r = s("reason");
            if r.is_empty() {
                String::new()
            } else {
                format!(" — {}", shorten(&r, 160))
            }
        }),
        "review.escalated" => format!("Escalated to {}", s("queue")),
        "review.expired" => "Deadline passed".into(),
        "llm.requested" => format!("Model asked: {} {}", s("provider"), s("model")),
        "llm.responded" => format!("Model answered: {}", s("provider")),
        "llm.fallback" => format!("Fell back: {}", shorten(&s("reason"), 160)),
        "llm.invalid" => "Model answer invalid".into(),
        "effect.started" => format!("Action started{on}"),
        "effect.completed" => format!("Action done{on}"),
        "effect.failed" => format!("Action failed{on}"),
        "outbox.recorded" => format!("Recorded in the outbox (not sent){on}"),
        "run.completed" => "Run completed".into(),
        "run.failed" => format!("Run failed: {}", shorten(&s("error"), 160)),
        "run.rejected" => "Run ended: rejected".into(),
        "run.cancelled" => "Run cancelled".into(),
        other => format!("{}{on}", label(other)),
    }
}

/// The queues a task can be escalated to: those the deployment knows
/// (workflows' review steps, users' queues), minus the task's own.
async fn escalation_queues(state: &AppState, own: &str) -> Vec<String> {
    let mut queues = state.engine.known_queues().await.unwrap_or_default();
    queues.retain(|q| q != own);
    queues.sort();
    queues.dedup();
    queues
}

/// The edits on the page as values (fields that parse and differ from the
/// draft), and the messages of those that do not parse.
fn proposed_values(
    fields: &[Field],
    values: &HashMap<String, String>,
) -> (Map<String, Value>, HashMap<String, String>) {
    let mut edits = Map::new();
    let mut errors = HashMap::new();
    for f in fields {
        let key = format!("f.{}", f.name);
        let Some(t) = values.get(&key) else { continue };
        match parse_field(f, t) {
            Ok(v) if v == f.draft => {}
            Ok(v) => {
                edits.insert(f.name.clone(), v);
            }
            Err(m) => {
                errors.insert(key, m);
            }
        }
    }
    (edits, errors)
}

/// Covered actions the form lists (`covered`) and those left ticked
/// (`keep`): `(kept, unticked)`, or `None` when the form lists none.
fn ticks(pairs: &[(String, String)]) -> Option<(Vec<String>, Vec<String>)> {
    let all = |k: &str| {
        pairs
            .iter()
            .filter(|(n, _)| n == k)
            .map(|(_, v)| v.clone())
            .collect::<Vec<_>>()
    };
    let covered = all("covered");
    if covered.is_empty() {
        return None;
    }
    let keep = all("keep");
    let unticked = covered
        .iter()
        .filter(|c| !keep.contains(c))
        .cloned()
        .collect();
    Some((keep, unticked))
}

async fn render(
    state: &AppState,
    user: &WebUser,
    r: &Review,
    form: FormState,
    status: StatusCode,
    nav: &InboxQuery,
) -> Response {
    render_claimed(state, user, r, form, status, nav, None).await
}

async fn render_claimed(
    state: &AppState,
    user: &WebUser,
    r: &Review,
    form: FormState,
    status: StatusCode,
    nav: &InboxQuery,
    claimed_by: Option<ClaimView>,
) -> Response {
    let detail: Option<RunDetail> = state
        .engine
        .store()
        .run_detail(&r.run_id)
        .await
        .ok()
        .flatten();
    let events = state
        .engine
        .store()
        .events(&r.run_id, 0, 500)
        .await
        .unwrap_or_default();
    let fields = fields_of(r);
    let decide = r.status == ReviewStatus::Pending && may_decide(&user.user, &r.queue);
    let now = engine::now_ms();
    let input: Value = detail
        .as_ref()
        .and_then(|d| serde_json::from_str(&d.run.input).ok())
        .unwrap_or(Value::Null);
    let request = Request::of(&input);
    let why = detail
        .as_ref()
        .map(|d| Why::of(d, &r.step_id))
        .unwrap_or_default();

    // The reviewer's list around this task.
    let (position, prev, next) = match pending(state, &user.user, nav).await {
        Ok(list) => match list.iter().position(|t| t.id == r.id) {
            Some(i) => (
                Some((i + 1, list.len())),
                i.checked_sub(1).map(|j| list[j].id.clone()),
                list.get(i + 1).map(|t| t.id.clone()),
            ),
            None => (None, None, list.first().map(|t| t.id.clone())),
        },
        Err(_) => (None, None, None),
    };

    let views: Vec<FieldView> = fields
        .iter()
        .map(|f| {
            let key = format!("f.{}", f.name);
            let text = form
                .values
                .get(&key)
                .cloned()
                .unwrap_or_else(|| as_text(&f.draft));
            view(
                f,
                &text,
                form.errors.get(&key).cloned(),
                r.results.iter().find(|x| x.field == f.name),
            )
        })
        .collect();
    let priority = fields
        .iter()
        .find(|f| f.name == "priority")
        .and_then(|f| f.draft.as_str())
        .unwrap_or_default()
        .to_string();
    let decided = (r.status != ReviewStatus::Pending).then(|| Decided {
        ok: r.status == ReviewStatus::Approved,
        text: format!(
            "{} by {} {}{}",
            label(r.status.as_str()),
            r.decided_by
                .as_deref()
                .unwrap_or("?")
                .trim_start_matches("user:"),
            r.decided_at_ms.map(ui::when).unwrap_or_default(),
            r.reason
                .as_deref()
                .map(|x| format!(": {x}"))
                .unwrap_or_default()
        ),
    });
    let readonly_reason = match user.user.role {
        UserRole::Viewer => "You can read this task; deciding needs the reviewer role.".to_string(),
        _ => "This task is in a queue you do not hold.".to_string(),
    };
    let approvals_so_far = r.acts.iter().filter(|a| a.decision == "approve").count();
    let blocked = match Refusal::of(&user.user, r) {
        Some(Refusal::AlreadyApproved) if decide => {
            Some("You already approved this task; another person must approve it too.".to_string())
        }
        Some(Refusal::OwnRequest) if decide => {
            Some("You submitted this request, so you may not approve it (four-eyes).".to_string())
        }
        _ => None,
    };
    let (proposed, _) = proposed_values(&fields, &form.values);
    let kept = form.kept.as_deref();
    let (after, after_error, raw_steps) =
        after(state, r, &proposed, kept, user.user.role == UserRole::Admin).await;
    let heading = match (&request.sender, fields.iter().find(|f| f.name == "intent")) {
        (s, Some(intent)) if !s.is_empty() => format!("{} — {}", s, shown(intent, &intent.draft)),
        (s, None) if !s.is_empty() => s.clone(),
        _ => format!("{} · {}", r.workflow, r.step_id),
    };
    let mut notice = form.banner.as_ref().map(|text| Notice {
        kind: "err",
        text: text.clone(),
        link: None,
    });
    if notice.is_none() {
        notice = done_notice(state, nav.done.as_deref(), nav.already.is_some()).await;
    }
    let page = TaskPage {
        me: user.header(),
        nav: "inbox",
        title: format!("Review: {heading}"),
        heading,
        notice,
        task: TaskHead {
            id: r.id.clone(),
            workflow: r.workflow.clone(),
            queue: r.queue.clone(),
            status: r.status.as_str(),
            priority,
            created_at_ms: r.created_at_ms,
            age: span(now - r.created_at_ms),
            deadline_at_ms: r.deadline_at_ms,
            deadline: r
                .deadline_at_ms
                .map(|d| span((d - now).abs()))
                .unwrap_or_default(),
            overdue: r.deadline_at_ms.is_some_and(|d| d <= now),
            approvals_needed: r.min_approvals,
            approvals_so_far,
        },
        position,
        prev,
        next,
        back_query: nav.keep(),
        nav_query: nav.keep(),
        from: nav.keep(),
        request,
        why: why.lines(),
        run_id: detail.as_ref().map(|d| d.run.id.clone()),
        run_short: r.run_id.chars().take(8).collect(),
        decide,
        claimed_by,
        readonly_reason,
        blocked,
        decided,
        fields: views,
        comment: form.values.get("comment").cloned().unwrap_or_default(),
        reason: form.values.get("reason").cloned().unwrap_or_default(),
        handoff_reason: form
            .values
            .get("handoff_reason")
            .cloned()
            .unwrap_or_default(),
        queue: form.values.get("queue").cloned().unwrap_or_default(),
        queues: escalation_queues(state, &r.queue).await,
        errors: form.errors,
        after,
        after_error,
        raw_steps,
        history: events
            .iter()
            .map(|e| HistoryRow {
                at_ms: e.at_ms,
                what: describe(e),
                who: e.actor.trim_start_matches("user:").to_string(),
            })
            .collect(),
    };
    ui::render(status, "task.html", page)
}

async fn load(state: &AppState, user: &WebUser, id: &str) -> Result<Review, Response> {
    match state.engine.review(id).await {
        Ok(Some(r)) if may_see(&user.user, &r.queue) => Ok(r),
        Ok(Some(_)) => Err(message(
            StatusCode::FORBIDDEN,
            "Not your queue",
            "This task belongs to a queue you do not hold.",
            user.header(),
        )),
        Ok(None) => Err(message(
            StatusCode::NOT_FOUND,
            "No such task",
            "There is no review task with this id.",
            user.header(),
        )),
        Err(e) => {
            tracing::warn!(error = %e, "reading a review failed");
            Err(message(
                StatusCode::SERVICE_UNAVAILABLE,
                "Unavailable",
                "The task cannot be read right now.",
                user.header(),
            ))
        }
    }
}

/// `GET /inbox/{id}`.
pub(crate) async fn task(
    State(state): State<AppState>,
    user: WebUser,
    Path(id): Path<String>,
    Query(nav): Query<InboxQuery>,
) -> Response {
    match load(&state, &user, &id).await {
        Ok(r) => {
            let decide = r.status == ReviewStatus::Pending && may_decide(&user.user, &r.queue);
            let claimed = claim_and_record(&state, &user, &r, decide, false).await;
            render_claimed(
                &state,
                &user,
                &r,
                FormState::default(),
                StatusCode::OK,
                &nav,
                claimed,
            )
            .await
        }
        Err(res) => res,
    }
}

/// `POST /inbox/{id}/claim` (form): take over a task another reviewer
/// holds, after the page named them.
pub(crate) async fn take_over(
    State(state): State<AppState>,
    user: WebUser,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let pairs = match user.form(&headers, &body, "the task") {
        Ok(p) => p,
        Err(res) => return res,
    };
    let r = match load(&state, &user, &id).await {
        Ok(r) => r,
        Err(res) => return res,
    };
    if r.status != ReviewStatus::Pending || !may_decide(&user.user, &r.queue) {
        return message(
            StatusCode::FORBIDDEN,
            "Not allowed",
            "You cannot take over this task.",
            user.header(),
        );
    }
    claim_and_record(&state, &user, &r, true, true).await;
    tracing::info!(review = %id, user = %user.user.actor(), "took over a claimed task");
    let from = pairs
        .iter()
        .find(|(k, _)| k == "from")
        .map(|(_, v)| InboxQuery::from_kept(v).keep())
        .unwrap_or_default();
    see_other(&format!("/inbox/{}{from}", encode(&id)))
}

/// Where to go after a decision on `done`: the next task in the
/// reviewer's order (keeping their filters), else the inbox.
async fn move_on(
    state: &AppState,
    user: &WebUser,
    nav: &InboxQuery,
    done: &str,
    extra: &str,
) -> Response {
    let kept = nav.keep();
    let sep = if kept.is_empty() { "?" } else { "&" };
    // Tasks another reviewer holds a fresh claim on are theirs for now.
    let list = pending(state, &user.user, nav).await.unwrap_or_default();
    let ids: Vec<String> = list.iter().map(|t| t.id.clone()).collect();
    let stale = engine::now_ms() - CLAIM_IDLE_MS;
    let held: Vec<String> = state
        .engine
        .store()
        .review_claims(&ids)
        .await
        .unwrap_or_default()
        .into_iter()
        .filter(|c| c.user_id != user.user.id && c.at_ms >= stale)
        .map(|c| c.review_id)
        .collect();
    let next = list
        .into_iter()
        .find(|t| t.id != done && !approved_by(t, &user.user) && !held.contains(&t.id))
        .map(|t| t.id);
    let to = match next {
        Some(id) => format!(
            "/inbox/{}{kept}{sep}done={}{extra}",
            encode(&id),
            encode(done)
        ),
        None => format!("/inbox{kept}{sep}done={}{extra}", encode(done)),
    };
    see_other(&to)
}

/// `POST /inbox/{id}/decision` (form): approve with edits, reject, escalate.
pub(crate) async fn decide(
    State(state): State<AppState>,
    user: WebUser,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let pairs = match user.form(&headers, &body, "the task") {
        Ok(p) => p,
        Err(res) => return res,
    };
    let r = match load(&state, &user, &id).await {
        Ok(r) => r,
        Err(res) => return res,
    };
    let pairs_all = pairs.clone();
    let values: HashMap<String, String> = pairs.into_iter().filter(|(k, _)| k != "csrf").collect();
    let text = |k: &str| values.get(k).map_or("", String::as_str).to_string();
    let nav = InboxQuery::from_kept(&text("from"));
    let unticked = ticks(&pairs_all).map(|(_, u)| u).unwrap_or_default();
    if !may_decide(&user.user, &r.queue) {
        return message(
            StatusCode::FORBIDDEN,
            "Not allowed",
            "Your role does not allow deciding this task.",
            user.header(),
        );
    }
    if r.status != ReviewStatus::Pending {
        // Decided elsewhere meanwhile: nothing to do here, say so, move on.
        return move_on(&state, &user, &nav, &id, "&already=1").await;
    }
    let comment = Some(text("comment")).filter(|c| !c.trim().is_empty());
    let mut form = FormState {
        values: values.clone(),
        ..FormState::default()
    };
    let decision = match text("decision").as_str() {
        "approve" => {
            let (edits, errors) = proposed_values(&fields_of(&r), &values);
            if !errors.is_empty() {
                form.errors = errors;
                form.kept = ticks(&pairs_all).map(|(k, _)| k);
                form.banner = Some("Please correct the fields marked below.".into());
                return render(
                    &state,
                    &user,
                    &r,
                    form,
                    StatusCode::UNPROCESSABLE_ENTITY,
                    &nav,
                )
                .await;
            }
            Decision::Approve {
                values: edits,
                comment,
            }
        }
        "reject" => Decision::Reject {
            reason: text("reason").trim().to_string(),
            comment,
        },
        "escalate" => Decision::Escalate {
            queue: text("queue").trim().to_string(),
            comment,
        },
        "hand_off" => Decision::HandOff {
            reason: text("handoff_reason").trim().to_string(),
            comment,
        },
        _ => {
            form.banner = Some("Choose approve, reject, escalate or hand off.".into());
            return render(
                &state,
                &user,
                &r,
                form,
                StatusCode::UNPROCESSABLE_ENTITY,
                &nav,
            )
            .await;
        }
    };
    let verb = decision.name();
    match state
        .engine
        .decide_review_unticking(
            &id,
            decision,
            &crate::identity::for_user(&user.user),
            if verb == "approve" { &unticked } else { &[] },
        )
        .await
    {
        Ok(_) => {
            tracing::info!(review = %id, user = %user.user.actor(), decision = verb, "decided in the inbox");
            move_on(&state, &user, &nav, &id, "").await
        }
        Err(ReviewError::Closed(_) | ReviewError::RunEnded(_)) => {
            move_on(&state, &user, &nav, &id, "&already=1").await
        }
        Err(e) => {
            let status = match e {
                ReviewError::Refused(DecisionError::Invalid(errors)) => {
                    for f in errors {
                        let name = f.pointer.trim_start_matches("/values/");
                        form.errors.insert(format!("f.{name}"), f.message);
                    }
                    form.banner = Some("Please correct the fields marked below.".into());
                    StatusCode::UNPROCESSABLE_ENTITY
                }
                ReviewError::Refused(DecisionError::ReasonRequired) => {
                    form.errors
                        .insert("reason".into(), "A rejection needs a reason.".into());
                    form.banner = Some("Not rejected: a rejection needs a reason.".into());
                    StatusCode::UNPROCESSABLE_ENTITY
                }
                ReviewError::Refused(DecisionError::HandOffReasonRequired) => {
                    form.errors.insert(
                        "handoff_reason".into(),
                        "Say what the person taking over should know.".into(),
                    );
                    form.banner = Some("Not handed off: a hand-off needs a reason.".into());
                    StatusCode::UNPROCESSABLE_ENTITY
                }
                ReviewError::Refused(DecisionError::QueueRequired) => {
                    form.errors.insert(
                        "queue".into(),
                        "Choose a queue other than the task's own.".into(),
                    );
                    form.banner = Some("Not escalated: choose a queue.".into());
                    StatusCode::UNPROCESSABLE_ENTITY
                }
                ReviewError::Refused(DecisionError::UnknownQueue(q)) => {
                    form.errors.insert(
                        "queue".into(),
                        format!("There is no queue `{q}`: no workflow or user names it."),
                    );
                    form.banner = Some("Not escalated: choose a known queue.".into());
                    StatusCode::UNPROCESSABLE_ENTITY
                }
                ReviewError::Refused(e) => {
                    form.banner = Some(format!("Not applied: {e}."));
                    StatusCode::FORBIDDEN
                }
                ReviewError::NotFound => {
                    form.banner = Some("Not applied: the task no longer exists.".into());
                    StatusCode::CONFLICT
                }
                ReviewError::Closed(_) | ReviewError::RunEnded(_) => StatusCode::CONFLICT,
                ReviewError::Store(e) => {
                    tracing::warn!(error = %e, "deciding a review failed");
                    form.banner =
                        Some("Not applied: the database is unavailable; try again.".into());
                    StatusCode::SERVICE_UNAVAILABLE
                }
            };
            let r = state.engine.review(&id).await.ok().flatten().unwrap_or(r);
            render(&state, &user, &r, form, status, &nav).await
        }
    }
}

#[derive(Serialize)]
struct AfterFragment {
    after: Vec<After>,
    after_error: Option<String>,
    decide: bool,
}

/// `POST /inbox/{id}/preview` (form, from the page script): the actions
/// after approval rendered with the values on the page, as an HTML
/// fragment. Decides nothing.
pub(crate) async fn preview(
    State(state): State<AppState>,
    user: WebUser,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let pairs = url_decode_pairs(&body);
    if !user.check_form(&headers, &pairs) {
        return ui::html(StatusCode::FORBIDDEN, String::new());
    }
    let r = match load(&state, &user, &id).await {
        Ok(r) => r,
        Err(res) => return res,
    };
    let values: HashMap<String, String> = pairs.iter().cloned().collect();
    let (proposed, _) = proposed_values(&fields_of(&r), &values);
    let kept = ticks(&pairs).map(|(k, _)| k);
    let (after, after_error, _) = after(&state, &r, &proposed, kept.as_deref(), false).await;
    match ui::render_string(
        "after.html",
        AfterFragment {
            after,
            after_error,
            decide: r.status == ReviewStatus::Pending && may_decide(&user.user, &r.queue),
        },
    ) {
        Ok(s) => ui::html(StatusCode::OK, s),
        Err(e) => {
            tracing::error!(error = e, "the preview failed to render");
            ui::html(StatusCode::INTERNAL_SERVER_ERROR, String::new())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn field(draft: Value, schema: Option<Value>) -> Field {
        Field {
            name: "x".into(),
            step: "triage".into(),
            draft,
            schema,
        }
    }

    #[test]
    fn submitted_text_parses_by_the_field_type() {
        let e = field(json!("low"), Some(json!({"enum": ["low", "high"]})));
        assert_eq!(parse_field(&e, "high"), Ok(json!("high")));
        assert!(parse_field(&e, "<script>").is_err());
        let n = field(json!(0.5), Some(json!({"type": "number"})));
        assert_eq!(parse_field(&n, " 0.75 "), Ok(json!(0.75)));
        assert!(parse_field(&n, "many").is_err());
        let i = field(json!(3), None);
        assert_eq!(parse_field(&i, "4"), Ok(json!(4)));
        let b = field(json!(true), Some(json!({"type": "boolean"})));
        assert_eq!(parse_field(&b, "false"), Ok(json!(false)));
        let s = field(json!("a"), Some(json!({"type": "string"})));
        assert_eq!(parse_field(&s, "a\r\nb"), Ok(json!("a\nb")));
        let o = field(json!({"k": 1}), None);
        assert_eq!(parse_field(&o, "{\"k\": 2}"), Ok(json!({"k": 2})));
        assert!(parse_field(&o, "{").is_err());
    }

    #[test]
    fn fields_show_labels_and_enum_values_by_label() {
        let mut e = field(
            json!("sales_lead"),
            Some(json!({"enum": ["support_request", "sales_lead"]})),
        );
        e.name = "recommended_next_step".into();
        let v = view(&e, "sales_lead", None, None);
        assert_eq!(v.label, "Recommended next step");
        assert_eq!(v.kind, "select");
        assert_eq!(v.options[1].label, "Sales lead");
        assert_eq!(v.options[1].value, "sales_lead");
        assert_eq!(v.draft_label, "Sales lead");
        assert!(!v.changed);
        assert!(view(&e, "support_request", None, None).changed);
        let titled = field(
            json!("a"),
            Some(json!({"type": "string", "title": "Summary of the request", "maxLength": 100})),
        );
        let v = view(&titled, "a", None, None);
        assert_eq!(v.label, "Summary of the request");
        assert_eq!(v.kind, "text");
    }
}
