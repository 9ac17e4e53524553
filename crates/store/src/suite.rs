//! The behaviour every [`Store`] backend must show, as a suite each backend
//! runs against itself (SQLite now, PostgreSQL beside it).
//!
//! Every case takes a fresh, empty store and uses fixed times, never the
//! clock: the store is told `now` by its callers. A backend runs the suite
//! with [`store_suite!`](crate::store_suite), which makes one `#[tokio::test]`
//! per case, or with [`run_all`].

mod calibration;
mod events;
mod execution;
mod integrations;
mod records;
mod reviews;
mod users;

use std::future::Future;
use std::sync::Arc;

use domain::event::{Hashed, kind, verify_chain};

pub use calibration::*;
pub use events::*;
pub use execution::*;
pub use integrations::*;
pub use records::*;
pub use reviews::*;
pub use users::*;

use crate::{
    Commit, Created, Effect, EffectStatus, Error, Lease, NewEvent, NewRun, OpResult, Position,
    RunFilter, RunStatus, StepRecord, StepStatus, Store, Token, WaitReason, Work,
};

/// A fixed "now" for every case.
pub const T0: i64 = 1_700_000_000_000;

/// Makes one `#[tokio::test]` per suite case. `$open` is an async fn
/// returning `(guard, Arc<dyn Store>)` for a fresh, empty store; the guard
/// (e.g. a scratch database) lives until the case ends. The calling crate
/// needs `tokio` with the `macros` and `rt-multi-thread` features.
#[macro_export]
macro_rules! store_suite {
    ($open:path) => {
        $crate::store_suite!(@cases $open;
            workflow_versions,
            create_run_is_idempotent_by_key,
            commit_is_fenced_by_revision,
            commit_records_steps_and_effects,
            claim_respects_leases_and_run_at,
            claim_fences_the_previous_holder,
            claim_returns_outputs_and_open_effects,
            claim_reports_the_state_it_resumes_from,
            leases_renew_and_release,
            retry_and_cancel,
            events_form_a_hash_chain,
            events_by_kind_across_runs_newest_first,
            events_between_pages_by_time,
            queries_filter_and_page,
            runs_are_found_by_words_of_their_input,
            tokens_crud,
            reviews_are_created_once_per_step,
            approving_a_review_resumes_the_run,
            review_decisions_reject_escalate_and_filter,
            a_hand_off_ends_the_run_handed_off,
            pruning_keeps_a_summary_and_removes_the_run,
            pending_reviews_count_by_queue,
            slack_identities_map_and_replace,
            a_nonce_decides_once,
            signatures_are_remembered_until_they_expire,
            notifications_journal_and_settings,
            users_and_sessions,
            desk_claims_and_views,
            calibration_reads_decided_reviews,
        );
    };
    (@cases $open:path; $($case:ident),* $(,)?) => {
        $(
            #[tokio::test]
            async fn $case() {
                let (_guard, store) = $open().await;
                $crate::suite::$case(store).await;
            }
        )*
    };
}

/// Runs every case, each on a fresh store from `open`.
pub async fn run_all<F, Fut, G>(mut open: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = (G, Arc<dyn Store>)>,
{
    macro_rules! each {
        ($($case:ident),*) => {
            $({
                let (_guard, store) = open().await;
                $case(store).await;
            })*
        };
    }
    each!(
        workflow_versions,
        create_run_is_idempotent_by_key,
        commit_is_fenced_by_revision,
        commit_records_steps_and_effects,
        claim_respects_leases_and_run_at,
        claim_fences_the_previous_holder,
        claim_returns_outputs_and_open_effects,
        claim_reports_the_state_it_resumes_from,
        leases_renew_and_release,
        retry_and_cancel,
        events_form_a_hash_chain,
        events_by_kind_across_runs_newest_first,
        events_between_pages_by_time,
        queries_filter_and_page,
        runs_are_found_by_words_of_their_input,
        tokens_crud,
        reviews_are_created_once_per_step,
        approving_a_review_resumes_the_run,
        review_decisions_reject_escalate_and_filter,
        a_hand_off_ends_the_run_handed_off,
        pruning_keeps_a_summary_and_removes_the_run,
        pending_reviews_count_by_queue,
        signatures_are_remembered_until_they_expire,
        users_and_sessions,
        desk_claims_and_views,
        calibration_reads_decided_reviews
    );
}

// ---------------------------------------------------------------- helpers

fn event(kind: &str, data: &str, at_ms: i64) -> NewEvent {
    NewEvent {
        kind: kind.into(),
        actor: "system".into(),
        data: data.into(),
        at_ms,
    }
}

/// A run of workflow `wf` created at `at`, optionally leased.
pub fn new_run(
    id: &str,
    wf: &str,
    at: i64,
    key: Option<&str>,
    lease: Option<(&str, i64)>,
) -> NewRun {
    NewRun {
        id: id.into(),
        workflow: wf.into(),
        version: 1,
        input: r#"{"n":1}"#.into(),
        idempotency_key: key.map(str::to_string),
        created_at_ms: at,
        lease: lease.map(|(node, until_ms)| Lease {
            node: node.into(),
            until_ms,
        }),
        events: vec![event(kind::RUN_RECEIVED, r#"{"input":{"n":1}}"#, at)],
    }
}

fn pos(index: usize, failed_attempts: u32) -> Position {
    Position {
        index,
        failed_attempts,
    }
}

/// A bare state change: one event, no step record, no effect.
pub fn commit(
    run_id: &str,
    expect_rev: i64,
    status: RunStatus,
    position: Position,
    work: Work,
    at: i64,
) -> Commit {
    Commit {
        run_id: run_id.into(),
        expect_rev,
        status,
        wait: None,
        position,
        outcome: None,
        error: None,
        step: None,
        effect: None,
        events: vec![event(
            kind::STEP_COMPLETED,
            &format!(r#"{{"step":{}}}"#, position.index),
            at,
        )],
        work,
        at_ms: at,
    }
}

fn step(
    index: usize,
    id: &str,
    attempt: u32,
    status: StepStatus,
    output: Option<&str>,
    at: i64,
) -> StepRecord {
    StepRecord {
        index,
        step_id: id.into(),
        attempt,
        status,
        output: output.map(str::to_string),
        error: None,
        started_at_ms: at,
        finished_at_ms: at,
    }
}

fn effect(
    run_id: &str,
    step_id: &str,
    status: EffectStatus,
    external_id: Option<&str>,
    at: i64,
) -> Effect {
    Effect {
        key: format!("{run_id}:{step_id}"),
        run_id: run_id.into(),
        step_id: step_id.into(),
        status,
        request_digest: (status == EffectStatus::Started).then(|| "d1".to_string()),
        external_id: external_id.map(str::to_string),
        at_ms: at,
    }
}

async fn created(store: &Arc<dyn Store>, run: NewRun) {
    let id = run.id.clone();
    assert_eq!(
        store.create_run(run).await.expect("create_run"),
        Created::New,
        "creating {id}"
    );
}

async fn rev(store: &Arc<dyn Store>, id: &str) -> i64 {
    store
        .run(id)
        .await
        .expect("run")
        .expect("the run exists")
        .rev
}

async fn claim_ids(store: &Arc<dyn Store>, node: &str, now: i64, until: i64) -> Vec<String> {
    let mut ids: Vec<String> = store
        .claim(node, now, until, 100)
        .await
        .expect("claim")
        .into_iter()
        .map(|c| c.run.id)
        .collect();
    ids.sort();
    ids
}

fn is_conflict<T: std::fmt::Debug>(r: crate::Result<T>) -> bool {
    matches!(r, Err(Error::Conflict(_)))
}

async fn chain_len(store: &Arc<dyn Store>, run_id: &str) -> usize {
    let events = store.events(run_id, 0, 10_000).await.expect("events");
    let n = verify_chain(events.iter().map(|e| {
        (
            Hashed {
                run_id: &e.run_id,
                seq: e.seq,
                kind: &e.kind,
                actor: &e.actor,
                data: &e.data,
                at_ms: e.at_ms,
            },
            e.prev_hash.as_str(),
            e.hash.as_str(),
        )
    }));
    n.unwrap_or_else(|seq| panic!("run {run_id}: the hash chain breaks at event {seq}"))
}
