//! People who sign in to the review inbox, and their sessions: rows and the
//! [`Users`] half of the store boundary.
//!
//! Slack member ids map to users through [`crate::SlackIdentity`] rows
//! whose actor is the user's [`User::actor`].
//!
//! Only an argon2 hash of a password and only the SHA-256 of a session's
//! secret are stored; the secrets themselves never reach the database.

use async_trait::async_trait;

use crate::Result;

/// What a person may do in the inbox and the API.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum UserRole {
    /// Sees and decides every task; all API scopes.
    Admin,
    /// Sees and decides tasks of the queues they hold.
    Reviewer,
    /// Sees every task, decides none.
    Viewer,
}

impl UserRole {
    pub const ALL: [UserRole; 3] = [UserRole::Admin, UserRole::Reviewer, UserRole::Viewer];

    pub fn as_str(self) -> &'static str {
        match self {
            UserRole::Admin => "admin",
            UserRole::Reviewer => "reviewer",
            UserRole::Viewer => "viewer",
        }
    }

    pub fn parse(s: &str) -> Option<UserRole> {
        UserRole::ALL.into_iter().find(|r| r.as_str() == s)
    }
}

/// A stored user.
#[derive(Debug, Clone, PartialEq)]
pub struct User {
    pub id: String,
    /// Unique, stored lowercase.
    pub email: String,
    pub role: UserRole,
    /// Review queues a reviewer holds (ignored for other roles).
    pub queues: Vec<String>,
    /// PHC string of the argon2 hash.
    pub password_hash: String,
    pub created_at_ms: i64,
    pub disabled_at_ms: Option<i64>,
}

impl User {
    /// The actor recorded in audit events for this user: `user:<email>`.
    pub fn actor(&self) -> String {
        format!("user:{}", self.email)
    }
}

/// A signed-in browser session.
#[derive(Debug, Clone, PartialEq)]
pub struct Session {
    /// Lowercase hex SHA-256 of the cookie's secret.
    pub hash: String,
    pub user_id: String,
    /// The per-session CSRF token every form carries.
    pub csrf: String,
    pub created_at_ms: i64,
    pub expires_at_ms: i64,
}

/// Users and sessions: a supertrait of [`crate::Store`].
#[async_trait]
pub trait Users: Send + Sync {
    /// Inserts a user; `Duplicate` if the email is taken.
    async fn create_user(&self, user: User) -> Result<()>;
    async fn user(&self, id: &str) -> Result<Option<User>>;
    /// By email, compared lowercase.
    async fn user_by_email(&self, email: &str) -> Result<Option<User>>;
    /// Oldest first.
    async fn list_users(&self) -> Result<Vec<User>>;
    /// Replaces a user's password hash; false if no such user.
    async fn set_password(&self, user_id: &str, password_hash: &str) -> Result<bool>;

    async fn create_session(&self, session: Session) -> Result<()>;
    /// The session with this hash and its (enabled) user, if it has not
    /// expired by `now_ms`.
    async fn session(&self, hash: &str, now_ms: i64) -> Result<Option<(Session, User)>>;
    async fn delete_session(&self, hash: &str) -> Result<()>;
    /// Disables (`Some(at)`) or enables (`None`) a user; disabling also
    /// ends every session of theirs, in the same write. False if no such
    /// user.
    async fn set_disabled(&self, user_id: &str, disabled_at_ms: Option<i64>) -> Result<bool>;
    /// Ends every session of a user (signs them out everywhere); returns
    /// how many.
    async fn delete_user_sessions(&self, user_id: &str) -> Result<u64>;
    /// Removes sessions expired by `now_ms`; returns how many.
    async fn delete_expired_sessions(&self, now_ms: i64) -> Result<u64>;
}
