//! OpenTelemetry traces over OTLP/HTTP (protobuf), on when
//! `OTEL_EXPORTER_OTLP_ENDPOINT` (or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`)
//! is set for a command that executes runs.
//!
//! Only the spans of [`engine::trace`] (target [`engine::trace::TARGET`])
//! reach the exporter: runs, steps and connector calls, with the
//! attributes chosen there. Log events never become span events, so a log
//! line's text never leaves in a trace. Spans are batched on the SDK's own
//! thread and flushed by [`Traces::shutdown`] when the command ends.

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::{Protocol, WithExportConfig as _};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_subscriber::filter::{FilterExt as _, LevelFilter, Targets};
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::{EnvFilter, Layer, Registry};

/// The exporting tracer provider, held until the command ends.
pub struct Traces {
    provider: SdkTracerProvider,
}

/// Where traces go: `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` as it is, else
/// `OTEL_EXPORTER_OTLP_ENDPOINT` with `/v1/traces` appended (the OTLP
/// specification's rules); `None` when neither is set. `Err` names the
/// variable that is not an http(s) URL.
pub fn endpoint(env: &dyn Fn(&str) -> Option<String>) -> Result<Option<String>, String> {
    let get = |k: &str| {
        env(k)
            .map(|v| v.trim().to_string())
            .filter(|v| !v.is_empty())
    };
    let (var, url) = match (
        get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"),
        get("OTEL_EXPORTER_OTLP_ENDPOINT"),
    ) {
        (Some(url), _) => ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", url),
        (None, Some(base)) => (
            "OTEL_EXPORTER_OTLP_ENDPOINT",
            format!("{}/v1/traces", base.trim_end_matches('/')),
        ),
        (None, None) => return Ok(None),
    };
    let valid = reqwest::Url::parse(&url)
        .ok()
        .filter(|u| matches!(u.scheme(), "http" | "https") && u.host_str().is_some());
    match valid {
        Some(_) => Ok(Some(url)),
        // The value itself is not repeated: collectors' URLs can carry
        // credentials.
        None => Err(format!(
            "{var}: not an http:// or https:// URL (OTLP traces are sent over HTTP with protobuf)"
        )),
    }
}

impl Traces {
    /// Starts the exporter when [`endpoint`] names one. The service name
    /// is `OTEL_SERVICE_NAME`, else `countersign`; `OTEL_EXPORTER_OTLP_HEADERS`
    /// and the other standard variables are read by the exporter.
    pub fn from_env(env: &dyn Fn(&str) -> Option<String>) -> Result<Option<Traces>, String> {
        let Some(url) = endpoint(env)? else {
            return Ok(None);
        };
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_protocol(Protocol::HttpBinary)
            .with_endpoint(url)
            .build()
            .map_err(|e| format!("OTEL_EXPORTER_OTLP_ENDPOINT: cannot start the exporter: {e}"))?;
        let mut resource = Resource::builder();
        if env("OTEL_SERVICE_NAME").is_none_or(|v| v.trim().is_empty()) {
            resource = resource.with_service_name("countersign");
        }
        let provider = SdkTracerProvider::builder()
            .with_batch_exporter(exporter)
            .with_resource(resource.build())
            .build();
        Ok(Some(Traces { provider }))
    }

    /// The layer that turns [`engine::trace`] spans into OpenTelemetry
    /// spans; it sees nothing else.
    pub fn layer<S>(&self) -> impl Layer<S>
    where
        S: tracing::Subscriber + for<'a> LookupSpan<'a> + Send + Sync,
    {
        tracing_opentelemetry::layer()
            .with_tracer(self.provider.tracer("countersign"))
            .with_threads(false)
            .with_location(false)
            .with_filter(Targets::new().with_target(engine::trace::TARGET, LevelFilter::TRACE))
    }

    /// Exports what is still batched and stops the exporter.
    pub fn shutdown(self) {
        if let Err(e) = self.provider.shutdown() {
            tracing::warn!(error = %e, "flushing traces at shutdown failed");
        }
    }
}

/// The process's subscriber: `logs` shows what `filter` allows except the
/// trace spans (so logs read the same with traces on or off), and
/// `traces`, when on, sees only the trace spans. With traces off no layer
/// wants those spans, so `tracing` disables them at their call sites.
/// (Not an `Option` layer: an absent one answers "enabled" for everything.)
pub fn subscriber(
    logs: Box<dyn Layer<Registry> + Send + Sync>,
    filter: EnvFilter,
    traces: Option<&Traces>,
) -> Box<dyn tracing::Subscriber + Send + Sync> {
    let without_trace_spans = Targets::new()
        .with_default(LevelFilter::TRACE)
        .with_target(engine::trace::TARGET, LevelFilter::OFF);
    let logged =
        tracing_subscriber::registry().with(logs.with_filter(without_trace_spans.and(filter)));
    match traces {
        Some(t) => Box::new(logged.with(t.layer())),
        None => Box::new(logged),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;

    /// A log writer the test reads back.
    #[derive(Clone, Default)]
    struct Buf(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Buf {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    /// Logs a line inside a run's and a step's span, as the engine does;
    /// answers whether the spans were enabled and the log text.
    fn log_in_spans(traces: Option<&Traces>) -> (bool, String) {
        let buf = Buf::default();
        let writer = buf.clone();
        let logs = tracing_subscriber::fmt::layer()
            .with_ansi(false)
            .with_writer(move || writer.clone())
            .boxed();
        // Even at the most verbose log level.
        let sub = subscriber(logs, EnvFilter::new("trace"), traces);
        let enabled = tracing::subscriber::with_default(sub, || {
            let run = engine::trace::run_span("r1", "wf", 1);
            let step = engine::trace::step_span(&run, "llm", "r1", "triage", 1);
            let _in = step.enter();
            tracing::warn!(run_id = "r1", "step attempt failed");
            !run.is_disabled() && !step.is_disabled()
        });
        let text = String::from_utf8(buf.0.lock().unwrap().clone()).unwrap();
        (enabled, text)
    }

    #[test]
    fn trace_spans_are_off_without_an_endpoint_and_never_in_logs() {
        let (enabled, off) = log_in_spans(None);
        assert!(
            !enabled,
            "no layer wants the spans: disabled at the call site"
        );
        assert!(off.contains("step attempt failed run_id=\"r1\""), "{off}");
        assert!(!off.contains("triage") && !off.contains("llm"), "{off}");

        // Nothing listens on port 9: exporting the two spans at shutdown
        // is refused, which costs nothing here.
        let traces = Traces::from_env(&|k| {
            (k == "OTEL_EXPORTER_OTLP_ENDPOINT").then(|| "http://127.0.0.1:9".to_string())
        })
        .unwrap()
        .expect("traces on");
        let (enabled, on) = log_in_spans(Some(&traces));
        traces.shutdown();
        assert!(enabled, "the OpenTelemetry layer wants the spans");
        let line = |t: &str| {
            t.lines()
                .map(|l| l.split_once("WARN").map_or("", |x| x.1).to_string())
                .collect::<Vec<_>>()
        };
        assert_eq!(
            line(&on),
            line(&off),
            "logs read the same with traces on or off"
        );
    }

    fn env<'a>(vars: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |k| {
            vars.iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| v.to_string())
        }
    }

    #[test]
    fn the_endpoint_follows_the_otlp_variables() {
        assert_eq!(endpoint(&env(&[])), Ok(None));
        assert_eq!(
            endpoint(&env(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318/")])),
            Ok(Some("http://c:4318/v1/traces".into()))
        );
        assert_eq!(
            endpoint(&env(&[
                ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318"),
                ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "https://t/x"),
            ])),
            Ok(Some("https://t/x".into()))
        );
        let bad = endpoint(&env(&[(
            "OTEL_EXPORTER_OTLP_ENDPOINT",
            "grpc://user:hunter2@c:4317",
        )]))
        .unwrap_err();
        assert!(bad.starts_with("OTEL_EXPORTER_OTLP_ENDPOINT: "), "{bad}");
        assert!(!bad.contains("hunter2"), "{bad}");
    }
}
