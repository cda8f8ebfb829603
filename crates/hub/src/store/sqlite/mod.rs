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
use crate::message::{Message, MessageId, TopicName};

mod open;
mod reader;
mod writer;

pub use open::{DataDir, DataDirError, SqliteOptions};
pub use reader::SqliteStore;
use reader::*;
use writer::*;

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::broker::local::LocalBroker;
    use crate::topic::Rings;

    fn t(name: &str) -> TopicName {
        TopicName::new(name).unwrap()
    }

    fn open(dir: &Path, retention: Retention) -> SqliteStore {
        let broker = Arc::new(LocalBroker::new(Rings::new(16)));
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
