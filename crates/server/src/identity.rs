//! One identity per person: every channel that decides reviews (inbox
//! session, API token, Slack member, email link) resolves here to a
//! [`Decider`] — the readable actor, the user id behind it, and the queues
//! that user may decide now — so four-eyes and "not your own request"
//! compare people, and a link or button never decides what its user could
//! not decide in the inbox.

use engine::review::Decider;
use store::{Store, User, UserRole};

/// The queues `user` may decide now (`None`: every queue).
pub fn user_queues(user: &User) -> Option<Vec<String>> {
    match user.role {
        UserRole::Admin => None,
        UserRole::Reviewer => Some(user.queues.clone()),
        UserRole::Viewer => Some(Vec::new()),
    }
}

/// Whether a caller limited to the queues `mine` may read a run whose
/// review tasks are `reviews`: one of them must be in those queues (a run
/// without a task counts as the default queue's). One rule for the API and
/// the console.
pub fn may_read_run(mine: &[String], reviews: &[store::Review]) -> bool {
    if reviews.is_empty() {
        return mine.iter().any(|q| q == engine::approval::DEFAULT_QUEUE);
    }
    reviews.iter().any(|r| mine.contains(&r.queue))
}

/// A signed-in user deciding in the inbox (or through a channel tied to
/// them).
pub fn for_user(user: &User) -> Decider {
    Decider {
        actor: user.actor(),
        user_id: Some(user.id.clone()),
        queues: user_queues(user),
    }
}

/// Queues both restrictions allow (`None` on either side: no restriction).
pub fn both(a: Option<Vec<String>>, b: Option<Vec<String>>) -> Option<Vec<String>> {
    match (a, b) {
        (None, x) | (x, None) => x,
        (Some(a), Some(b)) if a.iter().any(|q| q == "*") => Some(b),
        (Some(a), Some(b)) if b.iter().any(|q| q == "*") => Some(a),
        (Some(a), Some(b)) => Some(a.into_iter().filter(|q| b.contains(q)).collect()),
    }
}

/// The decider behind a channel that names `actor` (`user:EMAIL` or a
/// bare address: what email links and `slack map --actor` carry) and,
/// failing a user, may decide `fallback` queues: a Slack member's mapping,
/// a link's recipient. A user found by that name decides as themselves,
/// with the queues they hold now; a disabled one decides nothing.
pub async fn resolve(
    store: &dyn Store,
    actor: &str,
    fallback: Option<Vec<String>>,
) -> store::Result<Decider> {
    let email = actor.strip_prefix("user:").unwrap_or(actor).trim();
    let user = if email.contains('@') {
        store.user_by_email(email).await?
    } else {
        None
    };
    Ok(match user {
        Some(u) if u.disabled_at_ms.is_none() => for_user(&u),
        // A disabled user decides nothing through any channel (their Slack
        // mapping's or link's own queues do not stand in for them).
        Some(_) => Decider {
            actor: actor.to_string(),
            user_id: None,
            queues: Some(Vec::new()),
        },
        None => Decider {
            actor: actor.to_string(),
            user_id: None,
            queues: fallback,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn qs(v: &[&str]) -> Option<Vec<String>> {
        Some(v.iter().map(|s| s.to_string()).collect())
    }

    fn review_in(queue: &str) -> store::Review {
        store::Review {
            id: "r".into(),
            run_id: "run".into(),
            step_index: 1,
            step_id: "review".into(),
            workflow: "w".into(),
            queue: queue.into(),
            status: store::ReviewStatus::Pending,
            fields: "[]".into(),
            min_approvals: 1,
            submitter: None,
            deadline_at_ms: None,
            on_deadline: "null".into(),
            notify: "[]".into(),
            created_at_ms: 0,
            decided_at_ms: None,
            decided_by: None,
            reason: None,
            rev: 1,
            acts: Vec::new(),
            results: Vec::new(),
        }
    }

    #[test]
    fn a_run_is_readable_from_the_queues_of_its_tasks() {
        let mine = ["ops".to_string()];
        assert!(may_read_run(&mine, &[review_in("sales"), review_in("ops")]));
        assert!(!may_read_run(&mine, &[review_in("sales")]));
        // No task: the default queue's.
        assert!(!may_read_run(&mine, &[]));
        assert!(may_read_run(
            &[engine::approval::DEFAULT_QUEUE.to_string()],
            &[]
        ));
    }

    #[test]
    fn restrictions_intersect() {
        assert_eq!(both(None, qs(&["a"])), qs(&["a"]));
        assert_eq!(both(qs(&["a", "b"]), None), qs(&["a", "b"]));
        assert_eq!(both(qs(&["a", "b"]), qs(&["b", "c"])), qs(&["b"]));
        assert_eq!(both(qs(&["*"]), qs(&["c"])), qs(&["c"]));
        assert_eq!(both(qs(&["a"]), qs(&[])), qs(&[]));
        assert_eq!(both(None, None), None);
    }
}
