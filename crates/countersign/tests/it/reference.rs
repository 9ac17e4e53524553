//! The reference workflow end to end, as shipped in `examples/`: one
//! request → one review task → the CRM item, the Slack notice and the
//! customer email all go out, with the reviewer's edits, and the email
//! (under `control: review`, covered by the review) does not ask again.

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use test_kit::fake_gmail::{self, FakeGmail};
use test_kit::fake_monday::{self, FakeMonday};
use test_kit::fake_slack::{self, FakeSlack};

use crate::{Proc, TempDir, free_port, token, wait_healthy};

const BOARD: &str = "4242";

fn examples() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples")
}

async fn get(client: &reqwest::Client, url: String, secret: &str) -> Value {
    client
        .get(url)
        .bearer_auth(secret)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_request_one_review_task_and_every_action_goes_out_as_approved() {
    let monday = FakeMonday::start().await;
    let labels: &[&str] = &[
        "Support",
        "Sales",
        "Billing",
        "Complaint",
        "Partnership",
        "Other",
    ];
    monday.board(
        BOARD,
        &[
            ("email", "email", &[]),
            ("notes", "long_text", &[]),
            ("category", "status", labels),
            ("priority", "status", &["Low", "Medium", "High", "Urgent"]),
            ("next_step", "text", &[]),
        ],
    );
    let slack = FakeSlack::start().await;
    let gmail = FakeGmail::start().await;
    let dir = TempDir::new("reference");
    let flows = dir.0.join("workflows");
    std::fs::create_dir_all(flows.join("prompts")).unwrap();
    std::fs::copy(
        examples().join("inbound-request.yaml"),
        flows.join("inbound-request.yaml"),
    )
    .unwrap();
    std::fs::copy(
        examples().join("prompts/triage.md.j2"),
        flows.join("prompts/triage.md.j2"),
    )
    .unwrap();
    let secret = token(&dir);
    let port = free_port();
    let env = vec![
        ("MONDAY_BOARD_ID", BOARD.to_string()),
        ("MONDAY_API_URL", monday.url()),
        ("MONDAY_API_TOKEN", fake_monday::TOKEN.into()),
        ("SLACK_API_URL", slack.url()),
        ("SLACK_BOT_TOKEN", fake_slack::TOKEN.into()),
        ("GMAIL_API_URL", gmail.api_url()),
        ("GMAIL_TOKEN_URL", gmail.token_url()),
        ("GMAIL_CLIENT_ID", fake_gmail::CLIENT_ID.into()),
        ("GMAIL_CLIENT_SECRET", fake_gmail::CLIENT_SECRET.into()),
        ("GMAIL_REFRESH_TOKEN", fake_gmail::REFRESH_TOKEN.into()),
        ("GMAIL_SENDER", fake_gmail::SENDER.into()),
        // The offline heuristic drafts; no model is called.
        ("OPENAI_API_KEY", String::new()),
    ];
    let _node = Proc::serve(&dir, port, &env);
    let base = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::new();
    wait_healthy(&client, &base).await;

    let run: Value = client
        .post(format!(
            "{base}/api/v1/workflows/inbound-request/runs?wait=10"
        ))
        .bearer_auth(&secret)
        .json(
            &json!({ "name": "Ana", "email": "ana@example.com", "company": "Acme",
            "message": "URGENT: our invoice is wrong and we want a refund now" }),
        )
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        (&run["status"], &run["wait"]),
        (&json!("waiting"), &json!("review")),
        "{run}"
    );
    let run_id = run["run_id"].as_str().unwrap().to_string();
    let tasks = |status: &'static str| {
        let client = client.clone();
        let (base, secret, run_id) = (base.clone(), secret.clone(), run_id.clone());
        async move {
            get(
                &client,
                format!("{base}/api/v1/reviews?status={status}&limit=100"),
                &secret,
            )
            .await["items"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|t| t["run_id"] == json!(run_id))
                .cloned()
                .collect::<Vec<_>>()
        }
    };
    let pending = tasks("pending").await;
    assert_eq!(pending.len(), 1, "{pending:?}");
    let reply = "Hi Ana, our sales team will call you today.";
    let decided = client
        .post(format!(
            "{base}/api/v1/reviews/{}/decision",
            pending[0]["id"].as_str().unwrap()
        ))
        .bearer_auth(&secret)
        .json(&json!({ "decision": "approve",
            "values": { "intent": "sales_lead", "customer_reply_draft": reply } }))
        .send()
        .await
        .unwrap();
    assert!(
        decided.status().is_success(),
        "{}",
        decided.text().await.unwrap()
    );

    let deadline = Instant::now() + Duration::from_secs(30);
    let done = loop {
        let r = get(&client, format!("{base}/api/v1/runs/{run_id}"), &secret).await;
        if r["status"] != json!("running")
            && r["status"] != json!("queued")
            && r["wait"] != json!("review")
            || Instant::now() > deadline
        {
            break r;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(done["status"], json!("completed"), "{done}");
    assert_eq!(tasks("pending").await.len(), 0, "no second task");
    assert_eq!(tasks("approved").await.len(), 1, "one task in all");

    let items = monday.items(BOARD);
    assert_eq!(items.len(), 1, "{items:?}");
    assert_eq!(items[0].name, "Ana — Acme");
    assert_eq!(
        items[0].values["category"],
        json!({ "label": "Sales" }),
        "{items:?}"
    );
    let posted = slack.posted();
    assert_eq!(posted.len(), 1);
    assert!(
        posted[0].text.contains("sales_lead from Ana"),
        "{}",
        posted[0].text
    );
    let sent = gmail.sent();
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].subject, "Re: your request");
    let raw = {
        use base64::Engine as _;
        let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(sent[0].raw.trim_end_matches('='))
            .expect("base64url RFC 822");
        String::from_utf8_lossy(&bytes).into_owned()
    };
    assert!(raw.contains(reply), "{raw}");
    for problems in [monday.problems(), slack.problems(), gmail.problems()] {
        assert_eq!(problems, Vec::<String>::new());
    }
}
