//! `GET /api/race?mode=sequential|concurrent&n=N&delay_ms=MS`: the web
//! page's animal race. It asks a farm (the serving process's own) for N
//! animals with coop's client ([`crate::Client`]), one after the other or
//! all at once, and reports when each request started and ended.
//!
//! The race runs on the server because a browser opens at most six
//! HTTP/1.1 connections per host: a browser-side race of twelve animals
//! would measure the browser's queue, not concurrency. (The page can run
//! the browser-side race too, and explains the staircase it draws.)
//!
//! Every parameter is bounded (animals, delay, faults, retries, timeout,
//! races at once); past a bound the answer is `400` or `503` with a
//! one-line reason.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::{Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use tokio::sync::Semaphore;

/// Animals in one race at most: enough to make the point, few enough that
/// the timeline stays readable and a race cannot become a load test.
pub const MAX_RACE_ANIMALS: usize = 50;

/// Longest per-request delay a race may ask for.
pub const MAX_RACE_DELAY: Duration = Duration::from_secs(5);

/// A sequential race takes N × delay; past this it is refused.
pub const MAX_SEQUENTIAL_RACE: Duration = Duration::from_secs(60);

/// Races running at once. Each holds up to [`MAX_RACE_ANIMALS`] requests
/// against this server; more visitors wait their turn briefly, then get
/// `503` (see [`RACE_QUEUE_WAIT`]).
const RACES_AT_ONCE: usize = 4;

/// How long a race waits for a free slot before it is turned away.
const RACE_QUEUE_WAIT: Duration = Duration::from_secs(2);

#[derive(Clone)]
struct RaceState {
    /// Where the race sends its requests: this server's own farm.
    farm_base: Arc<str>,
    /// Asks the farm for its list of animals before each race (the
    /// catalogue may have been replaced with `--catalog`).
    http: reqwest::Client,
    races: Arc<Semaphore>,
}

/// The race's endpoint, asking the farm at `farm_base`
/// (`http://HOST:PORT/animals`).
pub fn router(farm_base: String) -> Router {
    let state = RaceState {
        farm_base: farm_base.into(),
        http: reqwest::Client::new(),
        races: Arc::new(Semaphore::new(RACES_AT_ONCE)),
    };
    Router::new()
        .route("/api/race", get(race))
        .with_state(state)
}

/// `400` or `503` with a one-line reason.
fn refuse(status: StatusCode, reason: impl Into<String>) -> Response {
    (status, format!("{}\n", reason.into())).into_response()
}

#[derive(Debug, Deserialize)]
struct RaceQuery {
    mode: Option<String>,
    n: Option<String>,
    delay_ms: Option<String>,
    /// Fault parameters for every request, in query form
    /// (`fault=reset&toxicity=0.3`): see the guide's fault chapter.
    faults: Option<String>,
    /// Extra attempts per animal (0 to [`MAX_RACE_RETRIES`]).
    retries: Option<String>,
    /// Per-attempt timeout in ms (default: the delay plus 10 s).
    timeout_ms: Option<String>,
}

/// Most retries a race may ask for per animal.
pub const MAX_RACE_RETRIES: u64 = 5;

/// Longest `faults=` a race takes, in bytes.
const MAX_RACE_FAULTS: usize = 256;

/// What `/api/race` answers.
#[derive(Debug, Serialize)]
struct RaceReport {
    mode: &'static str,
    n: usize,
    delay_ms: u64,
    /// From the first request's start to the last answer.
    total_ms: f64,
    /// Sum of the requests' own times: what a sequential client must wait.
    sum_ms: f64,
    requests: Vec<RaceRequest>,
}

#[derive(Debug, Serialize)]
struct RaceRequest {
    animal: String,
    /// Milliseconds after the race began.
    start_ms: f64,
    end_ms: f64,
    /// The sound, or why there is none.
    sound: Option<String>,
    error: Option<String>,
    /// Attempts made (more than 1 when faults were retried).
    attempts: u32,
    /// Failed attempts by kind.
    mishaps: crate::Mishaps,
}

/// A whole number in `min..=max` from the query, or `default` if absent.
fn parse_bounded(
    raw: Option<&str>,
    default: u64,
    (min, max): (u64, u64),
    what: &str,
) -> Result<u64, String> {
    let Some(raw) = raw else { return Ok(default) };
    match raw.trim().parse::<u64>() {
        Ok(v) if (min..=max).contains(&v) => Ok(v),
        _ => Err(format!(
            "{what} must be a whole number from {min} to {max}, not {raw:?}"
        )),
    }
}

/// The farm's animals, in catalogue order, from its own `GET /animals`.
async fn farm_names(web: &RaceState) -> Result<Vec<String>, reqwest::Error> {
    #[derive(Deserialize)]
    struct Entry {
        animal: String,
    }
    let list: Vec<Entry> = web
        .http
        .get(&*web.farm_base)
        .header(header::ACCEPT, "application/json")
        .timeout(Duration::from_secs(5))
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    Ok(list.into_iter().map(|e| e.animal).collect())
}

/// `GET /api/race?mode=sequential|concurrent&n=N&delay_ms=MS`: asks this
/// server's farm for N animals (each with `?delay=MS`) through coop's
/// client, and reports each request's start and end. `faults=` (the farm's
/// fault parameters in query form), `retries=` and `timeout_ms=` let a
/// learner watch retries and timeouts stretch the bars.
async fn race(State(web): State<RaceState>, Query(q): Query<RaceQuery>) -> Response {
    let sequential = match q.mode.as_deref().unwrap_or("concurrent") {
        "sequential" => true,
        "concurrent" => false,
        other => {
            return refuse(
                StatusCode::BAD_REQUEST,
                format!("unknown mode {other:?}: use sequential or concurrent"),
            )
        }
    };
    let n = match parse_bounded(q.n.as_deref(), 6, (1, MAX_RACE_ANIMALS as u64), "n") {
        Ok(n) => n as usize,
        Err(e) => return refuse(StatusCode::BAD_REQUEST, e),
    };
    let delay_ms = match parse_bounded(
        q.delay_ms.as_deref(),
        1000,
        (0, MAX_RACE_DELAY.as_millis() as u64),
        "delay_ms",
    ) {
        Ok(d) => d,
        Err(e) => return refuse(StatusCode::BAD_REQUEST, e),
    };
    let delay = Duration::from_millis(delay_ms);
    let faults = q.faults.as_deref().map(str::trim).unwrap_or("");
    if faults.len() > MAX_RACE_FAULTS {
        return refuse(
            StatusCode::BAD_REQUEST,
            format!("faults is longer than {MAX_RACE_FAULTS} bytes"),
        );
    }
    if let Err(e) = crate::faults::Spec::parse_flag(faults) {
        return refuse(StatusCode::BAD_REQUEST, format!("faults: {e}"));
    }
    let retries = match parse_bounded(q.retries.as_deref(), 0, (0, MAX_RACE_RETRIES), "retries") {
        Ok(r) => r as u32,
        Err(e) => return refuse(StatusCode::BAD_REQUEST, e),
    };
    let timeout = match parse_bounded(q.timeout_ms.as_deref(), 0, (100, 60_000), "timeout_ms") {
        Ok(0) => delay + Duration::from_secs(10),
        Ok(ms) => Duration::from_millis(ms),
        Err(e) => return refuse(StatusCode::BAD_REQUEST, e),
    };
    if sequential && delay * n as u32 > MAX_SEQUENTIAL_RACE {
        return refuse(
            StatusCode::BAD_REQUEST,
            format!(
                "a sequential race of {n} × {delay_ms} ms would take over {} s: ask for fewer or faster animals",
                MAX_SEQUENTIAL_RACE.as_secs()
            ),
        );
    }
    let Ok(Ok(_slot)) =
        tokio::time::timeout(RACE_QUEUE_WAIT, web.races.clone().acquire_owned()).await
    else {
        return refuse(
            StatusCode::SERVICE_UNAVAILABLE,
            "too many races at once: try again in a moment",
        );
    };

    let client = match crate::Client::new(crate::ClientConfig {
        // The faults come after the race's delay, so a `delay=` among
        // them wins (the farm reads the last value).
        base: if faults.is_empty() {
            format!("{}?delay={delay_ms}ms", web.farm_base)
        } else {
            format!("{}?delay={delay_ms}ms&{faults}", web.farm_base)
        },
        concurrency: if sequential { 1 } else { n },
        timeout,
        // A race shows timing; by default a retry would hide a failure in
        // a longer bar, so there is none unless the learner asks for it
        // (then the longer bar is the point).
        retries,
        ..crate::ClientConfig::default()
    }) {
        Ok(c) => c,
        Err(e) => return refuse(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    };
    let farm = match farm_names(&web).await {
        Ok(names) if !names.is_empty() => names,
        Ok(_) => return refuse(StatusCode::SERVICE_UNAVAILABLE, "the farm has no animals"),
        Err(e) => {
            return refuse(
                StatusCode::BAD_GATEWAY,
                format!("cannot list the farm's animals: {e}"),
            )
        }
    };
    // Catalogue order, cycled when the race wants more than there are.
    let names: Vec<String> = (0..n).map(|i| farm[i % farm.len()].clone()).collect();

    // ANCHOR: race
    let t0 = Instant::now();
    let ms = |at: Instant| at.duration_since(t0).as_secs_f64() * 1000.0;
    // Each request records its own start and end around coop's client.
    let timed = |index: usize, name: String| {
        let client = client.clone();
        async move {
            let start = Instant::now();
            let outcome = client.ask(index, name).await;
            (start, Instant::now(), outcome)
        }
    };
    let mut runs = Vec::with_capacity(n);
    if sequential {
        for (i, name) in names.into_iter().enumerate() {
            runs.push(timed(i, name).await);
        }
    } else {
        runs = futures::future::join_all(
            names
                .into_iter()
                .enumerate()
                .map(|(i, name)| timed(i, name)),
        )
        .await;
    }
    let total_ms = ms(Instant::now());
    // ANCHOR_END: race

    let requests: Vec<RaceRequest> = runs
        .into_iter()
        .map(|(start, end, outcome)| {
            let (sound, error) = match outcome.result {
                Ok(s) => (Some(s), None),
                Err(e) => (None, Some(e.to_string())),
            };
            RaceRequest {
                animal: outcome.name,
                start_ms: ms(start),
                end_ms: ms(end),
                sound,
                error,
                attempts: outcome.attempts,
                mishaps: outcome.mishaps,
            }
        })
        .collect();
    let sum_ms = requests.iter().map(|r| r.end_ms - r.start_ms).sum();
    Json(RaceReport {
        mode: if sequential {
            "sequential"
        } else {
            "concurrent"
        },
        n,
        delay_ms,
        total_ms,
        sum_ms,
        requests,
    })
    .into_response()
}
