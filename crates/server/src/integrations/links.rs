//! `GET|POST /review/{token}`: email approval links (see `engine::links`).
//!
//! GET only shows what the link would do and a confirmation button: it
//! never changes state, so mail scanners that prefetch links decide
//! nothing. POST (the button, carrying the same token in the path)
//! decides, once: the link's nonce is used up in the decision's
//! transaction. Refusals are plain pages: 400 malformed, 403 tampered
//! (signature mismatch) or no longer allowed, 410 expired, used, or the
//! task already decided. An `open` link redirects to the task in the web
//! inbox.
//!
//! A link decides as the user it was sent to (the inbox user with the
//! recipient's address), only while that user may decide the task in the
//! inbox, and only while the task waits in the queue the link was sent
//! for: an escalation (by a person or a deadline) makes every outstanding
//! link refuse. A link to an address that is no user decides only in that
//! queue, and cannot approve a task that needs distinct people.
//!
//! The link secret is `COUNTERSIGN_LINK_SECRET`, or one generated and kept
//! in the database on first use (so every node of a cluster shares it).

use axum::extract::{Path, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use engine::ReviewError;
use engine::links::{Action, Link, LinkError, Secret};
use engine::review::{Decider, Decision, DecisionError};
use serde_json::Map;
use store::{Review, ReviewStatus};

use serde::Serialize;

use crate::AppState;
use crate::web::ui;

#[derive(Serialize)]
struct Confirm {
    workflow: String,
    queue: String,
    actor: String,
    verb: &'static str,
    fields: Vec<(String, String)>,
}

#[derive(Serialize)]
struct Done {
    workflow: String,
    queue: String,
    actor: String,
}

#[derive(Serialize, Default)]
struct LinkPage {
    me: Option<()>,
    nav: &'static str,
    title: String,
    refused: Option<String>,
    confirm: Option<Confirm>,
    done: Option<Done>,
    token: String,
    inbox: String,
}

/// A link page: the layout's, plus no referrer (the path is a credential)
/// and no indexing.
fn page(status: StatusCode, page: LinkPage) -> Response {
    let mut res = ui::render(status, "link.html", page);
    let h = res.headers_mut();
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert("x-robots-tag", HeaderValue::from_static("noindex"));
    res
}

fn refused(status: StatusCode, why: &str) -> Response {
    page(
        status,
        LinkPage {
            title: "This link cannot be used".into(),
            refused: Some(why.to_string()),
            ..LinkPage::default()
        },
    )
}

async fn secret(state: &AppState) -> Result<Secret, Response> {
    Secret::load(
        state.config.integrations.link_secret.as_deref(),
        state.engine.store().as_ref(),
    )
    .await
    .map_err(|e| {
        tracing::warn!(error = %e, "loading the link secret failed");
        refused(
            StatusCode::SERVICE_UNAVAILABLE,
            "The server cannot check links right now.",
        )
    })
}

/// Verifies the token and that it is unused and its task still pending.
async fn check(state: &AppState, token: &str) -> Result<(Link, Review), Response> {
    let secret = secret(state).await?;
    let link = secret
        .verify(token, engine::now_ms())
        .map_err(|e| match e {
            LinkError::Malformed => refused(
                StatusCode::BAD_REQUEST,
                "The link is incomplete or malformed.",
            ),
            LinkError::Tampered => refused(
                StatusCode::FORBIDDEN,
                "The link is not valid (its signature does not match).",
            ),
            LinkError::Expired => refused(StatusCode::GONE, "The link has expired."),
        })?;
    let store = state.engine.store();
    let internal = |e: store::Error| {
        tracing::warn!(error = %e, "reading for an approval link failed");
        refused(
            StatusCode::SERVICE_UNAVAILABLE,
            "The server cannot check links right now.",
        )
    };
    if link.action != Action::Open && store.nonce_used(&link.use_key()).await.map_err(internal)? {
        return Err(refused(StatusCode::GONE, "The link was already used."));
    }
    let review = store
        .review(&link.review_id)
        .await
        .map_err(internal)?
        .ok_or_else(|| refused(StatusCode::GONE, "The review task no longer exists."))?;
    if let Some(q) = &link.queue
        && link.action != Action::Open
        && review.status == ReviewStatus::Pending
        && *q != review.queue
    {
        return Err(moved(&review.queue));
    }
    Ok((link, review))
}

fn moved(queue: &str) -> Response {
    refused(
        StatusCode::FORBIDDEN,
        &format!(
            "The task was moved to the `{queue}` queue after this link was sent, so the link no longer decides it."
        ),
    )
}

/// Who the link decides as: the user it was sent to, within the queue it
/// was sent for; an address that is no user, only within that queue.
async fn decider(state: &AppState, link: &Link) -> store::Result<Decider> {
    let bound = link.queue.clone().map(|q| vec![q]);
    let mut by = crate::identity::resolve(
        state.engine.store().as_ref(),
        &link.actor,
        Some(bound.clone().unwrap_or_default()),
    )
    .await?;
    if by.user_id.is_some() {
        by.queues = crate::identity::both(by.queues, bound);
    }
    Ok(by)
}

fn fields_of(r: &Review) -> Vec<(String, String)> {
    serde_json::from_str::<Vec<serde_json::Value>>(&r.fields)
        .unwrap_or_default()
        .iter()
        .map(|f| {
            let draft = match &f["draft"] {
                serde_json::Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            (ui::label(f["name"].as_str().unwrap_or("?")), draft)
        })
        .collect()
}

/// GET: a confirmation page; decides nothing.
///
/// The signed token in the path is the credential (no bearer token). An
/// `open` link redirects to the task in the web inbox.
#[utoipa::path(
    get,
    path = "/review/{token}",
    tag = "integrations",
    params(("token" = String, Path, description = "Signed, single-use approval link token from a notification email", pattern = r"^[0-9A-Za-z_-]{1,128}(\.[0-9A-Za-z_-]{1,128}){4,5}\.([0-9a-f]{2}){1,64}$")),
    responses(
        (status = 200, description = "Confirmation page with a button that POSTs to the same URL", body = String, content_type = "text/html"),
        (status = 303, description = "An `open` link: redirect to the task in the web inbox"),
        (status = 400, description = "Malformed token", body = String, content_type = "text/html"),
        (status = 403, description = "Tampered token (signature mismatch), or the task was escalated after the link was sent", body = String, content_type = "text/html"),
        (status = 410, description = "Expired or used link, or the task is already decided", body = String, content_type = "text/html"),
        (status = 503, description = "The link secret is unavailable", body = String, content_type = "text/html"),
    ),
    security(())
)]
pub async fn show(State(state): State<AppState>, Path(token): Path<String>) -> Response {
    let (link, review) = match check(&state, &token).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let inbox = state.config.integrations.inbox_url(&review.id);
    if link.action == Action::Open {
        return Redirect::to(&inbox).into_response();
    }
    if review.status != ReviewStatus::Pending {
        return refused(
            StatusCode::GONE,
            &format!("The task is already {}.", review.status.as_str()),
        );
    }
    let verb = match link.action {
        Action::Approve => "Approve",
        _ => "Reject",
    };
    page(
        StatusCode::OK,
        LinkPage {
            title: format!("{verb} this request?"),
            confirm: Some(Confirm {
                workflow: review.workflow.clone(),
                queue: review.queue.clone(),
                actor: link.actor.clone(),
                verb,
                fields: fields_of(&review),
            }),
            token,
            inbox,
            ..LinkPage::default()
        },
    )
}

/// POST: applies the link's decision once.
///
/// The signed token in the path is the credential (no bearer token); its
/// nonce is used up in the decision's transaction.
#[utoipa::path(
    post,
    path = "/review/{token}",
    tag = "integrations",
    params(("token" = String, Path, description = "Signed, single-use approval link token from a notification email", pattern = r"^[0-9A-Za-z_-]{1,128}(\.[0-9A-Za-z_-]{1,128}){4,5}\.([0-9a-f]{2}){1,64}$")),
    responses(
        (status = 200, description = "The decision was applied", body = String, content_type = "text/html"),
        (status = 303, description = "An `open` link: redirect to the task in the web inbox"),
        (status = 400, description = "Malformed token", body = String, content_type = "text/html"),
        (status = 403, description = "Tampered token (signature mismatch), or the link's recipient may not decide this task now (their queues or role, or the task was escalated after the link was sent)", body = String, content_type = "text/html"),
        (status = 409, description = "The decision was refused", body = String, content_type = "text/html"),
        (status = 410, description = "Expired or used link, or the task or run already ended", body = String, content_type = "text/html"),
        (status = 503, description = "The link secret or the database is unavailable", body = String, content_type = "text/html"),
    ),
    security(())
)]
pub async fn confirm(State(state): State<AppState>, Path(token): Path<String>) -> Response {
    let (link, review) = match check(&state, &token).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let decision = match link.action {
        Action::Open => {
            return Redirect::to(&state.config.integrations.inbox_url(&review.id)).into_response();
        }
        Action::Approve => Decision::Approve {
            values: Map::new(),
            comment: Some("Approved by email link".into()),
        },
        Action::Reject => Decision::Reject {
            reason: format!("Rejected by email link by {}", link.actor),
            comment: None,
        },
    };
    let by = match decider(&state, &link).await {
        Ok(by) => by,
        Err(e) => {
            tracing::warn!(error = %e, "resolving an approval link's user failed");
            return refused(
                StatusCode::SERVICE_UNAVAILABLE,
                "The server cannot check links right now.",
            );
        }
    };
    match state
        .engine
        .decide_review_once(&review.id, decision, &by, &link.use_key())
        .await
    {
        Ok(Some(r)) => {
            let what = match (link.action, r.status) {
                (Action::Approve, ReviewStatus::Approved) => "Approved",
                (Action::Approve, _) => "Your approval was counted; another approver is needed",
                _ => "Rejected",
            };
            tracing::info!(review = %r.id, actor = %link.actor, "decided by email link");
            page(
                StatusCode::OK,
                LinkPage {
                    title: what.to_string(),
                    done: Some(Done {
                        workflow: r.workflow.clone(),
                        queue: r.queue.clone(),
                        actor: link.actor.clone(),
                    }),
                    ..LinkPage::default()
                },
            )
        }
        Ok(None) => refused(StatusCode::GONE, "The link was already used."),
        Err(ReviewError::Closed(s)) => refused(
            StatusCode::GONE,
            &format!("The task is already {}.", s.as_str()),
        ),
        Err(ReviewError::RunEnded(s)) => {
            refused(StatusCode::GONE, &format!("The run is already {s}."))
        }
        Err(ReviewError::NotFound) => {
            refused(StatusCode::GONE, "The review task no longer exists.")
        }
        Err(ReviewError::Refused(DecisionError::NotAllowed { queue, .. })) => {
            if link.queue.as_ref().is_some_and(|q| *q != queue) {
                moved(&queue)
            } else {
                refused(
                    StatusCode::FORBIDDEN,
                    &format!(
                        "{} may not decide tasks of the `{queue}` queue now, so nothing was decided.",
                        link.actor
                    ),
                )
            }
        }
        Err(ReviewError::Refused(e)) => {
            let why = match e {
                DecisionError::Invalid(_) => {
                    "The values need editing first: open the task in the inbox.".to_string()
                }
                other => format!("Not decided: {other}."),
            };
            refused(StatusCode::CONFLICT, &why)
        }
        Err(ReviewError::Store(e)) => {
            tracing::warn!(error = %e, "deciding by email link failed");
            refused(
                StatusCode::SERVICE_UNAVAILABLE,
                "The server could not record the decision; try again.",
            )
        }
    }
}
