//! The Animals API as an axum `Router`: the talk's slow web service.
//!
//! - `GET /animals` answers `Welcome to the farm!`.
//! - `GET /animals/{name}` waits the delay, then answers the sound. Unknown
//!   names get `404 The animal {name} was not found.` at once. Leading and
//!   trailing slashes around the name are ignored, because the talk's clients
//!   join a base URL ending in `/` with the name (`/animals//cow`).
//! - `?delay=` (seconds like `0.5`, or `250ms`) sets one request's delay,
//!   capped by [`Config::max_delay`]; [`Config::jitter`] varies it.
//! - [`Config::error_rate`] answers that share of requests `503` with
//!   `Retry-After`, to test clients against faults.
//! - Fault injection beyond that (`delay=` distributions, `status=`,
//!   `bytes=`, `drip=`, `fault=`, scenarios, seeds) is modelled in
//!   [`crate::faults`]; [`decide`] draws a request's outcome there and the
//!   handler (or the fast path) applies it.
//! - `Accept: application/json` gets JSON: `{"animal":..,"sound":..}`, the
//!   list of those for `/animals`, `{"error":..}` for errors.
//!
//! Waiting is a tokio timer inside the handler's future, never a thread: a
//! held request costs a few hundred bytes. A client that disconnects during
//! the delay makes hyper drop that future, which drops the timer; the
//! [`Track`] guard still settles the in-flight gauge.
//!
//! This is the hot path of the throughput benchmark, so the handlers take
//! the raw request (no extractor copies), answer with pre-rendered `Bytes`,
//! skip the timer when the delay is zero, and record metrics through handles
//! registered once when the router is built.
//!
//! The router has no fallback: `coop serve` merges it with the hub's router
//! and adds one fallback for the whole server.

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::response::Response;
use axum::routing::get;
use axum::Router;
use http::header::{HeaderValue, ACCEPT, CONTENT_TYPE, RETRY_AFTER};
use http::StatusCode;
use metrics::{Counter, Gauge, Histogram};

use crate::catalog::{validate_name, Catalog};
use crate::faults::{self, Fault, Faulty, Rng, Scenario, Spec};

/// The talk's greeting at `GET /animals`.
pub const WELCOME: &str = "Welcome to the farm!";

/// Body of the fault-injection `503`.
pub const BUSY: &str = "The farm is busy, try again later.";

/// Metric names (Prometheus text at `/metrics` once the binary installs the
/// exporter).
pub mod metric {
    /// Counter, labels `route` and `status`.
    pub const REQUESTS: &str = "animals_requests_total";
    /// Gauge: requests being handled (most of them waiting their delay).
    pub const IN_FLIGHT: &str = "animals_requests_in_flight";
    /// Histogram in seconds, label `route`: time from handler start to answer.
    pub const LATENCY: &str = "animals_request_duration_seconds";
    /// Counter, label `route`: requests whose client went away before the
    /// answer (the future was dropped mid-delay).
    pub const CANCELLED: &str = "animals_requests_cancelled_total";
    /// Counter: requests answered by the socket-level fast path
    /// ([`crate::direct`]) rather than hyper; a share of `REQUESTS`.
    pub const DIRECT: &str = "animals_requests_direct_total";
    /// Counter: HTTP/2 requests answered by the farm's handlers without
    /// the router ([`crate::direct`]'s HTTP/2 path); a share of `REQUESTS`.
    pub const H2_DIRECT: &str = "animals_requests_h2_direct_total";
    /// Counter, label `kind`: faults injected, by kind (`reset`,
    /// `truncate`, ... as in `fault=`; `status` for a non-`200` drawn by
    /// `status=` or `--error-rate`).
    pub const FAULTS: &str = "animals_faults_total";
}

/// How the farm behaves.
#[derive(Debug, Clone)]
pub struct Config {
    /// Delay before a known animal answers (the talk: 5 s).
    pub delay: Duration,
    /// Upper bound for `?delay=`.
    pub max_delay: Duration,
    /// Each delay is moved by a uniform random amount in `±jitter` (never
    /// below zero).
    pub jitter: Duration,
    /// Share of `/animals/{name}` requests answered `503` (0.0 to 1.0).
    pub error_rate: f64,
    /// Seconds sent in `Retry-After` with those `503`s (and with `429`s
    /// and `503`s drawn by `status=`).
    pub retry_after_secs: u32,
    /// `--faults`: what every request gets unless it asks otherwise.
    pub faults: Spec,
    /// `--scenario`: rules per animal, under `faults`.
    pub scenario: Option<Scenario>,
    /// `--seed`: the sequence of outcomes is reproducible for requests
    /// that arrive in the same order.
    pub seed: Option<u64>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            delay: Duration::from_secs(5),
            max_delay: Duration::from_secs(60),
            jitter: Duration::ZERO,
            error_rate: 0.0,
            retry_after_secs: 1,
            faults: Spec::default(),
            scenario: None,
            seed: None,
        }
    }
}

/// The router's state: a cheap `Clone` handle.
#[derive(Clone)]
pub struct Farm {
    pub(crate) inner: Arc<FarmInner>,
}

pub(crate) struct FarmInner {
    pub(crate) catalog: Catalog,
    pub(crate) config: Config,
    pub(crate) welcome: RouteMetrics,
    pub(crate) animal: RouteMetrics,
    in_flight: Gauge,
    pub(crate) direct: Counter,
    pub(crate) h2_direct: Counter,
    /// Whether any server-wide fault setting is on: without one, and
    /// without fault parameters in the query, requests take the plain
    /// path they always took.
    faults_active: bool,
    /// Requests drawn so far: with `--seed`, request `n` draws from
    /// `Rng::nth(seed, n)`.
    sequence: AtomicU64,
    /// One counter per [`Fault`], in [`Fault::ALL`] order.
    fault_counters: [Counter; 9],
    /// Non-`200` statuses drawn.
    status_faults: Counter,
    /// Bytes of `bytes=` bodies alive now (`faults::MAX_BODIES_IN_FLIGHT`).
    fault_bodies: Arc<std::sync::atomic::AtomicUsize>,
}

impl Farm {
    /// Builds the state. Metric handles are registered here, so build the
    /// farm after installing a metrics recorder (without one, metrics are
    /// no-ops, which is what tests want).
    pub fn new(catalog: Catalog, config: Config) -> Farm {
        let faults_active = config.error_rate > 0.0
            || !config.faults.is_plain()
            || config.scenario.is_some()
            || config.seed.is_some();
        Farm {
            inner: Arc::new(FarmInner {
                catalog,
                config,
                welcome: RouteMetrics::new("/animals"),
                animal: RouteMetrics::new("/animals/{name}"),
                in_flight: metrics::gauge!(metric::IN_FLIGHT),
                direct: metrics::counter!(metric::DIRECT),
                h2_direct: metrics::counter!(metric::H2_DIRECT),
                faults_active,
                sequence: AtomicU64::new(0),
                fault_counters: Fault::ALL
                    .map(|f| metrics::counter!(metric::FAULTS, "kind" => f.name())),
                status_faults: metrics::counter!(metric::FAULTS, "kind" => "status"),
                fault_bodies: Arc::default(),
            }),
        }
    }

    pub fn catalog(&self) -> &Catalog {
        &self.inner.catalog
    }

    pub fn config(&self) -> &Config {
        &self.inner.config
    }
}

/// Handles registered once per route: looking a metric up by name and labels
/// on every request would cost a hash and a lock.
pub(crate) struct RouteMetrics {
    route: &'static str,
    ok: Counter,
    bad_request: Counter,
    not_found: Counter,
    unavailable: Counter,
    cancelled: Counter,
    latency: Histogram,
}

impl RouteMetrics {
    fn new(route: &'static str) -> RouteMetrics {
        let by_status = |status: &'static str| metrics::counter!(metric::REQUESTS, "route" => route, "status" => status);
        RouteMetrics {
            route,
            ok: by_status("200"),
            bad_request: by_status("400"),
            not_found: by_status("404"),
            unavailable: by_status("503"),
            cancelled: metrics::counter!(metric::CANCELLED, "route" => route),
            latency: metrics::histogram!(metric::LATENCY, "route" => route),
        }
    }

    fn count(&self, status: StatusCode) {
        match status {
            StatusCode::OK => self.ok.increment(1),
            StatusCode::BAD_REQUEST => self.bad_request.increment(1),
            StatusCode::NOT_FOUND => self.not_found.increment(1),
            StatusCode::SERVICE_UNAVAILABLE => self.unavailable.increment(1),
            // Statuses drawn by `status=`: rare enough to look up by name.
            other => metrics::counter!(metric::REQUESTS, "route" => self.route, "status" => other.as_str().to_owned()).increment(1),
        }
    }
}

/// Counts one request in flight; settles the metrics when answered, or
/// counts a cancellation when dropped unanswered (client gone mid-delay).
pub(crate) struct Track<'a> {
    farm: &'a FarmInner,
    route: &'a RouteMetrics,
    start: Instant,
    answered: bool,
}

impl<'a> Track<'a> {
    pub(crate) fn start(farm: &'a FarmInner, route: &'a RouteMetrics) -> Track<'a> {
        farm.in_flight.increment(1.0);
        Track {
            farm,
            route,
            start: Instant::now(),
            answered: false,
        }
    }

    fn answer(self, response: Response) -> Response {
        self.answered_with(response.status());
        response
    }

    /// Settles the metrics for an answer with `status`.
    pub(crate) fn answered_with(mut self, status: StatusCode) {
        self.answered = true;
        self.route.count(status);
        self.route
            .latency
            .record(self.start.elapsed().as_secs_f64());
    }
}

impl Drop for Track<'_> {
    fn drop(&mut self) {
        self.farm.in_flight.decrement(1.0);
        if !self.answered {
            self.route.cancelled.increment(1);
        }
    }
}

/// The Animals API: `/animals` and `/animals/{name}` (GET and HEAD).
pub fn router(farm: Farm) -> Router {
    Router::new()
        .route(
            "/animals",
            get(|State(farm): State<Farm>, req: Request| async move { welcome(&farm.inner, &req) }),
        )
        .route(
            "/animals/{*name}",
            get(|State(farm): State<Farm>, req: Request| animal(farm, req)),
        )
        .with_state(farm)
}

/// `Content-Type` of text answers (what aiohttp's `text=` sends).
fn text_plain() -> HeaderValue {
    HeaderValue::from_static("text/plain; charset=utf-8")
}

fn application_json() -> HeaderValue {
    HeaderValue::from_static("application/json")
}

fn respond(status: StatusCode, json: bool, body: Bytes) -> Response {
    let mut response = Response::new(Body::from(body));
    *response.status_mut() = status;
    response.headers_mut().insert(
        CONTENT_TYPE,
        if json {
            application_json()
        } else {
            text_plain()
        },
    );
    response
}

/// An error answer, decided before any delay.
pub(crate) struct Failure {
    pub(crate) status: StatusCode,
    /// The one-line reason as text, or `{"error": reason}`.
    pub(crate) body: Bytes,
    /// Fault injection's `503`s carry `Retry-After`.
    pub(crate) retry_after: bool,
}

impl Failure {
    fn new(status: StatusCode, json: bool, reason: &str) -> Failure {
        let body = if json {
            Bytes::from(serde_json::json!({ "error": reason }).to_string())
        } else {
            Bytes::copy_from_slice(reason.as_bytes())
        };
        Failure {
            status,
            body,
            retry_after: false,
        }
    }

    fn into_response(self, farm: &FarmInner, json: bool) -> Response {
        let mut response = respond(self.status, json, self.body);
        if self.retry_after {
            response
                .headers_mut()
                .insert(RETRY_AFTER, HeaderValue::from(farm.config.retry_after_secs));
        }
        response
    }
}

/// Whether an `Accept` header asks for JSON.
pub(crate) fn accepts_json(accept: Option<&[u8]>) -> bool {
    accept.is_some_and(|v| v.windows(16).any(|w| w == b"application/json"))
}

fn wants_json<B>(req: &http::Request<B>) -> bool {
    accepts_json(req.headers().get(ACCEPT).map(HeaderValue::as_bytes))
}

/// The body of `GET /animals`: the greeting, or the list as JSON.
pub(crate) fn welcome_body(farm: &FarmInner, json: bool) -> Bytes {
    if json {
        farm.catalog.list_json().clone()
    } else {
        Bytes::from_static(WELCOME.as_bytes())
    }
}

/// `GET /animals`, for the router and the HTTP/2 path alike.
pub(crate) fn welcome<B>(farm: &FarmInner, req: &http::Request<B>) -> Response {
    let track = Track::start(farm, &farm.welcome);
    let json = wants_json(req);
    track.answer(respond(StatusCode::OK, json, welcome_body(farm, json)))
}

/// `GET /animals/{name}`, for the router and the HTTP/2 path alike.
///
/// Everything is decided here, before the wait, and the request (headers,
/// URI, extensions: about a kilobyte) is dropped rather than kept in the
/// future, since thousands of requests may be waiting at once: the
/// future holds the farm, the plan and its timer.
pub(crate) fn animal<B>(farm: Farm, req: http::Request<B>) -> impl Future<Output = Response> {
    let json = wants_json(&req);
    let plan = decide(&farm.inner, req.uri().path(), req.uri().query(), json);
    drop(req);
    async move {
        let inner = &*farm.inner;
        let track = Track::start(inner, &inner.animal);
        let response = match plan {
            Ok(Answer::Sound(body, delay)) => {
                if !delay.is_zero() {
                    tokio::time::sleep(delay).await;
                }
                respond(StatusCode::OK, json, body)
            }
            Ok(Answer::Faulty(faulty)) => {
                faults::body::respond(*faulty, inner.config.max_delay).await
            }
            Err(failure) => failure.into_response(inner, json),
        };
        track.answer(response)
    }
}

/// What to answer a request for a known animal.
#[derive(Debug)]
pub(crate) enum Answer {
    /// The sound after the delay: what the farm always did.
    Sound(Bytes, Duration),
    /// Anything else fault injection drew (boxed: it is rare and large).
    Faulty(Box<Faulty>),
}

/// Everything decided before the delay: the name, the delay, fault
/// injection, the lookup.
pub(crate) fn decide(
    farm: &FarmInner,
    path: &str,
    query: Option<&str>,
    json: bool,
) -> Result<Answer, Failure> {
    let raw = name_in_path(path);
    let name = gate::decode::path(raw).map_err(|_| {
        Failure::new(
            StatusCode::BAD_REQUEST,
            json,
            "Bad animal name: it is not valid percent-encoded UTF-8.",
        )
    })?;
    if let Err(e) = validate_name(&name) {
        return Err(Failure::new(StatusCode::BAD_REQUEST, json, e.reason()));
    }
    let asked = match query.map(Spec::from_query) {
        None | Some(Ok(None)) => None,
        Some(Ok(Some(spec))) => Some(spec),
        Some(Err(reason)) => return Err(Failure::new(StatusCode::BAD_REQUEST, json, &reason)),
    };
    let Some(entry) = farm.catalog.get(&name) else {
        let reason = format!("The animal {name} was not found.");
        return Err(Failure::new(StatusCode::NOT_FOUND, json, &reason));
    };
    let body = if json {
        entry.json.clone()
    } else {
        entry.sound.clone()
    };
    let plain = !farm.faults_active && asked.as_ref().is_none_or(Spec::is_plain);
    if plain {
        // The farm as it always was: a fixed delay, jitter, no draw.
        let delay = match asked.and_then(|s| s.delay) {
            Some(faults::DelaySpec::Fixed(d)) => d.min(farm.config.max_delay),
            _ => farm.config.delay,
        };
        return Ok(Answer::Sound(body, jittered(delay, farm.config.jitter)));
    }
    let faulty = draw_answer(farm, &name, asked, body, &entry.sound, json);
    if faulty.outcome.is_plain() {
        return Ok(Answer::Sound(faulty.body, faulty.outcome.delay));
    }
    Ok(Answer::Faulty(Box::new(faulty)))
}

/// Layers the specs for this request, draws its outcome, counts the faults
/// and builds the body to send.
fn draw_answer(
    farm: &FarmInner,
    name: &str,
    asked: Option<Spec>,
    body: Bytes,
    sound: &Bytes,
    json: bool,
) -> Faulty {
    let config = &farm.config;
    let mut spec = config.faults.clone();
    if let Some(scenario) = &config.scenario {
        spec = spec.over(&scenario.for_animal(name));
    }
    if let Some(asked) = asked {
        spec = asked.over(&spec);
    }
    let mut rng = match (spec.seed, config.seed) {
        (Some(seed), _) => Rng::new(seed),
        (None, Some(seed)) => Rng::nth(seed, farm.sequence.fetch_add(1, Ordering::Relaxed)),
        (None, None) => Rng::new(rand::random()),
    };
    let base = faults::Base {
        delay: config.delay,
        jitter: config.jitter,
        max_delay: config.max_delay,
        error_rate: config.error_rate,
    };
    let mut outcome = faults::draw(&spec, &base, &mut rng);
    // A `bytes=` body is made now, within the bound on such bodies held
    // at once; past it, this request is refused instead.
    let mut refused = false;
    let big = match outcome.bytes {
        Some(n) if outcome.status == StatusCode::OK => {
            let made = faults::repeat_to(sound, n, &farm.fault_bodies);
            if made.is_none() {
                refused = true;
                outcome.status = StatusCode::SERVICE_UNAVAILABLE;
                outcome.fault = None;
            }
            made
        }
        _ => None,
    };
    if let Some(fault) = outcome.fault {
        farm.fault_counters[fault.index()].increment(1);
    }
    let status = outcome.status;
    let body = if refused {
        let reason = format!(
            "Too many large bodies in flight (at most {} bytes of bytes= bodies at once); retry later.",
            faults::MAX_BODIES_IN_FLIGHT
        );
        Failure::new(status, json, &reason).body
    } else if status != StatusCode::OK {
        farm.status_faults.increment(1);
        Failure::new(status, json, &faults::status_reason(status)).body
    } else {
        big.unwrap_or(body)
    };
    Faulty {
        retry_after: faults::retries_after(status).then_some(config.retry_after_secs),
        outcome,
        body,
        json: json && (status != StatusCode::OK || spec.bytes.is_none()),
    }
}

/// The name part of `/animals/{name}`, without the slashes around it.
fn name_in_path(path: &str) -> &str {
    let rest = match path.find("/animals/") {
        Some(i) => &path[i + "/animals/".len()..],
        None => path,
    };
    rest.trim_matches('/')
}

/// `?delay=` accepts plain seconds (`2`, `0.25`, as httpbin does) or a
/// humantime duration (`250ms`, `1s`).
pub fn parse_delay(value: &str) -> Result<Duration, String> {
    let bad = || format!("Bad delay {value:?}: use seconds like 0.25 or a duration like 250ms.");
    if value.is_empty() || value.len() > 32 {
        return Err(bad());
    }
    if let Ok(secs) = value.parse::<f64>() {
        return Duration::try_from_secs_f64(secs).map_err(|_| bad());
    }
    humantime::parse_duration(value).map_err(|_| bad())
}

fn jittered(delay: Duration, jitter: Duration) -> Duration {
    if jitter.is_zero() {
        return delay;
    }
    let j = jitter.as_secs_f64();
    let offset = rand::random::<f64>() * 2.0 * j - j;
    Duration::from_secs_f64((delay.as_secs_f64() + offset).max(0.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_cut_out_of_paths() {
        assert_eq!(name_in_path("/animals/cow"), "cow");
        assert_eq!(name_in_path("/animals//cow"), "cow");
        assert_eq!(name_in_path("/animals/cow/"), "cow");
        assert_eq!(name_in_path("/animals/cow/moo"), "cow/moo");
    }

    #[test]
    fn delays_parse() {
        assert_eq!(parse_delay("0.25"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_delay("2"), Ok(Duration::from_secs(2)));
        assert_eq!(parse_delay("250ms"), Ok(Duration::from_millis(250)));
        assert!(parse_delay("-1").is_err());
        assert!(parse_delay("soon").is_err());
        assert!(parse_delay("").is_err());
        assert!(parse_delay("NaN").is_err());
    }

    #[test]
    fn jitter_stays_in_range() {
        let d = Duration::from_millis(100);
        for _ in 0..1000 {
            let j = jittered(d, Duration::from_millis(50));
            assert!(j >= Duration::from_millis(50) && j <= Duration::from_millis(150));
            let j = jittered(d, Duration::from_millis(500));
            assert!(j <= Duration::from_millis(600));
        }
    }
}
