//! What the model answers, and where each answer leads: a valid answer is
//! the output; invalid JSON and schema violations get repair turns; a
//! refusal or a truncated answer moves on to the next provider; the
//! heuristic answers last, honestly marked.

use expect_test::expect;
use serde_json::json;
use store::RunStatus;
use test_kit::fake_openai::{FakeOpenAi, Reply, response_problems};

use crate::{engine, events_of, good_answer, input, output, path, run, workflow};

#[tokio::test]
async fn a_valid_answer_is_the_output_and_every_call_is_recorded() {
    let fake = FakeOpenAi::start(Reply::Json(good_answer())).await;
    let (engine, store) = engine(
        &workflow("[heuristic]", ""),
        &fake.url(),
        Some("sk-test-key-0001"),
    )
    .await;
    let r = run(&engine, &store, input()).await;
    assert_eq!(r.status, RunStatus::Completed);

    let out = output(&store, &r.id, "triage").await;
    let mut want = good_answer();
    want["status"] = json!("ok");
    want["provider"] = json!("openai");
    want["model"] = json!("gpt-4o-mini");
    want["reason"] = json!(null);
    assert_eq!(out, want);
    assert_eq!(
        output(&store, &r.id, "route").await["review"],
        "required",
        "priority high → review"
    );

    // The request is what the real API accepts, and what we meant to send.
    assert_eq!(fake.problems(), Vec::<String>::new());
    let req = &fake.requests()[0];
    assert_eq!(
        req.headers.get("authorization").map(String::as_str),
        Some("Bearer sk-test-key-0001")
    );
    let body = &req.body;
    assert_eq!(body["model"], "gpt-4o-mini");
    assert_eq!(body["max_completion_tokens"], 1024);
    assert_eq!(body["response_format"]["type"], "json_schema");
    assert_eq!(body["response_format"]["json_schema"]["name"], "triage");
    assert_eq!(body["response_format"]["json_schema"]["strict"], true);
    let schema = &body["response_format"]["json_schema"]["schema"];
    assert_eq!(schema["additionalProperties"], false);
    assert_eq!(schema["required"].as_array().unwrap().len(), 8);
    assert!(
        schema["properties"]["summary"].get("maxLength").is_none(),
        "maxLength is enforced locally, not sent"
    );
    assert_eq!(
        schema["properties"]["summary"]["description"],
        "At most 600 characters."
    );
    let messages = body["messages"].as_array().unwrap();
    assert_eq!(
        (messages[0]["role"].as_str(), messages[1]["role"].as_str()),
        (Some("system"), Some("user"))
    );
    assert!(
        messages[0]["content"]
            .as_str()
            .unwrap()
            .contains("- intent: one of support_request, sales_lead")
    );
    assert_eq!(
        messages[1]["content"],
        "Triage this inbound request.\nFrom: <data>Ada</data>\nMessage:\n<data>Our invoice is wrong, please call me urgently.</data>"
    );
    for served in fake.served() {
        assert_eq!(
            response_problems(&served),
            Vec::<String>::new(),
            "the fake answers in the real format"
        );
    }

    let requested = &events_of(&store, &r.id, "llm.requested").await[0];
    assert!(
        requested["prompt_hash"]
            .as_str()
            .unwrap()
            .starts_with("sha256:")
    );
    assert_eq!(requested["prompt_file"], "prompts/triage.md.j2");
    assert_eq!(
        requested["messages"], body["messages"],
        "the rendered messages are recorded as sent"
    );
    let responded = &events_of(&store, &r.id, "llm.responded").await[0];
    assert_eq!(
        responded["raw"]["id"], "chatcmpl-fake",
        "the raw response is kept"
    );
    assert_eq!(responded["parsed"], good_answer());
    assert_eq!(responded["response_model"], "gpt-4o-mini-fake-snapshot");
    assert_eq!(responded["request_id"], "req_fake_1");
    assert!(responded["latency_ms"].is_u64());
    expect![[r#"
        run.received
        llm.requested openai/gpt-4o-mini round=1 messages=2
        llm.responded openai round=1 valid=true finish=stop tokens=1200 cost_usd=0.00027
        step.completed triage
        step.completed route
        run.completed completed
    "#]]
    .assert_eq(&path(&store, &r.id).await);
}

#[tokio::test]
async fn invalid_json_gets_a_repair_turn_quoting_the_error() {
    let fake = FakeOpenAi::start(Reply::Json(good_answer())).await;
    fake.push(Reply::Text("{\"summary\": \"cut".into()));
    let (engine, store) = engine(
        &workflow("[heuristic]", ""),
        &fake.url(),
        Some("sk-test-key-0001"),
    )
    .await;
    let r = run(&engine, &store, input()).await;
    let out = output(&store, &r.id, "triage").await;
    assert_eq!(
        (out["status"].as_str(), out["provider"].as_str()),
        (Some("ok"), Some("openai"))
    );

    let second = &fake.requests()[1].body["messages"];
    let msgs = second.as_array().unwrap();
    assert_eq!(
        msgs.len(),
        4,
        "system, user, the rejected answer, the repair request"
    );
    assert_eq!(msgs[2]["role"], "assistant");
    assert_eq!(msgs[2]["content"], "{\"summary\": \"cut");
    let repair = msgs[3]["content"].as_str().unwrap();
    assert!(
        repair.contains("<data>the answer is not JSON: EOF while parsing a string"),
        "{repair}"
    );
    assert_eq!(fake.problems(), Vec::<String>::new());
    expect![[r#"
        run.received
        llm.requested openai/gpt-4o-mini round=1 messages=2
        llm.responded openai round=1 valid=false finish=stop tokens=1200 cost_usd=0.00027
        llm.invalid openai round=1 kind=validation repair=true errors=1
        llm.requested openai/gpt-4o-mini round=2 messages=4
        llm.responded openai round=2 valid=true finish=stop tokens=1200 cost_usd=0.00027
        step.completed triage
        step.completed route
        run.completed completed
    "#]]
    .assert_eq(&path(&store, &r.id).await);
}

#[tokio::test]
async fn schema_violations_exhaust_repairs_then_the_heuristic_answers_honestly() {
    let mut bad = good_answer();
    bad["priority"] = json!("lowest");
    bad["summary"] = json!("x".repeat(700));
    let fake = FakeOpenAi::start(Reply::Json(bad)).await;
    let (engine, store) = engine(
        &workflow("[heuristic]", ""),
        &fake.url(),
        Some("sk-test-key-0001"),
    )
    .await;
    let r = run(&engine, &store, input()).await;
    assert_eq!(r.status, RunStatus::Completed);
    assert_eq!(fake.hits(), 2, "one answer and one repair");

    let out = output(&store, &r.id, "triage").await;
    assert_eq!(out["status"], "ok");
    assert_eq!(out["provider"], "heuristic");
    assert_eq!(out["model"], "keywords-v1");
    assert_eq!(out["confidence"], 0.3, "the heuristic says it is unsure");
    assert_eq!(
        (out["intent"].as_str(), out["priority"].as_str()),
        (Some("billing"), Some("urgent"))
    );
    let reason = out["reason"].as_str().unwrap();
    assert!(
        reason.starts_with("fell back after: openai/gpt-4o-mini: 2 answers failed validation"),
        "{reason}"
    );
    assert!(
        reason.contains("/priority") && reason.contains("/summary"),
        "{reason}"
    );
    assert_eq!(output(&store, &r.id, "route").await["review"], "required");

    let invalid = events_of(&store, &r.id, "llm.invalid").await;
    let errors: Vec<String> = invalid[0]["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e.as_str().unwrap().to_string())
        .collect();
    assert_eq!(errors.len(), 2, "{errors:?}");
    assert!(
        errors[0].starts_with("/priority: \"lowest\" is not one of"),
        "{errors:?}"
    );
    assert!(errors[1].starts_with("/summary: "), "{errors:?}");
    expect![[r#"
        run.received
        llm.requested openai/gpt-4o-mini round=1 messages=2
        llm.responded openai round=1 valid=false finish=stop tokens=1200 cost_usd=0.00027
        llm.invalid openai round=1 kind=validation repair=true errors=2
        llm.requested openai/gpt-4o-mini round=2 messages=4
        llm.responded openai round=2 valid=false finish=stop tokens=1200 cost_usd=0.00027
        llm.invalid openai round=2 kind=validation repair=false errors=2
        llm.fallback openai/gpt-4o-mini -> heuristic (invalid)
        llm.requested heuristic/keywords-v1 round=1 messages=2
        llm.responded heuristic round=1 valid=true finish=stop tokens=null cost_usd=0.0
        step.completed triage
        step.completed route
        run.completed completed
    "#]]
    .assert_eq(&path(&store, &r.id).await);
}

#[tokio::test]
async fn a_refusal_moves_on_without_a_repair_turn() {
    let fake = FakeOpenAi::start(Reply::Refusal("I can't help with that.".into())).await;
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
    assert_eq!(
        out["reason"],
        "fell back after: openai/gpt-4o-mini: refusal: I can't help with that."
    );
    let responded = &events_of(&store, &r.id, "llm.responded").await[0];
    assert_eq!(responded["refusal"], "I can't help with that.");
    // Both answered calls are metered: tokens and cost as each reported
    // them, and the move to the heuristic.
    let metrics = engine.metrics_text();
    let lines: Vec<&str> = metrics
        .lines()
        .filter(|l| l.starts_with("countersign_llm_") && !l.starts_with('#'))
        .collect();
    expect![[r#"
        countersign_llm_calls_total{provider="openai",model="gpt-4o-mini"} 1
        countersign_llm_calls_total{provider="heuristic",model="keywords-v1"} 1
        countersign_llm_tokens_total{provider="openai",model="gpt-4o-mini",direction="prompt"} 1000
        countersign_llm_tokens_total{provider="openai",model="gpt-4o-mini",direction="completion"} 200
        countersign_llm_tokens_total{provider="heuristic",model="keywords-v1",direction="prompt"} 0
        countersign_llm_tokens_total{provider="heuristic",model="keywords-v1",direction="completion"} 0
        countersign_llm_cost_usd_total{provider="openai",model="gpt-4o-mini"} 0.00027
        countersign_llm_cost_usd_total{provider="heuristic",model="keywords-v1"} 0
        countersign_llm_unpriced_calls_total{provider="openai",model="gpt-4o-mini"} 0
        countersign_llm_unpriced_calls_total{provider="heuristic",model="keywords-v1"} 0
        countersign_llm_fallbacks_total 1
    "#]]
    .assert_eq(&(lines.join("\n") + "\n"));
    expect![[r#"
        run.received
        llm.requested openai/gpt-4o-mini round=1 messages=2
        llm.responded openai round=1 valid=false finish=stop tokens=1200 cost_usd=0.00027
        llm.invalid openai round=1 kind=refusal repair=false errors=1
        llm.fallback openai/gpt-4o-mini -> heuristic (invalid)
        llm.requested heuristic/keywords-v1 round=1 messages=2
        llm.responded heuristic round=1 valid=true finish=stop tokens=null cost_usd=0.0
        step.completed triage
        step.completed route
        run.completed completed
    "#]]
    .assert_eq(&path(&store, &r.id).await);
}

#[tokio::test]
async fn a_truncated_answer_is_never_used() {
    // Even when the cut-off text happens to parse, `length` means cut off.
    let fake = FakeOpenAi::start(Reply::Truncated(good_answer().to_string())).await;
    let (engine, store) = engine(
        &workflow("[heuristic]", ""),
        &fake.url(),
        Some("sk-test-key-0001"),
    )
    .await;
    let r = run(&engine, &store, input()).await;
    let out = output(&store, &r.id, "triage").await;
    assert_eq!(out["provider"], "heuristic");
    let invalid = &events_of(&store, &r.id, "llm.invalid").await[0];
    assert_eq!(invalid["kind"], "truncated");
    assert_eq!(
        invalid["errors"][0],
        "the answer hit the 1024-token limit (finish_reason: length) and is cut off"
    );
}

#[tokio::test]
async fn with_no_fallback_an_unusable_answer_goes_to_review_with_fields_null() {
    let fake = FakeOpenAi::start(Reply::ContentFilter).await;
    let (engine, store) = engine(&workflow("[]", ""), &fake.url(), Some("sk-test-key-0001")).await;
    let r = run(&engine, &store, input()).await;
    assert_eq!(r.status, RunStatus::Completed, "no crash");
    let out = output(&store, &r.id, "triage").await;
    expect![[r#"
        {"confidence":null,"crm_update_required":null,"customer_reply_draft":null,"human_review_required":null,"intent":null,"model":null,"priority":null,"provider":null,"reason":"no valid answer from any provider: openai/gpt-4o-mini: content_filter: the provider's content filter withheld the answer","recommended_next_step":null,"status":"needs_review","summary":null}"#]]
    .assert_eq(&test_kit::check::render(&out));
    assert_eq!(
        output(&store, &r.id, "route").await["review"],
        "required",
        "a rules step can route on it"
    );
    let fallback = &events_of(&store, &r.id, "llm.fallback").await[0];
    assert_eq!(
        (fallback["from"].as_str(), fallback["to"].as_str()),
        (Some("openai/gpt-4o-mini"), Some("review"))
    );
}
