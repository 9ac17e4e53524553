//! A Monday.com GraphQL client: one POST per document, `API-Version`
//! pinned, and every way Monday says "no" mapped to [`Error`]: transport
//! statuses (401/403/429/5xx), `errors[]` inside an HTTP 200, and the
//! legacy top-level `error_code` shape `ComplexityException` still uses.

use std::time::Duration;

use serde_json::{Value as Json, json};

use crate::error::{self, Error};

/// The API version every request pins (see CONTRACTS §2: without the
/// header the "current" version moves every quarter).
pub const API_VERSION: &str = "2026-10";

/// Upsert lookup: at most two items carrying `value` in `column`.
pub const LOOKUP: &str = "query Lookup($board: ID!, $column: String!, $value: String!) {
  items_page_by_column_values(board_id: $board, limit: 2, columns: [{column_id: $column, column_values: [$value]}]) {
    cursor
    items { id name }
  }
  complexity { before query after reset_in_x_seconds }
}";

pub const CREATE_ITEM: &str = "mutation Create($board: ID!, $group: String, $name: String!, $values: JSON) {
  create_item(board_id: $board, group_id: $group, item_name: $name, column_values: $values, create_labels_if_missing: false) { id }
  complexity { before query after reset_in_x_seconds }
}";

pub const CHANGE_VALUES: &str = "mutation Change($board: ID!, $item: ID!, $values: JSON!) {
  change_multiple_column_values(board_id: $board, item_id: $item, column_values: $values, create_labels_if_missing: false) { id }
  complexity { before query after reset_in_x_seconds }
}";

/// Adds an update (a comment) to an item.
pub const CREATE_UPDATE: &str = "mutation Update($item: ID!, $body: String!) {
  create_update(item_id: $item, body: $body) { id }
  complexity { before query after reset_in_x_seconds }
}";

/// An item's recent updates, to find one carrying a marker (reconciliation).
pub const ITEM_UPDATES: &str = "query Updates($item: ID!, $limit: Int) {
  items(ids: [$item]) { id updates(limit: $limit) { id body } }
}";

/// The board's columns, for `countersign crm check` / `validate --online`.
pub const BOARD_COLUMNS: &str = "query Columns($board: ID!) {
  boards(ids: [$board]) { id name columns { id title type settings } }
}";

/// Every document this client sends, for the fake's schema tests.
pub const DOCUMENTS: &[&str] = &[
    LOOKUP,
    CREATE_ITEM,
    CHANGE_VALUES,
    CREATE_UPDATE,
    ITEM_UPDATES,
    BOARD_COLUMNS,
];

pub const DEFAULT_URL: &str = "https://api.monday.com/v2";

/// `MONDAY_API_URL` (the full GraphQL endpoint) and `MONDAY_API_TOKEN`.
#[derive(Clone)]
pub struct Settings {
    pub url: String,
    pub token: String,
}

#[derive(Clone)]
pub struct Api {
    client: reqwest::Client,
    settings: Settings,
}

impl Api {
    pub fn new(client: reqwest::Client, settings: Settings) -> Api {
        Api { client, settings }
    }

    pub fn token(&self) -> &str {
        &self.settings.token
    }

    /// Sends one document; returns `data` or the classified error. Traced
    /// as a `monday` call named by the document's operation.
    pub async fn graphql(
        &self,
        query: &str,
        variables: Json,
        timeout_ms: u64,
    ) -> Result<Json, Error> {
        engine::trace::call(
            "monday",
            operation_name(query),
            self.send(query, variables, timeout_ms),
            error::outcome,
        )
        .await
    }

    async fn send(&self, query: &str, variables: Json, timeout_ms: u64) -> Result<Json, Error> {
        let resp = self
            .client
            .post(&self.settings.url)
            .header("Authorization", &self.settings.token)
            .header("API-Version", API_VERSION)
            .header("Content-Type", "application/json")
            .timeout(Duration::from_millis(timeout_ms))
            .body(json!({ "query": query, "variables": variables }).to_string())
            .send()
            .await
            .map_err(|e| error::transport(&e))?;
        let status = resp.status();
        let retry_after_ms = error::retry_after(resp.headers());
        let bytes = resp.bytes().await.map_err(|e| error::transport(&e))?;
        let body: Option<Json> = serde_json::from_slice(&bytes).ok();
        let secrets = [self.settings.token.clone()];
        let scrub = |m: String| domain::workflow::redact(&secrets, &m);
        let text = || scrub(error::snippet(&bytes, 300));
        match status.as_u16() {
            401 | 403 => {
                return Err(Error::Unauthorized {
                    field: "MONDAY_API_TOKEN".into(),
                    message: format!("Monday answered {status}: {}", text()),
                });
            }
            429 => {
                let from_body = body
                    .as_ref()
                    .and_then(|b| match classify(b, retry_after_ms) {
                        Some(Error::RateLimited { retry_after_ms, .. }) => retry_after_ms,
                        _ => None,
                    });
                return Err(Error::RateLimited {
                    retry_after_ms: retry_after_ms.or(from_body),
                    message: format!("Monday answered {status}: {}", text()),
                });
            }
            s if s >= 500 || s == 408 => {
                return Err(Error::Transient(format!(
                    "Monday answered {status}: {}",
                    text()
                )));
            }
            _ => {}
        }
        if let Some(b) = &body
            && let Some(e) = classify(b, retry_after_ms)
        {
            return Err(match e {
                Error::Permanent { field, message } => Error::Permanent {
                    field,
                    message: scrub(message),
                },
                Error::Unauthorized { field, message } => Error::Unauthorized {
                    field,
                    message: scrub(message),
                },
                e => e,
            });
        }
        match status.as_u16() {
            200..=299 => body
                .and_then(|mut b| b.get_mut("data").map(Json::take))
                .ok_or_else(|| {
                    Error::Transient(format!("Monday answered {status} without data: {}", text()))
                }),
            _ => Err(Error::permanent(
                "monday",
                format!("Monday answered {status}: {}", text()),
            )),
        }
    }
}

/// Reads Monday's error shapes out of a response body, if it carries any.
pub fn classify(body: &Json, retry_after_ms: Option<u64>) -> Option<Error> {
    // Legacy top-level shape (ComplexityException and a few others).
    let (code, message, data) = if let Some(code) = body["error_code"].as_str() {
        (
            code.to_string(),
            body["error_message"].as_str().unwrap_or(code).to_string(),
            body["error_data"].clone(),
        )
    } else {
        let first = body["errors"].as_array()?.first()?;
        let ext = &first["extensions"];
        (
            ext["code"].as_str().unwrap_or("").to_string(),
            first["message"]
                .as_str()
                .unwrap_or("GraphQL error")
                .to_string(),
            {
                let mut d = ext["error_data"].clone();
                if d.is_null() {
                    d = json!({});
                }
                if let Some(r) = ext.get("retry_in_seconds") {
                    d["retry_in_seconds"] = r.clone();
                }
                d
            },
        )
    };
    let wait_ms = retry_after_ms
        .or_else(|| {
            data["retry_in_seconds"]
                .as_f64()
                .map(|s| (s * 1000.0) as u64)
        })
        .or_else(|| reset_in_seconds(&message).map(|s| s * 1000));
    let msg = if code.is_empty() {
        message.clone()
    } else {
        format!("{code}: {message}")
    };
    Some(match code.as_str() {
        "ComplexityException"
        | "FIELD_LIMIT_EXCEEDED"
        | "IP_RATE_LIMIT_EXCEEDED"
        | "RATE_LIMIT_EXCEEDED"
        | "maxConcurrencyExceeded"
        | "COMPLEXITY_BUDGET_EXHAUSTED"
        | "DAILY_LIMIT_EXCEEDED" => Error::RateLimited {
            retry_after_ms: wait_ms,
            message: msg,
        },
        "InternalServerError" | "INTERNAL_SERVER_ERROR" | "API_TEMPORARILY_BLOCKED" => {
            Error::Transient(msg)
        }
        "UserUnauthorizedException"
        | "USER_UNAUTHORIZED"
        | "Unauthorized"
        | "UNAUTHENTICATED"
        | "NOT_AUTHENTICATED" => Error::Unauthorized {
            field: "MONDAY_API_TOKEN".into(),
            message: msg,
        },
        "InvalidBoardIdException" | "ResourceNotFoundException"
            if message.to_lowercase().contains("board") =>
        {
            Error::permanent("board", msg)
        }
        "InvalidBoardIdException" => Error::permanent("board", msg),
        "InvalidColumnIdException"
        | "ColumnValueException"
        | "CorrectedValueException"
        | "InvalidColumnTypeException" => {
            let col = data["column_id"]
                .as_str()
                .map(|c| format!("columns.{c}"))
                .unwrap_or_else(|| "columns".into());
            Error::permanent(col, msg)
        }
        "InvalidItemIdException" | "ItemNameTooLongException" => Error::permanent("item_name", msg),
        "InvalidGroupIdException" => Error::permanent("group", msg),
        _ => Error::permanent("monday", msg),
    })
}

/// "… reset in 3 seconds" → 3.
fn reset_in_seconds(message: &str) -> Option<u64> {
    let at = message.find("reset in ")? + "reset in ".len();
    message[at..].split_whitespace().next()?.parse().ok()
}

/// A GraphQL document's operation (`mutation Create`, `query Lookup`): its
/// text up to the variables or the selection set. Our documents are
/// constants, so this never carries a value.
fn operation_name(query: &str) -> &str {
    let head = query.trim_start();
    let end = head.find(['(', '{']).unwrap_or(head.len());
    head[..end].trim_end()
}
