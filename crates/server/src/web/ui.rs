//! Pages from templates: one minijinja environment with HTML auto-escaping
//! for every `.html` template, one layout (`layout.html`) and one
//! stylesheet and script of our own (`/assets/app.css`, `/assets/app.js`).
//!
//! Handlers build typed view structs and call [`render`]; no page is put
//! together from strings, so a value can only reach the HTML escaped (or
//! through the `safe` filter, which no template uses on untrusted text).
//! The templates are compiled into the binary; a test renders every one.

use std::sync::LazyLock;

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use minijinja::{Environment, UndefinedBehavior};
use serde::Serialize;

/// Every template, by name. `layout.html` is the one layout.
const TEMPLATES: &[(&str, &str)] = &[
    ("layout.html", include_str!("../../templates/layout.html")),
    ("macros.html", include_str!("../../templates/macros.html")),
    ("message.html", include_str!("../../templates/message.html")),
    ("login.html", include_str!("../../templates/login.html")),
    ("outbox.html", include_str!("../../templates/outbox.html")),
    ("inbox.html", include_str!("../../templates/inbox.html")),
    ("task.html", include_str!("../../templates/task.html")),
    ("after.html", include_str!("../../templates/after.html")),
    ("form.html", include_str!("../../templates/form.html")),
    ("bulk.html", include_str!("../../templates/bulk.html")),
    ("link.html", include_str!("../../templates/link.html")),
    ("home.html", include_str!("../../templates/home.html")),
    ("runs.html", include_str!("../../templates/runs.html")),
    ("run.html", include_str!("../../templates/run.html")),
    (
        "calibration.html",
        include_str!("../../templates/calibration.html"),
    ),
];

pub(crate) const STYLESHEET: &str = include_str!("../../assets/app.css");
pub(crate) const SCRIPT: &str = include_str!("../../assets/app.js");

static ENV: LazyLock<Environment<'static>> = LazyLock::new(|| {
    let mut env = Environment::new();
    // A misspelt variable is an error, not an empty string; `is defined`
    // and `if x` still work on optional values.
    env.set_undefined_behavior(UndefinedBehavior::SemiStrict);
    for (name, source) in TEMPLATES {
        env.add_template(name, source)
            .unwrap_or_else(|e| panic!("template {name} does not parse: {e:#}"));
    }
    env.add_filter("when", |ms: i64| when(ms));
    env.add_filter("label", |name: &str| label(name));
    env
});

/// Who is signed in, for the layout's header.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Me {
    pub email: String,
    pub csrf: String,
    pub role: &'static str,
}

/// Renders `name` with `ctx` into an HTML response with the security
/// headers every page carries. A template that fails to render is a bug:
/// logged with its cause, answered with a plain 500 page.
pub(crate) fn render<S: Serialize>(status: StatusCode, name: &str, ctx: S) -> Response {
    match ENV
        .get_template(name)
        .and_then(|t| t.render(minijinja::value::Serde(&ctx)))
    {
        Ok(body) => html(status, body),
        Err(e) => {
            tracing::error!(
                template = name,
                error = format!("{e:#}"),
                "a page failed to render"
            );
            html(
                StatusCode::INTERNAL_SERVER_ERROR,
                "<!doctype html><title>Error</title><p>This page could not be shown. The error was logged.</p>"
                    .to_string(),
            )
        }
    }
}

/// Renders a template to a string (fragments fetched by the page script).
pub(crate) fn render_string<S: Serialize>(name: &str, ctx: S) -> Result<String, String> {
    ENV.get_template(name)
        .and_then(|t| t.render(minijinja::value::Serde(&ctx)))
        .map_err(|e| format!("{e:#}"))
}

/// An HTML response with the headers every page carries: no caching of
/// personal data, no framing, no sniffing, no scripts or styles but ours.
pub(crate) fn html(status: StatusCode, body: String) -> Response {
    let mut res = (status, body).into_response();
    let h = res.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    res
}

/// A moment as people read it: `2026-12-04 16:52 UTC`.
pub(crate) fn when(at_ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(at_ms)
        .map_or_else(String::new, |t| t.format("%Y-%m-%d %H:%M UTC").to_string())
}

/// A duration as people read it: `42s`, `5m`, `3h`, `2d`.
pub(crate) fn span(ms: i64) -> String {
    let s = ms.max(0) / 1000;
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m", s / 60),
        3600..86_400 => format!("{}h", s / 3600),
        _ => format!("{}d", s / 86_400),
    }
}

/// A machine name made readable: `recommended_next_step` → "Recommended
/// next step", `sales_lead` → "Sales lead".
pub(crate) fn label(name: &str) -> String {
    let spaced: String = name
        .chars()
        .map(|c| if c == '_' || c == '-' { ' ' } else { c })
        .collect();
    let spaced = spaced.trim();
    let mut out = String::with_capacity(spaced.len());
    let mut chars = spaced.chars();
    if let Some(first) = chars.next() {
        out.extend(first.to_uppercase());
        out.extend(chars);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_read_as_words() {
        assert_eq!(label("recommended_next_step"), "Recommended next step");
        assert_eq!(label("sales_lead"), "Sales lead");
        assert_eq!(label("x"), "X");
        assert_eq!(label(""), "");
        assert_eq!(span(59_999), "59s");
        assert_eq!(span(3 * 3_600_000), "3h");
        assert_eq!(span(-5), "0s");
    }

    #[test]
    fn every_template_parses_and_escapes() {
        for (name, _) in TEMPLATES {
            ENV.get_template(name).expect(name);
        }
        let page = render_string(
            "message.html",
            minijinja::context! { title => "<b>x</b>", text => "a & <script>", me => () },
        )
        .unwrap();
        assert!(page.contains("&lt;b&gt;x&lt;&#x2f;b&gt;"), "{page}");
        assert!(!page.contains("<script>"), "{page}");
    }
}
