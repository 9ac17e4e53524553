//! `countersign crm check`: reads each mapped board's columns and reports
//! mapping errors (unknown column, wrong type, a label the board does not
//! have) before any run.

use serde_json::{Value as Json, json};

use super::{Api, Spec, client};
use crate::error::Error;

/// One problem found, located by the mapping's YAML path.
#[derive(Debug, Clone, PartialEq)]
pub struct Problem {
    pub path: String,
    pub message: String,
}

/// Checks `spec` against its board (the board template must be literal or
/// come from the environment). Returns the problems found.
pub async fn check(api: &Api, spec: &Spec) -> Result<Vec<Problem>, Error> {
    let board = spec.board.source().trim().to_string();
    if board.contains("{{") {
        return Ok(vec![Problem {
            path: format!("{}.board", spec.path),
            message: "the board depends on the run; it can only be checked when it is a literal or `${env:…}`".into(),
        }]);
    }
    let data = api
        .graphql(client::BOARD_COLUMNS, json!({ "board": board }), 30_000)
        .await?;
    let Some(b) = data["boards"].as_array().and_then(|a| a.first()) else {
        return Ok(vec![Problem {
            path: format!("{}.board", spec.path),
            message: format!("board {board} does not exist or the token cannot see it"),
        }]);
    };
    let cols = b["columns"].as_array().cloned().unwrap_or_default();
    let find = |id: &str| cols.iter().find(|c| c["id"] == id);
    let mut out = Vec::new();
    let mut need = |path: String, id: &str, types: &[&str]| -> Option<Json> {
        match find(id) {
            None => {
                out.push(Problem {
                    path,
                    message: format!(
                        "board {board} has no column `{id}` (columns: {})",
                        cols.iter()
                            .filter_map(|c| c["id"].as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                });
                None
            }
            Some(c) if !types.is_empty() && !types.contains(&c["type"].as_str().unwrap_or("")) => {
                out.push(Problem {
                    path,
                    message: format!(
                        "column `{id}` is of type {}, not {}",
                        c["type"].as_str().unwrap_or("?"),
                        types.join(" or ")
                    ),
                });
                None
            }
            Some(c) => Some(c.clone()),
        }
    };
    need(
        format!("{}.upsert_by.column", spec.path),
        &spec.upsert_column,
        &[],
    );
    if let Some(k) = &spec.key_column {
        need(format!("{}.key_column", spec.path), k, &["text"]);
    }
    let mut label_problems = Vec::new();
    for m in &spec.columns {
        let Some(col) = need(m.path.clone(), &m.column, &[m.ty]) else {
            continue;
        };
        if matches!(m.ty, "status" | "dropdown") {
            let have = labels(&col["settings"]);
            for l in m.static_labels() {
                if !have.contains(&l) {
                    label_problems.push(Problem {
                        path: m.path.clone(),
                        message: format!(
                            "label {l:?} is not on column `{}` (labels: {})",
                            m.column,
                            have.join(", ")
                        ),
                    });
                }
            }
        }
    }
    out.extend(label_problems);
    Ok(out)
}

/// Label names from a status or dropdown column's `settings` (either the
/// `{"labels": {"1": "Done"}}` or the `{"labels": [{"label"|"name": …}]}` shape).
pub fn labels(settings: &Json) -> Vec<String> {
    let settings = match settings {
        Json::String(s) => serde_json::from_str(s).unwrap_or(Json::Null),
        v => v.clone(),
    };
    match &settings["labels"] {
        Json::Object(m) => m
            .values()
            .filter_map(|v| v.as_str().map(str::to_string))
            .collect(),
        Json::Array(a) => a
            .iter()
            .filter_map(|l| {
                l["label"]
                    .as_str()
                    .or(l["name"].as_str())
                    .map(str::to_string)
            })
            .collect(),
        _ => Vec::new(),
    }
}
