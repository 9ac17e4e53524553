//! Cost estimates: a price table (USD per million input and output tokens)
//! looked up by the longest model-name prefix. The built-in rows are
//! OpenAI list prices as published when this was written — estimates, not
//! invoices; `COUNTERSIGN_LLM_PRICES` overrides or extends them.

use crate::provider::Usage;

/// `(model prefix, input USD / 1M tokens, output USD / 1M tokens)`.
const BUILTIN: &[(&str, f64, f64)] = &[
    ("gpt-4o-mini", 0.15, 0.60),
    ("gpt-4o", 2.50, 10.00),
    ("gpt-4.1-nano", 0.10, 0.40),
    ("gpt-4.1-mini", 0.40, 1.60),
    ("gpt-4.1", 2.00, 8.00),
    ("gpt-5-nano", 0.05, 0.40),
    ("gpt-5-mini", 0.25, 2.00),
    ("gpt-5", 1.25, 10.00),
    ("o4-mini", 1.10, 4.40),
    ("o3-mini", 1.10, 4.40),
    ("o3", 2.00, 8.00),
];

/// A price table.
#[derive(Debug, Clone)]
pub struct Prices {
    rows: Vec<(String, f64, f64)>,
}

impl Default for Prices {
    fn default() -> Prices {
        Prices {
            rows: BUILTIN
                .iter()
                .map(|(m, i, o)| (m.to_string(), *i, *o))
                .collect(),
        }
    }
}

impl Prices {
    /// An empty table (every cost unknown).
    pub fn empty() -> Prices {
        Prices { rows: Vec::new() }
    }

    /// Applies `model=input/output;model=input/output` (USD per million
    /// tokens), e.g. `gpt-4o-mini=0.15/0.6;llama3.1=0/0`.
    pub fn apply(&mut self, spec: &str) -> Result<(), String> {
        for item in spec
            .split([';', ','])
            .map(str::trim)
            .filter(|s| !s.is_empty())
        {
            let bad = || {
                format!(
                    "invalid price {item:?}: expected MODEL=INPUT/OUTPUT in USD per million tokens, e.g. gpt-4o-mini=0.15/0.6"
                )
            };
            let (model, price) = item.split_once('=').ok_or_else(bad)?;
            let (i, o) = price.split_once('/').ok_or_else(bad)?;
            let i: f64 = i.trim().parse().map_err(|_| bad())?;
            let o: f64 = o.trim().parse().map_err(|_| bad())?;
            if model.trim().is_empty() || !(i.is_finite() && o.is_finite() && i >= 0.0 && o >= 0.0)
            {
                return Err(bad());
            }
            let model = model.trim().to_string();
            self.rows.retain(|(m, _, _)| *m != model);
            self.rows.push((model, i, o));
        }
        Ok(())
    }

    /// Estimated USD for a call, or `None` when the model has no price.
    pub fn estimate(&self, model: &str, usage: &Usage) -> Option<f64> {
        let (_, i, o) = self
            .rows
            .iter()
            .filter(|(m, _, _)| model.starts_with(m.as_str()))
            .max_by_key(|(m, _, _)| m.len())?;
        let usd =
            (usage.prompt_tokens as f64 * i + usage.completion_tokens as f64 * o) / 1_000_000.0;
        Some((usd * 1e8).round() / 1e8)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn usage(p: u64, c: u64) -> Usage {
        Usage {
            prompt_tokens: p,
            completion_tokens: c,
            total_tokens: p + c,
        }
    }

    #[test]
    fn longest_prefix_wins_and_overrides_apply() {
        let mut p = Prices::default();
        assert_eq!(
            p.estimate("gpt-4o-mini-2024-07-18", &usage(1_000_000, 0)),
            Some(0.15)
        );
        assert_eq!(
            p.estimate("gpt-4o-2024-08-06", &usage(0, 1_000_000)),
            Some(10.0)
        );
        assert_eq!(p.estimate("llama3.1", &usage(10, 10)), None);
        p.apply("llama3.1=0/0; gpt-4o-mini=1/2").unwrap();
        assert_eq!(p.estimate("llama3.1:8b", &usage(10, 10)), Some(0.0));
        assert_eq!(
            p.estimate("gpt-4o-mini", &usage(500_000, 500_000)),
            Some(1.5)
        );
        assert!(
            p.apply("gpt=cheap")
                .unwrap_err()
                .contains("MODEL=INPUT/OUTPUT")
        );
    }
}
