//! A resuming subscriber's history, read from the store a page at a time,
//! in id order across all of its topics.
//!
//! A subscription may resume over many topics (`/topics/a,b`, `farm.**`)
//! whose histories interleave by id. Loading them whole and sorting (what
//! the hub once did) makes one request hold the whole history, and on
//! `--data-dir` copy the whole database into memory, once per subscriber.
//! Instead, [`HistoryReader`] keeps, per topic, only the last id it read
//! and a lower bound of the topic's next id, in a min-heap; each page reads
//! from the topic whose next message is oldest, up to the next topic's
//! bound, and at most [`PAGE`] messages. What a subscriber holds is one
//! page of messages plus 24 bytes per topic it reads (bounded by
//! `--max-topics`), whatever the size of the history.
//!
//! The reader stops at a bound (`through`): the largest id whose live
//! delivery had begun when the subscription was registered
//! (`Rings::history_bound`). Everything at or below it is in the store;
//! everything above it reaches the subscription through its rings. Without
//! the bound, topics read one after the other could race publishes: topic
//! `a` read (nothing), then `a` gets id 5 and `b` id 6, then `b` read (6):
//! the seam would skip 5. With it, both come live. The seam skips ids
//! already sent (`Subscription::skip_through`). In sharded cluster mode,
//! where ids of different shards are not committed in id order, the same
//! bound is what makes one id resume exactly.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::sync::Arc;

use crate::message::{Message, MessageId, TopicName};
use crate::store::{Store, StoreError};

/// Messages read from the store at once, per page: what one resuming
/// subscriber holds of its history at a time (16 × `--max-message` at
/// worst, 1 MiB with the default 64 KiB messages; nothing extra on the
/// memory store, whose pages share the history's `Arc`s).
pub const PAGE: usize = 16;

/// Gap notices sent one per topic; past this many, the rest are summed up
/// in one notice (a pattern over 100,000 topics must not make one
/// subscriber hold 100,000 notices).
pub const MAX_GAP_NOTICES: usize = 64;

/// A gap in a resumed subscription: ids of `topic` after `after` up to
/// `dropped_through` are no longer held. `topic` is `None` for the summary
/// of `topics` topics past [`MAX_GAP_NOTICES`], with the largest
/// `dropped_through` among them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Gap {
    pub topic: Option<TopicName>,
    pub after: MessageId,
    pub dropped_through: MessageId,
    /// Topics this notice stands for (1 unless it is the summary).
    pub topics: usize,
}

/// Pages of history in id order across topics (see the module docs).
pub struct HistoryReader {
    store: Option<Arc<dyn Store>>,
    /// Each topic and the last id read of it (`None`: from its start).
    topics: Vec<(TopicName, Option<MessageId>)>,
    /// `(lower bound of the next id, index into topics)`; smallest first.
    /// A topic leaves the heap once a read finds nothing more.
    heap: BinaryHeap<Reverse<(MessageId, usize)>>,
    /// The heap entry being read: kept here across the store's `.await`
    /// so that a page dropped half-way (a transport selecting on other
    /// events) loses nothing; the next call reads it again.
    current: Option<Reverse<(MessageId, usize)>>,
    /// Nothing above this id is read (live delivery has it; see the
    /// module docs).
    through: Option<MessageId>,
}

impl HistoryReader {
    /// A reader with nothing to read (a live-only subscription).
    pub fn empty() -> HistoryReader {
        HistoryReader {
            store: None,
            topics: Vec::new(),
            heap: BinaryHeap::new(),
            current: None,
            through: None,
        }
    }

    /// Looks at the first message after `after` of each topic (one message
    /// each, dropped at once) and reports the gaps: topics that lost
    /// messages after `after` to retention or eviction. With `after` of
    /// `None` (`?since=all`) only a loss inside what is still held (a
    /// recorded loss above a retained message: a failover) is a gap,
    /// reported from id 0. With `through`, history
    /// stops at that id (see the field).
    pub async fn open(
        store: Arc<dyn Store>,
        topics: Vec<TopicName>,
        after: Option<MessageId>,
        through: Option<MessageId>,
    ) -> Result<(HistoryReader, Vec<Gap>), StoreError> {
        let mut gaps = Vec::new();
        let mut heap = BinaryHeap::with_capacity(topics.len());
        let mut list = Vec::with_capacity(topics.len());
        for topic in topics {
            let first = store.read_page(&topic, after, 1).await?;
            match (after, first.dropped_through, first.messages.first()) {
                (Some(after), Some(dropped), _) if dropped > after => {
                    note_gap(&mut gaps, &topic, after, dropped);
                }
                // From the start: retention removes the oldest, which is no
                // gap; but a loss recorded above a message still held (a
                // failover in cluster mode) is one inside the history.
                (None, Some(dropped), Some(m)) if dropped > m.id => {
                    note_gap(&mut gaps, &topic, MessageId(0), dropped);
                }
                _ => {}
            }
            if let Some(m) = first.messages.first() {
                if through.is_none_or(|t| m.id <= t) {
                    heap.push(Reverse((m.id, list.len())));
                }
            }
            list.push((topic, after));
        }
        let reader = HistoryReader {
            store: Some(store),
            topics: list,
            heap,
            current: None,
            through,
        };
        Ok((reader, gaps))
    }

    /// Is there nothing left to read?
    pub fn is_done(&self) -> bool {
        self.heap.is_empty() && self.current.is_none()
    }

    /// Appends the next messages in id order, at most [`PAGE`], to `out`.
    /// Appends nothing only when the history is exhausted. Cancel-safe:
    /// `out` is only appended to after the store answered.
    pub async fn next_page(&mut self, out: &mut Vec<Arc<Message>>) -> Result<(), StoreError> {
        let Some(store) = self.store.clone() else {
            return Ok(());
        };
        let start = out.len();
        while out.len() - start < PAGE {
            let Some(entry) = self.current.take().or_else(|| self.heap.pop()) else {
                break;
            };
            let Reverse((_, i)) = entry;
            self.current = Some(entry);
            // Everything below the next topic's bound may be taken from
            // this one; at or above it, the other topic may come first.
            let bound = self.heap.peek().map(|Reverse((id, _))| *id);
            let want = PAGE - (out.len() - start);
            let (topic, after) = &mut self.topics[i];
            let page = store.read_page(topic, *after, want).await?;
            self.current = None;
            let got = page.messages.len();
            let mut next = None;
            let mut past_through = false;
            for m in page.messages {
                if self.through.is_some_and(|t| m.id > t) {
                    past_through = true;
                    break;
                }
                if bound.is_some_and(|b| m.id >= b) {
                    next = Some(m.id);
                    break;
                }
                *after = Some(m.id);
                out.push(m);
            }
            match next {
                _ if past_through => {}
                Some(id) => self.heap.push(Reverse((id, i))),
                // A full page may have more behind it: come back, with the
                // id after the last one read as the (lower) bound.
                None if got == want => {
                    let after = after.map_or(0, |a| a.0);
                    self.heap
                        .push(Reverse((MessageId(after.saturating_add(1)), i)));
                }
                None => {}
            }
        }
        Ok(())
    }
}

/// Records a gap of `topic`: one notice each up to [`MAX_GAP_NOTICES`],
/// then one summary notice for all the others.
fn note_gap(gaps: &mut Vec<Gap>, topic: &TopicName, after: MessageId, dropped: MessageId) {
    if gaps.len() < MAX_GAP_NOTICES {
        gaps.push(Gap {
            topic: Some(topic.clone()),
            after,
            dropped_through: dropped,
            topics: 1,
        });
        return;
    }
    match gaps.last_mut() {
        Some(summary) if summary.topic.is_none() => {
            summary.topics += 1;
            summary.dropped_through = summary.dropped_through.max(dropped);
        }
        _ => gaps.push(Gap {
            topic: None,
            after,
            dropped_through: dropped,
            topics: 1,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::broker::local::LocalBroker;
    use crate::budget::Budget;
    use crate::store::memory::MemoryStore;
    use crate::store::Retention;
    use crate::topic::Rings;

    fn t(s: &str) -> TopicName {
        TopicName::new(s).unwrap()
    }

    async fn store_with(msgs: &[&str], max_count: usize) -> (Arc<dyn Store>, Vec<MessageId>) {
        let broker = Arc::new(LocalBroker::new(Rings::new(16)));
        let retention = Retention {
            max_count,
            ..Retention::default()
        };
        let store: Arc<dyn Store> = Arc::new(MemoryStore::new(
            retention,
            1000,
            broker,
            Budget::new(usize::MAX),
        ));
        let mut ids = Vec::new();
        for (i, topic) in msgs.iter().enumerate() {
            let m = store.append(t(topic), i.to_string().into()).await.unwrap();
            ids.push(m.id);
        }
        (store, ids)
    }

    async fn read_all(reader: &mut HistoryReader) -> (Vec<MessageId>, usize) {
        let mut all = Vec::new();
        let mut pages = 0;
        loop {
            let mut page = Vec::new();
            reader.next_page(&mut page).await.unwrap();
            if page.is_empty() {
                return (all, pages);
            }
            assert!(page.len() <= PAGE);
            pages += 1;
            all.extend(page.iter().map(|m| m.id));
        }
    }

    #[tokio::test]
    async fn interleaved_topics_come_back_merged_by_id_in_bounded_pages() {
        // 300 messages over three topics, in runs and interleaved.
        let mut names = Vec::new();
        for i in 0..300 {
            names.push(match (i / 7) % 3 {
                0 => "a",
                1 => "b",
                _ => {
                    if i % 2 == 0 {
                        "c"
                    } else {
                        "a"
                    }
                }
            });
        }
        let (store, ids) = store_with(&names, 1000).await;
        let (mut reader, gaps) =
            HistoryReader::open(store, vec![t("a"), t("b"), t("c")], None, None)
                .await
                .unwrap();
        assert!(gaps.is_empty());
        let (got, pages) = read_all(&mut reader).await;
        assert_eq!(got, ids, "every message once, in id order");
        assert!(pages >= 300 / PAGE, "read in pages, not whole");
        assert!(reader.is_done());
    }

    #[tokio::test]
    async fn a_resume_reads_only_what_follows_and_reports_gaps() {
        let names = ["a", "b", "a", "b", "a", "b"];
        let (store, ids) = store_with(&names, 2).await; // each keeps 2 of 3
        let (mut reader, gaps) =
            HistoryReader::open(store, vec![t("a"), t("b")], Some(ids[0]), None)
                .await
                .unwrap();
        // a lost only ids[0], which the client had; b lost ids[1], which
        // it had not.
        assert_eq!(
            gaps,
            [Gap {
                topic: Some(t("b")),
                after: ids[0],
                dropped_through: ids[1],
                topics: 1,
            }]
        );
        let (got, _) = read_all(&mut reader).await;
        assert_eq!(got, ids[2..]);

        let (store, ids) = store_with(&names, 1).await; // each keeps its last
        let (_, gaps) = HistoryReader::open(store, vec![t("a")], Some(ids[0]), None)
            .await
            .unwrap();
        assert_eq!(
            gaps,
            [Gap {
                topic: Some(t("a")),
                after: ids[0],
                dropped_through: ids[2],
                topics: 1,
            }]
        );
    }

    #[tokio::test]
    async fn gaps_past_the_notice_limit_are_summed_up_in_one() {
        let names: Vec<String> = (0..200).map(|i| format!("t{i}")).collect();
        let mut order: Vec<&str> = names.iter().map(String::as_str).collect();
        order.extend(names.iter().map(String::as_str)); // two each
        let (store, ids) = store_with(&order, 1).await; // each keeps 1
        let topics = names.iter().map(|n| t(n)).collect();
        let (_, gaps) = HistoryReader::open(store, topics, Some(MessageId(ids[0].0 - 1)), None)
            .await
            .unwrap();
        assert_eq!(gaps.len(), MAX_GAP_NOTICES + 1);
        let summary = gaps.last().unwrap();
        assert_eq!(summary.topic, None);
        assert_eq!(summary.topics, 200 - MAX_GAP_NOTICES);
        assert_eq!(summary.dropped_through, ids[199]);
    }
}
