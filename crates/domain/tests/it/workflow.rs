//! The workflow loader's envelope: names, triggers, input contracts,
//! step envelopes, `covers:` links, includes and redaction, each refusal
//! checked by its exact text and place.

use std::sync::Arc;

use countersign_domain::workflow::{
    self, Control, Cx, FieldError, MAX_INCLUDE_BYTES, Workflow, redact,
};
use countersign_domain::yaml;
use serde_json::json;

const KINDS: &[&str] = &["validate", "rules", "wait", "http", "review"];

fn env(n: &str) -> Option<String> {
    match n {
        "SECRET" => Some("s3cr3t-value".to_string()),
        "EMPTY" => Some(String::new()),
        _ => None,
    }
}

fn load(src: &str) -> Result<Workflow, Vec<String>> {
    workflow::parse(src, &env, KINDS).map_err(|es| es.iter().map(ToString::to_string).collect())
}

fn errors(src: &str) -> Vec<String> {
    match load(src) {
        Ok(_) => panic!("loaded: {src}"),
        Err(e) => e,
    }
}

/// A workflow with these steps (YAML lines under `steps:`).
fn with_steps(steps: &str) -> String {
    format!("name: w\nsteps:\n{steps}")
}

#[test]
fn a_workflow_reads_its_header() {
    let wf = load(
        "name: a-b_9\nversion: 3\ndescription: Does things.\nsteps:\n  - id: s\n    validate: {}\n",
    )
    .unwrap();
    assert_eq!(wf.name, "a-b_9");
    assert_eq!(wf.label.as_deref(), Some("3"));
    assert_eq!(wf.description.as_deref(), Some("Does things."));
    assert!(wf.trigger.webhook.is_none() && wf.trigger.form.is_none());
    assert_eq!(wf.input.schema, json!(true));
    assert!(wf.input.normalize.is_empty() && wf.input.idempotency_field.is_none());
    assert!(wf.secrets.is_empty());
    // No schema: any input passes unchanged.
    assert_eq!(
        wf.input.check(json!({"a": " x "})).unwrap(),
        (json!({"a": " x "}), vec![])
    );
    let wf = load("name: x\nsteps:\n  - id: s\n    validate: {}\n").unwrap();
    assert_eq!((wf.label, wf.description), (None, None));
}

#[test]
fn names_are_short_lowercase_and_start_with_a_letter() {
    let msg =
        "1:7: name: name must be 1–64 characters of a-z, 0-9, `-` and `_`, starting with a letter";
    let name = |n: &str| {
        load(&format!(
            "name: {n}\nsteps:\n  - id: s\n    validate: {{}}\n"
        ))
    };
    assert!(name(&format!("a{}", "b".repeat(63))).is_ok());
    assert_eq!(name(&format!("a{}", "b".repeat(64))).unwrap_err(), [msg]);
    for bad in ["9a", "A", "aB", "a.b", "'-a'", "''"] {
        assert_eq!(name(bad).unwrap_err(), [msg], "{bad}");
    }
    assert_eq!(
        errors("name: 3\nsteps:\n  - id: s\n    validate: {}\n"),
        ["1:7: name: expected a string, found an integer"]
    );
    assert_eq!(
        errors("steps:\n  - id: s\n    validate: {}\n"),
        ["1:1: missing required field `name`"]
    );
    assert_eq!(errors("[]\n"), ["1:1: expected a mapping, found a list"]);
    assert_eq!(
        errors("name: x\ndescription: [a]\nversion: [b]\nsteps:\n  - id: s\n    validate: {}\n"),
        [
            "2:14: description: expected a string, found a list",
            "3:10: version: expected a string, found a list",
        ]
    );
}

#[test]
fn steps_must_be_a_non_empty_list() {
    assert_eq!(errors("name: x\n"), ["1:1: missing required field `steps`"]);
    assert_eq!(
        errors("name: x\nsteps: []\n"),
        ["2:8: steps: a workflow needs at least one step"]
    );
    assert_eq!(
        errors("name: x\nsteps: {}\n"),
        ["2:8: steps: expected a list, found a mapping"]
    );
    assert_eq!(
        errors("name: x\nsteps: [1]\ncolour: red\n"),
        [
            "2:9: steps[0]: expected a mapping, found an integer",
            "3:1: colour: unknown field `colour`; expected one of: description, input, name, steps, trigger, version",
        ]
    );
}

#[test]
fn errors_come_sorted_by_line_and_column() {
    assert_eq!(
        errors(
            "steps:\n  - id: A\n    validate: {}\n  - id: b\n    validate: {}\n    when: nope\nname: Bad\n"
        ),
        [
            "2:9: steps[0].id: step id must be 1–64 characters of a-z, 0-9 and `_`, starting with a letter",
            "6:11: steps[1].when: unknown variable \"nope\"; known here: input, run, A",
            "7:7: name: name must be 1–64 characters of a-z, 0-9, `-` and `_`, starting with a letter",
        ]
    );
    assert_eq!(
        errors("name: x\nsteps:\n  - { id: a, when: nope, wait: 1s, validate: {} }\n"),
        [
            "3:20: steps[0].when: unknown variable \"nope\"; known here: input, run",
            "3:36: steps[0].validate: a step has exactly one kind; `wait` and `validate` both given (unknown field?)",
        ]
    );
}

#[test]
fn step_ids_are_checked() {
    let id_msg = "step id must be 1–64 characters of a-z, 0-9 and `_`, starting with a letter";
    let id = |i: &str| load(&with_steps(&format!("  - id: {i}\n    validate: {{}}\n")));
    assert!(id(&format!("a{}", "_9".repeat(31))).is_ok());
    assert_eq!(
        id(&format!("a{}", "b".repeat(64))).unwrap_err(),
        [format!("3:9: steps[0].id: {id_msg}")]
    );
    for bad in ["9a", "aB", "a-b", "_a", "''"] {
        assert_eq!(
            id(bad).unwrap_err(),
            [format!("3:9: steps[0].id: {id_msg}")],
            "{bad}"
        );
    }
    for reserved in [
        "input", "run", "approved", "env", "response", "item", "loop",
    ] {
        assert_eq!(
            id(reserved).unwrap_err(),
            [format!(
                "3:9: steps[0].id: `{reserved}` is a reserved name; pick another step id"
            )]
        );
    }
    assert_eq!(
        id("[a]").unwrap_err(),
        ["3:9: steps[0].id: expected a string, found a list"]
    );
    assert_eq!(
        errors(&with_steps("  - validate: {}\n")),
        ["3:5: steps[0]: missing required field `id`"]
    );
    assert_eq!(
        errors(&with_steps(
            "  - id: a\n    validate: {}\n  - id: a\n    wait: 1s\n"
        )),
        ["5:9: steps[1].id: duplicate step id `a`"]
    );
}

#[test]
fn step_kinds_are_checked() {
    assert_eq!(
        errors(&with_steps("  - id: a\n    description: no kind\n")),
        ["3:5: steps[0]: step `a` has no kind; add one of: validate, rules, wait, http, review"]
    );
    assert_eq!(
        errors(&with_steps("  - id: a\n    wiat: 1s\n")),
        ["4:5: steps[0].wiat: unknown step kind `wiat` (did you mean `wait`?)"]
    );
    assert_eq!(
        errors(&with_steps("  - id: a\n    telepathy: {}\n")),
        [
            "4:5: steps[0].telepathy: unknown step kind `telepathy`; known kinds: validate, rules, wait, http, review"
        ]
    );
}

#[test]
fn the_envelope_reads_when_control_retry_and_timeout() {
    let wf = load(&with_steps(
        "  - id: a\n    validate: {}\n  - id: b\n    description: Second.\n    when: a.ok\n    control: draft\n    retry: { max_attempts: 3 }\n    timeout: 2s\n    http: { url: 'http://x' }\n",
    ))
    .unwrap();
    let a = &wf.steps[0];
    assert_eq!(
        (a.id.as_str(), a.index, a.kind.as_str()),
        ("a", 0, "validate")
    );
    assert!(a.when.is_none());
    assert_eq!(a.control, Control::Auto);
    assert_eq!(a.timeout_ms, None);
    assert_eq!(a.covered_by, None);
    let b = &wf.steps[1];
    assert_eq!((b.id.as_str(), b.index, b.kind.as_str()), ("b", 1, "http"));
    assert_eq!(b.when.as_ref().unwrap().source(), "a.ok");
    assert_eq!(b.control, Control::Draft);
    assert_eq!(b.retry.max_attempts, 3);
    assert_eq!(b.timeout_ms, Some(2_000));
    assert_eq!(b.body.to_json(), json!({"url": "http://x"}));
    assert_eq!(wf.step("b").unwrap().index, 1);
    assert!(wf.step("c").is_none());

    for (word, control) in [
        ("auto", Control::Auto),
        ("review", Control::Review),
        ("draft", Control::Draft),
        ("suggest", Control::Suggest),
    ] {
        assert_eq!(control.as_str(), word);
        let wf = load(&with_steps(&format!(
            "  - id: a\n    control: {word}\n    validate: {{}}\n"
        )))
        .unwrap();
        assert_eq!(wf.steps[0].control, control);
        // Inside the body too.
        let wf = load(&with_steps(&format!(
            "  - id: a\n    validate: {{ control: {word} }}\n"
        )))
        .unwrap();
        assert_eq!(wf.steps[0].control, control);
    }
    assert_eq!(
        errors(&with_steps(
            "  - id: a\n    control: maybe\n    validate: {}\n"
        )),
        ["4:14: steps[0].control: control must be auto, review, draft or suggest"]
    );
    assert_eq!(
        errors(&with_steps("  - id: a\n    control: 1\n    validate: {}\n")),
        ["4:14: steps[0].control: expected a string, found an integer"]
    );
    assert_eq!(
        errors(&with_steps(
            "  - id: a\n    timeout: soon\n    validate: {}\n"
        )),
        [
            "4:14: steps[0].timeout: invalid duration \"soon\": use a number with a unit, e.g. 500ms, 30s, 5m, 24h, 7d"
        ]
    );
    // Lifted from the body: when, timeout (the rest of the body stays).
    let wf = load(&with_steps(
        "  - id: a\n    validate: {}\n  - id: b\n    http: { when: a.ok, timeout: 3s, url: 'http://x' }\n",
    ))
    .unwrap();
    assert_eq!(wf.steps[1].when.as_ref().unwrap().source(), "a.ok");
    assert_eq!(wf.steps[1].timeout_ms, Some(3_000));
    assert_eq!(wf.steps[1].body.to_json(), json!({"url": "http://x"}));
    // `description` is not lifted: it is the body's own.
    let wf = load(&with_steps(
        "  - id: a\n    http: { description: d, url: 'http://x' }\n",
    ))
    .unwrap();
    assert_eq!(
        wf.steps[0].body.to_json(),
        json!({"description": "d", "url": "http://x"})
    );
    assert_eq!(
        errors(&with_steps(
            "  - id: a\n    timeout: 1s\n    control: auto\n    http: { timeout: 2s, control: review, url: 'http://x' }\n"
        )),
        [
            "6:22: steps[0].http.timeout: `timeout` is given twice, on the step and inside `http`",
            "6:35: steps[0].http.control: `control` is given twice, on the step and inside `http`",
        ]
    );
}

#[test]
fn a_step_sees_input_run_and_earlier_steps_and_approved_after_a_review() {
    let wf = load(&with_steps(
        "  - id: a\n    validate: {}\n  - id: r\n    review: {}\n  - id: r2\n    review: {}\n  - id: c\n    when: approved and a and r and r2 and input and run\n    validate: {}\n",
    ))
    .unwrap();
    let s = wf.scope_for(0);
    assert!(s.contains("input") && s.contains("run") && !s.contains("a"));
    let s = wf.scope_for(1);
    assert!(s.contains("a") && !s.contains("r") && !s.contains("approved"));
    let s = wf.scope_for(2);
    assert!(s.contains("r") && s.contains("approved"));
    // Past the end: every step.
    let s = wf.scope_for(99);
    assert!(s.contains("c"));
    assert_eq!(
        errors(&with_steps(
            "  - id: a\n    validate: {}\n    when: approved\n  - id: r\n    review: {}\n"
        )),
        ["5:11: steps[0].when: unknown variable \"approved\"; known here: input, run"]
    );
    // `approved` is named once however many reviews come before.
    assert_eq!(
        errors(&with_steps(
            "  - id: r\n    review: {}\n  - id: q\n    review: {}\n  - id: a\n    validate: {}\n    when: zzzz\n"
        )),
        ["9:11: steps[2].when: unknown variable \"zzzz\"; known here: input, run, r, approved, q"]
    );
}

#[test]
fn covers_problems_are_located() {
    let errs = errors(&with_steps(
        "  - id: r\n    review: { covers: x }\n  - id: q\n    review: { covers: [3, bb] }\n  - id: b\n    validate: {}\n  - id: c\n    review: 1\n",
    ));
    assert_eq!(
        errs,
        [
            "4:23: steps[0].review.covers: expected a list, found a string",
            "6:24: steps[1].review.covers[0]: expected a string, found an integer",
            "6:27: steps[1].review.covers[1]: `covers` names no step `bb` (did you mean `b`?)",
        ]
    );
}

#[test]
fn triggers() {
    let trig = |t: &str| {
        load(&format!(
            "name: x\ntrigger:\n{t}steps:\n  - id: a\n    validate: {{}}\n"
        ))
    };
    let wf = trig("  webhook: { secret: '${env:SECRET}' }\n  form: { title: Ask us }\n").unwrap();
    assert_eq!(
        wf.trigger.webhook.unwrap().secret.as_deref(),
        Some("s3cr3t-value")
    );
    assert_eq!(wf.trigger.form.unwrap().title, "Ask us");
    assert_eq!(wf.secrets, ["s3cr3t-value"]);
    let wf = trig("  webhook: { unsigned: true }\n  form:\n").unwrap();
    assert_eq!(wf.trigger.webhook.unwrap().secret, None);
    assert_eq!(wf.trigger.form.unwrap().title, "Submit a request");
    let wf = trig("  form: {}\n").unwrap();
    assert_eq!(wf.trigger.form.unwrap().title, "Submit a request");
    assert!(wf.trigger.webhook.is_none());
    // An empty secret disables the webhook instead of opening it.
    let wf = trig("  webhook: { secret: '${env:NONE:-}' }\n").unwrap();
    assert!(wf.trigger.webhook.is_none());
    assert!(wf.secrets.is_empty(), "an empty value is no secret");
    let wf = trig("  webhook: { secret: '${env:EMPTY:-}' }\n").unwrap();
    assert!(wf.trigger.webhook.is_none());

    assert_eq!(
        trig("  webhook:\n").unwrap_err(),
        [
            "3:10: trigger.webhook: a webhook without a secret accepts anyone's requests: add `secret: \"${env:NAME}\"`, or say `unsigned: true` to accept unsigned requests"
        ]
    );
    assert_eq!(
        trig("  webhook: { secret: '${env:SECRET}', unsigned: true }\n").unwrap_err(),
        ["3:12: trigger.webhook: a webhook has either a `secret` or `unsigned: true`, not both"]
    );
    assert_eq!(
        trig("  webhook: { unsigned: 1 }\n").unwrap_err(),
        [
            "3:12: trigger.webhook: a webhook without a secret accepts anyone's requests: add `secret: \"${env:NAME}\"`, or say `unsigned: true` to accept unsigned requests",
            "3:24: trigger.webhook.unsigned: expected true or false, found an integer",
        ]
    );
    assert_eq!(
        trig("  webhook: { unsigned: true, secrt: x }\n").unwrap_err(),
        ["3:30: trigger.webhook.secrt: unknown field `secrt` (did you mean `secret`?)"]
    );
    assert_eq!(
        trig("  webhook: [x]\n").unwrap_err(),
        [
            "3:12: trigger.webhook: expected a mapping, found a list",
            "3:12: trigger.webhook: a webhook without a secret accepts anyone's requests: add `secret: \"${env:NAME}\"`, or say `unsigned: true` to accept unsigned requests",
        ]
    );
    assert_eq!(
        trig("  form: { title: [x], colour: red }\n").unwrap_err(),
        [
            "3:18: trigger.form.title: expected a string, found a list",
            "3:23: trigger.form.colour: unknown field `colour`; expected one of: title",
        ]
    );
    assert_eq!(
        trig("  form: [x]\n  mail: {}\n").unwrap_err(),
        [
            "3:9: trigger.form: expected a mapping, found a list",
            "4:3: trigger.mail: unknown field `mail`; expected one of: form, webhook",
        ]
    );
    let wf = trig("  form: [x]\n");
    assert!(wf.is_err());
    assert_eq!(
        errors("name: x\ntrigger: 1\nsteps:\n  - id: a\n    validate: {}\n"),
        ["2:10: trigger: expected a mapping, found an integer"]
    );
}

fn input(spec: &str) -> Result<Workflow, Vec<String>> {
    load(&format!(
        "name: x\ninput:\n{spec}steps:\n  - id: a\n    validate: {{}}\n"
    ))
}

#[test]
fn input_normalisation_applies_each_op_in_order() {
    let wf = input(
        "  normalize:\n    a: trim\n    b: [lowercase]\n    c: [uppercase, trim]\n    d: collapse_spaces\n    e: []\n  idempotency_field: a\n",
    )
    .unwrap();
    assert_eq!(wf.input.idempotency_field.as_deref(), Some("a"));
    let (out, changed) = wf
        .input
        .check(json!({"a": " A  b ", "b": " A  b ", "c": " A  b ", "d": " A \n b ", "e": " x ", "f": 1}))
        .unwrap();
    assert_eq!(
        out,
        json!({"a": "A  b", "b": " a  b ", "c": "A  B", "d": "A b", "e": " x ", "f": 1})
    );
    assert_eq!(changed, ["a", "b", "c", "d"]);
    // Unchanged values are not reported as changed; non-strings are left.
    let (out, changed) = wf
        .input
        .check(json!({"a": "x", "b": 3, "d": "a b"}))
        .unwrap();
    assert_eq!(out, json!({"a": "x", "b": 3, "d": "a b"}));
    assert!(changed.is_empty());
    // Not an object: nothing to normalise.
    assert_eq!(
        wf.input.check(json!("  s ")).unwrap(),
        (json!("  s "), vec![])
    );

    assert_eq!(
        input("  normalize:\n    a: [trim, shout, 3]\n").unwrap_err(),
        [
            "4:15: input.normalize.a[1]: unknown normalisation \"shout\"; expected trim, lowercase, uppercase or collapse_spaces",
            "4:22: input.normalize.a[2]: expected a string, found an integer",
        ]
    );
    assert_eq!(
        input("  normalize: [trim]\n  idempotency_field: 3\n  schemas: {}\n").unwrap_err(),
        [
            "3:14: input.normalize: expected a mapping, found a list",
            "4:22: input.idempotency_field: expected a string, found an integer",
            "5:3: input.schemas: unknown field `schemas` (did you mean `schema`?)",
        ]
    );
    assert_eq!(
        errors("name: x\ninput: 1\nsteps:\n  - id: a\n    validate: {}\n"),
        ["2:8: input: expected a mapping, found an integer"]
    );
}

#[test]
fn input_errors_point_at_the_field() {
    let wf = input(
        "  schema:\n    type: object\n    required: ['a/b~c', n]\n    additionalProperties: false\n    properties: { 'a/b~c': {}, n: { type: integer, minimum: 1 }, s: {} }\n",
    )
    .unwrap();
    assert_eq!(wf.input.field_order, ["a/b~c", "n", "s"]);
    let errs = wf.input.check(json!({"x/y": 1, "n": 0})).unwrap_err();
    assert_eq!(
        errs,
        [
            FieldError {
                pointer: "/a~1b~0c".into(),
                message: "\"a/b~c\" is a required property".into(),
            },
            FieldError {
                pointer: "/n".into(),
                message: "0 is less than the minimum of 1".into(),
            },
            FieldError {
                pointer: "/x~1y".into(),
                message: "unexpected field \"x/y\": the schema allows no other fields".into(),
            },
        ]
    );
    assert!(wf.input.check(json!({"a/b~c": 1, "n": 2})).is_ok());
    // Nested objects name the nested field.
    let wf = input(
        "  schema:\n    type: object\n    properties: { o: { type: object, required: [k] } }\n",
    )
    .unwrap();
    assert_eq!(
        wf.input.check(json!({"o": {}})).unwrap_err()[0].pointer,
        "/o/k"
    );
    // A schema that is not a mapping has no field order.
    let wf = input("  schema: true\n").unwrap();
    assert!(wf.input.field_order.is_empty());
    assert!(wf.input.check(json!(5)).is_ok());
    let wf = input("  schema: { properties: 3 }\n");
    assert!(wf.is_err());
    let wf = input("  schema: { type: object }\n").unwrap();
    assert!(wf.input.field_order.is_empty());
    assert_eq!(
        input("  schema: { type: 5 }\n").unwrap_err(),
        [
            "3:11: input.schema: invalid JSON Schema at /properties/type/anyOf: 5 is not valid under any of the schemas listed in the 'anyOf' keyword"
        ]
    );
    assert_eq!(
        input("  schema: { $ref: '#/nope' }\n").unwrap_err(),
        ["3:11: input.schema: invalid JSON Schema at /: Pointer '/nope' does not exist"]
    );
    assert_eq!(
        input("  schema: 3\n").unwrap_err(),
        [
            "3:11: input.schema: invalid JSON Schema at /type: 3 is not of types \"boolean\", \"object\""
        ]
    );
}

#[test]
fn includes_are_bounded_in_size_and_place() {
    let file = |content: String| {
        Cx::with_files(Arc::new(move |p: &str| match p {
            "a.md" | "d/a.md" => Ok(content.clone()),
            _ => Err("missing".to_string()),
        }))
    };
    let root = yaml::parse("x: 1\n", &|_| None).unwrap();
    let node = &root.as_map().unwrap()[0].1;
    let mut cx = file("x".repeat(MAX_INCLUDE_BYTES));
    assert_eq!(cx.include(node, "a.md").unwrap().len(), MAX_INCLUDE_BYTES);
    let mut cx2 = file("x".repeat(MAX_INCLUDE_BYTES + 1));
    assert_eq!(
        cx2.include(node, "a.md").unwrap_err().to_string(),
        "1:4: x: \"a.md\" is larger than 1024 KiB"
    );
    assert!(cx2.included.is_empty());
    assert_eq!(
        format!("{cx:?}"),
        "Cx { errors: [], secrets: 0, included: [\"a.md\"], files: true }"
    );
    assert_eq!(
        format!("{:?}", Cx::default()),
        "Cx { errors: [], secrets: 0, included: [], files: false }"
    );
    let mut cx = file("hi".into());
    assert_eq!(cx.include(node, " d\\./a.md ").unwrap(), "hi");
    assert_eq!(cx.included[0].0, "d/a.md");
    let err = |p: &str| file(String::new()).include(node, p).unwrap_err().message;
    assert_eq!(err("  "), "the file name is empty");
    assert_eq!(
        err("\\x"),
        "\"\\\\x\": give a path relative to the workflow file (no absolute paths)"
    );
    assert_eq!(
        err("c:x"),
        "\"c:x\": give a path relative to the workflow file (no absolute paths)"
    );
    assert_eq!(err("./."), "\"./.\" names no file");
    assert_eq!(
        err("a\\..\\b"),
        "\"a\\\\..\\\\b\": `..` is not allowed; a workflow includes files from its own folder only"
    );
}

#[test]
fn secrets_and_redaction() {
    let mut cx = Cx::default();
    let root = yaml::parse(
        "a: '${env:SECRET}'\nb: plain\nc: '${env:EMPTY:-}'\nd: 5\n",
        &env,
    )
    .unwrap();
    for (_, n) in root.as_map().unwrap() {
        cx.secret_if_env(n);
    }
    assert_eq!(cx.secrets, ["s3cr3t-value"]);
    assert_eq!(cx.take::<u8>(Ok(3)), Some(3));
    assert!(cx.errors.is_empty());
    let d = root.error("boom");
    assert_eq!(cx.take::<u8>(Err(d.clone())), None);
    assert_eq!(cx.errors, [d]);

    let secrets = ["abc".to_string(), "abcd".to_string(), "zz-top".to_string()];
    assert_eq!(
        redact(&secrets, "abc abcd zz-top abcde"),
        "abc [redacted] [redacted] [redacted]e"
    );
    assert_eq!(redact(&secrets, "nothing here"), "nothing here");
}
