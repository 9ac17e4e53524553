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

pub(crate) async fn get(client: &reqwest::Client, url: String, secret: &str) -> Value {
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

/// The reference workflow served against the fake vendors.
pub(crate) struct Reference {
    pub(crate) monday: FakeMonday,
    pub(crate) slack: FakeSlack,
    pub(crate) gmail: FakeGmail,
    pub(crate) dir: TempDir,
    pub(crate) base: String,
    pub(crate) secret: String,
    pub(crate) client: reqwest::Client,
    node: Proc,
}

impl Reference {
    /// `extra` environment on top of the fakes' (it wins); `log`: write
    /// the server's log there at `debug` instead of `warn` to stderr.
    pub(crate) async fn start(
        extra: &[(&str, String)],
        log: Option<&std::path::Path>,
    ) -> Reference {
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
        let mut env = vec![
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
        env.extend(extra.iter().cloned());
        let node = match log {
            Some(path) => Proc::serve_logged(&dir, port, &env, path),
            None => Proc::serve(&dir, port, &env),
        };
        let base = format!("http://127.0.0.1:{port}");
        let client = reqwest::Client::new();
        wait_healthy(&client, &base).await;

        Reference {
            monday,
            slack,
            gmail,
            dir,
            base,
            secret,
            client,
            node,
        }
    }
}

impl Reference {
    /// Ana from Acme sends `message`; the answer to `?wait=10`.
    pub(crate) async fn submit(&self, message: &str) -> Value {
        self.client
            .post(format!(
                "{}/api/v1/workflows/inbound-request/runs?wait=10",
                self.base
            ))
            .bearer_auth(&self.secret)
            .json(
                &json!({ "name": "Ana", "email": "ana@example.com", "company": "Acme",
                "message": message }),
            )
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    /// Stops the server as an operator would (SIGTERM) and waits until it
    /// has exited, so whatever it flushes at shutdown is out.
    pub(crate) async fn stop(&mut self) {
        self.node.sigterm();
        let deadline = Instant::now() + Duration::from_secs(30);
        while self.node.try_wait().is_none() {
            assert!(
                Instant::now() < deadline,
                "the server did not stop on SIGTERM"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_request_one_review_task_and_every_action_goes_out_as_approved() {
    let r = Reference::start(&[], None).await;
    let (client, base, secret) = (&r.client, &r.base, &r.secret);
    let (monday, slack, gmail) = (&r.monday, &r.slack, &r.gmail);
    let run = r
        .submit("URGENT: our invoice is wrong and we want a refund now")
        .await;
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
        .bearer_auth(secret)
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
        let r = get(client, format!("{base}/api/v1/runs/{run_id}"), secret).await;
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

/// A request through the whole reference workflow — a model that echoes
/// its key back in an error, the fallback, a review, CRM, Slack and email —
/// with a fake credential in every variable that takes one: none of them
/// appears in any page, API answer, export or line of the server's log
/// (at `debug`), nor in any OpenTelemetry trace it exported.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_credential_appears_in_any_page_answer_export_log_or_trace() {
    use test_kit::fake_openai::{FakeOpenAi, Reply};
    let openai = FakeOpenAi::start(Reply::EchoKey).await;
    let collector = test_kit::fake_otlp::FakeCollector::start().await;
    let credentials = [
        ("OPENAI_API_KEY", "sk-proj-fakeOpenAiKey0123456789abcdef"),
        ("SLACK_SIGNING_SECRET", "fake-slack-signing-secret-8d7f6e5d"),
        ("COUNTERSIGN_LINK_SECRET", "fake-link-secret-5a4b3c2d1e0f"),
        ("COUNTERSIGN_AUDIT_KEY", "fake-audit-key-0f1e2d3c4b5a6978"),
    ];
    let logs = TempDir::new("secrets-log");
    let log = logs.0.join("serve.log");
    let mut extra: Vec<(&str, String)> = credentials
        .iter()
        .map(|(k, v)| (*k, v.to_string()))
        .collect();
    extra.push(("OPENAI_BASE_URL", openai.url()));
    extra.push(("OTEL_EXPORTER_OTLP_ENDPOINT", collector.url()));
    extra.push((
        "COUNTERSIGN_AUDIT_CHECKPOINT_DIR",
        logs.0.join("checkpoints").display().to_string(),
    ));
    let mut r = Reference::start(&extra, Some(&log)).await;
    let (client, base, secret) = (&r.client, &r.base, &r.secret);
    const PASSWORD: &str = "fake-admin-password-correct-horse";
    let db = format!("sqlite://{}", r.dir.0.join("cs.db").display());
    let mut create = std::process::Command::new(crate::bin())
        .args([
            "user",
            "create",
            "--email",
            "ada@example.com",
            "--role",
            "admin",
        ])
        .args(["--password-stdin", "--database", &db])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    {
        use std::io::Write as _;
        writeln!(create.stdin.take().unwrap(), "{PASSWORD}").unwrap();
    }
    assert!(create.wait().unwrap().success());

    // One request, drafted by the fallback after the model's 401, approved.
    let run = r.submit("Please call me about pricing for 40 seats").await;
    assert_eq!(run["wait"], json!("review"), "{run}");
    assert!(openai.hits() > 0, "the model was asked");
    let run_id = run["run_id"].as_str().unwrap().to_string();
    let reviews = get(
        client,
        format!("{base}/api/v1/reviews?status=pending"),
        secret,
    )
    .await;
    let review_id = reviews["items"][0]["id"].as_str().unwrap().to_string();
    let decided = client
        .post(format!("{base}/api/v1/reviews/{review_id}/decision"))
        .bearer_auth(secret)
        .json(&json!({ "decision": "approve" }))
        .send()
        .await
        .unwrap();
    assert!(decided.status().is_success());
    let deadline = Instant::now() + Duration::from_secs(30);
    while r.gmail.sent().is_empty() {
        assert!(Instant::now() < deadline, "the email never went out");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // Everything a person or a client system can read.
    let mut seen: Vec<(String, String)> = Vec::new();
    for path in [
        format!("/api/v1/runs/{run_id}"),
        format!("/api/v1/runs/{run_id}/events"),
        "/api/v1/runs".to_string(),
        "/api/v1/events?since=0".to_string(),
        "/api/v1/reviews?status=approved".to_string(),
        format!("/api/v1/reviews/{review_id}"),
        "/api/v1/calibration".to_string(),
        "/metrics".to_string(),
    ] {
        let text = client
            .get(format!("{base}{path}"))
            .bearer_auth(secret)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        seen.push((path, text));
    }
    let web = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let cookie = |res: &reqwest::Response, name: &str| {
        res.headers()
            .get_all("set-cookie")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .find_map(|c| c.strip_prefix(&format!("{name}=")))
            .and_then(|c| c.split(';').next())
            .unwrap_or_else(|| panic!("no {name} cookie"))
            .to_string()
    };
    let login = web.get(format!("{base}/login")).send().await.unwrap();
    let nonce = cookie(&login, "cs_login");
    let signed_in = web
        .post(format!("{base}/login"))
        .header("cookie", format!("cs_login={nonce}"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!(
            "csrf={nonce}&next=%2F&email=ada%40example.com&password={PASSWORD}"
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(signed_in.status(), 303, "signed in");
    let session = format!("cs_session={}", cookie(&signed_in, "cs_session"));
    for path in [
        "/".to_string(),
        "/runs".to_string(),
        format!("/runs/{run_id}"),
        "/inbox".to_string(),
        "/inbox?view=decided".to_string(),
        format!("/inbox/{review_id}"),
        "/outbox".to_string(),
        "/calibration".to_string(),
    ] {
        let res = web
            .get(format!("{base}{path}"))
            .header("cookie", &session)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200, "{path}");
        seen.push((path, res.text().await.unwrap()));
    }
    for format in ["jsonl", "csv"] {
        let out = std::process::Command::new(crate::bin())
            .args([
                "export",
                "--since",
                "0",
                "--format",
                format,
                "--database",
                &db,
            ])
            .output()
            .unwrap();
        assert!(out.status.success());
        seen.push((
            format!("export --format {format}"),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        ));
    }
    // Stop the server before reading its log, so every line is written
    // and the last traces are flushed.
    let token_secret = secret.clone();
    r.stop().await;
    drop(r);
    assert!(
        collector
            .spans()
            .iter()
            .any(|s| s.attr("step_id") == "reply"),
        "traces were exported, up to the email"
    );
    for (i, body) in collector.bodies().iter().enumerate() {
        seen.push((
            format!("trace export {i}"),
            String::from_utf8_lossy(body).into_owned(),
        ));
    }
    let log_text = std::fs::read_to_string(&log).unwrap();
    assert!(log_text.lines().count() > 20, "a debug log was written");
    seen.push(("the server's log".to_string(), log_text));
    // The run's own record is there (so the pages were not empty) …
    assert!(
        seen.iter()
            .any(|(_, t)| t.contains("Please call me about pricing"))
    );
    // … and no credential, nor the API token or the admin's password.
    let vendor = [
        fake_monday::TOKEN,
        fake_slack::TOKEN,
        fake_gmail::CLIENT_SECRET,
        fake_gmail::REFRESH_TOKEN,
        "ya29.fake-access",
    ];
    for (where_, text) in &seen {
        for needle in credentials
            .iter()
            .map(|(_, v)| *v)
            .chain(vendor)
            .chain([token_secret.as_str(), PASSWORD])
        {
            assert!(!text.contains(needle), "{needle:?} appears in {where_}");
        }
    }
}
