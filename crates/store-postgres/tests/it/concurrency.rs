//! What several nodes on one database must never do: claim one item twice,
//! fork a run's hash chain, or commit after losing a run.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use crate::store_postgres::PgStore;
use store::{Created, Error, Store, Work};

use crate::{fresh, new_run, step_commit, verify};

const NOW: i64 = 1_700_000_000_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn claims_hand_each_item_to_exactly_one_node() {
    let (db, a) = fresh("claims").await;
    let b = Arc::new(PgStore::connect(db.url()).await.unwrap());
    let creates: Vec<_> = (0..300)
        .map(|i| {
            let a = a.clone();
            tokio::spawn(async move { a.create_run(new_run(&format!("r{i:04}"), NOW, None)).await })
        })
        .collect();
    for c in creates {
        assert_eq!(c.await.unwrap().unwrap(), Created::New);
    }
    let mut loops = Vec::new();
    for (store, node) in [
        (a.clone(), "a1"),
        (a.clone(), "a2"),
        (b.clone(), "b1"),
        (b.clone(), "b2"),
    ] {
        loops.push(tokio::spawn(async move {
            let mut got = Vec::new();
            loop {
                let batch = store.claim(node, NOW + 1, NOW + 60_000, 7).await.unwrap();
                if batch.is_empty() {
                    return got;
                }
                for c in batch {
                    assert_eq!(c.run.rev, 2, "a claim bumps the revision once");
                    assert_eq!(
                        c.run.status,
                        store::RunStatus::Queued,
                        "reported as resumed from"
                    );
                    got.push(c.run.id);
                }
            }
        }));
    }
    let mut all = Vec::new();
    for l in loops {
        all.extend(l.await.unwrap());
    }
    let distinct: HashSet<_> = all.iter().collect();
    assert_eq!(distinct.len(), all.len(), "an item was claimed twice");
    assert_eq!(all.len(), 300, "every item was claimed");
    assert!(
        a.claim("late", NOW + 2, NOW + 60_000, 10)
            .await
            .unwrap()
            .is_empty()
    );
    drop((a, b));
    db.drop_now().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_whose_lease_expired_is_fenced_out() {
    let (db, a) = fresh("fence").await;
    let b = Arc::new(PgStore::connect(db.url()).await.unwrap());
    // Node A holds the run with a lease that has run out (A died or stalled).
    a.create_run(new_run("r1", NOW, Some(("A", NOW + 10))))
        .await
        .unwrap();
    assert!(
        b.claim("B", NOW + 5, NOW + 30_000, 10)
            .await
            .unwrap()
            .is_empty(),
        "a live lease is respected"
    );
    let taken = b.claim("B", NOW + 20, NOW + 30_000, 10).await.unwrap();
    assert_eq!(taken.len(), 1, "an expired lease is taken over");
    assert_eq!(taken[0].run.rev, 2);
    let stale = a
        .commit(step_commit(
            "r1",
            1,
            1,
            Work::Keep {
                lease_until_ms: NOW + 40_000,
            },
            NOW + 21,
        ))
        .await;
    assert!(
        matches!(stale, Err(Error::Conflict(_))),
        "stale commit: {stale:?}"
    );
    let rev = b
        .commit(step_commit("r1", 2, 1, Work::Remove, NOW + 22))
        .await
        .unwrap();
    assert_eq!(rev, 3);
    assert_eq!(
        verify(b.as_ref(), "r1").await,
        2,
        "run.received + B's step, nothing from A"
    );
    drop((a, b));
    db.drop_now().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn racing_commits_never_fork_a_chain() {
    let (db, a) = fresh("fork").await;
    let b = Arc::new(PgStore::connect(db.url()).await.unwrap());
    a.create_run(new_run("r1", NOW, Some(("A", NOW + 60_000))))
        .await
        .unwrap();
    for round in 0..25usize {
        // Each round starts from the revision the previous winner left.
        let rev = round as i64 + 1;
        let c = |s: &Arc<PgStore>| {
            let s = s.clone();
            tokio::spawn(async move {
                s.commit(step_commit(
                    "r1",
                    rev,
                    round,
                    Work::Keep {
                        lease_until_ms: NOW + 60_000,
                    },
                    NOW + round as i64,
                ))
                .await
            })
        };
        let (x, y) = (c(&a), c(&b));
        let (x, y) = (x.await.unwrap(), y.await.unwrap());
        let won: Vec<i64> = [&x, &y]
            .iter()
            .filter_map(|r| r.as_ref().ok().copied())
            .collect();
        assert_eq!(
            won,
            vec![rev + 1],
            "exactly one of two racing commits wins: {x:?} {y:?}"
        );
        for r in [x, y] {
            if let Err(e) = r {
                assert!(
                    matches!(e, Error::Conflict(_)),
                    "the loser sees Conflict, got {e:?}"
                );
            }
        }
    }
    assert_eq!(verify(a.as_ref(), "r1").await, 26);
    drop((a, b));
    db.drop_now().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_idempotency_key_makes_one_run_across_nodes() {
    let (db, a) = fresh("idem").await;
    let b = Arc::new(PgStore::connect(db.url()).await.unwrap());
    let mut tasks = Vec::new();
    for i in 0..10 {
        let s = if i % 2 == 0 { a.clone() } else { b.clone() };
        tasks.push(tokio::spawn(async move {
            let mut r = new_run(&format!("r{i}"), NOW, None);
            r.idempotency_key = Some("k".into());
            (format!("r{i}"), s.create_run(r).await.unwrap())
        }));
    }
    let mut winners = Vec::new();
    let mut pointed = HashSet::new();
    for t in tasks {
        match t.await.unwrap() {
            (id, Created::New) => winners.push(id),
            (_, Created::Existing { id, .. }) => {
                pointed.insert(id);
            }
        }
    }
    assert_eq!(winners.len(), 1, "one run for one key");
    assert!(
        pointed.iter().all(|p| *p == winners[0]),
        "repeats point at the run"
    );
    drop((a, b));
    db.drop_now().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn new_work_on_another_node_wakes_a_waiting_node() {
    let (db, a) = fresh("wake").await;
    let b = Arc::new(PgStore::connect(db.url()).await.unwrap());
    let waiter = {
        let a = a.clone();
        tokio::spawn(async move { a.wait_for_work(Duration::from_secs(600)).await })
    };
    // The LISTEN connection may not be up yet: announce until heard.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let mut i = 0;
    while !waiter.is_finished() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the waiting node never woke"
        );
        b.create_run(new_run(&format!("w{i}"), engine_now(), None))
            .await
            .unwrap();
        i += 1;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Work due later ends a long wait by its due time.
    let later = engine_now() + 300;
    let waiter = {
        let a = a.clone();
        tokio::spawn(async move { a.wait_for_work(Duration::from_secs(600)).await })
    };
    b.commit(step_commit(
        "w0",
        1,
        1,
        Work::At { run_at_ms: later },
        engine_now(),
    ))
    .await
    .unwrap();
    tokio::time::timeout(Duration::from_secs(60), waiter)
        .await
        .expect("the wait ends by the announced time")
        .unwrap();
    drop((a, b));
    db.drop_now().await.unwrap();
}

fn engine_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// The events of a run without a pruned summary cannot be changed or
/// deleted, even by SQL from outside the store (ARCHITECTURE.md, Audit).
#[tokio::test]
async fn events_of_a_live_run_are_append_only_in_the_database() {
    let (db, store) = fresh("append-only").await;
    store.create_run(new_run("r1", NOW, None)).await.unwrap();
    let (client, conn) = tokio_postgres::connect(db.url(), tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    for sql in [
        "DELETE FROM events WHERE run_id = 'r1'",
        "UPDATE events SET data = '{}' WHERE run_id = 'r1'",
    ] {
        let e = client.batch_execute(sql).await.expect_err(sql);
        assert!(format!("{e:?}").contains("append-only"), "{sql}: {e:?}");
    }
    assert_eq!(store.events("r1", 0, 10).await.unwrap().len(), 1);
}
