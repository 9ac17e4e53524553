//! The inbox pages: pending tasks with filters, the task page (request,
//! AI draft beside editable fields, what happens after approval, the run's
//! history) and the decision forms.
//!
//! Roles: an admin sees and decides everything; a reviewer sees and decides
//! the tasks of the queues they hold (403 otherwise); a viewer sees
//! everything and decides nothing. Decisions go through the engine's
//! `decide_review`, so the checks and the 422 field errors are the API's.

use std::collections::HashMap;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use domain::review::Field;
use domain::yaml::{Node, Value as Yaml};
use engine::ReviewError;
use engine::review::{Decision, DecisionError, fields_of};
use serde::Deserialize;
use serde_json::{Map, Value};
use store::{Review, ReviewFilter, ReviewStatus, User, UserRole};

use super::session::WebUser;
use super::{escape, html, message, page, see_other};
use crate::AppState;
use crate::forms::url_decode_pairs;

/// Tasks shown on one inbox page, at most.
const INBOX_LIMIT: usize = 200;
/// Step kinds whose configuration (the target of the action) is shown.
const SHOWN_KINDS: [&str; 4] = ["crm", "slack", "email", "http"];

fn may_see(user: &User, queue: &str) -> bool {
    match user.role {
        UserRole::Admin | UserRole::Viewer => true,
        UserRole::Reviewer => user.queues.iter().any(|q| q == queue),
    }
}

fn may_decide(user: &User, queue: &str) -> bool {
    match user.role {
        UserRole::Admin => true,
        UserRole::Reviewer => user.queues.iter().any(|q| q == queue),
        UserRole::Viewer => false,
    }
}

fn draft_text(fields: &[Field], name: &str) -> Option<String> {
    fields
        .iter()
        .find(|f| f.name == name)
        .and_then(|f| f.draft.as_str())
        .map(str::to_string)
}

pub(super) fn age(now_ms: i64, at_ms: i64) -> String {
    let s = (now_ms - at_ms).max(0) / 1000;
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m", s / 60),
        3600..86_400 => format!("{}h", s / 3600),
        _ => format!("{}d", s / 86_400),
    }
}

pub(super) fn when(at_ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(at_ms)
        .map_or_else(String::new, |t| t.format("%Y-%m-%d %H:%M UTC").to_string())
}

fn shorten(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_string()
    } else {
        format!("{}…", s.chars().take(max).collect::<String>())
    }
}

#[derive(Debug, Deserialize)]
pub(crate) struct InboxQuery {
    queue: Option<String>,
    priority: Option<String>,
    /// Minimum age: `1h`, `4h`, `24h`.
    age: Option<String>,
}

fn select(name: &str, label: &str, options: &[(String, String)], chosen: &str) -> String {
    let mut s = format!(
        "<div><label for=\"{name}\">{label}</label><select id=\"{name}\" name=\"{name}\"><option value=\"\">Any</option>"
    );
    for (value, text) in options {
        s.push_str(&format!(
            "<option value=\"{}\"{}>{}</option>",
            escape(value),
            if value == chosen { " selected" } else { "" },
            escape(text)
        ));
    }
    s.push_str("</select></div>");
    s
}

/// `GET /inbox`: pending tasks the user may see, newest first.
pub(crate) async fn list(
    State(state): State<AppState>,
    user: WebUser,
    Query(q): Query<InboxQuery>,
) -> Response {
    let u = &user.user;
    let queues = match u.role {
        UserRole::Reviewer => Some(u.queues.clone()),
        _ => None,
    };
    let queue = q.queue.clone().filter(|s| !s.is_empty());
    let tasks = match state
        .engine
        .reviews(&ReviewFilter {
            status: Some(ReviewStatus::Pending),
            queue: queue.clone(),
            queues,
            before: None,
            limit: INBOX_LIMIT,
        })
        .await
    {
        Ok(t) => t,
        Err(e) => {
            tracing::warn!(error = %e, "listing reviews failed");
            return message(
                StatusCode::SERVICE_UNAVAILABLE,
                "Unavailable",
                "The inbox cannot be read right now.",
                user.header(),
            );
        }
    };
    let now = engine::now_ms();
    let priority = q.priority.clone().unwrap_or_default();
    let min_age_ms = match q.age.as_deref() {
        Some("1h") => 3_600_000,
        Some("4h") => 4 * 3_600_000,
        Some("24h") => 24 * 3_600_000,
        _ => 0,
    };
    let mut rows = String::new();
    let mut shown = 0;
    let mut all_queues: Vec<String> = match u.role {
        UserRole::Reviewer => u.queues.clone(),
        _ => tasks.iter().map(|t| t.queue.clone()).collect(),
    };
    if let Some(q) = &queue {
        all_queues.push(q.clone());
    }
    all_queues.sort();
    all_queues.dedup();
    for t in &tasks {
        let fields = fields_of(t);
        let prio = draft_text(&fields, "priority").unwrap_or_default();
        if !priority.is_empty() && prio != priority {
            continue;
        }
        if now - t.created_at_ms < min_age_ms {
            continue;
        }
        shown += 1;
        let summary = draft_text(&fields, "summary")
            .or_else(|| {
                fields
                    .iter()
                    .find_map(|f| f.draft.as_str().map(str::to_string))
            })
            .unwrap_or_default();
        rows.push_str(&format!(
            "<tr><td data-label=\"Task\"><a class=\"task\" href=\"/inbox/{id}\">{summary}</a><br><span class=\"muted\">{wf} · {step}</span></td>\
             <td data-label=\"Queue\">{queue}</td><td data-label=\"Priority\">{prio}</td>\
             <td data-label=\"Age\"><span title=\"{created}\">{age}</span></td><td data-label=\"Deadline\">{deadline}</td></tr>",
            id = escape(&t.id),
            summary = escape(&shorten(if summary.is_empty() { &t.id } else { &summary }, 140)),
            wf = escape(&t.workflow),
            step = escape(&t.step_id),
            queue = escape(&t.queue),
            prio = if prio.is_empty() {
                String::new()
            } else {
                format!("<span class=\"badge p-{p}\">{p}</span>", p = escape(&prio))
            },
            created = when(t.created_at_ms),
            age = age(now, t.created_at_ms),
            deadline = t.deadline_at_ms.map(when).unwrap_or_default(),
        ));
    }
    let priorities: Vec<(String, String)> = ["urgent", "high", "medium", "low"]
        .iter()
        .map(|p| (p.to_string(), p.to_string()))
        .collect();
    let ages: Vec<(String, String)> = [
        ("1h", "older than 1 hour"),
        ("4h", "older than 4 hours"),
        ("24h", "older than a day"),
    ]
    .iter()
    .map(|(v, t)| (v.to_string(), t.to_string()))
    .collect();
    let queue_opts: Vec<(String, String)> =
        all_queues.iter().map(|q| (q.clone(), q.clone())).collect();
    let role_note = match u.role {
        UserRole::Admin => "You see every queue.".to_string(),
        UserRole::Viewer => "You can read tasks; deciding needs the reviewer role.".to_string(),
        UserRole::Reviewer => format!("Your queues: {}.", u.queues.join(", ")),
    };
    let table = if shown == 0 {
        "<p class=\"muted\">No pending tasks match.</p>".to_string()
    } else {
        format!(
            "<table class=\"stack\"><thead><tr><th>Task</th><th>Queue</th><th>Priority</th><th>Age</th><th>Deadline</th></tr></thead><tbody>{rows}</tbody></table>"
        )
    };
    let body = format!(
        "<h1>Pending reviews <span class=\"muted\">({shown})</span></h1><p class=\"muted\">{note} Keys: j / k move between tasks, Enter opens one.</p>\
         <form class=\"filters\" method=\"get\" action=\"/inbox\">{qs}{ps}{as_}<div><button type=\"submit\">Filter</button></div></form>{table}",
        note = escape(&role_note),
        qs = select(
            "queue",
            "Queue",
            &queue_opts,
            queue.as_deref().unwrap_or("")
        ),
        ps = select("priority", "Priority", &priorities, &priority),
        as_ = select("age", "Age", &ages, q.age.as_deref().unwrap_or("")),
    );
    html(StatusCode::OK, page("Inbox", user.header(), &body))
}

/// What the decision forms show again after a refused decision.
#[derive(Debug, Default)]
struct FormState {
    /// Submitted text by form field name (`f.NAME`, `reason`, `queue`, `comment`).
    values: HashMap<String, String>,
    /// Error messages by the same names.
    errors: HashMap<String, String>,
    banner: Option<(bool, String)>,
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

/// How a JSON value reads in a form control.
fn as_text(v: &Value) -> String {
    match v {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        Value::Object(_) | Value::Array(_) => serde_json::to_string_pretty(v).unwrap_or_default(),
        v => v.to_string(),
    }
}

/// The control for one field, prefilled with `text`.
fn control(f: &Field, text: &str) -> String {
    let id = format!("f.{}", f.name);
    let (kind, options) = kind_of(f);
    let idq = escape(&id);
    match kind {
        "enum" => {
            let mut s = format!("<select id=\"{idq}\" name=\"{idq}\">");
            for o in options.unwrap_or_default() {
                let t = as_text(&o);
                s.push_str(&format!(
                    "<option value=\"{v}\"{sel}>{v}</option>",
                    v = escape(&t),
                    sel = if t == text { " selected" } else { "" }
                ));
            }
            s.push_str("</select>");
            s
        }
        "boolean" => format!(
            "<select id=\"{idq}\" name=\"{idq}\"><option value=\"true\"{}>yes</option><option value=\"false\"{}>no</option></select>",
            if text == "true" { " selected" } else { "" },
            if text == "false" { " selected" } else { "" }
        ),
        "integer" | "number" => format!(
            "<input type=\"number\" id=\"{idq}\" name=\"{idq}\" value=\"{}\"{}>",
            escape(text),
            if kind == "number" {
                " step=\"any\""
            } else {
                ""
            }
        ),
        "string"
            if text.len() <= 80
                && !text.contains('\n')
                && f.schema
                    .as_ref()
                    .and_then(|s| s.get("maxLength"))
                    .and_then(Value::as_u64)
                    .is_some_and(|m| m <= 200) =>
        {
            format!(
                "<input type=\"text\" id=\"{idq}\" name=\"{idq}\" value=\"{}\">",
                escape(text)
            )
        }
        _ => format!(
            "<textarea id=\"{idq}\" name=\"{idq}\" rows=\"{}\">{}</textarea>",
            (text.len() / 60 + text.lines().count()).clamp(3, 16),
            escape(text)
        ),
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

/// The steps after the review step (and the reviewed step itself when it
/// is a side-effecting step under `control: review`), as the workflow
/// version of the run defines them.
async fn later_steps(state: &AppState, r: &Review, version: i64) -> String {
    let compiled = match state.engine.catalog().version(&r.workflow, version).await {
        Ok(Some(c)) => c,
        _ => return "<p class=\"muted\">The workflow definition is not available.</p>".into(),
    };
    let steps: Vec<_> = compiled
        .def
        .steps
        .iter()
        // An action under `control: review` is itself what happens next.
        .filter(|s| s.index > r.step_index || (s.index == r.step_index && s.kind != "review"))
        .collect();
    if steps.is_empty() {
        return "<p>Nothing more: approving ends the run.</p>".into();
    }
    let mut s = String::from("<ol class=\"steps\">");
    for st in steps {
        s.push_str(&format!(
            "<li><strong>{}</strong> <span class=\"badge\">{}</span>",
            escape(&st.id),
            escape(&st.kind)
        ));
        if st.control.as_str() != "auto" {
            s.push_str(&format!(
                " <span class=\"badge\">control: {}</span>",
                st.control.as_str()
            ));
        }
        if let Some(w) = &st.when {
            s.push_str(&format!(
                " <span class=\"muted\">when <code>{}</code></span>",
                escape(w.source())
            ));
        }
        if SHOWN_KINDS.contains(&st.kind.as_str()) {
            s.push_str(&format!(
                "<pre>{}</pre>",
                escape(&serde_json::to_string_pretty(&masked(&st.body)).unwrap_or_default())
            ));
        }
        s.push_str("</li>");
    }
    s.push_str("</ol><p class=\"muted\">Templates are shown as written; <code>approved.*</code> are the values you approve.</p>");
    s
}

fn kv(v: &Value) -> String {
    match v {
        Value::Object(m) if !m.is_empty() => {
            let mut s = String::from("<dl class=\"kv\">");
            for (k, v) in m {
                s.push_str(&format!(
                    "<dt>{}</dt><dd>{}</dd>",
                    escape(k),
                    escape(&as_text(v))
                ));
            }
            s.push_str("</dl>");
            s
        }
        v => format!("<pre>{}</pre>", escape(&as_text(v))),
    }
}

async fn render(
    state: &AppState,
    user: &WebUser,
    r: &Review,
    form: FormState,
    status: StatusCode,
) -> Response {
    let store = state.engine.store();
    let run = store.run(&r.run_id).await.ok().flatten();
    let events = store.events(&r.run_id, 0, 500).await.unwrap_or_default();
    let fields = fields_of(r);
    let decide = r.status == ReviewStatus::Pending && may_decide(&user.user, &r.queue);
    let csrf = escape(&user.session.csrf);
    let id = escape(&r.id);
    let err = |k: &str| {
        form.errors
            .get(k)
            .map(|m| format!("<p class=\"err\" role=\"alert\">{}</p>", escape(m)))
            .unwrap_or_default()
    };
    let mut body = format!(
        "<p><a href=\"/inbox\">← Inbox</a></p><h1>Review: {wf} <span class=\"muted\">/ {step}</span></h1>\
         <p><span class=\"badge\">{status}</span> queue <strong>{queue}</strong> · created {created}{deadline}{four}</p>",
        wf = escape(&r.workflow),
        step = escape(&r.step_id),
        status = r.status.as_str(),
        queue = escape(&r.queue),
        created = when(r.created_at_ms),
        deadline = r
            .deadline_at_ms
            .map(|d| format!(" · deadline {}", when(d)))
            .unwrap_or_default(),
        four = if r.min_approvals > 1 {
            format!(
                " · needs {} approvers ({} so far)",
                r.min_approvals,
                r.acts.iter().filter(|a| a.decision == "approve").count()
            )
        } else {
            String::new()
        },
    );
    if let Some((ok, text)) = &form.banner {
        body.push_str(&format!(
            "<p class=\"banner {}\" role=\"alert\">{}</p>",
            if *ok { "ok" } else { "err" },
            escape(text)
        ));
    }
    if r.status != ReviewStatus::Pending {
        body.push_str(&format!(
            "<p class=\"banner\">{} by {} {}{}</p>",
            if r.status == ReviewStatus::Approved {
                "Approved"
            } else {
                "Rejected"
            },
            escape(r.decided_by.as_deref().unwrap_or("?")),
            r.decided_at_ms.map(when).unwrap_or_default(),
            r.reason
                .as_deref()
                .map(|x| format!(": {}", escape(x)))
                .unwrap_or_default()
        ));
    } else if !decide {
        body.push_str("<p class=\"banner\">You can read this task but not decide it.</p>");
    }
    body.push_str("<div class=\"grid\"><section><h2>Request</h2>");
    body.push_str(&match &run {
        Some(run) => kv(&serde_json::from_str(&run.input).unwrap_or(Value::Null)),
        None => "<p class=\"muted\">The run is not available.</p>".into(),
    });
    body.push_str("</section><section><h2>After approval</h2>");
    body.push_str(&later_steps(state, r, run.as_ref().map_or(1, |x| x.version)).await);
    body.push_str("</section></div>");

    body.push_str("<h2>AI draft and your edits</h2>");
    if decide {
        body.push_str(&format!(
            "<form method=\"post\" action=\"/inbox/{id}/decision\" id=\"approve\"><input type=\"hidden\" name=\"csrf\" value=\"{csrf}\"><input type=\"hidden\" name=\"decision\" value=\"approve\">"
        ));
    }
    for f in &fields {
        let key = format!("f.{}", f.name);
        let result = r.results.iter().find(|x| x.field == f.name);
        let text = form
            .values
            .get(&key)
            .cloned()
            .unwrap_or_else(|| as_text(&f.draft));
        let right = if decide {
            format!(
                "<div><label for=\"{k}\">Your value</label>{c}{e}</div>",
                k = escape(&key),
                c = control(f, &text),
                e = err(&key)
            )
        } else if let Some(x) = result {
            format!(
                "<div><span class=\"muted\">Approved value{}</span><p class=\"draft\">{}</p></div>",
                if x.changed { " (edited)" } else { "" },
                escape(&as_text(
                    &serde_json::from_str(&x.value).unwrap_or(Value::Null)
                ))
            )
        } else {
            String::new()
        };
        body.push_str(&format!(
            "<div class=\"field\"><strong>{name}</strong> <span class=\"muted\">from {step}</span><div class=\"pair\"><div><span class=\"muted\">AI draft</span><p class=\"draft\">{draft}</p></div>{right}</div></div>",
            name = escape(&f.name),
            step = escape(&f.step),
            draft = escape(&as_text(&f.draft)),
        ));
    }
    if decide {
        body.push_str(&format!(
            "<label for=\"comment\">Comment (optional)</label><textarea id=\"comment\" name=\"comment\" rows=\"2\">{}</textarea>\
             <div class=\"actions\" style=\"display:block\"><button type=\"submit\" accesskey=\"a\">Approve</button> <span class=\"muted\">(Alt+A)</span></div></form>",
            escape(form.values.get("comment").map_or("", String::as_str))
        ));
        body.push_str(&format!(
            "<div class=\"actions\"><form method=\"post\" action=\"/inbox/{id}/decision\" id=\"reject\"><input type=\"hidden\" name=\"csrf\" value=\"{csrf}\"><input type=\"hidden\" name=\"decision\" value=\"reject\">\
             <label for=\"reason\">Reason for rejecting (required)</label><textarea id=\"reason\" name=\"reason\" rows=\"2\" required>{reason}</textarea>{reason_err}\
             <p><button class=\"reject\" type=\"submit\" accesskey=\"r\">Reject</button></p></form>\
             <form method=\"post\" action=\"/inbox/{id}/decision\" id=\"escalate\"><input type=\"hidden\" name=\"csrf\" value=\"{csrf}\"><input type=\"hidden\" name=\"decision\" value=\"escalate\">\
             <label for=\"queue\">Escalate to queue</label><input id=\"queue\" name=\"queue\" required value=\"{queue}\">{queue_err}\
             <p><button class=\"escalate\" type=\"submit\" accesskey=\"e\">Escalate</button></p></form></div>",
            reason = escape(form.values.get("reason").map_or("", String::as_str)),
            reason_err = err("reason"),
            queue = escape(form.values.get("queue").map_or("", String::as_str)),
            queue_err = err("queue"),
        ));
    }

    body.push_str("<h2>History</h2><table class=\"stack\"><thead><tr><th>#</th><th>When</th><th>What</th><th>Who</th><th>Details</th></tr></thead><tbody>");
    for e in &events {
        body.push_str(&format!(
            "<tr><td data-label=\"#\">{}</td><td data-label=\"When\">{}</td><td data-label=\"What\">{}</td><td data-label=\"Who\">{}</td><td><pre>{}</pre></td></tr>",
            e.seq,
            when(e.at_ms),
            escape(&e.kind),
            escape(&e.actor),
            escape(&shorten(&e.data, 600))
        ));
    }
    body.push_str("</tbody></table>");
    html(status, page("Review", user.header(), &body))
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
) -> Response {
    match load(&state, &user, &id).await {
        Ok(r) => render(&state, &user, &r, FormState::default(), StatusCode::OK).await,
        Err(res) => res,
    }
}

/// `POST /inbox/{id}/decision` (form): approve with edits, reject, escalate.
pub(crate) async fn decide(
    State(state): State<AppState>,
    user: WebUser,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let pairs = url_decode_pairs(&body);
    if !user.check_form(&headers, &pairs) {
        return message(
            StatusCode::FORBIDDEN,
            "Forbidden",
            "The form expired or came from another site. Reload the task and try again.",
            user.header(),
        );
    }
    let r = match load(&state, &user, &id).await {
        Ok(r) => r,
        Err(res) => return res,
    };
    if !may_decide(&user.user, &r.queue) {
        return message(
            StatusCode::FORBIDDEN,
            "Not allowed",
            "Your role does not allow deciding this task.",
            user.header(),
        );
    }
    let values: HashMap<String, String> = pairs.into_iter().filter(|(k, _)| k != "csrf").collect();
    let text = |k: &str| values.get(k).map_or("", String::as_str).to_string();
    let comment = Some(text("comment")).filter(|c| !c.trim().is_empty());
    let mut form = FormState {
        values: values.clone(),
        ..FormState::default()
    };
    let decision = match text("decision").as_str() {
        "approve" => {
            let mut edits = Map::new();
            for f in fields_of(&r) {
                let key = format!("f.{}", f.name);
                let Some(t) = values.get(&key) else { continue };
                match parse_field(&f, t) {
                    Ok(v) if v == f.draft => {}
                    Ok(v) => {
                        edits.insert(f.name.clone(), v);
                    }
                    Err(m) => {
                        form.errors.insert(key, m);
                    }
                }
            }
            if !form.errors.is_empty() {
                form.banner = Some((false, "Please correct the fields marked below.".into()));
                return render(&state, &user, &r, form, StatusCode::UNPROCESSABLE_ENTITY).await;
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
        _ => {
            form.banner = Some((false, "Choose approve, reject or escalate.".into()));
            return render(&state, &user, &r, form, StatusCode::UNPROCESSABLE_ENTITY).await;
        }
    };
    let verb = decision.name();
    match state
        .engine
        .decide_review(&id, decision, &crate::identity::for_user(&user.user))
        .await
    {
        Ok(_) => {
            tracing::info!(review = %id, user = %user.user.actor(), decision = verb, "decided in the inbox");
            // An escalated task may have left the reviewer's queues.
            if verb == "escalate" {
                see_other("/inbox")
            } else {
                see_other(&format!("/inbox/{id}"))
            }
        }
        Err(e) => {
            let status = match e {
                ReviewError::Refused(DecisionError::Invalid(errors)) => {
                    for f in errors {
                        let name = f.pointer.trim_start_matches("/values/");
                        form.errors.insert(format!("f.{name}"), f.message);
                    }
                    form.banner = Some((false, "Please correct the fields marked below.".into()));
                    StatusCode::UNPROCESSABLE_ENTITY
                }
                ReviewError::Refused(DecisionError::ReasonRequired) => {
                    form.errors
                        .insert("reason".into(), "A rejection needs a reason.".into());
                    StatusCode::UNPROCESSABLE_ENTITY
                }
                ReviewError::Refused(DecisionError::QueueRequired) => {
                    form.errors.insert(
                        "queue".into(),
                        "Name a queue other than the task's own.".into(),
                    );
                    StatusCode::UNPROCESSABLE_ENTITY
                }
                ReviewError::Refused(DecisionError::UnknownQueue(q)) => {
                    form.errors.insert(
                        "queue".into(),
                        format!("There is no queue `{q}`: no workflow or user names it."),
                    );
                    StatusCode::UNPROCESSABLE_ENTITY
                }
                ReviewError::Refused(e) => {
                    form.banner = Some((false, e.to_string()));
                    StatusCode::FORBIDDEN
                }
                ReviewError::Closed(_) | ReviewError::RunEnded(_) | ReviewError::NotFound => {
                    form.banner = Some((false, format!("Not applied: {e}.")));
                    StatusCode::CONFLICT
                }
                ReviewError::Store(e) => {
                    tracing::warn!(error = %e, "deciding a review failed");
                    form.banner = Some((
                        false,
                        "Not applied: the database is unavailable; try again.".into(),
                    ));
                    StatusCode::SERVICE_UNAVAILABLE
                }
            };
            let r = state.engine.review(&id).await.ok().flatten().unwrap_or(r);
            render(&state, &user, &r, form, status).await
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
    fn controls_escape_and_select_the_current_value() {
        let e = field(json!("low"), Some(json!({"enum": ["low", "<b>"]})));
        let html = control(&e, "low");
        assert!(html.contains("<option value=\"low\" selected>"), "{html}");
        assert!(
            html.contains("&lt;b&gt;") && !html.contains("<b>"),
            "{html}"
        );
        let s = field(json!("</textarea><script>"), None);
        let html = control(&s, "</textarea><script>");
        assert!(!html.contains("<script>"), "{html}");
    }
}
