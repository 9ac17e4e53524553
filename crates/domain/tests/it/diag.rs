//! Diagnostics render as `line:col: path: message`, with the file in
//! front when asked; paths join keys and indices.

use countersign_domain::diag::{self, Diagnostic, Pos};

#[test]
fn diagnostics_render_with_and_without_a_path_and_file() {
    let d = Diagnostic::new(Pos { line: 3, col: 7 }, "steps[2].when", "bad");
    assert_eq!(d.to_string(), "3:7: steps[2].when: bad");
    assert_eq!(d.with_file("wf.yaml"), "wf.yaml:3:7: steps[2].when: bad");
    let root = Diagnostic::new(Pos { line: 1, col: 1 }, "", "the file is empty");
    assert_eq!(root.to_string(), "1:1: the file is empty");
    assert_eq!(root.with_file("a.yaml"), "a.yaml:1:1: the file is empty");
    assert_eq!(Pos::default(), Pos { line: 0, col: 0 });
}

#[test]
fn paths_join_keys_and_indices() {
    assert_eq!(diag::join("", "steps"), "steps");
    assert_eq!(diag::join("steps[2]", "rules"), "steps[2].rules");
    assert_eq!(diag::index("steps", 2), "steps[2]");
    assert_eq!(diag::index("", 0), "[0]");
}
