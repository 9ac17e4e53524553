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

/// Names a step may refer to: `input`, `run`, and the ids of earlier steps;
/// for those whose shape is declared (the input schema, an `llm` step's
/// output, a review's `approved`), also their fields, so that
/// `triage.human_review_requried` is refused at load instead of being
/// silently undefined at run time.
#[derive(Debug, Clone, Default)]
pub struct Scope {
    names: Vec<String>,
    fields: BTreeMap<String, Vec<String>>,
}

/// Members every mapping answers to (minijinja's dict methods), never
/// reported as unknown fields.
const MAP_METHODS: &[&str] = &["items", "keys", "values", "get"];

impl Scope {
    pub fn new(names: impl IntoIterator<Item = impl Into<String>>) -> Scope {
        Scope {
            names: names.into_iter().map(Into::into).collect(),
            fields: BTreeMap::new(),
        }
    }

    pub fn with(&self, name: impl Into<String>) -> Scope {
        let mut s = self.clone();
        s.names.push(name.into());
        s
    }

    /// Declares the fields of `name` (which must be in scope to be used):
    /// a reference to any other field of it is an error at load.
    pub fn set_fields(&mut self, name: &str, fields: impl IntoIterator<Item = impl Into<String>>) {
        let mut fields: Vec<String> = fields.into_iter().map(Into::into).collect();
        fields.sort();
        fields.dedup();
        self.fields.insert(name.to_string(), fields);
    }

    /// The declared fields of `name`, if its shape is known.
    pub fn fields(&self, name: &str) -> Option<&[String]> {
        self.fields.get(name).map(Vec::as_slice)
    }

    pub fn contains(&self, name: &str) -> bool {
        self.names.iter().any(|n| n == name)
    }

    /// Checks the (possibly dotted: `triage.intent`) names an expression
    /// reads against the scope.
    fn check(&self, node: &Node, used: impl IntoIterator<Item = String>) -> Result<(), Diagnostic> {
        let mut used: Vec<String> = used.into_iter().collect();
        used.sort();
        for path in &used {
            let mut parts = path.split('.');
            let name = parts.next().unwrap_or_default();
            if !self.contains(name) && !ENV.globals().any(|(g, _)| g == name) {
                let mut msg = format!("unknown variable {name:?}");
                if let Some(s) = crate::yaml::suggest(name, self.names.iter().map(String::as_str)) {
                    msg.push_str(&format!(" (did you mean {s:?}?)"));
                } else {
                    msg.push_str(&format!("; known here: {}", self.names.join(", ")));
                }
                return Err(node.error(msg));
            }
            let (Some(field), Some(known)) = (parts.next(), self.fields(name)) else {
                continue;
            };
            if known.iter().any(|k| k == field) || MAP_METHODS.contains(&field) {
                continue;
            }
            let mut msg = format!("`{name}` has no field {field:?}");
            if let Some(s) = suggest_field(field, known) {
                msg.push_str(&format!(" (did you mean {s:?}?)"));
            } else {
                msg.push_str(&format!("; its fields: {}", known.join(", ")));
            }
            return Err(node.error(msg));
        }
        Ok(())
    }
}

/// The declared field `field` most likely meant: within edit distance 2,
/// else the one field it is a prefix of (`customer_reply` →
/// `customer_reply_draft`).
fn suggest_field<'k>(field: &str, known: &'k [String]) -> Option<&'k str> {
    if let Some(s) = crate::yaml::suggest(field, known.iter().map(String::as_str)) {
        return Some(s);
    }
    let mut prefixed = known
        .iter()
        .filter(|k| field.len() >= 3 && k.starts_with(field));
    match (prefixed.next(), prefixed.next()) {
        (Some(k), None) => Some(k),
        _ => None,
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
    /// Where it was written, for [`Condition::check_names`].
    at: Node,
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
        scope.check(node, expr.undeclared_variables(true))?;
        Ok(Condition {
            source,
            expr,
            at: node.clone(),
        })
    }

    /// Checks the names it reads again, against a scope that knows more
    /// than the one it was compiled with (the fields of earlier steps'
    /// declared outputs, known once those steps are compiled).
    pub fn check_names(&self, scope: &Scope) -> Result<(), Diagnostic> {
        scope.check(&self.at, self.expr.undeclared_variables(true))
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
            scope.check(node, expr.undeclared_variables(true))?;
            return Ok(Template {
                kind: TemplateKind::Expression(inner.to_string()),
                source,
            });
        }
        let t = ENV
            .template_from_str(&source)
            .map_err(|e| node.error(format!("invalid template: {}", describe(&e))))?;
        scope.check(node, t.undeclared_variables(true))?;
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
    fn declared_fields_are_checked_with_suggestions() {
        let mut scope = Scope::new(["input", "triage", "open"]);
        scope.set_fields("triage", ["intent", "confidence", "customer_reply_draft"]);
        scope.set_fields("input", ["email"]);
        let err = |src: &str| match Condition::compile(&node(src), &scope) {
            Ok(_) => panic!("{src} compiled"),
            Err(d) => d.message,
        };
        assert_eq!(
            err("triage.intnet == 'spam'"),
            "`triage` has no field \"intnet\" (did you mean \"intent\"?)"
        );
        // A prefix of one declared field names it.
        assert_eq!(
            err("triage.customer_reply"),
            "`triage` has no field \"customer_reply\" (did you mean \"customer_reply_draft\"?)"
        );
        // Nothing close: the declared fields are listed.
        assert_eq!(
            err("input.zzz"),
            "`input` has no field \"zzz\"; its fields: email"
        );
        // A bad field after a good one is found. (Subscripts such as
        // `input['x']` are not checked: minijinja reports dotted reads only.)
        assert!(err("triage.intent and triage.confidnce > 0.5").contains("confidnce"));
        for ok in [
            "triage.intent == 'spam' and triage.confidence > 0.5",
            "input.email|lower",
            "triage.items()|length > 0",
            "triage",
            "open.anything.at.all",
        ] {
            assert!(
                Condition::compile(&node(&format!("\"{ok}\"")), &scope).is_ok(),
                "{ok}"
            );
        }
        // Templates are checked the same way, and a condition compiled with
        // fewer fields known is checked again when more are.
        assert!(Template::compile(&node("'{{ triage.intnet }}'"), &scope).is_err());
        assert!(Template::compile(&node("'a {{ triage.intnet }} b'"), &scope).is_err());
        let loose = Condition::compile(&node("triage.intnet"), &Scope::new(["triage"])).unwrap();
        assert!(loose.check_names(&Scope::new(["triage"])).is_ok());
        assert!(loose.check_names(&scope).is_err());
        assert_eq!(scope.fields("input"), Some(&["email".to_string()][..]));
        assert_eq!(scope.fields("open"), None);
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
