//! Audit events: names, actors and the hash chain that makes the log
//! tamper-evident (`countersign audit verify`).

use sha2::{Digest, Sha256};

/// Event type names as stored; stable across versions.
pub mod kind {
    pub const RUN_RECEIVED: &str = "run.received";
    pub const INPUT_NORMALIZED: &str = "input.normalized";
    pub const RUN_STARTED: &str = "run.started";
    pub const STEP_COMPLETED: &str = "step.completed";
    pub const STEP_SKIPPED: &str = "step.skipped";
    pub const STEP_FAILED: &str = "step.failed";
    pub const STEP_RETRY_SCHEDULED: &str = "step.retry_scheduled";
    pub const RULES_EVALUATED: &str = "rules.evaluated";
    pub const WAIT_STARTED: &str = "wait.started";
    pub const EFFECT_STARTED: &str = "effect.started";
    pub const EFFECT_COMPLETED: &str = "effect.completed";
    pub const EFFECT_FAILED: &str = "effect.failed";
    pub const EFFECT_RECONCILED: &str = "effect.reconciled";
    /// An unfinished effect's call may still land: the run waits until its
    /// window has passed before it looks (the in-flight rule).
    pub const EFFECT_IN_FLIGHT: &str = "effect.in_flight";
    pub const RUN_COMPLETED: &str = "run.completed";
    pub const RUN_FAILED: &str = "run.failed";
    pub const RUN_CANCELLED: &str = "run.cancelled";
    pub const RUN_RETRIED: &str = "run.retried";
    pub const RUN_RESUMED: &str = "run.resumed";
    pub const RUN_REJECTED: &str = "run.rejected";
    pub const RUN_HANDED_OFF: &str = "run.handed_off";
    pub const REVIEW_REQUESTED: &str = "review.requested";
    pub const REVIEW_DECIDED: &str = "review.decided";
    pub const REVIEW_ESCALATED: &str = "review.escalated";
    pub const REVIEW_EXPIRED: &str = "review.expired";
    /// A `control: review` action approved by its covering review (no task).
    pub const REVIEW_COVERED: &str = "review.covered";
    /// An action a reviewer unticked on the covering review: not performed.
    pub const ACTION_UNTICKED: &str = "action.unticked";
}

/// Who caused an event: `system`, `token:<id>`, `user:<id>`, `webhook`.
pub type Actor = String;

pub const SYSTEM: &str = "system";

/// The hash of the chain's start.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// The fields an event's hash covers.
#[derive(Debug, Clone, Copy)]
pub struct Hashed<'a> {
    pub run_id: &'a str,
    pub seq: i64,
    pub kind: &'a str,
    pub actor: &'a str,
    pub data: &'a str,
    pub at_ms: i64,
}

/// `sha256(prev ‖ run_id ‖ seq ‖ kind ‖ actor ‖ at ‖ data)` as hex, with
/// length prefixes so no two field splits hash alike.
pub fn chain_hash(prev: &str, e: Hashed<'_>) -> String {
    let mut h = Sha256::new();
    for part in [
        prev.as_bytes(),
        e.run_id.as_bytes(),
        e.seq.to_string().as_bytes(),
        e.kind.as_bytes(),
        e.actor.as_bytes(),
        e.at_ms.to_string().as_bytes(),
        e.data.as_bytes(),
    ] {
        h.update((part.len() as u64).to_le_bytes());
        h.update(part);
    }
    hex::encode(h.finalize())
}

/// Checks a run's chain; returns the sequence number of the first bad event.
pub fn verify_chain<'a>(
    events: impl IntoIterator<Item = (Hashed<'a>, &'a str, &'a str)>,
) -> Result<usize, i64> {
    let mut prev = GENESIS.to_string();
    let mut n = 0;
    for (e, stored_prev, stored_hash) in events {
        if stored_prev != prev || chain_hash(&prev, e) != stored_hash {
            return Err(e.seq);
        }
        prev = stored_hash.to_string();
        n += 1;
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chain_detects_tampering() {
        let e1 = Hashed {
            run_id: "r",
            seq: 1,
            kind: "run.received",
            actor: "system",
            data: "{}",
            at_ms: 1,
        };
        let h1 = chain_hash(GENESIS, e1);
        let e2 = Hashed {
            run_id: "r",
            seq: 2,
            kind: "run.completed",
            actor: "system",
            data: "{}",
            at_ms: 2,
        };
        let h2 = chain_hash(&h1, e2);
        assert_eq!(
            verify_chain([(e1, GENESIS, h1.as_str()), (e2, h1.as_str(), h2.as_str())]),
            Ok(2)
        );
        let forged = Hashed {
            data: "{\"x\":1}",
            ..e2
        };
        assert_eq!(
            verify_chain([
                (e1, GENESIS, h1.as_str()),
                (forged, h1.as_str(), h2.as_str())
            ]),
            Err(2)
        );
    }
}
