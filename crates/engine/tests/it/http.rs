//! The `http` step against the fake receiver: output mapping, idempotency
//! keys, transient and permanent failures, operator retry and cancel.

use std::time::Duration;

use domain::event::kind;
use expect_test::expect;
use serde_json::json;
use store::{EffectStatus, OpResult, RunStatus, WaitReason};
use test_kit::fixture::{
    TIMEOUT, assert_all_chains, engine_with, events_of, wait_settled, wait_status,
};
use test_kit::{FakeHttp, transcript};

use crate::{attempts, detail, output};

/// One call with fast retries, then a step that reads the mapped output.
fn hook(fake: &FakeHttp) -> String {
    r#"
name: hook
steps:
  - id: call
    retry: { max_attempts: 4, initial: 10ms, max: 20ms, jitter: none }
    http:
      url: "$URL/hook"
      body: { name: "{{ input.name }}" }
      output:
        accepted: "{{ response.body.ok }}"
        n: "{{ response.body.n }}"
        key: "{{ response.body.key }}"
        status: "{{ response.status }}"
  - id: after
    rules:
      - when: call.accepted and call.n == 1
        then: { review: skip }
"#
    .replace("$URL", &fake.url())
}

#[tokio::test]
async fn success_maps_the_response_and_sends_the_idempotency_key() {
    let fake = FakeHttp::start().await;
    let (engine, store) = engine_with(&hook(&fake)).await;
    let s = engine
        .submit("hook", json!({ "name": "Ada" }), None, "test")
        .await
        .unwrap();
    let run = wait_settled(&store, &s.run_id).await;
    assert_eq!(
        (run.status, run.outcome.as_deref()),
        (RunStatus::Completed, Some("completed"))
    );

    let key = format!("{}:call", s.run_id);
    assert_eq!(
        fake.keys(),
        std::slice::from_ref(&key),
        "Idempotency-Key is run_id:step_id"
    );
    let req = &fake.requests()[0];
    assert_eq!((req.method.as_str(), req.path.as_str()), ("POST", "/hook"));
    assert_eq!(req.headers.get("idempotency-key"), Some(&key));
    assert_eq!(req.body, json!({ "name": "Ada" }));

    assert_eq!(
        output(&store, &s.run_id, "call").await,
        json!({ "accepted": true, "n": 1, "key": key, "status": 200 })
    );
    assert_eq!(
        output(&store, &s.run_id, "after").await["matched"],
        json!([0]),
        "the next step sees the mapped output"
    );
    let effects = detail(&store, &s.run_id).await.effects;
    assert_eq!(effects.len(), 1);
    assert_eq!(
        (
            effects[0].key.as_str(),
            effects[0].status,
            effects[0].external_id.as_deref()
        ),
        (key.as_str(), EffectStatus::Completed, Some("fake-1")),
        "the journal keeps the receiver's request id"
    );
    expect![[r#"
        status: completed, outcome: completed
        run.received test {"idempotency_key":null,"input":{"name":"Ada"},"version":1,"workflow":"hook"}
        effect.started system {"key":"<run>:call","request_digest":"<hash>","step":"call"}
        effect.completed system {"external_id":"fake-1","key":"<run>:call","step":"call"}
        step.completed system {"attempt":1,"output":{"accepted":true,"key":"<run>:call","n":1,"status":200},"step":"call"}
        step.completed system {"attempt":1,"output":{"fail":null,"finish":null,"matched":[0],"review":"skip","review_rule":{"index":0,"when":"call.accepted and call.n == 1"}},"step":"after"}
        run.completed system {"outcome":"completed"}
    "#]]
    .assert_eq(&transcript(&store, &s.run_id).await);
    assert_all_chains(&store).await;
}

#[tokio::test]
async fn transient_failures_are_retried_until_success() {
    let fake = FakeHttp::start().await;
    fake.fail_next(2, 503, None);
    let (engine, store) = engine_with(&hook(&fake)).await;
    let s = engine
        .submit("hook", json!({ "name": "Ada" }), None, "test")
        .await
        .unwrap();
    let run = wait_settled(&store, &s.run_id).await;
    assert_eq!(run.status, RunStatus::Completed, "{run:#?}");

    assert_eq!(
        attempts(&store, &s.run_id).await,
        [
            ("call".to_string(), 1, "failed"),
            ("call".to_string(), 2, "failed"),
            ("call".to_string(), 3, "completed"),
            ("after".to_string(), 1, "completed"),
        ]
    );
    let retries = events_of(&store, &s.run_id, kind::STEP_RETRY_SCHEDULED).await;
    assert_eq!(retries.len(), 2, "{retries:#?}");
    assert_eq!(retries[0]["next_attempt"], 2);
    assert_eq!(retries[1]["next_attempt"], 3);
    let failures = events_of(&store, &s.run_id, kind::STEP_FAILED).await;
    assert!(
        failures
            .iter()
            .all(|f| f["class"] == "transient" && f["error"].as_str().unwrap().contains("503")),
        "{failures:#?}"
    );
    let key = format!("{}:call", s.run_id);
    assert_eq!((fake.hits(), fake.count(&key), fake.effects()), (3, 3, 1));
    assert_eq!(output(&store, &s.run_id, "call").await["n"], 1);
    expect![[r#"
        status: completed, outcome: completed
        run.received test {"idempotency_key":null,"input":{"name":"Ada"},"version":1,"workflow":"hook"}
        effect.started system {"key":"<run>:call","request_digest":"<hash>","step":"call"}
        step.failed system {"attempt":1,"class":"transient","error":"POST http://127.0.0.1:<port>/hook answered 503 Service Unavailable: {\"error\":\"fake transient failure (503)\",\"ok\":false}","step":"call"}
        step.retry_scheduled system {"delay_ms":"<ms>","next_attempt":2,"retry_after_ms":null,"step":"call"}
        run.resumed system {"from_status":"waiting","step":"call","wait":"retry"}
        effect.reconciled system {"action":"perform again under the same idempotency key","key":"<run>:call","result":"unknown","step":"call"}
        effect.started system {"key":"<run>:call","request_digest":"<hash>","step":"call"}
        step.failed system {"attempt":2,"class":"transient","error":"POST http://127.0.0.1:<port>/hook answered 503 Service Unavailable: {\"error\":\"fake transient failure (503)\",\"ok\":false}","step":"call"}
        step.retry_scheduled system {"delay_ms":"<ms>","next_attempt":3,"retry_after_ms":null,"step":"call"}
        run.resumed system {"from_status":"waiting","step":"call","wait":"retry"}
        effect.reconciled system {"action":"perform again under the same idempotency key","key":"<run>:call","result":"unknown","step":"call"}
        effect.started system {"key":"<run>:call","request_digest":"<hash>","step":"call"}
        effect.completed system {"external_id":"fake-1","key":"<run>:call","step":"call"}
        step.completed system {"attempt":3,"output":{"accepted":true,"key":"<run>:call","n":1,"status":200},"step":"call"}
        step.completed system {"attempt":1,"output":{"fail":null,"finish":null,"matched":[0],"review":"skip","review_rule":{"index":0,"when":"call.accepted and call.n == 1"}},"step":"after"}
        run.completed system {"outcome":"completed"}
    "#]]
    .assert_eq(&transcript(&store, &s.run_id).await);
    assert_all_chains(&store).await;
}

#[tokio::test]
async fn retry_after_is_honoured() {
    let fake = FakeHttp::start().await;
    fake.fail_next(1, 429, Some(1));
    let (engine, store) = engine_with(&hook(&fake)).await;
    let s = engine
        .submit("hook", json!({ "name": "Ada" }), None, "test")
        .await
        .unwrap();
    let run = wait_settled(&store, &s.run_id).await;
    assert_eq!(run.status, RunStatus::Completed, "{run:#?}");
    let retries = events_of(&store, &s.run_id, kind::STEP_RETRY_SCHEDULED).await;
    assert_eq!(retries.len(), 1, "{retries:#?}");
    assert_eq!(retries[0]["retry_after_ms"], 1000);
    let delay = retries[0]["delay_ms"]
        .as_u64()
        .expect("delay_ms is a number");
    assert!(
        delay >= 1000,
        "Retry-After: 1 beats the 10ms back-off; scheduled {delay} ms"
    );
    assert_eq!(fake.effects(), 1);
}

#[tokio::test]
async fn retries_give_up_after_max_attempts() {
    let fake = FakeHttp::start().await;
    fake.fail_next(10, 502, None);
    let (engine, store) = engine_with(&hook(&fake)).await;
    let s = engine
        .submit("hook", json!({ "name": "Ada" }), None, "test")
        .await
        .unwrap();
    let run = wait_settled(&store, &s.run_id).await;
    assert_eq!(run.status, RunStatus::Failed);
    let error = run.error.unwrap_or_default();
    assert!(
        error.contains("502") && error.contains("gave up after 4 attempts"),
        "{error}"
    );
    assert_eq!((fake.hits(), fake.effects()), (4, 0));
}

#[tokio::test]
async fn permanent_refusal_fails_the_run_then_operator_retry_completes_it() {
    let fake = FakeHttp::start().await;
    fake.set_status(400);
    let (engine, store) = engine_with(&hook(&fake)).await;
    let s = engine
        .submit("hook", json!({ "name": "Ada" }), None, "test")
        .await
        .unwrap();
    let run = wait_settled(&store, &s.run_id).await;
    assert_eq!(run.status, RunStatus::Failed);
    let error = run.error.clone().unwrap_or_default();
    assert!(
        error.contains("400") && error.contains(&FakeHttp::refusal_message(400)),
        "the vendor's message reaches the run: {error}"
    );
    assert_eq!(fake.hits(), 1, "a permanent error is not retried");
    assert_eq!(
        detail(&store, &s.run_id).await.effects[0].status,
        EffectStatus::Failed
    );
    assert!(
        matches!(
            engine.cancel("no-such-run", "operator").await.unwrap(),
            OpResult::NotFound
        ),
        "commands on unknown runs say so"
    );

    // The operator fixes the receiver and retries from the failed step.
    fake.set_status(200);
    let r = engine.retry(&s.run_id, "user:ops").await.unwrap();
    let OpResult::Done(queued) = r else {
        panic!("retry refused: {r:?}")
    };
    assert_eq!(
        (queued.status, queued.error.as_deref()),
        (RunStatus::Queued, None)
    );
    let run = wait_status(&store, &s.run_id, |r| r.status.is_terminal(), TIMEOUT).await;
    assert_eq!(run.status, RunStatus::Completed, "{run:#?}");
    assert_eq!(fake.effects(), 1);
    assert_eq!(
        fake.count(&format!("{}:call", s.run_id)),
        2,
        "the retry reuses the key"
    );
    let retried = events_of(&store, &s.run_id, kind::RUN_RETRIED).await;
    assert_eq!(retried.len(), 1);
    assert!(
        retried[0]["previous_error"]
            .as_str()
            .unwrap()
            .contains("400")
    );
    let actors: Vec<String> = test_kit::fixture::events(&store, &s.run_id)
        .await
        .into_iter()
        .filter(|e| e.kind == kind::RUN_RETRIED)
        .map(|e| e.actor)
        .collect();
    assert_eq!(actors, ["user:ops"], "the operator is named");
    assert!(
        matches!(
            engine.retry(&s.run_id, "user:ops").await.unwrap(),
            OpResult::Refused(RunStatus::Completed)
        ),
        "a completed run cannot be retried"
    );
    expect![[r#"
        status: completed, outcome: completed
        run.received test {"idempotency_key":null,"input":{"name":"Ada"},"version":1,"workflow":"hook"}
        effect.started system {"key":"<run>:call","request_digest":"<hash>","step":"call"}
        effect.failed system {"external_id":null,"key":"<run>:call","step":"call"}
        step.failed system {"attempt":1,"class":"permanent","error":"POST http://127.0.0.1:<port>/hook answered 400 Bad Request: {\"error\":\"fake refused the request with status 400\",\"ok\":false}","step":"call"}
        run.failed system {"error":"POST http://127.0.0.1:<port>/hook answered 400 Bad Request: {\"error\":\"fake refused the request with status 400\",\"ok\":false}","position":0,"step":"call"}
        run.retried user:ops {"from_step":0,"previous_error":"POST http://127.0.0.1:<port>/hook answered 400 Bad Request: {\"error\":\"fake refused the request with status 400\",\"ok\":false}"}
        run.resumed system {"from_status":"queued","step":"call","wait":null}
        effect.started system {"key":"<run>:call","request_digest":"<hash>","step":"call"}
        effect.completed system {"external_id":"fake-1","key":"<run>:call","step":"call"}
        step.completed system {"attempt":1,"output":{"accepted":true,"key":"<run>:call","n":1,"status":200},"step":"call"}
        step.completed system {"attempt":1,"output":{"fail":null,"finish":null,"matched":[0],"review":"skip","review_rule":{"index":0,"when":"call.accepted and call.n == 1"}},"step":"after"}
        run.completed system {"outcome":"completed"}
    "#]]
    .assert_eq(&transcript(&store, &s.run_id).await);
    assert_all_chains(&store).await;
}

#[tokio::test]
async fn cancelling_a_waiting_run_stops_it_before_any_effect() {
    let fake = FakeHttp::start().await;
    let wf = r#"
name: later
steps:
  - id: pause
    wait: 1s
  - id: call
    http:
      url: "$URL/later"
      body: { n: 1 }
"#
    .replace("$URL", &fake.url());
    let (engine, store) = engine_with(&wf).await;
    let a = engine
        .submit("later", json!({}), None, "test")
        .await
        .unwrap();
    let waiting = wait_status(
        &store,
        &a.run_id,
        |r| r.status == RunStatus::Waiting,
        TIMEOUT,
    )
    .await;
    assert_eq!(waiting.wait, Some(WaitReason::Timer));

    let r = engine.cancel(&a.run_id, "user:ops").await.unwrap();
    let OpResult::Done(cancelled) = r else {
        panic!("cancel refused: {r:?}")
    };
    assert_eq!(cancelled.status, RunStatus::Cancelled);
    assert_eq!(
        engine.cancel(&a.run_id, "user:ops").await.unwrap(),
        OpResult::Refused(RunStatus::Cancelled)
    );

    // A run started after the cancel, with the same timer, is due later than
    // the cancelled one would have been: once it completed, the cancelled
    // run's timer has long passed.
    let b = engine
        .submit("later", json!({}), None, "test")
        .await
        .unwrap();
    let done = wait_status(&store, &b.run_id, |r| r.status.is_terminal(), TIMEOUT).await;
    assert_eq!(done.status, RunStatus::Completed);

    assert_eq!(
        fake.count(&format!("{}:call", a.run_id)),
        0,
        "the cancelled run never called out"
    );
    assert_eq!(fake.keys(), [format!("{}:call", b.run_id)]);
    let run = store.run(&a.run_id).await.unwrap().unwrap();
    assert_eq!(run.status, RunStatus::Cancelled);
    assert_eq!(
        attempts(&store, &a.run_id).await,
        [("pause".to_string(), 1, "completed")],
        "nothing ran after the cancel"
    );
    let last = test_kit::fixture::events(&store, &a.run_id)
        .await
        .pop()
        .unwrap();
    assert_eq!(
        (last.kind.as_str(), last.actor.as_str()),
        (kind::RUN_CANCELLED, "user:ops")
    );
    assert_all_chains(&store).await;
    engine.shutdown(Duration::from_secs(1)).await;
}
