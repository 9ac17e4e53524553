//! The review inbox: server-rendered HTML for people (sign-in, the list of
//! pending tasks, the task page with its decision forms, the outbox of
//! effects recorded instead of sent).
//!
//! Plain forms that work without JavaScript; every untrusted string goes
//! through [`escape`]; the stylesheet is our own and inline and the one
//! script (j / k between tasks) is our own file, so the binary carries
//! everything and a strict `Content-Security-Policy` holds.
//!
//! Security: sessions are random secrets in an `HttpOnly`, `SameSite=Lax`
//! cookie (`Secure` over https), stored as SHA-256 with an expiry; every
//! POST carries the session's CSRF token in a hidden field and must come
//! from our own origin when the browser says where it came from.

mod inbox;
mod outbox;
mod session;

use axum::Router;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};

pub use session::{
    SESSION_COOKIE, WebState, hash_password, new_password, session_caller, verify_password,
};

use crate::AppState;
pub(crate) use crate::forms::escape;

/// The inbox routes, merged into [`crate::app`].
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/login", get(session::login_form).post(session::login))
        .route("/logout", post(session::logout))
        .route("/inbox", get(inbox::list))
        .route("/inbox/{id}", get(inbox::task))
        .route("/inbox/{id}/decision", post(inbox::decide))
        .route("/outbox", get(outbox::list))
        .route("/assets/inbox.js", get(script))
}

/// Our only script: j / k between tasks. Pages work without it.
const SCRIPT: &str = include_str!("inbox.js");

async fn script() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
            (header::CACHE_CONTROL, "public, max-age=300"),
        ],
        SCRIPT,
    )
        .into_response()
}

const STYLE: &str = r#"
:root{--fg:#1b1b1b;--muted:#5b5b5b;--line:#d4d4d4;--bg:#fff;--soft:#f5f6f8;--accent:#1d4ed8;--ok:#166534;--bad:#a10e0e}
*{box-sizing:border-box}
body{font-family:system-ui,-apple-system,"Segoe UI",sans-serif;margin:0;color:var(--fg);background:var(--bg);line-height:1.45}
a{color:var(--accent)}
:focus-visible{outline:3px solid #f59e0b;outline-offset:2px}
.skip{position:absolute;left:-999px}.skip:focus{left:1rem;top:.5rem;background:#fff;padding:.3rem .6rem}
header.top{display:flex;flex-wrap:wrap;gap:.5rem 1.5rem;align-items:center;padding:.6rem 1rem;border-bottom:1px solid var(--line);background:var(--soft)}
header.top .brand{font-weight:700;text-decoration:none;color:var(--fg)}
header.top form{margin:0 0 0 auto}
main{max-width:78rem;margin:0 auto;padding:1rem}
h1{font-size:1.4rem;margin:.3rem 0 1rem}h2{font-size:1.1rem;margin:1.5rem 0 .5rem;border-bottom:1px solid var(--line);padding-bottom:.2rem}
label{display:block;font-weight:600;margin:.6rem 0 .2rem}
input,textarea,select{width:100%;padding:.45rem;font:inherit;border:1px solid #888;border-radius:4px;background:#fff}
textarea{min-height:5.5rem}
button{padding:.55rem 1.2rem;font:inherit;border:0;border-radius:4px;background:var(--accent);color:#fff;cursor:pointer}
button.reject{background:var(--bad)}button.escalate{background:#6b7280}button.link{background:none;color:var(--accent);padding:0;text-decoration:underline}
.filters{display:flex;flex-wrap:wrap;gap:.6rem;align-items:flex-end;margin-bottom:1rem}
.filters label{margin:0}.filters select{width:auto;min-width:9rem}
table{border-collapse:collapse;width:100%}
th,td{text-align:left;padding:.45rem .5rem;border-bottom:1px solid var(--line);vertical-align:top}
th{background:var(--soft);font-size:.9rem}
.muted{color:var(--muted)}.err{color:var(--bad)}.ok{color:var(--ok)}
.banner{padding:.6rem .8rem;border-radius:4px;margin:.5rem 0 1rem;background:#fef3c7}
.banner.err{background:#fee2e2}.banner.ok{background:#dcfce7}
.badge{display:inline-block;padding:0 .45rem;border-radius:999px;background:var(--soft);border:1px solid var(--line);font-size:.85rem}
.p-urgent,.p-high{background:#fee2e2;border-color:#fca5a5}
.grid{display:grid;grid-template-columns:minmax(0,1fr) minmax(0,1fr);gap:1rem}
.field{border:1px solid var(--line);border-radius:6px;padding:.6rem .8rem;margin-bottom:.8rem}
.field .draft{background:var(--soft);padding:.4rem .6rem;border-radius:4px;white-space:pre-wrap;overflow-wrap:anywhere;margin:0}
.field .pair{display:grid;grid-template-columns:minmax(0,1fr) minmax(0,1fr);gap:.8rem}
pre{white-space:pre-wrap;overflow-wrap:anywhere;background:var(--soft);padding:.5rem;border-radius:4px;margin:.2rem 0;font-size:.88rem}
dl.kv{display:grid;grid-template-columns:max-content minmax(0,1fr);gap:.2rem 1rem;margin:0}
dl.kv dt{font-weight:600}dl.kv dd{margin:0;white-space:pre-wrap;overflow-wrap:anywhere}
.actions{display:flex;flex-wrap:wrap;gap:1rem;margin-top:1rem}
.actions form{flex:1 1 16rem;border:1px solid var(--line);border-radius:6px;padding:.7rem}
ol.steps{padding-left:1.3rem}ol.steps li{margin-bottom:.5rem}
.login{max-width:24rem;margin:3rem auto}
@media (max-width:760px){
 .grid,.field .pair{grid-template-columns:1fr}
 table.stack thead{display:none}
 table.stack tr{display:block;border:1px solid var(--line);border-radius:6px;margin-bottom:.6rem}
 table.stack td{display:block;border:0;padding:.2rem .6rem}
 table.stack td[data-label]::before{content:attr(data-label) ": ";font-weight:600}
}
"#;

/// A whole page. `user` is shown in the header with a sign-out button.
pub(crate) fn page(title: &str, user: Option<(&str, &str)>, body: &str) -> String {
    let nav = match user {
        Some((email, csrf)) => format!(
            "<header class=\"top\"><a class=\"brand\" href=\"/inbox\">Countersign</a><a href=\"/inbox\" accesskey=\"i\">Inbox</a><a href=\"/outbox\" accesskey=\"o\">Outbox</a><span class=\"muted\">{}</span><form method=\"post\" action=\"/logout\"><input type=\"hidden\" name=\"csrf\" value=\"{}\"><button class=\"link\" type=\"submit\">Sign out</button></form></header>",
            escape(email),
            escape(csrf)
        ),
        None => "<header class=\"top\"><span class=\"brand\">Countersign</span></header>".into(),
    };
    format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"><title>{t} · Countersign</title><style>{STYLE}</style><script src=\"/assets/inbox.js\" defer></script></head><body><a class=\"skip\" href=\"#main\">Skip to content</a>{nav}<main id=\"main\">{body}</main></body></html>",
        t = escape(title)
    )
}

/// An HTML response with the headers every inbox page carries: no
/// caching of personal data, no framing, no scripts or remote styles.
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
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; script-src 'self'; style-src 'unsafe-inline'; img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    res
}

/// A short page with one message (403, 404, 409 …).
pub(crate) fn message(
    status: StatusCode,
    title: &str,
    text: &str,
    user: Option<(&str, &str)>,
) -> Response {
    html(
        status,
        page(
            title,
            user,
            &format!(
                "<h1>{}</h1><p>{}</p><p><a href=\"/inbox\">Back to the inbox</a></p>",
                escape(title),
                escape(text)
            ),
        ),
    )
}

/// `303 See Other` to `to` (after a POST).
pub(crate) fn see_other(to: &str) -> Response {
    let mut res = StatusCode::SEE_OTHER.into_response();
    if let Ok(v) = HeaderValue::from_str(to) {
        res.headers_mut().insert(header::LOCATION, v);
    }
    res
}
