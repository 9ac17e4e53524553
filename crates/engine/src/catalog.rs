//! Loaded workflows: the current version of each name, and older versions
//! on demand (a run always finishes on the version it started with).

use std::collections::HashMap;
use std::fmt;
use std::path::Path;
use std::sync::{Arc, RwLock};

use domain::Diagnostic;
use domain::workflow::{self, Cx, FileReader, Workflow};
use sha2::{Digest, Sha256};
use store::Store;

use crate::step::{Step, StepKinds};

/// Looks up environment variables for `${env:…}`.
pub type Env = Arc<dyn Fn(&str) -> Option<String> + Send + Sync>;

/// A workflow version ready to execute.
pub struct Compiled {
    pub def: Workflow,
    pub steps: Vec<Arc<dyn Step>>,
    /// Store-assigned version number (0 before it is saved).
    pub version: i64,
    /// SHA-256 of [`Compiled::source`].
    pub hash: String,
    pub path: String,
    /// The text stored as this version: the workflow file, followed, when
    /// it includes files (prompt templates), by a bundle of their contents
    /// (see [`bundle`]), so an old version never reads a newer file.
    pub source: String,
}

impl fmt::Debug for Compiled {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Compiled")
            .field("name", &self.def.name)
            .field("version", &self.version)
            .field("path", &self.path)
            .finish()
    }
}

/// A file that could not be loaded, with every problem found in it.
#[derive(Debug, Clone)]
pub struct LoadError {
    pub path: String,
    pub diagnostics: Vec<Diagnostic>,
}

impl fmt::Display for LoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, d) in self.diagnostics.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{}", d.with_file(&self.path))?;
        }
        Ok(())
    }
}

/// Where the files a workflow includes (prompt templates) come from.
#[derive(Debug, Clone)]
pub enum Files {
    /// The file system, relative to the workflow file's folder.
    Disk,
    /// Only these `(relative path, content)` pairs: files embedded in the
    /// binary, or the bundle stored with a version.
    Given(Vec<(String, String)>),
}

impl Files {
    fn reader(&self, workflow_path: &str) -> FileReader {
        match self {
            Files::Disk => {
                let base = Path::new(workflow_path)
                    .parent()
                    .map(Path::to_path_buf)
                    .unwrap_or_default();
                Arc::new(move |rel: &str| {
                    std::fs::read_to_string(base.join(rel)).map_err(|e| e.to_string())
                })
            }
            Files::Given(files) => {
                let files = files.clone();
                Arc::new(move |rel: &str| {
                    files
                        .iter()
                        .find(|(p, _)| p == rel)
                        .map(|(_, c)| c.clone())
                        .ok_or_else(|| "no such file in this workflow version".to_string())
                })
            }
        }
    }
}

/// Marks the start of the included files appended to a stored source.
const BUNDLE_MARK: &str = "\n# countersign:bundle v1\n";
const FILE_PREFIX: &str = "# countersign:file ";

/// The text stored for a version: `src`, then one YAML comment line per
/// included file holding its path, SHA-256 and content as JSON. The result
/// still parses as the same workflow.
pub fn bundle(src: &str, files: &[(String, String)]) -> String {
    if files.is_empty() {
        return src.to_string();
    }
    let mut out =
        String::with_capacity(src.len() + files.iter().map(|(_, c)| c.len() + 128).sum::<usize>());
    out.push_str(src);
    out.push_str(BUNDLE_MARK);
    for (path, content) in files {
        let line = serde_json::json!({
            "path": path,
            "sha256": hex::encode(Sha256::digest(content.as_bytes())),
            "content": content,
        });
        out.push_str(FILE_PREFIX);
        out.push_str(&line.to_string());
        out.push('\n');
    }
    out
}

/// Splits a stored source into the workflow text and its bundled files.
pub fn unbundle(stored: &str) -> (&str, Vec<(String, String)>) {
    let Some(at) = stored.rfind(BUNDLE_MARK) else {
        return (stored, Vec::new());
    };
    let files = stored[at + BUNDLE_MARK.len()..]
        .lines()
        .filter_map(|l| l.strip_prefix(FILE_PREFIX))
        .filter_map(|j| serde_json::from_str::<serde_json::Value>(j).ok())
        .filter_map(|v| {
            Some((
                v.get("path")?.as_str()?.to_string(),
                v.get("content")?.as_str()?.to_string(),
            ))
        })
        .collect();
    (&stored[..at], files)
}

/// Parses and compiles one workflow source (no store involved); included
/// files are read from disk, relative to `path`.
pub fn compile(src: &str, path: &str, kinds: &StepKinds, env: &Env) -> Result<Compiled, LoadError> {
    compile_with(src, path, kinds, env, &Files::Disk)
}

/// [`compile`] with included files taken from `files`.
pub fn compile_with(
    src: &str,
    path: &str,
    kinds: &StepKinds,
    env: &Env,
    files: &Files,
) -> Result<Compiled, LoadError> {
    compile_edited(src, path, kinds, env, files, |_| {})
}

/// [`compile_with`], with `edit` applied to the parsed workflow before its
/// steps compile: a variant of a stored version (`countersign eval`
/// replaces an `llm` step's prompt or model in a step's body) checked by
/// exactly the rules a workflow file is. Such a variant is never stored:
/// its `source` and `hash` bundle `src` as it was, not the edit.
pub fn compile_edited(
    src: &str,
    path: &str,
    kinds: &StepKinds,
    env: &Env,
    files: &Files,
    edit: impl FnOnce(&mut Workflow),
) -> Result<Compiled, LoadError> {
    let names = kinds.names();
    let lookup = |n: &str| env(n);
    let fail = |diagnostics| LoadError {
        path: path.to_string(),
        diagnostics,
    };
    let mut def = workflow::parse(src, &lookup, &names).map_err(fail)?;
    edit(&mut def);
    let mut cx = Cx::with_files(files.reader(path));
    let mut steps = Vec::with_capacity(def.steps.len());
    let mut shapes = Shapes::of_input(&def);
    for (i, s) in def.steps.iter().enumerate() {
        let mut scope = def.scope_for(i);
        shapes.declare(&mut scope);
        if let Some(when) = &s.when
            && let Err(d) = when.check_names(&scope)
        {
            cx.errors.push(d);
        }
        let kind = kinds
            .get(&s.kind)
            .expect("workflow::parse checked the kind");
        if s.control != workflow::Control::Auto && !kind.honours_control() {
            let mut acting = kinds.honouring_control();
            acting.sort_unstable();
            cx.errors.push(s.body.key_error(format!(
                "`control: {}` has no effect on a `{}` step: only {} steps act on their control level (put a `review` step before this one instead)",
                s.control.as_str(),
                s.kind,
                acting.join(", ")
            )));
        }
        if let Some(step) = kind.compile_in(&def.steps[..i], s, &scope, &mut cx) {
            shapes.learn(&s.id, step.as_ref());
            steps.push(step);
        }
    }
    check_raises(&def.steps, kinds, &mut cx);
    if !cx.errors.is_empty() {
        cx.errors.sort_by_key(|d| (d.pos.line, d.pos.col));
        return Err(fail(cx.errors));
    }
    def.secrets.extend(cx.secrets);
    let source = bundle(src, &cx.included);
    Ok(Compiled {
        def,
        steps,
        version: 0,
        hash: hex::encode(Sha256::digest(source.as_bytes())),
        path: path.to_string(),
        source,
    })
}

/// A step a rule may raise (`raise: { STEP: review }`, linked by the
/// workflow parser) must act on its control level and not be `draft` or
/// `suggest` (those never act unreviewed: there is nothing to raise).
fn check_raises(steps: &[workflow::StepDef], kinds: &StepKinds, cx: &mut Cx) {
    for t in steps.iter().filter(|t| !t.raised_by.is_empty()) {
        let honours = kinds.get(&t.kind).is_some_and(|k| k.honours_control());
        let problem = if !honours {
            format!(
                "`{}` is a step of kind `{}`, which has no control level to raise",
                t.id, t.kind
            )
        } else if matches!(
            t.control,
            workflow::Control::Draft | workflow::Control::Suggest
        ) {
            format!(
                "`{}` is `control: {}`: it never acts unreviewed, so there is nothing to raise",
                t.id,
                t.control.as_str()
            )
        } else {
            continue;
        };
        for s in steps.iter().filter(|s| t.raised_by.contains(&s.id)) {
            for (name, node) in domain::steps::raise_targets(&s.body) {
                if name == t.id {
                    cx.errors.push(node.key_error(problem.clone()));
                }
            }
        }
    }
}

/// What is known at load of the values steps read: the fields of `input`
/// (its schema's `properties`), `run`, each earlier step whose output is
/// declared, and `approved` once a review has run; `None`: open.
struct Shapes {
    known: HashMap<String, Option<Vec<String>>>,
}

impl Shapes {
    fn of_input(def: &Workflow) -> Shapes {
        let input = def
            .input
            .schema
            .get("properties")
            .and_then(|p| p.as_object())
            .map(|p| p.keys().cloned().collect());
        let run = Some(["id", "workflow", "version"].map(String::from).to_vec());
        Shapes {
            known: HashMap::from([("input".to_string(), input), ("run".to_string(), run)]),
        }
    }

    fn declare(&self, scope: &mut domain::expr::Scope) {
        for (name, fields) in &self.known {
            if let Some(fields) = fields {
                scope.set_fields(name, fields);
            }
        }
    }

    fn learn(&mut self, id: &str, step: &dyn Step) {
        self.known.insert(id.to_string(), step.output_fields());
        if let Some((sources, edited)) = step.approves() {
            // `approved` is the previous review's `approved`, then each
            // reviewed step's output, then the edited fields.
            let mut approved = match self.known.get("approved") {
                Some(prev) => prev.clone(),
                None => Some(Vec::new()),
            };
            for source in &sources {
                match (self.known.get(source).cloned().flatten(), approved.as_mut()) {
                    (Some(fields), Some(a)) => a.extend(fields),
                    _ => approved = None,
                }
            }
            if let Some(a) = approved.as_mut() {
                a.extend(edited);
            }
            self.known.insert("approved".into(), approved);
        }
    }
}

/// The set of workflows this node serves.
pub struct Catalog {
    kinds: StepKinds,
    env: Env,
    store: Arc<dyn Store>,
    current: RwLock<HashMap<String, Arc<Compiled>>>,
    versions: RwLock<HashMap<(String, i64), Arc<Compiled>>>,
}

impl Catalog {
    pub fn new(kinds: StepKinds, env: Env, store: Arc<dyn Store>) -> Catalog {
        Catalog {
            kinds,
            env,
            store,
            current: RwLock::default(),
            versions: RwLock::default(),
        }
    }

    pub fn kinds(&self) -> &StepKinds {
        &self.kinds
    }

    /// Loads every `*.yaml`/`*.yml` in `dir`. Broken files are reported and
    /// skipped; the others serve. Returns the errors.
    pub async fn load_dir(&self, dir: &Path) -> Result<Vec<LoadError>, std::io::Error> {
        let mut paths: Vec<_> = std::fs::read_dir(dir)?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| matches!(p.extension().and_then(|e| e.to_str()), Some("yaml" | "yml")))
            .collect();
        paths.sort();
        let mut errors = Vec::new();
        for p in paths {
            if let Err(e) = self.load_file(&p).await {
                errors.push(e);
            }
        }
        Ok(errors)
    }

    /// Loads one file, saves its version and makes it current.
    pub async fn load_file(&self, path: &Path) -> Result<Arc<Compiled>, LoadError> {
        let label = path.display().to_string();
        let src = std::fs::read_to_string(path).map_err(|e| LoadError {
            path: label.clone(),
            diagnostics: vec![Diagnostic::new(
                Default::default(),
                "",
                format!("cannot read: {e}"),
            )],
        })?;
        self.load_source(&src, &label).await
    }

    /// Compiles `src`, stores it as a version (new if its hash is new) and
    /// makes it the current version of its name. Included files are read
    /// from disk relative to `path`.
    pub async fn load_source(&self, src: &str, path: &str) -> Result<Arc<Compiled>, LoadError> {
        self.load_source_with(src, path, &Files::Disk).await
    }

    /// [`Catalog::load_source`] with included files taken from `files`
    /// (e.g. a prompt embedded in the binary).
    pub async fn load_source_with(
        &self,
        src: &str,
        path: &str,
        files: &Files,
    ) -> Result<Arc<Compiled>, LoadError> {
        let mut c = compile_with(src, path, &self.kinds, &self.env, files)?;
        {
            let cur = self.current.read().expect("catalog lock");
            if let Some(existing) = cur.get(&c.def.name) {
                if existing.path != path {
                    return Err(LoadError {
                        path: path.to_string(),
                        diagnostics: vec![Diagnostic::new(
                            Default::default(),
                            "name",
                            format!(
                                "workflow `{}` is already defined in {}",
                                c.def.name, existing.path
                            ),
                        )],
                    });
                }
                if existing.hash == c.hash {
                    return Ok(existing.clone());
                }
            }
        }
        c.version = self
            .store
            .save_workflow(&c.def.name, &c.hash, &c.source, path, crate::now_ms())
            .await
            .map_err(|e| LoadError {
                path: path.to_string(),
                diagnostics: vec![Diagnostic::new(
                    Default::default(),
                    "",
                    format!("cannot save version: {e}"),
                )],
            })?;
        let c = Arc::new(c);
        self.versions
            .write()
            .expect("catalog lock")
            .insert((c.def.name.clone(), c.version), c.clone());
        self.current
            .write()
            .expect("catalog lock")
            .insert(c.def.name.clone(), c.clone());
        Ok(c)
    }

    /// The current version of `name`.
    pub fn get(&self, name: &str) -> Option<Arc<Compiled>> {
        self.current
            .read()
            .expect("catalog lock")
            .get(name)
            .cloned()
    }

    /// Every queue the current workflows' review steps name (their
    /// `queue` and `on_deadline` escalation targets).
    pub fn review_queues(&self) -> std::collections::BTreeSet<String> {
        self.current
            .read()
            .expect("catalog lock")
            .values()
            .flat_map(|c| c.def.steps.iter().flat_map(domain::review::queues_named))
            .collect()
    }

    pub fn names(&self) -> Vec<String> {
        let mut v: Vec<_> = self
            .current
            .read()
            .expect("catalog lock")
            .keys()
            .cloned()
            .collect();
        v.sort();
        v
    }

    /// A specific version, compiled from the store if not cached.
    pub async fn version(&self, name: &str, version: i64) -> Result<Option<Arc<Compiled>>, String> {
        if let Some(c) = self
            .versions
            .read()
            .expect("catalog lock")
            .get(&(name.to_string(), version))
        {
            return Ok(Some(c.clone()));
        }
        let Some(row) = self
            .store
            .workflow_version(name, version)
            .await
            .map_err(|e| e.to_string())?
        else {
            return Ok(None);
        };
        // An old version compiles with the files stored with it, never
        // with whatever the prompt file on disk says today.
        let (src, files) = unbundle(&row.source);
        let mut c = compile_with(src, &row.path, &self.kinds, &self.env, &Files::Given(files))
            .map_err(|e| e.to_string())?;
        c.version = version;
        let c = Arc::new(c);
        self.versions
            .write()
            .expect("catalog lock")
            .insert((name.to_string(), version), c.clone());
        Ok(Some(c))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bundles_round_trip_and_leave_plain_sources_alone() {
        let src = "name: x\nsteps: []\n";
        assert_eq!(bundle(src, &[]), src);
        assert_eq!(unbundle(src), (src, Vec::new()));
        let files = vec![
            (
                "prompts/a.md.j2".to_string(),
                "line 1\n# countersign:bundle v1\n\"quoted\"".to_string(),
            ),
            ("b.txt".to_string(), String::new()),
        ];
        let stored = bundle(src, &files);
        assert!(stored.starts_with(src));
        let (back, got) = unbundle(&stored);
        assert_eq!((back, got), (src, files));
        // The stored text is still the same YAML document.
        let plain = domain::yaml::parse(src, &|_| None).unwrap().to_json();
        let with = domain::yaml::parse(&stored, &|_| None).unwrap().to_json();
        assert_eq!(plain, with);
    }
}
