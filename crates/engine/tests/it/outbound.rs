//! Outbound safety of the `http` step (issue 12, item 3): values encoded
//! per URL component, hosts from data only within `allow_hosts`, redirects
//! off by default and headers never carried to another origin, and a
//! response size limit read incrementally.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderMap, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;
use store::{EffectStatus, RunStatus};
use test_kit::fixture::{engine_with, events_of, wait_settled};

use crate::{detail, output};

/// One request a probe saw: path with query, and lower-cased headers.
#[derive(Debug, Clone)]
struct Seen {
    target: String,
    headers: BTreeMap<String, String>,
}

/// A small receiver whose paths misbehave on purpose.
struct Probe {
    url: String,
    seen: Arc<Mutex<Vec<Seen>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Probe {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Probe {
    /// `other` is where `/away` redirects to.
    async fn start(other: Option<&str>) -> Probe {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let seen = Arc::new(Mutex::new(Vec::new()));
        let away = other.map(|o| format!("{o}/landing"));
        let log = seen.clone();
        let app = Router::new().fallback(move |uri: Uri, headers: HeaderMap| {
            let log = log.clone();
            let away = away.clone();
            async move {
                log.lock().unwrap().push(Seen {
                    target: uri
                        .path_and_query()
                        .map(ToString::to_string)
                        .unwrap_or_default(),
                    headers: headers
                        .iter()
                        .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("").to_string()))
                        .collect(),
                });
                answer(uri.path(), away.as_deref())
            }
        });
        let task = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        Probe { url, seen, task }
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

const MIB: usize = 1 << 20;

fn answer(path: &str, away: Option<&str>) -> Response {
    match path {
        "/away" => (
            StatusCode::FOUND,
            [(header::LOCATION, away.unwrap_or("/landing").to_string())],
        )
            .into_response(),
        "/here" => (
            StatusCode::TEMPORARY_REDIRECT,
            [(header::LOCATION, "/landing")],
        )
            .into_response(),
        // 30 MiB, chunked (no Content-Length): only reading tells the size.
        "/big" => {
            let chunks = (0..30 * 16).map(|_| Ok::<_, std::io::Error>(vec![b'a'; MIB / 16]));
            Body::from_stream(futures_util::stream::iter(chunks)).into_response()
        }
        // 200 KB of JSON: under the limit, over what events copy.
        "/medium" => axum::Json(json!({ "blob": "m".repeat(200_000) })).into_response(),
        // 2 MiB with a Content-Length: refused before reading.
        "/big-known" => vec![b'b'; 2 * MIB].into_response(),
        _ => axum::Json(json!({ "ok": true, "path": path })).into_response(),
    }
}

fn workflow(url: &str, extra: &str) -> String {
    format!(
        r#"
name: out
steps:
  - id: call
    retry: {{ max_attempts: 1 }}
    http:
      url: "{url}"
      headers: {{ X-Api-Key: "k-secret-123" }}
      body: {{ name: "{{{{ input.name }}}}" }}
{extra}"#
    )
}

#[tokio::test]
async fn a_path_value_cannot_change_the_path_or_add_a_query() {
    let probe = Probe::start(None).await;
    let wf = workflow(
        &format!(
            "{}/echo/{{{{ input.name }}}}?q={{{{ input.q }}}}",
            probe.url
        ),
        "",
    );
    let (engine, store) = engine_with(&wf).await;
    let s = engine
        .submit(
            "out",
            json!({ "name": "../../internal-metadata?stolen=", "q": "a&admin=1" }),
            None,
            "test",
        )
        .await
        .unwrap();
    let run = wait_settled(&store, &s.run_id).await;
    assert_eq!(run.status, RunStatus::Completed, "{:?}", run.error);
    let seen = probe.seen();
    assert_eq!(seen.len(), 1);
    assert_eq!(
        seen[0].target,
        "/echo/..%2F..%2Finternal-metadata%3Fstolen%3D?q=a%26admin%3D1"
    );
}

#[tokio::test]
async fn a_host_from_data_must_be_in_allow_hosts() {
    let probe = Probe::start(None).await;
    let port = probe.url.rsplit(':').next().unwrap().to_string();
    let wf = workflow("{{ input.url }}", "      allow_hosts: [\"127.0.0.1\"]\n");
    let (engine, store) = engine_with(&wf).await;

    let s = engine
        .submit(
            "out",
            json!({ "url": format!("{}/ok", probe.url), "name": "a" }),
            None,
            "test",
        )
        .await
        .unwrap();
    let run = wait_settled(&store, &s.run_id).await;
    assert_eq!(run.status, RunStatus::Completed, "{:?}", run.error);
    assert_eq!(probe.seen().len(), 1);

    let s = engine
        .submit(
            "out",
            json!({ "url": format!("http://localhost:{port}/x"), "name": "a" }),
            None,
            "test",
        )
        .await
        .unwrap();
    let run = wait_settled(&store, &s.run_id).await;
    assert_eq!(run.status, RunStatus::Failed);
    let error = run.error.unwrap_or_default();
    assert!(error.contains("allow_hosts"), "{error}");
    assert_eq!(probe.seen().len(), 1, "the refused host was never called");
}

#[tokio::test]
async fn redirects_are_not_followed_by_default() {
    let other = Probe::start(None).await;
    let probe = Probe::start(Some(&other.url)).await;
    let (engine, store) = engine_with(&workflow(&format!("{}/away", probe.url), "")).await;
    let s = engine
        .submit("out", json!({ "name": "a" }), None, "test")
        .await
        .unwrap();
    let run = wait_settled(&store, &s.run_id).await;
    assert_eq!(run.status, RunStatus::Failed);
    let error = run.error.unwrap_or_default();
    assert!(error.contains("follow_redirects"), "{error}");
    assert!(other.seen().is_empty(), "nothing reached the other host");
}

#[tokio::test]
async fn a_followed_redirect_never_carries_headers_to_another_origin() {
    let other = Probe::start(None).await;
    let probe = Probe::start(Some(&other.url)).await;
    let wf = workflow(
        &format!("{}/{{{{ input.path }}}}", probe.url),
        "      follow_redirects: true\n",
    );
    let (engine, store) = engine_with(&wf).await;

    let s = engine
        .submit("out", json!({ "name": "a", "path": "away" }), None, "test")
        .await
        .unwrap();
    let run = wait_settled(&store, &s.run_id).await;
    assert_eq!(run.status, RunStatus::Completed, "{:?}", run.error);
    let landed = other.seen();
    assert_eq!(landed.len(), 1);
    assert_eq!(landed[0].target, "/landing");
    assert_eq!(landed[0].headers.get("x-api-key"), None);
    assert_eq!(landed[0].headers.get("idempotency-key"), None);
    assert_eq!(probe.seen()[0].headers["x-api-key"], "k-secret-123");

    // On the same origin the headers stay.
    let s = engine
        .submit("out", json!({ "name": "a", "path": "here" }), None, "test")
        .await
        .unwrap();
    let run = wait_settled(&store, &s.run_id).await;
    assert_eq!(run.status, RunStatus::Completed, "{:?}", run.error);
    let seen = probe.seen();
    let last = seen.last().unwrap();
    assert_eq!(last.target, "/landing");
    assert_eq!(last.headers["x-api-key"], "k-secret-123");
    assert_eq!(
        output(&store, &s.run_id, "call").await["body"]["path"],
        "/landing"
    );
}

#[tokio::test]
async fn an_oversized_response_fails_the_step_and_is_not_stored() {
    let probe = Probe::start(None).await;
    let wf = workflow(&format!("{}/{{{{ input.path }}}}", probe.url), "");
    let (engine, store) = engine_with(&wf).await;
    for path in ["big", "big-known"] {
        let s = engine
            .submit("out", json!({ "name": "a", "path": path }), None, "test")
            .await
            .unwrap();
        let run = wait_settled(&store, &s.run_id).await;
        assert_eq!(run.status, RunStatus::Failed, "{path}");
        let error = run.error.unwrap_or_default();
        assert!(
            error.contains("larger than max_response_bytes (1048576 bytes)"),
            "{path}: {error}"
        );
        let d = detail(&store, &s.run_id).await;
        assert!(d.steps.iter().all(|s| s.output.is_none()), "{path}");
        assert_eq!(
            d.effects[0].status,
            EffectStatus::Completed,
            "{path}: the call itself was made"
        );
    }

    // The limit is the step's to set.
    let wf = workflow(
        &format!("{}/small", probe.url),
        "      max_response_bytes: 8\n",
    );
    let (engine, store) = engine_with(&wf).await;
    let s = engine
        .submit("out", json!({ "name": "a" }), None, "test")
        .await
        .unwrap();
    let run = wait_settled(&store, &s.run_id).await;
    assert_eq!(run.status, RunStatus::Failed);
    assert!(run.error.unwrap_or_default().contains("(8 bytes)"));
}

#[tokio::test]
async fn a_large_response_is_stored_once_and_the_event_keeps_its_digest() {
    use sha2::Digest;
    let probe = Probe::start(None).await;
    let (engine, store) = engine_with(&workflow(&format!("{}/medium", probe.url), "")).await;
    let s = engine
        .submit("out", json!({ "name": "a" }), None, "test")
        .await
        .unwrap();
    let run = wait_settled(&store, &s.run_id).await;
    assert_eq!(run.status, RunStatus::Completed, "{:?}", run.error);
    let d = detail(&store, &s.run_id).await;
    let stored = d.steps[0].output.clone().unwrap();
    assert!(stored.len() > 200_000);
    let completed = events_of(&store, &s.run_id, domain::event::kind::STEP_COMPLETED).await;
    assert_eq!(completed.len(), 1);
    let e = &completed[0];
    assert!(e.get("output").is_none(), "the output is not copied: {e}");
    assert_eq!(e["output_bytes"], json!(stored.len()));
    assert_eq!(
        e["output_sha256"],
        json!(hex::encode(sha2::Sha256::digest(stored.as_bytes())))
    );
}

#[tokio::test]
async fn a_deployment_can_refuse_private_addresses() {
    use countersign_engine::steps::http::{Kind, Policy};
    use countersign_engine::{Catalog, Engine, StepKinds};
    use test_kit::fixture::{config, env};

    let probe = Probe::start(None).await;
    let port = probe.url.rsplit(':').next().unwrap().to_string();
    let store: Arc<dyn store::Store> =
        Arc::new(store_sqlite::SqliteStore::open_temp().expect("temporary store"));
    let mut kinds = StepKinds::builtin(reqwest::Client::new());
    kinds.register(Arc::new(Kind::with_policy(Policy { deny_private: true })));
    let catalog = Catalog::new(kinds, env(&[]), store.clone());
    let wf = workflow(
        "{{ input.url }}",
        "      allow_hosts: [127.0.0.1, localhost]\n",
    );
    catalog.load_source(&wf, "test.yaml").await.unwrap();
    let engine = Engine::start(store.clone(), Arc::new(catalog), config());
    // A literal address and a name that resolves to one.
    for url in [probe.url.clone(), format!("http://localhost:{port}")] {
        let s = engine
            .submit(
                "out",
                json!({ "name": "a", "url": format!("{url}/x") }),
                None,
                "test",
            )
            .await
            .unwrap();
        let run = wait_settled(&store, &s.run_id).await;
        assert_eq!(run.status, RunStatus::Failed, "{url}");
        let error = run.error.unwrap_or_default();
        assert!(
            error.contains("COUNTERSIGN_HTTP_DENY_PRIVATE"),
            "{url}: {error}"
        );
    }
    assert!(
        probe.seen().is_empty(),
        "no call reached the private address"
    );
}
