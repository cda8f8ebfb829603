//! Cluster mode: ids, history and fan-out through Redis, so that every
//! `coop serve` node on the same Redis acts as one hub. Everything that
//! talks to Redis is here: the shards and their connections (`shard.rs`),
//! the scripts (`scripts.rs`), the store (`store.rs`), the broker
//! (`broker.rs`) and URL redaction (`redact.rs`).
//!
//! # Shards
//!
//! A cluster is one or more **shards**, each an independent Redis primary,
//! named by a URL (`--redis`, repeated) or found through Sentinel
//! (`--redis-sentinel` with one `--redis-master` per shard). A topic lives
//! on one shard, chosen by a stable hash of its name ([`shard_of`]: FNV-1a,
//! then jump consistent hashing), so every node places it alike with no
//! coordination. The shard list is part of the data: start every node with
//! the same list, in the same order, and keep it (changing it moves topics,
//! whose history stays behind).
//!
//! # Ids: one order across shards
//!
//! A shard's publish script ([`scripts::APPEND`]) assigns the id: the first
//! number above the shard's last id, its clock (`TIME`, microseconds) and
//! the publishing node's largest seen id that is `shard` modulo the number
//! of shards. So ids are publish times, increasing on each shard, unique
//! across shards, and never going back after a failover (a promoted
//! replica may miss the newest writes and have an older `seq`; the
//! publisher's floor and the nodes' reconciliation, below, lift it).
//!
//! Ids of different shards interleave, so each node merges the shards'
//! pub/sub feeds by id with **watermarks** (`broker.rs`): a message is
//! delivered once every shard is known to have nothing smaller still to
//! come: its feed passed that id, or a *tick* ([`scripts::TICK`], asked for
//! when a message waits) raised the shard's `seq` past it and came back
//! through the feed. Every node therefore delivers one id order, across
//! shards, and a single id (`Last-Event-ID`, `?since=`) resumes any
//! subscription exactly, patterns over all shards included: history is
//! read from each shard up to the node's delivered mark, and live delivery
//! takes over above it. With one shard, nothing waits.
//!
//! # Failover and no silent loss
//!
//! With Sentinel a node follows the primary on its own (`shard.rs`). After
//! any break of a shard's pub/sub feed, the node:
//!
//! 1. ends every subscription with an `unavailable` notice carrying its
//!    last id ([`Rings::interrupt`](crate::topic::Rings::interrupt)), and
//!    answers new ones `503` (`/readyz` says why) until every feed is back:
//!    a subscriber is told, never left waiting on a feed that may have lost
//!    messages;
//! 2. stops using the shard's connection at once (commands fail fast with
//!    `503`), and on reconnecting, before its store may use the new
//!    connection, tells the (maybe new) primary what it saw
//!    ([`scripts::RECONCILE`]): every topic whose newest id seen here
//!    (delivered, or acknowledged to a publisher) the primary lacks had
//!    messages lost with the old primary, and the loss is recorded as
//!    retention records one, so a subscriber resuming from before it gets
//!    a `gap` notice naming the ids; the primary then tells every node
//!    (`lost` on the channel), and each ends its subscriptions again, so
//!    that one which resumed on another node before this one had spoken
//!    resumes once more and hears of it;
//! 3. starts delivering again from a clean cut (`broker.rs`).
//!
//! With `--redis-min-replicas N`, a publish is answered only once the
//! primary and N replicas have it (`WAIT`); otherwise `503` with the
//! reason. A promoted replica then holds every acknowledged message, and
//! only unacknowledged ones can appear in gap notices.
//!
//! # What is left
//!
//! - A message acknowledged to a publisher whose node then died too, that
//!   no other node's feed delivered and no replica received, cannot be
//!   reported: nobody left knows it existed. That is what
//!   `--redis-min-replicas` is for.
//! - While any shard's feed is down, this node serves no subscriptions
//!   (publishes to other shards go on): one merged order needs every feed.
//! - Age pruning walks every topic of a shard in one script, and a
//!   reconnect sends the newest id of every topic the node saw: fine for
//!   thousands of topics, a pause of Redis for hundreds of thousands.
//! - Passwords for Sentinel-found primaries are not supported yet (a
//!   sentinel given as a `redis://` URL may carry its own).

pub mod broker;
pub mod redact;
mod scripts;
mod shard;
pub mod store;

use std::sync::Arc;
use std::time::Duration;

pub use redact::{redact_in, redact_url};
pub use shard::ShardSpec;

use crate::broker::Rings;
use shard::Shard;

/// Longest wait for any one Redis command before the caller gets `503`.
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(2);

/// The names coop uses in each shard's Redis. Every key starts with the
/// prefix; scripts that walk topics are given the streams' prefix.
#[derive(Debug, Clone)]
pub struct Keys {
    pub seq: String,
    pub topics: String,
    pub dropped: String,
    pub last: String,
    pub forgotten: String,
    /// The pub/sub channel every node listens on: `coop:msgs`, and
    /// `coop:msgs:{i}` for shard `i` > 0 (pub/sub channels are shared by
    /// a server's databases, so shards may be databases of one server).
    pub channel: String,
    /// A topic's stream is this followed by the topic's name.
    pub stream_prefix: String,
}

/// Key prefix of everything coop keeps in Redis.
pub const PREFIX: &str = "coop:";

impl Default for Keys {
    fn default() -> Keys {
        let k = |name: &str| format!("{PREFIX}{name}");
        Keys {
            seq: k("seq"),
            topics: k("topics"),
            dropped: k("dropped"),
            last: k("last"),
            forgotten: k("forgotten"),
            channel: k("msgs"),
            stream_prefix: k("t:"),
        }
    }
}

impl Keys {
    /// The keys of shard `index`.
    pub fn for_shard(index: usize) -> Keys {
        let mut keys = Keys::default();
        if index > 0 {
            keys.channel = format!("{}:{index}", keys.channel);
        }
        keys
    }

    /// The stream key of a topic.
    pub fn stream(&self, topic: &str) -> String {
        format!("{}{topic}", self.stream_prefix)
    }
}

/// What cluster mode is given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterSpec {
    /// The shards, in the order every node must list them.
    pub shards: Vec<ShardSpec>,
    /// Replicas that must confirm a publish before it is answered
    /// (`--redis-min-replicas`).
    pub min_replicas: usize,
    /// How long a publish waits for them (`--redis-min-replicas-timeout`).
    pub wait_timeout: Duration,
}

impl ClusterSpec {
    /// One Redis at `url`, as `--redis URL` alone.
    pub fn single(url: &str) -> ClusterSpec {
        ClusterSpec {
            shards: vec![ShardSpec::Url(url.to_string())],
            min_replicas: 0,
            wait_timeout: Duration::from_secs(1),
        }
    }
}

/// Why cluster mode cannot start. URLs in each are redacted.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    #[error("bad Redis URL {url}: {reason}")]
    Url { url: String, reason: String },
    #[error("cannot reach Redis at {url}: {reason}")]
    Unreachable { url: String, reason: String },
    #[error(
        "cluster mode needs at least one Redis (--redis or --redis-sentinel with --redis-master)"
    )]
    NoShard,
    #[error("at most {MAX_SHARDS} Redis shards are supported, {0} were given")]
    TooManyShards(usize),
}

/// Most shards (ids keep their shard in their residue modulo the count).
pub const MAX_SHARDS: usize = 64;

/// The shard of `topic` among `shards` (at least 1): FNV-1a of the name,
/// then Lamping and Veach's jump consistent hash, so that adding a shard
/// moves only about 1/n of the topics.
pub fn shard_of(topic: &str, shards: usize) -> usize {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in topic.as_bytes() {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    let (mut b, mut j): (i64, i64) = (-1, 0);
    while j < shards.max(1) as i64 {
        b = j;
        h = h.wrapping_mul(2_862_933_555_777_941_757).wrapping_add(1);
        j = ((b + 1) as f64 * ((1u64 << 31) as f64 / ((h >> 33) + 1) as f64)) as i64;
    }
    b as usize
}

/// A connected cluster: every shard reached once at start.
#[derive(Clone)]
pub struct Cluster {
    shards: Arc<[Arc<Shard>]>,
}

impl Cluster {
    /// Connects to every shard (concurrently, each bounded): a bad URL, an
    /// unreachable Redis or sentinels that name no primary are errors
    /// before serving. `max_topics` bounds what each shard remembers for
    /// reconciliation.
    pub async fn connect(spec: &ClusterSpec, max_topics: usize) -> Result<Cluster, SetupError> {
        if spec.shards.is_empty() {
            return Err(SetupError::NoShard);
        }
        if spec.shards.len() > MAX_SHARDS {
            return Err(SetupError::TooManyShards(spec.shards.len()));
        }
        let connecting = spec.shards.iter().enumerate().map(|(i, s)| {
            Shard::connect(
                i,
                s.clone(),
                spec.min_replicas,
                spec.wait_timeout,
                max_topics.saturating_mul(2),
            )
        });
        let shards = futures::future::try_join_all(connecting).await?;
        Ok(Cluster {
            shards: shards.into_iter().map(Arc::new).collect(),
        })
    }

    /// Number of shards.
    pub fn len(&self) -> usize {
        self.shards.len()
    }

    /// Never: a cluster has at least one shard.
    pub fn is_empty(&self) -> bool {
        self.shards.is_empty()
    }

    fn shard_for(&self, topic: &str) -> &Arc<Shard> {
        &self.shards[shard_of(topic, self.shards.len())]
    }

    /// The cluster backend for a hub: the store and a broker feeding
    /// `rings`. Must run inside a tokio runtime (it starts the broker's
    /// tasks).
    pub fn backend(self, config: &crate::Config, rings: Rings) -> crate::Backend {
        let floor = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let broker = Arc::new(broker::ClusterBroker::start(
            self.clone(),
            rings,
            floor.clone(),
        ));
        let store = Arc::new(store::ClusterStore::new(
            self,
            config.retention,
            config.max_topics,
            floor,
        ));
        crate::Backend { store, broker }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topics_spread_evenly_and_stay_put_when_a_shard_is_added() {
        let names: Vec<String> = (0..10_000).map(|i| format!("topic.{i}")).collect();
        for n in [1, 2, 4, 8] {
            let mut load = vec![0usize; n];
            for t in &names {
                load[shard_of(t, n)] += 1;
            }
            let (min, max) = (*load.iter().min().unwrap(), *load.iter().max().unwrap());
            assert!(max as f64 / min as f64 <= 1.15, "{n} shards: {load:?}");
        }
        // From 4 to 5 shards, only topics moving to the new shard move.
        let moved = names
            .iter()
            .filter(|t| shard_of(t, 4) != shard_of(t, 5))
            .collect::<Vec<_>>();
        assert!(moved.iter().all(|t| shard_of(t, 5) == 4));
        assert!((1_500..2_500).contains(&moved.len()), "{}", moved.len());
        assert_eq!(shard_of("farm.cow", 1), 0);
    }
}
