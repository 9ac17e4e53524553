//! `validate`: checks a value (the input by default) against a JSON Schema
//! mid-workflow, e.g. an earlier step's output before it reaches a system.

use std::sync::Arc;

use async_trait::async_trait;
use domain::expr::{Scope, Template};
use domain::run::StepOutcome;
use domain::workflow::{Cx, StepDef};
use serde_json::json;

use crate::step::{Step, StepCx, StepKind};

pub struct Kind;

impl StepKind for Kind {
    fn name(&self) -> &'static str {
        "validate"
    }

    fn compile(&self, def: &StepDef, scope: &Scope, cx: &mut Cx) -> Option<Arc<dyn Step>> {
        let mut f = cx.take(def.body.fields())?;
        let value = match f.get("value") {
            Some(n) => cx.take(Template::compile(n, scope))?,
            None => Template::compile_str(&def.body, "{{ input }}".into(), scope).ok()?,
        };
        let schema = match f.get("schema") {
            Some(n) => {
                let s = n.to_json();
                match jsonschema::options()
                    .with_draft(jsonschema::Draft::Draft202012)
                    .should_validate_formats(true)
                    .build(&s)
                {
                    Ok(v) => Some(v),
                    Err(e) => {
                        cx.errors.push(n.error(format!("invalid JSON Schema: {e}")));
                        return None;
                    }
                }
            }
            None => None,
        };
        f.finish(&mut cx.errors);
        Some(Arc::new(Validate { value, schema }))
    }
}

struct Validate {
    value: Template,
    schema: Option<jsonschema::Validator>,
}

#[async_trait]
impl Step for Validate {
    async fn run(&self, cx: &mut StepCx<'_>) -> StepOutcome {
        let value = match self.value.render_json(cx.vars) {
            Ok(v) => v,
            Err(error) => return StepOutcome::Permanent { error },
        };
        let errors: Vec<String> = match &self.schema {
            Some(s) => s
                .iter_errors(&value)
                .map(|e| format!("{}: {e}", e.instance_path()))
                .collect(),
            None => Vec::new(),
        };
        if errors.is_empty() {
            StepOutcome::Done {
                output: json!({ "valid": true }),
            }
        } else {
            StepOutcome::Permanent {
                error: format!("validation failed: {}", errors.join("; ")),
            }
        }
    }
}
