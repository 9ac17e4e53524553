//! What every connector step shares: the control level's meaning, the
//! local outbox, request digests, and reconciliation that must not fall
//! through to a resend when the target could not be asked.
//!
//! - `auto`: perform the effect, journalled (`effect.started` before the
//!   call, `effect.completed` with the vendor's id after).
//! - `draft`: the connector's draft action (Gmail draft, a Slack message to
//!   the draft channel, a Monday update note instead of column writes).
//! - `suggest`: never acts. The step's output is what would have been done
//!   and an `effect.suggested` event says so.
//! - `review`: the rendered action's editable parts (email subject and
//!   body, Slack text, CRM column values) become a review task
//!   ([`engine::StepCx::require_approval`]) in the queue `review_queue`
//!   (default `default`); the run waits, and the effect is performed, as
//!   under `auto`, only after approval and with the approved edits. A
//!   rejection ends the run `rejected` without performing anything.
//! - outbox: when a connector has no credentials, `auto` and `draft`
//!   effects land in the local outbox instead: the step's output says
//!   `outbox: true` with what would have been sent, to whom, with which
//!   fields, and an `outbox.recorded` event is added to the audit log.

use std::collections::HashSet;
use std::sync::Mutex;

use domain::run::StepOutcome;
use domain::workflow::{Control, Cx, StepDef};
use domain::yaml::Fields;
use engine::{ActionField, ActionPreview, Approval, StepCx};
use serde_json::{Value as Json, json};
use sha2::{Digest, Sha256};

/// Audit event names added by connectors.
pub mod kind {
    /// An effect recorded in the local outbox instead of being performed.
    pub const OUTBOX_RECORDED: &str = "outbox.recorded";
    /// What a `control: suggest` step would have done.
    pub const EFFECT_SUGGESTED: &str = "effect.suggested";
}

/// Reads `review_queue` (the queue of `control: review` tasks; default
/// [`engine::approval::DEFAULT_QUEUE`]).
pub fn review_queue(def: &StepDef, f: &mut Fields<'_>, cx: &mut Cx) -> String {
    let Some(n) = f.get("review_queue") else {
        return engine::approval::DEFAULT_QUEUE.to_string();
    };
    let q = n.as_str().ok().map(str::trim).unwrap_or_default();
    let valid = !q.is_empty()
        && q.len() <= 64
        && q.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if !valid {
        cx.errors
            .push(n.error("review_queue must be 1–64 characters of letters, digits, `_` and `-`"));
    } else if def.control != Control::Review && def.raised_by.is_empty() {
        cx.errors.push(n.error(
            "review_queue only applies with `control: review` (or when a rule may raise the step to review)",
        ));
    }
    q.to_string()
}

/// Under `control: review`, asks for approval of the action `preview`
/// shows: `Err` is the outcome to return now (waiting or rejected), `Ok`
/// the approved values (empty when the step is not under review, or when
/// a covering review approved exactly this action).
pub async fn approval(
    cx: &mut StepCx<'_>,
    queue: &str,
    fields: Vec<ActionField>,
    preview: &ActionPreview,
) -> Result<serde_json::Map<String, Json>, StepOutcome> {
    if cx.step.control != Control::Review && cx.raised().is_none() {
        return Ok(serde_json::Map::new());
    }
    match cx.require_approval(queue, fields, preview).await {
        Approval::Approved(v) => Ok(v),
        Approval::Pending(o) | Approval::Rejected(o) => Err(o),
    }
}

/// The approved string value of `name`, if one was given.
pub fn approved_str(values: &serde_json::Map<String, Json>, name: &str) -> Option<String> {
    match values.get(name)? {
        Json::String(s) => Some(s.clone()),
        Json::Null => None,
        v => Some(v.to_string()),
    }
}

/// Records what a `suggest` step would do; never acts. `suggestion` is
/// the vendor request's shape, `preview` the same action for people.
pub fn suggest(cx: &mut StepCx<'_>, preview: &ActionPreview, suggestion: Json) -> StepOutcome {
    let output = json!({
        "control": "suggest",
        "performed": false,
        "connector": preview.connector,
        "action": preview.action,
        "suggestion": suggestion,
        "preview": preview.to_json(),
    });
    cx.record(
        kind::EFFECT_SUGGESTED,
        &json!({ "key": cx.idempotency_key(), "step": cx.step.id, "connector": preview.connector,
            "action": preview.action, "title": preview.title, "suggestion": output["suggestion"] }),
    );
    StepOutcome::Done { output }
}

/// Puts the effect `preview` shows in the local outbox: output plus an
/// `outbox.recorded` event. `missing` names the settings that would send
/// it for real.
pub fn outbox(
    cx: &mut StepCx<'_>,
    preview: &ActionPreview,
    to: Json,
    payload: Json,
    missing: &str,
) -> StepOutcome {
    let (connector, action) = (preview.connector.as_str(), preview.action.as_str());
    let note = format!(
        "OUTBOX — not sent: {missing} not set, so this {connector} effect was recorded locally"
    );
    let output = json!({
        "outbox": true,
        "performed": false,
        "connector": connector,
        "action": action,
        "control": cx.step.control.as_str(),
        "to": to,
        "payload": payload,
        "note": note,
        "preview": preview.to_json(),
    });
    cx.record(
        kind::OUTBOX_RECORDED,
        &json!({
            "key": cx.idempotency_key(),
            "step": cx.step.id,
            "connector": connector,
            "action": action,
            "title": preview.title,
            "to": output["to"],
            "payload": output["payload"],
            "note": note,
        }),
    );
    StepOutcome::Done { output }
}

/// SHA-256 over the parts, newline-separated, as hex: the request digest
/// journalled with `effect.started`.
pub fn digest(parts: &[&[u8]]) -> String {
    let mut h = Sha256::new();
    for p in parts {
        h.update(p);
        h.update(b"\n");
    }
    hex::encode(h.finalize())
}

/// Idempotency keys whose reconciliation could not reach the target. The
/// engine runs the step right after `reconcile` answers `Unknown`; for a
/// connector that *can* reconcile, resending blind would risk a duplicate,
/// so `run` checks here first and asks for a retry instead.
#[derive(Debug, Default)]
pub struct Unreachable {
    keys: Mutex<HashSet<String>>,
}

impl Unreachable {
    pub fn mark(&self, key: &str) {
        self.keys
            .lock()
            .expect("unreachable set")
            .insert(key.to_string());
    }

    /// True (once) if the last reconciliation of `key` failed.
    pub fn take(&self, key: &str) -> bool {
        self.keys.lock().expect("unreachable set").remove(key)
    }
}

/// Journals what a failed call tells about its effect: a permanent
/// refusal was certainly not performed (the effect is marked failed); any
/// other answer (a rate limit, a 5xx) or a refused connection leaves
/// nothing in flight. Only [`crate::error::Error::NoAnswer`] (a timeout,
/// a connection lost mid-request) may still land, so the effect stays open
/// and the in-flight rule applies before the next look.
pub fn call_failed(cx: &mut StepCx<'_>, e: &crate::error::Error) {
    match e {
        e if e.is_permanent() => cx.effect_failed(),
        crate::error::Error::NoAnswer(_) => {}
        _ => cx.effect_answered(),
    }
}

/// The outcome for a run attempt whose reconciliation failed.
pub fn reconcile_failed(connector: &str) -> StepOutcome {
    StepOutcome::Transient {
        error: format!(
            "{connector}: could not check whether the earlier attempt's effect happened; not resending until the check succeeds"
        ),
        retry_after_ms: None,
    }
}
