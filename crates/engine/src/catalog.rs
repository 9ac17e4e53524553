//! Loaded workflows: the current version of each name, and older versions
//! on demand (a run always finishes on the version it started with).

use std::collections::HashMap;
use std::fmt;
use std::path::Path;
use std::sync::{Arc, RwLock};

use domain::Diagnostic;
use domain::workflow::{self, Cx, Workflow};
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
    /// SHA-256 of the source text.
    pub hash: String,
    pub path: String,
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

/// Parses and compiles one workflow source (no store involved).
pub fn compile(src: &str, path: &str, kinds: &StepKinds, env: &Env) -> Result<Compiled, LoadError> {
    let names = kinds.names();
    let lookup = |n: &str| env(n);
    let fail = |diagnostics| LoadError {
        path: path.to_string(),
        diagnostics,
    };
    let mut def = workflow::parse(src, &lookup, &names).map_err(fail)?;
    let mut cx = Cx::default();
    let mut steps = Vec::with_capacity(def.steps.len());
    for (i, s) in def.steps.iter().enumerate() {
        let scope = def.scope_for(i);
        let kind = kinds
            .get(&s.kind)
            .expect("workflow::parse checked the kind");
        if let Some(step) = kind.compile(s, &scope, &mut cx) {
            steps.push(step);
        }
    }
    if !cx.errors.is_empty() {
        cx.errors.sort_by_key(|d| (d.pos.line, d.pos.col));
        return Err(fail(cx.errors));
    }
    def.secrets.extend(cx.secrets);
    Ok(Compiled {
        def,
        steps,
        version: 0,
        hash: hex::encode(Sha256::digest(src.as_bytes())),
        path: path.to_string(),
    })
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
    /// makes it the current version of its name.
    pub async fn load_source(&self, src: &str, path: &str) -> Result<Arc<Compiled>, LoadError> {
        let mut c = compile(src, path, &self.kinds, &self.env)?;
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
            .save_workflow(&c.def.name, &c.hash, src, path, crate::now_ms())
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
        let mut c =
            compile(&row.source, &row.path, &self.kinds, &self.env).map_err(|e| e.to_string())?;
        c.version = version;
        let c = Arc::new(c);
        self.versions
            .write()
            .expect("catalog lock")
            .insert((name.to_string(), version), c.clone());
        Ok(Some(c))
    }
}
