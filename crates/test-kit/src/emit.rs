//! `emit: { output: {NAME: SCHEMA}, values: {NAME: TEMPLATE} }`: a stand-in
//! for the `llm` step (a crate above the engine) with typed, declared
//! outputs, for tests of reviews, previews and pages.

use std::sync::Arc;

use async_trait::async_trait;
use domain::expr::{Scope, Template};
use domain::run::StepOutcome;
use domain::workflow::{Cx, StepDef};
use engine::{Step, StepCx, StepKind};
use serde_json::{Map, Value};

/// Register with `kinds.register(Arc::new(Emit))`.
pub struct Emit;

impl StepKind for Emit {
    fn name(&self) -> &'static str {
        "emit"
    }

    fn compile(&self, def: &StepDef, scope: &Scope, cx: &mut Cx) -> Option<Arc<dyn Step>> {
        let mut f = cx.take(def.body.fields())?;
        let _ = f.get("output");
        let values = f.require("values").ok()?.as_map().ok()?;
        let mut out = Vec::new();
        for (k, v) in values {
            out.push((k.clone(), cx.take(Template::compile(v, scope))?));
        }
        f.finish(&mut cx.errors);
        Some(Arc::new(EmitStep(out)))
    }
}

struct EmitStep(Vec<(String, Template)>);

#[async_trait]
impl Step for EmitStep {
    async fn run(&self, cx: &mut StepCx<'_>) -> StepOutcome {
        let mut m = Map::new();
        for (k, t) in &self.0 {
            match t.render(cx.vars) {
                Ok(s) => m.insert(k.clone(), Value::String(s)),
                Err(error) => return StepOutcome::Permanent { error },
            };
        }
        StepOutcome::Done {
            output: Value::Object(m),
        }
    }
}
