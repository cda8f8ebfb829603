//! Cluster mode's store: each topic's ids, history and retention live on
//! its shard, in a stream `coop:t:{topic}` whose entry ids are the message
//! ids (`{id}-0`), so `?since=ID` is `XRANGE (ID-0 +`.
//!
//! One script per publish ([`scripts::APPEND`]) checks the topic limit,
//! assigns the id (`mod.rs`), applies count retention exactly (the largest
//! trimmed id goes to `coop:dropped`), appends, and `PUBLISH`es on the
//! shard's channel, atomically: the order of a shard's `PUBLISH`es is its
//! id order, which the broker merges across shards. The publish is
//! answered once the script returned (and, with `--redis-min-replicas`,
//! once replicas confirmed it): as durable as Redis is configured to be.
//!
//! Reads, stats and the topic list are small scripts too (one consistent
//! snapshot per shard and one round trip each). Age retention
//! ([`Store::prune`], called every second by every node) trims each stream
//! by `MINID` (ids are times) and forgets emptied topics; running it on
//! several nodes is harmless.
//!
//! A command that fails or does not answer within
//! [`COMMAND_TIMEOUT`](super::COMMAND_TIMEOUT) fails the request with
//! [`StoreError::Unavailable`] (`503`), never a false `ok`. If Redis ran a
//! publish but the answer was lost, the publisher sees `503` for a message
//! that was delivered: at-least-once.
//!
//! `--max-topics` is shared out: each shard holds at most its share
//! (rounded up), so an uneven spread refuses a little early on the fullest
//! shard.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use futures::future::BoxFuture;
use redis::{Script, Value};

use super::{scripts, Cluster};
use crate::message::{Message, MessageId, TopicName};
use crate::store::{History, Retention, Store, StoreError, TopicStats};

/// The cluster store. See the module docs.
pub struct ClusterStore {
    cluster: Cluster,
    retention: Retention,
    max_topics: usize,
    /// Topics each shard may hold.
    shard_topics: usize,
    /// Largest id this node assigned or delivered: the floor of its
    /// publishes' ids, and `last_id()`. Shared with the broker.
    floor: Arc<AtomicU64>,
    append: Script,
    read: Script,
    stats: Script,
    prune: Script,
}

impl ClusterStore {
    pub(crate) fn new(
        cluster: Cluster,
        retention: Retention,
        max_topics: usize,
        floor: Arc<AtomicU64>,
    ) -> ClusterStore {
        let shard_topics = max_topics.div_ceil(cluster.len()).max(1);
        ClusterStore {
            cluster,
            retention,
            max_topics,
            shard_topics,
            floor,
            append: Script::new(scripts::APPEND),
            read: Script::new(scripts::READ),
            stats: Script::new(scripts::STATS),
            prune: Script::new(scripts::PRUNE),
        }
    }

    async fn stats_of(
        &self,
        shard: usize,
        names: &[&str],
    ) -> Result<Vec<(TopicName, TopicStats)>, StoreError> {
        let shard = &self.cluster.shards[shard];
        let k = &shard.keys;
        let mut args: Vec<&[u8]> = vec![k.stream_prefix.as_bytes()];
        args.extend(names.iter().map(|n| n.as_bytes()));
        let v = shard.run(&self.stats, &[&k.topics, &k.last], &args).await?;
        let items = strings(v)?;
        let mut out = Vec::new();
        for c in items.chunks_exact(4) {
            let Ok(name) = TopicName::new(&c[0]) else {
                continue;
            };
            out.push((
                name,
                TopicStats {
                    len: c[1].parse().unwrap_or(0),
                    oldest_id: c[2].parse().ok().map(MessageId),
                    last_id: c[3].parse().ok().map(MessageId),
                },
            ));
        }
        Ok(out)
    }
}

/// A script's flat array reply as strings (bodies are UTF-8, checked at
/// publish).
pub(crate) fn strings(v: Value) -> Result<Vec<String>, StoreError> {
    let Value::Array(items) = v else {
        return Err(StoreError::Unavailable(format!(
            "unexpected reply from redis: {v:?}"
        )));
    };
    Ok(items.into_iter().map(text).collect())
}

pub(crate) fn text(v: Value) -> String {
    match v {
        Value::BulkString(b) => String::from_utf8(b)
            .unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned()),
        Value::SimpleString(s) => s,
        Value::Int(i) => i.to_string(),
        _ => String::new(),
    }
}

impl Store for ClusterStore {
    fn append(
        &self,
        topic: TopicName,
        body: Bytes,
    ) -> BoxFuture<'_, Result<Arc<Message>, StoreError>> {
        Box::pin(async move {
            let shard = self.cluster.shard_for(topic.as_str());
            let k = &shard.keys;
            let key = k.stream(topic.as_str());
            let max_count = self.retention.max_count.to_string();
            let max_topics = self.shard_topics.to_string();
            let floor = self.floor.load(Ordering::Acquire).to_string();
            let shards = self.cluster.len().to_string();
            let index = shard.index.to_string();
            let v = shard
                .append(
                    &self.append,
                    &[&k.seq, &key, &k.topics, &k.dropped, &k.last],
                    &[
                        topic.as_str().as_bytes(),
                        &body,
                        max_count.as_bytes(),
                        max_topics.as_bytes(),
                        k.channel.as_bytes(),
                        floor.as_bytes(),
                        shards.as_bytes(),
                        index.as_bytes(),
                    ],
                )
                .await
                .map_err(|e| match e {
                    StoreError::TooManyTopics(_) => StoreError::TooManyTopics(self.max_topics),
                    other => other,
                })?;
            let id: u64 = text(v).parse().map_err(|_| {
                StoreError::Unavailable("redis returned no id for the publish".into())
            })?;
            self.floor.fetch_max(id, Ordering::AcqRel);
            // Acknowledged by this primary: if a failover loses it before
            // any node's feed delivered it, this node's reconciliation
            // still records the loss (the link is only ever one the feed
            // has reconciled, so this id is never of a primary that
            // replaced the one it checked).
            shard.saw(&topic, id);
            // The message as the publisher's node knows it; subscribers get
            // the copy that comes back through pub/sub (same id and text).
            Ok(Arc::new(Message::new(
                MessageId(id),
                topic,
                self.retention.clock.now_ms(),
                body,
            )))
        })
    }

    fn read_page(
        &self,
        topic: &TopicName,
        after: Option<MessageId>,
        limit: usize,
    ) -> BoxFuture<'_, Result<History, StoreError>> {
        let topic = topic.clone();
        Box::pin(async move {
            let shard = self.cluster.shard_for(topic.as_str());
            let k = &shard.keys;
            let key = k.stream(topic.as_str());
            let after = after.map_or_else(|| "-".to_string(), |a| a.0.to_string());
            // Lua numbers are doubles: exact up to 2^53, far above any page.
            let count = limit.min(1 << 40).to_string();
            let v = shard
                .run(
                    &self.read,
                    &[&key, &k.dropped, &k.forgotten],
                    &[
                        topic.as_str().as_bytes(),
                        after.as_bytes(),
                        count.as_bytes(),
                    ],
                )
                .await?;
            let Value::Array(mut items) = v else {
                return Err(StoreError::Unavailable(
                    "unexpected reply from redis".into(),
                ));
            };
            if items.len() < 2 {
                return Err(StoreError::Unavailable(
                    "unexpected reply from redis".into(),
                ));
            }
            let rest = items.split_off(2);
            let dropped: Option<u64> = text(items.swap_remove(0)).parse().ok();
            let forgotten: Option<u64> = text(items.swap_remove(0)).parse().ok();
            let mut messages = Vec::with_capacity(rest.len() / 3);
            let mut it = rest.into_iter();
            while let (Some(id), Some(ms), Some(body)) = (it.next(), it.next(), it.next()) {
                let body = match body {
                    Value::BulkString(b) => Bytes::from(b),
                    other => Bytes::from(text(other)),
                };
                messages.push(Arc::new(Message::new(
                    MessageId(text(id).parse().unwrap_or(0)),
                    topic.clone(),
                    text(ms).parse().unwrap_or(0),
                    body,
                )));
            }
            Ok(History {
                messages,
                dropped_through: dropped.max(forgotten).map(MessageId),
            })
        })
    }

    fn stats(&self, topic: &TopicName) -> BoxFuture<'_, Result<Option<TopicStats>, StoreError>> {
        let topic = topic.clone();
        Box::pin(async move {
            let shard = self.cluster.shard_for(topic.as_str()).index;
            Ok(self
                .stats_of(shard, &[topic.as_str()])
                .await?
                .into_iter()
                .next()
                .map(|(_, s)| s))
        })
    }

    fn topics(&self) -> BoxFuture<'_, Result<Vec<(TopicName, TopicStats)>, StoreError>> {
        Box::pin(async move {
            let all = (0..self.cluster.len()).map(|i| self.stats_of(i, &[]));
            let mut out: Vec<(TopicName, TopicStats)> = futures::future::try_join_all(all)
                .await?
                .into_iter()
                .flatten()
                .collect();
            out.sort_by(|a, b| a.0.cmp(&b.0));
            Ok(out)
        })
    }

    fn prune(&self) -> BoxFuture<'_, Result<usize, StoreError>> {
        Box::pin(async move {
            let Some(cutoff) = self.retention.age_cutoff_us() else {
                return Ok(0);
            };
            let cutoff = cutoff.to_string();
            let all = self.cluster.shards.iter().map(|shard| {
                let k = &shard.keys;
                let cutoff = &cutoff;
                async move {
                    let v = shard
                        .run(
                            &self.prune,
                            &[&k.topics, &k.dropped, &k.last, &k.forgotten],
                            &[cutoff.as_bytes(), k.stream_prefix.as_bytes()],
                        )
                        .await?;
                    Ok::<usize, StoreError>(match v {
                        Value::Int(n) => n.max(0) as usize,
                        _ => 0,
                    })
                }
            });
            Ok(futures::future::try_join_all(all).await?.into_iter().sum())
        })
    }

    fn last_id(&self) -> Option<MessageId> {
        match self.floor.load(Ordering::Acquire) {
            0 => None,
            id => Some(MessageId(id)),
        }
    }

    fn health(&self) -> Result<(), String> {
        for shard in self.cluster.shards.iter() {
            shard
                .health
                .check()
                .map_err(|e| format!("redis shard {} ({}): {e}", shard.index, shard.shown))?;
        }
        Ok(())
    }
}
