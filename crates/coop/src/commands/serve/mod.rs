//! `coop serve`: builds one router from the Animals API and the hub, adds
//! `/healthz` (liveness), `/readyz` (readiness) and `/metrics`, and hands it with the two fast paths to the
//! front door (`gate`), which owns every connection: accepting, limits,
//! timeouts, one head parse, fast paths or hyper, TLS and the drain.
//!
//! What the binary itself owns:
//!
//! - the flags (each limit of the gate has one, with a default);
//! - `/metrics` (Prometheus text) on the main port, behind the hub's token
//!   when `--auth-secret` is set (a subscribe claim of `**`: the figures
//!   cover every topic), or on its own address with `--metrics-addr` (then
//!   not on the main port, and without a token: keep it private);
//! - signals: SIGINT/SIGTERM cancel one `CancellationToken` (shared with
//!   the hub and the gate), accepting stops, in-flight requests finish
//!   within `--drain-timeout`, then the process exits 0; SIGHUP reloads
//!   the TLS certificate.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use axum::extract::{DefaultBodyLimit, Query};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use clap::Args;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use tokio_util::sync::CancellationToken;

use self::hub_args::HubArgs;
use super::{parse_duration, parse_nonzero_duration, ConfigError};

pub mod config;
pub mod hub_args;

/// Flags of `coop serve`.
///
/// Durations take units: `250ms`, `5s`, `1m`.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Read settings from this TOML file: each key is a flag's long name,
    /// as in `max-connections = 1000`, `delay = "5s"`, `allowed-host =
    /// ["a", "b"]`, `data-fsync = true`.
    ///
    /// A flag overrides the environment (`COOP_*`), which overrides the
    /// file, which overrides the defaults. An unknown key or a bad value
    /// is an error naming it. See `deploy/coop.toml` for an example.
    #[arg(long, value_name = "FILE", env = "COOP_CONFIG")]
    pub config: Option<PathBuf>,

    /// Print the settings in effect (after the file, the environment and
    /// the flags) as a file for `--config`, each with where it came from,
    /// and exit without serving.
    ///
    /// Secrets show as `***` (`--auth-secret`, the password of a `--redis`
    /// URL). Files named by the settings (`--catalog`, `--tls-cert`,
    /// `--auth-secret-file`, ...) are not read: a configuration can be
    /// checked on a machine that does not have them.
    #[arg(long)]
    pub print_config: bool,

    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1", env = "COOP_BIND")]
    pub bind: std::net::IpAddr,

    /// Port to listen on (0 picks a free one; the real address is printed).
    #[arg(long, short, default_value_t = 8080, env = "COOP_PORT")]
    pub port: u16,

    /// How long a known animal takes to answer (the talk: 5s).
    #[arg(long, default_value = "5s", value_parser = parse_duration, env = "COOP_DELAY")]
    pub delay: Duration,

    /// Upper bound for a request's own `?delay=`.
    #[arg(long, default_value = "60s", value_parser = parse_duration, env = "COOP_MAX_DELAY")]
    pub max_delay: Duration,

    /// Move each delay by a random amount within ±JITTER.
    #[arg(long, default_value = "0s", value_parser = parse_duration, env = "COOP_JITTER")]
    pub jitter: Duration,

    /// Animals from a TOML or JSON file, extending the talk's twelve (or
    /// replacing them with `mode = "replace"`).
    ///
    /// Format: `[[animals]]` entries with `name` and `sound`; names are 1-64
    /// ASCII letters, digits, `-` or `_`.
    #[arg(long, env = "COOP_CATALOG")]
    pub catalog: Option<PathBuf>,

    /// Answer this share of animal requests (0 to 1) with `503` and
    /// `Retry-After`, to test clients against faults.
    #[arg(long, default_value_t = 0.0, value_parser = parse_rate, env = "COOP_ERROR_RATE")]
    pub error_rate: f64,

    /// Seconds sent in `Retry-After` with those `503`s (and with the
    /// `429`s and `503`s drawn by `status=`).
    #[arg(long, default_value_t = 1, env = "COOP_RETRY_AFTER")]
    pub retry_after: u32,

    /// Faults for every animal request, in the query-string form a request
    /// uses (a request's own parameters override them).
    ///
    /// Parameters: `delay=` (`2`, `250ms`, `uniform:MIN..MAX`,
    /// `lognormal:P50,P99`), `status=` (`503` or weighted
    /// `200:0.7,503:0.3`; `429`/`503` carry `Retry-After`), `bytes=N`,
    /// `drip=DURATION` or `bandwidth=BYTES_PER_S`, `fault=` (`reset`,
    /// `reset-mid`, `empty`, `truncate`, `bad-length`, `bad-chunk`,
    /// `garbage`, `blackhole`, `slow-close`), `toxicity=P` (share of
    /// requests the fault hits), `seed=N`, `hold=DURATION` (`slow-close`).
    /// Example: --faults 'delay=lognormal:100ms,2s&fault=reset&toxicity=0.1'
    #[arg(long, value_name = "QUERY", value_parser = parse_faults, env = "COOP_FAULTS")]
    pub faults: Option<Box<animals::faults::Spec>>,

    /// Faults per animal from a TOML file: an `[all]` table and
    /// `[animals.NAME]` tables whose keys are the parameters of `--faults`.
    /// `--faults` and a request's parameters override it.
    #[arg(long, value_name = "FILE", env = "COOP_SCENARIO")]
    pub scenario: Option<PathBuf>,

    /// Make the sequence of fault outcomes reproducible: requests that
    /// arrive in the same order get the same delays, statuses and faults.
    /// (A request's own `seed=` makes that one request reproducible.)
    #[arg(long, env = "COOP_SEED")]
    pub seed: Option<u64>,

    /// Open connections at most; more get `503` and are closed.
    ///
    /// Each connection costs a file descriptor: keep this below `ulimit -n`.
    #[arg(long, default_value_t = 16_384, value_parser = clap::value_parser!(u32).range(1..), env = "COOP_MAX_CONNECTIONS")]
    pub max_connections: u32,

    /// Open connections from one client address at most (IPv4, or IPv6
    /// /64); more get `503` and are closed. The default leaves a quarter
    /// of `--max-connections` to other clients.
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..), env = "COOP_MAX_CONNECTIONS_PER_IP")]
    pub max_connections_per_ip: Option<u32>,

    /// Requests being answered at once, over every connection and HTTP/2
    /// stream; more get `503` with `Retry-After`. A streaming answer
    /// (a subscription) counts until its head is sent.
    #[arg(long, default_value_t = 16_384, value_parser = clap::value_parser!(u32).range(1..), env = "COOP_MAX_IN_FLIGHT")]
    pub max_in_flight: u32,

    /// Concurrent streams allowed on one HTTP/2 connection (clients wait
    /// for a free stream past it).
    #[arg(long, default_value_t = 256, value_parser = clap::value_parser!(u32).range(1..), env = "COOP_H2_MAX_STREAMS")]
    pub h2_max_streams: u32,

    /// Serve TLS with this certificate chain (PEM, leaf first); needs
    /// `--tls-key`. Browsers then speak HTTP/2 (ALPN), so one connection
    /// carries every stream of a page. Reloaded on SIGHUP and when the
    /// file changes.
    #[arg(long, value_name = "FILE", requires = "tls_key", env = "COOP_TLS_CERT")]
    pub tls_cert: Option<PathBuf>,

    /// The private key of `--tls-cert` (PEM: PKCS#8, PKCS#1 or SEC1).
    #[arg(long, value_name = "FILE", requires = "tls_cert", env = "COOP_TLS_KEY")]
    pub tls_key: Option<PathBuf>,

    /// Time a client has to send a request's headers (and the first byte
    /// of a new connection, or the TLS handshake), and how long an idle
    /// keep-alive connection stays open. Slower clients are disconnected.
    #[arg(long, default_value = "10s", value_parser = parse_nonzero_duration, env = "COOP_HEADER_TIMEOUT")]
    pub header_timeout: Duration,

    /// Largest request line plus headers, in bytes (hyper answers `431`
    /// beyond it; at least 8192).
    #[arg(long, default_value_t = 16 * 1024, value_parser = clap::value_parser!(u32).range(8192..), env = "COOP_MAX_HEADER_BYTES")]
    pub max_header_bytes: u32,

    /// Largest request body a handler reads, in bytes (`413` beyond it).
    #[arg(long, default_value_t = 1024 * 1024, env = "COOP_MAX_BODY_BYTES")]
    pub max_body_bytes: usize,

    /// On SIGINT/SIGTERM, how long in-flight requests may take to finish
    /// before the server exits anyway.
    #[arg(long, default_value = "10s", value_parser = parse_duration, env = "COOP_DRAIN_TIMEOUT")]
    pub drain_timeout: Duration,

    /// Serve `/metrics` on this address only (`127.0.0.1:9090`), not on the
    /// main port: for a Prometheus scraper on a private interface.
    ///
    /// Without it `/metrics` is on the main port; with `--auth-secret` it
    /// then needs a token whose subscribe claims include `**` (`401`
    /// without a valid token, `403` with a narrower one), since its
    /// figures cover every topic. On its own address it needs no token:
    /// keep that address private.
    #[arg(long, value_name = "ADDR", env = "COOP_METRICS_ADDR")]
    pub metrics_addr: Option<SocketAddr>,

    /// Send every animal request through hyper and the router, not the
    /// socket-level fast path (HTTP/1.1) or the farm's HTTP/2 path (for
    /// comparison; the answers are the same).
    #[arg(long, hide_short_help = true, env = "COOP_NO_DIRECT")]
    pub no_direct: bool,

    #[command(flatten)]
    pub hub: HubArgs,
}

/// Boxed: a `Spec` is large and `ServeArgs` lives in the `Command` enum.
fn parse_faults(s: &str) -> Result<Box<animals::faults::Spec>, String> {
    animals::faults::Spec::parse_flag(s).map(Box::new)
}

fn parse_rate(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(r) if (0.0..=1.0).contains(&r) => Ok(r),
        _ => Err(format!("{s:?} is not a share between 0 and 1 (like 0.05)")),
    }
}

/// Latency buckets in seconds: the farm's answers range from instant (404,
/// `--delay 0`) to the talk's 5 s and beyond.
const LATENCY_BUCKETS: &[f64] = &[
    0.001, 0.005, 0.025, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 7.5, 10.0, 30.0, 60.0,
];

pub async fn run(args: ServeArgs) -> anyhow::Result<ExitCode> {
    // Read before clap parsed (see `serve_config`); here only reported.
    if let Some(path) = &args.config {
        tracing::info!(config = %path.display(), "settings from the file (flags and COOP_* variables override it)");
    }
    let catalog = match &args.catalog {
        Some(path) => animals::Catalog::from_file(path)
            .map_err(|e| ConfigError(e.to_string()))
            .context("bad --catalog")?,
        None => animals::Catalog::builtin(),
    };
    let scenario = match &args.scenario {
        Some(path) => Some(
            animals::faults::Scenario::from_file(path)
                .map_err(|e| ConfigError(e.to_string()))
                .context("bad --scenario")?,
        ),
        None => None,
    };
    if args.max_delay < args.delay {
        return Err(ConfigError(format!(
            "--delay {} is longer than --max-delay {}",
            humantime::format_duration(args.delay),
            humantime::format_duration(args.max_delay)
        ))
        .into());
    }

    // The recorder must be installed before any metric handle is
    // registered (the farm registers its handles when it is built).
    let metrics = install_metrics()?;

    let shutdown = CancellationToken::new();
    spawn_signal_handler(shutdown.clone())?;

    let farm = animals::Farm::new(
        catalog,
        animals::Config {
            delay: args.delay,
            max_delay: args.max_delay,
            jitter: args.jitter,
            error_rate: args.error_rate,
            retry_after_secs: args.retry_after,
            faults: args.faults.as_deref().cloned().unwrap_or_default(),
            scenario,
            seed: args.seed,
        },
    );
    let hub = hub_args::build(&args.hub, args.bind, shutdown.clone())
        .await
        .context("cannot start the hub")?;
    let health = hub.health.clone();
    let store = hub.hub.clone();
    let takeover = hub.takeover.clone();
    let direct = (!args.no_direct).then(|| animals::Direct::new(farm.clone(), shutdown.clone()));
    let router = animals::router(farm)
        .merge(hub.router)
        // Liveness: the process serves requests. A backend's trouble
        // (Redis down) is not a reason to restart it.
        .route("/healthz", get(|| async { "ok" }))
        // Readiness: the backends work and live delivery is whole; `503`
        // with the reason otherwise (cluster mode: a Redis shard or this
        // node's pub/sub feed is down, and subscriptions are refused).
        .route(
            "/readyz",
            get(move || {
                let health = health.clone();
                async move {
                    match health() {
                        Ok(()) => (StatusCode::OK, "ready".to_string()),
                        Err(reason) => (StatusCode::SERVICE_UNAVAILABLE, reason),
                    }
                }
            }),
        )
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(args.max_body_bytes));

    // `/metrics`: on its own address if asked, else on the main port,
    // behind the hub's token when auth is on (see `--metrics-addr`).
    let router = match args.metrics_addr {
        Some(addr) => {
            let listener = gate::listen(addr)
                .with_context(|| format!("cannot listen on --metrics-addr {addr}"))?;
            let local = listener.local_addr()?;
            tracing::info!(%local, "serving /metrics on its own address");
            let app = Router::new().route("/metrics", get(move || render_metrics(metrics.clone())));
            let stop = shutdown.clone();
            tokio::spawn(async move {
                let served = axum::serve(listener, app)
                    .with_graceful_shutdown(stop.cancelled_owned())
                    .await;
                if let Err(err) = served {
                    tracing::error!(error = %err, "the metrics listener failed");
                }
            });
            router
        }
        None => {
            let hub = hub.hub.clone();
            router.route(
                "/metrics",
                get(
                    move |Query(params): Query<HashMap<String, String>>, headers: HeaderMap| {
                        let metrics = metrics.clone();
                        let hub = hub.clone();
                        async move {
                            match hub::server::authorize_hub_wide(&hub, &headers, &params) {
                                Ok(()) => render_metrics(metrics).await,
                                Err(err) => err.into_response(),
                            }
                        }
                    },
                ),
            )
        }
    };

    let tls = match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => {
            let tls = gate::tls::Tls::from_files(cert, key)
                .map_err(|e| ConfigError(e.to_string()))
                .context("bad TLS files")?;
            tls.watch(TLS_WATCH_EVERY, shutdown.clone());
            spawn_reload_on_hangup(tls.clone())?;
            Some(tls)
        }
        _ => None,
    };
    let scheme = if tls.is_some() { "https" } else { "http" };

    let addr = SocketAddr::new(args.bind, args.port);
    let listener = gate::listen(addr).with_context(|| format!("cannot listen on {addr}"))?;
    let local = listener.local_addr()?;
    let router = router.merge(crate::web::router(local));
    // The one line on stdout: scripts and tests wait for it.
    {
        use std::io::Write;
        let mut out = std::io::stdout().lock();
        writeln!(out, "coop listening on {scheme}://{local}")?;
        out.flush()?;
    }
    tracing::info!(%local, delay = ?args.delay, "serving the farm");
    if !local.ip().is_loopback()
        && args.hub.auth_secret.is_none()
        && args.hub.auth_secret_file.is_none()
    {
        tracing::warn!(
            %local,
            "serving on a non-loopback address without --auth-secret: anyone who can reach it \
             may publish and subscribe (see the guide's Security chapter)"
        );
    }

    let limits = gate::Limits {
        max_connections: args.max_connections as usize,
        max_connections_per_ip: args
            .max_connections_per_ip
            .map_or(args.max_connections as usize * 3 / 4, |n| n as usize)
            .max(1),
        max_in_flight: args.max_in_flight as usize,
        h2_max_streams: args.h2_max_streams,
        header_timeout: args.header_timeout,
        max_header_bytes: args.max_header_bytes as usize,
        write_timeout: args.hub.write_timeout,
    };
    // Plain animal requests are answered without hyper (animals'
    // `direct.rs`), streaming subscribers own their socket (hub's
    // `direct.rs`); hyper and the router serve the rest.
    let mut front = gate::Gate::new(router, limits);
    if let Some(direct) = direct {
        front = front.fast_path(direct);
    }
    if let Some(takeover) = takeover {
        front = front.fast_path(takeover);
    }
    if let Some(tls) = tls {
        front = front.tls(tls);
    }
    let drain = front.run(listener, shutdown.clone()).await;

    tracing::info!(
        connections = drain.connections(),
        "shutting down: no longer accepting, draining in-flight requests"
    );
    if drain.finish(args.drain_timeout).await {
        tracing::info!("drained; bye");
    } else {
        tracing::warn!(
            drain_timeout = ?args.drain_timeout,
            "requests still in flight after the drain timeout; closing them"
        );
    }
    // The durable store's last group commit and its files.
    store.close().await;
    Ok(ExitCode::SUCCESS)
}

async fn render_metrics(metrics: PrometheusHandle) -> Response {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        metrics.render(),
    )
        .into_response()
}

async fn not_found() -> Response {
    (StatusCode::NOT_FOUND, "Not found.").into_response()
}

fn install_metrics() -> anyhow::Result<PrometheusHandle> {
    let handle = PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Suffix("duration_seconds".into()), LATENCY_BUCKETS)
        .context("metrics buckets")?
        .install_recorder()
        .context("cannot install the metrics recorder")?;
    // Histograms buffer samples until drained; drain them regularly so
    // memory stays flat between scrapes.
    let upkeep = handle.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(5));
        loop {
            tick.tick().await;
            upkeep.run_upkeep();
        }
    });
    Ok(handle)
}

/// How often the TLS files are checked for a change.
const TLS_WATCH_EVERY: Duration = Duration::from_secs(5);

/// SIGHUP reloads the TLS certificate and key (a failed reload keeps the
/// current ones and says why).
fn spawn_reload_on_hangup(tls: gate::tls::Tls) -> anyhow::Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut hup = signal(SignalKind::hangup()).context("cannot watch SIGHUP")?;
    tokio::spawn(async move {
        while hup.recv().await.is_some() {
            if let Err(err) = tls.reload() {
                tracing::error!(error = %err, "SIGHUP: cannot reload the TLS files; keeping the current certificate");
            }
        }
    });
    Ok(())
}

/// First SIGINT or SIGTERM cancels `shutdown` (graceful); a second one
/// exits at once, for an operator who does not want to wait for the drain.
fn spawn_signal_handler(shutdown: CancellationToken) -> anyhow::Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).context("cannot watch SIGTERM")?;
    let mut int = signal(SignalKind::interrupt()).context("cannot watch SIGINT")?;
    tokio::spawn(async move {
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
        tracing::info!("signal received: shutting down gracefully (again to force)");
        shutdown.cancel();
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
        tracing::warn!("second signal: exiting without draining");
        std::process::exit(1);
    });
    Ok(())
}
