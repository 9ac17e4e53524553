//! The operations console: the home page (counts and charts), the runs
//! list with filters and the run page (the nine answers, timeline, AI
//! calls, effects, diagram, event log), and the admin's Retry and Cancel.
//!
//! Every signed-in person may read; only admins act, through a form
//! behind a confirmation (`<details>`, no script needed), checked for
//! CSRF and origin; the engine records an audit event naming them.
//!
//! Queues: admins and viewers read every run. A reviewer, limited to
//! their queues, reads a run only when one of its review tasks is in
//! them (a run that never reached review counts as the `default` queue's),
//! sees only their queues on the home page, and not the runs list, which
//! spans every queue (as the outbox does).
//!
//! Filters the store cannot answer yet (date range, free text, waiting
//! for review) are a bounded scan over the newest runs ([`SCAN_LIMIT`]);
//! the page says when the scan stopped short.

use std::collections::{BTreeMap, HashMap, HashSet};

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use chrono::{NaiveDate, NaiveTime};
use serde::{Deserialize, Serialize};
use store::{
    OpResult, ReviewFilter, ReviewStatus, Run, RunFilter, RunStatus, UserRole, WaitReason,
};

use super::chart::{Chart, bars};
use super::inbox::encode;
use super::run_view::{self, RunFacts, Sources, StepInfo};
use super::session::WebUser;
use super::ui::{self, Me, span};
use super::{message, see_other};
use crate::AppState;

/// Rows on one page of the runs list.
const ROWS: usize = 50;
/// Runs read at most for one page of a filtered list or the home counts.
const SCAN_LIMIT: usize = 5_000;
/// Runs read per store call while scanning.
const SCAN_PAGE: usize = 200;
/// Status counts above this show as "N+".
const COUNT_CAP: usize = 1_000;
/// Events read for one run page.
const EVENTS_LIMIT: usize = 2_000;
const DAY_MS: i64 = 86_400_000;

fn is_admin(u: &WebUser) -> bool {
    u.user.role == UserRole::Admin
}

fn limited(u: &WebUser) -> Option<&[String]> {
    (u.user.role == UserRole::Reviewer).then_some(u.user.queues.as_slice())
}

fn unavailable(user: &WebUser, what: &str, e: &dyn std::fmt::Display) -> Response {
    tracing::warn!(error = %e, "{what} failed");
    message(
        StatusCode::SERVICE_UNAVAILABLE,
        "Unavailable",
        "This page cannot be read right now. The error was logged.",
        user.header(),
    )
}

// ---------------------------------------------------------------- list

/// The runs list's filters, kept in the URL.
#[derive(Debug, Default, Clone, Deserialize, Serialize)]
pub(crate) struct ListQuery {
    #[serde(default)]
    pub workflow: String,
    #[serde(default)]
    pub status: String,
    /// `attention` (failed) or `review` (waiting for a person).
    #[serde(default)]
    pub view: String,
    /// `YYYY-MM-DD`, UTC, inclusive.
    #[serde(default)]
    pub from: String,
    #[serde(default)]
    pub to: String,
    /// Text to find in the input.
    #[serde(default)]
    pub q: String,
    /// Cursor: runs with ids below this.
    #[serde(default)]
    pub before: String,
}

/// A checked [`ListQuery`].
#[derive(Debug, Default)]
struct Filter {
    workflow: Option<String>,
    status: Option<RunStatus>,
    review: bool,
    from_ms: Option<i64>,
    to_ms: Option<i64>,
    text: Option<String>,
}

impl Filter {
    fn parse(q: &ListQuery) -> Result<Filter, (&'static str, String)> {
        let trimmed = |s: &str| Some(s.trim().to_string()).filter(|s| !s.is_empty());
        let mut status = match trimmed(&q.status) {
            Some(s) => Some(
                s.parse::<RunStatus>()
                    .map_err(|e| ("status", e.to_string()))?,
            ),
            None => None,
        };
        let mut review = false;
        match q.view.as_str() {
            "" => {}
            "attention" => status = Some(RunStatus::Failed),
            "review" => {
                status = Some(RunStatus::Waiting);
                review = true;
            }
            _ => return Err(("view", "must be attention or review".into())),
        }
        let day = |name: &'static str,
                   s: &str,
                   end: bool|
         -> Result<Option<i64>, (&'static str, String)> {
            let Some(s) = trimmed(s) else { return Ok(None) };
            let d = NaiveDate::parse_from_str(&s, "%Y-%m-%d")
                .map_err(|_| (name, format!("“{s}” is not a date like 2026-12-31")))?;
            let t = d.and_time(NaiveTime::MIN).and_utc().timestamp_millis();
            Ok(Some(if end { t + DAY_MS } else { t }))
        };
        Ok(Filter {
            workflow: trimmed(&q.workflow),
            status,
            review,
            from_ms: day("from", &q.from, false)?,
            to_ms: day("to", &q.to, true)?,
            text: trimmed(&q.q),
        })
    }

    /// Whether the store's own filter (workflow, status, words through the
    /// full-text index) answers everything.
    fn scans(&self) -> bool {
        self.review || self.from_ms.is_some() || self.to_ms.is_some()
    }

    fn keeps(&self, r: &Run) -> bool {
        (!self.review || r.wait == Some(WaitReason::Review))
            && self.from_ms.is_none_or(|f| r.created_at_ms >= f)
            && self.to_ms.is_none_or(|t| r.created_at_ms < t)
    }
}

impl ListQuery {
    /// The query string of these filters with `before` replaced.
    fn with_before(&self, before: Option<&str>) -> String {
        let mut parts = Vec::new();
        for (k, v) in [
            ("workflow", &self.workflow),
            ("status", &self.status),
            ("view", &self.view),
            ("from", &self.from),
            ("to", &self.to),
            ("q", &self.q),
        ] {
            if !v.trim().is_empty() {
                parts.push(format!("{k}={}", encode(v.trim())));
            }
        }
        if let Some(b) = before {
            parts.push(format!("before={}", encode(b)));
        }
        format!("/runs?{}", parts.join("&"))
    }
}

/// One line of the runs list.
#[derive(Debug, Serialize)]
struct RunRow {
    id: String,
    workflow: String,
    version: i64,
    status: &'static str,
    wait: &'static str,
    outcome: String,
    error: String,
    input: String,
    created_at_ms: i64,
    age: String,
}

fn row(r: &Run, now: i64) -> RunRow {
    let input: serde_json::Value = serde_json::from_str(&r.input).unwrap_or_default();
    let input = match &input {
        serde_json::Value::Object(m) => m
            .iter()
            .take(4)
            .map(|(k, v)| format!("{k}: {}", run_view::text(v)))
            .collect::<Vec<_>>()
            .join(" · "),
        v => run_view::text(v),
    };
    RunRow {
        id: r.id.clone(),
        workflow: r.workflow.clone(),
        version: r.version,
        status: r.status.as_str(),
        wait: r.wait.map_or("", WaitReason::as_str),
        outcome: r.outcome.clone().unwrap_or_default(),
        error: r.error.clone().unwrap_or_default(),
        input: super::desk::shorten(&input, 140),
        created_at_ms: r.created_at_ms,
        age: span(now - r.created_at_ms),
    }
}

#[derive(Serialize)]
struct StatusCount {
    status: &'static str,
    count: String,
    href: String,
    current: bool,
}

#[derive(Serialize)]
struct RunsPage {
    me: Option<Me>,
    nav: &'static str,
    title: &'static str,
    q: ListQuery,
    error: Option<String>,
    workflows: Vec<String>,
    statuses: Vec<&'static str>,
    counts: Vec<StatusCount>,
    rows: Vec<RunRow>,
    older: Option<String>,
    scan_note: Option<String>,
    first_page: Option<String>,
}

/// `GET /runs`: runs newest first, filtered, a page at a time.
pub(crate) async fn list(
    State(state): State<AppState>,
    user: WebUser,
    Query(q): Query<ListQuery>,
) -> Response {
    if limited(&user).is_some() {
        return message(
            StatusCode::FORBIDDEN,
            "Not available",
            "The runs list spans every queue; it is open to admins and viewers. Your tasks are in the inbox.",
            user.header(),
        );
    }
    let now = engine::now_ms();
    let mut page = RunsPage {
        me: user.header(),
        nav: "runs",
        title: "Runs",
        q: q.clone(),
        error: None,
        workflows: state.engine.catalog().names(),
        statuses: RunStatus::ALL.iter().map(|s| s.as_str()).collect(),
        counts: Vec::new(),
        rows: Vec::new(),
        older: None,
        scan_note: None,
        first_page: (!q.before.is_empty()).then(|| q.with_before(None)),
    };
    let filter = match Filter::parse(&q) {
        Ok(f) => f,
        Err((field, why)) => {
            page.error = Some(format!("{field}: {why}"));
            return ui::render(StatusCode::BAD_REQUEST, "runs.html", page);
        }
    };
    let store = state.engine.store();
    // Counts per status (of the chosen workflow), capped.
    for s in RunStatus::ALL {
        let n = match store
            .list_runs(&RunFilter {
                workflow: filter.workflow.clone(),
                status: Some(s),
                before: None,
                text: None,
                limit: COUNT_CAP + 1,
            })
            .await
        {
            Ok(r) => r.len(),
            Err(e) => return unavailable(&user, "counting runs", &e),
        };
        page.counts.push(StatusCount {
            status: s.as_str(),
            count: if n > COUNT_CAP {
                format!("{COUNT_CAP}+")
            } else {
                n.to_string()
            },
            href: ListQuery {
                workflow: q.workflow.clone(),
                status: s.as_str().into(),
                ..ListQuery::default()
            }
            .with_before(None),
            current: filter.status == Some(s) && !filter.review,
        });
    }
    let mut before = Some(q.before.trim().to_string()).filter(|b| !b.is_empty());
    let mut scanned = 0;
    let mut rows: Vec<Run> = Vec::new();
    let mut exhausted = false;
    while rows.len() <= ROWS && scanned < SCAN_LIMIT {
        let want = if filter.scans() { SCAN_PAGE } else { ROWS + 1 };
        let batch = match store
            .list_runs(&RunFilter {
                workflow: filter.workflow.clone(),
                status: filter.status,
                before: before.clone(),
                text: filter.text.clone(),
                limit: want,
            })
            .await
        {
            Ok(b) => b,
            Err(e) => return unavailable(&user, "listing runs", &e),
        };
        scanned += batch.len();
        let short = batch.len() < want;
        before = batch.last().map(|r| r.id.clone());
        // Ids sort by creation time: past the start date, nothing older matches.
        let past = batch
            .last()
            .is_some_and(|r| filter.from_ms.is_some_and(|f| r.created_at_ms < f));
        for r in batch {
            if filter.keeps(&r) {
                rows.push(r);
                if rows.len() > ROWS {
                    break;
                }
            }
        }
        if short || past {
            exhausted = true;
            break;
        }
    }
    if rows.len() > ROWS {
        rows.truncate(ROWS);
        page.older = rows.last().map(|r| q.with_before(Some(&r.id)));
    } else if !exhausted && let Some(b) = before {
        // The scan stopped at its limit: carry on from where it stopped.
        page.scan_note = Some(format!(
            "Searched the {scanned} newest runs{}; older runs were not searched yet.",
            if q.before.is_empty() {
                ""
            } else {
                " from here"
            }
        ));
        page.older = Some(q.with_before(Some(&b)));
    }
    page.rows = rows.iter().map(|r| row(r, now)).collect();
    ui::render(StatusCode::OK, "runs.html", page)
}

// ---------------------------------------------------------------- run page

#[derive(Serialize)]
struct RunPage {
    me: Option<Me>,
    nav: &'static str,
    title: String,
    id: String,
    workflow: String,
    version: i64,
    status: &'static str,
    wait: &'static str,
    outcome: String,
    created_at_ms: i64,
    updated_at_ms: i64,
    facts: RunFacts,
    admin: bool,
    can_retry: bool,
    can_cancel: bool,
    notice: Option<String>,
    version_note: Option<String>,
    tasks: Vec<(String, String, &'static str)>,
}

#[derive(Debug, Default, Deserialize)]
pub(crate) struct RunQuery {
    /// `retried` or `cancelled`: what was just done.
    #[serde(default)]
    done: String,
}

/// `GET /runs/{id}`: one run, answered.
pub(crate) async fn page(
    State(state): State<AppState>,
    user: WebUser,
    Path(id): Path<String>,
    Query(q): Query<RunQuery>,
) -> Response {
    let store = state.engine.store();
    let detail = match store.run_detail(&id).await {
        Ok(Some(d)) => d,
        Ok(None) => {
            return message(
                StatusCode::NOT_FOUND,
                "No such run",
                "There is no run with this id.",
                user.header(),
            );
        }
        Err(e) => return unavailable(&user, "reading a run", &e),
    };
    let events = match store.events(&id, 0, EVENTS_LIMIT).await {
        Ok(e) => e,
        Err(e) => return unavailable(&user, "reading a run's events", &e),
    };
    let run = &detail.run;
    let (steps, version_note) = match state
        .engine
        .catalog()
        .version(&run.workflow, run.version)
        .await
    {
        Ok(Some(c)) => (
            c.def
                .steps
                .iter()
                .map(|s| StepInfo {
                    id: s.id.clone(),
                    kind: s.kind.clone(),
                })
                .collect::<Vec<_>>(),
            None,
        ),
        Ok(None) => (
            Vec::new(),
            Some(
                "This workflow version is no longer stored; the diagram shows the steps that ran."
                    .to_string(),
            ),
        ),
        Err(e) => {
            tracing::warn!(error = %e, workflow = %run.workflow, "reading a workflow version failed");
            (Vec::new(), Some("This workflow version could not be read; the diagram shows the steps that ran.".to_string()))
        }
    };
    // Review tasks: at most one per step.
    let mut indices: Vec<usize> = detail.steps.iter().map(|s| s.index).collect();
    indices.extend(0..steps.len());
    indices.push(run.position.index);
    indices.sort_unstable();
    indices.dedup();
    let mut reviews = Vec::new();
    for i in indices {
        match store.review_for_step(&id, i).await {
            Ok(Some(r)) => reviews.push(r),
            Ok(None) => {}
            Err(e) => return unavailable(&user, "reading a run's reviews", &e),
        }
    }
    if let Some(mine) = limited(&user)
        && !crate::identity::may_read_run(mine, &reviews)
    {
        return message(
            StatusCode::FORBIDDEN,
            "Not your queue",
            "This run belongs to a queue you do not work on.",
            user.header(),
        );
    }
    let facts = run_view::gather(&Sources {
        detail: &detail,
        events: &events,
        reviews: &reviews,
        steps: &steps,
        now_ms: engine::now_ms(),
    });
    let admin = is_admin(&user);
    let notice = match q.done.as_str() {
        "retried" => {
            Some("Retry requested: the run is queued from the step that failed.".to_string())
        }
        "cancelled" => Some("The run was cancelled.".to_string()),
        _ => None,
    };
    ui::render(
        StatusCode::OK,
        "run.html",
        RunPage {
            me: user.header(),
            nav: "runs",
            title: format!("Run {}", run.id),
            id: run.id.clone(),
            workflow: run.workflow.clone(),
            version: run.version,
            status: run.status.as_str(),
            wait: run.wait.map_or("", WaitReason::as_str),
            outcome: run.outcome.clone().unwrap_or_default(),
            created_at_ms: run.created_at_ms,
            updated_at_ms: run.updated_at_ms,
            admin,
            can_retry: admin && run.status == RunStatus::Failed,
            can_cancel: admin
                && !matches!(
                    run.status,
                    RunStatus::Completed | RunStatus::Cancelled | RunStatus::Rejected
                ),
            notice,
            version_note,
            tasks: reviews
                .iter()
                .map(|r| (r.id.clone(), r.queue.clone(), r.status.as_str()))
                .collect(),
            facts,
        },
    )
}

/// `POST /runs/{id}/retry` and `/cancel`: admins only, CSRF-checked.
async fn act(
    state: &AppState,
    user: &WebUser,
    id: &str,
    headers: &HeaderMap,
    body: &Bytes,
    retry: bool,
) -> Response {
    if let Err(res) = user.form(headers, body, "the run") {
        return res;
    }
    if !is_admin(user) {
        return message(
            StatusCode::FORBIDDEN,
            "Not allowed",
            "Only an admin may retry or cancel runs.",
            user.header(),
        );
    }
    let actor = user.user.actor();
    let r = if retry {
        state.engine.retry(id, &actor).await
    } else {
        state.engine.cancel(id, &actor).await
    };
    let verb = if retry { "retried" } else { "cancelled" };
    match r {
        Ok(OpResult::Done(_)) => see_other(&format!("/runs/{}?done={verb}", encode(id))),
        Ok(OpResult::NotFound) | Err(store::Error::NotFound) => message(
            StatusCode::NOT_FOUND,
            "No such run",
            "There is no run with this id.",
            user.header(),
        ),
        Ok(OpResult::Refused(s)) => message(
            StatusCode::CONFLICT,
            "Not possible now",
            &format!("A {} run cannot be {verb}.", s.as_str()),
            user.header(),
        ),
        Err(store::Error::Conflict(_)) => message(
            StatusCode::CONFLICT,
            "The run changed",
            "The run changed while you looked at it. Reload it and try again.",
            user.header(),
        ),
        Err(e) => unavailable(user, "an operator command", &e),
    }
}

pub(crate) async fn retry(
    State(state): State<AppState>,
    user: WebUser,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    act(&state, &user, &id, &headers, &body, true).await
}

pub(crate) async fn cancel(
    State(state): State<AppState>,
    user: WebUser,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    act(&state, &user, &id, &headers, &body, false).await
}

// ---------------------------------------------------------------- home

#[derive(Serialize)]
struct QueueRow {
    queue: String,
    depth: usize,
    oldest: String,
    href: String,
}

#[derive(Serialize)]
struct HomePage {
    me: Option<Me>,
    nav: &'static str,
    title: &'static str,
    /// False for a reviewer limited to queues: only their queues show.
    everything: bool,
    today: Chart,
    week: Chart,
    today_total: usize,
    week_total: usize,
    queues: Vec<QueueRow>,
    queue_chart: Chart,
    failed_24h: usize,
    failed_href: String,
    effect_failures: Vec<(String, usize)>,
    llm_runs: usize,
    llm_fallback_runs: usize,
    fallback_rate: String,
    /// Estimated cost of the week's answers (from `llm.responded`, last 1000).
    llm_cost: String,
    scan_note: Option<String>,
}

fn day_link(status: RunStatus, from_ms: i64) -> String {
    let from = chrono::DateTime::from_timestamp_millis(from_ms)
        .map(|d| d.format("%Y-%m-%d").to_string())
        .unwrap_or_default();
    ListQuery {
        status: status.as_str().into(),
        from,
        ..ListQuery::default()
    }
    .with_before(None)
}

fn status_chart(counts: &BTreeMap<&'static str, usize>, from_ms: i64) -> Chart {
    bars(
        RunStatus::ALL
            .iter()
            .map(|s| {
                (
                    ui::label(s.as_str()),
                    counts.get(s.as_str()).copied().unwrap_or(0),
                    day_link(*s, from_ms),
                    format!("s-{}", s.as_str()),
                )
            })
            .collect(),
    )
}

/// `GET /`: how things stand.
pub(crate) async fn home(State(state): State<AppState>, user: WebUser) -> Response {
    let now = engine::now_ms();
    let today_ms = now - now.rem_euclid(DAY_MS);
    let week_ms = today_ms - 6 * DAY_MS;
    let store = state.engine.store();
    // Runs of the last seven days, newest first, bounded.
    let mut today: BTreeMap<&'static str, usize> = BTreeMap::new();
    let mut week: BTreeMap<&'static str, usize> = BTreeMap::new();
    let mut before = None;
    let mut scanned = 0;
    let mut failed_24h = 0;
    let mut scan_note = None;
    // A reviewer sees their queues only: no counts across every run.
    let everything = limited(&user).is_none();
    'scan: loop {
        if !everything {
            break;
        }
        let batch = match store
            .list_runs(&RunFilter {
                before: before.clone(),
                limit: SCAN_PAGE,
                ..RunFilter::default()
            })
            .await
        {
            Ok(b) => b,
            Err(e) => return unavailable(&user, "counting runs", &e),
        };
        let short = batch.len() < SCAN_PAGE;
        before = batch.last().map(|r| r.id.clone());
        for r in &batch {
            if r.created_at_ms < week_ms {
                break 'scan;
            }
            *week.entry(r.status.as_str()).or_default() += 1;
            if r.created_at_ms >= today_ms {
                *today.entry(r.status.as_str()).or_default() += 1;
            }
            if r.status == RunStatus::Failed && r.updated_at_ms >= now - DAY_MS {
                failed_24h += 1;
            }
        }
        scanned += batch.len();
        if short {
            break;
        }
        if scanned >= SCAN_LIMIT {
            scan_note = Some(format!("Counted the {scanned} newest runs only."));
            break;
        }
    }
    // Review queues: depth and the oldest task's age.
    let pending = match state
        .engine
        .reviews(&ReviewFilter {
            status: Some(ReviewStatus::Pending),
            queue: None,
            queues: limited(&user).map(<[String]>::to_vec),
            before: None,
            limit: super::inbox::PENDING_WINDOW,
        })
        .await
    {
        Ok(p) => p,
        Err(e) => return unavailable(&user, "reading review queues", &e),
    };
    let mut queues: BTreeMap<String, (usize, i64)> = BTreeMap::new();
    for t in &pending {
        let e = queues.entry(t.queue.clone()).or_insert((0, i64::MAX));
        e.0 += 1;
        e.1 = e.1.min(t.created_at_ms);
    }
    let queues: Vec<QueueRow> = queues
        .into_iter()
        .map(|(q, (depth, oldest))| QueueRow {
            href: format!("/inbox?queue={}", encode(&q)),
            queue: q,
            depth,
            oldest: span(now - oldest),
        })
        .collect();
    let queue_chart = bars(
        queues
            .iter()
            .map(|q| (q.queue.clone(), q.depth, q.href.clone(), String::new()))
            .collect(),
    );
    // Effect failures in the last 24 h, by connector (the step's kind).
    let mut effect_failures: BTreeMap<String, usize> = BTreeMap::new();
    let mut workflows: HashMap<String, Option<String>> = HashMap::new();
    let effect_events = if everything {
        store
            .events_by_kind(domain::event::kind::EFFECT_FAILED, None, 200)
            .await
    } else {
        Ok(Vec::new())
    };
    match effect_events {
        Ok(evs) => {
            for e in evs.iter().filter(|e| e.at_ms >= now - DAY_MS) {
                let step = serde_json::from_str::<serde_json::Value>(&e.data)
                    .ok()
                    .and_then(|d| d["step"].as_str().map(str::to_string))
                    .unwrap_or_default();
                if !workflows.contains_key(&e.run_id) {
                    let wf = store
                        .run(&e.run_id)
                        .await
                        .ok()
                        .flatten()
                        .map(|r| r.workflow);
                    workflows.insert(e.run_id.clone(), wf);
                }
                let kind = workflows
                    .get(&e.run_id)
                    .cloned()
                    .flatten()
                    .and_then(|wf| state.engine.catalog().get(&wf))
                    .and_then(|c| {
                        c.def
                            .steps
                            .iter()
                            .find(|s| s.id == step)
                            .map(|s| s.kind.clone())
                    })
                    .unwrap_or_else(|| format!("step {step}"));
                *effect_failures.entry(kind).or_default() += 1;
            }
        }
        Err(e) => tracing::warn!(error = %e, "reading effect failures failed"),
    }
    // LLM fallback rate over the week: runs with a fallback / runs with an answer.
    let week_events = |kind: &'static str| {
        let store = store.clone();
        async move {
            if !everything {
                return Vec::new();
            }
            store
                .events_by_kind(kind, None, COUNT_CAP)
                .await
                .map(|evs| evs.into_iter().filter(|e| e.at_ms >= week_ms).collect())
                .unwrap_or_else(|e| {
                    tracing::warn!(error = %e, kind, "reading events failed");
                    Vec::new()
                })
        }
    };
    let responded = week_events("llm.responded").await;
    let cost: f64 = responded
        .iter()
        .filter_map(|e| {
            serde_json::from_str::<serde_json::Value>(&e.data)
                .ok()
                .and_then(|d| d["cost_usd"].as_f64())
        })
        .sum();
    let mut llm: HashSet<String> = responded.into_iter().map(|e| e.run_id).collect();
    llm.extend(
        week_events("llm.failed")
            .await
            .into_iter()
            .map(|e| e.run_id),
    );
    let fell_back: HashSet<String> = week_events("llm.fallback")
        .await
        .into_iter()
        .map(|e| e.run_id)
        .collect();
    let fallback_rate = if llm.is_empty() {
        "no AI calls this week".to_string()
    } else {
        format!("{:.0}%", 100.0 * fell_back.len() as f64 / llm.len() as f64)
    };
    ui::render(
        StatusCode::OK,
        "home.html",
        HomePage {
            me: user.header(),
            nav: "home",
            title: "Home",
            everything,
            today_total: today.values().sum(),
            week_total: week.values().sum(),
            today: status_chart(&today, today_ms),
            week: status_chart(&week, week_ms),
            queues,
            queue_chart,
            failed_24h,
            failed_href: ListQuery {
                view: "attention".into(),
                ..ListQuery::default()
            }
            .with_before(None),
            effect_failures: effect_failures.into_iter().collect(),
            llm_runs: llm.len(),
            llm_fallback_runs: fell_back.len(),
            fallback_rate,
            llm_cost: format!("${cost:.2}"),
            scan_note,
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_are_checked_and_kept_in_links() {
        let q = ListQuery {
            workflow: "leads".into(),
            from: "2026-12-01".into(),
            q: "a b".into(),
            ..ListQuery::default()
        };
        let f = Filter::parse(&q).unwrap();
        assert_eq!(f.from_ms, Some(1_796_083_200_000));
        assert!(f.scans());
        assert_eq!(
            q.with_before(Some("r9")),
            "/runs?workflow=leads&from=2026-12-01&q=a%20b&before=r9"
        );
        let bad = ListQuery {
            to: "yesterday".into(),
            ..ListQuery::default()
        };
        assert_eq!(Filter::parse(&bad).unwrap_err().0, "to");
        let review = Filter::parse(&ListQuery {
            view: "review".into(),
            ..ListQuery::default()
        })
        .unwrap();
        assert_eq!(
            (review.status, review.review),
            (Some(RunStatus::Waiting), true)
        );
        assert_eq!(
            Filter::parse(&ListQuery {
                status: "nope".into(),
                ..ListQuery::default()
            })
            .unwrap_err()
            .0,
            "status"
        );
    }
}
