//! The PostgreSQL store: several stateless nodes (API nodes and workers)
//! over one database.
//!
//! - **Group commit.** The hot path (`create_run`, `commit`) goes through
//!   writer tasks, each owning one connection. A writer drains every request
//!   waiting in its queue and applies the whole batch in one transaction with
//!   a handful of array (`UNNEST`) statements sent pipelined, then commits
//!   once and answers the callers. A batch that fails as a whole is replayed
//!   one request per transaction, so one bad request never spoils its
//!   neighbours (the role SQLite's savepoints play).
//! - **Fencing and the hash chain** behave exactly as in SQLite: a commit
//!   reads the run's revision and chain head under a row lock
//!   (`SELECT … FOR UPDATE`), so two writers can never fork a chain and a
//!   stale worker's commit fails with `Conflict`.
//! - **Claims** are one statement: `FOR UPDATE SKIP LOCKED` picks due or
//!   lease-expired work items, leases them and bumps the runs' revisions.
//!   Nothing is released at start-up: a dead node's leases simply expire.
//! - **Wake-ups.** Writes that make work due for anyone (a new unleased run,
//!   a timer, a retry, released leases) `NOTIFY countersign_work` with the
//!   due time; [`store::Store::wait_for_work`] `LISTEN`s on a dedicated
//!   connection, with the engine's slow poll as the fallback.
//! - **Settled news.** A commit that settles runs (and a cancel)
//!   `NOTIFY countersign_settled` with their ids (comma-separated, as few
//!   notifications as fit the 8000-byte payload), in the same transaction.
//!   [`store::Store::settled_feed`] `LISTEN`s on its own connection, opened
//!   on the first `?wait=` and kept (re-subscribing after a connection
//!   loss), so an API node's waiter wakes when a worker settles its run
//!   instead of polling; every (re)connect announces "maybe missed".
//!
//! Lock order, everywhere: a run's `work` row before its `runs` row, several
//! rows in `run_id` order. Claims find runs through their work rows, so any
//! other order could deadlock against them.

mod batch;
mod calibration;
mod desk;
mod events;
mod integrations;
mod ops;
mod prune;
mod reviews;
pub mod scratch;
pub mod throwaway;
mod users;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use store::{Error, Result};
use tokio::sync::{Notify, Semaphore, mpsc};
use tokio_postgres::{Client, NoTls, Statement};

/// The NOTIFY channel for "work became due".
pub(crate) const CHANNEL: &str = "countersign_work";
/// The NOTIFY channel for "these runs settled" (payload: run ids, commas).
pub(crate) const SETTLED_CHANNEL: &str = "countersign_settled";
/// Payload bytes per settled notification, at most (PostgreSQL allows 8000).
pub(crate) const SETTLED_PAYLOAD: usize = 7900;
/// Version 3 belongs to users and sessions (another module); version 4
/// (review integrations) is idempotent, so a database may reach 4 first;
/// version 5 ties tokens and review acts to users (`identity.sql`);
/// version 6 is the webhook replay cache (`replay.sql`); version 7
/// indexes events by time for exports (`export.sql`, idempotent); version
/// 8 is the review desk's claims and views (`desk.sql`).
const SCHEMA_VERSION: i64 = 10;

/// Tuning; the defaults suit a node on a small machine.
#[derive(Debug, Clone)]
pub struct Options {
    /// Connections for queries and operator commands, at most.
    pub pool_size: usize,
    /// Writer tasks (each with its own connection) for group commit.
    pub writers: usize,
    /// Requests applied in one transaction, at most.
    pub max_batch: usize,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            pool_size: 8,
            writers: 2,
            max_batch: 512,
        }
    }
}

/// The PostgreSQL implementation of [`store::Store`].
pub struct PgStore {
    pub(crate) pool: Arc<Pool>,
    pub(crate) writer: mpsc::UnboundedSender<batch::Request>,
    pub(crate) wake: Arc<Wake>,
    listener: Mutex<Option<tokio::task::JoinHandle<()>>>,
    /// The settled feed: its sender and LISTEN task, once started.
    settled: Mutex<Option<SettledFeed>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Drop for PgStore {
    fn drop(&mut self) {
        self.close();
    }
}

pub(crate) fn backend(e: impl std::fmt::Display) -> Error {
    Error::Backend(e.to_string())
}

/// Converts a driver error once, at the boundary.
pub(crate) fn db(e: tokio_postgres::Error) -> Error {
    match e.code() {
        Some(c) if *c == tokio_postgres::error::SqlState::UNIQUE_VIOLATION => Error::Duplicate(
            e.as_db_error()
                .map_or_else(|| e.to_string(), |d| d.message().to_string()),
        ),
        _ => match e.as_db_error() {
            Some(d) => Error::Backend(format!("postgres: {}", d.message())),
            None => Error::Backend(format!("postgres: {e}")),
        },
    }
}

impl PgStore {
    /// Connects to `url` (`postgres://user[:password]@host[:port]/db`),
    /// creates or upgrades the schema, and starts the writers.
    pub async fn connect(url: &str) -> Result<PgStore> {
        PgStore::connect_with(url, Options::default()).await
    }

    pub async fn connect_with(url: &str, options: Options) -> Result<PgStore> {
        let mut config: tokio_postgres::Config = url
            .parse()
            .map_err(|e| Error::Backend(format!("invalid PostgreSQL URL: {e}")))?;
        config.application_name("countersign");
        config.connect_timeout(Duration::from_secs(10));
        config.keepalives_idle(Duration::from_secs(30));
        let pool = Arc::new(Pool {
            config,
            idle: Mutex::new(Vec::new()),
            permits: Arc::new(Semaphore::new(options.pool_size.max(1))),
            queries: AtomicU64::new(0),
            churn: AtomicU64::new(0),
        });
        {
            let mut conn = pool.get().await?;
            migrate(&mut conn).await?;
        }
        let (tx, rx) = mpsc::unbounded_channel();
        let rx = Arc::new(tokio::sync::Mutex::new(rx));
        let mut tasks = vec![tokio::spawn(janitor(pool.clone()))];
        for _ in 0..options.writers.max(1) {
            tasks.push(tokio::spawn(batch::writer(
                pool.clone(),
                rx.clone(),
                options.max_batch.max(1),
            )));
        }
        Ok(PgStore {
            pool,
            writer: tx,
            wake: Arc::new(Wake::default()),
            listener: Mutex::new(None),
            settled: Mutex::new(None),
            tasks,
        })
    }

    /// Stops the writers and the LISTEN connection now, rather than when
    /// the last handle drops (engine tasks may hold one a while longer).
    /// Requests sent afterwards fail with `Backend`.
    pub fn close(&self) {
        if let Some(h) = self.listener.lock().expect("listener lock").take() {
            h.abort();
        }
        if let Some(f) = self.settled.lock().expect("settled lock").take() {
            f.task.abort();
        }
        for t in &self.tasks {
            t.abort();
        }
    }

    /// Statements this store has sent since it was opened (for the idle
    /// load figure in `countersign bench`).
    pub fn queries(&self) -> u64 {
        self.pool.queries.load(Ordering::Relaxed)
    }

    /// Starts the LISTEN connection on first use: API-only nodes never wait
    /// for work, so they never hold one.
    pub(crate) fn ensure_listener(&self) {
        let mut l = self.listener.lock().expect("listener lock");
        if l.as_ref().is_some_and(|h| !h.is_finished()) {
            return;
        }
        let wake = self.wake.clone();
        *l = Some(tokio::spawn(listen(
            self.pool.clone(),
            CHANNEL,
            move |payload| match payload {
                Some(p) => wake.announce(p.parse().unwrap_or(0)),
                None => wake.announce(0),
            },
        )));
    }

    /// Starts the settled feed's LISTEN connection on first use (a node
    /// whose callers never `?wait=` holds none) and subscribes.
    pub(crate) fn settled_feed_start(
        &self,
    ) -> tokio::sync::broadcast::Receiver<store::SettledNews> {
        let mut f = self.settled.lock().expect("settled lock");
        if let Some(feed) = f.as_ref().filter(|feed| !feed.task.is_finished()) {
            return feed.tx.subscribe();
        }
        let (tx, rx) = tokio::sync::broadcast::channel(4096);
        let sender = tx.clone();
        let task = tokio::spawn(listen(self.pool.clone(), SETTLED_CHANNEL, move |payload| {
            let news = match payload {
                Some(p) => store::SettledNews::Runs(
                    p.split(',')
                        .filter(|id| !id.is_empty())
                        .map(str::to_string)
                        .collect(),
                ),
                None => store::SettledNews::MaybeMissed,
            };
            // No receiver: nobody waits now; the news is not needed.
            let _ = sender.send(news);
        }));
        *f = Some(SettledFeed { tx, task });
        rx
    }
}

pub(crate) struct SettledFeed {
    tx: tokio::sync::broadcast::Sender<store::SettledNews>,
    task: tokio::task::JoinHandle<()>,
}

/// Groups run ids into comma-separated payloads of at most
/// [`SETTLED_PAYLOAD`] bytes each.
pub(crate) fn settled_payloads(ids: &[String]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let mut cur = String::new();
    for id in ids {
        if !cur.is_empty() && cur.len() + 1 + id.len() > SETTLED_PAYLOAD {
            out.push(std::mem::take(&mut cur));
        }
        if !cur.is_empty() {
            cur.push(',');
        }
        cur.push_str(id);
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

/// Wake-up state shared by the LISTEN task and the poller.
#[derive(Default)]
pub(crate) struct Wake {
    pub(crate) notify: Notify,
    /// Earliest due time announced since the poller last looked (ms).
    pub(crate) earliest: Mutex<Option<i64>>,
}

impl Wake {
    fn announce(&self, at_ms: i64) {
        let mut e = self.earliest.lock().expect("wake lock");
        *e = Some(e.map_or(at_ms, |x| x.min(at_ms)));
        drop(e);
        self.notify.notify_one();
    }

    pub(crate) fn take(&self) -> Option<i64> {
        self.earliest.lock().expect("wake lock").take()
    }
}

/// Holds a LISTEN connection on `channel` open, reconnecting with
/// back-off; `on` gets each notification's payload, and `None` on every
/// (re)connect because notifications may have been missed meanwhile.
async fn listen(pool: Arc<Pool>, channel: &'static str, mut on: impl FnMut(Option<&str>)) {
    use futures_util::StreamExt;
    let mut backoff = Duration::from_millis(100);
    loop {
        match pool.config.connect(NoTls).await {
            Ok((client, mut connection)) => {
                let mut messages =
                    futures_util::stream::poll_fn(move |cx| connection.poll_message(cx));
                let sql = format!("LISTEN {channel}");
                let ok = {
                    // The connection must be polled for LISTEN to complete.
                    let mut listen = std::pin::pin!(client.batch_execute(&sql));
                    loop {
                        tokio::select! {
                            r = &mut listen => break r.is_ok(),
                            m = messages.next() => if m.is_none() { break false },
                        }
                    }
                };
                if ok {
                    pool.queries.fetch_add(1, Ordering::Relaxed);
                    backoff = Duration::from_millis(100);
                    on(None);
                    while let Some(m) = messages.next().await {
                        match m {
                            Ok(tokio_postgres::AsyncMessage::Notification(n)) => {
                                on(Some(n.payload()));
                            }
                            Ok(_) => {}
                            Err(e) => {
                                tracing::warn!(error = %db(e), channel, "LISTEN connection failed");
                                break;
                            }
                        }
                    }
                    // The connection ended: anything may have been missed.
                    on(None);
                }
                drop(client);
            }
            Err(e) => tracing::warn!(error = %db(e), channel, "cannot open the LISTEN connection"),
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
}

/// Work rows changed before `work` is vacuumed.
const VACUUM_EVERY: u64 = 2_000;

/// Keeps the queue table lean. Every claim and every finished step leaves a
/// dead version of a `work` row (and of its index entries) that claims and
/// the next-due look-up would otherwise scan past; autovacuum may be slow
/// or, on some servers, off. So after enough churn one node at a time (an
/// advisory lock) vacuums `work`, and now and then `runs`. Never with
/// truncation: giving pages back takes an exclusive lock that stalls every
/// claim and commit meanwhile. An idle node sends nothing.
async fn janitor(pool: Arc<Pool>) {
    let mut rounds: u64 = 0;
    loop {
        tokio::time::sleep(Duration::from_secs(1)).await;
        if pool.churn.load(Ordering::Relaxed) < VACUUM_EVERY {
            continue;
        }
        pool.churn.store(0, Ordering::Relaxed);
        rounds += 1;
        let Ok(conn) = pool.get().await else { continue };
        let tables = if rounds.is_multiple_of(10) {
            "work, runs"
        } else {
            "work"
        };
        let r = async {
            let locked: bool = conn
                .client
                .query_one("SELECT pg_try_advisory_lock(7340012)", &[])
                .await?
                .get(0);
            if locked {
                let v = conn
                    .client
                    .batch_execute(&format!("VACUUM (ANALYZE, TRUNCATE false) {tables}"))
                    .await;
                conn.client
                    .execute("SELECT pg_advisory_unlock(7340012)", &[])
                    .await?;
                pool.count(3);
                v?;
            } else {
                pool.count(1);
            }
            Ok::<(), tokio_postgres::Error>(())
        }
        .await;
        if let Err(e) = r {
            tracing::debug!(error = %db(e), "vacuuming the queue table failed");
        }
    }
}

/// A connection with its prepared statements.
pub(crate) struct Conn {
    pub(crate) client: Client,
    stmts: HashMap<&'static str, Statement>,
}

impl Conn {
    /// The prepared statement for `sql`, prepared on first use.
    pub(crate) async fn stmt(&mut self, sql: &'static str) -> Result<Statement> {
        if let Some(s) = self.stmts.get(sql) {
            return Ok(s.clone());
        }
        let s = self.client.prepare(sql).await.map_err(db)?;
        self.stmts.insert(sql, s.clone());
        Ok(s)
    }
}

/// A small connection pool: connections are opened on demand up to
/// `pool_size` and kept while healthy.
pub(crate) struct Pool {
    pub(crate) config: tokio_postgres::Config,
    idle: Mutex<Vec<Conn>>,
    permits: Arc<Semaphore>,
    pub(crate) queries: AtomicU64,
    /// Work rows updated or deleted since the last vacuum of `work`.
    pub(crate) churn: AtomicU64,
}

impl Pool {
    pub(crate) async fn open(&self) -> Result<Conn> {
        let (client, connection) = self.config.connect(NoTls).await.map_err(db)?;
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(error = %e, "postgres connection closed");
            }
        });
        Ok(Conn {
            client,
            stmts: HashMap::new(),
        })
    }

    pub(crate) async fn get(self: &Arc<Self>) -> Result<Pooled> {
        let permit = self
            .permits
            .clone()
            .acquire_owned()
            .await
            .map_err(backend)?;
        let idle = self.idle.lock().expect("pool lock").pop();
        let conn = match idle {
            Some(c) if !c.client.is_closed() => c,
            _ => self.open().await?,
        };
        Ok(Pooled {
            conn: Some(conn),
            pool: self.clone(),
            _permit: permit,
        })
    }

    /// Counts statements sent (for the idle-load figure).
    pub(crate) fn count(&self, n: u64) {
        self.queries.fetch_add(n, Ordering::Relaxed);
    }

    /// Counts work rows updated or deleted (dead row versions to vacuum).
    pub(crate) fn churned(&self, n: u64) {
        self.churn.fetch_add(n, Ordering::Relaxed);
    }
}

/// A connection borrowed from the pool; returned on drop if still open.
pub(crate) struct Pooled {
    conn: Option<Conn>,
    pool: Arc<Pool>,
    _permit: tokio::sync::OwnedSemaphorePermit,
}

impl std::ops::Deref for Pooled {
    type Target = Conn;
    fn deref(&self) -> &Conn {
        self.conn.as_ref().expect("pooled connection")
    }
}

impl std::ops::DerefMut for Pooled {
    fn deref_mut(&mut self) -> &mut Conn {
        self.conn.as_mut().expect("pooled connection")
    }
}

impl Drop for Pooled {
    fn drop(&mut self) {
        if let Some(c) = self.conn.take().filter(|c| !c.client.is_closed()) {
            self.pool.idle.lock().expect("pool lock").push(c);
        }
    }
}

/// Creates or upgrades the schema. An advisory lock serialises nodes that
/// start at the same moment.
async fn migrate(conn: &mut Conn) -> Result<()> {
    let tx = conn.client.transaction().await.map_err(db)?;
    tx.batch_execute(
        "SELECT pg_advisory_xact_lock(7340011); CREATE TABLE IF NOT EXISTS countersign_schema (version BIGINT NOT NULL)",
    )
    .await
    .map_err(db)?;
    let v: i64 = tx
        .query_opt("SELECT version FROM countersign_schema", &[])
        .await
        .map_err(db)?
        .map_or(0, |r| r.get(0));
    if v > SCHEMA_VERSION {
        return Err(Error::Backend(format!(
            "database schema version {v} is newer than this countersign ({SCHEMA_VERSION}); upgrade countersign"
        )));
    }
    if v < 1 {
        tx.batch_execute(include_str!("schema.sql"))
            .await
            .map_err(db)?;
        tx.execute("INSERT INTO countersign_schema (version) VALUES (1)", &[])
            .await
            .map_err(db)?;
    }
    if v < 2 {
        tx.batch_execute(include_str!("reviews.sql"))
            .await
            .map_err(db)?;
        tx.execute("DELETE FROM countersign_schema", &[])
            .await
            .map_err(db)?;
        tx.execute("INSERT INTO countersign_schema (version) VALUES (2)", &[])
            .await
            .map_err(db)?;
    }
    // Version 3 (users, sessions) is idempotent: it also runs when a
    // database reached 4 before this module existed.
    let has_users = tx
        .query_one("SELECT to_regclass('users') IS NOT NULL", &[])
        .await
        .map_err(db)?
        .get::<_, bool>(0);
    if v < 3 || !has_users {
        tx.batch_execute(users::SCHEMA).await.map_err(db)?;
        if v < 3 {
            tx.execute("DELETE FROM countersign_schema", &[])
                .await
                .map_err(db)?;
            tx.execute("INSERT INTO countersign_schema (version) VALUES (3)", &[])
                .await
                .map_err(db)?;
        }
    }
    if v < 4 {
        tx.batch_execute(include_str!("integrations.sql"))
            .await
            .map_err(db)?;
        tx.execute("DELETE FROM countersign_schema", &[])
            .await
            .map_err(db)?;
        tx.execute("INSERT INTO countersign_schema (version) VALUES (4)", &[])
            .await
            .map_err(db)?;
    }
    if v < 5 {
        tx.batch_execute(include_str!("identity.sql"))
            .await
            .map_err(db)?;
        tx.execute("DELETE FROM countersign_schema", &[])
            .await
            .map_err(db)?;
        tx.execute("INSERT INTO countersign_schema (version) VALUES (5)", &[])
            .await
            .map_err(db)?;
    }
    if v < 6 {
        tx.batch_execute(include_str!("replay.sql"))
            .await
            .map_err(db)?;
        tx.execute("DELETE FROM countersign_schema", &[])
            .await
            .map_err(db)?;
        tx.execute("INSERT INTO countersign_schema (version) VALUES (6)", &[])
            .await
            .map_err(db)?;
    }
    if v < 7 {
        tx.batch_execute(include_str!("export.sql"))
            .await
            .map_err(db)?;
        tx.execute("DELETE FROM countersign_schema", &[])
            .await
            .map_err(db)?;
        tx.execute("INSERT INTO countersign_schema (version) VALUES (7)", &[])
            .await
            .map_err(db)?;
    }
    if v < 8 {
        tx.batch_execute(include_str!("desk.sql"))
            .await
            .map_err(db)?;
        tx.execute("DELETE FROM countersign_schema", &[])
            .await
            .map_err(db)?;
        tx.execute("INSERT INTO countersign_schema (version) VALUES (8)", &[])
            .await
            .map_err(db)?;
    }
    if v < 9 {
        tx.batch_execute(include_str!("prune.sql"))
            .await
            .map_err(db)?;
        tx.execute("DELETE FROM countersign_schema", &[])
            .await
            .map_err(db)?;
        tx.execute("INSERT INTO countersign_schema (version) VALUES (9)", &[])
            .await
            .map_err(db)?;
    }
    if v < 10 {
        tx.batch_execute(include_str!("search.sql"))
            .await
            .map_err(db)?;
        tx.execute("DELETE FROM countersign_schema", &[])
            .await
            .map_err(db)?;
        tx.execute("INSERT INTO countersign_schema (version) VALUES (10)", &[])
            .await
            .map_err(db)?;
    }
    tx.commit().await.map_err(db)?;
    Ok(())
}

/// Milliseconds since the Unix epoch.
pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}
