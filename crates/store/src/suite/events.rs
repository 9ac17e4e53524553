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
