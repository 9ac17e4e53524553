//! Reading the audit log across runs by event kind (the outbox page lists
//! every `outbox.recorded`): the [`EventsByKind`] supertrait of the store.

use async_trait::async_trait;

use crate::{Event, Result};

/// Events of one kind across all runs, newest first.
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
}
