//! `countersign slack map|list`: Slack members mapped to reviewers for
//! Slack approvals; a second map replaces the first; bad input exits 2.

use std::process::Command;

use crate::{TempDir, bin};

fn slack(db: &str, args: &[&str]) -> std::process::Output {
    Command::new(bin())
        .arg("slack")
        .args(args)
        .args(["--database", db])
        .output()
        .unwrap()
}

#[test]
fn slack_members_are_mapped_listed_and_remapped() {
    let dir = TempDir::new("slack-map");
    let db = format!("sqlite://{}", dir.0.join("cs.db").display());
    let map = |actor: &str, queues: &str| {
        slack(
            &db,
            &[
                "map",
                "--slack-user",
                "U012AB3CD",
                "--actor",
                actor,
                "--queues",
                queues,
            ],
        )
    };
    let out = map("alice@example.com", "operations,managers");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = map("bob@example.com", "managers");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let list = String::from_utf8_lossy(&slack(&db, &["list"]).stdout).into_owned();
    assert!(
        list.contains("U012AB3CD") && list.contains("bob@example.com"),
        "{list}"
    );
    assert!(!list.contains("alice@example.com"), "{list}");
    for bad in [
        vec![
            "map",
            "--slack-user",
            "U 1",
            "--actor",
            "a@b.c",
            "--queues",
            "x",
        ],
        vec![
            "map",
            "--slack-user",
            "U1",
            "--actor",
            "a@b.c",
            "--queues",
            "",
        ],
        vec![
            "map",
            "--slack-user",
            "U1",
            "--actor",
            "a@b.c",
            "--queues",
            "no spaces",
        ],
    ] {
        let out = slack(&db, &bad);
        assert_eq!(
            out.status.code(),
            Some(2),
            "{bad:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
