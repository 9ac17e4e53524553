//! Output schemas: the author's `output:` fields become two JSON Schemas —
//! the one sent to the provider, in OpenAI *strict* form, and a fuller one
//! enforced locally.
//!
//! Strict form (CONTRACTS.md §1): the root is an object, every property is
//! listed in `required`, optional fields are nullable unions, every object
//! sets `additionalProperties: false`, and only the keywords strict mode
//! accepts appear. Keywords it refuses but we can check (`minLength`,
//! `maxLength`, `uniqueItems`, formats outside its list) are left out of
//! what is sent, restated in the field's description, and enforced here. A
//! keyword we cannot honour at all is refused when the workflow loads.

use std::sync::Arc;

use domain::Diagnostic;
use domain::workflow::Cx;
use domain::yaml::{Node, Value};
use serde_json::{Map, Value as Json, json};

/// Names the step's output uses for its own bookkeeping.
pub const RESERVED: &[&str] = &["status", "reason", "provider", "model"];

/// OpenAI's strict-mode limits, kept well inside.
const MAX_DEPTH: usize = 5;
const MAX_PROPERTIES: usize = 5_000;
const MAX_ENUM_VALUES: usize = 1_000;

/// Keywords sent to the provider as written.
const SENT: &[&str] = &[
    "type",
    "enum",
    "const",
    "description",
    "properties",
    "items",
    "required",
    "additionalProperties",
    "anyOf",
    "pattern",
    "format",
    "minimum",
    "maximum",
    "exclusiveMinimum",
    "exclusiveMaximum",
    "multipleOf",
    "minItems",
    "maxItems",
];

/// Keywords enforced locally only, restated in the description sent.
const LOCAL_ONLY: &[&str] = &["minLength", "maxLength", "uniqueItems"];

/// Annotations that change nothing; dropped.
const DROPPED: &[&str] = &["title", "examples", "$comment"];

/// Keywords refused, with the reason shown to the author.
const REFUSED: &[(&str, &str)] = &[
    (
        "allOf",
        "OpenAI strict mode does not support `allOf`; merge the parts into one schema",
    ),
    (
        "oneOf",
        "OpenAI strict mode does not support `oneOf`; use `anyOf`",
    ),
    ("not", "OpenAI strict mode does not support `not`"),
    (
        "if",
        "OpenAI strict mode does not support `if`/`then`/`else`; use `checks:` for conditional rules",
    ),
    (
        "then",
        "OpenAI strict mode does not support `if`/`then`/`else`; use `checks:` for conditional rules",
    ),
    (
        "else",
        "OpenAI strict mode does not support `if`/`then`/`else`; use `checks:` for conditional rules",
    ),
    (
        "dependentRequired",
        "OpenAI strict mode does not support `dependentRequired`; use `checks:`",
    ),
    (
        "dependentSchemas",
        "OpenAI strict mode does not support `dependentSchemas`; use `checks:`",
    ),
    (
        "default",
        "a model's answer has no default (and strict mode rejects `default`); mark the field `optional: true` instead",
    ),
    (
        "$ref",
        "references are not supported in llm output fields; write the schema out",
    ),
    (
        "$defs",
        "references are not supported in llm output fields; write the schema out",
    ),
    (
        "definitions",
        "references are not supported in llm output fields; write the schema out",
    ),
    (
        "patternProperties",
        "strict mode needs every property named; list them under `properties`",
    ),
    (
        "propertyNames",
        "strict mode needs every property named; list them under `properties`",
    ),
    (
        "minProperties",
        "strict mode objects have a fixed set of properties",
    ),
    (
        "maxProperties",
        "strict mode objects have a fixed set of properties",
    ),
    (
        "unevaluatedProperties",
        "strict mode objects set `additionalProperties: false` already",
    ),
    ("unevaluatedItems", "not supported in llm output fields"),
    (
        "prefixItems",
        "tuples are not supported in strict mode; use an object",
    ),
    ("contains", "not supported in strict mode; use `checks:`"),
    ("minContains", "not supported in strict mode; use `checks:`"),
    ("maxContains", "not supported in strict mode; use `checks:`"),
];

/// `format` values strict mode accepts.
const STRICT_FORMATS: &[&str] = &[
    "date-time",
    "time",
    "date",
    "duration",
    "email",
    "hostname",
    "ipv4",
    "ipv6",
    "uuid",
];

/// `format` values checked locally only.
const LOCAL_FORMATS: &[&str] = &[
    "uri",
    "uri-reference",
    "iri",
    "iri-reference",
    "idn-email",
    "idn-hostname",
    "json-pointer",
    "relative-json-pointer",
    "regex",
    "uri-template",
];

const TYPES: &[&str] = &[
    "string", "number", "integer", "boolean", "object", "array", "null",
];

/// One top-level output field.
#[derive(Debug, Clone)]
pub struct Field {
    pub name: String,
    /// True when the model may answer `null`.
    pub optional: bool,
    /// The field's schema as enforced locally.
    pub local: Json,
}

/// The compiled output contract of one `llm` step.
pub struct Output {
    pub fields: Vec<Field>,
    /// Sent as `response_format.json_schema.schema`.
    pub strict: Json,
    /// Enforced on every answer.
    pub local: Json,
    validator: Arc<jsonschema::Validator>,
}

impl std::fmt::Debug for Output {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Output")
            .field("strict", &self.strict)
            .finish()
    }
}

impl Output {
    /// Compiles `output:`. Problems go to `cx` located at the offending key.
    pub fn parse(node: &Node, cx: &mut Cx) -> Option<Output> {
        let entries = cx.take(node.as_map())?;
        if entries.is_empty() {
            cx.errors
                .push(node.error("`output` needs at least one field"));
            return None;
        }
        let before = cx.errors.len();
        let mut counts = Counts::default();
        let mut fields = Vec::new();
        let mut sent_props = Map::new();
        let mut local_props = Map::new();
        for (name, field) in entries {
            if !valid_field_name(name) {
                cx.errors.push(field.error(format!(
                    "field name `{name}`: use letters, digits and `_`, starting with a letter, so later steps can write `step.{name}`"
                )));
                continue;
            }
            if RESERVED.contains(&name.as_str()) {
                cx.errors.push(field.error(format!(
                    "`{name}` is reserved: the step's output uses it to say how the answer was produced ({})",
                    RESERVED.join(", ")
                )));
                continue;
            }
            let (schema_node, optional) = match field_parts(field, cx) {
                Some(p) => p,
                None => continue,
            };
            let Some(pair) = convert(&schema_node, 1, optional, &mut counts, cx) else {
                continue;
            };
            sent_props.insert(name.clone(), Json::Object(pair.sent));
            local_props.insert(name.clone(), Json::Object(pair.local.clone()));
            fields.push(Field {
                name: name.clone(),
                optional,
                local: Json::Object(pair.local),
            });
        }
        counts.properties += fields.len();
        if counts.properties > MAX_PROPERTIES {
            cx.errors.push(node.error(format!(
                "{} properties in total; OpenAI strict mode allows at most {MAX_PROPERTIES}",
                counts.properties
            )));
        }
        if counts.enum_values > MAX_ENUM_VALUES {
            cx.errors.push(node.error(format!(
                "{} enum values in total; OpenAI strict mode allows at most {MAX_ENUM_VALUES}",
                counts.enum_values
            )));
        }
        if cx.errors.len() > before {
            return None;
        }
        let names: Vec<Json> = fields
            .iter()
            .map(|f| Json::String(f.name.clone()))
            .collect();
        let strict = json!({
            "type": "object",
            "properties": sent_props,
            "required": names,
            "additionalProperties": false,
        });
        let local = json!({
            "type": "object",
            "properties": local_props,
            "required": names,
            "additionalProperties": false,
        });
        let validator = match jsonschema::options()
            .with_draft(jsonschema::Draft::Draft202012)
            .should_validate_formats(true)
            .build(&local)
        {
            Ok(v) => Arc::new(v),
            Err(e) => {
                cx.errors.push(node.error(format!(
                    "invalid output schema at {}: {e}",
                    e.schema_path().as_str()
                )));
                return None;
            }
        };
        Some(Output {
            fields,
            strict,
            local,
            validator,
        })
    }

    /// Checks an answer against the local schema; one message per problem.
    /// Missing optional fields are filled with `null` first (servers without
    /// strict mode may leave them out).
    pub fn check(&self, value: &mut Json) -> Vec<String> {
        if let Json::Object(map) = value {
            for f in &self.fields {
                if f.optional && !map.contains_key(&f.name) {
                    map.insert(f.name.clone(), Json::Null);
                }
            }
        }
        let mut errors: Vec<String> = self
            .validator
            .iter_errors(value)
            .map(|e| {
                let at = e.instance_path().to_string();
                let msg = clip(&e.to_string(), 300);
                if at.is_empty() {
                    msg
                } else {
                    format!("{at}: {msg}")
                }
            })
            .collect();
        errors.sort();
        errors.dedup();
        errors
    }

    /// One line per field for the system prompt: name, type, constraints.
    pub fn describe(&self) -> String {
        let mut out = String::new();
        for f in &self.fields {
            out.push_str(&format!("- {}: {}", f.name, describe(&f.local)));
            if f.optional {
                out.push_str(" (null when it does not apply)");
            }
            out.push('\n');
        }
        out
    }
}

#[derive(Default)]
struct Counts {
    properties: usize,
    enum_values: usize,
}

/// The two forms of one (sub)schema.
struct Pair {
    sent: Map<String, Json>,
    local: Map<String, Json>,
}

fn valid_field_name(s: &str) -> bool {
    let mut c = s.chars();
    matches!(c.next(), Some(ch) if ch.is_ascii_alphabetic())
        && s.len() <= 64
        && c.all(|ch| ch.is_ascii_alphanumeric() || ch == '_')
}

/// A field is a schema mapping (with our `optional:` key) or a bare type name.
fn field_parts(field: &Node, cx: &mut Cx) -> Option<(Node, bool)> {
    match &field.value {
        Value::Str(t) => {
            if TYPES.contains(&t.as_str()) && t != "null" {
                let mut n = field.clone();
                n.value = Value::Map(vec![("type".into(), field.clone())]);
                Some((n, false))
            } else {
                cx.errors.push(field.error(format!(
                    "expected a schema such as `{{ type: string }}` or a type name (string, number, integer, boolean, object, array), found {t:?}"
                )));
                None
            }
        }
        Value::Map(entries) => {
            let mut optional = false;
            let mut rest = Vec::with_capacity(entries.len());
            for (k, v) in entries {
                if k == "optional" {
                    optional = cx.take(v.as_bool()).unwrap_or(false);
                } else {
                    rest.push((k.clone(), v.clone()));
                }
            }
            let mut n = field.clone();
            n.value = Value::Map(rest);
            Some((n, optional))
        }
        _ => {
            cx.errors.push(field.error(format!(
                "expected a schema mapping such as `{{ type: string }}`, found {}",
                field.kind_name()
            )));
            None
        }
    }
}

fn convert(
    node: &Node,
    depth: usize,
    nullable: bool,
    counts: &mut Counts,
    cx: &mut Cx,
) -> Option<Pair> {
    if depth > MAX_DEPTH {
        cx.errors.push(node.error(format!(
            "nested deeper than {MAX_DEPTH} levels; OpenAI strict mode may refuse it"
        )));
        return None;
    }
    let entries = cx.take(node.as_map())?;
    let before = cx.errors.len();
    let mut sent = Map::new();
    let mut local = Map::new();
    let mut restated: Vec<String> = Vec::new();
    let mut properties: Option<(&Node, &[(String, Node)])> = None;
    let mut required: Option<Vec<String>> = None;
    for (key, v) in entries {
        let k = key.as_str();
        if DROPPED.contains(&k) {
            continue;
        }
        if let Some((_, why)) = REFUSED.iter().find(|(r, _)| *r == k) {
            cx.errors.push(v.error(format!("`{k}`: {why}")));
            continue;
        }
        if !SENT.contains(&k) && !LOCAL_ONLY.contains(&k) {
            let known = SENT.iter().chain(LOCAL_ONLY).copied();
            let mut msg = format!("unknown schema keyword `{k}`");
            if k == "optional" {
                msg = "`optional` is allowed on top-level output fields only; inside an object, leave the property out of `required`".into();
            } else if let Some(s) = domain::yaml::suggest(k, known) {
                msg.push_str(&format!(" (did you mean `{s}`?)"));
            }
            cx.errors.push(v.error(msg));
            continue;
        }
        match k {
            "type" => {
                let names: Vec<String> = match &v.value {
                    Value::Str(s) => vec![s.clone()],
                    Value::Seq(items) => items
                        .iter()
                        .filter_map(|i| cx.take(i.as_str().map(str::to_string)))
                        .collect(),
                    _ => {
                        cx.errors
                            .push(v.error("`type` must be a type name or a list of them"));
                        continue;
                    }
                };
                if let Some(bad) = names.iter().find(|n| !TYPES.contains(&n.as_str())) {
                    cx.errors.push(v.error(format!(
                        "unknown type {bad:?}; expected one of {}",
                        TYPES.join(", ")
                    )));
                    continue;
                }
                sent.insert(k.into(), v.to_json());
                local.insert(k.into(), v.to_json());
            }
            "enum" => {
                let Some(items) = cx.take(v.as_seq()) else {
                    continue;
                };
                if items.is_empty() {
                    cx.errors.push(v.error("`enum` needs at least one value"));
                    continue;
                }
                if let Some(bad) = items
                    .iter()
                    .find(|i| matches!(i.value, Value::Seq(_) | Value::Map(_)))
                {
                    cx.errors
                        .push(bad.error("enum values must be strings, numbers, booleans or null"));
                    continue;
                }
                counts.enum_values += items.len();
                sent.insert(k.into(), v.to_json());
                local.insert(k.into(), v.to_json());
            }
            "const" => {
                if matches!(v.value, Value::Seq(_) | Value::Map(_)) {
                    cx.errors
                        .push(v.error("`const` must be a string, number, boolean or null"));
                    continue;
                }
                sent.insert(k.into(), v.to_json());
                local.insert(k.into(), v.to_json());
            }
            "description" => {
                if let Some(s) = cx.take(v.as_str()) {
                    sent.insert(k.into(), Json::String(s.to_string()));
                    local.insert(k.into(), Json::String(s.to_string()));
                }
            }
            "properties" => {
                if let Some(props) = cx.take(v.as_map()) {
                    properties = Some((v, props));
                }
            }
            "required" => {
                if let Some(items) = cx.take(v.as_seq()) {
                    required = Some(
                        items
                            .iter()
                            .filter_map(|i| cx.take(i.as_str().map(str::to_string)))
                            .collect(),
                    );
                }
            }
            "additionalProperties" => {
                if !matches!(v.value, Value::Bool(false)) {
                    cx.errors.push(v.error(
                        "`additionalProperties` must be false: OpenAI strict mode allows no extra keys (it is set for you)",
                    ));
                }
            }
            "items" => {
                if let Some(p) = convert(v, depth + 1, false, counts, cx) {
                    sent.insert(k.into(), Json::Object(p.sent));
                    local.insert(k.into(), Json::Object(p.local));
                }
            }
            "anyOf" => {
                let Some(items) = cx.take(v.as_seq()) else {
                    continue;
                };
                if items.is_empty() {
                    cx.errors.push(v.error("`anyOf` needs at least one schema"));
                    continue;
                }
                let mut s_items = Vec::new();
                let mut l_items = Vec::new();
                for i in items {
                    if let Some(p) = convert(i, depth, false, counts, cx) {
                        s_items.push(Json::Object(p.sent));
                        l_items.push(Json::Object(p.local));
                    }
                }
                sent.insert(k.into(), Json::Array(s_items));
                local.insert(k.into(), Json::Array(l_items));
            }
            "pattern" => {
                if let Some(s) = cx.take(v.as_str()) {
                    sent.insert(k.into(), Json::String(s.to_string()));
                    local.insert(k.into(), Json::String(s.to_string()));
                }
            }
            "format" => {
                let Some(f) = cx.take(v.as_str()) else {
                    continue;
                };
                if STRICT_FORMATS.contains(&f) {
                    sent.insert(k.into(), Json::String(f.to_string()));
                } else if LOCAL_FORMATS.contains(&f) {
                    restated.push(format!("Format: {f}."));
                } else {
                    cx.errors.push(v.error(format!(
                        "unknown format {f:?}; supported: {}, {}",
                        STRICT_FORMATS.join(", "),
                        LOCAL_FORMATS.join(", ")
                    )));
                    continue;
                }
                local.insert(k.into(), Json::String(f.to_string()));
            }
            "minimum" | "maximum" | "exclusiveMinimum" | "exclusiveMaximum" | "multipleOf" => {
                if cx.take(v.as_f64()).is_some() {
                    sent.insert(k.into(), v.to_json());
                    local.insert(k.into(), v.to_json());
                }
            }
            "minItems" | "maxItems" => {
                if cx.take(v.as_u64()).is_some() {
                    sent.insert(k.into(), v.to_json());
                    local.insert(k.into(), v.to_json());
                }
            }
            "minLength" | "maxLength" => {
                if cx.take(v.as_u64()).is_some() {
                    local.insert(k.into(), v.to_json());
                }
            }
            "uniqueItems" => {
                if let Some(b) = cx.take(v.as_bool()) {
                    local.insert(k.into(), Json::Bool(b));
                    if b {
                        restated.push("Items must be unique.".into());
                    }
                }
            }
            _ => unreachable!("every listed keyword is handled"),
        }
    }
    match (
        local.get("minLength").and_then(Json::as_u64),
        local.get("maxLength").and_then(Json::as_u64),
    ) {
        (Some(a), Some(b)) => restated.insert(0, format!("Between {a} and {b} characters.")),
        (Some(a), None) => restated.insert(0, format!("At least {a} characters.")),
        (None, Some(b)) => restated.insert(0, format!("At most {b} characters.")),
        (None, None) => {}
    }

    // Objects: every property required (strict mode), none extra.
    let is_object =
        properties.is_some() || matches!(local.get("type"), Some(Json::String(t)) if t == "object");
    if is_object {
        let Some((pnode, props)) = properties else {
            cx.errors.push(
                node.error(
                    "an object needs `properties` (strict mode allows no free-form objects)",
                ),
            );
            return None;
        };
        if props.is_empty() {
            cx.errors
                .push(pnode.error("an object needs at least one property"));
        }
        if let Some(req) = &required
            && let Some(bad) = req.iter().find(|r| !props.iter().any(|(k, _)| k == *r))
        {
            cx.errors.push(node.error(format!(
                "`required` names `{bad}`, which is not under `properties`"
            )));
        }
        counts.properties += props.len();
        let mut s_props = Map::new();
        let mut l_props = Map::new();
        let mut names = Vec::new();
        for (name, p) in props {
            let optional = required.as_ref().is_some_and(|r| !r.contains(name));
            if let Some(pair) = convert(p, depth + 1, optional, counts, cx) {
                s_props.insert(name.clone(), Json::Object(pair.sent));
                l_props.insert(name.clone(), Json::Object(pair.local));
                names.push(Json::String(name.clone()));
            }
        }
        if !local.contains_key("type") {
            sent.insert("type".into(), json!("object"));
            local.insert("type".into(), json!("object"));
        }
        for (m, p) in [(&mut sent, s_props), (&mut local, l_props)] {
            m.insert("properties".into(), Json::Object(p));
            m.insert("required".into(), Json::Array(names.clone()));
            m.insert("additionalProperties".into(), Json::Bool(false));
        }
    } else if required.is_some() {
        cx.errors
            .push(node.error("`required` belongs to objects with `properties`"));
    }

    // An enum without a type gets one, so the provider's grammar is tight.
    if !local.contains_key("type")
        && let Some(Json::Array(values)) = local.get("enum")
    {
        let t = if values.iter().all(Json::is_string) {
            Some("string")
        } else if values.iter().all(|v| v.is_i64() || v.is_u64()) {
            Some("integer")
        } else if values.iter().all(Json::is_number) {
            Some("number")
        } else if values.iter().all(Json::is_boolean) {
            Some("boolean")
        } else {
            None
        };
        if let Some(t) = t {
            sent.insert("type".into(), json!(t));
            local.insert("type".into(), json!(t));
        }
    }
    if cx.errors.len() == before
        && !["type", "enum", "const", "anyOf"]
            .iter()
            .any(|k| local.contains_key(*k))
    {
        cx.errors
            .push(node.error("give this schema a `type` (or an `enum`)"));
    }
    if cx.errors.len() > before {
        return None;
    }
    if !restated.is_empty() {
        let text = restated.join(" ");
        let desc = match sent.get("description").and_then(Json::as_str) {
            Some(d) => format!("{d} {text}"),
            None => text,
        };
        sent.insert("description".into(), Json::String(desc));
    }
    if nullable {
        make_nullable(&mut sent);
        make_nullable(&mut local);
    }
    Some(Pair { sent, local })
}

/// `type: string` → `type: [string, "null"]`; enums gain `null`.
fn make_nullable(m: &mut Map<String, Json>) {
    if let Some(Json::Array(values)) = m.get_mut("enum")
        && !values.contains(&Json::Null)
    {
        values.push(Json::Null);
    }
    match m.get_mut("type") {
        Some(Json::String(t)) if t != "null" => {
            let t = std::mem::take(t);
            m.insert("type".into(), json!([t, "null"]));
        }
        Some(Json::Array(ts)) if !ts.contains(&json!("null")) => ts.push(json!("null")),
        Some(_) => {}
        None => {
            if let Some(Json::Array(items)) = m.get_mut("anyOf") {
                items.push(json!({ "type": "null" }));
            } else if let Some(c) = m.remove("const") {
                m.insert("anyOf".into(), json!([{ "const": c }, { "type": "null" }]));
            }
        }
    }
}

/// A short human description of a local schema, for the system prompt.
pub fn describe(s: &Json) -> String {
    let mut parts = Vec::new();
    if let Some(Json::Array(values)) = s.get("enum") {
        let vs: Vec<String> = values
            .iter()
            .filter(|v| !v.is_null())
            .map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_string))
            .collect();
        parts.push(format!("one of {}", vs.join(", ")));
    } else if let Some(c) = s.get("const") {
        parts.push(format!("exactly {c}"));
    } else {
        let t = match s.get("type") {
            Some(Json::String(t)) => t.clone(),
            Some(Json::Array(ts)) => ts
                .iter()
                .filter_map(Json::as_str)
                .filter(|t| *t != "null")
                .collect::<Vec<_>>()
                .join(" or "),
            _ => "value".into(),
        };
        parts.push(t);
    }
    for (k, label) in [
        ("minLength", "at least {} characters"),
        ("maxLength", "at most {} characters"),
        ("minimum", "minimum {}"),
        ("maximum", "maximum {}"),
        ("exclusiveMinimum", "greater than {}"),
        ("exclusiveMaximum", "less than {}"),
        ("minItems", "at least {} items"),
        ("maxItems", "at most {} items"),
        ("format", "format {}"),
        ("pattern", "matching {}"),
    ] {
        if let Some(v) = s.get(k) {
            let v = v.as_str().map_or_else(|| v.to_string(), str::to_string);
            parts.push(label.replace("{}", &v));
        }
    }
    if let Some(Json::Object(props)) = s.get("properties") {
        let names: Vec<&str> = props.keys().map(String::as_str).collect();
        parts.push(format!("with fields {}", names.join(", ")));
    }
    if let Some(items) = s.get("items") {
        parts.push(format!("of {}", describe(items)));
    }
    let mut out = parts.join(", ");
    if let Some(d) = s.get("description").and_then(Json::as_str) {
        out.push_str(&format!(" — {d}"));
    }
    out
}

/// Cuts `s` to at most `max` characters, marking the cut.
pub fn clip(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_string();
    }
    let mut out: String = s.chars().take(max).collect();
    out.push('…');
    out
}

/// A diagnostic list rendered one per line (for tests and messages).
pub fn render(errors: &[Diagnostic]) -> String {
    errors
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn output(src: &str) -> Result<Output, String> {
        let root = domain::yaml::parse(src, &|_| None).unwrap();
        let node = root.as_map().unwrap()[0].1.clone();
        let mut cx = Cx::default();
        match Output::parse(&node, &mut cx) {
            Some(o) if cx.errors.is_empty() => Ok(o),
            _ => {
                cx.errors.sort_by_key(|d| (d.pos.line, d.pos.col));
                Err(render(&cx.errors))
            }
        }
    }

    #[test]
    fn converts_to_strict_form_and_keeps_local_constraints() {
        let o = output(
            "output:\n  summary: { type: string, maxLength: 600, description: Two sentences }\n  intent: { enum: [sales, spam] }\n  note: { type: string, optional: true, minLength: 2 }\n  confidence: { type: number, minimum: 0, maximum: 1 }\n  tags: { type: array, items: { type: string, format: uri }, maxItems: 3, uniqueItems: true }\n  contact:\n    type: object\n    properties: { name: { type: string }, phone: { type: string } }\n    required: [name]\n",
        )
        .unwrap();
        expect_test::expect![[r#"
            {
              "additionalProperties": false,
              "properties": {
                "confidence": {
                  "maximum": 1,
                  "minimum": 0,
                  "type": "number"
                },
                "contact": {
                  "additionalProperties": false,
                  "properties": {
                    "name": {
                      "type": "string"
                    },
                    "phone": {
                      "type": [
                        "string",
                        "null"
                      ]
                    }
                  },
                  "required": [
                    "name",
                    "phone"
                  ],
                  "type": "object"
                },
                "intent": {
                  "enum": [
                    "sales",
                    "spam"
                  ],
                  "type": "string"
                },
                "note": {
                  "description": "At least 2 characters.",
                  "type": [
                    "string",
                    "null"
                  ]
                },
                "summary": {
                  "description": "Two sentences At most 600 characters.",
                  "type": "string"
                },
                "tags": {
                  "description": "Items must be unique.",
                  "items": {
                    "description": "Format: uri.",
                    "type": "string"
                  },
                  "maxItems": 3,
                  "type": "array"
                }
              },
              "required": [
                "summary",
                "intent",
                "note",
                "confidence",
                "tags",
                "contact"
              ],
              "type": "object"
            }"#]]
        .assert_eq(&serde_json::to_string_pretty(&sorted(&o.strict)).unwrap());
        assert_eq!(o.local["properties"]["summary"]["maxLength"], 600);
        assert_eq!(o.local["properties"]["tags"]["items"]["format"], "uri");

        let mut ok = json!({"summary": "s", "intent": "spam", "confidence": 0.5, "tags": [], "contact": {"name": "A", "phone": null}});
        assert_eq!(
            o.check(&mut ok),
            Vec::<String>::new(),
            "a missing optional field is filled with null"
        );
        assert_eq!(ok["note"], Json::Null);
        let mut bad = json!({"summary": "x".repeat(601), "intent": "lowest", "note": "a", "confidence": 2, "tags": ["a", "a"], "contact": {"name": "A", "phone": null}, "extra": 1});
        let errors = o.check(&mut bad);
        let text = errors.join("\n");
        for needle in [
            "/intent",
            "/summary",
            "/note",
            "/confidence",
            "/tags",
            "extra",
        ] {
            assert!(text.contains(needle), "{needle} missing in:\n{text}");
        }
    }

    #[test]
    fn refuses_what_strict_mode_cannot_take_with_locations() {
        let err = output(
            "output:\n  a: { type: string, default: x }\n  b: { allOf: [{ type: string }] }\n  c: { type: strin }\n  d: { type: object }\n  status: { type: string }\n  e: { type: string, maxLenght: 3 }\n  f: { type: object, properties: { x: { type: string } }, additionalProperties: true }\n  g: { type: string, format: colour }\n  h-i: string\n",
        )
        .unwrap_err();
        expect_test::expect![[r#"
            2:31: output.a.default: `default`: a model's answer has no default (and strict mode rejects `default`); mark the field `optional: true` instead
            3:15: output.b.allOf: `allOf`: OpenAI strict mode does not support `allOf`; merge the parts into one schema
            4:14: output.c.type: unknown type "strin"; expected one of string, number, integer, boolean, object, array, null
            5:6: output.d: an object needs `properties` (strict mode allows no free-form objects)
            6:11: output.status: `status` is reserved: the step's output uses it to say how the answer was produced (status, reason, provider, model)
            7:33: output.e.maxLenght: unknown schema keyword `maxLenght` (did you mean `maxLength`?)
            8:81: output.f.additionalProperties: `additionalProperties` must be false: OpenAI strict mode allows no extra keys (it is set for you)
            9:30: output.g.format: unknown format "colour"; supported: date-time, time, date, duration, email, hostname, ipv4, ipv6, uuid, uri, uri-reference, iri, iri-reference, idn-email, idn-hostname, json-pointer, relative-json-pointer, regex, uri-template
            10:8: output.h-i: field name `h-i`: use letters, digits and `_`, starting with a letter, so later steps can write `step.h-i`"#]]
        .assert_eq(&err);
    }

    #[test]
    fn depth_is_bounded() {
        let deep = "output:\n  a: { type: object, properties: { b: { type: object, properties: { c: { type: object, properties: { d: { type: object, properties: { e: { type: object, properties: { f: { type: string } } } } } } } } } } }\n";
        let err = output(deep).unwrap_err();
        assert!(err.contains("nested deeper than 5 levels"), "{err}");
    }

    #[test]
    fn describes_fields_for_the_prompt() {
        let o = output("output:\n  intent: { enum: [a, b], description: What they want }\n  summary: { type: string, maxLength: 10 }\n  n: { type: integer, optional: true }\n").unwrap();
        expect_test::expect![[r#"
            - intent: one of a, b — What they want
            - summary: string, at most 10 characters
            - n: integer (null when it does not apply)
        "#]]
        .assert_eq(&o.describe());
    }

    fn sorted(v: &Json) -> Json {
        match v {
            Json::Object(m) => {
                let mut keys: Vec<_> = m.keys().collect();
                keys.sort();
                Json::Object(
                    keys.into_iter()
                        .map(|k| (k.clone(), sorted(&m[k])))
                        .collect(),
                )
            }
            Json::Array(a) => Json::Array(a.iter().map(sorted).collect()),
            other => other.clone(),
        }
    }
}
