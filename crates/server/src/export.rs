//! The export format shared by `countersign export` and
//! `GET /api/v1/events`: one record per audit event with its run, workflow
//! and chain hashes, as a JSON line or a CSV row, and the time bounds both
//! accept.
//!
//! `data` is the event's stored JSON text, byte for byte (raw in JSON
//! lines, quoted text in CSV), so an auditor can recompute every hash from
//! an export alone: `sha256(prev_hash ‖ run_id ‖ seq ‖ kind ‖ actor ‖ at_ms
//! ‖ data)` as `countersign audit verify` does.

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use store::{EventCursor, EventRange, QueueScope, RunEvent};
use utoipa::{IntoParams, ToSchema};

use crate::AppState;
use crate::auth::{Caller, Scope};
use crate::error::{ApiError, FieldProblem, Problem};
use crate::views::rfc3339;

/// One exported audit event.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ExportEvent {
    pub run_id: String,
    pub workflow: String,
    /// Position in the run's log, from 1.
    pub seq: i64,
    pub kind: String,
    /// `system`, `webhook`, `token:<id>` or `user:<id>`.
    pub actor: String,
    /// The event's data exactly as stored and hashed.
    #[schema(value_type = Object)]
    pub data: Box<RawValue>,
    /// RFC 3339 UTC.
    pub at: String,
    /// Milliseconds since the epoch, as hashed.
    pub at_ms: i64,
    pub prev_hash: String,
    /// SHA-256 chaining this event to `prev_hash`.
    pub hash: String,
}

impl ExportEvent {
    pub fn from_run_event(e: &RunEvent) -> ExportEvent {
        let ev = &e.event;
        // Stored data is JSON; were it not, export it as a JSON string
        // rather than fail the whole export.
        let data = RawValue::from_string(ev.data.clone()).unwrap_or_else(|_| {
            RawValue::from_string(serde_json::Value::String(ev.data.clone()).to_string())
                .unwrap_or_else(|_| RawValue::from_string("null".into()).expect("null is JSON"))
        });
        ExportEvent {
            run_id: ev.run_id.clone(),
            workflow: e.workflow.clone(),
            seq: ev.seq,
            kind: ev.kind.clone(),
            actor: ev.actor.clone(),
            data,
            at: rfc3339(ev.at_ms),
            at_ms: ev.at_ms,
            prev_hash: ev.prev_hash.clone(),
            hash: ev.hash.clone(),
        }
    }
}

/// The CSV header line (with its line end).
pub const CSV_HEADER: &str = "at,at_ms,run_id,workflow,seq,kind,actor,data,prev_hash,hash\r\n";

/// One event as a JSON line (with its line end).
pub fn jsonl_line(e: &RunEvent) -> String {
    let mut line =
        serde_json::to_string(&ExportEvent::from_run_event(e)).unwrap_or_else(|_| "{}".to_string());
    line.push('\n');
    line
}

/// One event as a CSV row (RFC 4180, CRLF line ends), `data` as its JSON
/// text.
pub fn csv_row(e: &RunEvent) -> String {
    let ev = &e.event;
    let fields = [
        rfc3339(ev.at_ms),
        ev.at_ms.to_string(),
        ev.run_id.clone(),
        e.workflow.clone(),
        ev.seq.to_string(),
        ev.kind.clone(),
        ev.actor.clone(),
        ev.data.clone(),
        ev.prev_hash.clone(),
        ev.hash.clone(),
    ];
    let mut row = String::new();
    for (i, f) in fields.iter().enumerate() {
        if i > 0 {
            row.push(',');
        }
        push_csv_field(&mut row, f);
    }
    row.push_str("\r\n");
    row
}

/// Appends a CSV field, quoted (inner quotes doubled) when it holds a
/// comma, quote or line break. Values are never altered otherwise (no
/// spreadsheet-formula escaping): an export must reproduce the hashed
/// bytes exactly.
fn push_csv_field(out: &mut String, field: &str) {
    if field.contains([',', '"', '\n', '\r']) {
        out.push('"');
        for c in field.chars() {
            if c == '"' {
                out.push('"');
            }
            out.push(c);
        }
        out.push('"');
    } else {
        out.push_str(field);
    }
}

/// Parses a time bound: RFC 3339 (`2026-12-01T09:00:00Z`), a date
/// (`2026-12-01`, midnight UTC), milliseconds since the epoch
/// (`1764547200000`), or an age before `now_ms` (`7d`, `12h`, `30m`).
pub fn parse_time(s: &str, now_ms: i64) -> Result<i64, String> {
    let s = s.trim();
    let bad = || {
        format!(
            "{s:?} is not a time: use RFC 3339 (2026-12-01T09:00:00Z), a date (2026-12-01), milliseconds since the epoch, or an age such as 7d, 12h, 30m"
        )
    };
    if s.is_empty() {
        return Err(bad());
    }
    if s.bytes().all(|b| b.is_ascii_digit()) {
        return s.parse::<i64>().map_err(|_| bad());
    }
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(s) {
        return Ok(t.timestamp_millis());
    }
    if let Ok(d) = chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d") {
        return d
            .and_hms_opt(0, 0, 0)
            .map(|t| t.and_utc().timestamp_millis())
            .ok_or_else(bad);
    }
    // An age needs a unit: a bare number is a timestamp (above).
    if s.ends_with(|c: char| c.is_ascii_alphabetic())
        && let Some(ms) = domain::yaml::parse_duration_ms(s)
    {
        return i64::try_from(ms)
            .ok()
            .and_then(|ms| now_ms.checked_sub(ms))
            .ok_or_else(bad);
    }
    Err(bad())
}

/// A page of `GET /api/v1/events`.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ExportPage {
    /// Events in `(at, run_id, seq)` order: each run's in chain order.
    pub items: Vec<ExportEvent>,
    /// Pass as `cursor` (with the same `since`, `until` and `workflow`)
    /// for the next page; absent on the last page.
    pub next_cursor: Option<String>,
}

/// Filters and paging of `GET /api/v1/events`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct EventsQuery {
    /// Events at or after this time: RFC 3339, a date (midnight UTC),
    /// milliseconds since the epoch, or an age such as `7d` (default: the
    /// beginning).
    #[serde(default, deserialize_with = "crate::views::empty_as_none")]
    pub since: Option<String>,
    /// Events strictly before this time, same forms (default: now). Pass
    /// it explicitly to page over a fixed range.
    #[serde(default, deserialize_with = "crate::views::empty_as_none")]
    pub until: Option<String>,
    /// Only events of runs of this workflow.
    #[serde(default, deserialize_with = "crate::views::empty_as_none")]
    pub workflow: Option<String>,
    /// `next_cursor` of the previous page.
    #[serde(default, deserialize_with = "crate::views::empty_as_none")]
    pub cursor: Option<String>,
    /// Page size, 1–5000 (default 1000; larger values are capped).
    #[param(value_type = Option<u64>, minimum = 1)]
    pub limit: Option<String>,
}

const DEFAULT_EVENTS: usize = 1000;
const MAX_EVENTS: usize = 5000;

/// Audit events across runs by time, for compliance exports and analysis,
/// with their chain hashes. A caller limited to review queues sees the
/// runs of those queues only (a run that never reached review belongs to
/// the `default` queue).
#[utoipa::path(
    get,
    path = "/api/v1/events",
    tag = "runs",
    params(EventsQuery),
    responses(
        (status = 200, description = "A page of events", body = ExportPage),
        (status = 400, description = "Bad parameter; `errors` names it", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Missing or unknown token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Token lacks `runs:read`", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = ["runs:read"]))
)]
pub async fn events(
    State(state): State<AppState>,
    caller: Caller,
    query: Result<Query<EventsQuery>, QueryRejection>,
) -> Result<Json<ExportPage>, ApiError> {
    caller.require(Scope::RunsRead)?;
    let Query(q) = query.map_err(crate::runs::query_rejection)?;
    let now = engine::now_ms();
    let time = |name: &str, raw: Option<&str>, default: i64| match raw {
        None => Ok(default),
        Some(s) => {
            parse_time(s, now).map_err(|e| ApiError::BadRequest(FieldProblem::parameter(name, e)))
        }
    };
    let since_ms = time("since", q.since.as_deref(), 0)?;
    let until_ms = time("until", q.until.as_deref(), now.saturating_add(1))?;
    let limit = crate::runs::count_param("limit", q.limit.as_deref(), DEFAULT_EVENTS, MAX_EVENTS)?;
    let after = q
        .cursor
        .as_deref()
        .map(|c| {
            parse_cursor(c).ok_or_else(|| {
                ApiError::BadRequest(FieldProblem::parameter(
                    "cursor",
                    "is not a cursor this server issued",
                ))
            })
        })
        .transpose()?;
    let queues = caller.decider().queues.map(|queues| QueueScope {
        unreviewed: queues.iter().any(|q| q == engine::approval::DEFAULT_QUEUE),
        queues,
    });
    let mut events = state
        .engine
        .store()
        .events_between(&EventRange {
            since_ms,
            until_ms,
            workflow: q.workflow.filter(|w| !w.is_empty()),
            queues,
            after,
            limit: limit + 1,
        })
        .await?;
    let next_cursor = if events.len() > limit {
        events.truncate(limit);
        events.last().map(|e| format_cursor(&e.cursor()))
    } else {
        None
    };
    Ok(Json(ExportPage {
        items: events.iter().map(ExportEvent::from_run_event).collect(),
        next_cursor,
    }))
}

/// `AT.SEQ.RUN_ID`: the run id last, so it may hold dots.
fn format_cursor(c: &EventCursor) -> String {
    format!("{}.{}.{}", c.at_ms, c.seq, c.run_id)
}

fn parse_cursor(s: &str) -> Option<EventCursor> {
    if s.len() > 256 {
        return None;
    }
    let mut parts = s.splitn(3, '.');
    let at_ms = parts.next()?.parse().ok()?;
    let seq = parts.next()?.parse().ok()?;
    let run_id = parts.next().filter(|r| !r.is_empty())?.to_string();
    Some(EventCursor { at_ms, run_id, seq })
}

#[cfg(test)]
mod tests {
    use super::*;
    use store::Event;

    const NOW: i64 = 1_764_633_600_000; // 2025-12-02T00:00:00Z

    #[test]
    fn cursors_round_trip_with_dots_in_run_ids() {
        let c = EventCursor {
            at_ms: 5,
            run_id: "r.1.x".into(),
            seq: 3,
        };
        assert_eq!(parse_cursor(&format_cursor(&c)), Some(c));
        for bad in ["", "5", "5.3", "5.3.", "x.3.r", "5.y.r"] {
            assert_eq!(parse_cursor(bad), None, "{bad}");
        }
    }

    #[test]
    fn times_parse_in_every_accepted_form() {
        assert_eq!(parse_time("2025-12-01", NOW), Ok(NOW - 86_400_000));
        assert_eq!(
            parse_time("2025-12-01T12:00:00+01:00", NOW),
            Ok(NOW - 86_400_000 + 11 * 3_600_000)
        );
        assert_eq!(parse_time("1764547200000", NOW), Ok(1_764_547_200_000));
        assert_eq!(parse_time("7d", NOW), Ok(NOW - 7 * 86_400_000));
        assert_eq!(parse_time(" 30m ", NOW), Ok(NOW - 1_800_000));
        for bad in ["", "yesterday", "2025-13-01", "7 weeks", "-5", "7x", "d"] {
            let e = parse_time(bad, NOW).unwrap_err();
            assert!(e.contains("is not a time"), "{bad}: {e}");
        }
    }

    fn run_event(data: &str, actor: &str) -> RunEvent {
        RunEvent {
            workflow: "wf".into(),
            event: Event {
                run_id: "r1".into(),
                seq: 2,
                kind: "step.completed".into(),
                actor: actor.into(),
                data: data.into(),
                at_ms: NOW,
                prev_hash: "aa".into(),
                hash: "bb".into(),
            },
        }
    }

    #[test]
    fn csv_quotes_what_needs_quoting() {
        let row = csv_row(&run_event(r#"{"a":"x, \"y\"","b":"l1\nl2"}"#, "user:a,b"));
        let expected = concat!(
            r#"2025-12-02T00:00:00.000Z,1764633600000,r1,wf,2,step.completed,"user:a,b","{""a"":""x, \""y\"""",""b"":""l1\nl2""}",aa,bb"#,
            "\r\n"
        );
        assert_eq!(row, expected);
        let plain = csv_row(&run_event("{}", "system"));
        assert!(plain.contains(",system,{},aa,bb\r\n"), "{plain}");
    }

    #[test]
    fn jsonl_keeps_the_stored_data_text() {
        let text = r#"{"z":1,"a":[1, 2]}"#;
        let line = jsonl_line(&run_event(text, "system"));
        assert!(line.ends_with('\n') && !line[..line.len() - 1].contains('\n'));
        assert!(line.contains(&format!("\"data\":{text}")), "{line}");
        let broken = jsonl_line(&run_event("not json", "system"));
        let v: serde_json::Value = serde_json::from_str(&broken).unwrap();
        assert_eq!(v["data"], "not json");
        assert_eq!(v["at"], "2025-12-02T00:00:00.000Z");
    }
}
