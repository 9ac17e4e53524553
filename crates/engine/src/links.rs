//! Signed review links for email approvals: `GET|POST /review/{token}`.
//!
//! A token is `{review_id}.{action}.{expires_ms}.{nonce}.{actor}.{queue}.{sig}`,
//! where `actor` is the hex of the recipient's address (the decision is
//! recorded as theirs, as the user with that address when there is one: a
//! link is a bearer credential for that reviewer), `queue` the hex of the
//! task's queue when the link was sent (an escalation moves the task out of the
//! link's reach), and `sig` is hex HMAC-SHA256 over `countersign-link-v2:`
//! and the first six parts, keyed by the link secret
//! (`COUNTERSIGN_LINK_SECRET`, or one generated on first use and kept in
//! the database). Links of the previous format (no queue part, signed
//! under `countersign-link-v1:`) still verify, with no queue. Every part
//! is URL-safe, so the token needs no further encoding. Expiry and
//! signature are checked here; single use is the store's
//! (`decide_review_once` with the nonce, in the decision's transaction);
//! whether the recipient may decide the task now is the engine's.

use hmac::{KeyInit, Mac};

/// The setting that holds a generated link secret.
pub const SECRET_SETTING: &str = "link_secret";

/// Signature domains: v2 covers the queue part, v1 (older links) does not.
const V1: &[u8] = b"countersign-link-v1:";
const V2: &[u8] = b"countersign-link-v2:";

/// What a link does when confirmed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Approve,
    Reject,
    /// Opens the task in the web inbox; decides nothing.
    Open,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Approve => "approve",
            Action::Reject => "reject",
            Action::Open => "open",
        }
    }

    pub fn parse(s: &str) -> Option<Action> {
        match s {
            "approve" => Some(Action::Approve),
            "reject" => Some(Action::Reject),
            "open" => Some(Action::Open),
            _ => None,
        }
    }
}

/// A verified link.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    pub review_id: String,
    pub action: Action,
    pub expires_ms: i64,
    pub nonce: String,
    /// Who the link was sent to; decisions are recorded as theirs.
    pub actor: String,
    /// The task's queue when the link was sent; `None` for a link of the
    /// previous format.
    pub queue: Option<String>,
}

impl Link {
    /// The key that marks this link used (in the store's nonce table).
    pub fn use_key(&self) -> String {
        format!("link:{}", self.nonce)
    }
}

/// Why a token is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum LinkError {
    #[error("the link is malformed")]
    Malformed,
    #[error("the link's signature does not match")]
    Tampered,
    #[error("the link has expired")]
    Expired,
}

/// The signing key; its `Debug` never shows the secret.
#[derive(Clone)]
pub struct Secret(Vec<u8>);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret([redacted])")
    }
}

impl Secret {
    pub fn new(bytes: impl Into<Vec<u8>>) -> Secret {
        Secret(bytes.into())
    }

    /// A fresh random secret as hex (what is stored when none is configured).
    pub fn generate_hex() -> String {
        let bytes: [u8; 32] = rand::random();
        hex::encode(bytes)
    }

    /// `COUNTERSIGN_LINK_SECRET` when given, else the one stored in the
    /// database (generated and stored by the first caller).
    pub async fn load(configured: Option<&str>, store: &dyn store::Store) -> store::Result<Secret> {
        match configured.filter(|s| !s.is_empty()) {
            Some(s) => Ok(Secret::new(s.as_bytes())),
            None => {
                let v = store
                    .setting_or_insert(SECRET_SETTING, &Secret::generate_hex())
                    .await?;
                Ok(Secret::new(v.into_bytes()))
            }
        }
    }

    fn mac(&self, version: &[u8], body: &str) -> hmac::Hmac<sha2::Sha256> {
        let mut m = hmac::Hmac::<sha2::Sha256>::new_from_slice(&self.0)
            .expect("HMAC takes a key of any length");
        m.update(version);
        m.update(body.as_bytes());
        m
    }

    /// A token for `actor` to `action` `review_id` while it waits in
    /// `queue`, valid until `expires_ms`.
    pub fn sign(
        &self,
        review_id: &str,
        action: Action,
        expires_ms: i64,
        actor: &str,
        queue: &str,
    ) -> String {
        let nonce = hex::encode(rand::random::<[u8; 16]>());
        let body = format!(
            "{review_id}.{}.{expires_ms}.{nonce}.{}.{}",
            action.as_str(),
            hex::encode(actor.as_bytes()),
            hex::encode(queue.as_bytes())
        );
        let sig = hex::encode(self.mac(V2, &body).finalize().into_bytes());
        format!("{body}.{sig}")
    }

    /// Checks shape, signature (in constant time) and expiry, in that order.
    pub fn verify(&self, token: &str, now_ms: i64) -> Result<Link, LinkError> {
        let parts: Vec<&str> = token.split('.').collect();
        let (id, action, exp, nonce, actor, queue, sig) = match parts[..] {
            [id, action, exp, nonce, actor, queue, sig] => {
                (id, action, exp, nonce, actor, Some(queue), sig)
            }
            [id, action, exp, nonce, actor, sig] => (id, action, exp, nonce, actor, None, sig),
            _ => return Err(LinkError::Malformed),
        };
        let url_safe = |s: &str| {
            !s.is_empty()
                && s.len() <= 128
                && s.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        };
        if !parts.iter().all(|p| url_safe(p)) {
            return Err(LinkError::Malformed);
        }
        let sig = hex::decode(sig).map_err(|_| LinkError::Malformed)?;
        let body = parts[..parts.len() - 1].join(".");
        let version = if queue.is_some() { V2 } else { V1 };
        self.mac(version, &body)
            .verify_slice(&sig)
            .map_err(|_| LinkError::Tampered)?;
        let action = Action::parse(action).ok_or(LinkError::Malformed)?;
        let expires_ms: i64 = exp.parse().map_err(|_| LinkError::Malformed)?;
        let text = |h: &str| {
            hex::decode(h)
                .ok()
                .and_then(|b| String::from_utf8(b).ok())
                .ok_or(LinkError::Malformed)
        };
        let actor = text(actor)?;
        let queue = queue.map(text).transpose()?;
        if now_ms >= expires_ms {
            return Err(LinkError::Expired);
        }
        Ok(Link {
            review_id: id.to_string(),
            action,
            expires_ms,
            nonce: nonce.to_string(),
            actor,
            queue,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signed_link_verifies_until_it_expires() {
        let s = Secret::new("k");
        let t = s.sign("0190-ab", Action::Approve, 1_000, "ann@example.com", "ops");
        let l = s.verify(&t, 999).unwrap();
        assert_eq!(
            (
                l.review_id.as_str(),
                l.action,
                l.actor.as_str(),
                l.queue.as_deref()
            ),
            ("0190-ab", Action::Approve, "ann@example.com", Some("ops"))
        );
        assert_eq!(s.verify(&t, 1_000), Err(LinkError::Expired));
    }

    #[test]
    fn links_of_the_previous_format_verify_without_a_queue() {
        let s = Secret::new("k");
        let body = format!(
            "r1.approve.1000.{}.{}",
            "ab".repeat(16),
            hex::encode("ann@x")
        );
        let sig = hex::encode(s.mac(V1, &body).finalize().into_bytes());
        let l = s.verify(&format!("{body}.{sig}"), 0).unwrap();
        assert_eq!((l.actor.as_str(), l.queue), ("ann@x", None));
    }

    #[test]
    fn tampering_and_other_keys_are_refused() {
        let s = Secret::new("k");
        let t = s.sign("r1", Action::Reject, 1_000, "ann@example.com", "ops");
        let flipped = t.replacen("reject", "approve", 1);
        assert_eq!(s.verify(&flipped, 0), Err(LinkError::Tampered));
        assert_eq!(Secret::new("other").verify(&t, 0), Err(LinkError::Tampered));
        let other_actor = {
            let mut p: Vec<&str> = t.split('.').collect();
            let mallory = hex::encode("mallory@example.com");
            p[4] = &mallory;
            p.join(".")
        };
        assert_eq!(s.verify(&other_actor, 0), Err(LinkError::Tampered));
        let other_queue = {
            let mut p: Vec<&str> = t.split('.').collect();
            let managers = hex::encode("managers");
            p[5] = &managers;
            p.join(".")
        };
        assert_eq!(s.verify(&other_queue, 0), Err(LinkError::Tampered));
        // Dropping the queue part does not make a valid older-format link.
        let no_queue = {
            let mut p: Vec<&str> = t.split('.').collect();
            p.remove(5);
            p.join(".")
        };
        assert_eq!(s.verify(&no_queue, 0), Err(LinkError::Tampered));
        assert_eq!(s.verify("a.b.c", 0), Err(LinkError::Malformed));
        assert_eq!(s.verify(&format!("{t}/x"), 0), Err(LinkError::Malformed));
    }
}
