//! What happens after a review is approved: every later action of the run,
//! rendered with the values a reviewer proposes, for the task page (and
//! for binding a covering review's approval to the previews it approved).
//!
//! The run's template variables are rebuilt as the driver would see them
//! after the review: the input, the stored outputs of the steps before the
//! review, and `approved.*` = the review's drafts overridden by the
//! proposed values (computed as the `review` step computes them). Each
//! later step with an action renders its [`ActionPreview`] in the run's
//! own workflow version; a `when:` that is false with these values lists
//! the step as not running. Nothing is written and nothing is called.

use domain::expr::{Vars, value_from_json};
use domain::review::{self, DecisionError, FieldResult, Verdict};
use domain::workflow::Control;
use domain::workflow::FieldError;
use serde_json::{Map, Value as Json, json};
use store::Review;

use crate::driver::bind;
use crate::engine::Engine;
use crate::preview::ActionPreview;
use crate::review::{ReviewError, fields_of};

/// One later step's action as it would run after approval.
#[derive(Debug, Clone, PartialEq)]
pub struct StepPreview {
    /// The step's id and position in the workflow.
    pub step: String,
    pub index: usize,
    /// The step kind (`crm`, `slack`, `email`, `http`).
    pub kind: String,
    pub control: Control,
    /// True when this review's `covers:` names the step: approving the
    /// review approves this action as shown (no task of its own).
    pub covered: bool,
    /// Why a rule on this run raised the step to `review` (`raise:`): it
    /// then asks a person itself, covered or not.
    pub raised: Option<String>,
    /// `Some("will not run: `when: …` is false")` when the step's
    /// condition is false with these values; `None` when it runs.
    pub skipped: Option<String>,
    /// The action, or why it could not be rendered with these values
    /// (naming the field to fix). Secrets are redacted.
    pub action: Result<ActionPreview, String>,
}

impl StepPreview {
    /// `{step, index, kind, control, covered, raised, runs, skipped, action | error}`.
    pub fn to_json(&self) -> Json {
        let mut v = json!({
            "step": self.step, "index": self.index, "kind": self.kind,
            "control": self.control.as_str(), "covered": self.covered,
            "raised": self.raised, "runs": self.skipped.is_none(), "skipped": self.skipped,
        });
        match &self.action {
            Ok(p) => v["action"] = p.to_json(),
            Err(e) => v["error"] = json!(e),
        }
        v
    }
}

/// Why no preview could be made. Nothing was written.
#[derive(Debug, thiserror::Error)]
pub enum PreviewError {
    #[error("no such review")]
    NotFound,
    #[error("the review's run {0} is missing")]
    RunMissing(String),
    #[error("workflow {0} version {1} is not available on this node")]
    WorkflowUnavailable(String, i64),
    #[error(transparent)]
    Store(#[from] store::Error),
}

impl Engine {
    /// [`Engine::preview_actions`] for the review with this id.
    pub async fn preview_actions_of(
        &self,
        review_id: &str,
        proposed: &Map<String, Json>,
    ) -> Result<Vec<StepPreview>, PreviewError> {
        let r = self
            .inner
            .store
            .review(review_id)
            .await?
            .ok_or(PreviewError::NotFound)?;
        self.preview_actions(&r, proposed).await
    }

    /// Every action after `review` in its run, rendered with `proposed`
    /// (reviewed field → value; fields not given keep their draft). When
    /// `review` is an action's own task (`control: review`), that action
    /// comes first, with `proposed` as its edits. See the module
    /// documentation. Rendering problems are reported per step
    /// in [`StepPreview::action`], never as an error of the whole call.
    pub async fn preview_actions(
        &self,
        review: &Review,
        proposed: &Map<String, Json>,
    ) -> Result<Vec<StepPreview>, PreviewError> {
        let detail = self
            .inner
            .store
            .run_detail(&review.run_id)
            .await?
            .ok_or_else(|| PreviewError::RunMissing(review.run_id.clone()))?;
        let run = &detail.run;
        let wf = self
            .inner
            .catalog
            .version(&run.workflow, run.version)
            .await
            .ok()
            .flatten()
            .ok_or_else(|| PreviewError::WorkflowUnavailable(run.workflow.clone(), run.version))?;
        let mut vars = crate::replay::vars_before(&wf, &detail, review.step_index);
        let Some(def) = wf.def.steps.get(review.step_index) else {
            return Ok(Vec::new());
        };
        let mut out = Vec::new();
        let redact = |s: &str| wf.def.redact(s);
        if def.kind == "review" {
            let output = approved_output(review, &vars, proposed);
            bind(&mut vars, def, value_from_json(&output));
        } else if let Some(action) = wf
            .steps
            .get(review.step_index)
            .and_then(|s| s.preview_edited(&vars, proposed))
        {
            // An action's own review (`control: review`): the action itself,
            // with the proposed edits, comes first. What it outputs is known
            // only once it ran, so later steps see it undefined.
            out.push(StepPreview {
                step: def.id.clone(),
                index: def.index,
                kind: def.kind.clone(),
                control: def.control,
                covered: false,
                raised: None,
                skipped: None,
                action: action
                    .map(|p| p.redacted(&redact))
                    .map_err(|e| wf.def.redact(&e)),
            });
        }
        for (def, step) in wf
            .def
            .steps
            .iter()
            .zip(&wf.steps)
            .skip(review.step_index + 1)
        {
            let Some(action) = step.preview(&vars) else {
                continue;
            };
            let (skipped, action) = match def.when.as_ref().map(|c| (c.source(), c.eval(&vars))) {
                Some((src, Ok(false))) => (
                    Some(format!("will not run: `when: {src}` is false")),
                    action,
                ),
                Some((src, Err(e))) => (
                    None,
                    Err(format!(
                        "the condition `when: {src}` cannot be evaluated: {e}"
                    )),
                ),
                _ => (None, action),
            };
            let raised = def.raised_by.iter().find_map(|rules| {
                let out = serde_json::to_value(vars.get(rules)?).ok()?;
                domain::steps::raised_in(out.as_object()?, &def.id).map(|(_, why)| why)
            });
            out.push(StepPreview {
                step: def.id.clone(),
                index: def.index,
                kind: def.kind.clone(),
                control: def.control,
                covered: raised.is_none()
                    && def.covered_by.as_deref() == Some(review.step_id.as_str()),
                raised,
                skipped,
                action: action
                    .map(|p| p.redacted(&redact))
                    .map_err(|e| wf.def.redact(&e)),
            });
        }
        Ok(out)
    }
}

/// The output a `review` step completes with when approved with
/// `proposed`: what later steps read as `<review id>.*` and `approved.*`
/// (the same computation as the step's, so covered digests match).
fn approved_output(review: &Review, vars: &Vars, proposed: &Map<String, Json>) -> Json {
    let var = |name: &str| {
        vars.get(name)
            .and_then(|v| serde_json::to_value(v).ok())
            .unwrap_or(Json::Null)
    };
    let fields = fields_of(review);
    let results: Vec<FieldResult> = fields
        .iter()
        .map(|f| {
            let value = proposed.get(&f.name).cloned().unwrap_or(f.draft.clone());
            FieldResult {
                name: f.name.clone(),
                changed: value != f.draft,
                draft: f.draft.clone(),
                value,
                by: String::new(),
                at_ms: 0,
                comment: None,
            }
        })
        .collect();
    let mut steps: Vec<&str> = fields.iter().map(|f| f.step.as_str()).collect();
    steps.dedup();
    let outputs: Vec<Json> = steps.iter().map(|s| var(s)).collect();
    let previous = var("approved");
    let approved = review::approved_values(
        Some(&previous),
        &outputs.iter().collect::<Vec<_>>(),
        &results,
    );
    json!({
        "review": review.id,
        "decision": "approved",
        "fields": review::results_json(&results),
        "changed": results.iter().filter(|r| r.changed).map(|r| r.name.clone()).collect::<Vec<_>>(),
        "approved": approved,
    })
}

impl Engine {
    /// What a decision on `review` records about the actions it covers
    /// (for `review.decided`): on a final approval, `covers` — the digest
    /// of each covered action previewed with the approved values (`null`
    /// for one that would not run or could not be rendered) — and
    /// `unticked`, the covered steps left out (`skip_actions`). `None`
    /// when there is nothing to record. If the run cannot be read for the
    /// previews, nothing is recorded and each covered action asks for its
    /// own review: the safe side.
    pub(crate) async fn covering(
        &self,
        review: &Review,
        verdict: &Verdict,
        skip_actions: &[String],
    ) -> Result<Option<Json>, ReviewError> {
        let invalid = |i: usize, message: String| {
            ReviewError::Refused(DecisionError::Invalid(vec![FieldError {
                pointer: format!("/skip_actions/{i}"),
                message,
            }]))
        };
        let Verdict::Approved(results) = verdict else {
            return match skip_actions.is_empty() {
                true => Ok(None),
                false => Err(invalid(
                    0,
                    "actions can be unticked only by the approval that completes the review".into(),
                )),
            };
        };
        let proposed: Map<String, Json> = results
            .iter()
            .map(|f| (f.name.clone(), f.value.clone()))
            .collect();
        let previews = match self.preview_actions(review, &proposed).await {
            Ok(p) => p,
            Err(e) => {
                tracing::warn!(review = %review.id, error = %e, "previewing the covered actions failed; they will ask for their own review");
                Vec::new()
            }
        };
        let covers: Map<String, Json> = previews
            .iter()
            .filter(|p| p.covered)
            .map(|p| {
                let digest = match (&p.skipped, &p.action) {
                    (None, Ok(a)) => json!(a.digest),
                    _ => Json::Null,
                };
                (p.step.clone(), digest)
            })
            .collect();
        for (i, s) in skip_actions.iter().enumerate() {
            if !covers.contains_key(s) {
                return Err(invalid(
                    i,
                    format!(
                        "`{s}` is not an action this review covers; covered: {}",
                        covers.keys().cloned().collect::<Vec<_>>().join(", ")
                    ),
                ));
            }
        }
        if covers.is_empty() {
            return Ok(None);
        }
        let mut unticked: Vec<&String> = skip_actions.iter().collect();
        unticked.dedup();
        Ok(Some(json!({ "covers": covers, "unticked": unticked })))
    }
}

/// Adds the members of `extra` to the `review.decided` event among `events`.
pub(crate) fn add_to_decided(events: &mut [store::NewEvent], extra: Json) {
    let Json::Object(extra) = extra else {
        return;
    };
    for e in events
        .iter_mut()
        .filter(|e| e.kind == domain::event::kind::REVIEW_DECIDED)
    {
        if let Ok(Json::Object(mut m)) = serde_json::from_str::<Json>(&e.data) {
            m.extend(extra.clone());
            e.data = Json::Object(m).to_string();
        }
    }
}
