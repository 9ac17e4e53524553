//! The outbox page: effects that connectors without credentials recorded
//! locally instead of performing (`outbox.recorded` events, across runs),
//! each clearly labelled "not sent".
//!
//! Admins and viewers (who read every run) may look; a reviewer, limited
//! to their queues, may not: the outbox spans every workflow's runs. The
//! events carry what would have been sent, never a credential: connectors
//! redact secrets before they record.

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use store::UserRole;

use super::message;
use super::session::WebUser;
use super::ui::{self, Me, span};
use crate::AppState;

/// Entries on one page, at most.
const OUTBOX_LIMIT: usize = 100;
/// The audit event connectors record for an outbox entry.
const OUTBOX_RECORDED: &str = "outbox.recorded";

#[derive(Debug, Deserialize)]
pub(crate) struct OutboxQuery {
    /// Entries recorded before this time (ms since the epoch): the next page.
    before: Option<i64>,
}

/// A JSON value as short text for a table cell.
fn text_of(v: &Value) -> String {
    match v {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        Value::Array(items) => items.iter().map(text_of).collect::<Vec<_>>().join(", "),
        other => other.to_string(),
    }
}

/// `name: value` pairs of an object (a non-object is one unnamed pair).
fn pairs(v: &Value) -> Vec<(String, String)> {
    let Some(m) = v.as_object() else {
        return vec![(String::new(), text_of(v))];
    };
    m.iter()
        .filter(|(_, v)| !v.is_null())
        .map(|(k, v)| {
            let text = match v {
                Value::Object(_) => serde_json::to_string_pretty(v).unwrap_or_default(),
                _ => text_of(v),
            };
            (k.clone(), text)
        })
        .collect()
}

#[derive(Serialize)]
struct Entry {
    connector: String,
    action: String,
    to: Vec<(String, String)>,
    payload: Vec<(String, String)>,
    run_id: String,
    step: String,
    at_ms: i64,
    age: String,
}

#[derive(Serialize)]
struct OutboxPage {
    me: Option<Me>,
    nav: &'static str,
    title: &'static str,
    entries: Vec<Entry>,
    older: Option<i64>,
}

/// `GET /outbox`: recent outbox entries, newest first.
pub(crate) async fn list(
    State(state): State<AppState>,
    user: WebUser,
    Query(q): Query<OutboxQuery>,
) -> Response {
    if user.user.role == UserRole::Reviewer {
        return message(
            StatusCode::FORBIDDEN,
            "Not available",
            "The outbox spans every queue; it is open to admins and viewers.",
            user.header(),
        );
    }
    let events = match state
        .engine
        .store()
        .events_by_kind(OUTBOX_RECORDED, q.before, OUTBOX_LIMIT)
        .await
    {
        Ok(e) => e,
        Err(e) => {
            tracing::warn!(error = %e, "listing the outbox failed");
            return message(
                StatusCode::SERVICE_UNAVAILABLE,
                "Unavailable",
                "The outbox cannot be read right now.",
                user.header(),
            );
        }
    };
    let now = engine::now_ms();
    let older = match events.last() {
        Some(last) if events.len() == OUTBOX_LIMIT => Some(last.at_ms),
        _ => None,
    };
    let entries = events
        .iter()
        .map(|e| {
            let data: Value = serde_json::from_str(&e.data).unwrap_or(Value::Null);
            Entry {
                connector: text_of(&data["connector"]),
                action: text_of(&data["action"]),
                to: pairs(&data["to"]),
                payload: pairs(&data["payload"]),
                run_id: e.run_id.clone(),
                step: text_of(&data["step"]),
                at_ms: e.at_ms,
                age: span(now - e.at_ms),
            }
        })
        .collect();
    ui::render(
        StatusCode::OK,
        "outbox.html",
        OutboxPage {
            me: user.header(),
            nav: "outbox",
            title: "Outbox",
            entries,
            older,
        },
    )
}
