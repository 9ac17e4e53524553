//! Bearer-token authentication, scopes, and the token minting helpers the
//! CLI uses (`countersign token create`).
//!
//! Only the SHA-256 of a token's secret is stored; a request's token is
//! hashed and looked up by that hash, so the secret never touches the
//! database or the log.

use std::fmt;
use std::str::FromStr;

use axum::extract::FromRequestParts;
use axum::http::header;
use axum::http::request::Parts;
use sha2::{Digest, Sha256};

use crate::AppState;
use crate::error::ApiError;

/// Prefix of every token secret, so leaked tokens are easy to grep for.
pub const TOKEN_PREFIX: &str = "cs_";

/// What a token may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scope {
    /// Read runs and their events.
    RunsRead,
    /// Start, retry and cancel runs; implies `runs:read`.
    RunsWrite,
    /// Decide review tasks.
    ReviewsDecide,
    /// Everything.
    Admin,
}

impl Scope {
    pub const ALL: [Scope; 4] = [
        Scope::RunsRead,
        Scope::RunsWrite,
        Scope::ReviewsDecide,
        Scope::Admin,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Scope::RunsRead => "runs:read",
            Scope::RunsWrite => "runs:write",
            Scope::ReviewsDecide => "reviews:decide",
            Scope::Admin => "admin",
        }
    }

    /// Whether holding `self` grants `wanted`.
    pub fn grants(self, wanted: Scope) -> bool {
        self == wanted
            || self == Scope::Admin
            || (self == Scope::RunsWrite && wanted == Scope::RunsRead)
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Scope {
    type Err = String;
    fn from_str(s: &str) -> Result<Scope, String> {
        Scope::ALL
            .into_iter()
            .find(|sc| sc.as_str() == s)
            .ok_or_else(|| {
                format!(
                    "unknown scope {s:?}; expected one of {}",
                    Scope::ALL.map(Scope::as_str).join(", ")
                )
            })
    }
}

/// A scope-list entry `queue:NAME` restricts a token's review access to the
/// named queues (several entries: any of them). A token without one may act
/// on every queue. Per-user queue roles come with the review inbox.
pub const QUEUE_PREFIX: &str = "queue:";

/// Parses a comma-separated scope list such as `runs:write,reviews:decide`
/// (spaces allowed, duplicates dropped, at least one scope).
pub fn parse_scopes(list: &str) -> Result<Vec<Scope>, String> {
    let mut out: Vec<Scope> = Vec::new();
    for part in list.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let s: Scope = part.parse()?;
        if !out.contains(&s) {
            out.push(s);
        }
    }
    if out.is_empty() {
        return Err("at least one scope is required".into());
    }
    Ok(out)
}

/// A new random token secret: `cs_` followed by 32 random bytes in hex.
/// Show it to the operator once and store only [`hash_token`] of it.
pub fn new_token_secret() -> String {
    let bytes: [u8; 32] = rand::random();
    format!("{TOKEN_PREFIX}{}", hex::encode(bytes))
}

/// What the store keeps of a secret: lowercase hex SHA-256.
pub fn hash_token(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

/// The authenticated sender of an API request: a bearer token, or a
/// signed-in inbox user (session cookie), whose role decides the scopes
/// and whose queues restrict review access.
#[derive(Debug, Clone)]
pub struct Caller {
    /// The token's id, or the user's id for a session.
    pub token_id: String,
    /// The token's name, or the user's email for a session.
    pub token_name: String,
    /// Recorded in audit events: `token:<id>` or `user:<email>`.
    actor: String,
    scopes: Vec<Scope>,
    /// Review queues the token is restricted to (`queue:NAME` entries in
    /// its scope list); `None`: every queue.
    queues: Option<Vec<String>>,
    /// The user behind the caller: the session's, or the one a token acts
    /// for (`token create --user`); `None`: a service token.
    user_id: Option<String>,
    /// Queues that user may decide now (`None`: every queue, or no user).
    user_queues: Option<Vec<String>>,
}

impl Caller {
    /// The actor recorded in audit events: `token:<id>` or `user:<email>`.
    pub fn actor(&self) -> String {
        self.actor.clone()
    }

    /// Who decides reviews through this caller: the actor, the user behind
    /// it, and the queues both the token and that user allow.
    pub fn decider(&self) -> engine::review::Decider {
        engine::review::Decider {
            actor: self.actor.clone(),
            user_id: self.user_id.clone(),
            queues: crate::identity::both(self.queues.clone(), self.user_queues.clone()),
        }
    }

    /// The caller a signed-in user stands for: an admin holds every scope;
    /// a reviewer may read runs and decide the tasks of their queues; a
    /// viewer may read runs.
    pub fn for_user(user: &store::User) -> Caller {
        let (scopes, queues) = match user.role {
            store::UserRole::Admin => (vec![Scope::Admin], None),
            store::UserRole::Reviewer => (
                vec![Scope::RunsRead, Scope::ReviewsDecide],
                Some(user.queues.clone()),
            ),
            store::UserRole::Viewer => (vec![Scope::RunsRead], None),
        };
        Caller {
            token_id: user.id.clone(),
            token_name: user.email.clone(),
            actor: user.actor(),
            scopes,
            queues,
            user_id: Some(user.id.clone()),
            user_queues: crate::identity::user_queues(user),
        }
    }

    pub fn has(&self, wanted: Scope) -> bool {
        self.scopes.iter().any(|s| s.grants(wanted))
    }

    /// The queues this token is restricted to, if it is.
    pub fn queues(&self) -> Option<&[String]> {
        self.queues.as_deref()
    }

    /// Whether the token may see and decide tasks of `queue`.
    pub fn may_review(&self, queue: &str) -> bool {
        self.queues
            .as_ref()
            .is_none_or(|qs| qs.iter().any(|q| q == queue))
    }

    /// 403 unless the token may act on `queue`.
    pub fn require_queue(&self, queue: &str) -> Result<(), ApiError> {
        if self.may_review(queue) {
            Ok(())
        } else {
            Err(ApiError::ForbiddenQueue(queue.to_string()))
        }
    }

    /// 403 unless the token holds `wanted`.
    pub fn require(&self, wanted: Scope) -> Result<(), ApiError> {
        if self.has(wanted) {
            Ok(())
        } else {
            Err(ApiError::Forbidden {
                scope: wanted.as_str(),
            })
        }
    }
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Caller, ApiError> {
        let Some(value) = parts.headers.get(header::AUTHORIZATION) else {
            if let Some(session) = crate::web::session_caller(state, parts).await {
                return match session {
                    Ok((_, user)) => Ok(Caller::for_user(&user)),
                    Err(detail) => Err(ApiError::Unauthorized {
                        detail,
                        invalid: true,
                    }),
                };
            }
            return Err(ApiError::Unauthorized {
                detail: "send `Authorization: Bearer <token>`",
                invalid: false,
            });
        };
        let secret = value
            .to_str()
            .ok()
            .and_then(|v| {
                let (scheme, rest) = v.split_once(' ')?;
                scheme.eq_ignore_ascii_case("bearer").then(|| rest.trim())
            })
            .filter(|t| !t.is_empty())
            .ok_or(ApiError::Unauthorized {
                detail: "the Authorization header must be `Bearer <token>`",
                invalid: false,
            })?;
        let invalid = ApiError::Unauthorized {
            detail: "the token is unknown or revoked",
            invalid: true,
        };
        let token = state
            .engine
            .store()
            .token_by_hash(&hash_token(secret))
            .await?
            .ok_or(invalid)?;
        if token.revoked_at_ms.is_some() {
            return Err(ApiError::Unauthorized {
                detail: "the token is unknown or revoked",
                invalid: true,
            });
        }
        // A token acting for a user acts only while that user is enabled.
        let user = match &token.user_id {
            None => None,
            Some(id) => Some(
                state
                    .engine
                    .store()
                    .user(id)
                    .await?
                    .filter(|u| u.disabled_at_ms.is_none())
                    .ok_or(ApiError::Unauthorized {
                        detail: "the token's user is disabled or no longer exists",
                        invalid: true,
                    })?,
            ),
        };
        // Scopes this build does not know grant nothing.
        let scopes = token.scopes.iter().filter_map(|s| s.parse().ok()).collect();
        let queues: Vec<String> = token
            .scopes
            .iter()
            .filter_map(|s| s.strip_prefix(QUEUE_PREFIX))
            .map(str::to_string)
            .collect();
        Ok(Caller {
            actor: format!("token:{}", token.id),
            token_id: token.id,
            token_name: token.name,
            scopes,
            queues: (!queues.is_empty()).then_some(queues),
            user_id: user.as_ref().map(|u| u.id.clone()),
            user_queues: user.as_ref().and_then(crate::identity::user_queues),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_imply_as_documented() {
        assert!(Scope::Admin.grants(Scope::RunsWrite));
        assert!(Scope::Admin.grants(Scope::ReviewsDecide));
        assert!(Scope::RunsWrite.grants(Scope::RunsRead));
        assert!(!Scope::RunsRead.grants(Scope::RunsWrite));
        assert!(!Scope::ReviewsDecide.grants(Scope::RunsRead));
    }

    #[test]
    fn parses_scope_lists() {
        assert_eq!(
            parse_scopes("runs:write, reviews:decide,runs:write").unwrap(),
            [Scope::RunsWrite, Scope::ReviewsDecide]
        );
        assert!(
            parse_scopes("runs:write,root")
                .unwrap_err()
                .contains("root")
        );
        assert!(parse_scopes(" , ").is_err());
    }

    #[test]
    fn secrets_are_random_and_hash_to_hex() {
        let a = new_token_secret();
        let b = new_token_secret();
        assert_ne!(a, b);
        assert!(a.starts_with("cs_") && a.len() == 3 + 64, "{a}");
        let h = hash_token("cs_x");
        assert_eq!(h.len(), 64);
        assert_eq!(h, hash_token("cs_x"));
        assert!(
            h.chars()
                .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase())
        );
    }
}
