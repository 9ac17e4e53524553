//! The command line contract: exit codes 0 / 1 / 2 and located errors.

use std::process::Command;

use crate::{TempDir, bin};

#[test]
fn help_documents_every_command() {
    for cmd in [
        "serve",
        "worker",
        "demo",
        "validate",
        "run",
        "migrate",
        "token",
        "user",
        "audit",
        "export",
        "bench",
        "session",
        "calibration",
        "eval",
    ] {
        let out = Command::new(bin()).args([cmd, "--help"]).output().unwrap();
        assert!(out.status.success(), "{cmd} --help failed");
        assert!(
            String::from_utf8_lossy(&out.stdout).contains("Usage:"),
            "{cmd}"
        );
    }
}

#[test]
fn validate_accepts_the_reference_workflow() {
    let example = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../examples/inbound-request.yaml"
    );
    let out = Command::new(bin())
        .args(["validate", example])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn validate_reports_file_line_col_and_exits_2() {
    let dir = TempDir::new("validate");
    let f = dir.0.join("bad.yaml");
    std::fs::write(
        &f,
        "name: bad\nsteps:\n  - id: triage\n    rules: []\n  - id: check\n    rules:\n      - when: triag.intent == \"spam\"\n        then: { finish: x }\n",
    )
    .unwrap();
    let out = Command::new(bin())
        .arg("validate")
        .arg(&f)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    let want = format!(
        "{}:7:15: steps[1].rules[0].when: unknown variable \"triag\" (did you mean \"triage\"?)",
        f.display()
    );
    assert!(err.contains(&want), "{err}");
}

#[test]
fn run_prints_the_outcome_and_rejects_bad_input_with_2() {
    let example = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../examples/inbound-request.yaml"
    );
    let out = Command::new(bin())
        .args([
            "run",
            example,
            "--input",
            r#"{"name":"Ada","email":" ADA@EXAMPLE.COM ","message":"unsubscribe"}"#,
        ])
        // Offline: without a key the `triage` step goes straight to the
        // keyword heuristic, which is deterministic.
        .env_remove("OPENAI_API_KEY")
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The reference workflow discards nothing unseen: the heuristic calls
    // an unsubscribe/personal-data request spam, and it still waits for a
    // person, in `operations` (not the `discard` queue) because of what
    // it is about.
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        (report["status"].as_str(), report["wait"].as_str()),
        (Some("waiting"), Some("review")),
        "{report}"
    );
    let triage = &report["outputs"]["triage"];
    assert_eq!(
        (triage["provider"].as_str(), triage["intent"].as_str()),
        (Some("heuristic"), Some("spam")),
        "{triage}"
    );
    assert_eq!(
        report["outputs"]["screen"]["review_rule"]["why"],
        "Personal data, unsubscribe or legal matter"
    );
    assert_eq!(report["outputs"]["review"]["queue"], "operations");

    // Likely spam waits in the `discard` queue for a person to clear.
    let out = Command::new(bin())
        .args([
            "run",
            example,
            "--input",
            r#"{"name":"Bot","email":"bot@example.com","message":"Click here to make money with our casino"}"#,
        ])
        .env_remove("OPENAI_API_KEY")
        .output()
        .unwrap();
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["outputs"]["triage"]["intent"], "spam", "{report}");
    assert_eq!(report["status"], "waiting", "{report}");
    assert_eq!(report["outputs"]["review"]["queue"], "discard", "{report}");

    // A real request is kept, and the unsure heuristic sends it to a person:
    // the run stops to wait for review, which is a settled state (exit 0).
    let out = Command::new(bin())
        .args([
            "run",
            example,
            "--input",
            r#"{"name":"Ada","email":"ada@example.com","message":"Our invoice is wrong, please call me urgently"}"#,
        ])
        .env_remove("OPENAI_API_KEY")
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        (report["status"].as_str(), report["wait"].as_str()),
        (Some("waiting"), Some("review")),
        "{report}"
    );
    assert_eq!(report["outcome"], serde_json::Value::Null);
    assert_eq!(report["outputs"]["triage"]["intent"], "billing");
    assert_eq!(report["outputs"]["screen"]["review"], "required");
    let review = &report["outputs"]["review"];
    assert_eq!(
        (review["status"].as_str(), review["queue"].as_str()),
        (Some("pending"), Some("operations")),
        "{review}"
    );
    assert!(
        review["review"].as_str().is_some_and(|id| !id.is_empty()),
        "{review}"
    );
    assert!(
        report["outputs"].get("record").is_none(),
        "nothing after the review runs before a decision"
    );

    let out = Command::new(bin())
        .args(["run", example, "--input", r#"{"name":"Ada"}"#])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("/email") && err.contains("/message"), "{err}");

    let out = Command::new(bin())
        .args(["run", example, "--input", "{not json"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--input:1:2"));
}

#[test]
fn tokens_are_shown_once_and_stored_hashed() {
    let dir = TempDir::new("tokens");
    let db = format!("sqlite://{}", dir.0.join("cs.db").display());
    let out = Command::new(bin())
        .args([
            "token",
            "create",
            "--name",
            "ci",
            "--scopes",
            "runs:write,reviews:decide",
            "--database",
            &db,
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let secret = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert!(secret.starts_with("cs_"), "{secret}");
    let raw = std::fs::read(dir.0.join("cs.db")).unwrap();
    let wal = std::fs::read(dir.0.join("cs.db-wal")).unwrap_or_default();
    let needle = secret.as_bytes();
    for bytes in [&raw, &wal] {
        assert!(
            !bytes.windows(needle.len()).any(|w| w == needle),
            "the secret is stored in clear"
        );
    }
    let out = Command::new(bin())
        .args([
            "token",
            "create",
            "--name",
            "x",
            "--scopes",
            "root",
            "--database",
            &db,
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let out = Command::new(bin())
        .args(["token", "revoke", "ci", "--database", &db])
        .output()
        .unwrap();
    assert!(out.status.success());
    let out = Command::new(bin())
        .args(["token", "list", "--database", &db])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).contains("revoked"));
}

#[test]
fn unsupported_database_urls_are_bad_input() {
    let out = Command::new(bin())
        .args(["migrate", "--database", "mysql://x"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn json_logs_carry_the_run_and_step_ids_as_fields() {
    let dir = TempDir::new("json-logs");
    let wf = dir.0.join("refused.yaml");
    std::fs::write(
        &wf,
        "name: refused\nsteps:\n  - id: call\n    http: { url: \"http://127.0.0.1:9/unreachable\", timeout: 2s }\n    retry: { max_attempts: 1 }\n",
    )
    .unwrap();
    let out = Command::new(bin())
        .args(["run", wf.to_str().unwrap()])
        .env("COUNTERSIGN_LOG_FORMAT", "json")
        .env("COUNTERSIGN_LOG", "warn")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<serde_json::Value> = stderr
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    let failed = lines
        .iter()
        .find(|l| l["message"] == "step attempt failed")
        .unwrap_or_else(|| panic!("no JSON line for the failed attempt in {stderr}"));
    assert!(
        failed["run_id"].as_str().is_some_and(|r| !r.is_empty()),
        "{failed}"
    );
    assert_eq!(failed["step_id"], "call", "{failed}");
    assert_eq!(failed["kind"], "http", "{failed}");
    assert_eq!(failed["level"], "WARN", "{failed}");

    let out = Command::new(bin())
        .args(["validate", wf.to_str().unwrap()])
        .env("COUNTERSIGN_LOG_FORMAT", "yaml")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("COUNTERSIGN_LOG_FORMAT"));
}

#[test]
fn a_demo_on_a_busy_port_says_so_before_it_prints_credentials() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let dir = TempDir::new("busy-demo");
    let out = Command::new(bin())
        .args(["demo", "--listen", &addr, "--data"])
        .arg(&dir.0)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stdout.contains("API token"), "{stdout}");
    assert!(
        stderr.contains(&format!("--listen {addr}")) && stderr.contains("pick another address"),
        "{stderr}"
    );
    // Nothing was created: the data folder holds no database.
    assert!(!dir.0.join("countersign.db").exists());
}
