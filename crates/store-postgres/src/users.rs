//! Users and sessions as SQL (the [`store::Users`] half of the store).

use async_trait::async_trait;
use store::{Result, Session, User, UserRole, Users};
use tokio_postgres::Row;

use crate::{PgStore, db};

const COLS: &str = "id, email, role, queues, password_hash, created_at, disabled_at";

/// Creates the tables of schema version 3 (idempotent).
pub(crate) const SCHEMA: &str = include_str!("users.sql");

fn user_from(r: &Row) -> User {
    let role: String = r.get(2);
    let queues: String = r.get(3);
    User {
        id: r.get(0),
        email: r.get(1),
        // An unknown role grants the least.
        role: UserRole::parse(&role).unwrap_or(UserRole::Viewer),
        queues: serde_json::from_str(&queues).unwrap_or_default(),
        password_hash: r.get(4),
        created_at_ms: r.get(5),
        disabled_at_ms: r.get(6),
    }
}

impl PgStore {
    async fn one_user(&self, clause: &str, arg: &str) -> Result<Option<User>> {
        let conn = self.pool.get().await?;
        self.pool.count(1);
        Ok(conn
            .client
            .query_opt(&format!("SELECT {COLS} FROM users WHERE {clause}"), &[&arg])
            .await
            .map_err(db)?
            .as_ref()
            .map(user_from))
    }
}

#[async_trait]
impl Users for PgStore {
    async fn create_user(&self, u: User) -> Result<()> {
        let conn = self.pool.get().await?;
        let queues = serde_json::to_string(&u.queues).unwrap_or_else(|_| "[]".into());
        conn.client
            .execute(
                "INSERT INTO users (id, email, role, queues, password_hash, created_at, disabled_at) VALUES ($1, $2, $3, $4, $5, $6, $7)",
                &[&u.id, &u.email.to_lowercase(), &u.role.as_str(), &queues, &u.password_hash, &u.created_at_ms, &u.disabled_at_ms],
            )
            .await
            .map_err(db)?;
        self.pool.count(1);
        Ok(())
    }

    async fn user(&self, id: &str) -> Result<Option<User>> {
        self.one_user("id = $1", id).await
    }

    async fn user_by_email(&self, email: &str) -> Result<Option<User>> {
        self.one_user("email = $1", &email.to_lowercase()).await
    }

    async fn list_users(&self) -> Result<Vec<User>> {
        let conn = self.pool.get().await?;
        self.pool.count(1);
        Ok(conn
            .client
            .query(
                &format!("SELECT {COLS} FROM users ORDER BY created_at, id"),
                &[],
            )
            .await
            .map_err(db)?
            .iter()
            .map(user_from)
            .collect())
    }

    async fn set_password(&self, user_id: &str, password_hash: &str) -> Result<bool> {
        let conn = self.pool.get().await?;
        self.pool.count(1);
        let n = conn
            .client
            .execute(
                "UPDATE users SET password_hash = $2 WHERE id = $1",
                &[&user_id, &password_hash],
            )
            .await
            .map_err(db)?;
        Ok(n > 0)
    }

    async fn create_session(&self, s: Session) -> Result<()> {
        let conn = self.pool.get().await?;
        self.pool.count(1);
        conn.client
            .execute(
                "INSERT INTO sessions (hash, user_id, csrf, created_at, expires_at) VALUES ($1, $2, $3, $4, $5)",
                &[&s.hash, &s.user_id, &s.csrf, &s.created_at_ms, &s.expires_at_ms],
            )
            .await
            .map_err(db)?;
        Ok(())
    }

    async fn session(&self, hash: &str, now_ms: i64) -> Result<Option<(Session, User)>> {
        let conn = self.pool.get().await?;
        self.pool.count(1);
        let cols = COLS
            .split(", ")
            .map(|c| format!("u.{c}"))
            .collect::<Vec<_>>()
            .join(", ");
        let row = conn
            .client
            .query_opt(
                &format!(
                    "SELECT s.hash, s.user_id, s.csrf, s.created_at, s.expires_at, {cols}
                     FROM sessions s JOIN users u ON u.id = s.user_id
                     WHERE s.hash = $1 AND s.expires_at > $2 AND u.disabled_at IS NULL"
                ),
                &[&hash, &now_ms],
            )
            .await
            .map_err(db)?;
        Ok(row.map(|r| {
            let role: String = r.get(7);
            let queues: String = r.get(8);
            (
                Session {
                    hash: r.get(0),
                    user_id: r.get(1),
                    csrf: r.get(2),
                    created_at_ms: r.get(3),
                    expires_at_ms: r.get(4),
                },
                User {
                    id: r.get(5),
                    email: r.get(6),
                    role: UserRole::parse(&role).unwrap_or(UserRole::Viewer),
                    queues: serde_json::from_str(&queues).unwrap_or_default(),
                    password_hash: r.get(9),
                    created_at_ms: r.get(10),
                    disabled_at_ms: r.get(11),
                },
            )
        }))
    }

    async fn set_disabled(&self, user_id: &str, disabled_at_ms: Option<i64>) -> Result<bool> {
        let mut conn = self.pool.get().await?;
        self.pool.count(2);
        let tx = conn.client.transaction().await.map_err(db)?;
        let n = tx
            .execute(
                "UPDATE users SET disabled_at = $2 WHERE id = $1",
                &[&user_id, &disabled_at_ms],
            )
            .await
            .map_err(db)?;
        if n > 0 && disabled_at_ms.is_some() {
            tx.execute("DELETE FROM sessions WHERE user_id = $1", &[&user_id])
                .await
                .map_err(db)?;
        }
        tx.commit().await.map_err(db)?;
        Ok(n > 0)
    }

    async fn delete_user_sessions(&self, user_id: &str) -> Result<u64> {
        let conn = self.pool.get().await?;
        self.pool.count(1);
        conn.client
            .execute("DELETE FROM sessions WHERE user_id = $1", &[&user_id])
            .await
            .map_err(db)
    }

    async fn delete_session(&self, hash: &str) -> Result<()> {
        let conn = self.pool.get().await?;
        self.pool.count(1);
        conn.client
            .execute("DELETE FROM sessions WHERE hash = $1", &[&hash])
            .await
            .map_err(db)?;
        Ok(())
    }

    async fn delete_expired_sessions(&self, now_ms: i64) -> Result<u64> {
        let conn = self.pool.get().await?;
        self.pool.count(1);
        conn.client
            .execute("DELETE FROM sessions WHERE expires_at <= $1", &[&now_ms])
            .await
            .map_err(db)
    }
}
