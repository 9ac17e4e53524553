//! The plug-in boundary for step kinds.
//!
//! A [`StepKind`] compiles a step's YAML body into a [`Step`] at load time
//! (every error located); a `Step` executes one attempt at run time. Kinds
//! that touch the outside world journal their effect through
//! [`StepCx::effect_started`] before the call and report the result with
//! [`StepCx::effect_completed`], which is committed with the step result.

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use domain::expr::{Scope, Vars};
use domain::run::StepOutcome;
use domain::workflow::{Cx, StepDef};
use serde_json::Value as Json;

use crate::preview::ActionPreview;

/// Compiles step bodies of one kind (`http`, `rules`, …).
pub trait StepKind: Send + Sync {
    fn name(&self) -> &'static str;

    /// Whether the kind acts on the step's `control:` level (asks before
    /// it acts, drafts, suggests). A level other than `auto` on a kind that
    /// does not is refused at load: it would silently do nothing.
    fn honours_control(&self) -> bool {
        false
    }
    /// Checks `def.body` and returns the executable step, or pushes located
    /// errors into `cx` and returns `None`.
    fn compile(&self, def: &StepDef, scope: &Scope, cx: &mut Cx) -> Option<Arc<dyn Step>>;

    /// [`StepKind::compile`] for kinds that read the steps before them
    /// (`review` types its fields from the producing step's declared output).
    fn compile_in(
        &self,
        earlier: &[StepDef],
        def: &StepDef,
        scope: &Scope,
        cx: &mut Cx,
    ) -> Option<Arc<dyn Step>> {
        let _ = earlier;
        self.compile(def, scope, cx)
    }
}

/// Result of reconciling a journalled effect that started but never completed.
#[derive(Debug, Clone, PartialEq)]
pub enum Reconciled {
    /// The target shows the effect happened: use this as the step's output.
    Done {
        output: Json,
        external_id: Option<String>,
    },
    /// The target shows it did not happen: safe to perform it now.
    NotDone,
    /// The target cannot tell: perform it again under the same idempotency
    /// key (at-least-once with a dedupe key).
    Unknown,
    /// The lookup failed for good (e.g. the token lacks the scope to read
    /// the target): whether the effect happened is unknown and sending
    /// again could duplicate it. The step fails with `error`, nothing is
    /// sent, and the effect stays open, so an operator retry after the
    /// cause is fixed looks again.
    Failed { error: String },
}

/// One executable step.
#[async_trait]
pub trait Step: Send + Sync {
    /// Runs one attempt.
    async fn run(&self, cx: &mut StepCx<'_>) -> StepOutcome;

    /// Called on resume when this step's effect was journalled as started
    /// but not completed, before a new attempt.
    async fn reconcile(&self, _cx: &mut StepCx<'_>) -> Reconciled {
        Reconciled::Unknown
    }

    /// How long after `effect.started` this step may still be waiting for
    /// its outside call: the client timeouts of every request it sends
    /// after journalling (its `timeout:` when the workflow sets one).
    /// `None`: the step's time guard (`timeout:` + 5 s, else 5 minutes).
    /// The engine adds its in-flight margin ([`crate::Config`]) and does
    /// not reconcile an open effect before that much time has passed since
    /// it started: until then the earlier call may still land.
    fn call_window_ms(&self) -> Option<u64> {
        None
    }

    /// The fields of this step's output that later steps may read, when
    /// the step declares them (an `llm` step's output schema); `None`: not
    /// declared, any field is accepted at load.
    fn output_fields(&self) -> Option<Vec<String>> {
        None
    }

    /// For a `review`: the steps whose drafts it puts before a person and
    /// the fields a person may edit, which together make up `approved`.
    fn approves(&self) -> Option<(Vec<String>, Vec<String>)> {
        None
    }

    /// True when the step evaluates its own `when:` (a skipped `review` is
    /// still recorded, as decided by policy); otherwise the driver skips
    /// the step when the condition is false.
    fn evaluates_when(&self) -> bool {
        false
    }

    /// What the step's action would do with `vars`, for people to see
    /// before it runs (the task page, covering reviews). `None`: the step
    /// has no outside action (the default). `Err`: it could not be
    /// rendered with these values (the message names the field). Must not
    /// do I/O: a preview is rendered on every page view.
    fn preview(&self, vars: &Vars) -> Option<Result<ActionPreview, String>> {
        let _ = vars;
        None
    }

    /// [`Step::preview`] with a reviewer's edits of the action's own
    /// fields applied (`control: review`: the task's fields, by name), as
    /// the step applies them before it performs the action.
    fn preview_edited(
        &self,
        vars: &Vars,
        edits: &serde_json::Map<String, Json>,
    ) -> Option<Result<ActionPreview, String>> {
        let _ = edits;
        self.preview(vars)
    }
}

/// Journal writes a step asks for; the driver persists them.
#[derive(Debug, Default)]
pub(crate) struct EffectLog {
    pub started: Option<String>,
    pub completed: Option<Option<String>>,
    pub failed: bool,
    /// The target answered the call (whatever it said): it is not in flight.
    pub answered: bool,
}

/// What a step attempt sees: the run's variables and the effect journal.
pub struct StepCx<'a> {
    pub run_id: &'a str,
    pub step: &'a StepDef,
    pub vars: &'a Vars,
    /// 1-based attempt number of this step.
    pub attempt: u32,
    pub(crate) journal: &'a mut dyn Journal,
    pub(crate) effects: EffectLog,
    /// The workflow's secrets, redacted from events a step records.
    pub(crate) secrets: &'a [String],
    /// The store, for the engine's own kinds (`review` keeps its task there).
    pub(crate) store: &'a dyn store::Store,
    /// [`crate::Config::in_flight_margin_ms`].
    pub(crate) in_flight_margin_ms: u64,
    /// The node's counters, for [`StepCx::meter_model`].
    pub(crate) metrics: &'a crate::metrics::Metrics,
}

/// Commits an `effect.started` entry before a call goes out.
#[async_trait]
pub(crate) trait Journal: Send {
    async fn effect_started(
        &mut self,
        key: &str,
        step_id: &str,
        digest: &str,
    ) -> Result<(), String>;

    /// Events to commit with the next journal entry, so the audit log keeps
    /// the order things happened in (e.g. `effect.reconciled` before the
    /// `effect.started` of the new attempt).
    fn defer(&mut self, events: Vec<store::NewEvent>);
}

impl StepCx<'_> {
    /// The effect's idempotency key: `run_id:step_id`.
    pub fn idempotency_key(&self) -> String {
        format!("{}:{}", self.run_id, self.step.id)
    }

    /// Journals `effect.started` (committed before this returns). Do not
    /// perform the effect if this fails: the run has been taken away.
    pub async fn effect_started(&mut self, request_digest: &str) -> Result<(), String> {
        let key = self.idempotency_key();
        self.journal
            .effect_started(&key, &self.step.id, request_digest)
            .await?;
        self.effects.started = Some(request_digest.to_string());
        Ok(())
    }

    /// How long after a call's deadline it may still land at the target
    /// ([`crate::Config::in_flight_margin_ms`]): a step that journals
    /// effects of its own (review notifications) waits its call timeout
    /// plus this before it looks whether an unfinished one happened.
    pub fn in_flight_margin_ms(&self) -> u64 {
        self.in_flight_margin_ms
    }

    /// Marks the effect done; recorded with the step's result.
    pub fn effect_completed(&mut self, external_id: Option<String>) {
        self.effects.completed = Some(external_id);
    }

    /// Says the target answered the call (any status) or it never left
    /// (a refused connection): if the effect stays open, nothing of this
    /// attempt can land later, so the next attempt on this node need not
    /// wait out the in-flight window before it reconciles. Not for a
    /// timeout or a connection lost mid-request.
    pub fn effect_answered(&mut self) {
        self.effects.answered = true;
    }

    /// Marks the effect as definitely not performed (a permanent refusal).
    pub fn effect_failed(&mut self) {
        self.effects.failed = true;
    }

    /// Counts one answered model call (tokens, cost) in `/metrics`.
    pub fn meter_model(&self, call: &crate::metrics::ModelCall<'_>) {
        self.metrics.models.observe(call);
    }

    /// Counts a move to a step's next model provider in `/metrics`.
    pub fn meter_fallback(&self) {
        self.metrics.models.fell_back();
    }

    /// Adds an audit event of the step's own (e.g. `llm.requested`) to this
    /// attempt. It is committed with the attempt's next journal entry or its
    /// result, whatever the outcome (also when the attempt is cut off by its
    /// time guard), in the order recorded, after the workflow's secrets are
    /// redacted from it. Actor: `system`.
    pub fn record(&mut self, kind: &str, data: &Json) {
        let text = domain::workflow::redact(self.secrets, &data.to_string());
        self.journal.defer(vec![store::NewEvent {
            kind: kind.to_string(),
            actor: domain::event::SYSTEM.into(),
            data: text,
            at_ms: crate::now_ms(),
        }]);
    }
}

/// The kinds an engine knows, by name.
#[derive(Clone, Default)]
pub struct StepKinds {
    kinds: HashMap<&'static str, Arc<dyn StepKind>>,
}

impl StepKinds {
    /// The built-in kinds: `validate`, `rules`, `wait`, `http`, `review`.
    /// `_http` is kept for callers; the `http` step builds its own client,
    /// one that never follows a redirect by itself.
    pub fn builtin(_http: reqwest::Client) -> StepKinds {
        let mut k = StepKinds::default();
        k.register(Arc::new(crate::steps::validate::Kind));
        k.register(Arc::new(crate::steps::rules::Kind));
        k.register(Arc::new(crate::steps::wait::Kind));
        k.register(Arc::new(crate::steps::http::Kind::new()));
        k.register(Arc::new(crate::steps::review::Kind::default()));
        k
    }

    pub fn register(&mut self, kind: Arc<dyn StepKind>) {
        self.kinds.insert(kind.name(), kind);
    }

    pub fn get(&self, name: &str) -> Option<&Arc<dyn StepKind>> {
        self.kinds.get(name)
    }

    pub fn names(&self) -> Vec<&'static str> {
        let mut v: Vec<_> = self.kinds.keys().copied().collect();
        v.sort_unstable();
        v
    }
    /// The kinds that act on a step's `control:` level.
    pub fn honouring_control(&self) -> Vec<&'static str> {
        self.kinds
            .iter()
            .filter(|(_, k)| k.honours_control())
            .map(|(n, _)| *n)
            .collect()
    }
}
