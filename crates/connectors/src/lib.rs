//! Connectors: step kinds whose effects change outside systems, each
//! exactly once where the target can be asked what happened (DESIGN §4).
//!
//! | kind    | target                                   | reconciliation                      |
//! |---------|------------------------------------------|-------------------------------------|
//! | `crm`   | Monday.com GraphQL (upsert by key column)| find the item by the upsert key     |
//! | `crm`   | Monday.com `create_update` on an item    | the item's updates, by a hidden key marker |
//! | `slack` | `chat.postMessage` / incoming webhook    | message `metadata` carrying the key |
//! | `email` | Gmail API (`messages.send`, drafts), SMTP| Gmail: `rfc822msgid:` search; SMTP: none |
//!
//! Codemap: [`error`] is the one error type (`RateLimited`, `Transient`,
//! `Unauthorized`, `Permanent`, each naming the field to fix); [`effect`]
//! holds what every connector shares (control levels, the local outbox,
//! digests); one module per vendor holds its client, its step body and its
//! step. API boundary: the CLI builds [`Config::from_env`] once and calls
//! [`register`]; the engine sees only `StepKind`s.
//!
//! Architecture invariant: connectors never call the engine back, never
//! spawn work of their own, and never put a credential in an output, an
//! event or an error (every token is registered as a workflow secret at
//! load time, so the engine redacts it too).

pub mod effect;
pub mod email;
pub mod error;
pub mod monday;
pub mod notify;
pub mod slack;

use std::sync::Arc;

use engine::StepKinds;

pub use error::Error;

/// Connector configuration, read once at start-up from the environment
/// (DESIGN §5). A connector without credentials writes to the outbox.
#[derive(Clone, Default)]
pub struct Config {
    pub monday: Option<monday::Settings>,
    pub slack: Option<slack::Settings>,
    pub email: email::Transport,
    /// Review notifications (`notify: [slack, email]` on a `review` step).
    pub review: notify::Settings,
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Config")
            .field("monday", &self.monday.as_ref().map(|m| &m.url))
            .field("slack", &self.slack.as_ref().map(|s| &s.url))
            .field("email", &self.email.name())
            .field("review", &self.review)
            .finish()
    }
}

impl Config {
    /// Reads `MONDAY_API_TOKEN`, `MONDAY_API_URL`, `SLACK_BOT_TOKEN`,
    /// `SLACK_API_URL`, `GMAIL_CLIENT_ID`, `GMAIL_CLIENT_SECRET`,
    /// `GMAIL_REFRESH_TOKEN`, `GMAIL_SENDER`, `GMAIL_API_URL`,
    /// `GMAIL_TOKEN_URL` and `SMTP_URL`, and for review notifications
    /// `COUNTERSIGN_PUBLIC_URL`, `COUNTERSIGN_LINK_SECRET`,
    /// `COUNTERSIGN_LINK_TTL_HOURS`, `COUNTERSIGN_SLACK_CHANNELS` and
    /// `COUNTERSIGN_REVIEW_EMAILS` ([`notify::Settings::from_env`]). Errors
    /// name the variable to fix.
    pub fn from_env(env: &dyn Fn(&str) -> Option<String>) -> Result<Config, String> {
        let get = |k: &str| {
            env(k)
                .map(|v| v.trim().to_string())
                .filter(|v| !v.is_empty())
        };
        let url = |k: &str, default: &str| -> Result<String, String> {
            let v = get(k).unwrap_or_else(|| default.to_string());
            if v.starts_with("http://") || v.starts_with("https://") {
                Ok(v.trim_end_matches('/').to_string())
            } else {
                Err(format!("{k}: {v:?} must start with http:// or https://"))
            }
        };
        let monday = match get("MONDAY_API_TOKEN") {
            Some(token) => Some(monday::Settings {
                url: url("MONDAY_API_URL", monday::DEFAULT_URL)?,
                token,
            }),
            None => None,
        };
        let slack = match get("SLACK_BOT_TOKEN") {
            Some(token) => Some(slack::Settings {
                url: url("SLACK_API_URL", slack::DEFAULT_URL)?,
                token,
            }),
            None => None,
        };
        let gmail_vars = [
            "GMAIL_CLIENT_ID",
            "GMAIL_CLIENT_SECRET",
            "GMAIL_REFRESH_TOKEN",
            "GMAIL_SENDER",
        ];
        let set: Vec<&str> = gmail_vars
            .iter()
            .copied()
            .filter(|k| get(k).is_some())
            .collect();
        let email = if set.len() == gmail_vars.len() {
            email::Transport::Gmail(email::gmail::Settings {
                api_url: url("GMAIL_API_URL", email::gmail::DEFAULT_API_URL)?,
                token_url: url("GMAIL_TOKEN_URL", email::gmail::DEFAULT_TOKEN_URL)?,
                client_id: get("GMAIL_CLIENT_ID").unwrap_or_default(),
                client_secret: get("GMAIL_CLIENT_SECRET").unwrap_or_default(),
                refresh_token: get("GMAIL_REFRESH_TOKEN").unwrap_or_default(),
                sender: get("GMAIL_SENDER").unwrap_or_default(),
            })
        } else if !set.is_empty() {
            let missing: Vec<&str> = gmail_vars
                .iter()
                .copied()
                .filter(|k| !set.contains(k))
                .collect();
            return Err(format!(
                "{}: the Gmail connector needs all of {} (set: {})",
                missing.join(", "),
                gmail_vars.join(", "),
                set.join(", ")
            ));
        } else if let Some(u) = get("SMTP_URL") {
            email::Transport::Smtp(email::smtp::Settings::parse(&u)?)
        } else {
            email::Transport::Outbox
        };
        Ok(Config {
            monday,
            slack,
            email,
            review: notify::Settings::from_env(env)?,
        })
    }
}

/// Registers `crm`, `slack` and `email` on `kinds`, sharing `client`, and
/// the `review` kind again with a notifier for `notify: [slack, email]`.
pub fn register(kinds: &mut StepKinds, client: reqwest::Client, config: Config) {
    kinds.register(Arc::new(monday::Kind::new(client.clone(), config.monday)));
    kinds.register(Arc::new(engine::steps::review::Kind::with_notifier(
        Arc::new(notify::ReviewNotifier::new(
            client.clone(),
            config.slack.clone(),
            config.email.clone(),
            config.review,
        )),
    )));
    kinds.register(Arc::new(slack::Kind::new(client.clone(), config.slack)));
    kinds.register(Arc::new(email::Kind::new(client, config.email)));
}

/// A mapping problem found online, located by YAML path.
pub use monday::check::Problem;

/// `countersign crm check` / `validate --online`: loads the workflow in
/// `src` and checks every `crm` step's mapping against its Monday board
/// (columns exist with the mapped types; every label a `map` or literal
/// can write is on the board). Needs `MONDAY_API_TOKEN`. `Err` is a
/// problem with the file or the connection, not with the mapping.
pub async fn check_workflow(
    src: &str,
    path: &str,
    env: &engine::Env,
    client: reqwest::Client,
    config: &Config,
) -> Result<Vec<Problem>, String> {
    let mut kinds = StepKinds::builtin(client.clone());
    register(&mut kinds, client.clone(), config.clone());
    check_workflow_with(src, path, env, &kinds, client, config).await
}

/// [`check_workflow`] with the caller's step kinds (the binary's include
/// `llm`, which this crate does not know).
pub async fn check_workflow_with(
    src: &str,
    path: &str,
    env: &engine::Env,
    kinds: &StepKinds,
    client: reqwest::Client,
    config: &Config,
) -> Result<Vec<Problem>, String> {
    // Compiling first reports every offline problem, located.
    engine::compile(src, path, kinds, env).map_err(|e| e.to_string())?;
    let lookup = |n: &str| env(n);
    let wf = domain::workflow::parse(src, &lookup, &kinds.names()).map_err(|es| {
        es.iter()
            .map(|d| d.with_file(path))
            .collect::<Vec<_>>()
            .join("\n")
    })?;
    let crm: Vec<_> = wf.steps.iter().filter(|s| s.kind == "crm").collect();
    if crm.is_empty() {
        return Ok(Vec::new());
    }
    let Some(settings) = config.monday.clone() else {
        return Err("MONDAY_API_TOKEN is not set: the online check needs it".into());
    };
    let api = monday::Api::new(client, settings);
    let mut out = Vec::new();
    for def in crm {
        let mut cx = domain::workflow::Cx::default();
        if monday::update::is_update(def) {
            if let Some(spec) = monday::update::parse(def, &wf.scope_for(def.index), &mut cx) {
                out.extend(
                    monday::update::check(&api, &spec)
                        .await
                        .map_err(|e| e.describe(&[api.token().to_string()]))?,
                );
            }
            continue;
        }
        let Some(spec) = monday::parse(def, &wf.scope_for(def.index), &mut cx) else {
            continue;
        };
        out.extend(
            monday::check::check(&api, &spec)
                .await
                .map_err(|e| e.describe(&[api.token().to_string()]))?,
        );
    }
    Ok(out)
}
