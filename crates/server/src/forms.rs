//! The `form` trigger: `GET /forms/{name}` renders an HTML form from the
//! workflow's input schema; `POST /forms/{name}` turns the fields into JSON
//! by the schema's types and submits a run. Plain HTML that works without
//! JavaScript; every value shown is escaped.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use engine::SubmitError;
use serde::Serialize;
use serde_json::{Map, Value};

use crate::AppState;
use crate::web::ui;

/// One control of the form, as the template draws it.
#[derive(Debug, Serialize)]
struct FormField {
    id: String,
    label: String,
    required: bool,
    /// `select`, `checkbox`, `number`, `textarea` or `input`.
    kind: &'static str,
    input_type: &'static str,
    value: String,
    options: Vec<String>,
    maxlength: Option<u64>,
    step_any: bool,
    errors: Vec<String>,
}

#[derive(Debug, Default, Serialize)]
struct FormPage {
    me: Option<()>,
    nav: &'static str,
    title: String,
    name: String,
    fields: Vec<FormField>,
    other_errors: Vec<String>,
    has_errors: bool,
    reference: Option<String>,
    missing: bool,
    failed: bool,
}

struct Field<'a> {
    name: &'a str,
    schema: &'a Value,
    required: bool,
}

fn fields(schema: &Value) -> Vec<Field<'_>> {
    let required: Vec<&str> = schema["required"]
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    schema["properties"]
        .as_object()
        .map(|props| {
            props
                .iter()
                .map(|(name, s)| Field {
                    name,
                    schema: s,
                    required: required.contains(&name.as_str()),
                })
                .collect()
        })
        .unwrap_or_default()
}

fn render_form(
    status: StatusCode,
    name: &str,
    title: &str,
    schema: &Value,
    values: &Map<String, Value>,
    errors: &[(String, String)],
) -> Response {
    let all = fields(schema);
    let field_of = |ptr: &str| ptr.trim_start_matches('/').to_string();
    let controls = all
        .iter()
        .map(|f| {
            let value = match values.get(f.name) {
                Some(Value::String(s)) => s.clone(),
                Some(Value::Null) | None => String::new(),
                Some(v) => v.to_string(),
            };
            let max = f.schema["maxLength"].as_u64();
            let options: Vec<String> = f.schema["enum"]
                .as_array()
                .map(|os| {
                    os.iter()
                        .map(|o| o.as_str().map_or_else(|| o.to_string(), str::to_string))
                        .collect()
                })
                .unwrap_or_default();
            let kind = match f.schema["type"].as_str() {
                _ if f.schema["enum"].is_array() => "select",
                Some("boolean") => "checkbox",
                Some("integer" | "number") => "number",
                _ if max.is_none_or(|m| m > 500) => "textarea",
                _ => "input",
            };
            FormField {
                id: f.name.to_string(),
                label: f.schema["title"].as_str().unwrap_or(f.name).to_string(),
                required: f.required,
                kind,
                input_type: if f.schema["format"] == "email" {
                    "email"
                } else {
                    "text"
                },
                value,
                options,
                maxlength: max,
                step_any: f.schema["type"] == "number",
                errors: errors
                    .iter()
                    .filter(|(p, _)| field_of(p) == f.name)
                    .map(|(_, m)| m.clone())
                    .collect(),
            }
        })
        .collect();
    let other_errors = errors
        .iter()
        .filter(|(p, _)| !all.iter().any(|f| field_of(p) == f.name))
        .map(|(p, m)| format!("{p}: {m}"))
        .collect();
    ui::render(
        status,
        "form.html",
        FormPage {
            title: title.to_string(),
            name: name.to_string(),
            fields: controls,
            other_errors,
            has_errors: !errors.is_empty(),
            ..FormPage::default()
        },
    )
}

fn not_found(name: &str) -> Response {
    ui::render(
        StatusCode::NOT_FOUND,
        "form.html",
        FormPage {
            title: "Not found".into(),
            name: name.to_string(),
            missing: true,
            ..FormPage::default()
        },
    )
}

/// `GET /forms/{name}`: the HTML form of a workflow with a form trigger.
#[utoipa::path(
    get,
    path = "/forms/{name}",
    tag = "forms",
    params(("name" = String, Path, description = "Workflow name")),
    responses(
        (status = 200, description = "The form", body = String, content_type = "text/html"),
        (status = 404, description = "No such workflow, or it has no form trigger", body = String, content_type = "text/html"),
    ),
    security(())
)]
pub async fn show(State(state): State<AppState>, Path(name): Path<String>) -> Response {
    let Some(wf) = state.engine.catalog().get(&name) else {
        return not_found(&name);
    };
    let Some(form) = &wf.def.trigger.form else {
        return not_found(&name);
    };
    render_form(
        StatusCode::OK,
        &name,
        &form.title,
        &wf.def.input.schema,
        &Map::new(),
        &[],
    )
}

/// Converts submitted text fields to JSON by the schema's declared types.
/// Empty optional fields are left out; a number that does not parse stays
/// a string so the schema check names it.
fn to_json(schema: &Value, pairs: Vec<(String, String)>) -> Map<String, Value> {
    let mut out = Map::new();
    for (k, v) in pairs {
        let s = &schema["properties"][&k];
        let value = match s["type"].as_str() {
            _ if v.is_empty() => continue,
            Some("integer") => v
                .trim()
                .parse::<i64>()
                .map(Value::from)
                .unwrap_or(Value::String(v)),
            Some("number") => v
                .trim()
                .parse::<f64>()
                .ok()
                .and_then(serde_json::Number::from_f64)
                .map(Value::Number)
                .unwrap_or(Value::String(v)),
            Some("boolean") => Value::Bool(v == "true" || v == "on"),
            _ => Value::String(v),
        };
        out.insert(k, value);
    }
    out
}

/// `POST /forms/{name}` (application/x-www-form-urlencoded).
#[utoipa::path(
    post,
    path = "/forms/{name}",
    tag = "forms",
    params(("name" = String, Path, description = "Workflow name")),
    request_body(content = String, content_type = "application/x-www-form-urlencoded", description = "The form's fields, converted to JSON by the input schema's declared types"),
    responses(
        (status = 202, description = "Run created: a thank-you page", body = String, content_type = "text/html"),
        (status = 404, description = "No such workflow, or it has no form trigger", body = String, content_type = "text/html"),
        (status = 422, description = "Invalid input: the form again, with errors", body = String, content_type = "text/html"),
        (status = 500, description = "The run could not be saved", body = String, content_type = "text/html"),
    ),
    security(())
)]
pub async fn submit(
    State(state): State<AppState>,
    Path(name): Path<String>,
    body: Bytes,
) -> Response {
    let Some(wf) = state.engine.catalog().get(&name) else {
        return not_found(&name);
    };
    let Some(form) = &wf.def.trigger.form else {
        return not_found(&name);
    };
    let pairs: Vec<(String, String)> = url_decode_pairs(&body);
    let values = to_json(&wf.def.input.schema, pairs);
    match state
        .engine
        .submit(&name, Value::Object(values.clone()), None, "form")
        .await
    {
        Ok(s) => ui::render(
            StatusCode::ACCEPTED,
            "form.html",
            FormPage {
                title: form.title.clone(),
                name: name.clone(),
                reference: Some(s.run_id),
                ..FormPage::default()
            },
        ),
        Err(SubmitError::InvalidInput(errors)) => {
            let errors: Vec<(String, String)> =
                errors.into_iter().map(|e| (e.pointer, e.message)).collect();
            render_form(
                StatusCode::UNPROCESSABLE_ENTITY,
                &name,
                &form.title,
                &wf.def.input.schema,
                &values,
                &errors,
            )
        }
        Err(SubmitError::UnknownWorkflow(_)) => not_found(&name),
        Err(e) => {
            tracing::error!(error = %e, workflow = %name, "form submission failed");
            ui::render(
                StatusCode::INTERNAL_SERVER_ERROR,
                "form.html",
                FormPage {
                    title: "Something went wrong".into(),
                    name: name.clone(),
                    failed: true,
                    ..FormPage::default()
                },
            )
        }
    }
}

/// Decodes `application/x-www-form-urlencoded`.
pub(crate) fn url_decode_pairs(body: &[u8]) -> Vec<(String, String)> {
    fn decode(s: &str) -> String {
        let bytes = s.as_bytes();
        let mut out = Vec::with_capacity(bytes.len());
        let mut i = 0;
        while i < bytes.len() {
            match bytes[i] {
                b'+' => out.push(b' '),
                b'%' if i + 2 < bytes.len() => {
                    let hex = |b: u8| (b as char).to_digit(16);
                    match (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                        (Some(h), Some(l)) => {
                            out.push((h * 16 + l) as u8);
                            i += 2;
                        }
                        _ => out.push(b'%'),
                    }
                }
                b => out.push(b),
            }
            i += 1;
        }
        String::from_utf8_lossy(&out).into_owned()
    }
    String::from_utf8_lossy(body)
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (decode(k), decode(v))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_forms() {
        assert_eq!(
            url_decode_pairs(b"name=Ada+L&msg=a%26b%3D%3Cx%3E&bad=%zz"),
            [
                ("name".into(), "Ada L".into()),
                ("msg".into(), "a&b=<x>".into()),
                ("bad".into(), "%zz".into())
            ]
        );
    }
}
