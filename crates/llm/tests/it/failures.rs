//! Calls that fail: rate limits, server errors, timeouts, exhausted quota,
//! a missing key. Transient failures retry through the engine (honouring
//! `Retry-After`) only when no fallback could answer; permanent ones move
//! on; and when nothing works the run still completes, marked for review.

use expect_test::expect;
use store::RunStatus;
use test_kit::fake_openai::{FakeOpenAi, Reply};

use crate::{engine, events_of, good_answer, input, output, path, run, workflow};

#[tokio::test]
async fn rate_limited_without_fallback_retries_after_retry_after() {
    let fake = FakeOpenAi::start(Reply::Json(good_answer())).await;
    fake.push(Reply::RateLimited {
        retry_after_s: Some(1),
    });
    let (engine, store) = engine(&workflow("[]", ""), &fake.url(), Some("sk-test-key-0001")).await;
    let r = run(&engine, &store, input()).await;
    assert_eq!(r.status, RunStatus::Completed);
    let out = output(&store, &r.id, "triage").await;
    assert_eq!(
        (out["status"].as_str(), out["provider"].as_str()),
        (Some("ok"), Some("openai"))
    );
    let scheduled = &events_of(&store, &r.id, "step.retry_scheduled").await[0];
    assert_eq!(
        scheduled["retry_after_ms"], 1000,
        "Retry-After is passed to the engine"
    );
    assert!(
        scheduled["delay_ms"].as_u64().unwrap() >= 1000,
        "and honoured: {scheduled}"
    );
    expect![[r#"
        run.received
        llm.requested openai/gpt-4o-mini round=1 messages=2
        llm.failed openai round=1 class=transient status=429 retry_after_ms=1000
        llm.fallback openai/gpt-4o-mini -> retry (transient)
        step.failed triage class=transient
        step.retry_scheduled triage retry_after_ms=1000
        run.resumed
        llm.requested openai/gpt-4o-mini round=1 messages=2
        llm.responded openai round=1 valid=true finish=stop tokens=1200 cost_usd=0.00027
        step.completed triage
        step.completed route
        run.completed completed
    "#]]
    .assert_eq(&path(&store, &r.id).await);
}

#[tokio::test]
async fn rate_limited_with_a_fallback_degrades_at_once() {
    let fake = FakeOpenAi::start(Reply::RateLimited {
        retry_after_s: Some(30),
    })
    .await;
    let (engine, store) = engine(
        &workflow("[heuristic]", ""),
        &fake.url(),
        Some("sk-test-key-0001"),
    )
    .await;
    let r = run(&engine, &store, input()).await;
    assert_eq!(r.status, RunStatus::Completed);
    let out = output(&store, &r.id, "triage").await;
    assert_eq!(out["provider"], "heuristic");
    assert!(
        out["reason"]
            .as_str()
            .unwrap()
            .contains("HTTP 429 rate_limit_exceeded"),
        "{out}"
    );
    assert!(
        events_of(&store, &r.id, "step.retry_scheduled")
            .await
            .is_empty()
    );
}

#[tokio::test]
async fn server_errors_until_attempts_run_out_end_in_review_not_failure() {
    let fake = FakeOpenAi::start(Reply::Error {
        status: 500,
        code: "server_error".into(),
        message: "The server had an error".into(),
    })
    .await;
    let (engine, store) = engine(&workflow("[]", ""), &fake.url(), Some("sk-test-key-0001")).await;
    let r = run(&engine, &store, input()).await;
    assert_eq!(
        r.status,
        RunStatus::Completed,
        "the run does not fail: {r:?}"
    );
    assert_eq!(fake.hits(), 3, "one call per attempt (max_attempts: 3)");
    let out = output(&store, &r.id, "triage").await;
    assert_eq!(out["status"], "needs_review");
    assert_eq!(
        out["intent"],
        serde_json::Value::Null,
        "no unvalidated data downstream"
    );
    assert_eq!(
        out["reason"],
        "no valid answer from any provider: openai/gpt-4o-mini: HTTP 500 server_error: The server had an error"
    );
    assert_eq!(output(&store, &r.id, "route").await["review"], "required");
    let failed = events_of(&store, &r.id, "llm.failed").await;
    assert_eq!(failed.len(), 3);
    assert_eq!(
        failed[2]["raw"]["error"]["message"], "The server had an error",
        "the raw error body is kept"
    );
    expect![[r#"
        run.received
        llm.requested openai/gpt-4o-mini round=1 messages=2
        llm.failed openai round=1 class=transient status=500 retry_after_ms=null
        llm.fallback openai/gpt-4o-mini -> retry (transient)
        step.failed triage class=transient
        step.retry_scheduled triage retry_after_ms=null
        run.resumed
        llm.requested openai/gpt-4o-mini round=1 messages=2
        llm.failed openai round=1 class=transient status=500 retry_after_ms=null
        llm.fallback openai/gpt-4o-mini -> retry (transient)
        step.failed triage class=transient
        step.retry_scheduled triage retry_after_ms=null
        run.resumed
        llm.requested openai/gpt-4o-mini round=1 messages=2
        llm.failed openai round=1 class=transient status=500 retry_after_ms=null
        llm.fallback openai/gpt-4o-mini -> review (transient)
        step.completed triage
        step.completed route
        run.completed completed
    "#]]
    .assert_eq(&path(&store, &r.id).await);
}

#[tokio::test]
async fn a_slow_answer_past_the_call_timeout_falls_back() {
    let fake = FakeOpenAi::start(Reply::Slow(
        std::time::Duration::from_secs(60),
        Box::new(Reply::Json(good_answer())),
    ))
    .await;
    let yaml = workflow("[heuristic]", "").replace("call_timeout: 2s", "call_timeout: 300ms");
    let (engine, store) = engine(&yaml, &fake.url(), Some("sk-test-key-0001")).await;
    let r = run(&engine, &store, input()).await;
    let out = output(&store, &r.id, "triage").await;
    assert_eq!(out["provider"], "heuristic");
    assert_eq!(
        out["reason"],
        "fell back after: openai/gpt-4o-mini: no answer within 300 ms"
    );
    let failed = &events_of(&store, &r.id, "llm.failed").await[0];
    assert_eq!(
        (failed["class"].as_str(), failed["code"].as_str()),
        (Some("transient"), Some("timeout"))
    );
}

#[tokio::test]
async fn the_step_timeout_bounds_every_call_and_leaves_room_for_the_heuristic() {
    // The whole step may take 400 ms; the call would be allowed 2 s.
    let fake = FakeOpenAi::start(Reply::Slow(
        std::time::Duration::from_secs(60),
        Box::new(Reply::Json(good_answer())),
    ))
    .await;
    let yaml = workflow("[heuristic]", "").replace("    llm:\n", "    timeout: 400ms\n    llm:\n");
    let (engine, store) = engine(&yaml, &fake.url(), Some("sk-test-key-0001")).await;
    let r = run(&engine, &store, input()).await;
    assert_eq!(r.status, RunStatus::Completed);
    let out = output(&store, &r.id, "triage").await;
    assert_eq!(out["provider"], "heuristic");
    let requested = &events_of(&store, &r.id, "llm.requested").await[0];
    assert!(
        requested["timeout_ms"].as_u64().unwrap() <= 400,
        "{requested}"
    );
}

#[tokio::test]
async fn insufficient_quota_is_permanent_for_that_provider() {
    let fake = FakeOpenAi::start(Reply::QuotaExhausted).await;
    let (engine, store) = engine(
        &workflow("[heuristic]", ""),
        &fake.url(),
        Some("sk-test-key-0001"),
    )
    .await;
    let r = run(&engine, &store, input()).await;
    assert_eq!(fake.hits(), 1);
    let out = output(&store, &r.id, "triage").await;
    assert_eq!(out["provider"], "heuristic");
    let failed = &events_of(&store, &r.id, "llm.failed").await[0];
    assert_eq!(
        (failed["class"].as_str(), failed["code"].as_str()),
        (Some("permanent"), Some("insufficient_quota"))
    );

    // Without a fallback it is not retried either: straight to review.
    let fake = FakeOpenAi::start(Reply::QuotaExhausted).await;
    let (e2, s2) = crate::engine(&workflow("[]", ""), &fake.url(), Some("sk-test-key-0001")).await;
    let r = run(&e2, &s2, input()).await;
    assert_eq!(fake.hits(), 1);
    assert_eq!(output(&s2, &r.id, "triage").await["status"], "needs_review");
}

#[tokio::test]
async fn a_malformed_200_is_a_transient_failure() {
    let fake = FakeOpenAi::start(Reply::Garbage).await;
    let (engine, store) = engine(
        &workflow("[heuristic]", ""),
        &fake.url(),
        Some("sk-test-key-0001"),
    )
    .await;
    let r = run(&engine, &store, input()).await;
    let out = output(&store, &r.id, "triage").await;
    assert_eq!(out["provider"], "heuristic");
    assert!(
        out["reason"]
            .as_str()
            .unwrap()
            .contains("malformed response"),
        "{out}"
    );
}

#[tokio::test]
async fn without_an_api_key_the_chain_goes_straight_to_the_heuristic() {
    let fake = FakeOpenAi::start(Reply::Json(good_answer())).await;
    let (engine, store) = engine(&workflow("[heuristic]", ""), &fake.url(), None).await;
    let r = run(
        &engine,
        &store,
        serde_json::json!({"name": "Ada", "message": "unsubscribe"}),
    )
    .await;
    assert_eq!(fake.hits(), 0, "no call without a key");
    assert_eq!(
        (r.status, r.outcome.as_deref()),
        (RunStatus::Completed, Some("discarded"))
    );
    let out = output(&store, &r.id, "triage").await;
    assert_eq!(
        (out["provider"].as_str(), out["intent"].as_str()),
        (Some("heuristic"), Some("spam"))
    );
    assert_eq!(
        out["reason"],
        "fell back after: openai/gpt-4o-mini: not configured: OPENAI_API_KEY is not set"
    );
    let responded = &events_of(&store, &r.id, "llm.responded").await[0];
    assert_eq!(
        responded["raw"]["matched_keywords"]["intent"]["keywords"],
        serde_json::json!(["unsubscribe"]),
        "why it decided"
    );
    expect![[r#"
        run.received
        llm.fallback openai/gpt-4o-mini -> heuristic (unavailable)
        llm.requested heuristic/keywords-v1 round=1 messages=2
        llm.responded heuristic round=1 valid=true finish=stop tokens=null cost_usd=0.0
        step.completed triage
        step.completed route
        run.completed discarded
    "#]]
    .assert_eq(&path(&store, &r.id).await);
}
