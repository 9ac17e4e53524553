//! Suite cases for reading events across runs by kind.

use super::*;

/// `events_by_kind` finds one kind across runs, newest first, and pages
/// by time.
pub async fn events_by_kind_across_runs_newest_first(store: Arc<dyn Store>) {
    let mut a = new_run("ra", "wf", T0, None, None);
    a.events
        .push(event("outbox.recorded", r#"{"n":1}"#, T0 + 1));
    store.create_run(a).await.unwrap();
    let mut b = new_run("rb", "wf", T0, None, None);
    b.events
        .push(event("outbox.recorded", r#"{"n":2}"#, T0 + 5));
    b.events.push(event("effect.started", r#"{"n":3}"#, T0 + 6));
    b.events
        .push(event("outbox.recorded", r#"{"n":4}"#, T0 + 7));
    store.create_run(b).await.unwrap();

    let all = store
        .events_by_kind("outbox.recorded", None, 10)
        .await
        .unwrap();
    assert_eq!(
        all.iter()
            .map(|e| (e.run_id.as_str(), e.data.as_str()))
            .collect::<Vec<_>>(),
        [
            ("rb", r#"{"n":4}"#),
            ("rb", r#"{"n":2}"#),
            ("ra", r#"{"n":1}"#)
        ]
    );
    assert!(all.iter().all(|e| e.kind == "outbox.recorded"));
    let first = store
        .events_by_kind("outbox.recorded", None, 1)
        .await
        .unwrap();
    assert_eq!(first.len(), 1);
    let rest = store
        .events_by_kind("outbox.recorded", Some(first[0].at_ms), 10)
        .await
        .unwrap();
    assert_eq!(
        rest.iter().map(|e| e.data.as_str()).collect::<Vec<_>>(),
        [r#"{"n":2}"#, r#"{"n":1}"#]
    );
    assert!(
        store
            .events_by_kind("nothing.like.this", None, 10)
            .await
            .unwrap()
            .is_empty()
    );
}

/// `events_between` reads a time range across runs in `(at, run, seq)`
/// order, pages with a cursor without losing or repeating an event, and
/// filters by workflow and by review queue (a run without a review task
/// counts as unreviewed).
pub async fn events_between_pages_by_time(store: Arc<dyn Store>) {
    use crate::{EventRange, QueueScope};
    // ra: wf, events at T0, T0+2, T0+2 (a tie within the run).
    let mut a = new_run("ra", "wf", T0, None, None);
    a.events.push(event("x.one", "{}", T0 + 2));
    a.events.push(event("x.two", "{}", T0 + 2));
    store.create_run(a).await.unwrap();
    // rb: other workflow, events at T0+1, T0+2 (ties with ra across runs).
    let mut b = new_run("rb", "other", T0 + 1, None, None);
    b.events.push(event("x.three", "{}", T0 + 2));
    store.create_run(b).await.unwrap();
    // rc: wf, reviewed in queue "sales".
    let mut c = new_run("rc", "wf", T0 + 3, None, None);
    c.events.push(event("x.four", "{}", T0 + 9));
    store.create_run(c).await.unwrap();
    store
        .create_review(super::reviews::new_review("v1", "rc", "sales", T0 + 3))
        .await
        .unwrap();

    let range = |limit| EventRange {
        since_ms: T0,
        until_ms: T0 + 9,
        workflow: None,
        queues: None,
        after: None,
        limit,
    };
    let key = |e: &crate::RunEvent| (e.event.run_id.clone(), e.event.seq);
    let all = store.events_between(&range(100)).await.unwrap();
    let expected: Vec<(String, i64)> = [
        ("ra", 1),
        ("rb", 1),
        ("ra", 2),
        ("ra", 3),
        ("rb", 2),
        ("rc", 1),
    ]
    .iter()
    .map(|(r, s)| (r.to_string(), *s))
    .collect();
    assert_eq!(all.iter().map(key).collect::<Vec<_>>(), expected);
    assert_eq!(all[1].workflow, "other");
    assert!(
        all.iter().all(|e| e.event.at_ms < T0 + 9),
        "until is exclusive"
    );
    // The events are the stored ones, hashes included.
    let ra = store.events("ra", 0, 10).await.unwrap();
    assert_eq!(all[0].event, ra[0]);
    assert_eq!(all[3].event, ra[2]);

    // Pages of two, through the ties, give the same sequence.
    let mut paged = Vec::new();
    let mut r = range(2);
    loop {
        let page = store.events_between(&r).await.unwrap();
        assert!(page.len() <= 2);
        let Some(last) = page.last() else { break };
        r.after = Some(last.cursor());
        paged.extend(page.iter().map(key));
    }
    assert_eq!(paged, expected);

    // Since is inclusive; the workflow filter joins the run.
    let mut r = range(100);
    r.since_ms = T0 + 2;
    r.workflow = Some("wf".into());
    let wf = store.events_between(&r).await.unwrap();
    assert_eq!(
        wf.iter().map(key).collect::<Vec<_>>(),
        [
            ("ra".to_string(), 2),
            ("ra".to_string(), 3),
            ("rc".to_string(), 1)
        ]
    );

    // Queue scopes: "sales" sees rc only; unreviewed runs are ra and rb.
    let mut r = range(100);
    r.queues = Some(QueueScope {
        queues: vec!["sales".into()],
        unreviewed: false,
    });
    let sales = store.events_between(&r).await.unwrap();
    assert!(sales.iter().all(|e| e.event.run_id == "rc") && !sales.is_empty());
    r.queues = Some(QueueScope {
        queues: vec!["support".into()],
        unreviewed: true,
    });
    let default = store.events_between(&r).await.unwrap();
    assert!(!default.is_empty());
    assert!(default.iter().all(|e| e.event.run_id != "rc"));
    r.queues = Some(QueueScope {
        queues: Vec::new(),
        unreviewed: false,
    });
    assert!(store.events_between(&r).await.unwrap().is_empty());
}
