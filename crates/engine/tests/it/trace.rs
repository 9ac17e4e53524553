//! Trace spans as an OpenTelemetry layer sees them: a drive, its step
//! attempts and their connector calls nest inside the run's derived trace,
//! and work beside a run (a decision shown in Slack) joins that trace too.

use std::sync::{Arc, Mutex};

use opentelemetry::trace::{SpanKind, Status, TracerProvider as _};
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::{SdkTracerProvider, SpanData, SpanExporter};
use sha2::Digest as _;
use tracing::Instrument as _;
use tracing_subscriber::layer::SubscriberExt as _;

/// Keeps every exported span.
#[derive(Debug, Clone, Default)]
struct Collect(Arc<Mutex<Vec<SpanData>>>);

impl SpanExporter for Collect {
    fn export(
        &self,
        batch: Vec<SpanData>,
    ) -> impl std::future::Future<Output = OTelSdkResult> + Send {
        self.0.lock().unwrap().extend(batch);
        std::future::ready(Ok(()))
    }
}

fn attrs(s: &SpanData) -> Vec<(String, String)> {
    let mut v: Vec<(String, String)> = s
        .attributes
        .iter()
        .map(|kv| (kv.key.to_string(), kv.value.to_string()))
        .filter(|(k, _)| !matches!(k.as_str(), "busy_ns" | "idle_ns" | "target"))
        .collect();
    v.sort();
    v
}

fn pairs(p: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut v: Vec<(String, String)> = p
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    v.sort();
    v
}

#[test]
fn a_runs_spans_share_its_derived_trace_and_nest() {
    let collect = Collect::default();
    let provider = SdkTracerProvider::builder()
        .with_simple_exporter(collect.clone())
        .build();
    let subscriber = tracing_subscriber::registry().with(
        tracing_opentelemetry::layer()
            .with_tracer(provider.tracer("test"))
            .with_location(false)
            .with_threads(false),
    );
    tracing::subscriber::with_default(subscriber, || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        rt.block_on(async {
            let run = countersign_engine::trace::run_span("run-1", "intake", 3);
            let step = countersign_engine::trace::step_span(&run, "crm", "run-1", "record", 2);
            let answer: Result<(), &str> = countersign_engine::trace::call(
                "monday",
                "mutation Create",
                async { Err("secret-bearing vendor answer") },
                |a| if a.is_ok() { "ok" } else { "transient" },
            )
            .instrument(step.clone())
            .await;
            assert!(answer.is_err());
            countersign_engine::trace::record_step(&step, "failed", "transient");
            drop((step, run));
            let beside = countersign_engine::trace::beside_run("run-1", "review decision");
            countersign_engine::trace::call("slack", "chat.update", async {}, |_| "ok")
                .instrument(beside.clone())
                .await;
        });
    });
    let spans = collect.0.lock().unwrap().clone();
    let named = |n: &str| {
        spans
            .iter()
            .find(|s| s.name == n)
            .unwrap_or_else(|| panic!("no span {n:?} in {spans:#?}"))
    };
    let (run, step, call) = (named("run"), named("crm"), named("monday mutation Create"));
    let (beside, update) = (named("review decision"), named("slack chat.update"));
    assert_eq!(spans.len(), 5, "{spans:#?}");

    // One trace: the first 16 bytes of SHA-256 of the run id.
    let digest = sha2::Sha256::digest(b"run-1");
    for s in &spans {
        assert_eq!(s.span_context.trace_id().to_bytes()[..], digest[..16]);
    }
    // The drive and the work beside it hang from the run's remote parent.
    for s in [run, beside] {
        assert_eq!(s.parent_span_id.to_bytes()[..], digest[16..24]);
        assert!(s.parent_span_is_remote);
    }
    assert_eq!(step.parent_span_id, run.span_context.span_id());
    assert_eq!(call.parent_span_id, step.span_context.span_id());
    assert_eq!(update.parent_span_id, beside.span_context.span_id());

    // Exactly the chosen attributes: ids, kinds, numbers and labels.
    assert_eq!(
        attrs(run),
        pairs(&[
            ("run_id", "run-1"),
            ("workflow", "intake"),
            ("version", "3")
        ])
    );
    assert_eq!(
        attrs(step),
        pairs(&[
            ("run_id", "run-1"),
            ("step_id", "record"),
            ("kind", "crm"),
            ("attempt", "2"),
            ("status", "failed"),
            ("outcome", "transient"),
        ])
    );
    assert!(matches!(step.status, Status::Error { .. }));
    assert_eq!(
        attrs(call),
        pairs(&[
            ("connector", "monday"),
            ("operation", "mutation Create"),
            ("outcome", "transient"),
        ])
    );
    assert!(matches!(call.status, Status::Error { .. }));
    assert_eq!(call.span_kind, SpanKind::Client);
    assert_eq!(
        attrs(update).last().unwrap(),
        &("outcome".into(), "ok".into())
    );
    assert_eq!(update.status, Status::Unset);
}
