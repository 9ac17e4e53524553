//! Configuration and pure logic of the built-in step kinds that need no
//! outside world to decide: `rules`, `wait`, and the request side of `http`.

use serde_json::{Value as Json, json};

use crate::expr::{Condition, JsonTemplate, Scope, Template, Vars};
use crate::url::UrlTemplate;
use crate::workflow::Cx;
use crate::yaml::{Node, Value};

// ---------------------------------------------------------------- rules

/// One business rule: `when` → `then`.
#[derive(Debug)]
pub struct Rule {
    pub when: Condition,
    pub then: Vec<Action>,
    /// `why:` — the reason in words, shown to the reviewer instead of the
    /// condition's source when this rule asks for the review.
    pub why: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// End the run successfully with this outcome name.
    Finish(String),
    /// `required` or `skip`: read by later `review` steps.
    Review(String),
    /// Fail the run with a message (a permanent error).
    Fail(String),
    /// Route the review that follows to this queue instead of its own
    /// (e.g. likely spam to a `discard` queue a reviewer clears in bulk).
    Queue(String),
    /// `raise: { STEP: review }`: the later action `STEP` asks a person
    /// itself even when an approved review covers it (or it is `auto`).
    /// The workflow loader checks the step names.
    Raise(Vec<String>),
}

/// The control level a rule can raise an action to.
pub const RAISED_LEVEL: &str = "review";

pub fn parse_rules(body: &Node, scope: &Scope, cx: &mut Cx) -> Vec<Rule> {
    let Some(items) = cx.take(body.as_seq()) else {
        return Vec::new();
    };
    let mut rules = Vec::new();
    for item in items {
        let Some(mut f) = cx.take(item.fields()) else {
            continue;
        };
        let when = f.require("when").and_then(|n| Condition::compile(n, scope));
        let then = f.require("then").map(|n| parse_actions(n, cx));
        let why = f
            .get("why")
            .and_then(|n| cx.take(n.as_str().map(str::to_string)));
        f.finish(&mut cx.errors);
        if let (Some(when), Some(then)) = (cx.take(when), cx.take(then)) {
            rules.push(Rule { when, then, why });
        }
    }
    rules
}

fn parse_actions(node: &Node, cx: &mut Cx) -> Vec<Action> {
    let Some(mut f) = cx.take(node.fields()) else {
        return Vec::new();
    };
    let before = cx.errors.len();
    let mut out = Vec::new();
    if let Some(n) = f.get("finish")
        && let Some(s) = cx.take(n.as_str())
    {
        out.push(Action::Finish(s.to_string()));
    }
    if let Some(n) = f.get("review") {
        match n.as_str() {
            Ok(s @ ("required" | "skip")) => out.push(Action::Review(s.to_string())),
            _ => cx
                .errors
                .push(n.error("review must be `required` or `skip`")),
        }
    }
    if let Some(n) = f.get("fail")
        && let Some(s) = cx.take(n.as_str())
    {
        out.push(Action::Fail(s.to_string()));
    }
    if let Some(n) = f.get("queue")
        && let Some(q) = cx.take(n.as_str())
    {
        if !crate::review::valid_queue(q) {
            cx.errors.push(n.error(
                "a queue name is 1–64 letters, digits, `_` or `-` (as a review's `queue:`)",
            ));
        } else {
            out.push(Action::Queue(q.to_string()));
        }
    }
    if let Some(n) = f.get("raise")
        && let Some(entries) = cx.take(n.as_map())
    {
        let mut steps = Vec::new();
        for (step, level) in entries {
            match level.as_str() {
                Ok(RAISED_LEVEL) => steps.push(step.clone()),
                _ => cx.errors.push(level.error(format!(
                    "a rule raises an action to `{RAISED_LEVEL}` (write `{step}: {RAISED_LEVEL}`)"
                ))),
            }
        }
        if !steps.is_empty() {
            out.push(Action::Raise(steps));
        }
    }
    if out.is_empty() && cx.errors.len() == before {
        cx.errors
            .push(node.error("`then` needs at least one of: finish, review, queue, raise, fail"));
    }
    f.finish(&mut cx.errors);
    out
}

/// The steps a `rules` body raises (`then: { raise: { STEP: … } }`),
/// each with the node of its level (whose key is the step's name), for
/// the workflow loader's checks against the other steps.
pub fn raise_targets(body: &Node) -> Vec<(&str, &Node)> {
    let mut out = Vec::new();
    let Value::Seq(items) = &body.value else {
        return out;
    };
    for item in items {
        let Some(then) = item.as_map().ok().and_then(|m| entry(m, "then")) else {
            continue;
        };
        let Some(raise) = then.as_map().ok().and_then(|m| entry(m, "raise")) else {
            continue;
        };
        if let Ok(entries) = raise.as_map() {
            out.extend(entries.iter().map(|(k, v)| (k.as_str(), v)));
        }
    }
    out
}

fn entry<'a>(map: &'a [(String, Node)], key: &str) -> Option<&'a Node> {
    map.iter().find(|(k, _)| k == key).map(|(_, v)| v)
}

/// What evaluating a rule list decided.
#[derive(Debug, Clone, PartialEq)]
pub struct RulesResult {
    /// Indices of the rules whose `when` held, in order.
    pub matched: Vec<usize>,
    pub finish: Option<String>,
    pub review: Option<String>,
    /// The rule that set `review`: its index and its `when` source.
    pub review_rule: Option<(usize, String)>,
    /// That rule's `why:`, if it has one.
    pub review_why: Option<String>,
    pub fail: Option<String>,
    /// The queue a matching rule routed the review to (the last one wins).
    pub queue: Option<String>,
    /// Actions a matching rule raised to `review`: step id, the rule's
    /// index and its reason (`why:`, else its `when` source). The first
    /// rule that raises a step is the one recorded.
    pub raised: Vec<Raised>,
}

/// An action a rule raised to `review` (see [`Action::Raise`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Raised {
    pub step: String,
    pub rule: usize,
    pub why: String,
}

/// The reason a rules step's output (`RulesResult::to_json`) gives for
/// raising `step` to review, if it raised it.
pub fn raised_in(output: &serde_json::Map<String, Json>, step: &str) -> Option<(usize, String)> {
    let r = output.get("raise")?.get(step)?;
    Some((
        r.get("rule")?.as_u64()? as usize,
        r.get("why")?.as_str()?.to_string(),
    ))
}

impl RulesResult {
    pub fn to_json(&self) -> Json {
        let mut out = json!({
            "matched": self.matched,
            "finish": self.finish,
            "review": self.review,
            "fail": self.fail,
        });
        // Only when a rule set `review`, so outputs without one keep their shape.
        if let (Some((i, w)), Json::Object(m)) = (&self.review_rule, &mut out) {
            let mut rule = json!({ "index": i, "when": w });
            if let Some(why) = &self.review_why {
                rule["why"] = json!(why);
            }
            m.insert("review_rule".into(), rule);
        }
        if let (Some(q), Json::Object(m)) = (&self.queue, &mut out) {
            m.insert("queue".into(), json!(q));
        }
        if let (false, Json::Object(m)) = (self.raised.is_empty(), &mut out) {
            let raised = self
                .raised
                .iter()
                .map(|r| {
                    let level = json!({ "control": RAISED_LEVEL, "rule": r.rule, "why": r.why });
                    (r.step.clone(), level)
                })
                .collect();
            m.insert("raise".into(), Json::Object(raised));
        }
        out
    }
}

/// Evaluates rules in order. The first `finish` or `fail` stops evaluation;
/// a later `review` overrides an earlier one.
pub fn evaluate(rules: &[Rule], vars: &Vars) -> Result<RulesResult, String> {
    let mut r = RulesResult {
        matched: Vec::new(),
        finish: None,
        review: None,
        review_rule: None,
        review_why: None,
        fail: None,
        queue: None,
        raised: Vec::new(),
    };
    for (i, rule) in rules.iter().enumerate() {
        if !rule.when.eval(vars)? {
            continue;
        }
        r.matched.push(i);
        for a in &rule.then {
            match a {
                Action::Finish(o) => r.finish = Some(o.clone()),
                Action::Review(v) => {
                    r.review = Some(v.clone());
                    r.review_rule = Some((i, rule.when.source().to_string()));
                    r.review_why = rule.why.clone();
                }
                Action::Fail(m) => r.fail = Some(m.clone()),
                Action::Queue(q) => r.queue = Some(q.clone()),
                Action::Raise(steps) => {
                    for step in steps {
                        if !r.raised.iter().any(|x| &x.step == step) {
                            let why = rule.why.clone();
                            r.raised.push(Raised {
                                step: step.clone(),
                                rule: i,
                                why: why.unwrap_or_else(|| rule.when.source().to_string()),
                            });
                        }
                    }
                }
            }
        }
        if r.finish.is_some() || r.fail.is_some() {
            break;
        }
    }
    Ok(r)
}

// ---------------------------------------------------------------- wait

#[derive(Debug)]
pub enum WaitSpec {
    For(u64),
    /// A template rendering an RFC 3339 instant or milliseconds since the epoch.
    Until(Template),
}

pub fn parse_wait(body: &Node, scope: &Scope, cx: &mut Cx) -> Option<WaitSpec> {
    match &body.value {
        Value::Str(_) | Value::Int(_) => cx.take(body.as_duration_ms()).map(WaitSpec::For),
        _ => {
            let mut f = cx.take(body.fields())?;
            let dur = f.get("for");
            let until = f.get("until");
            f.finish(&mut cx.errors);
            match (dur, until) {
                (Some(d), None) => cx.take(d.as_duration_ms()).map(WaitSpec::For),
                (None, Some(u)) => cx.take(Template::compile(u, scope)).map(WaitSpec::Until),
                _ => {
                    cx.errors
                        .push(body.error("wait needs exactly one of `for` or `until`"));
                    None
                }
            }
        }
    }
}

// ---------------------------------------------------------------- http

pub const DEFAULT_HTTP_TIMEOUT_MS: u64 = 30_000;
/// Responses larger than this fail the step (`max_response_bytes`).
pub const DEFAULT_MAX_RESPONSE_BYTES: u64 = 1 << 20;
/// The most `max_response_bytes` may say: responses are kept in the run.
pub const MAX_RESPONSE_BYTES_LIMIT: u64 = 16 << 20;

/// A generic outbound call (e.g. a Make.com or n8n webhook).
#[derive(Debug)]
pub struct HttpSpec {
    pub method: String,
    pub url: UrlTemplate,
    /// Hosts (`host` or `host:port`, lower case) a URL whose host comes from
    /// data may reach; empty when the host is fixed in the file.
    pub allow_hosts: Vec<String>,
    /// Follow redirects (off by default); headers never go to another origin.
    pub follow_redirects: bool,
    /// Larger responses fail the step with a permanent error.
    pub max_response_bytes: u64,
    pub headers: Vec<(String, Template)>,
    pub body: Option<JsonTemplate>,
    pub timeout_ms: u64,
    /// Output fields computed from `response` (`status`, `headers`, `body`);
    /// without it the step's output is `{status, body}`.
    pub output: Option<Vec<(String, Template)>>,
}

pub fn parse_http(
    body: &Node,
    scope: &Scope,
    timeout_ms: Option<u64>,
    cx: &mut Cx,
) -> Option<HttpSpec> {
    let mut f = cx.take(body.fields())?;
    let url_node = cx.take(f.require("url"));
    let url = url_node.and_then(|n| {
        cx.secret_if_env(n);
        let t = cx.take(UrlTemplate::compile(n, scope))?;
        let s = t.source();
        if !(s.starts_with("http://") || s.starts_with("https://") || s.starts_with("{{")) {
            cx.errors
                .push(n.error("url must start with http:// or https://"));
        }
        Some(t)
    });
    let mut allow_hosts = Vec::new();
    if let Some(n) = f.get("allow_hosts")
        && let Some(items) = cx.take(n.as_seq())
    {
        for item in items {
            let Some(h) = cx.take(item.as_str()) else {
                continue;
            };
            let h = h.trim().to_ascii_lowercase();
            if h.is_empty() || h.contains(['/', '?', '#', '@', ' ']) || h.contains("{{") {
                cx.errors.push(item.error(format!(
                    "allow_hosts entries are host names, optionally with a port (e.g. api.example.com or 10.0.0.5:8080), not {h:?}"
                )));
                continue;
            }
            allow_hosts.push(h);
        }
        if items.is_empty() {
            cx.errors
                .push(n.error("allow_hosts must list at least one host"));
        }
    }
    if let (Some(t), Some(n)) = (&url, url_node)
        && t.host_from_data()
        && allow_hosts.is_empty()
    {
        cx.errors.push(n.error(
            "the url's scheme and host must be written in the workflow file, not taken from data; \
             to take them from data, list the hosts it may reach in `allow_hosts:`",
        ));
    }
    let follow_redirects = match f.get("follow_redirects") {
        Some(n) => cx.take(n.as_bool()).unwrap_or(false),
        None => false,
    };
    let max_response_bytes = match f.get("max_response_bytes") {
        Some(n) => cx.take(n.as_u64()).and_then(|v| {
            if (1..=MAX_RESPONSE_BYTES_LIMIT).contains(&v) {
                Some(v)
            } else {
                cx.errors.push(n.error(format!(
                    "max_response_bytes must be between 1 and {MAX_RESPONSE_BYTES_LIMIT}"
                )));
                None
            }
        }),
        None => Some(DEFAULT_MAX_RESPONSE_BYTES),
    };
    let body_t = f
        .get("body")
        .map(|n| JsonTemplate::compile(n, scope, &mut cx.errors));
    let method = match f.get("method") {
        Some(n) => cx.take(n.as_str()).and_then(|m| {
            let m = m.to_ascii_uppercase();
            if ["GET", "POST", "PUT", "PATCH", "DELETE"].contains(&m.as_str()) {
                Some(m)
            } else {
                cx.errors
                    .push(n.error("method must be GET, POST, PUT, PATCH or DELETE"));
                None
            }
        }),
        None => Some(if body_t.is_some() { "POST" } else { "GET" }.to_string()),
    };
    let mut headers = Vec::new();
    if let Some(n) = f.get("headers")
        && let Some(entries) = cx.take(n.as_map())
    {
        for (name, v) in entries {
            if name.eq_ignore_ascii_case("idempotency-key") {
                cx.errors
                    .push(v.error("Idempotency-Key is set by the engine (run_id:step_id)"));
                continue;
            }
            if !name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            {
                cx.errors
                    .push(v.error(format!("invalid header name {name:?}")));
                continue;
            }
            cx.secret_if_env(v);
            if let Some(t) = cx.take(Template::compile(v, scope)) {
                headers.push((name.clone(), t));
            }
        }
    }
    let timeout_ms = match f.get("timeout") {
        Some(n) => cx.take(n.as_duration_ms()),
        None => Some(timeout_ms.unwrap_or(DEFAULT_HTTP_TIMEOUT_MS)),
    };
    let output = f.get("output").and_then(|n| {
        let entries = cx.take(n.as_map())?;
        let scope = scope.with("response");
        let mut out = Vec::new();
        for (k, v) in entries {
            if let Some(t) = cx.take(Template::compile(v, &scope)) {
                out.push((k.clone(), t));
            }
        }
        Some(out)
    });
    f.finish(&mut cx.errors);
    Some(HttpSpec {
        method: method?,
        url: url?,
        allow_hosts,
        follow_redirects,
        max_response_bytes: max_response_bytes?,
        headers,
        body: body_t,
        timeout_ms: timeout_ms?,
        output,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::expr::value_from_json;
    use crate::yaml;

    fn body(src: &str) -> Node {
        let root = yaml::parse(src, &|n| (n == "TOKEN").then(|| "tok-123456".to_string())).unwrap();
        root.as_map().unwrap()[0].1.clone()
    }

    #[test]
    fn rules_stop_at_finish() {
        let mut cx = Cx::default();
        let scope = Scope::new(["triage"]);
        let rules = parse_rules(
            &body(
                "rules:\n  - when: triage.intent == 'spam'\n    then: { finish: discarded }\n  - when: 'true'\n    then: { review: required }\n",
            ),
            &scope,
            &mut cx,
        );
        assert!(cx.errors.is_empty(), "{:?}", cx.errors);
        let mut vars = Vars::new();
        vars.insert("triage".into(), value_from_json(&json!({"intent": "spam"})));
        let r = evaluate(&rules, &vars).unwrap();
        assert_eq!(
            (r.matched, r.finish.as_deref(), r.review),
            (vec![0], Some("discarded"), None)
        );
        vars.insert(
            "triage".into(),
            value_from_json(&json!({"intent": "sales"})),
        );
        let r = evaluate(&rules, &vars).unwrap();
        assert_eq!(
            (r.matched, r.review.as_deref()),
            (vec![1], Some("required"))
        );
    }

    #[test]
    fn rules_route_to_a_queue_and_say_why_the_last_one_wins() {
        let mut cx = Cx::default();
        let rules = parse_rules(
            &body(
                "rules:\n  - when: 'true'\n    why: Always\n    then: { review: required }\n  - when: triage.intent == 'spam'\n    why: Likely spam\n    then: { review: required, queue: discard }\n  - when: triage.gdpr\n    then: { queue: operations }\n",
            ),
            &Scope::new(["triage"]),
            &mut cx,
        );
        assert!(cx.errors.is_empty(), "{:?}", cx.errors);
        let eval = |t: Json| {
            let mut vars = Vars::new();
            vars.insert("triage".into(), value_from_json(&t));
            evaluate(&rules, &vars).unwrap()
        };
        let r = eval(json!({"intent": "spam", "gdpr": false}));
        assert_eq!(
            (
                r.queue.as_deref(),
                r.review_why.as_deref(),
                r.review_rule.as_ref().map(|r| r.0)
            ),
            (Some("discard"), Some("Likely spam"), Some(1))
        );
        assert_eq!(
            r.to_json()["review_rule"],
            json!({"index": 1, "when": "triage.intent == 'spam'", "why": "Likely spam"})
        );
        assert_eq!(r.to_json()["queue"], "discard");
        // A later rule's queue wins; `why` stays with the rule that set `review`.
        let r = eval(json!({"intent": "spam", "gdpr": true}));
        assert_eq!(
            (r.queue.as_deref(), r.review_why.as_deref()),
            (Some("operations"), Some("Likely spam"))
        );
        // No queue named: the output has no `queue` key (old outputs keep their shape).
        let r = eval(json!({"intent": "sales", "gdpr": false}));
        assert_eq!(
            (r.queue.as_deref(), r.review_why.as_deref()),
            (None, Some("Always"))
        );
        assert!(r.to_json().get("queue").is_none());
        assert_eq!(
            r.to_json()["review_rule"],
            json!({"index": 0, "when": "true", "why": "Always"})
        );

        let mut cx = Cx::default();
        parse_rules(
            &body(
                "rules:\n  - when: 'true'\n    then: { queue: 'two words' }\n  - when: 'true'\n    then: {}\n",
            ),
            &Scope::new(["triage"]),
            &mut cx,
        );
        let msgs: Vec<&str> = cx.errors.iter().map(|d| d.message.as_str()).collect();
        assert_eq!(
            msgs,
            [
                "a queue name is 1–64 letters, digits, `_` or `-` (as a review's `queue:`)",
                "`then` needs at least one of: finish, review, queue, raise, fail"
            ]
        );
    }

    #[test]
    fn http_spec_marks_env_headers_secret() {
        let mut cx = Cx::default();
        let spec = parse_http(
            &body("http:\n  url: 'https://example.test/hook'\n  headers: { Authorization: 'Bearer ${env:TOKEN}' }\n  body: { name: '{{ input.name }}', n: 3 }\n"),
            &Scope::new(["input"]),
            None,
            &mut cx,
        )
        .unwrap();
        assert!(cx.errors.is_empty(), "{:?}", cx.errors);
        assert_eq!(spec.method, "POST");
        assert_eq!(cx.secrets, ["Bearer tok-123456"]);
        let mut vars = Vars::new();
        vars.insert("input".into(), value_from_json(&json!({"name": "Ada"})));
        assert_eq!(
            spec.body.unwrap().render(&vars).unwrap(),
            json!({"name": "Ada", "n": 3})
        );
    }

    #[test]
    fn http_spec_errors() {
        let mut cx = Cx::default();
        parse_http(
            &body("http:\n  url: ftp://x\n  method: BREW\n  headers: { Idempotency-Key: x }\n"),
            &Scope::default(),
            None,
            &mut cx,
        );
        let text: Vec<String> = cx.errors.iter().map(ToString::to_string).collect();
        assert_eq!(text.len(), 3, "{text:?}");
    }

    #[test]
    fn a_host_from_data_needs_an_allow_list() {
        let parse = |src: &str| {
            let mut cx = Cx::default();
            let spec = parse_http(&body(src), &Scope::new(["input"]), None, &mut cx);
            let text: Vec<String> = cx.errors.iter().map(ToString::to_string).collect();
            (spec, text)
        };
        let (_, errors) = parse("http:\n  url: '{{ input.url }}'\n");
        assert!(
            errors.len() == 1 && errors[0].contains("allow_hosts"),
            "{errors:?}"
        );
        let (spec, errors) = parse(
            "http:\n  url: '{{ input.url }}'\n  allow_hosts: [Hooks.Example.test, '10.0.0.5:8080']\n  follow_redirects: true\n  max_response_bytes: 2048\n",
        );
        assert!(errors.is_empty(), "{errors:?}");
        let spec = spec.unwrap();
        assert_eq!(spec.allow_hosts, ["hooks.example.test", "10.0.0.5:8080"]);
        assert!(spec.follow_redirects);
        assert_eq!(spec.max_response_bytes, 2048);
        let (spec, errors) = parse("http:\n  url: 'https://h.test/x/{{ input.id }}'\n");
        assert!(errors.is_empty(), "{errors:?}");
        let spec = spec.unwrap();
        assert!(!spec.follow_redirects);
        assert_eq!(spec.max_response_bytes, DEFAULT_MAX_RESPONSE_BYTES);
        let (_, errors) = parse("http:\n  url: 'https://h.test/'\n  max_response_bytes: 0\n");
        assert_eq!(errors.len(), 1, "{errors:?}");
    }

    #[test]
    fn a_rule_raises_later_actions_and_the_first_reason_is_kept() {
        let mut cx = Cx::default();
        let scope = Scope::new(["triage"]);
        let src = "rules:\n  - when: triage.legal\n    why: Legal matter\n    then: { raise: { reply: review } }\n  - when: 'true'\n    then: { raise: { reply: review, notify: review } }\n  - when: 'true'\n    then: { raise: { crm: draft } }\n";
        let rules = parse_rules(&body(src), &scope, &mut cx);
        let errors: Vec<String> = cx.errors.iter().map(|d| d.to_string()).collect();
        assert_eq!(
            errors,
            [
                "8:27: rules[2].then.raise.crm: a rule raises an action to `review` (write `crm: review`)"
            ]
        );
        let mut vars = Vars::new();
        vars.insert("triage".into(), value_from_json(&json!({"legal": true})));
        let out = evaluate(&rules, &vars).unwrap().to_json();
        assert_eq!(
            out["raise"],
            json!({
                "reply": { "control": "review", "rule": 0, "why": "Legal matter" },
                "notify": { "control": "review", "rule": 1, "why": "true" },
            })
        );
        let out = out.as_object().unwrap();
        assert_eq!(raised_in(out, "reply"), Some((0, "Legal matter".into())));
        assert_eq!(raised_in(out, "notify"), Some((1, "true".into())));
        assert_eq!(raised_in(out, "crm"), None);
        let parsed = body(src);
        let targets: Vec<&str> = raise_targets(&parsed).into_iter().map(|(n, _)| n).collect();
        assert_eq!(targets, ["reply", "reply", "notify", "crm"]);
        vars.insert("triage".into(), value_from_json(&json!({"legal": false})));
        let out = evaluate(&rules, &vars).unwrap().to_json();
        assert_eq!(out["raise"]["reply"]["rule"], json!(1));
        assert!(
            evaluate(&[], &vars)
                .unwrap()
                .to_json()
                .get("raise")
                .is_none()
        );
    }
}
