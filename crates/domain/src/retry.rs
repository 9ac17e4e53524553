//! Retry policy: how many attempts, how long to wait between them.

use crate::diag::Diagnostic;
use crate::yaml::Node;

/// Longest wait we accept from a server's `Retry-After` (one day).
const MAX_RETRY_AFTER_MS: u64 = 86_400_000;

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RetryPolicy {
    /// Total attempts including the first; 1 means no retry.
    pub max_attempts: u32,
    pub initial_ms: u64,
    pub max_ms: u64,
    pub multiplier: f64,
    pub jitter: Jitter,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Jitter {
    /// Exactly the exponential delay.
    None,
    /// Uniform in `[0, delay]` (AWS "full jitter").
    Full,
    /// Uniform in `[delay/2, delay]`.
    Equal,
}

impl Default for RetryPolicy {
    fn default() -> RetryPolicy {
        RetryPolicy {
            max_attempts: 5,
            initial_ms: 500,
            max_ms: 60_000,
            multiplier: 2.0,
            jitter: Jitter::Equal,
        }
    }
}

impl RetryPolicy {
    /// The wait before attempt `failed + 1`, or `None` when `failed`
    /// attempts exhaust the policy. `sample` is uniform in `[0, 1)`;
    /// `retry_after_ms` is the server's wish, which wins when it is longer.
    pub fn delay_ms(&self, failed: u32, sample: f64, retry_after_ms: Option<u64>) -> Option<u64> {
        if failed >= self.max_attempts {
            return None;
        }
        let exp = self
            .multiplier
            .powi(failed.saturating_sub(1).min(63) as i32);
        let base = (self.initial_ms as f64 * exp).min(self.max_ms as f64);
        let sample = sample.clamp(0.0, 1.0);
        let jittered = match self.jitter {
            Jitter::None => base,
            Jitter::Full => base * sample,
            Jitter::Equal => base / 2.0 + base / 2.0 * sample,
        };
        let delay = jittered.max(0.0) as u64;
        Some(match retry_after_ms {
            Some(ra) => delay.max(ra.min(MAX_RETRY_AFTER_MS)),
            None => delay,
        })
    }

    /// Parses `retry: { max_attempts, backoff: exponential, initial, max, multiplier, jitter }`.
    pub fn parse(node: &Node, errors: &mut Vec<Diagnostic>) -> RetryPolicy {
        let mut p = RetryPolicy::default();
        let mut f = match node.fields() {
            Ok(f) => f,
            Err(d) => {
                errors.push(d);
                return p;
            }
        };
        let mut take = |r: Result<(), Diagnostic>| {
            if let Err(d) = r {
                errors.push(d);
            }
        };
        if let Some(n) = f.get("max_attempts") {
            take(n.as_u64().and_then(|v| {
                if (1..=100).contains(&v) {
                    p.max_attempts = v as u32;
                    Ok(())
                } else {
                    Err(n.error("max_attempts must be between 1 and 100"))
                }
            }));
        }
        if let Some(n) = f.get("backoff") {
            take(n.as_str().and_then(|s| match s {
                "exponential" => Ok(()),
                "fixed" => {
                    p.multiplier = 1.0;
                    Ok(())
                }
                _ => Err(n.error("backoff must be `exponential` or `fixed`")),
            }));
        }
        if let Some(n) = f.get("initial") {
            take(n.as_duration_ms().map(|v| p.initial_ms = v));
        }
        if let Some(n) = f.get("max") {
            take(n.as_duration_ms().map(|v| p.max_ms = v));
        }
        if let Some(n) = f.get("multiplier") {
            take(n.as_f64().and_then(|v| {
                if (1.0..=10.0).contains(&v) {
                    p.multiplier = v;
                    Ok(())
                } else {
                    Err(n.error("multiplier must be between 1 and 10"))
                }
            }));
        }
        if let Some(n) = f.get("jitter") {
            take(match &n.value {
                crate::yaml::Value::Bool(false) => {
                    p.jitter = Jitter::None;
                    Ok(())
                }
                crate::yaml::Value::Bool(true) => {
                    p.jitter = Jitter::Full;
                    Ok(())
                }
                _ => n.as_str().and_then(|s| {
                    p.jitter = match s {
                        "none" => Jitter::None,
                        "full" => Jitter::Full,
                        "equal" => Jitter::Equal,
                        _ => return Err(n.error("jitter must be none, full or equal")),
                    };
                    Ok(())
                }),
            });
        }
        if p.initial_ms > p.max_ms {
            errors.push(node.error("retry.initial must not exceed retry.max"));
        }
        f.finish(errors);
        p
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn exponential_without_jitter() {
        let p = RetryPolicy {
            jitter: Jitter::None,
            ..RetryPolicy::default()
        };
        let d: Vec<_> = (1..=5).map(|n| p.delay_ms(n, 0.5, None)).collect();
        assert_eq!(d, [Some(500), Some(1000), Some(2000), Some(4000), None]);
    }

    #[test]
    fn retry_after_wins_when_longer() {
        let p = RetryPolicy::default();
        assert_eq!(p.delay_ms(1, 0.0, Some(7_000)), Some(7_000));
        assert_eq!(p.delay_ms(1, 1.0, Some(1)), Some(500));
        assert_eq!(
            p.delay_ms(5, 0.0, Some(1)),
            None,
            "retry-after never adds attempts"
        );
    }

    #[test]
    fn full_and_equal_jitter_scale_the_delay_by_the_sample() {
        let full = RetryPolicy {
            jitter: Jitter::Full,
            ..RetryPolicy::default()
        };
        assert_eq!(full.delay_ms(1, 0.5, None), Some(250));
        assert_eq!(full.delay_ms(2, 0.25, None), Some(250));
        let equal = RetryPolicy::default();
        assert_eq!(equal.delay_ms(1, 0.5, None), Some(375));
        assert_eq!(equal.delay_ms(1, 0.0, None), Some(250));
    }

    fn parsed(body: &str) -> (RetryPolicy, Vec<String>) {
        let root = crate::yaml::parse(&format!("retry: {body}\n"), &|_| None).unwrap();
        let node = root.fields().unwrap().get("retry").unwrap();
        let mut errors = Vec::new();
        let p = RetryPolicy::parse(node, &mut errors);
        (p, errors.into_iter().map(|d| d.message).collect())
    }

    #[test]
    fn every_setting_is_read_and_bad_values_are_named() {
        let d = RetryPolicy::default();
        assert_eq!(parsed("{}"), (d, vec![]));
        assert_eq!(
            parsed("{ backoff: exponential, multiplier: 3 }"),
            (
                RetryPolicy {
                    multiplier: 3.0,
                    ..d
                },
                vec![]
            )
        );
        assert_eq!(
            parsed("{ backoff: fixed, max_attempts: 7, initial: 2s, max: 1m }"),
            (
                RetryPolicy {
                    multiplier: 1.0,
                    max_attempts: 7,
                    initial_ms: 2_000,
                    max_ms: 60_000,
                    ..d
                },
                vec![]
            )
        );
        for (jitter, want) in [
            ("false", Jitter::None),
            ("true", Jitter::Full),
            ("none", Jitter::None),
            ("full", Jitter::Full),
            ("equal", Jitter::Equal),
        ] {
            // Start from a policy whose jitter differs from the one asked.
            let (p, errors) = parsed(&format!("{{ jitter: {jitter} }}"));
            assert_eq!((p.jitter, errors), (want, vec![]), "jitter: {jitter}");
        }
        let (p, _) = parsed("{ jitter: none }");
        assert_ne!(p.jitter, d.jitter, "the default is not none");
        // Equal bounds are fine; initial beyond max is not.
        assert_eq!(parsed("{ initial: 1s, max: 1s }").1, Vec::<String>::new());
        assert_eq!(
            parsed("{ initial: 2s, max: 1s }").1,
            vec!["retry.initial must not exceed retry.max".to_string()]
        );
        for (body, want) in [
            (
                "{ backoff: linear }",
                "backoff must be `exponential` or `fixed`",
            ),
            ("{ jitter: some }", "jitter must be none, full or equal"),
            (
                "{ max_attempts: 0 }",
                "max_attempts must be between 1 and 100",
            ),
            ("{ multiplier: 0.5 }", "multiplier must be between 1 and 10"),
        ] {
            assert_eq!(parsed(body).1, vec![want.to_string()], "{body}");
        }
    }

    proptest! {
        #[test]
        fn delays_stay_within_bounds(failed in 1u32..20, sample in 0.0f64..1.0, max_attempts in 1u32..20) {
            let p = RetryPolicy { max_attempts, ..RetryPolicy::default() };
            match p.delay_ms(failed, sample, None) {
                None => prop_assert!(failed >= max_attempts),
                Some(d) => {
                    prop_assert!(failed < max_attempts);
                    prop_assert!(d <= p.max_ms);
                }
            }
        }
    }
}
