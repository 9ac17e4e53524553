//! The `llm` step kind: structured output from a model, validated, repaired
//! and falling back honestly (DESIGN §6).
//!
//! ```yaml
//! - id: triage
//!   llm:
//!     model: "${env:COUNTERSIGN_MODEL:-gpt-4o-mini}"
//!     fallback: [heuristic]
//!     prompt: prompts/triage.md.j2
//!     output:
//!       intent: { enum: [sales_lead, spam, other] }
//!       confidence: { type: number, minimum: 0, maximum: 1 }
//! ```
//!
//! Codemap: [`spec`] compiles the step body; [`schema`] turns `output:` into
//! the strict schema sent and the schema enforced; [`prompt`] renders the
//! messages with untrusted values delimited as data; [`provider`] is the
//! [`LlmProvider`] boundary, implemented by [`openai`] (any OpenAI-
//! compatible server) and [`heuristic`] (offline keyword rules); [`step`]
//! walks the provider chain and records every call; [`cost`] estimates
//! what a call cost.
//!
//! API boundary: the engine sees only [`Kind`] (a `StepKind`); the CLI
//! builds it once from [`Config::from_env`].

pub mod cost;
pub mod heuristic;
pub mod openai;
pub mod prompt;
pub mod provider;
pub mod schema;
pub mod spec;
pub mod step;

use std::sync::Arc;

use domain::expr::Scope;
use domain::workflow::{Cx, StepDef};
use engine::{Step, StepKind};

pub use cost::Prices;
pub use provider::{LlmProvider, Providers};

/// Provider configuration, read once at start-up.
#[derive(Debug, Clone)]
pub struct Config {
    pub openai: openai::Settings,
    pub prices: Prices,
}

impl Config {
    /// Reads `OPENAI_API_KEY`, `OPENAI_BASE_URL` (default the public API)
    /// and `COUNTERSIGN_LLM_PRICES` (`model=in/out;…`, USD per million
    /// tokens, over the built-in table).
    pub fn from_env(env: &dyn Fn(&str) -> Option<String>) -> Result<Config, String> {
        let nonempty = |k: &str| {
            env(k)
                .map(|v| v.trim().to_string())
                .filter(|v| !v.is_empty())
        };
        let mut prices = Prices::default();
        if let Some(p) = nonempty("COUNTERSIGN_LLM_PRICES") {
            prices
                .apply(&p)
                .map_err(|e| format!("COUNTERSIGN_LLM_PRICES: {e}"))?;
        }
        let base_url =
            nonempty("OPENAI_BASE_URL").unwrap_or_else(|| openai::DEFAULT_BASE_URL.to_string());
        if !(base_url.starts_with("http://") || base_url.starts_with("https://")) {
            return Err(format!(
                "OPENAI_BASE_URL: {base_url:?} must start with http:// or https://"
            ));
        }
        Ok(Config {
            openai: openai::Settings {
                base_url,
                api_key: nonempty("OPENAI_API_KEY"),
            },
            prices,
        })
    }
}

/// The `llm` step kind.
pub struct Kind {
    providers: Providers,
    prices: Arc<Prices>,
}

impl Kind {
    /// The standard providers: `openai` (on `client`) and `heuristic`.
    pub fn new(client: reqwest::Client, config: Config) -> Kind {
        let providers = Providers::default()
            .with(Arc::new(openai::OpenAi::new(client, config.openai)))
            .with(Arc::new(heuristic::Heuristic));
        Kind::with_providers(providers, config.prices)
    }

    /// Any set of providers (tests, other backends). `heuristic` is added
    /// if missing: it is every chain's default last resort.
    pub fn with_providers(providers: Providers, prices: Prices) -> Kind {
        let providers = if providers.get("heuristic").is_some() {
            providers
        } else {
            providers.with(Arc::new(heuristic::Heuristic))
        };
        Kind {
            providers,
            prices: Arc::new(prices),
        }
    }
}

impl StepKind for Kind {
    fn name(&self) -> &'static str {
        "llm"
    }

    fn compile(&self, def: &StepDef, scope: &Scope, cx: &mut Cx) -> Option<Arc<dyn Step>> {
        let spec = spec::parse(def, scope, &self.providers, cx)?;
        Some(Arc::new(step::LlmStep {
            spec,
            providers: self.providers.clone(),
            prices: self.prices.clone(),
        }))
    }
}
