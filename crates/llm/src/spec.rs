//! The `llm:` body, compiled: providers and models, prompt, output schema,
//! checks, limits, heuristic tuning. Every problem is reported with its
//! location when the workflow loads (`countersign validate`).

use std::collections::BTreeMap;

use domain::expr::{Condition, Scope};
use domain::workflow::{Cx, StepDef};
use domain::yaml::{Node, Value};

use crate::heuristic;
use crate::prompt::{self, Prompt};
use crate::provider::Providers;
use crate::schema::Output;

pub const DEFAULT_MAX_TOKENS: u32 = 1024;
pub const DEFAULT_CALL_TIMEOUT_MS: u64 = 60_000;
/// The whole step's budget when the step sets no `timeout`.
pub const DEFAULT_BUDGET_MS: u64 = 120_000;
pub const DEFAULT_REPAIR_ATTEMPTS: u32 = 1;
const MAX_REPAIR_ATTEMPTS: u32 = 5;

/// Extensions that make a one-word `prompt:` a file name.
const PROMPT_EXTENSIONS: &[&str] = &[
    ".j2", ".jinja", ".jinja2", ".md", ".txt", ".tmpl", ".prompt",
];

/// One provider in the chain, with the model to ask.
#[derive(Debug, Clone, PartialEq)]
pub struct Target {
    pub provider: String,
    pub model: String,
}

impl Target {
    pub fn label(&self) -> String {
        if self.model.is_empty() {
            self.provider.clone()
        } else {
            format!("{}/{}", self.provider, self.model)
        }
    }
}

/// A business rule the answer must satisfy (`checks:`).
#[derive(Debug)]
pub struct Check {
    pub assert: Condition,
    pub message: String,
}

/// A compiled `llm` step.
#[derive(Debug)]
pub struct Spec {
    /// The primary provider, then the fallbacks, in order.
    pub chain: Vec<Target>,
    pub prompt: Prompt,
    pub system: String,
    pub output: Output,
    pub checks: Vec<Check>,
    pub temperature: Option<f64>,
    pub max_tokens: u32,
    pub call_timeout_ms: u64,
    /// The whole step's time budget (the step's `timeout`).
    pub budget_ms: u64,
    pub repair_attempts: u32,
    pub heuristic: heuristic::Spec,
    pub schema_name: String,
}

pub fn parse(def: &StepDef, scope: &Scope, providers: &Providers, cx: &mut Cx) -> Option<Spec> {
    let body = &def.body;
    let before = cx.errors.len();
    let mut f = cx.take(body.fields())?;

    let provider_node = f.get("provider");
    let provider = match provider_node {
        Some(n) => cx.take(n.as_str().map(str::to_string)),
        None => Some("openai".to_string()),
    };
    let model = f.get("model").and_then(|n| {
        let s = cx.take(n.as_scalar_string())?;
        if s.trim().is_empty() {
            cx.errors.push(n.error("`model` is empty"));
            return None;
        }
        Some(s)
    });
    let mut chain = Vec::new();
    if let Some(p) = provider {
        let at = provider_node.unwrap_or(body);
        if let Some(t) = target(at, &p, model.clone(), providers, cx) {
            chain.push(t);
        }
    }
    match f.get("fallback") {
        Some(n) => {
            if let Some(items) = cx.take(n.as_seq()) {
                for item in items {
                    let (name, m) =
                        match &item.value {
                            Value::Str(s) => (Some(s.clone()), None),
                            Value::Map(_) => {
                                let Some(mut tf) = cx.take(item.fields()) else {
                                    continue;
                                };
                                let name = tf
                                    .require("provider")
                                    .and_then(|n| n.as_str().map(str::to_string));
                                let m = tf.get("model").and_then(|n| cx.take(n.as_scalar_string()));
                                tf.finish(&mut cx.errors);
                                (cx.take(name), m)
                            }
                            _ => {
                                cx.errors.push(item.error(
                                    "a fallback is a provider name or `{ provider, model }`",
                                ));
                                continue;
                            }
                        };
                    let Some(name) = name else { continue };
                    if let Some(t) = target(item, &name, m.or_else(|| model.clone()), providers, cx)
                    {
                        if chain.contains(&t) {
                            cx.errors.push(
                                item.error(format!("`{}` is already in the chain", t.label())),
                            );
                        } else {
                            chain.push(t);
                        }
                    }
                }
            }
        }
        None => {
            let t = Target {
                provider: "heuristic".into(),
                model: String::new(),
            };
            if providers.get("heuristic").is_some() && !chain.contains(&t) {
                chain.push(t);
            }
        }
    }
    for t in &chain {
        if let Some(p) = providers.get(&t.provider) {
            cx.secrets.extend(p.secrets());
        }
    }

    let prompt = match cx.take(f.require("prompt")) {
        Some(n) => prompt_of(n, scope, cx),
        None => None,
    };
    let output = cx
        .take(f.require("output"))
        .and_then(|n| Output::parse(n, cx));
    let checks = f
        .get("checks")
        .map(|n| parse_checks(n, scope, cx))
        .unwrap_or_default();
    let temperature = f.get("temperature").and_then(|n| {
        let t = cx.take(n.as_f64())?;
        if (0.0..=2.0).contains(&t) {
            Some(t)
        } else {
            cx.errors
                .push(n.error("temperature must be between 0 and 2"));
            None
        }
    });
    let max_tokens = match f.get("max_tokens") {
        Some(n) => cx.take(n.as_u64()).and_then(|v| {
            if (1..=1_000_000).contains(&v) {
                Some(v as u32)
            } else {
                cx.errors
                    .push(n.error("max_tokens must be between 1 and 1000000"));
                None
            }
        }),
        None => Some(DEFAULT_MAX_TOKENS),
    };
    let call_timeout_ms = match f.get("call_timeout") {
        Some(n) => cx.take(n.as_duration_ms()),
        None => Some(DEFAULT_CALL_TIMEOUT_MS),
    };
    let repair_attempts = match f.get("repair_attempts") {
        Some(n) => cx.take(n.as_u64()).and_then(|v| {
            if v <= MAX_REPAIR_ATTEMPTS as u64 {
                Some(v as u32)
            } else {
                cx.errors.push(n.error(format!(
                    "repair_attempts must be 0 to {MAX_REPAIR_ATTEMPTS}"
                )));
                None
            }
        }),
        None => Some(DEFAULT_REPAIR_ATTEMPTS),
    };
    let heuristic_node = f.get("heuristic");
    f.finish(&mut cx.errors);
    let output = output?;
    let heuristic = match heuristic_node {
        Some(n) => parse_heuristic(n, &output, scope, cx)?,
        None => heuristic::Spec::default(),
    };
    if chain.is_empty() {
        cx.errors
            .push(body.error("no provider to ask: give `provider`/`model` or a `fallback`"));
    }
    if cx.errors.len() > before {
        return None;
    }
    let system = prompt::system_message(&def.id, &output.describe());
    Some(Spec {
        chain,
        prompt: prompt?,
        system,
        output,
        checks,
        temperature,
        max_tokens: max_tokens?,
        call_timeout_ms: call_timeout_ms?,
        budget_ms: def.timeout_ms.unwrap_or(DEFAULT_BUDGET_MS),
        repair_attempts: repair_attempts?,
        heuristic,
        schema_name: def.id.clone(),
    })
}

fn target(
    at: &Node,
    name: &str,
    model: Option<String>,
    providers: &Providers,
    cx: &mut Cx,
) -> Option<Target> {
    let Some(p) = providers.get(name) else {
        let names = providers.names();
        let mut msg = format!("unknown provider `{name}`");
        match domain::yaml::suggest(name, names.iter().copied()) {
            Some(s) => msg.push_str(&format!(" (did you mean `{s}`?)")),
            None => msg.push_str(&format!("; known: {}", names.join(", "))),
        }
        cx.errors.push(at.error(msg));
        return None;
    };
    if !p.needs_model() {
        return Some(Target {
            provider: name.to_string(),
            model: String::new(),
        });
    }
    match model {
        Some(m) => Some(Target {
            provider: name.to_string(),
            model: m,
        }),
        None => {
            cx.errors
                .push(at.error(format!("provider `{name}` needs a `model`")));
            None
        }
    }
}

fn prompt_of(n: &Node, scope: &Scope, cx: &mut Cx) -> Option<Prompt> {
    let (text, file) = match &n.value {
        Value::Str(s) if looks_like_file(s) => {
            let read = cx.include(n, s);
            (cx.take(read)?, Some(s.trim().to_string()))
        }
        Value::Str(s) => (s.clone(), None),
        Value::Map(_) => {
            let mut pf = cx.take(n.fields())?;
            let file = pf.get("file");
            let text = pf.get("text");
            pf.finish(&mut cx.errors);
            match (file, text) {
                (Some(fnode), None) => {
                    let path = cx.take(fnode.as_str().map(str::to_string))?;
                    let read = cx.include(fnode, &path);
                    (cx.take(read)?, Some(path))
                }
                (None, Some(t)) => (cx.take(t.as_str().map(str::to_string))?, None),
                _ => {
                    cx.errors
                        .push(n.error("prompt needs exactly one of `file` or `text`"));
                    return None;
                }
            }
        }
        _ => {
            cx.errors.push(n.error("prompt is a template, a file name such as prompts/triage.md.j2, or `{ file }` / `{ text }`"));
            return None;
        }
    };
    cx.take(Prompt::compile(n, text, file, scope))
}

/// A single word ending in a template extension names a file.
fn looks_like_file(s: &str) -> bool {
    let s = s.trim();
    !s.is_empty()
        && !s.contains(char::is_whitespace)
        && !s.contains("{{")
        && !s.contains("{%")
        && PROMPT_EXTENSIONS.iter().any(|e| s.ends_with(e))
}

fn parse_checks(n: &Node, scope: &Scope, cx: &mut Cx) -> Vec<Check> {
    let Some(items) = cx.take(n.as_seq()) else {
        return Vec::new();
    };
    let scope = scope.with("output");
    let mut out = Vec::new();
    for item in items {
        let Some(mut cf) = cx.take(item.fields()) else {
            continue;
        };
        let assert = cf
            .require("assert")
            .and_then(|a| Condition::compile(a, &scope));
        let message = cf
            .require("message")
            .and_then(|m| m.as_str().map(str::to_string));
        cf.finish(&mut cx.errors);
        if let (Some(assert), Some(message)) = (cx.take(assert), cx.take(message)) {
            out.push(Check { assert, message });
        }
    }
    out
}

fn parse_heuristic(
    n: &Node,
    output: &Output,
    scope: &Scope,
    cx: &mut Cx,
) -> Option<heuristic::Spec> {
    let mut hf = cx.take(n.fields())?;
    let mut spec = heuristic::Spec::default();
    if let Some(t) = hf.get("text")
        && let Some(s) = cx.take(t.as_str().map(str::to_string))
        && cx.take(prompt::check_plain(t, &s, scope)).is_some()
    {
        spec.text = Some(s);
    }
    if let Some(r) = hf.get("reply")
        && let Some(s) = cx.take(r.as_str().map(str::to_string))
        && cx.take(prompt::check_plain(r, &s, scope)).is_some()
    {
        spec.reply = s;
    }
    if let Some(c) = hf.get("confidence") {
        match cx.take(c.as_f64()) {
            Some(v) if (0.0..=1.0).contains(&v) => spec.confidence = v,
            Some(_) => cx
                .errors
                .push(c.error("confidence must be between 0 and 1")),
            None => {}
        }
    }
    if let Some(w) = hf.get("words")
        && let Some(entries) = cx.take(w.as_map())
    {
        let mut words = BTreeMap::new();
        for (field, lists) in entries {
            let Some(f) = output.fields.iter().find(|f| f.name == *field) else {
                cx.errors
                    .push(lists.error(format!("`{field}` is not an output field")));
                continue;
            };
            let Some(serde_json::Value::Array(values)) = f.local.get("enum") else {
                cx.errors.push(lists.error(format!(
                    "`{field}` has no `enum`; word lists choose among enum values"
                )));
                continue;
            };
            let Some(map) = cx.take(lists.as_map()) else {
                continue;
            };
            let mut per_value = Vec::new();
            for (value, ws) in map {
                if !values.iter().any(|v| v.as_str() == Some(value)) {
                    cx.errors
                        .push(ws.error(format!("`{value}` is not one of `{field}`'s enum values")));
                    continue;
                }
                let Some(items) = cx.take(ws.as_seq()) else {
                    continue;
                };
                let list: Vec<String> = items
                    .iter()
                    .filter_map(|i| cx.take(i.as_scalar_string()))
                    .filter(|s| !s.trim().is_empty())
                    .collect();
                per_value.push((value.clone(), list));
            }
            words.insert(field.clone(), per_value);
        }
        spec.words = words;
    }
    hf.finish(&mut cx.errors);
    Some(spec)
}
