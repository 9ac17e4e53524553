//! URL templates: which component each placeholder sits in, how its value
//! is encoded there, the fixed origin, and the refusals. Exact outputs, so
//! a change to the encoding or the component rules shows.

use countersign_domain::diag::Diagnostic;
use countersign_domain::expr::{Scope, Vars, value_from_json};
use countersign_domain::url::UrlTemplate;
use countersign_domain::yaml;
use serde_json::json;

fn compile(src: &str) -> Result<UrlTemplate, Diagnostic> {
    let root = yaml::parse(&format!("x: {src:?}\n"), &|_| None).unwrap();
    UrlTemplate::compile(&root.as_map().unwrap()[0].1, &Scope::new(["input"]))
}

fn render(src: &str, input: serde_json::Value) -> Result<String, String> {
    let mut vars = Vars::new();
    vars.insert("input".into(), value_from_json(&input));
    compile(src).unwrap().render(&vars)
}

#[test]
fn values_are_encoded_for_the_component_they_sit_in() {
    let v = json!({"v": "a b/c?d#e%f&g=h+i~j-k.l_m:é"});
    let enc = "a%20b%2Fc%3Fd%23e%25f%26g%3Dh%2Bi~j-k.l_m%3A%C3%A9";
    assert_eq!(
        render("https://h.test/p/{{ input.v }}", v.clone()).unwrap(),
        format!("https://h.test/p/{enc}")
    );
    assert_eq!(
        render("https://h.test/p?q={{ input.v }}", v.clone()).unwrap(),
        format!("https://h.test/p?q={enc}")
    );
    assert_eq!(
        render("https://h.test/p#{{ input.v }}", v.clone()).unwrap(),
        format!("https://h.test/p#{enc}")
    );
    // Before the path a value goes in as it is (only with an allow-list,
    // which the http step checks).
    assert_eq!(
        render("{{ input.v }}/x", json!({"v": "https://a.test:8/p?q"})).unwrap(),
        "https://a.test:8/p?q/x"
    );
    assert_eq!(
        render("https://{{ input.v }}/x", json!({"v": "a.test:8"})).unwrap(),
        "https://a.test:8/x"
    );
    // Upper and lower case letters and digits are kept as they are.
    assert_eq!(
        render("https://h/{{ input.v }}", json!({"v": "AZaz09"})).unwrap(),
        "https://h/AZaz09"
    );
}

#[test]
fn dot_segments_are_refused_in_the_path_only() {
    for dots in [".", ".."] {
        assert_eq!(
            render("https://h/a/{{ input.v }}/b", json!({ "v": dots })).unwrap_err(),
            format!("url value {dots:?} cannot be a path segment")
        );
        // In the query or fragment they are plain text.
        assert_eq!(
            render("https://h/a?x={{ input.v }}", json!({ "v": dots })).unwrap(),
            format!("https://h/a?x={dots}")
        );
        assert_eq!(
            render("https://h/a#{{ input.v }}", json!({ "v": dots })).unwrap(),
            format!("https://h/a#{dots}")
        );
    }
    // Dots inside a longer segment are fine.
    assert_eq!(
        render("https://h/{{ input.v }}", json!({"v": "...x"})).unwrap(),
        "https://h/...x"
    );
    // A value that spells `..` with the text beside it is refused...
    assert_eq!(
        render("https://h/a/x{{ input.e }}/b", json!({"e": ""})).unwrap(),
        "https://h/a/x/b"
    );
    assert_eq!(
        render("https://h/a/.{{ input.e }}/b", json!({"e": ""})).unwrap_err(),
        "url values form a `.` or `..` path segment"
    );
    // ...but a `..` the file itself writes is the author's choice.
    assert_eq!(
        render("https://h/a/../{{ input.v }}", json!({"v": "x"})).unwrap(),
        "https://h/a/../x"
    );
    assert_eq!(
        render("https://h/a/./{{ input.v }}", json!({"v": "x"})).unwrap(),
        "https://h/a/./x"
    );
    // A `..` built in the query is not a path segment.
    assert_eq!(
        render("https://h/a?{{ input.v }}{{ input.v }}", json!({"v": "."})).unwrap(),
        "https://h/a?.."
    );
    assert_eq!(
        render("https://h/a#/{{ input.v }}{{ input.v }}", json!({"v": "."})).unwrap(),
        "https://h/a#/.."
    );
    // Without a scheme, the whole text before `?` is the path.
    assert_eq!(
        render("{{ input.v }}/{{ input.v }}", json!({"v": ".."})).unwrap_err(),
        "url values form a `.` or `..` path segment"
    );
}

#[test]
fn literal_text_around_placeholders_is_kept() {
    assert_eq!(
        render(
            "https://h.test/a/{{ input.x }}-{{ input.y }}/z?k={{ input.x }}&l=1#f",
            json!({"x": "1", "y": "2"})
        )
        .unwrap(),
        "https://h.test/a/1-2/z?k=1&l=1#f"
    );
    assert_eq!(
        render("https://h.test/plain", json!({})).unwrap(),
        "https://h.test/plain"
    );
    // A short scheme: the path starts after `://`.
    assert_eq!(
        render("ws://h/{{ input.x }}", json!({"x": "1"})).unwrap(),
        "ws://h/1"
    );
    let t = compile("https://h.test/a/{{ input.x }}?b").unwrap();
    assert_eq!(t.source(), "https://h.test/a/{{ input.x }}?b");
}

#[test]
fn the_fixed_origin_ends_where_the_path_query_or_fragment_begins() {
    let origin = |src: &str| compile(src).unwrap().fixed_origin().map(str::to_string);
    assert_eq!(origin("https://h.test"), Some("https://h.test".into()));
    assert_eq!(origin("https://h.test/a"), Some("https://h.test".into()));
    assert_eq!(
        origin("http://h.test:81?q=1"),
        Some("http://h.test:81".into())
    );
    assert_eq!(origin("http://h.test#top"), Some("http://h.test".into()));
    assert_eq!(
        origin("https://h.test/{{ input.a }}"),
        Some("https://h.test".into())
    );
    // No scheme: nothing fixed to name.
    assert_eq!(origin("h.test/a"), None);
    assert!(!compile("h.test/a").unwrap().host_from_data());
    // A placeholder in the host decides it.
    let t = compile("https://h{{ input.a }}.test/x").unwrap();
    assert!(t.host_from_data());
    assert_eq!(t.fixed_origin(), None);
    // A placeholder with no path after the authority is in the host too.
    assert!(compile("https://{{ input.a }}").unwrap().host_from_data());
    assert!(
        compile("https://h.test/{{ input.a }}?{{ input.b }}#{{ input.c }}")
            .map(|t| !t.host_from_data())
            .unwrap()
    );
}

#[test]
fn compile_refuses_blocks_and_unclosed_placeholders() {
    let err = |src: &str| compile(src).unwrap_err().to_string();
    assert_eq!(
        err("https://h/{% if input.a %}a{% endif %}"),
        "1:4: x: url takes `{{ value }}` placeholders only (no `{% %}` blocks): compute the value in an earlier step"
    );
    assert_eq!(
        err("https://h/{{ input.a"),
        "1:4: x: invalid template: `{{` without `}}`"
    );
    assert_eq!(
        err("https://h/{{ nope }}"),
        "1:4: x: unknown variable \"nope\"; known here: input"
    );
    let root = yaml::parse("x: 1\n", &|_| None).unwrap();
    assert_eq!(
        UrlTemplate::compile(&root.as_map().unwrap()[0].1, &Scope::new(["input"]))
            .unwrap_err()
            .to_string(),
        "1:4: x: expected a string, found an integer"
    );
}
