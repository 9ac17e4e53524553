//! The API key goes into the `Authorization` header and nowhere else: not
//! into events, step outputs, run errors, or the stored workflow — even when
//! the server echoes it back.

use store::RunStatus;
use test_kit::fake_openai::{FakeOpenAi, Reply};
use test_kit::fixture;

use crate::{engine, good_answer, input, run, workflow};

const KEY: &str = "sk-proj-SECRET-7f3a9c1e55d2b8";

#[tokio::test]
async fn the_api_key_is_never_recorded() {
    let fake = FakeOpenAi::start(Reply::Json(good_answer())).await;
    // 1: the server repeats the key in an error; 2: a normal answer.
    fake.push(Reply::EchoKey);
    let (engine, store) = engine(
        &workflow("[{ provider: openai, model: gpt-4o }, heuristic]", ""),
        &fake.url(),
        Some(KEY),
    )
    .await;
    let r = run(&engine, &store, input()).await;
    assert_eq!(r.status, RunStatus::Completed);
    assert_eq!(
        fake.hits(),
        2,
        "401 is permanent for gpt-4o-mini; the gpt-4o fallback is asked"
    );
    for seen in fake.requests() {
        assert_eq!(
            seen.headers.get("authorization").map(String::as_str),
            Some(&*format!("Bearer {KEY}"))
        );
    }

    let mut recorded = String::new();
    for e in fixture::events(&store, &r.id).await {
        recorded.push_str(&e.data);
    }
    let d = store.run_detail(&r.id).await.unwrap().unwrap();
    for s in &d.steps {
        recorded.push_str(s.output.as_deref().unwrap_or_default());
        recorded.push_str(s.error.as_deref().unwrap_or_default());
    }
    recorded.push_str(r.error.as_deref().unwrap_or_default());
    let wf = store
        .workflow_version("triage-test", 1)
        .await
        .unwrap()
        .unwrap();
    recorded.push_str(&wf.source);
    assert!(
        recorded.contains("Incorrect API key provided: [redacted]"),
        "the echo was recorded, scrubbed"
    );
    assert!(!recorded.contains(KEY), "the key leaked into the record");
    assert!(
        !recorded.contains("SECRET-7f3a"),
        "part of the key leaked into the record"
    );
}
