//! Trust calibration, measured (DESIGN §8): how often people approve the
//! AI's draft of a field as it was, per workflow, version, review step and
//! field, optionally sliced (by the draft of an enum field such as
//! `intent`, or by the provider or model that drafted the field), with a
//! Wilson 95 % interval, over weekly buckets.
//!
//! Pure: the caller reads decided review tasks from the store, turns each
//! into a [`Task`], and passes them here with the window and slice.
//!
//! Evidence rules (the trust calibration issue's acceptance details):
//! - a review a person approved counts, field by field: agreement when the
//!   approved value equals the draft (exact JSON equality);
//! - a review a person rejected, escalated or handed off counts as
//!   disagreement on every field it covers (an escalation counts at the
//!   moment of the escalation, whatever happened to the task after);
//! - a review the system decided at its deadline (expired: auto-approved,
//!   auto-rejected or auto-escalated and never decided by a person) does
//!   not count, nor does a bulk decision (approved or rejected in bulk,
//!   unread one by one), nor a review the rules skipped (it has no task);
//! - free text (a string field without an `enum`) also gets a normalised
//!   comparison (trimmed, whitespace collapsed, case-folded) and the mean
//!   Levenshtein edit distance of its approved values. Reported, not
//!   judged: agreement stays the exact figure.
//!
//! Not yet (later items of the issue): the reading floor (a decision
//! faster than the text could be read) and known-answer tasks.

use std::collections::BTreeMap;

use serde_json::Value as Json;

use crate::event::SYSTEM;
use crate::review::{Field, is_bulk};

/// The slice names that are not reviewed fields.
pub const PROVIDER: &str = "provider";
pub const MODEL: &str = "model";
/// The slice value of a task that has none (no such field, a `null` draft).
pub const NONE: &str = "(none)";

/// z for a two-sided 95 % interval.
const Z95: f64 = 1.959_963_984_540_054;
const WEEK_MS: i64 = 7 * 86_400_000;
/// 1970-01-05, the first Monday after the epoch: weeks start on Mondays (UTC).
const FIRST_MONDAY_MS: i64 = 4 * 86_400_000;

/// Where a review task stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    Pending,
    Approved,
    Rejected,
    HandedOff,
}

/// One decision act on a task, as the evidence rules read it.
#[derive(Debug, Clone, PartialEq)]
pub struct Act {
    /// `user:…`, `token:…`, or [`SYSTEM`] for the deadline.
    pub actor: String,
    /// `approve`, `reject`, `escalate`, `hand_off`.
    pub decision: String,
    pub comment: Option<String>,
    pub at_ms: i64,
}

/// The approved value of a field.
#[derive(Debug, Clone, PartialEq)]
pub struct Approved {
    pub field: String,
    pub value: Json,
    pub by: String,
    pub at_ms: i64,
}

/// A review task with everything the evidence rules need.
#[derive(Debug, Clone, PartialEq)]
pub struct Task {
    pub review_id: String,
    pub run_id: String,
    pub workflow: String,
    pub version: i64,
    /// The review step's id.
    pub step: String,
    pub state: State,
    /// The reviewed fields with their drafts (and the step that drafted each).
    pub fields: Vec<Field>,
    /// Approved values (an approved task's).
    pub approved: Vec<Approved>,
    /// Acts in order.
    pub acts: Vec<Act>,
    /// Outputs of the run's earlier steps that name a provider or model,
    /// by step id: `(provider, model)`.
    pub models: BTreeMap<String, (Option<String>, Option<String>)>,
}

/// What a person did with a task that counts as evidence.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Outcome {
    Approved,
    Rejected,
    Escalated,
    HandedOff,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Approved => "approved",
            Outcome::Rejected => "rejected",
            Outcome::Escalated => "escalated",
            Outcome::HandedOff => "handed_off",
        }
    }
}

/// Why a task is not evidence.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Excluded {
    /// Still pending and never escalated by a person.
    Undecided,
    /// Decided by the deadline policy, not by a person.
    Expired,
    /// Approved or rejected in bulk.
    Bulk,
    /// Decided before the window began.
    BeforeWindow,
}

impl Excluded {
    pub const ALL: [Excluded; 4] = [
        Excluded::Undecided,
        Excluded::Expired,
        Excluded::Bulk,
        Excluded::BeforeWindow,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Excluded::Undecided => "undecided",
            Excluded::Expired => "expired",
            Excluded::Bulk => "bulk",
            Excluded::BeforeWindow => "before_window",
        }
    }
}

/// One field of one task that counts as evidence.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub review_id: String,
    pub run_id: String,
    pub workflow: String,
    pub version: i64,
    pub step: String,
    pub field: String,
    /// The slice value, when the measure is sliced.
    pub slice: Option<String>,
    /// Free text: a string field without an `enum`.
    pub text: bool,
    pub draft: Json,
    /// The approved value; `None` when the task was rejected, escalated or
    /// handed off (disagreement on every field).
    pub value: Option<Json>,
    pub outcome: Outcome,
    /// Who decided (the person whose act made this evidence).
    pub by: String,
    pub at_ms: i64,
}

impl Sample {
    /// The person approved the draft exactly as it was.
    pub fn agrees(&self) -> bool {
        self.value.as_ref() == Some(&self.draft)
    }

    /// Equal after normalising free text; the exact comparison otherwise.
    pub fn agrees_normalised(&self) -> bool {
        match (&self.draft, &self.value) {
            (Json::String(d), Some(Json::String(v))) if self.text => normalise(d) == normalise(v),
            _ => self.agrees(),
        }
    }

    /// The Levenshtein distance (in characters) from the draft to the
    /// approved text; `None` unless the field is free text and both are
    /// strings.
    pub fn edit_distance(&self) -> Option<usize> {
        match (&self.draft, &self.value) {
            (Json::String(d), Some(Json::String(v))) if self.text => Some(levenshtein(d, v)),
            _ => None,
        }
    }
}

/// What to measure.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Query {
    /// Only evidence at or after this time.
    pub since_ms: Option<i64>,
    /// Slice by [`PROVIDER`], [`MODEL`] or the draft of a reviewed field.
    pub by: Option<String>,
}

/// The evidence of a set of tasks: samples and the tasks left out.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Evidence {
    pub samples: Vec<Sample>,
    /// Tasks counted (a task gives one sample per field).
    pub tasks: u64,
    pub excluded: BTreeMap<Excluded, u64>,
    /// Whether some counted task had the slice (`false` with a `by` that
    /// names nothing any task has: probably a typing error).
    pub slice_found: bool,
}

/// Applies the evidence rules to `tasks`.
pub fn evidence(tasks: &[Task], q: &Query) -> Evidence {
    let mut out = Evidence::default();
    for t in tasks {
        match samples_of(t, q) {
            Ok((samples, found)) => {
                out.tasks += 1;
                out.slice_found |= found;
                out.samples.extend(samples);
            }
            Err(why) => *out.excluded.entry(why).or_default() += 1,
        }
    }
    out
}

fn by_person(a: &Act) -> bool {
    a.actor != SYSTEM
}

/// Whether a field holds free text: declared a string without an `enum`,
/// or, with no schema, drafted as a string.
pub fn is_text(f: &Field) -> bool {
    match &f.schema {
        Some(s) => {
            let string = match s.get("type") {
                Some(Json::String(t)) => t == "string",
                Some(Json::Array(ts)) => ts.iter().any(|t| t == "string"),
                _ => false,
            };
            string && s.get("enum").is_none() && s.get("const").is_none()
        }
        None => f.draft.is_string(),
    }
}

fn samples_of(t: &Task, q: &Query) -> Result<(Vec<Sample>, bool), Excluded> {
    // (outcome, by, at, approved values?)
    let escalation = t
        .acts
        .iter()
        .find(|a| a.decision == "escalate" && by_person(a));
    let (outcome, by, at_ms) = if let Some(a) = escalation {
        (Outcome::Escalated, a.actor.clone(), a.at_ms)
    } else {
        let last = t.acts.last();
        let outcome = match t.state {
            State::Pending => return Err(Excluded::Undecided),
            State::Approved => Outcome::Approved,
            State::Rejected => Outcome::Rejected,
            State::HandedOff => Outcome::HandedOff,
        };
        let Some(last) = last else {
            return Err(Excluded::Undecided);
        };
        let deciding: Vec<&Act> = match outcome {
            Outcome::Approved => t.acts.iter().filter(|a| a.decision == "approve").collect(),
            _ => vec![last],
        };
        if deciding.iter().any(|a| !by_person(a)) {
            return Err(Excluded::Expired);
        }
        if deciding.iter().any(|a| is_bulk(a.comment.as_deref())) {
            return Err(Excluded::Bulk);
        }
        (outcome, last.actor.clone(), last.at_ms)
    };
    if q.since_ms.is_some_and(|s| at_ms < s) {
        return Err(Excluded::BeforeWindow);
    }
    let mut found = false;
    let mut slice = |f: &Field| -> Option<String> {
        let by = q.by.as_deref()?;
        let v = if by == PROVIDER || by == MODEL {
            model_of(t, &f.step, by)
        } else {
            draft_of(t, by)
        };
        found |= v.is_some();
        Some(v.unwrap_or_else(|| NONE.to_string()))
    };
    let samples = t
        .fields
        .iter()
        .map(|f| {
            let approved = (outcome == Outcome::Approved)
                .then(|| t.approved.iter().find(|a| a.field == f.name))
                .flatten();
            Sample {
                review_id: t.review_id.clone(),
                run_id: t.run_id.clone(),
                workflow: t.workflow.clone(),
                version: t.version,
                step: t.step.clone(),
                field: f.name.clone(),
                slice: slice(f),
                text: is_text(f),
                draft: f.draft.clone(),
                // An approval without a stored value for a field leaves the
                // draft (the engine stores every field; this is defensive).
                value: (outcome == Outcome::Approved)
                    .then(|| approved.map_or_else(|| f.draft.clone(), |a| a.value.clone())),
                outcome,
                by: approved.map_or_else(|| by.clone(), |a| a.by.clone()),
                at_ms,
            }
        })
        .collect::<Vec<_>>();
    Ok((samples, found))
}

/// The provider or model that drafted fields of `step`.
fn model_of(t: &Task, step: &str, by: &str) -> Option<String> {
    let (provider, model) = t.models.get(step)?;
    if by == PROVIDER {
        provider.clone()
    } else {
        model.clone()
    }
}

/// The draft of the reviewed field named `by`, as text (`None` when the
/// task has no such field or its draft is `null`).
fn draft_of(t: &Task, by: &str) -> Option<String> {
    match &t.fields.iter().find(|f| f.name == by)?.draft {
        Json::Null => None,
        Json::String(s) => Some(s.clone()),
        other => Some(other.to_string()),
    }
}

// ---------------------------------------------------------------- figures

/// A Wilson score interval.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Interval {
    pub low: f64,
    pub high: f64,
}

/// The 95 % Wilson score interval of `k` successes in `n` trials;
/// `None` when `n` is 0.
pub fn wilson(k: u64, n: u64) -> Option<Interval> {
    if n == 0 {
        return None;
    }
    let n = n as f64;
    let p = k.min(n as u64) as f64 / n;
    let z2 = Z95 * Z95;
    let denom = 1.0 + z2 / n;
    let centre = (p + z2 / (2.0 * n)) / denom;
    let half = Z95 * (p * (1.0 - p) / n + z2 / (4.0 * n * n)).sqrt() / denom;
    Some(Interval {
        low: (centre - half).max(0.0),
        high: (centre + half).min(1.0),
    })
}

/// Counts of one group of samples.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Tally {
    pub n: u64,
    pub agree: u64,
    /// Of those, how many by outcome.
    pub approved: u64,
    pub rejected: u64,
    pub escalated: u64,
    pub handed_off: u64,
    /// Free text only: agreement after normalising.
    pub agree_normalised: u64,
    /// Free text only: edit distances summed over approved samples, and
    /// how many there were.
    pub distance_sum: u64,
    pub distances: u64,
}

impl Tally {
    /// Counts one sample.
    pub fn add(&mut self, s: &Sample) {
        self.n += 1;
        self.agree += u64::from(s.agrees());
        match s.outcome {
            Outcome::Approved => self.approved += 1,
            Outcome::Rejected => self.rejected += 1,
            Outcome::Escalated => self.escalated += 1,
            Outcome::HandedOff => self.handed_off += 1,
        }
        if s.text {
            self.agree_normalised += u64::from(s.agrees_normalised());
            if let Some(d) = s.edit_distance() {
                self.distance_sum += d as u64;
                self.distances += 1;
            }
        }
    }

    /// The share of samples where the approved value equals the draft.
    pub fn agreement(&self) -> Option<f64> {
        (self.n > 0).then(|| self.agree as f64 / self.n as f64)
    }

    pub fn interval(&self) -> Option<Interval> {
        wilson(self.agree, self.n)
    }

    pub fn normalised_agreement(&self) -> Option<f64> {
        (self.n > 0).then(|| self.agree_normalised as f64 / self.n as f64)
    }

    pub fn mean_edit_distance(&self) -> Option<f64> {
        (self.distances > 0).then(|| self.distance_sum as f64 / self.distances as f64)
    }
}

/// What one row measures.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Key {
    pub workflow: String,
    pub version: i64,
    pub step: String,
    pub field: String,
    pub slice: Option<String>,
}

/// One field's measure (of one slice), overall and per week.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    pub key: Key,
    pub text: bool,
    pub total: Tally,
    /// `(Monday 00:00 UTC of the week, tally)`, oldest first, weeks with
    /// evidence only.
    pub weeks: Vec<(i64, Tally)>,
    /// The order the fields have on the task (rows of a step keep it).
    pub position: usize,
}

/// Monday 00:00 UTC of the week holding `at_ms`.
pub fn week_of(at_ms: i64) -> i64 {
    at_ms - (at_ms - FIRST_MONDAY_MS).rem_euclid(WEEK_MS)
}

/// Groups samples into rows: by workflow, version, step, slice, then the
/// fields in the order the task lists them.
pub fn rows(samples: &[Sample]) -> Vec<Row> {
    let mut order: BTreeMap<(String, i64, String), Vec<String>> = BTreeMap::new();
    let mut groups: BTreeMap<Key, (bool, Tally, BTreeMap<i64, Tally>)> = BTreeMap::new();
    for s in samples {
        let fields = order
            .entry((s.workflow.clone(), s.version, s.step.clone()))
            .or_default();
        if !fields.contains(&s.field) {
            fields.push(s.field.clone());
        }
        let key = Key {
            workflow: s.workflow.clone(),
            version: s.version,
            step: s.step.clone(),
            field: s.field.clone(),
            slice: s.slice.clone(),
        };
        let g = groups.entry(key).or_default();
        g.0 |= s.text;
        g.1.add(s);
        g.2.entry(week_of(s.at_ms)).or_default().add(s);
    }
    let mut rows: Vec<Row> = groups
        .into_iter()
        .map(|(key, (text, total, weeks))| Row {
            position: order
                .get(&(key.workflow.clone(), key.version, key.step.clone()))
                .and_then(|f| f.iter().position(|n| *n == key.field))
                .unwrap_or(usize::MAX),
            key,
            text,
            total,
            weeks: weeks.into_iter().collect(),
        })
        .collect();
    rows.sort_by(|a, b| {
        (
            &a.key.workflow,
            a.key.version,
            &a.key.step,
            &a.key.slice,
            a.position,
        )
            .cmp(&(
                &b.key.workflow,
                b.key.version,
                &b.key.step,
                &b.key.slice,
                b.position,
            ))
    });
    rows
}

/// The latest approved changes (draft ≠ approved value), newest first.
pub fn latest_changes(samples: &[Sample], limit: usize) -> Vec<&Sample> {
    let mut changed: Vec<&Sample> = samples
        .iter()
        .filter(|s| s.value.is_some() && !s.agrees())
        .collect();
    changed
        .sort_by(|a, b| (b.at_ms, &b.review_id, &a.field).cmp(&(a.at_ms, &a.review_id, &b.field)));
    changed.truncate(limit);
    changed
}

// ---------------------------------------------------------------- text

/// Trimmed, runs of whitespace as one space, case-folded.
pub fn normalise(s: &str) -> String {
    s.split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .to_lowercase()
}

/// Levenshtein distance in characters. The common prefix and suffix are
/// skipped first, so a local edit of a long text costs little.
pub fn levenshtein(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let prefix = a.iter().zip(&b).take_while(|(x, y)| x == y).count();
    let (a, b) = (&a[prefix..], &b[prefix..]);
    let suffix = a
        .iter()
        .rev()
        .zip(b.iter().rev())
        .take_while(|(x, y)| x == y)
        .count();
    let (a, b) = (&a[..a.len() - suffix], &b[..b.len() - suffix]);
    if a.is_empty() || b.is_empty() {
        return a.len().max(b.len());
    }
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    let mut cur = vec![0; b.len() + 1];
    for (i, ca) in a.iter().enumerate() {
        cur[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != cb);
            cur[j + 1] = (prev[j] + cost).min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        std::mem::swap(&mut prev, &mut cur);
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn field(name: &str, draft: Json, schema: Option<Json>) -> Field {
        Field {
            name: name.into(),
            step: "triage".into(),
            draft,
            schema,
        }
    }

    fn act(actor: &str, decision: &str, at_ms: i64) -> Act {
        Act {
            actor: actor.into(),
            decision: decision.into(),
            comment: None,
            at_ms,
        }
    }

    /// A task drafting `intent` (an enum) and `summary` (free text),
    /// approved by ann at `at` with `edits`.
    fn approved(id: &str, intent: &str, edits: &[(&str, Json)], at: i64) -> Task {
        let fields = vec![
            field("intent", json!(intent), Some(json!({ "enum": ["a", "b"] }))),
            field(
                "summary",
                json!("The draft."),
                Some(json!({ "type": "string" })),
            ),
        ];
        Task {
            review_id: id.into(),
            run_id: format!("run-{id}"),
            workflow: "w".into(),
            version: 1,
            step: "review".into(),
            state: State::Approved,
            approved: fields
                .iter()
                .map(|f| Approved {
                    field: f.name.clone(),
                    value: edits
                        .iter()
                        .find(|(n, _)| *n == f.name)
                        .map_or_else(|| f.draft.clone(), |(_, v)| v.clone()),
                    by: "user:ann".into(),
                    at_ms: at,
                })
                .collect(),
            fields,
            acts: vec![act("user:ann", "approve", at)],
            models: BTreeMap::from([(
                "triage".to_string(),
                (Some("openai".to_string()), Some("gpt".to_string())),
            )]),
        }
    }

    #[test]
    fn ninety_seven_of_a_hundred_is_the_check_value() {
        let tasks: Vec<Task> = (0..100)
            .map(|i| {
                let edits = if i < 3 {
                    vec![("intent", json!("b"))]
                } else {
                    vec![]
                };
                approved(&format!("t{i:03}"), "a", &edits, 1_000 + i)
            })
            .collect();
        let ev = evidence(&tasks, &Query::default());
        let rows = rows(&ev.samples);
        let intent = &rows[0];
        assert_eq!(
            (
                intent.key.field.as_str(),
                intent.total.n,
                intent.total.agree
            ),
            ("intent", 100, 97)
        );
        let i = intent.total.interval().unwrap();
        assert_eq!(
            (four(i.low), four(i.high)),
            ("0.9155".into(), "0.9897".into())
        );
        assert_eq!(rows[1].key.field, "summary", "fields keep the task's order");
    }

    #[test]
    fn evidence_rules_count_people_and_leave_out_deadlines_and_bulk() {
        let at = 10_000;
        let mut rejected = approved("rej", "a", &[], at);
        rejected.state = State::Rejected;
        rejected.approved.clear();
        rejected.acts = vec![act("user:bob", "reject", at)];
        // Escalated by a person, then approved unchanged: disagreement.
        let mut escalated = approved("esc", "a", &[], at + 5);
        escalated.acts.insert(0, act("user:bob", "escalate", at));
        // Escalated by the deadline, then approved by a person: counts as
        // that person's approval.
        let mut late = approved("late", "a", &[], at + 5);
        late.acts.insert(0, act(SYSTEM, "escalate", at));
        let mut expired = approved("exp", "a", &[], at);
        expired.acts = vec![act(SYSTEM, "approve", at)];
        let mut auto_rejected = approved("exp2", "a", &[], at);
        auto_rejected.state = State::Rejected;
        auto_rejected.acts = vec![act(SYSTEM, "reject", at)];
        let mut bulk = approved("bulk", "a", &[], at);
        bulk.acts[0].comment = Some(crate::review::bulk_comment(false, 5));
        let mut pending = approved("pend", "a", &[], at);
        pending.state = State::Pending;
        pending.acts.clear();
        let old = approved("old", "a", &[], at - 1);
        let edited = approved("edit", "b", &[("summary", json!("  the DRAFT. "))], at);
        let tasks = [
            rejected,
            escalated,
            late,
            expired,
            auto_rejected,
            bulk,
            pending,
            old,
            edited,
        ];
        let ev = evidence(
            &tasks,
            &Query {
                since_ms: Some(at),
                by: Some("intent".into()),
            },
        );
        assert_eq!(ev.tasks, 4);
        assert!(ev.slice_found);
        assert_eq!(
            ev.excluded,
            BTreeMap::from([
                (Excluded::Undecided, 1),
                (Excluded::Expired, 2),
                (Excluded::Bulk, 1),
                (Excluded::BeforeWindow, 1),
            ])
        );
        type Seen<'a> = (
            &'a str,
            &'a str,
            Outcome,
            bool,
            bool,
            Option<usize>,
            Option<&'a str>,
        );
        let seen: Vec<Seen<'_>> = ev
            .samples
            .iter()
            .map(|s| {
                (
                    s.review_id.as_str(),
                    s.field.as_str(),
                    s.outcome,
                    s.agrees(),
                    s.agrees_normalised(),
                    s.edit_distance(),
                    s.slice.as_deref(),
                )
            })
            .collect();
        assert_eq!(
            seen,
            [
                (
                    "rej",
                    "intent",
                    Outcome::Rejected,
                    false,
                    false,
                    None,
                    Some("a")
                ),
                (
                    "rej",
                    "summary",
                    Outcome::Rejected,
                    false,
                    false,
                    None,
                    Some("a")
                ),
                (
                    "esc",
                    "intent",
                    Outcome::Escalated,
                    false,
                    false,
                    None,
                    Some("a")
                ),
                (
                    "esc",
                    "summary",
                    Outcome::Escalated,
                    false,
                    false,
                    None,
                    Some("a")
                ),
                (
                    "late",
                    "intent",
                    Outcome::Approved,
                    true,
                    true,
                    None,
                    Some("a")
                ),
                (
                    "late",
                    "summary",
                    Outcome::Approved,
                    true,
                    true,
                    Some(0),
                    Some("a")
                ),
                (
                    "edit",
                    "intent",
                    Outcome::Approved,
                    true,
                    true,
                    None,
                    Some("b")
                ),
                (
                    "edit",
                    "summary",
                    Outcome::Approved,
                    false,
                    true,
                    Some(9),
                    Some("b")
                ),
            ]
        );
        assert_eq!(
            ev.samples[2].at_ms, at,
            "an escalation counts when it happened"
        );
        let by_model = evidence(
            &tasks[8..],
            &Query {
                since_ms: None,
                by: Some(MODEL.into()),
            },
        );
        assert_eq!(by_model.samples[0].slice.as_deref(), Some("gpt"));
        let nothing = evidence(
            &tasks[8..],
            &Query {
                since_ms: None,
                by: Some("colour".into()),
            },
        );
        assert!(!nothing.slice_found);
        assert_eq!(nothing.samples[0].slice.as_deref(), Some(NONE));
    }

    #[test]
    fn free_text_is_a_string_without_an_enum() {
        assert!(is_text(&field("s", json!("x"), None)));
        assert!(!is_text(&field("n", json!(3), None)));
        assert!(is_text(&field(
            "s",
            Json::Null,
            Some(json!({ "type": ["string", "null"] }))
        )));
        assert!(!is_text(&field(
            "e",
            json!("a"),
            Some(json!({ "type": "string", "enum": ["a"] }))
        )));
        assert!(!is_text(&field(
            "e",
            json!("a"),
            Some(json!({ "enum": ["a"] }))
        )));
    }

    fn four(x: f64) -> String {
        format!("{x:.4}")
    }

    #[test]
    fn wilson_matches_the_issue_check_value() {
        let i = wilson(97, 100).unwrap();
        assert_eq!(
            (four(i.low), four(i.high)),
            ("0.9155".into(), "0.9897".into())
        );
        let all = wilson(10, 10).unwrap();
        assert_eq!(
            (four(all.low), four(all.high)),
            ("0.7225".into(), "1.0000".into())
        );
        let none = wilson(0, 10).unwrap();
        assert_eq!(
            (four(none.low), four(none.high)),
            ("0.0000".into(), "0.2775".into())
        );
        assert_eq!(wilson(0, 0), None);
    }

    #[test]
    fn text_compares_normalised_and_counts_edits() {
        assert_eq!(normalise("  Hello\n\tWORLD  "), "hello world");
        assert_eq!(levenshtein("kitten", "sitting"), 3);
        assert_eq!(levenshtein("", "abc"), 3);
        assert_eq!(levenshtein("same", "same"), 0);
        assert_eq!(
            levenshtein("a long shared text, x", "a long shared text, yz"),
            2
        );
        assert_eq!(levenshtein("héllo", "hello"), 1, "characters, not bytes");
    }

    #[test]
    fn weeks_start_on_monday_utc() {
        // 2026-11-04 is a Wednesday; its week starts Monday 2026-11-02.
        let wed = 1_793_750_400_000 + 12 * 3_600_000; // 2026-11-04T12:00Z
        let monday = 1_793_577_600_000; // 2026-11-02T00:00Z
        assert_eq!(week_of(wed), monday);
        assert_eq!(week_of(monday), monday);
        assert_eq!(week_of(monday - 1), monday - WEEK_MS);
    }
}
