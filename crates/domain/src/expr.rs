//! The one language authors write: minijinja expressions for conditions
//! (`when:`, rules) and minijinja templates for strings.
//!
//! The environment is sandboxed (no loader, no I/O), strict about unknown
//! *top-level* names at load time (checked against the step's scope), lenient
//! about missing attributes at run time (`Chainable`: a skipped step's output
//! is simply undefined), and bounded by fuel so a template cannot spin.

use std::collections::BTreeMap;
use std::sync::LazyLock;

use minijinja::{AutoEscape, Environment, UndefinedBehavior};

use crate::diag::Diagnostic;
use crate::yaml::Node;

pub use minijinja::Value;

/// Instruction budget per evaluation.
const FUEL: u64 = 100_000;

/// A constant, configured once: the language itself, not application state.
static ENV: LazyLock<Environment<'static>> = LazyLock::new(|| {
    let mut env = Environment::new();
    env.set_undefined_behavior(UndefinedBehavior::Chainable);
    env.set_fuel(Some(FUEL));
    env.set_recursion_limit(64);
    env
});

/// [`ENV`] with HTML auto-escaping, for templates that produce HTML (an
/// email's `html:`): values are escaped unless the author writes `|safe`.
static ENV_HTML: LazyLock<Environment<'static>> = LazyLock::new(|| {
    let mut env = Environment::new();
    env.set_undefined_behavior(UndefinedBehavior::Chainable);
    env.set_fuel(Some(FUEL));
    env.set_recursion_limit(64);
    env.set_auto_escape_callback(|_| AutoEscape::Html);
    env
});

/// Names a step may refer to: `input`, `run`, and the ids of earlier steps.
#[derive(Debug, Clone, Default)]
pub struct Scope {
    names: Vec<String>,
}

impl Scope {
    pub fn new(names: impl IntoIterator<Item = impl Into<String>>) -> Scope {
        Scope {
            names: names.into_iter().map(Into::into).collect(),
        }
    }

    pub fn with(&self, name: impl Into<String>) -> Scope {
        let mut s = self.clone();
        s.names.push(name.into());
        s
    }

    pub fn contains(&self, name: &str) -> bool {
        self.names.iter().any(|n| n == name)
    }

    fn check(&self, node: &Node, used: impl IntoIterator<Item = String>) -> Result<(), Diagnostic> {
        let mut unknown: Vec<String> = used
            .into_iter()
            .filter(|n| !self.contains(n) && !ENV.globals().any(|(g, _)| g == n))
            .collect();
        unknown.sort();
        if let Some(name) = unknown.first() {
            let mut msg = format!("unknown variable {name:?}");
            if let Some(s) = crate::yaml::suggest(name, self.names.iter().map(String::as_str)) {
                msg.push_str(&format!(" (did you mean {s:?}?)"));
            } else {
                msg.push_str(&format!("; known here: {}", self.names.join(", ")));
            }
            return Err(node.error(msg));
        }
        Ok(())
    }
}

/// Variables an expression or template is evaluated against.
pub type Vars = BTreeMap<String, Value>;

/// Converts JSON to a template value once, so evaluations do not re-convert.
pub fn value_from_json(v: &serde_json::Value) -> Value {
    Value::from(minijinja::value::Serde(v))
}

/// A compiled boolean condition.
pub struct Condition {
    source: String,
    expr: minijinja::Expression<'static, 'static>,
}

impl std::fmt::Debug for Condition {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Condition").field(&self.source).finish()
    }
}

impl Condition {
    /// Compiles the expression in `node` and checks its names against `scope`.
    pub fn compile(node: &Node, scope: &Scope) -> Result<Condition, Diagnostic> {
        let source = match &node.value {
            crate::yaml::Value::Bool(b) => b.to_string(),
            _ => node.as_str()?.to_string(),
        };
        let expr = ENV
            .compile_expression_owned(source.clone())
            .map_err(|e| node.error(format!("invalid expression: {}", describe(&e))))?;
        scope.check(node, expr.undeclared_variables(false))?;
        Ok(Condition { source, expr })
    }

    pub fn source(&self) -> &str {
        &self.source
    }

    /// Evaluates to a boolean using Jinja truthiness.
    pub fn eval(&self, vars: &Vars) -> Result<bool, String> {
        self.expr
            .eval(vars)
            .map(|v| v.is_true())
            .map_err(|e| format!("condition `{}` failed: {}", self.source, describe(&e)))
    }
}

/// A string template; literals without `{{`/`{%` are kept as they are.
#[derive(Debug, Clone)]
pub struct Template {
    source: String,
    kind: TemplateKind,
}

#[derive(Debug, Clone, PartialEq)]
enum TemplateKind {
    Literal,
    /// Exactly one `{{ expr }}`: evaluates to a typed value.
    Expression(String),
    Template,
}

impl Template {
    pub fn compile(node: &Node, scope: &Scope) -> Result<Template, Diagnostic> {
        let source = node.as_scalar_string()?;
        Template::compile_str(node, source, scope)
    }

    /// Compiles `source`, reporting problems at `node`.
    pub fn compile_str(node: &Node, source: String, scope: &Scope) -> Result<Template, Diagnostic> {
        if !source.contains("{{") && !source.contains("{%") {
            return Ok(Template {
                source,
                kind: TemplateKind::Literal,
            });
        }
        let trimmed = source.trim();
        if let Some(inner) = trimmed
            .strip_prefix("{{")
            .and_then(|s| s.strip_suffix("}}"))
            .filter(|s| !s.contains("{{") && !s.contains("}}"))
        {
            let expr = ENV
                .compile_expression(inner)
                .map_err(|e| node.error(format!("invalid template: {}", describe(&e))))?;
            scope.check(node, expr.undeclared_variables(false))?;
            return Ok(Template {
                kind: TemplateKind::Expression(inner.to_string()),
                source,
            });
        }
        let t = ENV
            .template_from_str(&source)
            .map_err(|e| node.error(format!("invalid template: {}", describe(&e))))?;
        scope.check(node, t.undeclared_variables(false))?;
        Ok(Template {
            source,
            kind: TemplateKind::Template,
        })
    }

    pub fn literal(s: impl Into<String>) -> Template {
        Template {
            source: s.into(),
            kind: TemplateKind::Literal,
        }
    }

    pub fn source(&self) -> &str {
        &self.source
    }

    /// Whether the text is written out in the file (no placeholders).
    pub fn is_literal(&self) -> bool {
        self.kind == TemplateKind::Literal
    }

    /// Renders to a string.
    pub fn render(&self, vars: &Vars) -> Result<String, String> {
        match &self.kind {
            TemplateKind::Literal => Ok(self.source.clone()),
            TemplateKind::Expression(e) => {
                let v = eval_expr(e, vars)?;
                Ok(if v.is_undefined() || v.is_none() {
                    String::new()
                } else {
                    v.to_string()
                })
            }
            TemplateKind::Template => ENV
                .render_str(&self.source, vars)
                .map_err(|e| format!("template failed: {}", describe(&e))),
        }
    }

    /// Renders HTML: every inserted value is HTML-escaped unless the
    /// template marks it `|safe`; the template's own text is kept.
    pub fn render_html(&self, vars: &Vars) -> Result<String, String> {
        match &self.kind {
            TemplateKind::Literal => Ok(self.source.clone()),
            _ => ENV_HTML
                .render_str(&self.source, vars)
                .map_err(|e| format!("template failed: {}", describe(&e))),
        }
    }

    /// Renders to JSON: a lone `{{ expr }}` keeps its type (number, object…).
    pub fn render_json(&self, vars: &Vars) -> Result<serde_json::Value, String> {
        match &self.kind {
            TemplateKind::Expression(e) => {
                let v = eval_expr(e, vars)?;
                if v.is_undefined() {
                    return Ok(serde_json::Value::Null);
                }
                serde_json::to_value(&v).map_err(|e| format!("template value is not JSON: {e}"))
            }
            _ => self.render(vars).map(serde_json::Value::String),
        }
    }
}

fn eval_expr(e: &str, vars: &Vars) -> Result<Value, String> {
    ENV.compile_expression(e)
        .and_then(|x| x.eval(vars))
        .map_err(|err| format!("template `{{{{{e}}}}}` failed: {}", describe(&err)))
}

fn describe(e: &minijinja::Error) -> String {
    match e.detail() {
        Some(d) => format!("{}: {d}", e.kind()),
        None => e.kind().to_string(),
    }
}

/// A JSON-shaped template: strings inside are templates, the rest literal.
#[derive(Debug, Clone)]
pub enum JsonTemplate {
    Literal(serde_json::Value),
    Str(Template),
    Array(Vec<JsonTemplate>),
    Object(Vec<(String, JsonTemplate)>),
}

impl JsonTemplate {
    pub fn compile(node: &Node, scope: &Scope, errors: &mut Vec<Diagnostic>) -> JsonTemplate {
        use crate::yaml::Value as Y;
        match &node.value {
            Y::Str(_) => match Template::compile(node, scope) {
                Ok(t) => JsonTemplate::Str(t),
                Err(d) => {
                    errors.push(d);
                    JsonTemplate::Literal(serde_json::Value::Null)
                }
            },
            Y::Seq(items) => JsonTemplate::Array(
                items
                    .iter()
                    .map(|n| JsonTemplate::compile(n, scope, errors))
                    .collect(),
            ),
            Y::Map(entries) => JsonTemplate::Object(
                entries
                    .iter()
                    .map(|(k, n)| (k.clone(), JsonTemplate::compile(n, scope, errors)))
                    .collect(),
            ),
            _ => JsonTemplate::Literal(node.to_json()),
        }
    }

    pub fn render(&self, vars: &Vars) -> Result<serde_json::Value, String> {
        Ok(match self {
            JsonTemplate::Literal(v) => v.clone(),
            JsonTemplate::Str(t) => t.render_json(vars)?,
            JsonTemplate::Array(items) => serde_json::Value::Array(
                items
                    .iter()
                    .map(|t| t.render(vars))
                    .collect::<Result<_, _>>()?,
            ),
            JsonTemplate::Object(entries) => {
                let mut m = serde_json::Map::with_capacity(entries.len());
                for (k, t) in entries {
                    m.insert(k.clone(), t.render(vars)?);
                }
                serde_json::Value::Object(m)
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::yaml;

    fn node(src: &str) -> Node {
        let root = yaml::parse(&format!("x: {src}\n"), &|_| None).unwrap();
        root.as_map().unwrap()[0].1.clone()
    }

    fn vars() -> Vars {
        let mut v = Vars::new();
        v.insert(
            "triage".into(),
            value_from_json(&serde_json::json!({"intent": "spam", "confidence": 0.5})),
        );
        v
    }

    #[test]
    fn html_rendering_escapes_values_unless_marked_safe() {
        let mut v = Vars::new();
        v.insert(
            "input".into(),
            value_from_json(&serde_json::json!({"name": "<a href=\"https://evil.test\">x</a>", "sig": "<b>Ops</b>"})),
        );
        let scope = Scope::new(["input"]);
        let t = Template::compile(
            &node("'<p>Hello {{ input.name }}</p>{{ input.sig|safe }}'"),
            &scope,
        )
        .unwrap();
        assert_eq!(
            t.render_html(&v).unwrap(),
            "<p>Hello &lt;a href=&quot;https:&#x2f;&#x2f;evil.test&quot;&gt;x&lt;&#x2f;a&gt;</p><b>Ops</b>"
        );
        let lone = Template::compile(&node("'{{ input.name }}'"), &scope).unwrap();
        assert!(!lone.render_html(&v).unwrap().contains('<'));
        // Plain rendering is unchanged.
        assert!(t.render(&v).unwrap().contains("<a href"));
    }

    #[test]
    fn conditions_evaluate_and_check_names() {
        let scope = Scope::new(["input", "triage"]);
        let c = Condition::compile(&node("'triage.intent == \"spam\"'"), &scope).unwrap();
        assert!(c.eval(&vars()).unwrap());
        let c = Condition::compile(
            &node("'triage.confidence < 0.8 and triage.nope.deeper'"),
            &scope,
        )
        .unwrap();
        assert!(
            !c.eval(&vars()).unwrap(),
            "missing attributes are undefined, not errors"
        );
        let err = Condition::compile(&node("'triag.intent == 1'"), &scope).unwrap_err();
        assert_eq!(
            err.to_string(),
            "1:4: x: unknown variable \"triag\" (did you mean \"triage\"?)"
        );
        let err = Condition::compile(&node("'triage.intent =='"), &scope).unwrap_err();
        assert!(err.message.starts_with("invalid expression"), "{err}");
    }

    #[test]
    fn templates_render_strings_and_typed_values() {
        let scope = Scope::new(["triage"]);
        let t = Template::compile(&node("'Intent: {{ triage.intent | upper }}'"), &scope).unwrap();
        assert_eq!(t.render(&vars()).unwrap(), "Intent: SPAM");
        let t = Template::compile(&node("'{{ triage.confidence }}'"), &scope).unwrap();
        assert_eq!(t.render_json(&vars()).unwrap(), serde_json::json!(0.5));
        let t = Template::compile(&node("plain"), &scope).unwrap();
        assert_eq!(t.render(&vars()).unwrap(), "plain");
    }

    #[test]
    fn fuel_stops_runaway_templates() {
        let scope = Scope::new(Vec::<String>::new());
        let t = Template::compile(
            &node("'{% for i in range(100000) %}{% for j in range(100000) %}x{% endfor %}{% endfor %}'"),
            &scope,
        )
        .unwrap();
        assert!(t.render(&Vars::new()).is_err());
    }
}
