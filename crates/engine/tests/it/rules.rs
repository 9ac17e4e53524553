//! `rules`: finishing a run early, raising review, and `when:` skipping.

use expect_test::expect;
use serde_json::json;
use test_kit::{FakeHttp, check_env};

/// Triage by rules, then a notification that only runs when review is required.
const TRIAGE: &str = r#"
name: triage
input:
  schema:
    type: object
    required: [intent, priority]
    properties:
      intent: { type: string }
      priority: { enum: [low, medium, high, urgent] }
steps:
  - id: check
    rules:
      - when: input.intent == "spam"
        then: { finish: discarded }
      - when: input.priority in ["high", "urgent"]
        then: { review: required }
  - id: notify
    when: check.review == "required"
    http:
      url: "${env:HOOK}/notify"
      body: { intent: "{{ input.intent }}", priority: "{{ input.priority }}" }
"#;

#[tokio::test]
async fn spam_is_discarded_and_later_steps_never_run() {
    let fake = FakeHttp::start().await;
    let url = fake.url();
    let t = check_env(
        TRIAGE,
        json!({ "intent": "spam", "priority": "high" }),
        &[("HOOK", &url)],
    )
    .await;
    expect![[r#"
        status: completed, outcome: discarded
        run.received test {"idempotency_key":null,"input":{"intent":"spam","priority":"high"},"version":1,"workflow":"triage"}
        step.completed system {"attempt":1,"output":{"fail":null,"finish":"discarded","matched":[0],"review":null},"step":"check"}
        run.completed system {"finished_by":"check","outcome":"discarded"}
    "#]]
    .assert_eq(&t);
    assert_eq!(fake.hits(), 0, "the notify step must never call out");
    assert!(
        !t.contains("notify"),
        "no event mentions the later step:\n{t}"
    );
}

#[tokio::test]
async fn high_priority_requires_review_and_runs_the_guarded_step() {
    let fake = FakeHttp::start().await;
    let url = fake.url();
    let t = check_env(
        TRIAGE,
        json!({ "intent": "sales_lead", "priority": "urgent" }),
        &[("HOOK", &url)],
    )
    .await;
    expect![[r#"
        status: completed, outcome: completed
        run.received test {"idempotency_key":null,"input":{"intent":"sales_lead","priority":"urgent"},"version":1,"workflow":"triage"}
        step.completed system {"attempt":1,"output":{"fail":null,"finish":null,"matched":[1],"review":"required","review_rule":{"index":1,"when":"input.priority in [\"high\", \"urgent\"]"}},"step":"check"}
        effect.started system {"key":"<run>:notify","request_digest":"<hash>","step":"notify"}
        effect.completed system {"external_id":"fake-1","key":"<run>:notify","step":"notify"}
        step.completed system {"attempt":1,"output":{"body":{"key":"<run>:notify","n":1,"ok":true},"status":200},"step":"notify"}
        run.completed system {"outcome":"completed"}
    "#]]
    .assert_eq(&t);
    assert!(
        t.contains(r#""review":"required""#),
        "the rules output carries the review flag:\n{t}"
    );
    assert_eq!(fake.effects(), 1, "the guarded step ran once");
    assert_eq!(
        fake.requests()[0].body,
        json!({ "intent": "sales_lead", "priority": "urgent" })
    );
}

#[tokio::test]
async fn false_when_skips_the_step() {
    let fake = FakeHttp::start().await;
    let url = fake.url();
    let t = check_env(
        TRIAGE,
        json!({ "intent": "billing", "priority": "low" }),
        &[("HOOK", &url)],
    )
    .await;
    expect![[r#"
        status: completed, outcome: completed
        run.received test {"idempotency_key":null,"input":{"intent":"billing","priority":"low"},"version":1,"workflow":"triage"}
        step.completed system {"attempt":1,"output":{"fail":null,"finish":null,"matched":[],"review":null},"step":"check"}
        step.skipped system {"reason":"`when: check.review == \"required\"` is false","step":"notify"}
        run.completed system {"outcome":"completed"}
    "#]]
    .assert_eq(&t);
    assert!(t.contains("step.skipped"), "{t}");
    assert_eq!(fake.hits(), 0, "a skipped step performs nothing");
}

#[tokio::test]
async fn a_fail_rule_fails_the_run_with_its_message() {
    let wf = r#"
name: gate
steps:
  - id: gate
    rules:
      - when: input.amount > 1000
        then: { fail: "amount over the limit" }
"#;
    let t = test_kit::check(wf, json!({ "amount": 5000 })).await;
    expect![[r#"
        status: failed, error: rule failed the run: amount over the limit
        run.received test {"idempotency_key":null,"input":{"amount":5000},"version":1,"workflow":"gate"}
        step.failed system {"attempt":1,"class":"permanent","error":"rule failed the run: amount over the limit","step":"gate"}
        run.failed system {"error":"rule failed the run: amount over the limit","position":0,"step":"gate"}
    "#]]
    .assert_eq(&t);
    assert!(
        t.starts_with("status: failed, error: rule failed the run: amount over the limit"),
        "{t}"
    );
}
