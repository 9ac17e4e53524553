//! `POST /hooks/{name}`: HMAC-SHA256 signatures checked in constant time,
//! unsigned hooks, and hooks that do not exist.

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use hmac::{KeyInit, Mac};

use crate::support::{HOOK_SECRET, Harness};

fn signature(secret: &str, body: &str) -> String {
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(body.as_bytes());
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

fn hook(name: &str, body: &str, signature: Option<&str>) -> Request<Body> {
    let mut b =
        Request::post(format!("/hooks/{name}")).header(header::CONTENT_TYPE, "application/json");
    if let Some(s) = signature {
        b = b.header("x-countersign-signature", s);
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
    let upper = signature(HOOK_SECRET, body).replace("sha256=", "SHA1=");
    for sig in [
        None,
        Some(wrong_key.as_str()),
        Some(other_body.as_str()),
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
