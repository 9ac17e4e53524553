//! Trace spans for runs, steps and connector calls (OpenTelemetry, when
//! the binary exports them; see `docs/operations.md`, "Traces").
//!
//! Every span here has the target [`TARGET`]. The binary lets only an
//! OpenTelemetry layer see that target, and only when
//! `OTEL_EXPORTER_OTLP_ENDPOINT` is set; otherwise no subscriber is
//! interested, `tracing` caches that per call site, and creating a span
//! costs one atomic load: no allocation, no attribute formatted, no lock.
//! Log lines do not change either way.
//!
//! One trace per run, across nodes and restarts: the trace id is derived
//! from the run id alone ([`trace_id`]), and each time a node drives the
//! run its `run` span is parented on a remote span context with that
//! trace id ([`run_parent`]), so a run resumed after a crash on another
//! node lands in the same trace.
//!
//! What spans carry is chosen here, field by field: ids, kinds, attempt
//! numbers, statuses and outcome labels. Never a credential, a header, a
//! request or response body, a run's input or a step's output or error
//! text (which may quote a vendor's answer).

use std::future::Future;

use domain::run::StepOutcome;

use opentelemetry::trace::{SpanContext, SpanId, TraceContextExt, TraceFlags, TraceId, TraceState};
use sha2::{Digest, Sha256};
use tracing::Span;
use tracing::field::Empty;
use tracing_opentelemetry::OpenTelemetrySpanExt;

/// The `tracing` target of every span in this module.
pub const TARGET: &str = "countersign::trace";

/// The trace id of run `run_id`: the first 16 bytes of SHA-256 of its id.
pub fn trace_id(run_id: &str) -> TraceId {
    let digest = Sha256::digest(run_id.as_bytes());
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest[..16]);
    if bytes == [0; 16] {
        // The all-zero id is invalid in OpenTelemetry; never the case for
        // a real digest, but the id must stay valid.
        bytes[15] = 1;
    }
    TraceId::from_bytes(bytes)
}

/// The span id every `run` span of run `run_id` names as its (remote)
/// parent: bytes 16..24 of the same digest. No span with this id is ever
/// exported; it ties a run's drives together under one parent.
pub fn run_parent_span_id(run_id: &str) -> SpanId {
    let digest = Sha256::digest(run_id.as_bytes());
    let mut bytes = [0u8; 8];
    bytes.copy_from_slice(&digest[16..24]);
    if bytes == [0; 8] {
        bytes[7] = 1;
    }
    SpanId::from_bytes(bytes)
}

/// The remote, sampled span context a drive of run `run_id` is parented on.
pub fn run_parent(run_id: &str) -> SpanContext {
    SpanContext::new(
        trace_id(run_id),
        run_parent_span_id(run_id),
        TraceFlags::SAMPLED,
        true,
        TraceState::default(),
    )
}

/// The span of one drive of a run on this node (from a claim or a start
/// until the run waits, ends or leaves this node), in the run's trace.
pub fn run_span(run_id: &str, workflow: &str, version: i64) -> Span {
    let span = tracing::info_span!(
        target: TARGET,
        parent: None,
        "run",
        run_id = run_id,
        workflow = workflow,
        version = version,
    );
    if !span.is_disabled() {
        let cx = opentelemetry::Context::new().with_remote_span_context(run_parent(run_id));
        // Fails only without the OpenTelemetry layer (then nothing is
        // exported anyway).
        let _ = span.set_parent(cx);
    }
    span
}

/// The span of work done for a run outside its drives — updating a review
/// message after a decision taken in Slack — in the run's trace, beside
/// its drives. `what` names it (e.g. `review decision`).
pub fn beside_run(run_id: &str, what: &'static str) -> Span {
    let span = tracing::info_span!(
        target: TARGET,
        parent: None,
        "beside run",
        otel.name = what,
        run_id = run_id,
    );
    if !span.is_disabled() {
        let cx = opentelemetry::Context::new().with_remote_span_context(run_parent(run_id));
        let _ = span.set_parent(cx);
    }
    span
}

/// The span of one step attempt, named after the step's kind (`llm`,
/// `crm`, …), a child of `run`. [`record_step`] adds its status.
pub fn step_span(run: &Span, kind: &str, run_id: &str, step_id: &str, attempt: u32) -> Span {
    tracing::info_span!(
        target: TARGET,
        parent: run,
        "step",
        otel.name = kind,
        run_id = run_id,
        step_id = step_id,
        kind = kind,
        attempt = attempt,
        status = Empty,
        outcome = Empty,
        otel.status_code = Empty,
    )
}

/// Records how a step attempt ended: `status` (completed, failed,
/// skipped, waiting) and `outcome` (the step outcome's kind: done,
/// transient, permanent, …). A failed attempt marks the span as an error.
pub fn record_step(span: &Span, status: &str, outcome: &str) {
    if span.is_disabled() {
        return;
    }
    span.record("status", status);
    span.record("outcome", outcome);
    if status == "failed" {
        span.record("otel.status_code", "error");
    }
}

/// The kind of a step outcome, as a span records it.
pub fn outcome_label(outcome: &StepOutcome) -> &'static str {
    match outcome {
        StepOutcome::Done { .. } => "done",
        StepOutcome::Skipped { .. } => "skipped",
        StepOutcome::Finish { .. } => "finish",
        StepOutcome::Sleep { .. } => "sleep",
        StepOutcome::Suspend { .. } => "suspend",
        StepOutcome::Transient { .. } => "transient",
        StepOutcome::Permanent { .. } => "permanent",
    }
}

/// Runs one call to an outside system — `connector` (monday, slack,
/// gmail, smtp, http, llm) doing `operation` (a GraphQL operation, an API
/// method, an HTTP method) — inside a `connector` span, a child of the
/// current span (the step's), and records `outcome(&answer)` (`ok`, or an
/// error class such as `rate_limited`, `transient`, `unauthorized`).
pub async fn call<T>(
    connector: &'static str,
    operation: &str,
    fut: impl Future<Output = T>,
    outcome: impl FnOnce(&T) -> &'static str,
) -> T {
    let span = tracing::info_span!(
        target: TARGET,
        "connector",
        otel.name = format!("{connector} {operation}"),
        otel.kind = "client",
        connector = connector,
        operation = operation,
        outcome = Empty,
        otel.status_code = Empty,
    );
    if span.is_disabled() {
        return fut.await;
    }
    let answer = tracing::Instrument::instrument(fut, span.clone()).await;
    let label = outcome(&answer);
    span.record("outcome", label);
    if label != "ok" {
        span.record("otel.status_code", "error");
    }
    answer
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_runs_trace_id_depends_on_its_id_alone() {
        let a = "0192f0c4-0000-7000-8000-000000000001";
        let b = "0192f0c4-0000-7000-8000-000000000002";
        assert_eq!(trace_id(a), trace_id(a));
        assert_ne!(trace_id(a), trace_id(b));
        let digest = Sha256::digest(a.as_bytes());
        assert_eq!(trace_id(a).to_bytes()[..], digest[..16]);
        assert_eq!(run_parent_span_id(a).to_bytes()[..], digest[16..24]);
        let parent = run_parent(a);
        assert!(parent.is_valid() && parent.is_remote() && parent.is_sampled());
    }
}
