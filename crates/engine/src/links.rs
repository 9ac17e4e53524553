//! Signed review links for email approvals: `GET|POST /review/{token}`.
//!
//! A token is `{review_id}.{action}.{expires_ms}.{nonce}.{actor}.{sig}`,
//! where `actor` is the hex of the recipient's address (the decision is
//! recorded as theirs: a link is a bearer credential for that reviewer)
//! and `sig` is hex HMAC-SHA256 over `countersign-link-v1:` and the first
//! five parts, keyed by the link secret (`COUNTERSIGN_LINK_SECRET`, or one
//! generated on first use and kept in the database). Every part is
//! URL-safe, so the token needs no further encoding. Expiry and signature
//! are checked here; single use is the store's (`decide_review_once` with
//! the nonce, in the decision's transaction).

use hmac::{KeyInit, Mac};

/// The setting that holds a generated link secret.
pub const SECRET_SETTING: &str = "link_secret";

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

    fn mac(&self, body: &str) -> String {
        let mut m = hmac::Hmac::<sha2::Sha256>::new_from_slice(&self.0)
            .expect("HMAC takes a key of any length");
        m.update(b"countersign-link-v1:");
        m.update(body.as_bytes());
        hex::encode(m.finalize().into_bytes())
    }

    /// A token for `actor` to `action` `review_id`, valid until `expires_ms`.
    pub fn sign(&self, review_id: &str, action: Action, expires_ms: i64, actor: &str) -> String {
        let nonce = hex::encode(rand::random::<[u8; 16]>());
        let body = format!(
            "{review_id}.{}.{expires_ms}.{nonce}.{}",
            action.as_str(),
            hex::encode(actor.as_bytes())
        );
        let sig = self.mac(&body);
        format!("{body}.{sig}")
    }

    /// Checks shape, signature (in constant time) and expiry, in that order.
    pub fn verify(&self, token: &str, now_ms: i64) -> Result<Link, LinkError> {
        let parts: Vec<&str> = token.split('.').collect();
        let [id, action, exp, nonce, actor, sig] = parts[..] else {
            return Err(LinkError::Malformed);
        };
        let url_safe = |s: &str| {
            !s.is_empty()
                && s.len() <= 128
                && s.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        };
        if ![id, action, exp, nonce, actor, sig]
            .iter()
            .all(|p| url_safe(p))
        {
            return Err(LinkError::Malformed);
        }
        let sig = hex::decode(sig).map_err(|_| LinkError::Malformed)?;
        let body = format!("{id}.{action}.{exp}.{nonce}.{actor}");
        let mut m = hmac::Hmac::<sha2::Sha256>::new_from_slice(&self.0)
            .expect("HMAC takes a key of any length");
        m.update(b"countersign-link-v1:");
        m.update(body.as_bytes());
        m.verify_slice(&sig).map_err(|_| LinkError::Tampered)?;
        let action = Action::parse(action).ok_or(LinkError::Malformed)?;
        let expires_ms: i64 = exp.parse().map_err(|_| LinkError::Malformed)?;
        let actor = hex::decode(actor)
            .ok()
            .and_then(|b| String::from_utf8(b).ok())
            .ok_or(LinkError::Malformed)?;
        if now_ms >= expires_ms {
            return Err(LinkError::Expired);
        }
        Ok(Link {
            review_id: id.to_string(),
            action,
            expires_ms,
            nonce: nonce.to_string(),
            actor,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signed_link_verifies_until_it_expires() {
        let s = Secret::new("k");
        let t = s.sign("0190-ab", Action::Approve, 1_000, "ann@example.com");
        let l = s.verify(&t, 999).unwrap();
        assert_eq!(
            (l.review_id.as_str(), l.action, l.actor.as_str()),
            ("0190-ab", Action::Approve, "ann@example.com")
        );
        assert_eq!(s.verify(&t, 1_000), Err(LinkError::Expired));
    }

    #[test]
    fn tampering_and_other_keys_are_refused() {
        let s = Secret::new("k");
        let t = s.sign("r1", Action::Reject, 1_000, "ann@example.com");
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
        assert_eq!(s.verify("a.b.c", 0), Err(LinkError::Malformed));
        assert_eq!(s.verify(&format!("{t}/x"), 0), Err(LinkError::Malformed));
    }
}
