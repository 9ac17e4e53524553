//! Replaying one step of a past run on the side (`countersign eval`): the
//! variables the step saw, rebuilt from the run's input and stored outputs
//! as a resumed run binds them, and executions of the step through the
//! same [`Step::run`] the driver calls, attempts and back-off included.
//!
//! Nothing is written and the run is not touched: the journal keeps the
//! step's audit events (`llm.requested`, …) in memory for the caller and
//! refuses `effect.started`, so a step that would act on the outside world
//! stops before it sends anything. `review` steps (which keep their task
//! in the store) are refused outright.

use std::time::{Duration, Instant};

use async_trait::async_trait;
use domain::expr::{Value, Vars, value_from_json};
use domain::run::StepOutcome;
use serde_json::Value as Json;
use store::{NewEvent, RunDetail, StepStatus, Store};

use crate::catalog::Compiled;
use crate::driver::{base_vars, bind, step_guard_ms};
use crate::metrics::Metrics;
use crate::step::{EffectLog, Journal, StepCx};

/// The longest wait between two attempts of a replay, whatever the step's
/// retry policy or a server's `Retry-After` asks for: a replay is watched
/// by someone (or a CI job), not resumed by a poller.
pub const MAX_REPLAY_WAIT_MS: u64 = 30_000;

/// The variables step `index` of the run in `detail` saw: the input, `run`,
/// and the latest completed attempt's output of every step before it
/// (`approved` after a review), in workflow version `wf` (the run's own).
pub fn vars_before(wf: &Compiled, detail: &RunDetail, index: usize) -> Vars {
    let run = &detail.run;
    let input: Json = serde_json::from_str(&run.input).unwrap_or(Json::Null);
    let mut vars = base_vars(&run.id, wf, &input);
    for def in wf.def.steps.iter().take(index) {
        let out = detail
            .steps
            .iter()
            .rev()
            .find(|s| s.index == def.index && s.status == StepStatus::Completed)
            .and_then(|s| s.output.as_deref())
            .and_then(|o| serde_json::from_str::<Json>(o).ok());
        bind(
            &mut vars,
            def,
            out.as_ref().map_or(Value::UNDEFINED, value_from_json),
        );
    }
    vars
}

/// One replay of a step.
#[derive(Debug)]
pub struct Replayed {
    /// The last attempt's outcome: `Transient` only when the step's
    /// attempts ran out.
    pub outcome: StepOutcome,
    /// Every event the step recorded, over all attempts, in order (secrets
    /// redacted, as the driver would commit them).
    pub events: Vec<NewEvent>,
    pub attempts: u32,
    /// Wall time of the whole replay, waits between attempts included.
    pub elapsed_ms: u64,
}

/// Why a step cannot be replayed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReplayError {
    #[error("workflow {workflow} version {version} has no step {index}")]
    NoStep {
        workflow: String,
        version: i64,
        index: usize,
    },
    #[error("step `{0}` is a review: a person decides it, it cannot be replayed")]
    Review(String),
}

/// Keeps a replay's events; refuses effects.
struct Scratch {
    events: Vec<NewEvent>,
    /// The step tried to start an effect.
    refused: bool,
}

/// What a step that tries to act during a replay is told.
pub const NO_EFFECTS: &str = "a replay performs no effects";

#[async_trait]
impl Journal for Scratch {
    async fn effect_started(
        &mut self,
        _key: &str,
        _step: &str,
        _digest: &str,
    ) -> Result<(), String> {
        self.refused = true;
        Err(NO_EFFECTS.into())
    }

    fn defer(&mut self, events: Vec<NewEvent>) {
        self.events.extend(events);
    }
}

/// Executes step `index` of `wf` with `vars` as the driver would (its
/// `when:`, its time guard, its attempts with the retry policy's back-off,
/// each wait at most [`MAX_REPLAY_WAIT_MS`]), writing nothing. A step that
/// tries to start an effect is stopped there and ends `Permanent` (naming
/// [`NO_EFFECTS`]). `store` is only lent to the step's context: the one
/// kind that uses it, `review`, is refused.
pub async fn replay_step(
    wf: &Compiled,
    index: usize,
    run_id: &str,
    vars: &Vars,
    store: &dyn Store,
) -> Result<Replayed, ReplayError> {
    let (Some(def), Some(step)) = (wf.def.steps.get(index), wf.steps.get(index)) else {
        return Err(ReplayError::NoStep {
            workflow: wf.def.name.clone(),
            version: wf.version,
            index,
        });
    };
    if def.kind == "review" {
        return Err(ReplayError::Review(def.id.clone()));
    }
    let started = Instant::now();
    let done = |outcome, events, attempts| Replayed {
        outcome,
        events,
        attempts,
        elapsed_ms: started.elapsed().as_millis() as u64,
    };
    if let Some(when) = def.when.as_ref().filter(|_| !step.evaluates_when()) {
        match when.eval(vars) {
            Ok(true) => {}
            Ok(false) => {
                let reason = format!("`when: {}` is false", when.source());
                return Ok(done(StepOutcome::Skipped { reason }, Vec::new(), 0));
            }
            Err(error) => return Ok(done(StepOutcome::Permanent { error }, Vec::new(), 0)),
        }
    }
    let metrics = Metrics::default();
    let mut journal = Scratch {
        events: Vec::new(),
        refused: false,
    };
    let guard = Duration::from_millis(step_guard_ms(def));
    let mut attempt = 1;
    loop {
        let mut cx = StepCx {
            run_id,
            step: def,
            vars,
            attempt,
            journal: &mut journal,
            effects: EffectLog::default(),
            secrets: &wf.def.secrets,
            store,
            in_flight_margin_ms: 0,
            metrics: &metrics,
        };
        let outcome = match tokio::time::timeout(guard, step.run(&mut cx)).await {
            Ok(o) => o,
            Err(_) => StepOutcome::Transient {
                error: format!("the step did not finish within {} ms", guard.as_millis()),
                retry_after_ms: None,
            },
        };
        if journal.refused {
            // Not worth another attempt: every one would be refused.
            let error = format!("step `{}` acts on the outside world: {NO_EFFECTS}", def.id);
            return Ok(done(
                StepOutcome::Permanent { error },
                journal.events,
                attempt,
            ));
        }
        let wait = match &outcome {
            StepOutcome::Transient { retry_after_ms, .. } => {
                def.retry.delay_ms(attempt, 0.5, *retry_after_ms)
            }
            _ => None,
        };
        match wait {
            Some(ms) => {
                tokio::time::sleep(Duration::from_millis(ms.min(MAX_REPLAY_WAIT_MS))).await;
                attempt += 1;
            }
            None => return Ok(done(outcome, journal.events, attempt)),
        }
    }
}
