//! Column mappings: an approved value, through an optional label map, to
//! the JSON Monday expects for the column's type (CONTRACTS §2). The
//! mapping is explicit in the workflow, by column ID; raw AI output never
//! names a column or invents a label.

use std::collections::BTreeMap;

use domain::expr::{Scope, Template, Vars};
use domain::workflow::Cx;
use domain::yaml::{Node, Value};
use serde_json::{Value as Json, json};

/// The column types the step can write.
pub const TYPES: &[&str] = &[
    "status",
    "text",
    "long_text",
    "email",
    "date",
    "dropdown",
    "numbers",
    "people",
];

/// Monday's limit on a long-text value.
const LONG_TEXT_MAX: usize = 2_000;

/// One `columns:` entry: `category: { status: "{{ … }}", map: { a: A } }`.
#[derive(Debug)]
pub struct Mapping {
    pub column: String,
    pub ty: &'static str,
    pub value: Template,
    pub map: Option<BTreeMap<String, String>>,
    /// YAML path, for errors: `steps[3].crm.monday.columns.category`.
    pub path: String,
}

pub fn parse(node: &Node, scope: &Scope, cx: &mut Cx) -> Vec<Mapping> {
    let Some(entries) = cx.take(node.as_map()) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for (column, spec) in entries {
        let Some(items) = cx.take(spec.as_map()) else {
            continue;
        };
        let mut ty = None;
        let mut map = None;
        for (k, v) in items {
            if let Some(t) = TYPES.iter().find(|t| **t == k) {
                if ty.is_some() {
                    cx.errors
                        .push(v.error("a column mapping has exactly one type"));
                }
                if let Some(tpl) = cx.take(Template::compile(v, scope)) {
                    ty = Some((*t, tpl));
                }
            } else if k == "map" {
                map = cx.take(v.as_map()).map(|m| {
                    m.iter()
                        .filter_map(|(from, to)| {
                            Some((from.clone(), cx.take(to.as_scalar_string())?))
                        })
                        .collect::<BTreeMap<_, _>>()
                });
            } else {
                let mut msg = format!(
                    "unknown column type `{k}`; expected one of: {}, and `map`",
                    TYPES.join(", ")
                );
                if let Some(s) = domain::yaml::suggest(k, TYPES.iter().copied()) {
                    msg = format!("unknown column type `{k}` (did you mean `{s}`?)");
                }
                cx.errors.push(v.error(msg));
            }
        }
        match ty {
            Some((t, value)) => {
                if map.is_some() && !matches!(t, "status" | "dropdown") {
                    cx.errors
                        .push(spec.error("`map` applies to status and dropdown columns only"));
                }
                out.push(Mapping {
                    column: column.clone(),
                    ty: t,
                    value,
                    map,
                    path: spec.path.clone(),
                })
            }
            None if matches!(spec.value, Value::Map(_)) => cx.errors.push(spec.error(format!(
                "column `{column}` needs a type: one of {}",
                TYPES.join(", ")
            ))),
            None => {}
        }
    }
    out
}

impl Mapping {
    fn label(&self, v: &str) -> Result<String, String> {
        match &self.map {
            None => Ok(v.to_string()),
            Some(m) => m.get(v).cloned().ok_or_else(|| {
                format!(
                    "{}: {v:?} has no entry in `map` (mapped values: {})",
                    self.path,
                    m.keys().cloned().collect::<Vec<_>>().join(", ")
                )
            }),
        }
    }

    /// The labels this mapping can write, when they are known before a run
    /// (every `map` target, or a literal value): for `crm check`.
    pub fn static_labels(&self) -> Vec<String> {
        match &self.map {
            Some(m) => m.values().cloned().collect(),
            None if !self.value.source().contains("{{") && !self.value.source().contains("{%") => {
                vec![self.value.source().to_string()]
            }
            None => Vec::new(),
        }
    }

    /// Renders and encodes the value; `Ok(None)` leaves the column alone
    /// (the value rendered empty).
    pub fn encode(&self, vars: &Vars) -> Result<Option<Json>, String> {
        let raw = self
            .value
            .render_json(vars)
            .map_err(|e| format!("{}: {e}", self.path))?;
        let items: Vec<String> = match &raw {
            Json::Null => Vec::new(),
            Json::Array(a) => a.iter().map(scalar).filter(|s| !s.is_empty()).collect(),
            Json::String(s) if matches!(self.ty, "dropdown" | "people") => s
                .split(',')
                .map(|x| x.trim().to_string())
                .filter(|x| !x.is_empty())
                .collect(),
            other => vec![scalar(other)]
                .into_iter()
                .filter(|s| !s.is_empty())
                .collect(),
        };
        if items.is_empty() {
            return Ok(None);
        }
        let one = items.join(", ");
        let bad = |why: String| format!("{}: {why}", self.path);
        Ok(Some(match self.ty {
            "status" => json!({ "label": self.label(&one)? }),
            "text" => json!(one),
            "long_text" => {
                if one.chars().count() > LONG_TEXT_MAX {
                    return Err(bad(format!(
                        "long text is {} characters; Monday allows {LONG_TEXT_MAX}",
                        one.chars().count()
                    )));
                }
                json!({ "text": one })
            }
            "email" => {
                if !one.contains('@') || one.contains(char::is_whitespace) {
                    return Err(bad(format!("{one:?} is not an email address")));
                }
                json!({ "email": one, "text": one })
            }
            "date" => date(&one).map_err(bad)?,
            "dropdown" => {
                let labels = items
                    .iter()
                    .map(|i| self.label(i))
                    .collect::<Result<Vec<_>, _>>()?;
                json!({ "labels": labels })
            }
            "numbers" => {
                let n: f64 = one
                    .parse()
                    .map_err(|_| bad(format!("{one:?} is not a number")))?;
                if !n.is_finite() {
                    return Err(bad(format!("{one:?} is not a finite number")));
                }
                json!(one)
            }
            "people" => {
                let ids = items
                    .iter()
                    .map(|i| {
                        i.parse::<u64>()
                            .map(|id| json!({ "id": id, "kind": "person" }))
                    })
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|_| {
                        bad(format!("people are Monday user IDs (numbers), got {one:?}"))
                    })?;
                json!({ "personsAndTeams": ids })
            }
            _ => unreachable!("TYPES is exhaustive"),
        }))
    }

    /// The text Monday shows for an encoded value (what a lookup matches).
    pub fn text_of(encoded: &Json) -> String {
        match encoded {
            Json::String(s) => s.clone(),
            v => v["text"]
                .as_str()
                .or(v["label"].as_str())
                .unwrap_or_default()
                .to_string(),
        }
    }
}

/// An encoded value as a person reads it: a status's label, a dropdown's
/// labels, a date with its time, people's IDs.
pub fn display(encoded: &Json) -> String {
    let list = |v: &Json, key: &str| -> Vec<String> {
        v.as_array()
            .into_iter()
            .flatten()
            .map(|i| match i.get(key) {
                Some(x) => scalar(x),
                None => scalar(i),
            })
            .collect()
    };
    match encoded {
        Json::Object(m) if m.contains_key("labels") => list(&encoded["labels"], "").join(", "),
        Json::Object(m) if m.contains_key("personsAndTeams") => {
            list(&encoded["personsAndTeams"], "id").join(", ")
        }
        Json::Object(m) if m.contains_key("date") => [&encoded["date"], &encoded["time"]]
            .iter()
            .map(|v| scalar(v))
            .filter(|s| !s.is_empty())
            .collect::<Vec<_>>()
            .join(" "),
        v => Mapping::text_of(v),
    }
}

fn scalar(v: &Json) -> String {
    match v {
        Json::String(s) => s.trim().to_string(),
        Json::Null => String::new(),
        v => v.to_string(),
    }
}

/// `2026-11-25` or an RFC 3339 instant (converted to UTC, as Monday wants).
fn date(s: &str) -> Result<Json, String> {
    if let Ok(d) = chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d") {
        return Ok(json!({ "date": d.format("%Y-%m-%d").to_string() }));
    }
    let t = chrono::DateTime::parse_from_rfc3339(s)
        .map_err(|_| format!("{s:?} is not a date (YYYY-MM-DD) or an RFC 3339 time"))?
        .with_timezone(&chrono::Utc);
    Ok(
        json!({ "date": t.format("%Y-%m-%d").to_string(), "time": t.format("%H:%M:%S").to_string() }),
    )
}
