//! Property-based fuzzing of what comes from outside: workflow files
//! (arbitrary text, and the reference workflow with random edits),
//! expressions and templates, and input checked against a schema. None of
//! it may panic; bad input is a located error. Bounded (a few hundred
//! cases each) so it runs in every CI build.

use countersign_domain::expr::{Condition, Scope, Template, Vars, value_from_json};
use countersign_domain::workflow;
use countersign_domain::yaml;
use proptest::prelude::*;

const REFERENCE: &str = include_str!("../../../../examples/inbound-request.yaml");
const KINDS: &[&str] = &[
    "llm", "rules", "review", "validate", "http", "wait", "crm", "slack", "email",
];

fn parse(src: &str) {
    let env = |n: &str| (n == "SET").then(|| "value".to_string());
    if let Err(errors) = workflow::parse(src, &env, KINDS) {
        assert!(!errors.is_empty(), "an error result names its problems");
        for e in errors {
            assert!(!e.message.is_empty(), "an empty message for {src:?}");
        }
    }
}

/// One random edit of `src`: delete, insert or replace a short run of
/// characters at a char boundary.
fn edit(src: &str, at: usize, len: usize, kind: u8, with: &str) -> String {
    let chars: Vec<char> = src.chars().collect();
    let at = at % (chars.len() + 1);
    let end = (at + len).min(chars.len());
    let mut out: String = chars[..at].iter().collect();
    match kind % 3 {
        0 => {}
        _ => out.push_str(with),
    }
    let rest_from = if kind % 3 == 1 { at } else { end };
    out.extend(&chars[rest_from..]);
    out
}

fn vars() -> Vars {
    let mut v = Vars::new();
    v.insert(
        "input".into(),
        value_from_json(
            &serde_json::json!({"name": "Ada", "n": 3, "list": [1, 2], "m": {"k": null}}),
        ),
    );
    v
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_text_never_panics_the_loader(src in "\\PC{0,400}") {
        parse(&src);
    }

    #[test]
    fn yaml_shaped_text_never_panics_the_loader(
        src in "(name: [a-z]{1,8}\n)?(steps:\n)?(  - id: [a-z]{1,6}\n    (rules|llm|review|http|wait|validate|crm|slack|email): [\\[\\]{}:,a-z0-9 '\"|>-]{0,40}\n){0,4}"
    ) {
        parse(&src);
    }

    #[test]
    fn edits_of_the_reference_workflow_never_panic_the_loader(
        edits in proptest::collection::vec((any::<usize>(), 0usize..12, any::<u8>(), "[\\PC\n]{0,6}"), 1..4)
    ) {
        let mut src = REFERENCE.to_string();
        for (at, len, kind, with) in &edits {
            src = edit(&src, *at, *len, *kind, with);
        }
        parse(&src);
    }

    #[test]
    fn expressions_and_templates_never_panic(src in "[\\PC]{0,80}") {
        let scope = Scope::new(["input"]);
        // A quoted scalar (`${` in it is an interpolation error: fine).
        let parsed = yaml::parse(&format!("x: {}\n", serde_json::to_string(&src).unwrap()), &|_| None);
        prop_assume!(parsed.is_ok());
        let node = parsed.unwrap();
        let value = &node.as_map().expect("a map")[0].1;
        if let Ok(c) = Condition::compile(value, &scope) {
            let _ = c.eval(&vars());
        }
        if let Ok(t) = Template::compile(value, &scope) {
            let _ = t.render(&vars());
            let _ = t.render_json(&vars());
            let _ = t.render_html(&vars());
        }
    }

    #[test]
    fn input_of_any_shape_is_checked_without_panicking(
        json in proptest::arbitrary::any::<(Option<String>, Option<i64>, Option<f64>, bool)>()
    ) {
        let wf = workflow::parse(REFERENCE, &|_| None, KINDS).expect("the reference loads");
        let (s, i, f, b) = json;
        let mut m = serde_json::Map::new();
        if let Some(s) = s { m.insert("name".into(), s.clone().into()); m.insert("email".into(), s.into()); }
        if let Some(i) = i { m.insert("message".into(), i.into()); }
        if let Some(f) = f.and_then(serde_json::Number::from_f64) { m.insert("company".into(), serde_json::Value::Number(f)); }
        if b { m.insert("extra".into(), serde_json::Value::Null); }
        let _ = wf.input.check(serde_json::Value::Object(m));
    }
}
