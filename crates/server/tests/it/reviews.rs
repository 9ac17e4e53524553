//! Review tasks over HTTP: listing, reading and deciding, with scope and
//! queue checks, field validation (422) and decided tasks (409).

use std::time::Duration;

use axum::http::StatusCode;
use serde_json::json;
use store::RunStatus;

use crate::support::{Harness, mint};

pub use test_kit::emit::Emit;

/// Submits a `reviewed` run that needs review; returns `(run_id, review_id)`.
pub async fn waiting(h: &Harness) -> (String, String) {
    let r = h
        .post(
            "/api/v1/workflows/reviewed/runs?wait=10",
            Some(&h.tokens.writer),
            r#"{"text":"Printer on fire","priority":"high"}"#,
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.json["status"], "waiting", "{}", r.text);
    let run_id = r.json["run_id"].as_str().unwrap().to_string();
    let list = h
        .get(
            "/api/v1/reviews?status=pending&queue=operations",
            Some(&h.tokens.reviewer),
        )
        .await;
    assert_eq!(list.status, StatusCode::OK, "{}", list.text);
    let item = list.json["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["run_id"] == run_id.as_str())
        .unwrap_or_else(|| panic!("no task for {run_id}: {}", list.text))
        .clone();
    (run_id, item["id"].as_str().unwrap().to_string())
}

pub async fn wait_terminal(h: &Harness, run_id: &str) -> store::Run {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let run = h.store.run(run_id).await.unwrap().unwrap();
        if run.status.is_terminal() {
            return run;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "run never ended: {run:#?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn list_and_read_show_drafts_and_need_the_scope() {
    let h = Harness::new().await;
    let (run_id, id) = waiting(&h).await;
    let r = h
        .get(&format!("/api/v1/reviews/{id}"), Some(&h.tokens.reviewer))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(
        (
            r.json["run_id"].as_str(),
            r.json["queue"].as_str(),
            r.json["status"].as_str()
        ),
        (Some(run_id.as_str()), Some("operations"), Some("pending"))
    );
    assert_eq!(r.json["fields"][0]["draft"], "Printer on fire");
    assert_eq!(r.json["fields"][1]["schema"]["enum"][2], "high");
    assert_eq!(r.json["submitter"], format!("token:{}", h.tokens.writer_id));

    h.get("/api/v1/reviews", Some(&h.tokens.reader))
        .await
        .assert_problem(StatusCode::FORBIDDEN, "forbidden");
    h.get("/api/v1/reviews", None)
        .await
        .assert_problem(StatusCode::UNAUTHORIZED, "unauthorized");
    h.get("/api/v1/reviews/nope", Some(&h.tokens.reviewer))
        .await
        .assert_problem(StatusCode::NOT_FOUND, "not-found");
    h.get("/api/v1/reviews?status=maybe", Some(&h.tokens.reviewer))
        .await
        .assert_problem(StatusCode::BAD_REQUEST, "invalid-parameter");
    let all = h
        .get("/api/v1/reviews?status=approved", Some(&h.tokens.admin))
        .await;
    assert_eq!(all.json["items"], json!([]), "{}", all.text);
}

#[tokio::test]
async fn a_token_restricted_to_other_queues_gets_403() {
    let h = Harness::new().await;
    let (_, id) = waiting(&h).await;
    let (sales, _) = mint(&h.store, "sales", &["reviews:decide", "queue:sales"], false).await;
    let (ops, _) = mint(
        &h.store,
        "ops",
        &["reviews:decide", "queue:operations"],
        false,
    )
    .await;
    let list = h.get("/api/v1/reviews", Some(&sales)).await;
    assert_eq!(list.json["items"], json!([]), "{}", list.text);
    h.get("/api/v1/reviews?queue=operations", Some(&sales))
        .await
        .assert_problem(StatusCode::FORBIDDEN, "forbidden-queue");
    h.get(&format!("/api/v1/reviews/{id}"), Some(&sales))
        .await
        .assert_problem(StatusCode::FORBIDDEN, "forbidden-queue");
    h.post(
        &format!("/api/v1/reviews/{id}/decision"),
        Some(&sales),
        r#"{"decision":"approve"}"#,
    )
    .await
    .assert_problem(StatusCode::FORBIDDEN, "forbidden-queue");
    let list = h.get("/api/v1/reviews", Some(&ops)).await;
    assert_eq!(
        list.json["items"].as_array().map(Vec::len),
        Some(1),
        "{}",
        list.text
    );
    let r = h
        .post(
            &format!("/api/v1/reviews/{id}/decision"),
            Some(&ops),
            r#"{"decision":"approve"}"#,
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
}

#[tokio::test]
async fn bad_decisions_get_422_naming_each_field() {
    let h = Harness::new().await;
    let (run_id, id) = waiting(&h).await;
    let path = format!("/api/v1/reviews/{id}/decision");
    let r = h
        .post(
            &path,
            Some(&h.tokens.reviewer),
            r#"{"decision":"approve","values":{"priority":"asap","summary":42,"colour":"red"}}"#,
        )
        .await;
    r.assert_problem(StatusCode::UNPROCESSABLE_ENTITY, "validation");
    let pointers: Vec<&str> = r.json["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["pointer"].as_str().unwrap())
        .collect();
    assert_eq!(
        pointers,
        ["/values/colour", "/values/priority", "/values/summary"],
        "{}",
        r.text
    );
    let r = h
        .post(&path, Some(&h.tokens.reviewer), r#"{"decision":"reject"}"#)
        .await;
    r.assert_problem(StatusCode::UNPROCESSABLE_ENTITY, "validation");
    assert_eq!(r.json["errors"][0]["pointer"], "/reason", "{}", r.text);
    let r = h
        .post(&path, Some(&h.tokens.reviewer), r#"{"decision":"perhaps"}"#)
        .await;
    assert_eq!(r.json["errors"][0]["pointer"], "/decision", "{}", r.text);
    h.post(&path, Some(&h.tokens.reviewer), "{")
        .await
        .assert_problem(StatusCode::BAD_REQUEST, "malformed-json");
    h.post(&path, Some(&h.tokens.reader), r#"{"decision":"approve"}"#)
        .await
        .assert_problem(StatusCode::FORBIDDEN, "forbidden");
    let run = h.store.run(&run_id).await.unwrap().unwrap();
    assert_eq!(run.status, RunStatus::Waiting, "nothing was decided");
}

#[tokio::test]
async fn an_edited_approval_resumes_the_run_and_a_second_decision_gets_409() {
    let h = Harness::new().await;
    let (run_id, id) = waiting(&h).await;
    let path = format!("/api/v1/reviews/{id}/decision");
    let r = h
        .post(
            &path,
            Some(&h.tokens.reviewer),
            r#"{"decision":"approve","values":{"summary":"Printer smoking"},"comment":"calmer"}"#,
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.json["status"], "approved");
    assert_eq!(
        (
            r.json["fields"][0]["value"].as_str(),
            r.json["fields"][0]["changed"].as_bool()
        ),
        (Some("Printer smoking"), Some(true))
    );
    assert_eq!(r.json["fields"][1]["changed"], false);
    assert_eq!(r.json["fields"][0]["comment"], "calmer");
    let run = wait_terminal(&h, &run_id).await;
    assert_eq!(run.status, RunStatus::Completed, "{run:#?}");
    let detail = h
        .get(&format!("/api/v1/runs/{run_id}"), Some(&h.tokens.reader))
        .await;
    assert!(detail.text.contains("Printer smoking"), "{}", detail.text);

    h.post(
        &path,
        Some(&h.tokens.reviewer),
        r#"{"decision":"reject","reason":"late"}"#,
    )
    .await
    .assert_problem(StatusCode::CONFLICT, "review-state-conflict");
}

#[tokio::test]
async fn a_rejection_ends_the_run_and_escalation_moves_the_task() {
    let h = Harness::new().await;
    // `managers` is known: the four-eyes workflow's deadline escalates there.
    let (run_id, id) = waiting(&h).await;
    let path = format!("/api/v1/reviews/{id}/decision");
    let r = h
        .post(
            &path,
            Some(&h.tokens.reviewer),
            r#"{"decision":"escalate","queue":"managers"}"#,
        )
        .await;
    assert_eq!(
        (r.status, r.json["queue"].as_str()),
        (StatusCode::OK, Some("managers")),
        "{}",
        r.text
    );
    let r = h
        .post(
            &path,
            Some(&h.tokens.reviewer),
            r#"{"decision":"reject","reason":"spam"}"#,
        )
        .await;
    assert_eq!(r.json["status"], "rejected", "{}", r.text);
    let run = wait_terminal(&h, &run_id).await;
    assert_eq!(run.status, RunStatus::Rejected);
}

#[tokio::test]
async fn a_run_shows_its_current_review_task() {
    let h = Harness::new().await;
    let r = h
        .post(
            "/api/v1/workflows/slow/runs?wait=0.2",
            Some(&h.tokens.writer),
            "{}",
        )
        .await;
    let slow = r.json["run_id"].as_str().unwrap().to_string();
    let r = h
        .get(&format!("/api/v1/runs/{slow}"), Some(&h.tokens.reader))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let obj = r.json.as_object().unwrap();
    assert!(obj.contains_key("review"), "no `review` field: {}", r.text);
    assert!(obj["review"].is_null(), "{}", r.text);

    let (run_id, id) = waiting(&h).await;
    let run_path = format!("/api/v1/runs/{run_id}");
    let r = h.get(&run_path, Some(&h.tokens.reader)).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let review = &r.json["review"];
    assert_eq!(review["id"], id.as_str(), "{}", r.text);
    assert_eq!(review["queue"], "operations", "{}", r.text);
    assert_eq!(review["status"], "pending", "{}", r.text);
    assert!(
        review["step"].as_str().is_some_and(|s| !s.is_empty()),
        "{}",
        r.text
    );
    assert!(
        review.as_object().unwrap().contains_key("deadline_at_ms"),
        "{}",
        r.text
    );
    assert_eq!(
        review["links"]["self"],
        format!("/api/v1/reviews/{id}").as_str()
    );
    assert_eq!(review["links"]["inbox"], format!("/inbox/{id}").as_str());

    let r = h
        .post(
            &format!("/api/v1/reviews/{id}/decision"),
            Some(&h.tokens.reviewer),
            r#"{"decision":"approve"}"#,
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    wait_terminal(&h, &run_id).await;
    let r = h.get(&run_path, Some(&h.tokens.reader)).await;
    assert_eq!(
        (
            r.json["review"]["id"].as_str(),
            r.json["review"]["status"].as_str()
        ),
        (Some(id.as_str()), Some("approved")),
        "{}",
        r.text
    );

    let doc = h.get("/api/openapi.json", None).await;
    let props = &doc.json["components"]["schemas"]["RunView"];
    assert!(
        props.to_string().contains("\"review\""),
        "RunView schema lacks `review`: {props}"
    );
}

#[tokio::test]
async fn the_openapi_document_lists_the_review_endpoints() {
    let h = Harness::new().await;
    let doc = h.get("/api/openapi.json", None).await;
    for p in [
        "/api/v1/reviews",
        "/api/v1/reviews/{id}",
        "/api/v1/reviews/{id}/decision",
    ] {
        assert!(doc.json["paths"][p].is_object(), "{p} missing");
    }
    assert!(doc.json["components"]["schemas"]["DecisionBody"].is_object());
}
