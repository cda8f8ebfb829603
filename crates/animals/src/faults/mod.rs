//! The farm as a fault-injection fixture: the model of how one answer to
//! `/animals/{name}` misbehaves, and the seeded draw that decides it.
//!
//! What lives here is plain data and arithmetic, no I/O:
//!
//! - [`Spec`]: what a request, a `--faults` flag or a scenario rule asks
//!   for (`delay=`, `status=`, `bytes=`, `drip=`, `bandwidth=`, `fault=`,
//!   `toxicity=`, `seed=`, `hold=`), parsed from a query string with a
//!   one-line reason naming the parameter when a value is bad. Specs are
//!   layered: a request's query over `--faults` over the scenario's rule
//!   for that animal over its `[all]` rule over the plain flags.
//! - [`Outcome`]: one request's fate as a value (its delay, its status,
//!   its fault or none, its body size and pacing), drawn by [`draw`] from a
//!   spec and a [`Rng`]. The same spec and the same seed give the same
//!   outcome, which is what makes a failing client test replayable.
//! - [`Rng`]: SplitMix64, written out here rather than taken from `rand`,
//!   so that a seed means the same outcomes in every version of coop (the
//!   `rand` crate does not promise that for `StdRng`).
//!
//! The HTTP layers only apply an outcome: [`wire`] on a socket it owns
//! (HTTP/1.1, every fault in its TCP form), [`body`] through hyper (HTTP/2,
//! where a reset is an `RST_STREAM`, and HTTP/1.1 requests hyper serves).
//! [`scenario`] reads the TOML scenario file.
//!
//! Why two appliers: TCP faults (a reset, bytes that are not HTTP, a
//! malformed chunk, a false `Content-Length`) need the raw socket, and
//! hyper never hands it over for an ordinary request (`hyper::upgrade`
//! only follows a `101` or a `CONNECT`). The farm's fast path
//! ([`crate::direct`]) already owns the socket of every plain HTTP/1.1
//! animal request, so it hands a faulty one to [`wire`], which writes the
//! answer byte by byte; the only coupling is one match arm there. HTTP/2
//! streams share a connection, so a fault there can only be the stream's:
//! hyper gives that form when a response body fails.

pub mod body;
pub mod scenario;
pub mod wire;

pub use scenario::Scenario;

use std::fmt;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use http::StatusCode;

/// Largest `bytes=`: a body the farm builds in memory per request.
pub const MAX_BYTES: usize = 8 * 1024 * 1024;

/// Largest `bandwidth=` in bytes per second (beyond it, pacing is moot).
pub const MAX_BANDWIDTH: u64 = 1 << 30;

/// Most entries in a weighted `status=` list.
const MAX_STATUSES: usize = 16;

/// Longest parameter value looked at; longer ones are refused.
const MAX_VALUE: usize = 256;

/// How long `fault=slow-close` holds the connection after the answer when
/// no `hold=` is given (capped by `--max-delay`, like every wait).
pub const DEFAULT_HOLD: Duration = Duration::from_secs(5);

/// `z` of the 99th percentile of the standard normal distribution: a
/// lognormal's `sigma` from its P50 and P99 is `(ln p99 - ln p50) / Z99`.
const Z99: f64 = 2.326_347_874;

/// What goes wrong with the connection (or, over HTTP/2, the stream).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Fault {
    /// TCP reset before any byte of the answer (`SO_LINGER` 0, then close).
    Reset,
    /// TCP reset after the head and half of the body.
    ResetMid,
    /// Close (FIN) before any byte.
    Empty,
    /// Close (FIN) after the head and half of the body.
    Truncate,
    /// A `Content-Length` larger than the body, the body, then close.
    BadLength,
    /// A chunked body whose second chunk header is not hexadecimal.
    BadChunk,
    /// Random bytes instead of HTTP, then close.
    Garbage,
    /// Read the request, never answer, close at `--max-delay`.
    Blackhole,
    /// Answer, then hold the connection (`hold=`) before closing it.
    SlowClose,
}

impl Fault {
    /// Every fault, in the order of [`Fault::index`].
    pub const ALL: [Fault; 9] = [
        Fault::Reset,
        Fault::ResetMid,
        Fault::Empty,
        Fault::Truncate,
        Fault::BadLength,
        Fault::BadChunk,
        Fault::Garbage,
        Fault::Blackhole,
        Fault::SlowClose,
    ];

    /// The name used by `fault=`, scenario files and the metrics label.
    pub fn name(self) -> &'static str {
        match self {
            Fault::Reset => "reset",
            Fault::ResetMid => "reset-mid",
            Fault::Empty => "empty",
            Fault::Truncate => "truncate",
            Fault::BadLength => "bad-length",
            Fault::BadChunk => "bad-chunk",
            Fault::Garbage => "garbage",
            Fault::Blackhole => "blackhole",
            Fault::SlowClose => "slow-close",
        }
    }

    /// Position in [`Fault::ALL`] (metric handles are kept in that order).
    pub fn index(self) -> usize {
        Fault::ALL
            .iter()
            .position(|f| *f == self)
            .expect("ALL lists every variant")
    }

    fn parse(value: &str) -> Option<Fault> {
        Fault::ALL.into_iter().find(|f| f.name() == value)
    }
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// How long to wait before answering.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum DelaySpec {
    /// Always this long (then `--jitter` applies, as it always did).
    Fixed(Duration),
    /// Uniform between the two bounds (inclusive).
    Uniform(Duration, Duration),
    /// Lognormal with this median and 99th percentile.
    Lognormal { p50: Duration, p99: Duration },
}

/// How the body is spread over time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pace {
    /// All at once.
    Burst,
    /// Evenly over this long, in small chunks (go-httpbin's `/drip`).
    Drip(Duration),
    /// At most this many bytes per second (toxiproxy's `bandwidth`).
    Bandwidth(u64),
}

/// What a request (or a flag, or a scenario rule) asks of the farm. Every
/// field is optional so that specs can be layered with [`Spec::over`].
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Spec {
    pub delay: Option<DelaySpec>,
    /// Statuses and their weights (normalised when drawn).
    pub status: Option<Vec<(StatusCode, f64)>>,
    /// Body size: the sound repeated (or cut) to this many bytes.
    pub bytes: Option<usize>,
    pub pace: Option<Pace>,
    pub fault: Option<Fault>,
    /// Share of requests the fault applies to (default 1).
    pub toxicity: Option<f64>,
    /// Makes this request's draw reproducible.
    pub seed: Option<u64>,
    /// How long `slow-close` holds the connection.
    pub hold: Option<Duration>,
}

/// The parameter names a [`Spec`] reads, in the order documented.
pub const PARAMS: [&str; 9] = [
    "delay",
    "status",
    "bytes",
    "drip",
    "bandwidth",
    "fault",
    "toxicity",
    "seed",
    "hold",
];

impl Spec {
    /// Reads the known parameters of a query string (`a=1&b=2`); others
    /// are ignored (cache busters and the like). `Ok(None)` when there is
    /// none. Values may be percent-encoded.
    pub fn from_query(query: &str) -> Result<Option<Spec>, String> {
        let mut spec = Spec::default();
        let mut any = false;
        // Decoded by the gate's one rule, as the router's `Query` does.
        for (key, value) in gate::decode::query(query) {
            let Some(key) = PARAMS.iter().find(|p| **p == key) else {
                continue;
            };
            spec.set(key, &value)?;
            any = true;
        }
        Ok(any.then_some(spec))
    }

    /// Sets one parameter from its text; the error is one line naming it.
    /// Unknown names are an error here (scenario files and `--faults` are
    /// checked strictly; a query skips them before calling this).
    pub fn set(&mut self, key: &str, value: &str) -> Result<(), String> {
        if value.len() > MAX_VALUE {
            return Err(format!(
                "Bad {key}: the value is longer than {MAX_VALUE} bytes."
            ));
        }
        match key {
            "delay" => self.delay = Some(parse_delay_spec(value)?),
            "status" => self.status = Some(parse_statuses(value)?),
            "bytes" => {
                let n = value.parse::<usize>().ok().filter(|n| *n <= MAX_BYTES);
                self.bytes = Some(n.ok_or_else(|| {
                    format!("Bad bytes {value:?}: use a whole number from 0 to {MAX_BYTES}.")
                })?);
            }
            "drip" => {
                if matches!(self.pace, Some(Pace::Bandwidth(_))) {
                    return Err("Bad drip: use drip= or bandwidth=, not both.".into());
                }
                let d = crate::server::parse_delay(value).map_err(|_| {
                    format!("Bad drip {value:?}: use seconds like 2 or a duration like 500ms.")
                })?;
                self.pace = Some(Pace::Drip(d));
            }
            "bandwidth" => {
                if matches!(self.pace, Some(Pace::Drip(_))) {
                    return Err("Bad bandwidth: use drip= or bandwidth=, not both.".into());
                }
                let n = value
                    .parse::<u64>()
                    .ok()
                    .filter(|n| (1..=MAX_BANDWIDTH).contains(n));
                self.pace = Some(Pace::Bandwidth(n.ok_or_else(|| {
                    format!(
                        "Bad bandwidth {value:?}: use bytes per second from 1 to {MAX_BANDWIDTH}."
                    )
                })?));
            }
            "fault" => {
                self.fault = Some(Fault::parse(value).ok_or_else(|| {
                    let names: Vec<&str> = Fault::ALL.iter().map(|f| f.name()).collect();
                    format!("Bad fault {value:?}: use one of {}.", names.join(", "))
                })?);
            }
            "toxicity" => {
                let p = value
                    .parse::<f64>()
                    .ok()
                    .filter(|p| (0.0..=1.0).contains(p));
                self.toxicity = Some(p.ok_or_else(|| {
                    format!("Bad toxicity {value:?}: use a share from 0 to 1, like 0.25.")
                })?);
            }
            "seed" => {
                self.seed = Some(value.parse::<u64>().map_err(|_| {
                    format!("Bad seed {value:?}: use a whole number from 0 to 2^64-1.")
                })?);
            }
            "hold" => {
                self.hold = Some(crate::server::parse_delay(value).map_err(|_| {
                    format!("Bad hold {value:?}: use seconds like 2 or a duration like 500ms.")
                })?);
            }
            _ => {
                return Err(format!(
                    "Unknown parameter {key:?}: use one of {}.",
                    PARAMS.join(", ")
                ))
            }
        }
        Ok(())
    }

    /// Parses `--faults`: the query-string form, every name checked.
    pub fn parse_flag(text: &str) -> Result<Spec, String> {
        let mut spec = Spec::default();
        for pair in text.split('&').filter(|p| !p.is_empty()) {
            let (key, value) = pair
                .split_once('=')
                .ok_or_else(|| format!("Bad {pair:?}: use name=value pairs joined by &."))?;
            spec.set(key, value)?;
        }
        Ok(spec)
    }

    /// `self`, with each unset field taken from `lower`.
    pub fn over(mut self, lower: &Spec) -> Spec {
        self.delay = self.delay.or(lower.delay);
        if self.status.is_none() {
            self.status.clone_from(&lower.status);
        }
        self.bytes = self.bytes.or(lower.bytes);
        self.pace = self.pace.or(lower.pace);
        self.fault = self.fault.or(lower.fault);
        self.toxicity = self.toxicity.or(lower.toxicity);
        self.seed = self.seed.or(lower.seed);
        self.hold = self.hold.or(lower.hold);
        self
    }

    /// Nothing set.
    pub fn is_empty(&self) -> bool {
        *self == Spec::default()
    }

    /// At most a fixed delay: what the farm always did, on its fast path.
    pub fn is_plain(&self) -> bool {
        matches!(
            self,
            Spec {
                delay: None | Some(DelaySpec::Fixed(_)),
                status: None,
                bytes: None,
                pace: None,
                fault: None,
                toxicity: None,
                seed: None,
                hold: None,
            }
        )
    }
}

/// What the server does besides a spec: the plain flags.
#[derive(Debug, Clone, Copy)]
pub struct Base {
    /// `--delay`, when no delay is asked for.
    pub delay: Duration,
    /// `--jitter`, applied to fixed delays.
    pub jitter: Duration,
    /// `--max-delay`: caps every delay, drip and hold.
    pub max_delay: Duration,
    /// `--error-rate`: share answered `503` at once.
    pub error_rate: f64,
}

/// One request's fate. Equal outcomes mean the same bytes at the same
/// times (garbage included, through `noise`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// Wait before the first byte (or before the fault).
    pub delay: Duration,
    pub status: StatusCode,
    /// Body size asked for (`None`: the sound as it is).
    pub bytes: Option<usize>,
    pub pace: Pace,
    /// The fault, if it hit this request (toxicity drawn).
    pub fault: Option<Fault>,
    /// How long `slow-close` holds the connection.
    pub hold: Duration,
    /// Seeds the bytes of `garbage`.
    pub noise: u64,
}

impl Outcome {
    /// Nothing but a delay and a `200`: the fast path answers it.
    pub fn is_plain(&self) -> bool {
        self.status == StatusCode::OK
            && self.bytes.is_none()
            && self.pace == Pace::Burst
            && self.fault.is_none()
    }
}

/// Draws one outcome. The draws are made in a fixed order (delay, status,
/// toxicity, noise), each whether or not it is used, so that one parameter
/// does not shift the randomness of the next: adding `fault=` to a seeded
/// request keeps its delay and status.
pub fn draw(spec: &Spec, base: &Base, rng: &mut Rng) -> Outcome {
    let delay_draws = (rng.unit(), rng.unit());
    let delay = match spec.delay.unwrap_or(DelaySpec::Fixed(base.delay)) {
        DelaySpec::Fixed(d) => {
            if base.jitter.is_zero() {
                d
            } else {
                let j = base.jitter.as_secs_f64();
                Duration::from_secs_f64(
                    (d.as_secs_f64() + (delay_draws.0 * 2.0 - 1.0) * j).max(0.0),
                )
            }
        }
        DelaySpec::Uniform(lo, hi) => lo + (hi - lo).mul_f64(delay_draws.0),
        DelaySpec::Lognormal { p50, p99 } => lognormal(p50, p99, delay_draws.0, delay_draws.1),
    }
    .min(base.max_delay);

    let status_draw = rng.unit();
    let error_draw = rng.unit();
    // `--error-rate` answers its `503`s at once, as it always did.
    let erred = base.error_rate > 0.0 && error_draw < base.error_rate;
    let status = match &spec.status {
        _ if erred => StatusCode::SERVICE_UNAVAILABLE,
        None => StatusCode::OK,
        Some(weights) => pick(weights, status_draw),
    };

    let toxic_draw = rng.unit();
    let fault = spec
        .fault
        .filter(|_| toxic_draw < spec.toxicity.unwrap_or(1.0));
    let noise = rng.next_u64();

    let cap = |d: Duration| d.min(base.max_delay);
    Outcome {
        delay: if erred { Duration::ZERO } else { delay },
        status,
        bytes: spec.bytes,
        pace: match spec.pace {
            Some(Pace::Drip(d)) => Pace::Drip(cap(d)),
            other => other.unwrap_or(Pace::Burst),
        },
        fault,
        hold: cap(spec.hold.unwrap_or(DEFAULT_HOLD)),
        noise,
    }
}

/// A weighted choice: `u` in [0, 1) against the normalised weights.
fn pick(weights: &[(StatusCode, f64)], u: f64) -> StatusCode {
    let total: f64 = weights.iter().map(|(_, w)| w).sum();
    let mut at = u * total;
    for (status, weight) in weights {
        if at < *weight {
            return *status;
        }
        at -= weight;
    }
    // Rounding at the very top of the range: the last entry with weight.
    weights
        .iter()
        .rev()
        .find(|(_, w)| *w > 0.0)
        .map_or(StatusCode::OK, |(s, _)| *s)
}

/// A lognormal delay from two uniform draws (Box-Muller for the normal).
/// `mu = ln p50`, `sigma = (ln p99 - mu) / z99`.
fn lognormal(p50: Duration, p99: Duration, u1: f64, u2: f64) -> Duration {
    let mu = p50.as_secs_f64().ln();
    let sigma = (p99.as_secs_f64().ln() - mu) / Z99;
    // 1 - u1 is in (0, 1]: its logarithm is finite.
    let z = (-2.0 * (1.0 - u1).ln()).sqrt() * (std::f64::consts::TAU * u2).cos();
    let secs = (mu + sigma * z).exp();
    // An extreme draw can overflow a Duration; it is capped afterwards
    // anyway, so clamp to something finite and large.
    Duration::try_from_secs_f64(secs).unwrap_or(Duration::from_secs(86_400))
}

/// SplitMix64 (Steele, Lea, Flood 2014): tiny, fast, and every 64-bit seed
/// gives a good stream. Its output for a seed never changes, unlike
/// `rand`'s `StdRng` across versions.
#[derive(Debug, Clone)]
pub struct Rng(u64);

const GOLDEN: u64 = 0x9E37_79B9_7F4A_7C15;

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    /// The generator of request number `n` of a server started with
    /// `--seed seed`: the same (seed, n) always gives the same stream, and
    /// neighbouring `n` give unrelated ones.
    pub fn nth(seed: u64, n: u64) -> Rng {
        let mut mixer = Rng(seed ^ n.wrapping_mul(GOLDEN));
        Rng(mixer.next_u64())
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(GOLDEN);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1), with 53 bits of precision.
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// Fills `out` with random bytes.
    pub fn fill(&mut self, out: &mut [u8]) {
        for chunk in out.chunks_mut(8) {
            let bytes = self.next_u64().to_le_bytes();
            chunk.copy_from_slice(&bytes[..chunk.len()]);
        }
    }
}

/// The body of a non-`200` status drawn by `status=`.
pub fn status_reason(status: StatusCode) -> String {
    match status.as_u16() {
        429 => "Too many requests: the farm asks you to slow down.".into(),
        503 => crate::server::BUSY.into(),
        code => format!(
            "The farm answers {code} {}.",
            status.canonical_reason().unwrap_or("")
        )
        .replace(" .", "."),
    }
}

/// Whether a status carries `Retry-After`.
pub fn retries_after(status: StatusCode) -> bool {
    matches!(status.as_u16(), 429 | 503)
}

/// The answer to send for a faulty outcome: decided before the delay, so
/// the request itself can be freed while it waits.
#[derive(Debug, Clone)]
pub struct Faulty {
    pub outcome: Outcome,
    /// The whole body (its size is the `Content-Length` of a sound answer).
    pub body: Bytes,
    /// The body is JSON (`Accept: application/json`, and no `bytes=`).
    pub json: bool,
    /// `Retry-After` seconds, for `429` and `503`.
    pub retry_after: Option<u32>,
}

/// Bytes of `bytes=` bodies held at once, all requests together. A body
/// lives as long as its answer, which a drip or `--max-delay` can stretch to
/// a minute: without this bound, 16,000 connections asking for 8 MiB each
/// would hold 128 GB. Past it, a request gets `503` with a reason.
pub const MAX_BODIES_IN_FLIGHT: usize = 64 * 1024 * 1024;

/// A `bytes=` body, counted in `held` until its last `Bytes` drops.
struct HeldBody {
    buf: Vec<u8>,
    held: Arc<AtomicUsize>,
}

impl AsRef<[u8]> for HeldBody {
    fn as_ref(&self) -> &[u8] {
        &self.buf
    }
}

impl Drop for HeldBody {
    fn drop(&mut self) {
        self.held.fetch_sub(self.buf.len(), Ordering::AcqRel);
    }
}

/// The sound repeated (or cut) to exactly `n` bytes, counted in `held`
/// (bytes of such bodies alive now); `None` when that would pass
/// [`MAX_BODIES_IN_FLIGHT`].
pub fn repeat_to(sound: &[u8], n: usize, held: &Arc<AtomicUsize>) -> Option<Bytes> {
    let before = held.fetch_add(n, Ordering::AcqRel);
    if before.saturating_add(n) > MAX_BODIES_IN_FLIGHT {
        held.fetch_sub(n, Ordering::AcqRel);
        return None;
    }
    let buf = if sound.is_empty() {
        vec![b'.'; n]
    } else {
        sound.iter().copied().cycle().take(n).collect()
    };
    Some(Bytes::from_owner(HeldBody {
        buf,
        held: held.clone(),
    }))
}

fn parse_delay_spec(value: &str) -> Result<DelaySpec, String> {
    let dur = |s: &str| {
        crate::server::parse_delay(s.trim()).map_err(|_| {
            format!(
                "Bad delay {value:?}: use seconds (0.25), a duration (250ms), \
                 uniform:MIN..MAX or lognormal:P50,P99."
            )
        })
    };
    if let Some(range) = value.strip_prefix("uniform:") {
        let (lo, hi) = range.split_once("..").ok_or_else(|| {
            format!("Bad delay {value:?}: write uniform:MIN..MAX, like uniform:100ms..2s.")
        })?;
        let (lo, hi) = (dur(lo)?, dur(hi)?);
        if lo > hi {
            return Err(format!(
                "Bad delay {value:?}: the minimum is above the maximum."
            ));
        }
        Ok(DelaySpec::Uniform(lo, hi))
    } else if let Some(pair) = value.strip_prefix("lognormal:") {
        let (p50, p99) = pair.split_once(',').ok_or_else(|| {
            format!("Bad delay {value:?}: write lognormal:P50,P99, like lognormal:100ms,2s.")
        })?;
        let (p50, p99) = (dur(p50)?, dur(p99)?);
        if p50.is_zero() || p99 < p50 {
            return Err(format!(
                "Bad delay {value:?}: P50 must be above zero and P99 at least P50."
            ));
        }
        Ok(DelaySpec::Lognormal { p50, p99 })
    } else {
        crate::server::parse_delay(value).map(DelaySpec::Fixed)
    }
}

fn parse_statuses(value: &str) -> Result<Vec<(StatusCode, f64)>, String> {
    let bad = |why: &str| format!("Bad status {value:?}: {why}");
    let mut out = Vec::new();
    for item in value.split(',') {
        let (code, weight) = match item.split_once(':') {
            Some((code, weight)) => (code, weight.trim().parse::<f64>().ok()),
            None => (item, Some(1.0)),
        };
        let weight = weight
            .filter(|w| w.is_finite() && *w >= 0.0)
            .ok_or_else(|| bad("weights are numbers of at least 0, like 200:0.7,503:0.3."))?;
        let code = code
            .trim()
            .parse::<u16>()
            .ok()
            .filter(|c| (200..=599).contains(c) && ![204, 205, 304].contains(c))
            .and_then(|c| StatusCode::from_u16(c).ok())
            .ok_or_else(|| {
                bad("use codes from 200 to 599 (not 204, 205 or 304, which have no body).")
            })?;
        out.push((code, weight));
    }
    if out.len() > MAX_STATUSES {
        return Err(bad(&format!("at most {MAX_STATUSES} codes.")));
    }
    if out.iter().map(|(_, w)| w).sum::<f64>() <= 0.0 {
        return Err(bad("the weights add up to zero."));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn base() -> Base {
        Base {
            delay: ms(0),
            jitter: ms(0),
            max_delay: Duration::from_secs(60),
            error_rate: 0.0,
        }
    }

    fn spec(query: &str) -> Spec {
        Spec::from_query(query).unwrap().unwrap()
    }

    fn draws(query: &str, n: u64) -> Vec<Outcome> {
        let spec = spec(query);
        (0..n)
            .map(|i| draw(&spec, &base(), &mut Rng::nth(1, i)))
            .collect()
    }

    #[test]
    fn parameters_parse() {
        let s = spec("delay=uniform:10ms..2s&status=200:0.7,503:0.3&bytes=1000&drip=1s&fault=reset-mid&toxicity=0.5&seed=7&hold=2&x=1");
        assert_eq!(s.delay, Some(DelaySpec::Uniform(ms(10), ms(2000))));
        assert_eq!(
            s.status,
            Some(vec![
                (StatusCode::OK, 0.7),
                (StatusCode::SERVICE_UNAVAILABLE, 0.3)
            ])
        );
        assert_eq!(s.bytes, Some(1000));
        assert_eq!(s.pace, Some(Pace::Drip(ms(1000))));
        assert_eq!(s.fault, Some(Fault::ResetMid));
        assert_eq!(s.toxicity, Some(0.5));
        assert_eq!(s.seed, Some(7));
        assert_eq!(s.hold, Some(ms(2000)));
        assert_eq!(
            spec("delay=lognormal:100ms,2s").delay,
            Some(DelaySpec::Lognormal {
                p50: ms(100),
                p99: ms(2000)
            })
        );
        assert_eq!(
            spec("delay=lognormal%3A100ms%2C2s").delay,
            spec("delay=lognormal:100ms,2s").delay
        );
        assert_eq!(
            spec("status=429").status,
            Some(vec![(StatusCode::TOO_MANY_REQUESTS, 1.0)])
        );
        assert_eq!(spec("bandwidth=100").pace, Some(Pace::Bandwidth(100)));
        assert!(spec("delay=2").is_plain());
        assert!(!spec("delay=uniform:0..1s").is_plain());
        assert_eq!(Spec::from_query("x=1&y").unwrap(), None);
        for name in Fault::ALL.map(Fault::name) {
            assert_eq!(Fault::parse(name).unwrap().name(), name);
        }
    }

    #[test]
    fn bad_values_name_their_parameter() {
        for (query, name) in [
            ("delay=uniform:2s..1s", "delay"),
            ("delay=uniform:1s", "delay"),
            ("delay=lognormal:0s,1s", "delay"),
            ("delay=lognormal:2s,1s", "delay"),
            ("delay=soon", "delay"),
            ("status=200:x", "status"),
            ("status=99", "status"),
            ("status=204", "status"),
            ("status=200:0", "status"),
            ("status=200:-1", "status"),
            ("bytes=-1", "bytes"),
            ("bytes=99999999999", "bytes"),
            ("drip=forever", "drip"),
            ("drip=1s&bandwidth=10", "bandwidth"),
            ("bandwidth=0", "bandwidth"),
            ("fault=explode", "fault"),
            ("toxicity=1.5", "toxicity"),
            ("toxicity=NaN", "toxicity"),
            ("seed=-3", "seed"),
            ("hold=x", "hold"),
            ("fault=%zz", "fault"),
        ] {
            let err = Spec::from_query(query).unwrap_err();
            assert!(err.contains(name), "{query}: {err}");
            assert!(!err.contains('\n'), "{query}: one line: {err}");
        }
        assert!(Spec::parse_flag("fault=reset&nope=1")
            .unwrap_err()
            .contains("nope"));
        assert!(Spec::parse_flag("fault").unwrap_err().contains("fault"));
    }

    #[test]
    fn layers_fill_unset_fields_only() {
        let top = spec("fault=reset");
        let lower = spec("fault=empty&delay=1s&toxicity=0.5");
        let s = top.over(&lower);
        assert_eq!(s.fault, Some(Fault::Reset));
        assert_eq!(s.delay, Some(DelaySpec::Fixed(ms(1000))));
        assert_eq!(s.toxicity, Some(0.5));
    }

    #[test]
    fn the_same_seed_gives_the_same_hundred_outcomes() {
        let q = "delay=lognormal:10ms,1s&status=200:0.5,503:0.3,429:0.2&fault=garbage&toxicity=0.4";
        let a = draws(q, 100);
        assert_eq!(a, draws(q, 100));
        // ... and a request's own seed= gives the same outcome every time.
        let one = spec(&format!("{q}&seed=42"));
        let first = draw(&one, &base(), &mut Rng::new(one.seed.unwrap()));
        for _ in 0..100 {
            assert_eq!(draw(&one, &base(), &mut Rng::new(42)), first);
        }
        // Different seeds do differ (the test could not fail otherwise).
        assert_ne!(
            a,
            (0..100)
                .map(|i| draw(&spec(q), &base(), &mut Rng::nth(2, i)))
                .collect::<Vec<_>>()
        );
    }

    #[test]
    fn adding_a_fault_keeps_the_delay_and_status_of_a_seed() {
        let plain = draw(
            &spec("delay=uniform:0..1s&status=200,503"),
            &base(),
            &mut Rng::new(9),
        );
        let faulty = draw(
            &spec("delay=uniform:0..1s&status=200,503&fault=reset"),
            &base(),
            &mut Rng::new(9),
        );
        assert_eq!((plain.delay, plain.status), (faulty.delay, faulty.status));
        assert_eq!(faulty.fault, Some(Fault::Reset));
    }

    #[test]
    fn uniform_delays_over_a_thousand_draws() {
        let d: Vec<f64> = draws("delay=uniform:100ms..300ms", 1000)
            .iter()
            .map(|o| o.delay.as_secs_f64())
            .collect();
        assert!(d.iter().all(|s| (0.1..=0.3).contains(s)));
        let mean = d.iter().sum::<f64>() / 1000.0;
        assert!((mean - 0.2).abs() < 0.01, "mean {mean}");
        // Each fifth of the range gets about a fifth of the draws.
        for k in 0..5 {
            let lo = 0.1 + 0.04 * k as f64;
            let n = d.iter().filter(|s| **s >= lo && **s < lo + 0.04).count();
            assert!((150..=250).contains(&n), "bin {k}: {n}");
        }
    }

    #[test]
    fn lognormal_delays_over_a_thousand_draws() {
        let mut d: Vec<f64> = draws("delay=lognormal:100ms,2s", 1000)
            .iter()
            .map(|o| o.delay.as_secs_f64())
            .collect();
        d.sort_by(f64::total_cmp);
        let p50 = d[499];
        assert!((0.085..0.115).contains(&p50), "p50 {p50}");
        let above = d.iter().filter(|s| **s > 2.0).count();
        assert!(
            (3..=25).contains(&above),
            "{above} of 1000 above the P99 of 2s"
        );
        let p90 = d[899];
        // z90 = 1.2816: exp(ln 0.1 + sigma * 1.2816) with sigma = ln(20)/2.3263.
        let expected = (0.1f64.ln() + 20f64.ln() / Z99 * 1.2816).exp();
        assert!(
            (p90 / expected - 1.0).abs() < 0.25,
            "p90 {p90} vs {expected}"
        );
        // The log of the draws is normal: its mean is ln(p50), within four
        // standard errors (sigma / sqrt(1000) = 0.041).
        let mean_ln = d.iter().map(|s| s.ln()).sum::<f64>() / 1000.0;
        assert!(
            (mean_ln - 0.1f64.ln()).abs() < 0.165,
            "mean of ln {mean_ln}"
        );
    }

    #[test]
    fn delays_are_capped_by_max_delay() {
        let capped = Base {
            max_delay: ms(500),
            ..base()
        };
        let s = spec("delay=lognormal:1s,10s&drip=10s&hold=1m");
        for i in 0..1000 {
            let o = draw(&s, &capped, &mut Rng::nth(3, i));
            assert!(o.delay <= ms(500));
            assert_eq!(o.pace, Pace::Drip(ms(500)));
            assert_eq!(o.hold, ms(500));
        }
    }

    #[test]
    fn weighted_statuses_and_toxicity_over_a_thousand_draws() {
        let o = draws(
            "status=200:0.7,503:0.2,429:0.1&fault=reset&toxicity=0.25",
            1000,
        );
        let count = |code: u16| o.iter().filter(|o| o.status.as_u16() == code).count();
        assert!((640..=760).contains(&count(200)), "200: {}", count(200));
        assert!((150..=250).contains(&count(503)), "503: {}", count(503));
        assert!((60..=140).contains(&count(429)), "429: {}", count(429));
        let hit = o.iter().filter(|o| o.fault.is_some()).count();
        assert!((200..=300).contains(&hit), "toxicity 0.25: {hit}");
        // Weights need not add up to one.
        let o = draws("status=200:3,500:1", 1000);
        let errors = o.iter().filter(|o| o.status.as_u16() == 500).count();
        assert!((200..=300).contains(&errors), "{errors}");
    }

    #[test]
    fn error_rate_still_answers_503() {
        let b = Base {
            error_rate: 0.3,
            ..base()
        };
        let n = (0..1000)
            .filter(|i| {
                draw(&Spec::default(), &b, &mut Rng::nth(4, *i)).status
                    == StatusCode::SERVICE_UNAVAILABLE
            })
            .count();
        assert!((240..=360).contains(&n), "{n}");
    }

    #[test]
    fn bodies_repeat_the_sound() {
        let held = Arc::new(AtomicUsize::new(0));
        let body = repeat_to(b"Moo!", 10, &held).unwrap();
        assert_eq!(&body[..], b"Moo!Moo!Mo");
        assert_eq!(repeat_to(b"Moo!", 0, &held).unwrap().len(), 0);
        assert_eq!(held.load(Ordering::Acquire), 10, "held while alive");
        let big = repeat_to(b"Moo!", MAX_BODIES_IN_FLIGHT - 10, &held).unwrap();
        assert!(repeat_to(b"Moo!", 1, &held).is_none(), "past the bound");
        drop((body, big));
        assert_eq!(held.load(Ordering::Acquire), 0, "released with the bodies");
        assert!(repeat_to(b"Moo!", 1, &held).is_some());
        assert_eq!(
            status_reason(StatusCode::INTERNAL_SERVER_ERROR),
            "The farm answers 500 Internal Server Error."
        );
    }
}
