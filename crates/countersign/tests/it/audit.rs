//! `audit checkpoint` and `audit verify`: a chain cut short or a run
//! deleted is found, also when whoever deleted it rewrote the run's head.

use std::process::{Command, Output};
use std::sync::Arc;

use store::suite::{commit, new_run};
use store::{Position, RunStatus, Store, Work};
use store_sqlite::{Durability, Role, SqliteStore};

use crate::{TempDir, bin};

const KEY: &str = "a checkpoint key kept outside the database";

fn audit(db: &str, args: &[&str]) -> Output {
    Command::new(bin())
        .arg("audit")
        .args(args)
        .args(["--database", db])
        .env("COUNTERSIGN_AUDIT_KEY", KEY)
        .output()
        .unwrap()
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// Three runs of three events each.
async fn seed(path: &std::path::Path) {
    let store: Arc<dyn Store> =
        Arc::new(SqliteStore::open(path, Durability::CrashSafe, Role::Admin).unwrap());
    for id in ["run-a", "run-b", "run-c"] {
        store
            .create_run(new_run(id, "wf", 1_000, None, None))
            .await
            .unwrap();
        for (rev, at) in [(1, 2_000), (2, 3_000)] {
            let pos = Position {
                index: rev as usize,
                failed_attempts: 0,
            };
            store
                .commit(commit(
                    id,
                    rev,
                    RunStatus::Running,
                    pos,
                    Work::At { run_at_ms: at },
                    at,
                ))
                .await
                .unwrap();
        }
    }
}

#[tokio::test]
async fn verify_finds_deleted_and_truncated_runs_against_a_signed_checkpoint() {
    let dir = TempDir::new("audit");
    let path = dir.0.join("cs.db");
    seed(&path).await;
    let db = format!("sqlite://{}", path.display());
    let cp = dir.0.join("checkpoint.jsonl");
    let cp_arg = cp.display().to_string();

    let out = audit(&db, &["checkpoint", "--out", &cp_arg]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(
        text(&out).contains("checkpoint of 3 runs"),
        "{}",
        text(&out)
    );
    let out = audit(&db, &["verify", "--checkpoint", &cp_arg]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));

    // Someone with database access: deletes run-a, cuts run-b's last event
    // and rewrites its head to match, cuts run-c's last event only.
    let conn = rusqlite::Connection::open(&path).unwrap();
    conn.execute_batch(
        "DROP TRIGGER events_append_only_delete;
         DELETE FROM events WHERE run_id = 'run-a';
         DELETE FROM work WHERE run_id = 'run-a';
         DELETE FROM runs WHERE id = 'run-a';
         DELETE FROM events WHERE run_id = 'run-b' AND seq = (SELECT max(seq) FROM events WHERE run_id = 'run-b');
         UPDATE runs SET event_seq = event_seq - 1,
           last_hash = (SELECT hash FROM events WHERE run_id = 'run-b' ORDER BY seq DESC LIMIT 1)
           WHERE id = 'run-b';
         DELETE FROM events WHERE run_id = 'run-c' AND seq = (SELECT max(seq) FROM events WHERE run_id = 'run-c');",
    )
    .unwrap();
    drop(conn);

    // Without the checkpoint only the cut that left its head is visible.
    let out = audit(&db, &["verify"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let t = text(&out);
    assert!(
        t.contains("run run-c: events end at 2 but the run's head is event 3"),
        "{t}"
    );
    assert!(!t.contains("run-a") && !t.contains("run-b"), "{t}");

    // With it, all three.
    let out = audit(&db, &["verify", "--checkpoint", &cp_arg]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let t = text(&out);
    for want in [
        "run run-a: deleted (the checkpoint saw it with events up to 3)",
        "run run-b: event 3 that the checkpoint saw is missing or changed",
        "run run-c: events end at 2",
    ] {
        assert!(t.contains(want), "missing {want:?} in {t}");
    }

    // A checkpoint changed by hand, or read with another key, is refused.
    let forged = std::fs::read_to_string(&cp)
        .unwrap()
        .replace("run-a", "run-x");
    std::fs::write(&cp, forged).unwrap();
    let out = audit(&db, &["verify", "--checkpoint", &cp_arg]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        text(&out).contains("signature does not match"),
        "{}",
        text(&out)
    );
    let out = Command::new(bin())
        .args(["audit", "checkpoint", "--out", &cp_arg, "--database", &db])
        .env_remove("COUNTERSIGN_AUDIT_KEY")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        text(&out).contains("COUNTERSIGN_AUDIT_KEY is not set"),
        "{}",
        text(&out)
    );
}

fn prune(db: &str, args: &[&str]) -> Output {
    Command::new(bin())
        .arg("prune")
        .args(args)
        .args(["--database", db])
        .env("COUNTERSIGN_AUDIT_KEY", KEY)
        .output()
        .unwrap()
}

/// Ends `id` (seeded by [`seed`]) with `status` at its fourth revision.
async fn end(path: &std::path::Path, id: &str, status: RunStatus) {
    let store: Arc<dyn Store> =
        Arc::new(SqliteStore::open(path, Durability::CrashSafe, Role::Admin).unwrap());
    let pos = Position {
        index: 3,
        failed_attempts: 0,
    };
    store
        .commit(commit(id, 3, status, pos, Work::Remove, 4_000))
        .await
        .unwrap();
}

#[tokio::test]
async fn prune_keeps_verify_green_and_a_deleted_summary_is_found() {
    let dir = TempDir::new("prune");
    let path = dir.0.join("cs.db");
    seed(&path).await;
    end(&path, "run-a", RunStatus::Completed).await;
    end(&path, "run-b", RunStatus::Failed).await;
    // run-c is still running.
    let db = format!("sqlite://{}", path.display());
    let cp = dir.0.join("checkpoint.jsonl");
    let cp_arg = cp.display().to_string();
    let out = audit(&db, &["checkpoint", "--out", &cp_arg]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));

    // Less than six months needs --force; a bad age is a usage error.
    let out = prune(&db, &["--older-than", "30d"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("add --force"), "{}", text(&out));
    let out = prune(&db, &["--older-than", "half a year"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("is not an age"), "{}", text(&out));

    // A dry run changes nothing.
    let out = prune(&db, &["--dry-run"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(text(&out).contains("would prune 1 runs"), "{}", text(&out));

    // Only the completed run goes, even with no age at all: a failed run
    // waits for an operator and a running one is not over.
    let out = prune(&db, &["--older-than", "0s", "--force"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(text(&out).contains("pruned 1 runs"), "{}", text(&out));
    let conn = rusqlite::Connection::open(&path).unwrap();
    let count = |sql: &str| conn.query_row(sql, [], |r| r.get::<_, i64>(0)).unwrap();
    assert_eq!(count("SELECT count(*) FROM runs WHERE id = 'run-a'"), 0);
    assert_eq!(
        count("SELECT count(*) FROM events WHERE run_id = 'run-a'"),
        0
    );
    assert_eq!(count("SELECT count(*) FROM runs"), 2);
    assert_eq!(count("SELECT count(*) FROM pruned_runs"), 1);

    // Verify stays green, with and without the checkpoint that saw run-a.
    let out = audit(&db, &["verify"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(text(&out).contains("1 pruned runs kept"), "{}", text(&out));
    let out = audit(&db, &["verify", "--checkpoint", &cp_arg]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));

    // The append-only rule still holds for runs that were not pruned.
    let refused = conn.execute("DELETE FROM events WHERE run_id = 'run-b'", []);
    assert!(refused.is_err(), "events of a live run were deleted");

    // A summary changed by hand no longer carries a valid signature…
    conn.execute_batch(
        "DROP TRIGGER pruned_runs_append_only_update;
         UPDATE pruned_runs SET status = 'cancelled';",
    )
    .unwrap();
    let out = audit(&db, &["verify", "--checkpoint", &cp_arg]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        text(&out).contains("run run-a: its pruned summary is not signed"),
        "{}",
        text(&out)
    );
    // …and without its summary the run is simply deleted.
    conn.execute_batch(
        "DROP TRIGGER pruned_runs_append_only_delete;
         DELETE FROM pruned_runs;",
    )
    .unwrap();
    let out = audit(&db, &["verify", "--checkpoint", &cp_arg]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        text(&out).contains("run run-a: deleted (the checkpoint saw it with events up to 4)"),
        "{}",
        text(&out)
    );
}

#[tokio::test]
async fn serve_writes_signed_checkpoints_that_verify() {
    let dir = TempDir::new("serve-cp");
    std::fs::create_dir_all(dir.0.join("workflows")).unwrap();
    seed(&dir.0.join("cs.db")).await;
    let cps = dir.0.join("checkpoints");
    let env = |key: Option<&str>| {
        let mut env = vec![
            (
                "COUNTERSIGN_AUDIT_CHECKPOINT_DIR",
                cps.display().to_string(),
            ),
            ("COUNTERSIGN_AUDIT_CHECKPOINT_EVERY", "1s".to_string()),
        ];
        if let Some(k) = key {
            env.push(("COUNTERSIGN_AUDIT_KEY", k.to_string()));
        }
        env
    };

    // Without the key, serve refuses to start rather than write nothing.
    let mut refused = crate::Proc::serve(&dir, crate::free_port(), &env(None));
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let status = loop {
        if let Some(s) = refused.try_wait() {
            break s;
        }
        assert!(std::time::Instant::now() < deadline, "serve kept running");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    assert_eq!(status.code(), Some(2));

    let _server = crate::Proc::serve(&dir, crate::free_port(), &env(Some(KEY)));
    let files = loop {
        let mut files: Vec<_> = std::fs::read_dir(&cps)
            .map(|d| {
                d.filter_map(|e| e.ok().map(|e| e.path()))
                    .filter(|p| p.extension().is_some_and(|x| x == "jsonl"))
                    .collect()
            })
            .unwrap_or_default();
        if files.len() >= 2 {
            files.sort();
            break files;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no second checkpoint: {files:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    };
    let db = format!("sqlite://{}", dir.0.join("cs.db").display());
    let cp = files[0].display().to_string();
    let out = audit(&db, &["verify", "--checkpoint", &cp]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(
        text(&out).contains("(3 runs)"),
        "the checkpoint saw the seeded runs: {}",
        text(&out)
    );
}

#[tokio::test]
async fn prune_never_deletes_a_run_whose_chain_does_not_verify() {
    let dir = TempDir::new("prune-broken");
    let path = dir.0.join("cs.db");
    seed(&path).await;
    end(&path, "run-a", RunStatus::Completed).await;
    end(&path, "run-b", RunStatus::Completed).await;
    let conn = rusqlite::Connection::open(&path).unwrap();
    conn.execute_batch(
        "DROP TRIGGER events_append_only_update;
         UPDATE events SET data = '{}' WHERE run_id = 'run-a' AND seq = 2;",
    )
    .unwrap();
    let db = format!("sqlite://{}", path.display());
    let out = prune(&db, &["--older-than", "0s", "--force"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let t = text(&out);
    assert!(
        t.contains("run run-a: not pruned: chain broken at event 2"),
        "{t}"
    );
    assert!(t.contains("pruned 1 runs"), "{t}");
    let left: Vec<String> = conn
        .prepare("SELECT id FROM runs ORDER BY id")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<rusqlite::Result<_>>()
        .unwrap();
    assert_eq!(left, ["run-a", "run-c"], "the evidence stays");
}
