//! Suite cases for the hot path: creating runs, commits, claims and leases.

use std::sync::Arc;

use super::*;

/// A repeated idempotency key (per workflow) returns the first run.
pub async fn create_run_is_idempotent_by_key(store: Arc<dyn Store>) {
    created(&store, new_run("r1", "wf", T0, Some("k"), None)).await;
    let run = store.run("r1").await.unwrap().expect("r1");
    assert_eq!(
        (run.status, run.rev, run.position, run.wait),
        (RunStatus::Queued, 1, pos(0, 0), None)
    );
    assert_eq!(
        (run.workflow.as_str(), run.version, run.input.as_str()),
        ("wf", 1, r#"{"n":1}"#)
    );
    assert_eq!(run.idempotency_key.as_deref(), Some("k"));

    let again = store
        .create_run(new_run("r2", "wf", T0 + 1, Some("k"), None))
        .await
        .unwrap();
    assert_eq!(
        again,
        Created::Existing {
            id: "r1".into(),
            status: RunStatus::Queued
        }
    );
    assert_eq!(
        store.run("r2").await.unwrap(),
        None,
        "nothing was written for the repeat"
    );
    assert_eq!(chain_len(&store, "r1").await, 1);

    created(&store, new_run("r3", "other", T0, Some("k"), None)).await;
    created(&store, new_run("r4", "wf", T0, None, None)).await;
    created(&store, new_run("r5", "wf", T0, None, None)).await;

    store
        .commit(commit(
            "r1",
            1,
            RunStatus::Completed,
            pos(0, 0),
            Work::Remove,
            T0 + 2,
        ))
        .await
        .unwrap();
    assert_eq!(
        store
            .create_run(new_run("r6", "wf", T0 + 3, Some("k"), None))
            .await
            .unwrap(),
        Created::Existing {
            id: "r1".into(),
            status: RunStatus::Completed
        },
        "the existing run's current status is returned"
    );
}

/// A commit applies only at the revision it expects, and all or nothing.
pub async fn commit_is_fenced_by_revision(store: Arc<dyn Store>) {
    created(
        &store,
        new_run("r1", "wf", T0, None, Some(("a", T0 + 1000))),
    )
    .await;
    let r = store
        .commit(commit(
            "r1",
            1,
            RunStatus::Running,
            pos(1, 0),
            Work::Keep {
                lease_until_ms: T0 + 2000,
            },
            T0 + 1,
        ))
        .await
        .unwrap();
    assert_eq!(r, 2);
    let mut stale = commit(
        "r1",
        1,
        RunStatus::Completed,
        pos(1, 0),
        Work::Remove,
        T0 + 2,
    );
    stale.step = Some(step(1, "s", 1, StepStatus::Completed, Some("{}"), T0 + 2));
    stale.effect = Some(effect("r1", "s", EffectStatus::Started, None, T0 + 2));
    assert!(
        is_conflict(store.commit(stale).await),
        "a stale revision is refused"
    );
    let run = store.run("r1").await.unwrap().unwrap();
    assert_eq!(
        (run.rev, run.status, run.position),
        (2, RunStatus::Running, pos(1, 0)),
        "nothing of it applied"
    );
    let d = store.run_detail("r1").await.unwrap().unwrap();
    assert!(d.steps.is_empty() && d.effects.is_empty(), "{d:#?}");
    assert_eq!(chain_len(&store, "r1").await, 2);

    assert!(matches!(
        store
            .commit(commit(
                "nope",
                1,
                RunStatus::Running,
                pos(0, 0),
                Work::Remove,
                T0
            ))
            .await,
        Err(Error::NotFound)
    ));
    let r = store
        .commit(commit(
            "r1",
            2,
            RunStatus::Completed,
            pos(1, 0),
            Work::Remove,
            T0 + 3,
        ))
        .await
        .unwrap();
    assert_eq!(r, 3);
    assert_eq!(
        store.run("r1").await.unwrap().unwrap().updated_at_ms,
        T0 + 3
    );
}

/// Step attempts and the effect journal are kept with the commit.
pub async fn commit_records_steps_and_effects(store: Arc<dyn Store>) {
    created(
        &store,
        new_run("r1", "wf", T0, None, Some(("a", T0 + 1000))),
    )
    .await;
    let mut c = commit(
        "r1",
        1,
        RunStatus::Running,
        pos(0, 0),
        Work::Keep {
            lease_until_ms: T0 + 1000,
        },
        T0 + 1,
    );
    c.effect = Some(effect("r1", "call", EffectStatus::Started, None, T0 + 1));
    store.commit(c).await.unwrap();
    let open = store.run_detail("r1").await.unwrap().unwrap().effects;
    assert_eq!(open.len(), 1);
    assert_eq!(
        (open[0].status, open[0].request_digest.as_deref()),
        (EffectStatus::Started, Some("d1"))
    );

    let mut c = commit(
        "r1",
        2,
        RunStatus::Waiting,
        pos(0, 1),
        Work::At { run_at_ms: T0 + 50 },
        T0 + 2,
    );
    c.wait = Some(WaitReason::Retry);
    c.error = Some("503".into());
    c.step = Some(StepRecord {
        error: Some("503".into()),
        ..step(0, "call", 1, StepStatus::Failed, None, T0 + 2)
    });
    store.commit(c).await.unwrap();
    let mut c = commit(
        "r1",
        3,
        RunStatus::Completed,
        pos(0, 1),
        Work::Remove,
        T0 + 3,
    );
    c.outcome = Some("completed".into());
    c.step = Some(step(
        0,
        "call",
        2,
        StepStatus::Completed,
        Some(r#"{"ok":true}"#),
        T0 + 3,
    ));
    c.effect = Some(effect(
        "r1",
        "call",
        EffectStatus::Completed,
        Some("ext-1"),
        T0 + 3,
    ));
    store.commit(c).await.unwrap();

    let d = store.run_detail("r1").await.unwrap().unwrap();
    assert_eq!(
        (d.run.status, d.run.outcome.as_deref(), d.run.wait),
        (RunStatus::Completed, Some("completed"), None)
    );
    // The batched read gives the same steps and effects, in the same order.
    let batch = store.run_details(&["r1".into()]).await.unwrap();
    assert_eq!(batch.len(), 1);
    assert_eq!(format!("{:?}", batch[0].steps), format!("{:?}", d.steps));
    assert_eq!(
        format!("{:?}", batch[0].effects),
        format!("{:?}", d.effects)
    );
    assert_eq!(batch[0].steps.len(), 2);
    let attempts: Vec<_> = d
        .steps
        .iter()
        .map(|s| (s.step_id.as_str(), s.attempt, s.status, s.error.as_deref()))
        .collect();
    assert_eq!(
        attempts,
        [
            ("call", 1, StepStatus::Failed, Some("503")),
            ("call", 2, StepStatus::Completed, None)
        ]
    );
    assert_eq!(d.steps[1].output.as_deref(), Some(r#"{"ok":true}"#));
    assert_eq!(d.effects.len(), 1, "one journal entry per key");
    assert_eq!(
        (
            d.effects[0].key.as_str(),
            d.effects[0].status,
            d.effects[0].external_id.as_deref()
        ),
        ("r1:call", EffectStatus::Completed, Some("ext-1"))
    );
    assert_eq!(
        store.next_due().await.unwrap(),
        None,
        "a finished run leaves no work"
    );
    assert_eq!(
        store.run_detail("nope").await.unwrap().map(|d| d.run.id),
        None
    );
}

/// Only due, unleased (or lease-expired) work is claimed.
pub async fn claim_respects_leases_and_run_at(store: Arc<dyn Store>) {
    created(
        &store,
        new_run("leased", "wf", T0, None, Some(("a", T0 + 1000))),
    )
    .await;
    created(&store, new_run("due", "wf", T0, None, None)).await;
    created(&store, new_run("later", "wf", T0, None, None)).await;
    store
        .commit(commit(
            "later",
            1,
            RunStatus::Waiting,
            pos(1, 0),
            Work::At {
                run_at_ms: T0 + 500,
            },
            T0,
        ))
        .await
        .unwrap();
    assert_eq!(
        store.next_due().await.unwrap(),
        Some(T0),
        "the earliest due item"
    );

    assert_eq!(
        claim_ids(&store, "b", T0 - 1, T0 + 10_000).await,
        Vec::<String>::new(),
        "nothing is due before its time"
    );
    assert_eq!(claim_ids(&store, "b", T0, T0 + 10_000).await, ["due"]);
    assert_eq!(
        claim_ids(&store, "b", T0, T0 + 10_000).await,
        Vec::<String>::new(),
        "a claimed item is not claimed twice"
    );
    assert_eq!(store.next_due().await.unwrap(), Some(T0 + 500));
    assert_eq!(
        claim_ids(&store, "b", T0 + 499, T0 + 10_000).await,
        Vec::<String>::new()
    );
    assert_eq!(
        claim_ids(&store, "b", T0 + 500, T0 + 10_000).await,
        ["later"]
    );
    assert_eq!(
        store.next_due().await.unwrap(),
        Some(T0 + 1000),
        "then the earliest lease expiry"
    );
    assert_eq!(
        claim_ids(&store, "b", T0 + 1000, T0 + 10_000).await,
        Vec::<String>::new(),
        "a lease holds until it ends"
    );
    assert_eq!(
        claim_ids(&store, "b", T0 + 1001, T0 + 10_000).await,
        ["leased"],
        "an expired lease is claimable"
    );

    let limited = store.claim("c", T0 + 20_000, T0 + 30_000, 2).await.unwrap();
    assert_eq!(limited.len(), 2, "claim honours its limit");
    for c in &limited {
        assert_eq!(
            store.run(&c.run.id).await.unwrap().unwrap().status,
            RunStatus::Running
        );
    }
}

/// Claiming bumps the revision, so the previous holder's commits fail.
pub async fn claim_fences_the_previous_holder(store: Arc<dyn Store>) {
    created(&store, new_run("r1", "wf", T0, None, Some(("a", T0 + 100)))).await;
    let claimed = store.claim("b", T0 + 200, T0 + 10_000, 10).await.unwrap();
    assert_eq!(claimed.len(), 1);
    assert_eq!(claimed[0].run.rev, 2, "the claim returns the new revision");
    assert_eq!(rev(&store, "r1").await, 2);
    assert!(
        is_conflict(
            store
                .commit(commit(
                    "r1",
                    1,
                    RunStatus::Running,
                    pos(1, 0),
                    Work::Remove,
                    T0 + 300
                ))
                .await
        ),
        "the old holder is fenced out"
    );
    store
        .commit(commit(
            "r1",
            2,
            RunStatus::Completed,
            pos(0, 0),
            Work::Remove,
            T0 + 300,
        ))
        .await
        .expect("the new holder commits");
}

/// A claim hands over what the run needs to carry on.
pub async fn claim_returns_outputs_and_open_effects(store: Arc<dyn Store>) {
    created(&store, new_run("r1", "wf", T0, None, Some(("a", T0 + 100)))).await;
    let mut c = commit(
        "r1",
        1,
        RunStatus::Running,
        pos(1, 0),
        Work::Keep {
            lease_until_ms: T0 + 100,
        },
        T0 + 1,
    );
    c.step = Some(step(
        0,
        "first",
        1,
        StepStatus::Completed,
        Some(r#"{"v":1}"#),
        T0 + 1,
    ));
    store.commit(c).await.unwrap();
    let mut c = commit(
        "r1",
        2,
        RunStatus::Running,
        pos(2, 0),
        Work::Keep {
            lease_until_ms: T0 + 100,
        },
        T0 + 2,
    );
    c.step = Some(step(1, "second", 1, StepStatus::Skipped, None, T0 + 2));
    store.commit(c).await.unwrap();
    let mut c = commit(
        "r1",
        3,
        RunStatus::Running,
        pos(2, 0),
        Work::Keep {
            lease_until_ms: T0 + 100,
        },
        T0 + 3,
    );
    c.effect = Some(effect("r1", "third", EffectStatus::Started, None, T0 + 3));
    store.commit(c).await.unwrap();

    // The node dies; another claims after the lease ends.
    let claimed = store.claim("b", T0 + 101, T0 + 10_000, 10).await.unwrap();
    assert_eq!(claimed.len(), 1);
    let c = &claimed[0];
    assert_eq!(c.run.position, pos(2, 0));
    let mut outputs = c.outputs.clone();
    outputs.sort();
    assert_eq!(outputs, [(0, Some(r#"{"v":1}"#.to_string())), (1, None)]);
    assert_eq!(c.open_effects.len(), 1);
    assert_eq!(
        (
            c.open_effects[0].key.as_str(),
            c.open_effects[0].step_id.as_str(),
            c.open_effects[0].status
        ),
        ("r1:third", "third", EffectStatus::Started)
    );
}

/// `Claimed::run` carries the status and wait the run is resumed from (the
/// engine logs them in `run.resumed`), with the new, fencing revision.
pub async fn claim_reports_the_state_it_resumes_from(store: Arc<dyn Store>) {
    created(&store, new_run("r1", "wf", T0, None, None)).await;
    let mut c = commit(
        "r1",
        1,
        RunStatus::Waiting,
        pos(1, 0),
        Work::At { run_at_ms: T0 + 10 },
        T0,
    );
    c.wait = Some(WaitReason::Timer);
    store.commit(c).await.unwrap();
    let claimed = store.claim("a", T0 + 10, T0 + 1000, 10).await.unwrap();
    assert_eq!(claimed.len(), 1);
    let run = &claimed[0].run;
    assert_eq!(
        (run.status, run.wait, run.rev),
        (RunStatus::Waiting, Some(WaitReason::Timer), 3)
    );
    let now = store.run("r1").await.unwrap().unwrap();
    assert_eq!(
        (now.status, now.wait),
        (RunStatus::Running, None),
        "the stored run is running"
    );
}

/// Leases are extended per node and run, and released per node.
pub async fn leases_renew_and_release(store: Arc<dyn Store>) {
    created(&store, new_run("a1", "wf", T0, None, Some(("a", T0 + 100)))).await;
    created(&store, new_run("a2", "wf", T0, None, Some(("a", T0 + 100)))).await;
    // Held by `a`, but no driver of `a` drives it: never renewed.
    created(&store, new_run("a3", "wf", T0, None, Some(("a", T0 + 100)))).await;
    created(
        &store,
        new_run("b1", "wf", T0, None, Some(("b", T0 + 10_000))),
    )
    .await;

    let driven = ["a1".to_string(), "a2".to_string(), "b1".to_string()];
    assert_eq!(
        store.renew_leases("a", &driven, T0 + 5_000).await.unwrap(),
        2,
        "only `a`'s leases on the runs it names"
    );
    assert_eq!(
        store
            .renew_leases("nobody", &driven, T0 + 5_000)
            .await
            .unwrap(),
        0
    );
    assert_eq!(store.renew_leases("a", &[], T0 + 5_000).await.unwrap(), 0);
    assert_eq!(
        claim_ids(&store, "c", T0 + 200, T0 + 20_000).await,
        ["a3"],
        "renewed leases hold; the undriven one expired"
    );

    assert_eq!(store.release_leases("a").await.unwrap(), 2);
    assert_eq!(store.release_leases("a").await.unwrap(), 0);
    assert_eq!(
        claim_ids(&store, "c", T0 + 200, T0 + 20_000).await,
        ["a1", "a2"],
        "released work is claimable at once"
    );
    assert_eq!(
        claim_ids(&store, "c", T0 + 10_001, T0 + 20_000).await,
        ["b1"]
    );
}
