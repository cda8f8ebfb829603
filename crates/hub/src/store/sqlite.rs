//! Durable history (`--data-dir DIR`): every acknowledged message is in an
//! SQLite database in WAL mode before the publisher hears `ok`, and is still
//! there after a restart, even after `kill -9`.
//!
//! # Why SQLite (rusqlite, bundled) and not redb
//!
//! Both are embedded, transactional and crash-safe. SQLite won on three
//! counts: its WAL mode lets the background pruning and any number of
//! history readers (on their own connections) run beside the single writer
//! without blocking it; the file can be inspected and repaired with the
//! `sqlite3` shell an operator already has; and a full disk, a corrupt file
//! or a foreign file come back as distinct error codes (`SQLITE_FULL`,
//! `SQLITE_CORRUPT`, `SQLITE_NOTADB`) that map onto clear messages. redb
//! would have been as fast for this access pattern, but its file format is
//! younger and it offers no tooling outside Rust.
//!
//! # Layout on disk
//!
//! The directory is `0700` and every file in it `0600`, whatever the
//! umask ([`DIR_MODE`], [`FILE_MODE`]): history is every message
//! published. Files found open to other users are tightened at start, with
//! a warning in the log. So is a directory open to others that holds only
//! coop's files (made by an older coop); a shared one (sticky,
//! world-writable, or holding other files, like `/tmp` or a home
//! directory) is refused at start with the reason, rather than changed
//! under its other users.
//!
//! `DIR/coop.lock` (an exclusive `flock`-style lock held for the life of
//! the process: a second `coop serve` on the same directory fails at start)
//! and `DIR/hub.db` (plus SQLite's `-wal` and `-shm`). Tables: `messages`
//! keyed by `(topic, id)` in one `WITHOUT ROWID` b-tree (appends go to the
//! right edge of their topic's range, count and age retention delete from
//! its left edge, reads are one range scan; no second index to update, so
//! a commit writes few pages), `topics` (per topic: last id and
//! `dropped_through`), `meta` (the last id when topics are forgotten, and
//! their `dropped_through`, so ids are never reused even when retention
//! has emptied everything).
//!
//! # Ids
//!
//! Like the memory store, an id is the publish time in Unix microseconds,
//! bumped to `last + 1` when two would collide: `id = max(last + 1, now_us)`.
//! They continue from the largest id on disk after a restart (never reused,
//! even after `kill -9`: an id is only handed out inside a transaction
//! that also records it as its topic's `last_id`), and they stay ordered against
//! time, which makes age retention a range delete on each topic's key
//! (`id < cutoff_us`): an id is never smaller than its publish time, so
//! nothing younger than the cutoff is ever removed.
//!
//! # Group commit
//!
//! One writer thread owns the only writing connection. Appends reach it
//! through a bounded queue ([`WRITE_QUEUE`]; a full queue makes publishers
//! wait, which is the back-pressure). It takes everything queued (up to
//! [`MAX_BATCH`]), writes it in one transaction, commits, then, still on
//! the writer thread and therefore in id order, one batch at a time, hands
//! the batch to the broker, and only then resolves each append. Under load
//! a commit covers as many publishes as are waiting, so the cost of a commit
//! is shared; with a single publisher there is no waiting for company.
//!
//! # `synchronous = NORMAL` (the default) or `FULL` (`fsync: true`)
//!
//! In WAL mode, `NORMAL` writes each commit to the WAL file (an ordinary
//! `write`, so it is in the kernel once `COMMIT` returns) and fsyncs only at
//! checkpoints. That survives the death of the process (`kill -9`, a panic,
//! the OOM killer): the kernel still writes the pages out. It does not
//! survive a power cut or a kernel crash, which may lose the last commits
//! (never corrupt the file). `FULL` fsyncs the WAL at every commit, which
//! survives power loss. Measured on this machine, an fsync costs about 6 ms,
//! so with 64 concurrent publishers `FULL` tops out near 64 / 6 ms ≈ 11,000
//! publishes/s, below the 50,000/s target; `NORMAL` is the default and
//! `FULL` an option for deployments that need power-loss durability.
//!
//! # Retention and size
//!
//! Count retention runs inside each commit (the oldest messages of every
//! topic over `max_count` are deleted in the same transaction, so a reader
//! never sees more than `max_count`). Age retention runs when the hub calls
//! [`Store::prune`] (every second), also on the writer thread. Deleted pages
//! go to SQLite's freelist and are reused by the next inserts, so under a
//! steady stream the file stops growing; after a large prune, incremental
//! vacuum (`auto_vacuum = INCREMENTAL`) gives free pages back to the
//! filesystem. The WAL is checkpointed automatically and capped by
//! `journal_size_limit`.
//!
//! # Errors
//!
//! At start ([`DataDir::open`]): a path that is not a directory or cannot be
//! created, a directory locked by another process, a database that is not
//! SQLite or fails `PRAGMA quick_check`, or was written by a newer schema:
//! each is a [`DataDirError`] naming the path. While running: a failed
//! commit (disk full, I/O error) fails every append of its batch with
//! [`StoreError::Unavailable`] (the hub answers `503` with the reason); none
//! of them reached the broker, and [`Store::health`] reports the error until
//! a commit succeeds again.

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use futures::future::BoxFuture;
use rusqlite::{params, Connection, ErrorCode, OpenFlags, OptionalExtension, TransactionBehavior};
use tokio::sync::{mpsc, oneshot};

use super::{History, Retention, Store, StoreError, TopicStats};
use crate::broker::Broker;
use crate::lock;
use crate::message::{now_ms, now_us, Message, MessageId, TopicName};

/// Appends waiting for the writer. When full, publishers wait for room
/// (back-pressure); memory stays bounded by this many waiting messages.
pub const WRITE_QUEUE: usize = 8192;

/// Most appends written in one transaction. Bounds the latency of the
/// publishes at the end of a batch and the size of the broker's batch.
pub const MAX_BATCH: usize = 1024;

/// Read connections kept open between history reads (more may be opened
/// for a burst; extra ones are closed when returned).
const READ_POOL: usize = 4;

/// Schema version in `PRAGMA user_version`.
const SCHEMA_VERSION: i64 = 1;

/// WAL size kept after a checkpoint (bytes); bounds the `-wal` file.
const WAL_LIMIT: i64 = 16 * 1024 * 1024;

/// WAL pages between automatic checkpoints (16 MB of 4 kB pages): fewer
/// checkpoints (each one fsyncs) and pages rewritten by consecutive commits
/// copied once.
const WAL_CHECKPOINT_PAGES: i64 = 4096;

/// File name of the lock and of the database inside the data directory.
const LOCK_FILE: &str = "coop.lock";
const DB_FILE: &str = "hub.db";

/// SQLite's write-ahead log and shared-memory index beside the database.
const WAL_FILE: &str = "hub.db-wal";
const SHM_FILE: &str = "hub.db-shm";

/// Every file coop keeps in a data directory (SQLite's rollback journal
/// included, though WAL mode does not use it).
const OWN_FILES: [&str; 5] = [LOCK_FILE, DB_FILE, WAL_FILE, SHM_FILE, "hub.db-journal"];

/// Mode of the data directory: the history is every message published,
/// for the user coop runs as only, whatever the umask.
pub const DIR_MODE: u32 = 0o700;
/// Mode of every file in it (lock, database, WAL, shared memory).
pub const FILE_MODE: u32 = 0o600;

/// Creates `dir` (and missing parents) with [`DIR_MODE`]. An existing
/// directory that group or others may enter is tightened to [`DIR_MODE`]
/// (with a warning: its contents may have been read) only when it is
/// coop's own: not sticky or world-writable, and holding nothing but
/// coop's files (say, made by an older coop). Anything else is refused
/// with a reason: changing the mode of a shared directory (`/tmp`, a home
/// directory) would break its other users.
fn secure_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(DIR_MODE)
        .create(dir)?;
    let meta = std::fs::metadata(dir)?;
    if !meta.is_dir() {
        return Err(std::io::Error::other("not a directory"));
    }
    let mode = meta.permissions().mode() & 0o7777;
    if mode & 0o077 == 0 {
        return Ok(());
    }
    let refuse = |why: String| {
        Err(std::io::Error::other(format!(
            "it is open to other users (mode {mode:o}) and {why}: \
             use a directory of its own, or chmod 700 it"
        )))
    };
    if mode & 0o1002 != 0 {
        return refuse("shared (sticky or world-writable)".into());
    }
    for entry in std::fs::read_dir(dir)? {
        let name = entry?.file_name();
        if !OWN_FILES.iter().any(|own| name == *own) {
            return refuse(format!("holds files that are not coop's ({name:?})"));
        }
    }
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(DIR_MODE))?;
    tracing::warn!(
        dir = %dir.display(),
        was = format!("{mode:o}"),
        now = format!("{DIR_MODE:o}"),
        "data directory was open to other users; tightened"
    );
    Ok(())
}

/// Tightens `path`, if it exists, to [`FILE_MODE`] when group or others
/// had any access (a warning: it may have been read).
fn secure_file(path: &Path) -> std::io::Result<()> {
    let meta = match std::fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    let mode = meta.permissions().mode() & 0o777;
    if meta.is_file() && mode & 0o077 != 0 {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(FILE_MODE))?;
        tracing::warn!(
            file = %path.display(),
            was = format!("{mode:o}"),
            now = format!("{FILE_MODE:o}"),
            "data file was open to other users; tightened"
        );
    }
    Ok(())
}

/// Options of the durable store.
#[derive(Debug, Clone, Copy, Default)]
pub struct SqliteOptions {
    /// `synchronous = FULL`: fsync every commit (survives power loss, about
    /// 6 ms per commit here). Default `NORMAL`: survives process death.
    pub fsync: bool,
    /// Cap on the database size in bytes (SQLite's `max_page_count`); past
    /// it commits fail with `SQLITE_FULL`, exactly as on a full disk.
    pub max_bytes: Option<u64>,
}

/// Why a data directory cannot be used. Each names the path involved.
#[derive(Debug, thiserror::Error)]
pub enum DataDirError {
    // The cause is in the message and is not also the error's `source`,
    // so `{:#}` (anyhow's chain) prints it once.
    #[error("cannot use data directory {path}: {cause}")]
    Dir {
        path: PathBuf,
        cause: std::io::Error,
    },
    #[error(
        "data directory {path} is in use by another process (lock {path}/{LOCK_FILE} is held)"
    )]
    Locked { path: PathBuf },
    #[error("database {path} is corrupt or not a coop database: {reason}")]
    Corrupt { path: PathBuf, reason: String },
    #[error("cannot open database {path}: {cause}")]
    Sqlite {
        path: PathBuf,
        cause: rusqlite::Error,
    },
}

/// An opened, locked, checked data directory, before its writer starts.
/// Two steps, so that start-up errors surface before the hub is built, and
/// the store is then built against the hub's broker ([`DataDir::into_store`]).
pub struct DataDir {
    db_path: PathBuf,
    lock: File,
    conn: Connection,
    mirror: Mirror,
    last_id: u64,
}

impl DataDir {
    /// Creates `dir` if needed, takes its lock, opens and checks the
    /// database, and loads the per-topic summary.
    pub fn open(dir: &Path, options: SqliteOptions) -> Result<DataDir, DataDirError> {
        let dir_err = |cause| DataDirError::Dir {
            path: dir.to_path_buf(),
            cause,
        };
        secure_dir(dir).map_err(dir_err)?;
        let lock = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(FILE_MODE)
            .open(dir.join(LOCK_FILE))
            .map_err(dir_err)?;
        // std's advisory whole-file lock (flock on Unix), stable since Rust
        // 1.89 (the workspace's rust-version).
        match lock.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(DataDirError::Locked {
                    path: dir.to_path_buf(),
                })
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(dir_err(e)),
        }
        let db_path = dir.join(DB_FILE);
        // Files left by an older coop (0644) are tightened before use; the
        // database is created here, 0600, rather than by SQLite (0644 less
        // the umask), and SQLite gives its `-wal` and `-shm` files the
        // database's mode. They are checked again once it has made them.
        for name in [LOCK_FILE, DB_FILE, WAL_FILE, SHM_FILE] {
            secure_file(&dir.join(name)).map_err(dir_err)?;
        }
        std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(FILE_MODE)
            .open(&db_path)
            .map_err(dir_err)?;
        let conn = open_writer(&db_path, options)?;
        for name in [WAL_FILE, SHM_FILE] {
            secure_file(&dir.join(name)).map_err(dir_err)?;
        }
        let (mirror, last_id) = load(&conn).map_err(|e| classify(&db_path, e))?;
        Ok(DataDir {
            db_path,
            lock,
            conn,
            mirror,
            last_id,
        })
    }

    /// The largest id stored (or ever assigned), if any.
    pub fn last_id(&self) -> Option<MessageId> {
        (self.last_id > 0).then_some(MessageId(self.last_id))
    }

    /// Starts the writer thread and returns the store. Committed batches go
    /// to `broker`, in id order, from the writer thread.
    pub fn into_store(
        self,
        retention: Retention,
        max_topics: usize,
        broker: Arc<dyn Broker>,
    ) -> SqliteStore {
        let shared = Arc::new(Shared {
            db_path: self.db_path.clone(),
            mirror: Mutex::new(self.mirror),
            readers: Mutex::new(Vec::new()),
            failure: Mutex::new(None),
            retention,
        });
        let (tx, rx) = mpsc::channel(WRITE_QUEUE);
        let writer = Writer {
            conn: self.conn,
            lock: self.lock,
            shared: shared.clone(),
            broker,
            retention,
            max_topics,
            last_id: self.last_id,
            last_time_ms: 0,
        };
        std::thread::Builder::new()
            .name("coop-sqlite-writer".into())
            .spawn(move || writer.run(rx))
            .expect("spawning a thread only fails when the OS is out of threads");
        SqliteStore { tx, shared }
    }
}

/// Opens the writing connection with the pragmas described in the module
/// docs, checks integrity and creates the schema.
fn open_writer(db_path: &Path, options: SqliteOptions) -> Result<Connection, DataDirError> {
    let conn = Connection::open(db_path).map_err(|e| classify(db_path, e))?;
    let setup = || -> rusqlite::Result<()> {
        // auto_vacuum only takes effect before the first table is created.
        conn.pragma_update(None, "auto_vacuum", "INCREMENTAL")?;
        let mode: String =
            conn.pragma_update_and_check(None, "journal_mode", "WAL", |r| r.get(0))?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(rusqlite::Error::InvalidParameterName(format!(
                "journal_mode is {mode}, WAL unavailable"
            )));
        }
        conn.pragma_update(
            None,
            "synchronous",
            if options.fsync { "FULL" } else { "NORMAL" },
        )?;
        conn.pragma_update(None, "journal_size_limit", WAL_LIMIT)?;
        conn.pragma_update(None, "wal_autocheckpoint", WAL_CHECKPOINT_PAGES)?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        if let Some(max) = options.max_bytes {
            let page: i64 = conn.pragma_query_value(None, "page_size", |r| r.get(0))?;
            conn.pragma_update(
                None,
                "max_page_count",
                (i64::try_from(max).unwrap_or(i64::MAX) / page).max(8),
            )?;
        }
        Ok(())
    };
    setup().map_err(|e| classify(db_path, e))?;
    let check: String = conn
        .query_row("PRAGMA quick_check", [], |r| r.get(0))
        .map_err(|e| classify(db_path, e))?;
    if check != "ok" {
        return Err(DataDirError::Corrupt {
            path: db_path.to_path_buf(),
            reason: format!("integrity check failed: {check}"),
        });
    }
    let version: i64 = conn
        .pragma_query_value(None, "user_version", |r| r.get(0))
        .map_err(|e| classify(db_path, e))?;
    if version > SCHEMA_VERSION {
        return Err(DataDirError::Corrupt {
            path: db_path.to_path_buf(),
            reason: format!(
                "schema version {version} was written by a newer coop (this one reads {SCHEMA_VERSION})"
            ),
        });
    }
    conn.execute_batch(
        "BEGIN;
         CREATE TABLE IF NOT EXISTS messages (
             topic TEXT NOT NULL,
             id INTEGER NOT NULL,
             time_ms INTEGER NOT NULL,
             body BLOB NOT NULL,
             PRIMARY KEY (topic, id)) WITHOUT ROWID;
         CREATE TABLE IF NOT EXISTS topics (
             name TEXT PRIMARY KEY,
             last_id INTEGER NOT NULL,
             dropped_through INTEGER);
         CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
         PRAGMA user_version = 1;
         COMMIT;",
    )
    .map_err(|e| classify(db_path, e))?;
    Ok(conn)
}

/// Turns an SQLite error at start into the matching [`DataDirError`].
fn classify(db_path: &Path, e: rusqlite::Error) -> DataDirError {
    match e.sqlite_error_code() {
        Some(ErrorCode::NotADatabase | ErrorCode::DatabaseCorrupt) => DataDirError::Corrupt {
            path: db_path.to_path_buf(),
            reason: e.to_string(),
        },
        _ => DataDirError::Sqlite {
            path: db_path.to_path_buf(),
            cause: e,
        },
    }
}

/// Reads the per-topic summary and the last id ever assigned.
fn load(conn: &Connection) -> rusqlite::Result<(Mirror, u64)> {
    let mut mirror = Mirror::default();
    let mut stmt = conn.prepare("SELECT name, last_id, dropped_through FROM topics")?;
    let rows = stmt.query_map([], |r| {
        Ok((
            r.get::<_, String>(0)?,
            r.get::<_, i64>(1)?,
            r.get::<_, Option<i64>>(2)?,
        ))
    })?;
    for row in rows {
        let (name, last, dropped) = row?;
        let Ok(name) = TopicName::new(&name) else {
            continue;
        };
        mirror.topics.insert(
            name,
            TopicState {
                len: 0,
                oldest: None,
                last_id: Some(MessageId(last as u64)),
                dropped_through: dropped.map(|d| MessageId(d as u64)),
            },
        );
    }
    let mut stmt =
        conn.prepare("SELECT topic, count(*), min(id), max(id) FROM messages GROUP BY topic")?;
    let rows = stmt.query_map([], |r| {
        Ok((
            r.get::<_, String>(0)?,
            r.get::<_, i64>(1)?,
            r.get::<_, i64>(2)?,
            r.get::<_, i64>(3)?,
        ))
    })?;
    for row in rows {
        let (name, len, min, max) = row?;
        let Ok(name) = TopicName::new(&name) else {
            continue;
        };
        let st = mirror.topics.entry(name).or_default();
        st.len = len as usize;
        st.oldest = Some(MessageId(min as u64));
        st.last_id = st.last_id.max(Some(MessageId(max as u64)));
    }
    let meta = |key: &str| -> rusqlite::Result<Option<i64>> {
        conn.query_row("SELECT value FROM meta WHERE key = ?1", [key], |r| r.get(0))
            .optional()
    };
    mirror.forgotten_through = meta("forgotten_through")?.map(|v| MessageId(v as u64));
    let last = [
        meta("last_id")?.map(|v| v as u64),
        mirror
            .topics
            .values()
            .filter_map(|t| t.last_id)
            .map(|i| i.0)
            .max(),
    ]
    .into_iter()
    .flatten()
    .max()
    .unwrap_or(0);
    mirror.last_id = (last > 0).then_some(MessageId(last));
    Ok((mirror, last))
}

/// The per-topic summary kept in memory (for stats, topic listings and the
/// topic limit), updated by the writer after each commit.
#[derive(Default)]
struct Mirror {
    topics: HashMap<TopicName, TopicState>,
    forgotten_through: Option<MessageId>,
    last_id: Option<MessageId>,
}

#[derive(Default, Clone, Copy)]
struct TopicState {
    len: usize,
    oldest: Option<MessageId>,
    last_id: Option<MessageId>,
    dropped_through: Option<MessageId>,
}

impl TopicState {
    fn stats(&self) -> TopicStats {
        TopicStats {
            last_id: self.last_id,
            oldest_id: self.oldest,
            len: self.len,
        }
    }
}

/// State shared by the store handle and the writer thread.
struct Shared {
    db_path: PathBuf,
    /// std mutex: held for map lookups and updates only, never across I/O.
    mirror: Mutex<Mirror>,
    /// Idle read-only connections.
    readers: Mutex<Vec<Connection>>,
    /// The last commit's failure, if it failed (for `/healthz`).
    failure: Mutex<Option<String>>,
    retention: Retention,
}

/// Where an append's outcome goes.
type Reply = oneshot::Sender<Result<Arc<Message>, StoreError>>;

enum Cmd {
    Append {
        topic: TopicName,
        body: Bytes,
        reply: Reply,
    },
    Prune {
        reply: oneshot::Sender<Result<usize, StoreError>>,
    },
    Close {
        reply: oneshot::Sender<()>,
    },
}

/// The SQLite store: a cheap handle on the writer's queue and the shared
/// state. See the module docs.
pub struct SqliteStore {
    tx: mpsc::Sender<Cmd>,
    shared: Arc<Shared>,
}

impl SqliteStore {
    /// Runs `f` on a read connection, on the blocking pool.
    async fn with_reader<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Connection) -> rusqlite::Result<T> + Send + 'static,
    ) -> Result<T, StoreError> {
        let shared = self.shared.clone();
        tokio::task::spawn_blocking(move || {
            let conn = lock(&shared.readers).pop();
            let mut conn = match conn {
                Some(c) => c,
                None => Connection::open_with_flags(
                    &shared.db_path,
                    OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
                )
                .map_err(unavailable)?,
            };
            let out = f(&mut conn).map_err(unavailable);
            let mut idle = lock(&shared.readers);
            if idle.len() < READ_POOL {
                idle.push(conn);
            }
            out
        })
        .await
        .map_err(|e| StoreError::Unavailable(format!("history read failed: {e}")))?
    }
}

fn unavailable(e: rusqlite::Error) -> StoreError {
    match e.sqlite_error_code() {
        Some(ErrorCode::DiskFull) => StoreError::Unavailable(format!("disk full: {e}")),
        _ => StoreError::Unavailable(format!("database error: {e}")),
    }
}

impl Store for SqliteStore {
    fn append(
        &self,
        topic: TopicName,
        body: Bytes,
    ) -> BoxFuture<'_, Result<Arc<Message>, StoreError>> {
        Box::pin(async move {
            let (reply, rx) = oneshot::channel();
            self.tx
                .send(Cmd::Append { topic, body, reply })
                .await
                .map_err(|_| StoreError::Closed)?;
            rx.await.map_err(|_| StoreError::Closed)?
        })
    }

    fn read_page(
        &self,
        topic: &TopicName,
        after: Option<MessageId>,
        limit: usize,
    ) -> BoxFuture<'_, Result<History, StoreError>> {
        let topic = topic.clone();
        // An id past i64::MAX (the hub refuses those before they get
        // here) must mean "after everything", never wrap to a negative
        // number and so "everything".
        let after = i64::try_from(after.map_or(0, |a| a.0)).unwrap_or(i64::MAX);
        // SQLite's LIMIT is an i64; a negative one means no limit.
        let limit = i64::try_from(limit).unwrap_or(-1);
        Box::pin(self.with_reader(move |conn| {
            // One read transaction: the messages and `dropped_through` come
            // from the same snapshot, so a concurrent prune cannot make a
            // complete answer look like it has a gap.
            let tx = conn.transaction()?;
            let mut messages = Vec::new();
            {
                let mut stmt = tx.prepare_cached(
                    "SELECT id, time_ms, body FROM messages
                     WHERE topic = ?1 AND id > ?2 ORDER BY id LIMIT ?3",
                )?;
                let mut rows = stmt.query(params![topic.as_str(), after, limit])?;
                while let Some(r) = rows.next()? {
                    let body: Vec<u8> = r.get(2)?;
                    messages.push(Arc::new(Message::new(
                        MessageId(r.get::<_, i64>(0)? as u64),
                        topic.clone(),
                        r.get::<_, i64>(1)? as u64,
                        Bytes::from(body),
                    )));
                }
            }
            let dropped: Option<i64> = tx
                .query_row(
                    "SELECT dropped_through FROM topics WHERE name = ?1",
                    [topic.as_str()],
                    |r| r.get(0),
                )
                .optional()?
                .flatten();
            let forgotten: Option<i64> = tx
                .query_row(
                    "SELECT value FROM meta WHERE key = 'forgotten_through'",
                    [],
                    |r| r.get(0),
                )
                .optional()?;
            tx.finish()?;
            Ok(History {
                messages,
                dropped_through: dropped.max(forgotten).map(|d| MessageId(d as u64)),
            })
        }))
    }

    fn stats(&self, topic: &TopicName) -> BoxFuture<'_, Result<Option<TopicStats>, StoreError>> {
        let stats = lock(&self.shared.mirror)
            .topics
            .get(topic)
            .filter(|t| t.len > 0 || t.last_id.is_some())
            .map(TopicState::stats);
        Box::pin(futures::future::ready(Ok(stats)))
    }

    fn topics(&self) -> BoxFuture<'_, Result<Vec<(TopicName, TopicStats)>, StoreError>> {
        let mut all: Vec<_> = lock(&self.shared.mirror)
            .topics
            .iter()
            .map(|(n, t)| (n.clone(), t.stats()))
            .collect();
        all.sort_by(|a, b| a.0.cmp(&b.0));
        Box::pin(futures::future::ready(Ok(all)))
    }

    fn prune(&self) -> BoxFuture<'_, Result<usize, StoreError>> {
        Box::pin(async move {
            if self.shared.retention.max_age.is_none() {
                return Ok(0);
            }
            let (reply, rx) = oneshot::channel();
            self.tx
                .send(Cmd::Prune { reply })
                .await
                .map_err(|_| StoreError::Closed)?;
            rx.await.map_err(|_| StoreError::Closed)?
        })
    }

    fn last_id(&self) -> Option<MessageId> {
        lock(&self.shared.mirror).last_id
    }

    fn close(&self) -> BoxFuture<'_, Result<(), StoreError>> {
        Box::pin(async move {
            let (reply, rx) = oneshot::channel();
            if self.tx.send(Cmd::Close { reply }).await.is_ok() {
                let _ = rx.await;
            }
            Ok(())
        })
    }

    fn health(&self) -> Result<(), String> {
        match &*lock(&self.shared.failure) {
            None => Ok(()),
            Some(reason) => Err(format!("durable store failing: {reason}")),
        }
    }
}

/// The writer thread's state: the only writing connection and the lock.
struct Writer {
    conn: Connection,
    /// Held (locked) until the writer stops; dropping it releases the lock.
    lock: File,
    shared: Arc<Shared>,
    broker: Arc<dyn Broker>,
    retention: Retention,
    max_topics: usize,
    /// Last id assigned (0: none yet).
    last_id: u64,
    /// Time of the last message; times never go backwards within the store.
    last_time_ms: u64,
}

/// What an age prune removed: the count, each touched topic's new state
/// (`None`: forgotten), and the new `forgotten_through`.
type Pruned = (
    usize,
    Vec<(TopicName, Option<TopicState>)>,
    Option<MessageId>,
);

/// One append of a batch, with its id assigned.
struct Pending {
    msg: Arc<Message>,
    reply: Reply,
}

impl Writer {
    fn run(mut self, mut rx: mpsc::Receiver<Cmd>) {
        let mut cmds = Vec::with_capacity(MAX_BATCH);
        while let Some(first) = rx.blocking_recv() {
            cmds.push(first);
            // Publishers just answered are being woken on the runtime's
            // threads; one yield lets some of them queue their next append
            // and join this commit (larger batches, same latency alone).
            std::thread::yield_now();
            while cmds.len() < MAX_BATCH {
                match rx.try_recv() {
                    Ok(cmd) => cmds.push(cmd),
                    Err(_) => break,
                }
            }
            let mut appends = Vec::with_capacity(cmds.len());
            let mut others = Vec::new();
            for cmd in cmds.drain(..) {
                match cmd {
                    Cmd::Append { topic, body, reply } => appends.push((topic, body, reply)),
                    other => others.push(other),
                }
            }
            if !appends.is_empty() {
                // Messages per commit: how well group commit is grouping.
                metrics::histogram!("hub_durable_commit_messages").record(appends.len() as f64);
                self.commit(appends);
            }
            for cmd in others {
                match cmd {
                    Cmd::Prune { reply } => {
                        let _ = reply.send(self.prune());
                    }
                    Cmd::Close { reply } => {
                        // Stop taking appends: queued ones fail with Closed
                        // when the receiver drops with them.
                        drop(rx);
                        let Writer { conn, lock, .. } = self;
                        drop(conn);
                        drop(lock);
                        let _ = reply.send(());
                        return;
                    }
                    Cmd::Append { .. } => unreachable!("appends were separated above"),
                }
            }
        }
    }

    /// Writes a batch in one transaction; on success hands it to the broker
    /// and resolves the appends, on failure fails all of them.
    fn commit(&mut self, appends: Vec<(TopicName, Bytes, Reply)>) {
        let mut batch: Vec<Pending> = Vec::with_capacity(appends.len());
        {
            let mirror = lock(&self.shared.mirror);
            // Topics this batch creates, for the `max_topics` limit.
            let mut new_topics: HashSet<TopicName> = HashSet::new();
            for (topic, body, reply) in appends {
                if !mirror.topics.contains_key(&topic) && !new_topics.contains(&topic) {
                    if mirror.topics.len() + new_topics.len() >= self.max_topics {
                        let _ = reply.send(Err(StoreError::TooManyTopics(self.max_topics)));
                        continue;
                    }
                    new_topics.insert(topic.clone());
                }
                let id = (self.last_id + 1).max(now_us());
                self.last_id = id;
                self.last_time_ms = self.last_time_ms.max(now_ms());
                let msg = Arc::new(Message::new(MessageId(id), topic, self.last_time_ms, body));
                batch.push(Pending { msg, reply });
            }
        }
        if batch.is_empty() {
            return;
        }
        match self.write(&batch) {
            Ok(changes) => {
                {
                    let mut mirror = lock(&self.shared.mirror);
                    for (topic, st) in changes {
                        mirror.topics.insert(topic, st);
                    }
                    mirror.last_id = Some(MessageId(self.last_id));
                }
                *lock(&self.shared.failure) = None;
                let msgs: Vec<Arc<Message>> = batch.iter().map(|p| p.msg.clone()).collect();
                // On the writer thread, after the commit, before any reply:
                // the broker sees batches in id order, one at a time.
                self.broker.committed(&msgs);
                for p in batch {
                    let _ = p.reply.send(Ok(p.msg));
                }
            }
            Err(e) => {
                let err = unavailable(e);
                tracing::warn!(%err, messages = batch.len(), "durable commit failed");
                *lock(&self.shared.failure) = Some(err.to_string());
                for p in batch {
                    let _ = p.reply.send(Err(StoreError::Unavailable(err.to_string())));
                }
            }
        }
    }

    /// The transaction of one batch. Returns the new state of each topic it
    /// touched (applied to the mirror only once committed).
    fn write(&mut self, batch: &[Pending]) -> rusqlite::Result<Vec<(TopicName, TopicState)>> {
        let max_count = self.retention.max_count;
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let mut touched: HashMap<TopicName, TopicState> = HashMap::new();
        {
            let mut insert = tx.prepare_cached(
                "INSERT INTO messages (id, topic, time_ms, body) VALUES (?1, ?2, ?3, ?4)",
            )?;
            let mirror = lock(&self.shared.mirror);
            for p in batch {
                let m = &p.msg;
                insert.execute(params![
                    m.id.0 as i64,
                    m.topic.as_str(),
                    m.time_ms as i64,
                    &m.body[..]
                ])?;
                let st = touched
                    .entry(m.topic.clone())
                    .or_insert_with(|| mirror.topics.get(&m.topic).copied().unwrap_or_default());
                st.len += 1;
                st.last_id = Some(m.id);
                st.oldest = st.oldest.or(Some(m.id));
            }
        }
        {
            let mut cut = tx.prepare_cached(
                "SELECT id FROM messages WHERE topic = ?1 ORDER BY id LIMIT 2 OFFSET ?2",
            )?;
            let mut delete =
                tx.prepare_cached("DELETE FROM messages WHERE topic = ?1 AND id <= ?2")?;
            let mut upsert = tx.prepare_cached(
                "INSERT INTO topics (name, last_id, dropped_through) VALUES (?1, ?2, ?3)
                 ON CONFLICT (name) DO UPDATE SET last_id = ?2, dropped_through = ?3",
            )?;
            for (topic, st) in touched.iter_mut() {
                if st.len > max_count {
                    let excess = st.len - max_count;
                    let ids: Vec<i64> = cut
                        .query_map(params![topic.as_str(), (excess - 1) as i64], |r| r.get(0))?
                        .collect::<rusqlite::Result<_>>()?;
                    if let Some(&through) = ids.first() {
                        delete.execute(params![topic.as_str(), through])?;
                        st.dropped_through = Some(MessageId(through as u64));
                        st.oldest = ids.get(1).map(|&i| MessageId(i as u64));
                        st.len = max_count;
                    }
                }
                upsert.execute(params![
                    topic.as_str(),
                    st.last_id.map(|i| i.0 as i64),
                    st.dropped_through.map(|i| i.0 as i64)
                ])?;
            }
        }
        tx.commit()?;
        Ok(touched.into_iter().collect())
    }

    /// Age retention: deletes every message older than `max_age` (by id,
    /// see "Ids"), records what each topic lost, forgets emptied topics.
    fn prune(&mut self) -> Result<usize, StoreError> {
        let Some(max_age) = self.retention.max_age else {
            return Ok(0);
        };
        let cutoff = now_us().saturating_sub(max_age.as_micros() as u64) as i64;
        {
            // Cheap check first: nothing to do unless some topic's oldest
            // message is older than the cutoff.
            let mirror = lock(&self.shared.mirror);
            if !mirror
                .topics
                .values()
                .any(|t| t.oldest.is_some_and(|o| (o.0 as i64) < cutoff))
            {
                return Ok(0);
            }
        }
        let (dropped, changes, forgotten) = self.prune_through(cutoff).map_err(unavailable)?;
        {
            let mut mirror = lock(&self.shared.mirror);
            for (topic, st) in changes {
                match st {
                    Some(st) => {
                        mirror.topics.insert(topic, st);
                    }
                    None => {
                        mirror.topics.remove(&topic);
                    }
                }
            }
            mirror.forgotten_through = forgotten;
        }
        self.vacuum_if_sparse();
        Ok(dropped)
    }

    /// The transaction of an age prune: deletes ids below `cutoff`.
    fn prune_through(&mut self, cutoff: i64) -> rusqlite::Result<Pruned> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        // Topics with something older than the cutoff (the mirror knows
        // each topic's oldest id): a range delete on each one's key.
        let expired: Vec<TopicName> = lock(&self.shared.mirror)
            .topics
            .iter()
            .filter(|(_, t)| t.oldest.is_some_and(|o| (o.0 as i64) < cutoff))
            .map(|(n, _)| n.clone())
            .collect();
        let mut lost: Vec<(String, i64, i64)> = Vec::new();
        let mut dropped = 0;
        for topic in expired {
            let (through, count): (Option<i64>, i64) = tx.query_row(
                "SELECT max(id), count(*) FROM messages WHERE topic = ?1 AND id < ?2",
                params![topic.as_str(), cutoff],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )?;
            let Some(through) = through else { continue };
            dropped += tx.execute(
                "DELETE FROM messages WHERE topic = ?1 AND id < ?2",
                params![topic.as_str(), cutoff],
            )?;
            lost.push((topic.to_string(), through, count));
        }
        let mut changes = Vec::new();
        let mut forgotten = lock(&self.shared.mirror).forgotten_through;
        for (name, through, count) in lost {
            let Ok(topic) = TopicName::new(&name) else {
                continue;
            };
            let mut st = lock(&self.shared.mirror)
                .topics
                .get(&topic)
                .copied()
                .unwrap_or_default();
            st.len = st.len.saturating_sub(count as usize);
            st.dropped_through = st.dropped_through.max(Some(MessageId(through as u64)));
            if st.len == 0 {
                forgotten = forgotten.max(st.dropped_through);
                tx.execute("DELETE FROM topics WHERE name = ?1", [&name])?;
                changes.push((topic, None));
            } else {
                st.oldest = tx
                    .query_row(
                        "SELECT min(id) FROM messages WHERE topic = ?1",
                        [&name],
                        |r| r.get::<_, Option<i64>>(0),
                    )?
                    .map(|i| MessageId(i as u64));
                tx.execute(
                    "UPDATE topics SET dropped_through = ?2 WHERE name = ?1",
                    params![&name, st.dropped_through.map(|i| i.0 as i64)],
                )?;
                changes.push((topic, Some(st)));
            }
        }
        // The last id is otherwise recorded by each topic's row; once a
        // row goes, this keeps ids from ever being reused.
        tx.execute(
            "INSERT INTO meta (key, value) VALUES ('last_id', ?1)
             ON CONFLICT (key) DO UPDATE SET value = ?1",
            [self.last_id as i64],
        )?;
        if let Some(f) = forgotten {
            tx.execute(
                "INSERT INTO meta (key, value) VALUES ('forgotten_through', ?1)
                 ON CONFLICT (key) DO UPDATE SET value = ?1",
                [f.0 as i64],
            )?;
        }
        tx.commit()?;
        Ok((dropped, changes, forgotten))
    }

    /// Gives free pages back to the filesystem when more than a quarter of
    /// the file is free (after a burst was pruned). Steady streams reuse
    /// free pages and never get here.
    fn vacuum_if_sparse(&mut self) {
        let count = |name: &str| -> i64 {
            self.conn
                .pragma_query_value(None, name, |r| r.get(0))
                .unwrap_or(0)
        };
        let (free, pages) = (count("freelist_count"), count("page_count"));
        if free > 256 && free * 4 > pages {
            if let Err(err) = self.conn.execute_batch("PRAGMA incremental_vacuum") {
                tracing::warn!(%err, "incremental vacuum failed");
            }
        }
    }
}

impl DataDir {
    /// The durable backend for a hub: this store and a local broker feeding
    /// `fanout`. Pass to [`Hub::with_backend`](crate::Hub::with_backend).
    pub fn backend(self, config: &crate::Config, fanout: crate::broker::Fanout) -> crate::Backend {
        let broker: Arc<dyn Broker> = Arc::new(crate::broker::local::LocalBroker::new(fanout));
        let store = Arc::new(self.into_store(config.retention, config.max_topics, broker.clone()));
        crate::Backend { store, broker }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::broker::local::LocalBroker;
    use crate::topic::Fanout;

    fn t(name: &str) -> TopicName {
        TopicName::new(name).unwrap()
    }

    fn open(dir: &Path, retention: Retention) -> SqliteStore {
        let broker = Arc::new(LocalBroker::new(Fanout::new(16)));
        DataDir::open(dir, SqliteOptions::default())
            .unwrap()
            .into_store(retention, 100, broker)
    }

    #[tokio::test]
    async fn concurrent_appends_get_distinct_increasing_ids_in_commit_order() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(open(dir.path(), Retention::default()));
        let fanout_check = (0..200)
            .map(|i| {
                let store = store.clone();
                tokio::spawn(async move { store.append(t("a"), i.to_string().into()).await })
            })
            .collect::<Vec<_>>();
        let mut ids = Vec::new();
        for h in fanout_check {
            ids.push(h.await.unwrap().unwrap().id);
        }
        ids.sort();
        ids.dedup();
        assert_eq!(ids.len(), 200);
        let h = store.read(&t("a"), None).await.unwrap();
        assert_eq!(h.messages.iter().map(|m| m.id).collect::<Vec<_>>(), ids);
    }

    /// Regression (issue 9, item 9): the directory was 0755 and its files
    /// 0644, whatever the data; and an old, open directory stayed open.
    #[tokio::test]
    async fn the_data_directory_is_private_even_when_it_was_not() {
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o7777;
        let parent = tempfile::tempdir().unwrap();
        let dir = parent.path().join("data");
        {
            let store = open(&dir, Retention::default());
            store.append(t("a"), "x".into()).await.unwrap();
            assert_eq!(mode(&dir), 0o700);
            for name in [LOCK_FILE, DB_FILE, WAL_FILE, SHM_FILE] {
                assert_eq!(mode(&dir.join(name)), 0o600, "{name}");
            }
            store.close().await.unwrap();
        }
        // Opened up by someone (or made by an older coop): tightened.
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::set_permissions(dir.join(DB_FILE), std::fs::Permissions::from_mode(0o644))
            .unwrap();
        let store = open(&dir, Retention::default());
        assert_eq!(mode(&dir), 0o700);
        assert_eq!(mode(&dir.join(DB_FILE)), 0o600);
        // A shared directory is refused, not changed under its other users.
        let shared = parent.path().join("shared");
        std::fs::create_dir(&shared).unwrap();
        std::fs::write(shared.join("notes.txt"), "mine").unwrap();
        std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o755)).unwrap();
        let Err(err) = DataDir::open(&shared, SqliteOptions::default()) else {
            panic!("a shared directory was used");
        };
        assert!(err.to_string().contains("not coop's"), "{err}");
        assert_eq!(mode(&shared), 0o755);
        std::fs::remove_file(shared.join("notes.txt")).unwrap();
        std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o1777)).unwrap();
        let Err(err) = DataDir::open(&shared, SqliteOptions::default()) else {
            panic!("a sticky, world-writable directory was used");
        };
        assert!(err.to_string().contains("shared"), "{err}");
        assert_eq!(mode(&shared), 0o1777);
        // Past i64::MAX reads nothing (it used to wrap and read everything).
        let h = store
            .read(&t("a"), Some(MessageId(u64::MAX)))
            .await
            .unwrap();
        assert!(h.messages.is_empty());
        assert_eq!(store.read(&t("a"), None).await.unwrap().messages.len(), 1);
    }
}
