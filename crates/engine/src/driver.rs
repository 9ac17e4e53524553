//! Drives one run on this node: execute a step, decide, commit, repeat.
//!
//! The driver owns the run while its lease holds. Every commit is fenced
//! by the run's revision, so if an operator cancels the run or another
//! node took it over after our lease expired, our next commit fails with
//! `Conflict` and we stop without writing anything.

use std::sync::Arc;

use async_trait::async_trait;
use domain::event::{SYSTEM, kind};
use domain::expr::{Vars, value_from_json};
use domain::run::{Decision, Next, Position, RunStatus, StepOutcome, StepStatus, decide};
use serde_json::{Value as Json, json};
use sha2::Digest;
use store::{Claimed, Commit, Effect, EffectStatus, NewEvent, StepRecord, Work};
use tokio::sync::OwnedSemaphorePermit;
use tracing::Instrument;

use crate::catalog::Compiled;
use crate::engine::{Inner, START};
use crate::metrics::Metrics;
use crate::now_ms;
use crate::step::{EffectLog, Journal, Reconciled, StepCx};

/// Longest a single step attempt may take when the step sets no timeout.
const DEFAULT_STEP_GUARD_MS: u64 = 300_000;

pub(crate) struct RunState {
    id: String,
    wf: Arc<Compiled>,
    vars: Vars,
    pos: Position,
    rev: i64,
    /// An effect of the current step that started but never completed.
    open_effect: Option<Effect>,
    /// Events to prepend to the next commit (e.g. `run.resumed`).
    pending: Vec<NewEvent>,
}

impl RunState {
    pub(crate) fn fresh(id: String, wf: Arc<Compiled>, input: Json) -> RunState {
        let vars = base_vars(&id, &wf, &input);
        RunState {
            id,
            wf,
            vars,
            pos: START,
            rev: 1,
            open_effect: None,
            pending: Vec::new(),
        }
    }
}

pub(crate) fn base_vars(id: &str, wf: &Compiled, input: &Json) -> Vars {
    let mut vars = Vars::new();
    vars.insert("input".into(), value_from_json(input));
    vars.insert(
        "run".into(),
        value_from_json(&json!({ "id": id, "workflow": wf.def.name, "version": wf.version })),
    );
    vars
}

/// This node drives a run while its `Driving` lives: it holds one of the
/// node's permits, and lease renewal extends the run's lease. Dropped (the
/// driver returned, its commit failed, or the store never confirmed the
/// run), the lease is no longer renewed and expires into the poller's
/// hands.
pub(crate) struct Driving {
    inner: Arc<Inner>,
    run_id: String,
    _permit: OwnedSemaphorePermit,
}

impl Driving {
    pub(crate) fn new(inner: Arc<Inner>, run_id: &str, permit: OwnedSemaphorePermit) -> Driving {
        inner
            .driving
            .lock()
            .expect("driving lock")
            .insert(run_id.to_string());
        Driving {
            inner,
            run_id: run_id.to_string(),
            _permit: permit,
        }
    }
}

impl Drop for Driving {
    fn drop(&mut self) {
        if let Ok(mut set) = self.inner.driving.lock() {
            set.remove(&self.run_id);
        }
    }
}

/// Picks a claimed run back up: rebuild its variables, then drive it.
pub(crate) async fn resume(inner: Arc<Inner>, c: Claimed, driving: Driving) {
    let run = &c.run;
    let wf = match inner.catalog.version(&run.workflow, run.version).await {
        Ok(Some(wf)) => wf,
        Ok(None) | Err(_) => {
            tracing::error!(run_id = %run.id, workflow = %run.workflow, version = run.version, "workflow version unavailable; leaving the run for a node that has it");
            return;
        }
    };
    let input: Json = serde_json::from_str(&run.input).unwrap_or(Json::Null);
    let mut vars = base_vars(&run.id, &wf, &input);
    for (index, output) in &c.outputs {
        if let Some(def) = wf.def.steps.get(*index) {
            let v = output
                .as_deref()
                .and_then(|s| serde_json::from_str::<Json>(s).ok())
                .map_or(domain::expr::Value::UNDEFINED, |j| value_from_json(&j));
            bind(&mut vars, def, v);
        }
    }
    let current = wf.def.steps.get(run.position.index).map(|s| s.id.as_str());
    let open_effect = c
        .open_effects
        .iter()
        .find(|e| Some(e.step_id.as_str()) == current)
        .cloned();
    let state = RunState {
        id: run.id.clone(),
        pending: vec![NewEvent {
            kind: kind::RUN_RESUMED.into(),
            actor: SYSTEM.into(),
            data: json!({ "step": current, "from_status": run.status.as_str(), "wait": run.wait.map(|w| w.as_str()) }).to_string(),
            at_ms: now_ms(),
        }],
        wf,
        vars,
        pos: run.position,
        rev: run.rev,
        open_effect,
    };
    drive(inner, state, driving).await;
}

struct DbJournal<'a> {
    inner: &'a Inner,
    run_id: &'a str,
    pos: Position,
    rev: i64,
    /// Events of this attempt not yet committed (see [`Journal::defer`]).
    pending: Vec<NewEvent>,
    /// When this attempt's `effect.started` was committed.
    started_at: Option<i64>,
}

#[async_trait]
impl Journal for DbJournal<'_> {
    fn defer(&mut self, events: Vec<NewEvent>) {
        self.pending.extend(events);
    }

    async fn effect_started(
        &mut self,
        key: &str,
        step_id: &str,
        digest: &str,
    ) -> Result<(), String> {
        let now = now_ms();
        let mut events = self.pending.clone();
        events.push(NewEvent {
            kind: kind::EFFECT_STARTED.into(),
            actor: SYSTEM.into(),
            data: json!({ "key": key, "step": step_id, "request_digest": digest }).to_string(),
            at_ms: now,
        });
        let commit = Commit {
            run_id: self.run_id.to_string(),
            expect_rev: self.rev,
            status: RunStatus::Running,
            wait: None,
            position: self.pos,
            outcome: None,
            error: None,
            step: None,
            effect: Some(Effect {
                key: key.to_string(),
                run_id: self.run_id.to_string(),
                step_id: step_id.to_string(),
                status: EffectStatus::Started,
                request_digest: Some(digest.to_string()),
                external_id: None,
                at_ms: now,
            }),
            events,
            work: Work::Keep {
                lease_until_ms: now + self.inner.config.lease_ms,
            },
            at_ms: now,
        };
        self.rev = self
            .inner
            .store
            .commit(commit)
            .await
            .map_err(|e| e.to_string())?;
        self.pending.clear();
        self.started_at = Some(now);
        Ok(())
    }
}

/// Executes steps until the run completes, fails or waits.
pub(crate) async fn drive(inner: Arc<Inner>, mut st: RunState, _driving: Driving) {
    let wf = st.wf.clone();
    let run_span = crate::trace::run_span(&st.id, &wf.def.name, wf.version);
    loop {
        if inner.stopping.load(std::sync::atomic::Ordering::Relaxed) {
            // Leave the work item leased; shutdown releases it.
            return;
        }
        let i = st.pos.index;
        let (Some(def), Some(step)) = (wf.def.steps.get(i), wf.steps.get(i)) else {
            // Woken after a final `wait`: nothing left but to complete.
            complete_past_end(&inner, &mut st).await;
            return;
        };
        let started = now_ms();
        let span = crate::trace::step_span(
            &run_span,
            &def.kind,
            &st.id,
            &def.id,
            st.pos.failed_attempts + 1,
        );
        let mut journal = DbJournal {
            inner: &inner,
            run_id: &st.id,
            pos: st.pos,
            rev: st.rev,
            pending: Vec::new(),
            started_at: None,
        };
        let mut cx = StepCx {
            run_id: &st.id,
            step: def,
            vars: &st.vars,
            attempt: st.pos.failed_attempts + 1,
            journal: &mut journal,
            effects: EffectLog::default(),
            secrets: &wf.def.secrets,
            store: inner.store.as_ref(),
            in_flight_margin_ms: inner.config.in_flight_margin_ms,
            metrics: &inner.metrics,
        };
        let mut events = std::mem::take(&mut st.pending);
        let when = def.when.as_ref().filter(|_| !step.evaluates_when());
        let outcome = match when.map(|c| c.eval(&st.vars)) {
            Some(Ok(false)) => StepOutcome::Skipped {
                reason: format!(
                    "`when: {}` is false",
                    def.when.as_ref().map_or("", |c| c.source())
                ),
            },
            Some(Err(e)) => StepOutcome::Permanent { error: e },
            Some(Ok(true)) | None => {
                let mut reconciled = None;
                if let Some(open) = st.open_effect.take() {
                    // The in-flight rule: the earlier call may still land
                    // until its window has passed; looking before then could
                    // miss it and send a second one.
                    let window = in_flight_window(&inner, def, step.as_ref());
                    let look_at = open.at_ms.saturating_add(window as i64);
                    let answered = inner.answered.lock().expect("answered lock").get(&open.key)
                        == Some(&open.at_ms);
                    if !answered && now_ms() < look_at {
                        drop(cx);
                        st.rev = journal.rev;
                        events.push(NewEvent {
                            kind: kind::EFFECT_IN_FLIGHT.into(),
                            actor: SYSTEM.into(),
                            data: json!({ "key": open.key, "step": def.id, "window_ms": window, "action": "wait until the earlier call can no longer land, then look" })
                                .to_string(),
                            at_ms: now_ms(),
                        });
                        crate::trace::record_step(&span, "waiting", "in_flight");
                        wait_in_flight(&inner, &mut st, events, look_at).await;
                        return;
                    }
                    let r = step.reconcile(&mut cx).instrument(span.clone()).await;
                    let (label, action, out) = match r {
                        Reconciled::Done {
                            output,
                            external_id,
                        } => {
                            inner
                                .answered
                                .lock()
                                .expect("answered lock")
                                .remove(&open.key);
                            cx.effects.completed = Some(external_id);
                            (
                                "found",
                                "use the effect found",
                                Some(StepOutcome::Done { output }),
                            )
                        }
                        Reconciled::NotDone => (
                            "not_done",
                            "perform again under the same idempotency key",
                            None,
                        ),
                        Reconciled::Unknown => (
                            "unknown",
                            "perform again under the same idempotency key",
                            None,
                        ),
                        Reconciled::Failed { error } => (
                            "failed",
                            "fail the step without sending; an operator retry looks again",
                            Some(StepOutcome::Permanent { error }),
                        ),
                    };
                    events.push(NewEvent {
                        kind: kind::EFFECT_RECONCILED.into(),
                        actor: SYSTEM.into(),
                        data: json!({ "key": open.key, "step": def.id, "result": label, "action": action })
                        .to_string(),
                        at_ms: now_ms(),
                    });
                    reconciled = out;
                }
                match reconciled {
                    Some(outcome) => outcome,
                    None => {
                        // Events so far go out with `effect.started` if the step journals one.
                        cx.journal.defer(std::mem::take(&mut events));
                        let guard = std::time::Duration::from_millis(step_guard_ms(def));
                        match tokio::time::timeout(guard, step.run(&mut cx))
                            .instrument(span.clone())
                            .await
                        {
                            Ok(o) => o,
                            Err(_) => StepOutcome::Transient {
                                error: format!(
                                    "step did not finish within {} ms",
                                    guard.as_millis()
                                ),
                                retry_after_ms: None,
                            },
                        }
                    }
                }
            }
        };
        let effects = std::mem::take(&mut cx.effects);
        st.rev = journal.rev;
        if let Some(at) = journal.started_at {
            let key = format!("{}:{}", st.id, def.id);
            let mut answered = inner.answered.lock().expect("answered lock");
            if effects.completed.is_some() || effects.failed || !effects.answered {
                answered.remove(&key);
            } else {
                answered.insert(key, at);
            }
        }
        events.splice(0..0, std::mem::take(&mut journal.pending));
        let now = now_ms();
        let d = decide(
            wf.def.steps.len(),
            st.pos,
            &def.id,
            &outcome,
            &def.retry,
            now,
            rand::random::<f64>(),
        );
        let output = match &outcome {
            StepOutcome::Done { output }
            | StepOutcome::Finish { output, .. }
            | StepOutcome::Sleep { output, .. }
            | StepOutcome::Suspend { output, .. } => Some(output),
            _ => None,
        };
        let output_text = output.map(|o| wf.def.redact(&o.to_string()));
        let commit = build_commit(
            &inner,
            &st,
            def,
            &d,
            output_text.clone(),
            effects,
            events,
            started,
            now,
        );
        crate::trace::record_step(
            &span,
            d.step_status.as_str(),
            crate::trace::outcome_label(&outcome),
        );
        let m = &inner.metrics;
        let failed = d.step_status == StepStatus::Failed;
        let retry = failed && matches!(d.next, Next::At { .. });
        m.steps
            .observe(&def.kind, (now - started).max(0) as u64, failed, retry);
        if failed {
            tracing::warn!(
                run_id = %st.id,
                step_id = %def.id,
                kind = %def.kind,
                attempt = st.pos.failed_attempts + 1,
                retry,
                error = %wf.def.redact(d.error.as_deref().unwrap_or("")),
                "step attempt failed"
            );
        }
        Metrics::inc(match d.step_status {
            StepStatus::Completed => &m.steps_completed,
            StepStatus::Skipped => &m.steps_skipped,
            StepStatus::Failed => &m.steps_failed,
            StepStatus::Waiting => &m.steps_waiting,
        });
        match d.run_status {
            RunStatus::Completed => Metrics::inc(&m.runs_completed),
            RunStatus::Failed => Metrics::inc(&m.runs_failed),
            _ => {}
        }
        match inner.store.commit(commit).await {
            Ok(rev) => st.rev = rev,
            Err(store::Error::Conflict(_)) => {
                Metrics::inc(&m.commit_conflicts);
                tracing::debug!(run_id = %st.id, step_id = %def.id, "run changed under us (cancelled or taken over); stopping");
                inner.settled(&st.id);
                return;
            }
            Err(e) => {
                Metrics::inc(&m.commit_errors);
                // Dropping `_driving` stops the renewal of this run's lease.
                tracing::error!(run_id = %st.id, step_id = %def.id, error = %e, "commit failed; the lease will expire and the step will be retried");
                return;
            }
        }
        match d.next {
            Next::Run(p) => {
                let value = match &outcome {
                    StepOutcome::Skipped { .. } => domain::expr::Value::UNDEFINED,
                    _ => output.map_or(domain::expr::Value::UNDEFINED, value_from_json),
                };
                bind(&mut st.vars, def, value);
                st.pos = p;
            }
            _ => {
                inner.settled(&st.id);
                return;
            }
        }
    }
}

/// How long after `effect.started` a call of `step` may still land: its
/// call window (at most the attempt's time guard, which cuts the call
/// off) plus the configured margin.
fn in_flight_window(inner: &Inner, def: &domain::workflow::StepDef, step: &dyn crate::Step) -> u64 {
    let guard = step_guard_ms(def);
    step.call_window_ms()
        .map_or(guard, |w| w.min(guard))
        .saturating_add(inner.config.in_flight_margin_ms)
}

/// The longest one attempt of `def` may take before the driver cuts it off.
pub(crate) fn step_guard_ms(def: &domain::workflow::StepDef) -> u64 {
    def.timeout_ms.map_or(DEFAULT_STEP_GUARD_MS, |t| t + 5_000)
}

/// Parks the run on a timer until `look_at_ms`, its open effect untouched:
/// the poller resumes it then, and reconciliation looks.
async fn wait_in_flight(inner: &Inner, st: &mut RunState, events: Vec<NewEvent>, look_at_ms: i64) {
    let now = now_ms();
    let commit = Commit {
        run_id: st.id.clone(),
        expect_rev: st.rev,
        status: RunStatus::Waiting,
        // A pause before the step's next attempt, not a `wait` step: `?wait`
        // callers keep waiting.
        wait: Some(domain::run::WaitReason::Retry),
        position: st.pos,
        outcome: None,
        error: None,
        step: None,
        effect: None,
        events,
        work: Work::At {
            run_at_ms: look_at_ms,
        },
        at_ms: now,
    };
    match inner.store.commit(commit).await {
        Ok(rev) => st.rev = rev,
        Err(store::Error::Conflict(_)) => {
            Metrics::inc(&inner.metrics.commit_conflicts);
            tracing::debug!(run = %st.id, "run changed under us (cancelled or taken over); stopping");
        }
        Err(e) => {
            Metrics::inc(&inner.metrics.commit_errors);
            tracing::error!(run = %st.id, error = %e, "commit failed; the lease will expire and the run will be resumed");
            return;
        }
    }
    inner.settled(&st.id);
}

/// Makes a step's output visible to later steps as `<step id>`; a
/// `review` step's `approved` member also becomes `approved`.
pub(crate) fn bind(vars: &mut Vars, def: &domain::workflow::StepDef, value: domain::expr::Value) {
    if def.kind == "review"
        && let Ok(approved) = value.get_attr("approved")
        && !approved.is_undefined()
    {
        vars.insert("approved".into(), approved);
    }
    vars.insert(def.id.clone(), value);
}

/// Outputs up to this size (serialised) are copied into `step.completed`;
/// larger ones are referenced by digest (`output_bytes`, `output_sha256`).
pub const MAX_EVENT_OUTPUT: usize = 64 << 10;

#[allow(clippy::too_many_arguments)]
fn build_commit(
    inner: &Inner,
    st: &RunState,
    def: &domain::workflow::StepDef,
    d: &Decision,
    output: Option<String>,
    effects: EffectLog,
    mut events: Vec<NewEvent>,
    started: i64,
    now: i64,
) -> Commit {
    let wf = &st.wf.def;
    let key = format!("{}:{}", st.id, def.id);
    let effect = match (effects.completed, effects.failed) {
        (Some(external_id), _) => Some((EffectStatus::Completed, external_id)),
        (None, true) => Some((EffectStatus::Failed, None)),
        _ => None,
    }
    .map(|(status, external_id)| {
        events.push(NewEvent {
            kind: if status == EffectStatus::Completed {
                kind::EFFECT_COMPLETED
            } else {
                kind::EFFECT_FAILED
            }
            .into(),
            actor: SYSTEM.into(),
            data: json!({ "key": key, "step": def.id, "external_id": external_id }).to_string(),
            at_ms: now,
        });
        Effect {
            key: key.clone(),
            run_id: st.id.clone(),
            step_id: def.id.clone(),
            status,
            request_digest: None,
            external_id,
            at_ms: now,
        }
    });
    for (k, data) in &d.events {
        let mut text = wf.redact(&data.to_string());
        // Splice the already serialised (and redacted) output into the
        // event rather than parsing it back into a value. A large output is
        // stored once, in the step record; the event carries its digest, so
        // the hash chain still covers it.
        if *k == kind::STEP_COMPLETED
            && let (Some(o), Some(head)) = (&output, text.strip_suffix('}'))
        {
            text = if o.len() <= MAX_EVENT_OUTPUT {
                format!("{head},\"output\":{o}}}")
            } else {
                format!(
                    "{head},\"output_bytes\":{},\"output_sha256\":\"{}\"}}",
                    o.len(),
                    hex::encode(sha2::Sha256::digest(o.as_bytes()))
                )
            };
        }
        events.push(NewEvent {
            kind: (*k).to_string(),
            actor: SYSTEM.into(),
            data: text,
            at_ms: now,
        });
    }
    let work = match d.next {
        Next::Run(_) => Work::Keep {
            lease_until_ms: now + inner.config.lease_ms,
        },
        Next::At { at_ms, .. } => Work::At { run_at_ms: at_ms },
        Next::Suspend { deadline_ms, .. } => match deadline_ms {
            Some(at) => Work::At { run_at_ms: at },
            None => Work::Remove,
        },
        Next::End => Work::Remove,
    };
    let position = match d.next {
        Next::Run(p) | Next::At { pos: p, .. } | Next::Suspend { pos: p, .. } => p,
        Next::End => st.pos,
    };
    Commit {
        run_id: st.id.clone(),
        expect_rev: st.rev,
        status: d.run_status,
        wait: d.wait,
        position,
        outcome: d.outcome.clone(),
        error: d.error.as_deref().map(|e| wf.redact(e)),
        step: Some(StepRecord {
            index: def.index,
            step_id: def.id.clone(),
            attempt: st.pos.failed_attempts + 1,
            status: d.step_status,
            output,
            error: d.error.as_deref().map(|e| wf.redact(e)),
            started_at_ms: started,
            finished_at_ms: now,
        }),
        effect,
        events,
        work,
        at_ms: now,
    }
}

/// Completes a run whose position is past its last step (a final `wait`).
async fn complete_past_end(inner: &Inner, st: &mut RunState) {
    let now = now_ms();
    let d = domain::run::complete_after_last_step();
    let mut events = std::mem::take(&mut st.pending);
    events.extend(d.events.iter().map(|(k, data)| NewEvent {
        kind: (*k).to_string(),
        actor: SYSTEM.into(),
        data: data.to_string(),
        at_ms: now,
    }));
    let commit = Commit {
        run_id: st.id.clone(),
        expect_rev: st.rev,
        status: d.run_status,
        wait: None,
        position: st.pos,
        outcome: d.outcome,
        error: None,
        step: None,
        effect: None,
        events,
        work: Work::Remove,
        at_ms: now,
    };
    if let Err(e) = inner.store.commit(commit).await {
        tracing::warn!(run_id = %st.id, error = %e, "completing the run failed");
    }
    inner.settled(&st.id);
}
