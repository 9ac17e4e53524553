//! Pages come from templates only: no Rust source in this crate writes
//! HTML by hand (a `format!` or `push_str` of a tag), so a value reaches a
//! page only through the template engine's auto-escaping.

use std::path::Path;

fn sources(dir: &Path, out: &mut Vec<(String, String)>) {
    for entry in std::fs::read_dir(dir).expect("read src") {
        let p = entry.expect("entry").path();
        if p.is_dir() {
            sources(&p, out);
        } else if p.extension().is_some_and(|e| e == "rs") {
            let text = std::fs::read_to_string(&p).expect("read source");
            out.push((p.display().to_string(), text));
        }
    }
}

#[test]
fn no_html_is_built_from_strings() {
    let mut files = Vec::new();
    sources(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("src"),
        &mut files,
    );
    assert!(files.len() > 10, "found the sources");
    let mut offenders = Vec::new();
    for (path, text) in &files {
        for (n, line) in text.lines().enumerate() {
            let l = line.trim_start();
            let hand_built = [
                "format!(\"<",
                "push_str(\"<",
                "push_str(&format!(\"<",
                "\"<!doctype",
            ]
            .iter()
            .any(|p| l.contains(p));
            // The plain 500 fallback when a template itself fails.
            if hand_built && !l.contains("This page could not be shown") {
                offenders.push(format!("{path}:{}: {l}", n + 1));
            }
        }
    }
    assert!(
        offenders.is_empty(),
        "HTML built by hand:\n{}",
        offenders.join("\n")
    );
}
