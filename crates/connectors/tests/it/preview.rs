//! What happens after approval, and covering reviews: the task page's
//! previews of the later CRM, Slack and email actions follow the values a
//! reviewer proposes; a review that `covers:` an action under `control:
//! review` approves it as previewed, so one request makes one task —
//! unless the review was skipped by a rule or the action changed since.

use std::sync::Arc;

use domain::event::kind;
use domain::review::Decision;
use engine::{Catalog, Engine, StepPreview};
use serde_json::{Map, Value as Json, json};
use store::{ReviewFilter, RunStatus, Store};
use store_sqlite::SqliteStore;
use test_kit::fixture::{self, events_of};

use crate::*;

use test_kit::emit::Emit;

/// The reference workflow's shape: triage, rules, one review covering the
/// CRM upsert, the Slack notice and the customer email (all in the outbox).
const FLOW: &str = r##"
name: inbound
steps:
  - id: triage
    emit:
      output:
        summary: { type: string }
        intent: { type: string }
        priority: { enum: [low, medium, high, urgent] }
        customer_reply_draft: { type: string }
      values:
        summary: "{{ input.text }}"
        intent: "{{ input.intent }}"
        priority: high
        customer_reply_draft: "Hello {{ input.name }}, thanks for writing."
  - id: screen
    rules:
      - when: input.intent == "other"
        then: { review: skip }
      - when: input.intent != "other"
        then: { review: required }
      - when: input.intent == "legal"
        why: Legal matter
        then: { raise: { notify: review, reply: review } }
  - id: review
    review:
      fields: [summary, intent, priority, customer_reply_draft]
      queue: operations
      covers: $COVERS
$BETWEEN
  - id: crm
    when: approved.intent != "support_request"
    crm:
      monday:
        board: "4242"
        upsert_by: { column: email, value: "{{ input.email }}" }
        item_name: "{{ input.name }} — Acme"
        columns:
          email:    { email: "{{ input.email }}" }
          notes:    { long_text: "{{ approved.summary }}" }
          category: { status: "{{ approved.intent }}", map: { support_request: Support, sales_lead: Sales, other: Other, legal: Legal } }
  - id: notify
    slack:
      channel: "#ops-intake"
      text: "New {{ approved.priority }} {{ approved.intent }} from {{ input.name }}: {{ approved.summary }}"
  - id: reply
    control: review
    email:
      review_queue: operations
      to: "{{ input.email }}"
      subject: "Re: your request$SUBJECT"
      body: "{{ approved.customer_reply_draft }}"
"##;

fn flow(covers: &str, between: &str, subject: &str) -> String {
    FLOW.replace("$COVERS", covers)
        .replace("$BETWEEN", between)
        .replace("$SUBJECT", subject)
}

fn kinds() -> engine::StepKinds {
    let mut k = crate::kinds(connectors::Config::default());
    k.register(Arc::new(Emit));
    k
}

async fn start(yaml: &str) -> (Engine, Arc<dyn Store>) {
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open_temp().expect("temp store"));
    let catalog = Catalog::new(kinds(), fixture::env(&[]), store.clone());
    if let Err(e) = catalog.load_source(yaml, "test.yaml").await {
        panic!("the test workflow does not load:\n{e}");
    }
    (
        Engine::start(store.clone(), Arc::new(catalog), engine_config()),
        store,
    )
}

fn input(intent: &str) -> Json {
    json!({ "name": "Ana", "email": "ana@example.com", "text": "Printer broken", "intent": intent })
}

/// Every review task of a run.
async fn tasks(engine: &Engine, run_id: &str) -> Vec<store::Review> {
    engine
        .reviews(&ReviewFilter {
            limit: 100,
            ..ReviewFilter::default()
        })
        .await
        .expect("list tasks")
        .into_iter()
        .filter(|t| t.run_id == run_id)
        .collect()
}

fn values(v: Json) -> Map<String, Json> {
    v.as_object().cloned().unwrap_or_default()
}

fn approve(v: Json) -> Decision {
    Decision::Approve {
        values: values(v),
        comment: None,
    }
}

/// `who` approves the task `id` with the edits `v` (unwraps: these
/// tests' approvals are always allowed).
async fn approve_as(engine: &Engine, id: &str, v: Json, who: &str) {
    engine
        .decide_review(id, approve(v), &test_kit::fixture::person(who))
        .await
        .expect("approve");
}

/// `step: title | will not run | error`, then `label: text` per value.
fn show(previews: &[StepPreview]) -> String {
    let mut out = String::new();
    for p in previews {
        let covered = match (&p.raised, p.covered) {
            (Some(why), _) => format!(" (raised: {why})"),
            (None, true) => " (covered)".to_string(),
            (None, false) => String::new(),
        };
        match (&p.skipped, &p.action) {
            (Some(why), _) => out.push_str(&format!("{}{covered}: {why}\n", p.step)),
            (None, Err(e)) => out.push_str(&format!("{}{covered}: error: {e}\n", p.step)),
            (None, Ok(a)) => {
                out.push_str(&format!("{}{covered}: {}\n", p.step, a.title));
                for v in &a.values {
                    out.push_str(&format!("  {}: {}\n", v.label, v.text));
                }
            }
        }
    }
    out
}

#[tokio::test]
async fn previews_follow_the_proposed_values_and_conditions() {
    let (engine, store) = start(&flow("[crm, notify, reply]", "", "")).await;
    let r = run(&engine, &store, input("support_request")).await;
    assert_eq!(r.status, RunStatus::Waiting, "{r:#?}");
    let task = tasks(&engine, &r.id).await.remove(0);

    let drafted = engine
        .preview_actions(&task, &Map::new())
        .await
        .expect("preview");
    expect_test::expect![[r#"
        crm (covered): will not run: `when: approved.intent != "support_request"` is false
        notify (covered): Slack message to #ops-intake
          Channel: #ops-intake
          Text: New high support_request from Ana: Printer broken
        reply (covered): Email to ana@example.com — Re: your request
          To: ana@example.com
          Subject: Re: your request
          Body: Hello Ana, thanks for writing.
    "#]]
    .assert_eq(&show(&drafted));

    let edited = engine
        .preview_actions_of(
            &task.id,
            &values(json!({ "intent": "sales_lead", "summary": "Wants 50 seats", "customer_reply_draft": "Hi Ana, sales will call." })),
        )
        .await
        .expect("preview");
    expect_test::expect![[r#"
        crm (covered): Update Monday item 'Ana — Acme'
          Item name: Ana — Acme
          Email: ana@example.com
          Notes: Wants 50 seats
          Category: Sales
          Board: 4242
        notify (covered): Slack message to #ops-intake
          Channel: #ops-intake
          Text: New high sales_lead from Ana: Wants 50 seats
        reply (covered): Email to ana@example.com — Re: your request
          To: ana@example.com
          Subject: Re: your request
          Body: Hi Ana, sales will call.
    "#]]
    .assert_eq(&show(&edited));
    let crm = edited[0].action.as_ref().expect("rendered");
    assert_eq!(
        crm.get("category").map(|v| &v.value),
        Some(&json!({ "label": "Sales" })),
        "the value sent after the label map"
    );
    assert_ne!(
        drafted[2].action.as_ref().map(|a| &a.digest).ok(),
        edited[2].action.as_ref().map(|a| &a.digest).ok(),
        "an edited email has another digest"
    );

    // A value the CRM mapping cannot write is reported on its step only.
    let bad = engine
        .preview_actions(&task, &values(json!({ "intent": "complaint" })))
        .await
        .expect("preview");
    let text = show(&bad);
    assert!(
        text.contains("crm (covered): error: ") && text.contains("has no entry in `map`"),
        "{text}"
    );
    assert!(text.contains("Text: New high complaint from Ana"), "{text}");
    assert!(matches!(
        engine.preview_actions_of("no-such-task", &Map::new()).await,
        Err(engine::PreviewError::NotFound)
    ));
}

#[tokio::test]
async fn a_covered_action_does_not_ask_again_and_the_audit_log_says_why() {
    let (engine, store) = start(&flow("[crm, notify, reply]", "", "")).await;
    let r = run(&engine, &store, input("support_request")).await;
    assert_eq!(r.status, RunStatus::Waiting, "{r:#?}");
    let task = tasks(&engine, &r.id).await.remove(0);
    let edit = json!({ "customer_reply_draft": "Hi Ana, fixed." });
    let shown = engine
        .preview_actions(&task, &values(edit.clone()))
        .await
        .expect("preview");
    let reply_digest = shown[2].action.as_ref().expect("rendered").digest.clone();
    approve_as(&engine, &task.id, edit, "user:ann").await;
    let done = fixture::wait_settled(&store, &r.id).await;
    assert_eq!(done.status, RunStatus::Completed, "{done:#?}");
    assert_eq!(
        tasks(&engine, &r.id).await.len(),
        1,
        "one request, one review task"
    );
    let decided = events_of(&store, &r.id, kind::REVIEW_DECIDED).await;
    assert_eq!(
        decided[0]["covers"],
        json!({ "crm": null, "notify": shown[1].action.as_ref().unwrap().digest, "reply": reply_digest }),
        "{decided:?}"
    );
    let covered = events_of(&store, &r.id, kind::REVIEW_COVERED).await;
    assert_eq!(covered.len(), 1, "{covered:?}");
    assert_eq!(covered[0]["step"], json!("reply"));
    assert_eq!(covered[0]["digest"], json!(reply_digest));
    assert_eq!(
        covered[0]["why"],
        json!("approved with the review `review` as previewed")
    );
    let out = outputs(&store, &r.id).await;
    assert_eq!(out["reply"]["outbox"], json!(true), "{out:?}");
    assert_eq!(out["reply"]["payload"]["body"], json!("Hi Ana, fixed."));
}

#[tokio::test]
async fn a_covering_review_skipped_by_a_rule_leaves_the_email_its_own_task() {
    let (engine, store) = start(&flow("[crm, notify, reply]", "", "")).await;
    let r = run(&engine, &store, input("other")).await;
    assert_eq!(r.status, RunStatus::Waiting, "{r:#?}");
    let list = tasks(&engine, &r.id).await;
    assert_eq!(list.len(), 1, "only the email asks");
    assert_eq!(list[0].step_id, "reply");
    assert!(
        list[0].deadline_at_ms.is_some(),
        "an action's own task has a deadline"
    );
    let requested = events_of(&store, &r.id, kind::REVIEW_REQUESTED).await;
    assert_eq!(
        requested[0]["title"],
        json!("Email to ana@example.com — Re: your request")
    );
    assert_eq!(requested[0]["priority"], json!("high"));
    assert_eq!(
        requested[0]["cover"]["why"],
        json!("the covering review `review` was skipped by policy, not decided by a person"),
        "{requested:?}"
    );
    assert!(
        events_of(&store, &r.id, kind::REVIEW_COVERED)
            .await
            .is_empty()
    );
    // The email's own task page shows the email with the reviewer's edits.
    let own = engine
        .preview_actions(&list[0], &values(json!({ "body": "Hi Ana, edited." })))
        .await
        .expect("preview");
    expect_test::expect![[r#"
        reply: Email to ana@example.com — Re: your request
          To: ana@example.com
          Subject: Re: your request
          Body: Hi Ana, edited.
    "#]]
    .assert_eq(&show(&own));
}

#[tokio::test]
async fn an_action_that_changed_after_the_approval_asks_again() {
    // A step between the review and the email changes the subject: what
    // the reviewer saw is not what would be sent.
    let between = r#"  - id: stamp
    emit:
      values:
        tag: " [case 7]""#;
    let (engine, store) = start(&flow("[reply]", between, "{{ stamp.tag }}")).await;
    let r = run(&engine, &store, input("support_request")).await;
    let task = tasks(&engine, &r.id).await.remove(0);
    approve_as(&engine, &task.id, json!({}), "user:ann").await;
    let r = fixture::wait_settled(&store, &r.id).await;
    assert_eq!(r.status, RunStatus::Waiting, "{r:#?}");
    let mut list = tasks(&engine, &r.id).await;
    list.sort_by_key(|t| t.step_index);
    assert_eq!(
        list.iter().map(|t| t.step_id.as_str()).collect::<Vec<_>>(),
        ["review", "reply"]
    );
    let requested = events_of(&store, &r.id, kind::REVIEW_REQUESTED).await;
    let why = requested[1]["cover"]["why"].as_str().unwrap_or_default();
    assert!(
        why.starts_with("the action differs from the one approved with the review `review`"),
        "{requested:?}"
    );
}

#[tokio::test]
async fn an_action_not_covered_keeps_its_own_task() {
    let (engine, store) = start(&flow("[crm, notify]", "", "")).await;
    let r = run(&engine, &store, input("support_request")).await;
    let task = tasks(&engine, &r.id).await.remove(0);
    approve_as(&engine, &task.id, json!({}), "user:ann").await;
    let r = fixture::wait_settled(&store, &r.id).await;
    assert_eq!(r.status, RunStatus::Waiting, "{r:#?}");
    let requested = events_of(&store, &r.id, kind::REVIEW_REQUESTED).await;
    assert_eq!(requested.len(), 2, "{requested:?}");
    assert_eq!(
        requested[1]["title"],
        json!("Email to ana@example.com — Re: your request")
    );
    assert!(requested[1].get("cover").is_none(), "{requested:?}");
}

#[test]
fn covers_must_name_later_steps() {
    let yaml = flow("[crm, triage, nope]", "", "");
    let errors = match engine::compile(&yaml, "test.yaml", &kinds(), &fixture::env(&[])) {
        Ok(_) => String::new(),
        Err(e) => e.to_string(),
    };
    expect_test::expect![[r#"
        test.yaml:29:21: steps[2].review.covers[1]: `triage` runs before the review `review` (or is it): a review covers only actions that run after it
        test.yaml:29:29: steps[2].review.covers[2]: `covers` names no step `nope`; steps after `review`: crm, notify, reply"#]]
    .assert_eq(&errors);
}

#[tokio::test]
async fn an_unticked_action_is_not_performed_and_the_untick_is_recorded() {
    let (engine, store) = start(&flow("[crm, notify, reply]", "", "")).await;
    let r = run(&engine, &store, input("sales_lead")).await;
    let task = tasks(&engine, &r.id).await.remove(0);
    let refused = engine
        .decide_review_unticking(
            &task.id,
            approve(json!({})),
            &test_kit::fixture::person("user:ann"),
            &["reply".into(), "screen".into()],
        )
        .await;
    match refused {
        Err(engine::ReviewError::Refused(domain::review::DecisionError::Invalid(e))) => {
            assert_eq!(e[0].pointer, "/skip_actions/1");
            assert!(
                e[0].message.contains(
                    "`screen` is not an action this review covers; covered: crm, notify, reply"
                ),
                "{e:?}"
            );
        }
        other => panic!("{other:?}"),
    }
    engine
        .decide_review_unticking(
            &task.id,
            approve(json!({})),
            &test_kit::fixture::person("user:ann"),
            &["reply".into()],
        )
        .await
        .expect("approve without the email");
    let done = fixture::wait_settled(&store, &r.id).await;
    assert_eq!(done.status, RunStatus::Completed, "{done:#?}");
    let decided = events_of(&store, &r.id, kind::REVIEW_DECIDED).await;
    assert_eq!(decided[0]["unticked"], json!(["reply"]), "{decided:?}");
    let unticked = events_of(&store, &r.id, kind::ACTION_UNTICKED).await;
    assert_eq!(unticked.len(), 1, "{unticked:?}");
    assert_eq!(unticked[0]["step"], json!("reply"));
    let out = outputs(&store, &r.id).await;
    assert!(
        out.get("reply").is_none(),
        "the email was not sent: {out:?}"
    );
    assert_eq!(
        out["crm"]["outbox"],
        json!(true),
        "the CRM update was: {out:?}"
    );
    let outboxed: Vec<Json> = events_of(&store, &r.id, connectors::effect::kind::OUTBOX_RECORDED)
        .await
        .iter()
        .map(|e| e["step"].clone())
        .collect();
    assert_eq!(outboxed, [json!("crm"), json!("notify")]);
    assert_eq!(tasks(&engine, &r.id).await.len(), 1);
}

#[tokio::test]
async fn a_rule_raises_covered_and_auto_actions_and_each_asks_saying_why() {
    let (engine, store) = start(&flow("[crm, notify, reply]", "", "")).await;
    let r = run(&engine, &store, input("legal")).await;
    assert_eq!(r.status, RunStatus::Waiting, "{r:#?}");
    let task = tasks(&engine, &r.id).await.remove(0);
    // The covering review's page says before approval that these two ask again.
    let shown = engine
        .preview_actions(&task, &Map::new())
        .await
        .expect("preview");
    let titles: Vec<String> = show(&shown)
        .lines()
        .filter(|l| !l.starts_with(' '))
        .map(str::to_string)
        .collect();
    assert_eq!(
        titles,
        [
            "crm (covered): Update Monday item 'Ana — Acme'",
            "notify (raised: Legal matter): Slack message to #ops-intake",
            "reply (raised: Legal matter): Email to ana@example.com — Re: your request",
        ]
    );
    approve_as(&engine, &task.id, json!({}), "user:ann").await;
    // The Slack notice (auto, raised) asks first, then the email (covered, raised).
    for (i, step) in ["notify", "reply"].into_iter().enumerate() {
        let r = fixture::wait_settled(&store, &r.id).await;
        assert_eq!(r.status, RunStatus::Waiting, "{r:#?}");
        let open: Vec<store::Review> = tasks(&engine, &r.id)
            .await
            .into_iter()
            .filter(|t| t.status == store::ReviewStatus::Pending)
            .collect();
        assert_eq!(open.len(), 1, "{open:#?}");
        assert_eq!(open[0].step_id, step);
        let requested = events_of(&store, &r.id, kind::REVIEW_REQUESTED).await;
        assert_eq!(
            requested[i + 1]["raised"],
            json!({ "control": "review", "rules": "screen", "rule": 2, "why": "Legal matter" }),
            "{requested:?}"
        );
        if step == "reply" {
            assert_eq!(
                requested[i + 1]["cover"]["why"],
                json!("a rule raised this action to review: Legal matter")
            );
        }
        approve_as(&engine, &open[0].id, json!({}), "user:bob").await;
    }
    let done = fixture::wait_settled(&store, &r.id).await;
    assert_eq!(done.status, RunStatus::Completed, "{done:#?}");
    // Only the CRM update went through the covering review.
    let covered = events_of(&store, &r.id, kind::REVIEW_COVERED).await;
    assert!(covered.is_empty(), "crm has no control level; {covered:?}");
    let out = outputs(&store, &r.id).await;
    assert_eq!(out["reply"]["outbox"], json!(true), "{out:?}");
    assert_eq!(out["notify"]["outbox"], json!(true), "{out:?}");
}

#[tokio::test]
async fn without_the_rule_the_covered_email_does_not_ask_again() {
    // The same flow and request, but the raising rule does not match:
    // the covering approval stands for the email (the test above bites).
    let (engine, store) = start(&flow("[crm, notify, reply]", "", "")).await;
    let r = run(&engine, &store, input("sales_lead")).await;
    let task = tasks(&engine, &r.id).await.remove(0);
    approve_as(&engine, &task.id, json!({}), "user:ann").await;
    let done = fixture::wait_settled(&store, &r.id).await;
    assert_eq!(done.status, RunStatus::Completed, "{done:#?}");
    assert_eq!(tasks(&engine, &r.id).await.len(), 1);
}

#[test]
fn raise_must_name_a_later_action_that_can_act_unreviewed() {
    let compile = |from: &str, to: &str| {
        let yaml = flow("[crm, notify, reply]", "", "")
            .replace(from, to)
            .replace(
                "  - id: crm\n",
                "  - id: record\n    emit:\n      values: { ok: \"1\" }\n  - id: crm\n",
            );
        match engine::compile(&yaml, "test.yaml", &kinds(), &fixture::env(&[])) {
            Ok(_) => String::new(),
            Err(e) => e.to_string(),
        }
    };
    let raise = "then: { raise: { notify: review, reply: review } }";
    // Names are checked against the workflow's steps first.
    expect_test::expect![[r#"
        test.yaml:24:26: steps[1].rules[2].then.raise.triage: `triage` runs before the rules `screen`: a rule raises only actions that run after it
        test.yaml:24:42: steps[1].rules[2].then.raise.notfy: `raise` names no step `notfy` (did you mean `notify`?)"#]]
    .assert_eq(&compile(raise, "then: { raise: { triage: review, notfy: review } }"));
    // Then what the named steps are and the level.
    expect_test::expect![[r#"
        test.yaml:24:26: steps[1].rules[2].then.raise.record: `record` is a step of kind `emit`, which has no control level to raise
        test.yaml:24:49: steps[1].rules[2].then.raise.reply: a rule raises an action to `review` (write `reply: review`)"#]].assert_eq(&compile(
        raise,
        "then: { raise: { record: review, reply: draft } }",
    ));
    expect_test::expect!["test.yaml:24:42: steps[1].rules[2].then.raise.reply: `reply` is `control: suggest`: it never acts unreviewed, so there is nothing to raise"].assert_eq(&compile(
        "control: review\n    email:\n      review_queue: operations\n",
        "control: suggest\n    email:\n",
    ));
    assert_eq!(compile(raise, raise), "", "the flow itself loads");
}
