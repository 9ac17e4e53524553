//! The outbox page: effects that connectors without credentials recorded
//! locally instead of performing (`outbox.recorded` events, across runs),
//! each clearly labelled "not sent".
//!
//! Everyone signed in may look (viewers and up). The events carry what
//! would have been sent, never a credential: connectors redact secrets
//! before they record.

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde::Deserialize;
use serde_json::Value;

use super::inbox::{age, when};
use super::session::WebUser;
use super::{escape, html, message, page};
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

/// `name: value` lines of an object, as a definition list.
fn pairs(v: &Value) -> String {
    let Some(m) = v.as_object() else {
        return format!("<pre>{}</pre>", escape(&text_of(v)));
    };
    let mut s = String::from("<dl class=\"kv\">");
    for (k, v) in m {
        if v.is_null() {
            continue;
        }
        let text = match v {
            Value::Object(_) => serde_json::to_string_pretty(v).unwrap_or_default(),
            _ => text_of(v),
        };
        s.push_str(&format!("<dt>{}</dt><dd>{}</dd>", escape(k), escape(&text)));
    }
    s.push_str("</dl>");
    s
}

/// `GET /outbox`: recent outbox entries, newest first.
pub(crate) async fn list(
    State(state): State<AppState>,
    user: WebUser,
    Query(q): Query<OutboxQuery>,
) -> Response {
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
    let mut rows = String::new();
    for e in &events {
        let data: Value = serde_json::from_str(&e.data).unwrap_or(Value::Null);
        rows.push_str(&format!(
            "<tr class=\"outbox-entry\"><td data-label=\"Status\"><span class=\"badge p-high\">not sent</span></td>\
             <td data-label=\"Connector\"><strong>{connector}</strong><br><span class=\"muted\">{action}</span></td>\
             <td data-label=\"To\">{to}</td><td data-label=\"Would have sent\">{payload}</td>\
             <td data-label=\"Run\"><a href=\"/api/v1/runs/{run_q}\">{run}</a><br><span class=\"muted\">step {step}</span></td>\
             <td data-label=\"When\" title=\"{at}\">{age} ago</td></tr>",
            connector = escape(&text_of(&data["connector"])),
            action = escape(&text_of(&data["action"])),
            to = pairs(&data["to"]),
            payload = pairs(&data["payload"]),
            run_q = escape(&urlencoding(&e.run_id)),
            run = escape(&e.run_id),
            step = escape(&text_of(&data["step"])),
            at = escape(&when(e.at_ms)),
            age = escape(&age(now, e.at_ms)),
        ));
    }
    let table = if events.is_empty() {
        "<p class=\"muted\">The outbox is empty: no effect was recorded instead of being sent.</p>"
            .to_string()
    } else {
        format!(
            "<table class=\"stack\"><thead><tr><th>Status</th><th>Connector</th><th>To</th><th>What would have been sent</th><th>Run</th><th>When</th></tr></thead><tbody>{rows}</tbody></table>"
        )
    };
    let more = match events.last() {
        Some(last) if events.len() == OUTBOX_LIMIT => format!(
            "<p><a href=\"/outbox?before={}\">Older entries</a></p>",
            last.at_ms
        ),
        _ => String::new(),
    };
    let body = format!(
        "<h1>Outbox</h1><p class=\"banner\"><strong>Not sent.</strong> These effects were recorded locally because their connector has no credentials (a demo or a dry run). Nothing here reached anyone.</p>{table}{more}"
    );
    html(StatusCode::OK, page("Outbox", user.header(), &body))
}

/// Percent-encodes a path segment (run ids are UUIDs, but stay safe).
fn urlencoding(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}
