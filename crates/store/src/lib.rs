//! The storage boundary.
//!
//! API boundary: the engine and the HTTP layer talk to databases only through
//! [`Store`]. Rows are this crate's own types (serialise at the edges): the
//! domain can change without breaking the schema. Stored JSON is passed as
//! text so a backend never parses what it only stores.
//!
//! Architecture invariant: only `store-*` crates know SQL.

mod desk;
mod events;
mod integrations;
mod review;
pub mod suite;
mod users;

pub use desk::*;
pub use events::*;
pub use integrations::*;
pub use review::*;
pub use users::*;

use async_trait::async_trait;
pub use domain::run::{Position, RunStatus, StepStatus, WaitReason};

/// Store failures callers can act on.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The run changed under us (cancelled, or claimed by another worker):
    /// the caller's view is stale and it must stop working on the run.
    #[error("run {0} changed concurrently")]
    Conflict(String),
    #[error("not found")]
    NotFound,
    /// A unique constraint held (e.g. a token name already used).
    #[error("already exists: {0}")]
    Duplicate(String),
    #[error("database error: {0}")]
    Backend(String),
}

pub type Result<T> = std::result::Result<T, Error>;

/// An audit event to append; the store assigns `seq` and chains the hash.
#[derive(Debug, Clone)]
pub struct NewEvent {
    pub kind: String,
    pub actor: String,
    /// JSON text.
    pub data: String,
    pub at_ms: i64,
}

/// A stored audit event.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    pub run_id: String,
    pub seq: i64,
    pub kind: String,
    pub actor: String,
    pub data: String,
    pub at_ms: i64,
    pub prev_hash: String,
    pub hash: String,
}

/// The head of a run's hash chain: its last event's sequence number and
/// hash, as the run row keeps them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainHead {
    pub run_id: String,
    pub seq: i64,
    pub hash: String,
}

/// What retention keeps of a run whose data it deleted: enough to show the
/// run existed, how it ended, and where its hash chain ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PrunedRun {
    pub run_id: String,
    pub workflow: String,
    pub version: i64,
    pub status: RunStatus,
    pub created_at_ms: i64,
    pub updated_at_ms: i64,
    /// The chain head when it was pruned: its last event.
    pub seq: i64,
    pub hash: String,
    pub pruned_at_ms: i64,
    /// HMAC-SHA256 (hex) of the summary under the audit key, when one was
    /// set: a summary cannot be made up for a run deleted by hand.
    pub mac: Option<String>,
}

/// Who holds a run's work item and until when.
#[derive(Debug, Clone)]
pub struct Lease {
    pub node: String,
    pub until_ms: i64,
}

/// A run to create, with its first events and work item.
#[derive(Debug, Clone)]
pub struct NewRun {
    pub id: String,
    pub workflow: String,
    pub version: i64,
    /// JSON text of the validated, normalised input.
    pub input: String,
    pub idempotency_key: Option<String>,
    pub created_at_ms: i64,
    /// When set, the work item starts leased to this node, which executes
    /// the run at once without a round trip through the queue.
    pub lease: Option<Lease>,
    pub events: Vec<NewEvent>,
}

/// Result of `create_run`.
#[derive(Debug, Clone, PartialEq)]
pub enum Created {
    /// Inserted; the run's revision is 1.
    New,
    /// The idempotency key was seen before: here is that run.
    Existing { id: String, status: RunStatus },
}

/// One execution attempt of a step.
#[derive(Debug, Clone, PartialEq)]
pub struct StepRecord {
    pub index: usize,
    pub step_id: String,
    pub attempt: u32,
    pub status: StepStatus,
    /// JSON text.
    pub output: Option<String>,
    pub error: Option<String>,
    pub started_at_ms: i64,
    pub finished_at_ms: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EffectStatus {
    Started,
    Completed,
    Failed,
}

impl EffectStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            EffectStatus::Started => "started",
            EffectStatus::Completed => "completed",
            EffectStatus::Failed => "failed",
        }
    }

    pub fn parse(s: &str) -> EffectStatus {
        match s {
            "completed" => EffectStatus::Completed,
            "failed" => EffectStatus::Failed,
            _ => EffectStatus::Started,
        }
    }
}

/// A write to the effect journal (keyed by idempotency key).
#[derive(Debug, Clone, PartialEq)]
pub struct Effect {
    pub key: String,
    pub run_id: String,
    pub step_id: String,
    pub status: EffectStatus,
    pub request_digest: Option<String>,
    pub external_id: Option<String>,
    pub at_ms: i64,
}

/// What happens to the run's work item in a commit.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Work {
    /// Keep it leased to the committing node until this time.
    Keep { lease_until_ms: i64 },
    /// Release it, due at this time (timer, retry back-off, deadline).
    At { run_at_ms: i64 },
    /// No work left (finished, failed, or waiting for a person with no deadline).
    Remove,
}

/// What a store's settled feed announces (see [`Store::settled_feed`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SettledNews {
    /// These runs settled (completed, failed, cancelled, or now wait for a
    /// person or a timer).
    Runs(Vec<String>),
    /// News may have been missed (the feed (re)connected or fell behind):
    /// anyone waiting should look again.
    MaybeMissed,
}

/// One state change of a run: step result + next work item + audit events,
/// committed together or not at all (DESIGN §4).
#[derive(Debug, Clone)]
pub struct Commit {
    pub run_id: String,
    /// Fencing: the commit applies only if the run is still at this revision.
    pub expect_rev: i64,
    pub status: RunStatus,
    pub wait: Option<WaitReason>,
    pub position: Position,
    pub outcome: Option<String>,
    pub error: Option<String>,
    pub step: Option<StepRecord>,
    pub effect: Option<Effect>,
    pub events: Vec<NewEvent>,
    pub work: Work,
    pub at_ms: i64,
}

/// A run's row.
#[derive(Debug, Clone, PartialEq)]
pub struct Run {
    pub id: String,
    pub workflow: String,
    pub version: i64,
    pub status: RunStatus,
    pub wait: Option<WaitReason>,
    pub position: Position,
    pub outcome: Option<String>,
    pub error: Option<String>,
    pub input: String,
    pub idempotency_key: Option<String>,
    pub rev: i64,
    pub created_at_ms: i64,
    pub updated_at_ms: i64,
}

/// Everything a worker needs to carry on with a run it claimed.
#[derive(Debug, Clone)]
pub struct Claimed {
    pub run: Run,
    /// `(step index, output JSON)` of the latest completed attempt of each
    /// step before the current position.
    pub outputs: Vec<(usize, Option<String>)>,
    /// Journal entries of this run that started but never completed.
    pub open_effects: Vec<Effect>,
}

/// Full view for the API and UI.
#[derive(Debug, Clone)]
pub struct RunDetail {
    pub run: Run,
    pub steps: Vec<StepRecord>,
    pub effects: Vec<Effect>,
}

#[derive(Debug, Clone, Default)]
pub struct RunFilter {
    pub workflow: Option<String>,
    pub status: Option<RunStatus>,
    /// Return runs with ids strictly below this (ids sort by creation time).
    pub before: Option<String>,
    /// Words the run's input must contain (see [`search_words`]), found
    /// through a full-text index.
    pub text: Option<String>,
    pub limit: usize,
}

/// One word a free-text search asks for (letters and digits, lower case);
/// `prefix`: the last word of a whitespace-separated term, which may be
/// the start of a longer word.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SearchWord {
    pub word: String,
    pub prefix: bool,
}

/// The words of a free-text search. A run matches when its input has every
/// word, in any order (`ana@example.c` finds `ana@example.com`). Both stores
/// split the input into words the same way, and only words reach a query,
/// so no search operator can be smuggled in.
pub fn search_words(text: &str) -> Vec<SearchWord> {
    let mut out = Vec::new();
    for term in text.split_whitespace() {
        let start = out.len();
        out.extend(
            term.split(|c: char| !c.is_alphanumeric())
                .filter(|w| !w.is_empty())
                .map(|w| SearchWord {
                    word: w.to_lowercase(),
                    prefix: false,
                }),
        );
        if out.len() > start
            && let Some(last) = out.last_mut()
        {
            last.prefix = true;
        }
    }
    out
}

/// Outcome of an operator command.
#[derive(Debug, Clone, PartialEq)]
pub enum OpResult {
    Done(Run),
    NotFound,
    /// Not allowed from the run's current state.
    Refused(RunStatus),
}

/// A stored workflow version.
#[derive(Debug, Clone, PartialEq)]
pub struct WorkflowVersion {
    pub name: String,
    pub version: i64,
    pub hash: String,
    pub source: String,
    pub path: String,
    pub created_at_ms: i64,
}

/// An API token; only the SHA-256 of the secret is stored.
#[derive(Debug, Clone, PartialEq)]
pub struct Token {
    pub id: String,
    pub name: String,
    pub hash: String,
    pub scopes: Vec<String>,
    /// The user the token acts for (`token create --user`): its decisions
    /// count as that person's. `None`: a service token, which cannot
    /// decide reviews that need distinct people.
    pub user_id: Option<String>,
    pub created_at_ms: i64,
    pub revoked_at_ms: Option<i64>,
}

/// What the engine and the API need from a database. Review tasks are
/// the supertrait [`Reviews`], review integrations (Slack, email links)
/// the supertrait [`Integrations`], people and their sessions the
/// supertrait [`Users`] (their own modules and tables); reading events
/// across runs by kind the supertrait [`EventsByKind`].
#[async_trait]
pub trait Store:
    Reviews + Integrations + Users + EventsByKind + Desk + Send + Sync + 'static
{
    /// Short backend name for logs (`sqlite`, `postgres`).
    fn backend(&self) -> &'static str;

    // ---- workflows
    /// Stores a workflow's source if its hash is new for that name and
    /// returns the version number (existing or new).
    async fn save_workflow(
        &self,
        name: &str,
        hash: &str,
        source: &str,
        path: &str,
        now_ms: i64,
    ) -> Result<i64>;
    async fn workflow_version(&self, name: &str, version: i64) -> Result<Option<WorkflowVersion>>;

    // ---- execution (the hot path)
    async fn create_run(&self, run: NewRun) -> Result<Created>;
    /// Applies a commit; returns the run's new revision, or `Conflict`.
    async fn commit(&self, commit: Commit) -> Result<i64>;
    /// Claims due, unleased (or lease-expired) work items for `node`.
    async fn claim(
        &self,
        node: &str,
        now_ms: i64,
        lease_until_ms: i64,
        limit: usize,
    ) -> Result<Vec<Claimed>>;
    /// Extends `node`'s leases on `runs` (the runs its drivers drive), in
    /// one statement. Leases `node` holds on other runs are left to expire,
    /// so a run whose driver went away is claimed again.
    async fn renew_leases(&self, node: &str, runs: &[String], lease_until_ms: i64) -> Result<u64>;
    /// Releases `node`'s leases so others may claim at once (graceful stop).
    async fn release_leases(&self, node: &str) -> Result<u64>;
    /// Earliest `run_at` of an unleased work item, if any.
    async fn next_due(&self) -> Result<Option<i64>>;
    /// Sleeps until `timeout` passes or, on a backend shared by several
    /// nodes, until another node reports new due work (PostgreSQL uses
    /// LISTEN/NOTIFY). The poller calls it between looks at the queue; the
    /// default is a plain sleep, right for a store only one node uses.
    async fn wait_for_work(&self, timeout: std::time::Duration) {
        tokio::time::sleep(timeout).await;
    }
    /// News of runs that settled on any node sharing this store, for
    /// `?wait=` callers on a node that does not drive the run (PostgreSQL:
    /// `LISTEN countersign_settled`). `None`: the store has no such feed
    /// (one node, as SQLite) and the engine's own wake-ups are all there is.
    /// The feed starts on first call; every call returns a new receiver.
    fn settled_feed(&self) -> Option<tokio::sync::broadcast::Receiver<SettledNews>> {
        None
    }

    // ---- operator commands
    /// Failed → queued, from the failed step, with a fresh attempt budget.
    async fn retry_run(&self, id: &str, actor: &str, now_ms: i64) -> Result<OpResult>;
    async fn cancel_run(&self, id: &str, actor: &str, now_ms: i64) -> Result<OpResult>;

    // ---- queries
    async fn run(&self, id: &str) -> Result<Option<Run>>;
    async fn run_detail(&self, id: &str) -> Result<Option<RunDetail>>;
    /// [`Store::run_detail`] of several runs (those that exist, in no set
    /// order). A store on the network answers in a fixed number of round
    /// trips; the default reads them one by one.
    async fn run_details(&self, ids: &[String]) -> Result<Vec<RunDetail>> {
        let mut out = Vec::with_capacity(ids.len());
        for id in ids {
            if let Some(d) = self.run_detail(id).await? {
                out.push(d);
            }
        }
        Ok(out)
    }
    async fn list_runs(&self, filter: &RunFilter) -> Result<Vec<Run>>;
    async fn events(&self, run_id: &str, after_seq: i64, limit: usize) -> Result<Vec<Event>>;
    /// Ids of every run, for `audit verify` (oldest first).
    async fn run_ids(&self, after: Option<&str>, limit: usize) -> Result<Vec<String>>;
    /// Every run's chain head as its run row keeps it (ids after `after`,
    /// in id order), for audit checkpoints.
    async fn chain_heads(&self, after: Option<&str>, limit: usize) -> Result<Vec<ChainHead>>;

    // ---- retention
    /// Runs that may be pruned ([`RunStatus::may_prune`]) and last changed
    /// before `before_ms`, ids after `after` in id order, as summaries to
    /// be (`pruned_at_ms` 0, no `mac`).
    async fn prunable_runs(
        &self,
        before_ms: i64,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<PrunedRun>>;
    /// In one transaction: keeps `summary` and deletes the run with its
    /// steps, effects, events, reviews and everything hanging off them —
    /// only if the run still may be pruned and its chain still ends at
    /// `summary`'s head. `false` (nothing changed) otherwise. Events of a
    /// run can be deleted only once its summary exists (the append-only
    /// trigger checks).
    async fn prune_run(&self, summary: &PrunedRun) -> Result<bool>;
    /// Summaries of pruned runs, ids after `after` in id order.
    async fn pruned_runs(&self, after: Option<&str>, limit: usize) -> Result<Vec<PrunedRun>>;

    // ---- tokens
    async fn create_token(&self, token: Token) -> Result<()>;
    async fn token_by_hash(&self, hash: &str) -> Result<Option<Token>>;
    async fn token(&self, id: &str) -> Result<Option<Token>>;
    async fn list_tokens(&self) -> Result<Vec<Token>>;
    /// Revokes by id or name; false if nothing matched.
    async fn revoke_token(&self, id_or_name: &str, now_ms: i64) -> Result<bool>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_search_is_its_words_with_each_terms_last_a_prefix() {
        let w = |word: &str, prefix| SearchWord {
            word: word.into(),
            prefix,
        };
        assert_eq!(
            search_words("Ana@Exa.c  !!! Zoë"),
            [
                w("ana", false),
                w("exa", false),
                w("c", true),
                w("zoë", true)
            ]
        );
        assert_eq!(search_words(" \"' -- * "), []);
    }
}
