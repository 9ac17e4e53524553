//! The review inbox: server-rendered HTML for people (sign-in, the list of
//! pending tasks, the task page with its decision forms, the outbox of
//! effects recorded instead of sent).
//!
//! Plain forms that work without JavaScript; every page is a template
//! rendered with HTML auto-escaping ([`ui`]); the stylesheet and the one
//! script are our own files, so the binary carries everything and a strict
//! `Content-Security-Policy` holds.
//!
//! Security: sessions are random secrets in an `HttpOnly`, `SameSite=Lax`
//! cookie (`Secure` over https), stored as SHA-256 with an expiry; every
//! POST carries the session's CSRF token in a hidden field and must come
//! from our own origin when the browser says where it came from.

mod calibration;
mod chart;
mod console;
mod desk;
mod inbox;
mod outbox;
mod run_view;
mod session;
mod task;
pub(crate) mod ui;

use axum::Router;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Serialize;

pub use session::{
    SESSION_COOKIE, WebState, hash_password, new_password, session_caller, verify_password,
};

use crate::AppState;
use ui::Me;

/// The inbox routes, merged into [`crate::app`].
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/login", get(session::login_form).post(session::login))
        .route("/logout", post(session::logout))
        .route("/inbox", get(inbox::list))
        .route("/inbox/bulk", post(inbox::bulk))
        .route("/inbox/{id}", get(task::task))
        .route("/inbox/{id}/decision", post(task::decide))
        .route("/inbox/{id}/preview", post(task::preview))
        .route("/inbox/{id}/claim", post(task::take_over))
        .route("/outbox", get(outbox::list))
        .route("/", get(console::home))
        .route("/runs", get(console::list))
        .route("/runs/{id}", get(console::page))
        .route("/runs/{id}/retry", post(console::retry))
        .route("/runs/{id}/cancel", post(console::cancel))
        .route("/calibration", get(calibration::page))
        .route("/assets/app.js", get(script))
        .route("/assets/app.css", get(stylesheet))
}

async fn script() -> Response {
    asset("text/javascript; charset=utf-8", ui::SCRIPT)
}

async fn stylesheet() -> Response {
    asset("text/css; charset=utf-8", ui::STYLESHEET)
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "public, max-age=300"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        ],
        body,
    )
        .into_response()
}

#[derive(Serialize)]
struct MessagePage<'a> {
    me: Option<Me>,
    nav: &'static str,
    title: &'a str,
    text: &'a str,
}

/// A short page with one message (403, 404, 409 …).
pub(crate) fn message(status: StatusCode, title: &str, text: &str, me: Option<Me>) -> Response {
    ui::render(
        status,
        "message.html",
        MessagePage {
            me,
            nav: "",
            title,
            text,
        },
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
