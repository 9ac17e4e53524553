//! The operations console in headless Chromium (see `browser.rs` for the
//! driver): the run page of the reference workflow answers the nine
//! questions and draws the diagram; an admin retries a failed run through
//! its confirmation and the run completes; a viewer sees no buttons and
//! is refused the POST; the pages pass axe-core and fit a phone.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::http::StatusCode;
use engine::{Catalog, Engine, StepKinds};
use serde_json::json;
use store::{ReviewFilter, ReviewStatus, RunStatus, Store, UserRole};

use crate::browser::{Driver, add_user, axe_source, browser_for, save, serve, sign_in};

/// Calls a local endpoint that refuses (400, a permanent failure) until
/// the test lets it through: a run that fails, then succeeds on retry.
const FLAKY: &str = r#"
name: flaky
steps:
  - id: call
    http: { url: "http://ADDR/crm", timeout: 2s }
    retry: { max_attempts: 1 }
  - id: done
    rules:
      - when: "false"
        then: { finish: never }
"#;

async fn start(open: Arc<AtomicBool>) -> (String, Arc<dyn Store>, Engine) {
    // The flaky endpoint.
    let fake = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let fake_addr = fake.local_addr().expect("addr");
    let router = axum::Router::new().route(
        "/crm",
        axum::routing::any(move || {
            let open = open.clone();
            async move {
                if open.load(Ordering::SeqCst) {
                    (StatusCode::OK, "{\"ok\":true}")
                } else {
                    (StatusCode::BAD_REQUEST, "{\"error\":\"not yet\"}")
                }
            }
        }),
    );
    tokio::spawn(async move { axum::serve(fake, router).await });

    let store: Arc<dyn Store> =
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
    catalog
        .load_file(std::path::Path::new(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../examples/inbound-request.yaml"
        )))
        .await
        .expect("reference workflow");
    catalog
        .load_source(&FLAKY.replace("ADDR", &fake_addr.to_string()), "flaky.yaml")
        .await
        .expect("flaky.yaml");
    let engine = Engine::start(store.clone(), catalog, engine::Config::default());
    let base = serve(engine.clone()).await;
    add_user(&store, "ann@example.com", UserRole::Admin, &[]).await;
    add_user(&store, "vic@example.com", UserRole::Viewer, &[]).await;
    (base, store, engine)
}

async fn pending(store: &Arc<dyn Store>, run: &str) -> store::Review {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(r) = store
            .list_reviews(&ReviewFilter {
                status: Some(ReviewStatus::Pending),
                limit: 50,
                ..ReviewFilter::default()
            })
            .await
            .expect("list reviews")
            .into_iter()
            .find(|r| r.run_id == run)
        {
            return r;
        }
        assert!(tokio::time::Instant::now() < deadline, "no task for {run}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn wait_run(store: &Arc<dyn Store>, run: &str, want: RunStatus) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let r = store.run(run).await.unwrap().unwrap();
        if r.status == want {
            return;
        }
        assert!(tokio::time::Instant::now() < deadline, "run stayed {r:#?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Everything the page must also pass at both sizes.
async fn check_page(d: &Driver, axe: Option<&str>, what: &str, shot: Option<&str>) {
    d.assert_fits_a_phone(what).await;
    if let Some(axe) = axe {
        for (w, h) in [(1366, 768), (390, 844)] {
            d.viewport(w, h).await;
            d.assert_accessible(axe, &format!("{what} at {w}x{h}"))
                .await;
        }
    }
    if let Some(name) = shot {
        d.viewport(1366, 768).await;
        save(&d.screenshot().await, name);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_in_headless_chromium() {
    let Some((chromium, chromedriver)) = browser_for("the_console_in_headless_chromium") else {
        return;
    };
    let open = Arc::new(AtomicBool::new(false));
    let (base, store, engine) = start(open.clone()).await;
    let axe = axe_source();
    let run = engine
        .submit(
            "inbound-request",
            json!({ "name": "Bob <script>alert(1)</script>", "email": "bob@example.com", "company": "Acme",
                "message": "We'd like a quote for 40 seats and a demo" }),
            None,
            "token:test",
        )
        .await
        .expect("submit")
        .run_id;
    let flaky = engine
        .submit("flaky", json!({}), None, "token:test")
        .await
        .expect("submit")
        .run_id;
    wait_run(&store, &flaky, RunStatus::Failed).await;

    let mut d = Driver::start(&chromium, &chromedriver).await;
    sign_in(&d, &base, "ann@example.com").await;

    // The one review (it covers the CRM, Slack and the reply): edit the
    // summary and approve.
    let task = pending(&store, &run).await;
    d.goto(&format!("{base}/inbox/{}", task.id)).await;
    d.type_into("[name='f.summary']", "Acme wants 40 seats")
        .await;
    d.click("#approve-button").await;
    wait_run(&store, &run, RunStatus::Completed).await;

    d.goto(&format!("{base}/runs/{run}")).await;
    let page = d.wait_text("At a glance").await;
    let text = d
        .exec("return document.querySelector('dl.nine').innerText;")
        .await;
    let text = text.as_str().unwrap_or_default();
    for want in [
        "What came in",
        "message: We'd like a quote for 40 seats and a demo",
        "triage: drafted by heuristic / keywords-v1",
        "Yes — The model asked for a person (rule `triage.human_review_required`)",
        "Approved by ann@example.com",
        "→ Acme wants 40 seats (by ann@example.com",
        "Recorded in the outbox, not sent — board: ",
        "Recorded in the outbox, not sent — channel: #ops-intake",
        "Recorded in the outbox, not sent — to: bob@example.com",
        "Did any step fail\nNo.",
        "AI: openai/gpt-4o-mini → heuristic",
    ] {
        assert!(text.contains(want), "missing {want:?} in {text}");
    }
    assert!(!page.contains("<script>alert(1)"), "{page}");
    // The diagram renders: seven boxes on the path, drawn with a size.
    let boxes = d
        .exec("return Array.from(document.querySelectorAll('svg.flow g.node.done rect')).filter(r => r.getBoundingClientRect().width > 100).length;")
        .await;
    assert_eq!(boxes, json!(7), "{page}");
    check_page(&d, axe.as_deref(), "the run page", Some("console-run.png")).await;

    d.goto(&format!("{base}/runs")).await;
    d.wait_text("Needs attention").await;
    check_page(
        &d,
        axe.as_deref(),
        "the runs list",
        Some("console-runs.png"),
    )
    .await;
    d.goto(&format!("{base}/")).await;
    d.wait_text("Review queues").await;
    check_page(
        &d,
        axe.as_deref(),
        "the home page",
        Some("console-home.png"),
    )
    .await;

    // The failed run: Retry opens a confirmation; confirming retries it.
    open.store(true, Ordering::SeqCst);
    d.goto(&format!("{base}/runs/{flaky}")).await;
    d.wait_text("Yes — the run failed").await;
    d.click("details.confirm > summary").await;
    d.click("form[action$='/retry'] button[type=submit]").await;
    d.wait_text("Retry requested").await;
    wait_run(&store, &flaky, RunStatus::Completed).await;
    let retried = store
        .events(&flaky, 0, 100)
        .await
        .unwrap()
        .into_iter()
        .find(|e| e.kind == "run.retried")
        .expect("run.retried");
    assert_eq!(retried.actor, "user:ann@example.com");

    // A viewer: the same kind of page without buttons, and a 403 on the POST.
    let failed = {
        open.store(false, Ordering::SeqCst);
        let id = engine
            .submit("flaky", json!({}), None, "token:test")
            .await
            .expect("submit")
            .run_id;
        wait_run(&store, &id, RunStatus::Failed).await;
        id
    };
    d.quit().await;
    let d = Driver::start(&chromium, &chromedriver).await;
    sign_in(&d, &base, "vic@example.com").await;
    d.goto(&format!("{base}/runs/{failed}")).await;
    let page = d.wait_text("Yes — the run failed").await;
    assert!(!page.contains("/retry"), "{page}");
    assert!(!page.contains("/cancel"), "{page}");
    // The viewer's own session and CSRF token, posted from the page.
    let status = d
        .exec(&format!(
            "const c = document.querySelector('input[name=csrf]').value; \
             const x = new XMLHttpRequest(); x.open('POST', '/runs/{failed}/retry', false); \
             x.setRequestHeader('Content-Type', 'application/x-www-form-urlencoded'); \
             x.send('csrf=' + encodeURIComponent(c)); return x.status;"
        ))
        .await;
    assert_eq!(status, json!(403));
    assert_eq!(
        store.run(&failed).await.unwrap().unwrap().status,
        RunStatus::Failed
    );
}
