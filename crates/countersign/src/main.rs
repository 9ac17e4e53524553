//! The `countersign` binary: parses the command line once, wires adapters,
//! and decides exit codes in one place: 0 ok, 2 bad input or
//! configuration, 1 anything else.
#![allow(clippy::print_stdout, clippy::print_stderr)]

mod audit;
mod bench;
mod bench_console;
mod bench_desk;
mod bench_pg;
mod calibration;
mod commands;
mod eval;
mod export;
mod integrations;
mod otlp;
mod users;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

/// Countersign: AI drafts, people countersign, systems update — and every step is on the record.
#[derive(Parser, Debug)]
#[command(name = "countersign", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Args, Debug, Clone)]
pub struct DbArgs {
    /// Database URL: sqlite://PATH (one node) or postgres://USER[:PASSWORD]@HOST[:PORT]/DB (several nodes).
    #[arg(
        long,
        env = "COUNTERSIGN_DATABASE_URL",
        default_value = "sqlite://./countersign-data/countersign.db"
    )]
    database: String,
    /// Push every commit to stable storage (SQLite synchronous=FULL): survives power loss, slower.
    #[arg(long)]
    power_loss_safe: bool,
}

#[derive(Args, Debug, Clone)]
pub struct ServeArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8080", env = "COUNTERSIGN_LISTEN")]
    listen: String,
    #[command(flatten)]
    db: DbArgs,
    /// Folder of workflow files (*.yaml, *.yml); changes are picked up while serving.
    #[arg(long, default_value = "./workflows", env = "COUNTERSIGN_WORKFLOWS")]
    workflows: PathBuf,
    /// Runs executed at once by this node.
    #[arg(long, default_value_t = 512)]
    workers: usize,
    /// Serve the API only; execute no runs (for nodes beside separate workers).
    #[arg(long)]
    no_workers: bool,
    /// How long a claimed run stays with this node without renewal (renewed every third of it); a dead node's runs move on after this.
    #[arg(long, default_value = "30s", env = "COUNTERSIGN_LEASE", value_parser = parse_lease)]
    lease: u64,
    /// How long after a call's own timeout it may still land at the vendor: an effect cut off by a crash is looked up only after its step's call timeout plus this (the in-flight rule).
    #[arg(long, default_value = "30s", env = "COUNTERSIGN_IN_FLIGHT_MARGIN", value_parser = parse_margin)]
    in_flight_margin: u64,
}

/// Parses the in-flight margin (`30s`, `2m`, `0s`) into milliseconds.
fn parse_margin(s: &str) -> Result<u64, String> {
    domain::yaml::parse_duration_ms(s)
        .ok_or_else(|| format!("{s:?} is not a duration such as 30s, 500ms or 2m"))
}

/// Parses a lease such as `3s`, `500ms` or `1m` into milliseconds.
fn parse_lease(s: &str) -> Result<u64, String> {
    match domain::yaml::parse_duration_ms(s) {
        Some(ms) if ms >= 300 => Ok(ms),
        Some(_) => Err("a lease shorter than 300ms would expire between renewals".into()),
        None => Err(format!("{s:?} is not a duration such as 3s, 500ms or 1m")),
    }
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Serve the HTTP API and execute runs.
    Serve(ServeArgs),
    /// Execute runs without serving HTTP.
    Worker {
        #[command(flatten)]
        db: DbArgs,
        #[arg(long, default_value = "./workflows", env = "COUNTERSIGN_WORKFLOWS")]
        workflows: PathBuf,
        #[arg(long, default_value_t = 512)]
        workers: usize,
        /// How long a claimed run stays with this node without renewal; a dead node's runs move on after this.
        #[arg(long, default_value = "30s", env = "COUNTERSIGN_LEASE", value_parser = parse_lease)]
        lease: u64,
        /// How long after a call's own timeout it may still land at the vendor (the in-flight rule).
        #[arg(long, default_value = "30s", env = "COUNTERSIGN_IN_FLIGHT_MARGIN", value_parser = parse_margin)]
        in_flight_margin: u64,
    },
    /// Serve the reference workflow on 127.0.0.1:8080 with embedded SQLite; no keys needed.
    Demo {
        #[arg(long, default_value = "127.0.0.1:8080")]
        listen: String,
        /// Data folder (database and the demo's workflow files).
        #[arg(long, default_value = "./countersign-data")]
        data: PathBuf,
    },
    /// Check workflow files; exit 2 with file:line:col: field: reason on problems.
    Validate {
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// Also check every `crm` step's mapping against its Monday board
        /// (columns, types, labels); needs `MONDAY_API_TOKEN`.
        #[arg(long)]
        online: bool,
    },
    /// Run a workflow once locally (temporary database) and print the outcome.
    /// Exits 0 when the run completes or stops to wait for a review.
    Run {
        file: PathBuf,
        /// Input as JSON text, or @path to a JSON file.
        #[arg(long, default_value = "{}")]
        input: String,
        /// Give up waiting after this many seconds.
        #[arg(long, default_value_t = 60)]
        timeout: u64,
    },
    /// Create or upgrade the database schema.
    Migrate {
        #[command(flatten)]
        db: DbArgs,
    },
    /// Manage API tokens.
    Token {
        #[command(subcommand)]
        command: TokenCommand,
    },
    /// Manage the people who sign in to the review inbox.
    User {
        #[command(subcommand)]
        command: UserCommand,
    },
    /// Sign-in sessions of the review inbox.
    Session {
        #[command(subcommand)]
        command: SessionCommand,
    },
    /// Map Slack members to reviewers for Slack approvals.
    Slack {
        #[command(subcommand)]
        command: SlackCommand,
    },
    /// Audit log tools.
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
    },
    /// Retention: delete the data of runs that ended (completed,
    /// cancelled, rejected, handed off) longer ago than --older-than,
    /// keeping per run a summary (chain head, signed with
    /// COUNTERSIGN_AUDIT_KEY when set) that `audit verify` accepts in its
    /// place. Failed and unfinished runs are never pruned.
    Prune {
        /// Age: 180d (the default and the least without --force), 4320h, …
        #[arg(long, default_value = "180d")]
        older_than: String,
        /// Allow keeping less than 180 days.
        #[arg(long)]
        force: bool,
        /// Count what would be pruned; change nothing.
        #[arg(long)]
        dry_run: bool,
        #[command(flatten)]
        db: DbArgs,
    },
    /// Write the audit events of a time range (every run's, or one
    /// workflow's) with their chain hashes, as JSON lines or CSV.
    Export {
        /// Events at or after: RFC 3339 (2026-12-01T09:00:00Z), a date
        /// (2026-12-01, midnight UTC), milliseconds since the epoch, or an
        /// age such as 7d, 12h.
        #[arg(long)]
        since: String,
        /// Events strictly before, same forms (default: now).
        #[arg(long)]
        until: Option<String>,
        /// Only runs of this workflow.
        #[arg(long)]
        workflow: Option<String>,
        #[arg(long, value_enum, default_value = "jsonl")]
        format: export::Format,
        /// Write here instead of standard output.
        #[arg(long)]
        out: Option<PathBuf>,
        #[command(flatten)]
        db: DbArgs,
    },
    /// How often people approve the AI's drafts unchanged: per workflow,
    /// version, review step and field, with a 95% (Wilson) interval.
    Calibration {
        /// Only reviews of this workflow.
        #[arg(long)]
        workflow: Option<String>,
        /// Only reviews decided at or after: a date (2026-11-01), RFC 3339,
        /// milliseconds since the epoch, or an age such as 30d.
        #[arg(long)]
        since: Option<String>,
        /// Slice by provider, model or a reviewed field's draft (an enum
        /// field such as intent).
        #[arg(long)]
        by: Option<String>,
        /// Print the report as JSON (the API's shape) instead of a table.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        db: DbArgs,
    },
    /// Test a prompt or model on history before it ships: replay the inputs
    /// of reviews people decided through the workflow's `llm` step with the
    /// prompt and/or model replaced (no effects, nothing written), and
    /// compare each field with what people approved, next to the recorded
    /// drafts' agreement on the same inputs. Exits 1 when a field's
    /// agreement drops more than --max-drop, 2 with too few reviews.
    Eval {
        /// The workflow whose reviews to replay.
        #[arg(long)]
        workflow: String,
        /// The `llm` step to replay (its drafts must be reviewed).
        #[arg(long)]
        step: String,
        /// A prompt template to use instead of the step's.
        #[arg(long, value_name = "FILE")]
        prompt: Option<PathBuf>,
        /// A model to ask instead of the step's; `heuristic`: the offline
        /// keyword heuristic alone (a baseline).
        #[arg(long, value_name = "M")]
        model: Option<String>,
        /// The OpenAI-compatible server to ask (default OPENAI_BASE_URL).
        #[arg(long, value_name = "URL")]
        base_url: Option<String>,
        /// Replay at most this many reviewed inputs, the newest.
        #[arg(long, value_name = "N", default_value_t = 200)]
        limit: usize,
        /// Only reviews decided at or after: a date (2026-11-01), RFC 3339,
        /// milliseconds since the epoch, or an age such as 30d.
        #[arg(long)]
        since: Option<String>,
        /// Exit 1 when a field's agreement is lower than the current by
        /// more than this share (0.05: five points).
        #[arg(long, value_name = "X", default_value_t = 0.0)]
        max_drop: f64,
        /// Exit 2 with fewer reviewed inputs than this.
        #[arg(long, value_name = "N", default_value_t = 30)]
        min_samples: usize,
        /// Compare only these fields (comma-separated; default: every
        /// reviewed field the step drafts).
        #[arg(long)]
        fields: Option<String>,
        /// Inputs replayed at once.
        #[arg(long, value_name = "N", default_value_t = 4)]
        concurrency: usize,
        /// Write the full report (per field and per input) as JSON here.
        #[arg(long, value_name = "FILE")]
        report: Option<PathBuf>,
        #[command(flatten)]
        db: DbArgs,
    },
    /// Measure engine throughput, per-step overhead, latency and HTTP intake on this machine.
    Bench {
        /// Runs for the throughput test.
        #[arg(long, default_value_t = 20_000)]
        runs: usize,
        /// Sequential runs for the latency test.
        #[arg(long, default_value_t = 2_000)]
        latency_runs: usize,
        /// HTTP requests for the intake test.
        #[arg(long, default_value_t = 20_000)]
        requests: usize,
        /// Concurrent HTTP clients.
        #[arg(long, default_value_t = 64)]
        clients: usize,
        /// Measure PostgreSQL instead (1, 2 and 3 workers sharing one database, idle load):
        /// a server URL whose user may CREATE DATABASE; scratch databases are dropped after.
        #[arg(long, value_name = "URL")]
        postgres: Option<String>,
        /// Measure the review desk instead: this many pending review tasks
        /// (reference workflow; SQLite, or with --postgres a scratch
        /// database there), then inbox, task and decision pages.
        #[arg(long, value_name = "TASKS")]
        desk: Option<usize>,
        /// Measure the operations console instead: this many runs (SQLite,
        /// or with --postgres a scratch database there), then the runs
        /// list, its filters, text search and run pages.
        #[arg(long, value_name = "RUNS")]
        console: Option<usize>,
        /// Tokio worker threads for this process (default: one per CPU, or
        /// TOKIO_WORKER_THREADS); for sweeping thread counts without the env var.
        #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..=1024))]
        threads: Option<u16>,
    },
}

#[derive(Subcommand, Debug)]
enum TokenCommand {
    /// Create a token; the secret is printed once and stored hashed.
    Create {
        #[arg(long)]
        name: String,
        /// Comma-separated: runs:write, runs:read, reviews:decide, admin;
        /// `queue:NAME` restricts review access to that queue.
        #[arg(long, default_value = "runs:write")]
        scopes: String,
        /// The inbox user (email) the token acts for: its review decisions
        /// count as that person's, with that user's queues. A token without
        /// a user cannot approve reviews that need distinct people
        /// (`min_approvals` of 2 or more).
        #[arg(long)]
        user: Option<String>,
        #[command(flatten)]
        db: DbArgs,
    },
    /// List tokens (never their secrets).
    List {
        #[command(flatten)]
        db: DbArgs,
    },
    /// Revoke a token by id or name.
    Revoke {
        id_or_name: String,
        #[command(flatten)]
        db: DbArgs,
    },
}

#[derive(Subcommand, Debug)]
enum UserCommand {
    /// Create a user; without --password-stdin a password is generated and
    /// printed once. Only its argon2 hash is stored.
    Create {
        #[arg(long)]
        email: String,
        /// admin (everything), reviewer (decides tasks of --queues), viewer (reads).
        #[arg(long)]
        role: String,
        /// Comma-separated review queues a reviewer holds.
        #[arg(long)]
        queues: Option<String>,
        /// Comma-separated Slack member ids (U…) that decide as this user.
        #[arg(long)]
        slack_user: Option<String>,
        /// Read the password from the first line of standard input.
        #[arg(long)]
        password_stdin: bool,
        #[command(flatten)]
        db: DbArgs,
    },
    /// List users (never their password hashes).
    List {
        #[command(flatten)]
        db: DbArgs,
    },
    /// Disable a user: they cannot sign in, their sessions end at once,
    /// and tokens, Slack mappings and email links tied to them stop
    /// deciding. Their past decisions stay on the record.
    Disable {
        #[arg(long)]
        email: String,
        #[command(flatten)]
        db: DbArgs,
    },
    /// Enable a disabled user again (they sign in anew).
    Enable {
        #[arg(long)]
        email: String,
        #[command(flatten)]
        db: DbArgs,
    },
}

#[derive(Subcommand, Debug)]
enum SessionCommand {
    /// End every inbox session of a user (signed out everywhere).
    Revoke {
        #[arg(long)]
        email: String,
        #[command(flatten)]
        db: DbArgs,
    },
}

#[derive(Subcommand, Debug)]
enum SlackCommand {
    /// Let a Slack member decide review tasks of some queues as an actor
    /// (replaces an earlier mapping of the same member).
    Map {
        /// The Slack member id (U…).
        #[arg(long)]
        slack_user: String,
        /// Who decisions are recorded as (e.g. alice@example.com).
        #[arg(long)]
        actor: String,
        /// Comma-separated review queues (`*` for all).
        #[arg(long)]
        queues: String,
        #[command(flatten)]
        db: DbArgs,
    },
    /// List the mappings.
    List {
        #[command(flatten)]
        db: DbArgs,
    },
}

#[derive(Subcommand, Debug)]
enum AuditCommand {
    /// Check the hash chain of every run's events (or one run's), each
    /// chain's end against its run's head, and with `--checkpoint` that no
    /// run the checkpoint saw was deleted or cut short.
    Verify {
        #[arg(long)]
        run: Option<String>,
        /// A checkpoint written by `audit checkpoint` (signature checked
        /// with COUNTERSIGN_AUDIT_KEY).
        #[arg(long)]
        checkpoint: Option<PathBuf>,
        #[command(flatten)]
        db: DbArgs,
    },
    /// Write every run's chain head, signed with COUNTERSIGN_AUDIT_KEY (a
    /// key kept outside the database), to a file kept elsewhere.
    Checkpoint {
        /// Where to write the checkpoint (JSON lines).
        #[arg(long)]
        out: PathBuf,
        #[command(flatten)]
        db: DbArgs,
    },
}

/// A failure with its exit code.
#[derive(Debug)]
pub struct Failure {
    pub code: u8,
    pub message: String,
}

impl Failure {
    /// Bad input or configuration: exit 2.
    pub fn usage(message: impl Into<String>) -> Failure {
        Failure {
            code: 2,
            message: message.into(),
        }
    }
}

impl From<anyhow::Error> for Failure {
    fn from(e: anyhow::Error) -> Failure {
        Failure {
            code: 1,
            message: format!("{e:#}"),
        }
    }
}

fn main() -> ExitCode {
    use tracing_subscriber::Layer as _;
    use tracing_subscriber::Registry;
    use tracing_subscriber::util::SubscriberInitExt as _;

    let cli = Cli::parse();
    let filter = tracing_subscriber::EnvFilter::try_from_env("COUNTERSIGN_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let logs = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    // One JSON object per line for log collectors: fields (run_id,
    // step_id, error, …) become keys, the span context goes alongside.
    let logs: Box<dyn tracing_subscriber::Layer<Registry> + Send + Sync> =
        match std::env::var("COUNTERSIGN_LOG_FORMAT").as_deref() {
            Ok("json") => logs.json().flatten_event(true).boxed(),
            Ok("text") | Err(_) => logs.boxed(),
            Ok(other) => {
                eprintln!("error: COUNTERSIGN_LOG_FORMAT={other:?}: expected json or text");
                return ExitCode::from(2);
            }
        };
    // Traces only for the commands that execute runs.
    let traces = match &cli.command {
        Command::Serve(_) | Command::Worker { .. } | Command::Demo { .. } | Command::Run { .. } => {
            match otlp::Traces::from_env(&|k| std::env::var(k).ok()) {
                Ok(t) => t,
                Err(e) => {
                    eprintln!("error: {e}");
                    return ExitCode::from(2);
                }
            }
        }
        _ => None,
    };
    otlp::subscriber(logs, filter, traces.as_ref()).init();
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    builder.enable_all();
    if let Command::Bench {
        threads: Some(n), ..
    } = &cli.command
    {
        builder.worker_threads(usize::from(*n));
    }
    let rt = match builder.build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let result = rt.block_on(async {
        match cli.command {
            Command::Serve(args) => commands::serve(args, false).await,
            Command::Worker {
                db,
                workflows,
                workers,
                lease,
                in_flight_margin,
            } => commands::worker(db, workflows, workers, lease, in_flight_margin).await,
            Command::Demo { listen, data } => commands::demo(listen, data).await,
            Command::Validate { files, online } => commands::validate(&files, online).await,
            Command::Run {
                file,
                input,
                timeout,
            } => commands::run_once(&file, &input, timeout).await,
            Command::Migrate { db } => commands::migrate(&db).await,
            Command::Token { command } => match command {
                TokenCommand::Create {
                    name,
                    scopes,
                    user,
                    db,
                } => commands::token_create(&db, &name, &scopes, user.as_deref()).await,
                TokenCommand::List { db } => commands::token_list(&db).await,
                TokenCommand::Revoke { id_or_name, db } => {
                    commands::token_revoke(&db, &id_or_name).await
                }
            },
            Command::Slack { command } => match command {
                SlackCommand::Map {
                    slack_user,
                    actor,
                    queues,
                    db,
                } => integrations::slack_map(&db, &slack_user, &actor, &queues).await,
                SlackCommand::List { db } => integrations::slack_list(&db).await,
            },
            Command::User { command } => match command {
                UserCommand::Create {
                    email,
                    role,
                    queues,
                    slack_user,
                    password_stdin,
                    db,
                } => {
                    users::create(
                        &db,
                        users::NewUser {
                            email: &email,
                            role: &role,
                            queues: queues.as_deref(),
                            slack_users: slack_user.as_deref(),
                            password_stdin,
                        },
                    )
                    .await
                }
                UserCommand::List { db } => users::list(&db).await,
                UserCommand::Disable { email, db } => users::set_disabled(&db, &email, true).await,
                UserCommand::Enable { email, db } => users::set_disabled(&db, &email, false).await,
            },
            Command::Session { command } => match command {
                SessionCommand::Revoke { email, db } => users::revoke_sessions(&db, &email).await,
            },
            Command::Audit { command } => match command {
                AuditCommand::Verify {
                    run,
                    checkpoint,
                    db,
                } => commands::audit_verify(&db, run.as_deref(), checkpoint.as_deref()).await,
                AuditCommand::Checkpoint { out, db } => commands::audit_checkpoint(&db, &out).await,
            },
            Command::Prune {
                older_than,
                force,
                dry_run,
                db,
            } => commands::prune(&db, &older_than, force, dry_run).await,
            Command::Export {
                since,
                until,
                workflow,
                format,
                out,
                db,
            } => {
                export::run(
                    &db,
                    export::Request {
                        since: &since,
                        until: until.as_deref(),
                        workflow: workflow.as_deref(),
                        format,
                        out: out.as_deref(),
                    },
                )
                .await
            }
            Command::Calibration {
                workflow,
                since,
                by,
                json,
                db,
            } => {
                calibration::run(
                    &db,
                    calibration::Request {
                        workflow: workflow.as_deref(),
                        since: since.as_deref(),
                        by: by.as_deref(),
                        json,
                    },
                )
                .await
            }
            Command::Eval {
                workflow,
                step,
                prompt,
                model,
                base_url,
                limit,
                since,
                max_drop,
                min_samples,
                fields,
                concurrency,
                report,
                db,
            } => {
                eval::run(
                    &db,
                    eval::Request {
                        workflow: &workflow,
                        step: &step,
                        prompt: prompt.as_deref(),
                        model: model.as_deref(),
                        base_url: base_url.as_deref(),
                        limit,
                        since: since.as_deref(),
                        max_drop,
                        min_samples,
                        fields: fields.as_deref(),
                        concurrency,
                        report: report.as_deref(),
                    },
                )
                .await
            }
            Command::Bench {
                runs,
                latency_runs,
                requests,
                clients,
                postgres,
                desk,
                console,
                threads: _,
            } => match (console, desk, postgres.as_deref()) {
                (Some(n), _, pg) => bench_console::run(n, 100, pg).await,
                (None, Some(tasks), pg) => bench_desk::run(tasks, 100, pg).await,
                (None, None, Some(url)) => bench_pg::run(url, runs, latency_runs).await,
                (None, None, None) => bench::run(runs, latency_runs, requests, clients).await,
            },
        }
    });
    drop(rt);
    if let Some(t) = traces {
        t.shutdown();
    }
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(f) => {
            eprintln!("{}", f.message);
            ExitCode::from(f.code)
        }
    }
}
