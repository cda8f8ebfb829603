//! Held-requests load generator for the slow Animals API: many requests in
//! flight at once against a server that answers after a delay, each answer
//! checked for content and for arriving within delay + slack.
//!
//! Two shapes:
//! - HTTP/1.1: one connection per request (`connections` of them), raw
//!   sockets spread over loopback source addresses, a hand-written request
//!   and a small growable buffer per connection (~1 KiB), so the client
//!   holds 15,000 waiting requests cheaply.
//! - HTTP/2 with prior knowledge (h2c): `requests` streams multiplexed over
//!   at most `connections` connections with the `h2` client, one task per
//!   connection (not per request) so the client stays cheap. A server that
//!   allows fewer concurrent streams per connection makes the excess wait,
//!   and those answers come back late: the report shows it.
//!
//! While the requests are held a monitor samples the server's RSS; the
//! report gives the peak and the bytes per in-flight request
//! ((peak − idle) / peak requests in flight).

use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use hdrhistogram::Histogram;
use hyper::http;
use serde::Serialize;

use crate::http::round_trip;
use crate::probe;
use crate::summary::{new_histogram, Latency};
use crate::target::{self, Target};
use crate::{now_ns, BenchError};

/// How often the monitor samples the server's RSS.
const SAMPLE_EVERY: Duration = Duration::from_millis(100);
/// Extra time, past the deadline, before a request is abandoned as failed.
const GIVE_UP_AFTER: Duration = Duration::from_secs(10);

/// What to run. See `coop bench hold --help`.
#[derive(Debug, Clone)]
pub struct HoldConfig {
    /// The URL every request asks for, e.g. `http://127.0.0.1:8080/animals/cow`.
    pub url: String,
    /// HTTP/1.1: connections (one request each). HTTP/2: the most
    /// connections to spread the streams over.
    pub connections: usize,
    /// HTTP/2: total requests (streams) in flight; ignored for HTTP/1.1.
    pub requests: usize,
    /// Use HTTP/2 with prior knowledge (h2c).
    pub http2: bool,
    /// The delay the server applies; answers must arrive within
    /// `delay + slack` of their request.
    pub delay: Duration,
    pub slack: Duration,
    /// Expected status and (if given) body of every answer.
    pub expect_status: u16,
    pub expect_body: Option<String>,
    pub sources: u8,
    pub connect_concurrency: usize,
    pub server_pids: Vec<u32>,
}

impl Default for HoldConfig {
    fn default() -> Self {
        HoldConfig {
            url: "http://127.0.0.1:8080/animals/cow".into(),
            connections: 1000,
            requests: 0,
            http2: false,
            delay: Duration::from_secs(5),
            slack: Duration::from_secs(1),
            expect_status: 200,
            expect_body: None,
            sources: 16,
            connect_concurrency: 512,
            server_pids: Vec::new(),
        }
    }
}

/// Server memory while the requests were held.
#[derive(Debug, Clone, Serialize)]
pub struct HoldServer {
    pub rss_idle_kib: u64,
    /// Highest RSS the monitor sampled.
    pub rss_sampled_peak_kib: u64,
    /// VmHWM at the end.
    pub rss_peak_kib: u64,
    pub peak_reset: bool,
    /// (peak − idle) / peak requests in flight, bytes.
    pub bytes_per_in_flight: f64,
    /// Server CPU time during the run, µs.
    pub cpu_us: u64,
}

/// The figures of one run.
#[derive(Debug, Clone, Serialize)]
pub struct HoldReport {
    pub url: String,
    pub protocol: &'static str,
    pub connections: usize,
    pub expected: usize,
    /// Right status and body within the deadline.
    pub ok: usize,
    /// Right answer, but after `delay + slack`.
    pub late: usize,
    /// Wrong status or body.
    pub wrong: usize,
    /// Transport failures (connect, reset, timeout).
    pub errors: usize,
    pub deadline_ms: u64,
    /// First request sent to last request sent, seconds.
    pub send_spread_secs: f64,
    /// Most requests outstanding at one moment.
    pub peak_in_flight: usize,
    pub wall_secs: f64,
    /// This generator's own CPU time during the run, µs (to tell a busy
    /// client from a slow server: both share the machine).
    pub client_cpu_us: u64,
    pub latency: Latency,
    pub server: Option<HoldServer>,
    pub first_error: Option<String>,
}

impl HoldReport {
    /// Every request answered correctly within the deadline.
    pub fn passed(&self) -> bool {
        self.ok == self.expected
    }
}

/// Shared tallies of one run.
struct Tally {
    ok: AtomicUsize,
    late: AtomicUsize,
    wrong: AtomicUsize,
    errors: AtomicUsize,
    in_flight: AtomicUsize,
    peak_in_flight: AtomicUsize,
    first_send_ns: AtomicU64,
    last_send_ns: AtomicU64,
    hist: Mutex<Histogram<u64>>,
    first_error: Mutex<Option<String>>,
    deadline: Duration,
    expect_status: u16,
    expect_body: Option<Vec<u8>>,
}

impl Tally {
    fn sent(&self) {
        let now = now_ns();
        self.first_send_ns.fetch_min(now, Ordering::Relaxed);
        self.last_send_ns.fetch_max(now, Ordering::Relaxed);
        let n = self.in_flight.fetch_add(1, Ordering::Relaxed) + 1;
        self.peak_in_flight.fetch_max(n, Ordering::Relaxed);
    }

    fn answered(&self, elapsed: Duration, status: u16, body: &[u8]) {
        self.in_flight.fetch_sub(1, Ordering::Relaxed);
        let right =
            status == self.expect_status && self.expect_body.as_deref().is_none_or(|b| b == body);
        if !right {
            self.wrong.fetch_add(1, Ordering::Relaxed);
            self.note_error(format!(
                "status {status}, body {:?}",
                String::from_utf8_lossy(&body[..body.len().min(200)])
            ));
            return;
        }
        self.hist
            .lock()
            .expect("no panics while held")
            .saturating_record((elapsed.as_micros() as u64).max(1));
        if elapsed <= self.deadline {
            self.ok.fetch_add(1, Ordering::Relaxed);
        } else {
            self.late.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn failed(&self, was_sent: bool, what: String) {
        if was_sent {
            self.in_flight.fetch_sub(1, Ordering::Relaxed);
        }
        self.errors.fetch_add(1, Ordering::Relaxed);
        self.note_error(what);
    }

    fn note_error(&self, what: String) {
        let mut first = self.first_error.lock().expect("no panics while held");
        if first.is_none() {
            *first = Some(what);
        }
    }
}

/// Runs one held-requests benchmark. Errors only when it cannot start.
pub async fn run(cfg: HoldConfig) -> Result<HoldReport, BenchError> {
    if cfg.connections == 0 {
        return Err(BenchError::BadParameter(
            "need at least one connection".into(),
        ));
    }
    if cfg.http2 && cfg.requests == 0 {
        return Err(BenchError::BadParameter(
            "HTTP/2 needs --requests > 0".into(),
        ));
    }
    let target = Target::parse(&cfg.url).await?;
    let deadline = cfg.delay + cfg.slack;
    let tally = Arc::new(Tally {
        ok: AtomicUsize::new(0),
        late: AtomicUsize::new(0),
        wrong: AtomicUsize::new(0),
        errors: AtomicUsize::new(0),
        in_flight: AtomicUsize::new(0),
        peak_in_flight: AtomicUsize::new(0),
        first_send_ns: AtomicU64::new(u64::MAX),
        last_send_ns: AtomicU64::new(0),
        hist: Mutex::new(new_histogram()),
        first_error: Mutex::new(None),
        deadline,
        expect_status: cfg.expect_status,
        expect_body: cfg.expect_body.clone().map(String::into_bytes),
    });
    let peak_reset = !cfg.server_pids.is_empty() && probe::reset_peak(&cfg.server_pids);
    let idle = probe::sample(&cfg.server_pids);

    // The monitor: samples the server's RSS until the run ends.
    let sampled_peak = Arc::new(AtomicU64::new(0));
    let monitor = {
        let pids = cfg.server_pids.clone();
        let peak = sampled_peak.clone();
        tokio::spawn(async move {
            if pids.is_empty() {
                return;
            }
            loop {
                if let Some(s) = probe::sample(&pids) {
                    peak.fetch_max(s.rss_kib, Ordering::Relaxed);
                }
                tokio::time::sleep(SAMPLE_EVERY).await;
            }
        })
    };

    let client_before = probe::sample(&[std::process::id()]).map_or(0, |s| s.cpu_us);
    let started = Instant::now();
    let expected = if cfg.http2 {
        run_http2(&cfg, &target, &tally).await?;
        cfg.requests
    } else {
        run_http1(&cfg, &target, &tally).await;
        cfg.connections
    };
    let wall_secs = started.elapsed().as_secs_f64();
    monitor.abort();
    let end = probe::sample(&cfg.server_pids);
    let client_cpu_us = probe::sample(&[std::process::id()])
        .map_or(0, |s| s.cpu_us)
        .saturating_sub(client_before);

    let peak_in_flight = tally.peak_in_flight.load(Ordering::Relaxed);
    let server = match (idle, end) {
        (Some(idle), Some(end)) => {
            let sampled = sampled_peak.load(Ordering::Relaxed).max(end.rss_kib);
            Some(HoldServer {
                rss_idle_kib: idle.rss_kib,
                rss_sampled_peak_kib: sampled,
                rss_peak_kib: end.hwm_kib,
                peak_reset,
                bytes_per_in_flight: if peak_in_flight > 0 {
                    (end.hwm_kib.max(sampled) as f64 - idle.rss_kib as f64) * 1024.0
                        / peak_in_flight as f64
                } else {
                    0.0
                },
                cpu_us: end.cpu_us.saturating_sub(idle.cpu_us),
            })
        }
        _ => None,
    };
    let first = tally.first_send_ns.load(Ordering::Relaxed);
    let last = tally.last_send_ns.load(Ordering::Relaxed);
    let latency = Latency::from_histogram(&tally.hist.lock().expect("no panics while held"));
    let first_error = tally
        .first_error
        .lock()
        .expect("no panics while held")
        .clone();
    Ok(HoldReport {
        url: cfg.url.clone(),
        protocol: if cfg.http2 { "h2c" } else { "http/1.1" },
        connections: cfg.connections,
        expected,
        ok: tally.ok.load(Ordering::Relaxed),
        late: tally.late.load(Ordering::Relaxed),
        wrong: tally.wrong.load(Ordering::Relaxed),
        errors: tally.errors.load(Ordering::Relaxed),
        deadline_ms: deadline.as_millis() as u64,
        send_spread_secs: if last >= first {
            (last - first) as f64 / 1e9
        } else {
            0.0
        },
        peak_in_flight,
        wall_secs,
        client_cpu_us,
        latency,
        server,
        first_error,
    })
}

async fn run_http1(cfg: &HoldConfig, target: &Target, tally: &Arc<Tally>) {
    let sources = target::sources(&target.addr, cfg.sources);
    let request: Arc<[u8]> = target.get_request().into();
    let connects = Arc::new(tokio::sync::Semaphore::new(cfg.connect_concurrency.max(1)));
    let give_up = tally.deadline + GIVE_UP_AFTER;
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..cfg.connections {
        let source = sources[i % sources.len()];
        let (tally, request, connects, addr) = (
            tally.clone(),
            request.clone(),
            connects.clone(),
            target.addr,
        );
        tasks.spawn(async move {
            one_http1(addr, source, &request, &connects, &tally, give_up).await;
        });
    }
    while tasks.join_next().await.is_some() {}
}

async fn one_http1(
    addr: std::net::SocketAddr,
    source: Option<IpAddr>,
    request: &[u8],
    connects: &tokio::sync::Semaphore,
    tally: &Tally,
    give_up: Duration,
) {
    let permit = connects.acquire().await.expect("never closed");
    let mut stream = match target::connect(addr, source).await {
        Ok(s) => s,
        Err(e) => return tally.failed(false, format!("connect: {e}")),
    };
    drop(permit);
    let mut buf = Vec::new();
    let sent = Instant::now();
    tally.sent();
    match tokio::time::timeout(give_up, round_trip(&mut stream, request, &mut buf)).await {
        Ok(Ok(resp)) => tally.answered(sent.elapsed(), resp.status, &resp.body),
        Ok(Err(e)) => tally.failed(true, format!("request: {e}")),
        Err(_) => tally.failed(true, format!("no answer within {give_up:?}")),
    }
}

async fn run_http2(
    cfg: &HoldConfig,
    target: &Target,
    tally: &Arc<Tally>,
) -> Result<(), BenchError> {
    let sources = target::sources(&target.addr, cfg.sources);
    let conns = cfg.connections.min(cfg.requests);
    let uri: http::Uri = format!("http://{}{}", target.authority, target.path_and_query)
        .parse()
        .map_err(|e| BenchError::BadUrl {
            url: target.url.clone(),
            reason: format!("{e}"),
        })?;
    // Connect and handshake everything first, so the requests go out
    // together.
    let mut clients = Vec::with_capacity(conns);
    for i in 0..conns {
        let stream = target::connect(target.addr, sources[i % sources.len()])
            .await
            .map_err(|e| BenchError::io(format!("connect to {}", target.url), e))?;
        let (client, conn) = h2::client::Builder::new()
            // Many small answers per connection: generous windows keep
            // flow control out of the picture.
            .initial_window_size(1 << 20)
            .initial_connection_window_size(16 << 20)
            .handshake::<_, Bytes>(stream)
            .await
            .map_err(|e| BenchError::Setup(format!("HTTP/2 handshake with {}: {e}", target.url)))?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        clients.push(client);
    }
    let give_up = tally.deadline + GIVE_UP_AFTER;
    let mut tasks = tokio::task::JoinSet::new();
    for (i, client) in clients.into_iter().enumerate() {
        // Spread the requests evenly: the first `requests % conns`
        // connections take one more.
        let n = cfg.requests / conns + usize::from(i < cfg.requests % conns);
        let (tally, uri) = (tally.clone(), uri.clone());
        tasks.spawn(async move { h2_connection(client, uri, n, &tally, give_up).await });
    }
    while tasks.join_next().await.is_some() {}
    Ok(())
}

/// Sends `n` GETs on one HTTP/2 connection and checks the answers. One task
/// per connection, not per request: the sender half waits only when the
/// server's stream limit is reached, the receiver half collects answers as
/// they complete (a spawned task and a timer per request would cost the
/// client more CPU than the server spends, on a machine they share).
async fn h2_connection(
    client: h2::client::SendRequest<Bytes>,
    uri: http::Uri,
    n: usize,
    tally: &Tally,
    give_up: Duration,
) {
    use futures::stream::{FuturesUnordered, StreamExt};
    type Pending = (Instant, h2::client::ResponseFuture);
    // Holds at most this connection's `n` requests: bounded by the work.
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Pending>(n.max(1));
    let sender = async move {
        let mut client = client;
        for _ in 0..n {
            client = match client.ready().await {
                Ok(c) => c,
                Err(e) => return Err(format!("connection: {e}")),
            };
            let req = http::Request::get(uri.clone())
                .body(())
                .expect("static parts are valid");
            let sent = Instant::now();
            let (resp, _) = client
                .send_request(req, true)
                .map_err(|e| format!("send: {e}"))?;
            tally.sent();
            if tx.send((sent, resp)).await.is_err() {
                break;
            }
        }
        Ok(())
    };
    let receiver = async {
        let mut pending = FuturesUnordered::new();
        let mut open = true;
        let mut deadline: Option<tokio::time::Instant> = None;
        loop {
            let sleep = async {
                match deadline {
                    Some(d) => tokio::time::sleep_until(d).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                item = rx.recv(), if open => match item {
                    Some((sent, resp)) => pending.push(async move { (sent, read_h2(resp).await) }),
                    None => {
                        open = false;
                        deadline = Some(tokio::time::Instant::now() + give_up);
                    }
                },
                Some((sent, result)) = pending.next(), if !pending.is_empty() => match result {
                    Ok((status, body)) => tally.answered(sent.elapsed(), status, &body),
                    Err(e) => tally.failed(true, format!("request: {e}")),
                },
                () = sleep => {
                    for _ in 0..pending.len() {
                        tally.failed(true, format!("no answer within {give_up:?}"));
                    }
                    return;
                }
            }
            if !open && pending.is_empty() {
                return;
            }
        }
    };
    let (sent, ()) = tokio::join!(sender, receiver);
    if let Err(e) = sent {
        tally.note_error(e);
    }
}

async fn read_h2(resp: h2::client::ResponseFuture) -> Result<(u16, Vec<u8>), h2::Error> {
    let resp = resp.await?;
    let status = resp.status().as_u16();
    let mut body = resp.into_body();
    let mut out = Vec::new();
    while let Some(chunk) = body.data().await {
        let chunk = chunk?;
        let _ = body.flow_control().release_capacity(chunk.len());
        out.extend_from_slice(&chunk);
    }
    Ok((status, out))
}
