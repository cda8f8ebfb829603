//! Opening a data directory: private modes, the lock, the schema, and loading
//! the id counter and each topic's state back into memory.

use super::*;

/// Creates `dir` (and missing parents) with [`DIR_MODE`]. An existing
/// directory that group or others may enter is tightened to [`DIR_MODE`]
/// (with a warning: its contents may have been read) only when it is
/// coop's own: not sticky or world-writable, and holding nothing but
/// coop's files (say, made by an older coop). Anything else is refused
/// with a reason: changing the mode of a shared directory (`/tmp`, a home
/// directory) would break its other users.
pub(super) fn secure_dir(dir: &Path) -> std::io::Result<()> {
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
pub(super) fn secure_file(path: &Path) -> std::io::Result<()> {
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
pub(super) fn open_writer(
    db_path: &Path,
    options: SqliteOptions,
) -> Result<Connection, DataDirError> {
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
pub(super) fn classify(db_path: &Path, e: rusqlite::Error) -> DataDirError {
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
pub(super) fn load(conn: &Connection) -> rusqlite::Result<(Mirror, u64)> {
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

impl DataDir {
    /// The durable backend for a hub: this store and a local broker feeding
    /// `rings`. Pass to [`Hub::with_backend`](crate::Hub::with_backend).
    pub fn backend(self, config: &crate::Config, rings: crate::broker::Rings) -> crate::Backend {
        let broker: Arc<dyn Broker> = Arc::new(crate::broker::local::LocalBroker::new(rings));
        let store = Arc::new(self.into_store(config.retention, config.max_topics, broker.clone()));
        crate::Backend { store, broker }
    }
}
