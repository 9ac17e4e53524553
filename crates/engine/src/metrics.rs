//! Counters the engine keeps for `/metrics`: relaxed atomics, one add per
//! event, no lock on the hot path.

use std::sync::atomic::{AtomicU64, Ordering};

/// Engine counters since start.
#[derive(Debug, Default)]
pub struct Metrics {
    pub runs_submitted: AtomicU64,
    pub runs_deduplicated: AtomicU64,
    pub runs_resumed: AtomicU64,
    pub steps_completed: AtomicU64,
    pub steps_skipped: AtomicU64,
    pub steps_failed: AtomicU64,
    pub steps_waiting: AtomicU64,
    pub runs_completed: AtomicU64,
    pub runs_failed: AtomicU64,
    pub commit_conflicts: AtomicU64,
    pub commit_errors: AtomicU64,
    pub wait_wakeups_local: AtomicU64,
    pub wait_wakeups_notified: AtomicU64,
    pub wait_wakeups_resync: AtomicU64,
    pub wait_wakeups_polled: AtomicU64,
}

impl Metrics {
    pub(crate) fn inc(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// Renders the Prometheus text exposition format (version 0.0.4).
    pub fn render(&self, in_flight: usize) -> String {
        let c = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let mut out = String::with_capacity(2048);
        let mut counter = |name: &str, help: &str, samples: &[(&str, u64)]| {
            out.push_str(&format!("# HELP {name} {help}\n# TYPE {name} counter\n"));
            for (labels, v) in samples {
                out.push_str(&format!("{name}{labels} {v}\n"));
            }
        };
        counter(
            "countersign_runs_submitted_total",
            "Runs created by intake on this node.",
            &[("", c(&self.runs_submitted))],
        );
        counter(
            "countersign_runs_deduplicated_total",
            "Submissions answered with an existing run (idempotency key).",
            &[("", c(&self.runs_deduplicated))],
        );
        counter(
            "countersign_runs_resumed_total",
            "Runs claimed from the queue (timers, retries, other nodes' runs).",
            &[("", c(&self.runs_resumed))],
        );
        counter(
            "countersign_step_attempts_total",
            "Step attempts by result.",
            &[
                ("{result=\"completed\"}", c(&self.steps_completed)),
                ("{result=\"skipped\"}", c(&self.steps_skipped)),
                ("{result=\"failed\"}", c(&self.steps_failed)),
                ("{result=\"waiting\"}", c(&self.steps_waiting)),
            ],
        );
        counter(
            "countersign_runs_finished_total",
            "Runs that reached a final state on this node.",
            &[
                ("{status=\"completed\"}", c(&self.runs_completed)),
                ("{status=\"failed\"}", c(&self.runs_failed)),
            ],
        );
        counter(
            "countersign_commit_conflicts_total",
            "Commits refused because the run changed (cancelled or taken over).",
            &[("", c(&self.commit_conflicts))],
        );
        counter(
            "countersign_commit_errors_total",
            "Commits that failed in the database.",
            &[("", c(&self.commit_errors))],
        );
        counter(
            "countersign_wait_wakeups_total",
            "Wake-ups of ?wait= callers by source: a driver here, the store's settled feed, a feed reconnect, or the periodic look.",
            &[
                ("{source=\"local\"}", c(&self.wait_wakeups_local)),
                ("{source=\"notified\"}", c(&self.wait_wakeups_notified)),
                ("{source=\"resync\"}", c(&self.wait_wakeups_resync)),
                ("{source=\"polled\"}", c(&self.wait_wakeups_polled)),
            ],
        );
        out.push_str(&format!(
            "# HELP countersign_runs_in_flight Runs being executed by this node.\n# TYPE countersign_runs_in_flight gauge\ncountersign_runs_in_flight {in_flight}\n"
        ));
        out
    }
}
