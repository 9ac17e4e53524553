//! The console's calibration page (`/calibration`): per review step, how
//! often people approve each field's draft unchanged, with its 95 %
//! interval and a weekly bar chart (server-rendered SVG: geometry here,
//! drawing in `calibration.html`), the fields people change most, and the
//! latest edits (draft → approved value, who, when).
//!
//! Admins and viewers measure every queue; a reviewer measures the reviews
//! of their own queues only (the figures then say so).

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use engine::calibration::Scope;
use serde::{Deserialize, Serialize};
use store::UserRole;

use super::message;
use super::run_view;
use super::session::WebUser;
use super::ui::{self, Me};
use crate::AppState;
use crate::calibration::{
    CalibrationReport, FieldAgreement, check_by, not_counted, parse_since, report, unknown_by,
};

/// The page's filters, kept in the URL.
#[derive(Debug, Default, Clone, Deserialize, Serialize)]
pub(crate) struct CalibrationQuery {
    #[serde(default)]
    pub workflow: String,
    #[serde(default)]
    pub since: String,
    #[serde(default)]
    pub by: String,
}

/// One bar of a weekly chart (SVG user units), with its interval whisker.
#[derive(Debug, Serialize, PartialEq)]
struct WeekBar {
    x: i64,
    y: i64,
    w: i64,
    h: i64,
    /// The interval's ends, as y coordinates.
    low_y: i64,
    high_y: i64,
    /// The whisker's x (the bar's middle).
    mid: i64,
    title: String,
}

#[derive(Debug, Serialize, PartialEq)]
struct WeekChart {
    width: i64,
    height: i64,
    bars: Vec<WeekBar>,
    /// The first and last week shown (`2026-11-02`).
    first: String,
    last: String,
    /// y of the 100 % line and of the 50 % line.
    top: i64,
    half: i64,
}

const CHART_H: i64 = 48;
const BAR_W: i64 = 14;
const GAP: i64 = 5;
/// Weeks a chart shows at most (the latest).
const WEEKS: usize = 12;

fn y_of(share: f64) -> i64 {
    CHART_H - (share.clamp(0.0, 1.0) * (CHART_H - 2) as f64).round() as i64
}

/// Agreement per week as bars, 100 % at the top, the interval as a line.
fn week_chart(f: &FieldAgreement) -> WeekChart {
    let weeks = &f.weeks[f.weeks.len().saturating_sub(WEEKS)..];
    let bars = weeks
        .iter()
        .enumerate()
        .map(|(i, w)| {
            let x = i as i64 * (BAR_W + GAP) + 1;
            let y = y_of(w.agreement);
            WeekBar {
                x,
                y,
                w: BAR_W,
                h: CHART_H - y,
                low_y: y_of(w.interval.low),
                high_y: y_of(w.interval.high),
                mid: x + BAR_W / 2,
                title: format!(
                    "week of {}: {} of {} agreed ({}), 95% interval {}–{}",
                    w.week,
                    w.agreed,
                    w.reviews,
                    percent(w.agreement),
                    percent(w.interval.low),
                    percent(w.interval.high)
                ),
            }
        })
        .collect::<Vec<_>>();
    WeekChart {
        first: weeks.first().map(|w| w.week.clone()).unwrap_or_default(),
        last: weeks.last().map(|w| w.week.clone()).unwrap_or_default(),
        width: (bars.len() as i64 * (BAR_W + GAP)).max(BAR_W + GAP) + 2,
        height: CHART_H + 1,
        bars,
        top: y_of(1.0),
        half: y_of(0.5),
    }
}

fn percent(x: f64) -> String {
    format!("{:.1}%", x * 100.0)
}

#[derive(Debug, Serialize)]
struct FieldLine {
    field: String,
    slice: String,
    reviews: u64,
    agreed: u64,
    agreement: String,
    interval: String,
    /// Width of the agreement bar, 0–100.
    meter: i64,
    normalised: String,
    edits: String,
    outcomes: String,
    chart: WeekChart,
}

#[derive(Debug, Serialize)]
struct StepTable {
    workflow: String,
    version: i64,
    hash: String,
    step: String,
    rows: Vec<FieldLine>,
}

#[derive(Debug, Serialize)]
struct Changed {
    field: String,
    place: String,
    changed: String,
    reviews: u64,
    /// Bar width, 0–100.
    meter: i64,
}

#[derive(Debug, Serialize)]
struct Edit {
    run_id: String,
    field: String,
    draft: String,
    value: String,
    by: String,
    at_ms: i64,
}

#[derive(Serialize)]
struct CalibrationPage {
    me: Option<Me>,
    nav: &'static str,
    title: &'static str,
    q: CalibrationQuery,
    error: Option<String>,
    workflows: Vec<String>,
    limited: bool,
    reviews: u64,
    excluded: String,
    truncated: bool,
    tables: Vec<StepTable>,
    most_changed: Vec<Changed>,
    edits: Vec<Edit>,
}

fn shown(v: &serde_json::Value) -> String {
    super::desk::shorten(&run_view::text(v), 160)
}

fn page_of(r: &CalibrationReport) -> (Vec<StepTable>, Vec<Changed>, Vec<Edit>) {
    let mut tables: Vec<StepTable> = Vec::new();
    for f in &r.fields {
        let line = FieldLine {
            field: f.field.clone(),
            slice: f.slice.clone().unwrap_or_default(),
            reviews: f.reviews,
            agreed: f.agreed,
            agreement: percent(f.agreement),
            interval: format!("{}–{}", percent(f.interval.low), percent(f.interval.high)),
            meter: (f.agreement * 100.0).round() as i64,
            normalised: f.normalised_agreement.map(percent).unwrap_or_default(),
            edits: f
                .mean_edit_distance
                .map(|d| format!("{d:.1}"))
                .unwrap_or_default(),
            outcomes: [
                (f.outcomes.rejected, "rejected"),
                (f.outcomes.escalated, "escalated"),
                (f.outcomes.handed_off, "handed off"),
            ]
            .iter()
            .filter(|(n, _)| *n > 0)
            .map(|(n, what)| format!("{n} {what}"))
            .collect::<Vec<_>>()
            .join(", "),
            chart: week_chart(f),
        };
        match tables.last_mut() {
            Some(t) if t.workflow == f.workflow && t.version == f.version && t.step == f.step => {
                t.rows.push(line);
            }
            _ => tables.push(StepTable {
                workflow: f.workflow.clone(),
                version: f.version,
                hash: f
                    .version_hash
                    .as_deref()
                    .map(|h| h.chars().take(12).collect())
                    .unwrap_or_default(),
                step: f.step.clone(),
                rows: vec![line],
            }),
        }
    }
    // The fields people change most: lowest agreement first (most
    // evidence breaking ties), slices and versions as they are.
    let mut worst: Vec<&FieldAgreement> =
        r.fields.iter().filter(|f| f.agreed < f.reviews).collect();
    worst.sort_by(|a, b| {
        a.agreement
            .total_cmp(&b.agreement)
            .then(b.reviews.cmp(&a.reviews))
    });
    let most_changed = worst
        .into_iter()
        .take(8)
        .map(|f| Changed {
            field: f.field.clone(),
            place: format!(
                "{} v{} · {}{}",
                f.workflow,
                f.version,
                f.step,
                f.slice
                    .as_deref()
                    .map(|s| format!(" · {s}"))
                    .unwrap_or_default()
            ),
            changed: percent(1.0 - f.agreement),
            reviews: f.reviews,
            meter: ((1.0 - f.agreement) * 100.0).round() as i64,
        })
        .collect();
    let edits = r
        .changes
        .iter()
        .map(|c| Edit {
            run_id: c.run_id.clone(),
            field: c.field.clone(),
            draft: shown(&c.draft),
            value: shown(&c.value),
            by: c.by.strip_prefix("user:").unwrap_or(&c.by).to_string(),
            at_ms: c.at_ms,
        })
        .collect();
    (tables, most_changed, edits)
}

/// `GET /calibration`.
pub(crate) async fn page(
    State(state): State<AppState>,
    user: WebUser,
    Query(q): Query<CalibrationQuery>,
) -> Response {
    let limited = user.user.role == UserRole::Reviewer;
    let mut page = CalibrationPage {
        me: user.header(),
        nav: "calibration",
        title: "Calibration",
        q: q.clone(),
        error: None,
        workflows: state.engine.catalog().names(),
        limited,
        reviews: 0,
        excluded: String::new(),
        truncated: false,
        tables: Vec::new(),
        most_changed: Vec::new(),
        edits: Vec::new(),
    };
    let trimmed = |s: &str| Some(s.trim().to_string()).filter(|s| !s.is_empty());
    let since_ms = match trimmed(&q.since).map(|s| parse_since(&s, engine::now_ms())) {
        Some(Err(e)) => {
            page.error = Some(format!("Since: {e}"));
            return ui::render(StatusCode::BAD_REQUEST, "calibration.html", page);
        }
        Some(Ok(ms)) => Some(ms),
        None => None,
    };
    let by = trimmed(&q.by);
    if let Some(Err(e)) = by.as_deref().map(check_by) {
        page.error = Some(format!("Slice by: {e}"));
        return ui::render(StatusCode::BAD_REQUEST, "calibration.html", page);
    }
    let scope = Scope {
        workflow: trimmed(&q.workflow),
        since_ms,
        queues: limited.then(|| user.user.queues.clone()),
        by,
    };
    let measured = match engine::calibration::measure(state.engine.store().as_ref(), &scope).await {
        Ok(m) => m,
        Err(e) => {
            tracing::warn!(error = %e, "measuring calibration failed");
            return message(
                StatusCode::SERVICE_UNAVAILABLE,
                "Unavailable",
                "This page cannot be read right now. The error was logged.",
                user.header(),
            );
        }
    };
    if let Some(by) = scope.by.as_deref()
        && measured.unknown_slice()
    {
        page.error = Some(format!("Slice by: {}", unknown_by(by, &measured)));
        return ui::render(StatusCode::BAD_REQUEST, "calibration.html", page);
    }
    let r = report(&scope, &measured);
    for f in &r.fields {
        if !page.workflows.contains(&f.workflow) {
            page.workflows.push(f.workflow.clone());
        }
    }
    if let Some(w) = &scope.workflow
        && !page.workflows.contains(w)
    {
        page.workflows.push(w.clone());
    }
    page.workflows.sort();
    page.reviews = r.reviews;
    page.excluded = not_counted(&r.excluded);
    page.truncated = r.truncated;
    (page.tables, page.most_changed, page.edits) = page_of(&r);
    ui::render(StatusCode::OK, "calibration.html", page)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::calibration::{IntervalView, OutcomeCounts, WeekAgreement};

    #[test]
    fn weekly_bars_scale_to_agreement_with_the_interval_as_a_whisker() {
        let week = |n: i64, agreement: f64, low: f64, high: f64| WeekAgreement {
            week: format!("2026-11-{n:02}"),
            week_ms: n,
            reviews: 10,
            agreed: (agreement * 10.0) as u64,
            agreement,
            interval: IntervalView { low, high },
        };
        let f = FieldAgreement {
            workflow: "w".into(),
            version: 1,
            version_hash: None,
            step: "review".into(),
            field: "intent".into(),
            slice: None,
            text: false,
            reviews: 20,
            agreed: 15,
            agreement: 0.75,
            interval: IntervalView {
                low: 0.5,
                high: 0.9,
            },
            outcomes: OutcomeCounts {
                approved: 20,
                rejected: 0,
                escalated: 0,
                handed_off: 0,
            },
            normalised_agreement: None,
            mean_edit_distance: None,
            weeks: vec![week(2, 1.0, 0.7225, 1.0), week(9, 0.5, 0.2366, 0.7634)],
        };
        let c = week_chart(&f);
        let geometry: Vec<(i64, i64, i64, i64, i64)> = c
            .bars
            .iter()
            .map(|b| (b.x, b.y, b.h, b.low_y, b.high_y))
            .collect();
        assert_eq!(geometry, [(1, 2, 46, 15, 2), (20, 25, 23, 37, 13)]);
        assert_eq!((c.width, c.height, c.top, c.half), (40, 49, 2, 25));
        assert_eq!(
            (c.first.as_str(), c.last.as_str()),
            ("2026-11-02", "2026-11-09")
        );
        assert_eq!(
            c.bars[0].title,
            "week of 2026-11-02: 10 of 10 agreed (100.0%), 95% interval 72.2%–100.0%"
        );
    }
}
