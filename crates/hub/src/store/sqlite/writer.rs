//! The writer thread: one connection, group commits of queued appends,
//! pruning, and the close at shutdown.

use super::*;

/// The writer thread's state: the only writing connection and the lock.
pub(super) struct Writer {
    pub(super) conn: Connection,
    /// Held (locked) until the writer stops; dropping it releases the lock.
    pub(super) lock: File,
    pub(super) shared: Arc<Shared>,
    pub(super) broker: Arc<dyn Broker>,
    pub(super) retention: Retention,
    pub(super) max_topics: usize,
    /// Last id assigned (0: none yet).
    pub(super) last_id: u64,
    /// Time of the last message; times never go backwards within the store.
    pub(super) last_time_ms: u64,
}

/// What an age prune removed: the count, each touched topic's new state
/// (`None`: forgotten), and the new `forgotten_through`.
pub(super) type Pruned = (
    usize,
    Vec<(TopicName, Option<TopicState>)>,
    Option<MessageId>,
);

/// One append of a batch, with its id assigned.
pub(super) struct Pending {
    pub(super) msg: Arc<Message>,
    pub(super) reply: Reply,
}

impl Writer {
    pub(super) fn run(mut self, mut rx: mpsc::Receiver<Cmd>) {
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
                let id = (self.last_id + 1).max(self.retention.clock.now_us());
                self.last_id = id;
                self.last_time_ms = self.last_time_ms.max(self.retention.clock.now_ms());
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
        let Some(cutoff) = self.retention.age_cutoff_us() else {
            return Ok(0);
        };
        let cutoff = cutoff as i64;
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
