//! `countersign audit`: verify every run's hash chain, and checkpoints that
//! make deletion visible.
//!
//! A chain proves that a run's events were not changed in place, but not
//! that a run (or the end of one) was not deleted: whoever can delete rows
//! can delete a whole chain. A checkpoint is the list of every run's chain
//! head (last sequence number and hash) at one moment, signed with
//! HMAC-SHA256 under `COUNTERSIGN_AUDIT_KEY`, a key kept outside the
//! database, and written to a file the operator keeps elsewhere.
//! `audit verify --checkpoint FILE` then fails for a run that is gone or
//! whose events no longer reach the head the checkpoint saw. Without a
//! checkpoint, verify still compares each chain with the head the run row
//! keeps, which catches a truncation that left the run row alone.

use std::io::Write;
use std::path::Path;

use hmac::{Hmac, KeyInit, Mac};
use serde_json::{Value, json};
use sha2::Sha256;
use store::{ChainHead, Event, PrunedRun, Store};

use crate::Failure;

/// The environment variable that holds the checkpoint key.
pub const KEY_VAR: &str = "COUNTERSIGN_AUDIT_KEY";
const FORMAT: i64 = 1;
const PAGE: usize = 1000;

fn backend(e: store::Error) -> Failure {
    Failure {
        code: 1,
        message: e.to_string(),
    }
}

/// The checkpoint key from the environment (at least 16 bytes).
pub fn key_from_env() -> Result<Vec<u8>, Failure> {
    match std::env::var(KEY_VAR) {
        Ok(k) if k.len() >= 16 => Ok(k.into_bytes()),
        Ok(_) => Err(Failure::usage(format!(
            "{KEY_VAR} is too short: use at least 16 characters (e.g. `openssl rand -hex 32`)"
        ))),
        Err(_) => Err(Failure::usage(format!(
            "{KEY_VAR} is not set: checkpoints are signed with a key kept outside the database"
        ))),
    }
}

fn mac(key: &[u8]) -> Hmac<Sha256> {
    <Hmac<Sha256> as KeyInit>::new_from_slice(key).expect("HMAC takes keys of any length")
}

/// Every run's chain head, in id order, page by page.
async fn heads(store: &dyn Store, mut each: impl FnMut(ChainHead)) -> Result<(), Failure> {
    let mut after: Option<String> = None;
    loop {
        let page = store
            .chain_heads(after.as_deref(), PAGE)
            .await
            .map_err(backend)?;
        let Some(last) = page.last() else {
            return Ok(());
        };
        after = Some(last.run_id.clone());
        page.into_iter().for_each(&mut each);
    }
}

/// Writes a signed checkpoint of every run's chain head to `out`; returns
/// how many runs it covers.
pub async fn checkpoint(
    store: &dyn Store,
    key: &[u8],
    out: &Path,
    now_ms: i64,
) -> Result<usize, Failure> {
    let mut all = Vec::new();
    heads(store, |h| all.push(h)).await?;
    let mut text = String::new();
    let mut line = |v: Value| {
        text.push_str(&v.to_string());
        text.push('\n');
    };
    line(json!({ "countersign_checkpoint": FORMAT, "at_ms": now_ms, "runs": all.len() }));
    for h in &all {
        line(json!({ "run": h.run_id, "seq": h.seq, "hash": h.hash }));
    }
    let mut m = mac(key);
    m.update(text.as_bytes());
    let sig = hex::encode(m.finalize().into_bytes());
    text.push_str(&json!({ "mac": sig }).to_string());
    text.push('\n');
    // Written beside the target and renamed: a reader never sees half a file.
    let tmp = out.with_extension("partial");
    let write = || -> std::io::Result<()> {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(text.as_bytes())?;
        f.sync_all()?;
        std::fs::rename(&tmp, out)
    };
    write().map_err(|e| Failure {
        code: 1,
        message: format!("cannot write {}: {e}", out.display()),
    })?;
    Ok(all.len())
}

/// A checkpoint read back and authenticated.
#[derive(Debug)]
pub struct Checkpoint {
    pub at_ms: i64,
    /// In run id order.
    pub heads: Vec<ChainHead>,
}

/// Reads `path` and checks its signature under `key`.
pub fn read_checkpoint(path: &Path, key: &[u8]) -> Result<Checkpoint, Failure> {
    let bad = |why: String| Failure::usage(format!("{}: {why}", path.display()));
    let text = std::fs::read_to_string(path).map_err(|e| bad(e.to_string()))?;
    let body_end = text
        .trim_end_matches('\n')
        .rfind('\n')
        .map(|i| i + 1)
        .ok_or_else(|| bad("not a checkpoint (too short)".into()))?;
    let (body, tail) = text.split_at(body_end);
    let sig: Value = serde_json::from_str(tail.trim())
        .map_err(|e| bad(format!("{}:1: last line: {e}", body.lines().count() + 1)))?;
    let sig = sig["mac"]
        .as_str()
        .and_then(|s| hex::decode(s).ok())
        .ok_or_else(|| bad("the last line carries no mac".into()))?;
    let mut m = mac(key);
    m.update(body.as_bytes());
    m.verify_slice(&sig).map_err(|_| {
        bad(format!(
            "the signature does not match: the file was changed, or {KEY_VAR} is not the key it was signed with"
        ))
    })?;
    let mut lines = body.lines();
    let head: Value = lines
        .next()
        .and_then(|l| serde_json::from_str(l).ok())
        .ok_or_else(|| bad("line 1: not a checkpoint header".into()))?;
    if head["countersign_checkpoint"].as_i64() != Some(FORMAT) {
        return Err(bad("line 1: unknown checkpoint format".into()));
    }
    let mut heads = Vec::new();
    for (i, l) in lines.enumerate() {
        let v: Value = serde_json::from_str(l).map_err(|e| bad(format!("line {}: {e}", i + 2)))?;
        match (v["run"].as_str(), v["seq"].as_i64(), v["hash"].as_str()) {
            (Some(run), Some(seq), Some(hash)) => heads.push(ChainHead {
                run_id: run.to_string(),
                seq,
                hash: hash.to_string(),
            }),
            _ => return Err(bad(format!("line {}: expected run, seq and hash", i + 2))),
        }
    }
    Ok(Checkpoint {
        at_ms: head["at_ms"].as_i64().unwrap_or_default(),
        heads,
    })
}

async fn events_of(store: &dyn Store, run_id: &str) -> Result<Vec<Event>, Failure> {
    let mut events = Vec::new();
    let mut after = 0;
    loop {
        let page = store.events(run_id, after, PAGE).await.map_err(backend)?;
        let Some(last) = page.last() else {
            return Ok(events);
        };
        after = last.seq;
        events.extend(page);
    }
}

/// What verify found wrong with one run.
fn check_chain(events: &[Event], head: &ChainHead) -> Option<String> {
    let chain = events.iter().map(|e| {
        (
            domain::event::Hashed {
                run_id: &e.run_id,
                seq: e.seq,
                kind: &e.kind,
                actor: &e.actor,
                data: &e.data,
                at_ms: e.at_ms,
            },
            e.prev_hash.as_str(),
            e.hash.as_str(),
        )
    });
    if let Err(seq) = domain::event::verify_chain(chain) {
        return Some(format!("chain broken at event {seq}"));
    }
    match events.last() {
        None => Some(format!("no events, but its head is event {}", head.seq)),
        Some(e) if e.seq != head.seq || e.hash != head.hash => Some(format!(
            "events end at {} but the run's head is event {}: events were removed",
            e.seq, head.seq
        )),
        Some(_) => None,
    }
}

/// `audit verify`: every run's chain (or one run's), its end against the
/// run row's head, and with a checkpoint every run the checkpoint saw.
/// Prints one line per problem and a summary; exit 1 when any.
pub async fn verify(
    store: &dyn Store,
    run: Option<&str>,
    checkpoint: Option<&Checkpoint>,
    key: Option<&[u8]>,
) -> Result<Verified, Failure> {
    let mut current = Vec::new();
    match run {
        Some(id) => {
            // One run: its chain, and its end against the checkpoint; the
            // run row's head is compared in the full scan.
            let events = events_of(store, id).await?;
            let Some(last) = events.last() else {
                return Err(Failure::usage(format!("--run: no events for run {id}")));
            };
            current.push(ChainHead {
                run_id: id.to_string(),
                seq: last.seq,
                hash: last.hash.clone(),
            });
        }
        None => heads(store, |h| current.push(h)).await?,
    }
    let mut problems = Vec::new();
    // Runs the checkpoint saw that are no longer in the store.
    let mut missing: Vec<&ChainHead> = Vec::new();
    let mut seen = checkpoint.map(|c| c.heads.iter().peekable());
    for head in &current {
        let events = events_of(store, &head.run_id).await?;
        if let Some(p) = check_chain(&events, head) {
            problems.push(format!("run {}: {p}", head.run_id));
        }
        let Some(cp) = seen.as_mut() else { continue };
        // Runs the checkpoint saw that sort before this one are gone.
        while let Some(old) = cp.next_if(|c| c.run_id < head.run_id) {
            missing.push(old);
        }
        if let Some(old) = cp.next_if(|c| c.run_id == head.run_id)
            && !events
                .iter()
                .any(|e| e.seq == old.seq && e.hash == old.hash)
        {
            problems.push(format!(
                "run {}: event {} that the checkpoint saw is missing or changed",
                old.run_id, old.seq
            ));
        }
    }
    if let Some(cp) = seen {
        missing.extend(cp);
    }
    let mut pruned = 0;
    if run.is_none() {
        // A run gone from the store is accounted for only by its pruned
        // summary. Summaries are counted as they page by; only those of
        // missing runs are kept.
        let wanted: std::collections::HashSet<&str> =
            missing.iter().map(|h| h.run_id.as_str()).collect();
        let mut found = std::collections::HashMap::new();
        summaries(store, |s| {
            pruned += 1;
            if wanted.contains(s.run_id.as_str()) {
                found.insert(s.run_id.clone(), s);
            }
        })
        .await?;
        for old in missing {
            match found.get(&old.run_id) {
                Some(summary) => {
                    if let Some(p) = check_summary(summary, old, key) {
                        problems.push(format!("run {}: {p}", old.run_id));
                    }
                }
                None => problems.push(format!(
                    "run {}: deleted (the checkpoint saw it with events up to {})",
                    old.run_id, old.seq
                )),
            }
        }
    }
    Ok(Verified {
        runs: current.len(),
        pruned,
        problems,
    })
}

/// What `verify` found.
#[derive(Debug)]
pub struct Verified {
    /// Runs whose chains were checked.
    pub runs: usize,
    /// Runs kept only as pruned summaries.
    pub pruned: usize,
    pub problems: Vec<String>,
}

/// Retention shorter than this needs `--force`: six months, the
/// record-keeping period EU AI Act Art 19 and 26(6) name for deployers of
/// high-risk systems.
pub const MIN_RETENTION_MS: i64 = 180 * 24 * 3600 * 1000;

/// The signed text of a pruned run's summary: one JSON line, fields in a
/// fixed order.
fn summary_text(s: &PrunedRun) -> String {
    json!({
        "run": s.run_id,
        "workflow": s.workflow,
        "version": s.version,
        "status": s.status.as_str(),
        "created_at_ms": s.created_at_ms,
        "updated_at_ms": s.updated_at_ms,
        "seq": s.seq,
        "hash": s.hash,
        "pruned_at_ms": s.pruned_at_ms,
    })
    .to_string()
}

/// The HMAC of `s`'s signed text under `key`, ready to finish or verify.
fn summary_hmac(key: &[u8], s: &PrunedRun) -> Hmac<Sha256> {
    let mut m = mac(key);
    m.update(summary_text(s).as_bytes());
    m
}

fn summary_mac(key: &[u8], s: &PrunedRun) -> String {
    hex::encode(summary_hmac(key, s).finalize().into_bytes())
}

/// Whether `s` carries a MAC made with `key` (compared in constant time).
fn summary_signed_by(key: &[u8], s: &PrunedRun) -> bool {
    s.mac
        .as_deref()
        .and_then(|h| hex::decode(h).ok())
        .is_some_and(|sig| summary_hmac(key, s).verify_slice(&sig).is_ok())
}

/// What `prune` did.
#[derive(Debug, Default)]
pub struct Pruned {
    /// Runs deleted, each leaving its summary.
    pub pruned: usize,
    /// Runs left alone, each with why (a chain that does not verify is
    /// evidence: it is never pruned).
    pub kept: Vec<String>,
}

/// Deletes the data of every run that ended for good and last changed
/// before `before_ms`, one transaction per run, each leaving a summary
/// (signed with `key` when given) that `verify` accepts in its place.
/// `dry_run` counts without deleting.
pub async fn prune(
    store: &dyn Store,
    before_ms: i64,
    now_ms: i64,
    key: Option<&[u8]>,
    dry_run: bool,
) -> Result<Pruned, Failure> {
    let mut done = Pruned::default();
    let mut after: Option<String> = None;
    loop {
        let page = store
            .prunable_runs(before_ms, after.as_deref(), PAGE)
            .await
            .map_err(backend)?;
        let Some(last) = page.last() else {
            return Ok(done);
        };
        after = Some(last.run_id.clone());
        for mut summary in page {
            let head = ChainHead {
                run_id: summary.run_id.clone(),
                seq: summary.seq,
                hash: summary.hash.clone(),
            };
            let events = events_of(store, &summary.run_id).await?;
            if let Some(p) = check_chain(&events, &head) {
                done.kept
                    .push(format!("run {}: not pruned: {p}", summary.run_id));
                continue;
            }
            if dry_run {
                done.pruned += 1;
                continue;
            }
            summary.pruned_at_ms = now_ms;
            summary.mac = key.map(|k| summary_mac(k, &summary));
            if store.prune_run(&summary).await.map_err(backend)? {
                done.pruned += 1;
            } else {
                done.kept.push(format!(
                    "run {}: not pruned: it changed while being pruned",
                    summary.run_id
                ));
            }
        }
    }
}

/// Every pruned run's summary, in id order, page by page.
async fn summaries(store: &dyn Store, mut each: impl FnMut(PrunedRun)) -> Result<(), Failure> {
    let mut after: Option<String> = None;
    loop {
        let page = store
            .pruned_runs(after.as_deref(), PAGE)
            .await
            .map_err(backend)?;
        let Some(last) = page.last() else {
            return Ok(());
        };
        after = Some(last.run_id.clone());
        page.into_iter().for_each(&mut each);
    }
}

/// What is wrong with accepting `summary` in place of the run a checkpoint
/// saw at `old`, if anything.
fn check_summary(summary: &PrunedRun, old: &ChainHead, key: Option<&[u8]>) -> Option<String> {
    if let Some(key) = key
        && !summary_signed_by(key, summary)
    {
        return Some(format!(
            "its pruned summary is not signed with {KEY_VAR}: it may have been written by hand"
        ));
    }
    if summary.seq < old.seq || (summary.seq == old.seq && summary.hash != old.hash) {
        return Some(format!(
            "pruned at event {} but the checkpoint saw event {}: events were removed before pruning",
            summary.seq, old.seq
        ));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_checkpoint_file_is_refused_when_changed_or_under_another_key() {
        let dir = std::env::temp_dir().join(format!("cs-cp-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("cp.jsonl");
        let key = b"0123456789abcdef0123";
        let body = format!(
            "{}\n{}\n",
            json!({ "countersign_checkpoint": 1, "at_ms": 5, "runs": 1 }),
            json!({ "run": "r1", "seq": 3, "hash": "ab" })
        );
        let mut m = mac(key);
        m.update(body.as_bytes());
        let sig = hex::encode(m.finalize().into_bytes());
        std::fs::write(&path, format!("{body}{}\n", json!({ "mac": sig }))).unwrap();
        let cp = read_checkpoint(&path, key).unwrap();
        assert_eq!(cp.at_ms, 5);
        assert_eq!(cp.heads[0].seq, 3);
        assert!(read_checkpoint(&path, b"another key, long enough").is_err());
        let changed = std::fs::read_to_string(&path)
            .unwrap()
            .replace("\"seq\":3", "\"seq\":2");
        std::fs::write(&path, changed).unwrap();
        let e = read_checkpoint(&path, key).unwrap_err();
        assert!(
            e.message.contains("signature does not match"),
            "{}",
            e.message
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
