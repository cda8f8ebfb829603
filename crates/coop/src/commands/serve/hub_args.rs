//! The hub's flags on `coop serve`, and the glue that turns them into a
//! hub, its router and its fast path. `serve.rs` flattens `HubArgs`, calls
//! `build` once at start and merges what it returns.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use tokio_util::sync::CancellationToken;

use crate::commands::{parse_duration, ConfigError};

/// Flags of the pub/sub hub.
#[derive(Debug, Args)]
pub struct HubArgs {
    /// Messages of history kept per topic, for `?since=` and
    /// `Last-Event-ID` resumes (0 keeps none).
    #[arg(long, default_value_t = 1000, env = "COOP_HISTORY")]
    pub history: usize,

    /// Drop history older than this (`90s`, `1h`); by default history is
    /// kept by count only.
    #[arg(long, value_parser = parse_duration, env = "COOP_HISTORY_TTL")]
    pub history_ttl: Option<Duration>,

    /// Largest message, in bytes (a larger publish gets `413`).
    #[arg(long, default_value_t = 64 * 1024, env = "COOP_MAX_MESSAGE")]
    pub max_message: usize,

    /// How many messages a subscriber may fall behind before it is
    /// disconnected (with a notice naming the last id it got). Each topic
    /// keeps this many recent messages, shared by all its subscribers.
    #[arg(long, default_value_t = 4096, value_parser = clap::value_parser!(u64).range(16..=1_000_000), env = "COOP_BUFFER")]
    pub buffer: u64,

    /// Most concurrent subscribers; more get `503`.
    #[arg(long, default_value_t = 100_000, env = "COOP_MAX_SUBSCRIBERS")]
    pub max_subscribers: usize,

    /// Most topics held at once; a publish to a new topic past it gets
    /// `503`, and so does a subscription naming topics that would take the
    /// topics with subscribers past it.
    #[arg(long, default_value_t = 100_000, env = "COOP_MAX_TOPICS")]
    pub max_topics: usize,

    /// Memory for messages, history and live buffers together (`256MiB`,
    /// `1GiB`, `500MB`, or bytes). At the limit the oldest messages are
    /// evicted: resuming subscribers get a gap notice, subscribers that had
    /// not read them a lagged notice; if nothing is left to evict, a publish
    /// gets `503`.
    #[arg(long, default_value = "256MiB", value_parser = parse_bytes, env = "COOP_MAX_MEMORY")]
    pub max_memory: u64,

    /// Most live pattern subscriptions (`farm.*`), all clients together;
    /// past it a subscription with a pattern gets `503`. Each new topic is
    /// matched against all of them.
    #[arg(long, default_value_t = 10_000, env = "COOP_MAX_PATTERNS")]
    pub max_patterns: usize,

    /// Most topics and patterns in one subscription (`a,b,farm.*` is 3);
    /// more is `400`.
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u64).range(1..=100_000), env = "COOP_MAX_SUBSCRIPTION_TOPICS")]
    pub max_subscription_topics: u64,

    /// Publishes per second allowed per client address (`429` with
    /// `Retry-After` past it); unlimited by default.
    #[arg(long, env = "COOP_PUBLISH_RATE")]
    pub publish_rate: Option<f64>,

    /// Publishes a client may burst above `--publish-rate`.
    #[arg(long, default_value_t = 10, env = "COOP_PUBLISH_BURST")]
    pub publish_burst: u32,

    /// Reverse proxies to believe about who the client is, for
    /// `--publish-rate`: addresses or CIDRs, comma-separated
    /// (`10.0.0.0/8,::1`). Off by default.
    ///
    /// A client is an IPv4 address or an IPv6 /64. Behind a proxy every
    /// TCP peer is the proxy, so all clients share one bucket; with this
    /// flag, when the peer is in one of these ranges, the client is the
    /// rightmost address in the proxy's forwarding header (see
    /// `--proxy-header`) that is not itself in these ranges. What a client
    /// writes in that header itself is to the left, and ignored. A missing
    /// or unreadable header counts as the proxy itself (a tighter limit).
    /// Peers outside these ranges are always their own client.
    #[arg(long, value_name = "CIDR[,CIDR]", value_parser = parse_proxies, env = "COOP_TRUST_PROXY")]
    pub trust_proxy: Option<ProxyList>,

    /// With `--trust-proxy`: the header the proxy writes,
    /// `x-forwarded-for` or `forwarded` (RFC 7239 `for=`). Only this one
    /// is read: a client could send the other itself.
    #[arg(
        long,
        default_value = "x-forwarded-for",
        value_name = "HEADER",
        env = "COOP_PROXY_HEADER"
    )]
    pub proxy_header: hub::limit::ProxyHeader,

    /// Interval of SSE heartbeat comments, NDJSON empty lines and
    /// WebSocket pings on idle streams.
    #[arg(long, default_value = "15s", value_parser = parse_duration, env = "COOP_HEARTBEAT")]
    pub heartbeat: Duration,

    /// Disconnect a client when one write to it makes no progress for this
    /// long (it stopped reading; its socket buffer is full): subscribers
    /// on every transport, and any connection served through hyper.
    #[arg(long, default_value = "30s", value_parser = parse_duration, env = "COOP_WRITE_TIMEOUT")]
    pub write_timeout: Duration,

    /// Answer `408` to a publish whose body has not arrived within this.
    #[arg(long, default_value = "30s", value_parser = parse_duration, env = "COOP_BODY_TIMEOUT")]
    pub body_timeout: Duration,

    /// Close a subscription that received no message for this long
    /// (heartbeats do not count); never by default.
    #[arg(long, value_parser = parse_duration, env = "COOP_IDLE_TIMEOUT")]
    pub idle_timeout: Option<Duration>,

    /// Enable access control: HS256 secret of the JWTs whose `coop.publish`
    /// and `coop.subscribe` claims list the topic patterns allowed. Tokens
    /// must carry `exp` (see `--auth-allow-no-exp`); `nbf` is checked. A
    /// subscription is allowed only if every topic it can match is matched
    /// by some subscribe claim (`farm.*` grants `farm.cow`, not `farm.**`).
    ///
    /// Prefer `--auth-secret-file` or the `COOP_AUTH_SECRET` variable: a
    /// flag's value shows in `ps` to every user of the machine. Use a
    /// random secret of at least 32 bytes (shorter ones get a warning:
    /// they can be brute-forced offline from any one token).
    #[arg(long, env = "COOP_AUTH_SECRET", hide_env_values = true)]
    pub auth_secret: Option<String>,

    /// Read the auth secret (see `--auth-secret`) from this file; one
    /// trailing newline is ignored.
    #[arg(long, env = "COOP_AUTH_SECRET_FILE", conflicts_with = "auth_secret")]
    pub auth_secret_file: Option<std::path::PathBuf>,

    /// Accept tokens without an `exp` claim. By default they are refused
    /// (`401`), since they would never expire.
    #[arg(long, env = "COOP_AUTH_ALLOW_NO_EXP")]
    pub auth_allow_no_exp: bool,

    /// Threads that write to streaming subscribers, apart from the ones
    /// that accept connections and answer publishes (0: share them).
    #[arg(long, default_value_t = 1, env = "COOP_FANOUT_THREADS")]
    pub fanout_threads: usize,

    /// Origin allowed to use the hub from a browser (repeat, or `*`).
    #[arg(long = "cors-origin", env = "COOP_CORS_ORIGINS", value_delimiter = ',')]
    pub cors_origins: Vec<String>,

    /// A name clients may use for this server in `Host`, besides the
    /// loopback names and the `--bind` address (repeat; `*`: any). Other
    /// names get `421`: a hub is not driven from a browser by a DNS name
    /// rebound to it.
    #[arg(
        long = "allowed-host",
        env = "COOP_ALLOWED_HOSTS",
        value_delimiter = ','
    )]
    pub allowed_hosts: Vec<String>,

    /// Keep history durably in this directory (SQLite, WAL): publishes are
    /// answered once on disk, and a restart (even `kill -9`) loses nothing
    /// that was answered. One process per directory.
    ///
    /// The directory is made `0700` and its files `0600`, whatever the
    /// umask. An existing directory open to other users is tightened (with
    /// a warning) if it holds only coop's files, and refused otherwise
    /// (`/tmp`, a home directory): give coop a directory of its own.
    #[arg(long, env = "COOP_DATA_DIR", conflicts_with_all = ["redis", "redis_sentinel"])]
    pub data_dir: Option<std::path::PathBuf>,

    /// With `--data-dir`: fsync every commit (survives power loss, not
    /// only a crash of the process), at a large cost in publishes/s.
    #[arg(long, env = "COOP_DATA_FSYNC", requires_if("true", "data_dir"))]
    pub data_fsync: bool,

    /// Cluster mode: ids, history and fan-out through this Redis
    /// (`redis://host:6379/0`); every node on the same Redis acts as one hub.
    /// Repeat (or separate with commas) for several shards: each topic
    /// lives on one, chosen by a hash of its name; give every node the same
    /// list in the same order.
    ///
    /// A password (`redis://user:PASSWORD@host`) is never printed: logs,
    /// errors and `/readyz` show `***`. Prefer `COOP_REDIS_URL` to the
    /// flag, which other users can read in `ps`.
    #[arg(
        long,
        env = "COOP_REDIS_URL",
        hide_env_values = true,
        value_delimiter = ',',
        conflicts_with = "redis_sentinel"
    )]
    pub redis: Vec<String>,

    /// Cluster mode through Redis Sentinel: the sentinels (`HOST:PORT`,
    /// comma-separated) that name the primary of each `--redis-master`.
    /// Nodes find the primary through them and follow a failover on their
    /// own.
    #[arg(
        long,
        env = "COOP_REDIS_SENTINEL",
        value_delimiter = ',',
        requires = "redis_master"
    )]
    pub redis_sentinel: Vec<String>,

    /// With `--redis-sentinel`: the name a primary is monitored under.
    /// Repeat (or separate with commas) for several shards, one primary
    /// each.
    #[arg(
        long,
        env = "COOP_REDIS_MASTER",
        value_delimiter = ',',
        requires = "redis_sentinel"
    )]
    pub redis_master: Vec<String>,

    /// Cluster mode: answer a publish only once the primary and this many
    /// of its replicas hold it (Redis `WAIT`); otherwise `503` with the
    /// reason. With 1 or more, a failover loses no acknowledged message.
    #[arg(long, env = "COOP_REDIS_MIN_REPLICAS", default_value_t = 0)]
    pub redis_min_replicas: usize,

    /// With `--redis-min-replicas`: how long a publish waits for the
    /// replicas before it is refused.
    #[arg(
        long,
        env = "COOP_REDIS_MIN_REPLICAS_TIMEOUT",
        default_value = "1s",
        value_parser = crate::commands::parse_nonzero_duration
    )]
    pub redis_min_replicas_timeout: std::time::Duration,
}

/// A size in bytes: a number with an optional unit, decimal (`kB`, `MB`,
/// `GB`) or binary (`KiB`, `MiB`, `GiB`), case-insensitive.
fn parse_bytes(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let num: f64 = num
        .parse()
        .map_err(|_| format!("{s:?} is not a size (expected a number and a unit, like 256MiB)"))?;
    let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" => 1_000,
        "kib" => 1 << 10,
        "m" | "mb" => 1_000_000,
        "mib" => 1 << 20,
        "g" | "gb" => 1_000_000_000,
        "gib" => 1 << 30,
        other => {
            return Err(format!(
                "unknown unit {other:?} in {s:?} (use B, kB, MB, GB, KiB, MiB or GiB)"
            ))
        }
    };
    let bytes = num * mult as f64;
    if !(bytes.is_finite() && bytes >= 1.0 && bytes < u64::MAX as f64) {
        return Err(format!("{s:?} is out of range"));
    }
    Ok(bytes as u64)
}

/// The ranges of `--trust-proxy` (one flag value, comma-separated).
#[derive(Debug, Clone)]
pub struct ProxyList(pub Vec<hub::limit::IpNet>);

fn parse_proxies(s: &str) -> Result<ProxyList, String> {
    match hub::limit::TrustedProxies::parse_nets(s)? {
        nets if nets.is_empty() => Err("no address or CIDR given".into()),
        nets => Ok(ProxyList(nets)),
    }
}

/// What the hub hands to `serve.rs`.
pub struct HubParts {
    /// Routes of the hub (`/`, `/topics/...`, `/api/...`), merged with the
    /// Animals API's router.
    pub router: axum::Router,
    /// Readiness of the hub's backends for `/readyz`: `Err(reason)` when,
    /// say, Redis is unreachable or this node's pub/sub feed is down.
    pub health: Arc<dyn Fn() -> Result<(), String> + Send + Sync>,
    /// Fast path for streaming subscribers: `serve.rs` offers each new
    /// connection to it before hyper; a plain `GET /` or `GET /topics/...`
    /// is then served by the hub on its own socket (one write per batch,
    /// no per-connection HTTP machinery); anything else comes back
    /// untouched. `None` serves everything through the router.
    pub takeover: Option<hub::Takeover>,
    /// The hub, for routes outside it that need its access control
    /// (`/metrics` with `--auth-secret`).
    pub hub: hub::Hub,
}

impl HubArgs {
    /// Checks the flags into the hub's configuration.
    pub fn config(&self, bind: std::net::IpAddr) -> Result<hub::Config, ConfigError> {
        if self.max_message == 0 {
            return Err(ConfigError("--max-message must be at least 1".into()));
        }
        if let Some(rate) = self.publish_rate {
            if !(rate.is_finite() && rate > 0.0) {
                return Err(ConfigError(format!(
                    "--publish-rate {rate} must be a positive number of publishes per second"
                )));
            }
        }
        if self.write_timeout.is_zero() || self.body_timeout.is_zero() {
            return Err(ConfigError(
                "--write-timeout and --body-timeout must be more than zero".into(),
            ));
        }
        if self.heartbeat.is_zero() {
            return Err(ConfigError("--heartbeat must be more than zero".into()));
        }
        let auth_secret = match (&self.auth_secret, &self.auth_secret_file) {
            (Some(s), _) if s.is_empty() => {
                return Err(ConfigError("--auth-secret is empty".into()));
            }
            (Some(s), _) => Some(s.clone()),
            (None, Some(path)) => Some(read_secret(path)?),
            (None, None) => None,
        };
        Ok(hub::Config {
            retention: hub::store::Retention {
                max_count: self.history,
                max_age: self.history_ttl,
                ..Default::default()
            },
            buffer: self.buffer as usize,
            max_message: self.max_message,
            max_subscribers: self.max_subscribers,
            max_topics: self.max_topics,
            max_memory: usize::try_from(self.max_memory).unwrap_or(usize::MAX),
            max_subscription_topics: self.max_subscription_topics as usize,
            max_patterns: self.max_patterns,
            publish_rate: self.publish_rate.map(|r| (r, self.publish_burst)),
            heartbeat: self.heartbeat,
            write_timeout: self.write_timeout,
            body_timeout: self.body_timeout,
            idle_timeout: self.idle_timeout,
            auth_secret,
            auth_allow_no_exp: self.auth_allow_no_exp,
            cors_origins: self.cors_origins.clone(),
            allowed_hosts: hub::origin::AllowedHosts::new(bind, &self.allowed_hosts),
            trusted_proxies: hub::limit::TrustedProxies {
                nets: self
                    .trust_proxy
                    .as_ref()
                    .map(|p| p.0.clone())
                    .unwrap_or_default(),
                header: self.proxy_header,
            },
            ..hub::Config::default()
        })
    }
}

impl HubArgs {
    /// Cluster mode's shards from `--redis` or `--redis-sentinel` and
    /// `--redis-master`; `None` without either.
    pub fn cluster(&self) -> Result<Option<hub::cluster::ClusterSpec>, ConfigError> {
        use hub::cluster::{ClusterSpec, ShardSpec, MAX_SHARDS};
        let shards: Vec<ShardSpec> = if !self.redis_sentinel.is_empty() {
            if let Some(bad) = self.redis_sentinel.iter().find(|s| {
                !s.contains("://")
                    && s.rsplit_once(':')
                        .is_none_or(|(_, p)| p.parse::<u16>().is_err())
            }) {
                return Err(ConfigError(format!(
                    "--redis-sentinel {bad:?} is not HOST:PORT"
                )));
            }
            self.redis_master
                .iter()
                .map(|m| ShardSpec::Sentinel {
                    sentinels: self.redis_sentinel.clone(),
                    master: m.clone(),
                })
                .collect()
        } else {
            self.redis
                .iter()
                .map(|u| ShardSpec::Url(u.clone()))
                .collect()
        };
        if shards.is_empty() {
            if self.redis_min_replicas > 0 {
                return Err(ConfigError(
                    "--redis-min-replicas needs cluster mode (--redis or --redis-sentinel)".into(),
                ));
            }
            return Ok(None);
        }
        if shards.len() > MAX_SHARDS {
            return Err(ConfigError(format!(
                "{} Redis shards given; at most {MAX_SHARDS}",
                shards.len()
            )));
        }
        if self.redis_min_replicas_timeout > std::time::Duration::from_secs(60) {
            return Err(ConfigError(
                "--redis-min-replicas-timeout is at most 60s".into(),
            ));
        }
        Ok(Some(ClusterSpec {
            shards,
            min_replicas: self.redis_min_replicas,
            wait_timeout: self.redis_min_replicas_timeout,
        }))
    }
}

/// The secret in `path`, without one trailing newline (`\n` or `\r\n`, as
/// editors and `echo` leave); the rest is kept byte for byte.
fn read_secret(path: &std::path::Path) -> Result<String, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        ConfigError(format!(
            "--auth-secret-file {}: cannot read it: {e}",
            path.display()
        ))
    })?;
    let secret = text
        .strip_suffix("\r\n")
        .or_else(|| text.strip_suffix('\n'))
        .unwrap_or(&text);
    if secret.is_empty() {
        return Err(ConfigError(format!(
            "--auth-secret-file {} is empty",
            path.display()
        )));
    }
    Ok(secret.to_string())
}

/// Builds the hub from its flags. `shutdown` is cancelled on SIGINT/SIGTERM;
/// long-lived streams watch it and end themselves.
pub async fn build(
    args: &HubArgs,
    bind: std::net::IpAddr,
    shutdown: CancellationToken,
) -> anyhow::Result<HubParts> {
    let config = args.config(bind)?;
    let storage = match (&args.data_dir, args.cluster()?) {
        (Some(dir), _) => hub::Storage::Sqlite {
            dir: dir.clone(),
            options: hub::store::sqlite::SqliteOptions {
                fsync: args.data_fsync,
                ..Default::default()
            },
        },
        (None, Some(spec)) => hub::Storage::Cluster(spec),
        (None, None) => hub::Storage::Memory,
    };
    let hub = hub::Hub::with_storage(config, &storage, shutdown).await?;
    let health_hub = hub.clone();
    Ok(HubParts {
        router: hub::router(hub.clone()),
        health: Arc::new(move || health_hub.health()),
        takeover: Some(takeover(hub.clone(), args.fanout_threads)?),
        hub,
    })
}

/// Subscriber tasks on threads of their own (`--fanout-threads`), so that
/// publishes are never queued behind a round of deliveries (see
/// `hub::Takeover::with_threads`); 0 keeps them on the main runtime.
fn takeover(hub: hub::Hub, threads: usize) -> anyhow::Result<hub::Takeover> {
    if threads == 0 {
        return Ok(hub::Takeover::new(hub));
    }
    hub::Takeover::with_threads(hub, threads).context("cannot start the delivery threads")
}

#[cfg(test)]
mod tests {
    use super::{parse_bytes, read_secret};

    #[test]
    fn a_secret_file_loses_one_trailing_newline_only() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secret");
        for (text, want) in [
            ("abc\n", Ok("abc")),
            ("abc\r\n", Ok("abc")),
            ("abc", Ok("abc")),
            ("abc \n\n", Ok("abc \n")),
        ] {
            std::fs::write(&path, text).unwrap();
            assert_eq!(read_secret(&path).as_deref().map_err(|_| ()), want);
        }
        std::fs::write(&path, "\n").unwrap();
        assert!(read_secret(&path).unwrap_err().0.contains("is empty"));
        let missing = dir.path().join("nope");
        assert!(read_secret(&missing)
            .unwrap_err()
            .0
            .contains("cannot read it"));
    }

    #[test]
    fn sizes_parse_with_units_and_refuse_nonsense_with_a_reason() {
        assert_eq!(parse_bytes("256MiB"), Ok(256 << 20));
        assert_eq!(parse_bytes("1gib"), Ok(1 << 30));
        assert_eq!(parse_bytes("500MB"), Ok(500_000_000));
        assert_eq!(parse_bytes("4096"), Ok(4096));
        assert_eq!(parse_bytes("1.5 KiB"), Ok(1536));
        assert!(parse_bytes("lots").unwrap_err().contains("not a size"));
        assert!(parse_bytes("5 parsecs")
            .unwrap_err()
            .contains("unknown unit"));
        assert!(parse_bytes("0").unwrap_err().contains("out of range"));
    }
}
