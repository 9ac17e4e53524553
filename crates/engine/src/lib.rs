//! The durable workflow engine.
//!
//! Bird's-eye view: `Engine::submit` validates input and creates a run
//! (row + first events + a work item leased to this node) in one commit,
//! then drives it at once on this node. A driver executes steps one by
//! one; after each, the pure `domain::run::decide` says what comes next and
//! the result, the next work item and the audit events are committed
//! together. Runs that wait (timers, retries) or whose node died are found
//! again by the poller through their work items. Steps are known only
//! through the [`Step`] trait, so new kinds plug in without engine changes.

pub mod approval;
pub mod calibration;
mod catalog;
mod driver;
mod engine;
pub mod links;
pub mod metrics;
pub mod notify;
mod plan;
pub mod preview;
pub mod replay;
pub mod review;
pub mod step;
pub mod steps;
pub mod trace;

pub use approval::{ActionField, Approval};
pub use catalog::{
    Catalog, Compiled, Env, Files, LoadError, bundle, compile, compile_edited, compile_with,
    unbundle,
};
pub use engine::{
    Config, DEFAULT_IN_FLIGHT_MARGIN_MS, Engine, SubmitError, Submitted, WaitWakeups,
};
pub use metrics::Metrics;
pub use plan::{PreviewError, StepPreview};
pub use preview::{ActionPreview, Labelled};
pub use review::ReviewError;
pub use step::{Reconciled, Step, StepCx, StepKind, StepKinds};

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}
