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

use std::borrow::Cow;
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
    /// Seconds sent in `Retry-After` with those `503`s.
    pub retry_after_secs: u32,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            delay: Duration::from_secs(5),
            max_delay: Duration::from_secs(60),
            jitter: Duration::ZERO,
            error_rate: 0.0,
            retry_after_secs: 1,
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
}

impl Farm {
    /// Builds the state. Metric handles are registered here, so build the
    /// farm after installing a metrics recorder (without one, metrics are
    /// no-ops, which is what tests want).
    pub fn new(catalog: Catalog, config: Config) -> Farm {
        Farm {
            inner: Arc::new(FarmInner {
                catalog,
                config,
                welcome: RouteMetrics::new("/animals"),
                animal: RouteMetrics::new("/animals/{name}"),
                in_flight: metrics::gauge!(metric::IN_FLIGHT),
                direct: metrics::counter!(metric::DIRECT),
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
            ok: by_status("200"),
            bad_request: by_status("400"),
            not_found: by_status("404"),
            unavailable: by_status("503"),
            cancelled: metrics::counter!(metric::CANCELLED, "route" => route),
            latency: metrics::histogram!(metric::LATENCY, "route" => route),
        }
    }

    fn counter(&self, status: StatusCode) -> &Counter {
        match status {
            StatusCode::OK => &self.ok,
            StatusCode::BAD_REQUEST => &self.bad_request,
            StatusCode::NOT_FOUND => &self.not_found,
            _ => &self.unavailable,
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
        self.route.counter(status).increment(1);
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
        .route("/animals", get(welcome))
        .route("/animals/{*name}", get(animal))
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

fn wants_json(req: &Request) -> bool {
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

async fn welcome(State(farm): State<Farm>, req: Request) -> Response {
    let inner = &*farm.inner;
    let track = Track::start(inner, &inner.welcome);
    let json = wants_json(&req);
    track.answer(respond(StatusCode::OK, json, welcome_body(inner, json)))
}

async fn animal(State(farm): State<Farm>, req: Request) -> Response {
    let inner = &*farm.inner;
    let track = Track::start(inner, &inner.animal);
    let json = wants_json(&req);
    // Everything is decided before the wait, and the request (headers,
    // URI, extensions: about a kilobyte) freed, since thousands of
    // requests may be waiting at once.
    let plan = decide(inner, req.uri().path(), req.uri().query(), json);
    drop(req);
    let response = match plan {
        Ok((body, delay)) => {
            if !delay.is_zero() {
                tokio::time::sleep(delay).await;
            }
            respond(StatusCode::OK, json, body)
        }
        Err(failure) => failure.into_response(inner, json),
    };
    track.answer(response)
}

/// Everything decided before the delay: the name, the delay, fault
/// injection, the lookup. `Ok`: the sound to send after the delay.
pub(crate) fn decide(
    farm: &FarmInner,
    path: &str,
    query: Option<&str>,
    json: bool,
) -> Result<(Bytes, Duration), Failure> {
    let raw = name_in_path(path);
    let name = percent_decode(raw).ok_or_else(|| {
        Failure::new(
            StatusCode::BAD_REQUEST,
            json,
            "Bad animal name: it is not valid percent-encoded UTF-8.",
        )
    })?;
    if let Err(e) = validate_name(&name) {
        return Err(Failure::new(StatusCode::BAD_REQUEST, json, e.reason()));
    }
    let delay = match query.and_then(delay_param) {
        None => farm.config.delay,
        Some(Ok(d)) => d.min(farm.config.max_delay),
        Some(Err(reason)) => return Err(Failure::new(StatusCode::BAD_REQUEST, json, &reason)),
    };
    if farm.config.error_rate > 0.0 && rand::random::<f64>() < farm.config.error_rate {
        let mut failure = Failure::new(StatusCode::SERVICE_UNAVAILABLE, json, BUSY);
        failure.retry_after = true;
        return Err(failure);
    }
    let Some(entry) = farm.catalog.get(&name) else {
        let reason = format!("The animal {name} was not found.");
        return Err(Failure::new(StatusCode::NOT_FOUND, json, &reason));
    };
    let body = if json {
        entry.json.clone()
    } else {
        entry.sound.clone()
    };
    Ok((body, jittered(delay, farm.config.jitter)))
}

/// The name part of `/animals/{name}`, without the slashes around it.
fn name_in_path(path: &str) -> &str {
    let rest = match path.find("/animals/") {
        Some(i) => &path[i + "/animals/".len()..],
        None => path,
    };
    rest.trim_matches('/')
}

/// Decodes `%XX` escapes; `None` when an escape is broken or the result is
/// not UTF-8. Borrows when there is nothing to decode (the usual case).
fn percent_decode(s: &str) -> Option<Cow<'_, str>> {
    if !s.contains('%') {
        return Some(Cow::Borrowed(s));
    }
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes.get(i + 1..i + 3)?;
            let hex = std::str::from_utf8(hex).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok().map(Cow::Owned)
}

/// Finds `delay=` in a query string: `None` when absent, else the parsed
/// value or a one-line reason.
fn delay_param(query: &str) -> Option<Result<Duration, String>> {
    let value = query
        .split('&')
        .find_map(|pair| pair.strip_prefix("delay="))?;
    Some(parse_delay(value))
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
    fn percent_decoding() {
        assert_eq!(percent_decode("cow").unwrap(), "cow");
        assert_eq!(percent_decode("c%6Fw").unwrap(), "cow");
        assert_eq!(percent_decode("c%20w").unwrap(), "c w");
        assert!(percent_decode("c%2").is_none());
        assert!(percent_decode("c%zzw").is_none());
        assert!(percent_decode("%ff").is_none());
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
        assert_eq!(
            delay_param("x=1&delay=1s"),
            Some(Ok(Duration::from_secs(1)))
        );
        assert_eq!(delay_param("x=1"), None);
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
