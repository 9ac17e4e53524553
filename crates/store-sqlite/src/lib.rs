//! The embedded SQLite store.
//!
//! One writer thread owns the only read-write connection and commits in
//! groups: it drains every request waiting in its queue into one
//! transaction (each request inside its own savepoint, so one failure does
//! not spoil its neighbours), commits once, and only then answers the
//! callers. Durability costs one fsync per batch, not per step. Queries
//! use a small pool of read-only connections (WAL lets them run beside the
//! writer).
//!
//! A process that executes work holds an exclusive lock file beside the
//! database, so every lease found at start-up belongs to a dead process and
//! is released at once: a restarted node resumes its runs immediately.

mod calibration;
mod desk;
mod events;
mod integrations;
mod ops;
mod prune;
mod reviews;
mod users;

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use rusqlite::{Connection, OpenFlags};
use store::{Error, Result};
use tokio::sync::{Semaphore, mpsc, oneshot};

/// Requests gathered into one transaction, at most.
const MAX_BATCH: usize = 512;
/// Read-only connections, at most: a read waits (asynchronously) for one
/// rather than opening another.
const READERS: usize = 8;
/// Version 3 belongs to users and sessions (another module); version 4
/// (review integrations) is idempotent, so a database may reach 4 first;
/// version 5 ties tokens and review acts to users (`identity.sql`);
/// version 6 is the webhook replay cache (`replay.sql`); version 7
/// indexes events by time for exports (`export.sql`, idempotent); version
/// 8 is the review desk's claims and views (`desk.sql`).
const SCHEMA_VERSION: i64 = 10;

/// How hard each commit is pushed to disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Durability {
    /// `synchronous=NORMAL` in WAL mode: survives a killed process.
    #[default]
    CrashSafe,
    /// `synchronous=FULL`: also survives power loss.
    PowerLossSafe,
}

/// How a process opens the database.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Executes runs: takes the exclusive lock, releases stale leases.
    Worker,
    /// Admin commands and queries (`token create`, `audit verify`): no lock.
    Admin,
}

type Reply = Box<dyn FnOnce(bool) + Send>;
type Job = Box<dyn FnOnce(&Connection) -> (bool, Reply) + Send>;

/// The SQLite implementation of [`store::Store`].
pub struct SqliteStore {
    jobs: mpsc::UnboundedSender<Job>,
    readers: Arc<Readers>,
    _lock: Option<File>,
    _temp: Option<TempDb>,
}

struct Readers {
    path: PathBuf,
    idle: Mutex<Vec<Connection>>,
    /// One permit per connection: at most [`READERS`] reads run at once,
    /// so no read ever opens a connection beyond the pool (see `read`).
    permits: Arc<Semaphore>,
}

/// A throwaway database file removed on drop (tests, `countersign run`).
struct TempDb(PathBuf);

impl Drop for TempDb {
    fn drop(&mut self) {
        for suffix in ["", "-wal", "-shm", ".lock"] {
            let _ = std::fs::remove_file(format!("{}{suffix}", self.0.display()));
        }
    }
}

fn backend(e: impl std::fmt::Display) -> Error {
    Error::Backend(e.to_string())
}

impl SqliteStore {
    /// Opens (creating if needed) and migrates the database at `path`.
    pub fn open(path: &Path, durability: Durability, role: Role) -> Result<SqliteStore> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .map_err(|e| Error::Backend(format!("cannot create {}: {e}", dir.display())))?;
        }
        let lock = match role {
            Role::Worker => {
                let lock_path = PathBuf::from(format!("{}.lock", path.display()));
                let f = File::options()
                    .create(true)
                    .truncate(false)
                    .write(true)
                    .open(&lock_path)
                    .map_err(|e| {
                        Error::Backend(format!("cannot open {}: {e}", lock_path.display()))
                    })?;
                f.try_lock().map_err(|_| {
                    Error::Backend(format!(
                        "{} is in use by another countersign process (SQLite serves one node; use PostgreSQL for several)",
                        path.display()
                    ))
                })?;
                Some(f)
            }
            Role::Admin => None,
        };
        let conn = Connection::open(path).map_err(backend)?;
        conn.execute_batch(&format!(
            "PRAGMA journal_mode=WAL; PRAGMA synchronous={}; PRAGMA busy_timeout=5000; PRAGMA foreign_keys=OFF; PRAGMA temp_store=MEMORY; PRAGMA cache_size=-32000;",
            match durability {
                Durability::CrashSafe => "NORMAL",
                Durability::PowerLossSafe => "FULL",
            }
        ))
        .map_err(backend)?;
        migrate(&conn)?;
        if role == Role::Worker {
            // We hold the lock: any lease is a dead process's.
            conn.execute(
                "UPDATE work SET locked_by = NULL, lease_until = NULL WHERE locked_by IS NOT NULL",
                [],
            )
            .map_err(backend)?;
        }
        let (tx, rx) = mpsc::unbounded_channel();
        std::thread::Builder::new()
            .name("sqlite-writer".into())
            .spawn(move || writer(conn, rx))
            .map_err(backend)?;
        Ok(SqliteStore {
            jobs: tx,
            readers: Arc::new(Readers {
                path: path.to_path_buf(),
                idle: Mutex::new(Vec::new()),
                permits: Arc::new(Semaphore::new(READERS)),
            }),
            _lock: lock,
            _temp: None,
        })
    }

    /// A fresh database in a temporary file, deleted when the store drops.
    pub fn open_temp() -> Result<SqliteStore> {
        let path = std::env::temp_dir().join(format!(
            "countersign-{}-{}.db",
            std::process::id(),
            ops::random_suffix()
        ));
        let mut s = SqliteStore::open(&path, Durability::CrashSafe, Role::Worker)?;
        s._temp = Some(TempDb(path));
        Ok(s)
    }

    /// Same as [`SqliteStore::open_temp`]; kept for tests that say "memory".
    pub fn open_memory() -> Result<SqliteStore> {
        SqliteStore::open_temp()
    }

    /// Runs `f` on the writer connection inside the next group transaction.
    async fn write<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let (tx, rx) = oneshot::channel();
        let job: Job = Box::new(move |conn| {
            let r = f(conn);
            let ok = r.is_ok();
            let reply: Reply = Box::new(move |committed| {
                let _ = tx.send(if committed || r.is_err() {
                    r
                } else {
                    Err(Error::Backend("commit failed".into()))
                });
            });
            (ok, reply)
        });
        self.jobs
            .send(job)
            .map_err(|_| Error::Backend("the database writer has stopped".into()))?;
        rx.await
            .map_err(|_| Error::Backend("the database writer dropped a request".into()))?
    }

    /// Runs `f` on a read-only connection on the blocking pool.
    ///
    /// A read first takes one of [`READERS`] permits, waiting in the
    /// runtime, not on a thread. Without that bound every read beyond the
    /// pool's idle connections opened a fresh connection (open, schema
    /// parse, WAL-index map) and closed it after one query, and each one
    /// also occupied a blocking thread: with more runtime threads than
    /// cores, more reads were in flight at once, so more of them paid that
    /// price and more threads fought over the cores (see ARCHITECTURE.md,
    /// "Reads on SQLite").
    async fn read<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let readers = self.readers.clone();
        let permit = readers
            .permits
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| Error::Backend("the reader pool is closed".into()))?;
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            let conn = readers.idle.lock().expect("reader pool").pop();
            let conn = match conn {
                Some(c) => c,
                None => {
                    let c = Connection::open_with_flags(
                        &readers.path,
                        OpenFlags::SQLITE_OPEN_READ_ONLY
                            | OpenFlags::SQLITE_OPEN_NO_MUTEX
                            | OpenFlags::SQLITE_OPEN_URI,
                    )
                    .map_err(backend)?;
                    c.execute_batch("PRAGMA busy_timeout=5000;")
                        .map_err(backend)?;
                    c
                }
            };
            let r = f(&conn);
            readers.idle.lock().expect("reader pool").push(conn);
            r
        })
        .await
        .map_err(backend)?
    }
}

fn migrate(conn: &Connection) -> Result<()> {
    let v: i64 = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .map_err(backend)?;
    if v > SCHEMA_VERSION {
        return Err(Error::Backend(format!(
            "database schema version {v} is newer than this countersign ({SCHEMA_VERSION}); upgrade countersign"
        )));
    }
    if v < 1 {
        conn.execute_batch(&format!(
            "BEGIN; {} PRAGMA user_version = 1; COMMIT;",
            include_str!("schema.sql")
        ))
        .map_err(backend)?;
    }
    if v < 2 {
        conn.execute_batch(&format!(
            "BEGIN; {} PRAGMA user_version = 2; COMMIT;",
            include_str!("reviews.sql")
        ))
        .map_err(backend)?;
    }
    // Version 3 (users, sessions) is idempotent: it also runs when a
    // database reached 4 before this module existed.
    if v < 3 || v == 4 && !has_table(conn, "users")? {
        conn.execute_batch(&format!(
            "BEGIN; {} PRAGMA user_version = {}; COMMIT;",
            users::SCHEMA,
            v.max(3)
        ))
        .map_err(backend)?;
    }
    if v < 4 {
        conn.execute_batch(&format!(
            "BEGIN; {} PRAGMA user_version = 4; COMMIT;",
            include_str!("integrations.sql")
        ))
        .map_err(backend)?;
    }
    if v < 5 {
        conn.execute_batch(&format!(
            "BEGIN; {} PRAGMA user_version = 5; COMMIT;",
            include_str!("identity.sql")
        ))
        .map_err(backend)?;
    }
    if v < 6 {
        conn.execute_batch(&format!(
            "BEGIN; {} PRAGMA user_version = 6; COMMIT;",
            include_str!("replay.sql")
        ))
        .map_err(backend)?;
    }
    if v < 7 {
        conn.execute_batch(&format!(
            "BEGIN; {} PRAGMA user_version = 7; COMMIT;",
            include_str!("export.sql")
        ))
        .map_err(backend)?;
    }
    if v < 8 {
        conn.execute_batch(&format!(
            "BEGIN; {} PRAGMA user_version = 8; COMMIT;",
            include_str!("desk.sql")
        ))
        .map_err(backend)?;
    }
    if v < 9 {
        conn.execute_batch(&format!(
            "BEGIN; {} PRAGMA user_version = 9; COMMIT;",
            include_str!("prune.sql")
        ))
        .map_err(backend)?;
    }
    if v < 10 {
        conn.execute_batch(&format!(
            "BEGIN; {} PRAGMA user_version = 10; COMMIT;",
            include_str!("search.sql")
        ))
        .map_err(backend)?;
    }
    Ok(())
}

fn has_table(conn: &Connection, name: &str) -> Result<bool> {
    conn.query_row(
        "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = ?1",
        [name],
        |r| r.get::<_, i64>(0),
    )
    .map(|n| n > 0)
    .map_err(backend)
}

/// The group-commit loop.
fn writer(mut conn: Connection, mut rx: mpsc::UnboundedReceiver<Job>) {
    conn.set_prepared_statement_cache_capacity(64);
    let mut batch: Vec<Job> = Vec::with_capacity(MAX_BATCH);
    let mut replies: Vec<Reply> = Vec::with_capacity(MAX_BATCH);
    while let Some(first) = rx.blocking_recv() {
        batch.push(first);
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(j) => batch.push(j),
                Err(_) => break,
            }
        }
        let committed = run_batch(&mut conn, &mut batch, &mut replies);
        for r in replies.drain(..) {
            r(committed);
        }
    }
}

fn run_batch(conn: &mut Connection, batch: &mut Vec<Job>, replies: &mut Vec<Reply>) -> bool {
    if let Err(e) = conn.execute_batch("BEGIN IMMEDIATE") {
        tracing::error!(error = %e, "cannot begin a transaction");
        for job in batch.drain(..) {
            // Run nothing; answer every caller with the failure.
            drop(job);
        }
        return false;
    }
    for job in batch.drain(..) {
        let _ = conn.execute_batch("SAVEPOINT op");
        let (ok, reply) = job(conn);
        let _ = if ok {
            conn.execute_batch("RELEASE op")
        } else {
            conn.execute_batch("ROLLBACK TO op; RELEASE op")
        };
        replies.push(reply);
    }
    match conn.execute_batch("COMMIT") {
        Ok(()) => true,
        Err(e) => {
            tracing::error!(error = %e, "group commit failed");
            let _ = conn.execute_batch("ROLLBACK");
            false
        }
    }
}
