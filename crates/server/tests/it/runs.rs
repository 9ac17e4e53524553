//! Reading runs (list with cursor, detail, events) and operator commands.

use std::collections::HashSet;

use axum::http::StatusCode;

use crate::support::Harness;

async fn submit(h: &Harness, workflow: &str, body: &str) -> String {
    let r = h
        .post(
            &format!("/api/v1/workflows/{workflow}/runs?wait=5"),
            Some(&h.tokens.writer),
            body,
        )
        .await;
    assert!(r.status.is_success(), "{}", r.text);
    r.json["run_id"].as_str().unwrap().to_string()
}

#[tokio::test]
async fn runs_are_listed_newest_first_page_by_page() {
    let h = Harness::new().await;
    let mut created = Vec::new();
    for i in 0..5 {
        created.push(
            submit(
                &h,
                "triage",
                &format!(r#"{{"email":"u{i}@example.com","amount":{i}}}"#),
            )
            .await,
        );
    }
    created.reverse();
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    let mut pages = 0;
    loop {
        let path = match &cursor {
            Some(c) => format!("/api/v1/runs?limit=2&cursor={c}"),
            None => "/api/v1/runs?limit=2".to_string(),
        };
        let r = h.get(&path, Some(&h.tokens.reader)).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
        let items = r.json["items"].as_array().unwrap();
        assert!(items.len() <= 2);
        seen.extend(items.iter().map(|i| i["id"].as_str().unwrap().to_string()));
        pages += 1;
        match r.json["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_string()),
            None => break,
        }
        assert!(pages < 10, "paging does not end");
    }
    assert_eq!(pages, 3);
    assert_eq!(seen, created);
    assert_eq!(seen.iter().collect::<HashSet<_>>().len(), 5);
}

#[tokio::test]
async fn runs_can_be_filtered_by_workflow_and_status() {
    let h = Harness::new().await;
    let done = submit(&h, "triage", r#"{"email":"a@example.com","amount":1}"#).await;
    let failed = submit(&h, "failing", "{}").await;

    let r = h
        .get("/api/v1/runs?status=failed", Some(&h.tokens.reader))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let ids: Vec<&str> = r.json["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [failed.as_str()]);
    assert!(r.json["next_cursor"].is_null());

    let r = h
        .get("/api/v1/runs?workflow=triage", Some(&h.tokens.reader))
        .await;
    let items = r.json["items"].as_array().unwrap();
    assert_eq!(items.len(), 1);
    assert_eq!(items[0]["id"], done);
    assert_eq!(items[0]["status"], "completed");
    assert_eq!(items[0]["workflow"], "triage");
    assert!(items[0]["created_at"].as_str().unwrap().ends_with('Z'));
}

#[tokio::test]
async fn bad_list_parameters_are_400_naming_the_parameter() {
    let h = Harness::new().await;
    for (query, name) in [
        ("status=finished", "status"),
        ("limit=0", "limit"),
        ("limit=many", "limit"),
    ] {
        let r = h
            .get(&format!("/api/v1/runs?{query}"), Some(&h.tokens.reader))
            .await;
        r.assert_problem(StatusCode::BAD_REQUEST, "invalid-parameter");
        assert_eq!(r.json["errors"][0]["parameter"], name, "{}", r.text);
        assert!(r.json["detail"].as_str().unwrap().contains(name));
    }
    // Above the maximum is capped, not refused.
    let r = h
        .get("/api/v1/runs?limit=5000", Some(&h.tokens.reader))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
}

#[tokio::test]
async fn a_run_shows_its_steps_outputs_and_input() {
    let h = Harness::new().await;
    let id = submit(&h, "triage", r#"{"email":"a@example.com","amount":500}"#).await;
    let r = h
        .get(&format!("/api/v1/runs/{id}"), Some(&h.tokens.reader))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.json["id"], id);
    assert_eq!(r.json["status"], "completed");
    assert_eq!(r.json["outcome"], "completed");
    assert_eq!(r.json["input"]["amount"], 500);
    assert_eq!(r.json["outputs"]["classify"]["review"], "required");
    let steps = r.json["steps"].as_array().unwrap();
    assert_eq!(steps.len(), 2, "{}", r.text);
    assert_eq!(steps[0]["step_id"], "classify");
    assert_eq!(steps[0]["status"], "completed");
    assert_eq!(steps[0]["attempt"], 1);
    assert!(r.json["effects"].as_array().unwrap().is_empty());
    assert_eq!(
        r.json["links"]["events"],
        format!("/api/v1/runs/{id}/events")
    );
}

#[tokio::test]
async fn an_unknown_run_is_a_404_everywhere() {
    let h = Harness::new().await;
    let r = h
        .get("/api/v1/runs/0190-nope", Some(&h.tokens.reader))
        .await;
    r.assert_problem(StatusCode::NOT_FOUND, "not-found");
    let r = h
        .get("/api/v1/runs/0190-nope/events", Some(&h.tokens.reader))
        .await;
    r.assert_problem(StatusCode::NOT_FOUND, "not-found");
    for op in ["retry", "cancel"] {
        let r = h
            .post(
                &format!("/api/v1/runs/0190-nope/{op}"),
                Some(&h.tokens.writer),
                "",
            )
            .await;
        r.assert_problem(StatusCode::NOT_FOUND, "not-found");
    }
}

#[tokio::test]
async fn events_are_a_hash_chain_served_page_by_page() {
    let h = Harness::new().await;
    let id = submit(&h, "triage", r#"{"email":"a@example.com","amount":1}"#).await;
    let all = h
        .get(&format!("/api/v1/runs/{id}/events"), Some(&h.tokens.reader))
        .await;
    assert_eq!(all.status, StatusCode::OK, "{}", all.text);
    let items = all.json["items"].as_array().unwrap().clone();
    assert!(items.len() >= 3, "{}", all.text);
    assert!(all.json["next_after"].is_null());
    assert_eq!(items.last().unwrap()["kind"], "run.completed");
    for (i, e) in items.iter().enumerate() {
        assert_eq!(e["seq"], i as i64 + 1);
        assert!(e["data"].is_object(), "data is parsed JSON: {e}");
        assert!(chrono_like(e["at"].as_str().unwrap()), "{e}");
        assert_eq!(e["hash"].as_str().unwrap().len(), 64);
        if i > 0 {
            assert_eq!(e["prev_hash"], items[i - 1]["hash"]);
        }
    }
    assert_eq!(items[0]["data"]["workflow"], "triage");

    let page = h
        .get(
            &format!("/api/v1/runs/{id}/events?after=1&limit=1"),
            Some(&h.tokens.reader),
        )
        .await;
    assert_eq!(page.json["items"].as_array().unwrap().len(), 1);
    assert_eq!(page.json["items"][0]["seq"], 2);
    assert_eq!(page.json["next_after"], 2);

    let bad = h
        .get(
            &format!("/api/v1/runs/{id}/events?after=-4"),
            Some(&h.tokens.reader),
        )
        .await;
    bad.assert_problem(StatusCode::BAD_REQUEST, "invalid-parameter");
    assert_eq!(bad.json["errors"][0]["parameter"], "after");
}

fn chrono_like(s: &str) -> bool {
    // 2024-05-01T10:00:00.000Z
    s.len() == 24 && s.as_bytes()[4] == b'-' && s.as_bytes()[10] == b'T' && s.ends_with('Z')
}

#[tokio::test]
async fn retry_and_cancel_of_a_completed_run_are_409_with_its_status() {
    let h = Harness::new().await;
    let id = h.completed_run().await;
    for op in ["retry", "cancel"] {
        let r = h
            .post(
                &format!("/api/v1/runs/{id}/{op}"),
                Some(&h.tokens.writer),
                "",
            )
            .await;
        r.assert_problem(StatusCode::CONFLICT, "run-state-conflict");
        assert_eq!(r.json["run_status"], "completed");
    }
}

#[tokio::test]
async fn a_failed_run_can_be_retried_and_a_waiting_one_cancelled() {
    let h = Harness::new().await;
    let failed = submit(&h, "failing", "{}").await;
    let r = h
        .post(
            &format!("/api/v1/runs/{failed}/retry"),
            Some(&h.tokens.writer),
            "",
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.json["id"], failed);
    assert_ne!(r.json["status"], "failed", "{}", r.text);

    let r = h
        .post(
            "/api/v1/workflows/slow/runs?wait=0.2",
            Some(&h.tokens.writer),
            "{}",
        )
        .await;
    let slow = r.json["run_id"].as_str().unwrap().to_string();
    let r = h
        .post(
            &format!("/api/v1/runs/{slow}/retry"),
            Some(&h.tokens.writer),
            "",
        )
        .await;
    r.assert_problem(StatusCode::CONFLICT, "run-state-conflict");
    let r = h
        .post(
            &format!("/api/v1/runs/{slow}/cancel"),
            Some(&h.tokens.writer),
            "",
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.json["status"], "cancelled");
    let r = h
        .post(
            &format!("/api/v1/runs/{slow}/cancel"),
            Some(&h.tokens.writer),
            "",
        )
        .await;
    r.assert_problem(StatusCode::CONFLICT, "run-state-conflict");
    assert_eq!(r.json["run_status"], "cancelled");
}

#[tokio::test]
async fn queue_limited_callers_read_only_runs_of_their_queues() {
    let h = Harness::new().await;
    let (run_id, _) = crate::reviews::waiting(&h).await;
    let (finance, _) =
        crate::support::mint(&h.store, "finance", &["runs:write", "queue:finance"], false).await;
    let (ops, _) =
        crate::support::mint(&h.store, "ops", &["runs:write", "queue:operations"], false).await;
    let run = format!("/api/v1/runs/{run_id}");
    let events = format!("{run}/events");
    // Another queue's token reads, lists and cancels nothing (the audit
    // export, `/api/v1/events`, filters to its queues: see events.rs).
    for path in [run.as_str(), events.as_str(), "/api/v1/runs"] {
        let r = h.get(path, Some(&finance)).await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{path}: {}", r.text);
        r.assert_problem(StatusCode::FORBIDDEN, "forbidden-queue");
        assert!(!r.text.contains("Printer on fire"), "{path}: {}", r.text);
    }
    let r = h.post(&format!("{run}/cancel"), Some(&finance), "").await;
    r.assert_problem(StatusCode::FORBIDDEN, "forbidden-queue");
    // The task's own queue reads the run and its events.
    let r = h.get(&run, Some(&ops)).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(h.get(&events, Some(&ops)).await.status, StatusCode::OK);
    // Unlimited tokens are unchanged.
    assert_eq!(
        h.get(&run, Some(&h.tokens.reader)).await.status,
        StatusCode::OK
    );
    assert_eq!(
        h.get("/api/v1/runs", Some(&h.tokens.reader)).await.status,
        StatusCode::OK
    );
}
