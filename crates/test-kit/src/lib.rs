//! Fakes and fixtures shared by tests.
//!
//! - [`fake_http`]: an in-process idempotent HTTP receiver with fault modes,
//!   for the `http` step (and for child processes, over TCP).
//! - [`fixture`]: engines on throwaway SQLite stores, and polling helpers
//!   that wait with a deadline instead of sleeping.
//! - [`check`]: one workflow + one input → a deterministic transcript of the
//!   run, for `expect-test` snapshots (STYLE habit 11).

pub mod check;
pub mod emit;
pub mod fake_http;
pub mod fixture;

pub use check::{check, check_env, transcript};
pub use fake_http::FakeHttp;
pub mod fake_gmail;
pub mod fake_monday;
pub mod fake_openai;
pub mod fake_otlp;
pub mod fake_slack;
pub mod fake_smtp;
