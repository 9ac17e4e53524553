//! The review desk's own records: soft claims (who is working on a task,
//! so two reviewers do not do the same one) and views (when each task was
//! shown to whom, for vigilance measures). Neither decides anything: a
//! claim only steers the next-task order and tells others who holds it.

use async_trait::async_trait;

use crate::Result;

/// Who holds a task and since when (refreshed while they work on it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claim {
    pub review_id: String,
    pub user_id: String,
    /// For showing: "claimed by ann@example.com".
    pub email: String,
    pub at_ms: i64,
}

/// Claims and views: the supertrait [`crate::Store`] adds for the desk.
#[async_trait]
pub trait Desk: Send + Sync {
    /// Claims `review_id` for the user, or refreshes their claim, unless
    /// someone else holds a claim made at or after `stale_before_ms`
    /// (then nothing changes, unless `take_over`). Returns the claim that
    /// holds afterwards.
    async fn claim_review(
        &self,
        claim: Claim,
        stale_before_ms: i64,
        take_over: bool,
    ) -> Result<Claim>;
    /// The claims on these tasks (any age; callers judge staleness).
    async fn review_claims(&self, review_ids: &[String]) -> Result<Vec<Claim>>;
    /// Records that the task was shown to the user at `at_ms`.
    async fn record_review_view(&self, review_id: &str, user_id: &str, at_ms: i64) -> Result<()>;
    /// When the task was shown, to whom: `(user_id, at_ms)`, oldest first.
    async fn review_views(&self, review_id: &str) -> Result<Vec<(String, i64)>>;
}
