//! What the review desk shows about a task, gathered once per page: the
//! request in a person's words (sender, company, message), why a person is
//! asked (the rule that fired, the model's confidence, who drafted it) and
//! the order in which a reviewer works through the queue.
//!
//! Pure functions over stored rows; the handlers in `inbox.rs` and
//! `task.rs` do the reading and the rendering.

use std::cmp::Ordering;

use domain::review::Field;
use serde_json::{Map, Value};
use store::{Review, RunDetail, StepStatus, User, UserRole};

use super::ui::label;

/// Who may see a queue's tasks.
pub(crate) fn may_see(user: &User, queue: &str) -> bool {
    match user.role {
        UserRole::Admin | UserRole::Viewer => true,
        UserRole::Reviewer => user.queues.iter().any(|q| q == queue),
    }
}

/// Who may decide a queue's tasks (four-eyes and the like are the
/// engine's checks on top).
pub(crate) fn may_decide(user: &User, queue: &str) -> bool {
    match user.role {
        UserRole::Admin => true,
        UserRole::Reviewer => user.queues.iter().any(|q| q == queue),
        UserRole::Viewer => false,
    }
}

/// Why a user may not approve a task as it stands now. A hint shown
/// before they try; the engine checks the same again (by user id) when
/// the decision arrives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refusal {
    Decided(store::ReviewStatus),
    NotYourQueue,
    AlreadyApproved,
    OwnRequest,
}

impl Refusal {
    pub(crate) fn of(user: &User, r: &Review) -> Option<Refusal> {
        if r.status != store::ReviewStatus::Pending {
            return Some(Refusal::Decided(r.status));
        }
        if !may_decide(user, &r.queue) {
            return Some(Refusal::NotYourQueue);
        }
        if approved_by(r, user) {
            return Some(Refusal::AlreadyApproved);
        }
        if r.min_approvals > 1 && r.submitter.as_deref() == Some(user.actor().as_str()) {
            return Some(Refusal::OwnRequest);
        }
        None
    }

    /// A few words, for a list.
    pub(crate) fn short(self) -> String {
        match self {
            Refusal::Decided(s) => format!("already {}", s.as_str()),
            Refusal::NotYourQueue => "not a queue you decide".into(),
            Refusal::AlreadyApproved => "you already approved it; another person must".into(),
            Refusal::OwnRequest => "you submitted it (four-eyes)".into(),
        }
    }
}

/// The user already approved this task (a second person must), through
/// any channel: acts carry the user id, older ones only the actor.
pub(crate) fn approved_by(r: &Review, user: &User) -> bool {
    let me = user.actor();
    r.acts.iter().any(|a| {
        a.decision == "approve" && (a.user_id.as_deref() == Some(user.id.as_str()) || a.actor == me)
    })
}

/// A JSON value as a person reads it in a control or a cell.
pub(crate) fn as_text(v: &Value) -> String {
    match v {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        Value::Object(_) | Value::Array(_) => serde_json::to_string_pretty(v).unwrap_or_default(),
        v => v.to_string(),
    }
}

/// A value as shown: enum members by label (`sales_lead` → "Sales lead"),
/// booleans as yes/no, the rest as text.
pub(crate) fn shown(f: &Field, v: &Value) -> String {
    match v {
        Value::Bool(true) => "yes".into(),
        Value::Bool(false) => "no".into(),
        Value::String(s) if is_enum(f) => label(s),
        Value::Null => "—".into(),
        v => as_text(v),
    }
}

fn is_enum(f: &Field) -> bool {
    f.schema
        .as_ref()
        .is_some_and(|s| s.get("enum").is_some_and(Value::is_array))
}

pub(crate) fn shorten(s: &str, max: usize) -> String {
    let s = s.trim();
    if s.chars().count() <= max {
        s.to_string()
    } else {
        format!("{}…", s.chars().take(max).collect::<String>().trim_end())
    }
}

/// The request in a person's words, from the run's input. Workflows name
/// their inputs freely; these are the common names.
#[derive(Debug, Default, Clone, serde::Serialize)]
pub(crate) struct Request {
    pub sender: String,
    pub email: String,
    pub company: String,
    /// The message (or subject), whole.
    pub text: String,
    pub chars: usize,
    /// More than the first lines: offer the whole text.
    pub long: bool,
    /// Every other input field, by label.
    pub other: Vec<(String, String)>,
}

const SENDER: [&str; 4] = ["name", "sender", "from", "full_name"];
const EMAIL: [&str; 3] = ["email", "sender_email", "from_email"];
const COMPANY: [&str; 3] = ["company", "organisation", "organization"];
const TEXT: [&str; 6] = [
    "message",
    "body",
    "text",
    "description",
    "subject",
    "request",
];

impl Request {
    pub(crate) fn of(input: &Value) -> Request {
        let Some(m) = input.as_object() else {
            return Request {
                text: as_text(input),
                ..Request::default()
            };
        };
        let pick = |names: &[&str]| -> (String, Option<String>) {
            names
                .iter()
                .find_map(|n| {
                    m.get(*n)
                        .and_then(Value::as_str)
                        .filter(|s| !s.trim().is_empty())
                        .map(|s| (s.trim().to_string(), Some((*n).to_string())))
                })
                .unwrap_or_default()
        };
        let (sender, k1) = pick(&SENDER);
        let (email, k2) = pick(&EMAIL);
        let (company, k3) = pick(&COMPANY);
        let (mut text, k4) = pick(&TEXT);
        // A subject line and a message: both, subject first.
        if k4.as_deref() != Some("subject")
            && let Some(subject) = m.get("subject").and_then(Value::as_str)
            && !subject.trim().is_empty()
        {
            text = format!("{}\n\n{text}", subject.trim());
        }
        let used = [k1, k2, k3, k4, Some("subject".to_string())];
        let other = m
            .iter()
            .filter(|(k, v)| !v.is_null() && !used.iter().any(|u| u.as_deref() == Some(k.as_str())))
            .map(|(k, v)| (label(k), as_text(v)))
            .collect();
        let chars = text.chars().count();
        Request {
            sender: if sender.is_empty() {
                email.clone()
            } else {
                sender
            },
            email,
            company,
            long: chars > 420 || text.lines().count() > 6,
            chars,
            text,
            other,
        }
    }
}

/// Why a person is asked, and who drafted what they check.
#[derive(Debug, Default, Clone)]
pub(crate) struct Why {
    /// The rule that asked for the review (`when` source), if a rule did.
    pub rule: Option<String>,
    /// The model's own confidence, 0..1.
    pub confidence: Option<f64>,
    /// `provider` / `model` of the drafting step.
    pub drafted_by: Option<String>,
    /// A fallback was used, and why.
    pub fallback: Option<String>,
    /// No provider gave a valid answer.
    pub needs_review: Option<String>,
    /// A rule raised this task's action to review (`raise:`), and why:
    /// it asks although a review covered it.
    pub raised: Option<String>,
}

impl Why {
    /// From the run's latest completed step outputs, for the task of the
    /// step `step_id`.
    pub(crate) fn of(detail: &RunDetail, step_id: &str) -> Why {
        let mut why = Why::default();
        for s in &detail.steps {
            if s.status != StepStatus::Completed {
                continue;
            }
            let Some(out) = s
                .output
                .as_deref()
                .and_then(|o| serde_json::from_str::<Map<String, Value>>(o).ok())
            else {
                continue;
            };
            if let Some(rule) = out
                .get("review_rule")
                .and_then(|r| r.get("why").or_else(|| r.get("when")))
                .and_then(Value::as_str)
                && out.get("review").and_then(Value::as_str) == Some("required")
            {
                why.rule = Some(rule.to_string());
            }
            if let Some((_, raised)) = domain::steps::raised_in(&out, step_id) {
                why.raised = Some(raised);
            }
            if out.contains_key("provider") && out.contains_key("status") {
                why.confidence = out.get("confidence").and_then(Value::as_f64);
                let provider = out.get("provider").and_then(Value::as_str);
                let model = out.get("model").and_then(Value::as_str);
                why.drafted_by = match (provider, model) {
                    (Some(p), Some(m)) if p != m => Some(format!("{p} ({m})")),
                    (Some(p), _) => Some(p.to_string()),
                    _ => None,
                };
                let reason = out
                    .get("reason")
                    .and_then(Value::as_str)
                    .map(str::to_string);
                match out.get("status").and_then(Value::as_str) {
                    Some("needs_review") => why.needs_review = reason,
                    _ => why.fallback = reason,
                }
            }
        }
        why
    }

    /// The lines of "Why you are asked".
    pub(crate) fn lines(&self) -> Vec<String> {
        let mut out = Vec::new();
        if let Some(r) = &self.needs_review {
            out.push(format!("No model gave a valid draft: {r}"));
        }
        if let Some(r) = &self.raised {
            out.push(format!(
                "A rule raised this action to review, so it asks again although the request was approved: {r}"
            ));
        }
        match &self.rule {
            Some(rule) => out.push(format!("Rule: {rule}")),
            None => out.push("The workflow reviews every request at this step.".into()),
        }
        if let Some(c) = self.confidence {
            out.push(format!("Model confidence {}", percent(c)));
        }
        match (&self.drafted_by, &self.fallback) {
            (Some(by), Some(f)) => out.push(format!("Drafted by {by} — {f}")),
            (Some(by), None) => out.push(format!("Drafted by {by}")),
            _ => {}
        }
        out
    }

    /// One short line for an inbox row.
    pub(crate) fn short(&self) -> String {
        if self.needs_review.is_some() {
            return "no valid draft".into();
        }
        if let Some(r) = &self.raised {
            return shorten(&format!("raised: {r}"), 60);
        }
        self.rule
            .as_deref()
            .map(|r| shorten(r, 60))
            .unwrap_or_default()
    }
}

pub(crate) fn percent(c: f64) -> String {
    format!("{:.0} %", (c * 100.0).clamp(0.0, 100.0))
}

/// The draft of a field by name.
pub(crate) fn draft<'a>(fields: &'a [Field], name: &str) -> Option<&'a Value> {
    fields.iter().find(|f| f.name == name).map(|f| &f.draft)
}

fn priority_rank(p: Option<&str>) -> u8 {
    match p {
        Some("urgent") => 0,
        Some("high") => 1,
        Some("medium") => 2,
        Some("low") => 3,
        _ => 4,
    }
}

/// How a reviewer's list is ordered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Order {
    /// Overdue first, then priority, then the nearest deadline, then age.
    Triage,
    Oldest,
    Newest,
}

impl Order {
    pub(crate) fn parse(s: Option<&str>) -> Order {
        match s {
            Some("oldest") => Order::Oldest,
            Some("newest") => Order::Newest,
            _ => Order::Triage,
        }
    }

    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Order::Triage => "triage",
            Order::Oldest => "oldest",
            Order::Newest => "newest",
        }
    }

    /// Sorts pending tasks for a reviewer at `now_ms`.
    pub(crate) fn sort(self, tasks: &mut [Review], now_ms: i64) {
        let key = |r: &Review| {
            let fields = engine::review::fields_of(r);
            let p = draft(&fields, "priority")
                .and_then(Value::as_str)
                .map(str::to_string);
            (
                r.deadline_at_ms.is_none_or(|d| d > now_ms),
                priority_rank(p.as_deref()),
                r.deadline_at_ms.unwrap_or(i64::MAX),
                r.created_at_ms,
            )
        };
        match self {
            Order::Triage => tasks.sort_by_cached_key(key),
            Order::Oldest => tasks.sort_by(cmp_age),
            Order::Newest => tasks.sort_by(|a, b| cmp_age(b, a)),
        }
    }
}

fn cmp_age(a: &Review, b: &Review) -> Ordering {
    a.created_at_ms
        .cmp(&b.created_at_ms)
        .then_with(|| a.id.cmp(&b.id))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn task(id: &str, priority: &str, created: i64, deadline: Option<i64>) -> Review {
        Review {
            id: id.into(),
            run_id: "r".into(),
            step_index: 2,
            step_id: "review".into(),
            workflow: "w".into(),
            queue: "ops".into(),
            status: store::ReviewStatus::Pending,
            fields: json!([{ "name": "priority", "step": "t", "draft": priority, "schema": null }])
                .to_string(),
            min_approvals: 1,
            submitter: None,
            deadline_at_ms: deadline,
            on_deadline: "null".into(),
            notify: "[]".into(),
            created_at_ms: created,
            decided_at_ms: None,
            decided_by: None,
            reason: None,
            rev: 0,
            acts: vec![],
            results: vec![],
        }
    }

    #[test]
    fn triage_order_puts_overdue_then_priority_then_deadline_first() {
        let now = 1_000_000;
        let mut tasks = vec![
            task("new-low", "low", 900_000, None),
            task("urgent", "urgent", 100, None),
            task("overdue-low", "low", 200, Some(now - 1)),
            task("high-soon", "high", 300, Some(now + 10)),
            task("high-later", "high", 50, Some(now + 1000)),
            task("high-none", "high", 10, None),
        ];
        Order::Triage.sort(&mut tasks, now);
        let ids: Vec<_> = tasks.iter().map(|t| t.id.as_str()).collect();
        assert_eq!(
            ids,
            [
                "overdue-low",
                "urgent",
                "high-soon",
                "high-later",
                "high-none",
                "new-low"
            ]
        );
        Order::Oldest.sort(&mut tasks, now);
        assert_eq!(tasks[0].id, "high-none");
        Order::Newest.sort(&mut tasks, now);
        assert_eq!(tasks[0].id, "new-low");
    }

    #[test]
    fn an_approval_through_another_channel_is_the_same_person() {
        let user = User {
            id: "u-ann".into(),
            email: "ann@example.com".into(),
            role: store::UserRole::Reviewer,
            queues: vec!["ops".into()],
            password_hash: String::new(),
            created_at_ms: 0,
            disabled_at_ms: None,
        };
        let mut t = task("t", "high", 1, None);
        t.min_approvals = 2;
        assert_eq!(Refusal::of(&user, &t), None);
        // Approved through her email link: the actor is the bare address,
        // the user id is hers.
        t.acts.push(store::ReviewAct {
            seq: 1,
            actor: "ann@example.com".into(),
            user_id: Some("u-ann".into()),
            decision: "approve".into(),
            values: "{}".into(),
            comment: None,
            reason: None,
            queue: None,
            at_ms: 2,
        });
        assert!(approved_by(&t, &user));
        assert_eq!(Refusal::of(&user, &t), Some(Refusal::AlreadyApproved));
        t.queue = "finance".into();
        assert_eq!(Refusal::of(&user, &t), Some(Refusal::NotYourQueue));
        t.status = store::ReviewStatus::Approved;
        assert_eq!(
            Refusal::of(&user, &t).map(Refusal::short).as_deref(),
            Some("already approved")
        );
    }

    #[test]
    fn the_request_reads_like_a_message() {
        let r = Request::of(&json!({
            "name": "Ana Ruiz", "email": "ana@acme.test", "company": "Acme",
            "subject": "Invoice", "message": "Hello,\nplease fix it.", "message_id": "m1"
        }));
        assert_eq!(r.sender, "Ana Ruiz");
        assert_eq!(r.email, "ana@acme.test");
        assert_eq!(r.company, "Acme");
        assert_eq!(r.text, "Invoice\n\nHello,\nplease fix it.");
        assert_eq!(r.other, [("Message id".to_string(), "m1".to_string())]);
        assert!(!r.long);
        let only_email = Request::of(&json!({ "email": "x@y.test", "message": "a".repeat(500) }));
        assert_eq!(only_email.sender, "x@y.test");
        assert!(only_email.long);
    }

    #[test]
    fn why_names_the_rule_the_confidence_and_the_fallback() {
        let why = Why {
            rule: Some("triage.confidence < 0.8".into()),
            confidence: Some(0.55),
            drafted_by: Some("heuristic".into()),
            fallback: Some("fell back after: openai: no API key".into()),
            needs_review: None,
            raised: None,
        };
        assert_eq!(
            why.lines(),
            [
                "Rule: triage.confidence < 0.8",
                "Model confidence 55 %",
                "Drafted by heuristic — fell back after: openai: no API key"
            ]
        );
        assert_eq!(why.short(), "triage.confidence < 0.8");
        assert_eq!(
            Why::default().lines(),
            ["The workflow reviews every request at this step."]
        );
    }
}
