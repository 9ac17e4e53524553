//! The audit log: every run's events form an unbroken hash chain.

use domain::event::kind;
use serde_json::json;
use store::RunStatus;
use test_kit::FakeHttp;
use test_kit::fixture::{TIMEOUT, assert_all_chains, engine_with, events, wait_status};

#[tokio::test]
async fn every_run_has_a_verifying_hash_chain() {
    let fake = FakeHttp::start().await;
    fake.fail_next(1, 503, None);
    let wf = r#"
name: mixed
input:
  normalize: { email: [trim, lowercase] }
steps:
  - id: check
    rules:
      - when: input.kind == "spam"
        then: { finish: discarded }
  - id: call
    when: input.kind != "skip"
    retry: { initial: 10ms, max: 10ms, jitter: none }
    http:
      url: "$URL/audit"
      body: { email: "{{ input.email }}" }
  - id: nap
    wait: 20ms
"#
    .replace("$URL", &fake.url());
    let (engine, store) = engine_with(&wf).await;
    let mut ids = Vec::new();
    for k in ["spam", "skip", "call", "call"] {
        let s = engine
            .submit(
                "mixed",
                json!({ "kind": k, "email": " A@B.C " }),
                None,
                "token:t1",
            )
            .await
            .unwrap();
        ids.push(s.run_id);
    }
    for id in &ids {
        let r = wait_status(&store, id, |r| r.status.is_terminal(), TIMEOUT).await;
        assert_eq!(r.status, RunStatus::Completed, "{r:#?}");
    }
    assert_eq!(assert_all_chains(&store).await, ids.len());

    for id in &ids {
        let log = events(&store, id).await;
        let seqs: Vec<i64> = log.iter().map(|e| e.seq).collect();
        assert_eq!(
            seqs,
            (1..=log.len() as i64).collect::<Vec<_>>(),
            "seq has no gaps"
        );
        assert_eq!(log[0].kind, kind::RUN_RECEIVED);
        assert_eq!(log[0].actor, "token:t1", "intake names the caller");
        assert_eq!(log[1].kind, kind::INPUT_NORMALIZED);
        assert_eq!(log.last().unwrap().kind, kind::RUN_COMPLETED);
        assert!(log.windows(2).all(|w| w[1].prev_hash == w[0].hash));
    }
}
