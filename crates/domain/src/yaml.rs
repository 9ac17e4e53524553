//! A YAML document as a tree of located nodes, with `${env:…}` interpolation.
//!
//! We parse with `saphyr-parser` events and build our own tree so that every
//! value keeps its line, column and field path: validation errors can then
//! point at `file:line:col: steps[2].rules[0].when`. Deserialising straight
//! into structs (serde) loses that for semantic checks done after parsing.

use std::collections::HashMap;

use saphyr_parser::{Event, Parser, ScalarStyle, Span};

use crate::diag::{self, Diagnostic, Pos};

/// Upper bound on nodes in one document: a workflow is small; a billion-laughs
/// alias bomb is not.
const MAX_NODES: usize = 100_000;

/// A YAML value with its location.
#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    pub value: Value,
    pub pos: Pos,
    /// Field path from the document root, e.g. `steps[1].http.url`.
    pub path: String,
    /// True when the scalar was produced (at least partly) from `${env:…}`.
    pub from_env: bool,
    /// Where the key that holds this node sits, for a value in a mapping:
    /// a misspelled key is reported there, not at its value (which may be a
    /// block several lines further down).
    pub key_pos: Option<Pos>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    Seq(Vec<Node>),
    /// Keys keep document order; duplicates are refused at parse time.
    Map(Vec<(String, Node)>),
}

/// Looks up environment variables. The core takes it as a function so it
/// never reads the process environment itself.
pub type EnvLookup<'a> = &'a dyn Fn(&str) -> Option<String>;

/// Parses one YAML document. Strings get `${env:NAME}` /
/// `${env:NAME:-default}` replaced through `env`; `$${` stands for a literal
/// `${`. Every problem found is returned, not just the first.
pub fn parse(src: &str, env: EnvLookup<'_>) -> Result<Node, Vec<Diagnostic>> {
    let mut b = Builder {
        parser: Parser::new_from_str(src),
        env,
        anchors: HashMap::new(),
        errors: Vec::new(),
        count: 0,
    };
    let root = b.document();
    match root {
        Ok(node) if b.errors.is_empty() => Ok(node),
        Ok(_) => Err(b.errors),
        Err(d) => {
            b.errors.push(d);
            Err(b.errors)
        }
    }
}

struct Builder<'s, 'e> {
    parser: Parser<'s, saphyr_parser::StrInput<'s>>,
    env: EnvLookup<'e>,
    /// Anchored nodes with their size in nodes (aliases inside expanded).
    anchors: HashMap<usize, (Node, usize)>,
    errors: Vec<Diagnostic>,
    count: usize,
}

fn pos(span: &Span) -> Pos {
    Pos {
        line: span.start.line(),
        col: span.start.col() + 1,
    }
}

impl<'s> Builder<'s, '_> {
    fn next(&mut self) -> Result<(Event<'s>, Span), Diagnostic> {
        match self.parser.next_event() {
            Some(Ok(ev)) => Ok(ev),
            Some(Err(e)) => {
                let m = e.marker();
                Err(Diagnostic::new(
                    Pos {
                        line: m.line(),
                        col: m.col() + 1,
                    },
                    "",
                    format!("invalid YAML: {}", e.info()),
                ))
            }
            None => Err(Diagnostic::new(
                Pos::default(),
                "",
                "unexpected end of YAML",
            )),
        }
    }

    fn document(&mut self) -> Result<Node, Diagnostic> {
        loop {
            let (ev, span) = self.next()?;
            match ev {
                Event::StreamStart | Event::DocumentStart(_) | Event::Nothing => continue,
                Event::StreamEnd => {
                    return Err(Diagnostic::new(pos(&span), "", "the file is empty"));
                }
                other => {
                    let root = self.node(other, span, String::new())?;
                    // Refuse a second document: a workflow file is one document.
                    loop {
                        let (ev, span) = self.next()?;
                        match ev {
                            Event::DocumentEnd | Event::Nothing => continue,
                            Event::StreamEnd => return Ok(root),
                            _ => {
                                return Err(Diagnostic::new(
                                    pos(&span),
                                    "",
                                    "a workflow file holds exactly one YAML document",
                                ));
                            }
                        }
                    }
                }
            }
        }
    }

    fn node(&mut self, ev: Event<'s>, span: Span, path: String) -> Result<Node, Diagnostic> {
        let first = self.count;
        // An alias stands for a copy of the whole anchored node: it counts
        // as that many nodes, or nested aliases would multiply unchecked.
        self.count += match &ev {
            Event::Alias(id) => self.anchors.get(id).map_or(1, |(_, size)| *size),
            _ => 1,
        };
        if self.count > MAX_NODES {
            return Err(Diagnostic::new(pos(&span), path, "document too large"));
        }
        let p = pos(&span);
        match ev {
            Event::Scalar(text, style, anchor, tag) => {
                let forced_str = tag.as_ref().is_some_and(|t| t.suffix == "str");
                let (value, from_env) = self.scalar(&text, style, forced_str, p, &path);
                let node = Node {
                    value,
                    pos: p,
                    path,
                    from_env,
                    key_pos: None,
                };
                if anchor > 0 {
                    self.anchors
                        .insert(anchor, (node.clone(), self.count - first));
                }
                Ok(node)
            }
            Event::SequenceStart(anchor, _) => {
                let mut items = Vec::new();
                loop {
                    let (ev, span) = self.next()?;
                    if matches!(ev, Event::SequenceEnd) {
                        break;
                    }
                    let child = diag::index(&path, items.len());
                    items.push(self.node(ev, span, child)?);
                }
                let node = Node {
                    value: Value::Seq(items),
                    pos: p,
                    path,
                    from_env: false,
                    key_pos: None,
                };
                if anchor > 0 {
                    self.anchors
                        .insert(anchor, (node.clone(), self.count - first));
                }
                Ok(node)
            }
            Event::MappingStart(anchor, _) => {
                let mut entries: Vec<(String, Node)> = Vec::new();
                loop {
                    let (ev, kspan) = self.next()?;
                    if matches!(ev, Event::MappingEnd) {
                        break;
                    }
                    let key = match ev {
                        Event::Scalar(k, _, _, _) => k.into_owned(),
                        _ => {
                            return Err(Diagnostic::new(
                                pos(&kspan),
                                path,
                                "mapping keys must be plain strings",
                            ));
                        }
                    };
                    let (ev, vspan) = self.next()?;
                    let child = diag::join(&path, &key);
                    let mut value = self.node(ev, vspan, child)?;
                    value.key_pos = Some(pos(&kspan));
                    if entries.iter().any(|(k, _)| *k == key) {
                        self.errors.push(Diagnostic::new(
                            pos(&kspan),
                            diag::join(&path, &key),
                            "duplicate key",
                        ));
                        continue;
                    }
                    entries.push((key, value));
                }
                let node = Node {
                    value: Value::Map(entries),
                    pos: p,
                    path,
                    from_env: false,
                    key_pos: None,
                };
                if anchor > 0 {
                    self.anchors
                        .insert(anchor, (node.clone(), self.count - first));
                }
                Ok(node)
            }
            Event::Alias(id) => match self.anchors.get(&id) {
                Some((n, _)) => {
                    let mut n = n.clone();
                    n.pos = p;
                    n.path = path;
                    Ok(n)
                }
                None => Err(Diagnostic::new(p, path, "unknown alias")),
            },
            _ => Err(Diagnostic::new(p, path, "unexpected YAML structure")),
        }
    }

    fn scalar(
        &mut self,
        text: &str,
        style: ScalarStyle,
        forced_str: bool,
        p: Pos,
        path: &str,
    ) -> (Value, bool) {
        if style == ScalarStyle::Plain
            && !forced_str
            && let Some(v) = resolve_plain(text)
        {
            return (v, false);
        }
        match interpolate(text, self.env) {
            Ok((s, from_env)) => (Value::Str(s), from_env),
            Err(msg) => {
                self.errors.push(Diagnostic::new(p, path, msg));
                (Value::Str(String::new()), true)
            }
        }
    }
}

/// YAML 1.2 core schema resolution for plain scalars that are not strings.
fn resolve_plain(t: &str) -> Option<Value> {
    match t {
        "" | "~" | "null" | "Null" | "NULL" => return Some(Value::Null),
        "true" | "True" | "TRUE" => return Some(Value::Bool(true)),
        "false" | "False" | "FALSE" => return Some(Value::Bool(false)),
        ".inf" | ".Inf" | ".INF" | "+.inf" => return Some(Value::Float(f64::INFINITY)),
        "-.inf" | "-.Inf" | "-.INF" => return Some(Value::Float(f64::NEG_INFINITY)),
        ".nan" | ".NaN" | ".NAN" => return Some(Value::Float(f64::NAN)),
        _ => {}
    }
    if let Some(hex) = t.strip_prefix("0x") {
        return i64::from_str_radix(hex, 16).ok().map(Value::Int);
    }
    if let Some(oct) = t.strip_prefix("0o") {
        return i64::from_str_radix(oct, 8).ok().map(Value::Int);
    }
    let numeric = t
        .bytes()
        .all(|b| b.is_ascii_digit() || matches!(b, b'-' | b'+' | b'.' | b'e' | b'E'));
    if !numeric || !t.bytes().any(|b| b.is_ascii_digit()) {
        return None;
    }
    if let Ok(i) = t.parse::<i64>() {
        return Some(Value::Int(i));
    }
    t.parse::<f64>().ok().map(Value::Float)
}

/// Replaces `${env:NAME}` and `${env:NAME:-default}`; `$${` is a literal `${`.
/// Returns the new string and whether any variable was substituted.
pub fn interpolate(s: &str, env: EnvLookup<'_>) -> Result<(String, bool), String> {
    if !s.contains("${") {
        return Ok((s.to_string(), false));
    }
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    let mut used = false;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let tail = &rest[i..];
        if let Some(after) = tail.strip_prefix("$${") {
            out.push_str("${");
            rest = after;
            continue;
        }
        let Some(body) = tail.strip_prefix("${") else {
            out.push('$');
            rest = &tail[1..];
            continue;
        };
        let Some(end) = body.find('}') else {
            return Err("unterminated `${`".into());
        };
        let inner = &body[..end];
        let Some(spec) = inner.strip_prefix("env:") else {
            return Err(format!(
                "unknown interpolation `${{{inner}}}`: only `${{env:NAME}}` and `${{env:NAME:-default}}` exist (write `$${{` for a literal `${{`)"
            ));
        };
        let (name, default) = match spec.split_once(":-") {
            Some((n, d)) => (n, Some(d)),
            None => (spec, None),
        };
        if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
            return Err(format!("invalid environment variable name {name:?}"));
        }
        match env(name)
            .filter(|v| !v.is_empty())
            .or(default.map(str::to_string))
        {
            Some(v) => out.push_str(&v),
            None => {
                return Err(format!(
                    "environment variable {name} is not set (give a default with `${{env:{name}:-…}}`)"
                ));
            }
        }
        used = true;
        rest = &body[end + 1..];
    }
    out.push_str(rest);
    Ok((out, used))
}

impl Node {
    /// A diagnostic located at this node.
    pub fn error(&self, message: impl Into<String>) -> Diagnostic {
        Diagnostic::new(self.pos, self.path.clone(), message)
    }

    /// A diagnostic located at the key that holds this node (the node
    /// itself when it is not a mapping's value): for unknown or misspelled
    /// keys.
    pub fn key_error(&self, message: impl Into<String>) -> Diagnostic {
        Diagnostic::new(self.pos_of_key(), self.path.clone(), message)
    }

    pub fn kind_name(&self) -> &'static str {
        match self.value {
            Value::Null => "null",
            Value::Bool(_) => "a boolean",
            Value::Int(_) => "an integer",
            Value::Float(_) => "a number",
            Value::Str(_) => "a string",
            Value::Seq(_) => "a list",
            Value::Map(_) => "a mapping",
        }
    }

    pub fn as_str(&self) -> Result<&str, Diagnostic> {
        match &self.value {
            Value::Str(s) => Ok(s),
            _ => Err(self.error(format!("expected a string, found {}", self.kind_name()))),
        }
    }

    /// A scalar rendered as a string (numbers and booleans allowed).
    pub fn as_scalar_string(&self) -> Result<String, Diagnostic> {
        match &self.value {
            Value::Str(s) => Ok(s.clone()),
            Value::Int(i) => Ok(i.to_string()),
            Value::Float(f) => Ok(f.to_string()),
            Value::Bool(b) => Ok(b.to_string()),
            _ => Err(self.error(format!("expected a string, found {}", self.kind_name()))),
        }
    }

    pub fn as_u64(&self) -> Result<u64, Diagnostic> {
        match &self.value {
            Value::Int(i) if *i >= 0 => Ok(*i as u64),
            Value::Str(s) if s.parse::<u64>().is_ok() => Ok(s.parse().unwrap_or_default()),
            _ => Err(self.error(format!(
                "expected a non-negative integer, found {}",
                self.kind_name()
            ))),
        }
    }

    pub fn as_f64(&self) -> Result<f64, Diagnostic> {
        match &self.value {
            Value::Int(i) => Ok(*i as f64),
            Value::Float(f) => Ok(*f),
            _ => Err(self.error(format!("expected a number, found {}", self.kind_name()))),
        }
    }

    pub fn as_bool(&self) -> Result<bool, Diagnostic> {
        match &self.value {
            Value::Bool(b) => Ok(*b),
            _ => Err(self.error(format!(
                "expected true or false, found {}",
                self.kind_name()
            ))),
        }
    }

    pub fn as_seq(&self) -> Result<&[Node], Diagnostic> {
        match &self.value {
            Value::Seq(items) => Ok(items),
            _ => Err(self.error(format!("expected a list, found {}", self.kind_name()))),
        }
    }

    pub fn as_map(&self) -> Result<&[(String, Node)], Diagnostic> {
        match &self.value {
            Value::Map(entries) => Ok(entries),
            _ => Err(self.error(format!("expected a mapping, found {}", self.kind_name()))),
        }
    }

    /// A mapping reader that reports unknown keys when finished.
    pub fn fields(&self) -> Result<Fields<'_>, Diagnostic> {
        Ok(Fields {
            node: self,
            entries: self.as_map()?,
            used: Vec::new(),
        })
    }

    /// Duration such as `500ms`, `30s`, `5m`, `24h`, `7d`, or a number of seconds.
    pub fn as_duration_ms(&self) -> Result<u64, Diagnostic> {
        match &self.value {
            Value::Int(i) if *i >= 0 => Ok(*i as u64 * 1000),
            Value::Str(s) => parse_duration_ms(s).ok_or_else(|| {
                self.error(format!(
                    "invalid duration {s:?}: use a number with a unit, e.g. 500ms, 30s, 5m, 24h, 7d"
                ))
            }),
            _ => Err(self.error(format!("expected a duration, found {}", self.kind_name()))),
        }
    }

    /// The node as JSON (for schemas and JSON bodies).
    pub fn to_json(&self) -> serde_json::Value {
        use serde_json::Value as J;
        match &self.value {
            Value::Null => J::Null,
            Value::Bool(b) => J::Bool(*b),
            Value::Int(i) => J::from(*i),
            Value::Float(f) => serde_json::Number::from_f64(*f).map_or(J::Null, J::Number),
            Value::Str(s) => J::String(s.clone()),
            Value::Seq(items) => J::Array(items.iter().map(Node::to_json).collect()),
            Value::Map(entries) => J::Object(
                entries
                    .iter()
                    .map(|(k, v)| (k.clone(), v.to_json()))
                    .collect(),
            ),
        }
    }
}

/// Parses `500ms`, `30s`, `5m`, `24h`, `7d`; a bare number is seconds.
pub fn parse_duration_ms(s: &str) -> Option<u64> {
    let s = s.trim();
    let split = s
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: f64 = num.parse().ok()?;
    let factor = match unit.trim() {
        "" | "s" => 1000.0,
        "ms" => 1.0,
        "m" => 60_000.0,
        "h" => 3_600_000.0,
        "d" => 86_400_000.0,
        _ => return None,
    };
    let ms = n * factor;
    (ms.is_finite() && ms >= 0.0).then_some(ms as u64)
}

/// Reads a mapping's fields and, on `finish`, reports keys nobody asked for.
pub struct Fields<'a> {
    node: &'a Node,
    entries: &'a [(String, Node)],
    used: Vec<&'static str>,
}

impl<'a> Fields<'a> {
    pub fn node(&self) -> &'a Node {
        self.node
    }

    pub fn get(&mut self, key: &'static str) -> Option<&'a Node> {
        self.used.push(key);
        self.entries.iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }

    pub fn require(&mut self, key: &'static str) -> Result<&'a Node, Diagnostic> {
        self.get(key)
            .ok_or_else(|| self.node.error(format!("missing required field `{key}`")))
    }

    /// Errors for every key that was never read, with a suggestion if one is close.
    pub fn finish(self, errors: &mut Vec<Diagnostic>) {
        for (k, v) in self.entries {
            if !self.used.contains(&k.as_str()) {
                let mut msg = format!("unknown field `{k}`");
                if let Some(s) = suggest(k, self.used.iter().copied()) {
                    msg.push_str(&format!(" (did you mean `{s}`?)"));
                } else if !self.used.is_empty() {
                    let mut known: Vec<_> = self.used.clone();
                    known.sort_unstable();
                    known.dedup();
                    msg.push_str(&format!("; expected one of: {}", known.join(", ")));
                }
                errors.push(Diagnostic::new(v.pos_of_key(), v.path.clone(), msg));
            }
        }
    }
}

impl Node {
    /// Where the key that holds this node sits, else the node itself.
    fn pos_of_key(&self) -> Pos {
        self.key_pos.unwrap_or(self.pos)
    }
}

/// The closest candidate within edit distance 2, if any.
pub fn suggest<'c>(word: &str, candidates: impl IntoIterator<Item = &'c str>) -> Option<&'c str> {
    candidates
        .into_iter()
        .map(|c| (levenshtein(word, c), c))
        .filter(|(d, c)| *d <= 2 && *d < c.len().max(2))
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

fn levenshtein(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != *cb);
            cur[j + 1] = (prev[j] + cost).min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_env(_: &str) -> Option<String> {
        None
    }

    #[test]
    fn keeps_positions_and_paths() {
        let doc = "name: x\nsteps:\n  - id: a\n    rules:\n      - when: foo\n";
        let root = parse(doc, &no_env).unwrap();
        let steps = root
            .fields()
            .unwrap()
            .get("steps")
            .unwrap()
            .as_seq()
            .unwrap();
        let rules = steps[0]
            .fields()
            .unwrap()
            .get("rules")
            .unwrap()
            .as_seq()
            .unwrap();
        let when = rules[0].fields().unwrap().get("when").unwrap();
        assert_eq!(when.path, "steps[0].rules[0].when");
        assert_eq!((when.pos.line, when.pos.col), (5, 15));
    }

    #[test]
    fn resolves_scalars_like_yaml_1_2() {
        let root = parse("a: 1\nb: 1.5\nc: true\nd: ~\ne: '1'\nf: yes\n", &no_env).unwrap();
        let m = root.as_map().unwrap();
        assert_eq!(m[0].1.value, Value::Int(1));
        assert_eq!(m[1].1.value, Value::Float(1.5));
        assert_eq!(m[2].1.value, Value::Bool(true));
        assert_eq!(m[3].1.value, Value::Null);
        assert_eq!(m[4].1.value, Value::Str("1".into()));
        assert_eq!(m[5].1.value, Value::Str("yes".into()));
    }

    #[test]
    fn interpolates_env_with_defaults_and_escapes() {
        let env = |n: &str| (n == "A").then(|| "alpha".to_string());
        assert_eq!(
            interpolate("x${env:A}y", &env).unwrap(),
            ("xalphay".into(), true)
        );
        assert_eq!(
            interpolate("${env:B:-dflt}", &env).unwrap(),
            ("dflt".into(), true)
        );
        assert_eq!(
            interpolate("$${env:A}", &env).unwrap(),
            ("${env:A}".into(), false)
        );
        assert!(
            interpolate("${env:B}", &env)
                .unwrap_err()
                .contains("B is not set")
        );
        assert!(
            interpolate("${A}", &env)
                .unwrap_err()
                .contains("unknown interpolation")
        );
    }

    #[test]
    fn reports_duplicate_keys_and_missing_env() {
        let errs = parse("a: 1\na: 2\nb: ${env:NOPE}\n", &no_env).unwrap_err();
        let text: Vec<String> = errs.iter().map(ToString::to_string).collect();
        assert_eq!(text.len(), 2, "{text:?}");
        assert!(text[0].starts_with("2:1: a: duplicate key"), "{text:?}");
        assert!(
            text[1].contains("b: environment variable NOPE is not set"),
            "{text:?}"
        );
    }

    #[test]
    fn syntax_errors_have_positions() {
        let errs = parse("a: [1, 2\nb: 3\n", &no_env).unwrap_err();
        assert!(errs[0].message.starts_with("invalid YAML"), "{errs:?}");
        assert!(errs[0].pos.line >= 1);
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration_ms("500ms"), Some(500));
        assert_eq!(parse_duration_ms("30s"), Some(30_000));
        assert_eq!(parse_duration_ms("1.5m"), Some(90_000));
        assert_eq!(parse_duration_ms("24h"), Some(86_400_000));
        assert_eq!(parse_duration_ms("5 parsecs"), None);
    }

    #[test]
    fn suggestions() {
        assert_eq!(suggest("triag", ["input", "triage"]), Some("triage"));
        assert_eq!(suggest("zzz", ["input", "triage"]), None);
    }
}
