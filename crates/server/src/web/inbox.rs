//! The inbox: the tasks a reviewer may work on, in the order they should
//! be worked (overdue, priority, deadline), with the sender, intent,
//! priority, confidence and the reason a person is asked; counts per
//! queue; and the Decided view (who decided what, when).
//!
//! Roles: an admin sees everything; a reviewer the queues they hold; a
//! viewer everything, deciding nothing.

use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use engine::review::Decision;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use store::{Review, ReviewFilter, ReviewStatus, User, UserRole};

use super::desk::{Order, Refusal, Request, Why, draft, percent, shorten};
use super::session::WebUser;
use super::task::after;
use super::ui::{self, Me, label, span};
use super::{message, see_other};
use crate::AppState;

/// Pending tasks read for one list (sorted in memory by [`Order`]).
pub(crate) const PENDING_WINDOW: usize = 500;
/// Rows shown on one inbox page.
const ROWS: usize = 100;

/// The inbox's filters, kept in the URL and carried to the task pages.
#[derive(Debug, Default, Clone, Deserialize)]
pub(crate) struct InboxQuery {
    pub queue: Option<String>,
    pub priority: Option<String>,
    pub sort: Option<String>,
    /// `decided` for the Decided view.
    pub view: Option<String>,
    /// Decided view: text to look for.
    pub q: Option<String>,
    /// Decided view: the next page starts below this task id.
    pub before: Option<String>,
    /// A task just decided: the confirmation shown on this page.
    pub done: Option<String>,
    /// Set when that task had been decided elsewhere before this decision.
    pub already: Option<String>,
    /// After a bulk approval: how many were approved and how many not.
    pub approved: Option<usize>,
    /// After a bulk rejection: how many were rejected.
    pub rejected: Option<usize>,
    pub skipped: Option<usize>,
}

impl InboxQuery {
    fn queue(&self) -> Option<&str> {
        self.queue.as_deref().filter(|q| !q.is_empty())
    }

    fn priority(&self) -> Option<&str> {
        self.priority.as_deref().filter(|p| !p.is_empty())
    }

    /// The query string that keeps the reviewer's list (`?queue=…&sort=…`),
    /// empty when there is nothing to keep.
    pub(crate) fn keep(&self) -> String {
        let mut parts = Vec::new();
        if let Some(q) = self.queue() {
            parts.push(format!("queue={}", encode(q)));
        }
        if let Some(p) = self.priority() {
            parts.push(format!("priority={}", encode(p)));
        }
        if let Some(s) = self
            .sort
            .as_deref()
            .filter(|s| !s.is_empty() && *s != "triage")
        {
            parts.push(format!("sort={}", encode(s)));
        }
        if parts.is_empty() {
            String::new()
        } else {
            format!("?{}", parts.join("&"))
        }
    }

    /// Parses what [`InboxQuery::keep`] wrote (a form's hidden `from`).
    pub(crate) fn from_kept(kept: &str) -> InboxQuery {
        let pairs = crate::forms::url_decode_pairs(kept.trim_start_matches('?').as_bytes());
        let get = |k: &str| pairs.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
        InboxQuery {
            queue: get("queue"),
            priority: get("priority"),
            sort: get("sort"),
            ..InboxQuery::default()
        }
    }
}

/// Percent-encodes a query value.
pub(crate) fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The queues a user works on (`None`: all).
fn user_queues(u: &User) -> Option<Vec<String>> {
    match u.role {
        UserRole::Reviewer => Some(u.queues.clone()),
        _ => None,
    }
}

/// The pending tasks of `user` matching `q`, in the reviewer's order.
pub(crate) async fn pending(
    state: &AppState,
    user: &User,
    q: &InboxQuery,
) -> store::Result<Vec<Review>> {
    let mut tasks = state
        .engine
        .reviews(&ReviewFilter {
            status: Some(ReviewStatus::Pending),
            queue: q.queue().map(str::to_string),
            queues: user_queues(user),
            before: None,
            limit: PENDING_WINDOW,
        })
        .await?;
    if let Some(p) = q.priority() {
        tasks.retain(|t| {
            draft(&engine::review::fields_of(t), "priority").and_then(Value::as_str) == Some(p)
        });
    }
    Order::parse(q.sort.as_deref()).sort(&mut tasks, engine::now_ms());
    Ok(tasks)
}

/// One line of a list: the request and the draft at a glance.
#[derive(Debug, Serialize)]
struct Row {
    id: String,
    sender: String,
    company: String,
    summary: String,
    intent: String,
    priority: String,
    confidence: String,
    reason: String,
    queue: String,
    created_at_ms: i64,
    age: String,
    deadline_at_ms: Option<i64>,
    deadline: String,
    overdue: bool,
    status: &'static str,
    decided_by: String,
    decided_at_ms: i64,
    decided_ago: String,
    /// Another reviewer holds a fresh claim on it.
    claimed_by: Option<String>,
}

fn row(t: &Review, detail: Option<&store::RunDetail>, now: i64) -> Row {
    let fields = engine::review::fields_of(t);
    let text = |name: &str| {
        draft(&fields, name)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string()
    };
    // A missing run (pruned) or an unreadable one leaves the cells empty.
    let request = detail
        .map(|d| Request::of(&serde_json::from_str(&d.run.input).unwrap_or(Value::Null)))
        .unwrap_or_default();
    let why = detail.map(|d| Why::of(d, &t.step_id)).unwrap_or_default();
    let summary = Some(text("summary"))
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| request.text.clone());
    Row {
        id: t.id.clone(),
        sender: if request.sender.is_empty() {
            t.workflow.clone()
        } else {
            request.sender
        },
        company: request.company,
        summary: shorten(&summary, 120),
        intent: label(&text("intent")),
        priority: text("priority"),
        confidence: why.confidence.map(percent).unwrap_or_default(),
        reason: why.short(),
        queue: t.queue.clone(),
        created_at_ms: t.created_at_ms,
        age: span(now - t.created_at_ms),
        deadline_at_ms: t.deadline_at_ms,
        deadline: t
            .deadline_at_ms
            .map(|d| span((d - now).abs()))
            .unwrap_or_default(),
        overdue: t.deadline_at_ms.is_some_and(|d| d <= now),
        status: t.status.as_str(),
        decided_by: t
            .decided_by
            .as_deref()
            .unwrap_or_default()
            .trim_start_matches("user:")
            .to_string(),
        decided_at_ms: t.decided_at_ms.unwrap_or_default(),
        decided_ago: t.decided_at_ms.map(|d| span(now - d)).unwrap_or_default(),
        claimed_by: None,
    }
}

#[derive(Debug, Serialize)]
pub(crate) struct Notice {
    pub kind: &'static str,
    pub text: String,
    pub link: Option<Link>,
}

#[derive(Debug, Serialize)]
pub(crate) struct Link {
    pub href: String,
    pub text: String,
}

/// The confirmation of a decision just made (`?done=ID`), said in words.
pub(crate) async fn done_notice(
    state: &AppState,
    done: Option<&str>,
    already: bool,
) -> Option<Notice> {
    let r = state.engine.review(done?).await.ok().flatten()?;
    if already {
        let by = r.decided_by.as_deref().unwrap_or("someone else");
        return Some(Notice {
            kind: "",
            text: format!(
                "That task was already {} by {} — nothing was changed.",
                r.status.as_str(),
                by.trim_start_matches("user:")
            ),
            link: Some(Link {
                href: format!("/inbox/{}", encode(&r.id)),
                text: "Open it".into(),
            }),
        });
    }
    let what = match r.status {
        ReviewStatus::Approved => "Approved",
        ReviewStatus::Rejected => "Rejected",
        ReviewStatus::HandedOff => "Handed off to a person",
        ReviewStatus::Pending => match r.acts.last().map(|a| a.decision.as_str()) {
            Some("escalate") => "Escalated",
            _ => "Approval recorded (more approvers needed)",
        },
    };
    let fields = engine::review::fields_of(&r);
    let about = draft(&fields, "summary")
        .and_then(Value::as_str)
        .map(|s| format!(": {}", shorten(s, 80)))
        .unwrap_or_default();
    Some(Notice {
        kind: "ok",
        text: format!("{what}{about}."),
        link: Some(Link {
            href: format!("/inbox/{}", encode(&r.id)),
            text: "Open it".into(),
        }),
    })
}

#[derive(Serialize)]
struct InboxPage {
    me: Option<Me>,
    nav: &'static str,
    title: &'static str,
    notice: Option<Notice>,
    decided_view: bool,
    total: usize,
    total_all: usize,
    queue_counts: Vec<(String, usize)>,
    queues: Vec<String>,
    queue: String,
    filter_priority: String,
    sort: &'static str,
    search: String,
    role_note: String,
    rows: Vec<Row>,
    row_query: String,
    older: Option<String>,
    /// The user may approve several tasks at once (not in Decided).
    bulk: bool,
}

/// `GET /inbox`: pending tasks in the reviewer's order, or the Decided view.
pub(crate) async fn list(
    State(state): State<AppState>,
    user: WebUser,
    Query(q): Query<InboxQuery>,
) -> Response {
    let u = &user.user;
    let now = engine::now_ms();
    let decided_view = q.view.as_deref() == Some("decided");
    // Counts per queue over everything the user may see (the tabs).
    let everything = match pending(&state, u, &InboxQuery::default()).await {
        Ok(t) => t,
        Err(e) => return unavailable(&user, &e),
    };
    let mut counts: Vec<(String, usize)> = Vec::new();
    for t in &everything {
        match counts.iter_mut().find(|(q, _)| *q == t.queue) {
            Some((_, n)) => *n += 1,
            None => counts.push((t.queue.clone(), 1)),
        }
    }
    if let Some(mine) = user_queues(u) {
        for q in mine {
            if !counts.iter().any(|(c, _)| *c == q) {
                counts.push((q, 0));
            }
        }
    }
    counts.sort();
    let mut queues: Vec<String> = counts.iter().map(|(q, _)| q.clone()).collect();
    if let Some(q) = q.queue()
        && !queues.iter().any(|x| x == q)
    {
        queues.push(q.to_string());
    }

    let (tasks, older) = if decided_view {
        match decided(&state, u, &q).await {
            Ok(x) => x,
            Err(e) => return unavailable(&user, &e),
        }
    } else if q.queue().is_none() && q.priority().is_none() && q.sort.is_none() {
        (everything.clone(), None)
    } else {
        match pending(&state, u, &q).await {
            Ok(t) => (t, None),
            Err(e) => return unavailable(&user, &e),
        }
    };
    let total = tasks.len();
    // The rows' runs in one read (on PostgreSQL a fixed number of round
    // trips, not one per row); an unreadable run leaves its cells empty.
    let shown: Vec<&Review> = tasks.iter().take(ROWS).collect();
    let run_ids: Vec<String> = shown.iter().map(|t| t.run_id.clone()).collect();
    let details = state
        .engine
        .store()
        .run_details(&run_ids)
        .await
        .unwrap_or_else(|e| {
            tracing::warn!(error = %e, "reading the inbox rows' runs failed");
            Vec::new()
        });
    let mut rows: Vec<Row> = shown
        .iter()
        .map(|t| row(t, details.iter().find(|d| d.run.id == t.run_id), now))
        .collect();
    if !decided_view {
        let ids: Vec<String> = rows.iter().map(|r| r.id.clone()).collect();
        let stale = now - super::task::CLAIM_IDLE_MS;
        for c in state
            .engine
            .store()
            .review_claims(&ids)
            .await
            .unwrap_or_default()
        {
            if c.user_id != u.id
                && c.at_ms >= stale
                && let Some(r) = rows.iter_mut().find(|r| r.id == c.review_id)
            {
                r.claimed_by = Some(c.email);
            }
        }
    }
    if decided_view && let Some(text) = q.q.as_deref().map(str::trim).filter(|s| !s.is_empty()) {
        let needle = text.to_lowercase();
        rows.retain(|r| {
            [&r.sender, &r.company, &r.summary, &r.decided_by, &r.intent]
                .iter()
                .any(|f| f.to_lowercase().contains(&needle))
        });
    }
    let role_note = match u.role {
        UserRole::Admin => "You see every queue.".to_string(),
        UserRole::Viewer => "You can read tasks; deciding needs the reviewer role.".to_string(),
        UserRole::Reviewer => format!("Your queues: {}.", u.queues.join(", ")),
    };
    ui::render(
        StatusCode::OK,
        "inbox.html",
        InboxPage {
            me: user.header(),
            nav: "inbox",
            title: if decided_view { "Decided" } else { "Inbox" },
            notice: match (q.approved, q.rejected) {
                (Some(n), _) | (None, Some(n)) => {
                    let (done, not) = if q.approved.is_some() {
                        ("Approved", "approved")
                    } else {
                        ("Rejected", "rejected")
                    };
                    Some(Notice {
                        kind: if q.skipped.unwrap_or(0) > 0 { "" } else { "ok" },
                        text: format!(
                            "{done} {n} task{}{}{}.",
                            if n == 1 { "" } else { "s" },
                            if q.approved.is_some() {
                                " as drafted"
                            } else {
                                ""
                            },
                            match q.skipped.unwrap_or(0) {
                                0 => String::new(),
                                k => format!("; {k} not {not} (decided meanwhile or refused)"),
                            }
                        ),
                        link: None,
                    })
                }
                (None, None) => done_notice(&state, q.done.as_deref(), q.already.is_some()).await,
            },
            decided_view,
            total,
            total_all: everything.len(),
            queue_counts: counts,
            queues,
            queue: q.queue().unwrap_or_default().to_string(),
            filter_priority: q.priority().unwrap_or_default().to_string(),
            sort: Order::parse(q.sort.as_deref()).as_str(),
            search: q.q.clone().unwrap_or_default(),
            role_note,
            rows,
            row_query: if decided_view {
                String::new()
            } else {
                q.keep()
            },
            older,
            bulk: !decided_view && u.role != UserRole::Viewer,
        },
    )
}

/// Decided tasks the user may see, newest first, one page; and the link
/// to the next page.
async fn decided(
    state: &AppState,
    u: &User,
    q: &InboxQuery,
) -> store::Result<(Vec<Review>, Option<String>)> {
    let mut out: Vec<Review> = Vec::new();
    let mut before = q.before.clone();
    // Pending tasks share the id order: read pages until one is full.
    let mut next = None;
    for _ in 0..10 {
        let page = state
            .engine
            .reviews(&ReviewFilter {
                status: None,
                queue: q.queue().map(str::to_string),
                queues: user_queues(u),
                before: before.clone(),
                limit: ROWS,
            })
            .await?;
        let full = page.len() == ROWS;
        before = page.last().map(|r| r.id.clone());
        out.extend(
            page.into_iter()
                .filter(|r| r.status != ReviewStatus::Pending),
        );
        if out.len() >= ROWS {
            out.truncate(ROWS);
            next = out.last().map(|r| r.id.clone());
            break;
        }
        if !full {
            next = None;
            break;
        }
        // Ten pages without enough decided tasks: continue from here.
        next = before.clone();
    }
    let older = next.map(|below| {
        let mut href = String::from("/inbox?view=decided");
        if let Some(queue) = q.queue() {
            href.push_str(&format!("&queue={}", encode(queue)));
        }
        href.push_str(&format!("&before={}", encode(&below)));
        href
    });
    Ok((out, older))
}

fn unavailable(user: &WebUser, e: &store::Error) -> Response {
    tracing::warn!(error = %e, "listing reviews failed");
    message(
        StatusCode::SERVICE_UNAVAILABLE,
        "Unavailable",
        "The inbox cannot be read right now.",
        user.header(),
    )
}

/// Tasks one bulk approval may cover.
const BULK_MAX: usize = 100;

#[derive(Serialize)]
struct BulkTask {
    id: String,
    sender: String,
    summary: String,
    actions: Vec<String>,
}

#[derive(Serialize)]
struct Excluded {
    sender: String,
    why: String,
}

#[derive(Serialize)]
struct BulkPage {
    me: Option<Me>,
    /// `approve` or `reject`.
    action: &'static str,
    nav: &'static str,
    title: &'static str,
    tasks: Vec<BulkTask>,
    excluded: Vec<Excluded>,
    from: String,
}

/// `POST /inbox/bulk` (form): the selected tasks, first to a confirmation
/// that names how many and which actions they trigger, then (with
/// `confirm=1`) approved as drafted, each through the engine's own checks.
pub(crate) async fn bulk(
    State(state): State<AppState>,
    user: WebUser,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let pairs = match user.form(&headers, &body, "the inbox") {
        Ok(p) => p,
        Err(res) => return res,
    };
    let mut ids: Vec<String> = pairs
        .iter()
        .filter(|(k, _)| k == "task")
        .map(|(_, v)| v.clone())
        .collect();
    ids.dedup();
    ids.truncate(BULK_MAX);
    let get = |k: &str| pairs.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
    let from = InboxQuery::from_kept(&get("from").unwrap_or_default()).keep();
    let confirmed = get("confirm").as_deref() == Some("1");
    let reject = get("action").as_deref() == Some("reject");
    let u = &user.user;
    let mut tasks = Vec::new();
    let mut excluded = Vec::new();
    let mut approved = 0;
    let mut skipped = 0;
    for id in &ids {
        let Ok(Some(r)) = state.engine.review(id).await else {
            skipped += 1;
            continue;
        };
        let run = state.engine.store().run(&r.run_id).await.ok().flatten();
        let sender = run
            .as_ref()
            .map(|run| Request::of(&serde_json::from_str(&run.input).unwrap_or(Value::Null)).sender)
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| r.workflow.clone());
        if let Some(why) = Refusal::of(u, &r).map(Refusal::short) {
            skipped += 1;
            excluded.push(Excluded { sender, why });
            continue;
        }
        if confirmed {
            let decision = if reject {
                Decision::Reject {
                    reason: "Rejected in bulk".into(),
                    comment: Some(domain::review::bulk_comment(true, ids.len())),
                }
            } else {
                Decision::Approve {
                    values: serde_json::Map::new(),
                    comment: Some(domain::review::bulk_comment(false, ids.len())),
                }
            };
            match state
                .engine
                .decide_review(id, decision, &crate::identity::for_user(u))
                .await
            {
                Ok(_) => approved += 1,
                Err(e) => {
                    tracing::info!(review = %id, error = %e, reject, "bulk decision skipped a task");
                    skipped += 1;
                }
            }
            continue;
        }
        let fields = engine::review::fields_of(&r);
        let actions = if reject {
            Vec::new()
        } else {
            after(&state, &r, &serde_json::Map::new(), None, false)
                .await
                .0
        };
        tasks.push(BulkTask {
            id: r.id.clone(),
            sender,
            summary: shorten(
                draft(&fields, "summary")
                    .and_then(Value::as_str)
                    .unwrap_or_default(),
                100,
            ),
            actions: actions.into_iter().map(|a| a.title).collect(),
        });
    }
    if confirmed {
        tracing::info!(user = %u.actor(), decided = approved, skipped, reject, "bulk decision");
        let sep = if from.is_empty() { "?" } else { "&" };
        let done = if reject { "rejected" } else { "approved" };
        return see_other(&format!(
            "/inbox{from}{sep}{done}={approved}&skipped={skipped}"
        ));
    }
    ui::render(
        StatusCode::OK,
        "bulk.html",
        BulkPage {
            me: user.header(),
            nav: "inbox",
            action: if reject { "reject" } else { "approve" },
            title: if reject {
                "Reject selected"
            } else {
                "Approve selected"
            },
            tasks,
            excluded,
            from,
        },
    )
}
