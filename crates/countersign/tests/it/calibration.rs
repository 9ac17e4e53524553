//! `countersign calibration`: the store suite's fixture of reviewed runs
//! measured by the real binary, as a table and as JSON; bad arguments
//! exit 2 naming the flag.

use std::process::{Command, Output};
use std::sync::Arc;

use expect_test::expect;
use store::Store;
use store_sqlite::{Durability, Role, SqliteStore};

use crate::{TempDir, bin};

fn calibration(db: &str, args: &[&str]) -> Output {
    Command::new(bin())
        .arg("calibration")
        .args(args)
        .args(["--database", db])
        .output()
        .unwrap()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[tokio::test]
async fn calibration_prints_agreement_per_field_and_refuses_bad_arguments() {
    let dir = TempDir::new("calibration");
    let path = dir.0.join("cs.db");
    {
        let store: Arc<dyn Store> =
            Arc::new(SqliteStore::open(&path, Durability::CrashSafe, Role::Admin).unwrap());
        store::suite::seed_calibration(&store).await;
    }
    let db = format!("sqlite://{}", path.display());

    let o = calibration(&db, &["--workflow", "intake"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    expect![[r#"
        intake · version 1 (hash-t1) · step review
        field    reviews  agreement      95% interval  normalised  mean edits
        intent         6     0.3333  [0.0968, 0.7000]           -           -
        summary        6     0.1667  [0.0301, 0.5635]      0.3333         5.7

        intake · version 2 (hash-t2) · step review
        field    reviews  agreement      95% interval  normalised  mean edits
        intent         1     1.0000  [0.2065, 1.0000]           -           -
        summary        1     1.0000  [0.2065, 1.0000]      1.0000         0.0

        7 reviews counted; not counted: 1 decided by a deadline, 1 decided in bulk.
    "#]]
    .assert_eq(&stdout(&o));

    let o = calibration(
        &db,
        &[
            "--workflow",
            "intake",
            "--by",
            "intent",
            "--since",
            "2026-11-09",
        ],
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    expect![[r#"
        intake · version 1 (hash-t1) · step review
        field    intent           reviews  agreement      95% interval  normalised  mean edits
        intent   complaint              1     0.0000  [0.0000, 0.7935]           -           -
        summary  complaint              1     0.0000  [0.0000, 0.7935]      0.0000           -
        intent   sales_lead             1     0.0000  [0.0000, 0.7935]           -           -
        summary  sales_lead             1     0.0000  [0.0000, 0.7935]      0.0000           -
        intent   support_request        1     0.0000  [0.0000, 0.7935]           -           -
        summary  support_request        1     0.0000  [0.0000, 0.7935]      0.0000           -

        intake · version 2 (hash-t2) · step review
        field    intent           reviews  agreement      95% interval  normalised  mean edits
        intent   support_request        1     1.0000  [0.2065, 1.0000]           -           -
        summary  support_request        1     1.0000  [0.2065, 1.0000]      1.0000         0.0

        4 reviews counted; not counted: 1 decided by a deadline, 1 decided in bulk.
    "#]]
    .assert_eq(&stdout(&o));

    let o = calibration(&db, &["--json", "--workflow", "refunds"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let json: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(
        (
            json["reviews"].as_u64(),
            json["fields"][0]["field"].as_str(),
            json["fields"][0]["agreement"].as_f64(),
            json["fields"][0]["interval"]["low"].as_f64(),
        ),
        (Some(1), Some("intent"), Some(1.0), Some(0.2065))
    );

    for (args, flag) in [
        (&["--since", "last tuesday"][..], "--since"),
        (&["--by", "a b"][..], "--by"),
        (&["--workflow", "intake", "--by", "colour"][..], "--by"),
    ] {
        let o = calibration(&db, args);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {}", stderr(&o));
        assert!(stderr(&o).starts_with(flag), "{args:?}: {}", stderr(&o));
        assert!(stdout(&o).is_empty(), "{args:?}");
    }
}
