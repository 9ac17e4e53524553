//! Agreement between people and the AI, measured (DESIGN §8): the report
//! shared by `GET /api/v1/calibration`, `countersign calibration` (table
//! or `--json`) and the console's `/calibration` page.
//!
//! The figures come from `domain::calibration` (evidence rules, Wilson
//! interval, weekly buckets) over the tasks `engine::calibration::measure`
//! reads; this module only checks the parameters and shapes the wire
//! type. Shares are rounded to four decimals.

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use domain::calibration::{self, Excluded, Row, Sample, Tally};
use engine::calibration::{Measured, Scope};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};

use crate::AppState;
use crate::auth::{Caller, Scope as TokenScope};
use crate::error::{ApiError, FieldProblem, Problem};
use crate::export::parse_time;
use crate::views::rfc3339;

/// Latest changes a report lists.
pub const CHANGES: usize = 20;

/// A 95 % Wilson score interval.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, ToSchema)]
pub struct IntervalView {
    pub low: f64,
    pub high: f64,
}

/// How the counted reviews ended.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct OutcomeCounts {
    pub approved: u64,
    pub rejected: u64,
    pub escalated: u64,
    pub handed_off: u64,
}

/// Agreement over one week (Monday to Sunday, UTC).
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct WeekAgreement {
    /// The Monday the week starts on: `2026-11-02`.
    pub week: String,
    /// That Monday 00:00 UTC in milliseconds since the epoch.
    pub week_ms: i64,
    pub reviews: u64,
    pub agreed: u64,
    pub agreement: f64,
    pub interval: IntervalView,
}

/// One field's agreement (of one slice).
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct FieldAgreement {
    pub workflow: String,
    pub version: i64,
    /// The version's SHA-256 (workflow file and the prompts it includes).
    pub version_hash: Option<String>,
    /// The review step's id.
    pub step: String,
    pub field: String,
    /// The slice value with `by` (`(none)`: the task had none).
    pub slice: Option<String>,
    /// Free text: a string field without an `enum`.
    pub text: bool,
    /// Reviews counted.
    pub reviews: u64,
    /// Of those, approved with the draft exactly as it was.
    pub agreed: u64,
    /// `agreed / reviews`.
    pub agreement: f64,
    pub interval: IntervalView,
    pub outcomes: OutcomeCounts,
    /// Free text: agreement after trimming, collapsing whitespace and
    /// case-folding.
    pub normalised_agreement: Option<f64>,
    /// Free text: mean Levenshtein distance (characters) from draft to
    /// approved text, over approved reviews.
    pub mean_edit_distance: Option<f64>,
    /// Weeks with evidence, oldest first.
    pub weeks: Vec<WeekAgreement>,
}

/// An approved value that differs from the draft.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct Change {
    pub review_id: String,
    pub run_id: String,
    pub workflow: String,
    pub version: i64,
    pub step: String,
    pub field: String,
    #[schema(value_type = Object)]
    pub draft: Value,
    #[schema(value_type = Object)]
    pub value: Value,
    /// Who set the value.
    pub by: String,
    /// RFC 3339 UTC.
    pub at: String,
    pub at_ms: i64,
}

/// Reviews that are not evidence, by why.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct ExcludedCounts {
    /// Still pending (never escalated by a person).
    pub undecided: u64,
    /// Decided by the deadline policy.
    pub expired: u64,
    /// Approved or rejected in bulk.
    pub bulk: u64,
    /// Decided before `since`.
    pub before_window: u64,
}

/// The agreement report.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct CalibrationReport {
    pub workflow: Option<String>,
    /// The window's start (RFC 3339), when one was given.
    pub since: Option<String>,
    pub by: Option<String>,
    /// Reviews counted as evidence.
    pub reviews: u64,
    pub excluded: ExcludedCounts,
    /// The newest `engine::calibration::READ_LIMIT` reviews were read; older
    /// ones are not in the figures.
    pub truncated: bool,
    /// By workflow, version, step, slice, then field in the task's order.
    pub fields: Vec<FieldAgreement>,
    /// The latest approved edits, newest first.
    pub changes: Vec<Change>,
}

fn round4(x: f64) -> f64 {
    (x * 10_000.0).round() / 10_000.0
}

fn interval(t: &Tally) -> IntervalView {
    let i = t.interval().unwrap_or(calibration::Interval {
        low: 0.0,
        high: 1.0,
    });
    IntervalView {
        low: round4(i.low),
        high: round4(i.high),
    }
}

fn field_row(m: &Measured, r: &Row) -> FieldAgreement {
    let t = &r.total;
    FieldAgreement {
        workflow: r.key.workflow.clone(),
        version: r.key.version,
        version_hash: m
            .hashes
            .get(&(r.key.workflow.clone(), r.key.version))
            .cloned(),
        step: r.key.step.clone(),
        field: r.key.field.clone(),
        slice: r.key.slice.clone(),
        text: r.text,
        reviews: t.n,
        agreed: t.agree,
        agreement: round4(t.agreement().unwrap_or(0.0)),
        interval: interval(t),
        outcomes: OutcomeCounts {
            approved: t.approved,
            rejected: t.rejected,
            escalated: t.escalated,
            handed_off: t.handed_off,
        },
        normalised_agreement: r
            .text
            .then(|| t.normalised_agreement().map(round4))
            .flatten(),
        mean_edit_distance: r.text.then(|| t.mean_edit_distance().map(round4)).flatten(),
        weeks: r
            .weeks
            .iter()
            .map(|(week_ms, w)| WeekAgreement {
                week: rfc3339(*week_ms).chars().take(10).collect(),
                week_ms: *week_ms,
                reviews: w.n,
                agreed: w.agree,
                agreement: round4(w.agreement().unwrap_or(0.0)),
                interval: interval(w),
            })
            .collect(),
    }
}

fn change(s: &Sample) -> Change {
    Change {
        review_id: s.review_id.clone(),
        run_id: s.run_id.clone(),
        workflow: s.workflow.clone(),
        version: s.version,
        step: s.step.clone(),
        field: s.field.clone(),
        draft: s.draft.clone(),
        value: s.value.clone().unwrap_or(Value::Null),
        by: s.by.clone(),
        at: rfc3339(s.at_ms),
        at_ms: s.at_ms,
    }
}

/// The report of a measure.
pub fn report(scope: &Scope, m: &Measured) -> CalibrationReport {
    let ev = &m.evidence;
    let excluded = |e: Excluded| ev.excluded.get(&e).copied().unwrap_or(0);
    CalibrationReport {
        workflow: scope.workflow.clone(),
        since: scope.since_ms.map(rfc3339),
        by: scope.by.clone(),
        reviews: ev.tasks,
        excluded: ExcludedCounts {
            undecided: excluded(Excluded::Undecided),
            expired: excluded(Excluded::Expired),
            bulk: excluded(Excluded::Bulk),
            before_window: excluded(Excluded::BeforeWindow),
        },
        truncated: m.truncated,
        fields: calibration::rows(&ev.samples)
            .iter()
            .map(|r| field_row(m, r))
            .collect(),
        changes: calibration::latest_changes(&ev.samples, CHANGES)
            .into_iter()
            .map(change)
            .collect(),
    }
}

/// Why a slice name is refused: not a name, or nothing counted has it.
pub fn check_by(by: &str) -> Result<(), String> {
    let ok = !by.is_empty()
        && by.len() <= 64
        && by
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{by:?} is not a field name: use provider, model or a reviewed field such as intent"
        ))
    }
}

/// The message for a slice no counted review has.
pub fn unknown_by(by: &str, m: &Measured) -> String {
    let mut fields: Vec<&str> = m
        .evidence
        .samples
        .iter()
        .map(|s| s.field.as_str())
        .collect();
    fields.sort_unstable();
    fields.dedup();
    format!(
        "no counted review has a field named `{by}`; slice by provider, model or a reviewed field ({})",
        fields.join(", ")
    )
}

/// Parses `since` (a time or an age such as `30d`), relative to `now_ms`.
pub fn parse_since(raw: &str, now_ms: i64) -> Result<i64, String> {
    parse_time(raw, now_ms)
}

/// The parameters of `GET /api/v1/calibration`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct CalibrationQuery {
    /// Only reviews of this workflow.
    #[serde(default, deserialize_with = "crate::views::empty_as_none")]
    pub workflow: Option<String>,
    /// Only reviews decided at or after this time: RFC 3339, a date
    /// (midnight UTC), milliseconds since the epoch, or an age such as
    /// `30d` (default: all).
    #[serde(default, deserialize_with = "crate::views::empty_as_none")]
    pub since: Option<String>,
    /// Slice by `provider`, `model` or a reviewed field's draft (an enum
    /// field such as `intent`).
    #[serde(default, deserialize_with = "crate::views::empty_as_none")]
    pub by: Option<String>,
}

/// How often people approve the AI's drafts unchanged, per workflow,
/// version, review step and field (optionally sliced), with a 95 % Wilson
/// interval, weekly figures and the latest edits. Evidence: reviews a
/// person approved, rejected, escalated or handed off (the last three
/// count as disagreement on every field); reviews decided by a deadline or
/// in bulk do not count. A caller limited to review queues measures the
/// reviews of those queues only.
#[utoipa::path(
    get,
    path = "/api/v1/calibration",
    tag = "runs",
    params(CalibrationQuery),
    responses(
        (status = 200, description = "The agreement report", body = CalibrationReport),
        (status = 400, description = "Bad parameter; `errors` names it", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Missing or unknown token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Token lacks `runs:read`", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The store does not answer; retry", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = ["runs:read"]))
)]
pub async fn calibration(
    State(state): State<AppState>,
    caller: Caller,
    query: Result<Query<CalibrationQuery>, QueryRejection>,
) -> Result<Json<CalibrationReport>, ApiError> {
    caller.require(TokenScope::RunsRead)?;
    let Query(q) = query.map_err(crate::runs::query_rejection)?;
    let bad = |name: &str, e: String| ApiError::BadRequest(FieldProblem::parameter(name, e));
    let since_ms = q
        .since
        .as_deref()
        .map(|s| parse_since(s, engine::now_ms()).map_err(|e| bad("since", e)))
        .transpose()?;
    if let Some(by) = q.by.as_deref() {
        check_by(by).map_err(|e| bad("by", e))?;
    }
    let scope = Scope {
        workflow: q.workflow,
        since_ms,
        queues: caller.decider().queues,
        by: q.by,
    };
    let measured = engine::calibration::measure(state.engine.store().as_ref(), &scope).await?;
    if let Some(by) = scope.by.as_deref()
        && measured.unknown_slice()
    {
        return Err(bad("by", unknown_by(by, &measured)));
    }
    Ok(Json(report(&scope, &measured)))
}

/// The reviews left out, in words (`1 decided by a deadline, 2 decided in
/// bulk`); empty when none was.
pub fn not_counted(e: &ExcludedCounts) -> String {
    [
        (e.expired, "decided by a deadline"),
        (e.bulk, "decided in bulk"),
        (e.undecided, "pending"),
        (e.before_window, "decided before the window"),
    ]
    .iter()
    .filter(|(n, _)| *n > 0)
    .map(|(n, what)| format!("{n} {what}"))
    .collect::<Vec<_>>()
    .join(", ")
}

/// A share as the table shows it: `0.9700`.
fn share(x: f64) -> String {
    format!("{x:.4}")
}

/// The report as a plain-text table for the terminal: one block per
/// workflow version and step, one line per field (and slice).
pub fn table(r: &CalibrationReport) -> String {
    let mut out = String::new();
    let sliced = r.by.is_some();
    let mut block: Option<(&str, i64, &str)> = None;
    let mut lines: Vec<[String; 7]> = Vec::new();
    let flush = |out: &mut String, lines: &mut Vec<[String; 7]>| {
        if lines.is_empty() {
            return;
        }
        let mut head = [
            "field".to_string(),
            r.by.clone().unwrap_or_default(),
            "reviews".into(),
            "agreement".into(),
            "95% interval".into(),
            "normalised".into(),
            "mean edits".into(),
        ];
        if !sliced {
            head[1].clear();
        }
        let all: Vec<&[String; 7]> = std::iter::once(&head).chain(lines.iter()).collect();
        let widths: Vec<usize> = (0..7)
            .map(|i| all.iter().map(|l| l[i].chars().count()).max().unwrap_or(0))
            .collect();
        for l in all {
            let mut line = String::new();
            for (i, cell) in l.iter().enumerate() {
                if i == 1 && !sliced {
                    continue;
                }
                let pad = widths[i] - cell.chars().count();
                if i >= 2 {
                    line.push_str(&" ".repeat(pad));
                    line.push_str(cell);
                } else {
                    line.push_str(cell);
                    line.push_str(&" ".repeat(pad));
                }
                line.push_str("  ");
            }
            out.push_str(line.trim_end());
            out.push('\n');
        }
        lines.clear();
    };
    for f in &r.fields {
        let key = (f.workflow.as_str(), f.version, f.step.as_str());
        if block != Some(key) {
            flush(&mut out, &mut lines);
            if block.is_some() {
                out.push('\n');
            }
            let hash = f
                .version_hash
                .as_deref()
                .map(|h| format!(" ({})", h.chars().take(12).collect::<String>()))
                .unwrap_or_default();
            out.push_str(&format!(
                "{} · version {}{hash} · step {}\n",
                f.workflow, f.version, f.step
            ));
            block = Some(key);
        }
        let dash = || "-".to_string();
        lines.push([
            f.field.clone(),
            f.slice.clone().unwrap_or_default(),
            f.reviews.to_string(),
            share(f.agreement),
            format!("[{}, {}]", share(f.interval.low), share(f.interval.high)),
            f.normalised_agreement.map_or_else(dash, share),
            f.mean_edit_distance
                .map_or_else(dash, |d| format!("{d:.1}")),
        ]);
    }
    flush(&mut out, &mut lines);
    if r.fields.is_empty() {
        out.push_str("No decided review counts as evidence yet");
        out.push_str(if r.workflow.is_some() || r.since.is_some() {
            " in this selection.\n"
        } else {
            ".\n"
        });
    }
    let not = not_counted(&r.excluded);
    out.push_str(&format!(
        "\n{} review{} counted{}.\n",
        r.reviews,
        if r.reviews == 1 { "" } else { "s" },
        if not.is_empty() {
            String::new()
        } else {
            format!("; not counted: {not}")
        }
    ));
    if r.truncated {
        out.push_str(&format!(
            "Only the newest {} reviews were read; narrow with --workflow or --since.\n",
            engine::calibration::READ_LIMIT
        ));
    }
    out
}
