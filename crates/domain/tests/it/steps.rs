//! The built-in step kinds that decide without the outside world: rules
//! (parsing and evaluation), wait, and the request side of http. Each
//! refusal is checked by its message and place.

use countersign_domain::expr::{Scope, Vars, value_from_json};
use countersign_domain::steps::{
    Action, DEFAULT_HTTP_TIMEOUT_MS, DEFAULT_MAX_RESPONSE_BYTES, HttpSpec,
    MAX_RESPONSE_BYTES_LIMIT, Rule, RulesResult, WaitSpec, evaluate, parse_http, parse_rules,
    parse_wait,
};
use countersign_domain::workflow::Cx;
use countersign_domain::yaml::{self, Node};
use serde_json::{Value as Json, json};

/// The value of the document's one key.
fn body(src: &str) -> Node {
    let env = |n: &str| match n {
        "TOKEN" => Some("tok-123456".to_string()),
        "HOST" => Some("https://env.test".to_string()),
        _ => None,
    };
    let root = yaml::parse(src, &env).unwrap();
    root.as_map().unwrap()[0].1.clone()
}

fn errors(cx: &Cx) -> Vec<String> {
    cx.errors.iter().map(ToString::to_string).collect()
}

fn rules(src: &str) -> (Vec<Rule>, Vec<String>) {
    let mut cx = Cx::default();
    let rules = parse_rules(&body(src), &Scope::new(["t"]), &mut cx);
    (rules, errors(&cx))
}

fn eval(rules: &[Rule], t: Json) -> RulesResult {
    let mut vars = Vars::new();
    vars.insert("t".into(), value_from_json(&t));
    evaluate(rules, &vars).unwrap()
}

#[test]
fn rule_actions_parse_into_their_kinds() {
    let (rs, errs) = rules(
        "rules:\n  - when: 'true'\n    then: { finish: done, review: skip, fail: nope, queue: q-1 }\n  - when: t.x\n    then: { review: required }\n",
    );
    assert!(errs.is_empty(), "{errs:?}");
    assert_eq!(rs.len(), 2);
    assert_eq!(
        rs[0].then,
        [
            Action::Finish("done".into()),
            Action::Review("skip".into()),
            Action::Fail("nope".into()),
            Action::Queue("q-1".into()),
        ]
    );
    assert_eq!(rs[0].why, None);
    assert_eq!(rs[1].then, [Action::Review("required".into())]);
    assert_eq!(rs[1].when.source(), "t.x");
}

#[test]
fn rule_problems_are_reported_once_each_at_their_place() {
    let (rs, errs) = rules(
        "rules:\n  - when: 'true'\n    then: { review: maybe }\n  - when: 'true'\n    then: { finish: 3 }\n  - when: 'true'\n    then: { fail: [x] }\n  - when: 'true'\n    then: { queue: 5 }\n  - when: 'true'\n    then: { finish: ok, colour: red }\n  - then: { finish: ok }\n  - when: 'true'\n  - when: 'true'\n    why: [no]\n    then: { finish: ok }\n  - 3\n  - when: nope\n    then: { finish: ok }\n  - when: 'true'\n    then: [finish]\n",
    );
    assert_eq!(
        errs,
        [
            "3:21: rules[0].then.review: review must be `required` or `skip`",
            "5:21: rules[1].then.finish: expected a string, found an integer",
            "7:19: rules[2].then.fail: expected a string, found a list",
            "9:20: rules[3].then.queue: expected a string, found an integer",
            "11:25: rules[4].then.colour: unknown field `colour`; expected one of: fail, finish, queue, raise, review",
            "12:5: rules[5]: missing required field `when`",
            "13:5: rules[6]: missing required field `then`",
            "15:10: rules[7].why: expected a string, found a list",
            "17:5: rules[8]: expected a mapping, found an integer",
            "18:11: rules[9].when: unknown variable \"nope\"; known here: t",
            "21:11: rules[10].then: expected a mapping, found a list",
        ]
    );
    // A rule with a bad `then` or `why` still compiles what it can; one
    // without `when` or `then` is dropped.
    let kept: Vec<&str> = rs.iter().map(|r| r.when.source()).collect();
    assert_eq!(kept, ["true"; 7]);
    // A `then` that is not a list at all is refused.
    let (rs, errs) = rules("rules: { when: x }\n");
    assert!(rs.is_empty());
    assert_eq!(errs, ["1:8: rules: expected a list, found a mapping"]);
}

#[test]
fn evaluation_stops_at_finish_or_fail_and_a_later_review_wins() {
    let (rs, errs) = rules(
        "rules:\n  - when: t.a\n    then: { review: required }\n  - when: t.b\n    why: B said so\n    then: { review: skip }\n  - when: t.fail\n    then: { fail: bad input }\n  - when: t.fin\n    then: { finish: done }\n  - when: 'true'\n    then: { queue: last }\n",
    );
    assert!(errs.is_empty(), "{errs:?}");

    let r = eval(&rs, json!({"a": true, "b": true}));
    assert_eq!(
        r,
        RulesResult {
            matched: vec![0, 1, 4],
            finish: None,
            review: Some("skip".into()),
            review_rule: Some((1, "t.b".into())),
            review_why: Some("B said so".into()),
            fail: None,
            queue: Some("last".into()),
            raised: Vec::new(),
        }
    );
    assert_eq!(
        r.to_json(),
        json!({
            "matched": [0, 1, 4], "finish": null, "review": "skip", "fail": null,
            "review_rule": {"index": 1, "when": "t.b", "why": "B said so"},
            "queue": "last"
        })
    );

    // A fail stops evaluation: the rules after it are not read.
    let r = eval(&rs, json!({"a": true, "fail": true, "fin": true}));
    assert_eq!(r.matched, [0, 2]);
    assert_eq!(r.fail.as_deref(), Some("bad input"));
    assert_eq!((&r.finish, &r.queue), (&None, &None));
    assert_eq!(
        r.to_json(),
        json!({
            "matched": [0, 2], "finish": null, "review": "required", "fail": "bad input",
            "review_rule": {"index": 0, "when": "t.a"}
        })
    );

    // So does a finish.
    let r = eval(&rs, json!({"fin": true}));
    assert_eq!(
        (r.matched, r.finish.as_deref(), r.queue),
        (vec![3], Some("done"), None)
    );

    // Nothing but the catch-all: no review, no review_rule in the output.
    let r = eval(&rs, json!({}));
    assert_eq!(
        r.to_json(),
        json!({"matched": [4], "finish": null, "review": null, "fail": null, "queue": "last"})
    );
}

#[test]
fn a_failing_condition_fails_the_evaluation() {
    let (rs, _) = rules("rules:\n  - when: t.n + 1 > 0\n    then: { finish: x }\n");
    let mut vars = Vars::new();
    vars.insert("t".into(), value_from_json(&json!({"n": "a"})));
    assert_eq!(
        evaluate(&rs, &vars).unwrap_err(),
        "condition `t.n + 1 > 0` failed: invalid operation: tried to use + operator on unsupported types string and number"
    );
}

fn wait(src: &str) -> (Option<WaitSpec>, Vec<String>) {
    let mut cx = Cx::default();
    let w = parse_wait(&body(src), &Scope::new(["t"]), &mut cx);
    (w, errors(&cx))
}

#[test]
fn wait_takes_a_duration_or_exactly_one_of_for_and_until() {
    assert!(matches!(wait("wait: 90s\n"), (Some(WaitSpec::For(90_000)), e) if e.is_empty()));
    assert!(matches!(wait("wait: 3\n"), (Some(WaitSpec::For(3_000)), e) if e.is_empty()));
    assert!(
        matches!(wait("wait: { for: 2m }\n"), (Some(WaitSpec::For(120_000)), e) if e.is_empty())
    );
    match wait("wait: { until: '{{ t.at }}' }\n") {
        (Some(WaitSpec::Until(t)), e) if e.is_empty() => assert_eq!(t.source(), "{{ t.at }}"),
        other => panic!("{other:?}"),
    }
    let (w, e) = wait("wait: soon\n");
    assert!(w.is_none());
    assert_eq!(
        e,
        [
            "1:7: wait: invalid duration \"soon\": use a number with a unit, e.g. 500ms, 30s, 5m, 24h, 7d"
        ]
    );
    let (w, e) = wait("wait: { for: 1s, until: x }\n");
    assert!(w.is_none());
    assert_eq!(e, ["1:7: wait: wait needs exactly one of `for` or `until`"]);
    let (w, e) = wait("wait: {}\n");
    assert!(w.is_none());
    assert_eq!(e, ["1:7: wait: wait needs exactly one of `for` or `until`"]);
    let (w, e) = wait("wait: { for: x }\n");
    assert!(w.is_none());
    assert_eq!(
        e,
        [
            "1:14: wait.for: invalid duration \"x\": use a number with a unit, e.g. 500ms, 30s, 5m, 24h, 7d"
        ]
    );
    let (w, e) = wait("wait: { until: '{{ nope }}' }\n");
    assert!(w.is_none());
    assert_eq!(
        e,
        ["1:16: wait.until: unknown variable \"nope\"; known here: t"]
    );
    let (w, e) = wait("wait: { for: 1s, colour: red }\n");
    assert!(matches!(w, Some(WaitSpec::For(1_000))));
    assert_eq!(
        e,
        ["1:18: wait.colour: unknown field `colour`; expected one of: for, until"]
    );
    let (w, e) = wait("wait: [1s]\n");
    assert!(w.is_none());
    assert_eq!(e, ["1:7: wait: expected a mapping, found a list"]);
}

fn http(src: &str, timeout: Option<u64>) -> (Option<HttpSpec>, Cx) {
    let mut cx = Cx::default();
    let spec = parse_http(&body(src), &Scope::new(["input"]), timeout, &mut cx);
    (spec, cx)
}

fn http_errors(src: &str) -> Vec<String> {
    errors(&http(src, None).1)
}

#[test]
fn http_defaults() {
    assert_eq!(DEFAULT_MAX_RESPONSE_BYTES, 1_048_576);
    assert_eq!(MAX_RESPONSE_BYTES_LIMIT, 16_777_216);
    assert_eq!(DEFAULT_HTTP_TIMEOUT_MS, 30_000);
    let (spec, cx) = http("http:\n  url: 'http://h.test/x'\n", None);
    assert!(cx.errors.is_empty() && cx.secrets.is_empty());
    let spec = spec.unwrap();
    assert_eq!(spec.method, "GET");
    assert_eq!(spec.url.source(), "http://h.test/x");
    assert!(spec.allow_hosts.is_empty());
    assert!(!spec.follow_redirects);
    assert_eq!(spec.max_response_bytes, DEFAULT_MAX_RESPONSE_BYTES);
    assert!(spec.headers.is_empty() && spec.body.is_none() && spec.output.is_none());
    assert_eq!(spec.timeout_ms, DEFAULT_HTTP_TIMEOUT_MS);
    // The step's own timeout is the default; the body's `timeout:` wins.
    let (spec, _) = http("http:\n  url: 'http://h.test/x'\n", Some(5_000));
    assert_eq!(spec.unwrap().timeout_ms, 5_000);
    let (spec, _) = http(
        "http:\n  url: 'http://h.test/x'\n  timeout: 2s\n",
        Some(5_000),
    );
    assert_eq!(spec.unwrap().timeout_ms, 2_000);
}

#[test]
fn http_reads_every_setting() {
    let (spec, cx) = http(
        "http:\n  url: '${env:HOST}/a/{{ input.id }}'\n  method: patch\n  follow_redirects: false\n  max_response_bytes: 16777216\n  headers: { X-Token: '${env:TOKEN}', Plain_Name: 'v {{ input.id }}' }\n  body: { id: '{{ input.id }}' }\n  output: { code: '{{ response.status }}', id: '{{ input.id }}' }\n",
        None,
    );
    assert!(cx.errors.is_empty(), "{:?}", cx.errors);
    assert_eq!(
        cx.secrets,
        ["https://env.test/a/{{ input.id }}", "tok-123456"]
    );
    let spec = spec.unwrap();
    assert_eq!(spec.method, "PATCH");
    assert!(!spec.follow_redirects);
    assert_eq!(spec.max_response_bytes, MAX_RESPONSE_BYTES_LIMIT);
    let headers: Vec<(&str, &str)> = spec
        .headers
        .iter()
        .map(|(k, t)| (k.as_str(), t.source()))
        .collect();
    assert_eq!(
        headers,
        [
            ("X-Token", "tok-123456"),
            ("Plain_Name", "v {{ input.id }}")
        ]
    );
    let mut vars = Vars::new();
    vars.insert("input".into(), value_from_json(&json!({"id": 7})));
    assert_eq!(spec.body.unwrap().render(&vars).unwrap(), json!({"id": 7}));
    let out: Vec<(&str, &str)> = spec
        .output
        .as_ref()
        .unwrap()
        .iter()
        .map(|(k, t)| (k.as_str(), t.source()))
        .collect();
    assert_eq!(
        out,
        [("code", "{{ response.status }}"), ("id", "{{ input.id }}")]
    );
    // Each method is accepted, in any case.
    for m in ["get", "POST", "Put", "patch", "DELETE"] {
        let (spec, cx) = http(
            &format!("http:\n  url: 'http://h.test/'\n  method: {m}\n"),
            None,
        );
        assert!(cx.errors.is_empty(), "{m}");
        assert_eq!(spec.unwrap().method, m.to_ascii_uppercase());
    }
    // `response` is known in `output` only.
    assert_eq!(
        http_errors("http:\n  url: 'http://h.test/'\n  body: { s: '{{ response.status }}' }\n"),
        ["3:14: http.body.s: unknown variable \"response\"; known here: input"]
    );
}

#[test]
fn http_refusals_are_located() {
    assert_eq!(
        http_errors("http:\n  url: ftp://x\n"),
        ["2:8: http.url: url must start with http:// or https://"]
    );
    for ok in ["http://x", "https://x", "'{{ input.u }}'"] {
        let errs = http_errors(&format!("http:\n  url: {ok}\n  allow_hosts: [x]\n"));
        assert!(errs.is_empty(), "{ok}: {errs:?}");
    }
    assert_eq!(
        http_errors("http: { method: GET }\n"),
        ["1:7: http: missing required field `url`"]
    );
    assert_eq!(
        http_errors("http: [x]\n"),
        ["1:7: http: expected a mapping, found a list"]
    );
    assert_eq!(
        http_errors(
            "http:\n  url: 'http://h/'\n  allow_hosts: ['', a/b, 'a?b', 'a#b', u@h, 'a b', '{{ input.h }}', 3, ' Ok.Test ']\n"
        ),
        [
            "3:17: http.allow_hosts[0]: allow_hosts entries are host names, optionally with a port (e.g. api.example.com or 10.0.0.5:8080), not \"\"",
            "3:21: http.allow_hosts[1]: allow_hosts entries are host names, optionally with a port (e.g. api.example.com or 10.0.0.5:8080), not \"a/b\"",
            "3:26: http.allow_hosts[2]: allow_hosts entries are host names, optionally with a port (e.g. api.example.com or 10.0.0.5:8080), not \"a?b\"",
            "3:33: http.allow_hosts[3]: allow_hosts entries are host names, optionally with a port (e.g. api.example.com or 10.0.0.5:8080), not \"a#b\"",
            "3:40: http.allow_hosts[4]: allow_hosts entries are host names, optionally with a port (e.g. api.example.com or 10.0.0.5:8080), not \"u@h\"",
            "3:45: http.allow_hosts[5]: allow_hosts entries are host names, optionally with a port (e.g. api.example.com or 10.0.0.5:8080), not \"a b\"",
            "3:52: http.allow_hosts[6]: allow_hosts entries are host names, optionally with a port (e.g. api.example.com or 10.0.0.5:8080), not \"{{ input.h }}\"",
            "3:69: http.allow_hosts[7]: expected a string, found an integer",
        ]
    );
    let (spec, cx) = http(
        "http:\n  url: 'http://h/'\n  allow_hosts: [' Ok.Test ']\n",
        None,
    );
    assert!(cx.errors.is_empty());
    assert_eq!(spec.unwrap().allow_hosts, ["ok.test"]);
    assert_eq!(
        http_errors("http:\n  url: '{{ input.u }}'\n  allow_hosts: []\n"),
        [
            "3:16: http.allow_hosts: allow_hosts must list at least one host",
            "2:8: http.url: the url's scheme and host must be written in the workflow file, not taken from data; to take them from data, list the hosts it may reach in `allow_hosts:`",
        ]
    );
    assert_eq!(
        http_errors("http:\n  url: 'http://h/'\n  allow_hosts: x\n"),
        ["3:16: http.allow_hosts: expected a list, found a string"]
    );
    assert_eq!(
        http_errors("http:\n  url: 'http://h/'\n  follow_redirects: yes\n"),
        ["3:21: http.follow_redirects: expected true or false, found a string"]
    );
    for (v, col) in [("0", 23), ("16777217", 23)] {
        assert_eq!(
            http_errors(&format!(
                "http:\n  url: 'http://h/'\n  max_response_bytes: {v}\n"
            )),
            [format!(
                "3:{col}: http.max_response_bytes: max_response_bytes must be between 1 and 16777216"
            )]
        );
    }
    let (spec, _) = http("http:\n  url: 'http://h/'\n  max_response_bytes: 1\n", None);
    assert_eq!(spec.unwrap().max_response_bytes, 1);
    assert_eq!(
        http_errors("http:\n  url: 'http://h/'\n  max_response_bytes: -1\n"),
        ["3:23: http.max_response_bytes: expected a non-negative integer, found an integer"]
    );
    assert_eq!(
        http_errors("http:\n  url: 'http://h/'\n  method: BREW\n"),
        ["3:11: http.method: method must be GET, POST, PUT, PATCH or DELETE"]
    );
    assert_eq!(
        http_errors("http:\n  url: 'http://h/'\n  method: 1\n"),
        ["3:11: http.method: expected a string, found an integer"]
    );
    assert_eq!(
        http_errors(
            "http:\n  url: 'http://h/'\n  headers: { idempotency-KEY: x, 'Bad Name': y, 'a:b': z, Ok: '{{ nope }}' }\n"
        ),
        [
            "3:31: http.headers.idempotency-KEY: Idempotency-Key is set by the engine (run_id:step_id)",
            "3:46: http.headers.Bad Name: invalid header name \"Bad Name\"",
            "3:56: http.headers.a:b: invalid header name \"a:b\"",
            "3:63: http.headers.Ok: unknown variable \"nope\"; known here: input",
        ]
    );
    assert_eq!(
        http_errors("http:\n  url: 'http://h/'\n  headers: [x]\n"),
        ["3:12: http.headers: expected a mapping, found a list"]
    );
    assert_eq!(
        http_errors("http:\n  url: 'http://h/'\n  timeout: later\n"),
        [
            "3:12: http.timeout: invalid duration \"later\": use a number with a unit, e.g. 500ms, 30s, 5m, 24h, 7d"
        ]
    );
    assert_eq!(
        http_errors(
            "http:\n  url: 'http://h/'\n  output: { a: '{{ nope }}', b: '{{ response }}' }\n  output2: 1\n"
        ),
        [
            "3:16: http.output.a: unknown variable \"nope\"; known here: input, response",
            "4:3: http.output2: unknown field `output2` (did you mean `output`?)",
        ]
    );
    assert_eq!(
        http_errors("http:\n  url: 'http://h/'\n  output: [x]\n"),
        ["3:11: http.output: expected a mapping, found a list"]
    );
    // Any refused setting leaves no spec.
    for bad in [
        "url: ftp://x",
        "url: 'http://h/'\n  method: BREW",
        "url: 'http://h/'\n  max_response_bytes: 0",
        "url: 'http://h/'\n  timeout: later",
        "url: 'http://h/{{ nope }}'",
    ] {
        let (spec, cx) = http(&format!("http:\n  {bad}\n"), None);
        assert!(!cx.errors.is_empty(), "{bad}");
        if bad != "url: ftp://x" {
            assert!(spec.is_none(), "{bad}");
        }
    }
}
