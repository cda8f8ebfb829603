//! One shard: a Redis primary, named by a URL or found through Sentinel,
//! and the connections this node keeps to it.
//!
//! The shard's **feed** (`broker.rs`) owns the connections: each time it
//! (re)connects, it finds the primary (asking the sentinels, with
//! Sentinel), opens a command connection, subscribes, reconciles (tells
//! the primary what this node saw), and only then **installs** the
//! connection as the shard's [`Link`]. The store runs its commands on the
//! installed link only, each bounded by [`COMMAND_TIMEOUT`]. When a command
//! fails on the connection (closed, timed out, `READONLY` from a demoted
//! primary, ...), the link is removed at once and the feed is told to
//! reconnect; until it has, commands fail fast with `503`. So the store
//! never reads from or writes to a primary this node has not reconciled
//! with: a restarted Redis or a promoted replica cannot hide a loss. The
//! connections do not reconnect on their own (no `ConnectionManager`),
//! which is what makes that true.
//!
//! With `--redis-min-replicas N`, publishes go over a connection of their
//! own, each sent together with `WAIT` in one pipeline.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, RwLock};
use std::time::Duration;

use redis::aio::MultiplexedConnection;
use redis::sentinel::Sentinel;
use redis::{AsyncConnectionConfig, Client, ErrorKind, RedisError, Script, Value};
use tokio::sync::Notify;

use super::redact::{redact_in, redact_url};
use super::{Keys, SetupError, COMMAND_TIMEOUT};
use crate::lock;
use crate::message::TopicName;
use crate::store::StoreError;

/// Where a shard's primary is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ShardSpec {
    /// A fixed address (`--redis URL`).
    Url(String),
    /// The primary the sentinels name `master` (`--redis-sentinel`,
    /// `--redis-master`). Sentinels are `HOST:PORT` or `redis://` URLs.
    Sentinel {
        sentinels: Vec<String>,
        master: String,
    },
}

impl ShardSpec {
    /// The shard as logs and errors name it, passwords redacted.
    pub fn shown(&self) -> String {
        match self {
            ShardSpec::Url(url) => redact_url(url),
            ShardSpec::Sentinel { sentinels, master } => format!(
                "master {master:?} via sentinels {}",
                sentinels
                    .iter()
                    .map(|s| redact_url(s))
                    .collect::<Vec<_>>()
                    .join(",")
            ),
        }
    }

    /// Every text that may carry a password, to scrub error text with.
    fn secrets(&self) -> Vec<String> {
        match self {
            ShardSpec::Url(url) => vec![url.clone()],
            ShardSpec::Sentinel { sentinels, .. } => sentinels.clone(),
        }
    }
}

/// The last failure of this shard's commands and of its pub/sub feed.
#[derive(Default)]
pub(crate) struct Health {
    commands: Mutex<Option<String>>,
    pubsub: Mutex<Option<String>>,
}

impl Health {
    fn record<T>(&self, r: &Result<T, StoreError>) {
        *lock(&self.commands) = r.as_ref().err().map(|e| e.to_string());
    }

    pub(crate) fn set_pubsub(&self, state: Option<String>) {
        *lock(&self.pubsub) = state;
    }

    fn pubsub_reason(&self) -> Option<String> {
        lock(&self.pubsub).clone()
    }

    pub(crate) fn check(&self) -> Result<(), String> {
        if let Some(r) = &*lock(&self.pubsub) {
            return Err(format!("pub/sub: {r}"));
        }
        if let Some(r) = &*lock(&self.commands) {
            return Err(r.clone());
        }
        Ok(())
    }
}

/// The connections to the shard's current primary.
#[derive(Clone)]
pub(crate) struct Link {
    /// For pub/sub connections (the feed makes its own).
    pub client: Client,
    /// Reads, scripts, ticks.
    pub conn: MultiplexedConnection,
    /// Publishes and their `WAIT` (with `--redis-min-replicas`).
    writer: Option<MultiplexedConnection>,
    /// `host:port` of the primary.
    pub addr: String,
    /// Which installation this is (see [`Shard::broke`]).
    generation: u64,
}

/// One shard (see the module docs).
pub(crate) struct Shard {
    pub index: usize,
    pub keys: Keys,
    spec: ShardSpec,
    /// The spec as logs name it (redacted).
    pub shown: String,
    secrets: Vec<String>,
    /// The installed link; `None` while the feed reconnects.
    link: RwLock<Option<Link>>,
    generations: AtomicU64,
    /// Told when a command found the installed link broken.
    broken: Notify,
    sentinel: Option<tokio::sync::Mutex<Sentinel>>,
    min_replicas: usize,
    wait_timeout: Duration,
    pub(crate) health: Health,
    /// The newest id this node saw of each topic of this shard (from its
    /// feed, or acknowledged to a publisher): checked against a primary at every reconnect, so that what a
    /// promoted replica lost is recorded as a gap (`scripts::RECONCILE`).
    /// At most `max_known` entries: past it, the oldest half is forgotten
    /// (those topics' losses then go unrecorded unless another node knows
    /// them).
    known: Mutex<HashMap<TopicName, u64>>,
    max_known: usize,
}

fn connection_config(response: Duration) -> AsyncConnectionConfig {
    AsyncConnectionConfig::new()
        .set_connection_timeout(Duration::from_secs(1))
        .set_response_timeout(response)
}

/// Whether `e` means the connection (or the server's role) is gone, as
/// opposed to a command's own failure.
fn is_broken(e: &RedisError) -> bool {
    e.is_io_error()
        || e.is_connection_dropped()
        || e.is_timeout()
        || e.is_unrecoverable_error()
        || matches!(
            e.kind(),
            ErrorKind::ReadOnly | ErrorKind::MasterDown | ErrorKind::BusyLoadingError
        )
}

fn sentinel_url(s: &str) -> String {
    if s.contains("://") {
        s.to_string()
    } else {
        format!("redis://{s}")
    }
}

impl Shard {
    /// Connects to the shard's primary (one attempt, bounded) and checks it
    /// answers: a bad URL or an unreachable Redis is a clear error before
    /// serving.
    pub(crate) async fn connect(
        index: usize,
        spec: ShardSpec,
        min_replicas: usize,
        wait_timeout: Duration,
        max_known: usize,
    ) -> Result<Shard, SetupError> {
        let shown = spec.shown();
        let secrets = spec.secrets();
        let scrub = |text: &str| {
            secrets
                .iter()
                .fold(text.to_string(), |t, s| redact_in(&t, s))
        };
        let sentinel = match &spec {
            ShardSpec::Url(url) => {
                Client::open(url.as_str()).map_err(|e| SetupError::Url {
                    url: shown.clone(),
                    reason: scrub(&e.to_string()),
                })?;
                None
            }
            ShardSpec::Sentinel { sentinels, .. } => {
                let urls: Vec<String> = sentinels.iter().map(|s| sentinel_url(s)).collect();
                let sentinel = Sentinel::build(urls).map_err(|e| SetupError::Url {
                    url: shown.clone(),
                    reason: scrub(&e.to_string()),
                })?;
                Some(tokio::sync::Mutex::new(sentinel))
            }
        };
        let shard = Shard {
            index,
            keys: Keys::for_shard(index),
            spec,
            shown,
            secrets,
            link: RwLock::new(None),
            generations: AtomicU64::new(0),
            broken: Notify::new(),
            sentinel,
            min_replicas,
            wait_timeout,
            health: Health::default(),
            known: Mutex::new(HashMap::new()),
            max_known: max_known.max(16),
        };
        // Reachable now, or a clear error before serving. This first link
        // is installed as it is: a node that has seen nothing has nothing
        // to reconcile.
        let link = shard
            .open()
            .await
            .map_err(|reason| SetupError::Unreachable {
                url: shard.shown.clone(),
                reason: shard.redact(&reason),
            })?;
        shard.install(link);
        Ok(shard)
    }

    /// Connections to the primary the spec names now (asking the
    /// sentinels, with Sentinel), not installed. Bounded in time.
    pub(crate) async fn open(&self) -> Result<Link, String> {
        let work = async {
            let client = match (&self.spec, &self.sentinel) {
                (ShardSpec::Sentinel { master, .. }, Some(sentinel)) => sentinel
                    .lock()
                    .await
                    .async_master_for(master, None)
                    .await
                    .map_err(|e| format!("sentinels: {e}"))?,
                (ShardSpec::Url(url), _) => {
                    Client::open(url.as_str()).map_err(|e| e.to_string())?
                }
                (ShardSpec::Sentinel { .. }, None) => return Err("no sentinel client".into()),
            };
            let addr = client.get_connection_info().addr.to_string();
            let conn = client
                .get_multiplexed_async_connection_with_config(&connection_config(COMMAND_TIMEOUT))
                .await
                .map_err(|e| e.to_string())?;
            let writer = if self.min_replicas > 0 {
                let config = connection_config(COMMAND_TIMEOUT + self.wait_timeout);
                Some(
                    client
                        .get_multiplexed_async_connection_with_config(&config)
                        .await
                        .map_err(|e| e.to_string())?,
                )
            } else {
                None
            };
            Ok(Link {
                client,
                conn,
                writer,
                addr,
                generation: self.generations.fetch_add(1, Ordering::AcqRel) + 1,
            })
        };
        tokio::time::timeout(COMMAND_TIMEOUT * 2, work)
            .await
            .map_err(|_| "timed out".to_string())?
    }

    /// Makes `link` the one the store uses (the feed calls this once it
    /// has subscribed and reconciled on it).
    pub(crate) fn install(&self, link: Link) {
        *self.link.write().unwrap_or_else(|e| e.into_inner()) = Some(link);
    }

    /// Removes the installed link (its feed broke): commands fail fast
    /// until the next [`install`](Shard::install).
    pub(crate) fn uninstall(&self) {
        *self.link.write().unwrap_or_else(|e| e.into_inner()) = None;
    }

    /// A command found the link of `generation` broken: remove it, if it is
    /// still the installed one, and tell the feed.
    fn broke(&self, generation: u64) {
        let mut link = self.link.write().unwrap_or_else(|e| e.into_inner());
        if link.as_ref().is_some_and(|l| l.generation == generation) {
            *link = None;
            drop(link);
            self.broken.notify_one();
        }
    }

    /// Drops the installed link and makes the feed reconnect: the feed
    /// does not hear what the commands do (a tick never came back).
    pub(crate) fn reconnect(&self) {
        let generation = self
            .link
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
            .map(|l| l.generation);
        if let Some(generation) = generation {
            self.broke(generation);
        }
    }

    /// Resolves when a command found the installed link broken.
    pub(crate) async fn broken(&self) {
        self.broken.notified().await;
    }

    /// The installed link, or `503` while the feed reconnects.
    fn link(&self) -> Result<Link, StoreError> {
        self.link
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
            .ok_or_else(|| {
                let why = self
                    .health
                    .pubsub_reason()
                    .unwrap_or_else(|| "reconnecting".into());
                StoreError::Unavailable(format!(
                    "redis shard {} ({}) is not connected: {why}",
                    self.index, self.shown
                ))
            })
    }

    /// `text` (an error of the Redis client) with every password scrubbed.
    pub(crate) fn redact(&self, text: &str) -> String {
        self.secrets
            .iter()
            .fold(text.to_string(), |t, s| redact_in(&t, s))
    }

    /// Runs a script on the installed link, bounded by [`COMMAND_TIMEOUT`].
    pub(crate) async fn run(
        &self,
        script: &Script,
        keys: &[&str],
        args: &[&[u8]],
    ) -> Result<Value, StoreError> {
        let r = match self.link() {
            Ok(link) => self.run_on(&link, script, keys, args).await,
            Err(e) => Err(e),
        };
        self.health.record(&r);
        r
    }

    /// Runs a script on `link` (installed or not yet), bounded by
    /// [`COMMAND_TIMEOUT`]; a broken connection removes the link.
    pub(crate) async fn run_on(
        &self,
        link: &Link,
        script: &Script,
        keys: &[&str],
        args: &[&[u8]],
    ) -> Result<Value, StoreError> {
        let mut inv = script.prepare_invoke();
        for k in keys {
            inv.key(*k);
        }
        for a in args {
            inv.arg(*a);
        }
        let mut conn = link.conn.clone();
        match tokio::time::timeout(COMMAND_TIMEOUT, inv.invoke_async::<Value>(&mut conn)).await {
            Err(_) => {
                self.broke(link.generation);
                Err(StoreError::Unavailable(format!(
                    "redis shard {} did not answer within {COMMAND_TIMEOUT:?}",
                    self.index
                )))
            }
            Ok(r) => self.outcome(link, r),
        }
    }

    fn outcome(&self, link: &Link, r: redis::RedisResult<Value>) -> Result<Value, StoreError> {
        match r {
            Ok(v) => Ok(v),
            Err(e) if e.to_string().contains("TOOMANYTOPICS") => Err(StoreError::TooManyTopics(0)),
            Err(e) => {
                if is_broken(&e) {
                    self.broke(link.generation);
                }
                Err(StoreError::Unavailable(format!(
                    "redis shard {} unavailable: {}",
                    self.index,
                    self.redact(&e.to_string())
                )))
            }
        }
    }

    /// Runs the publish script; with `--redis-min-replicas N`, in one
    /// pipeline with `WAIT N` on the publish connection (so both reach
    /// the same connection: a `WAIT` on another one would count nothing of
    /// ours), and fails unless N replicas confirmed it.
    pub(crate) async fn append(
        &self,
        script: &Script,
        keys: &[&str],
        args: &[&[u8]],
    ) -> Result<Value, StoreError> {
        let link = match self.link() {
            Ok(link) => link,
            Err(e) => {
                let r = Err(e);
                self.health.record(&r);
                return r;
            }
        };
        let Some(mut writer) = link.writer.clone() else {
            let r = self.run_on(&link, script, keys, args).await;
            self.health.record(&r);
            return r;
        };
        let n = self.min_replicas;
        let wait_ms = self.wait_timeout.as_millis() as u64;
        let mut pipe = redis::pipe();
        pipe.cmd("EVALSHA")
            .arg(script.get_hash())
            .arg(keys.len())
            .arg(keys)
            .arg(args)
            .cmd("WAIT")
            .arg(n)
            .arg(wait_ms);
        let deadline = COMMAND_TIMEOUT + self.wait_timeout;
        let mut loaded = false;
        let r = loop {
            let sent =
                tokio::time::timeout(deadline, pipe.query_async::<(Value, i64)>(&mut writer));
            match sent.await {
                Err(_) => {
                    self.broke(link.generation);
                    break Err(StoreError::Unavailable(format!(
                        "redis shard {} did not answer within {deadline:?}",
                        self.index
                    )));
                }
                Ok(Err(e)) if e.kind() == ErrorKind::NoScriptError && !loaded => {
                    loaded = true;
                    if let Err(e) = script.prepare_invoke().load_async(&mut writer).await {
                        break self.outcome(&link, Err(e)).map(|_| (Value::Nil, 0));
                    }
                }
                Ok(Err(e)) => break self.outcome(&link, Err(e)).map(|_| (Value::Nil, 0)),
                Ok(Ok(pair)) => break Ok(pair),
            }
        };
        let r = r.and_then(|(v, acked)| {
            if (acked.max(0) as usize) < n {
                Err(StoreError::Unavailable(format!(
                    "the message reached {acked} of the {n} replicas --redis-min-replicas asks for \
                     within {:?} (redis shard {}): not acknowledged, it may still be delivered",
                    self.wait_timeout, self.index
                )))
            } else {
                Ok(v)
            }
        });
        self.health.record(&r);
        r
    }

    /// Remembers that this node saw `id` of `topic`.
    pub(crate) fn saw(&self, topic: &TopicName, id: u64) {
        let mut known = lock(&self.known);
        match known.get_mut(topic) {
            Some(last) => *last = (*last).max(id),
            None => {
                if known.len() >= self.max_known {
                    // Forget the oldest half: amortised O(1) per insert.
                    let mut ids: Vec<u64> = known.values().copied().collect();
                    let mid = ids.len() / 2;
                    let (_, cut, _) = ids.select_nth_unstable(mid);
                    let cut = *cut;
                    known.retain(|_, v| *v > cut);
                }
                known.insert(topic.clone(), id);
            }
        }
    }

    /// What this node saw, as `RECONCILE` arguments (topic, id, ...).
    pub(crate) fn known(&self) -> Vec<(TopicName, u64)> {
        lock(&self.known)
            .iter()
            .map(|(t, id)| (t.clone(), *id))
            .collect()
    }
}
