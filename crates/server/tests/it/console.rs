//! The operations console over HTTP: the run page answers its questions
//! in words, the runs list filters, the home page counts, and Retry and
//! Cancel are for admins only, CSRF-checked and audited by name.

use std::time::Duration;

use axum::http::{StatusCode, header};
use store::{RunStatus, UserRole};

use crate::inbox::{Browser, add_user, form, get, sign_in};
use crate::reviews::{wait_terminal, waiting};
use crate::support::{Harness, Reply};

async fn page(h: &Harness, b: &Browser, path: &str) -> Reply {
    h.send(get(path, &b.cookie)).await
}

/// A `failing` run, settled as failed.
async fn failed_run(h: &Harness) -> String {
    let r = h
        .post(
            "/api/v1/workflows/failing/runs?wait=5",
            Some(&h.tokens.writer),
            "{}",
        )
        .await;
    assert_eq!(r.json["status"], "failed", "{}", r.text);
    r.json["run_id"].as_str().unwrap().to_string()
}

async fn events_of(h: &Harness, run: &str) -> Vec<store::Event> {
    h.store.events(run, 0, 1000).await.unwrap()
}

#[tokio::test]
async fn the_run_page_answers_who_changed_what() {
    let h = Harness::new().await;
    add_user(&h, "ann@example.com", UserRole::Admin, &[]).await;
    let b = sign_in(&h, "ann@example.com").await;
    let (run, task) = waiting(&h).await;

    // While it waits, the page says where.
    let r = page(&h, &b, &format!("/runs/{run}")).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert!(r.text.contains("Waiting in queue operations"), "{}", r.text);

    // Ann approves with an edited summary and priority.
    let d = h
        .send(form(
            &format!("/inbox/{task}/decision"),
            &b.cookie,
            &format!(
                "csrf={}&decision=approve&f.summary=Printer+fixed&f.priority=urgent",
                b.csrf
            ),
        ))
        .await;
    assert_eq!(d.status, StatusCode::SEE_OTHER, "{}", d.text);
    assert_eq!(wait_terminal(&h, &run).await.status, RunStatus::Completed);

    let r = page(&h, &b, &format!("/runs/{run}")).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let t = &r.text;
    for question in [
        "What came in",
        "What the AI generated",
        "Was review required, and why",
        "Who approved or changed what",
        "Was the CRM updated",
        "Did Slack go out",
        "Was the email sent or drafted",
        "Did any step fail",
        "Which fallback was used",
    ] {
        assert!(t.contains(question), "missing {question:?}: {t}");
    }
    assert!(
        t.contains("A request to reviewed, submitted by token:tok-writer at "),
        "{t}"
    );
    assert!(t.contains("text: Printer on fire"), "{t}");
    assert!(
        t.contains("Yes — the workflow reviews every request at this step"),
        "{t}"
    );
    assert!(t.contains("Approved by ann@example.com"), "{t}");
    assert!(
        t.contains("summary: Printer on fire → Printer fixed (by ann@example.com"),
        "{t}"
    );
    assert!(
        t.contains("priority: high → urgent (by ann@example.com"),
        "{t}"
    );
    assert!(t.contains("No AI step in this workflow."), "{t}");
    // The diagram: four steps, all on the path.
    assert_eq!(t.matches("<g class=\"node done\">").count(), 4, "{t}");
    assert!(t.contains("<svg class=\"flow\""), "{t}");
    // The event log shows the chain.
    let events = events_of(&h, &run).await;
    assert!(t.contains(&events.last().unwrap().hash), "{t}");
    assert!(t.contains("review.decided"), "{t}");
    // Ann is an admin, but a completed run offers neither button.
    assert!(!t.contains("/retry\""), "{t}");
    assert!(!t.contains("/cancel\""), "{t}");

    let missing = page(&h, &b, "/runs/no-such-run").await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn an_admin_retries_a_failed_run_and_the_log_names_them() {
    let h = Harness::new().await;
    add_user(&h, "ann@example.com", UserRole::Admin, &[]).await;
    let b = sign_in(&h, "ann@example.com").await;
    let run = failed_run(&h).await;

    let r = page(&h, &b, &format!("/runs/{run}")).await;
    assert!(
        r.text
            .contains("Yes — the run failed: rule failed the run: always fails"),
        "{}",
        r.text
    );
    assert!(
        r.text.contains(&format!("action=\"/runs/{run}/retry\"")),
        "{}",
        r.text
    );
    assert!(r.text.contains("Yes, retry the run"), "{}", r.text);

    // Without the form token nothing happens.
    let forged = h
        .send(form(&format!("/runs/{run}/retry"), &b.cookie, "csrf=wrong"))
        .await;
    assert_eq!(forged.status, StatusCode::FORBIDDEN);
    assert!(
        !events_of(&h, &run)
            .await
            .iter()
            .any(|e| e.kind == "run.retried"),
        "a forged form retried the run"
    );

    let done = h
        .send(form(
            &format!("/runs/{run}/retry"),
            &b.cookie,
            &format!("csrf={}", b.csrf),
        ))
        .await;
    assert_eq!(done.status, StatusCode::SEE_OTHER, "{}", done.text);
    assert_eq!(
        done.headers.get(header::LOCATION).unwrap(),
        format!("/runs/{run}?done=retried").as_str()
    );
    let retried: Vec<_> = events_of(&h, &run)
        .await
        .into_iter()
        .filter(|e| e.kind == "run.retried")
        .collect();
    assert_eq!(retried.len(), 1);
    assert_eq!(retried[0].actor, "user:ann@example.com");
    // The run was queued again and ran its step a second time (it always
    // fails, so it ends failed again).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let d = h.store.run_detail(&run).await.unwrap().unwrap();
        if d.steps.len() >= 2 && d.run.status == RunStatus::Failed {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "never retried: {d:#?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let after = page(&h, &b, &format!("/runs/{run}?done=retried")).await;
    assert!(after.text.contains("Retry requested"), "{}", after.text);
    assert!(
        after.text.contains("Retried by ann@example.com"),
        "{}",
        after.text
    );

    // Cancel, from the same page, is audited by name too.
    let c = h
        .send(form(
            &format!("/runs/{run}/cancel"),
            &b.cookie,
            &format!("csrf={}", b.csrf),
        ))
        .await;
    assert_eq!(c.status, StatusCode::SEE_OTHER, "{}", c.text);
    let ev = events_of(&h, &run).await;
    let cancelled = ev
        .iter()
        .find(|e| e.kind == "run.cancelled")
        .expect("cancel event");
    assert_eq!(cancelled.actor, "user:ann@example.com");
    let again = h
        .send(form(
            &format!("/runs/{run}/cancel"),
            &b.cookie,
            &format!("csrf={}", b.csrf),
        ))
        .await;
    assert_eq!(again.status, StatusCode::CONFLICT);
}

#[tokio::test]
async fn viewers_and_reviewers_see_no_buttons_and_may_not_act() {
    let h = Harness::new().await;
    add_user(&h, "vic@example.com", UserRole::Viewer, &[]).await;
    add_user(&h, "rae@example.com", UserRole::Reviewer, &["operations"]).await;
    let failed = failed_run(&h).await;
    let (in_queue, _) = waiting(&h).await;
    let vic = sign_in(&h, "vic@example.com").await;
    let rae = sign_in(&h, "rae@example.com").await;
    // The viewer reads any run; the reviewer a run of their queue.
    for (b, run, who) in [
        (&vic, &failed, "viewer"),
        (&vic, &in_queue, "viewer"),
        (&rae, &in_queue, "reviewer"),
    ] {
        let r = page(&h, b, &format!("/runs/{run}")).await;
        assert_eq!(r.status, StatusCode::OK, "{who}: {}", r.text);
        assert!(r.text.contains("At a glance"), "{}", r.text);
        assert!(
            !r.text.contains("/retry"),
            "{who} sees a retry form: {}",
            r.text
        );
        assert!(
            !r.text.contains("/cancel"),
            "{who} sees a cancel form: {}",
            r.text
        );
    }
    // A run that never reached review is not in the reviewer's queues.
    let other = page(&h, &rae, &format!("/runs/{failed}")).await;
    assert_eq!(other.status, StatusCode::FORBIDDEN, "{}", other.text);
    // The list spans every queue: closed to the reviewer; home shows their queue.
    assert_eq!(page(&h, &rae, "/runs").await.status, StatusCode::FORBIDDEN);
    let home = page(&h, &rae, "/").await;
    assert_eq!(home.status, StatusCode::OK, "{}", home.text);
    assert!(home.text.contains("operations"), "{}", home.text);
    assert!(!home.text.contains("failed run"), "{}", home.text);
    for b in [&vic, &rae] {
        for run in [&failed, &in_queue] {
            for op in ["retry", "cancel"] {
                let p = h
                    .send(form(
                        &format!("/runs/{run}/{op}"),
                        &b.cookie,
                        &format!("csrf={}", b.csrf),
                    ))
                    .await;
                assert_eq!(p.status, StatusCode::FORBIDDEN, "{op}: {}", p.text);
            }
        }
    }
    let ev = events_of(&h, &failed).await;
    assert!(
        !ev.iter()
            .any(|e| e.kind == "run.retried" || e.kind == "run.cancelled"),
        "{ev:#?}"
    );
    assert_eq!(
        h.store.run(&failed).await.unwrap().unwrap().status,
        RunStatus::Failed
    );
    assert_eq!(
        h.store.run(&in_queue).await.unwrap().unwrap().status,
        RunStatus::Waiting
    );
}

#[tokio::test]
async fn input_is_escaped_on_the_run_page_and_in_the_list() {
    let h = Harness::new().await;
    add_user(&h, "vic@example.com", UserRole::Viewer, &[]).await;
    let b = sign_in(&h, "vic@example.com").await;
    let r = h
        .post(
            "/api/v1/workflows/reviewed/runs?wait=5",
            Some(&h.tokens.writer),
            r#"{"text":"<script>alert(1)</script>","priority":"low"}"#,
        )
        .await;
    assert_eq!(r.json["status"], "completed", "{}", r.text);
    let run = r.json["run_id"].as_str().unwrap().to_string();
    for path in [
        format!("/runs/{run}"),
        "/runs".to_string(),
        "/runs?q=alert".to_string(),
    ] {
        let p = page(&h, &b, &path).await;
        assert_eq!(p.status, StatusCode::OK, "{path}: {}", p.text);
        assert!(!p.text.contains("<script>alert"), "{path}: {}", p.text);
        assert!(
            p.text.contains("&lt;script&gt;alert(1)"),
            "{path}: {}",
            p.text
        );
    }
    let run_page = page(&h, &b, &format!("/runs/{run}")).await;
    // The low priority skipped the review by the rules' policy.
    assert!(
        run_page.text.contains("No — skipped by policy"),
        "{}",
        run_page.text
    );
}

#[tokio::test]
async fn the_runs_list_filters_and_counts() {
    let h = Harness::new().await;
    add_user(&h, "vic@example.com", UserRole::Viewer, &[]).await;
    let b = sign_in(&h, "vic@example.com").await;
    let failed = failed_run(&h).await;
    let (waiting_run, _) = waiting(&h).await;
    let done = h.completed_run().await;

    let all = page(&h, &b, "/runs").await;
    assert_eq!(all.status, StatusCode::OK, "{}", all.text);
    for id in [&failed, &waiting_run, &done] {
        assert!(
            all.text.contains(&format!("/runs/{id}\"")),
            "{id}: {}",
            all.text
        );
    }
    assert!(all.text.contains("Failed · 1"), "{}", all.text);

    let attention = page(&h, &b, "/runs?view=attention").await;
    assert!(attention.text.contains(&format!("/runs/{failed}\"")));
    assert!(!attention.text.contains(&format!("/runs/{done}\"")));

    let review = page(&h, &b, "/runs?view=review").await;
    assert!(
        review.text.contains(&format!("/runs/{waiting_run}\"")),
        "{}",
        review.text
    );
    assert!(!review.text.contains(&format!("/runs/{failed}\"")));

    let text = page(&h, &b, "/runs?q=printer+on").await;
    assert!(text.contains_run(&waiting_run));
    assert!(!text.contains_run(&done));

    let wf = page(&h, &b, "/runs?workflow=triage").await;
    assert!(wf.contains_run(&done));
    assert!(!wf.contains_run(&failed));

    let future = page(&h, &b, "/runs?from=2999-01-01").await;
    assert!(!future.contains_run(&done));
    let past = page(&h, &b, "/runs?to=2000-01-01").await;
    assert!(!past.contains_run(&done));

    let bad = page(&h, &b, "/runs?from=yesterday").await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    assert!(bad.text.contains("from: "), "{}", bad.text);
}

#[tokio::test]
async fn home_counts_link_to_the_lists_and_needs_a_sign_in() {
    let h = Harness::new().await;
    let anon = h.send(get("/", "")).await;
    assert_eq!(anon.status, StatusCode::SEE_OTHER);
    assert_eq!(anon.headers.get(header::LOCATION).unwrap(), "/login?next=/");

    add_user(&h, "vic@example.com", UserRole::Viewer, &[]).await;
    let b = sign_in(&h, "vic@example.com").await;
    failed_run(&h).await;
    waiting(&h).await;
    let home = page(&h, &b, "/").await;
    assert_eq!(home.status, StatusCode::OK, "{}", home.text);
    // Attribute values come escaped (`/` as `&#x2f;`): read them as a browser would.
    let t = &home.text.replace("&#x2f;", "/").replace("&amp;", "&");
    assert!(t.contains("Review queues"), "{t}");
    assert!(t.contains("href=\"/inbox?queue=operations\""), "{t}");
    assert!(t.contains("1 failed run<"), "{t}");
    assert!(t.contains("href=\"/runs?view=attention\""), "{t}");
    assert!(t.contains("href=\"/runs?status=failed&from="), "{t}");
    assert!(t.contains("<title>Failed: 1</title>"), "{t}");
    assert!(t.contains("no AI calls this week"), "{t}");
}

trait HasRun {
    fn contains_run(&self, id: &str) -> bool;
}

impl HasRun for Reply {
    fn contains_run(&self, id: &str) -> bool {
        self.text.contains(&format!("/runs/{id}\""))
    }
}

/// A harness running the reference workflow (`examples/inbound-request.yaml`)
/// with the real `llm` kind and connectors, and no credentials: the AI
/// falls back to the offline heuristic and every effect lands in the outbox.
async fn reference() -> Harness {
    use std::sync::Arc;

    use countersign_server::{AppState, ServerConfig, app};
    use engine::{Catalog, Engine, StepKinds};

    let store: Arc<dyn store::Store> =
        Arc::new(store_sqlite::SqliteStore::open_memory().expect("open store"));
    let none = |_: &str| None::<String>;
    let http = reqwest::Client::new();
    let mut kinds = StepKinds::builtin(http.clone());
    kinds.register(Arc::new(llm::Kind::new(
        http.clone(),
        llm::Config::from_env(&none).unwrap(),
    )));
    connectors::register(
        &mut kinds,
        http,
        connectors::Config::from_env(&none).unwrap(),
    );
    let catalog = Arc::new(Catalog::new(kinds, Arc::new(none), store.clone()));
    let path = std::path::Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../examples/inbound-request.yaml"
    ));
    catalog.load_file(path).await.expect("reference workflow");
    let engine = Engine::start(store.clone(), catalog, engine::Config::default());
    let (writer, writer_id) = crate::support::mint(&store, "writer", &["runs:write"], false).await;
    let tokens = crate::support::Tokens {
        writer,
        writer_id,
        reader: String::new(),
        reviewer: String::new(),
        admin: String::new(),
        revoked: String::new(),
    };
    Harness {
        app: app(AppState::new(engine, ServerConfig::default())),
        store,
        tokens,
    }
}

/// Approves the pending task of `run` from the web form, changing `edits`.
async fn approve(h: &Harness, b: &Browser, run: &str, edits: &[(&str, &str)]) {
    let task = h
        .store
        .list_reviews(&store::ReviewFilter {
            status: Some(store::ReviewStatus::Pending),
            queue: None,
            queues: None,
            before: None,
            limit: 100,
        })
        .await
        .unwrap()
        .into_iter()
        .find(|t| t.run_id == run)
        .unwrap_or_else(|| panic!("no pending task for {run}"));
    let mut body = format!("csrf={}&decision=approve", b.csrf);
    for (k, v) in edits {
        body.push_str(&format!("&f.{k}={}", v.replace(' ', "+")));
    }
    let d = h
        .send(form(
            &format!("/inbox/{}/decision", task.id),
            &b.cookie,
            &body,
        ))
        .await;
    assert_eq!(d.status, StatusCode::SEE_OTHER, "{}", d.text);
}

async fn settled(h: &Harness, run: &str, want: impl Fn(&store::Run) -> bool) -> store::Run {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let r = h.store.run(run).await.unwrap().unwrap();
        if want(&r) {
            return r;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "never settled: {r:#?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// The reference workflow end to end, read from the run page: the AI's
/// fallback, the rule that asked for review, the reviewer's edit, the CRM,
/// Slack and email effects recorded in the outbox, and the diagram.
#[tokio::test]
async fn the_reference_workflow_answers_all_nine_on_its_page() {
    let h = reference().await;
    add_user(&h, "ann@example.com", UserRole::Admin, &[]).await;
    let b = sign_in(&h, "ann@example.com").await;
    let r = h
        .post(
            "/api/v1/workflows/inbound-request/runs?wait=10",
            Some(&h.tokens.writer),
            r#"{"name":"Bob","email":"bob@example.com","company":"Acme","message":"We'd like a quote for 40 seats and a demo"}"#,
        )
        .await;
    assert_eq!(r.json["status"], "waiting", "{}", r.text);
    let run = r.json["run_id"].as_str().unwrap().to_string();
    // One review covers the CRM, the Slack notice and the reply email.
    approve(&h, &b, &run, &[("summary", "Acme wants 40 seats")]).await;
    assert_eq!(
        settled(&h, &run, |r| r.status.is_terminal()).await.status,
        RunStatus::Completed
    );

    let page = page(&h, &b, &format!("/runs/{run}")).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.text);
    let t = &page
        .text
        .replace("&#x27;", "'")
        .replace("&quot;", "\"")
        .replace("&#x2f;", "/");
    for want in [
        "A request to inbound-request, submitted by token:tok-writer",
        "message: We'd like a quote for 40 seats and a demo",
        "triage: drafted by heuristic / keywords-v1",
        "Fallback: fell back after: openai/",
        "Yes — The model asked for a person (rule `triage.human_review_required`)",
        "Approved by ann@example.com",
        "summary: ",
        "→ Acme wants 40 seats (by ann@example.com",
        "Recorded in the outbox, not sent — channel: #ops-intake",
        "Recorded in the outbox, not sent — to: bob@example.com",
        "AI: openai/gpt-4o-mini → heuristic",
        "Outbox: slack chat.postMessage recorded locally, not sent",
        "<g class=\"node done\">",
    ] {
        assert!(t.contains(want), "missing {want:?}: {t}");
    }
    // The CRM: a sales lead goes to the CRM, which has no token either.
    assert!(
        t.contains("answer-crm tone-warn\">Recorded in the outbox, not sent"),
        "{t}"
    );
    assert!(t.contains("answer-failures tone-ok\">No."), "{t}");
}

/// The task page's "after approval" is the engine's preview of each
/// covered action with the values on the page; unticking one approves
/// without it, on the record.
#[tokio::test]
async fn the_desk_previews_actions_with_edits_and_unticked_ones_do_not_run() {
    let h = reference().await;
    add_user(&h, "ann@example.com", UserRole::Admin, &[]).await;
    let b = sign_in(&h, "ann@example.com").await;
    let r = h
        .post(
            "/api/v1/workflows/inbound-request/runs?wait=10",
            Some(&h.tokens.writer),
            r#"{"name":"Bob","email":"bob@example.com","company":"Acme","message":"We'd like a quote for 40 seats and a demo"}"#,
        )
        .await;
    assert_eq!(r.json["status"], "waiting", "{}", r.text);
    let run = r.json["run_id"].as_str().unwrap().to_string();
    let task = h
        .store
        .list_reviews(&store::ReviewFilter {
            status: Some(store::ReviewStatus::Pending),
            limit: 10,
            ..store::ReviewFilter::default()
        })
        .await
        .unwrap()
        .into_iter()
        .find(|t| t.run_id == run)
        .unwrap();

    // As drafted: the CRM item, the Slack text and the email, rendered.
    let shown = page(&h, &b, &format!("/inbox/{}", task.id)).await;
    for want in [
        "Update Monday item",
        "Bob — Acme",
        "Slack message to #ops-intake",
        "Email to bob@example.com — Re: your request",
        "approved with this review",
        "name=\"keep\" value=\"reply\"",
    ] {
        assert!(
            shown.text.contains(want),
            "missing {want:?}: {}",
            shown.text
        );
    }
    // With an edit: the preview follows the values on the page.
    let frag = h
        .send(form(
            &format!("/inbox/{}/preview", task.id),
            &b.cookie,
            &format!(
                "csrf={}&f.intent=support_request&f.summary=Acme+wants+40+seats",
                b.csrf
            ),
        ))
        .await;
    assert_eq!(frag.status, StatusCode::OK, "{}", frag.text);
    assert!(frag.text.contains("will not run"), "{}", frag.text);
    assert!(
        frag.text
            .contains("New medium support_request from Bob: Acme wants 40 seats"),
        "{}",
        frag.text
    );
    let bad_csrf = h
        .send(form(
            &format!("/inbox/{}/preview", task.id),
            &b.cookie,
            "csrf=nope",
        ))
        .await;
    assert_eq!(bad_csrf.status, StatusCode::FORBIDDEN);

    // Approve with the email unticked: CRM and Slack run, the email not.
    let d = h
        .send(form(
            &format!("/inbox/{}/decision", task.id),
            &b.cookie,
            &format!(
                "csrf={}&decision=approve&covered=crm&covered=notify&covered=reply&keep=crm&keep=notify",
                b.csrf
            ),
        ))
        .await;
    assert_eq!(d.status, StatusCode::SEE_OTHER, "{}", d.text);
    assert_eq!(
        settled(&h, &run, |r| r.status.is_terminal()).await.status,
        RunStatus::Completed
    );
    let events = h.store.events(&run, 0, 500).await.unwrap();
    let kinds: Vec<&str> = events.iter().map(|e| e.kind.as_str()).collect();
    let unticked = events
        .iter()
        .find(|e| e.kind == "action.unticked")
        .unwrap_or_else(|| panic!("no action.unticked in {kinds:?}"));
    assert!(unticked.data.contains("\"reply\""), "{}", unticked.data);
    let outbox: Vec<&str> = events
        .iter()
        .filter(|e| e.kind == "outbox.recorded")
        .map(|e| e.data.as_str())
        .collect();
    assert!(
        outbox.iter().any(|d| d.contains("\"connector\":\"slack\"")),
        "{outbox:?}"
    );
    assert!(
        !outbox.iter().any(|d| d.contains("\"connector\":\"email\"")),
        "the email was unticked: {outbox:?}"
    );
}
