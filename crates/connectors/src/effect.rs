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
//! - `review`: refused when the workflow loads (the `review` step of issue 5
//!   is not built yet), so a customer-facing effect never goes out
//!   unreviewed by accident.
//! - outbox: when a connector has no credentials, `auto` and `draft`
//!   effects land in the local outbox instead: the step's output says
//!   `outbox: true` with what would have been sent, to whom, with which
//!   fields, and an `outbox.recorded` event is added to the audit log.

use std::collections::HashSet;
use std::sync::Mutex;

use domain::run::StepOutcome;
use domain::workflow::{Control, Cx, StepDef};
use engine::StepCx;
use serde_json::{Value as Json, json};
use sha2::{Digest, Sha256};

/// Audit event names added by connectors.
pub mod kind {
    /// An effect recorded in the local outbox instead of being performed.
    pub const OUTBOX_RECORDED: &str = "outbox.recorded";
    /// What a `control: suggest` step would have done.
    pub const EFFECT_SUGGESTED: &str = "effect.suggested";
}

/// Refuses control levels a connector cannot honour yet; `true` if usable.
pub fn check_control(def: &StepDef, cx: &mut Cx) -> bool {
    if def.control == Control::Review {
        cx.errors.push(def.body.error(format!(
            "`control: review` on a `{}` step needs the `review` step, which this version does not have yet; \
             use `control: suggest` (record only), `control: draft`, or put the step behind a rule",
            def.kind
        )));
        return false;
    }
    true
}

/// Records what a `suggest` step would do; never acts.
pub fn suggest(cx: &mut StepCx<'_>, connector: &str, action: &str, preview: Json) -> StepOutcome {
    let output = json!({
        "control": "suggest",
        "performed": false,
        "connector": connector,
        "action": action,
        "suggestion": preview,
    });
    cx.record(
        kind::EFFECT_SUGGESTED,
        &json!({ "key": cx.idempotency_key(), "step": cx.step.id, "connector": connector, "action": action, "suggestion": output["suggestion"] }),
    );
    StepOutcome::Done { output }
}

/// Puts an effect in the local outbox: output plus an `outbox.recorded`
/// event. `missing` names the settings that would send it for real.
pub fn outbox(
    cx: &mut StepCx<'_>,
    connector: &str,
    action: &str,
    to: Json,
    payload: Json,
    missing: &str,
) -> StepOutcome {
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
    });
    cx.record(
        kind::OUTBOX_RECORDED,
        &json!({
            "key": cx.idempotency_key(),
            "step": cx.step.id,
            "connector": connector,
            "action": action,
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

/// The outcome for a run attempt whose reconciliation failed.
pub fn reconcile_failed(connector: &str) -> StepOutcome {
    StepOutcome::Transient {
        error: format!(
            "{connector}: could not check whether the earlier attempt's effect happened; not resending until the check succeeds"
        ),
        retry_after_ms: None,
    }
}
