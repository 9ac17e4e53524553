//! The `form` trigger: `GET /forms/{name}` renders an HTML form from the
//! workflow's input schema; `POST /forms/{name}` turns the fields into JSON
//! by the schema's types and submits a run. Plain HTML that works without
//! JavaScript; every value shown is escaped.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use engine::SubmitError;
use serde_json::{Map, Value};

use crate::AppState;

/// Escapes text for HTML element content and attribute values.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

const STYLE: &str = "body{font-family:system-ui,sans-serif;max-width:40rem;margin:2rem auto;padding:0 1rem;line-height:1.5;color:#1b1b1b}\
label{display:block;font-weight:600;margin-top:1rem}input,textarea,select{width:100%;padding:.5rem;font:inherit;box-sizing:border-box;border:1px solid #888;border-radius:4px}\
textarea{min-height:8rem}.err{color:#a00;font-weight:400}.req{color:#a00}button{margin-top:1.5rem;padding:.6rem 1.4rem;font:inherit;background:#1d4ed8;color:#fff;border:0;border-radius:4px}\
.box{border:1px solid #ccc;border-radius:6px;padding:1rem;margin-top:1rem}code{background:#f3f3f3;padding:0 .3rem}";

fn page(title: &str, body: &str) -> String {
    format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"><title>{t}</title><style>{STYLE}</style></head><body><h1>{t}</h1>{body}</body></html>",
        t = escape(title)
    )
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
    name: &str,
    title: &str,
    schema: &Value,
    values: &Map<String, Value>,
    errors: &[(String, String)],
) -> String {
    let mut body = String::new();
    if !errors.is_empty() {
        body.push_str(
            "<p class=\"err\" role=\"alert\">Please correct the fields marked below.</p>",
        );
    }
    body.push_str(&format!(
        "<form method=\"post\" action=\"/forms/{}\">",
        escape(name)
    ));
    for f in fields(schema) {
        let id = escape(f.name);
        let label = f.schema["title"].as_str().unwrap_or(f.name);
        let value = match values.get(f.name) {
            Some(Value::String(s)) => s.clone(),
            Some(Value::Null) | None => String::new(),
            Some(v) => v.to_string(),
        };
        body.push_str(&format!(
            "<label for=\"{id}\">{}{}</label>",
            escape(label),
            if f.required {
                " <span class=\"req\" aria-hidden=\"true\">*</span>"
            } else {
                ""
            }
        ));
        let req = if f.required { " required" } else { "" };
        let max = f.schema["maxLength"].as_u64();
        let maxattr = max
            .map(|m| format!(" maxlength=\"{m}\""))
            .unwrap_or_default();
        if let Some(options) = f.schema["enum"].as_array() {
            body.push_str(&format!(
                "<select id=\"{id}\" name=\"{id}\"{req}><option value=\"\"></option>"
            ));
            for o in options {
                let o = o.as_str().map_or_else(|| o.to_string(), str::to_string);
                let sel = if o == value { " selected" } else { "" };
                body.push_str(&format!("<option{sel}>{}</option>", escape(&o)));
            }
            body.push_str("</select>");
        } else {
            match f.schema["type"].as_str() {
                Some("boolean") => body.push_str(&format!(
                    "<input type=\"checkbox\" id=\"{id}\" name=\"{id}\" value=\"true\"{}>",
                    if value == "true" { " checked" } else { "" }
                )),
                Some("integer" | "number") => body.push_str(&format!(
                    "<input type=\"number\" id=\"{id}\" name=\"{id}\" value=\"{}\"{req}{}>",
                    escape(&value),
                    if f.schema["type"] == "number" {
                        " step=\"any\""
                    } else {
                        ""
                    }
                )),
                _ if max.is_none_or(|m| m > 500) => body.push_str(&format!(
                    "<textarea id=\"{id}\" name=\"{id}\"{req}{maxattr}>{}</textarea>",
                    escape(&value)
                )),
                _ => body.push_str(&format!(
                    "<input type=\"{}\" id=\"{id}\" name=\"{id}\" value=\"{}\"{req}{maxattr}>",
                    if f.schema["format"] == "email" {
                        "email"
                    } else {
                        "text"
                    },
                    escape(&value)
                )),
            }
        }
        for (ptr, msg) in errors {
            if ptr.trim_start_matches('/') == f.name {
                body.push_str(&format!("<div class=\"err\">{}</div>", escape(msg)));
            }
        }
    }
    for (ptr, msg) in errors {
        if !fields(schema)
            .iter()
            .any(|f| ptr.trim_start_matches('/') == f.name)
        {
            body.push_str(&format!(
                "<div class=\"err\">{}: {}</div>",
                escape(ptr),
                escape(msg)
            ));
        }
    }
    body.push_str("<button type=\"submit\">Send</button></form>");
    page(title, &body)
}

fn not_found(name: &str) -> Response {
    (
        StatusCode::NOT_FOUND,
        Html(page(
            "Not found",
            &format!(
                "<p>There is no form called <code>{}</code>.</p>",
                escape(name)
            ),
        )),
    )
        .into_response()
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
    Html(render_form(
        &name,
        &form.title,
        &wf.def.input.schema,
        &Map::new(),
        &[],
    ))
    .into_response()
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
    match state.engine.submit(&name, Value::Object(values.clone()), None, "form").await {
        Ok(s) => (
            StatusCode::ACCEPTED,
            [(header::CACHE_CONTROL, "no-store")],
            Html(page(
                &form.title,
                &format!(
                    "<div class=\"box\" role=\"status\"><p>Thank you — your request was received.</p><p>Reference: <code>{}</code></p></div>",
                    escape(&s.run_id)
                ),
            )),
        )
            .into_response(),
        Err(SubmitError::InvalidInput(errors)) => {
            let errors: Vec<(String, String)> = errors.into_iter().map(|e| (e.pointer, e.message)).collect();
            (
                StatusCode::UNPROCESSABLE_ENTITY,
                Html(render_form(&name, &form.title, &wf.def.input.schema, &values, &errors)),
            )
                .into_response()
        }
        Err(SubmitError::UnknownWorkflow(_)) => not_found(&name),
        Err(e) => {
            tracing::error!(error = %e, workflow = %name, "form submission failed");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                Html(page("Something went wrong", "<p>Your request could not be saved. Please try again in a moment.</p>")),
            )
                .into_response()
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
    fn decodes_forms_and_escapes_html() {
        assert_eq!(
            url_decode_pairs(b"name=Ada+L&msg=a%26b%3D%3Cx%3E&bad=%zz"),
            [
                ("name".into(), "Ada L".into()),
                ("msg".into(), "a&b=<x>".into()),
                ("bad".into(), "%zz".into())
            ]
        );
        assert_eq!(
            escape("<script>\"x\"&'"),
            "&lt;script&gt;&quot;x&quot;&amp;&#39;"
        );
    }
}
