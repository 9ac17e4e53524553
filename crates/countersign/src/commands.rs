//! The commands. Each returns `Result<(), Failure>`; `main` maps it to an
//! exit code. Output meant for people goes to stdout; logs go to stderr.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use anyhow::Context;
use engine::{Catalog, Config, Engine, StepKinds, SubmitError};
use store::Store;
use store_postgres::PgStore;
use store_sqlite::{Durability, Role, SqliteStore};

use crate::{DbArgs, Failure, ServeArgs};

/// The reference workflow, built into the binary for `countersign demo`.
pub const REFERENCE_WORKFLOW: &str = include_str!("../../../examples/inbound-request.yaml");

/// The prompt file the reference workflow includes, built in with it.
pub const REFERENCE_FILES: &[(&str, &str)] = &[(
    "prompts/triage.md.j2",
    include_str!("../../../examples/prompts/triage.md.j2"),
)];

/// Reads variables from the process environment for `${env:…}`.
pub fn process_env() -> engine::Env {
    Arc::new(|name: &str| std::env::var(name).ok())
}

/// One HTTP client for every outbound call: built once, with timeouts.
pub fn http_client() -> anyhow::Result<reqwest::Client> {
    reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(10))
        .pool_idle_timeout(Duration::from_secs(60))
        .user_agent(concat!("countersign/", env!("CARGO_PKG_VERSION")))
        .build()
        .context("building the HTTP client")
}

/// Every step kind this binary knows: the engine's built-ins and `llm`
/// (OpenAI-compatible, with the offline heuristic as the last resort),
/// configured once from `OPENAI_API_KEY`, `OPENAI_BASE_URL` and
/// `COUNTERSIGN_LLM_PRICES`; `http` steps refuse non-public addresses when
/// `COUNTERSIGN_HTTP_DENY_PRIVATE` is `true`.
pub fn step_kinds(http: reqwest::Client) -> Result<StepKinds, Failure> {
    step_kinds_with(http, llm_config()?)
}

/// The `llm` provider configuration from the environment.
pub fn llm_config() -> Result<llm::Config, Failure> {
    llm::Config::from_env(&|k: &str| std::env::var(k).ok()).map_err(Failure::usage)
}

/// [`step_kinds`] with the `llm` providers configured as `config` says.
pub fn step_kinds_with(http: reqwest::Client, config: llm::Config) -> Result<StepKinds, Failure> {
    let mut kinds = StepKinds::builtin(http.clone());
    let deny_private = match std::env::var("COUNTERSIGN_HTTP_DENY_PRIVATE").as_deref() {
        Err(_) | Ok("" | "false" | "0") => false,
        Ok("true" | "1") => true,
        Ok(other) => {
            return Err(Failure::usage(format!(
                "COUNTERSIGN_HTTP_DENY_PRIVATE must be true or false, not {other:?}"
            )));
        }
    };
    kinds.register(Arc::new(engine::steps::http::Kind::with_policy(
        engine::steps::http::Policy { deny_private },
    )));
    kinds.register(Arc::new(llm::Kind::new(http.clone(), config)));
    // `crm`, `slack`, `email`: outbox connectors unless credentials are set.
    let connectors =
        connectors::Config::from_env(&|k: &str| std::env::var(k).ok()).map_err(Failure::usage)?;
    connectors::register(&mut kinds, http, connectors);
    Ok(kinds)
}

/// Opens the store named by a database URL (creating or upgrading its schema).
pub async fn open_store(db: &DbArgs, role: Role) -> Result<Arc<dyn Store>, Failure> {
    let durability = if db.power_loss_safe {
        Durability::PowerLossSafe
    } else {
        Durability::CrashSafe
    };
    let url = db.database.as_str();
    if let Some(path) = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))
    {
        if path.is_empty() {
            return Err(Failure::usage(
                "--database: sqlite:// needs a file path, e.g. sqlite://./countersign-data/countersign.db",
            ));
        }
        let store = SqliteStore::open(Path::new(path), durability, role).map_err(|e| Failure {
            code: 1,
            message: format!("cannot open {url}: {e}"),
        })?;
        return Ok(Arc::new(store));
    }
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        // Several nodes share the database: no lock file, leases expire instead.
        let store = PgStore::connect(url).await.map_err(|e| Failure {
            code: 1,
            message: format!("cannot open {}: {e}", redact_url(url)),
        })?;
        return Ok(Arc::new(store));
    }
    Err(Failure::usage(format!(
        "--database: unsupported URL {:?}; expected sqlite://PATH or postgres://USER@HOST/DB",
        redact_url(url)
    )))
}

/// A database URL without its password, for messages.
fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    match rest.split_once('@') {
        Some((user, host)) if user.contains(':') => {
            let name = user.split(':').next().unwrap_or_default();
            format!("{scheme}://{name}:***@{host}")
        }
        _ => url.to_string(),
    }
}

fn print_load_errors(errors: &[engine::LoadError]) {
    for e in errors {
        eprintln!("{e}");
    }
}

/// Loads a workflow folder; refuses to start only if the folder is unreadable.
async fn load_workflows(catalog: &Catalog, dir: &Path) -> Result<(), Failure> {
    let errors = catalog
        .load_dir(dir)
        .await
        .map_err(|e| Failure::usage(format!("--workflows {}: {e}", dir.display())))?;
    if !errors.is_empty() {
        eprintln!("these workflow files were refused (the others serve):");
        print_load_errors(&errors);
    }
    tracing::info!(workflows = ?catalog.names(), "workflows loaded");
    Ok(())
}

/// Re-loads changed workflow files every two seconds. A changed file becomes
/// a new version; runs in flight finish on the version they started with.
fn watch_workflows(catalog: Arc<Catalog>, dir: PathBuf) {
    tokio::spawn(async move {
        let mut seen: HashMap<PathBuf, SystemTime> = HashMap::new();
        let mut first = true;
        loop {
            if let Ok(entries) = std::fs::read_dir(&dir) {
                for e in entries.flatten() {
                    let p = e.path();
                    if !matches!(p.extension().and_then(|x| x.to_str()), Some("yaml" | "yml")) {
                        continue;
                    }
                    let Ok(modified) = e.metadata().and_then(|m| m.modified()) else {
                        continue;
                    };
                    let changed = seen.get(&p) != Some(&modified);
                    seen.insert(p.clone(), modified);
                    if changed && !first {
                        match catalog.load_file(&p).await {
                            Ok(c) => {
                                tracing::info!(workflow = %c.def.name, version = c.version, "workflow reloaded")
                            }
                            Err(e) => tracing::error!(
                                "workflow file refused, previous version keeps serving:\n{e}"
                            ),
                        }
                    }
                }
            }
            first = false;
            tokio::time::sleep(Duration::from_secs(2)).await;
        }
    });
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}

struct Node {
    engine: Engine,
}

async fn start_node(
    db: &DbArgs,
    workflows: Option<&Path>,
    embedded: Option<&str>,
    workers: usize,
    execute: bool,
    lease_ms: u64,
    in_flight_margin_ms: u64,
) -> Result<Node, Failure> {
    let store = open_store(db, if execute { Role::Worker } else { Role::Admin }).await?;
    let kinds = step_kinds(http_client()?)?;
    let catalog = Arc::new(Catalog::new(kinds, process_env(), store.clone()));
    if let Some(src) = embedded {
        let files = engine::Files::Given(
            REFERENCE_FILES
                .iter()
                .map(|(p, c)| (p.to_string(), c.to_string()))
                .collect(),
        );
        catalog
            .load_source_with(src, "examples/inbound-request.yaml", &files)
            .await
            .map_err(|e| Failure {
                code: 1,
                message: format!("the built-in reference workflow did not load:\n{e}"),
            })?;
    }
    if let Some(dir) = workflows {
        load_workflows(&catalog, dir).await?;
        watch_workflows(catalog.clone(), dir.to_path_buf());
    }
    let engine = Engine::start(
        store,
        catalog,
        Config {
            max_in_flight: workers.max(1),
            workers: execute,
            lease_ms: lease_ms as i64,
            in_flight_margin_ms,
            ..Config::default()
        },
    );
    Ok(Node { engine })
}

/// A node executing one workflow given as text (for `bench --console`).
pub async fn node_for(db: &DbArgs, source: &str) -> Result<Engine, Failure> {
    Ok(start_node(
        db,
        None,
        Some(source),
        512,
        true,
        30_000,
        engine::DEFAULT_IN_FLIGHT_MARGIN_MS,
    )
    .await?
    .engine)
}

/// A node executing the built-in reference workflow (for `bench --desk`).
pub async fn reference_node(db: &DbArgs) -> Result<Engine, Failure> {
    Ok(start_node(
        db,
        None,
        Some(REFERENCE_WORKFLOW),
        512,
        true,
        30_000,
        engine::DEFAULT_IN_FLIGHT_MARGIN_MS,
    )
    .await?
    .engine)
}

/// `name` from the environment, parsed; unset or empty is `None`.
fn env_parsed<T: std::str::FromStr>(name: &str, what: &str) -> Result<Option<T>, Failure> {
    match std::env::var(name) {
        Ok(v) if !v.trim().is_empty() => v
            .trim()
            .parse()
            .map(Some)
            .map_err(|_| Failure::usage(format!("{name}: {v:?} is not {what}"))),
        _ => Ok(None),
    }
}

/// Binds `--listen` before anything else starts, so a busy port is
/// reported first (and the demo prints no credentials it cannot serve).
async fn bind(listen: &str) -> Result<tokio::net::TcpListener, Failure> {
    tokio::net::TcpListener::bind(listen).await.map_err(|e| {
        let hint = if e.kind() == std::io::ErrorKind::AddrInUse {
            " (another process, perhaps another Countersign, listens there; stop it or pick another address with --listen)"
        } else {
            ""
        };
        Failure::usage(format!("--listen {listen}: {e}{hint}"))
    })
}

async fn serve_http(
    engine: Engine,
    listener: tokio::net::TcpListener,
    listen: &str,
) -> Result<(), Failure> {
    let defaults = server::ServerConfig::default();
    let config = server::ServerConfig {
        integrations: crate::integrations::server_settings(reqwest::Client::new())?,
        secure_cookies: crate::users::secure_cookies()?,
        trusted_proxy: env_parsed("COUNTERSIGN_TRUSTED_PROXY", "an IP address")?,
        form_limit_per_minute: env_parsed(
            "COUNTERSIGN_FORM_LIMIT_PER_MINUTE",
            "a whole number of submissions per address per minute",
        )?
        .unwrap_or(defaults.form_limit_per_minute),
        conn_limits: server::ConnLimits {
            max_connections: env_parsed(
                "COUNTERSIGN_MAX_CONNECTIONS",
                "a whole number of connections",
            )?
            .filter(|n: &usize| *n > 0)
            .unwrap_or(defaults.conn_limits.max_connections),
            ..defaults.conn_limits
        },
        ..defaults
    };
    tracing::info!(%listen, node = engine.node(), "serving");
    server::serve(
        listener,
        server::AppState::new(engine.clone(), config),
        shutdown_signal(),
    )
    .await
    .context("serving HTTP")?;
    engine.shutdown(Duration::from_secs(10)).await;
    Ok(())
}

pub async fn serve(args: ServeArgs, _demo: bool) -> Result<(), Failure> {
    let listener = bind(&args.listen).await?;
    let checkpoints = CheckpointSchedule::from_env()?;
    let node = start_node(
        &args.db,
        Some(&args.workflows),
        None,
        args.workers,
        !args.no_workers,
        args.lease,
        args.in_flight_margin,
    )
    .await?;
    if let Some(schedule) = checkpoints {
        tokio::spawn(schedule.run(node.engine.clone()));
    }
    serve_http(node.engine, listener, &args.listen).await
}

/// Signed audit checkpoints written by `serve` itself
/// (`COUNTERSIGN_AUDIT_CHECKPOINT_DIR`, every
/// `COUNTERSIGN_AUDIT_CHECKPOINT_EVERY`, default 1h), so deletion is
/// visible without a cron job. Each node writes its own files.
struct CheckpointSchedule {
    dir: PathBuf,
    every: Duration,
    key: Vec<u8>,
}

impl CheckpointSchedule {
    const DIR_VAR: &str = "COUNTERSIGN_AUDIT_CHECKPOINT_DIR";
    const EVERY_VAR: &str = "COUNTERSIGN_AUDIT_CHECKPOINT_EVERY";

    fn from_env() -> Result<Option<CheckpointSchedule>, Failure> {
        let Some(dir) = std::env::var_os(Self::DIR_VAR).filter(|d| !d.is_empty()) else {
            return Ok(None);
        };
        let dir = PathBuf::from(dir);
        let every = match std::env::var(Self::EVERY_VAR) {
            Ok(v) if !v.trim().is_empty() => domain::yaml::parse_duration_ms(v.trim())
                .filter(|ms| *ms >= 1_000)
                .map(Duration::from_millis)
                .ok_or_else(|| {
                    Failure::usage(format!(
                        "{}: {v:?} is not a duration of at least 1s (e.g. 1h, 15m)",
                        Self::EVERY_VAR
                    ))
                })?,
            _ => Duration::from_secs(3600),
        };
        let key = crate::audit::key_from_env()
            .map_err(|e| Failure::usage(format!("{} is set, but {}", Self::DIR_VAR, e.message)))?;
        std::fs::create_dir_all(&dir).map_err(|e| {
            Failure::usage(format!(
                "{}: cannot create {}: {e}",
                Self::DIR_VAR,
                dir.display()
            ))
        })?;
        Ok(Some(CheckpointSchedule { dir, every, key }))
    }

    /// One checkpoint now, then one every `every`; a failed one is logged
    /// and tried again at the next tick.
    async fn run(self, engine: Engine) {
        let mut tick = tokio::time::interval(self.every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let now = engine::now_ms();
            let stamp = chrono::DateTime::from_timestamp_millis(now).map_or_else(
                || now.to_string(),
                |t| t.format("%Y%m%dT%H%M%SZ").to_string(),
            );
            let node: String = engine
                .node()
                .chars()
                .map(|c| {
                    if c.is_ascii_alphanumeric() || c == '-' {
                        c
                    } else {
                        '_'
                    }
                })
                .collect();
            let out = self.dir.join(format!("checkpoint-{stamp}-{node}.jsonl"));
            match crate::audit::checkpoint(engine.store().as_ref(), &self.key, &out, now).await {
                Ok(runs) => tracing::info!(path = %out.display(), runs, "audit checkpoint written"),
                Err(e) => {
                    tracing::warn!(path = %out.display(), error = %e.message, "audit checkpoint failed")
                }
            }
        }
    }
}

pub async fn worker(
    db: DbArgs,
    workflows: PathBuf,
    workers: usize,
    lease_ms: u64,
    in_flight_margin_ms: u64,
) -> Result<(), Failure> {
    let node = start_node(
        &db,
        Some(&workflows),
        None,
        workers,
        true,
        lease_ms,
        in_flight_margin_ms,
    )
    .await?;
    tracing::info!(node = node.engine.node(), "worker running (no HTTP)");
    shutdown_signal().await;
    node.engine.shutdown(Duration::from_secs(10)).await;
    Ok(())
}

pub async fn demo(listen: String, data: PathBuf) -> Result<(), Failure> {
    let listener = bind(&listen).await?;
    let db = DbArgs {
        database: format!("sqlite://{}", data.join("countersign.db").display()),
        power_loss_safe: false,
    };
    let node = start_node(
        &db,
        None,
        Some(REFERENCE_WORKFLOW),
        512,
        true,
        30_000,
        engine::DEFAULT_IN_FLIGHT_MARGIN_MS,
    )
    .await?;
    // A fresh admin token each start, printed once; earlier demo tokens are revoked.
    let store = node.engine.store().clone();
    let _ = store.revoke_token("demo", engine::now_ms()).await;
    let secret = server::new_token_secret();
    let name = format!("demo-{}", uuid::Uuid::now_v7());
    store
        .create_token(store::Token {
            id: uuid::Uuid::now_v7().to_string(),
            name: name.clone(),
            hash: server::hash_token(&secret),
            scopes: vec!["admin".into()],
            created_at_ms: engine::now_ms(),
            revoked_at_ms: None,
            user_id: None,
        })
        .await
        .map_err(|e| Failure {
            code: 1,
            message: format!("cannot create the demo token: {e}"),
        })?;
    println!(
        "Countersign demo — reference workflow `inbound-request`, data in {}",
        data.display()
    );
    println!();
    println!("  API token (admin, shown once): {secret}");
    println!("  Submit a request:");
    println!(
        "    curl -s -X POST 'http://{listen}/api/v1/workflows/inbound-request/runs?wait=10' \\\n      -H \"Authorization: Bearer {secret}\" -H 'Content-Type: application/json' \\\n      -d '{{\"name\":\"Ada\",\"email\":\"ada@example.com\",\"message\":\"Our invoice is wrong, please call me urgently\"}}'"
    );
    // A demo reviewer account (admin role) with a fresh password each start.
    let demo_email = "demo@countersign.local";
    let password = server::new_password();
    let hash = server::hash_password(&password).map_err(|e| Failure {
        code: 1,
        message: format!("cannot hash the demo password: {e}"),
    })?;
    let stored = match store.user_by_email(demo_email).await {
        Ok(Some(u)) => store.set_password(&u.id, &hash).await.map(|_| ()),
        Ok(None) => {
            store
                .create_user(store::User {
                    id: uuid::Uuid::now_v7().to_string(),
                    email: demo_email.to_string(),
                    role: store::UserRole::Admin,
                    queues: Vec::new(),
                    password_hash: hash,
                    created_at_ms: engine::now_ms(),
                    disabled_at_ms: None,
                })
                .await
        }
        Err(e) => Err(e),
    };
    stored.map_err(|e| Failure {
        code: 1,
        message: format!("cannot create the demo user: {e}"),
    })?;
    println!("  Review inbox: http://{listen}/inbox   sign in as {demo_email} / {password}");
    println!("  Web form: http://{listen}/forms/inbound-request");
    println!("  Runs:     http://{listen}/api/v1/runs   (same bearer token)");
    println!("  OpenAPI:  http://{listen}/api/openapi.json");
    println!("  Health:   http://{listen}/healthz");
    println!(
        "  Outbox:   http://{listen}/outbox   (CRM, Slack and email actions land here while their credentials are unset)"
    );
    if std::env::var("OPENAI_API_KEY").is_ok_and(|k| !k.is_empty()) {
        println!("  Drafting: OpenAI (OPENAI_API_KEY), with the offline heuristic as fallback");
    } else {
        println!("  Drafting: the offline keyword heuristic (set OPENAI_API_KEY for a model)");
    }
    println!();
    serve_http(node.engine, listener, &listen).await
}

/// `validate [--online]`: compiles each file; with `--online`, also checks
/// every `crm` mapping against its Monday board.
pub async fn validate(files: &[PathBuf], online: bool) -> Result<(), Failure> {
    let http = http_client()?;
    let kinds = step_kinds(http.clone())?;
    let env = process_env();
    let connectors = if online {
        Some(
            connectors::Config::from_env(&|k: &str| std::env::var(k).ok())
                .map_err(Failure::usage)?,
        )
    } else {
        None
    };
    let mut bad = 0;
    for f in files {
        let label = f.display().to_string();
        let src = match std::fs::read_to_string(f) {
            Ok(s) => s,
            Err(e) => {
                eprintln!("{label}: cannot read: {e}");
                bad += 1;
                continue;
            }
        };
        match engine::compile(&src, &label, &kinds, &env) {
            Ok(c) => {
                if let Some(config) = &connectors {
                    let checked = connectors::check_workflow_with(
                        &src,
                        &label,
                        &env,
                        &kinds,
                        http.clone(),
                        config,
                    )
                    .await;
                    match checked {
                        Ok(problems) if problems.is_empty() => {}
                        Ok(problems) => {
                            for p in &problems {
                                eprintln!("{label}: {}: {}", p.path, p.message);
                            }
                            bad += 1;
                            continue;
                        }
                        Err(e) => {
                            eprintln!("{label}: online check failed: {e}");
                            bad += 1;
                            continue;
                        }
                    }
                }
                println!(
                    "{label}: ok (workflow `{}`, {} steps{})",
                    c.def.name,
                    c.def.steps.len(),
                    if online {
                        ", mappings checked online"
                    } else {
                        ""
                    }
                )
            }
            Err(e) => {
                eprintln!("{e}");
                bad += 1;
            }
        }
    }
    if bad > 0 {
        return Err(Failure::usage(format!(
            "{bad} of {} files have problems",
            files.len()
        )));
    }
    Ok(())
}

fn read_input(input: &str) -> Result<serde_json::Value, Failure> {
    let (label, text) = match input.strip_prefix('@') {
        Some(path) => (
            path.to_string(),
            std::fs::read_to_string(path)
                .map_err(|e| Failure::usage(format!("--input @{path}: {e}")))?,
        ),
        None => ("--input".to_string(), input.to_string()),
    };
    serde_json::from_str(&text).map_err(|e| {
        Failure::usage(format!(
            "{label}:{}:{}: invalid JSON: {e}",
            e.line(),
            e.column()
        ))
    })
}

pub async fn run_once(file: &Path, input: &str, timeout: u64) -> Result<(), Failure> {
    let input = read_input(input)?;
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open_temp().map_err(|e| Failure {
        code: 1,
        message: e.to_string(),
    })?);
    let catalog = Arc::new(Catalog::new(
        step_kinds(http_client()?)?,
        process_env(),
        store.clone(),
    ));
    let wf = catalog
        .load_file(file)
        .await
        .map_err(|e| Failure::usage(e.to_string()))?;
    let engine = Engine::start(
        store.clone(),
        catalog,
        Config {
            poll_ms: 50,
            ..Config::default()
        },
    );
    let sub = match engine.submit(&wf.def.name, input, None, "cli").await {
        Ok(s) => s,
        Err(SubmitError::InvalidInput(errors)) => {
            for e in &errors {
                eprintln!(
                    "input{}: {}",
                    if e.pointer.is_empty() {
                        String::new()
                    } else {
                        format!(" {}", e.pointer)
                    },
                    e.message
                );
            }
            return Err(Failure::usage(
                "the input does not match the workflow's schema",
            ));
        }
        Err(e) => {
            return Err(Failure {
                code: 1,
                message: e.to_string(),
            });
        }
    };
    let run = engine
        .wait_settled(&sub.run_id, Duration::from_secs(timeout))
        .await
        .map_err(|e| Failure {
            code: 1,
            message: e.to_string(),
        })?
        .ok_or_else(|| Failure {
            code: 1,
            message: "the run disappeared".into(),
        })?;
    let detail = store.run_detail(&run.id).await.ok().flatten();
    let mut outputs = serde_json::Map::new();
    if let Some(d) = &detail {
        for s in &d.steps {
            if let Some(o) = &s.output {
                outputs.insert(
                    s.step_id.clone(),
                    serde_json::from_str(o).unwrap_or(serde_json::Value::Null),
                );
            }
        }
    }
    let report = serde_json::json!({
        "run_id": run.id,
        "workflow": run.workflow,
        "status": run.status.as_str(),
        "outcome": run.outcome,
        "error": run.error,
        "wait": run.wait.map(|w| w.as_str()),
        "outputs": outputs,
    });
    println!(
        "{}",
        serde_json::to_string_pretty(&report).unwrap_or_default()
    );
    engine.shutdown(Duration::from_secs(2)).await;
    match run.status {
        store::RunStatus::Completed => Ok(()),
        // Waiting for a person is where a run settles: the report says so
        // (`status: waiting`, `wait: review`, the task id under `outputs`).
        store::RunStatus::Waiting if run.wait == Some(store::WaitReason::Review) => Ok(()),
        s if !s.is_terminal() => Err(Failure {
            code: 1,
            message: format!("the run is still {s} after {timeout}s"),
        }),
        s => Err(Failure {
            code: 1,
            message: format!("the run ended {s}"),
        }),
    }
}

pub async fn migrate(db: &DbArgs) -> Result<(), Failure> {
    open_store(db, Role::Admin).await?;
    println!(
        "database {} is at the current schema",
        redact_url(&db.database)
    );
    Ok(())
}

pub async fn token_create(
    db: &DbArgs,
    name: &str,
    scopes: &str,
    user: Option<&str>,
) -> Result<(), Failure> {
    let scopes: Vec<String> = scopes
        .split(',')
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .collect();
    const KNOWN: [&str; 4] = ["runs:write", "runs:read", "reviews:decide", "admin"];
    // `queue:NAME` restricts review access to that queue (server::QUEUE_PREFIX).
    let known =
        |s: &str| KNOWN.contains(&s) || s.strip_prefix("queue:").is_some_and(|q| !q.is_empty());
    if let Some(bad) = scopes.iter().find(|s| !known(s)) {
        return Err(Failure::usage(format!(
            "--scopes: unknown scope {bad:?}; expected {} or queue:NAME",
            KNOWN.join(", ")
        )));
    }
    if scopes.is_empty() {
        return Err(Failure::usage("--scopes: give at least one scope"));
    }
    let store = open_store(db, Role::Admin).await?;
    let failed = |e: store::Error| Failure {
        code: 1,
        message: e.to_string(),
    };
    let user = match user.map(str::trim) {
        None => None,
        Some(email) => Some(
            store
                .user_by_email(email)
                .await
                .map_err(failed)?
                .ok_or_else(|| {
                    Failure::usage(format!(
                        "--user: no user {email:?} (create one with `countersign user create`)"
                    ))
                })?,
        ),
    };
    let secret = server::new_token_secret();
    let id = uuid::Uuid::now_v7().to_string();
    store
        .create_token(store::Token {
            id: id.clone(),
            name: name.to_string(),
            hash: server::hash_token(&secret),
            scopes: scopes.clone(),
            user_id: user.as_ref().map(|u| u.id.clone()),
            created_at_ms: engine::now_ms(),
            revoked_at_ms: None,
        })
        .await
        .map_err(|e| match e {
            store::Error::Duplicate(_) => {
                Failure::usage(format!("--name: a token named {name:?} already exists"))
            }
            e => Failure {
                code: 1,
                message: e.to_string(),
            },
        })?;
    eprintln!(
        "token {name} ({id}) with scopes {}{} — the secret is shown only now:",
        scopes.join(","),
        user.map(|u| format!(", acting for {}", u.email))
            .unwrap_or_default()
    );
    println!("{secret}");
    Ok(())
}

pub async fn token_list(db: &DbArgs) -> Result<(), Failure> {
    let store = open_store(db, Role::Admin).await?;
    let tokens = store.list_tokens().await.map_err(|e| Failure {
        code: 1,
        message: e.to_string(),
    })?;
    let users = store.list_users().await.map_err(|e| Failure {
        code: 1,
        message: e.to_string(),
    })?;
    println!(
        "{:<38} {:<24} {:<32} {:<8} user",
        "id", "name", "scopes", "status"
    );
    for t in tokens {
        let user = t.user_id.as_ref().map(|id| {
            users
                .iter()
                .find(|u| &u.id == id)
                .map_or(id.as_str(), |u| u.email.as_str())
        });
        println!(
            "{:<38} {:<24} {:<32} {:<8} {}",
            t.id,
            t.name,
            t.scopes.join(","),
            if t.revoked_at_ms.is_some() {
                "revoked"
            } else {
                "active"
            },
            user.unwrap_or("-")
        );
    }
    Ok(())
}

pub async fn token_revoke(db: &DbArgs, id_or_name: &str) -> Result<(), Failure> {
    let store = open_store(db, Role::Admin).await?;
    match store.revoke_token(id_or_name, engine::now_ms()).await {
        Ok(true) => {
            println!("revoked {id_or_name}");
            Ok(())
        }
        Ok(false) => Err(Failure::usage(format!(
            "no active token with id or name {id_or_name:?}"
        ))),
        Err(e) => Err(Failure {
            code: 1,
            message: e.to_string(),
        }),
    }
}

pub async fn audit_verify(
    db: &DbArgs,
    run: Option<&str>,
    checkpoint: Option<&Path>,
) -> Result<(), Failure> {
    let (checkpoint, key) = match checkpoint {
        Some(path) => {
            let key = crate::audit::key_from_env()?;
            (Some(crate::audit::read_checkpoint(path, &key)?), Some(key))
        }
        None => (None, None),
    };
    let store = open_store(db, Role::Admin).await?;
    let found =
        crate::audit::verify(store.as_ref(), run, checkpoint.as_ref(), key.as_deref()).await?;
    for p in &found.problems {
        println!("{p}");
    }
    if let Some(cp) = &checkpoint {
        println!(
            "checked against the checkpoint of {} ({} runs)",
            server_time(cp.at_ms),
            cp.heads.len()
        );
    }
    if found.pruned > 0 {
        println!("{} pruned runs kept as summaries", found.pruned);
    }
    println!(
        "{} runs verified, {} problems",
        found.runs,
        found.problems.len()
    );
    if !found.problems.is_empty() {
        return Err(Failure {
            code: 1,
            message: format!("{} audit problems", found.problems.len()),
        });
    }
    Ok(())
}

/// `prune --older-than AGE [--force] [--dry-run]`.
pub async fn prune(
    db: &DbArgs,
    older_than: &str,
    force: bool,
    dry_run: bool,
) -> Result<(), Failure> {
    let age = domain::yaml::parse_duration_ms(older_than.trim())
        .and_then(|ms| i64::try_from(ms).ok())
        .ok_or_else(|| {
            Failure::usage(format!(
                "--older-than: {older_than:?} is not an age: use days or hours such as 180d, 4320h"
            ))
        })?;
    if age < crate::audit::MIN_RETENTION_MS && !force {
        return Err(Failure::usage(format!(
            "--older-than {older_than}: that keeps less than 180 days, the record-keeping period \
             the EU AI Act (Art 19, 26(6)) names for high-risk deployers; add --force if you mean it"
        )));
    }
    let key = match std::env::var(crate::audit::KEY_VAR) {
        Ok(_) => Some(crate::audit::key_from_env()?),
        Err(_) => None,
    };
    let store = open_store(db, Role::Admin).await?;
    let now = engine::now_ms();
    let done = crate::audit::prune(store.as_ref(), now - age, now, key.as_deref(), dry_run).await?;
    for k in &done.kept {
        println!("{k}");
    }
    let verb = if dry_run { "would prune" } else { "pruned" };
    println!(
        "{verb} {} runs that ended before {}",
        done.pruned,
        server_time(now - age)
    );
    if key.is_none() && !dry_run && done.pruned > 0 {
        println!(
            "note: {} is not set, so the summaries are unsigned and `audit verify --checkpoint` will not accept them",
            crate::audit::KEY_VAR
        );
    }
    if !done.kept.is_empty() {
        return Err(Failure {
            code: 1,
            message: format!("{} runs were not pruned", done.kept.len()),
        });
    }
    Ok(())
}

/// `audit checkpoint --out FILE`.
pub async fn audit_checkpoint(db: &DbArgs, out: &Path) -> Result<(), Failure> {
    let key = crate::audit::key_from_env()?;
    let store = open_store(db, Role::Admin).await?;
    let n = crate::audit::checkpoint(store.as_ref(), &key, out, engine::now_ms()).await?;
    println!("checkpoint of {n} runs written to {}", out.display());
    Ok(())
}

fn server_time(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms).map_or_else(
        || ms.to_string(),
        |t| t.format("%Y-%m-%d %H:%M:%S UTC").to_string(),
    )
}
