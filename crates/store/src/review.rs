//! Review tasks and their decisions: rows and the [`Reviews`] half of the
//! store boundary.
//!
//! A task is created by the `review` step (idempotently, one per run and
//! step) before the run suspends. A decision is one transaction: the
//! decision row, per-field results (the calibration data), audit events,
//! and, when final, the run's status (queued again with its work item due
//! now, or rejected) with a revision bump that fences any worker still
//! holding the run.

use async_trait::async_trait;

use crate::{NewEvent, Result, RunStatus};

/// Where a task stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ReviewStatus {
    /// Waiting for (more) decisions; also after an escalation.
    Pending,
    Approved,
    Rejected,
    /// Handed to a person ("needs manual handling"); the run ended
    /// `handed_off`.
    HandedOff,
}

impl ReviewStatus {
    pub const ALL: [ReviewStatus; 4] = [
        ReviewStatus::Pending,
        ReviewStatus::Approved,
        ReviewStatus::Rejected,
        ReviewStatus::HandedOff,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ReviewStatus::Pending => "pending",
            ReviewStatus::Approved => "approved",
            ReviewStatus::Rejected => "rejected",
            ReviewStatus::HandedOff => "handed_off",
        }
    }

    pub fn parse(s: &str) -> Option<ReviewStatus> {
        ReviewStatus::ALL.into_iter().find(|st| st.as_str() == s)
    }
}

/// A task to create.
#[derive(Debug, Clone)]
pub struct NewReview {
    pub id: String,
    pub run_id: String,
    pub step_index: usize,
    pub step_id: String,
    pub workflow: String,
    pub queue: String,
    /// JSON text: `[{name, step, draft, schema}]`.
    pub fields: String,
    pub min_approvals: u32,
    pub deadline_at_ms: Option<i64>,
    /// JSON text of the `on_deadline` policy, or `null`.
    pub on_deadline: String,
    /// JSON text: channels to notify.
    pub notify: String,
    pub created_at_ms: i64,
}

/// One decision act on a task (an approval that still needs a second
/// approver is an act too).
#[derive(Debug, Clone, PartialEq)]
pub struct ReviewAct {
    pub seq: i64,
    /// Readable: `user:ann@example.com`, `token:<id>`, `deadline`.
    pub actor: String,
    /// The person behind the act, whatever the channel (inbox, API token
    /// tied to a user, Slack member or email link of a user); `None` for a
    /// channel that names no user (and for acts recorded before v5).
    /// Four-eyes compares these.
    pub user_id: Option<String>,
    /// `approve`, `reject`, `escalate`, or `expire` (the deadline passed).
    pub decision: String,
    /// JSON text of the edited values (`{}` when none).
    pub values: String,
    pub comment: Option<String>,
    pub reason: Option<String>,
    /// Target queue of an escalation.
    pub queue: Option<String>,
    pub at_ms: i64,
}

/// Per-field result of a decided review: the calibration record (DESIGN §8).
#[derive(Debug, Clone, PartialEq)]
pub struct ReviewField {
    pub field: String,
    /// JSON text of the AI draft.
    pub draft: String,
    /// JSON text of the approved value.
    pub value: String,
    pub changed: bool,
    pub decided_by: String,
    pub decided_at_ms: i64,
    pub comment: Option<String>,
}

/// A stored task with its acts and (once approved) field results.
#[derive(Debug, Clone, PartialEq)]
pub struct Review {
    pub id: String,
    pub run_id: String,
    pub step_index: usize,
    pub step_id: String,
    pub workflow: String,
    pub queue: String,
    pub status: ReviewStatus,
    pub fields: String,
    pub min_approvals: u32,
    /// Actor of the run's `run.received` event.
    pub submitter: Option<String>,
    pub deadline_at_ms: Option<i64>,
    pub on_deadline: String,
    pub notify: String,
    pub created_at_ms: i64,
    pub decided_at_ms: Option<i64>,
    pub decided_by: Option<String>,
    pub reason: Option<String>,
    /// Bumped by every act; decisions are fenced by it.
    pub rev: i64,
    pub acts: Vec<ReviewAct>,
    pub results: Vec<ReviewField>,
}

/// What a decision does to the task (and, when final, to the run).
#[derive(Debug, Clone, PartialEq)]
pub enum ReviewChange {
    /// Recorded; more approvals needed. The run keeps waiting.
    Counted,
    /// Moved to another queue; the run keeps waiting. `deadline_at_ms`
    /// replaces the task's deadline.
    Escalate {
        queue: String,
        deadline_at_ms: Option<i64>,
    },
    /// Final: the run is queued again with its work item due now.
    Approve { results: Vec<ReviewField> },
    /// Final: the run ends `rejected`.
    Reject { reason: String },
    /// Final: the run ends `handed_off` (a person takes the case over).
    HandOff { reason: String },
}

impl ReviewChange {
    /// For a change that ends the run: the status both the task and the
    /// run take (also the run's outcome), and the reason.
    pub fn ends_run(&self) -> Option<(&'static str, &str)> {
        match self {
            ReviewChange::Reject { reason } => Some(("rejected", reason)),
            ReviewChange::HandOff { reason } => Some(("handed_off", reason)),
            _ => None,
        }
    }
}

/// One decision to apply atomically.
#[derive(Debug, Clone)]
pub struct DecideReview {
    pub review_id: String,
    /// Fencing: applies only if the task is still at this revision.
    pub expect_rev: i64,
    pub act: ReviewAct,
    pub change: ReviewChange,
    /// Audit events for the run (`review.decided`, `review.escalated`, …).
    pub events: Vec<NewEvent>,
    pub at_ms: i64,
}

/// Result of [`Reviews::decide_review`].
#[derive(Debug, Clone, PartialEq)]
pub enum Decided {
    Done(Box<Review>),
    NotFound,
    /// The task changed since it was read (another decision): re-read, retry.
    Stale,
    /// The task is no longer pending.
    Closed(ReviewStatus),
    /// The run ended meanwhile (e.g. cancelled); nothing was written.
    RunEnded(RunStatus),
}

#[derive(Debug, Clone, Default)]
pub struct ReviewFilter {
    pub status: Option<ReviewStatus>,
    pub queue: Option<String>,
    /// Only tasks of these queues (a token's queue restriction); `None`: all.
    pub queues: Option<Vec<String>>,
    /// Tasks with ids strictly below this (ids sort by creation time).
    pub before: Option<String>,
    pub limit: usize,
}

/// How many tasks a queue has pending and since when the oldest waits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueDepth {
    pub queue: String,
    pub pending: u64,
    pub oldest_created_at_ms: i64,
}

/// Which review tasks calibration reads (DESIGN §8).
#[derive(Debug, Clone, Default)]
pub struct CalibrationQuery {
    /// Only tasks of this workflow.
    pub workflow: Option<String>,
    /// Only tasks with an act at or after this time (ms); the evidence
    /// rules then judge each task's own decision time.
    pub since_ms: Option<i64>,
    /// Only tasks in these queues (a caller's restriction); `None`: all.
    pub queues: Option<Vec<String>>,
    /// At most this many tasks, newest first.
    pub limit: usize,
}

/// A decided task (or one a person escalated) with what calibration
/// needs from its run.
#[derive(Debug, Clone, PartialEq)]
pub struct CalibrationReview {
    /// The task with its acts and field results.
    pub review: Review,
    /// The run's workflow version.
    pub version: i64,
    /// That version's hash, when the version is stored.
    pub version_hash: Option<String>,
    /// The run's completed step attempts whose output names a `provider`
    /// (the `llm` steps that drafted fields), in attempt order: the
    /// caller picks the latest of each step before the task's.
    pub sources: Vec<crate::StepRecord>,
}

/// Review tasks: the supertrait of [`crate::Store`].
#[async_trait]
pub trait Reviews: Send + Sync {
    /// Creates the task of `(run_id, step_index)`, or returns the existing
    /// one unchanged (the step may run again after a crash).
    async fn create_review(&self, review: NewReview) -> Result<Review>;
    async fn review(&self, id: &str) -> Result<Option<Review>>;
    /// The task of a run's step, if one was created.
    async fn review_for_step(&self, run_id: &str, step_index: usize) -> Result<Option<Review>>;
    /// Newest first.
    async fn list_reviews(&self, filter: &ReviewFilter) -> Result<Vec<Review>>;
    /// Applies one decision in one transaction, fenced by the task's
    /// revision and, when final, bumping the run's revision.
    async fn decide_review(&self, decision: DecideReview) -> Result<Decided>;
    /// Pending tasks per queue (for `/metrics`, read at scrape time): one
    /// grouped scan of the pending part of the status index, by queue.
    async fn pending_by_queue(&self) -> Result<Vec<QueueDepth>>;
    /// Tasks that are decided (not pending) or were escalated by an act,
    /// newest first (by id), with their runs' versions and model outputs:
    /// the evidence calibration judges. Reads the tasks, then their acts,
    /// results and sources in one statement each.
    async fn calibration_reviews(&self, q: &CalibrationQuery) -> Result<Vec<CalibrationReview>>;
}
