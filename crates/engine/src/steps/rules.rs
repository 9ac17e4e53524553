//! `rules`: business rules evaluated in order (see `domain::steps`).

use std::sync::Arc;

use async_trait::async_trait;
use domain::expr::Scope;
use domain::run::StepOutcome;
use domain::steps::{Rule, evaluate, parse_rules};
use domain::workflow::{Cx, StepDef};

use crate::step::{Step, StepCx, StepKind};

pub struct Kind;

impl StepKind for Kind {
    fn name(&self) -> &'static str {
        "rules"
    }

    fn compile(&self, def: &StepDef, scope: &Scope, cx: &mut Cx) -> Option<Arc<dyn Step>> {
        let before = cx.errors.len();
        let rules = parse_rules(&def.body, scope, cx);
        (cx.errors.len() == before).then(|| Arc::new(Rules { rules }) as Arc<dyn Step>)
    }
}

struct Rules {
    rules: Vec<Rule>,
}

#[async_trait]
impl Step for Rules {
    async fn run(&self, cx: &mut StepCx<'_>) -> StepOutcome {
        match evaluate(&self.rules, cx.vars) {
            Ok(r) => {
                let output = r.to_json();
                if let Some(msg) = r.fail {
                    StepOutcome::Permanent {
                        error: format!("rule failed the run: {msg}"),
                    }
                } else if let Some(outcome) = r.finish {
                    StepOutcome::Finish { output, outcome }
                } else {
                    StepOutcome::Done { output }
                }
            }
            Err(error) => StepOutcome::Permanent { error },
        }
    }
}
