//! Bearer tokens: 401 without a usable token, 403 without the scope, and
//! the scope implications (`admin` ⊇ all, `runs:write` ⊇ `runs:read`).

use axum::body::Body;
use axum::http::{Request, StatusCode, header};

use crate::support::Harness;

const GOOD: &str = r#"{"email":"ann@example.com","amount":1}"#;

#[tokio::test]
async fn a_missing_token_is_a_401_with_a_bearer_challenge() {
    let h = Harness::new().await;
    let r = h.post("/api/v1/workflows/triage/runs", None, GOOD).await;
    r.assert_problem(StatusCode::UNAUTHORIZED, "unauthorized");
    assert_eq!(r.headers.get(header::WWW_AUTHENTICATE).unwrap(), "Bearer");
    let r = h.get("/api/v1/runs", None).await;
    r.assert_problem(StatusCode::UNAUTHORIZED, "unauthorized");
    assert_eq!(h.run_count().await, 0);
}

#[tokio::test]
async fn unknown_revoked_and_malformed_tokens_are_401() {
    let h = Harness::new().await;
    let revoked = h.tokens.revoked.clone();
    for token in ["cs_0000", revoked.as_str()] {
        let r = h
            .post("/api/v1/workflows/triage/runs", Some(token), GOOD)
            .await;
        r.assert_problem(StatusCode::UNAUTHORIZED, "unauthorized");
        let challenge = r
            .headers
            .get(header::WWW_AUTHENTICATE)
            .unwrap()
            .to_str()
            .unwrap();
        assert!(challenge.starts_with("Bearer"), "{challenge}");
        assert!(!r.text.contains(token), "the token is echoed: {}", r.text);
    }
    for auth in [
        "Basic dXNlcjpwYXNz".to_string(),
        "Bearer ".into(),
        h.tokens.admin.clone(),
    ] {
        let r = h
            .send(
                Request::get("/api/v1/runs")
                    .header(header::AUTHORIZATION, auth)
                    .body(Body::empty())
                    .unwrap(),
            )
            .await;
        r.assert_problem(StatusCode::UNAUTHORIZED, "unauthorized");
    }
    assert_eq!(h.run_count().await, 0);
}

#[tokio::test]
async fn a_token_without_the_scope_is_a_403() {
    let h = Harness::new().await;
    let r = h
        .post(
            "/api/v1/workflows/triage/runs",
            Some(&h.tokens.reader),
            GOOD,
        )
        .await;
    r.assert_problem(StatusCode::FORBIDDEN, "forbidden");
    assert_eq!(r.json["required_scope"], "runs:write");
    assert_eq!(h.run_count().await, 0);

    let r = h.get("/api/v1/runs", Some(&h.tokens.reviewer)).await;
    r.assert_problem(StatusCode::FORBIDDEN, "forbidden");
    assert_eq!(r.json["required_scope"], "runs:read");

    let id = h.completed_run().await;
    let r = h
        .post(
            &format!("/api/v1/runs/{id}/cancel"),
            Some(&h.tokens.reader),
            "",
        )
        .await;
    r.assert_problem(StatusCode::FORBIDDEN, "forbidden");
    let r = h
        .post(
            &format!("/api/v1/runs/{id}/retry"),
            Some(&h.tokens.reviewer),
            "",
        )
        .await;
    r.assert_problem(StatusCode::FORBIDDEN, "forbidden");
}

#[tokio::test]
async fn admin_implies_every_scope_and_write_implies_read() {
    let h = Harness::new().await;
    let r = h
        .post("/api/v1/workflows/triage/runs", Some(&h.tokens.admin), GOOD)
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.text);
    for token in [&h.tokens.admin, &h.tokens.writer, &h.tokens.reader] {
        let r = h.get("/api/v1/runs", Some(token)).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    }
}

#[tokio::test]
async fn events_name_the_token_as_actor() {
    let h = Harness::new().await;
    let r = h
        .post(
            "/api/v1/workflows/triage/runs?wait=5",
            Some(&h.tokens.writer),
            GOOD,
        )
        .await;
    let id = r.json["run_id"].as_str().unwrap();
    let ev = h
        .get(&format!("/api/v1/runs/{id}/events"), Some(&h.tokens.reader))
        .await;
    assert_eq!(ev.status, StatusCode::OK, "{}", ev.text);
    assert_eq!(ev.json["items"][0]["kind"], "run.received");
    assert_eq!(
        ev.json["items"][0]["actor"],
        format!("token:{}", h.tokens.writer_id)
    );
}
