//! The hub itself: configuration, the backend (store + broker) and the two
//! operations everything else is built on, [`Hub::publish`] and
//! [`Hub::open`] (a subscription with its history already read).
//!
//! `Hub` is a cheap `Clone` handle around `Arc<Inner>`. A background task
//! applies age retention every second; it stops when the shutdown token is
//! cancelled or the last handle drops.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use bytes::Bytes;
use tokio_util::sync::CancellationToken;

use crate::auth::Auth;
use crate::broker::local::LocalBroker;
use crate::broker::{Broker, Rings};
use crate::budget::Budget;
use crate::error::HubError;
pub use crate::history::Gap;
use crate::history::HistoryReader;
use crate::limit::{RateLimiter, TrustedProxies};
use crate::message::{Message, MessageId, TopicName};
use crate::pattern::Pattern;
use crate::store::memory::MemoryStore;
use crate::store::{Retention, Store};
use crate::topic::Subscription;

/// Everything configurable about the hub (the binary maps flags onto it).
/// Its `Debug` shows the secret as `***`.
#[derive(Clone)]
pub struct Config {
    /// History kept per topic (`--history`, `--history-ttl`).
    pub retention: Retention,
    /// Messages each topic's ring keeps for live delivery: how far a
    /// subscriber may fall behind before it is cut off (`--buffer`).
    pub buffer: usize,
    /// Largest message in bytes (`--max-message`); larger is `413`.
    pub max_message: usize,
    /// Most concurrent subscribers (`--max-subscribers`); more get `503`.
    pub max_subscribers: usize,
    /// Most topics held (`--max-topics`); a publish to a new one past it
    /// gets `503`, and so does a subscription whose topics would take the
    /// live rings past it.
    pub max_topics: usize,
    /// Bytes of messages held in memory, history and live rings together
    /// (`--max-memory`); past it the oldest are evicted (`budget.rs`).
    pub max_memory: usize,
    /// Most live patterns, all subscriptions together (`--max-patterns`);
    /// a subscription past it gets `503`.
    pub max_patterns: usize,
    /// Most topics and patterns in one subscription
    /// (`--max-subscription-topics`); more is `400`.
    pub max_subscription_topics: usize,
    /// Publishes per second per client address, and burst (`--publish-rate`,
    /// `--publish-burst`); `None` is unlimited.
    pub publish_rate: Option<(f64, u32)>,
    /// SSE comment / NDJSON empty line / WebSocket ping interval.
    pub heartbeat: Duration,
    /// Longest a write to a subscriber may take (`--write-timeout`): a
    /// client that stops reading is disconnected after it, instead of
    /// holding its connection and its batch for ever.
    pub write_timeout: Duration,
    /// Longest a publisher may take to send its body (`--body-timeout`);
    /// past it, `408`.
    pub body_timeout: Duration,
    /// End a subscription that has received nothing for this long
    /// (`--idle-timeout`); heartbeats do not count. `None`: never.
    pub idle_timeout: Option<Duration>,
    /// HS256 secret enabling access control (`--auth-secret`,
    /// `COOP_AUTH_SECRET` or `--auth-secret-file`). Shorter than
    /// [`auth::MIN_SECRET_LEN`](crate::auth::MIN_SECRET_LEN) bytes: accepted
    /// with a warning.
    pub auth_secret: Option<String>,
    /// Accept tokens without `exp` (`--auth-allow-no-exp`); by default
    /// they are refused with `401`, since they would never expire.
    pub auth_allow_no_exp: bool,
    /// Origins allowed by CORS (`--cors-origin`, `*` for any); empty: no
    /// CORS headers.
    pub cors_origins: Vec<String>,
    /// Names the hub answers to in `Host` (`--allowed-host`; the binary
    /// adds loopback names and its bind address). Default: any.
    pub allowed_hosts: crate::origin::AllowedHosts,
    /// `retry:` sent to SSE clients at shutdown, in milliseconds.
    pub shutdown_retry_ms: u64,
    /// Reverse proxies whose forwarding header names the client for the
    /// publish rate (`--trust-proxy`, `--proxy-header`); none by default.
    pub trusted_proxies: TrustedProxies,
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Config")
            .field("retention", &self.retention)
            .field("buffer", &self.buffer)
            .field("max_message", &self.max_message)
            .field("max_subscribers", &self.max_subscribers)
            .field("max_topics", &self.max_topics)
            .field("max_memory", &self.max_memory)
            .field("max_patterns", &self.max_patterns)
            .field("max_subscription_topics", &self.max_subscription_topics)
            .field("publish_rate", &self.publish_rate)
            .field("heartbeat", &self.heartbeat)
            .field("write_timeout", &self.write_timeout)
            .field("body_timeout", &self.body_timeout)
            .field("idle_timeout", &self.idle_timeout)
            .field("auth_secret", &self.auth_secret.as_ref().map(|_| "***"))
            .field("auth_allow_no_exp", &self.auth_allow_no_exp)
            .field("cors_origins", &self.cors_origins)
            .field("allowed_hosts", &self.allowed_hosts)
            .field("shutdown_retry_ms", &self.shutdown_retry_ms)
            .field("trusted_proxies", &self.trusted_proxies)
            .finish()
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            retention: Retention::default(),
            buffer: 4096,
            max_message: 64 * 1024,
            max_subscribers: 100_000,
            max_topics: 100_000,
            max_memory: 256 * 1024 * 1024,
            max_subscription_topics: 64,
            max_patterns: 10_000,
            publish_rate: None,
            heartbeat: Duration::from_secs(15),
            write_timeout: Duration::from_secs(30),
            body_timeout: Duration::from_secs(30),
            idle_timeout: None,
            auth_secret: None,
            auth_allow_no_exp: false,
            cors_origins: Vec::new(),
            allowed_hosts: crate::origin::AllowedHosts::any(),
            shutdown_retry_ms: 1000,
            trusted_proxies: TrustedProxies::default(),
        }
    }
}

/// A store and the broker it commits to, built against the hub's fan-out.
pub struct Backend {
    pub store: Arc<dyn Store>,
    pub broker: Arc<dyn Broker>,
}

impl Backend {
    /// The default: history in memory, delivery in process.
    pub fn memory(config: &Config, rings: Rings) -> Backend {
        let broker: Arc<dyn Broker> = Arc::new(LocalBroker::new(rings.clone()));
        let store = Arc::new(MemoryStore::new(
            config.retention,
            config.max_topics,
            broker.clone(),
            rings.budget().clone(),
        ));
        Backend { store, broker }
    }
}

/// Handle on the hub.
#[derive(Clone)]
pub struct Hub {
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub config: Config,
    pub store: Arc<dyn Store>,
    pub broker: Arc<dyn Broker>,
    pub rings: Rings,
    pub shutdown: CancellationToken,
    pub auth: Option<Auth>,
    pub limiter: Option<RateLimiter>,
    /// Subscribers connected now (for `--max-subscribers`).
    pub subscribers: AtomicUsize,
    pub metrics: Metrics,
}

/// Metric handles, registered once (the facade's macros look names up).
pub(crate) struct Metrics {
    pub publishes: metrics::Counter,
    pub deliveries: metrics::Counter,
    pub slow_disconnects: metrics::Counter,
    pub latency: metrics::Histogram,
    pub evictions: metrics::Counter,
}

/// A subscription request, validated.
#[derive(Debug, Clone, Default)]
pub struct Spec {
    pub topics: Vec<TopicName>,
    pub patterns: Vec<Pattern>,
}

impl Spec {
    /// Parses `a,b,farm.*`: names and patterns separated by commas.
    pub fn parse(spec: &str) -> Result<Spec, String> {
        let mut out = Spec::default();
        for part in spec.split(',') {
            if part.contains('*') {
                let p = Pattern::new(part)?;
                if !out.patterns.contains(&p) {
                    out.patterns.push(p);
                }
            } else {
                let t = TopicName::new(part)?;
                if !out.topics.contains(&t) {
                    out.topics.push(t);
                }
            }
        }
        Ok(out)
    }

    /// Every name and pattern, as text (for auth checks).
    pub fn parts(&self) -> impl Iterator<Item = &str> {
        self.topics
            .iter()
            .map(TopicName::as_str)
            .chain(self.patterns.iter().map(Pattern::as_str))
    }

    fn wants(&self, topic: &TopicName) -> bool {
        self.topics.contains(topic) || self.patterns.iter().any(|p| p.matches(topic.as_str()))
    }
}

/// Where a subscriber starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Since {
    /// Only messages published from now on.
    Live,
    /// Everything the history holds, then live.
    All,
    /// Messages after this id (from history), then live.
    After(MessageId),
}

impl Since {
    /// Parses a resume point: `all`, or a decimal message id from `0`
    /// (the same as `all`) to [`MessageId::MAX`]. Anything else (signs,
    /// spaces inside, other characters, or an id past the largest a store
    /// can hold) is an error naming the problem, which the hub answers with
    /// `400`, the same on every store.
    pub fn parse(s: &str) -> Result<Since, String> {
        /// How much of a bad value is echoed in the reason.
        const ECHO: usize = 40;
        let s = s.trim();
        if s == "all" {
            return Ok(Since::All);
        }
        let shown = || {
            let mut end = s.len().min(ECHO);
            while !s.is_char_boundary(end) {
                end -= 1;
            }
            let more = if end < s.len() { "…" } else { "" };
            format!("{:?}{more}", &s[..end])
        };
        if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
            return Err(format!(
                "bad since {}: expected a message id (0 to {}) or \"all\"",
                shown(),
                MessageId::MAX
            ));
        }
        match s.parse::<u64>() {
            Ok(0) => Ok(Since::All),
            Ok(id) if id <= MessageId::MAX.0 => Ok(Since::After(MessageId(id))),
            _ => Err(format!(
                "bad since {}: message ids go up to {}",
                shown(),
                MessageId::MAX
            )),
        }
    }
}

/// A subscription ready to send: `gaps`, then the pages of `history`, then
/// live messages from `live`.
pub struct Opened {
    pub gaps: Vec<Gap>,
    pub history: HistoryReader,
    pub live: Subscription,
    /// Holds the subscriber's slot; releases it on drop.
    pub slot: Slot,
}

/// One of `--max-subscribers` slots, released on drop.
pub struct Slot(Weak<Inner>);

impl Drop for Slot {
    fn drop(&mut self) {
        if let Some(inner) = self.0.upgrade() {
            inner.subscribers.fetch_sub(1, Ordering::AcqRel);
        }
    }
}

/// Where the hub keeps its history and how it reaches other nodes: the
/// one choice `Hub::open` makes a backend from.
#[derive(Debug, Clone)]
pub enum Storage {
    /// History in memory, delivery in this process (the default).
    Memory,
    /// Durable history in SQLite under a private directory (`--data-dir`).
    Sqlite {
        dir: std::path::PathBuf,
        options: crate::store::sqlite::SqliteOptions,
    },
    /// Ids, history and fan-out shared through Redis: one or more shards,
    /// by URL or through Sentinel (`--redis`, `--redis-sentinel`).
    Cluster(crate::cluster::ClusterSpec),
}

/// Why `Hub::with_storage` could not open its storage.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error(transparent)]
    DataDir(#[from] crate::store::sqlite::DataDirError),
    #[error(transparent)]
    Redis(#[from] crate::cluster::SetupError),
}

impl Hub {
    /// A hub with the in-memory backend.
    pub fn new(config: Config, shutdown: CancellationToken) -> Hub {
        Hub::with_backend(config, shutdown, Backend::memory)
    }

    /// The one place a hub is built from its configuration and storage:
    /// the binary and the tests both come here. Call [`Hub::close`] once
    /// the server has drained.
    pub async fn with_storage(
        config: Config,
        storage: &Storage,
        shutdown: CancellationToken,
    ) -> Result<Hub, OpenError> {
        Ok(match storage {
            Storage::Memory => Hub::new(config, shutdown),
            Storage::Sqlite { dir, options } => {
                let data = crate::store::sqlite::DataDir::open(dir, *options)?;
                Hub::with_backend(config, shutdown, |c, f| data.backend(c, f))
            }
            Storage::Cluster(spec) => {
                let cluster = crate::cluster::Cluster::connect(spec, config.max_topics).await?;
                Hub::with_backend(config, shutdown, |c, f| cluster.backend(c, f))
            }
        })
    }

    /// Flushes and closes the store (the durable store's last group
    /// commit and its files): after the server drained, before exit.
    pub async fn close(&self) {
        if let Err(err) = self.inner.store.close().await {
            tracing::warn!(%err, "closing the hub's store failed");
        }
    }

    /// A hub whose backend is built by `backend` against its fan-out (the
    /// SQLite or Redis modes pass their own constructor).
    pub fn with_backend(
        config: Config,
        shutdown: CancellationToken,
        backend: impl FnOnce(&Config, Rings) -> Backend,
    ) -> Hub {
        let budget = Budget::new(config.max_memory);
        let rings = Rings::with_limits(
            config.buffer,
            config.max_topics,
            config.max_patterns,
            budget,
        );
        let Backend { store, broker } = backend(&config, rings.clone());
        // A durable store's history is all delivered, as far as
        // subscriptions made from now on are concerned.
        if let Some(last) = store.last_id() {
            rings.raise_high_water(last);
        }
        let auth = config.auth_secret.as_deref().map(|s| {
            if s.len() < crate::auth::MIN_SECRET_LEN {
                tracing::warn!(
                    bytes = s.len(),
                    "the auth secret is shorter than {} bytes: tokens signed with it can be \
                     brute-forced offline; use a random secret of at least {} bytes",
                    crate::auth::MIN_SECRET_LEN,
                    crate::auth::MIN_SECRET_LEN
                );
            }
            Auth::new(s.as_bytes(), config.auth_allow_no_exp)
        });
        let limiter = config.publish_rate.map(|(r, b)| RateLimiter::new(r, b));
        let metrics = Metrics {
            publishes: metrics::counter!("hub_publishes_total"),
            deliveries: metrics::counter!("hub_deliveries_total"),
            slow_disconnects: metrics::counter!("hub_slow_disconnects_total"),
            latency: metrics::histogram!("hub_publish_to_delivery_duration_seconds"),
            evictions: metrics::counter!("hub_memory_evictions_total"),
        };
        let inner = Arc::new(Inner {
            config,
            store,
            broker,
            rings,
            shutdown: shutdown.clone(),
            auth,
            limiter,
            subscribers: AtomicUsize::new(0),
            metrics,
        });
        let weak = Arc::downgrade(&inner);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = shutdown.cancelled() => {
                        // Subscribers watch the rings' flag, not the token.
                        if let Some(inner) = weak.upgrade() {
                            inner.rings.stop();
                        }
                        return;
                    }
                    _ = tick.tick() => {}
                }
                let Some(inner) = weak.upgrade() else { return };
                if let Err(err) = inner.store.prune().await {
                    tracing::warn!(%err, "history pruning failed");
                }
            }
        });
        Hub { inner }
    }

    pub fn config(&self) -> &Config {
        &self.inner.config
    }

    pub fn store(&self) -> &Arc<dyn Store> {
        &self.inner.store
    }

    pub fn rings(&self) -> &Rings {
        &self.inner.rings
    }

    /// The shutdown token streams watch.
    pub fn shutdown(&self) -> &CancellationToken {
        &self.inner.shutdown
    }

    /// Subscribers connected now.
    pub fn subscriber_count(&self) -> usize {
        self.inner.subscribers.load(Ordering::Acquire)
    }

    /// Readiness (`/readyz`): `Err(reason)` if the store or the broker
    /// cannot serve (say, a Redis shard is unreachable, or this node's
    /// pub/sub feed is down and subscriptions are refused).
    pub fn health(&self) -> Result<(), String> {
        self.inner.store.health()?;
        self.inner.broker.ready()
    }

    /// Publishes `body` (UTF-8, size already checked) to `topic`. Resolves
    /// once the message is stored (and handed to the fan-out): the caller
    /// may then answer `ok`. Returns the message and the topic's local
    /// subscriber count.
    pub async fn publish(
        &self,
        topic: TopicName,
        body: Bytes,
    ) -> Result<(Arc<Message>, usize), HubError> {
        if body.len() > self.inner.config.max_message {
            return Err(HubError::TooLarge(self.inner.config.max_message));
        }
        if std::str::from_utf8(&body).is_err() {
            return Err(HubError::BadRequest("message is not valid UTF-8".into()));
        }
        self.make_room()?;
        // A body may be a slice of a larger read buffer, which it would keep
        // alive in history: hold an exact copy, as the budget counts.
        let body = Bytes::copy_from_slice(&body);
        let msg = self
            .inner
            .store
            .append(topic, body)
            .await
            // Every store failure (too many topics, closed, backend down)
            // is the server's to fix or wait out: 503 with the reason.
            .map_err(|e| HubError::Unavailable(e.to_string()))?;
        self.inner.metrics.publishes.increment(1);
        let subscribers = self.inner.rings.subscribers(&msg.topic);
        Ok((msg, subscribers))
    }

    /// Brings the memory budget under its limit by evicting the oldest
    /// messages from history and rings (`budget.rs`); `503` when nothing
    /// is left to evict and it is still over.
    fn make_room(&self) -> Result<(), HubError> {
        let budget = self.inner.rings.budget();
        while budget.over() {
            let Some(oldest) = budget.pop_oldest() else {
                return Err(HubError::Unavailable(format!(
                    "memory budget of {} bytes is full (held by slow subscribers); retry later",
                    budget.limit()
                )));
            };
            self.inner.store.evict(&oldest);
            self.inner.rings.evict(&oldest);
            self.inner.metrics.evictions.increment(1);
        }
        Ok(())
    }

    /// Takes a subscriber slot (`503` past `--max-subscribers`).
    pub fn take_slot(&self) -> Result<Slot, HubError> {
        let max = self.inner.config.max_subscribers;
        let prev = self.inner.subscribers.fetch_add(1, Ordering::AcqRel);
        let slot = Slot(Arc::downgrade(&self.inner));
        if prev >= max {
            drop(slot);
            return Err(HubError::Unavailable(format!(
                "too many subscribers (at most {max}); retry later"
            )));
        }
        Ok(slot)
    }

    /// Opens a subscription: registers for live delivery first, then
    /// looks at the history after `since`, so that nothing falls between
    /// the two; history is then read a page at a time (`history.rs`), and
    /// the seam is closed by skipping live ids already sent from it.
    pub async fn open(&self, spec: &Spec, since: Since, slot: Slot) -> Result<Opened, HubError> {
        let mut live = self
            .inner
            .rings
            .subscribe(&spec.topics, &spec.patterns)
            .map_err(|e| HubError::Unavailable(e.to_string()))?;
        // After registering: a broker that breaks from here on interrupts
        // this subscription (it is told), and one broken already refuses
        // it here, so none waits on a dead feed.
        self.inner
            .broker
            .ready()
            .map_err(|reason| HubError::Unavailable(format!("{reason}; retry later")))?;
        // History up to what live delivery has begun to hand out; the rest
        // comes through the rings this subscription is registered in.
        let through = Some(self.inner.rings.history_bound());
        let after = match since {
            Since::Live => {
                return Ok(Opened {
                    gaps: Vec::new(),
                    history: HistoryReader::empty(),
                    live,
                    slot,
                })
            }
            Since::All => None,
            Since::After(id) => Some(id),
        };
        // Nothing at or below the resume point, live either: history is
        // read only up to the bound, so the rings may still bring older
        // ids (cluster mode, before this node's feed delivered them).
        if let Some(after) = after {
            live.skip_through(after);
        }
        let store = &self.inner.store;
        let mut topics = spec.topics.clone();
        if !spec.patterns.is_empty() {
            let held = store
                .topics()
                .await
                .map_err(|e| HubError::Unavailable(e.to_string()))?;
            for (name, _) in held {
                // Held names are unique: compare with the spec's own names
                // only (not the growing list, which would be quadratic).
                if spec.wants(&name) && !spec.topics.contains(&name) {
                    topics.push(name);
                }
            }
        }
        let (history, gaps) = HistoryReader::open(store.clone(), topics, after, through)
            .await
            .map_err(|e| HubError::Unavailable(e.to_string()))?;
        Ok(Opened {
            gaps,
            history,
            live,
            slot,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_secret_never_shows_in_debug_output() {
        let config = Config {
            auth_secret: Some("hunter2-hunter2".into()),
            ..Config::default()
        };
        let shown = format!("{config:?}");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("auth_secret: Some(\"***\")"), "{shown}");
    }

    #[test]
    fn specs_and_since_parse_with_reasons() {
        let s = Spec::parse("a,farm.*,a").unwrap();
        assert_eq!(s.topics.len(), 1);
        assert_eq!(s.patterns.len(), 1);
        assert!(Spec::parse("a,,b").unwrap_err().contains("empty"));
        assert_eq!(Since::parse("all"), Ok(Since::All));
        assert_eq!(Since::parse("42"), Ok(Since::After(MessageId(42))));
        assert!(Since::parse("x").unwrap_err().contains("bad since"));
        // Regression (issue 9, item 7): past i64::MAX, the durable store
        // wrapped it to a negative id (whole history), the memory store
        // answered nothing. Now both refuse it before reaching a store.
        assert_eq!(
            Since::parse("9223372036854775807"),
            Ok(Since::After(MessageId(i64::MAX as u64)))
        );
        for bad in [
            "9223372036854775808",
            "18446744073709551615",
            "18446744073709551616",
            "-1",
            "+5",
            "1e3",
            "",
            "4 2",
        ] {
            assert!(Since::parse(bad).is_err(), "{bad:?}");
        }
        let long = "9".repeat(10_000);
        assert!(Since::parse(&long).unwrap_err().len() < 200);
    }

    mod props {
        use super::*;
        use proptest::prelude::*;

        proptest! {
            /// Every id up to i64::MAX parses to itself (0 means all).
            #[test]
            fn ids_up_to_i64_max_parse_to_themselves(id in 0..=i64::MAX as u64, pad in "[ \t]{0,2}") {
                let got = Since::parse(&format!("{pad}{id}{pad}"));
                if id == 0 {
                    prop_assert_eq!(got, Ok(Since::All));
                } else {
                    prop_assert_eq!(got, Ok(Since::After(MessageId(id))));
                }
            }

            /// Every number past i64::MAX is refused with a reason.
            #[test]
            fn ids_past_i64_max_are_refused(id in (i64::MAX as u64 + 1)..=u64::MAX, extra in "[0-9]{0,30}") {
                for s in [id.to_string(), format!("{id}{extra}")] {
                    let err = Since::parse(&s).unwrap_err();
                    prop_assert!(err.contains("message ids go up to 9223372036854775807"), "{}", err);
                }
            }

            /// Anything that is not `all` or digits is refused with a
            /// reason, never a panic.
            #[test]
            fn anything_else_is_refused_with_a_reason(s in "\\PC{0,64}") {
                let t = s.trim();
                match Since::parse(&s) {
                    Ok(Since::All) => prop_assert!(t == "all" || t.bytes().all(|b| b == b'0')),
                    Ok(Since::After(id)) => prop_assert_eq!(Ok(id.0), t.parse::<u64>()),
                    Ok(Since::Live) => prop_assert!(false, "parse never says live"),
                    Err(e) => prop_assert!(e.starts_with("bad since"), "{}", e),
                }
            }
        }
    }

    #[tokio::test]
    async fn resume_has_no_gap_and_no_duplicate_at_the_seam() {
        let hub = Hub::new(Config::default(), CancellationToken::new());
        let t = TopicName::new("a").unwrap();
        let (m1, _) = hub.publish(t.clone(), "1".into()).await.unwrap();
        hub.publish(t.clone(), "2".into()).await.unwrap();
        let spec = Spec::parse("a").unwrap();
        let mut opened = hub
            .open(&spec, Since::After(m1.id), hub.take_slot().unwrap())
            .await
            .unwrap();
        hub.publish(t.clone(), "3".into()).await.unwrap();
        let mut history = Vec::new();
        opened.history.next_page(&mut history).await.unwrap();
        if let Some(last) = history.last() {
            opened.live.skip_through(last.id);
        }
        let mut live = Vec::new();
        opened.live.next_batch(&mut live).unwrap();
        let got: Vec<_> = history
            .iter()
            .chain(&live)
            .map(|m| m.text().into_owned())
            .collect();
        assert_eq!(got, ["2", "3"]);
        assert!(opened.gaps.is_empty());
    }
}
