//! Throwaway databases for tests and `countersign bench`: each gets its own
//! `CREATE DATABASE cs_<label>_<random>` on a server, dropped afterwards, so
//! tests run in parallel without seeing each other's rows.

use std::time::Duration;

use store::{Error, Result};
use tokio_postgres::NoTls;

use crate::backend;

/// The variable naming the server tests use.
pub const TEST_URL_VAR: &str = "COUNTERSIGN_TEST_POSTGRES_URL";
/// The server for tests: `COUNTERSIGN_TEST_POSTGRES_URL`, else a
/// throwaway server of the tests' own (started on first use from the
/// installed PostgreSQL binaries, see [`crate::throwaway`]).
pub fn test_url() -> Result<String> {
    match std::env::var(TEST_URL_VAR).ok().filter(|s| !s.is_empty()) {
        Some(url) => Ok(url),
        None => crate::throwaway::url().map_err(|e| {
            Error::Backend(format!(
                "{TEST_URL_VAR} is unset and no throwaway PostgreSQL server could be started: {e}"
            ))
        }),
    }
}

/// `url` with its database name replaced by `name` (query parameters kept).
pub fn with_database(url: &str, name: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (url, None),
    };
    let start = base.find("://").map_or(0, |i| i + 3);
    let host_end = base[start..].find('/').map_or(base.len(), |i| start + i);
    let mut out = format!("{}/{}", &base[..host_end], name);
    if let Some(q) = query {
        out.push('?');
        out.push_str(q);
    }
    out
}

/// A database created for one test (or benchmark) and dropped with it.
#[derive(Debug)]
pub struct ScratchDb {
    admin_url: String,
    name: String,
    url: String,
    dropped: bool,
}

impl ScratchDb {
    /// Creates `cs_<label>_<random>` on the server `admin_url` names (any
    /// database there works for connecting, e.g. `postgres`).
    pub async fn create(admin_url: &str, label: &str) -> Result<ScratchDb> {
        let name = format!("cs_{}_{}", sanitize(label), random_suffix());
        let client = admin(admin_url).await?;
        client
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .await
            .map_err(|e| {
                Error::Backend(format!(
                    "cannot create a test database on {admin_url} (is PostgreSQL running? set {TEST_URL_VAR}): {e}"
                ))
            })?;
        Ok(ScratchDb {
            url: with_database(admin_url, &name),
            admin_url: admin_url.to_string(),
            name,
            dropped: false,
        })
    }

    /// A fresh database on the test server ([`test_url`]).
    pub async fn for_test(label: &str) -> Result<ScratchDb> {
        let url = tokio::task::spawn_blocking(test_url)
            .await
            .map_err(|e| Error::Backend(e.to_string()))??;
        ScratchDb::create(&url, label).await
    }

    /// The URL of the new database.
    pub fn url(&self) -> &str {
        &self.url
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Drops the database now (closing any connection still open to it).
    pub async fn drop_now(mut self) -> Result<()> {
        self.dropped = true;
        drop_db(&self.admin_url, &self.name).await
    }
}

impl Drop for ScratchDb {
    fn drop(&mut self) {
        if self.dropped {
            return;
        }
        // Drop runs inside or outside a runtime: use a thread of our own.
        let (url, name) = (self.admin_url.clone(), self.name.clone());
        let t = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build();
            if let Ok(rt) = rt {
                let _ = rt.block_on(drop_db(&url, &name));
            }
        });
        let _ = t.join();
    }
}

async fn admin(url: &str) -> Result<tokio_postgres::Client> {
    let (client, connection) =
        tokio::time::timeout(Duration::from_secs(10), tokio_postgres::connect(url, NoTls))
            .await
            .map_err(|_| Error::Backend(format!("connecting to {url} timed out")))?
            .map_err(|e| {
                Error::Backend(format!(
                    "cannot connect to {url} (is PostgreSQL running? set {TEST_URL_VAR}): {e}"
                ))
            })?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok(client)
}

async fn drop_db(admin_url: &str, name: &str) -> Result<()> {
    let client = admin(admin_url).await?;
    client
        .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        .await
        .map_err(backend)
}

fn sanitize(label: &str) -> String {
    label
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '_'
            }
        })
        .take(24)
        .collect()
}

fn random_suffix() -> String {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    h.write_u32(std::process::id());
    format!("{:016x}", h.finish())
}

#[cfg(test)]
mod tests {
    use super::with_database;

    #[test]
    fn replaces_the_database_name() {
        assert_eq!(
            with_database("postgres://postgres@127.0.0.1:5432/postgres", "x"),
            "postgres://postgres@127.0.0.1:5432/x"
        );
        assert_eq!(
            with_database("postgres://u:p@h/db?sslmode=disable", "y"),
            "postgres://u:p@h/y?sslmode=disable"
        );
        assert_eq!(with_database("postgresql://h:1", "z"), "postgresql://h:1/z");
    }
}
