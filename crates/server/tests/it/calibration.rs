//! `GET /api/v1/calibration` over the store suite's fixture of reviewed
//! runs with known edits: exact agreement per field and slice, the
//! evidence rules (deadline, bulk and pending tasks left out; rejections,
//! escalations and hand-offs counted as disagreement), weekly buckets,
//! queue-limited callers, and bad parameters named.

use axum::http::StatusCode;
use expect_test::{Expect, expect};
use serde_json::Value;

use crate::support::{Harness, mint};

/// One line per field row: the figures a reader checks.
fn lines(report: &Value) -> String {
    let mut out = String::new();
    for f in report["fields"].as_array().unwrap() {
        let weeks: Vec<String> = f["weeks"]
            .as_array()
            .unwrap()
            .iter()
            .map(|w| {
                format!(
                    "{}:{}/{}",
                    w["week"].as_str().unwrap(),
                    w["agreed"],
                    w["reviews"]
                )
            })
            .collect();
        out.push_str(&format!(
            "{} v{} {} {}{} n={} agreed={} {} [{}, {}] norm={} edits={} outcomes={}/{}/{}/{} weeks={}\n",
            f["workflow"].as_str().unwrap(),
            f["version"],
            f["step"].as_str().unwrap(),
            f["field"].as_str().unwrap(),
            f["slice"].as_str().map(|s| format!("[{s}]")).unwrap_or_default(),
            f["reviews"],
            f["agreed"],
            f["agreement"],
            f["interval"]["low"],
            f["interval"]["high"],
            f["normalised_agreement"],
            f["mean_edit_distance"],
            f["outcomes"]["approved"],
            f["outcomes"]["rejected"],
            f["outcomes"]["escalated"],
            f["outcomes"]["handed_off"],
            weeks.join(","),
        ));
    }
    let e = &report["excluded"];
    out.push_str(&format!(
        "reviews={} expired={} bulk={} undecided={} before_window={}\n",
        report["reviews"], e["expired"], e["bulk"], e["undecided"], e["before_window"]
    ));
    out
}

async fn check(h: &Harness, token: &str, query: &str, expect: Expect) -> Value {
    let r = h
        .get(&format!("/api/v1/calibration{query}"), Some(token))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    expect.assert_eq(&lines(&r.json));
    r.json
}

#[tokio::test]
async fn calibration_reports_agreement_per_field_and_slice() {
    let h = Harness::new().await;
    store::suite::seed_calibration(&h.store).await;
    let all = check(&h, &h.tokens.reader, "?workflow=intake", expect![[r#"
        intake v1 review intent n=6 agreed=2 0.3333 [0.0968, 0.7] norm=null edits=null outcomes=3/1/1/1 weeks=2026-11-02:2/3,2026-11-09:0/3
        intake v1 review summary n=6 agreed=1 0.1667 [0.0301, 0.5635] norm=0.3333 edits=5.6667 outcomes=3/1/1/1 weeks=2026-11-02:1/3,2026-11-09:0/3
        intake v2 review intent n=1 agreed=1 1.0 [0.2065, 1.0] norm=null edits=null outcomes=1/0/0/0 weeks=2026-11-09:1/1
        intake v2 review summary n=1 agreed=1 1.0 [0.2065, 1.0] norm=1.0 edits=0.0 outcomes=1/0/0/0 weeks=2026-11-09:1/1
        reviews=7 expired=1 bulk=1 undecided=0 before_window=0
    "#]]).await;
    assert_eq!(all["workflow"], "intake");
    assert_eq!(all["fields"][0]["version_hash"], "hash-t1");
    assert_eq!(all["fields"][0]["text"], false);
    assert_eq!(all["fields"][1]["text"], true);
    // The latest edits, newest first: c03's two fields, then c02's summary.
    let changes: Vec<(String, String, String, String)> = all["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["review_id"].as_str().unwrap().to_string(),
                c["field"].as_str().unwrap().to_string(),
                c["value"].to_string(),
                c["by"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(
        changes,
        [
            (
                "vc03".into(),
                "intent".into(),
                r#""complaint""#.into(),
                "user:ann".into()
            ),
            (
                "vc03".into(),
                "summary".into(),
                r#""Wants their money back""#.into(),
                "user:ann".into()
            ),
            (
                "vc02".into(),
                "summary".into(),
                r#""  refund   ASKED ""#.into(),
                "user:bob".into()
            ),
        ]
    );

    check(
        &h,
        &h.tokens.reader,
        "?workflow=intake&by=intent",
        expect![[r#"
            intake v1 review intent[billing] n=3 agreed=2 0.6667 [0.2077, 0.9385] norm=null edits=null outcomes=3/0/0/0 weeks=2026-11-02:2/3
            intake v1 review summary[billing] n=3 agreed=1 0.3333 [0.0615, 0.7923] norm=0.6667 edits=5.6667 outcomes=3/0/0/0 weeks=2026-11-02:1/3
            intake v1 review intent[complaint] n=1 agreed=0 0.0 [0.0, 0.7935] norm=null edits=null outcomes=0/0/0/1 weeks=2026-11-09:0/1
            intake v1 review summary[complaint] n=1 agreed=0 0.0 [0.0, 0.7935] norm=0.0 edits=null outcomes=0/0/0/1 weeks=2026-11-09:0/1
            intake v1 review intent[sales_lead] n=1 agreed=0 0.0 [0.0, 0.7935] norm=null edits=null outcomes=0/1/0/0 weeks=2026-11-09:0/1
            intake v1 review summary[sales_lead] n=1 agreed=0 0.0 [0.0, 0.7935] norm=0.0 edits=null outcomes=0/1/0/0 weeks=2026-11-09:0/1
            intake v1 review intent[support_request] n=1 agreed=0 0.0 [0.0, 0.7935] norm=null edits=null outcomes=0/0/1/0 weeks=2026-11-09:0/1
            intake v1 review summary[support_request] n=1 agreed=0 0.0 [0.0, 0.7935] norm=0.0 edits=null outcomes=0/0/1/0 weeks=2026-11-09:0/1
            intake v2 review intent[support_request] n=1 agreed=1 1.0 [0.2065, 1.0] norm=null edits=null outcomes=1/0/0/0 weeks=2026-11-09:1/1
            intake v2 review summary[support_request] n=1 agreed=1 1.0 [0.2065, 1.0] norm=1.0 edits=0.0 outcomes=1/0/0/0 weeks=2026-11-09:1/1
            reviews=7 expired=1 bulk=1 undecided=0 before_window=0
        "#]],
    )
    .await;
    check(
        &h,
        &h.tokens.reader,
        "?workflow=intake&by=provider&since=2026-11-02",
        expect![[r#"
            intake v1 review intent[heuristic] n=1 agreed=0 0.0 [0.0, 0.7935] norm=null edits=null outcomes=1/0/0/0 weeks=2026-11-02:0/1
            intake v1 review summary[heuristic] n=1 agreed=0 0.0 [0.0, 0.7935] norm=0.0 edits=6.0 outcomes=1/0/0/0 weeks=2026-11-02:0/1
            intake v1 review intent[openai] n=5 agreed=2 0.4 [0.1176, 0.7693] norm=null edits=null outcomes=2/1/1/1 weeks=2026-11-02:2/2,2026-11-09:0/3
            intake v1 review summary[openai] n=5 agreed=1 0.2 [0.0362, 0.6245] norm=0.4 edits=5.5 outcomes=2/1/1/1 weeks=2026-11-02:1/2,2026-11-09:0/3
            intake v2 review intent[openai] n=1 agreed=1 1.0 [0.2065, 1.0] norm=null edits=null outcomes=1/0/0/0 weeks=2026-11-09:1/1
            intake v2 review summary[openai] n=1 agreed=1 1.0 [0.2065, 1.0] norm=1.0 edits=0.0 outcomes=1/0/0/0 weeks=2026-11-09:1/1
            reviews=7 expired=1 bulk=1 undecided=0 before_window=0
        "#]],
    )
    .await;
    check(
        &h,
        &h.tokens.reader,
        "?since=1794214800000",
        expect![[r#"
            intake v1 review intent n=3 agreed=0 0.0 [0.0, 0.5615] norm=null edits=null outcomes=0/1/1/1 weeks=2026-11-09:0/3
            intake v1 review summary n=3 agreed=0 0.0 [0.0, 0.5615] norm=0.0 edits=null outcomes=0/1/1/1 weeks=2026-11-09:0/3
            intake v2 review intent n=1 agreed=1 1.0 [0.2065, 1.0] norm=null edits=null outcomes=1/0/0/0 weeks=2026-11-09:1/1
            intake v2 review summary n=1 agreed=1 1.0 [0.2065, 1.0] norm=1.0 edits=0.0 outcomes=1/0/0/0 weeks=2026-11-09:1/1
            refunds v1 review intent n=1 agreed=1 1.0 [0.2065, 1.0] norm=null edits=null outcomes=1/0/0/0 weeks=2026-11-09:1/1
            refunds v1 review summary n=1 agreed=1 1.0 [0.2065, 1.0] norm=1.0 edits=0.0 outcomes=1/0/0/0 weeks=2026-11-09:1/1
            reviews=5 expired=1 bulk=1 undecided=0 before_window=0
        "#]],
    )
    .await;
}

#[tokio::test]
async fn calibration_stays_in_the_callers_queues_and_names_bad_parameters() {
    let h = Harness::new().await;
    store::suite::seed_calibration(&h.store).await;
    let (finance, _) = mint(&h.store, "finance", &["runs:read", "queue:finance"], false).await;
    check(&h, &finance, "", expect![[r#"
        refunds v1 review intent n=1 agreed=1 1.0 [0.2065, 1.0] norm=null edits=null outcomes=1/0/0/0 weeks=2026-11-09:1/1
        refunds v1 review summary n=1 agreed=1 1.0 [0.2065, 1.0] norm=1.0 edits=0.0 outcomes=1/0/0/0 weeks=2026-11-09:1/1
        reviews=1 expired=0 bulk=0 undecided=0 before_window=0
    "#]]).await;

    for (query, param) in [
        ("?since=yesterday", "since"),
        ("?by=not%20a%20name", "by"),
        ("?workflow=intake&by=colour", "by"),
    ] {
        let r = h
            .get(
                &format!("/api/v1/calibration{query}"),
                Some(&h.tokens.reader),
            )
            .await;
        r.assert_problem(StatusCode::BAD_REQUEST, "invalid-parameter");
        assert!(r.text.contains(param), "{query}: {}", r.text);
    }
    let r = h
        .get(
            "/api/v1/calibration?workflow=intake&by=colour",
            Some(&h.tokens.reader),
        )
        .await;
    assert!(
        r.text.contains("intent, summary"),
        "the message lists the fields one may slice by: {}",
        r.text
    );
    // The document names the endpoint, its parameters and every status.
    let doc = h.get("/api/openapi.json", None).await.json;
    let op = &doc["paths"]["/api/v1/calibration"]["get"];
    let params: Vec<&str> = op["parameters"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(params, ["workflow", "since", "by"]);
    for status in ["200", "400", "401", "403", "503"] {
        assert!(op["responses"][status].is_object(), "{status}: {op}");
    }
    h.get("/api/v1/calibration", None)
        .await
        .assert_problem(StatusCode::UNAUTHORIZED, "unauthorized");
    h.get("/api/v1/calibration", Some(&h.tokens.reviewer))
        .await
        .assert_problem(StatusCode::FORBIDDEN, "forbidden");
}
