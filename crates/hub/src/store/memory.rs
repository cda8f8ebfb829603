//! The default store: history in memory, per topic, lost on restart.
//!
//! One std `Mutex` guards the id counter and every topic's history. It is
//! never held across an `.await` (appends complete synchronously), and it is
//! the "commit order" of the store contract: the broker is called under it,
//! so batches reach the fan-out in id order.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use futures::future::{ready, BoxFuture};

use super::{History, Retention, Store, StoreError, TopicStats};
use crate::broker::Broker;
use crate::budget::Budget;
use crate::message::{now_us, Message, MessageId, TopicName};

/// In-memory history with count and age retention.
pub struct MemoryStore {
    inner: Mutex<Inner>,
    /// Every message held is charged to the hub's memory budget; the hub
    /// evicts the oldest through [`Store::evict`] when it is full.
    budget: Arc<Budget>,
    broker: Arc<dyn Broker>,
    retention: Retention,
    /// Most topics held at once; a publish to a new topic past it fails
    /// with [`StoreError::TooManyTopics`] (memory stays bounded).
    max_topics: usize,
}

struct Inner {
    /// The id the next message gets. Starts at the current Unix time in
    /// microseconds, so ids keep increasing across restarts (see `MessageId`).
    next_id: u64,
    /// The last id assigned, if any (kept, so that `last_id` does not walk
    /// every topic under the lock publishes need).
    last_id: Option<MessageId>,
    topics: HashMap<TopicName, TopicHistory>,
    /// Largest `dropped_through` of topics that were forgotten after their
    /// history emptied; reported for unknown topics, so a resume into a
    /// forgotten topic still hears of its gap (at worst a false alarm).
    forgotten_through: Option<MessageId>,
    closed: bool,
}

#[derive(Default)]
struct TopicHistory {
    msgs: VecDeque<Arc<Message>>,
    dropped_through: Option<MessageId>,
    last_id: Option<MessageId>,
}

impl TopicHistory {
    fn drop_front(&mut self) {
        if let Some(m) = self.msgs.pop_front() {
            self.dropped_through = Some(m.id);
        }
    }

    fn stats(&self) -> TopicStats {
        TopicStats {
            last_id: self.last_id,
            oldest_id: self.msgs.front().map(|m| m.id),
            len: self.msgs.len(),
        }
    }
}

impl MemoryStore {
    pub fn new(
        retention: Retention,
        max_topics: usize,
        broker: Arc<dyn Broker>,
        budget: Arc<Budget>,
    ) -> MemoryStore {
        MemoryStore {
            inner: Mutex::new(Inner {
                next_id: now_us().max(1),
                last_id: None,
                topics: HashMap::new(),
                forgotten_through: None,
                closed: false,
            }),
            broker,
            budget,
            retention,
            max_topics,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        crate::lock(&self.inner)
    }

    fn append_now(&self, topic: TopicName, body: Bytes) -> Result<Arc<Message>, StoreError> {
        let mut inner = self.lock();
        if inner.closed {
            return Err(StoreError::Closed);
        }
        let held = inner.topics.len();
        if !inner.topics.contains_key(&topic) && held >= self.max_topics {
            return Err(StoreError::TooManyTopics(self.max_topics));
        }
        let id = MessageId(inner.next_id);
        inner.next_id += 1;
        inner.last_id = Some(id);
        let msg = Arc::new(Message::new(
            id,
            topic.clone(),
            self.retention.clock.now_ms(),
            body,
        ));
        self.budget.charge(&msg);
        let hist = inner.topics.entry(topic).or_default();
        hist.last_id = Some(id);
        hist.msgs.push_back(msg.clone());
        while hist.msgs.len() > self.retention.max_count {
            hist.drop_front();
        }
        // Still under the lock: batches reach the fan-out in id order.
        self.broker.committed(std::slice::from_ref(&msg));
        Ok(msg)
    }

    /// Forgets `topic` once its history is empty (as age retention does),
    /// remembering what it dropped for later resumes.
    fn forget_if_empty(inner: &mut Inner, topic: &TopicName) {
        if let Some(hist) = inner.topics.get(topic) {
            if hist.msgs.is_empty() {
                let through = hist.dropped_through;
                inner.topics.remove(topic);
                inner.forgotten_through = inner.forgotten_through.max(through);
            }
        }
    }

    fn prune_now(&self, max_age: Duration) -> usize {
        let cutoff = self
            .retention
            .clock
            .now_ms()
            .saturating_sub(max_age.as_millis() as u64);
        let mut inner = self.lock();
        let mut dropped = 0;
        let mut forgotten = inner.forgotten_through;
        inner.topics.retain(|_, hist| {
            while hist.msgs.front().is_some_and(|m| m.time_ms < cutoff) {
                hist.drop_front();
                dropped += 1;
            }
            if hist.msgs.is_empty() {
                forgotten = forgotten.max(hist.dropped_through);
                return false;
            }
            true
        });
        inner.forgotten_through = forgotten;
        dropped
    }
}

impl Store for MemoryStore {
    fn append(
        &self,
        topic: TopicName,
        body: Bytes,
    ) -> BoxFuture<'_, Result<Arc<Message>, StoreError>> {
        Box::pin(ready(self.append_now(topic, body)))
    }

    fn read_page(
        &self,
        topic: &TopicName,
        after: Option<MessageId>,
        limit: usize,
    ) -> BoxFuture<'_, Result<History, StoreError>> {
        let inner = self.lock();
        let history = match inner.topics.get(topic) {
            None => History {
                messages: Vec::new(),
                dropped_through: inner.forgotten_through,
            },
            Some(hist) => {
                // Ids ascend within a topic: binary search for the seam.
                let start = match after {
                    None => 0,
                    Some(after) => hist.msgs.partition_point(|m| m.id <= after),
                };
                History {
                    messages: hist.msgs.range(start..).take(limit).cloned().collect(),
                    dropped_through: hist.dropped_through.max(inner.forgotten_through),
                }
            }
        };
        Box::pin(ready(Ok(history)))
    }

    fn stats(&self, topic: &TopicName) -> BoxFuture<'_, Result<Option<TopicStats>, StoreError>> {
        let stats = self.lock().topics.get(topic).map(TopicHistory::stats);
        Box::pin(ready(Ok(stats)))
    }

    fn topics(&self) -> BoxFuture<'_, Result<Vec<(TopicName, TopicStats)>, StoreError>> {
        let mut all: Vec<_> = self
            .lock()
            .topics
            .iter()
            .map(|(name, hist)| (name.clone(), hist.stats()))
            .collect();
        all.sort_by(|a, b| a.0.cmp(&b.0));
        Box::pin(ready(Ok(all)))
    }

    fn prune(&self) -> BoxFuture<'_, Result<usize, StoreError>> {
        let dropped = match self.retention.max_age {
            Some(age) => self.prune_now(age),
            None => 0,
        };
        Box::pin(ready(Ok(dropped)))
    }

    fn last_id(&self) -> Option<MessageId> {
        self.lock().last_id
    }

    fn evict(&self, msg: &Message) {
        let mut inner = self.lock();
        let Some(hist) = inner.topics.get_mut(&msg.topic) else {
            return;
        };
        while hist.msgs.front().is_some_and(|m| m.id <= msg.id) {
            hist.drop_front();
        }
        Self::forget_if_empty(&mut inner, &msg.topic);
    }

    fn close(&self) -> BoxFuture<'_, Result<(), StoreError>> {
        self.lock().closed = true;
        Box::pin(ready(Ok(())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::broker::local::LocalBroker;
    use crate::topic::Rings;

    fn store(max_count: usize, max_age: Option<Duration>) -> (MemoryStore, Rings) {
        let rings = Rings::new(64);
        let broker = Arc::new(LocalBroker::new(rings.clone()));
        let retention = Retention {
            max_count,
            max_age,
            ..Retention::default()
        };
        (
            MemoryStore::new(retention, 10, broker, Budget::new(usize::MAX)),
            rings,
        )
    }

    fn t(name: &str) -> TopicName {
        TopicName::new(name).unwrap()
    }

    #[tokio::test]
    async fn ids_increase_across_topics_and_history_resumes_after_an_id() {
        let (store, _) = store(3, None);
        let a1 = store.append(t("a"), "1".into()).await.unwrap();
        let b1 = store.append(t("b"), "x".into()).await.unwrap();
        let a2 = store.append(t("a"), "2".into()).await.unwrap();
        assert!(a1.id < b1.id && b1.id < a2.id);

        let h = store.read(&t("a"), Some(a1.id)).await.unwrap();
        assert_eq!(h.messages.iter().map(|m| m.id).collect::<Vec<_>>(), [a2.id]);
        assert_eq!(h.dropped_through, None);
        let all = store.read(&t("a"), None).await.unwrap();
        assert_eq!(all.messages.len(), 2);
    }

    #[tokio::test]
    async fn count_retention_reports_what_was_dropped() {
        let (store, _) = store(2, None);
        let mut ids = Vec::new();
        for i in 0..5 {
            ids.push(store.append(t("a"), i.to_string().into()).await.unwrap().id);
        }
        let h = store.read(&t("a"), None).await.unwrap();
        assert_eq!(
            h.messages.iter().map(|m| m.id).collect::<Vec<_>>(),
            ids[3..]
        );
        assert_eq!(h.dropped_through, Some(ids[2]));
        let stats = store.stats(&t("a")).await.unwrap().unwrap();
        assert_eq!(
            (stats.len, stats.last_id, stats.oldest_id),
            (2, Some(ids[4]), Some(ids[3]))
        );
    }

    #[tokio::test]
    async fn age_retention_forgets_empty_topics_but_remembers_the_gap() {
        let clock = crate::clock::Clock::adjustable();
        let broker = Arc::new(LocalBroker::new(Rings::new(16)));
        let retention = Retention {
            max_count: 10,
            max_age: Some(Duration::from_secs(60)),
            clock,
        };
        let store = MemoryStore::new(retention, 10, broker, Budget::new(usize::MAX));
        let m = store.append(t("a"), "old".into()).await.unwrap();
        assert_eq!(store.prune().await.unwrap(), 0, "a minute has not passed");
        clock.advance(Duration::from_secs(61));
        assert_eq!(store.prune().await.unwrap(), 1);
        assert!(store.topics().await.unwrap().is_empty());
        let h = store.read(&t("a"), None).await.unwrap();
        assert!(h.messages.is_empty());
        assert_eq!(h.dropped_through, Some(m.id));
    }

    #[tokio::test]
    async fn topic_limit_and_close_refuse_appends() {
        let (store, _) = store(10, None);
        for i in 0..10 {
            store.append(t(&format!("t{i}")), "".into()).await.unwrap();
        }
        let err = store
            .append(t("one-too-many"), "".into())
            .await
            .unwrap_err();
        assert!(matches!(err, StoreError::TooManyTopics(10)));
        store
            .append(t("t0"), "existing is fine".into())
            .await
            .unwrap();
        store.close().await.unwrap();
        assert!(matches!(
            store.append(t("t0"), "".into()).await.unwrap_err(),
            StoreError::Closed
        ));
    }
}
