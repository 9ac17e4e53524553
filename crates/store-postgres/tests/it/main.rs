//! Tests of the PostgreSQL store against a real server: each test creates
//! its own database on `COUNTERSIGN_TEST_POSTGRES_URL` or, without it, on
//! the tests' throwaway server, and drops it afterwards.

mod concurrency;
mod suite;

use std::sync::Arc;

pub use countersign_store_postgres as store_postgres;
use store::{Commit, NewEvent, NewRun, Position, RunStatus, Store, Work};
use store_postgres::PgStore;
use store_postgres::scratch::ScratchDb;

/// A fresh database and a store on it.
pub async fn fresh(label: &str) -> (ScratchDb, Arc<PgStore>) {
    let db = ScratchDb::for_test(label)
        .await
        .expect("a scratch database");
    let store = PgStore::connect(db.url()).await.expect("connect");
    (db, Arc::new(store))
}

pub fn new_run(id: &str, at: i64, lease: Option<(&str, i64)>) -> NewRun {
    NewRun {
        id: id.to_string(),
        workflow: "wf".into(),
        version: 1,
        input: "{}".into(),
        idempotency_key: None,
        created_at_ms: at,
        lease: lease.map(|(node, until_ms)| store::Lease {
            node: node.to_string(),
            until_ms,
        }),
        events: vec![NewEvent {
            kind: "run.received".into(),
            actor: "test".into(),
            data: "{}".into(),
            at_ms: at,
        }],
    }
}

pub fn step_commit(run_id: &str, rev: i64, index: usize, work: Work, at: i64) -> Commit {
    Commit {
        run_id: run_id.to_string(),
        expect_rev: rev,
        status: RunStatus::Running,
        wait: None,
        position: Position {
            index,
            failed_attempts: 0,
        },
        outcome: None,
        error: None,
        step: None,
        effect: None,
        events: vec![NewEvent {
            kind: "step.completed".into(),
            actor: "system".into(),
            data: format!("{{\"i\":{index}}}"),
            at_ms: at,
        }],
        work,
        at_ms: at,
    }
}

/// Checks a run's hash chain; returns the number of events.
pub async fn verify(store: &dyn Store, run_id: &str) -> usize {
    let events = store.events(run_id, 0, 100_000).await.expect("events");
    let chain = events.iter().map(|e| {
        (
            domain::event::Hashed {
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
    });
    domain::event::verify_chain(chain).expect("the chain verifies")
}
