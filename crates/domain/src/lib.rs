//! Countersign's functional core.
//!
//! Architecture invariant: this crate does no I/O. It has no async runtime,
//! no database, no network and no clock: time comes in as arguments
//! (`now_ms`), randomness as a sample (`jitter`). Everything here is plain
//! data and functions, tested without fakes. `tests/it/purity.rs` checks the
//! manifest stays that way.

pub mod calibration;
pub mod diag;
pub mod event;
pub mod expr;
pub mod retry;
pub mod review;
pub mod run;
pub mod steps;
pub mod url;
pub mod workflow;
pub mod yaml;

pub use diag::Diagnostic;
