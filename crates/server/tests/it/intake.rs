//! `POST /api/v1/workflows/{name}/runs`: creation, idempotency, `?wait=`,
//! and every way a submission is refused without creating a run.

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use countersign_server::ServerConfig;

use crate::support::{Harness, abandon_after, post_json};

const GOOD: &str = r#"{"email":"ann@example.com","amount":250}"#;

#[tokio::test]
async fn a_valid_submission_is_accepted_with_202() {
    let h = Harness::new().await;
    let r = h
        .post(
            "/api/v1/workflows/triage/runs",
            Some(&h.tokens.writer),
            GOOD,
        )
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.text);
    assert_eq!(r.json["created"], true);
    let id = r.json["run_id"].as_str().expect("run_id").to_string();
    assert!(r.json["status"].is_string());
    assert_eq!(r.json["links"]["self"], format!("/api/v1/runs/{id}"));
    assert_eq!(
        r.headers
            .get(header::LOCATION)
            .and_then(|v| v.to_str().ok()),
        Some(format!("/api/v1/runs/{id}").as_str())
    );
    assert!(h.store.run(&id).await.unwrap().is_some());
    assert_eq!(h.run_count().await, 1);
}

#[tokio::test]
async fn an_idempotency_key_returns_the_same_run_and_creates_no_second() {
    let h = Harness::new().await;
    let send = || {
        let mut req = post_json(
            "/api/v1/workflows/triage/runs",
            Some(&h.tokens.writer),
            GOOD,
        );
        req.headers_mut()
            .insert("idempotency-key", "order-42".parse().unwrap());
        h.send(req)
    };
    let first = send().await;
    assert_eq!(first.status, StatusCode::ACCEPTED, "{}", first.text);
    assert_eq!(first.json["created"], true);
    let second = send().await;
    assert_eq!(second.status, StatusCode::OK, "{}", second.text);
    assert_eq!(second.json["created"], false);
    assert_eq!(second.json["run_id"], first.json["run_id"]);
    assert_eq!(h.run_count().await, 1);
}

#[tokio::test]
async fn an_idempotency_key_that_is_too_long_is_a_400() {
    let h = Harness::new().await;
    let mut req = post_json(
        "/api/v1/workflows/triage/runs",
        Some(&h.tokens.writer),
        GOOD,
    );
    req.headers_mut()
        .insert("idempotency-key", "k".repeat(300).parse().unwrap());
    let r = h.send(req).await;
    r.assert_problem(StatusCode::BAD_REQUEST, "invalid-parameter");
    assert_eq!(r.json["errors"][0]["header"], "Idempotency-Key");
    assert_eq!(h.run_count().await, 0);
}

#[tokio::test]
async fn wait_returns_the_outcome_of_a_rules_only_run() {
    let h = Harness::new().await;
    let r = h
        .post(
            "/api/v1/workflows/triage/runs?wait=5",
            Some(&h.tokens.writer),
            GOOD,
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.json["status"], "completed");
    assert_eq!(r.json["outcome"], "completed");
    assert_eq!(r.json["created"], true);
    assert_eq!(r.json["outputs"]["classify"]["review"], "required");
    assert_eq!(
        r.json["outputs"]["classify"]["matched"],
        serde_json::json!([0])
    );

    let r = h
        .post(
            "/api/v1/workflows/triage/runs?wait=5",
            Some(&h.tokens.writer),
            r#"{"email":"big@example.com","amount":5000}"#,
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.json["outcome"], "escalated");
}

#[tokio::test]
async fn wait_reports_a_failed_run_with_its_error() {
    let h = Harness::new().await;
    let r = h
        .post(
            "/api/v1/workflows/failing/runs?wait=5",
            Some(&h.tokens.writer),
            "{}",
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.json["status"], "failed");
    assert!(
        r.json["error"].as_str().unwrap().contains("always fails"),
        "{}",
        r.text
    );
}

#[tokio::test]
async fn wait_answers_202_when_the_run_is_still_going() {
    let h = Harness::new().await;
    let r = h
        .post(
            "/api/v1/workflows/slow/runs?wait=0.3",
            Some(&h.tokens.writer),
            "{}",
        )
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.text);
    assert_ne!(r.json["status"], "completed");
    assert!(r.json.get("outcome").is_none(), "{}", r.text);
}

#[tokio::test]
async fn wait_is_capped_by_the_server() {
    let h = Harness::with_config(ServerConfig {
        max_wait: std::time::Duration::from_millis(200),
        ..ServerConfig::default()
    })
    .await;
    // Capped at 200 ms, so the answer comes while the run is still trying;
    // numbers past what a `Duration` holds are capped too, never a panic.
    for wait in ["60", "1.8446744073709552e%2B19", "1e400"] {
        let r = h
            .post(
                &format!("/api/v1/workflows/slow/runs?wait={wait}"),
                Some(&h.tokens.writer),
                "{}",
            )
            .await;
        assert_eq!(r.status, StatusCode::ACCEPTED, "{wait}: {}", r.text);
    }
}

#[tokio::test]
async fn a_wait_that_is_not_a_number_is_a_400_and_creates_no_run() {
    let h = Harness::new().await;
    let r = h
        .post(
            "/api/v1/workflows/triage/runs?wait=soon",
            Some(&h.tokens.writer),
            GOOD,
        )
        .await;
    r.assert_problem(StatusCode::BAD_REQUEST, "invalid-parameter");
    assert_eq!(r.json["errors"][0]["parameter"], "wait");
    assert_eq!(h.run_count().await, 0);
}

#[tokio::test]
async fn malformed_json_is_a_400_and_creates_no_run() {
    let h = Harness::new().await;
    let r = h
        .post(
            "/api/v1/workflows/triage/runs",
            Some(&h.tokens.writer),
            r#"{"email": "a@b.co","#,
        )
        .await;
    r.assert_problem(StatusCode::BAD_REQUEST, "malformed-json");
    assert_eq!(h.run_count().await, 0);
}

#[tokio::test]
async fn duplicate_keys_and_inexact_integers_are_a_400_and_create_no_run() {
    let h = Harness::new().await;
    for (body, says) in [
        (
            r#"{"email": "a@b.co", "amount": 3, "email": "evil@b.co"}"#,
            "duplicate key \"email\"",
        ),
        (
            r#"{"email": "a@b.co", "amount": 9007199254740993}"#,
            "number 9007199254740993 is beyond ±2^53",
        ),
    ] {
        let r = h
            .post(
                "/api/v1/workflows/triage/runs",
                Some(&h.tokens.writer),
                body,
            )
            .await;
        r.assert_problem(StatusCode::BAD_REQUEST, "malformed-json");
        assert!(
            r.json["detail"].as_str().unwrap_or_default().contains(says),
            "{}",
            r.text
        );
    }
    assert_eq!(h.run_count().await, 0);
}

#[tokio::test]
async fn a_schema_violation_is_a_422_naming_each_field() {
    let h = Harness::new().await;
    let r = h
        .post(
            "/api/v1/workflows/triage/runs",
            Some(&h.tokens.writer),
            r#"{"email":"not-an-email","amount":-3}"#,
        )
        .await;
    r.assert_problem(StatusCode::UNPROCESSABLE_ENTITY, "validation");
    let pointers: Vec<&str> = r.json["errors"]
        .as_array()
        .expect("errors")
        .iter()
        .map(|e| e["pointer"].as_str().unwrap())
        .collect();
    assert_eq!(pointers, ["/amount", "/email"], "{}", r.text);
    assert!(
        r.json["errors"]
            .as_array()
            .unwrap()
            .iter()
            .all(|e| e["detail"].is_string())
    );

    let r = h
        .post(
            "/api/v1/workflows/triage/runs",
            Some(&h.tokens.writer),
            "{}",
        )
        .await;
    r.assert_problem(StatusCode::UNPROCESSABLE_ENTITY, "validation");
    assert_eq!(r.json["errors"].as_array().unwrap().len(), 2, "{}", r.text);
    assert_eq!(h.run_count().await, 0);
}

#[tokio::test]
async fn an_unknown_workflow_is_a_404() {
    let h = Harness::new().await;
    let r = h
        .post("/api/v1/workflows/nope/runs", Some(&h.tokens.writer), GOOD)
        .await;
    r.assert_problem(StatusCode::NOT_FOUND, "not-found");
    assert_eq!(h.run_count().await, 0);
}

#[tokio::test]
async fn a_body_over_the_limit_is_a_413_problem() {
    let h = Harness::with_config(ServerConfig {
        body_limit: 1024,
        ..ServerConfig::default()
    })
    .await;
    let body = |n: usize| {
        format!(
            r#"{{"email":"a@b.co","amount":1,"note":"{}"}}"#,
            "x".repeat(n)
        )
    };
    let big = body(2000);
    // Announced by Content-Length…
    let mut req = post_json(
        "/api/v1/workflows/triage/runs",
        Some(&h.tokens.writer),
        &big,
    );
    req.headers_mut()
        .insert(header::CONTENT_LENGTH, big.len().into());
    let r = h.send(req).await;
    r.assert_problem(StatusCode::PAYLOAD_TOO_LARGE, "payload-too-large");
    // …or found while reading.
    let r = h
        .post(
            "/api/v1/workflows/triage/runs",
            Some(&h.tokens.writer),
            &big,
        )
        .await;
    r.assert_problem(StatusCode::PAYLOAD_TOO_LARGE, "payload-too-large");
    assert_eq!(h.run_count().await, 0);

    // Just under the limit is fine.
    let small = body(900);
    assert!(small.len() < 1024);
    let r = h
        .post(
            "/api/v1/workflows/triage/runs",
            Some(&h.tokens.writer),
            &small,
        )
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.text);
}

#[tokio::test]
async fn a_wrong_or_missing_content_type_is_a_415() {
    let h = Harness::new().await;
    for ct in [
        Some("text/plain"),
        Some("application/x-www-form-urlencoded"),
        None,
    ] {
        let mut b = Request::post("/api/v1/workflows/triage/runs")
            .header(header::AUTHORIZATION, format!("Bearer {}", h.tokens.writer));
        if let Some(ct) = ct {
            b = b.header(header::CONTENT_TYPE, ct);
        }
        let r = h.send(b.body(Body::from(GOOD)).unwrap()).await;
        r.assert_problem(StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported-media-type");
    }
    let r = h
        .send(
            Request::post("/api/v1/workflows/triage/runs")
                .header(header::AUTHORIZATION, format!("Bearer {}", h.tokens.writer))
                .header(header::CONTENT_TYPE, "application/json; charset=utf-8")
                .body(Body::from(GOOD))
                .unwrap(),
        )
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.text);
    assert_eq!(h.run_count().await, 1);
}

/// Clients that hang up while their submission is being stored, or while
/// they `?wait=` for its outcome, at many points: every run their requests
/// caused completes without a restart, within the lease plus 30 s.
#[tokio::test]
async fn clients_that_hang_up_never_strand_a_run() {
    use tower::ServiceExt;
    let lease_ms = 1_000;
    let h = Harness::with_engine(
        ServerConfig::default(),
        engine::Config {
            lease_ms,
            poll_ms: 50,
            ..engine::Config::default()
        },
    )
    .await;
    let mut answered = 0;
    for i in 0..96 {
        let path = if i % 2 == 0 {
            "/api/v1/workflows/triage/runs?wait=10"
        } else {
            "/api/v1/workflows/triage/runs"
        };
        let mut req = post_json(
            path,
            Some(&h.tokens.writer),
            r#"{"email":"a@example.com","amount":5}"#,
        );
        req.headers_mut().insert(
            "idempotency-key",
            axum::http::HeaderValue::from_str(&format!("hang-up-{i}")).unwrap(),
        );
        let call = h.app.clone().oneshot(req);
        if abandon_after(call, (i / 2) % 24).await.is_some() {
            answered += 1;
        }
    }
    // Polls count differently on a loaded machine: also hang up at the
    // moment each run is committed, whatever the load, so the case under
    // test happens for certain.
    for i in 0..8 {
        let before = h.run_count().await;
        let mut req = post_json(
            "/api/v1/workflows/triage/runs?wait=10",
            Some(&h.tokens.writer),
            r#"{"email":"a@example.com","amount":5}"#,
        );
        req.headers_mut().insert(
            "idempotency-key",
            axum::http::HeaderValue::from_str(&format!("hang-up-late-{i}")).unwrap(),
        );
        let mut call = std::pin::pin!(h.app.clone().oneshot(req));
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(20);
        loop {
            let polled =
                std::future::poll_fn(|cx| std::task::Poll::Ready(call.as_mut().poll(cx))).await;
            if polled.is_ready() {
                answered += 1;
                break;
            }
            if h.run_count().await > before {
                break; // committed: hang up now
            }
            assert!(tokio::time::Instant::now() < deadline, "no run was created");
            tokio::time::sleep(std::time::Duration::from_millis(1)).await;
        }
    }
    // Submissions whose client hung up are still being stored by the
    // engine (that is the point): wait until the count stops moving.
    let list = || async {
        h.store
            .list_runs(&store::RunFilter {
                limit: 10_000,
                ..store::RunFilter::default()
            })
            .await
            .expect("list runs")
    };
    let mut runs = list().await;
    let mut steady = 0;
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(20);
    while steady < 5 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        let now = list().await;
        steady = if now.len() == runs.len() {
            steady + 1
        } else {
            0
        };
        runs = now;
    }
    for r in &runs {
        let done = test_kit::fixture::wait_status(
            &h.store,
            &r.id,
            |r| r.status.is_terminal(),
            std::time::Duration::from_millis(lease_ms as u64 + 30_000),
        )
        .await;
        assert_eq!(done.status, store::RunStatus::Completed, "{done:#?}");
    }
    assert!(
        runs.len() > answered,
        "some runs were committed behind a request that hung up ({} created, {answered} answered): the test exercises that case",
        runs.len()
    );
}
