//! Human review: the `review` step's configuration, and the pure rules of
//! deciding a review task (approve with edits, reject, escalate, four-eyes)
//! with the field-level diff between the AI draft and the approved value.
//!
//! Field references: a reviewed field is written `step.field`, or just
//! `field` when exactly one earlier step declares an `output:` field of that
//! name (the `llm` step does). A field's type is the schema its producing
//! step declares; a step without declared outputs types its fields by the
//! JSON type of the draft value at review time.

use serde_json::{Map, Value as Json, json};

use crate::workflow::{Cx, FieldError, StepDef};
use crate::yaml::{Node, Value};

/// Who decided a review that was skipped by a rule or a `when:` condition.
pub const POLICY: &str = "policy";

/// How a bulk decision's comment starts: the inbox writes it on every
/// task approved or rejected in bulk, and calibration leaves such
/// decisions out (nobody read those tasks one by one).
const BULK_APPROVAL: &str = "Bulk approval (";
const BULK_REJECTION: &str = "Bulk rejection (";

/// The comment of a task approved (or rejected) in a bulk of `n` tasks.
pub fn bulk_comment(reject: bool, n: usize) -> String {
    let start = if reject {
        BULK_REJECTION
    } else {
        BULK_APPROVAL
    };
    format!("{start}{n} tasks)")
}

/// Whether a decision's comment marks it as part of a bulk decision.
pub fn is_bulk(comment: Option<&str>) -> bool {
    comment.is_some_and(|c| c.starts_with(BULK_APPROVAL) || c.starts_with(BULK_REJECTION))
}

/// What happens when a review's deadline passes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OnDeadline {
    /// Move the task to another queue (it keeps waiting, with no deadline).
    Escalate(String),
    /// Reject the run.
    Reject,
    /// Approve the AI draft unchanged (only with `allow_auto_approve: true`).
    Approve,
}

impl OnDeadline {
    pub fn to_json(&self) -> Json {
        match self {
            OnDeadline::Escalate(q) => json!({ "escalate": q }),
            OnDeadline::Reject => json!("reject"),
            OnDeadline::Approve => json!("approve"),
        }
    }

    pub fn from_json(v: &Json) -> Option<OnDeadline> {
        match v {
            Json::String(s) if s == "reject" => Some(OnDeadline::Reject),
            Json::String(s) if s == "approve" => Some(OnDeadline::Approve),
            Json::Object(m) => m
                .get("escalate")
                .and_then(Json::as_str)
                .map(|q| OnDeadline::Escalate(q.to_string())),
            _ => None,
        }
    }
}

/// One reviewed field as configured.
#[derive(Debug, Clone, PartialEq)]
pub struct FieldSpec {
    pub name: String,
    /// The earlier step whose output holds the draft.
    pub step: String,
    /// The JSON Schema the producing step declares, when it declares one.
    pub schema: Option<Json>,
}

/// A compiled `review:` body.
#[derive(Debug, Clone, PartialEq)]
pub struct ReviewSpec {
    pub fields: Vec<FieldSpec>,
    pub queue: String,
    pub deadline_ms: Option<u64>,
    pub on_deadline: Option<OnDeadline>,
    /// Channels to notify when the task is created (`slack`, `email`).
    pub notify: Vec<String>,
    /// `slack_channel:` — where `notify: [slack]` posts (a channel ID or
    /// `#name`); without it, the queue's entry in
    /// `COUNTERSIGN_SLACK_CHANNELS` (or its `*` entry) decides at run time.
    pub slack_channel: Option<String>,
    /// `notify_email:` — who `notify: [email]` writes to; without it, the
    /// queue's entry in `COUNTERSIGN_REVIEW_EMAILS` (or its `*` entry).
    pub notify_email: Vec<String>,
    /// Distinct approvers needed (four-eyes when 2 or more).
    pub min_approvals: u32,
    /// Earlier `rules` steps, whose `review: skip|required` this step obeys
    /// (the last one that says something wins).
    pub rules_steps: Vec<String>,
    /// `covers:` — later steps whose actions this review approves (checked
    /// by the workflow loader, which marks them `StepDef::covered_by`).
    pub covers: Vec<String>,
}

/// A queue name: 1–64 of a-z, A-Z, 0-9, `_` and `-`.
pub fn valid_queue(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

/// The schema a step's `output:` entry declares for `field`, if any.
fn declared_outputs(step: &StepDef) -> Option<&[(String, Node)]> {
    match &step.body.value {
        Value::Map(entries) => entries
            .iter()
            .find(|(k, _)| k == "output")
            .and_then(|(_, n)| n.as_map().ok()),
        _ => None,
    }
}

/// The schema `step` declares for an output entry. Only kinds whose
/// `output:` holds schemas (not `http`, whose `output:` maps templates)
/// type their fields; a string is a type name (`summary: string`).
fn schema_of(step: &StepDef, node: &Node) -> Option<Json> {
    if step.kind == "http" {
        return None;
    }
    match node.to_json() {
        Json::String(t) => ["string", "number", "integer", "boolean", "object", "array"]
            .contains(&t.as_str())
            .then(|| json!({ "type": t })),
        Json::Object(mut m) => {
            m.remove("optional");
            Some(Json::Object(m))
        }
        _ => None,
    }
}

/// Parses a `review:` body against the steps before it.
pub fn parse_review(body: &Node, earlier: &[StepDef], cx: &mut Cx) -> Option<ReviewSpec> {
    let mut f = cx.take(body.fields())?;
    let mut fields: Vec<FieldSpec> = Vec::new();
    if let Some(items) = cx.take(f.require("fields")).and_then(|n| {
        let items = cx.take(n.as_seq())?;
        if items.is_empty() {
            cx.errors.push(n.error("a review needs at least one field"));
        }
        Some(items)
    }) {
        for item in items {
            let Some(text) = cx.take(item.as_str()) else {
                continue;
            };
            match resolve_field(text, earlier) {
                Ok(spec) => {
                    if fields.iter().any(|g| g.name == spec.name) {
                        cx.errors.push(item.error(format!(
                            "field `{}` is reviewed twice (field names must be unique in a review)",
                            spec.name
                        )));
                    } else {
                        fields.push(spec);
                    }
                }
                Err(m) => cx.errors.push(item.error(m)),
            }
        }
    }
    let queue = cx.take(f.require("queue")).and_then(|n| {
        let q = cx.take(n.as_str())?;
        if valid_queue(q) {
            Some(q.to_string())
        } else {
            cx.errors
                .push(n.error("queue must be 1–64 characters of letters, digits, `_` and `-`"));
            None
        }
    });
    let deadline_node = f.get("deadline");
    let deadline_ms = deadline_node.and_then(|n| cx.take(n.as_duration_ms()));
    let allow_auto = f
        .get("allow_auto_approve")
        .and_then(|n| cx.take(n.as_bool()))
        .unwrap_or(false);
    let on_deadline = f.get("on_deadline").and_then(|n| {
        let od = match &n.value {
            Value::Str(s) if s == "reject" => Some(OnDeadline::Reject),
            Value::Str(s) if s == "approve" => {
                if !allow_auto {
                    cx.errors.push(n.error(
                        "`on_deadline: approve` approves the AI draft unseen; allow it with `allow_auto_approve: true`",
                    ));
                }
                Some(OnDeadline::Approve)
            }
            Value::Map(_) => {
                let mut g = cx.take(n.fields())?;
                let q = cx.take(g.require("escalate")).and_then(|q| {
                    let s = cx.take(q.as_str())?;
                    if valid_queue(s) {
                        Some(s.to_string())
                    } else {
                        cx.errors.push(q.error("escalate names a queue"));
                        None
                    }
                });
                g.finish(&mut cx.errors);
                q.map(OnDeadline::Escalate)
            }
            _ => {
                cx.errors.push(
                    n.error("on_deadline must be `{ escalate: QUEUE }`, `reject` or `approve`"),
                );
                None
            }
        };
        if deadline_node.is_none() {
            cx.errors
                .push(n.error("on_deadline needs a `deadline`"));
        }
        od
    });
    if let (Some(n), None) = (deadline_node, &on_deadline)
        && f.get("on_deadline").is_none()
    {
        cx.errors.push(
            n.error("a deadline needs `on_deadline`: `{ escalate: QUEUE }`, `reject` or `approve`"),
        );
    }
    let mut notify = Vec::new();
    if let Some(n) = f.get("notify")
        && let Some(items) = cx.take(n.as_seq())
    {
        for item in items {
            match item.as_str() {
                Ok(s @ ("slack" | "email")) => notify.push(s.to_string()),
                _ => cx
                    .errors
                    .push(item.error("notify lists `slack` and/or `email`")),
            }
        }
    }
    let slack_channel = f
        .get("slack_channel")
        .and_then(|n| cx.take(n.as_str()).map(str::to_string));
    let mut notify_email = Vec::new();
    if let Some(n) = f.get("notify_email") {
        let items = match n.as_seq() {
            Ok(items) => items.iter().collect::<Vec<_>>(),
            Err(_) => vec![n],
        };
        for item in items {
            match item.as_str() {
                Ok(a) if a.contains('@') && !a.contains(char::is_whitespace) => {
                    notify_email.push(a.to_string())
                }
                _ => cx
                    .errors
                    .push(item.error("notify_email lists email addresses")),
            }
        }
    }
    if notify.iter().all(|c| c != "slack")
        && slack_channel.is_some()
        && let Some(n) = f.get("slack_channel")
    {
        cx.errors
            .push(n.error("slack_channel needs `notify: [slack]`"));
    }
    if notify.iter().all(|c| c != "email")
        && !notify_email.is_empty()
        && let Some(n) = f.get("notify_email")
    {
        cx.errors
            .push(n.error("notify_email needs `notify: [email]`"));
    }
    let min_approvals = match f.get("min_approvals") {
        Some(n) => cx.take(n.as_u64()).and_then(|v| {
            if (1..=10).contains(&v) {
                Some(v as u32)
            } else {
                cx.errors
                    .push(n.error("min_approvals must be between 1 and 10"));
                None
            }
        }),
        None => Some(1),
    };
    // Checked against the whole workflow by the loader (`covered_by`).
    let covers = f
        .get("covers")
        .and_then(|n| n.as_seq().ok())
        .map(|items| {
            items
                .iter()
                .filter_map(|i| i.as_str().ok().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    f.finish(&mut cx.errors);
    let rules_steps = earlier
        .iter()
        .filter(|s| s.kind == "rules")
        .map(|s| s.id.clone())
        .collect();
    Some(ReviewSpec {
        fields,
        queue: queue?,
        deadline_ms,
        on_deadline,
        notify,
        slack_channel,
        notify_email,
        min_approvals: min_approvals?,
        rules_steps,
        covers,
    })
}

fn resolve_field(text: &str, earlier: &[StepDef]) -> Result<FieldSpec, String> {
    if let Some((step_id, name)) = text.split_once('.') {
        let Some(step) = earlier.iter().find(|s| s.id == step_id) else {
            return Err(format!(
                "`{text}`: no earlier step `{step_id}` (a review reads fields of steps before it)"
            ));
        };
        let schema = match declared_outputs(step) {
            Some(outputs) => match outputs.iter().find(|(k, _)| k == name) {
                Some((_, n)) => schema_of(step, n),
                None => {
                    let mut msg = format!("`{text}`: step `{step_id}` declares no output `{name}`");
                    if let Some(s) =
                        crate::yaml::suggest(name, outputs.iter().map(|(k, _)| k.as_str()))
                    {
                        msg.push_str(&format!(" (did you mean `{step_id}.{s}`?)"));
                    }
                    return Err(msg);
                }
            },
            None => None,
        };
        return Ok(FieldSpec {
            name: name.to_string(),
            step: step_id.to_string(),
            schema,
        });
    }
    let producers: Vec<(&StepDef, &Node)> = earlier
        .iter()
        .filter_map(|s| {
            declared_outputs(s)?
                .iter()
                .find(|(k, _)| k == text)
                .map(|(_, n)| (s, n))
        })
        .collect();
    match producers.as_slice() {
        [(step, n)] => Ok(FieldSpec {
            name: text.to_string(),
            step: step.id.clone(),
            schema: schema_of(step, n),
        }),
        [] => {
            let declared: Vec<&str> = earlier
                .iter()
                .filter_map(declared_outputs)
                .flat_map(|o| o.iter().map(|(k, _)| k.as_str()))
                .collect();
            Err(match crate::yaml::suggest(text, declared.iter().copied()) {
                Some(s) => {
                    format!("no earlier step declares an output `{text}` (did you mean `{s}`?)")
                }
                None if declared.is_empty() => format!(
                    "no earlier step declares an output `{text}`; name a field of an earlier step's declared output, or write `step.{text}`"
                ),
                None => format!(
                    "no earlier step declares an output `{text}`; declared: {}",
                    declared.join(", ")
                ),
            })
        }
        many => Err(format!(
            "`{text}` is an output of several steps ({}); write `step.{text}`",
            many.iter()
                .map(|(s, _)| s.id.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        )),
    }
}

/// The queues a `review` step names: its `queue` and an
/// `on_deadline: { escalate: QUEUE }` target (what escalation may aim at).
pub fn queues_named(step: &StepDef) -> Vec<String> {
    if step.kind == "rules" {
        return rules_queues(&step.body);
    }
    let Value::Map(entries) = &step.body.value else {
        return Vec::new();
    };
    if step.kind != "review" {
        return Vec::new();
    }
    let mut out = Vec::new();
    for (k, n) in entries {
        match (k.as_str(), &n.value) {
            ("queue", Value::Str(q)) => out.push(q.clone()),
            ("on_deadline", Value::Map(m)) => {
                if let Some((
                    _,
                    Node {
                        value: Value::Str(q),
                        ..
                    },
                )) = m.iter().find(|(k, _)| k == "escalate")
                {
                    out.push(q.clone());
                }
            }
            _ => {}
        }
    }
    out
}

/// The queues a `rules` step routes reviews to (`then: { queue: Q }`).
fn rules_queues(body: &Node) -> Vec<String> {
    let Value::Seq(rules) = &body.value else {
        return Vec::new();
    };
    rules
        .iter()
        .filter_map(|rule| match &rule.value {
            Value::Map(m) => m.iter().find(|(k, _)| k == "then").map(|(_, n)| n),
            _ => None,
        })
        .filter_map(|then| match &then.value {
            Value::Map(m) => m.iter().find(|(k, _)| k == "queue").map(|(_, n)| n),
            _ => None,
        })
        .filter_map(|q| match &q.value {
            Value::Str(q) => Some(q.clone()),
            _ => None,
        })
        .collect()
}

/// The queue the rules routed a review to: the last rules step (of
/// `ReviewSpec::rules_steps`, in order) whose output names one.
pub fn routed_queue(rules_outputs: &[(String, Json)]) -> Option<String> {
    rules_outputs
        .iter()
        .rev()
        .find_map(|(_, out)| out.get("queue").and_then(Json::as_str))
        .map(str::to_string)
}

// ---------------------------------------------------------------- policy

/// Whether a rules step skips the review: `rules_outputs` are the outputs
/// of `ReviewSpec::rules_steps` in order; the last one that names `review`
/// wins. Returns the policy record naming the rule.
pub fn skip_policy(rules_outputs: &[(String, Json)]) -> Option<Json> {
    let (step, out) = rules_outputs
        .iter()
        .rev()
        .find(|(_, out)| out.get("review").is_some_and(Json::is_string))?;
    (out.get("review").and_then(Json::as_str) == Some("skip")).then(|| {
        json!({
            "policy": "rules",
            "step": step,
            "rule": out.get("review_rule").cloned().unwrap_or(Json::Null),
        })
    })
}

// ---------------------------------------------------------------- decisions

/// A reviewed field with its AI draft, as stored on the task.
#[derive(Debug, Clone, PartialEq)]
pub struct Field {
    pub name: String,
    pub step: String,
    pub draft: Json,
    pub schema: Option<Json>,
}

impl Field {
    pub fn to_json(&self) -> Json {
        json!({ "name": self.name, "step": self.step, "draft": self.draft, "schema": self.schema })
    }

    pub fn from_json(v: &Json) -> Option<Field> {
        Some(Field {
            name: v.get("name")?.as_str()?.to_string(),
            step: v.get("step")?.as_str()?.to_string(),
            draft: v.get("draft").cloned().unwrap_or(Json::Null),
            schema: v.get("schema").filter(|s| !s.is_null()).cloned(),
        })
    }
}

/// What a reviewer decides.
#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    /// Approve, replacing the drafts of the fields in `values`.
    Approve {
        values: Map<String, Json>,
        comment: Option<String>,
    },
    Reject {
        reason: String,
        comment: Option<String>,
    },
    Escalate {
        queue: String,
        comment: Option<String>,
    },
    /// Hand the case to a person ("needs manual handling"): the run ends
    /// `handed_off` with the reason, and no automatic step after the
    /// review runs.
    HandOff {
        reason: String,
        comment: Option<String>,
    },
}

impl Decision {
    /// Every decision's [`Decision::name`], in declaration order.
    pub const NAMES: [&'static str; 4] = ["approve", "reject", "escalate", "hand_off"];

    pub fn name(&self) -> &'static str {
        match self {
            Decision::Approve { .. } => "approve",
            Decision::Reject { .. } => "reject",
            Decision::Escalate { .. } => "escalate",
            Decision::HandOff { .. } => "hand_off",
        }
    }
}

/// Who decides, resolved from the channel they used (inbox session, API
/// token, Slack member, email link) before the decision is checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decider {
    /// Readable, recorded in audit events: `user:ann@example.com`,
    /// `token:<id>`, an email link's address.
    pub actor: String,
    /// The person behind the channel: every channel tied to a user
    /// resolves to that user's id, so four-eyes compares people. `None`: a
    /// service token, or a Slack member or link address that is no user;
    /// such a decider cannot approve a task that needs distinct people.
    pub user_id: Option<String>,
    /// Queues they may decide now (`None`: every queue), as the channel's
    /// user holds them at decision time; checked against the task's
    /// current queue, so an escalation takes a task out of reach at once.
    pub queues: Option<Vec<String>>,
}

impl Decider {
    /// Whether they may decide a task of `queue` now.
    pub fn may_decide(&self, queue: &str) -> bool {
        self.queues
            .as_ref()
            .is_none_or(|qs| qs.iter().any(|q| q == queue || q == "*"))
    }
}

/// An approval already given (four-eyes: not yet enough of them).
#[derive(Debug, Clone, PartialEq)]
pub struct Approval {
    pub actor: String,
    /// The approver's user id (`None` for acts of channels without one).
    pub user_id: Option<String>,
    pub values: Map<String, Json>,
    pub comment: Option<String>,
    pub at_ms: i64,
}

/// The state of a task a decision applies to.
#[derive(Debug, Clone, Copy)]
pub struct Task<'a> {
    pub fields: &'a [Field],
    pub queue: &'a str,
    pub min_approvals: u32,
    /// The run's submitter (actor of `run.received`).
    pub submitter: Option<&'a str>,
    /// The submitter's user id, when the submitting channel has one.
    pub submitter_user: Option<&'a str>,
    pub approvals: &'a [Approval],
    /// Queues the deployment knows, the only escalation targets; `None`:
    /// not checked.
    pub known_queues: Option<&'a [String]>,
}

/// Per-field result of an approved review: the calibration record.
#[derive(Debug, Clone, PartialEq)]
pub struct FieldResult {
    pub name: String,
    pub draft: Json,
    pub value: Json,
    pub changed: bool,
    /// The approver whose edit set the value, or the final approver.
    pub by: String,
    pub at_ms: i64,
    pub comment: Option<String>,
}

/// What a decision does to the task.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    /// Enough approvals: the run continues with these values.
    Approved(Vec<FieldResult>),
    /// Counted, but more distinct approvers are needed.
    Pending {
        approvals: u32,
        needed: u32,
    },
    Rejected {
        reason: String,
    },
    Escalated {
        queue: String,
    },
    HandedOff {
        reason: String,
    },
}

/// Why a decision was refused. Nothing changes.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum DecisionError {
    #[error("edited values are invalid")]
    Invalid(Vec<FieldError>),
    #[error("the submitter of a run may not approve it (four-eyes)")]
    SelfApproval,
    #[error("{0} already approved this task; another person must approve it")]
    AlreadyApproved(String),
    #[error("a rejection needs a reason")]
    ReasonRequired,
    #[error("a hand-off needs a reason (what the person taking over should know)")]
    HandOffReasonRequired,
    #[error("escalation needs a queue other than the current one")]
    QueueRequired,
    /// The escalation target is no queue this deployment knows.
    #[error("no queue `{0}` exists (no workflow's review step or user names it)")]
    UnknownQueue(String),
    /// The decider may not decide tasks of the task's current queue (it
    /// may have been escalated since a link or button was sent).
    #[error("{actor} may not decide tasks of the `{queue}` queue")]
    NotAllowed { actor: String, queue: String },
    /// The task needs distinct people and the channel names none.
    #[error(
        "this task needs {0} distinct approvers, and {1} is not tied to a user; approve in the inbox, or with a token created with `--user`"
    )]
    Unidentified(u32, String),
}

/// Checks edited values: every key is a reviewed field and every value fits
/// the field's type (its declared schema, else the JSON type of the draft).
pub fn check_values(fields: &[Field], values: &Map<String, Json>) -> Result<(), Vec<FieldError>> {
    let mut errors = Vec::new();
    for (k, v) in values {
        let pointer = format!("/values/{k}");
        let Some(field) = fields.iter().find(|f| f.name == *k) else {
            errors.push(FieldError {
                pointer,
                message: format!(
                    "`{k}` is not a reviewed field; reviewed: {}",
                    fields
                        .iter()
                        .map(|f| f.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            });
            continue;
        };
        let validator = field.schema.as_ref().and_then(|s| {
            jsonschema::options()
                .with_draft(jsonschema::Draft::Draft202012)
                .build(s)
                .ok()
        });
        match validator {
            Some(val) => {
                if let Some(e) = val.iter_errors(v).next() {
                    errors.push(FieldError {
                        pointer,
                        message: e.to_string(),
                    });
                }
            }
            None => {
                if !field.draft.is_null() && json_type(&field.draft) != json_type(v) {
                    errors.push(FieldError {
                        pointer,
                        message: format!(
                            "expected {}, like the draft, got {}",
                            json_type(&field.draft),
                            json_type(v)
                        ),
                    });
                }
            }
        }
    }
    if errors.is_empty() {
        Ok(())
    } else {
        errors.sort_by(|a, b| a.pointer.cmp(&b.pointer));
        Err(errors)
    }
}

fn json_type(v: &Json) -> &'static str {
    match v {
        Json::Null => "null",
        Json::Bool(_) => "a boolean",
        Json::Number(_) => "a number",
        Json::String(_) => "a string",
        Json::Array(_) => "a list",
        Json::Object(_) => "an object",
    }
}

/// Applies `decision` by `by` to `task`. Pure: the caller persists the
/// verdict (and records the decision itself) in one transaction.
///
/// `by` must hold the task's current queue; with four-eyes
/// (`min_approvals` of 2 or more) an approver must be a user, not the
/// submitter, and not one who approved already — compared by user id, so
/// one person through two channels counts once.
pub fn decide(
    task: Task<'_>,
    decision: &Decision,
    by: &Decider,
    at_ms: i64,
) -> Result<Verdict, DecisionError> {
    let actor = by.actor.as_str();
    if !by.may_decide(task.queue) {
        return Err(DecisionError::NotAllowed {
            actor: actor.to_string(),
            queue: task.queue.to_string(),
        });
    }
    match decision {
        Decision::Reject { reason, .. } => {
            if reason.trim().is_empty() {
                return Err(DecisionError::ReasonRequired);
            }
            Ok(Verdict::Rejected {
                reason: reason.trim().to_string(),
            })
        }
        Decision::HandOff { reason, .. } => {
            if reason.trim().is_empty() {
                return Err(DecisionError::HandOffReasonRequired);
            }
            Ok(Verdict::HandedOff {
                reason: reason.trim().to_string(),
            })
        }
        Decision::Escalate { queue, .. } => {
            if queue.trim().is_empty() || queue == task.queue || !valid_queue(queue) {
                return Err(DecisionError::QueueRequired);
            }
            if task.known_queues.is_some_and(|k| !k.contains(queue)) {
                return Err(DecisionError::UnknownQueue(queue.clone()));
            }
            Ok(Verdict::Escalated {
                queue: queue.clone(),
            })
        }
        Decision::Approve { values, comment } => {
            check_values(task.fields, values).map_err(DecisionError::Invalid)?;
            if task.min_approvals >= 2 {
                let Some(me) = by.user_id.as_deref() else {
                    return Err(DecisionError::Unidentified(
                        task.min_approvals,
                        actor.to_string(),
                    ));
                };
                if task.submitter_user == Some(me) || task.submitter == Some(actor) {
                    return Err(DecisionError::SelfApproval);
                }
                if task
                    .approvals
                    .iter()
                    .any(|a| a.user_id.as_deref() == Some(me) || a.actor == actor)
                {
                    return Err(DecisionError::AlreadyApproved(actor.to_string()));
                }
            }
            let count = task.approvals.len() as u32 + 1;
            if count < task.min_approvals {
                return Ok(Verdict::Pending {
                    approvals: count,
                    needed: task.min_approvals,
                });
            }
            let this = Approval {
                actor: actor.to_string(),
                user_id: by.user_id.clone(),
                values: values.clone(),
                comment: comment.clone(),
                at_ms,
            };
            let all: Vec<&Approval> = task.approvals.iter().chain([&this]).collect();
            Ok(Verdict::Approved(
                task.fields
                    .iter()
                    .map(|f| {
                        // The last approver who edited the field sets its value.
                        let editor = all.iter().rev().find(|a| a.values.contains_key(&f.name));
                        let value = editor
                            .and_then(|a| a.values.get(&f.name))
                            .cloned()
                            .unwrap_or_else(|| f.draft.clone());
                        let by = editor.copied().unwrap_or(&this);
                        FieldResult {
                            name: f.name.clone(),
                            changed: value != f.draft,
                            draft: f.draft.clone(),
                            value,
                            by: by.actor.clone(),
                            at_ms: by.at_ms,
                            comment: by.comment.clone(),
                        }
                    })
                    .collect(),
            ))
        }
    }
}

/// The policy verdict of a skipped review: every field keeps its draft.
pub fn skipped(fields: &[Field], at_ms: i64) -> Vec<FieldResult> {
    fields
        .iter()
        .map(|f| FieldResult {
            name: f.name.clone(),
            draft: f.draft.clone(),
            value: f.draft.clone(),
            changed: false,
            by: POLICY.to_string(),
            at_ms,
            comment: None,
        })
        .collect()
}

/// The step output of a decided review and the new `approved` object:
/// `previous` approved values (from an earlier review), then every output of
/// the reviewed fields' steps (so `approved.crm_update_required` reads the
/// unreviewed draft), then the final values of the reviewed fields.
pub fn approved_values(
    previous: Option<&Json>,
    step_outputs: &[&Json],
    results: &[FieldResult],
) -> Json {
    let mut m = match previous {
        Some(Json::Object(p)) => p.clone(),
        _ => Map::new(),
    };
    for out in step_outputs {
        if let Json::Object(o) = out {
            for (k, v) in o {
                m.insert(k.clone(), v.clone());
            }
        }
    }
    for r in results {
        m.insert(r.name.clone(), r.value.clone());
    }
    Json::Object(m)
}

/// Field results as JSON (`[{field, draft, value, changed, by, at_ms, comment}]`).
pub fn results_json(results: &[FieldResult]) -> Json {
    Json::Array(
        results
            .iter()
            .map(|r| {
                json!({
                    "field": r.name, "draft": r.draft, "value": r.value, "changed": r.changed,
                    "by": r.by, "at_ms": r.at_ms, "comment": r.comment,
                })
            })
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::yaml;

    fn fields() -> Vec<Field> {
        vec![
            Field {
                name: "summary".into(),
                step: "triage".into(),
                draft: json!("Printer broken"),
                schema: Some(json!({"type": "string", "maxLength": 20})),
            },
            Field {
                name: "priority".into(),
                step: "triage".into(),
                draft: json!("low"),
                schema: Some(json!({"enum": ["low", "medium", "high", "urgent"]})),
            },
            Field {
                name: "score".into(),
                step: "calc".into(),
                draft: json!(3),
                schema: None,
            },
        ]
    }

    fn task<'a>(fields: &'a [Field], min: u32, approvals: &'a [Approval]) -> Task<'a> {
        Task {
            fields,
            queue: "operations",
            min_approvals: min,
            submitter: Some("token:submitter"),
            submitter_user: None,
            approvals,
            known_queues: None,
        }
    }

    /// A decider who may decide every queue; `user:NAME` is user `NAME`.
    fn who(actor: &str) -> Decider {
        Decider {
            actor: actor.into(),
            user_id: actor.strip_prefix("user:").map(str::to_string),
            queues: None,
        }
    }

    fn approve(values: Json) -> Decision {
        Decision::Approve {
            values: values.as_object().cloned().unwrap_or_default(),
            comment: Some("looks right".into()),
        }
    }

    #[test]
    fn a_skipped_review_keeps_every_draft_by_policy_and_results_read_as_json() {
        let f = fields();
        let results = skipped(&f, 42);
        assert_eq!(results.len(), f.len());
        assert!(results.iter().all(|r| !r.changed && r.value == r.draft));
        assert!(results.iter().all(|r| r.by == POLICY && r.at_ms == 42));
        assert_eq!(
            results_json(&results[..1]),
            json!([{
                "field": "summary", "draft": "Printer broken", "value": "Printer broken",
                "changed": false, "by": POLICY, "at_ms": 42, "comment": null,
            }])
        );
    }

    #[test]
    fn a_field_round_trips_through_its_stored_json() {
        for f in fields() {
            assert_eq!(Field::from_json(&f.to_json()), Some(f));
        }
        let no_schema = json!({ "name": "n", "step": "s", "draft": 1, "schema": null });
        assert_eq!(Field::from_json(&no_schema).unwrap().schema, None);
        assert_eq!(Field::from_json(&json!({ "step": "s" })), None);
    }

    #[test]
    fn a_field_without_a_schema_takes_values_of_its_drafts_type() {
        let mut f = fields();
        let edit = |v: Json| v.as_object().cloned().unwrap();
        assert_eq!(check_values(&f, &edit(json!({ "score": 5 }))), Ok(()));
        let errors = check_values(&f, &edit(json!({ "score": "five" }))).unwrap_err();
        assert_eq!(
            errors[0].message,
            "expected a number, like the draft, got a string"
        );
        // A field drafted as null takes anything.
        f[2].draft = Json::Null;
        assert_eq!(check_values(&f, &edit(json!({ "score": "five" }))), Ok(()));
    }

    #[test]
    fn approve_without_edits_keeps_every_draft() {
        let f = fields();
        let v = decide(task(&f, 1, &[]), &approve(json!({})), &who("user:ann"), 10).unwrap();
        let Verdict::Approved(results) = v else {
            panic!("{v:?}")
        };
        assert!(results.iter().all(|r| !r.changed && r.value == r.draft));
        assert!(results.iter().all(|r| r.by == "user:ann" && r.at_ms == 10));
    }

    #[test]
    fn approve_with_edits_records_the_diff_per_field() {
        let f = fields();
        let v = decide(
            task(&f, 1, &[]),
            &approve(json!({"priority": "high", "summary": "Printer broken"})),
            &who("user:ann"),
            10,
        )
        .unwrap();
        let Verdict::Approved(results) = v else {
            panic!("{v:?}")
        };
        let text = results_json(&results).to_string();
        assert_eq!(
            results
                .iter()
                .map(|r| (r.name.as_str(), r.changed))
                .collect::<Vec<_>>(),
            [("summary", false), ("priority", true), ("score", false)],
            "{text}"
        );
        assert_eq!(results[1].value, json!("high"));
        assert_eq!(results[1].draft, json!("low"));
        assert_eq!(results[1].comment.as_deref(), Some("looks right"));
    }

    #[test]
    fn edits_are_validated_against_the_field_type_and_enum() {
        let f = fields();
        let err = decide(
            task(&f, 1, &[]),
            &approve(json!({"priority": "whenever", "summary": "x".repeat(30), "score": "high", "nope": 1})),
            &who("user:ann"),
            10,
        )
        .unwrap_err();
        let DecisionError::Invalid(errors) = err else {
            panic!("{err:?}")
        };
        let pointers: Vec<&str> = errors.iter().map(|e| e.pointer.as_str()).collect();
        assert_eq!(
            pointers,
            [
                "/values/nope",
                "/values/priority",
                "/values/score",
                "/values/summary"
            ],
            "{errors:?}"
        );
        assert!(
            errors[2].message.contains("expected a number"),
            "{errors:?}"
        );
    }

    #[test]
    fn reject_needs_a_reason_and_escalate_a_new_queue() {
        let f = fields();
        let t = task(&f, 1, &[]);
        let reject = |reason: &str| Decision::Reject {
            reason: reason.into(),
            comment: None,
        };
        assert_eq!(
            decide(t, &reject("  "), &who("u"), 1),
            Err(DecisionError::ReasonRequired)
        );
        assert_eq!(
            decide(t, &reject(" spam "), &who("u"), 1),
            Ok(Verdict::Rejected {
                reason: "spam".into()
            })
        );
        let escalate = |q: &str| Decision::Escalate {
            queue: q.into(),
            comment: None,
        };
        assert_eq!(
            decide(t, &escalate("operations"), &who("u"), 1),
            Err(DecisionError::QueueRequired)
        );
        assert_eq!(
            decide(t, &escalate("bad queue"), &who("u"), 1),
            Err(DecisionError::QueueRequired)
        );
        assert_eq!(
            decide(t, &escalate("managers"), &who("u"), 1),
            Ok(Verdict::Escalated {
                queue: "managers".into()
            })
        );
    }

    #[test]
    fn hand_off_needs_a_reason_and_is_not_a_rejection() {
        let f = fields();
        let t = task(&f, 2, &[]);
        let hand_off = |reason: &str| Decision::HandOff {
            reason: reason.into(),
            comment: Some("call them".into()),
        };
        assert_eq!(hand_off("x").name(), "hand_off");
        let every = [
            Decision::Approve {
                values: Map::new(),
                comment: None,
            },
            Decision::Reject {
                reason: String::new(),
                comment: None,
            },
            Decision::Escalate {
                queue: String::new(),
                comment: None,
            },
            hand_off(""),
        ];
        assert_eq!(every.map(|d| d.name()), Decision::NAMES);
        assert_eq!(
            decide(t, &hand_off(" \n "), &who("u"), 1),
            Err(DecisionError::HandOffReasonRequired)
        );
        // Any decider of the queue may hand off, even on a four-eyes task
        // and without a user behind the channel: it approves nothing.
        assert_eq!(
            decide(t, &hand_off(" legal dispute "), &who("token:x"), 1),
            Ok(Verdict::HandedOff {
                reason: "legal dispute".into()
            })
        );
        let elsewhere = Decider {
            queues: Some(vec!["managers".into()]),
            ..who("u")
        };
        assert!(matches!(
            decide(t, &hand_off("x"), &elsewhere, 1),
            Err(DecisionError::NotAllowed { .. })
        ));
    }

    #[test]
    fn four_eyes_needs_distinct_approvers_other_than_the_submitter() {
        let f = fields();
        let none: Vec<Approval> = Vec::new();
        let submitter = Decider {
            user_id: Some("sam".into()),
            ..who("token:submitter")
        };
        assert_eq!(
            decide(task(&f, 2, &none), &approve(json!({})), &submitter, 1),
            Err(DecisionError::SelfApproval)
        );
        // Without four-eyes the submitter may approve.
        assert!(
            decide(
                task(&f, 1, &none),
                &approve(json!({})),
                &who("token:submitter"),
                1,
            )
            .is_ok()
        );
        assert_eq!(
            decide(
                task(&f, 2, &none),
                &approve(json!({"priority": "urgent"})),
                &who("user:ann"),
                1,
            ),
            Ok(Verdict::Pending {
                approvals: 1,
                needed: 2
            })
        );
        let first = [Approval {
            actor: "user:ann".into(),
            user_id: Some("ann".into()),
            values: json!({"priority": "urgent"}).as_object().cloned().unwrap(),
            comment: Some("raise it".into()),
            at_ms: 1,
        }];
        assert_eq!(
            decide(
                task(&f, 2, &first),
                &approve(json!({})),
                &who("user:ann"),
                2
            ),
            Err(DecisionError::AlreadyApproved("user:ann".into()))
        );
        let v = decide(
            task(&f, 2, &first),
            &approve(json!({"summary": "Jam"})),
            &who("user:bob"),
            2,
        )
        .unwrap();
        let Verdict::Approved(results) = v else {
            panic!("{v:?}")
        };
        let by: Vec<(&str, &str, bool)> = results
            .iter()
            .map(|r| (r.name.as_str(), r.by.as_str(), r.changed))
            .collect();
        assert_eq!(
            by,
            [
                ("summary", "user:bob", true),
                ("priority", "user:ann", true),
                ("score", "user:bob", false)
            ]
        );
        assert_eq!(results[1].comment.as_deref(), Some("raise it"));
    }

    #[test]
    fn four_eyes_compares_people_not_channels() {
        let f = fields();
        let none: Vec<Approval> = Vec::new();
        // Ann approved in the inbox; her own email link (another actor
        // name, the same user) cannot be the second approval.
        let inbox = [Approval {
            actor: "user:ann@example.com".into(),
            user_id: Some("u-ann".into()),
            values: Map::new(),
            comment: None,
            at_ms: 1,
        }];
        let link = Decider {
            actor: "ann@example.com".into(),
            user_id: Some("u-ann".into()),
            queues: Some(vec!["operations".into()]),
        };
        assert_eq!(
            decide(task(&f, 2, &inbox), &approve(json!({})), &link, 2),
            Err(DecisionError::AlreadyApproved("ann@example.com".into()))
        );
        // The submitter through another channel is still the submitter.
        let t = Task {
            submitter_user: Some("u-ann"),
            ..task(&f, 2, &none)
        };
        assert_eq!(
            decide(t, &approve(json!({})), &link, 2),
            Err(DecisionError::SelfApproval)
        );
        // A channel tied to no user approves alone, never as one of two.
        let service = who("token:ci");
        assert_eq!(
            decide(task(&f, 2, &none), &approve(json!({})), &service, 2),
            Err(DecisionError::Unidentified(2, "token:ci".into()))
        );
        assert!(decide(task(&f, 1, &none), &approve(json!({})), &service, 2).is_ok());
        assert!(
            decide(
                task(&f, 2, &none),
                &Decision::Reject {
                    reason: "spam".into(),
                    comment: None
                },
                &service,
                2
            )
            .is_ok(),
            "a rejection needs no second person"
        );
    }

    #[test]
    fn the_decider_must_hold_the_current_queue() {
        let f = fields();
        let ops = Decider {
            queues: Some(vec!["operations".into()]),
            ..who("user:olga")
        };
        assert!(decide(task(&f, 1, &[]), &approve(json!({})), &ops, 1).is_ok());
        let escalated = Task {
            queue: "managers",
            ..task(&f, 1, &[])
        };
        assert_eq!(
            decide(escalated, &approve(json!({})), &ops, 1),
            Err(DecisionError::NotAllowed {
                actor: "user:olga".into(),
                queue: "managers".into()
            })
        );
        let wildcard = Decider {
            queues: Some(vec!["*".into()]),
            ..who("user:wanda")
        };
        assert!(decide(escalated, &approve(json!({})), &wildcard, 1).is_ok());
    }

    #[test]
    fn escalation_goes_only_to_known_queues() {
        let f = fields();
        let known = ["operations".to_string(), "managers".to_string()];
        let t = Task {
            known_queues: Some(&known),
            ..task(&f, 1, &[])
        };
        let escalate = |q: &str| Decision::Escalate {
            queue: q.into(),
            comment: None,
        };
        assert_eq!(
            decide(t, &escalate("finance-typo"), &who("u"), 1),
            Err(DecisionError::UnknownQueue("finance-typo".into()))
        );
        assert_eq!(
            decide(t, &escalate("managers"), &who("u"), 1),
            Ok(Verdict::Escalated {
                queue: "managers".into()
            })
        );
    }

    #[test]
    fn approved_values_overlay_drafts_with_final_values() {
        let out = json!({"summary": "a", "intent": "sales", "crm_update_required": true});
        let results = vec![FieldResult {
            name: "summary".into(),
            draft: json!("a"),
            value: json!("b"),
            changed: true,
            by: "u".into(),
            at_ms: 1,
            comment: None,
        }];
        let prev = json!({"earlier": 1, "summary": "old"});
        assert_eq!(
            approved_values(Some(&prev), &[&out], &results),
            json!({"earlier": 1, "summary": "b", "intent": "sales", "crm_update_required": true})
        );
        let s = skipped(&fields(), 5);
        assert!(s.iter().all(|r| r.by == POLICY && !r.changed));
    }

    #[test]
    fn rules_can_skip_a_review() {
        let skip = json!({"review": "skip", "review_rule": {"index": 0, "when": "triage.confidence > 0.9"}});
        let p = skip_policy(&[("check".into(), skip)]).unwrap();
        assert_eq!(p["rule"]["when"], "triage.confidence > 0.9");
        assert_eq!(p["step"], "check");
        assert!(skip_policy(&[("check".into(), json!({"review": "required"}))]).is_none());
        assert!(skip_policy(&[("check".into(), json!({"review": null}))]).is_none());
    }

    #[test]
    fn the_last_rules_step_naming_a_queue_routes_the_review() {
        let out = |q: Option<&str>| match q {
            Some(q) => json!({"review": "required", "queue": q}),
            None => json!({"review": "required"}),
        };
        assert_eq!(routed_queue(&[]), None);
        assert_eq!(routed_queue(&[("a".into(), out(None))]), None);
        assert_eq!(
            routed_queue(&[("a".into(), out(Some("discard"))), ("b".into(), out(None))]),
            Some("discard".into())
        );
        assert_eq!(
            routed_queue(&[
                ("a".into(), out(Some("discard"))),
                ("b".into(), out(Some("ops")))
            ]),
            Some("ops".into())
        );
        let wf = steps(
            "name: q\nsteps:\n  - id: screen\n    rules:\n      - when: 'true'\n        then: { queue: discard }\n      - when: 'true'\n        then: { review: required }\n  - id: r\n    review: { fields: [], queue: ops, on_deadline: { escalate: managers } }\n",
        );
        assert_eq!(queues_named(&wf[0]), ["discard"]);
        assert_eq!(queues_named(&wf[1]), ["ops", "managers"]);
    }

    /// Errors (as text) of a `review:` body after the given steps.
    fn review_errors(flow: &str, body: &str) -> (Option<ReviewSpec>, Vec<String>) {
        let earlier = steps(flow);
        let root = yaml::parse(&format!("review: {body}\n"), &|_| None).unwrap();
        let mut cx = Cx::default();
        let spec = parse_review(&root.as_map().unwrap()[0].1, &earlier, &mut cx);
        (spec, cx.errors.iter().map(ToString::to_string).collect())
    }

    #[test]
    fn deadline_actions_addresses_and_unknown_fields_are_read_exactly() {
        let flow = "name: x\nsteps:\n  - id: a\n    llm: { output: { summary: string, intent: string } }\n";
        let (spec, errors) = review_errors(
            flow,
            "{ fields: [summary], queue: ops, deadline: 1h, on_deadline: reject }",
        );
        assert_eq!(errors, Vec::<String>::new());
        assert_eq!(spec.unwrap().on_deadline, Some(OnDeadline::Reject));
        let (spec, errors) = review_errors(
            flow,
            "{ fields: [summary], queue: ops, deadline: 1h, on_deadline: approve, allow_auto_approve: true }",
        );
        assert_eq!(errors, Vec::<String>::new());
        assert_eq!(spec.unwrap().on_deadline, Some(OnDeadline::Approve));
        let (_, errors) = review_errors(
            flow,
            "{ fields: [summary], queue: ops, deadline: 1h, on_deadline: later, allow_auto_approve: true }",
        );
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert!(!errors[0].contains("approves the AI draft"), "{errors:?}");

        // An address has an @ and no space.
        let (spec, errors) = review_errors(
            flow,
            "{ fields: [summary], queue: ops, notify: [email], notify_email: [ann@example.com, 'bob @example.com', nobody] }",
        );
        assert_eq!(errors.len(), 2, "{errors:?}");
        assert!(
            errors
                .iter()
                .all(|e| e.contains("notify_email lists email addresses"))
        );
        assert_eq!(spec.unwrap().notify_email, ["ann@example.com"]);

        // An unknown field: the declared ones are listed, or, with none
        // declared, how to name one.
        let (_, errors) = review_errors(flow, "{ fields: [zzz], queue: ops }");
        assert!(
            errors[0].ends_with("declared: summary, intent"),
            "{errors:?}"
        );
        let bare = "name: x\nsteps:\n  - id: a\n    http: { url: 'http://x' }\n";
        let (_, errors) = review_errors(bare, "{ fields: [zzz], queue: ops }");
        assert!(errors[0].contains("or write `step.zzz`"), "{errors:?}");
    }

    #[test]
    fn on_deadline_round_trips_through_its_stored_json() {
        for (v, json) in [
            (OnDeadline::Reject, json!("reject")),
            (OnDeadline::Approve, json!("approve")),
            (
                OnDeadline::Escalate("managers".into()),
                json!({ "escalate": "managers" }),
            ),
        ] {
            assert_eq!(v.to_json(), json);
            assert_eq!(OnDeadline::from_json(&json), Some(v));
        }
        for other in [
            json!("escalate"),
            json!({ "escalate": 3 }),
            json!({}),
            json!(null),
        ] {
            assert_eq!(OnDeadline::from_json(&other), None, "{other}");
        }
    }

    #[test]
    fn a_type_name_types_a_field_and_http_outputs_type_nothing() {
        let s = steps(
            "name: x\nsteps:\n  - id: a\n    llm: { output: { n: integer, odd: whatever, obj: { type: string, optional: true } } }\n  - id: h\n    http: { url: 'http://x', output: { m: '{{ response.m }}' } }\n",
        );
        let mut cx = Cx::default();
        let root = yaml::parse(
            "review: { fields: [a.n, a.odd, a.obj, h.m], queue: ops }\n",
            &|_| None,
        )
        .unwrap();
        let spec = parse_review(&root.as_map().unwrap()[0].1, &s, &mut cx).unwrap();
        let schemas: Vec<_> = spec.fields.iter().map(|f| f.schema.clone()).collect();
        assert_eq!(
            schemas,
            [
                Some(json!({ "type": "integer" })),
                None,
                Some(json!({ "type": "string" })),
                None
            ]
        );
    }

    fn steps(src: &str) -> Vec<StepDef> {
        let kinds = ["llm", "rules", "review", "http"];
        crate::workflow::parse(src, &|_| None, &kinds)
            .map_err(|e| format!("{e:?}"))
            .unwrap()
            .steps
    }

    #[test]
    fn parses_fields_by_name_and_by_step() {
        let s = steps(
            "name: x\nsteps:\n  - id: triage\n    llm: { output: { summary: { type: string }, intent: { enum: [a, b] } } }\n  - id: other\n    llm: { output: { intent: { type: string } } }\n  - id: check\n    rules: []\n  - id: review\n    review: { fields: [summary, other.intent, nope, intent, triage.missing], queue: ops, deadline: 24h, on_deadline: { escalate: managers }, min_approvals: 2 }\n",
        );
        let mut cx = Cx::default();
        let spec = parse_review(&s[3].body, &s[..3], &mut cx);
        let errors: Vec<String> = cx.errors.iter().map(ToString::to_string).collect();
        assert_eq!(errors.len(), 3, "{errors:?}");
        assert!(
            errors[0].contains("no earlier step declares an output `nope`"),
            "{errors:?}"
        );
        assert!(
            errors[1].contains("output of several steps (triage, other)"),
            "{errors:?}"
        );
        assert!(
            errors[2].contains("declares no output `missing`"),
            "{errors:?}"
        );
        let spec = spec.unwrap();
        assert_eq!(spec.fields[0].schema, Some(json!({"type": "string"})));
        assert_eq!(spec.fields[1].step, "other");
        assert_eq!(spec.deadline_ms, Some(86_400_000));
        assert_eq!(
            spec.on_deadline,
            Some(OnDeadline::Escalate("managers".into()))
        );
        assert_eq!(spec.rules_steps, ["check"]);
        assert_eq!(spec.min_approvals, 2);
    }

    #[test]
    fn auto_approve_at_the_deadline_must_be_allowed() {
        let root = yaml::parse(
            "review: { fields: [a.x], queue: ops, deadline: 1h, on_deadline: approve }\n",
            &|_| None,
        )
        .unwrap();
        let body = &root.as_map().unwrap()[0].1;
        let earlier = steps("name: x\nsteps:\n  - id: a\n    http: { url: 'http://x' }\n");
        let mut cx = Cx::default();
        parse_review(body, &earlier, &mut cx);
        assert!(
            cx.errors[0]
                .to_string()
                .contains("allow_auto_approve: true"),
            "{:?}",
            cx.errors
        );
        let root = yaml::parse(
            "review: { fields: [a.x], queue: ops, deadline: 1h }\n",
            &|_| None,
        )
        .unwrap();
        let mut cx = Cx::default();
        parse_review(&root.as_map().unwrap()[0].1, &earlier, &mut cx);
        assert!(
            cx.errors[0]
                .to_string()
                .contains("a deadline needs `on_deadline`"),
            "{:?}",
            cx.errors
        );
    }

    #[test]
    fn notification_targets_are_parsed_and_checked() {
        let earlier = steps("name: x\nsteps:\n  - id: a\n    http: { url: 'http://x' }\n");
        let parse = |text: &str| {
            let root = yaml::parse(text, &|_| None).unwrap();
            let mut cx = Cx::default();
            let spec = parse_review(&root.as_map().unwrap()[0].1, &earlier, &mut cx);
            (
                spec,
                cx.errors.iter().map(|e| e.to_string()).collect::<Vec<_>>(),
            )
        };
        let (spec, errors) = parse(
            "review: { fields: [a.x], queue: ops, notify: [slack, email], slack_channel: '#reviewers', notify_email: [ann@example.com] }\n",
        );
        assert_eq!(errors, Vec::<String>::new());
        let spec = spec.unwrap();
        assert_eq!(spec.slack_channel.as_deref(), Some("#reviewers"));
        assert_eq!(spec.notify_email, ["ann@example.com"]);
        let (_, errors) = parse(
            "review: { fields: [a.x], queue: ops, notify: [email], slack_channel: '#r', notify_email: [not an address] }\n",
        );
        assert!(
            errors
                .iter()
                .any(|e| e.contains("slack_channel needs `notify: [slack]`")),
            "{errors:?}"
        );
        assert!(
            errors
                .iter()
                .any(|e| e.contains("notify_email lists email addresses")),
            "{errors:?}"
        );
        let (_, errors) = parse(
            "review: { fields: [a.x], queue: ops, notify: [slack], notify_email: [ann@example.com] }\n",
        );
        assert!(
            errors
                .iter()
                .any(|e| e.contains("notify_email needs `notify: [email]`")),
            "{errors:?}"
        );
    }
}
