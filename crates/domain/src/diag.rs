//! Diagnostics: a located, human-readable complaint about a workflow file.

use std::fmt;

/// A position in a source file, 1-based.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Pos {
    pub line: usize,
    pub col: usize,
}

/// One problem found in a workflow file: where, which field, and why.
///
/// Rendered as `line:col: path: message`; the CLI prefixes the file name
/// to give the familiar `file:line:col: steps[2].rules[0].when: …` form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    pub pos: Pos,
    /// Field path such as `steps[2].rules[0].when`; empty for the document.
    pub path: String,
    pub message: String,
}

impl Diagnostic {
    pub fn new(pos: Pos, path: impl Into<String>, message: impl Into<String>) -> Diagnostic {
        Diagnostic {
            pos,
            path: path.into(),
            message: message.into(),
        }
    }

    /// Renders with a file label in front: `file:line:col: path: message`.
    pub fn with_file(&self, file: &str) -> String {
        format!("{file}:{self}")
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}: ", self.pos.line, self.pos.col)?;
        if !self.path.is_empty() {
            write!(f, "{}: ", self.path)?;
        }
        f.write_str(&self.message)
    }
}

/// Joins a parent path and a key: `steps[2]` + `rules` → `steps[2].rules`.
pub fn join(parent: &str, key: &str) -> String {
    if parent.is_empty() {
        key.to_string()
    } else {
        format!("{parent}.{key}")
    }
}

/// Joins a parent path and an index: `steps` + 2 → `steps[2]`.
pub fn index(parent: &str, i: usize) -> String {
    format!("{parent}[{i}]")
}
