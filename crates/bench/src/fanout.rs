//! Hub fan-out load generator: N streaming subscribers over real TCP, M
//! published messages, and what arrived where and when.
//!
//! It targets any server with the talk's raw API (`GET url` streams
//! `message\r\n` lines, `POST url?msg=` or a body publishes), so the same
//! client measures coop, nchan and the talk's aiohttp hub.
//!
//! How a run goes:
//! 1. Subscribers connect, spread over `threads` OS threads. Each thread runs
//!    its own current-thread tokio runtime with its own latency histogram and
//!    counters, and one read buffer shared by all its connections (a read
//!    copies the socket's bytes into it, parses them in place and keeps only
//!    a partial last line), so a subscriber costs a socket, a small decoder
//!    state and a bitset of the sequence numbers it has seen. With
//!    `h2_connections`, a thread drives whole HTTP/2 connections instead:
//!    each carries its share of the subscribers as streams (a task per
//!    stream reading the data the h2 client unframed), as a browser tab's
//!    `EventSource`s share one connection.
//! 2. Priming: servers without a subscriber-count API give no sign that a
//!    subscription is registered, so a priming message is published every
//!    50 ms until every subscriber has received one, then the run waits
//!    `settle` for the priming traffic to drain.
//! 3. Publishers (each with its own keep-alive connection) publish
//!    `{seq}_{send time ns}_{run nonce}_xxx…` padded to `size` bytes, either
//!    closed-loop (next publish after the previous answer) or paced at a
//!    total rate (message k is due at start + k/rate, shared round-robin).
//!    Only `[0-9a-z_]` is used, so `?msg=` needs no escaping (nchan's anchor
//!    does not decode it).
//! 4. Each subscriber parses its lines (with `sse`, each event's `data:`
//!    line; or, with `websocket`, its frames:
//!    the subscriber upgrades its socket and the same per-thread decoding
//!    reads text frames, coop's NDJSON records or nchan's bare messages), marks the sequence number in its
//!    bitset (a second mark is a duplicate, a lower number than the highest
//!    seen is out of order) and records now − send time in its thread's
//!    histogram. The run ends when every delivery arrived or nothing arrived
//!    for `idle_timeout` after the last publish.
//!
//! Deliveries per second are counted from the first publish to the last
//! delivery. Server figures come from `/proc` when pids are given.

use std::cell::{Cell, RefCell};
use std::net::IpAddr;
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use hdrhistogram::Histogram;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper::http;
use hyper_util::rt::TokioIo;
use serde::Serialize;
use tokio::io::{AsyncRead, AsyncWriteExt};
use tokio_util::sync::CancellationToken;

use crate::http::{parse_head, BodyDecoder, LineSplitter};
use crate::probe::{self, ProcSample};
use crate::summary::{new_histogram, Latency};
use crate::target::{self, Target};
use crate::ws::{self, FrameDecoder};
use crate::{now_ns, BenchError};

/// Bytes one subscriber read may take at once. One buffer per thread, not
/// per connection.
const READ_BUF: usize = 64 * 1024;
/// Longest line a subscriber keeps across reads; longer is a protocol error.
const MAX_LINE: usize = 1024 * 1024;
/// The `Accept` of an SSE subscriber.
const SSE: &str = "text/event-stream";
/// Flow-control windows an HTTP/2 subscriber grants, per stream and per
/// connection: a browser's size (Chromium grants 6 MiB and 15 MiB), so that
/// the figures measure the server's streams, not a client slow to credit
/// them. Credit is returned as soon as a chunk is parsed.
const H2_STREAM_WINDOW: u32 = 6 << 20;
const H2_CONNECTION_WINDOW: u32 = 15 << 20;
/// Interval between priming messages.
const PRIME_EVERY: Duration = Duration::from_millis(50);
/// Largest bitset memory (subscribers × messages / 8) a run may allocate.
const MAX_BITSET_BYTES: u64 = 1 << 30;

/// What to run. See `coop bench fanout --help` for each field.
#[derive(Debug, Clone)]
pub struct FanoutConfig {
    /// Subscribe URL (`GET`, streaming).
    pub url: String,
    /// Publish URL (`POST`); the subscribe URL when `None`.
    pub publish_url: Option<String>,
    pub subscribers: usize,
    pub messages: u64,
    pub publishers: usize,
    /// Total messages per second over all publishers; `None` = closed loop.
    pub rate: Option<f64>,
    /// Message size in bytes (a message is never shorter than its header).
    pub size: usize,
    /// Publish the message as the request body instead of `?msg=`.
    pub body: bool,
    /// Subscriber threads.
    pub threads: usize,
    /// Loopback source addresses to spread connections over.
    pub sources: u8,
    /// Connects in progress at once.
    pub connect_concurrency: usize,
    /// Time allowed to connect and prime all subscribers.
    pub connect_timeout: Duration,
    /// Pause after priming, before publishing.
    pub settle: Duration,
    /// Give up when nothing arrives for this long after the last publish.
    pub idle_timeout: Duration,
    /// Server processes to read RSS and CPU time from.
    pub server_pids: Vec<u32>,
    /// Subscribers upgrade to WebSocket instead of streaming a response.
    pub websocket: bool,
    /// Subscribers ask for Server-Sent Events (`Accept: text/event-stream`)
    /// and read each message from its `data:` line.
    pub sse: bool,
    /// Carry the subscribers as HTTP/2 streams (h2c, prior knowledge) over
    /// this many connections instead of one HTTP/1.1 connection each.
    pub h2_connections: Option<usize>,
}

impl Default for FanoutConfig {
    fn default() -> Self {
        FanoutConfig {
            url: "http://127.0.0.1:8080/".into(),
            publish_url: None,
            subscribers: 1000,
            messages: 1000,
            publishers: 1,
            rate: None,
            size: 64,
            body: false,
            threads: 2,
            sources: 8,
            connect_concurrency: 256,
            connect_timeout: Duration::from_secs(60),
            settle: Duration::from_millis(200),
            idle_timeout: Duration::from_secs(5),
            server_pids: Vec::new(),
            websocket: false,
            sse: false,
            h2_connections: None,
        }
    }
}

/// Server figures for one run (present when pids were given).
#[derive(Debug, Clone, Serialize)]
pub struct ServerFigures {
    /// RSS before the subscribers connected, KiB.
    pub rss_idle_kib: u64,
    /// RSS with every subscriber connected and primed, KiB.
    pub rss_connected_kib: u64,
    /// Peak RSS (VmHWM) at the end of the run, KiB.
    pub rss_peak_kib: u64,
    /// Whether the peak was reset at the start (else it may predate the run).
    pub peak_reset: bool,
    /// (connected − idle) / subscribers, bytes.
    pub bytes_per_subscriber: f64,
    /// CPU time spent from the first publish to the last delivery, µs.
    pub cpu_us: u64,
    /// `cpu_us` / deliveries.
    pub cpu_us_per_delivery: f64,
}

/// The figures of one run.
#[derive(Debug, Clone, Serialize)]
pub struct FanoutReport {
    pub url: String,
    /// How subscribers read: `http` (a streaming HTTP/1.1 response, one
    /// connection each), `h2` (HTTP/2 streams sharing `h2_connections`
    /// connections) or `websocket`.
    pub transport: &'static str,
    /// What the stream carries: `raw` lines, `sse` events, or `websocket`
    /// frames.
    pub format: &'static str,
    /// HTTP/2 connections the streams shared (`h2` only).
    pub h2_connections: Option<usize>,
    pub publish_url: String,
    pub subscribers: usize,
    pub messages: u64,
    pub publishers: usize,
    /// Paced total rate, messages per second (`None` = closed loop).
    pub rate: Option<f64>,
    pub size: usize,
    pub connect_secs: f64,
    /// Messages the publishers got a 2xx answer for.
    pub published: u64,
    pub publish_errors: u64,
    /// subscribers × messages.
    pub expected: u64,
    pub delivered: u64,
    pub lost: u64,
    pub duplicates: u64,
    /// Deliveries with a lower sequence number than one already seen on the
    /// same stream (only a fault with a single publisher).
    pub out_of_order: u64,
    /// Lines that were neither ours nor priming.
    pub stray_lines: u64,
    /// Subscriber streams that failed or ended during the run.
    pub subscriber_errors: u64,
    /// First publish to last publish answer, seconds.
    pub publish_secs: f64,
    /// First publish to last delivery, seconds.
    pub delivery_secs: f64,
    pub deliveries_per_sec: f64,
    /// Offered deliveries per second when paced (rate × subscribers).
    pub offered_per_sec: Option<f64>,
    /// Publish-to-delivery latency.
    pub latency: Latency,
    /// Publish request round trip.
    pub publish_rtt: Latency,
    pub server: Option<ServerFigures>,
    /// The first error any subscriber or publisher saw.
    pub first_error: Option<String>,
}

impl FanoutReport {
    /// Every message reached every subscriber exactly once, nothing failed.
    pub fn passed(&self) -> bool {
        self.lost == 0
            && self.duplicates == 0
            && self.subscriber_errors == 0
            && self.publish_errors == 0
    }
}

/// Counters shared by every subscriber thread and the coordinator.
#[derive(Default)]
struct Shared {
    /// Subscribers connected with their request written.
    requested: AtomicUsize,
    /// Subscribers that saw a priming line.
    primed: AtomicUsize,
    /// New (non-duplicate) deliveries of this run's messages.
    delivered: AtomicU64,
    /// Subscribers that failed to connect or whose stream failed or ended.
    failed: AtomicUsize,
    first_error: Mutex<Option<String>>,
}

impl Shared {
    fn first_error(&self) -> Option<String> {
        self.first_error
            .lock()
            .expect("no panics while held")
            .clone()
    }

    fn fail(&self, what: String) {
        self.failed.fetch_add(1, Ordering::Relaxed);
        let mut first = self.first_error.lock().expect("no panics while held");
        if first.is_none() {
            *first = Some(what);
        }
    }
}

/// What every subscriber of every thread needs to know.
struct RunCtx {
    addr: std::net::SocketAddr,
    /// The HTTP/1.1 request a raw-socket subscriber writes.
    request: Vec<u8>,
    /// The absolute URI an HTTP/2 stream asks for (its `:authority` and
    /// `:path`).
    uri: http::Uri,
    websocket: bool,
    sse: bool,
    nonce: [u8; 8],
    prime_line: Vec<u8>,
    messages: u64,
    shared: Arc<Shared>,
}

/// One thread's state, shared by its subscriber tasks (`Rc`: they all run
/// on this thread's runtime).
struct Shard {
    ctx: Arc<RunCtx>,
    buf: RefCell<Box<[u8]>>,
    hist: RefCell<Histogram<u64>>,
    duplicates: Cell<u64>,
    out_of_order: Cell<u64>,
    stray: Cell<u64>,
    last_delivery_ns: Cell<u64>,
    connects: tokio::sync::Semaphore,
}

/// What a thread hands back when the run ends (and all of them, merged).
struct ShardResult {
    hist: Histogram<u64>,
    duplicates: u64,
    out_of_order: u64,
    stray: u64,
    last_delivery_ns: u64,
}

/// Runs one fan-out benchmark. Errors only when the run cannot start
/// (bad URL, subscribers that do not connect); losses are in the report.
pub async fn run(cfg: FanoutConfig) -> Result<FanoutReport, BenchError> {
    validate(&cfg)?;
    let sub_target = Target::parse(&cfg.url).await?;
    let pub_target = match &cfg.publish_url {
        Some(u) => Target::parse(u).await?,
        None => sub_target.clone(),
    };
    let sources = target::sources(&sub_target.addr, cfg.sources);
    let nonce_val = (now_ns() ^ ((std::process::id() as u64) << 24)) as u32;
    let nonce: [u8; 8] = format!("{nonce_val:08x}")
        .into_bytes()
        .try_into()
        .expect("8 hex digits");
    let prime_msg = format!("prime_{}", String::from_utf8_lossy(&nonce));
    let shared = Arc::new(Shared::default());
    let ctx = Arc::new(RunCtx {
        addr: sub_target.addr,
        request: if cfg.websocket {
            ws::upgrade_request(&sub_target.path_and_query, &sub_target.authority)
        } else if cfg.sse {
            sub_target.get_request_accepting(SSE)
        } else {
            sub_target.get_request()
        },
        uri: sub_target.uri()?,
        websocket: cfg.websocket,
        sse: cfg.sse,
        nonce,
        prime_line: prime_msg.clone().into_bytes(),
        messages: cfg.messages,
        shared: shared.clone(),
    });

    let peak_reset = probe::reset_peak(&cfg.server_pids) && !cfg.server_pids.is_empty();
    let idle = probe::sample(&cfg.server_pids);

    // Publishers connect first: they prime, and a refused publish URL is
    // better found before ten thousand subscribers are up.
    let mut publishers = Vec::with_capacity(cfg.publishers);
    for i in 0..cfg.publishers {
        let mut p = Publisher::new(&pub_target, sources[i % sources.len()], cfg.body);
        p.connect().await.map_err(|e| {
            BenchError::io(format!("publisher cannot connect to {}", pub_target.url), e)
        })?;
        publishers.push(p);
    }

    // 1. Subscribers, 2. priming: a failure stops every subscriber thread.
    let started = Instant::now();
    let stop = CancellationToken::new();
    let handles = start_subscribers(&cfg, &ctx, &sources, &stop)?;
    let ready = async {
        wait_connected(&cfg, &shared, started).await?;
        prime(&cfg, &shared, &mut publishers[0], &prime_msg, started).await
    };
    if let Err(msg) = ready.await {
        stop.cancel();
        return Err(BenchError::Setup(msg));
    }
    let connect_secs = started.elapsed().as_secs_f64();
    tokio::time::sleep(cfg.settle).await;
    let connected = probe::sample(&cfg.server_pids);

    // 3. Publishing, 4. waiting for the deliveries.
    let expected = cfg.subscribers as u64 * cfg.messages;
    let t0_ns = now_ns();
    let (pstats, rtt) = publish_all(&cfg, publishers, nonce).await?;
    wait_deliveries(&cfg, &shared, expected).await;
    let end = probe::sample(&cfg.server_pids);
    stop.cancel();
    let subs = join_subscribers(handles).await?;

    let delivered = shared.delivered.load(Ordering::Relaxed);
    let delivery_secs = subs.last_delivery_ns.saturating_sub(t0_ns) as f64 / 1e9;
    let server = match (idle, connected, end) {
        (Some(idle), Some(conn), Some(end)) => Some(server_figures(
            idle,
            conn,
            end,
            peak_reset,
            cfg.subscribers,
            delivered,
        )),
        _ => None,
    };
    let first_error = shared.first_error().or(pstats.first_error.clone());
    Ok(FanoutReport {
        url: sub_target.url.clone(),
        transport: if cfg.websocket {
            "websocket"
        } else if cfg.h2_connections.is_some() {
            "h2"
        } else {
            "http"
        },
        format: if cfg.websocket {
            "websocket"
        } else if cfg.sse {
            "sse"
        } else {
            "raw"
        },
        h2_connections: cfg.h2_connections,
        publish_url: pub_target.url.clone(),
        subscribers: cfg.subscribers,
        messages: cfg.messages,
        publishers: cfg.publishers,
        rate: cfg.rate,
        size: cfg.size,
        connect_secs,
        published: pstats.ok,
        publish_errors: pstats.errors,
        expected,
        delivered,
        lost: expected.saturating_sub(delivered),
        duplicates: subs.duplicates,
        out_of_order: subs.out_of_order,
        stray_lines: subs.stray,
        subscriber_errors: shared.failed.load(Ordering::Relaxed) as u64,
        publish_secs: pstats.last_answer_ns.saturating_sub(t0_ns) as f64 / 1e9,
        delivery_secs,
        deliveries_per_sec: if delivery_secs > 0.0 {
            delivered as f64 / delivery_secs
        } else {
            0.0
        },
        offered_per_sec: cfg.rate.map(|r| r * cfg.subscribers as f64),
        latency: Latency::from_histogram(&subs.hist),
        publish_rtt: Latency::from_histogram(&rtt),
        server,
        first_error,
    })
}

/// Starts one subscriber thread per shard, each connecting its share.
fn start_subscribers(
    cfg: &FanoutConfig,
    ctx: &Arc<RunCtx>,
    sources: &[Option<IpAddr>],
    stop: &CancellationToken,
) -> Result<Vec<std::thread::JoinHandle<ShardResult>>, BenchError> {
    // One connection is never shared between threads: with HTTP/2 a thread
    // drives whole connections and every stream on them.
    let connections = cfg.h2_connections.unwrap_or(cfg.subscribers);
    let threads = cfg.threads.clamp(1, connections.max(1));
    let per_thread_connects = (cfg.connect_concurrency / threads).max(1);
    let mut handles = Vec::with_capacity(threads);
    for t in 0..threads {
        let plan = match cfg.h2_connections {
            None => Plan::Sockets(
                (t..cfg.subscribers)
                    .step_by(threads)
                    .map(|i| sources[i % sources.len()])
                    .collect(),
            ),
            // Stream i rides connection i % conns: the first
            // `subscribers % conns` connections carry one more.
            Some(conns) => Plan::H2(
                (t..conns)
                    .step_by(threads)
                    .map(|c| {
                        let streams =
                            cfg.subscribers / conns + usize::from(c < cfg.subscribers % conns);
                        (sources[c % sources.len()], streams)
                    })
                    .collect(),
            ),
        };
        let ctx = ctx.clone();
        let stop = stop.clone();
        let handle = std::thread::Builder::new()
            .name(format!("fanout-sub-{t}"))
            .spawn(move || shard_main(plan, ctx, stop, per_thread_connects))
            .map_err(|e| BenchError::io("cannot start a subscriber thread", e))?;
        handles.push(handle);
    }
    Ok(handles)
}

/// Waits until every subscriber sent its request (or one failed, or the
/// connect timeout passed: then why).
async fn wait_connected(
    cfg: &FanoutConfig,
    shared: &Shared,
    started: Instant,
) -> Result<(), String> {
    loop {
        let requested = shared.requested.load(Ordering::Relaxed);
        let failed = shared.failed.load(Ordering::Relaxed);
        if failed > 0 {
            return Err(format!(
                "{failed} of {} subscribers failed: {}",
                cfg.subscribers,
                shared.first_error().unwrap_or_default()
            ));
        }
        if requested == cfg.subscribers {
            return Ok(());
        }
        if started.elapsed() > cfg.connect_timeout {
            return Err(format!(
                "only {requested} of {} subscribers connected within {:?}",
                cfg.subscribers, cfg.connect_timeout
            ));
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Publishes the priming message until every subscriber has received one:
/// then each is known to be live (nchan cannot say how many it has).
async fn prime(
    cfg: &FanoutConfig,
    shared: &Shared,
    publisher: &mut Publisher,
    prime_msg: &str,
    started: Instant,
) -> Result<(), String> {
    let mut prime_rtt = new_histogram();
    loop {
        if let Err(e) = publisher
            .publish(prime_msg.as_bytes(), &mut prime_rtt)
            .await
        {
            return Err(format!("priming publish failed: {e}"));
        }
        tokio::time::sleep(PRIME_EVERY).await;
        let primed = shared.primed.load(Ordering::Relaxed);
        let failed = shared.failed.load(Ordering::Relaxed);
        if failed > 0 {
            return Err(format!(
                "{failed} subscribers failed while priming: {}",
                shared.first_error().unwrap_or_default()
            ));
        }
        if primed == cfg.subscribers {
            return Ok(());
        }
        if started.elapsed() > cfg.connect_timeout {
            return Err(format!(
                "only {primed} of {} subscribers received the priming message within {:?}",
                cfg.subscribers, cfg.connect_timeout
            ));
        }
    }
}

/// Runs every publisher (closed-loop, or paced at `--rate` in total) and
/// sums their figures.
async fn publish_all(
    cfg: &FanoutConfig,
    publishers: Vec<Publisher>,
    nonce: [u8; 8],
) -> Result<(PublishStats, Histogram<u64>), BenchError> {
    let next_seq = Arc::new(AtomicU64::new(0));
    let t0 = tokio::time::Instant::now();
    let mut tasks = Vec::with_capacity(cfg.publishers);
    for (j, mut p) in publishers.into_iter().enumerate() {
        let next_seq = next_seq.clone();
        let (messages, size, rate, publishers) = (cfg.messages, cfg.size, cfg.rate, cfg.publishers);
        tasks.push(tokio::spawn(async move {
            let mut rtt = new_histogram();
            let mut stats = PublishStats::default();
            let mut msg = Vec::with_capacity(size.max(64));
            match rate {
                None => loop {
                    let seq = next_seq.fetch_add(1, Ordering::Relaxed);
                    if seq >= messages {
                        break;
                    }
                    write_message(&mut msg, seq, now_ns(), &nonce, size);
                    stats.note(p.publish(&msg, &mut rtt).await);
                },
                Some(rate) => {
                    let mut seq = j as u64;
                    while seq < messages {
                        let due = t0 + Duration::from_secs_f64(seq as f64 / rate);
                        tokio::time::sleep_until(due).await;
                        write_message(&mut msg, seq, now_ns(), &nonce, size);
                        stats.note(p.publish(&msg, &mut rtt).await);
                        seq += publishers as u64;
                    }
                }
            }
            stats.last_answer_ns = now_ns();
            (stats, rtt)
        }));
    }
    let mut rtt = new_histogram();
    let mut pstats = PublishStats::default();
    for t in tasks {
        let (s, h) = t
            .await
            .map_err(|e| BenchError::Setup(format!("publisher task failed: {e}")))?;
        pstats.ok += s.ok;
        pstats.errors += s.errors;
        pstats.last_answer_ns = pstats.last_answer_ns.max(s.last_answer_ns);
        if pstats.first_error.is_none() {
            pstats.first_error = s.first_error;
        }
        rtt.add(&h).expect("same bounds");
    }
    Ok((pstats, rtt))
}

/// Waits until every expected delivery arrived, or none arrived for
/// `--idle-timeout` (the rest is loss).
async fn wait_deliveries(cfg: &FanoutConfig, shared: &Shared, expected: u64) {
    let mut last_seen = shared.delivered.load(Ordering::Relaxed);
    let mut last_progress = Instant::now();
    loop {
        let d = shared.delivered.load(Ordering::Relaxed);
        if d >= expected {
            return;
        }
        if d != last_seen {
            last_seen = d;
            last_progress = Instant::now();
        } else if last_progress.elapsed() > cfg.idle_timeout {
            return;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// Waits for every subscriber thread and merges what they saw.
async fn join_subscribers(
    handles: Vec<std::thread::JoinHandle<ShardResult>>,
) -> Result<ShardResult, BenchError> {
    let mut all = ShardResult {
        hist: new_histogram(),
        duplicates: 0,
        out_of_order: 0,
        stray: 0,
        last_delivery_ns: 0,
    };
    for h in handles {
        let r = tokio::task::spawn_blocking(move || h.join())
            .await
            .map_err(|e| BenchError::Setup(format!("subscriber thread lost: {e}")))?
            .map_err(|_| BenchError::Setup("subscriber thread panicked".into()))?;
        all.hist.add(&r.hist).expect("same bounds");
        all.duplicates += r.duplicates;
        all.out_of_order += r.out_of_order;
        all.stray += r.stray;
        all.last_delivery_ns = all.last_delivery_ns.max(r.last_delivery_ns);
    }
    Ok(all)
}

fn validate(cfg: &FanoutConfig) -> Result<(), BenchError> {
    let bad = |m: &str| Err(BenchError::BadParameter(m.to_string()));
    if cfg.subscribers == 0 {
        return bad("need at least one subscriber");
    }
    if cfg.messages == 0 {
        return bad("need at least one message");
    }
    match cfg.h2_connections {
        Some(0) => return bad("need at least one HTTP/2 connection"),
        Some(c) if c > cfg.subscribers => {
            return bad("more HTTP/2 connections than subscribers (streams)")
        }
        Some(_) if cfg.websocket => {
            return bad("WebSocket subscribers cannot ride HTTP/2 connections")
        }
        _ => {}
    }
    if cfg.sse && cfg.websocket {
        return bad("a subscriber is either SSE or WebSocket");
    }
    if cfg.publishers == 0 {
        return bad("need at least one publisher");
    }
    if cfg.rate.is_some_and(|r| !(r > 0.0 && r.is_finite())) {
        return bad("rate must be a positive number of messages per second");
    }
    if cfg.subscribers as u64 * cfg.messages.div_ceil(8) > MAX_BITSET_BYTES {
        return bad("subscribers × messages too large to track (1 GiB of bitsets)");
    }
    Ok(())
}

fn server_figures(
    idle: ProcSample,
    connected: ProcSample,
    end: ProcSample,
    peak_reset: bool,
    subscribers: usize,
    delivered: u64,
) -> ServerFigures {
    let cpu_us = end.cpu_us.saturating_sub(connected.cpu_us);
    ServerFigures {
        rss_idle_kib: idle.rss_kib,
        rss_connected_kib: connected.rss_kib,
        rss_peak_kib: end.hwm_kib,
        peak_reset,
        bytes_per_subscriber: (connected.rss_kib as f64 - idle.rss_kib as f64) * 1024.0
            / subscribers as f64,
        cpu_us,
        cpu_us_per_delivery: if delivered > 0 {
            cpu_us as f64 / delivered as f64
        } else {
            0.0
        },
    }
}

/// `{seq}_{ts_ns}_{nonce}_` then `x` up to `size` bytes.
fn write_message(out: &mut Vec<u8>, seq: u64, ts_ns: u64, nonce: &[u8; 8], size: usize) {
    use std::io::Write;
    out.clear();
    write!(out, "{seq}_{ts_ns}_").expect("writing to a Vec cannot fail");
    out.extend_from_slice(nonce);
    out.push(b'_');
    if out.len() < size {
        out.resize(size, b'x');
    }
}

/// Reads `{seq}_{ts}_{nonce}` from a line; `None` if it is not one of ours.
fn parse_message(line: &[u8], nonce: &[u8; 8]) -> Option<(u64, u64)> {
    fn number(s: &[u8]) -> Option<(u64, &[u8])> {
        let end = s.iter().position(|&b| b == b'_')?;
        if end == 0 || end > 20 {
            return None;
        }
        let mut v: u64 = 0;
        for &b in &s[..end] {
            if !b.is_ascii_digit() {
                return None;
            }
            v = v.checked_mul(10)?.checked_add((b - b'0') as u64)?;
        }
        Some((v, &s[end + 1..]))
    }
    let (seq, rest) = number(line)?;
    let (ts, rest) = number(rest)?;
    (rest.len() >= 8 && &rest[..8] == nonce).then_some((seq, ts))
}

/// How a subscriber's stream is framed after its head.
enum Decoder {
    /// A streaming response: its body (chunked or not), split in lines.
    Http(BodyDecoder, LineSplitter),
    /// WebSocket frames, one message each.
    Ws(FrameDecoder),
    /// An HTTP/2 stream's data, already unframed by the h2 client, split in
    /// lines.
    Lines(LineSplitter),
}

/// Per-subscriber state: everything a connection keeps between reads.
struct SubState {
    /// Set once the response head is read.
    decoder: Option<Decoder>,
    head: Vec<u8>,
    seen: Box<[u64]>,
    /// Highest sequence number seen + 1 (0 = none yet).
    high: u64,
    primed: bool,
}

/// What one subscriber thread opens.
enum Plan {
    /// One HTTP/1.1 (or WebSocket) connection per subscriber, from these
    /// source addresses.
    Sockets(Vec<Option<IpAddr>>),
    /// HTTP/2 connections (source address, streams on it).
    H2(Vec<(Option<IpAddr>, usize)>),
}

impl SubState {
    fn new(decoder: Option<Decoder>, messages: u64) -> SubState {
        SubState {
            decoder,
            head: Vec::new(),
            seen: vec![0u64; messages.div_ceil(64) as usize].into_boxed_slice(),
            high: 0,
            primed: false,
        }
    }
}

fn shard_main(
    plan: Plan,
    ctx: Arc<RunCtx>,
    stop: CancellationToken,
    connects: usize,
) -> ShardResult {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a current-thread runtime builds");
    let shard = Rc::new(Shard {
        ctx,
        buf: RefCell::new(vec![0u8; READ_BUF].into_boxed_slice()),
        hist: RefCell::new(new_histogram()),
        duplicates: Cell::new(0),
        out_of_order: Cell::new(0),
        stray: Cell::new(0),
        last_delivery_ns: Cell::new(0),
        connects: tokio::sync::Semaphore::new(connects),
    });
    let local = tokio::task::LocalSet::new();
    match plan {
        Plan::Sockets(sources) => {
            for source in sources {
                local.spawn_local(subscriber(source, shard.clone()));
            }
        }
        Plan::H2(conns) => {
            for (source, streams) in conns {
                local.spawn_local(h2_subscribers(source, streams, shard.clone()));
            }
        }
    }
    local.block_on(&rt, stop.cancelled());
    // Dropping the LocalSet drops every subscriber task and closes sockets.
    drop(local);
    let result = ShardResult {
        hist: shard.hist.borrow().clone(),
        duplicates: shard.duplicates.get(),
        out_of_order: shard.out_of_order.get(),
        stray: shard.stray.get(),
        last_delivery_ns: shard.last_delivery_ns.get(),
    };
    result
}

async fn subscriber(source: Option<IpAddr>, shard: Rc<Shard>) {
    let ctx = shard.ctx.clone();
    let shared = &ctx.shared;
    let permit = shard.connects.acquire().await.expect("never closed");
    let mut stream = match target::connect(ctx.addr, source).await {
        Ok(s) => s,
        Err(e) => return shared.fail(format!("subscriber connect: {e}")),
    };
    if let Err(e) = stream.write_all(&ctx.request).await {
        return shared.fail(format!("subscriber request: {e}"));
    }
    drop(permit);
    shared.requested.fetch_add(1, Ordering::Relaxed);
    let mut st = SubState::new(None, ctx.messages);
    loop {
        // Read through `poll_read`, not `readable()` + `try_read`: tokio
        // clears readiness after a short read, which saves the extra
        // `read` that would only return EWOULDBLOCK (half the syscalls of
        // a subscriber that gets one message per wake-up). The shared
        // buffer is borrowed only inside one poll, never across a wait.
        let outcome = std::future::poll_fn(|cx| {
            let mut buf = shard.buf.borrow_mut();
            let mut rb = tokio::io::ReadBuf::new(&mut buf[..]);
            match std::pin::Pin::new(&mut stream).poll_read(cx, &mut rb) {
                std::task::Poll::Pending => std::task::Poll::Pending,
                std::task::Poll::Ready(Err(e)) => {
                    std::task::Poll::Ready(Err(format!("subscriber read: {e}")))
                }
                std::task::Poll::Ready(Ok(())) if rb.filled().is_empty() => {
                    std::task::Poll::Ready(Err("subscriber stream ended by the server".into()))
                }
                std::task::Poll::Ready(Ok(())) => std::task::Poll::Ready(
                    on_bytes(&shard, &mut st, rb.filled())
                        .map_err(|e| format!("subscriber stream: {e}")),
                ),
            }
        })
        .await;
        if let Err(e) = outcome {
            return shared.fail(e);
        }
    }
}

/// One HTTP/2 connection carrying `streams` subscribers: it connects,
/// opens every stream (each read by a task of its own, as a browser tab's
/// `EventSource`s share one connection) and keeps the connection's sender
/// until the run stops. Streams beyond the server's
/// `SETTINGS_MAX_CONCURRENT_STREAMS` wait in the h2 client (as a browser's
/// would): they never hear the priming message, and the run says how many
/// did. A stream the server refuses (`REFUSED_STREAM`, or a `503` from its
/// limits) fails the run with that reason.
async fn h2_subscribers(source: Option<IpAddr>, streams: usize, shard: Rc<Shard>) {
    let ctx = shard.ctx.clone();
    let shared = &ctx.shared;
    let fail_all = |what: String| {
        for _ in 0..streams {
            shared.fail(what.clone());
        }
    };
    let permit = shard.connects.acquire().await.expect("never closed");
    let socket = match target::connect(ctx.addr, source).await {
        Ok(s) => s,
        Err(e) => return fail_all(format!("subscriber connect: {e}")),
    };
    let handshake = h2::client::Builder::new()
        .initial_window_size(H2_STREAM_WINDOW)
        .initial_connection_window_size(H2_CONNECTION_WINDOW)
        .handshake::<_, Bytes>(socket)
        .await;
    let (mut client, conn) = match handshake {
        Ok(pair) => pair,
        Err(e) => return fail_all(format!("subscriber HTTP/2 handshake: {e}")),
    };
    drop(permit);
    // The connection's reader and writer: every stream's data arrives
    // through it. Its errors reach the streams, which report them.
    tokio::task::spawn_local(async move {
        let _ = conn.await;
    });
    let accept = if ctx.sse { SSE } else { "*/*" };
    for opened in 0..streams {
        client = match client.ready().await {
            Ok(c) => c,
            Err(e) => {
                for _ in opened..streams {
                    shared.fail(format!("subscriber HTTP/2 connection: {e}"));
                }
                return;
            }
        };
        let req = http::Request::get(ctx.uri.clone())
            .header(http::header::ACCEPT, accept)
            .header(http::header::USER_AGENT, "coop-bench")
            .body(())
            .expect("static parts are valid");
        match client.send_request(req, true) {
            // The first answer is awaited before the other streams open:
            // the server's SETTINGS come before it, so the client then
            // knows the stream limit and queues what is past it instead of
            // opening streams the server must refuse (the initial limit is
            // unbounded until SETTINGS arrive).
            Ok((resp, _)) if opened == 0 => {
                shared.requested.fetch_add(1, Ordering::Relaxed);
                let answer = resp.await;
                tokio::task::spawn_local(h2_stream(std::future::ready(answer), shard.clone()));
            }
            Ok((resp, _)) => {
                shared.requested.fetch_add(1, Ordering::Relaxed);
                tokio::task::spawn_local(h2_stream(resp, shard.clone()));
            }
            Err(e) => shared.fail(format!("subscriber HTTP/2 request: {e}")),
        }
    }
    // Dropping the last sender would let the connection close once its
    // streams end; the run's end drops this task instead.
    std::future::pending::<()>().await;
    drop(client);
}

/// Longest part of a refusal's body kept for the report.
const MAX_REASON: usize = 1024;

/// One subscriber on an HTTP/2 stream: its answer (a refusal, as
/// `REFUSED_STREAM` or a status, is reported as such), then its data.
async fn h2_stream(
    resp: impl std::future::Future<Output = Result<http::Response<h2::RecvStream>, h2::Error>>,
    shard: Rc<Shard>,
) {
    let shared = &shard.ctx.shared;
    let resp = match resp.await {
        Ok(r) => r,
        Err(e) if e.reason() == Some(h2::Reason::REFUSED_STREAM) => {
            return shared.fail("subscriber stream refused by the server (REFUSED_STREAM)".into())
        }
        Err(e) => return shared.fail(format!("subscriber response: {e}")),
    };
    let status = resp.status();
    let mut body = resp.into_body();
    if status != http::StatusCode::OK {
        let mut reason = Vec::new();
        while let Some(Ok(chunk)) = body.data().await {
            reason.extend_from_slice(&chunk[..chunk.len().min(MAX_REASON - reason.len())]);
            if reason.len() >= MAX_REASON {
                break;
            }
        }
        let reason = String::from_utf8_lossy(&reason);
        return shared.fail(format!("status {}: {}", status.as_u16(), reason.trim()));
    }
    let mut st = SubState::new(
        Some(Decoder::Lines(LineSplitter::default())),
        shard.ctx.messages,
    );
    loop {
        let outcome = match body.data().await {
            None => Err("subscriber stream ended by the server".to_string()),
            Some(Err(e)) => Err(format!("subscriber stream: {e}")),
            Some(Ok(chunk)) => {
                // Credit the bytes back at once: the window must never be
                // what holds the server up.
                let _ = body.flow_control().release_capacity(chunk.len());
                on_body(&shard, &mut st, &chunk).map_err(|e| format!("subscriber stream: {e}"))
            }
        };
        if let Err(e) = outcome {
            return shared.fail(e);
        }
    }
}

/// Handles one read's worth of bytes for one subscriber.
fn on_bytes(shard: &Shard, st: &mut SubState, data: &[u8]) -> Result<(), String> {
    if st.decoder.is_none() {
        st.head.extend_from_slice(data);
        let Some(head) = parse_head(&st.head).map_err(|e| e.to_string())? else {
            return Ok(());
        };
        let want = if shard.ctx.websocket { 101 } else { 200 };
        if head.status != want {
            let body = String::from_utf8_lossy(&st.head[head.len..]);
            return Err(format!("status {}: {}", head.status, body.trim()));
        }
        if shard.ctx.websocket && !ws::accepts(&st.head[..head.len]) {
            return Err("101 without the right Sec-WebSocket-Accept".into());
        }
        // The rest of this read is body: reparse it below from the head
        // buffer, then drop the buffer.
        let head_buf = std::mem::take(&mut st.head);
        st.decoder = Some(if shard.ctx.websocket {
            Decoder::Ws(FrameDecoder::default())
        } else {
            Decoder::Http(BodyDecoder::new(head.framing), LineSplitter::default())
        });
        return on_body(shard, st, &head_buf[head.len..]);
    }
    on_body(shard, st, data)
}

/// What one read's messages came to, counted before the shard's totals.
#[derive(Default)]
struct Tally {
    new: u64,
    dup: u64,
    ooo: u64,
    stray: u64,
}

/// One message (a line, or a WebSocket message's text) of one subscriber:
/// ours (marked in the bitset, its latency recorded), priming, or stray.
#[allow(clippy::too_many_arguments)]
fn on_message(
    ctx: &RunCtx,
    seen: &mut [u64],
    high: &mut u64,
    primed: &mut bool,
    hist: &mut Histogram<u64>,
    now: u64,
    tally: &mut Tally,
    line: &[u8],
) {
    // An SSE event's message is its `data:` line; its other lines (`id:`,
    // `event:`, `topic:`, `retry:`, comments, the blank line ending it)
    // are framing.
    let line = if ctx.sse {
        match line.strip_prefix(b"data:") {
            Some(data) => data.strip_prefix(b" ").unwrap_or(data),
            None => return,
        }
    } else {
        line
    };
    if let Some((seq, ts)) = parse_message(line, &ctx.nonce) {
        if seq >= ctx.messages {
            tally.stray += 1;
            return;
        }
        let (w, bit) = ((seq / 64) as usize, 1u64 << (seq % 64));
        if seen[w] & bit != 0 {
            tally.dup += 1;
            return;
        }
        seen[w] |= bit;
        tally.new += 1;
        if seq + 1 < *high {
            tally.ooo += 1;
        }
        *high = (*high).max(seq + 1);
        hist.saturating_record((now.saturating_sub(ts) / 1000).max(1));
    } else if line == ctx.prime_line.as_slice() {
        if !*primed {
            *primed = true;
            ctx.shared.primed.fetch_add(1, Ordering::Relaxed);
        }
    } else {
        tally.stray += 1;
    }
}

fn on_body(shard: &Shard, st: &mut SubState, data: &[u8]) -> Result<(), String> {
    let ctx = &shard.ctx;
    let now = now_ns();
    let mut hist = shard.hist.borrow_mut();
    let mut tally = Tally::default();
    let SubState {
        decoder,
        seen,
        high,
        primed,
        ..
    } = st;
    let mut on =
        |line: &[u8]| on_message(ctx, seen, high, primed, &mut hist, now, &mut tally, line);
    // Whether the stream ended, or why it broke; what arrived before
    // counts either way.
    let outcome: Result<bool, String> = match decoder.as_mut().expect("set once the head is parsed")
    {
        Decoder::Http(body, lines) => {
            let mut err: Option<String> = None;
            let fed = body.feed(data, |chunk| {
                if err.is_none() {
                    if let Err(e) = lines.feed(chunk, MAX_LINE, &mut on) {
                        err = Some(e.to_string());
                    }
                }
            });
            match (fed, err) {
                (Err(e), _) => Err(e.to_string()),
                (_, Some(e)) => Err(e),
                _ => Ok(body.is_done()),
            }
        }
        Decoder::Ws(frames) => frames
            .feed(data, MAX_LINE, |payload| on(ws::message_of(payload)))
            .map(|()| false)
            .map_err(|e| e.to_string()),
        Decoder::Lines(lines) => lines
            .feed(data, MAX_LINE, &mut on)
            .map(|()| false)
            .map_err(|e| e.to_string()),
    };
    if tally.new > 0 {
        ctx.shared.delivered.fetch_add(tally.new, Ordering::Relaxed);
        shard.last_delivery_ns.set(now);
    }
    if tally.dup > 0 {
        shard.duplicates.set(shard.duplicates.get() + tally.dup);
    }
    if tally.ooo > 0 {
        shard.out_of_order.set(shard.out_of_order.get() + tally.ooo);
    }
    if tally.stray > 0 {
        shard.stray.set(shard.stray.get() + tally.stray);
    }
    match outcome {
        Ok(true) => Err("response body ended".into()),
        Ok(false) => Ok(()),
        Err(e) => Err(e),
    }
}

#[derive(Default)]
struct PublishStats {
    ok: u64,
    errors: u64,
    last_answer_ns: u64,
    first_error: Option<String>,
}

impl PublishStats {
    fn note(&mut self, r: Result<(), String>) {
        match r {
            Ok(()) => self.ok += 1,
            Err(e) => {
                self.errors += 1;
                if self.first_error.is_none() {
                    self.first_error = Some(format!("publish: {e}"));
                }
            }
        }
    }
}

/// One publishing connection (hyper's HTTP/1.1 client on a raw socket:
/// publish rates are thousands a second, not millions, so a full client is
/// affordable here and copes with any server's answer framing).
struct Publisher {
    target: Target,
    source: Option<IpAddr>,
    body: bool,
    sender: Option<SendRequest<Full<Bytes>>>,
}

impl Publisher {
    fn new(target: &Target, source: Option<IpAddr>, body: bool) -> Publisher {
        Publisher {
            target: target.clone(),
            source,
            body,
            sender: None,
        }
    }

    async fn connect(&mut self) -> std::io::Result<()> {
        let stream = target::connect(self.target.addr, self.source).await?;
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(std::io::Error::other)?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        self.sender = Some(sender);
        Ok(())
    }

    /// Publishes `msg` and waits for the answer; retries once on a fresh
    /// connection if the old one was closed under us.
    async fn publish(&mut self, msg: &[u8], rtt: &mut Histogram<u64>) -> Result<(), String> {
        let msg = Bytes::copy_from_slice(msg);
        let mut last_err = String::new();
        for _attempt in 0..2 {
            if self.sender.as_ref().is_none_or(|s| s.is_closed()) {
                if let Err(e) = self.connect().await {
                    last_err = format!("connect: {e}");
                    continue;
                }
            }
            let req = self.request(&msg);
            let sender = self.sender.as_mut().expect("connected above");
            if sender.ready().await.is_err() {
                self.sender = None;
                continue;
            }
            let sent = Instant::now();
            match sender.send_request(req).await {
                Ok(resp) => {
                    let status = resp.status();
                    let body = resp.into_body().collect().await;
                    rtt.saturating_record((sent.elapsed().as_micros() as u64).max(1));
                    return match body {
                        Ok(_) if status.is_success() => Ok(()),
                        Ok(b) => Err(format!(
                            "status {}: {}",
                            status.as_u16(),
                            String::from_utf8_lossy(&b.to_bytes()).trim()
                        )),
                        Err(e) => Err(format!("reading the answer: {e}")),
                    };
                }
                Err(e) => {
                    last_err = e.to_string();
                    self.sender = None;
                }
            }
        }
        Err(last_err)
    }

    fn request(&self, msg: &Bytes) -> hyper::Request<Full<Bytes>> {
        let path = &self.target.path_and_query;
        let (uri, body) = if self.body {
            (path.clone(), msg.clone())
        } else {
            let sep = if path.contains('?') { '&' } else { '?' };
            let text = std::str::from_utf8(msg).expect("messages are ASCII");
            (format!("{path}{sep}msg={text}"), Bytes::new())
        };
        hyper::Request::post(uri)
            .header(hyper::header::HOST, &self.target.authority)
            .header(hyper::header::CONTENT_TYPE, "text/plain")
            .body(Full::new(body))
            .expect("static parts are valid")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_round_trip_and_padding() {
        let nonce = *b"0badf00d";
        let mut m = Vec::new();
        write_message(&mut m, 42, 1_700_000_000_123_456_789, &nonce, 64);
        assert_eq!(m.len(), 64);
        assert!(m.iter().all(|b| b.is_ascii_alphanumeric() || *b == b'_'));
        assert_eq!(
            parse_message(&m, &nonce),
            Some((42, 1_700_000_000_123_456_789))
        );
        assert_eq!(parse_message(&m, b"00000000"), None);
        write_message(&mut m, 7, 9, &nonce, 0);
        assert_eq!(m, b"7_9_0badf00d_");
        assert_eq!(parse_message(b"prime_0badf00d", &nonce), None);
        assert_eq!(parse_message(b"hello", &nonce), None);
    }
}
