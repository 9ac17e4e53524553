//! `GET /api/v1/events`: audit events across runs by time, paged by
//! cursor, limited to the caller's queues, with bad bounds named.

use axum::http::StatusCode;
use serde_json::Value;

use crate::reviews::waiting;
use crate::support::{Harness, mint};

/// Every page of `query` (which sets `since`/`until`), `(run_id, seq,
/// hash)` of each item, checking that pages hold at most `limit`.
async fn all_pages(h: &Harness, token: &str, query: &str, limit: usize) -> Vec<Value> {
    let mut items = Vec::new();
    let mut cursor: Option<String> = None;
    for _ in 0..1000 {
        let mut path = format!("/api/v1/events?{query}&limit={limit}");
        if let Some(c) = &cursor {
            path.push_str(&format!("&cursor={}", urlencode(c)));
        }
        let r = h.get(&path, Some(token)).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
        let page = r.json["items"].as_array().unwrap().clone();
        assert!(page.len() <= limit, "{}", r.text);
        items.extend(page);
        match r.json["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_string()),
            None => return items,
        }
    }
    panic!("paging did not end");
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn runs_of(items: &[Value]) -> std::collections::BTreeSet<String> {
    items
        .iter()
        .map(|i| i["run_id"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test]
async fn events_page_by_cursor_and_stay_in_the_callers_queues() {
    let h = Harness::new().await;
    let plain = [h.completed_run().await, h.completed_run().await];
    let (reviewed, _) = waiting(&h).await;
    let until = engine::now_ms() + 1;
    let range = format!("since=0&until={until}");

    // Every event of every run, once, in (at, run, seq) order, with the
    // stored hashes.
    let mut stored = Vec::new();
    for id in plain.iter().chain([&reviewed]) {
        stored.extend(h.store.events(id, 0, 1000).await.unwrap());
    }
    stored.sort_by(|a, b| (a.at_ms, &a.run_id, a.seq).cmp(&(b.at_ms, &b.run_id, b.seq)));
    let items = all_pages(&h, &h.tokens.reader, &range, 3).await;
    assert!(stored.len() > 6, "enough events to page: {}", stored.len());
    assert_eq!(
        items
            .iter()
            .map(|i| (
                i["run_id"].as_str().unwrap().to_string(),
                i["seq"].as_i64().unwrap(),
                i["hash"].as_str().unwrap().to_string(),
                i["prev_hash"].as_str().unwrap().to_string(),
            ))
            .collect::<Vec<_>>(),
        stored
            .iter()
            .map(|e| (e.run_id.clone(), e.seq, e.hash.clone(), e.prev_hash.clone()))
            .collect::<Vec<_>>()
    );
    assert_eq!(items[0]["workflow"], "triage");
    assert!(
        items
            .iter()
            .all(|i| i["at"].is_string() && i["data"].is_object())
    );

    // A token limited to queues sees the runs of those queues only: the
    // reviewed run is `operations`'; runs that never reached review are
    // `default`'s.
    let (ops, _) = mint(
        &h.store,
        "ops-reader",
        &["runs:read", "queue:operations"],
        false,
    )
    .await;
    let (dflt, _) = mint(
        &h.store,
        "default-reader",
        &["runs:read", "queue:default"],
        false,
    )
    .await;
    let (sales, _) = mint(
        &h.store,
        "sales-reader",
        &["runs:read", "queue:sales"],
        false,
    )
    .await;
    let seen = all_pages(&h, &ops, &range, 4).await;
    assert_eq!(runs_of(&seen), [reviewed.clone()].into());
    let seen = all_pages(&h, &dflt, &range, 4).await;
    assert_eq!(runs_of(&seen), plain.iter().cloned().collect());
    assert!(all_pages(&h, &sales, &range, 4).await.is_empty());

    // The workflow filter.
    let seen = all_pages(
        &h,
        &h.tokens.reader,
        &format!("{range}&workflow=reviewed"),
        50,
    )
    .await;
    assert_eq!(runs_of(&seen), [reviewed].into());
}

#[tokio::test]
async fn events_refuse_bad_parameters_and_callers_without_runs_read() {
    let h = Harness::new().await;
    for (query, field) in [
        ("since=last%20week", "since"),
        ("since=0&until=soon", "until"),
        ("since=0&cursor=garbage", "cursor"),
        ("since=0&limit=0", "limit"),
    ] {
        let r = h
            .get(&format!("/api/v1/events?{query}"), Some(&h.tokens.reader))
            .await;
        r.assert_problem(StatusCode::BAD_REQUEST, "invalid-parameter");
        assert_eq!(r.json["errors"][0]["parameter"], field, "{}", r.text);
    }
    h.get("/api/v1/events", Some(&h.tokens.reviewer))
        .await
        .assert_problem(StatusCode::FORBIDDEN, "forbidden");
    h.get("/api/v1/events", None)
        .await
        .assert_problem(StatusCode::UNAUTHORIZED, "unauthorized");
}
