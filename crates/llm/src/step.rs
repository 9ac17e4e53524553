//! Executing an `llm` step: render the prompt once, then walk the provider
//! chain. Each provider gets the request and, when its answer fails
//! validation, up to `repair_attempts` repair turns quoting the errors; a
//! refusal, a truncated answer, a filtered one or a call that fails moves
//! on to the next provider. The first valid answer is the output. When
//! nothing valid comes back the step still completes, with an output that
//! says so (`status: needs_review`, every field `null`, the reason) — never
//! with unvalidated data, and never by failing the run — unless every
//! failure was transient and the step has attempts left, in which case it
//! asks the engine to retry later (honouring `Retry-After`).
//!
//! Every call is on the record: `llm.requested` (provider, model, prompt
//! hash, rendered messages), `llm.responded` (raw response, parsed output,
//! usage, latency, cost), `llm.invalid` (validation errors, whether a
//! repair follows), `llm.failed` (HTTP or timeout errors, their class) and
//! `llm.fallback` (moving on, and why: to the next provider, to `retry`
//! through the engine, or to `review`).

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use domain::expr::{Vars, value_from_json};
use domain::run::StepOutcome;
use engine::{Step, StepCx};
use serde_json::{Map, Value as Json, json};

use crate::cost::Prices;
use crate::heuristic::{self, Task};
use crate::prompt;
use crate::provider::{Completion, Error, Message, Providers, Request};
use crate::spec::{Spec, Target};

/// Audit event names.
pub mod kind {
    pub const REQUESTED: &str = "llm.requested";
    pub const RESPONDED: &str = "llm.responded";
    pub const INVALID: &str = "llm.invalid";
    pub const FAILED: &str = "llm.failed";
    pub const FALLBACK: &str = "llm.fallback";
}

/// Below this much time left, remote providers are not asked any more.
const MIN_CALL_MS: u64 = 50;

pub struct LlmStep {
    pub(crate) spec: Spec,
    pub(crate) providers: Providers,
    pub(crate) prices: Arc<Prices>,
}

/// Why one provider produced nothing usable.
#[derive(Debug)]
struct Failure {
    target: String,
    /// `transient`, `permanent`, `invalid` or `unavailable`.
    class: &'static str,
    reason: String,
    retry_after_ms: Option<u64>,
}

/// What an answer amounts to.
enum Verdict {
    Valid(Map<String, Json>),
    /// Worth a repair turn.
    Invalid(Vec<String>),
    /// Not worth repairing with this provider (refusal, truncation, filter).
    Unusable(&'static str, String),
}

#[async_trait]
impl Step for LlmStep {
    fn output_fields(&self) -> Option<Vec<String>> {
        let mut fields: Vec<String> = self
            .spec
            .output
            .fields
            .iter()
            .map(|f| f.name.clone())
            .collect();
        // Added to every answer by `finish_ok` / `needs_review`.
        fields.extend(["status", "provider", "model", "reason"].map(String::from));
        Some(fields)
    }

    async fn run(&self, cx: &mut StepCx<'_>) -> StepOutcome {
        let spec = &self.spec;
        let deadline = Instant::now() + Duration::from_millis(spec.budget_ms);
        let user = match spec.prompt.render(cx.vars) {
            Ok(u) => u,
            Err(error) => return StepOutcome::Permanent { error },
        };
        let text = match &spec.heuristic.text {
            Some(t) => prompt::render_plain(t, cx.vars).unwrap_or_default(),
            None => heuristic::default_text(&input_json(cx.vars)),
        };
        let task = Task {
            fields: &spec.output.fields,
            spec: &spec.heuristic,
            vars: cx.vars,
            text,
        };
        let base = vec![
            Message {
                role: "system",
                content: spec.system.clone(),
            },
            Message {
                role: "user",
                content: user,
            },
        ];
        let mut failures: Vec<Failure> = Vec::new();
        for (i, target) in spec.chain.iter().enumerate() {
            let failure = match self.try_target(cx, target, &base, &task, deadline).await {
                Ok(answer) => {
                    let reason = (!failures.is_empty()).then(|| summary(&failures));
                    return StepOutcome::Done {
                        output: finish_ok(answer, target, reason),
                    };
                }
                Err(f) => f,
            };
            if let Some(next) = spec.chain.get(i + 1) {
                record_fallback(cx, &failure, &next.label());
            }
            failures.push(failure);
        }

        // Nothing usable. Retry later only if every provider that was tried
        // failed transiently and the step has attempts left; otherwise a
        // person decides.
        let tried: Vec<&Failure> = failures
            .iter()
            .filter(|f| f.class != "unavailable")
            .collect();
        let all_transient = !tried.is_empty() && tried.iter().all(|f| f.class == "transient");
        let retry = all_transient && cx.attempt < cx.step.retry.max_attempts;
        if let Some(last) = failures.last() {
            record_fallback(cx, last, if retry { "retry" } else { "review" });
        }
        if retry {
            return StepOutcome::Transient {
                error: format!("every provider failed transiently: {}", summary(&failures)),
                retry_after_ms: failures.iter().filter_map(|f| f.retry_after_ms).min(),
            };
        }
        StepOutcome::Done {
            output: needs_review(&spec.output.fields, summary(&failures)),
        }
    }
}

impl LlmStep {
    /// One provider, with its repair turns. Returns the valid answer or why
    /// there is none.
    async fn try_target(
        &self,
        cx: &mut StepCx<'_>,
        target: &Target,
        base: &[Message],
        task: &Task<'_>,
        deadline: Instant,
    ) -> Result<Map<String, Json>, Failure> {
        let spec = &self.spec;
        let label = target.label();
        let fail = |class, reason: String, retry_after_ms| Failure {
            target: label.clone(),
            class,
            reason,
            retry_after_ms,
        };
        let Some(provider) = self.providers.get(&target.provider) else {
            return Err(fail(
                "permanent",
                format!(
                    "provider `{}` is not configured on this node",
                    target.provider
                ),
                None,
            ));
        };
        if let Some(why) = provider.unavailable() {
            return Err(fail("unavailable", format!("not configured: {why}"), None));
        }
        let model = if target.model.is_empty() {
            heuristic::MODEL
        } else {
            target.model.as_str()
        };
        let rounds = if provider.repairs() {
            1 + spec.repair_attempts
        } else {
            1
        };
        let mut messages = base.to_vec();
        let mut last_errors: Vec<String> = Vec::new();
        for round in 1..=rounds {
            let left = deadline.saturating_duration_since(Instant::now());
            if provider.repairs() && left.as_millis() < MIN_CALL_MS as u128 {
                return Err(fail(
                    "transient",
                    format!(
                        "the step's timeout ({} ms) ran out before this provider could be asked",
                        spec.budget_ms
                    ),
                    None,
                ));
            }
            let timeout = left.min(Duration::from_millis(spec.call_timeout_ms));
            let req = Request {
                model,
                messages: &messages,
                schema_name: &spec.schema_name,
                schema: &spec.output.strict,
                max_tokens: spec.max_tokens,
                temperature: spec.temperature,
                timeout,
                task,
            };
            cx.record(
                kind::REQUESTED,
                &json!({
                    "provider": target.provider,
                    "model": model,
                    "round": round,
                    "repair": round > 1,
                    "prompt_hash": spec.prompt.hash,
                    "prompt_file": spec.prompt.file,
                    "messages": messages.iter().map(Message::to_json).collect::<Vec<_>>(),
                    "schema_name": spec.schema_name,
                    "max_tokens": spec.max_tokens,
                    "temperature": spec.temperature,
                    "timeout_ms": timeout.as_millis() as u64,
                }),
            );
            let started = Instant::now();
            // The provider honours `timeout`; this guard only backs it up.
            let result = match tokio::time::timeout(
                timeout + Duration::from_secs(1),
                provider.complete(&req),
            )
            .await
            {
                Ok(r) => r,
                Err(_) => Err(Error::Transient {
                    detail: crate::provider::Detail {
                        message: format!("no answer within {} ms", timeout.as_millis()),
                        code: Some("timeout".into()),
                        ..Default::default()
                    },
                }),
            };
            let latency_ms = started.elapsed().as_millis() as u64;
            let completion = match result {
                Ok(c) => c,
                Err(e) => {
                    let d = e.detail();
                    cx.record(
                        kind::FAILED,
                        &json!({
                            "provider": target.provider,
                            "model": model,
                            "round": round,
                            "class": e.class(),
                            "error": d.message,
                            "code": d.code,
                            "http_status": d.http_status,
                            "retry_after_ms": e.retry_after_ms(),
                            "request_id": d.request_id,
                            "raw": d.raw,
                            "latency_ms": latency_ms,
                        }),
                    );
                    return Err(fail(e.class(), d.message.clone(), e.retry_after_ms()));
                }
            };
            let verdict = self.judge(&completion, cx.vars);
            let cost_usd = if provider.priced() {
                completion
                    .usage
                    .as_ref()
                    .and_then(|u| self.prices.estimate(model, u))
            } else {
                Some(0.0)
            };
            cx.meter_model(&engine::metrics::ModelCall {
                provider: &target.provider,
                model,
                prompt_tokens: completion.usage.as_ref().map_or(0, |u| u.prompt_tokens),
                completion_tokens: completion.usage.as_ref().map_or(0, |u| u.completion_tokens),
                cost_usd,
            });
            cx.record(
                kind::RESPONDED,
                &json!({
                    "provider": target.provider,
                    "model": model,
                    "response_model": completion.model,
                    "round": round,
                    "http_status": completion.http_status,
                    "request_id": completion.request_id,
                    "finish_reason": completion.finish_reason,
                    "refusal": completion.refusal,
                    "raw": completion.raw,
                    "parsed": match &verdict { Verdict::Valid(m) => Json::Object(m.clone()), _ => parse_content(&completion).unwrap_or(Json::Null) },
                    "valid": matches!(verdict, Verdict::Valid(_)),
                    "usage": completion.usage.map(|u| json!({ "prompt_tokens": u.prompt_tokens, "completion_tokens": u.completion_tokens, "total_tokens": u.total_tokens })),
                    "cost_usd": cost_usd,
                    "latency_ms": latency_ms,
                    "rate_limits": crate::openai::limits_json(&completion.limits),
                }),
            );
            match verdict {
                Verdict::Valid(answer) => return Ok(answer),
                Verdict::Unusable(what, reason) => {
                    cx.record(
                        kind::INVALID,
                        &json!({ "provider": target.provider, "model": model, "round": round, "kind": what, "errors": [reason], "repair": false }),
                    );
                    return Err(fail("invalid", format!("{what}: {reason}"), None));
                }
                Verdict::Invalid(errors) => {
                    let repair = round < rounds;
                    cx.record(
                        kind::INVALID,
                        &json!({ "provider": target.provider, "model": model, "round": round, "kind": "validation", "errors": errors, "repair": repair }),
                    );
                    if repair {
                        messages.push(Message {
                            role: "assistant",
                            content: completion.content.clone().unwrap_or_default(),
                        });
                        messages.push(Message {
                            role: "user",
                            content: prompt::repair_message(&errors),
                        });
                    }
                    last_errors = errors;
                }
            }
        }
        let n = rounds;
        Err(fail(
            "invalid",
            format!(
                "{n} answer{} failed validation: {}",
                if n == 1 { "" } else { "s" },
                crate::schema::clip(&last_errors.join("; "), 400)
            ),
            None,
        ))
    }

    /// Refusal, truncation and filtering first; then JSON, the schema, and
    /// the workflow's checks.
    fn judge(&self, c: &Completion, vars: &Vars) -> Verdict {
        if let Some(r) = &c.refusal {
            return Verdict::Unusable("refusal", crate::schema::clip(r, 300));
        }
        match c.finish_reason.as_deref() {
            Some("length") => {
                return Verdict::Unusable(
                    "truncated",
                    format!(
                        "the answer hit the {}-token limit (finish_reason: length) and is cut off",
                        self.spec.max_tokens
                    ),
                );
            }
            Some("content_filter") => {
                return Verdict::Unusable(
                    "content_filter",
                    "the provider's content filter withheld the answer".into(),
                );
            }
            _ => {}
        }
        let mut value = match c.content.as_deref().map(str::trim) {
            None | Some("") => return Verdict::Invalid(vec!["the answer is empty".into()]),
            Some(text) => match parse_json_text(text) {
                Ok(v) => v,
                Err(e) => return Verdict::Invalid(vec![format!("the answer is not JSON: {e}")]),
            },
        };
        if !value.is_object() {
            return Verdict::Invalid(vec!["the answer must be a JSON object".into()]);
        }
        let mut errors = self.spec.output.check(&mut value);
        let Json::Object(map) = value else {
            unreachable!("checked above")
        };
        if errors.is_empty() && !self.spec.checks.is_empty() {
            let mut vars = vars.clone();
            vars.insert("output".into(), value_from_json(&Json::Object(map.clone())));
            for check in &self.spec.checks {
                match check.assert.eval(&vars) {
                    Ok(true) => {}
                    Ok(false) => errors.push(format!("check failed: {}", check.message)),
                    Err(e) => errors.push(format!(
                        "check could not be evaluated ({}): {e}",
                        check.message
                    )),
                }
            }
        }
        if errors.is_empty() {
            Verdict::Valid(map)
        } else {
            Verdict::Invalid(errors)
        }
    }
}

/// Parses the answer text; tolerates one surrounding Markdown code fence
/// (some compatible servers add one despite the schema).
fn parse_json_text(text: &str) -> Result<Json, String> {
    match serde_json::from_str(text) {
        Ok(v) => Ok(v),
        Err(e) => {
            let inner = text
                .strip_prefix("```json")
                .or_else(|| text.strip_prefix("```"))
                .and_then(|t| t.trim_end().strip_suffix("```"));
            match inner {
                Some(i) => serde_json::from_str(i.trim()).map_err(|e| e.to_string()),
                None => Err(e.to_string()),
            }
        }
    }
}

fn parse_content(c: &Completion) -> Option<Json> {
    parse_json_text(c.content.as_deref()?.trim()).ok()
}

fn input_json(vars: &Vars) -> Json {
    vars.get("input")
        .and_then(|v| serde_json::to_value(v).ok())
        .unwrap_or(Json::Null)
}

fn record_fallback(cx: &mut StepCx<'_>, failure: &Failure, to: &str) {
    cx.meter_fallback();
    cx.record(
        kind::FALLBACK,
        &json!({
            "from": failure.target,
            "to": to,
            "class": failure.class,
            "reason": failure.reason,
        }),
    );
}

fn summary(failures: &[Failure]) -> String {
    failures
        .iter()
        .map(|f| format!("{}: {}", f.target, f.reason))
        .collect::<Vec<_>>()
        .join("; ")
}

/// The output of a valid answer: its fields, then how it was produced.
fn finish_ok(mut answer: Map<String, Json>, target: &Target, reason: Option<String>) -> Json {
    answer.insert("status".into(), json!("ok"));
    answer.insert("provider".into(), json!(target.provider));
    answer.insert(
        "model".into(),
        json!(if target.model.is_empty() {
            heuristic::MODEL
        } else {
            target.model.as_str()
        }),
    );
    answer.insert(
        "reason".into(),
        reason.map_or(Json::Null, |r| {
            Json::String(format!("fell back after: {r}"))
        }),
    );
    Json::Object(answer)
}

/// The output when nothing valid came back: every field `null`, and why.
pub fn needs_review(fields: &[crate::schema::Field], reason: String) -> Json {
    let mut m = Map::new();
    for f in fields {
        m.insert(f.name.clone(), Json::Null);
    }
    m.insert("status".into(), json!("needs_review"));
    m.insert("provider".into(), Json::Null);
    m.insert("model".into(), Json::Null);
    m.insert(
        "reason".into(),
        json!(format!("no valid answer from any provider: {reason}")),
    );
    Json::Object(m)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn code_fences_are_tolerated_but_prose_is_not() {
        assert_eq!(
            parse_json_text("```json\n{\"a\": 1}\n```").unwrap(),
            json!({"a": 1})
        );
        assert_eq!(parse_json_text("{\"a\": 1}").unwrap(), json!({"a": 1}));
        assert!(parse_json_text("Sure! {\"a\": 1}").is_err());
    }
}
