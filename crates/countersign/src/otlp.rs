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
use tracing_subscriber::Layer;
use tracing_subscriber::filter::{LevelFilter, Targets};
use tracing_subscriber::registry::LookupSpan;

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

/// The filter for log output: everything `COUNTERSIGN_LOG` allows except
/// the trace spans, so logs read the same with traces on or off.
pub fn without_trace_spans() -> Targets {
    Targets::new()
        .with_default(LevelFilter::TRACE)
        .with_target(engine::trace::TARGET, LevelFilter::OFF)
}

#[cfg(test)]
mod tests {
    use super::*;

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
