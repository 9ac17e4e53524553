//! Reading the audit log across runs: by event kind (the outbox page lists
//! every `outbox.recorded`) and by time for exports (`countersign export`,
//! `GET /api/v1/events`): the [`EventsByKind`] supertrait of the store.

use async_trait::async_trait;

use crate::{Event, Result};

/// Where an export page ends: the last event's position in the
/// `(at, run_id, seq)` order. The next page starts strictly after it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventCursor {
    pub at_ms: i64,
    pub run_id: String,
    pub seq: i64,
}

/// Which runs a reader may see by review queue: runs with a review task in
/// one of `queues`, and, when `unreviewed` is set, runs that never reached
/// review (they count as the default queue's).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueScope {
    pub queues: Vec<String>,
    pub unreviewed: bool,
}

/// One page of events across runs, in time order.
#[derive(Debug, Clone)]
pub struct EventRange {
    /// Events recorded at or after this time (ms).
    pub since_ms: i64,
    /// Events recorded strictly before this time (ms).
    pub until_ms: i64,
    /// Only events of runs of this workflow.
    pub workflow: Option<String>,
    /// Only events of runs in these queues; `None`: every run.
    pub queues: Option<QueueScope>,
    /// Start strictly after this position.
    pub after: Option<EventCursor>,
    pub limit: usize,
}

/// An event with the workflow of its run.
#[derive(Debug, Clone, PartialEq)]
pub struct RunEvent {
    pub workflow: String,
    pub event: Event,
}

impl RunEvent {
    /// The cursor that continues after this event.
    pub fn cursor(&self) -> EventCursor {
        EventCursor {
            at_ms: self.event.at_ms,
            run_id: self.event.run_id.clone(),
            seq: self.event.seq,
        }
    }
}

/// Events across all runs.
#[async_trait]
pub trait EventsByKind: Send + Sync {
    /// Up to `limit` events of `kind` recorded strictly before `before_ms`
    /// (all when `None`), newest first (ties by run and sequence,
    /// descending). Page on with the last event's `at_ms`.
    async fn events_by_kind(
        &self,
        kind: &str,
        before_ms: Option<i64>,
        limit: usize,
    ) -> Result<Vec<Event>>;

    /// Up to `range.limit` events in `[since, until)`, oldest first,
    /// ordered by `(at, run_id, seq)` (so each run's events keep their
    /// chain order), through the `events (at, run_id, seq)` index. Page on
    /// with the last event's [`RunEvent::cursor`]: memory stays constant
    /// however many events the range holds.
    async fn events_between(&self, range: &EventRange) -> Result<Vec<RunEvent>>;
}
