//! Users and sessions as SQL (the [`store::Users`] half of the store).

use async_trait::async_trait;
use rusqlite::{Connection, OptionalExtension, Row, params};
use store::{Result, Session, User, UserRole, Users};

use crate::SqliteStore;
use crate::ops::db;

const COLS: &str = "id, email, role, queues, password_hash, created_at, disabled_at";

fn user_from(r: &Row<'_>) -> rusqlite::Result<User> {
    let role: String = r.get(2)?;
    let queues: String = r.get(3)?;
    Ok(User {
        id: r.get(0)?,
        email: r.get(1)?,
        // An unknown role grants the least.
        role: UserRole::parse(&role).unwrap_or(UserRole::Viewer),
        queues: serde_json::from_str(&queues).unwrap_or_default(),
        password_hash: r.get(4)?,
        created_at_ms: r.get(5)?,
        disabled_at_ms: r.get(6)?,
    })
}

fn one_user(conn: &Connection, clause: &str, arg: &str) -> Result<Option<User>> {
    conn.prepare_cached(&format!("SELECT {COLS} FROM users WHERE {clause}"))
        .map_err(db)?
        .query_row([arg], user_from)
        .optional()
        .map_err(db)
}

/// Creates the tables of schema version 3 (idempotent).
pub(crate) const SCHEMA: &str = include_str!("users.sql");

#[async_trait]
impl Users for SqliteStore {
    async fn create_user(&self, u: User) -> Result<()> {
        self.write(move |conn| {
            let queues = serde_json::to_string(&u.queues).unwrap_or_else(|_| "[]".into());
            conn.prepare_cached(
                "INSERT INTO users (id, email, role, queues, password_hash, created_at, disabled_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            )
            .map_err(db)?
            .execute(params![
                u.id,
                u.email.to_lowercase(),
                u.role.as_str(),
                queues,
                u.password_hash,
                u.created_at_ms,
                u.disabled_at_ms
            ])
            .map_err(db)?;
            Ok(())
        })
        .await
    }

    async fn user(&self, id: &str) -> Result<Option<User>> {
        let id = id.to_string();
        self.read(move |conn| one_user(conn, "id = ?1", &id)).await
    }

    async fn user_by_email(&self, email: &str) -> Result<Option<User>> {
        let email = email.to_lowercase();
        self.read(move |conn| one_user(conn, "email = ?1", &email))
            .await
    }

    async fn list_users(&self) -> Result<Vec<User>> {
        self.read(|conn| {
            conn.prepare_cached(&format!("SELECT {COLS} FROM users ORDER BY created_at, id"))
                .map_err(db)?
                .query_map([], user_from)
                .map_err(db)?
                .collect::<rusqlite::Result<_>>()
                .map_err(db)
        })
        .await
    }

    async fn set_password(&self, user_id: &str, password_hash: &str) -> Result<bool> {
        let (id, hash) = (user_id.to_string(), password_hash.to_string());
        self.write(move |conn| {
            let n = conn
                .execute(
                    "UPDATE users SET password_hash = ?2 WHERE id = ?1",
                    params![id, hash],
                )
                .map_err(db)?;
            Ok(n > 0)
        })
        .await
    }

    async fn create_session(&self, s: Session) -> Result<()> {
        self.write(move |conn| {
            conn.prepare_cached(
                "INSERT INTO sessions (hash, user_id, csrf, created_at, expires_at) VALUES (?1, ?2, ?3, ?4, ?5)",
            )
            .map_err(db)?
            .execute(params![s.hash, s.user_id, s.csrf, s.created_at_ms, s.expires_at_ms])
            .map_err(db)?;
            Ok(())
        })
        .await
    }

    async fn session(&self, hash: &str, now_ms: i64) -> Result<Option<(Session, User)>> {
        let hash = hash.to_string();
        self.read(move |conn| {
            let Some(s) = conn
                .prepare_cached(
                    "SELECT hash, user_id, csrf, created_at, expires_at FROM sessions WHERE hash = ?1 AND expires_at > ?2",
                )
                .map_err(db)?
                .query_row(params![hash, now_ms], |r| {
                    Ok(Session {
                        hash: r.get(0)?,
                        user_id: r.get(1)?,
                        csrf: r.get(2)?,
                        created_at_ms: r.get(3)?,
                        expires_at_ms: r.get(4)?,
                    })
                })
                .optional()
                .map_err(db)?
            else {
                return Ok(None);
            };
            Ok(one_user(conn, "id = ?1 AND disabled_at IS NULL", &s.user_id)?.map(|u| (s, u)))
        })
        .await
    }

    async fn set_disabled(&self, user_id: &str, disabled_at_ms: Option<i64>) -> Result<bool> {
        let id = user_id.to_string();
        self.write(move |conn| {
            let n = conn
                .execute(
                    "UPDATE users SET disabled_at = ?2 WHERE id = ?1",
                    params![id, disabled_at_ms],
                )
                .map_err(db)?;
            if n > 0 && disabled_at_ms.is_some() {
                conn.execute("DELETE FROM sessions WHERE user_id = ?1", [&id])
                    .map_err(db)?;
            }
            Ok(n > 0)
        })
        .await
    }

    async fn delete_user_sessions(&self, user_id: &str) -> Result<u64> {
        let id = user_id.to_string();
        self.write(move |conn| {
            conn.execute("DELETE FROM sessions WHERE user_id = ?1", [id])
                .map(|n| n as u64)
                .map_err(db)
        })
        .await
    }

    async fn delete_session(&self, hash: &str) -> Result<()> {
        let hash = hash.to_string();
        self.write(move |conn| {
            conn.execute("DELETE FROM sessions WHERE hash = ?1", [hash])
                .map_err(db)?;
            Ok(())
        })
        .await
    }

    async fn delete_expired_sessions(&self, now_ms: i64) -> Result<u64> {
        self.write(move |conn| {
            let n = conn
                .execute("DELETE FROM sessions WHERE expires_at <= ?1", [now_ms])
                .map_err(db)?;
            Ok(n as u64)
        })
        .await
    }
}
