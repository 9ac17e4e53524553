//! Run and step state machines.
//!
//! `decide` is the heart of execution semantics and is pure: given where a
//! run stands and what a step attempt produced, it says what the run's new
//! state is, what to do next and which audit events to write. The engine
//! persists the decision in one transaction and acts on `next`.

use std::fmt;
use std::str::FromStr;

use serde_json::{Value, json};

use crate::event::kind;
use crate::retry::RetryPolicy;

/// States of a run. See DESIGN §1.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RunStatus {
    Queued,
    Running,
    /// Paused on a timer, a retry back-off or a person.
    Waiting,
    Completed,
    /// Needs an operator: retry from the failed step, or cancel.
    Failed,
    Cancelled,
    /// A reviewer rejected it.
    Rejected,
    /// A reviewer handed the case to a person ("needs manual handling"):
    /// no automatic step after the review runs.
    HandedOff,
}

impl RunStatus {
    pub const ALL: [RunStatus; 8] = [
        RunStatus::Queued,
        RunStatus::Running,
        RunStatus::Waiting,
        RunStatus::Completed,
        RunStatus::Failed,
        RunStatus::Cancelled,
        RunStatus::Rejected,
        RunStatus::HandedOff,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::Queued => "queued",
            RunStatus::Running => "running",
            RunStatus::Waiting => "waiting",
            RunStatus::Completed => "completed",
            RunStatus::Failed => "failed",
            RunStatus::Cancelled => "cancelled",
            RunStatus::Rejected => "rejected",
            RunStatus::HandedOff => "handed_off",
        }
    }

    /// No further step will execute (an operator may still retry `Failed`).
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            RunStatus::Completed
                | RunStatus::Failed
                | RunStatus::Cancelled
                | RunStatus::Rejected
                | RunStatus::HandedOff
        )
    }

    /// A run settles when it is terminal or starts waiting for a person or
    /// a timer; `?wait=` returns at that point. A retry back-off is not a
    /// settled state: the run is still trying.
    pub fn is_settled(self, wait: Option<WaitReason>) -> bool {
        self.is_terminal()
            || (self == RunStatus::Waiting
                && matches!(wait, Some(WaitReason::Review | WaitReason::Timer)))
    }

    /// Operator commands allowed from this state.
    pub fn can_retry(self) -> bool {
        self == RunStatus::Failed
    }

    pub fn can_cancel(self) -> bool {
        !self.is_terminal() || self == RunStatus::Failed
    }

    /// Retention may delete the run's data: it ended and nothing can
    /// resume it (a `Failed` run waits for an operator; cancel it first).
    pub fn may_prune(self) -> bool {
        self.is_terminal() && !self.can_retry()
    }
}

impl fmt::Display for RunStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for RunStatus {
    type Err = String;
    fn from_str(s: &str) -> Result<RunStatus, String> {
        RunStatus::ALL
            .into_iter()
            .find(|st| st.as_str() == s)
            .ok_or_else(|| {
                format!(
                    "unknown status {s:?}; expected one of {}",
                    RunStatus::ALL.map(RunStatus::as_str).join(", ")
                )
            })
    }
}

/// Why a run is waiting.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum WaitReason {
    Timer,
    Retry,
    Review,
}

impl WaitReason {
    pub fn as_str(self) -> &'static str {
        match self {
            WaitReason::Timer => "timer",
            WaitReason::Retry => "retry",
            WaitReason::Review => "review",
        }
    }

    pub fn parse(s: &str) -> Option<WaitReason> {
        match s {
            "timer" => Some(WaitReason::Timer),
            "retry" => Some(WaitReason::Retry),
            "review" => Some(WaitReason::Review),
            _ => None,
        }
    }
}

/// States of one step attempt as recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StepStatus {
    Completed,
    Skipped,
    /// This attempt failed; another may follow.
    Failed,
    /// Waiting for an outside signal.
    Waiting,
}

impl StepStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            StepStatus::Completed => "completed",
            StepStatus::Skipped => "skipped",
            StepStatus::Failed => "failed",
            StepStatus::Waiting => "waiting",
        }
    }
}

/// What one attempt of a step produced. Expected outcomes are states,
/// not errors: a finish rule or a wait is as normal as success.
#[derive(Debug, Clone, PartialEq)]
pub enum StepOutcome {
    Done {
        output: Value,
    },
    Skipped {
        reason: String,
    },
    /// End the run now, successfully, with a named outcome (e.g. `discarded`).
    Finish {
        output: Value,
        outcome: String,
    },
    /// Done; the next step may start only at `until_ms`.
    Sleep {
        output: Value,
        until_ms: i64,
    },
    /// Paused until an outside signal; `deadline_ms` wakes the step again.
    Suspend {
        output: Value,
        reason: WaitReason,
        deadline_ms: Option<i64>,
    },
    /// This attempt failed in a way another attempt may fix.
    Transient {
        error: String,
        retry_after_ms: Option<u64>,
    },
    /// Retrying will not help; an operator must act.
    Permanent {
        error: String,
    },
}

/// Where a run stands: the step it is on and how many attempts of it failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Position {
    pub index: usize,
    pub failed_attempts: u32,
}

/// What to do after persisting a decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// Execute step `index` now; the same worker may carry on.
    Run(Position),
    /// Execute step `index` at `at_ms` (timer or retry back-off).
    At { pos: Position, at_ms: i64 },
    /// Wait for an outside signal; wake at `deadline_ms` if given.
    Suspend {
        pos: Position,
        deadline_ms: Option<i64>,
    },
    /// Nothing more to run.
    End,
}

/// The result of `decide`, ready to persist.
#[derive(Debug, Clone, PartialEq)]
pub struct Decision {
    pub step_status: StepStatus,
    pub run_status: RunStatus,
    pub wait: Option<WaitReason>,
    /// Named result of a completed run (`completed`, `discarded`, …).
    pub outcome: Option<String>,
    pub error: Option<String>,
    pub next: Next,
    pub events: Vec<(&'static str, Value)>,
}

/// Decides the next state of a run after one attempt of step `pos.index`.
///
/// `sample` is uniform in `[0, 1)` and feeds retry jitter.
pub fn decide(
    step_count: usize,
    pos: Position,
    step_id: &str,
    outcome: &StepOutcome,
    policy: &RetryPolicy,
    now_ms: i64,
    sample: f64,
) -> Decision {
    let attempt = pos.failed_attempts + 1;
    let advance = |events: Vec<(&'static str, Value)>, status: StepStatus| {
        let mut events = events;
        if pos.index + 1 >= step_count {
            events.push((kind::RUN_COMPLETED, json!({ "outcome": "completed" })));
            Decision {
                step_status: status,
                run_status: RunStatus::Completed,
                wait: None,
                outcome: Some("completed".into()),
                error: None,
                next: Next::End,
                events,
            }
        } else {
            Decision {
                step_status: status,
                run_status: RunStatus::Running,
                wait: None,
                outcome: None,
                error: None,
                next: Next::Run(Position {
                    index: pos.index + 1,
                    failed_attempts: 0,
                }),
                events,
            }
        }
    };
    match outcome {
        StepOutcome::Done { .. } => advance(
            vec![(
                kind::STEP_COMPLETED,
                json!({ "step": step_id, "attempt": attempt }),
            )],
            StepStatus::Completed,
        ),
        StepOutcome::Skipped { reason } => advance(
            vec![(
                kind::STEP_SKIPPED,
                json!({ "step": step_id, "reason": reason }),
            )],
            StepStatus::Skipped,
        ),
        StepOutcome::Finish { outcome, .. } => Decision {
            step_status: StepStatus::Completed,
            run_status: RunStatus::Completed,
            wait: None,
            outcome: Some(outcome.clone()),
            error: None,
            next: Next::End,
            events: vec![
                (
                    kind::STEP_COMPLETED,
                    json!({ "step": step_id, "attempt": attempt }),
                ),
                (
                    kind::RUN_COMPLETED,
                    json!({ "outcome": outcome, "finished_by": step_id }),
                ),
            ],
        },
        StepOutcome::Sleep { until_ms, .. } => {
            let events = vec![
                (
                    kind::STEP_COMPLETED,
                    json!({ "step": step_id, "attempt": attempt }),
                ),
                (
                    kind::WAIT_STARTED,
                    json!({ "step": step_id, "until_ms": until_ms }),
                ),
            ];
            if *until_ms <= now_ms {
                return advance(events, StepStatus::Completed);
            }
            // Wake at `until_ms` on the next step, or, after the last step,
            // at a position past the end, where the run completes.
            Decision {
                step_status: StepStatus::Completed,
                run_status: RunStatus::Waiting,
                wait: Some(WaitReason::Timer),
                outcome: None,
                error: None,
                next: Next::At {
                    pos: Position {
                        index: pos.index + 1,
                        failed_attempts: 0,
                    },
                    at_ms: *until_ms,
                },
                events,
            }
        }
        StepOutcome::Suspend {
            reason,
            deadline_ms,
            ..
        } => Decision {
            step_status: StepStatus::Waiting,
            run_status: RunStatus::Waiting,
            wait: Some(*reason),
            outcome: None,
            error: None,
            next: Next::Suspend {
                pos,
                deadline_ms: *deadline_ms,
            },
            events: vec![(
                kind::WAIT_STARTED,
                json!({ "step": step_id, "reason": reason.as_str(), "deadline_ms": deadline_ms }),
            )],
        },
        StepOutcome::Transient {
            error,
            retry_after_ms,
        } => match policy.delay_ms(attempt, sample, *retry_after_ms) {
            Some(delay) => {
                let at_ms = now_ms + delay as i64;
                Decision {
                    step_status: StepStatus::Failed,
                    run_status: RunStatus::Waiting,
                    wait: Some(WaitReason::Retry),
                    outcome: None,
                    error: Some(error.clone()),
                    next: Next::At {
                        pos: Position {
                            index: pos.index,
                            failed_attempts: attempt,
                        },
                        at_ms,
                    },
                    events: vec![
                        (
                            kind::STEP_FAILED,
                            json!({ "step": step_id, "attempt": attempt, "error": error, "class": "transient" }),
                        ),
                        (
                            kind::STEP_RETRY_SCHEDULED,
                            json!({ "step": step_id, "next_attempt": attempt + 1, "delay_ms": delay, "retry_after_ms": retry_after_ms }),
                        ),
                    ],
                }
            }
            None => fail(
                pos,
                step_id,
                attempt,
                format!("{error} (gave up after {attempt} attempts)"),
                "transient",
            ),
        },
        StepOutcome::Permanent { error } => fail(pos, step_id, attempt, error.clone(), "permanent"),
    }
}

/// The decision for a run woken past its last step (a final `wait`).
pub fn complete_after_last_step() -> Decision {
    Decision {
        step_status: StepStatus::Completed,
        run_status: RunStatus::Completed,
        wait: None,
        outcome: Some("completed".into()),
        error: None,
        next: Next::End,
        events: vec![(kind::RUN_COMPLETED, json!({ "outcome": "completed" }))],
    }
}

fn fail(pos: Position, step_id: &str, attempt: u32, error: String, class: &str) -> Decision {
    Decision {
        step_status: StepStatus::Failed,
        run_status: RunStatus::Failed,
        wait: None,
        outcome: None,
        next: Next::End,
        events: vec![
            (
                kind::STEP_FAILED,
                json!({ "step": step_id, "attempt": attempt, "error": error, "class": class }),
            ),
            (
                kind::RUN_FAILED,
                json!({ "step": step_id, "error": error, "position": pos.index }),
            ),
        ],
        error: Some(error),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const NOW: i64 = 1_000_000;

    fn at(index: usize, failed_attempts: u32) -> Position {
        Position {
            index,
            failed_attempts,
        }
    }

    fn done() -> StepOutcome {
        StepOutcome::Done { output: json!({}) }
    }

    #[test]
    fn each_status_says_what_it_allows() {
        use RunStatus as S;
        // (status, terminal, settled without a wait, retry, cancel, prune)
        let table = [
            (S::Queued, false, false, false, true, false),
            (S::Running, false, false, false, true, false),
            (S::Waiting, false, false, false, true, false),
            (S::Completed, true, true, false, false, true),
            (S::Failed, true, true, true, true, false),
            (S::Cancelled, true, true, false, false, true),
            (S::Rejected, true, true, false, false, true),
            (S::HandedOff, true, true, false, false, true),
        ];
        assert_eq!(table.len(), S::ALL.len());
        for (s, terminal, settled, retry, cancel, prune) in table {
            assert_eq!(s.is_terminal(), terminal, "{s} terminal");
            assert_eq!(s.is_settled(None), settled, "{s} settled");
            assert_eq!(s.can_retry(), retry, "{s} retry");
            assert_eq!(s.can_cancel(), cancel, "{s} cancel");
            assert_eq!(s.may_prune(), prune, "{s} prune");
            assert_eq!(s.as_str().parse::<S>(), Ok(s));
            assert_eq!(s.to_string(), s.as_str());
        }
        assert_eq!(S::HandedOff.as_str(), "handed_off");
        // Waiting settles only for a person or a timer, not a retry back-off.
        assert!(S::Waiting.is_settled(Some(WaitReason::Review)));
        assert!(S::Waiting.is_settled(Some(WaitReason::Timer)));
        assert!(!S::Waiting.is_settled(Some(WaitReason::Retry)));
        assert!(!S::Running.is_settled(Some(WaitReason::Review)));
        let err = "done".parse::<S>().unwrap_err();
        assert!(
            err.contains("\"done\"") && err.contains("handed_off"),
            "{err}"
        );
    }

    #[test]
    fn wait_reasons_and_step_statuses_keep_their_stored_names() {
        // These names are in every database: renaming one strands rows.
        for (w, name) in [
            (WaitReason::Timer, "timer"),
            (WaitReason::Retry, "retry"),
            (WaitReason::Review, "review"),
        ] {
            assert_eq!(w.as_str(), name);
            assert_eq!(WaitReason::parse(name), Some(w));
        }
        assert_eq!(WaitReason::parse("person"), None);
        for (st, name) in [
            (StepStatus::Completed, "completed"),
            (StepStatus::Skipped, "skipped"),
            (StepStatus::Failed, "failed"),
            (StepStatus::Waiting, "waiting"),
        ] {
            assert_eq!(st.as_str(), name);
        }
    }

    #[test]
    fn success_advances_then_completes() {
        let p = RetryPolicy::default();
        let d = decide(3, at(0, 0), "a", &done(), &p, NOW, 0.5);
        assert_eq!(d.next, Next::Run(at(1, 0)));
        assert_eq!(d.run_status, RunStatus::Running);
        let d = decide(3, at(2, 0), "c", &done(), &p, NOW, 0.5);
        assert_eq!(d.next, Next::End);
        assert_eq!(d.run_status, RunStatus::Completed);
        assert_eq!(d.events.last().unwrap().0, kind::RUN_COMPLETED);
    }

    #[test]
    fn transient_errors_retry_then_fail() {
        let p = RetryPolicy {
            max_attempts: 2,
            jitter: crate::retry::Jitter::None,
            ..RetryPolicy::default()
        };
        let e = StepOutcome::Transient {
            error: "503".into(),
            retry_after_ms: Some(2_000),
        };
        let d = decide(3, at(1, 0), "b", &e, &p, NOW, 0.5);
        assert_eq!(d.run_status, RunStatus::Waiting);
        assert_eq!(d.wait, Some(WaitReason::Retry));
        assert_eq!(
            d.next,
            Next::At {
                pos: at(1, 1),
                at_ms: NOW + 2_000
            }
        );
        let d = decide(3, at(1, 1), "b", &e, &p, NOW, 0.5);
        assert_eq!(d.run_status, RunStatus::Failed);
        assert!(d.error.unwrap().contains("gave up after 2 attempts"));
    }

    #[test]
    fn finish_ends_early_with_named_outcome() {
        let o = StepOutcome::Finish {
            output: json!({}),
            outcome: "discarded".into(),
        };
        let d = decide(5, at(1, 0), "check", &o, &RetryPolicy::default(), NOW, 0.0);
        assert_eq!(
            (d.run_status, d.outcome.as_deref(), d.next),
            (RunStatus::Completed, Some("discarded"), Next::End)
        );
    }

    #[test]
    fn a_final_wait_still_waits() {
        let o = StepOutcome::Sleep {
            output: json!({}),
            until_ms: NOW + 10,
        };
        let d = decide(1, at(0, 0), "pause", &o, &RetryPolicy::default(), NOW, 0.0);
        assert_eq!(d.run_status, RunStatus::Waiting);
        assert_eq!(
            d.next,
            Next::At {
                pos: at(1, 0),
                at_ms: NOW + 10
            }
        );
        assert_eq!(complete_after_last_step().run_status, RunStatus::Completed);
    }

    #[test]
    fn sleep_schedules_next_step() {
        let o = StepOutcome::Sleep {
            output: json!({}),
            until_ms: NOW + 10,
        };
        let d = decide(2, at(0, 0), "pause", &o, &RetryPolicy::default(), NOW, 0.0);
        assert_eq!(
            d.next,
            Next::At {
                pos: at(1, 0),
                at_ms: NOW + 10
            }
        );
        assert_eq!(d.wait, Some(WaitReason::Timer));
        let past = StepOutcome::Sleep {
            output: json!({}),
            until_ms: NOW - 10,
        };
        let d = decide(
            2,
            at(0, 0),
            "pause",
            &past,
            &RetryPolicy::default(),
            NOW,
            0.0,
        );
        assert_eq!(
            d.next,
            Next::Run(at(1, 0)),
            "an elapsed timer does not wait"
        );
    }

    fn outcome() -> impl Strategy<Value = StepOutcome> {
        prop_oneof![
            Just(done()),
            Just(StepOutcome::Skipped {
                reason: "when".into()
            }),
            Just(StepOutcome::Finish {
                output: json!(null),
                outcome: "x".into()
            }),
            (0i64..100).prop_map(|d| StepOutcome::Sleep {
                output: json!(null),
                until_ms: NOW + d
            }),
            proptest::option::of(0u64..10_000).prop_map(|ra| StepOutcome::Transient {
                error: "e".into(),
                retry_after_ms: ra
            }),
            Just(StepOutcome::Permanent { error: "p".into() }),
        ]
    }

    proptest! {
        /// Driving a run with arbitrary outcomes always ends, never exceeds
        /// the attempt budget, and only moves forward.
        #[test]
        fn runs_always_terminate(steps in 1usize..6, max_attempts in 1u32..5, outcomes in proptest::collection::vec(outcome(), 1..200)) {
            let policy = RetryPolicy { max_attempts, ..RetryPolicy::default() };
            let mut pos = at(0, 0);
            let mut ended = false;
            for o in &outcomes {
                if pos.index == steps {
                    // Woken past a final wait: the engine completes the run.
                    prop_assert!(complete_after_last_step().run_status.is_terminal());
                    ended = true;
                    break;
                }
                let d = decide(steps, pos, "s", o, &policy, NOW, 0.3);
                prop_assert!(!d.events.is_empty());
                match d.next {
                    Next::Run(p) | Next::At { pos: p, .. } => {
                        prop_assert!(!d.run_status.is_terminal());
                        prop_assert!(p.index > pos.index || (p.index == pos.index && p.failed_attempts == pos.failed_attempts + 1));
                        prop_assert!(p.failed_attempts < max_attempts);
                        pos = p;
                    }
                    Next::Suspend { .. } => unreachable!("no suspend outcomes generated"),
                    Next::End => {
                        prop_assert!(d.run_status.is_terminal());
                        ended = true;
                        break;
                    }
                }
            }
            prop_assert!(ended || outcomes.len() < steps * max_attempts as usize + 1);
        }
    }
}
