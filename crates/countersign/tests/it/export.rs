//! `countersign export`: a known set of runs comes back as JSON lines and
//! as CSV with every event once, in order, and hashes that recompute to
//! the chain `audit verify` checks; bad time bounds exit 2 naming the flag.

use std::collections::HashMap;
use std::process::{Command, Output};
use std::sync::Arc;

use domain::event::{GENESIS, Hashed, chain_hash};
use store::suite::{commit, new_run};
use store::{NewEvent, Position, RunStatus, Store, Work};
use store_sqlite::{Durability, Role, SqliteStore};

use crate::{TempDir, bin};

fn export(db: &str, args: &[&str]) -> Output {
    Command::new(bin())
        .arg("export")
        .args(args)
        .args(["--database", db])
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

/// Four runs of two workflows, their events interleaved in time, one
/// event's data holding commas, quotes and a line break; and the store's
/// own view of every event, in `(at, run, seq)` order.
async fn seed(path: &std::path::Path) -> Vec<store::Event> {
    let store: Arc<dyn Store> =
        Arc::new(SqliteStore::open(path, Durability::CrashSafe, Role::Admin).unwrap());
    for (i, id) in ["run-a", "run-b", "run-c", "run-d"].iter().enumerate() {
        let wf = if i % 2 == 0 { "leads" } else { "refunds" };
        let mut run = new_run(id, wf, 1_000 + i as i64, None, None);
        run.events.push(NewEvent {
            kind: "note".into(),
            actor: "user:ann@example.com".into(),
            data: r#"{"text":"a, \"quoted\"\nline","n":[1, 2]}"#.into(),
            at_ms: 1_500,
        });
        store.create_run(run).await.unwrap();
        for (rev, at) in [(1, 2_000 + i as i64), (2, 3_000)] {
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
    let mut all = Vec::new();
    for id in ["run-a", "run-b", "run-c", "run-d"] {
        all.extend(store.events(id, 0, 100).await.unwrap());
    }
    all.sort_by(|a, b| (a.at_ms, &a.run_id, a.seq).cmp(&(b.at_ms, &b.run_id, b.seq)));
    all
}

/// An exported record, whichever format it came in.
#[derive(Debug, PartialEq)]
struct Record {
    run_id: String,
    workflow: String,
    seq: i64,
    kind: String,
    actor: String,
    data: String,
    at_ms: i64,
    prev_hash: String,
    hash: String,
}

/// Every event once, in order, equal to the store's, and each run's chain
/// recomputed from the export alone.
fn check(records: &[Record], stored: &[store::Event], workflow_of: impl Fn(&str) -> &'static str) {
    assert_eq!(records.len(), stored.len());
    for (r, e) in records.iter().zip(stored) {
        assert_eq!(
            (
                &r.run_id,
                r.seq,
                &r.kind,
                &r.actor,
                &r.data,
                r.at_ms,
                &r.prev_hash,
                &r.hash
            ),
            (
                &e.run_id,
                e.seq,
                &e.kind,
                &e.actor,
                &e.data,
                e.at_ms,
                &e.prev_hash,
                &e.hash
            )
        );
        assert_eq!(r.workflow, workflow_of(&r.run_id));
    }
    let mut heads: HashMap<&str, String> = HashMap::new();
    for r in records {
        let prev = heads
            .entry(&r.run_id)
            .or_insert_with(|| GENESIS.to_string());
        assert_eq!(&r.prev_hash, prev, "{r:?}");
        let h = chain_hash(
            prev,
            Hashed {
                run_id: &r.run_id,
                seq: r.seq,
                kind: &r.kind,
                actor: &r.actor,
                data: &r.data,
                at_ms: r.at_ms,
            },
        );
        assert_eq!(h, r.hash, "{r:?}");
        *prev = h;
    }
}

fn workflow_of(run: &str) -> &'static str {
    if run == "run-a" || run == "run-c" {
        "leads"
    } else {
        "refunds"
    }
}

/// A minimal RFC 4180 reader for the test: quoted fields, doubled quotes,
/// CRLF row ends, line breaks inside quotes.
fn parse_csv(text: &str) -> Vec<Vec<String>> {
    let mut rows = Vec::new();
    let mut row = Vec::new();
    let mut field = String::new();
    let mut quoted = false;
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match (quoted, c) {
            (true, '"') if chars.peek() == Some(&'"') => {
                chars.next();
                field.push('"');
            }
            (true, '"') => quoted = false,
            (true, c) => field.push(c),
            (false, '"') => quoted = true,
            (false, ',') => row.push(std::mem::take(&mut field)),
            (false, '\r') => {}
            (false, '\n') => {
                row.push(std::mem::take(&mut field));
                rows.push(std::mem::take(&mut row));
            }
            (false, c) => field.push(c),
        }
    }
    assert!(
        field.is_empty() && row.is_empty(),
        "a row without its line end"
    );
    rows
}

#[tokio::test]
async fn export_round_trips_as_jsonl_and_csv() {
    let dir = TempDir::new("export");
    let path = dir.0.join("cs.db");
    let stored = seed(&path).await;
    let db = format!("sqlite://{}", path.display());
    assert_eq!(stored.len(), 16);

    // JSON lines to standard output.
    let out = export(&db, &["--since", "0", "--format", "jsonl"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let jsonl = String::from_utf8(out.stdout).unwrap();
    let records: Vec<Record> = jsonl
        .lines()
        .map(|line| {
            let v: serde_json::Value = serde_json::from_str(line).unwrap();
            // `data` is the stored text verbatim: cut it out of the line.
            let start = line.find(r#""data":"#).unwrap() + 7;
            let end = line.find(r#","at":""#).unwrap();
            Record {
                run_id: v["run_id"].as_str().unwrap().into(),
                workflow: v["workflow"].as_str().unwrap().into(),
                seq: v["seq"].as_i64().unwrap(),
                kind: v["kind"].as_str().unwrap().into(),
                actor: v["actor"].as_str().unwrap().into(),
                data: line[start..end].to_string(),
                at_ms: v["at_ms"].as_i64().unwrap(),
                prev_hash: v["prev_hash"].as_str().unwrap().into(),
                hash: v["hash"].as_str().unwrap().into(),
            }
        })
        .collect();
    check(&records, &stored, workflow_of);

    // CSV to a file.
    let csv_path = dir.0.join("events.csv");
    let out = export(
        &db,
        &[
            "--since",
            "1970-01-01",
            "--format",
            "csv",
            "--out",
            csv_path.to_str().unwrap(),
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let rows = parse_csv(&std::fs::read_to_string(&csv_path).unwrap());
    assert_eq!(
        rows[0],
        [
            "at",
            "at_ms",
            "run_id",
            "workflow",
            "seq",
            "kind",
            "actor",
            "data",
            "prev_hash",
            "hash"
        ]
    );
    let records: Vec<Record> = rows[1..]
        .iter()
        .map(|f| {
            assert_eq!(f.len(), 10, "{f:?}");
            Record {
                run_id: f[2].clone(),
                workflow: f[3].clone(),
                seq: f[4].parse().unwrap(),
                kind: f[5].clone(),
                actor: f[6].clone(),
                data: f[7].clone(),
                at_ms: f[1].parse().unwrap(),
                prev_hash: f[8].clone(),
                hash: f[9].clone(),
            }
        })
        .collect();
    check(&records, &stored, workflow_of);

    // A range and a workflow: [1500, 3000) of `leads` only.
    let out = export(
        &db,
        &["--since", "1500", "--until", "3000", "--workflow", "leads"],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let lines: Vec<serde_json::Value> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let want: Vec<(String, i64)> = stored
        .iter()
        .filter(|e| (1500..3000).contains(&e.at_ms) && workflow_of(&e.run_id) == "leads")
        .map(|e| (e.run_id.clone(), e.seq))
        .collect();
    assert_eq!(
        lines
            .iter()
            .map(|v| (
                v["run_id"].as_str().unwrap().to_string(),
                v["seq"].as_i64().unwrap()
            ))
            .collect::<Vec<_>>(),
        want
    );
    assert_eq!(want.len(), 4);
}

#[test]
fn bad_time_bounds_exit_2_naming_the_flag() {
    let dir = TempDir::new("export-bad");
    let db = format!("sqlite://{}", dir.0.join("cs.db").display());
    for (args, flag) in [
        (
            &["--since", "last tuesday"][..],
            "--since: \"last tuesday\" is not a time",
        ),
        (
            &["--since", "7d", "--until", "2026-13-01"][..],
            "--until: \"2026-13-01\" is not a time",
        ),
        (
            &["--since", "2026-12-02", "--until", "2026-12-01"][..],
            "--until: must be later than --since",
        ),
    ] {
        let out = export(&db, args);
        assert_eq!(out.status.code(), Some(2), "{}", text(&out));
        assert!(text(&out).contains(flag), "{}", text(&out));
    }
    // Nothing was created for a refused export.
    assert!(!dir.0.join("cs.db").exists());
}
