//! Conditions and templates: name checks against the scope, rendering of
//! each template shape, JSON templates and the error messages authors see.

use countersign_domain::diag::Diagnostic;
use countersign_domain::expr::{Condition, JsonTemplate, Scope, Template, Vars, value_from_json};
use countersign_domain::yaml::{self, Node};
use serde_json::json;

/// The node of `x:` in `x: {src}`.
fn node(src: &str) -> Node {
    let root = yaml::parse(&format!("x: {src}\n"), &|_| None).unwrap();
    root.as_map().unwrap()[0].1.clone()
}

fn vars(input: serde_json::Value) -> Vars {
    let mut v = Vars::new();
    v.insert("input".into(), value_from_json(&input));
    v
}

fn cond_err(src: &str, scope: &Scope) -> String {
    match Condition::compile(&node(src), scope) {
        Ok(c) => panic!("{src} compiled: {c:?}"),
        Err(d) => d.to_string(),
    }
}

#[test]
fn scope_knows_its_names_and_declared_fields() {
    let base = Scope::new(["input", "run"]);
    assert!(base.contains("input") && base.contains("run"));
    assert!(!base.contains("triage") && !base.contains("inp"));
    let more = base.with("triage");
    assert!(more.contains("triage") && more.contains("input"));
    assert!(!base.contains("triage"), "with() leaves the original alone");
    let mut s = Scope::new(["t"]);
    s.set_fields("t", ["b", "a", "b"]);
    assert_eq!(s.fields("t"), Some(&["a".to_string(), "b".to_string()][..]));
    assert_eq!(s.fields("u"), None);
    // Fields survive `with`.
    assert_eq!(s.with("u").fields("t").map(<[String]>::len), Some(2));
}

#[test]
fn unknown_names_are_refused_with_a_suggestion_or_the_known_list() {
    let scope = Scope::new(["input", "triage"]);
    assert_eq!(
        cond_err("'inptu.a'", &scope),
        "1:4: x: unknown variable \"inptu\" (did you mean \"input\"?)"
    );
    assert_eq!(
        cond_err("'zzzzz > 1'", &scope),
        "1:4: x: unknown variable \"zzzzz\"; known here: input, triage"
    );
    // The language's own globals are always known.
    for ok in [
        "range(3)|length == 3",
        "dict(a=1).a == 1",
        "input.a and triage",
    ] {
        assert!(
            Condition::compile(&node(&format!("'{ok}'")), &scope).is_ok(),
            "{ok}"
        );
    }
    // A name bound inside the expression is not a free variable.
    let t = Template::compile(&node("'{% for i in input %}{{ i }}{% endfor %}'"), &scope);
    assert!(t.is_ok(), "{t:?}");
}

#[test]
fn declared_fields_refuse_others_but_allow_map_methods() {
    let mut scope = Scope::new(["input", "t"]);
    scope.set_fields("t", ["intent", "summary", "summary_draft", "confidence"]);
    for ok in [
        "t.intent",
        "t.items()",
        "t.keys()",
        "t.values()",
        "t.get('x')",
        "t.summary_draft",
    ] {
        assert!(
            Condition::compile(&node(&format!("\"{ok}\"")), &scope).is_ok(),
            "{ok}"
        );
    }
    // A prefix of two declared fields suggests neither.
    assert_eq!(
        cond_err("t.summ", &scope),
        "1:4: x: `t` has no field \"summ\"; its fields: confidence, intent, summary, summary_draft"
    );
    // Within two edits the nearest is named.
    assert_eq!(
        cond_err("t.summar", &scope),
        "1:4: x: `t` has no field \"summar\" (did you mean \"summary\"?)"
    );
    // A prefix of exactly one field names it; a prefix under three
    // characters does not.
    scope.set_fields("t", ["customer_reply_draft", "intent"]);
    assert_eq!(
        cond_err("t.cus", &scope),
        "1:4: x: `t` has no field \"cus\" (did you mean \"customer_reply_draft\"?)"
    );
    assert_eq!(
        cond_err("t.cu", &scope),
        "1:4: x: `t` has no field \"cu\"; its fields: customer_reply_draft, intent"
    );
}

#[test]
fn conditions_compile_from_strings_and_booleans() {
    let scope = Scope::new(["input"]);
    let c = Condition::compile(&node("true"), &scope).unwrap();
    assert_eq!(c.source(), "true");
    assert!(c.eval(&Vars::new()).unwrap());
    let c = Condition::compile(&node("false"), &scope).unwrap();
    assert_eq!(c.source(), "false");
    assert!(!c.eval(&Vars::new()).unwrap());
    assert_eq!(format!("{c:?}"), "Condition(\"false\")");
    let c = Condition::compile(&node("'input.n > 2'"), &scope).unwrap();
    assert_eq!(c.source(), "input.n > 2");
    assert!(c.eval(&vars(json!({"n": 3}))).unwrap());
    assert!(!c.eval(&vars(json!({"n": 2}))).unwrap());
    assert_eq!(
        Condition::compile(&node("3"), &scope)
            .unwrap_err()
            .to_string(),
        "1:4: x: expected a string, found an integer"
    );
    assert_eq!(
        cond_err("'input.n >'", &scope),
        "1:4: x: invalid expression: syntax error: unexpected end of input, expected expression"
    );
    let c = Condition::compile(&node("'input.n + 1 > 2'"), &scope).unwrap();
    assert_eq!(
        c.eval(&vars(json!({"n": "a"}))).unwrap_err(),
        "condition `input.n + 1 > 2` failed: invalid operation: tried to use + operator on unsupported types string and number"
    );
}

#[test]
fn check_names_rechecks_with_a_wider_scope() {
    let c = Condition::compile(&node("'t.x and input.y'"), &Scope::new(["input", "t"])).unwrap();
    assert!(c.check_names(&Scope::new(["input", "t"])).is_ok());
    let mut narrow = Scope::new(["input", "t"]);
    narrow.set_fields("t", ["zzz"]);
    assert_eq!(
        c.check_names(&narrow).unwrap_err().to_string(),
        "1:4: x: `t` has no field \"x\"; its fields: zzz"
    );
    assert_eq!(
        c.check_names(&Scope::new(["t"])).unwrap_err().to_string(),
        "1:4: x: unknown variable \"input\"; known here: t"
    );
}

#[test]
fn template_shapes_render_as_their_kind() {
    let scope = Scope::new(["input"]);
    let v = vars(json!({"a": 1, "b": "two", "n": null, "obj": {"k": [1, 2]}}));
    let t = |src: &str| Template::compile(&node(src), &scope).unwrap();

    let lit = t("'plain {# not a comment #} text'");
    assert!(lit.is_literal());
    assert_eq!(lit.source(), "plain {# not a comment #} text");
    assert_eq!(lit.render(&v).unwrap(), "plain {# not a comment #} text");
    assert_eq!(
        lit.render_html(&v).unwrap(),
        "plain {# not a comment #} text"
    );
    assert_eq!(
        lit.render_json(&v).unwrap(),
        json!("plain {# not a comment #} text")
    );
    // Numbers and booleans are literals too.
    assert_eq!(t("42").render(&v).unwrap(), "42");
    assert_eq!(Template::literal("x").source(), "x");
    assert!(Template::literal("{{ x }}").is_literal());
    assert_eq!(Template::literal("{{ x }}").render(&v).unwrap(), "{{ x }}");

    let expr = t("' {{ input.a }} '");
    assert!(!expr.is_literal());
    assert_eq!(expr.source(), " {{ input.a }} ");
    assert_eq!(expr.render(&v).unwrap(), "1");
    assert_eq!(expr.render_json(&v).unwrap(), json!(1));
    assert_eq!(
        t("'{{ input.obj }}'").render_json(&v).unwrap(),
        json!({"k": [1, 2]})
    );
    // Undefined and none render empty; as JSON, null.
    assert_eq!(t("'{{ input.missing }}'").render(&v).unwrap(), "");
    assert_eq!(t("'{{ input.n }}'").render(&v).unwrap(), "");
    assert_eq!(
        t("'{{ input.missing }}'").render_json(&v).unwrap(),
        json!(null)
    );
    assert_eq!(t("'{{ input.n }}'").render_json(&v).unwrap(), json!(null));

    let two = t("'{{ input.a }}-{{ input.b }}'");
    assert!(!two.is_literal());
    assert_eq!(two.render(&v).unwrap(), "1-two");
    assert_eq!(two.render_json(&v).unwrap(), json!("1-two"));
    let block = t("'{% if input.a %}yes{% endif %}'");
    assert!(!block.is_literal());
    assert_eq!(block.render(&v).unwrap(), "yes");
    assert_eq!(t("'{{ input.missing }}!'").render(&v).unwrap(), "!");
    // `{{ … }}` followed by literal braces is a template, not one expression.
    let braces = t("'{{ input.a }}}}'");
    assert_eq!(braces.render(&v).unwrap(), "1}}");
    assert_eq!(braces.render_json(&v).unwrap(), json!("1}}"));
}

#[test]
fn template_errors_name_the_problem() {
    let scope = Scope::new(["input"]);
    let err = |src: &str| {
        Template::compile(&node(src), &scope)
            .unwrap_err()
            .to_string()
    };
    assert_eq!(
        err("'{{ input. }}'"),
        "1:4: x: invalid template: syntax error: unexpected end of input, expected identifier or integer"
    );
    assert_eq!(
        err("'a {{ input.a'"),
        "1:4: x: invalid template: syntax error: unexpected end of input, expected end of variable block"
    );
    assert_eq!(
        err("'a {{ nope }}'"),
        "1:4: x: unknown variable \"nope\"; known here: input"
    );
    assert_eq!(
        err("'{{ nope }}'"),
        "1:4: x: unknown variable \"nope\"; known here: input"
    );
    assert_eq!(err("[1]"), "1:4: x: expected a string, found a list");
    let v = vars(json!({"s": "a"}));
    let t = Template::compile(&node("'{{ input.s + 1 }}'"), &scope).unwrap();
    assert_eq!(
        t.render(&v).unwrap_err(),
        "template `{{ input.s + 1 }}` failed: invalid operation: tried to use + operator on unsupported types string and number"
    );
    assert_eq!(
        t.render_json(&v).unwrap_err(),
        "template `{{ input.s + 1 }}` failed: invalid operation: tried to use + operator on unsupported types string and number"
    );
    let t = Template::compile(&node("'x {{ input.s + 1 }}'"), &scope).unwrap();
    assert_eq!(
        t.render(&v).unwrap_err(),
        "template failed: invalid operation: tried to use + operator on unsupported types string and number"
    );
    assert_eq!(
        t.render_html(&v).unwrap_err(),
        "template failed: invalid operation: tried to use + operator on unsupported types string and number"
    );
    assert_eq!(
        Template::compile(&node("'{{ input.s|nosuchfilter }}'"), &scope)
            .unwrap()
            .render(&v)
            .unwrap_err(),
        "template `{{ input.s|nosuchfilter }}` failed: unknown filter: filter nosuchfilter is unknown"
    );
    // An error without detail is its kind alone.
    let t = Template::compile(
        &node(
            "'{% for i in range(100000) %}{% for j in range(100000) %}x{% endfor %}{% endfor %}'",
        ),
        &scope,
    )
    .unwrap();
    assert_eq!(
        t.render(&v).unwrap_err(),
        "template failed: engine ran out of fuel"
    );
}

#[test]
fn html_rendering_escapes_a_lone_expression_too() {
    let scope = Scope::new(["input"]);
    let v = vars(json!({"h": "<i>&</i>"}));
    let t = Template::compile(&node("'{{ input.h }}'"), &scope).unwrap();
    assert_eq!(t.render(&v).unwrap(), "<i>&</i>");
    assert_eq!(t.render_html(&v).unwrap(), "&lt;i&gt;&amp;&lt;&#x2f;i&gt;");
}

#[test]
fn json_templates_render_strings_as_templates_and_keep_the_rest() {
    let scope = Scope::new(["input"]);
    let src = node(
        "{ s: '{{ input.a }}', t: 'id-{{ input.a }}', n: 3, f: 1.5, b: true, z: ~, l: ['{{ input.b }}', 2, [x]], m: { k: lit } }",
    );
    let mut errors: Vec<Diagnostic> = Vec::new();
    let t = JsonTemplate::compile(&src, &scope, &mut errors);
    assert!(errors.is_empty(), "{errors:?}");
    assert_eq!(
        t.render(&vars(json!({"a": 7, "b": {"deep": true}})))
            .unwrap(),
        json!({"s": 7, "t": "id-7", "n": 3, "f": 1.5, "b": true, "z": null,
               "l": [{"deep": true}, 2, ["x"]], "m": {"k": "lit"}})
    );

    // Every bad string is reported, at its own place.
    let bad = node("{ a: '{{ nope }}', l: [ok, '{{ input. }}'] }");
    let mut errors = Vec::new();
    let t = JsonTemplate::compile(&bad, &scope, &mut errors);
    let text: Vec<String> = errors.iter().map(ToString::to_string).collect();
    assert_eq!(
        text,
        [
            "1:9: x.a: unknown variable \"nope\"; known here: input",
            "1:31: x.l[1]: invalid template: syntax error: unexpected end of input, expected identifier or integer",
        ]
    );
    assert_eq!(
        t.render(&Vars::new()).unwrap(),
        json!({"a": null, "l": ["ok", null]})
    );
    // A failing element fails the whole.
    let t = JsonTemplate::compile(&node("['{{ input.s + 1 }}']"), &scope, &mut errors);
    assert!(t.render(&vars(json!({"s": "a"}))).is_err());
    let t = JsonTemplate::compile(&node("{ k: '{{ input.s + 1 }}' }"), &scope, &mut errors);
    assert!(t.render(&vars(json!({"s": "a"}))).is_err());
}
