//! The workflow model and its loader: YAML text in, validated `Workflow`
//! (or every problem, located) out.
//!
//! The loader knows the *envelope* of a step (`id`, `when`, `control`,
//! `retry`, `timeout`, and which kind it is). What goes inside a kind's
//! body is checked by that kind's compiler in the engine, so new kinds plug
//! in without touching this file.

use std::sync::Arc;

use jsonschema::error::ValidationErrorKind;
use serde_json::Value as Json;

use crate::diag::Diagnostic;
use crate::expr::{Condition, Scope};
use crate::retry::RetryPolicy;
use crate::yaml::{self, EnvLookup, Node, Value};

/// Names a step id may not take: they are variables of the language.
const RESERVED: &[&str] = &[
    "input", "run", "approved", "env", "response", "item", "loop",
];

/// Reads a file a workflow names (a prompt template), given its normalised
/// path relative to the workflow file. The engine supplies it, from disk or
/// from a stored version: the core never touches the file system itself.
pub type FileReader = Arc<dyn Fn(&str) -> Result<String, String> + Send + Sync>;

/// Largest file a workflow may include.
pub const MAX_INCLUDE_BYTES: usize = 1 << 20;

/// Accumulates problems and secrets while compiling a workflow.
#[derive(Default)]
pub struct Cx {
    pub errors: Vec<Diagnostic>,
    /// Values taken from the environment in secret positions: redacted
    /// from every error, event and log line.
    pub secrets: Vec<String>,
    /// Files read through [`Cx::include`], `(path, content)` in first-read
    /// order. They belong to the workflow version: the engine hashes and
    /// stores them with its source.
    pub included: Vec<(String, String)>,
    files: Option<FileReader>,
}

impl std::fmt::Debug for Cx {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cx")
            .field("errors", &self.errors)
            .field("secrets", &self.secrets.len())
            .field(
                "included",
                &self.included.iter().map(|(p, _)| p).collect::<Vec<_>>(),
            )
            .field("files", &self.files.is_some())
            .finish()
    }
}

impl Cx {
    /// A context whose [`Cx::include`] reads through `files`.
    pub fn with_files(files: FileReader) -> Cx {
        Cx {
            files: Some(files),
            ..Cx::default()
        }
    }

    /// Reads the file `path` (relative to the workflow file, e.g.
    /// `prompts/triage.md.j2`) and records it as part of the version.
    /// Absolute paths and `..` are refused: a workflow reaches only files
    /// in its own folder. Problems are reported at `node`.
    pub fn include(&mut self, node: &Node, path: &str) -> Result<String, Diagnostic> {
        let norm = normalize_include(path).map_err(|m| node.error(m))?;
        if let Some((_, content)) = self.included.iter().find(|(p, _)| *p == norm) {
            return Ok(content.clone());
        }
        let Some(files) = &self.files else {
            return Err(node.error(format!(
                "cannot include {norm:?}: this workflow was not loaded from a file"
            )));
        };
        let content = files(&norm).map_err(|e| node.error(format!("cannot read {norm:?}: {e}")))?;
        if content.len() > MAX_INCLUDE_BYTES {
            return Err(node.error(format!(
                "{norm:?} is larger than {} KiB",
                MAX_INCLUDE_BYTES / 1024
            )));
        }
        self.included.push((norm, content.clone()));
        Ok(content)
    }

    pub fn take<T>(&mut self, r: Result<T, Diagnostic>) -> Option<T> {
        match r {
            Ok(v) => Some(v),
            Err(d) => {
                self.errors.push(d);
                None
            }
        }
    }

    /// Records `node`'s value as a secret if it came from the environment.
    pub fn secret_if_env(&mut self, node: &Node) {
        if node.from_env
            && let Value::Str(s) = &node.value
            && !s.is_empty()
        {
            self.secrets.push(s.clone());
        }
    }
}

/// A loaded, validated workflow definition (one version of it).
#[derive(Debug)]
pub struct Workflow {
    pub name: String,
    /// The author's `version:` label, informational; the store numbers versions.
    pub label: Option<String>,
    pub description: Option<String>,
    pub trigger: Trigger,
    pub input: InputSpec,
    pub steps: Vec<StepDef>,
    pub secrets: Vec<String>,
}

#[derive(Debug, Default)]
pub struct Trigger {
    pub webhook: Option<Webhook>,
    pub form: Option<Form>,
}

#[derive(Debug)]
pub struct Webhook {
    /// HMAC-SHA256 key; `None` means unsigned requests are accepted (the
    /// file says `unsigned: true`).
    pub secret: Option<String>,
}

#[derive(Debug)]
pub struct Form {
    pub title: String,
}

/// Control level of a side-effecting step (DESIGN §1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Control {
    #[default]
    Auto,
    Review,
    Draft,
    Suggest,
}

impl Control {
    pub fn as_str(self) -> &'static str {
        match self {
            Control::Auto => "auto",
            Control::Review => "review",
            Control::Draft => "draft",
            Control::Suggest => "suggest",
        }
    }
}

/// One step as the envelope sees it; `body` is the kind's own configuration.
#[derive(Debug)]
pub struct StepDef {
    pub id: String,
    pub index: usize,
    pub kind: String,
    pub when: Option<Condition>,
    pub control: Control,
    pub retry: RetryPolicy,
    pub timeout_ms: Option<u64>,
    /// The kind's configuration with envelope keys removed.
    pub body: Node,
    /// The `review` step whose `covers:` names this step: a person's
    /// approval of that review, with this step's action as previewed,
    /// stands for this step's own `control: review`.
    pub covered_by: Option<String>,
    /// The `rules` steps whose rules may raise this step to `review`
    /// (`then: { raise: { STEP: review } }`): when one of them did on a
    /// run, the step asks a person itself, covered or not.
    pub raised_by: Vec<String>,
}

/// A field that failed input validation: JSON pointer and reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    pub pointer: String,
    pub message: String,
}

/// String clean-ups applied to input fields before validation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Normalize {
    Trim,
    Lowercase,
    Uppercase,
    /// Runs of whitespace become one space.
    CollapseSpaces,
}

impl Normalize {
    fn parse(s: &str) -> Option<Normalize> {
        Some(match s {
            "trim" => Normalize::Trim,
            "lowercase" => Normalize::Lowercase,
            "uppercase" => Normalize::Uppercase,
            "collapse_spaces" => Normalize::CollapseSpaces,
            _ => return None,
        })
    }

    fn apply(self, s: &str) -> String {
        match self {
            Normalize::Trim => s.trim().to_string(),
            Normalize::Lowercase => s.to_lowercase(),
            Normalize::Uppercase => s.to_uppercase(),
            Normalize::CollapseSpaces => s.split_whitespace().collect::<Vec<_>>().join(" "),
        }
    }
}

/// Input contract: JSON Schema 2020-12 plus normalisation.
#[derive(Debug, Clone)]
pub struct InputSpec {
    pub schema: Json,
    validator: Option<Arc<jsonschema::Validator>>,
    pub normalize: Vec<(String, Vec<Normalize>)>,
    /// Input field whose value de-duplicates submissions like `Idempotency-Key`.
    pub idempotency_field: Option<String>,
    /// The top-level `properties` in the order the file writes them (the
    /// schema's JSON object does not keep it): the hosted form's order.
    pub field_order: Vec<String>,
}

impl InputSpec {
    /// Normalises, then validates. Returns the clean input and the names of
    /// fields normalisation changed, or every failing field.
    pub fn check(&self, mut input: Json) -> Result<(Json, Vec<String>), Vec<FieldError>> {
        let mut changed = Vec::new();
        if let Json::Object(map) = &mut input {
            for (field, ops) in &self.normalize {
                if let Some(Json::String(s)) = map.get_mut(field) {
                    let new = ops.iter().fold(s.clone(), |acc, op| op.apply(&acc));
                    if new != *s {
                        *s = new;
                        changed.push(field.clone());
                    }
                }
            }
        }
        if let Some(v) = &self.validator {
            let mut errors: Vec<FieldError> = Vec::new();
            for e in v.iter_errors(&input) {
                let base = e.instance_path().to_string();
                match e.kind() {
                    // Name the missing or unexpected field itself, not its parent.
                    ValidationErrorKind::Required { property } => errors.push(FieldError {
                        pointer: format!(
                            "{base}/{}",
                            escape_pointer(property.as_str().unwrap_or_default())
                        ),
                        message: e.to_string(),
                    }),
                    ValidationErrorKind::AdditionalProperties { unexpected } => {
                        errors.extend(unexpected.iter().map(|p| FieldError {
                            pointer: format!("{base}/{}", escape_pointer(p)),
                            message: format!(
                                "unexpected field {p:?}: the schema allows no other fields"
                            ),
                        }))
                    }
                    _ => errors.push(FieldError {
                        pointer: base,
                        message: e.to_string(),
                    }),
                }
            }
            if !errors.is_empty() {
                errors.sort_by(|a, b| a.pointer.cmp(&b.pointer));
                return Err(errors);
            }
        }
        Ok((input, changed))
    }
}

impl Workflow {
    /// Names visible to step `index`: `input`, `run` and earlier step ids.
    pub fn scope_for(&self, index: usize) -> Scope {
        scope_for(&self.steps[..index.min(self.steps.len())])
    }

    pub fn step(&self, id: &str) -> Option<&StepDef> {
        self.steps.iter().find(|s| s.id == id)
    }

    /// Replaces every secret in `text` with `[redacted]`.
    pub fn redact(&self, text: &str) -> String {
        redact(&self.secrets, text)
    }
}

/// Escapes a JSON pointer segment (RFC 6901).
fn escape_pointer(s: &str) -> String {
    s.replace('~', "~0").replace('/', "~1")
}

/// Replaces every occurrence of any secret with `[redacted]`.
pub fn redact(secrets: &[String], text: &str) -> String {
    let mut out = text.to_string();
    for s in secrets {
        if s.len() >= 4 && out.contains(s.as_str()) {
            out = out.replace(s.as_str(), "[redacted]");
        }
    }
    out
}

/// `a/./b.md` → `a/b.md`; refuses empty, absolute and `..` paths.
fn normalize_include(path: &str) -> Result<String, String> {
    let path = path.trim();
    if path.is_empty() {
        return Err("the file name is empty".into());
    }
    if path.starts_with('/') || path.starts_with('\\') || path.contains(':') {
        return Err(format!(
            "{path:?}: give a path relative to the workflow file (no absolute paths)"
        ));
    }
    let mut parts = Vec::new();
    for part in path.split(['/', '\\']) {
        match part {
            "" | "." => continue,
            ".." => {
                return Err(format!(
                    "{path:?}: `..` is not allowed; a workflow includes files from its own folder only"
                ));
            }
            p => parts.push(p),
        }
    }
    if parts.is_empty() {
        return Err(format!("{path:?} names no file"));
    }
    Ok(parts.join("/"))
}

fn scope_for(earlier: &[StepDef]) -> Scope {
    let mut names = vec!["input".to_string(), "run".to_string()];
    for s in earlier {
        names.push(s.id.clone());
        if s.kind == "review" && !names.iter().any(|n| n == "approved") {
            names.push("approved".into());
        }
    }
    Scope::new(names)
}

/// Parses and validates a workflow file. `kinds` lists the step kinds the
/// engine knows; bodies are left for their compilers.
pub fn parse(src: &str, env: EnvLookup<'_>, kinds: &[&str]) -> Result<Workflow, Vec<Diagnostic>> {
    let root = yaml::parse(src, env)?;
    let mut cx = Cx::default();
    let wf = parse_root(&root, kinds, &mut cx);
    match wf {
        Some(mut wf) if cx.errors.is_empty() => {
            wf.secrets = cx.secrets;
            Ok(wf)
        }
        _ => {
            cx.errors.sort_by_key(|d| (d.pos.line, d.pos.col));
            Err(cx.errors)
        }
    }
}

fn parse_root(root: &Node, kinds: &[&str], cx: &mut Cx) -> Option<Workflow> {
    let mut f = cx.take(root.fields())?;
    let name = f.require("name").and_then(|n| {
        let s = n.as_str()?;
        if valid_name(s) {
            Ok(s.to_string())
        } else {
            Err(n.error(
                "name must be 1–64 characters of a-z, 0-9, `-` and `_`, starting with a letter",
            ))
        }
    });
    let name = cx.take(name);
    let label = f.get("version").and_then(|n| cx.take(n.as_scalar_string()));
    let description = f
        .get("description")
        .and_then(|n| cx.take(n.as_str().map(str::to_string)));
    let trigger = f
        .get("trigger")
        .map(|n| parse_trigger(n, cx))
        .unwrap_or_default();
    let input = match f.get("input") {
        Some(n) => parse_input(n, cx),
        None => Some(InputSpec {
            schema: Json::Bool(true),
            validator: None,
            normalize: Vec::new(),
            idempotency_field: None,
            field_order: Vec::new(),
        }),
    };
    let steps_node = cx.take(f.require("steps"));
    f.finish(&mut cx.errors);
    let mut steps: Vec<StepDef> = Vec::new();
    if let Some(items) = steps_node.and_then(|n| cx.take(n.as_seq())) {
        if items.is_empty() {
            cx.errors
                .push(steps_node?.error("a workflow needs at least one step"));
        }
        for item in items {
            if let Some(step) = parse_step(item, steps.len(), &steps, kinds, cx) {
                steps.push(step);
            }
        }
    }
    link_covers(&mut steps, cx);
    link_raises(&mut steps, cx);
    Some(Workflow {
        name: name?,
        label,
        description,
        trigger,
        input: input?,
        steps,
        secrets: Vec::new(),
    })
}

/// Reads every `review` step's `covers: [step, …]` and marks the named
/// steps [`StepDef::covered_by`]. A review covers only steps after it,
/// and a step is covered by one review at most.
fn link_covers(steps: &mut [StepDef], cx: &mut Cx) {
    let mut links: Vec<(usize, String)> = Vec::new();
    for (i, review) in steps.iter().enumerate() {
        if review.kind != "review" {
            continue;
        }
        let Value::Map(entries) = &review.body.value else {
            continue;
        };
        let Some((_, node)) = entries.iter().find(|(k, _)| k == "covers") else {
            continue;
        };
        let Some(items) = cx.take(node.as_seq()) else {
            continue;
        };
        for item in items {
            let Some(name) = cx.take(item.as_str()) else {
                continue;
            };
            match steps.iter().position(|s| s.id == name) {
                None => {
                    let mut msg = format!("`covers` names no step `{name}`");
                    match yaml::suggest(name, steps.iter().map(|s| s.id.as_str())) {
                        Some(s) => msg.push_str(&format!(" (did you mean `{s}`?)")),
                        None => msg.push_str(&format!(
                            "; steps after `{}`: {}",
                            review.id,
                            steps[i + 1..]
                                .iter()
                                .map(|s| s.id.as_str())
                                .collect::<Vec<_>>()
                                .join(", ")
                        )),
                    }
                    cx.errors.push(item.error(msg));
                }
                Some(j) if j <= i => cx.errors.push(item.error(format!(
                    "`{name}` runs before the review `{}` (or is it): a review covers only actions that run after it",
                    review.id
                ))),
                Some(j) => match links.iter().find(|(k, _)| *k == j) {
                    Some((_, other)) => cx.errors.push(item.error(format!(
                        "`{name}` is already covered by the review `{other}`"
                    ))),
                    None => links.push((j, review.id.clone())),
                },
            }
        }
    }
    for (j, review) in links {
        steps[j].covered_by = Some(review);
    }
}

/// Reads every `rules` step's `raise:` targets and marks the named steps
/// [`StepDef::raised_by`]. A rule raises only steps after it; whether the
/// target acts on a control level is the catalog's check (it knows the
/// kinds).
fn link_raises(steps: &mut [StepDef], cx: &mut Cx) {
    let mut links: Vec<(usize, String)> = Vec::new();
    for (i, rules) in steps.iter().enumerate() {
        if rules.kind != "rules" {
            continue;
        }
        for (name, node) in crate::steps::raise_targets(&rules.body) {
            match steps.iter().position(|s| s.id == name) {
                None => {
                    let mut msg = format!("`raise` names no step `{name}`");
                    if let Some(m) = yaml::suggest(name, steps[i + 1..].iter().map(|s| s.id.as_str())) {
                        msg.push_str(&format!(" (did you mean `{m}`?)"));
                    }
                    cx.errors.push(node.key_error(msg));
                }
                Some(j) if j <= i => cx.errors.push(node.key_error(format!(
                    "`{name}` runs before the rules `{}`: a rule raises only actions that run after it",
                    rules.id
                ))),
                Some(j) => {
                    if !links.iter().any(|(k, r)| *k == j && *r == rules.id) {
                        links.push((j, rules.id.clone()));
                    }
                }
            }
        }
    }
    for (j, rules) in links {
        steps[j].raised_by.push(rules);
    }
}

fn valid_name(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_lowercase())
        && s.len() <= 64
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
}

fn parse_trigger(node: &Node, cx: &mut Cx) -> Trigger {
    let mut t = Trigger::default();
    let Some(mut f) = cx.take(node.fields()) else {
        return t;
    };
    if let Some(w) = f.get("webhook") {
        let mut unsigned = false;
        let mut has_secret = false;
        let secret = match &w.value {
            Value::Null => None,
            _ => match cx.take(w.fields()) {
                Some(mut wf) => {
                    if let Some(u) = wf.get("unsigned") {
                        unsigned = cx.take(u.as_bool()).unwrap_or(false);
                    }
                    let secret = wf.get("secret").and_then(|s| {
                        has_secret = true;
                        if !s.from_env {
                            cx.errors.push(s.error(
                                "secrets come from the environment only: write `${env:NAME}`",
                            ));
                            return None;
                        }
                        cx.secret_if_env(s);
                        cx.take(s.as_str().map(str::to_string))
                    });
                    wf.finish(&mut cx.errors);
                    secret
                }
                None => None,
            },
        };
        if !has_secret && !unsigned {
            cx.errors.push(w.error(
                "a webhook without a secret accepts anyone's requests: add \
                 `secret: \"${env:NAME}\"`, or say `unsigned: true` to accept unsigned requests",
            ));
        } else if has_secret && unsigned {
            cx.errors
                .push(w.error("a webhook has either a `secret` or `unsigned: true`, not both"));
        }
        // A secret that interpolates to "" (e.g. `${env:X:-}` with X unset)
        // disables the webhook rather than accepting unsigned requests.
        if secret.as_deref() != Some("") {
            t.webhook = Some(Webhook { secret });
        }
    }
    if let Some(fm) = f.get("form") {
        let title = match &fm.value {
            Value::Null => "Submit a request".to_string(),
            _ => cx
                .take(fm.fields())
                .and_then(|mut ff| {
                    let title = ff
                        .get("title")
                        .and_then(|n| cx.take(n.as_str().map(str::to_string)));
                    ff.finish(&mut cx.errors);
                    title
                })
                .unwrap_or_else(|| "Submit a request".to_string()),
        };
        t.form = Some(Form { title });
    }
    f.finish(&mut cx.errors);
    t
}

fn parse_input(node: &Node, cx: &mut Cx) -> Option<InputSpec> {
    let mut f = cx.take(node.fields())?;
    let schema_node = f.get("schema");
    let schema = schema_node.map_or(Json::Bool(true), Node::to_json);
    let validator = match schema_node {
        Some(n) => match jsonschema::options()
            .with_draft(jsonschema::Draft::Draft202012)
            .should_validate_formats(true)
            .build(&schema)
        {
            Ok(v) => Some(Arc::new(v)),
            Err(e) => {
                cx.errors.push(n.error(format!(
                    "invalid JSON Schema at {}: {e}",
                    if e.schema_path().as_str().is_empty() {
                        "/"
                    } else {
                        e.schema_path().as_str()
                    }
                )));
                None
            }
        },
        None => None,
    };
    let mut normalize = Vec::new();
    if let Some(n) = f.get("normalize")
        && let Some(entries) = cx.take(n.as_map())
    {
        for (field, ops_node) in entries {
            let ops_list: Vec<&Node> = match &ops_node.value {
                Value::Seq(items) => items.iter().collect(),
                _ => vec![ops_node],
            };
            let mut ops = Vec::new();
            for op in ops_list {
                if let Some(s) = cx.take(op.as_str()) {
                    match Normalize::parse(s) {
                            Some(o) => ops.push(o),
                            None => cx.errors.push(op.error(format!(
                                "unknown normalisation {s:?}; expected trim, lowercase, uppercase or collapse_spaces"
                            ))),
                        }
                }
            }
            normalize.push((field.clone(), ops));
        }
    }
    let idempotency_field = f
        .get("idempotency_field")
        .and_then(|n| cx.take(n.as_str().map(str::to_string)));
    f.finish(&mut cx.errors);
    let field_order = schema_node
        .and_then(|n| match &n.value {
            Value::Map(m) => m.iter().find(|(k, _)| k == "properties").map(|(_, p)| p),
            _ => None,
        })
        .map(|p| match &p.value {
            Value::Map(m) => m.iter().map(|(k, _)| k.clone()).collect(),
            _ => Vec::new(),
        })
        .unwrap_or_default();
    Some(InputSpec {
        schema,
        validator,
        normalize,
        idempotency_field,
        field_order,
    })
}

fn parse_step(
    node: &Node,
    index: usize,
    earlier: &[StepDef],
    kinds: &[&str],
    cx: &mut Cx,
) -> Option<StepDef> {
    let entries = cx.take(node.as_map())?;
    let envelope = ["id", "when", "control", "retry", "timeout", "description"];
    let id_node = entries.iter().find(|(k, _)| k == "id").map(|(_, v)| v);
    let Some(id_node) = id_node else {
        cx.errors.push(node.error("missing required field `id`"));
        return None;
    };
    let id = cx.take(id_node.as_str())?.to_string();
    let valid = id.len() <= 64
        && id.starts_with(|c: char| c.is_ascii_lowercase())
        && id
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if !valid {
        cx.errors.push(
            id_node.error(
                "step id must be 1–64 characters of a-z, 0-9 and `_`, starting with a letter",
            ),
        );
    } else if RESERVED.contains(&id.as_str()) {
        cx.errors
            .push(id_node.error(format!("`{id}` is a reserved name; pick another step id")));
    } else if earlier.iter().any(|s| s.id == id) {
        cx.errors
            .push(id_node.error(format!("duplicate step id `{id}`")));
    }

    let mut kind_entries = entries
        .iter()
        .filter(|(k, _)| !envelope.contains(&k.as_str()));
    let Some((kind, raw_body)) = kind_entries.next() else {
        cx.errors.push(node.error(format!(
            "step `{id}` has no kind; add one of: {}",
            kinds.join(", ")
        )));
        return None;
    };
    if !kinds.contains(&kind.as_str()) {
        let mut msg = format!("unknown step kind `{kind}`");
        match yaml::suggest(kind, kinds.iter().copied()) {
            Some(s) => msg.push_str(&format!(" (did you mean `{s}`?)")),
            None => msg.push_str(&format!("; known kinds: {}", kinds.join(", "))),
        }
        cx.errors.push(raw_body.key_error(msg));
        return None;
    }
    if let Some((other, n)) = kind_entries.next() {
        cx.errors.push(n.key_error(format!(
            "a step has exactly one kind; `{kind}` and `{other}` both given (unknown field?)"
        )));
    }

    // Envelope keys may also sit inside the body (`email: { control: review, … }`).
    let mut body = raw_body.clone();
    let mut lifted: Vec<(String, Node)> = Vec::new();
    if let Value::Map(items) = &mut body.value {
        items.retain(|(k, v)| {
            if ["when", "control", "retry", "timeout"].contains(&k.as_str()) {
                lifted.push((k.clone(), v.clone()));
                false
            } else {
                true
            }
        });
    }
    let get = |key: &str, cx: &mut Cx| -> Option<Node> {
        let outer = entries
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.clone());
        let inner = lifted
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.clone());
        match (outer, inner) {
            (Some(_), Some(i)) => {
                cx.errors.push(i.error(format!(
                    "`{key}` is given twice, on the step and inside `{kind}`"
                )));
                None
            }
            (o, i) => o.or(i),
        }
    };
    let scope = scope_for(earlier);
    let when = get("when", cx).and_then(|n| cx.take(Condition::compile(&n, &scope)));
    let control = get("control", cx)
        .and_then(|n| {
            let s = cx.take(n.as_str())?;
            let c = match s {
                "auto" => Control::Auto,
                "review" => Control::Review,
                "draft" => Control::Draft,
                "suggest" => Control::Suggest,
                _ => {
                    cx.errors
                        .push(n.error("control must be auto, review, draft or suggest"));
                    return None;
                }
            };
            Some(c)
        })
        .unwrap_or_default();
    let retry = get("retry", cx)
        .map(|n| RetryPolicy::parse(&n, &mut cx.errors))
        .unwrap_or_default();
    let timeout_ms = get("timeout", cx).and_then(|n| cx.take(n.as_duration_ms()));
    Some(StepDef {
        id,
        index,
        kind: kind.clone(),
        when,
        control,
        retry,
        timeout_ms,
        body,
        covered_by: None,
        raised_by: Vec::new(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const KINDS: &[&str] = &["validate", "rules", "wait", "http"];

    fn load(src: &str) -> Result<Workflow, Vec<String>> {
        let env = |n: &str| (n == "HOOK_SECRET").then(|| "s3cr3t-value".to_string());
        parse(src, &env, KINDS).map_err(|es| es.iter().map(ToString::to_string).collect())
    }

    #[test]
    fn covers_names_later_steps_only_each_once() {
        let kinds = ["validate", "review", "http"];
        let src = "name: c\nsteps:\n  - id: a\n    validate: {}\n  - id: r\n    review: { covers: [b, a, r, nope] }\n  - id: r2\n    review: { covers: [b] }\n  - id: b\n    http: { url: 'http://x' }\n";
        let errors: Vec<String> = parse(src, &|_| None, &kinds)
            .unwrap_err()
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(
            errors,
            [
                "6:27: steps[1].review.covers[1]: `a` runs before the review `r` (or is it): a review covers only actions that run after it",
                "6:30: steps[1].review.covers[2]: `r` runs before the review `r` (or is it): a review covers only actions that run after it",
                "6:33: steps[1].review.covers[3]: `covers` names no step `nope`; steps after `r`: r2, b",
                "8:24: steps[2].review.covers[0]: `b` is already covered by the review `r`",
            ]
        );
        let ok = "name: c\nsteps:\n  - id: r\n    review: { covers: [b] }\n  - id: a\n    validate: {}\n  - id: b\n    http: { url: 'http://x' }\n";
        let wf = parse(ok, &|_| None, &kinds).unwrap();
        let covered: Vec<Option<&str>> = wf.steps.iter().map(|s| s.covered_by.as_deref()).collect();
        assert_eq!(covered, [None, None, Some("r")]);
    }

    #[test]
    fn input_fields_keep_the_file_order() {
        let wf = load("name: x\ninput:\n  schema:\n    type: object\n    properties:\n      name: { type: string }\n      email: { type: string }\n      company: { type: string }\n      about: { type: string }\nsteps:\n  - id: a\n    rules: []\n").unwrap();
        assert_eq!(wf.input.field_order, ["name", "email", "company", "about"]);
        let wf = load("name: x\nsteps:\n  - id: a\n    rules: []\n").unwrap();
        assert!(wf.input.field_order.is_empty());
    }

    #[test]
    fn loads_a_small_workflow() {
        let wf = load(
            "name: demo\ntrigger:\n  webhook: { secret: \"${env:HOOK_SECRET}\" }\ninput:\n  schema: { type: object, required: [email] }\n  normalize: { email: [trim, lowercase] }\nsteps:\n  - id: a\n    validate: {}\n  - id: b\n    when: a.ok\n    wait: 1s\n",
        )
        .unwrap();
        assert_eq!(wf.steps.len(), 2);
        assert_eq!(wf.steps[1].kind, "wait");
        assert_eq!(wf.secrets, ["s3cr3t-value"]);
        assert_eq!(wf.redact("sig s3cr3t-value!"), "sig [redacted]!");
        let (clean, changed) = wf
            .input
            .check(serde_json::json!({"email": "  A@B.CO "}))
            .unwrap();
        assert_eq!(clean["email"], "a@b.co");
        assert_eq!(changed, ["email"]);
        let errs = wf.input.check(serde_json::json!({})).unwrap_err();
        assert_eq!(errs[0].pointer, "/email");
    }

    #[test]
    fn reports_every_problem_with_location() {
        let errs = load(
            "name: Bad Name\nsteps:\n  - id: triage\n    validate: {}\n  - id: check\n    rules: []\n    when: triag.intent == 1\n  - id: x\n    htp: {}\n  - id: triage\n    wait: 1s\n    colour: red\n",
        )
        .unwrap_err();
        let joined = errs.join("\n");
        assert!(joined.contains("1:7: name: name must be"), "{joined}");
        assert!(
            joined.contains(
                "7:11: steps[1].when: unknown variable \"triag\" (did you mean \"triage\"?)"
            ),
            "{joined}"
        );
        assert!(
            joined.contains("steps[2].htp: unknown step kind `htp` (did you mean `http`?)"),
            "{joined}"
        );
        assert!(
            joined.contains("steps[3].id: duplicate step id `triage`"),
            "{joined}"
        );
        assert!(joined.contains("a step has exactly one kind"), "{joined}");
    }

    #[test]
    fn input_errors_name_each_field() {
        let wf = load(
            "name: x\ninput:\n  schema:\n    type: object\n    required: [email]\n    additionalProperties: false\n    properties: { email: { type: string, format: email }, age: { type: integer } }\nsteps:\n  - id: a\n    validate: {}\n",
        )
        .unwrap();
        let errs = wf
            .input
            .check(serde_json::json!({"mail": "x", "age": "3"}))
            .unwrap_err();
        let pointers: Vec<&str> = errs.iter().map(|e| e.pointer.as_str()).collect();
        assert_eq!(pointers, ["/age", "/email", "/mail"], "{errs:?}");
        let errs = wf
            .input
            .check(serde_json::json!({"email": "not-an-address"}))
            .unwrap_err();
        assert_eq!(errs[0].pointer, "/email");
    }

    #[test]
    fn literal_secrets_are_refused() {
        for hook in ["{}", "", "{ unsigned: false }"] {
            let errs = load(&format!(
                "name: x\ntrigger:\n  webhook: {hook}\nsteps:\n  - id: a\n    validate: {{}}\n"
            ))
            .unwrap_err();
            assert!(
                errs.len() == 1 && errs[0].contains("unsigned: true"),
                "{hook}: {errs:?}"
            );
        }
        assert!(
            load("name: x\ntrigger:\n  webhook: { unsigned: true }\nsteps:\n  - id: a\n    validate: {}\n")
                .is_ok()
        );
        let errs = load("name: x\ntrigger:\n  webhook: { secret: plain }\nsteps:\n  - id: a\n    validate: {}\n").unwrap_err();
        assert!(
            errs[0].contains("trigger.webhook.secret: secrets come from the environment only"),
            "{errs:?}"
        );
    }

    #[test]
    fn includes_read_relative_files_once_and_refuse_escapes() {
        let reads = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counter = reads.clone();
        let mut cx = Cx::with_files(Arc::new(move |p: &str| {
            counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            match p {
                "prompts/a.md" => Ok("hello".to_string()),
                _ => Err("not found".to_string()),
            }
        }));
        let root = yaml::parse("x: 1\n", &|_| None).unwrap();
        let node = &root.as_map().unwrap()[0].1;
        assert_eq!(cx.include(node, "prompts/./a.md").unwrap(), "hello");
        assert_eq!(cx.include(node, "prompts/a.md").unwrap(), "hello");
        assert_eq!(
            reads.load(std::sync::atomic::Ordering::SeqCst),
            1,
            "read once per compile"
        );
        assert_eq!(
            cx.included,
            [("prompts/a.md".to_string(), "hello".to_string())]
        );
        let err = cx.include(node, "../secrets.txt").unwrap_err().to_string();
        assert!(err.contains("`..` is not allowed"), "{err}");
        let err = cx.include(node, "/etc/passwd").unwrap_err().to_string();
        assert!(err.contains("no absolute paths"), "{err}");
        let err = cx.include(node, "prompts/b.md").unwrap_err().to_string();
        assert!(
            err.contains("cannot read \"prompts/b.md\": not found"),
            "{err}"
        );
        let err = Cx::default().include(node, "a.md").unwrap_err().to_string();
        assert!(err.contains("not loaded from a file"), "{err}");
    }

    #[test]
    fn envelope_keys_inside_the_body_are_lifted() {
        let wf = load("name: x\nsteps:\n  - id: a\n    http: { control: review, url: 'http://x', retry: { max_attempts: 2 } }\n").unwrap();
        assert_eq!(wf.steps[0].control, Control::Review);
        assert_eq!(wf.steps[0].retry.max_attempts, 2);
        assert_eq!(wf.steps[0].body.as_map().unwrap().len(), 1);
    }
}
