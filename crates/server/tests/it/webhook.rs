//! `POST /hooks/{name}`: HMAC-SHA256 signatures over a timestamp and the
//! body, checked in constant time, a replay cache, the deprecated
//! `sha256=` scheme, unsigned hooks, and hooks that do not exist.

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use hmac::{KeyInit, Mac};

use crate::support::{HOOK_SECRET, Harness};

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// A `v1` signature of `body` made now (written out here, not through
/// `sign_body`, so the test pins the scheme).
fn signature(secret: &str, body: &str) -> String {
    signature_at(secret, now(), body)
}

fn signature_at(secret: &str, ts: i64, body: &str) -> String {
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(format!("v1:{ts}:{body}").as_bytes());
    format!("v1={}", hex::encode(mac.finalize().into_bytes()))
}

fn legacy_signature(secret: &str, body: &str) -> String {
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(body.as_bytes());
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

fn hook(name: &str, body: &str, signature: Option<&str>) -> Request<Body> {
    hook_at(name, body, signature, now(), None)
}

fn hook_at(
    name: &str,
    body: &str,
    signature: Option<&str>,
    ts: i64,
    key: Option<&str>,
) -> Request<Body> {
    let mut b = Request::post(format!("/hooks/{name}"))
        .header(header::CONTENT_TYPE, "application/json")
        .header("x-countersign-timestamp", ts.to_string());
    if let Some(s) = signature {
        b = b.header("x-countersign-signature", s);
    }
    if let Some(k) = key {
        b = b.header("idempotency-key", k);
    }
    b.body(Body::from(body.to_string())).unwrap()
}

#[tokio::test]
async fn a_correctly_signed_hook_starts_a_run_as_webhook() {
    let h = Harness::new().await;
    let body = r#"{"ticket":"T-1"}"#;
    let r = h
        .send(hook(
            "signed-hook",
            body,
            Some(&signature(HOOK_SECRET, body)),
        ))
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.text);
    let id = r.json["run_id"].as_str().unwrap();
    let events = h.store.events(id, 0, 10).await.unwrap();
    assert_eq!(events[0].actor, "webhook");
}

#[tokio::test]
async fn a_signed_hook_can_wait_for_the_outcome() {
    let h = Harness::new().await;
    let body = r#"{"ticket":"drop"}"#;
    let mut req = hook("signed-hook", body, Some(&signature(HOOK_SECRET, body)));
    *req.uri_mut() = "/hooks/signed-hook?wait=5".parse().unwrap();
    let r = h.send(req).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.json["outcome"], "discarded");
}

#[tokio::test]
async fn missing_wrong_or_malformed_signatures_are_401_and_create_no_run() {
    let h = Harness::new().await;
    let body = r#"{"ticket":"T-1"}"#;
    let wrong_key = signature("another-secret", body);
    let other_body = signature(HOOK_SECRET, r#"{"ticket":"T-2"}"#);
    let upper = signature(HOOK_SECRET, body).replace("v1=", "SHA1=");
    for sig in [
        None,
        Some(wrong_key.as_str()),
        Some(other_body.as_str()),
        Some("v1=nothex"),
        Some("sha256=nothex"),
        Some(upper.as_str()),
    ] {
        let r = h.send(hook("signed-hook", body, sig)).await;
        r.assert_problem(StatusCode::UNAUTHORIZED, "invalid-signature");
        assert!(
            !r.text.contains(HOOK_SECRET),
            "the secret leaks: {}",
            r.text
        );
    }
    assert_eq!(h.run_count().await, 0);
}

#[tokio::test]
async fn a_signed_hook_still_checks_json_and_schema() {
    let h = Harness::new().await;
    let bad_json = "{ticket";
    let r = h
        .send(hook(
            "signed-hook",
            bad_json,
            Some(&signature(HOOK_SECRET, bad_json)),
        ))
        .await;
    r.assert_problem(StatusCode::BAD_REQUEST, "malformed-json");
    let bad_input = r#"{"ticket":7}"#;
    let r = h
        .send(hook(
            "signed-hook",
            bad_input,
            Some(&signature(HOOK_SECRET, bad_input)),
        ))
        .await;
    r.assert_problem(StatusCode::UNPROCESSABLE_ENTITY, "validation");
    assert_eq!(r.json["errors"][0]["pointer"], "/ticket");
    assert_eq!(h.run_count().await, 0);
}

#[tokio::test]
async fn an_unsigned_hook_needs_no_signature() {
    let h = Harness::new().await;
    let r = h.send(hook("open-hook", "{}", None)).await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.text);
    assert_eq!(h.run_count().await, 1);
}

#[tokio::test]
async fn workflows_without_a_webhook_trigger_are_404() {
    let h = Harness::new().await;
    for name in ["triage", "no-such-workflow"] {
        let r = h.send(hook(name, "{}", None)).await;
        r.assert_problem(StatusCode::NOT_FOUND, "not-found");
    }
    assert_eq!(h.run_count().await, 0);
}

#[tokio::test]
async fn a_replayed_signed_hook_is_refused_and_creates_one_run() {
    let h = Harness::new().await;
    let body = r#"{"ticket":"T-1"}"#;
    let ts = now();
    let sig = signature_at(HOOK_SECRET, ts, body);
    let r = h
        .send(hook_at("signed-hook", body, Some(&sig), ts, None))
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.text);
    // The same request again, and with the hex in upper case.
    let upper = format!("v1={}", sig["v1=".len()..].to_uppercase());
    for again in [&sig, &upper] {
        let r = h
            .send(hook_at("signed-hook", body, Some(again), ts, None))
            .await;
        r.assert_problem(StatusCode::CONFLICT, "replayed-request");
    }
    // A replay under a fresh Idempotency-Key is still a replay.
    let r = h
        .send(hook_at(
            "signed-hook",
            body,
            Some(&sig),
            ts,
            Some("other-key"),
        ))
        .await;
    r.assert_problem(StatusCode::CONFLICT, "replayed-request");
    assert_eq!(h.run_count().await, 1);
}

#[tokio::test]
async fn a_stale_or_future_timestamp_is_401() {
    let h = Harness::new().await;
    let body = r#"{"ticket":"T-1"}"#;
    for ts in [now() - 400, now() + 400] {
        let sig = signature_at(HOOK_SECRET, ts, body);
        let r = h
            .send(hook_at("signed-hook", body, Some(&sig), ts, None))
            .await;
        r.assert_problem(StatusCode::UNAUTHORIZED, "invalid-signature");
        assert!(r.text.contains("5 minutes"), "{}", r.text);
    }
    assert_eq!(h.run_count().await, 0);
}

#[tokio::test]
async fn a_signed_resend_with_the_same_key_returns_the_first_run() {
    let h = Harness::new().await;
    let body = r#"{"ticket":"T-1"}"#;
    let first = h
        .send(hook_at(
            "signed-hook",
            body,
            Some(&signature_at(HOOK_SECRET, now(), body)),
            now(),
            Some("k-1"),
        ))
        .await;
    assert_eq!(first.status, StatusCode::ACCEPTED, "{}", first.text);
    // Signed again a second later: a new signature, the same key.
    let ts = now() + 1;
    let again = h
        .send(hook_at(
            "signed-hook",
            body,
            Some(&signature_at(HOOK_SECRET, ts, body)),
            ts,
            Some("k-1"),
        ))
        .await;
    assert_eq!(again.status, StatusCode::OK, "{}", again.text);
    assert_eq!(again.json["run_id"], first.json["run_id"]);
    assert_eq!(h.run_count().await, 1);
}

#[tokio::test]
async fn the_old_scheme_is_accepted_with_a_deprecation_header_but_no_idempotency_key() {
    let h = Harness::new().await;
    let body = r#"{"ticket":"T-1"}"#;
    let legacy = legacy_signature(HOOK_SECRET, body);
    let r = h.send(hook("signed-hook", body, Some(&legacy))).await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.text);
    assert!(r.headers.contains_key("deprecation"), "{:?}", r.headers);
    assert!(r.headers.contains_key("sunset"));
    let r = h
        .send(hook_at(
            "signed-hook",
            body,
            Some(&legacy),
            now(),
            Some("k-2"),
        ))
        .await;
    r.assert_problem(StatusCode::BAD_REQUEST, "invalid-parameter");
    assert_eq!(r.json["errors"][0]["header"], "Idempotency-Key");
    assert_eq!(h.run_count().await, 1);
}

#[test]
fn sign_body_makes_v1_signatures() {
    assert_eq!(
        countersign_server::sign_body(HOOK_SECRET.as_bytes(), 1_700_000_000, b"{}"),
        signature_at(HOOK_SECRET, 1_700_000_000, "{}")
    );
}
