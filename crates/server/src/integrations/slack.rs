//! `POST /integrations/slack/interactivity`: Approve / Reject buttons on a
//! review message (CONTRACTS §3).
//!
//! Order of checks, each before the next:
//! 1. the timestamp is within 5 minutes of now (`X-Slack-Request-Timestamp`);
//! 2. `X-Slack-Signature` is `v0=` hex HMAC-SHA256(`SLACK_SIGNING_SECRET`,
//!    `v0:{ts}:{raw body}`), compared in constant time — only then is the
//!    body parsed (`payload=` form field holding JSON);
//! 3. the Slack user is mapped (`countersign slack map`); a mapping whose
//!    actor names an inbox user (`user:EMAIL` or `EMAIL`) decides as that
//!    user, with the queues the user holds now; another decides as its
//!    actor with the mapping's queues and cannot approve a task that needs
//!    distinct people;
//! 4. the decision is applied with the request's signature as a single-use
//!    nonce: a replayed request (same timestamp, body and so signature)
//!    makes no second decision and is answered 409.
//!
//! Slack wants an answer within 3 s: the decision is one store transaction,
//! so it is made before answering. The message is then updated
//! (`chat.update`, "Approved by …") best-effort in the background with a
//! few retries: the decision is already durable, the message is only a
//! view of it. Reject from Slack records the fixed reason "Rejected in
//! Slack by ACTOR"; edits happen in the web inbox (the Open button).
//! Outcomes a person caused (not mapped, wrong queue, already decided) are
//! answered 200 with an ephemeral text, which is what Slack shows best;
//! forged or stale requests get 401.

use std::time::Duration;

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use engine::ReviewError;
use engine::notify::UpdateFailed;
use engine::review::{Decision, DecisionError};
use hmac::{KeyInit, Mac};
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};
use store::Review;

use crate::AppState;
use crate::error::{ApiError, Problem};

pub const TIMESTAMP_HEADER: &str = "x-slack-request-timestamp";
pub const SIGNATURE_HEADER: &str = "x-slack-signature";
/// Requests older (or newer) than this are refused as replays.
pub const MAX_SKEW_SECS: i64 = 300;
/// Action ids of the review message's buttons (see `connectors::notify`).
pub const APPROVE_ACTION: &str = "countersign_review_approve";
pub const REJECT_ACTION: &str = "countersign_review_reject";
pub const OPEN_ACTION: &str = "countersign_review_open";

/// `v0=` + hex HMAC-SHA256 over `v0:{ts}:{body}`: what Slack sends (tests
/// sign with it too).
pub fn sign(secret: &str, ts: &str, body: &[u8]) -> String {
    let mut m = hmac::Hmac::<Sha256>::new_from_slice(secret.as_bytes())
        .expect("HMAC takes a key of any length");
    m.update(format!("v0:{ts}:").as_bytes());
    m.update(body);
    format!("v0={}", hex::encode(m.finalize().into_bytes()))
}

/// Checks the timestamp window and the signature, in that order; the
/// signature's bytes (so `ABCD` and `abcd` are one signature).
fn verify(secret: &str, headers: &HeaderMap, body: &[u8], now_s: i64) -> Result<Vec<u8>, ApiError> {
    let header = |n: &str| headers.get(n).and_then(|v| v.to_str().ok());
    let ts = header(TIMESTAMP_HEADER).ok_or(ApiError::BadSignature(
        "X-Slack-Request-Timestamp is missing",
    ))?;
    let t: i64 = ts
        .parse()
        .map_err(|_| ApiError::BadSignature("X-Slack-Request-Timestamp is not a number"))?;
    if (now_s - t).abs() > MAX_SKEW_SECS {
        return Err(ApiError::BadSignature(
            "the request timestamp is more than 5 minutes from now",
        ));
    }
    let sig = header(SIGNATURE_HEADER)
        .and_then(|s| s.strip_prefix("v0="))
        .and_then(|h| hex::decode(h).ok())
        .ok_or(ApiError::BadSignature(
            "X-Slack-Signature is missing or malformed",
        ))?;
    let mut m = hmac::Hmac::<Sha256>::new_from_slice(secret.as_bytes())
        .map_err(|e| ApiError::internal("hmac key", e))?;
    m.update(format!("v0:{ts}:").as_bytes());
    m.update(body);
    // `verify_slice` compares in constant time.
    m.verify_slice(&sig)
        .map_err(|_| ApiError::BadSignature("X-Slack-Signature does not match"))?;
    Ok(sig)
}

fn replayed() -> ApiError {
    ApiError::ReviewConflict {
        detail: "this Slack request was already handled (replayed)".into(),
        run_status: None,
    }
}

/// An ephemeral answer shown only to the person who clicked.
fn say(text: impl Into<String>) -> Response {
    Json(json!({ "response_type": "ephemeral", "replace_original": false, "text": text.into() }))
        .into_response()
}

fn str_at<'a>(v: &'a Value, path: &[&str]) -> Option<&'a str> {
    path.iter()
        .try_fold(v, |v, k| v.get(*k))
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
}

/// Slack interactivity: the Approve / Reject buttons of a review message.
/// Not bearer-authenticated: the request must carry `X-Slack-Request-Timestamp`
/// (within 5 minutes of now) and `X-Slack-Signature`, `v0=` hex
/// HMAC-SHA256(`SLACK_SIGNING_SECRET`, `v0:{timestamp}:{raw body}`).
/// Each signed request decides at most once (replays answer 409).
#[utoipa::path(
    post,
    path = "/integrations/slack/interactivity",
    tag = "integrations",
    params(
        ("X-Slack-Request-Timestamp" = String, Header, description = "Unix seconds when Slack sent the request; must be within 5 minutes of now"),
        ("X-Slack-Signature" = String, Header, description = "`v0=` followed by hex HMAC-SHA256 of `v0:{timestamp}:{raw body}` keyed with `SLACK_SIGNING_SECRET`"),
    ),
    request_body(content = String, content_type = "application/x-www-form-urlencoded", description = "`payload=` holding Slack's block_actions JSON"),
    responses(
        (status = 200, description = "An ephemeral Slack message telling the clicker what happened", body = Object, content_type = "application/json"),
        (status = 400, description = "Malformed payload", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Missing, stale or mismatched signature", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "Slack interactivity is not configured (`SLACK_SIGNING_SECRET`)", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The request was already handled (replayed)", body = Problem, content_type = "application/problem+json"),
    ),
    security(())
)]
pub async fn interactivity(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let settings = &state.config.integrations;
    let Some(secret) = settings.slack_signing_secret.as_deref() else {
        return Err(ApiError::NotFound(
            "Slack interactivity is not configured (SLACK_SIGNING_SECRET)".into(),
        ));
    };
    let signature = verify(secret, &headers, &body, engine::now_ms() / 1000)?;
    let payload = crate::forms::url_decode_pairs(&body)
        .into_iter()
        .find(|(k, _)| k == "payload")
        .map(|(_, v)| v)
        .ok_or_else(|| ApiError::MalformedJson("the form has no `payload` field".into()))?;
    let p: Value =
        serde_json::from_str(&payload).map_err(|e| ApiError::MalformedJson(e.to_string()))?;
    if p["type"] != "block_actions" {
        // Other interaction types are not ours: acknowledge and do nothing.
        return Ok(StatusCode::OK.into_response());
    }
    let action = &p["actions"][0];
    let action_id = action["action_id"].as_str().unwrap_or_default();
    let decide_approve = match action_id {
        APPROVE_ACTION => true,
        REJECT_ACTION => false,
        // The Open button is a link; Slack still reports the click.
        _ => return Ok(StatusCode::OK.into_response()),
    };
    let Some(review_id) = str_at(action, &["value"]) else {
        return Ok(say("This button carries no review task."));
    };
    let Some(slack_user) = str_at(&p, &["user", "id"]) else {
        return Ok(say("Slack did not say who clicked."));
    };
    // The signature is unique to (timestamp, body): the replay key. Its
    // bytes, not the header's text, so a re-cased hex is the same request.
    let nonce = format!("slack:{}", hex::encode(Sha256::digest(&signature)));
    let store = state.engine.store();
    if store
        .nonce_used(&nonce)
        .await
        .map_err(|e| ApiError::internal("checking for a replay", e))?
    {
        return Err(replayed());
    }
    let identity = store
        .slack_identity(slack_user)
        .await
        .map_err(|e| ApiError::internal("reading the Slack identity", e))?;
    let Some(identity) = identity else {
        tracing::info!(
            slack_user,
            review = review_id,
            "a Slack user without a mapping tried to decide"
        );
        return Ok(say(
            "You are not linked to a Countersign reviewer, so nothing was decided. Ask an admin to run `countersign slack map`.",
        ));
    };
    let by = crate::identity::resolve(
        store.as_ref(),
        &identity.actor,
        Some(identity.queues.clone()),
    )
    .await
    .map_err(|e| ApiError::internal("reading the Slack member's user", e))?;
    let actor = by.actor.clone();
    let decision = if decide_approve {
        Decision::Approve {
            values: Map::new(),
            comment: Some("Approved in Slack".into()),
        }
    } else {
        Decision::Reject {
            reason: format!("Rejected in Slack by {actor}"),
            comment: None,
        }
    };
    let decided = match state
        .engine
        .decide_review_once(review_id, decision, &by, &nonce)
        .await
    {
        Ok(Some(r)) => r,
        Ok(None) => return Err(replayed()),
        Err(ReviewError::Closed(s)) => {
            return Ok(say(format!("This task is already {}.", s.as_str())));
        }
        Err(ReviewError::RunEnded(s)) => {
            return Ok(say(format!("The run is already {s}.")));
        }
        Err(ReviewError::NotFound) => return Ok(say("This review task no longer exists.")),
        Err(ReviewError::Refused(DecisionError::NotAllowed { queue, .. })) => {
            tracing::info!(slack_user, review = review_id, queue = %queue, "a Slack user decided outside their queues");
            return Ok(say(format!(
                "You may not decide tasks of the `{queue}` queue, so nothing was decided."
            )));
        }
        Err(ReviewError::Refused(e)) => {
            let why = match e {
                DecisionError::Invalid(_) => {
                    "the values are invalid; open the task to edit them".to_string()
                }
                other => other.to_string(),
            };
            return Ok(say(format!("Not decided: {why}.")));
        }
        Err(ReviewError::Store(e)) => return Err(ApiError::internal("deciding the review", e)),
    };
    let label = match (decide_approve, decided.status) {
        (true, store::ReviewStatus::Approved) => "Approved",
        (true, _) => "Approval counted",
        (false, _) => "Rejected",
    };
    tracing::info!(review = %decided.id, actor = %actor, decision = label, "decided in Slack");
    let channel =
        str_at(&p, &["container", "channel_id"]).or_else(|| str_at(&p, &["channel", "id"]));
    let ts = str_at(&p, &["container", "message_ts"]).or_else(|| str_at(&p, &["message", "ts"]));
    if let (Some(chat), Some(channel), Some(ts)) = (settings.chat.clone(), channel, ts) {
        update_later(
            chat,
            decided,
            channel.to_string(),
            ts.to_string(),
            label,
            actor.clone(),
        );
    }
    Ok(say(format!("{label} by {actor}.")))
}

/// Updates the message after the answer went out: best-effort, a few
/// tries honouring `Retry-After` (capped), logged when it gives up. The
/// decision is already committed; only the message's look depends on this.
fn update_later(
    chat: std::sync::Arc<dyn engine::notify::ChatUpdate>,
    review: Review,
    channel: String,
    ts: String,
    label: &'static str,
    actor: String,
) {
    let span = engine::trace::beside_run(&review.run_id, "review decision");
    let update = async move {
        let mut wait = Duration::from_millis(500);
        for attempt in 1..=4 {
            match chat
                .show_decision(&review, &channel, &ts, label, &actor)
                .await
            {
                Ok(()) => return,
                Err(UpdateFailed::Permanent(m)) => {
                    tracing::warn!(review = %review.id, error = %m, "chat.update failed");
                    return;
                }
                Err(UpdateFailed::Retry { after_ms, message }) => {
                    tracing::info!(review = %review.id, attempt, error = %message, "chat.update will be retried");
                    if let Some(ms) = after_ms {
                        wait = Duration::from_millis(ms.min(10_000));
                    }
                    tokio::time::sleep(wait).await;
                    wait = (wait * 2).min(Duration::from_secs(10));
                }
            }
        }
        tracing::warn!(review = %review.id, "chat.update gave up; the decision stands");
    };
    tokio::spawn(tracing::Instrument::instrument(update, span));
}
