//! The client behind `coop speak`: asks a farm for many animals at once and
//! hands back the answers in the order they were asked.
//!
//! - One set of connections shared by every request (the talk's
//!   `aiohttp.ClientSession`). Over plain `http://` and HTTP/1.1 (the
//!   default) that is coop's own lean path ([`crate::h1`]): a socket, a
//!   small buffer while bytes arrive and a parser state per connection,
//!   driven by the request's own future, at most `concurrency` of them.
//!   With `--http2` (h2c prior knowledge) or over `https://`, requests go
//!   through reqwest (hyper, rustls), multiplexed over a few connections.
//! - At most [`ClientConfig::concurrency`] requests in flight.
//!   [`Client::speak`] is a stream built with `buffered(n)`: it starts
//!   requests in input order, keeps at most `n` running or finished-but-
//!   waiting, and yields each result as soon as it and every earlier one are
//!   done. Memory is bounded by `n`, never by the number of names. Each
//!   request runs as a task of its own, so a multi-threaded runtime spreads
//!   the kernel's work of 10,000 connections over its threads.
//! - Each attempt has a timeout. Connect errors, `429` and `5xx` answers,
//!   and connections that die (reset, closed before the answer, a body cut
//!   short, bytes that are not HTTP: the farm's `fault=`s) are retried up
//!   to [`ClientConfig::retries`] times with exponential backoff and
//!   jitter; a `Retry-After` in seconds sets the minimum wait. A GET is
//!   idempotent, so trying again is safe. A timeout is not retried: the
//!   attempt already took the whole budget.
//! - Every failed attempt is counted by kind ([`Mishaps`]), for
//!   `coop speak --timing`.
//! - Every [`Outcome`] carries its own elapsed time, so the caller can
//!   compare wall time with the sum of request times ([`Timing`]).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::{Stream, StreamExt};
use reqwest::Url;
use tokio_util::task::AbortOnDropHandle;

use crate::error::Error;
use crate::h1;

/// Longest `Retry-After` the client honours; a server asking for more gets
/// this much, so a misconfigured server cannot stall a run for hours.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(60);

/// Longest error body kept for a failure line, in bytes.
const MAX_ERROR_BODY: usize = 200;

/// How the client behaves.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// Base URL; the name is appended as one path segment
    /// (`http://127.0.0.1:8080/animals` + `cow`).
    pub base: String,
    /// Requests in flight at most (1 is the talk's sequential client).
    pub concurrency: usize,
    /// Per attempt: connecting, sending and reading the whole answer.
    pub timeout: Duration,
    /// Extra attempts after a connect error or a `5xx`.
    pub retries: u32,
    /// Wait before the first retry; doubled for each further one.
    pub backoff: Duration,
    /// Upper bound of the exponential backoff.
    pub max_backoff: Duration,
    /// Speak HTTP/2 without TLS from the first byte (h2c prior knowledge):
    /// requests share a few connections. Over https, HTTP/2 is negotiated
    /// by ALPN anyway.
    pub http2_prior_knowledge: bool,
    /// Connection attempts in flight at most. Thousands of simultaneous
    /// SYNs overflow the server's accept queue (`net.core.somaxconn`), and
    /// the kernel retries dropped SYNs only after 1 s, then 3 s: pacing the
    /// connects is much faster than letting them all race.
    pub max_connecting: usize,
    /// With HTTP/2, spread requests over at least this many connections
    /// (one pool each): a single connection is driven by one task, so one
    /// core on each side; a few let both cores of client and server work.
    /// More are used when `concurrency` needs them: servers allow a few
    /// hundred streams per connection ([`H2_STREAMS_PER_CONNECTION`]).
    pub http2_connections: usize,
}

/// Streams the client counts on per HTTP/2 connection: servers commonly
/// allow 100 to 256 at once (`coop serve`: `--h2-max-streams`, 256 by
/// default); requests past the server's figure would wait for a free
/// stream, so concurrency is spread over more connections instead.
pub const H2_STREAMS_PER_CONNECTION: usize = 250;

/// Most HTTP/2 connections opened, however high the concurrency.
const MAX_H2_CONNECTIONS: usize = 256;

impl Default for ClientConfig {
    fn default() -> Self {
        ClientConfig {
            base: "http://127.0.0.1:8080/animals".into(),
            concurrency: 10_000,
            timeout: Duration::from_secs(30),
            retries: 2,
            backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(5),
            http2_prior_knowledge: false,
            max_connecting: 256,
            http2_connections: 4,
        }
    }
}

/// What happened to one animal.
#[derive(Debug)]
pub struct Outcome {
    /// Position in the input (0-based).
    pub index: usize,
    pub name: String,
    /// The sound, or why there is none.
    pub result: Result<String, Error>,
    /// Attempts made (1 when no retry was needed).
    pub attempts: u32,
    /// From the first attempt's start to the final answer, retries included.
    pub elapsed: Duration,
    /// Every failed attempt, by kind (the last one too, if it failed).
    pub mishaps: Mishaps,
}

/// Failed attempts counted by what happened: what a careful client had to
/// cope with.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct Mishaps {
    /// Attempts after the first.
    pub retries: u32,
    pub timeouts: u32,
    /// `ECONNRESET`, or an HTTP/2 `RST_STREAM`.
    pub resets: u32,
    /// Closed before any answer.
    pub closed: u32,
    /// Bodies cut short or malformed.
    pub truncated: u32,
    /// Answers that were not HTTP.
    pub bad_answers: u32,
    /// Non-2xx statuses.
    pub statuses: u32,
    /// Anything else (refused connections, ...).
    pub other: u32,
}

impl Mishaps {
    fn count(&mut self, err: &Error) {
        let slot = match err.kind() {
            "timeout" => &mut self.timeouts,
            "reset" => &mut self.resets,
            "closed" => &mut self.closed,
            "truncated" => &mut self.truncated,
            "bad answer" => &mut self.bad_answers,
            "status" => &mut self.statuses,
            _ => &mut self.other,
        };
        *slot += 1;
    }

    /// Adds another run's counts.
    pub fn add(&mut self, other: &Mishaps) {
        self.retries += other.retries;
        self.timeouts += other.timeouts;
        self.resets += other.resets;
        self.closed += other.closed;
        self.truncated += other.truncated;
        self.bad_answers += other.bad_answers;
        self.statuses += other.statuses;
        self.other += other.other;
    }
}

impl Outcome {
    /// The talk's line: `The cow says "Moo!".` (`None` for a failure).
    pub fn line(&self) -> Option<String> {
        self.result
            .as_ref()
            .ok()
            .map(|sound| says(&self.name, sound))
    }
}

/// `The {name} says "{sound}".`
pub fn says(name: &str, sound: &str) -> String {
    format!("The {name} says \"{sound}\".")
}

/// A cheap `Clone` handle on one set of connections and its settings.
#[derive(Debug, Clone)]
pub struct Client {
    transport: Transport,
    base: Arc<Url>,
    config: Arc<ClientConfig>,
}

/// What carries the requests.
#[derive(Debug, Clone)]
enum Transport {
    /// Plain `http://` over HTTP/1.1: coop's own connections, one request
    /// at a time each.
    H1(Arc<h1::Conns>),
    /// `https://`, or HTTP/2 prior knowledge: reqwest. Over https one
    /// pool; with HTTP/2 prior knowledge, `http2_connections` pools of one
    /// connection each, used round-robin by input position.
    Reqwest(Arc<[reqwest::Client]>),
}

/// One answer, of any status, from either transport.
#[derive(Debug)]
pub(crate) struct Answer {
    pub status: u16,
    /// `Retry-After` in seconds, as sent.
    pub retry_after_secs: Option<u64>,
    pub body: String,
}

/// One failed attempt and whether another may follow.
struct Failed {
    error: Error,
    retry: bool,
    retry_after: Option<Duration>,
}

impl Failed {
    /// A timeout is not retried: the attempt already took the whole budget.
    fn timeout(timeout: Duration) -> Failed {
        Failed {
            error: Error::Timeout(timeout),
            retry: false,
            retry_after: None,
        }
    }
}

impl Client {
    /// Checks the configuration and builds the connection pool.
    pub fn new(config: ClientConfig) -> Result<Client, Error> {
        let bad = |reason: &str| Error::BadUrl {
            url: config.base.clone(),
            reason: reason.to_string(),
        };
        let base = Url::parse(&config.base).map_err(|e| bad(&e.to_string()))?;
        if !matches!(base.scheme(), "http" | "https") {
            return Err(bad("only http and https URLs are supported"));
        }
        if base.cannot_be_a_base() {
            return Err(bad("it cannot take a path"));
        }
        let transport = if base.scheme() == "http" && !config.http2_prior_knowledge {
            let host = base.host_str().ok_or_else(|| bad("it has no host"))?;
            let port = base
                .port_or_known_default()
                .expect("http has a known default port");
            let authority = match base.port() {
                Some(port) => format!("{host}:{port}"),
                None => host.to_string(),
            };
            Transport::H1(Arc::new(h1::Conns::new(
                host,
                port,
                &authority,
                config.concurrency.max(1),
                config.max_connecting,
            )))
        } else {
            Transport::Reqwest(reqwest_pools(&config)?)
        };
        Ok(Client {
            transport,
            base: Arc::new(base),
            config: Arc::new(ClientConfig {
                concurrency: config.concurrency.max(1),
                ..config
            }),
        })
    }

    pub fn config(&self) -> &ClientConfig {
        &self.config
    }

    /// The URL asked for `name`: the base plus one percent-encoded segment.
    pub fn url_for(&self, name: &str) -> Url {
        let mut url = (*self.base).clone();
        url.path_segments_mut()
            .expect("checked in Client::new: the base can take a path")
            .pop_if_empty()
            .push(name);
        url
    }

    // ANCHOR: speak
    /// Asks for every name, at most `concurrency` at a time, and yields the
    /// outcomes in input order, each as soon as it and all before it are
    /// done.
    pub fn speak<I>(&self, names: I) -> impl Stream<Item = Outcome> + Send + 'static
    where
        I: IntoIterator<Item = String>,
        I::IntoIter: Send + 'static,
    {
        let client = self.clone();
        let n = self.config.concurrency;
        // Set once every name has been taken: from then on no new request
        // will want a kept-alive connection.
        let all_started = Arc::new(AtomicBool::new(false));
        let names = Exhausted {
            inner: names.into_iter(),
            flag: all_started.clone(),
        };
        futures::stream::iter(names.enumerate())
            .map(move |(index, name)| {
                let client = client.clone();
                let all_started = all_started.clone();
                let start = Instant::now();
                // Each request a task (as `asyncio.gather` wraps each
                // coroutine in one): the runtime's threads share the work
                // of connecting and sending. Dropping the stream aborts them.
                let task = AbortOnDropHandle::new(tokio::spawn(async move {
                    client.ask_in_run(index, name, &all_started, start).await
                }));
                async move {
                    match task.await {
                        Ok(outcome) => outcome,
                        Err(e) => std::panic::resume_unwind(e.into_panic()),
                    }
                }
            })
            .buffered(n)
    }
    // ANCHOR_END: speak

    /// Asks for one animal, retrying as configured.
    pub async fn ask(&self, index: usize, name: String) -> Outcome {
        self.ask_in_run(index, name, &AtomicBool::new(false), Instant::now())
            .await
    }

    /// [`Client::ask`] inside a run whose every request has started once
    /// `all_started` is set: an attempt made then closes its connection
    /// after the answer (see `h1::Conns::get`). Its time counts from
    /// `start`, when the run asked for it.
    async fn ask_in_run(
        &self,
        index: usize,
        name: String,
        all_started: &AtomicBool,
        start: Instant,
    ) -> Outcome {
        let url = self.url_for(&name);
        let mut attempts = 0;
        let mut mishaps = Mishaps::default();
        let result = loop {
            attempts += 1;
            let last = all_started.load(Ordering::Acquire);
            let result = self.attempt(index, url.clone(), last).await;
            if let Err(failed) = &result {
                mishaps.count(&failed.error);
            }
            match result {
                Ok(sound) => break Ok(sound),
                Err(failed) if failed.retry && attempts <= self.config.retries => {
                    mishaps.retries += 1;
                    let wait = self.backoff(attempts, failed.retry_after);
                    tracing::debug!(%name, attempt = attempts, error = %failed.error, ?wait, "retrying");
                    tokio::time::sleep(wait).await;
                }
                Err(failed) => break Err(failed.error),
            }
        };
        Outcome {
            index,
            name,
            result,
            attempts,
            elapsed: start.elapsed(),
            mishaps,
        }
    }

    async fn attempt(&self, index: usize, url: Url, last: bool) -> Result<String, Failed> {
        let timeout = self.config.timeout;
        let answer = match &self.transport {
            Transport::H1(conns) => {
                let mut target = url.path().to_string();
                if let Some(query) = url.query() {
                    target.push('?');
                    target.push_str(query);
                }
                // Boxed, as the other path: a request's future holds only
                // the state of the path it takes.
                match Box::pin(tokio::time::timeout(timeout, conns.get(&target, last))).await {
                    Err(_) => Err(Failed::timeout(timeout)),
                    Ok(Err(trouble)) => Err(Failed {
                        retry: trouble.connect || !matches!(trouble.error, Error::Transport(_)),
                        error: trouble.error,
                        retry_after: None,
                    }),
                    Ok(Ok(answer)) => Ok(answer),
                }
            }
            // Boxed: reqwest's futures are large, and unboxed every
            // request's future would be as large as the larger path.
            Transport::Reqwest(pools) => {
                Box::pin(Self::attempt_reqwest(
                    &pools[index % pools.len()],
                    url,
                    timeout,
                ))
                .await
            }
        }?;
        if (200..300).contains(&answer.status) {
            return Ok(answer.body);
        }
        let mut body = answer.body.trim().to_string();
        if body.len() > MAX_ERROR_BODY {
            let mut cut = MAX_ERROR_BODY;
            while !body.is_char_boundary(cut) {
                cut -= 1;
            }
            body.truncate(cut);
            body.push('…');
        }
        Err(Failed {
            error: Error::Status {
                status: answer.status,
                body,
            },
            retry: answer.status >= 500 || answer.status == 429,
            retry_after: answer
                .retry_after_secs
                .map(|secs| Duration::from_secs(secs).min(MAX_RETRY_AFTER)),
        })
    }

    /// One attempt through reqwest (https, h2c), as an answer of any status.
    async fn attempt_reqwest(
        http: &reqwest::Client,
        url: Url,
        timeout: Duration,
    ) -> Result<Answer, Failed> {
        let failed = |e: reqwest::Error, in_body: bool| {
            if e.is_timeout() {
                return Failed::timeout(timeout);
            }
            let connect = e.is_connect();
            let error = Error::from_reqwest(&e, in_body);
            Failed {
                retry: connect || !matches!(error, Error::Transport(_)),
                error,
                retry_after: None,
            }
        };
        let response = http
            .get(url)
            .timeout(timeout)
            .send()
            .await
            .map_err(|e| failed(e, false))?;
        let status = response.status().as_u16();
        let retry_after_secs = response
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok());
        let body = response.text().await.map_err(|e| failed(e, true))?;
        Ok(Answer {
            status,
            retry_after_secs,
            body,
        })
    }

    /// Wait before retry number `attempt` (1-based): `backoff * 2^(attempt-1)`
    /// capped at `max_backoff`, scaled by a random factor in [0.5, 1) so that
    /// many clients failing together do not retry together; never less than
    /// the server's `Retry-After`.
    fn backoff(&self, attempt: u32, retry_after: Option<Duration>) -> Duration {
        let exp = self
            .config
            .backoff
            .saturating_mul(1u32 << (attempt - 1).min(20))
            .min(self.config.max_backoff);
        let jittered = exp.mul_f64(0.5 + rand::random::<f64>() * 0.5);
        jittered.max(retry_after.unwrap_or(Duration::ZERO))
    }
}

/// The names of a run, setting `flag` once they have all been taken.
struct Exhausted<I> {
    inner: I,
    flag: Arc<AtomicBool>,
}

impl<I: Iterator<Item = String>> Iterator for Exhausted<I> {
    type Item = String;

    fn next(&mut self) -> Option<String> {
        let next = self.inner.next();
        // Known as soon as the iterator says nothing is left (a `Vec`'s
        // does), not only once it is asked again: with as many names as
        // requests in flight, it is not asked again until one is done.
        if next.is_none() || self.inner.size_hint().1 == Some(0) {
            self.flag.store(true, Ordering::Release);
        }
        next
    }
}

/// reqwest's pools for https and h2c: one for https (it opens
/// connections as needed); with HTTP/2 prior knowledge, one connection
/// per pool, enough of them for the concurrency.
fn reqwest_pools(config: &ClientConfig) -> Result<Arc<[reqwest::Client]>, Error> {
    // Shared by every pool, so the pacing of connects is global.
    let connecting = tower::limit::GlobalConcurrencyLimitLayer::new(config.max_connecting.max(1));
    let pools = if config.http2_prior_knowledge {
        let needed = config.concurrency.div_ceil(H2_STREAMS_PER_CONNECTION);
        config
            .http2_connections
            .max(needed)
            .clamp(1, MAX_H2_CONNECTIONS)
    } else {
        1
    };
    (0..pools)
        .map(|_| {
            let mut builder = reqwest::Client::builder()
                .connect_timeout(config.timeout)
                .connector_layer(connecting.clone())
                .user_agent(concat!("coop/", env!("CARGO_PKG_VERSION")));
            if config.http2_prior_knowledge {
                builder = builder.http2_prior_knowledge();
            }
            builder.build().map_err(|e| Error::transport(&e))
        })
        .collect()
}

/// Timing of a whole run: what concurrency bought.
#[derive(Debug, Clone, PartialEq)]
pub struct Timing {
    pub requests: usize,
    /// Wall time of the run.
    pub wall: Duration,
    /// Sum of the requests' own times: what one-at-a-time would have cost.
    pub sum: Duration,
    pub p50: Duration,
    pub p90: Duration,
    pub p99: Duration,
    pub max: Duration,
}

impl Timing {
    /// Summarises per-request times (any order) and the run's wall time.
    pub fn new(mut times: Vec<Duration>, wall: Duration) -> Timing {
        times.sort_unstable();
        // Nearest-rank percentile: the smallest time with at least p% of
        // the times at or below it.
        let pct = |p: f64| -> Duration {
            if times.is_empty() {
                return Duration::ZERO;
            }
            let rank = ((p / 100.0) * times.len() as f64).ceil() as usize;
            times[rank.clamp(1, times.len()) - 1]
        };
        Timing {
            requests: times.len(),
            wall,
            sum: times.iter().sum(),
            p50: pct(50.0),
            p90: pct(90.0),
            p99: pct(99.0),
            max: times.last().copied().unwrap_or_default(),
        }
    }

    /// `sum / wall`: how many times faster than one at a time.
    pub fn speedup(&self) -> f64 {
        if self.wall.is_zero() {
            return 0.0;
        }
        self.sum.as_secs_f64() / self.wall.as_secs_f64()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_join_one_segment() {
        let mut cfg = ClientConfig {
            base: "http://h:1/animals/".into(),
            ..Default::default()
        };
        let c = Client::new(cfg.clone()).unwrap();
        assert_eq!(c.url_for("cow").as_str(), "http://h:1/animals/cow");
        cfg.base = "http://h:1/animals".into();
        let c = Client::new(cfg.clone()).unwrap();
        assert_eq!(c.url_for("cow").as_str(), "http://h:1/animals/cow");
        assert_eq!(c.url_for("a b/c").as_str(), "http://h:1/animals/a%20b%2Fc");
        cfg.base = "ftp://h/x".into();
        assert!(Client::new(cfg.clone()).is_err());
        cfg.base = "not a url".into();
        assert!(Client::new(cfg).is_err());
    }

    #[test]
    fn backoff_grows_is_capped_and_honours_retry_after() {
        let c = Client::new(ClientConfig {
            backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(1),
            ..Default::default()
        })
        .unwrap();
        for _ in 0..100 {
            let b1 = c.backoff(1, None);
            assert!(b1 >= Duration::from_millis(50) && b1 < Duration::from_millis(100));
            let b3 = c.backoff(3, None);
            assert!(b3 >= Duration::from_millis(200) && b3 < Duration::from_millis(400));
            assert!(c.backoff(30, None) < Duration::from_secs(1));
            assert!(c.backoff(1, Some(Duration::from_secs(2))) == Duration::from_secs(2));
        }
    }

    #[test]
    fn timing_percentiles() {
        let times: Vec<Duration> = (1..=100).map(Duration::from_millis).collect();
        let t = Timing::new(times, Duration::from_millis(100));
        assert_eq!(t.requests, 100);
        assert_eq!(t.p50, Duration::from_millis(50));
        assert_eq!(t.p90, Duration::from_millis(90));
        assert_eq!(t.p99, Duration::from_millis(99));
        assert_eq!(t.max, Duration::from_millis(100));
        assert_eq!(t.sum, Duration::from_millis(5050));
        assert!((t.speedup() - 50.5).abs() < 1e-9);
        let empty = Timing::new(vec![], Duration::ZERO);
        assert_eq!(empty.p99, Duration::ZERO);
        assert_eq!(empty.speedup(), 0.0);
    }
}
