//! `wait`: a durable timer. The wait is a work item due later, not a
//! sleeping task: 100,000 waiting runs cost rows, not memory.

use std::sync::Arc;

use async_trait::async_trait;
use domain::expr::Scope;
use domain::run::StepOutcome;
use domain::steps::{WaitSpec, parse_wait};
use domain::workflow::{Cx, StepDef};
use serde_json::json;

use crate::step::{Step, StepCx, StepKind};

pub struct Kind;

impl StepKind for Kind {
    fn name(&self) -> &'static str {
        "wait"
    }

    fn compile(&self, def: &StepDef, scope: &Scope, cx: &mut Cx) -> Option<Arc<dyn Step>> {
        parse_wait(&def.body, scope, cx).map(|spec| Arc::new(Wait { spec }) as Arc<dyn Step>)
    }
}

struct Wait {
    spec: WaitSpec,
}

#[async_trait]
impl Step for Wait {
    async fn run(&self, cx: &mut StepCx<'_>) -> StepOutcome {
        let now = crate::now_ms();
        let until_ms = match &self.spec {
            WaitSpec::For(ms) => now + *ms as i64,
            WaitSpec::Until(t) => match t.render(cx.vars).map(|s| parse_instant(&s)) {
                Ok(Some(ms)) => ms,
                Ok(None) => {
                    return StepOutcome::Permanent {
                        error: "wait.until did not render an RFC 3339 time or epoch milliseconds"
                            .into(),
                    };
                }
                Err(error) => return StepOutcome::Permanent { error },
            },
        };
        StepOutcome::Sleep {
            output: json!({ "until_ms": until_ms }),
            until_ms,
        }
    }
}

/// Epoch milliseconds, or an RFC 3339 UTC time like `2026-11-25T13:00:00Z`.
fn parse_instant(s: &str) -> Option<i64> {
    let s = s.trim();
    if let Ok(ms) = s.parse::<i64>() {
        return Some(ms);
    }
    // Minimal RFC 3339 (UTC, `Z` or `+00:00`), avoiding a date crate here.
    let s = s.strip_suffix('Z').or_else(|| s.strip_suffix("+00:00"))?;
    let (date, time) = s.split_once('T')?;
    let mut d = date.split('-').map(|p| p.parse::<i64>());
    let (y, m, day) = (d.next()?.ok()?, d.next()?.ok()?, d.next()?.ok()?);
    let mut t = time.split(':');
    let (hh, mm) = (
        t.next()?.parse::<i64>().ok()?,
        t.next()?.parse::<i64>().ok()?,
    );
    let ss: f64 = t.next().unwrap_or("0").parse().ok()?;
    // Days from civil (Howard Hinnant's algorithm).
    let y2 = if m <= 2 { y - 1 } else { y };
    let era = y2.div_euclid(400);
    let yoe = y2 - era * 400;
    let doy = (153 * (m + if m > 2 { -3 } else { 9 }) + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(((days * 86_400 + hh * 3_600 + mm * 60) as f64 * 1000.0 + ss * 1000.0) as i64)
}

#[cfg(test)]
mod tests {
    #[test]
    fn parses_instants() {
        assert_eq!(
            super::parse_instant("1700000000000"),
            Some(1_700_000_000_000)
        );
        assert_eq!(
            super::parse_instant("2023-11-14T22:13:20Z"),
            Some(1_700_000_000_000)
        );
        assert_eq!(super::parse_instant("tomorrow"), None);
    }
}
