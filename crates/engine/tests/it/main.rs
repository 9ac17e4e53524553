//! The engine's integration tests: real engines on temporary SQLite stores,
//! with outside systems played by `test-kit` fakes. One binary keeps link
//! times down (STYLE habit 12); each module covers one behaviour.
//!
//! Snapshots use `expect-test`: `UPDATE_EXPECT=1 cargo test -p
//! countersign-engine` rewrites them after an intended change.

mod audit;
mod cancel;
mod crash;
mod http;
mod input;
mod outbound;
mod preview;
mod replay;
mod review;
mod rules;
mod trace;
mod versioning;
mod wait;

use std::sync::Arc;

use store::{RunDetail, Store};

/// The run's steps, attempts and effects; panics if the run is missing.
pub async fn detail(store: &Arc<dyn Store>, run_id: &str) -> RunDetail {
    store
        .run_detail(run_id)
        .await
        .expect("read the run")
        .unwrap_or_else(|| panic!("run {run_id} not found"))
}

/// `(step_id, attempt, status)` of every recorded step attempt.
pub async fn attempts(store: &Arc<dyn Store>, run_id: &str) -> Vec<(String, u32, &'static str)> {
    detail(store, run_id)
        .await
        .steps
        .into_iter()
        .map(|s| (s.step_id, s.attempt, s.status.as_str()))
        .collect()
}

/// The parsed output of the latest completed attempt of `step`.
pub async fn output(store: &Arc<dyn Store>, run_id: &str, step: &str) -> serde_json::Value {
    let d = detail(store, run_id).await;
    let rec = d
        .steps
        .iter()
        .rev()
        .find(|s| s.step_id == step && s.output.is_some())
        .unwrap_or_else(|| {
            panic!(
                "step {step} of run {run_id} has no output; steps: {:#?}",
                d.steps
            )
        });
    serde_json::from_str(rec.output.as_deref().expect("checked")).expect("step output is JSON")
}
