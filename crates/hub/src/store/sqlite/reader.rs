//! The store handle: history pages read on a small pool of read-only
//! connections, appends queued for the writer, health and retention.

use super::*;

/// The SQLite store: a cheap handle on the writer's queue and the shared
/// state. See the module docs.
pub struct SqliteStore {
    pub(super) tx: mpsc::Sender<Cmd>,
    pub(super) shared: Arc<Shared>,
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

pub(super) fn unavailable(e: rusqlite::Error) -> StoreError {
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
