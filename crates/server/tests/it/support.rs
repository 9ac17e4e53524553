//! The test harness: an engine on a fresh SQLite database with the test
//! workflows loaded, tokens for each scope, and request helpers.

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderMap, Request, StatusCode, header};
use countersign_server::{AppState, ServerConfig, app, hash_token, new_token_secret};
use engine::{Catalog, Engine, StepKinds};
use serde_json::Value;
use store::{RunFilter, Store, Token};
use tower::ServiceExt;

pub const HOOK_SECRET: &str = "whsec-test-0123456789";

/// Rules only: completes at once. Amount > 1000 finishes as `escalated`.
pub const TRIAGE: &str = r#"
name: triage
input:
  schema:
    type: object
    required: [email, amount]
    properties:
      email: { type: string, format: email }
      amount: { type: number, minimum: 0 }
steps:
  - id: classify
    rules:
      - when: "input.amount > 100"
        then: { review: required }
  - id: route
    rules:
      - when: "input.amount > 1000"
        then: { finish: escalated }
"#;

/// Fails at its only step: a run to retry.
pub const FAILING: &str = r#"
name: failing
steps:
  - id: check
    rules:
      - when: "true"
        then: { fail: "always fails" }
"#;

/// Waits an hour on a timer before its last step: a run that stays unsettled.
/// A run that keeps trying: its call is refused (the discard port on
/// loopback) and the next attempt is an hour away, so it waits in a retry
/// back-off, which `?wait=` does not treat as settled.
pub const SLOW: &str = r#"
name: slow
steps:
  - id: call
    http: { url: "http://127.0.0.1:9/unreachable", timeout: 2s }
    retry: { max_attempts: 10, initial: 1h, max: 1h }
  - id: after
    rules:
      - when: "false"
        then: { finish: never }
"#;

/// Webhook with an HMAC secret taken from the environment.
pub const SIGNED_HOOK: &str = r#"
name: signed-hook
trigger:
  webhook: { secret: "${env:HOOK_SECRET}" }
input:
  schema: { type: object, required: [ticket], properties: { ticket: { type: string } } }
steps:
  - id: note
    rules:
      - when: "input.ticket == 'drop'"
        then: { finish: discarded }
"#;

/// Webhook that accepts unsigned requests.
pub const CONTACT_FORM: &str = r#"
name: contact
trigger:
  form: { title: "Contact us" }
input:
  schema:
    type: object
    required: [name, email, message]
    properties:
      name: { type: string, minLength: 1, maxLength: 100 }
      email: { type: string, format: email, maxLength: 200 }
      seats: { type: integer, minimum: 1, description: "How many people will use it" }
      message: { type: string, minLength: 1, maxLength: 5000 }
      ref: { type: string, maxLength: 100 }
  idempotency_field: ref
steps:
  - id: note
    rules:
      - when: "false"
        then: { finish: never }
"#;

pub const OPEN_HOOK: &str = r#"
name: open-hook
trigger:
  webhook: { unsigned: true }
steps:
  - id: note
    rules:
      - when: "false"
        then: { finish: never }
"#;

/// Triage, then a review of its drafts when the priority is high.
pub const REVIEWED: &str = r#"
name: reviewed
steps:
  - id: triage
    emit:
      output:
        summary: { type: string, maxLength: 40 }
        priority: { enum: [low, medium, high, urgent] }
      values:
        summary: "{{ input.text }}"
        priority: "{{ input.priority }}"
  - id: check
    rules:
      - when: input.priority == "low"
        then: { review: skip }
  - id: review
    review:
      fields: [summary, priority]
      queue: operations
  - id: after
    emit:
      values:
        summary: "{{ approved.summary }}"
"#;

/// `reviewed` with four-eyes; its deadline names `managers`, so that queue
/// is one the deployment knows (an escalation target).
pub const FOUR_EYES: &str = r#"
name: four-eyes
steps:
  - id: triage
    emit:
      output:
        summary: { type: string, maxLength: 40 }
        priority: { enum: [low, medium, high, urgent] }
      values:
        summary: "{{ input.text }}"
        priority: "{{ input.priority }}"
  - id: review
    review:
      fields: [summary, priority]
      queue: operations
      min_approvals: 2
      deadline: 720h
      on_deadline: { escalate: managers }
  - id: after
    emit:
      values:
        summary: "{{ approved.summary }}"
"#;

/// A secret for each kind of caller.
#[derive(Debug, Clone)]
pub struct Tokens {
    pub writer: String,
    pub writer_id: String,
    pub reader: String,
    pub reviewer: String,
    pub admin: String,
    pub revoked: String,
}

pub struct Harness {
    pub app: Router,
    pub store: Arc<dyn Store>,
    pub tokens: Tokens,
}

impl Harness {
    pub async fn new() -> Harness {
        Harness::with_config(ServerConfig::default()).await
    }

    pub async fn with_config(config: ServerConfig) -> Harness {
        Harness::with_engine(config, engine::Config::default()).await
    }

    /// A harness whose engine runs with `engine` settings (e.g. a short
    /// lease).
    pub async fn with_engine(config: ServerConfig, engine: engine::Config) -> Harness {
        let store: Arc<dyn Store> =
            Arc::new(store_sqlite::SqliteStore::open_memory().expect("open store"));
        let catalog = Arc::new(Catalog::new(
            {
                let mut kinds = StepKinds::builtin(reqwest::Client::new());
                kinds.register(Arc::new(crate::reviews::Emit));
                kinds
            },
            Arc::new(|name: &str| (name == "HOOK_SECRET").then(|| HOOK_SECRET.to_string())),
            store.clone(),
        ));
        for (src, path) in [
            (TRIAGE, "triage.yaml"),
            (FAILING, "failing.yaml"),
            (SLOW, "slow.yaml"),
            (SIGNED_HOOK, "signed-hook.yaml"),
            (OPEN_HOOK, "open-hook.yaml"),
            (CONTACT_FORM, "contact.yaml"),
            (REVIEWED, "reviewed.yaml"),
            (FOUR_EYES, "four-eyes.yaml"),
        ] {
            catalog
                .load_source(src, path)
                .await
                .unwrap_or_else(|e| panic!("{path}: {e}"));
        }
        let engine = Engine::start(store.clone(), catalog, engine);
        let (writer, writer_id) = mint(&store, "writer", &["runs:write"], false).await;
        let tokens = Tokens {
            writer,
            writer_id,
            reader: mint(&store, "reader", &["runs:read"], false).await.0,
            reviewer: mint(&store, "reviewer", &["reviews:decide"], false).await.0,
            admin: mint(&store, "admin", &["admin"], false).await.0,
            revoked: mint(&store, "revoked", &["admin"], true).await.0,
        };
        Harness {
            app: app(AppState::new(engine, config)),
            store,
            tokens,
        }
    }

    pub async fn send(&self, req: Request<Body>) -> Reply {
        let res = self
            .app
            .clone()
            .oneshot(req)
            .await
            .expect("router is infallible");
        let status = res.status();
        let headers = res.headers().clone();
        let bytes = axum::body::to_bytes(res.into_body(), usize::MAX)
            .await
            .expect("body");
        let text = String::from_utf8_lossy(&bytes).into_owned();
        let json = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        Reply {
            status,
            headers,
            json,
            text,
        }
    }

    /// `POST path` with a JSON body and an optional bearer token.
    pub async fn post(&self, path: &str, token: Option<&str>, body: &str) -> Reply {
        self.send(post_json(path, token, body)).await
    }

    pub async fn get(&self, path: &str, token: Option<&str>) -> Reply {
        let mut b = Request::get(path);
        if let Some(t) = token {
            b = b.header(header::AUTHORIZATION, format!("Bearer {t}"));
        }
        self.send(b.body(Body::empty()).unwrap()).await
    }

    /// Every run in the store.
    pub async fn run_count(&self) -> usize {
        self.store
            .list_runs(&RunFilter {
                limit: 10_000,
                ..RunFilter::default()
            })
            .await
            .expect("list runs")
            .len()
    }

    /// Submits a `triage` run and waits for it to settle; returns its id.
    pub async fn completed_run(&self) -> String {
        let r = self
            .post(
                "/api/v1/workflows/triage/runs?wait=5",
                Some(&self.tokens.writer),
                r#"{"email":"a@example.com","amount":5}"#,
            )
            .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
        assert_eq!(r.json["status"], "completed", "{}", r.text);
        r.json["run_id"].as_str().unwrap().to_string()
    }
}

pub fn post_json(path: &str, token: Option<&str>, body: &str) -> Request<Body> {
    let mut b = Request::post(path).header(header::CONTENT_TYPE, "application/json");
    if let Some(t) = token {
        b = b.header(header::AUTHORIZATION, format!("Bearer {t}"));
    }
    b.body(Body::from(body.to_string())).unwrap()
}

/// Stores a token; returns its secret and id.
pub async fn mint(
    store: &Arc<dyn Store>,
    name: &str,
    scopes: &[&str],
    revoked: bool,
) -> (String, String) {
    mint_for(store, name, scopes, revoked, None).await
}

/// [`mint`] for a token that acts for the user `user_id`.
pub async fn mint_for(
    store: &Arc<dyn Store>,
    name: &str,
    scopes: &[&str],
    revoked: bool,
    user_id: Option<&str>,
) -> (String, String) {
    let secret = new_token_secret();
    let id = format!("tok-{name}");
    store
        .create_token(Token {
            id: id.clone(),
            name: name.into(),
            hash: hash_token(&secret),
            scopes: scopes.iter().map(|s| s.to_string()).collect(),
            created_at_ms: 1,
            revoked_at_ms: None,
            user_id: user_id.map(str::to_string),
        })
        .await
        .expect("create token");
    if revoked {
        assert!(store.revoke_token(&id, 2).await.expect("revoke token"));
    }
    (secret, id)
}

#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub json: Value,
    pub text: String,
}

impl Reply {
    /// Asserts a problem+json answer with this status and `type` slug.
    pub fn assert_problem(&self, status: StatusCode, slug: &str) {
        assert_eq!(self.status, status, "{}", self.text);
        assert_eq!(
            self.headers
                .get(header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok()),
            Some("application/problem+json"),
            "{}",
            self.text
        );
        assert_eq!(
            self.json["type"],
            format!("https://countersign.dev/problems/{slug}"),
            "{}",
            self.text
        );
        assert_eq!(self.json["status"], status.as_u16(), "{}", self.text);
        assert!(
            self.json["title"].as_str().is_some_and(|t| !t.is_empty()),
            "{}",
            self.text
        );
        assert!(
            self.json["detail"].as_str().is_some_and(|t| !t.is_empty()),
            "{}",
            self.text
        );
    }
}

/// Polls `fut` at most `polls` times, yielding to the runtime between
/// polls, then drops it: a client that hangs up at that point.
pub async fn abandon_after<F: std::future::Future>(fut: F, polls: usize) -> Option<F::Output> {
    let mut fut = std::pin::pin!(fut);
    for _ in 0..polls {
        let poll = std::future::poll_fn(|cx| std::task::Poll::Ready(fut.as_mut().poll(cx))).await;
        if let std::task::Poll::Ready(out) = poll {
            return Some(out);
        }
        tokio::task::yield_now().await;
    }
    None
}
