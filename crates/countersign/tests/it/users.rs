//! `countersign user create|list`: generated or piped passwords, stored
//! only as argon2 hashes; bad input exits 2.

use std::io::Write;
use std::process::{Command, Stdio};

use crate::{TempDir, bin};

fn user(db: &str, args: &[&str], stdin: Option<&str>) -> std::process::Output {
    let mut child = Command::new(bin())
        .args(["user", "create", "--database", db])
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    if let Some(s) = stdin {
        input.write_all(s.as_bytes()).unwrap();
    }
    drop(input);
    child.wait_with_output().unwrap()
}

#[test]
fn users_are_created_with_hashed_passwords_and_listed() {
    let dir = TempDir::new("users");
    let path = dir.0.join("cs.db");
    let db = format!("sqlite://{}", path.display());
    let out = user(
        &db,
        &[
            "--email",
            "Ann@Example.com",
            "--role",
            "reviewer",
            "--queues",
            "operations,managers",
            "--slack-user",
            "U012AB3CD",
        ],
        None,
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    let generated = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert_eq!(generated.chars().count(), 20, "{generated}");
    let out = user(
        &db,
        &[
            "--email",
            "lead@example.com",
            "--role",
            "admin",
            "--password-stdin",
        ],
        Some("correct horse battery staple\n"),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.stdout.is_empty(), "a piped password is not echoed");

    for (args, stdin) in [
        (vec!["--email", "ann@example.com", "--role", "viewer"], None),
        (
            vec!["--email", "bob@example.com", "--role", "reviewer"],
            None,
        ),
        (vec!["--email", "bob@example.com", "--role", "root"], None),
        (vec!["--email", "not-an-email", "--role", "viewer"], None),
        (
            vec![
                "--email",
                "c@example.com",
                "--role",
                "viewer",
                "--password-stdin",
            ],
            Some("short\n"),
        ),
    ] {
        let out = user(&db, &args, stdin);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
    }

    let out = Command::new(bin())
        .args(["user", "list", "--database", &db])
        .output()
        .unwrap();
    let list = String::from_utf8_lossy(&out.stdout);
    assert!(list.contains("ann@example.com"), "{list}");
    assert!(list.contains("operations,managers"), "{list}");
    assert!(
        list.contains("lead@example.com") && list.contains("admin"),
        "{list}"
    );
    assert!(!list.contains("argon2"), "{list}");

    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let store = store_sqlite::SqliteStore::open(
            &path,
            store_sqlite::Durability::CrashSafe,
            store_sqlite::Role::Admin,
        )
        .unwrap();
        use store::{Integrations, Users};
        let ann = store
            .user_by_email("ann@example.com")
            .await
            .unwrap()
            .unwrap();
        assert!(ann.password_hash.starts_with("$argon2id$"));
        assert!(server::verify_password(&generated, &ann.password_hash));
        let lead = store
            .user_by_email("lead@example.com")
            .await
            .unwrap()
            .unwrap();
        assert!(server::verify_password(
            "correct horse battery staple",
            &lead.password_hash
        ));
        let slack = store.slack_identity("U012AB3CD").await.unwrap().unwrap();
        assert_eq!(slack.actor, "user:ann@example.com");
    });
    let raw = std::fs::read(&path).unwrap();
    let wal = std::fs::read(dir.0.join("cs.db-wal")).unwrap_or_default();
    for bytes in [&raw, &wal] {
        assert!(
            !bytes
                .windows(generated.len())
                .any(|w| w == generated.as_bytes()),
            "the password is stored in clear"
        );
    }
}

fn token(db: &str, args: &[&str]) -> std::process::Output {
    Command::new(bin())
        .args([
            "token",
            "create",
            "--database",
            db,
            "--scopes",
            "reviews:decide",
        ])
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn a_token_can_act_for_a_user() {
    let dir = TempDir::new("token-user");
    let path = dir.0.join("cs.db");
    let db = format!("sqlite://{}", path.display());
    let out = user(
        &db,
        &[
            "--email",
            "ann@example.com",
            "--role",
            "reviewer",
            "--queues",
            "operations",
        ],
        None,
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = token(&db, &["--name", "ann-cli", "--user", "Ann@Example.com"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("acting for ann@example.com"), "{err}");
    let out = token(&db, &["--name", "ci"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = token(&db, &["--name", "ghost", "--user", "nobody@example.com"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("--user"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let out = Command::new(bin())
        .args(["token", "list", "--database", &db])
        .output()
        .unwrap();
    let list = String::from_utf8_lossy(&out.stdout);
    let ann_line = list.lines().find(|l| l.contains("ann-cli")).unwrap_or("");
    assert!(ann_line.ends_with("ann@example.com"), "{list}");

    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let store = store_sqlite::SqliteStore::open(
            &path,
            store_sqlite::Durability::CrashSafe,
            store_sqlite::Role::Admin,
        )
        .unwrap();
        use store::{Store, Users};
        let ann = store
            .user_by_email("ann@example.com")
            .await
            .unwrap()
            .unwrap();
        let by_name: Vec<(String, Option<String>)> = store
            .list_tokens()
            .await
            .unwrap()
            .into_iter()
            .map(|t| (t.name, t.user_id))
            .collect();
        assert_eq!(
            by_name,
            [
                ("ann-cli".to_string(), Some(ann.id)),
                ("ci".to_string(), None)
            ]
        );
    });
}

#[test]
fn users_are_disabled_enabled_and_signed_out_by_email() {
    let dir = TempDir::new("users-disable");
    let db = format!("sqlite://{}", dir.0.join("cs.db").display());
    let out = user(
        &db,
        &["--email", "ann@example.com", "--role", "admin"],
        None,
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let cli = |args: &[&str]| {
        Command::new(bin())
            .args(args)
            .args(["--database", &db])
            .output()
            .unwrap()
    };
    let status_of_ann = || {
        let out = cli(&["user", "list"]);
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        text.lines()
            .find(|l| l.contains("ann@example.com"))
            .and_then(|l| l.split_whitespace().last())
            .unwrap_or_default()
            .to_string()
    };
    assert_eq!(status_of_ann(), "active");
    let out = cli(&["user", "disable", "--email", "ANN@example.com"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("disabled ann@example.com"));
    assert_eq!(status_of_ann(), "disabled");
    let out = cli(&["user", "enable", "--email", "ann@example.com"]);
    assert!(out.status.success());
    assert_eq!(status_of_ann(), "active");
    let out = cli(&["session", "revoke", "--email", "ann@example.com"]);
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "ended 0 session(s) of ann@example.com"
    );
    for args in [
        &["user", "disable", "--email", "nobody@example.com"][..],
        &["session", "revoke", "--email", "nobody@example.com"][..],
    ] {
        let out = cli(args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("no user \"nobody@example.com\""),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
