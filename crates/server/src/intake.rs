//! Run intake: `POST /api/v1/workflows/{name}/runs` (bearer token) and
//! `POST /hooks/{name}` (webhook, optionally HMAC-signed).
//!
//! Both check everything they can before the engine sees the input, so a
//! rejected request creates no run: auth, parameters, workflow, media
//! type, size, JSON syntax; the engine then checks the schema.

use std::time::Duration;

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use engine::SubmitError;
use hmac::{KeyInit, Mac};
use serde::Deserialize;
use serde_json::Value;
use utoipa::IntoParams;

use crate::AppState;
use crate::auth::{Caller, Scope};
use crate::error::{ApiError, FieldProblem};
use crate::views::{Links, Submission, outputs};

/// Header carrying the webhook's HMAC: `v1=<hex>` (or the deprecated
/// `sha256=<hex>`).
pub const SIGNATURE_HEADER: &str = "x-countersign-signature";
/// Header carrying the unix time (seconds) signed with a `v1` signature.
pub const TIMESTAMP_HEADER: &str = "x-countersign-timestamp";
/// How far a `v1` timestamp may be from the server's clock, either way.
pub const SIGNATURE_WINDOW_SECS: i64 = 300;
/// When the `sha256=` scheme was deprecated (`Deprecation`, RFC 9745) and
/// when it goes (`Sunset`, RFC 8594): 30 days later.
const LEGACY_DEPRECATED: &str = "@1796342400";
const LEGACY_SUNSET: &str = "Sun, 03 Jan 2027 00:00:00 GMT";

/// Longest accepted `Idempotency-Key`.
const MAX_KEY_LEN: usize = 255;

/// Query parameters of intake.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct SubmitQuery {
    /// Seconds to wait for the run to settle (finish, fail, or wait for a
    /// reviewer); capped by the server's maximum. With it the answer is
    /// 200 with the outcome, or 202 if the run is still going.
    #[param(value_type = Option<f64>, minimum = 0)]
    pub wait: Option<String>,
}

/// Starts a run of a workflow.
#[utoipa::path(
    post,
    path = "/api/v1/workflows/{name}/runs",
    tag = "runs",
    params(
        ("name" = String, Path, description = "Workflow name"),
        ("Idempotency-Key" = Option<String>, Header, description = "Re-sending a key returns the run it created"),
        SubmitQuery,
    ),
    request_body(content = Value, content_type = "application/json", description = "The run's input, checked against the workflow's input schema"),
    responses(
        (status = 202, description = "Run created (or still running at the end of `?wait=`)", body = Submission),
        (status = 200, description = "Existing run for this idempotency key, or the settled run with `?wait=`", body = Submission),
        (status = 400, description = "Malformed JSON or bad parameter", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 401, description = "Missing or unknown token", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 403, description = "Token lacks `runs:write`", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 404, description = "Unknown workflow", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 413, description = "Body too large", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 415, description = "Body is not `application/json`", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 422, description = "Input breaks the schema; `errors` names each field", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 503, description = "The store does not answer; retry after `Retry-After` with the same `Idempotency-Key`", body = crate::error::Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = ["runs:write"]))
)]
pub async fn submit_run(
    State(state): State<AppState>,
    Path(name): Path<String>,
    caller: Caller,
    query: Result<Query<SubmitQuery>, QueryRejection>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    caller.require(Scope::RunsWrite)?;
    let wait = wait_param(query, state.config.max_wait)?;
    if state.engine.catalog().get(&name).is_none() {
        return Err(unknown_workflow(&name));
    }
    let key = idempotency_key(&headers)?;
    let input = json_body(&headers, body, state.config.body_limit)?;
    intake(&state, &name, input, key, &caller.actor(), wait).await
}

/// Starts a run from a webhook.
#[utoipa::path(
    post,
    path = "/hooks/{name}",
    tag = "runs",
    params(
        ("name" = String, Path, description = "Workflow name; the workflow must declare `trigger.webhook`"),
        ("X-Countersign-Signature" = Option<String>, Header, description = "`v1=<hex>`: HMAC-SHA256 of `v1:{timestamp}:{raw body}` with the workflow's secret; required when it has one. The deprecated `sha256=<hex>` (HMAC of the body alone) is accepted until the `Sunset` date, answered with a `Deprecation` header"),
        ("X-Countersign-Timestamp" = Option<String>, Header, description = "Unix seconds signed with a `v1` signature; within 5 minutes of the server's clock"),
        ("Idempotency-Key" = Option<String>, Header, description = "Re-sending a key returns the run it created; on a webhook with a secret it needs a `v1` signature"),
        SubmitQuery,
    ),
    request_body(content = Value, content_type = "application/json", description = "The run's input"),
    responses(
        (status = 202, description = "Run created", body = Submission),
        (status = 200, description = "Existing run for this idempotency key, or the settled run with `?wait=`", body = Submission),
        (status = 400, description = "Malformed JSON or bad parameter", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 401, description = "Signature missing or wrong", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 404, description = "No webhook for this workflow", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 409, description = "This signed request was accepted before (a replay)", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 413, description = "Body too large", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 415, description = "Body is not `application/json`", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 422, description = "Input breaks the schema", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 503, description = "The store does not answer; retry after `Retry-After` with the same `Idempotency-Key`", body = crate::error::Problem, content_type = "application/problem+json"),
    ),
    security(())
)]
pub async fn webhook(
    State(state): State<AppState>,
    Path(name): Path<String>,
    query: Result<Query<SubmitQuery>, QueryRejection>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let Some(hook_secret) = state
        .engine
        .catalog()
        .get(&name)
        .and_then(|wf| wf.def.trigger.webhook.as_ref().map(|w| w.secret.clone()))
    else {
        return Err(ApiError::NotFound(format!(
            "no webhook for workflow `{name}`"
        )));
    };
    let wait = wait_param(query, state.config.max_wait)?;
    let bytes = body.map_err(|r| body_rejection(r, state.config.body_limit))?;
    let verified = match hook_secret {
        Some(secret) => Some(verify_signature(
            secret.as_bytes(),
            &headers,
            &bytes,
            unix_now(),
        )?),
        None => None,
    };
    let key = idempotency_key(&headers)?;
    if key.is_some() && matches!(verified, Some(Verified::Legacy)) {
        // The old signature covers neither a time nor the key: a captured
        // request could be replayed under any key.
        return Err(ApiError::BadRequest(FieldProblem::header(
            "Idempotency-Key",
            "needs a v1 signature (X-Countersign-Signature: v1=…, with X-Countersign-Timestamp)",
        )));
    }
    let input = json_body(&headers, Ok(bytes), state.config.body_limit)?;
    match &verified {
        Some(Verified::V1 {
            signature,
            expires_at_ms,
        }) => {
            let fresh = state
                .engine
                .store()
                .remember_signature(signature, unix_now() * 1000, *expires_at_ms)
                .await?;
            if !fresh {
                return Err(ApiError::Replayed);
            }
        }
        Some(Verified::Legacy) => {
            tracing::warn!(
                workflow = %name,
                "webhook signed with the deprecated `sha256=` scheme: sign `v1:{{timestamp}}:{{body}}` \
                 into `X-Countersign-Signature: v1=…` with `X-Countersign-Timestamp` (see the README)"
            );
        }
        None => {}
    }
    let mut resp = intake(&state, &name, input, key, "webhook", wait).await?;
    if matches!(verified, Some(Verified::Legacy)) {
        let h = resp.headers_mut();
        h.insert("deprecation", HeaderValue::from_static(LEGACY_DEPRECATED));
        h.insert("sunset", HeaderValue::from_static(LEGACY_SUNSET));
    }
    Ok(resp)
}

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// Submits and shapes the answer; waits first when asked.
async fn intake(
    state: &AppState,
    name: &str,
    input: Value,
    key: Option<String>,
    actor: &str,
    wait: Option<Duration>,
) -> Result<Response, ApiError> {
    let submitted = match state.engine.submit(name, input, key, actor).await {
        Ok(s) => s,
        Err(SubmitError::UnknownWorkflow(n)) => return Err(unknown_workflow(&n)),
        Err(SubmitError::InvalidInput(errors)) => {
            return Err(ApiError::Validation(
                errors
                    .into_iter()
                    .map(|e| FieldProblem::pointer(e.pointer, e.message))
                    .collect(),
            ));
        }
        Err(SubmitError::Store(e)) => return Err(e.into()),
    };
    let mut answer = Submission {
        links: Links::for_run(&submitted.run_id),
        run_id: submitted.run_id,
        status: submitted.status.as_str().into(),
        created: submitted.created,
        wait: None,
        outcome: None,
        error: None,
        outputs: None,
    };
    let mut code = if submitted.created {
        StatusCode::ACCEPTED
    } else {
        StatusCode::OK
    };
    if let Some(timeout) = wait {
        let run = state
            .engine
            .wait_settled(&answer.run_id, timeout)
            .await?
            .ok_or_else(|| {
                ApiError::Internal(format!("run {} vanished after intake", answer.run_id))
            })?;
        answer.status = run.status.as_str().into();
        answer.wait = run.wait.map(|w| w.as_str().into());
        if run.status.is_settled(run.wait) {
            code = StatusCode::OK;
            answer.outcome = run.outcome;
            answer.error = run.error;
            let steps = match state.engine.store().run_detail(&answer.run_id).await? {
                Some(d) => d.steps,
                None => Vec::new(),
            };
            answer.outputs = Some(outputs(&steps));
        } else {
            code = StatusCode::ACCEPTED;
        }
    }
    let location = HeaderValue::from_str(&answer.links.run).ok();
    let mut res = (code, Json(answer)).into_response();
    if let Some(l) = location {
        res.headers_mut().insert(header::LOCATION, l);
    }
    Ok(res)
}

fn unknown_workflow(name: &str) -> ApiError {
    ApiError::NotFound(format!("no workflow named `{name}`"))
}

/// `?wait=SECONDS`: a non-negative number, capped at `max`.
fn wait_param(
    query: Result<Query<SubmitQuery>, QueryRejection>,
    max: Duration,
) -> Result<Option<Duration>, ApiError> {
    let Query(q) =
        query.map_err(|e| ApiError::BadRequest(FieldProblem::parameter("query", e.body_text())))?;
    let Some(raw) = q.wait else { return Ok(None) };
    let raw_num = raw.trim();
    // A number too large for a `Duration` (or for an `f64`: `1e400`) is
    // still a number ≥ 0, which the document allows: it is capped like any
    // other. `inf`, `NaN` and negatives are refused.
    let literal = raw_num
        .bytes()
        .all(|b| b.is_ascii_digit() || b"+.eE".contains(&b));
    match raw_num.parse::<f64>() {
        Ok(secs) if secs >= 0.0 && (secs.is_finite() || literal) => Ok(Some(
            Duration::try_from_secs_f64(secs).map_or(max, |d| d.min(max)),
        )),
        _ => Err(ApiError::BadRequest(FieldProblem::parameter(
            "wait",
            format!("must be a number of seconds ≥ 0, got {raw:?}"),
        ))),
    }
}

/// The `Idempotency-Key` header, if any: 1–255 visible ASCII characters.
fn idempotency_key(headers: &HeaderMap) -> Result<Option<String>, ApiError> {
    let Some(v) = headers.get("idempotency-key") else {
        return Ok(None);
    };
    let bad = |why: &str| ApiError::BadRequest(FieldProblem::header("Idempotency-Key", why));
    let s = v.to_str().map_err(|_| bad("must be visible ASCII"))?.trim();
    if s.is_empty() || s.len() > MAX_KEY_LEN {
        return Err(bad("must be 1 to 255 characters"));
    }
    if !s.bytes().all(|b| b.is_ascii_graphic() || b == b' ') {
        return Err(bad("must be visible ASCII"));
    }
    Ok(Some(s.to_string()))
}

/// Checks the media type, the size and the JSON syntax of a body.
pub(crate) fn json_body(
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
    limit: usize,
) -> Result<Value, ApiError> {
    if !is_json(headers) {
        return Err(ApiError::UnsupportedMediaType);
    }
    let bytes = body.map_err(|r| body_rejection(r, limit))?;
    strict_json(&bytes).map_err(ApiError::MalformedJson)
}

/// The largest integer JSON numbers carry exactly in every consumer
/// (IEEE doubles: JavaScript, most JSON libraries), 2^53.
const MAX_EXACT: f64 = 9_007_199_254_740_992.0;

/// Parses JSON, refusing what `serde_json::from_slice` silently accepts:
/// a key given twice in one object (the last used to win) and numbers
/// beyond ±2^53, which lose digits on the way through (send such ids as
/// strings). The error names the key or number and where it is.
pub(crate) fn strict_json(bytes: &[u8]) -> Result<Value, String> {
    use serde::de::DeserializeSeed;
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let v = Strict.deserialize(&mut de).map_err(|e| e.to_string())?;
    de.end().map_err(|e| e.to_string())?;
    Ok(v)
}

/// A [`Value`] visitor that refuses duplicate keys and inexact numbers.
#[derive(Clone, Copy)]
struct Strict;

impl<'de> serde::de::DeserializeSeed<'de> for Strict {
    type Value = Value;
    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> serde::de::Visitor<'de> for Strict {
    type Value = Value;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Value, E> {
        if v.unsigned_abs() > MAX_EXACT as u64 {
            return Err(E::custom(inexact(v)));
        }
        Ok(Value::from(v))
    }

    fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Value, E> {
        if v > MAX_EXACT as u64 {
            return Err(E::custom(inexact(v)));
        }
        Ok(Value::from(v))
    }

    fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<Value, E> {
        if v.abs() > MAX_EXACT {
            return Err(E::custom(inexact(v)));
        }
        Ok(serde_json::Number::from_f64(v).map_or(Value::Null, Value::Number))
    }

    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_string()))
    }

    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut out = Vec::new();
        while let Some(v) = seq.next_element_seed(Strict)? {
            out.push(v);
        }
        Ok(Value::Array(out))
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        use serde::de::Error;
        let mut out = serde_json::Map::new();
        while let Some(key) = map.next_key::<String>()? {
            if out.contains_key(&key) {
                return Err(A::Error::custom(format!(
                    "duplicate key {key:?} (each key may appear once per object)"
                )));
            }
            let v = map.next_value_seed(Strict)?;
            out.insert(key, v);
        }
        Ok(Value::Object(out))
    }
}

fn inexact(v: impl std::fmt::Display) -> String {
    format!("number {v} is beyond ±2^53 and cannot be kept exact; send it as a string")
}

/// `application/json` or any `application/*+json`, parameters allowed.
fn is_json(headers: &HeaderMap) -> bool {
    let Some(ct) = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let essence = ct
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    essence == "application/json"
        || (essence.starts_with("application/") && essence.ends_with("+json"))
}

fn body_rejection(r: BytesRejection, limit: usize) -> ApiError {
    if r.status() == StatusCode::PAYLOAD_TOO_LARGE {
        ApiError::PayloadTooLarge { limit }
    } else {
        // The client went away or sent a broken body: nothing to answer well.
        ApiError::MalformedJson(r.body_text())
    }
}

/// A signature that checked out.
#[derive(Debug, PartialEq)]
enum Verified {
    /// `v1=<hex>` over `v1:{timestamp}:{body}`: `signature` is its
    /// normalised form (lower-case hex), remembered until `expires_at_ms`.
    V1 {
        signature: String,
        expires_at_ms: i64,
    },
    /// The deprecated `sha256=<hex>` over the body alone.
    Legacy,
}

/// Checks `X-Countersign-Signature` in constant time: `v1=<hex>`, the
/// HMAC-SHA256 of `v1:{X-Countersign-Timestamp}:{raw body}` with the
/// timestamp within [`SIGNATURE_WINDOW_SECS`] of `now` (unix seconds), or
/// the deprecated `sha256=<hex>` of the body alone.
fn verify_signature(
    secret: &[u8],
    headers: &HeaderMap,
    body: &[u8],
    now: i64,
) -> Result<Verified, ApiError> {
    const MALFORMED: &str = "X-Countersign-Signature must be `v1=<hex>`";
    let value = headers
        .get(SIGNATURE_HEADER)
        .ok_or(ApiError::BadSignature(
            "the X-Countersign-Signature header is missing",
        ))?
        .to_str()
        .map_err(|_| ApiError::BadSignature(MALFORMED))?
        .trim();
    let mac = || {
        hmac::Hmac::<sha2::Sha256>::new_from_slice(secret)
            .map_err(|e| ApiError::internal("hmac key", e))
    };
    if let Some(hex_sig) = value.strip_prefix("v1=") {
        let sig = hex::decode(hex_sig).map_err(|_| ApiError::BadSignature(MALFORMED))?;
        let ts: i64 = headers
            .get(TIMESTAMP_HEADER)
            .ok_or(ApiError::BadSignature(
                "a v1 signature needs the X-Countersign-Timestamp header (unix seconds)",
            ))?
            .to_str()
            .ok()
            .and_then(|t| t.trim().parse().ok())
            .ok_or(ApiError::BadSignature(
                "X-Countersign-Timestamp must be unix seconds",
            ))?;
        if now.abs_diff(ts) > SIGNATURE_WINDOW_SECS.unsigned_abs() {
            return Err(ApiError::BadSignature(
                "X-Countersign-Timestamp is more than 5 minutes from the server's clock",
            ));
        }
        let mut m = mac()?;
        m.update(format!("v1:{ts}:").as_bytes());
        m.update(body);
        m.verify_slice(&sig)
            .map_err(|_| ApiError::BadSignature("the signature does not match the body"))?;
        return Ok(Verified::V1 {
            signature: format!("v1={}", hex::encode(&sig)),
            expires_at_ms: ts
                .saturating_add(SIGNATURE_WINDOW_SECS + 1)
                .saturating_mul(1000),
        });
    }
    let hex_sig = value
        .strip_prefix("sha256=")
        .ok_or(ApiError::BadSignature(MALFORMED))?;
    let sig = hex::decode(hex_sig).map_err(|_| ApiError::BadSignature(MALFORMED))?;
    let mut m = mac()?;
    m.update(body);
    m.verify_slice(&sig)
        .map_err(|_| ApiError::BadSignature("the signature does not match the body"))?;
    Ok(Verified::Legacy)
}

/// `v1=<hex>` for a body sent at `timestamp` (unix seconds): what a sender
/// puts in `X-Countersign-Signature`, with the timestamp in
/// `X-Countersign-Timestamp`.
pub fn sign_body(secret: &[u8], timestamp: i64, body: &[u8]) -> String {
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(secret)
        .expect("HMAC accepts keys of any length");
    mac.update(format!("v1:{timestamp}:").as_bytes());
    mac.update(body);
    format!("v1={}", hex::encode(mac.finalize().into_bytes()))
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig { cases: 500, ..ProptestConfig::default() })]

        /// Any bytes: an answer, never a panic; what serde_json refuses is
        /// refused too.
        #[test]
        fn strict_json_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let strict = super::strict_json(&bytes);
            if serde_json::from_slice::<serde_json::Value>(&bytes).is_err() {
                prop_assert!(strict.is_err());
            }
        }

        /// JSON-shaped text: whatever parses strictly equals serde_json's
        /// own reading (nothing is changed, only refused).
        #[test]
        fn strict_json_agrees_with_serde_json_when_it_accepts(
            text in "[\\[\\]{}:,\" a-c0-9.eE+-]{0,60}"
        ) {
            if let Ok(v) = super::strict_json(text.as_bytes()) {
                prop_assert_eq!(Some(v), serde_json::from_str::<serde_json::Value>(&text).ok());
            }
        }
    }

    #[test]
    fn strict_json_refuses_duplicate_keys_and_inexact_numbers() {
        use super::strict_json;
        use serde_json::json;
        assert_eq!(
            strict_json(br#"{"a": [1, -2.5, null, true, "x"], "b": {"c": 9007199254740992}}"#),
            Ok(json!({"a": [1, -2.5, null, true, "x"], "b": {"c": 9007199254740992u64}}))
        );
        assert_eq!(
            strict_json(b"-9007199254740992"),
            Ok(json!(-9007199254740992i64))
        );
        let err = strict_json(br#"{"a": 1, "b": {"x": 1, "x": 2}}"#).unwrap_err();
        assert!(err.starts_with("duplicate key \"x\""), "{err}");
        assert!(err.contains("line 1 column"), "{err}");
        for big in [
            "9007199254740993",
            "-9007199254740993",
            "18446744073709551615",
            "123456789012345678901234567890",
            "1e300",
        ] {
            let err = strict_json(format!("{{\"id\": {big}}}").as_bytes()).unwrap_err();
            assert!(err.contains("beyond ±2^53"), "{big}: {err}");
        }
        assert!(strict_json(b"{} x").is_err(), "trailing characters");
        assert!(strict_json(b"{\"a\": }").is_err());
        // Nesting is bounded as in serde_json (no stack overflow).
        let deep = "[".repeat(10_000);
        assert!(strict_json(deep.as_bytes()).is_err());
    }

    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn signatures_check_the_exact_body_and_time() {
        let now = 1_800_000_000;
        let body = b"{\"a\":1}";
        let sig = sign_body(b"k3y!", now, body);
        let ts = now.to_string();
        let h = headers(&[(SIGNATURE_HEADER, &sig), (TIMESTAMP_HEADER, &ts)]);
        let check =
            |h: &HeaderMap, key: &[u8], body: &[u8], now: i64| verify_signature(key, h, body, now);
        assert!(matches!(
            check(&h, b"k3y!", body, now + 300),
            Ok(Verified::V1 { .. })
        ));
        assert!(check(&h, b"k3y!", body, now + 301).is_err(), "too late");
        assert!(check(&h, b"k3y!", body, now - 301).is_err(), "too early");
        assert!(check(&h, b"k3y!", b"{\"a\":2}", now).is_err());
        assert!(check(&h, b"other", body, now).is_err());
        // The timestamp is signed: moving it breaks the signature.
        let moved = (now + 1).to_string();
        let h2 = headers(&[(SIGNATURE_HEADER, &sig), (TIMESTAMP_HEADER, &moved)]);
        assert!(check(&h2, b"k3y!", body, now).is_err());
        let no_ts = headers(&[(SIGNATURE_HEADER, &sig)]);
        assert!(check(&no_ts, b"k3y!", body, now).is_err());
        // Upper-case hex is the same signature, normalised for the cache.
        let upper = sig.to_uppercase().replacen("V1=", "v1=", 1);
        let h3 = headers(&[(SIGNATURE_HEADER, &upper), (TIMESTAMP_HEADER, &ts)]);
        assert_eq!(
            check(&h3, b"k3y!", body, now).unwrap(),
            check(&h, b"k3y!", body, now).unwrap()
        );
        let bad = headers(&[(SIGNATURE_HEADER, "v1=zz"), (TIMESTAMP_HEADER, &ts)]);
        assert!(check(&bad, b"k3y!", b"{}", now).is_err());
        assert!(check(&HeaderMap::new(), b"k3y!", b"{}", now).is_err());
    }

    #[test]
    fn the_old_scheme_still_checks_the_body() {
        let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(b"k3y!").unwrap();
        mac.update(b"{}");
        let sig = format!("sha256={}", hex::encode(mac.finalize().into_bytes()));
        let h = headers(&[(SIGNATURE_HEADER, &sig)]);
        assert_eq!(
            verify_signature(b"k3y!", &h, b"{}", 0).unwrap(),
            Verified::Legacy
        );
        assert!(verify_signature(b"k3y!", &h, b"{ }", 0).is_err());
    }

    #[test]
    fn json_media_types() {
        assert!(is_json(&headers(&[(
            "content-type",
            "application/json; charset=utf-8"
        )])));
        assert!(is_json(&headers(&[("content-type", "Application/JSON")])));
        assert!(is_json(&headers(&[(
            "content-type",
            "application/merge-patch+json"
        )])));
        assert!(!is_json(&headers(&[("content-type", "text/plain")])));
        assert!(!is_json(&HeaderMap::new()));
    }

    #[test]
    fn wait_is_capped_and_checked() {
        let q = |s: &str| {
            Ok(Query(SubmitQuery {
                wait: Some(s.into()),
            }))
        };
        let max = Duration::from_secs(30);
        assert_eq!(
            wait_param(q("2.5"), max).unwrap(),
            Some(Duration::from_millis(2500))
        );
        assert_eq!(wait_param(q("900"), max).unwrap(), Some(max));
        // Past what a `Duration` (or an `f64`) holds: capped, never a panic.
        for huge in ["1.8446744073709552e+19", "1e300", "1e400", "1E+30"] {
            assert_eq!(wait_param(q(huge), max).unwrap(), Some(max), "{huge}");
        }
        assert!(wait_param(q("-0.5"), max).is_err());
        assert!(wait_param(q("-1e400"), max).is_err());
        assert!(wait_param(q("infinity"), max).is_err());
        assert!(wait_param(q("+inf"), max).is_err());
        assert!(wait_param(q("soon"), max).is_err());
        assert!(wait_param(q("-1"), max).is_err());
        assert!(wait_param(q("NaN"), max).is_err());
        assert!(wait_param(q("inf"), max).is_err());
        assert_eq!(
            wait_param(Ok(Query(SubmitQuery { wait: None })), max).unwrap(),
            None
        );
    }
}
