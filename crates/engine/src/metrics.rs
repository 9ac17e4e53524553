//! Counters the engine keeps for `/metrics`: relaxed atomics, one add per
//! event, no lock on the hot path.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

/// Upper bounds, in milliseconds, of the step latency histogram's buckets
/// (`+Inf` is implied).
pub const LATENCY_BUCKETS_MS: [u64; 12] = [
    1, 5, 10, 25, 50, 100, 250, 500, 1_000, 2_500, 10_000, 60_000,
];

/// Step kinds tracked apart; a deployment with more (plug-in kinds) counts
/// the rest under `kind="other"`.
const KIND_SLOTS: usize = 31;

/// Per step kind: one attempt's latency, failures and retries. A slot is
/// claimed once per kind name (a `OnceLock`), then only atomics change.
#[derive(Debug, Default)]
struct KindStats {
    name: OnceLock<String>,
    /// Attempts per latency bucket (not cumulative); the last is `+Inf`.
    buckets: [AtomicU64; LATENCY_BUCKETS_MS.len() + 1],
    count: AtomicU64,
    sum_ms: AtomicU64,
    failures: AtomicU64,
    retries: AtomicU64,
}

/// Step attempt statistics by step kind.
#[derive(Debug)]
pub struct ByKind {
    slots: [KindStats; KIND_SLOTS],
    other: KindStats,
}

impl Default for ByKind {
    fn default() -> ByKind {
        ByKind {
            slots: std::array::from_fn(|_| KindStats::default()),
            other: KindStats::default(),
        }
    }
}

impl ByKind {
    fn slot(&self, kind: &str) -> &KindStats {
        claim(&self.slots, &self.other, |s| &s.name, kind)
    }

    /// Records one finished attempt of a `kind` step that took `ms`;
    /// `failed`: it failed; `retry`: the failure will be retried.
    pub fn observe(&self, kind: &str, ms: u64, failed: bool, retry: bool) {
        let s = self.slot(kind);
        let b = LATENCY_BUCKETS_MS
            .iter()
            .position(|bound| ms <= *bound)
            .unwrap_or(LATENCY_BUCKETS_MS.len());
        s.buckets[b].fetch_add(1, Ordering::Relaxed);
        s.count.fetch_add(1, Ordering::Relaxed);
        s.sum_ms.fetch_add(ms, Ordering::Relaxed);
        if failed {
            s.failures.fetch_add(1, Ordering::Relaxed);
        }
        if retry {
            s.retries.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn render(&self, out: &mut String) {
        let used: Vec<(&str, &KindStats)> = self
            .slots
            .iter()
            .filter_map(|s| s.name.get().map(|n| (n.as_str(), s)))
            .chain((self.other.count.load(Ordering::Relaxed) > 0).then_some(("other", &self.other)))
            .collect();
        out.push_str("# HELP countersign_step_duration_seconds Time of one step attempt, by step kind.\n# TYPE countersign_step_duration_seconds histogram\n");
        for (kind, s) in &used {
            let kind = escape(kind);
            let mut cumulative = 0;
            for (i, bound) in LATENCY_BUCKETS_MS.iter().enumerate() {
                cumulative += s.buckets[i].load(Ordering::Relaxed);
                out.push_str(&format!(
                    "countersign_step_duration_seconds_bucket{{kind=\"{kind}\",le=\"{}\"}} {cumulative}\n",
                    *bound as f64 / 1000.0
                ));
            }
            cumulative += s.buckets[LATENCY_BUCKETS_MS.len()].load(Ordering::Relaxed);
            out.push_str(&format!(
                "countersign_step_duration_seconds_bucket{{kind=\"{kind}\",le=\"+Inf\"}} {cumulative}\n"
            ));
            out.push_str(&format!(
                "countersign_step_duration_seconds_sum{{kind=\"{kind}\"}} {}\ncountersign_step_duration_seconds_count{{kind=\"{kind}\"}} {cumulative}\n",
                s.sum_ms.load(Ordering::Relaxed) as f64 / 1000.0
            ));
        }
        for (name, help, get) in [
            (
                "countersign_step_failures_total",
                "Failed step attempts by step kind; for crm, slack, email and http steps these are the connector's effect failures.",
                (|s: &KindStats| s.failures.load(Ordering::Relaxed)) as fn(&KindStats) -> u64,
            ),
            (
                "countersign_step_retries_total",
                "Failed step attempts scheduled to be tried again, by step kind.",
                |s: &KindStats| s.retries.load(Ordering::Relaxed),
            ),
        ] {
            out.push_str(&format!("# HELP {name} {help}\n# TYPE {name} counter\n"));
            for (kind, s) in &used {
                out.push_str(&format!("{name}{{kind=\"{}\"}} {}\n", escape(kind), get(s)));
            }
        }
    }
}

/// One model call as a step reports it for metering: who answered, the
/// tokens it used and what it cost (`None`: unknown price).
#[derive(Debug, Clone, Copy)]
pub struct ModelCall<'a> {
    pub provider: &'a str,
    pub model: &'a str,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    pub cost_usd: Option<f64>,
}

/// Model slots tracked apart; the rest count under `model="other"`.
const MODEL_SLOTS: usize = 15;

/// Per `provider/model`: calls, tokens and cost (in micro-dollars, so an
/// atomic integer holds it).
#[derive(Debug, Default)]
struct ModelStats {
    name: OnceLock<String>,
    calls: AtomicU64,
    prompt_tokens: AtomicU64,
    completion_tokens: AtomicU64,
    cost_micro_usd: AtomicU64,
    unpriced: AtomicU64,
}

/// Model calls, tokens and cost by provider and model, and fallbacks.
#[derive(Debug)]
pub struct ByModel {
    slots: [ModelStats; MODEL_SLOTS],
    other: ModelStats,
    fallbacks: AtomicU64,
}

impl Default for ByModel {
    fn default() -> ByModel {
        ByModel {
            slots: std::array::from_fn(|_| ModelStats::default()),
            other: ModelStats::default(),
            fallbacks: AtomicU64::new(0),
        }
    }
}

/// The slot named `name`, claiming a free one the first time; `other`
/// when all are taken. Lock-free: a slot's name is set once.
fn claim<'a, T>(
    slots: &'a [T],
    other: &'a T,
    name_of: impl Fn(&T) -> &OnceLock<String>,
    name: &str,
) -> &'a T {
    for s in slots {
        match name_of(s).get() {
            Some(n) if n == name => return s,
            Some(_) => continue,
            None => {
                // If another thread claimed it first, it may have claimed
                // it for this name.
                if name_of(s).get_or_init(|| name.to_string()) == name {
                    return s;
                }
            }
        }
    }
    other
}

impl ByModel {
    pub fn observe(&self, call: &ModelCall<'_>) {
        let key = format!("{}\u{1f}{}", call.provider, call.model);
        let s = claim(&self.slots, &self.other, |s| &s.name, &key);
        s.calls.fetch_add(1, Ordering::Relaxed);
        s.prompt_tokens
            .fetch_add(call.prompt_tokens, Ordering::Relaxed);
        s.completion_tokens
            .fetch_add(call.completion_tokens, Ordering::Relaxed);
        match call.cost_usd {
            Some(usd) if usd.is_finite() && usd >= 0.0 => {
                s.cost_micro_usd
                    .fetch_add((usd * 1e6).round() as u64, Ordering::Relaxed);
            }
            _ => {
                s.unpriced.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    pub fn fell_back(&self) {
        self.fallbacks.fetch_add(1, Ordering::Relaxed);
    }

    fn render(&self, out: &mut String) {
        let used: Vec<((String, String), &ModelStats)> = self
            .slots
            .iter()
            .filter_map(|s| {
                s.name.get().map(|n| {
                    let (p, m) = n.split_once('\u{1f}').unwrap_or((n, ""));
                    ((escape(p), escape(m)), s)
                })
            })
            .chain(
                (self.other.calls.load(Ordering::Relaxed) > 0)
                    .then(|| (("other".to_string(), "other".to_string()), &self.other)),
            )
            .collect();
        let mut family = |name: &str, kind: &str, help: &str, rows: Vec<(String, String)>| {
            out.push_str(&format!("# HELP {name} {help}\n# TYPE {name} {kind}\n"));
            for (labels, v) in rows {
                out.push_str(&format!("{name}{{{labels}}} {v}\n"));
            }
        };
        let per = |f: &dyn Fn(&ModelStats) -> String| -> Vec<(String, String)> {
            used.iter()
                .map(|((p, m), s)| (format!("provider=\"{p}\",model=\"{m}\""), f(s)))
                .collect()
        };
        family(
            "countersign_llm_calls_total",
            "counter",
            "Model calls that got an answer, by provider and model.",
            per(&|s| s.calls.load(Ordering::Relaxed).to_string()),
        );
        let mut tokens = Vec::new();
        for ((p, m), s) in &used {
            for (dir, v) in [
                ("prompt", s.prompt_tokens.load(Ordering::Relaxed)),
                ("completion", s.completion_tokens.load(Ordering::Relaxed)),
            ] {
                tokens.push((
                    format!("provider=\"{p}\",model=\"{m}\",direction=\"{dir}\""),
                    v.to_string(),
                ));
            }
        }
        family(
            "countersign_llm_tokens_total",
            "counter",
            "Tokens the provider reported, by provider, model and direction.",
            tokens,
        );
        family(
            "countersign_llm_cost_usd_total",
            "counter",
            "Estimated cost in US dollars (COUNTERSIGN_LLM_PRICES over the built-in table), by provider and model.",
            per(&|s| format!("{}", s.cost_micro_usd.load(Ordering::Relaxed) as f64 / 1e6)),
        );
        family(
            "countersign_llm_unpriced_calls_total",
            "counter",
            "Model calls whose cost is unknown (no price for the model, or no usage reported).",
            per(&|s| s.unpriced.load(Ordering::Relaxed).to_string()),
        );
        out.push_str(&format!(
            "# HELP countersign_llm_fallbacks_total Times an llm step moved on to its next provider.\n# TYPE countersign_llm_fallbacks_total counter\ncountersign_llm_fallbacks_total {}\n",
            self.fallbacks.load(Ordering::Relaxed)
        ));
    }
}

/// A Prometheus label value: backslash, quote and line feed escaped.
pub fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

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
    /// Step attempts by kind: latency, failures, retries.
    pub steps: ByKind,
    /// Model calls by provider and model: tokens, cost; fallbacks.
    pub models: ByModel,
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
        self.steps.render(&mut out);
        self.models.render(&mut out);
        out.push_str(&format!(
            "# HELP countersign_runs_in_flight Runs being executed by this node.\n# TYPE countersign_runs_in_flight gauge\ncountersign_runs_in_flight {in_flight}\n"
        ));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn step_latency_renders_cumulative_buckets_by_kind() {
        let m = Metrics::default();
        m.steps.observe("rules", 0, false, false);
        m.steps.observe("rules", 7, false, false);
        m.steps.observe("crm", 120_000, true, true);
        m.steps.observe("crm", 300, true, false);
        let text = m.render(0);
        for line in [
            r#"countersign_step_duration_seconds_bucket{kind="rules",le="0.001"} 1"#,
            r#"countersign_step_duration_seconds_bucket{kind="rules",le="0.01"} 2"#,
            r#"countersign_step_duration_seconds_bucket{kind="rules",le="+Inf"} 2"#,
            r#"countersign_step_duration_seconds_sum{kind="rules"} 0.007"#,
            r#"countersign_step_duration_seconds_bucket{kind="crm",le="0.25"} 0"#,
            r#"countersign_step_duration_seconds_bucket{kind="crm",le="0.5"} 1"#,
            r#"countersign_step_duration_seconds_bucket{kind="crm",le="60"} 1"#,
            r#"countersign_step_duration_seconds_bucket{kind="crm",le="+Inf"} 2"#,
            r#"countersign_step_duration_seconds_count{kind="crm"} 2"#,
            r#"countersign_step_failures_total{kind="crm"} 2"#,
            r#"countersign_step_retries_total{kind="crm"} 1"#,
            r#"countersign_step_failures_total{kind="rules"} 0"#,
        ] {
            assert!(text.lines().any(|l| l == line), "missing {line} in\n{text}");
        }
    }

    #[test]
    fn kinds_beyond_the_slots_count_as_other() {
        let m = ByKind::default();
        for i in 0..KIND_SLOTS + 3 {
            m.observe(&format!("k{i}"), 1, false, false);
        }
        m.observe("k0", 1, false, false);
        assert_eq!(m.slot("k0").count.load(Ordering::Relaxed), 2);
        assert_eq!(m.other.count.load(Ordering::Relaxed), 3);
        let mut out = String::new();
        m.render(&mut out);
        assert!(out.contains(r#"countersign_step_duration_seconds_count{kind="other"} 3"#));
        assert_eq!(escape("a\"b\\c\nd"), r#"a\"b\\c\nd"#);
    }
}
