//! Suite cases for what operators and auditors see: workflow versions,
//! retry and cancel, the audit chain, queries and tokens.

use std::sync::Arc;

use domain::event::GENESIS;

use super::*;

/// A workflow's source is stored once per hash; new hashes number up.
pub async fn workflow_versions(store: Arc<dyn Store>) {
    assert_eq!(
        store
            .save_workflow("wf", "h1", "src 1", "wf.yaml", T0)
            .await
            .unwrap(),
        1
    );
    assert_eq!(
        store
            .save_workflow("wf", "h1", "src 1", "wf.yaml", T0 + 1)
            .await
            .unwrap(),
        1,
        "same hash, same version"
    );
    assert_eq!(
        store
            .save_workflow("wf", "h2", "src 2", "wf.yaml", T0 + 2)
            .await
            .unwrap(),
        2
    );
    assert_eq!(
        store
            .save_workflow("other", "h1", "src", "o.yaml", T0)
            .await
            .unwrap(),
        1,
        "versions count per name"
    );
    let v1 = store
        .workflow_version("wf", 1)
        .await
        .unwrap()
        .expect("version 1");
    assert_eq!(
        (
            v1.name.as_str(),
            v1.version,
            v1.hash.as_str(),
            v1.source.as_str(),
            v1.path.as_str(),
            v1.created_at_ms
        ),
        ("wf", 1, "h1", "src 1", "wf.yaml", T0)
    );
    assert_eq!(
        store
            .workflow_version("wf", 2)
            .await
            .unwrap()
            .unwrap()
            .source,
        "src 2"
    );
    assert_eq!(store.workflow_version("wf", 3).await.unwrap(), None);
    assert_eq!(store.workflow_version("nope", 1).await.unwrap(), None);
}

/// Operator retry and cancel answer with the run or say why not.
pub async fn retry_and_cancel(store: Arc<dyn Store>) {
    assert_eq!(
        store.retry_run("nope", "user:op", T0).await.unwrap(),
        OpResult::NotFound
    );
    assert_eq!(
        store.cancel_run("nope", "user:op", T0).await.unwrap(),
        OpResult::NotFound
    );

    created(&store, new_run("f", "wf", T0, None, Some(("a", T0 + 1000)))).await;
    let mut c = commit("f", 1, RunStatus::Failed, pos(1, 2), Work::Remove, T0 + 1);
    c.error = Some("boom".into());
    store.commit(c).await.unwrap();
    assert_eq!(
        claim_ids(&store, "a", T0 + 2, T0 + 1000).await,
        Vec::<String>::new(),
        "a failed run has no work"
    );

    let OpResult::Done(run) = store.retry_run("f", "user:op", T0 + 10).await.unwrap() else {
        panic!("retry of a failed run is allowed")
    };
    assert_eq!(
        (run.status, run.error.as_deref(), run.position),
        (RunStatus::Queued, None, pos(1, 0))
    );
    assert_eq!(run.rev, 3, "a retry bumps the revision");
    let events = store.events("f", 0, 100).await.unwrap();
    let last = events.last().unwrap();
    assert_eq!(
        (last.kind.as_str(), last.actor.as_str(), last.at_ms),
        (kind::RUN_RETRIED, "user:op", T0 + 10)
    );
    assert!(
        last.data.contains("boom"),
        "the event keeps the previous error: {}",
        last.data
    );
    assert_eq!(
        store.retry_run("f", "user:op", T0 + 11).await.unwrap(),
        OpResult::Refused(RunStatus::Queued)
    );
    assert_eq!(store.next_due().await.unwrap(), Some(T0 + 10));

    let OpResult::Done(run) = store.cancel_run("f", "user:op", T0 + 12).await.unwrap() else {
        panic!("cancel of a queued run is allowed")
    };
    assert_eq!(
        (run.status, run.wait, run.rev),
        (RunStatus::Cancelled, None, 4)
    );
    assert_eq!(
        claim_ids(&store, "a", T0 + 20, T0 + 1000).await,
        Vec::<String>::new(),
        "a cancelled run has no work"
    );
    assert!(
        is_conflict(
            store
                .commit(commit(
                    "f",
                    3,
                    RunStatus::Running,
                    pos(1, 0),
                    Work::Remove,
                    T0 + 13
                ))
                .await
        ),
        "a worker still holding the run is fenced out"
    );
    assert_eq!(
        store.cancel_run("f", "user:op", T0 + 14).await.unwrap(),
        OpResult::Refused(RunStatus::Cancelled)
    );
    assert_eq!(
        store.retry_run("f", "user:op", T0 + 14).await.unwrap(),
        OpResult::Refused(RunStatus::Cancelled)
    );
    assert_eq!(
        store
            .events("f", 0, 100)
            .await
            .unwrap()
            .last()
            .unwrap()
            .kind,
        kind::RUN_CANCELLED
    );

    created(&store, new_run("done", "wf", T0, None, None)).await;
    store
        .commit(commit(
            "done",
            1,
            RunStatus::Completed,
            pos(0, 0),
            Work::Remove,
            T0 + 1,
        ))
        .await
        .unwrap();
    assert_eq!(
        store.cancel_run("done", "user:op", T0 + 2).await.unwrap(),
        OpResult::Refused(RunStatus::Completed)
    );
    assert_eq!(
        store.retry_run("done", "user:op", T0 + 2).await.unwrap(),
        OpResult::Refused(RunStatus::Completed)
    );

    created(&store, new_run("failed", "wf", T0, None, None)).await;
    store
        .commit(commit(
            "failed",
            1,
            RunStatus::Failed,
            pos(0, 0),
            Work::Remove,
            T0 + 1,
        ))
        .await
        .unwrap();
    assert!(
        matches!(store.cancel_run("failed", "user:op", T0 + 2).await.unwrap(), OpResult::Done(r) if r.status == RunStatus::Cancelled),
        "a failed run may be cancelled instead of retried"
    );
    for id in ["f", "done", "failed"] {
        chain_len(&store, id).await;
    }
}

/// Each run's events are numbered 1.. and chained by hash, across commits
/// and operator commands.
pub async fn events_form_a_hash_chain(store: Arc<dyn Store>) {
    let mut run = new_run("r1", "wf", T0, None, Some(("a", T0 + 1000)));
    run.events
        .push(event(kind::INPUT_NORMALIZED, r#"{"fields":["email"]}"#, T0));
    created(&store, run).await;
    created(&store, new_run("r2", "wf", T0, None, None)).await;
    for i in 0..3i64 {
        let mut c = commit(
            "r1",
            1 + i,
            RunStatus::Running,
            pos(i as usize + 1, 0),
            Work::Keep {
                lease_until_ms: T0 + 1000,
            },
            T0 + i,
        );
        c.events.push(event(
            kind::EFFECT_STARTED,
            &format!(r#"{{"i":{i}}}"#),
            T0 + i,
        ));
        store.commit(c).await.unwrap();
    }
    store.cancel_run("r1", "user:op", T0 + 10).await.unwrap();

    let events = store.events("r1", 0, 100).await.unwrap();
    assert_eq!(events.len(), 2 + 3 * 2 + 1);
    assert_eq!(
        events.iter().map(|e| e.seq).collect::<Vec<_>>(),
        (1..=9).collect::<Vec<_>>()
    );
    assert_eq!(events[0].prev_hash, GENESIS);
    assert!(events.windows(2).all(|w| w[1].prev_hash == w[0].hash));
    assert!(events.iter().all(|e| e.run_id == "r1"));
    assert_eq!(
        (events[1].kind.as_str(), events[1].data.as_str()),
        (kind::INPUT_NORMALIZED, r#"{"fields":["email"]}"#)
    );
    assert_eq!(chain_len(&store, "r1").await, 9);
    assert_eq!(chain_len(&store, "r2").await, 1, "chains are per run");

    let page = store.events("r1", 2, 2).await.unwrap();
    assert_eq!(page.iter().map(|e| e.seq).collect::<Vec<_>>(), [3, 4]);
    assert!(store.events("r1", 9, 10).await.unwrap().is_empty());
    assert!(store.events("nope", 0, 10).await.unwrap().is_empty());
}

/// Listing filters by workflow and status and pages by id.
pub async fn queries_filter_and_page(store: Arc<dyn Store>) {
    for (id, wf) in [("r01", "a"), ("r02", "b"), ("r03", "a"), ("r04", "a")] {
        created(&store, new_run(id, wf, T0, None, None)).await;
    }
    store
        .commit(commit(
            "r03",
            1,
            RunStatus::Completed,
            pos(0, 0),
            Work::Remove,
            T0 + 1,
        ))
        .await
        .unwrap();
    let ids = |runs: Vec<crate::Run>| runs.into_iter().map(|r| r.id).collect::<Vec<_>>();
    let all = RunFilter {
        limit: 10,
        ..Default::default()
    };
    assert_eq!(
        ids(store.list_runs(&all).await.unwrap()),
        ["r04", "r03", "r02", "r01"],
        "newest first"
    );
    let a = RunFilter {
        workflow: Some("a".into()),
        ..all.clone()
    };
    assert_eq!(
        ids(store.list_runs(&a).await.unwrap()),
        ["r04", "r03", "r01"]
    );
    let done = RunFilter {
        status: Some(RunStatus::Completed),
        ..all.clone()
    };
    assert_eq!(ids(store.list_runs(&done).await.unwrap()), ["r03"]);
    let page = RunFilter {
        before: Some("r03".into()),
        limit: 1,
        ..Default::default()
    };
    assert_eq!(ids(store.list_runs(&page).await.unwrap()), ["r02"]);
    // Several runs' details in one read: the same as one by one, unknown
    // ids left out.
    let mut many = store
        .run_details(&["r03".into(), "nope".into(), "r01".into()])
        .await
        .unwrap();
    many.sort_by(|a, b| a.run.id.cmp(&b.run.id));
    assert_eq!(many.len(), 2);
    for d in &many {
        let one = store.run_detail(&d.run.id).await.unwrap().unwrap();
        assert_eq!(d.run, one.run);
        assert_eq!(format!("{:?}", d.steps), format!("{:?}", one.steps));
        assert_eq!(format!("{:?}", d.effects), format!("{:?}", one.effects));
    }
    assert_eq!(
        (many[0].run.id.as_str(), many[1].run.id.as_str()),
        ("r01", "r03")
    );
    assert_eq!(many[1].run.status, RunStatus::Completed);

    assert_eq!(
        store.run_ids(None, 2).await.unwrap(),
        ["r01", "r02"],
        "oldest first"
    );
    assert_eq!(
        store.run_ids(Some("r02"), 10).await.unwrap(),
        ["r03", "r04"]
    );
    assert!(store.run_ids(Some("r04"), 10).await.unwrap().is_empty());
    // Chain heads come from the run rows: each run's last event.
    let heads = store.chain_heads(Some("r02"), 10).await.unwrap();
    assert_eq!(
        heads.iter().map(|h| h.run_id.as_str()).collect::<Vec<_>>(),
        ["r03", "r04"]
    );
    for h in &heads {
        let events = store.events(&h.run_id, 0, 100).await.unwrap();
        let last = events.last().expect("a run has events");
        assert_eq!(
            (h.seq, h.hash.as_str()),
            (last.seq, last.hash.as_str()),
            "{h:?}"
        );
    }
}

/// Tokens: create, look up by hash and id, list, refuse duplicates,
/// revoke; the user a token acts for is kept.
pub async fn tokens_crud(store: Arc<dyn Store>) {
    let token = |id: &str, name: &str, hash: &str, at: i64| Token {
        id: id.into(),
        name: name.into(),
        hash: hash.into(),
        scopes: vec!["runs:write".into(), "reviews:decide".into()],
        user_id: (id == "t1").then(|| "u-ann".into()),
        created_at_ms: at,
        revoked_at_ms: None,
    };
    store
        .create_token(token("t1", "ci", "h1", T0))
        .await
        .unwrap();
    store
        .create_token(token("t2", "ops", "h2", T0 + 1))
        .await
        .unwrap();
    assert!(
        matches!(
            store.create_token(token("t3", "ci", "h3", T0)).await,
            Err(Error::Duplicate(_))
        ),
        "names are unique"
    );
    assert!(
        matches!(
            store.create_token(token("t4", "x", "h1", T0)).await,
            Err(Error::Duplicate(_))
        ),
        "hashes are unique"
    );

    assert_eq!(
        store.token_by_hash("h1").await.unwrap(),
        Some(token("t1", "ci", "h1", T0))
    );
    assert_eq!(store.token_by_hash("nope").await.unwrap(), None);
    assert_eq!(
        store.token("t1").await.unwrap().and_then(|t| t.user_id),
        Some("u-ann".into())
    );
    assert_eq!(
        store.token("t2").await.unwrap().map(|t| t.user_id),
        Some(None),
        "a service token acts for no user"
    );
    assert_eq!(store.token("nope").await.unwrap(), None);
    let names: Vec<String> = store
        .list_tokens()
        .await
        .unwrap()
        .into_iter()
        .map(|t| t.name)
        .collect();
    assert_eq!(names, ["ci", "ops"]);

    assert!(
        store.revoke_token("ci", T0 + 5).await.unwrap(),
        "revoke by name"
    );
    assert!(
        !store.revoke_token("ci", T0 + 6).await.unwrap(),
        "already revoked"
    );
    assert!(
        store.revoke_token("t2", T0 + 7).await.unwrap(),
        "revoke by id"
    );
    assert!(!store.revoke_token("nope", T0).await.unwrap());
    assert_eq!(
        store
            .token_by_hash("h1")
            .await
            .unwrap()
            .unwrap()
            .revoked_at_ms,
        Some(T0 + 5)
    );
    assert_eq!(
        store
            .token_by_hash("h2")
            .await
            .unwrap()
            .unwrap()
            .revoked_at_ms,
        Some(T0 + 7)
    );
}

/// Free-text search over inputs, through the index: every word must occur,
/// each term's last word as a prefix; case and punctuation do not matter;
/// nothing a user types is a query operator.
pub async fn runs_are_found_by_words_of_their_input(store: Arc<dyn Store>) {
    for (id, wf, input) in [
        (
            "s01",
            "a",
            r#"{"name":"Ana Lima","email":"ana@example.com","message":"Invoice 4711 is wrong"}"#,
        ),
        (
            "s02",
            "a",
            r#"{"name":"Bob","email":"bob@example.org","message":"Rechnung falsch, bitte anrufen"}"#,
        ),
        (
            "s03",
            "b",
            r#"{"name":"Ana Souza","email":"souza@example.net","message":"Partnership?"}"#,
        ),
    ] {
        let mut r = new_run(id, wf, T0, None, None);
        r.input = input.into();
        created(&store, r).await;
    }
    let find = |text: &str, workflow: Option<&str>| {
        let store = store.clone();
        let f = RunFilter {
            text: Some(text.into()),
            workflow: workflow.map(str::to_string),
            limit: 10,
            ..Default::default()
        };
        async move {
            store
                .list_runs(&f)
                .await
                .unwrap()
                .into_iter()
                .map(|r| r.id)
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(find("ana", None).await, ["s03", "s01"]);
    assert_eq!(find("ANA lima", None).await, ["s01"], "every term");
    assert_eq!(
        find("ana", Some("a")).await,
        ["s01"],
        "with the other filters"
    );
    assert_eq!(find("ana@example.com", None).await, ["s01"], "every word");
    assert_eq!(find("wrong invoice", None).await, ["s01"], "in any order");
    assert_eq!(
        find("ana@example.c", None).await,
        ["s01"],
        "the last word a prefix"
    );
    assert_eq!(find("rechn", None).await, ["s02"]);
    assert_eq!(find("4711", None).await, ["s01"]);
    assert!(find("invoice bob", None).await.is_empty());
    // Operators of either store's query language are just punctuation.
    for odd in [
        "\"",
        "ana\" OR \"bob",
        "a & !b",
        "NEAR(ana bob)",
        "*",
        "-ana",
        "' ; --",
    ] {
        let _ = find(odd, None).await;
    }
    assert_eq!(find("ana\" OR \"bob", None).await, Vec::<String>::new());
    assert!(find("!!! ...", None).await.is_empty(), "no words, no match");
    let paged = RunFilter {
        text: Some("example".into()),
        before: Some("s03".into()),
        limit: 1,
        ..Default::default()
    };
    assert_eq!(
        store
            .list_runs(&paged)
            .await
            .unwrap()
            .into_iter()
            .map(|r| r.id)
            .collect::<Vec<_>>(),
        ["s02"]
    );
}
