//! Probes, the OpenAPI document, unknown routes, and what a client sees
//! when the store fails (a 503 with `Retry-After`, no internal detail).

use std::sync::Arc;

use async_trait::async_trait;
use axum::http::StatusCode;
use countersign_server::{AppState, ServerConfig, app};
use engine::{Catalog, Engine, StepKinds};
use store::*;

use crate::support::{Harness, Reply};

#[tokio::test]
async fn healthz_and_readyz_answer_ok() {
    let h = Harness::new().await;
    for path in ["/healthz", "/readyz"] {
        let r = h.get(path, None).await;
        assert_eq!(r.status, StatusCode::OK, "{path}: {}", r.text);
        assert_eq!(r.json, serde_json::json!({"status": "ok"}));
    }
}

#[tokio::test]
async fn the_openapi_document_lists_every_path_and_the_bearer_scheme() {
    let h = Harness::new().await;
    let r = h.get("/api/openapi.json", None).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let doc = &r.json;
    assert!(
        doc["openapi"].as_str().unwrap().starts_with("3."),
        "{}",
        r.text
    );
    let paths = doc["paths"].as_object().unwrap();
    for p in [
        "/api/v1/workflows/{name}/runs",
        "/hooks/{name}",
        "/api/v1/runs",
        "/api/v1/runs/{id}",
        "/api/v1/runs/{id}/events",
        "/api/v1/runs/{id}/retry",
        "/api/v1/runs/{id}/cancel",
        "/healthz",
        "/readyz",
        "/metrics",
        "/forms/{name}",
        "/integrations/slack/interactivity",
        "/review/{token}",
    ] {
        assert!(
            paths.contains_key(p),
            "{p} missing from {:?}",
            paths.keys().collect::<Vec<_>>()
        );
    }
    let scheme = &doc["components"]["securitySchemes"]["bearer"];
    assert_eq!(scheme["type"], "http");
    assert_eq!(scheme["scheme"], "bearer");
    let submit = &doc["paths"]["/api/v1/workflows/{name}/runs"]["post"];
    assert_eq!(submit["security"][0]["bearer"][0], "runs:write");
    for code in ["202", "400", "401", "403", "404", "413", "415", "422"] {
        assert!(
            submit["responses"].get(code).is_some(),
            "submit lacks {code}"
        );
    }
    assert!(doc["components"]["schemas"]["Problem"].is_object());

    // Routes authenticated by signatures (or public): form-urlencoded in,
    // HTML out, and no bearer requirement.
    for (p, m) in [
        ("/forms/{name}", "get"),
        ("/forms/{name}", "post"),
        ("/review/{token}", "get"),
        ("/review/{token}", "post"),
        ("/integrations/slack/interactivity", "post"),
    ] {
        let op = &doc["paths"][p][m];
        assert!(op.is_object(), "{m} {p} missing");
        assert!(
            !op["security"].to_string().contains("bearer"),
            "{m} {p} asks for a bearer token: {op}"
        );
    }
    for p in ["/forms/{name}", "/integrations/slack/interactivity"] {
        assert!(
            doc["paths"][p]["post"]["requestBody"]["content"]["application/x-www-form-urlencoded"]
                .is_object(),
            "{p} is not form-urlencoded"
        );
    }
    assert!(
        doc["paths"]["/review/{token}"]["get"]["responses"]["200"]["content"]["text/html"]
            .is_object()
    );
    let slack = doc["paths"]["/integrations/slack/interactivity"]["post"].to_string();
    assert!(slack.contains("X-Slack-Signature"), "{slack}");
}

#[tokio::test]
async fn unknown_routes_and_methods_answer_problems() {
    let h = Harness::new().await;
    let r = h.get("/api/v1/nothing-here", None).await;
    r.assert_problem(StatusCode::NOT_FOUND, "not-found");
    let r = h
        .get("/api/v1/workflows/triage/runs", Some(&h.tokens.admin))
        .await;
    r.assert_problem(StatusCode::METHOD_NOT_ALLOWED, "method-not-allowed");
}

const LEAK: &str = "disk I/O error at /var/secret/countersign.db";

#[tokio::test]
async fn store_failures_are_a_503_with_retry_after_and_no_detail() {
    let store: Arc<dyn Store> = Arc::new(Broken);
    // Workflows load from a working store; the engine's store is down.
    let loader: Arc<dyn Store> =
        Arc::new(store_sqlite::SqliteStore::open_memory().expect("open store"));
    let catalog = Arc::new(Catalog::new(
        StepKinds::builtin(reqwest::Client::new()),
        Arc::new(|_: &str| None),
        loader,
    ));
    catalog
        .load_source(crate::support::OPEN_HOOK, "open-hook.yaml")
        .await
        .expect("load the workflow");
    let engine = Engine::start(
        store,
        catalog,
        engine::Config {
            workers: false,
            ..engine::Config::default()
        },
    );
    let h = Harness {
        app: app(AppState::new(engine, ServerConfig::default())),
        store: Arc::new(Broken),
        tokens: Harness::new().await.tokens,
    };
    let unavailable = |r: &Reply| {
        r.assert_problem(StatusCode::SERVICE_UNAVAILABLE, "unavailable");
        assert_eq!(
            r.headers
                .get(axum::http::header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok()),
            Some("2"),
            "{}",
            r.text
        );
        assert!(
            !r.text.contains("secret") && !r.text.contains("disk"),
            "internal detail leaks: {}",
            r.text
        );
    };
    // The token lookup fails.
    unavailable(&h.get("/api/v1/runs", Some("cs_anything")).await);
    // Intake: creating the run fails.
    unavailable(&h.post("/hooks/open-hook", None, r#"{"a":1}"#).await);
    unavailable(&h.post("/hooks/open-hook?wait=1", None, "{}").await);

    let r = h.get("/readyz", None).await;
    unavailable(&r);
    let r = h.get("/healthz", None).await;
    assert_eq!(r.status, StatusCode::OK);
}

/// A store whose every call fails.
struct Broken;

fn fail<T>() -> Result<T> {
    Err(Error::Backend(LEAK.into()))
}

#[async_trait]
impl Store for Broken {
    fn backend(&self) -> &'static str {
        "broken"
    }
    async fn save_workflow(&self, _: &str, _: &str, _: &str, _: &str, _: i64) -> Result<i64> {
        fail()
    }
    async fn workflow_version(&self, _: &str, _: i64) -> Result<Option<WorkflowVersion>> {
        fail()
    }
    async fn create_run(&self, _: NewRun) -> Result<Created> {
        fail()
    }
    async fn commit(&self, _: Commit) -> Result<i64> {
        fail()
    }
    async fn claim(&self, _: &str, _: i64, _: i64, _: usize) -> Result<Vec<Claimed>> {
        fail()
    }
    async fn renew_leases(&self, _: &str, _: &[String], _: i64) -> Result<u64> {
        fail()
    }
    async fn release_leases(&self, _: &str) -> Result<u64> {
        fail()
    }
    async fn next_due(&self) -> Result<Option<i64>> {
        fail()
    }
    async fn retry_run(&self, _: &str, _: &str, _: i64) -> Result<OpResult> {
        fail()
    }
    async fn cancel_run(&self, _: &str, _: &str, _: i64) -> Result<OpResult> {
        fail()
    }
    async fn run(&self, _: &str) -> Result<Option<Run>> {
        fail()
    }
    async fn run_detail(&self, _: &str) -> Result<Option<RunDetail>> {
        fail()
    }
    async fn list_runs(&self, _: &RunFilter) -> Result<Vec<Run>> {
        fail()
    }
    async fn events(&self, _: &str, _: i64, _: usize) -> Result<Vec<Event>> {
        fail()
    }
    async fn run_ids(&self, _: Option<&str>, _: usize) -> Result<Vec<String>> {
        fail()
    }
    async fn chain_heads(&self, _: Option<&str>, _: usize) -> Result<Vec<store::ChainHead>> {
        fail()
    }
    async fn prunable_runs(
        &self,
        _: i64,
        _: Option<&str>,
        _: usize,
    ) -> Result<Vec<store::PrunedRun>> {
        fail()
    }
    async fn prune_run(&self, _: &store::PrunedRun) -> Result<bool> {
        fail()
    }
    async fn pruned_runs(&self, _: Option<&str>, _: usize) -> Result<Vec<store::PrunedRun>> {
        fail()
    }
    async fn create_token(&self, _: Token) -> Result<()> {
        fail()
    }
    async fn token_by_hash(&self, _: &str) -> Result<Option<Token>> {
        fail()
    }
    async fn token(&self, _: &str) -> Result<Option<Token>> {
        fail()
    }
    async fn list_tokens(&self) -> Result<Vec<Token>> {
        fail()
    }
    async fn revoke_token(&self, _: &str, _: i64) -> Result<bool> {
        fail()
    }
}

#[async_trait]
impl store::Reviews for Broken {
    async fn create_review(&self, _: store::NewReview) -> Result<store::Review> {
        fail()
    }
    async fn review(&self, _: &str) -> Result<Option<store::Review>> {
        fail()
    }
    async fn review_for_step(&self, _: &str, _: usize) -> Result<Option<store::Review>> {
        fail()
    }
    async fn list_reviews(&self, _: &store::ReviewFilter) -> Result<Vec<store::Review>> {
        fail()
    }
    async fn decide_review(&self, _: store::DecideReview) -> Result<store::Decided> {
        fail()
    }
    async fn pending_by_queue(&self) -> Result<Vec<store::QueueDepth>> {
        fail()
    }
    async fn calibration_reviews(
        &self,
        _: &store::CalibrationQuery,
    ) -> Result<Vec<store::CalibrationReview>> {
        fail()
    }
}

#[async_trait]
impl store::Integrations for Broken {
    async fn map_slack_user(&self, _: store::SlackIdentity) -> Result<()> {
        fail()
    }
    async fn slack_identity(&self, _: &str) -> Result<Option<store::SlackIdentity>> {
        fail()
    }
    async fn list_slack_identities(&self) -> Result<Vec<store::SlackIdentity>> {
        fail()
    }
    async fn decide_review_once(&self, _: &str, _: store::DecideReview) -> Result<store::Once> {
        fail()
    }
    async fn nonce_used(&self, _: &str) -> Result<bool> {
        fail()
    }
    async fn remember_signature(&self, _: &str, _: i64, _: i64) -> Result<bool> {
        fail()
    }
    async fn start_notification(
        &self,
        _: &str,
        _: &str,
        _: &str,
        _: i64,
    ) -> Result<Option<store::Notification>> {
        fail()
    }
    async fn finish_notification(
        &self,
        _: &str,
        _: store::NotificationStatus,
        _: Option<&str>,
        _: i64,
    ) -> Result<()> {
        fail()
    }
    async fn notifications(&self, _: &str) -> Result<Vec<store::Notification>> {
        fail()
    }
    async fn setting_or_insert(&self, _: &str, _: &str) -> Result<String> {
        fail()
    }
}

#[async_trait]
impl store::EventsByKind for Broken {
    async fn events_by_kind(&self, _: &str, _: Option<i64>, _: usize) -> Result<Vec<store::Event>> {
        fail()
    }
    async fn events_between(&self, _: &store::EventRange) -> Result<Vec<store::RunEvent>> {
        fail()
    }
}

#[async_trait]
#[async_trait]
impl store::Desk for Broken {
    async fn claim_review(&self, _: store::Claim, _: i64, _: bool) -> Result<store::Claim> {
        fail()
    }
    async fn review_claims(&self, _: &[String]) -> Result<Vec<store::Claim>> {
        fail()
    }
    async fn record_review_view(&self, _: &str, _: &str, _: i64) -> Result<()> {
        fail()
    }
    async fn review_views(&self, _: &str) -> Result<Vec<(String, i64)>> {
        fail()
    }
}

#[async_trait]
impl store::Users for Broken {
    async fn create_user(&self, _: store::User) -> Result<()> {
        fail()
    }
    async fn user(&self, _: &str) -> Result<Option<store::User>> {
        fail()
    }
    async fn user_by_email(&self, _: &str) -> Result<Option<store::User>> {
        fail()
    }
    async fn list_users(&self) -> Result<Vec<store::User>> {
        fail()
    }
    async fn set_password(&self, _: &str, _: &str) -> Result<bool> {
        fail()
    }
    async fn create_session(&self, _: store::Session) -> Result<()> {
        fail()
    }
    async fn session(&self, _: &str, _: i64) -> Result<Option<(store::Session, store::User)>> {
        fail()
    }
    async fn delete_session(&self, _: &str) -> Result<()> {
        fail()
    }
    async fn delete_expired_sessions(&self, _: i64) -> Result<u64> {
        fail()
    }
    async fn set_disabled(&self, _: &str, _: Option<i64>) -> Result<bool> {
        fail()
    }
    async fn delete_user_sessions(&self, _: &str) -> Result<u64> {
        fail()
    }
}

#[tokio::test]
async fn metrics_count_runs_and_steps_in_prometheus_format() {
    let h = Harness::new().await;
    let before = h.get("/metrics", None).await;
    assert_eq!(before.status, StatusCode::OK);
    assert!(
        before.text.contains("countersign_runs_submitted_total 0"),
        "{}",
        before.text
    );
    h.completed_run().await;
    let after = h.get("/metrics", None).await;
    assert!(
        after.text.contains("countersign_runs_submitted_total 1"),
        "{}",
        after.text
    );
    assert!(
        after
            .text
            .contains("# TYPE countersign_step_attempts_total counter")
    );
    let completed_line = after
        .text
        .lines()
        .find(|l| l.starts_with("countersign_step_attempts_total{result=\"completed\"}"))
        .unwrap();
    let n: u64 = completed_line.rsplit(' ').next().unwrap().parse().unwrap();
    assert!(n >= 1, "{completed_line}");
}

/// The value of the sample line `name` (labels included), if present.
fn sample(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
}

#[tokio::test]
async fn metrics_show_step_latency_failures_retries_and_review_queues() {
    let h = Harness::new().await;
    let m = h.get("/metrics", None).await.text;
    assert_eq!(sample(&m, "countersign_review_queues_up"), Some(1.0), "{m}");
    assert!(!m.contains("countersign_review_queue_depth{"), "{m}");

    // A run waiting for review in `operations`, and one whose http call is
    // refused and retried in an hour.
    crate::reviews::waiting(&h).await;
    let r = h
        .post(
            "/api/v1/workflows/slow/runs?wait=0.2",
            Some(&h.tokens.writer),
            "{}",
        )
        .await;
    assert!(r.status.is_success(), "{}", r.text);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let m = loop {
        let m = h.get("/metrics", None).await.text;
        if sample(&m, r#"countersign_step_retries_total{kind="http"}"#) == Some(1.0)
            || std::time::Instant::now() > deadline
        {
            break m;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    };
    assert_eq!(
        sample(&m, r#"countersign_step_retries_total{kind="http"}"#),
        Some(1.0),
        "{m}"
    );
    assert_eq!(
        sample(&m, r#"countersign_step_failures_total{kind="http"}"#),
        Some(1.0),
        "{m}"
    );
    assert_eq!(
        sample(&m, r#"countersign_step_failures_total{kind="rules"}"#),
        Some(0.0),
        "{m}"
    );
    assert_eq!(
        sample(&m, r#"countersign_review_queue_depth{queue="operations"}"#),
        Some(1.0),
        "{m}"
    );
    let age = sample(
        &m,
        r#"countersign_review_queue_oldest_age_seconds{queue="operations"}"#,
    );
    assert!(age.is_some_and(|a| (0.0..600.0).contains(&a)), "{m}");
    // The review run passed a `rules` step: its latency is in the histogram.
    let count = sample(
        &m,
        r#"countersign_step_duration_seconds_count{kind="rules"}"#,
    )
    .unwrap();
    assert!(count >= 1.0, "{m}");
    assert_eq!(
        sample(
            &m,
            r#"countersign_step_duration_seconds_bucket{kind="rules",le="+Inf"}"#
        ),
        Some(count)
    );
    assert!(m.contains("# TYPE countersign_step_duration_seconds histogram"));
}

fn form_post(path: &str, body: &str) -> axum::http::Request<axum::body::Body> {
    axum::http::Request::post(path)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(axum::body::Body::from(body.to_string()))
        .unwrap()
}

#[tokio::test]
async fn the_form_trigger_renders_the_schema_and_submits_typed_input() {
    let h = Harness::new().await;
    let page = h.get("/forms/contact", None).await;
    assert_eq!(page.status, StatusCode::OK);
    for needle in [
        "<title>Contact us · Countersign</title>",
        "type=\"email\" id=\"email\"",
        "type=\"number\" id=\"seats\"",
        "<textarea id=\"message\"",
        "required",
    ] {
        assert!(
            page.text.contains(needle),
            "{needle} missing in {}",
            page.text
        );
    }
    assert_eq!(
        h.get("/forms/triage", None).await.status,
        StatusCode::NOT_FOUND,
        "no form trigger"
    );

    // Invalid: the page comes back with the values escaped and each field's error; no run.
    let bad = h
        .send(form_post(
            "/forms/contact",
            "name=%3Cscript%3Ealert(1)%3C%2Fscript%3E&email=nope&message=",
        ))
        .await;
    assert_eq!(bad.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", bad.text);
    assert!(
        bad.text
            .contains("&lt;script&gt;alert(1)&lt;&#x2f;script&gt;"),
        "{}",
        bad.text
    );
    assert!(
        !bad.text.contains("<script>alert"),
        "unescaped input echoed"
    );
    assert!(bad.text.contains("class=\"err\""), "{}", bad.text);
    assert_eq!(h.run_count().await, 0);

    let ok = h
        .send(form_post(
            "/forms/contact",
            "name=Ada+Lovelace&email=ada%40example.com&seats=3&message=Hello",
        ))
        .await;
    assert_eq!(ok.status, StatusCode::ACCEPTED, "{}", ok.text);
    assert_eq!(h.run_count().await, 1);
    let runs = h
        .store
        .list_runs(&RunFilter {
            limit: 1,
            ..RunFilter::default()
        })
        .await
        .unwrap();
    let input: serde_json::Value = serde_json::from_str(&runs[0].input).unwrap();
    assert_eq!(
        input,
        serde_json::json!({"name": "Ada Lovelace", "email": "ada@example.com", "seats": 3, "message": "Hello"})
    );
    assert!(ok.text.contains(&runs[0].id), "the reference is shown");
}

#[tokio::test]
async fn the_form_keeps_the_file_order_speaks_plainly_hides_machine_fields_and_stops_bots() {
    let h = Harness::new().await;
    let page = h.get("/forms/contact", None).await;
    assert_eq!(page.status, StatusCode::OK);
    let at = |needle: &str| {
        page.text
            .find(needle)
            .unwrap_or_else(|| panic!("{needle} missing in {}", page.text))
    };
    // The file's order (name, email, seats, message), not the alphabet.
    assert!(at("id=\"name\"") < at("id=\"email\""));
    assert!(at("id=\"email\"") < at("id=\"seats\""));
    assert!(at("id=\"seats\"") < at("id=\"message\""));
    // Readable labels, the description as a hint tied to the field.
    at(">Seats</label>");
    at("<p class=\"hint\" id=\"seats-hint\">How many people will use it</p>");
    at("aria-describedby=\"seats-hint\"");
    // The idempotency field is the machine's, not the visitor's.
    assert!(!page.text.contains("id=\"ref\""), "{}", page.text);
    at("name=\"cs_website\"");

    // Errors in words, next to each field; the missing name included.
    let bad = h
        .send(form_post("/forms/contact", "email=nope&message="))
        .await;
    assert_eq!(bad.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", bad.text);
    for needle in [
        "<p class=\"err\" id=\"email-err\">Please enter an email address, like name@example.com.</p>",
        "<p class=\"err\" id=\"name-err\">Please fill in this field.</p>",
        "<p class=\"err\" id=\"message-err\">Please fill in this field.</p>",
        "aria-invalid=\"true\"",
    ] {
        assert!(
            bad.text.contains(needle),
            "{needle} missing in {}",
            bad.text
        );
    }
    assert!(
        !bad.text.contains("is not a"),
        "raw schema wording: {}",
        bad.text
    );

    // A filled honeypot: thanks, and nothing created.
    let bot = h
        .send(form_post(
            "/forms/contact",
            "name=Bot&email=bot%40example.com&message=Buy+now&cs_website=http%3A%2F%2Fspam.example",
        ))
        .await;
    assert_eq!(bot.status, StatusCode::ACCEPTED, "{}", bot.text);
    assert!(bot.text.contains("Thank you"), "{}", bot.text);
    assert_eq!(h.run_count().await, 0);

    // Ten submissions a minute per address (the in-process harness has no
    // peer address, so all share one); the eleventh waits.
    let ok = h
        .send(form_post(
            "/forms/contact",
            "name=Ada&email=ada%40example.com&message=Hello",
        ))
        .await;
    assert_eq!(ok.status, StatusCode::ACCEPTED, "{}", ok.text);
    assert_eq!(h.run_count().await, 1);
    for _ in 0..8 {
        let r = h.send(form_post("/forms/contact", "email=nope")).await;
        assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    }
    let limited = h
        .send(form_post(
            "/forms/contact",
            "name=Ada&email=ada%40example.com&message=Again",
        ))
        .await;
    assert_eq!(
        limited.status,
        StatusCode::TOO_MANY_REQUESTS,
        "{}",
        limited.text
    );
    assert!(limited.headers.contains_key("retry-after"));
    assert!(
        limited.text.contains("Too many requests"),
        "{}",
        limited.text
    );
    assert_eq!(h.run_count().await, 1);
}

#[tokio::test]
async fn every_html_page_sends_the_security_headers() {
    let h = Harness::new().await;
    for path in [
        "/forms/contact",
        "/forms/no-such-form",
        "/login",
        "/review/not-a-token",
        "/inbox",
    ] {
        let r = h.get(path, None).await;
        if r.status.is_redirection() {
            continue;
        }
        let header = |name: &str| {
            r.headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_string()
        };
        assert!(header("content-type").starts_with("text/html"), "{path}");
        let csp = header("content-security-policy");
        for part in [
            "default-src 'none'",
            "script-src 'self'",
            "frame-ancestors 'none'",
            "form-action 'self'",
        ] {
            assert!(csp.contains(part), "{path}: {csp}");
        }
        assert_eq!(header("x-frame-options"), "DENY", "{path}");
        assert_eq!(header("x-content-type-options"), "nosniff", "{path}");
        assert_eq!(header("cache-control"), "no-store", "{path}");
        // Link pages carry a token in their URL: they send no referrer at all.
        let referrer = header("referrer-policy");
        assert!(
            referrer == "same-origin"
                || (path.starts_with("/review/") && referrer == "no-referrer"),
            "{path}: {referrer}"
        );
    }
}
