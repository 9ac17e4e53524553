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

use std::time::Duration;

use domain::workflow::InputSpec;

use crate::AppState;
use crate::client::ClientIp;
use crate::web::ui;

/// The honeypot: a text field people never see (hidden by CSS, skipped by
/// keyboard and screen readers) and bots fill in. A submission with it
/// filled gets the thank-you page and creates nothing.
const HONEYPOT: &str = "cs_website";

/// One control of the form, as the template draws it.
#[derive(Debug, Serialize)]
struct FormField {
    id: String,
    label: String,
    /// The schema's `description`, shown under the label.
    hint: Option<String>,
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
    /// Too many submissions from this address: try again in this many seconds.
    retry_in_s: Option<u64>,
    honeypot: &'static str,
}

struct Field<'a> {
    name: &'a str,
    schema: &'a Value,
    required: bool,
}

/// The fields a person fills in, in the order the workflow file writes
/// them (then any others), without the machine-only ones: the
/// `idempotency_field` and properties marked `readOnly: true`.
fn fields(input: &InputSpec) -> Vec<Field<'_>> {
    let schema = &input.schema;
    let required: Vec<&str> = schema["required"]
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let Some(props) = schema["properties"].as_object() else {
        return Vec::new();
    };
    let mut names: Vec<&str> = input
        .field_order
        .iter()
        .map(String::as_str)
        .filter(|n| props.contains_key(*n))
        .collect();
    let rest: Vec<&str> = props
        .keys()
        .map(String::as_str)
        .filter(|n| !names.contains(n))
        .collect();
    names.extend(rest);
    names
        .into_iter()
        .filter(|n| input.idempotency_field.as_deref() != Some(*n))
        .filter_map(|name| {
            let s = &props[name];
            (s["readOnly"] != Value::Bool(true)).then(|| Field {
                name,
                schema: s,
                required: required.contains(&name),
            })
        })
        .collect()
}

/// `message_id` → "Message id".
fn readable(name: &str) -> String {
    let words = name.replace(['_', '-'], " ");
    let mut c = words.trim().chars();
    c.next()
        .map(|f| f.to_uppercase().chain(c).collect())
        .unwrap_or_default()
}

fn label_of(f: &Field<'_>) -> String {
    f.schema["title"]
        .as_str()
        .map_or_else(|| readable(f.name), str::to_string)
}

/// A schema error on `f`, said the way a person filling in the form needs
/// it (the raw JSON Schema wording names types and keywords).
fn human(f: &Field<'_>, raw: &str) -> String {
    let s = f.schema;
    let n = |k: &str| s[k].as_f64().map(|v| v.to_string()).unwrap_or_default();
    if raw.ends_with("is a required property") {
        return "Please fill in this field.".into();
    }
    if raw.contains("is shorter than") {
        return match s["minLength"].as_u64() {
            Some(1) | None => "Please fill in this field.".into(),
            Some(m) => format!("Please use at least {m} characters."),
        };
    }
    if raw.contains("is longer than") {
        return format!("Please use at most {} characters.", n("maxLength"));
    }
    if s["format"] == "email" && raw.contains("is not a") {
        return "Please enter an email address, like name@example.com.".into();
    }
    if raw.contains("is not one of") {
        return "Please choose one of the options.".into();
    }
    if raw.contains("is less than the minimum") {
        return format!("Please enter {} or more.", n("minimum"));
    }
    if raw.contains("is greater than the maximum") {
        return format!("Please enter {} or less.", n("maximum"));
    }
    match s["type"].as_str() {
        Some("integer") if raw.contains("is not of type") => "Please enter a whole number.".into(),
        Some("number") if raw.contains("is not of type") => "Please enter a number.".into(),
        _ if raw.contains("does not match") => match s["description"].as_str() {
            Some(d) => format!("Please use the expected format: {d}"),
            None => "Please use the expected format.".into(),
        },
        _ => raw.to_string(),
    }
}

/// The field an input error belongs to: its pointer's first segment, or,
/// for a missing required field (reported on the object), the name the
/// message quotes.
fn field_of(pointer: &str, message: &str) -> String {
    let first = pointer
        .trim_start_matches('/')
        .split('/')
        .next()
        .unwrap_or("");
    if !first.is_empty() {
        return first.to_string();
    }
    message
        .strip_prefix('"')
        .and_then(|m| m.split_once('"'))
        .filter(|_| message.ends_with("is a required property"))
        .map(|(name, _)| name.to_string())
        .unwrap_or_default()
}

fn render_form(
    status: StatusCode,
    name: &str,
    title: &str,
    input: &InputSpec,
    values: &Map<String, Value>,
    errors: &[(String, String)],
) -> Response {
    let all = fields(input);
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
                label: label_of(f),
                hint: f.schema["description"].as_str().map(str::to_string),
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
                errors: {
                    let mut e: Vec<String> = errors
                        .iter()
                        .filter(|(p, m)| field_of(p, m) == f.name)
                        .map(|(_, m)| human(f, m))
                        .collect();
                    e.dedup();
                    e
                },
            }
        })
        .collect();
    let other_errors = errors
        .iter()
        .filter(|(p, m)| !all.iter().any(|f| field_of(p, m) == f.name))
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
            honeypot: HONEYPOT,
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
        &wf.def.input,
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
        if k == HONEYPOT {
            continue;
        }
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
    from: ClientIp,
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
    let thanks = |reference: Option<String>| {
        ui::render(
            StatusCode::ACCEPTED,
            "form.html",
            FormPage {
                title: form.title.clone(),
                name: name.clone(),
                reference,
                ..FormPage::default()
            },
        )
    };
    if pairs
        .iter()
        .any(|(k, v)| k == HONEYPOT && !v.trim().is_empty())
    {
        tracing::info!(workflow = %name, from = %from.label(), "form honeypot filled; nothing created");
        return thanks(None);
    }
    let limit = state.config.form_limit_per_minute;
    if let Err(wait) = state.form_hits.hit(
        &format!("{name}|{}", from.label()),
        limit,
        Duration::from_secs(60),
    ) {
        tracing::info!(workflow = %name, from = %from.label(), "form rate limit reached");
        let secs = wait.as_secs().max(1);
        let mut res = ui::render(
            StatusCode::TOO_MANY_REQUESTS,
            "form.html",
            FormPage {
                title: form.title.clone(),
                name: name.clone(),
                retry_in_s: Some(secs),
                ..FormPage::default()
            },
        );
        if let Ok(v) = axum::http::HeaderValue::from_str(&secs.to_string()) {
            res.headers_mut().insert(axum::http::header::RETRY_AFTER, v);
        }
        return res;
    }
    let values = to_json(&wf.def.input.schema, pairs);
    match state
        .engine
        .submit(&name, Value::Object(values.clone()), None, "form")
        .await
    {
        Ok(s) => thanks(Some(s.run_id)),
        Err(SubmitError::InvalidInput(errors)) => {
            let errors: Vec<(String, String)> =
                errors.into_iter().map(|e| (e.pointer, e.message)).collect();
            render_form(
                StatusCode::UNPROCESSABLE_ENTITY,
                &name,
                &form.title,
                &wf.def.input,
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
