//! `docs/workflows.md` names every key the loader accepts.
//!
//! Workflow keys are read through `yaml::Fields` (`f.get("key")`,
//! `f.require("key")`); a key never read is refused as unknown. This test
//! scans the sources of the crates that compile workflow files for those
//! reads and fails when the reference does not mention a key as
//! `` `key` ``, so a new key cannot ship undocumented. It is a plain text
//! scan: the receiver of `.get("…")` / `.require("…")` must be a variable
//! bound from `.fields()` (or a `&mut Fields` parameter), which keeps out
//! `.get("…")` on JSON values and maps.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Crates whose sources compile workflow files.
const CRATES: &[&str] = &["domain", "engine", "llm", "connectors"];

/// Literals the scan picks up that are not workflow keys. Empty today;
/// add an entry, with the reason, only for a read that is not on a
/// workflow mapping.
const NOT_WORKFLOW_KEYS: &[&str] = &[];

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().and_then(|e| e.to_str()) == Some("rs") {
            out.push(path);
        }
    }
}

fn is_ident(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

/// Names bound to a `Fields` value: `mut x` on a line calling `.fields()`
/// or just after one (`match cx.take(n.fields()) { Some(mut f) => …`),
/// and parameters `x: &mut Fields`.
fn fields_bindings(src: &str) -> Vec<String> {
    let lines: Vec<&str> = src.lines().collect();
    let mut names = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        let near_fields = lines[i.saturating_sub(2)..=i]
            .iter()
            .any(|l| l.contains(".fields()"));
        let mut rest = *line;
        while let Some(at) = rest.find("mut ") {
            let before = rest[..at].chars().next_back();
            let after = &rest[at + 4..];
            let name: String = after.chars().take_while(|c| is_ident(*c)).collect();
            if !name.is_empty() && !before.is_some_and(is_ident) && near_fields {
                names.push(name);
            }
            rest = after;
        }
        let mut rest = *line;
        while let Some(at) = rest.find(": &mut Fields") {
            let name: String = rest[..at]
                .chars()
                .rev()
                .take_while(|c| is_ident(*c))
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
                .collect();
            if !name.is_empty() {
                names.push(name);
            }
            rest = &rest[at + 1..];
        }
    }
    names.sort();
    names.dedup();
    names
}

/// The variable a method call at byte `dot` is made on: the identifier
/// right before it (across whitespace and line breaks), unless that is
/// itself a field (`x.local.get(…)`) or the call is on an expression.
fn receiver(src: &str, dot: usize) -> Option<&str> {
    let before = src[..dot].trim_end();
    let start = before
        .char_indices()
        .rev()
        .take_while(|(_, c)| is_ident(*c))
        .last()
        .map(|(i, _)| i)?;
    if before[..start].ends_with('.') || before[..start].ends_with("::") {
        return None;
    }
    Some(&before[start..])
}

/// Keys read through `Fields` in `src`, with their line numbers.
fn keys_read(src: &str) -> Vec<(String, usize)> {
    // Unit tests build their own documents; only the loaders count.
    let src = src.split("\n#[cfg(test)]").next().unwrap_or(src);
    let bound = fields_bindings(src);
    let mut out = Vec::new();
    for call in [".get(\"", ".require(\""] {
        for (at, _) in src.match_indices(call) {
            let lit_start = at + call.len();
            let Some(len) = src[lit_start..].find('"') else {
                continue;
            };
            let key = &src[lit_start..lit_start + len];
            if key.is_empty() || !key.chars().all(|c| c.is_ascii_lowercase() || c == '_') {
                continue;
            }
            if receiver(src, at).is_some_and(|r| bound.iter().any(|b| b == r)) {
                let line = src[..at].matches('\n').count() + 1;
                out.push((key.to_string(), line));
            }
        }
    }
    out
}

/// The string literals of the array that follows `anchor` in `src`.
fn literals_after(src: &str, anchor: &str, file: &str) -> Vec<String> {
    let at = src
        .find(anchor)
        .unwrap_or_else(|| panic!("{file}: `{anchor}` not found; update this test"));
    let body = &src[at + anchor.len()..];
    let body = &body[..body.find(']').expect("a closing `]`")];
    body.split('"')
        .skip(1)
        .step_by(2)
        .map(str::to_string)
        .collect()
}

/// Every key a workflow file may contain, with where it is read.
fn workflow_keys() -> BTreeMap<String, Vec<String>> {
    let root = workspace();
    let mut keys: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for krate in CRATES {
        let mut files = Vec::new();
        rust_files(&root.join("crates").join(krate).join("src"), &mut files);
        for path in files {
            let src = std::fs::read_to_string(&path).unwrap();
            if !src.contains("Fields") && !src.contains(".fields()") {
                continue;
            }
            let rel = path
                .strip_prefix(&root)
                .unwrap_or(&path)
                .display()
                .to_string();
            for (key, line) in keys_read(&src) {
                if NOT_WORKFLOW_KEYS.contains(&key.as_str()) {
                    continue;
                }
                keys.entry(key).or_default().push(format!("{rel}:{line}"));
            }
        }
    }
    // Keys matched without `Fields`: the step envelope, and Monday column
    // types (`columns: { x: { status: … } }`).
    for (file, anchor) in [
        ("crates/domain/src/workflow.rs", "let envelope = ["),
        (
            "crates/connectors/src/monday/columns.rs",
            "pub const TYPES: &[&str] = &[",
        ),
    ] {
        let src = std::fs::read_to_string(root.join(file)).unwrap();
        for key in literals_after(&src, anchor, file) {
            keys.entry(key).or_default().push(file.to_string());
        }
    }
    keys
}

#[test]
fn the_reference_names_every_key_the_loader_accepts() {
    let doc_path = workspace().join("docs/workflows.md");
    let doc = std::fs::read_to_string(&doc_path)
        .unwrap_or_else(|e| panic!("{}: {e}", doc_path.display()));
    let keys = workflow_keys();

    // The scan must reach every crate; a silent miss would pass vacuously.
    for sentinel in [
        "idempotency_field", // domain: input
        "max_attempts",      // domain: retry
        "min_approvals",     // domain: review
        "value",             // engine: validate
        "repair_attempts",   // llm
        "upsert_by",         // connectors: monday
        "review_queue",      // connectors: a `&mut Fields` parameter
        "draft_channel",     // connectors: slack
        "reply_to",          // connectors: email
        "timeout",           // the envelope
    ] {
        assert!(
            keys.contains_key(sentinel),
            "the scan did not find `{sentinel}`; found: {:?}",
            keys.keys().collect::<Vec<_>>()
        );
    }
    assert!(
        keys.len() >= 80,
        "only {} keys found: {:?}",
        keys.len(),
        keys.keys().collect::<Vec<_>>()
    );

    let missing: Vec<String> = keys
        .iter()
        .filter(|(k, _)| !doc.contains(&format!("`{k}`")))
        .map(|(k, at)| format!("`{k}` (read at {})", at.join(", ")))
        .collect();
    assert!(
        missing.is_empty(),
        "docs/workflows.md does not name these workflow keys; document each (type, required, default):\n  {}",
        missing.join("\n  ")
    );
}

#[test]
fn the_scan_tells_fields_from_json() {
    let src = r#"
fn parse(node: &Node, cx: &mut Cx) {
    let mut f = cx.take(node.fields())?;
    let a = f.get("alpha");
    let b = f
        .require("beta");
    let v = json.get("not_a_key");
    let w = f.local.get("also_not");
    let x = out.get("nor_this");
    match cx.take(n.fields()) {
        Some(mut g) => g.get("gamma"),
        None => None,
    }
}
fn shared(f: &mut Fields<'_>) { f.get("delta"); }
"#;
    let mut keys: Vec<String> = keys_read(src).into_iter().map(|(k, _)| k).collect();
    keys.sort();
    assert_eq!(keys, ["alpha", "beta", "delta", "gamma"]);
}
