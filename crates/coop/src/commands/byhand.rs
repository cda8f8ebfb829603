//! `coop byhand`: the talk's `square` and `cube`, four ways.
//!
//! 1. plain functions with a blocking sleep;
//! 2. `async fn`s that still block (spawned together, they still take 9 s);
//! 3. `async fn`s awaiting a hand-written sleep future
//!    ([`byhand::manual_sleep`]), polled by hand, one poll at a time;
//! 4. the same functions with a real sleep, on the std-only executor of
//!    `crates/byhand` and then on tokio: `cube(2)` and `square(3)` together
//!    take 6 s instead of 9.
//!
//! Each step prints the talk's lines and the elapsed time in talk seconds.
//! `--speed` divides every sleep, so the demo (and its tests) can run fast;
//! the elapsed times are multiplied back, so they still read 9 s and 6 s.
//! This command runs without a tokio runtime except inside step 4, which
//! builds its own.

use std::fmt::Display;
use std::future::Future;
use std::io::Write;
use std::pin::Pin;
use std::process::ExitCode;
use std::sync::OnceLock;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use clap::Args;

use super::ConfigError;

/// Flags of `coop byhand`.
#[derive(Debug, Args)]
pub struct ByhandArgs {
    /// Divide every sleep by F: at 100 the talk's 3 s take 30 ms.
    ///
    /// Printed elapsed times stay in talk seconds (multiplied back by F).
    #[arg(long, value_name = "F", default_value_t = 1.0)]
    pub speed: f64,
    /// Run only step N (1 to 4) instead of all four.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u8).range(1..=4))]
    pub step: Option<u8>,
}

const MIN_SPEED: f64 = 0.01;
const MAX_SPEED: f64 = 1_000_000.0;

/// The speed factor, set once at the start of `run`. A global rather than an
/// argument so that `square` and `cube` keep the talk's signatures.
static SPEED: OnceLock<f64> = OnceLock::new();

/// How long the talk's `n` seconds take at the chosen speed.
fn talk_seconds(n: u64) -> Duration {
    Duration::from_secs(n).div_f64(speed())
}

fn speed() -> f64 {
    SPEED.get().copied().unwrap_or(1.0)
}

/// Prints one line. A closed stdout (`coop byhand | head`) ends the demo
/// quietly: the reader has seen what they wanted.
fn say(line: impl Display) {
    let mut out = std::io::stdout().lock();
    if let Err(err) = writeln!(out, "{line}") {
        let code = if err.kind() == std::io::ErrorKind::BrokenPipe {
            0
        } else {
            1
        };
        std::process::exit(code);
    }
}

/// Prints the elapsed wall time since `start`, in talk seconds.
fn say_elapsed(start: Instant, note: &str) {
    let secs = start.elapsed().as_secs_f64() * speed();
    say(format_args!("elapsed: {secs:.1} s{note}"));
}

pub fn run(args: ByhandArgs) -> anyhow::Result<ExitCode> {
    // Bounded so that every sleep stays a sensible duration: 0.01 turns 3 s
    // into 5 minutes, a million turns it into 3 microseconds.
    if !(MIN_SPEED..=MAX_SPEED).contains(&args.speed) {
        return Err(ConfigError(format!(
            "--speed must be between {MIN_SPEED} and {MAX_SPEED}, got {}",
            args.speed
        ))
        .into());
    }
    let rt = byhand::Runtime::with_speed(args.speed)
        .map_err(|err| ConfigError(format!("--speed: {err}")))?;
    let _ = SPEED.set(args.speed);
    let steps: Vec<u8> = match args.step {
        Some(step) => vec![step],
        None => vec![1, 2, 3, 4],
    };
    for (i, step) in steps.into_iter().enumerate() {
        if i > 0 {
            say("");
        }
        match step {
            1 => step1(),
            2 => step2(rt),
            3 => step3(),
            _ => step4(rt)?,
        }
    }
    Ok(ExitCode::SUCCESS)
}

// ---------------------------------------------------------------------------
// Step 1: plain functions. The thread sleeps; nothing else can happen.

// ANCHOR: step1_functions
mod plain {
    use super::{say, talk_seconds};

    pub fn square(x: u64) -> u64 {
        say(format_args!("Starting square with argument {x}!"));
        std::thread::sleep(talk_seconds(3));
        say(format_args!("Finishing square with argument {x}!"));
        x * x
    }

    pub fn cube(x: u64) -> u64 {
        say(format_args!("Starting cube with argument {x}!"));
        std::thread::sleep(talk_seconds(3));
        let y = square(x);
        say(format_args!("Finishing cube with argument {x}!"));
        x * y
    }
}
// ANCHOR_END: step1_functions

fn step1() {
    say("== Step 1: plain functions with a blocking sleep ==");
    let start = Instant::now();
    let c = plain::cube(2);
    say(format_args!("cube(2) = {c}"));
    let s = plain::square(3);
    say(format_args!("square(3) = {s}"));
    say_elapsed(start, "");
}

// ---------------------------------------------------------------------------
// Step 2: async fns whose body still calls the blocking sleep.

// ANCHOR: step2_functions
mod blocking_async {
    use super::{say, talk_seconds};

    pub async fn square(x: u64) -> u64 {
        say(format_args!("Starting square with argument {x}!"));
        std::thread::sleep(talk_seconds(3)); // blocks the executor's only thread
        say(format_args!("Finishing square with argument {x}!"));
        x * x
    }

    pub async fn cube(x: u64) -> u64 {
        say(format_args!("Starting cube with argument {x}!"));
        std::thread::sleep(talk_seconds(3));
        let y = square(x).await;
        say(format_args!("Finishing cube with argument {x}!"));
        x * y
    }
}
// ANCHOR_END: step2_functions

fn step2(rt: byhand::Runtime) {
    say("== Step 2: async functions that still block ==");
    say("cube(2) and square(3) spawned together on the byhand executor:");
    let start = Instant::now();
    // ANCHOR: step2_run
    let (c, s) = rt.block_on(async {
        let c = byhand::spawn(blocking_async::cube(2));
        let s = byhand::spawn(blocking_async::square(3));
        (c.await, s.await)
    });
    // ANCHOR_END: step2_run
    say(format_args!("cube(2) = {c}, square(3) = {s}"));
    say_elapsed(start, "");
    say("Nothing was gained. `async` changes what calling the function returns");
    say("(a future, which runs only when polled), not what its body does. A");
    say("future can step aside only at an .await that returns Pending, and");
    say("std::thread::sleep never returns Pending: it blocks the one thread the");
    say("executor has, so the two futures still run one after the other.");
}

// ---------------------------------------------------------------------------
// Step 3: a hand-written sleep future, and us as the scheduler.

// ANCHOR: step3_functions
mod manual {
    use super::say;
    use byhand::manual_sleep;

    pub async fn square(x: u64) -> u64 {
        say(format_args!("Starting square with argument {x}!"));
        manual_sleep(3).await;
        say(format_args!("Finishing square with argument {x}!"));
        x * x
    }

    pub async fn cube(x: u64) -> u64 {
        say(format_args!("Starting cube with argument {x}!"));
        manual_sleep(3).await;
        let y = square(x).await;
        say(format_args!("Finishing cube with argument {x}!"));
        x * y
    }
}
// ANCHOR_END: step3_functions

/// One future we drive by hand, and what it last asked of us.
struct ByHand {
    name: &'static str,
    future: Pin<Box<dyn Future<Output = u64>>>,
    /// The seconds of its last request, and when they are up.
    asked: u64,
    resume_at: Instant,
}

impl ByHand {
    fn new(name: &'static str, future: impl Future<Output = u64> + 'static) -> ByHand {
        ByHand {
            name,
            future: Box::pin(future),
            asked: 0,
            resume_at: Instant::now(),
        }
    }

    // ANCHOR: step3_poll
    /// One poll, printed with its outcome: the talk's `coro.send(None)`.
    fn poll(&mut self) {
        say(format_args!("poll {}:", self.name));
        // Nothing will ever call this waker: manual_sleep relies on us to
        // come back, which is the whole point of this step.
        let mut cx = Context::from_waker(Waker::noop());
        match self.future.as_mut().poll(&mut cx) {
            Poll::Pending => match byhand::take_request() {
                Some(request) => {
                    say(format_args!("  -> Pending: \"{request}\""));
                    self.asked = request.seconds;
                    self.resume_at = Instant::now() + talk_seconds(request.seconds);
                }
                None => say("  -> Pending (no request)"),
            },
            Poll::Ready(value) => say(format_args!("  -> Ready({value})")),
        }
    }
    // ANCHOR_END: step3_poll
}

/// Waits until every one of `futures` may be polled again, as they asked.
fn wait_as_asked(futures: &[&ByHand]) {
    let until = futures.iter().map(|f| f.resume_at).max();
    let Some(until) = until else { return };
    let seconds = futures.iter().map(|f| f.asked).max().unwrap_or(0);
    let names: Vec<_> = futures.iter().map(|f| f.name).collect();
    say(format_args!(
        "(we wait {seconds} s, as {} asked)",
        names.join(" and ")
    ));
    std::thread::sleep(until.saturating_duration_since(Instant::now()));
}

fn step3() {
    say("== Step 3: a hand-written sleep future, polled by hand ==");
    say("square and cube now await manual_sleep(3), which returns Pending and");
    say("leaves a request for whoever polls it. We are that scheduler.");
    let start = Instant::now();
    // ANCHOR: step3_run
    let mut cube = ByHand::new("cube(2)", manual::cube(2));
    let mut square = ByHand::new("square(3)", manual::square(3));
    cube.poll();
    square.poll();
    wait_as_asked(&[&cube, &square]);
    cube.poll();
    square.poll();
    wait_as_asked(&[&cube]);
    cube.poll();
    // ANCHOR_END: step3_run
    say_elapsed(start, "");
    say("Two futures, one thread, 6 s: while one waited we ran the other.");
    say("Keeping track of who asked to wait how long is exactly an executor's job.");
}

// ---------------------------------------------------------------------------
// Step 4: a sleep that returns Pending to a real scheduler.

// ANCHOR: step4_functions
mod on_byhand {
    use std::time::Duration;

    use super::say;

    pub async fn square(x: u64) -> u64 {
        say(format_args!("Starting square with argument {x}!"));
        // The byhand runtime divides this by --speed itself.
        byhand::sleep(Duration::from_secs(3)).await;
        say(format_args!("Finishing square with argument {x}!"));
        x * x
    }

    pub async fn cube(x: u64) -> u64 {
        say(format_args!("Starting cube with argument {x}!"));
        byhand::sleep(Duration::from_secs(3)).await;
        let y = square(x).await;
        say(format_args!("Finishing cube with argument {x}!"));
        x * y
    }
}
// ANCHOR_END: step4_functions

mod on_tokio {
    use super::{say, talk_seconds};

    pub async fn square(x: u64) -> u64 {
        say(format_args!("Starting square with argument {x}!"));
        tokio::time::sleep(talk_seconds(3)).await;
        say(format_args!("Finishing square with argument {x}!"));
        x * x
    }

    pub async fn cube(x: u64) -> u64 {
        say(format_args!("Starting cube with argument {x}!"));
        tokio::time::sleep(talk_seconds(3)).await;
        let y = square(x).await;
        say(format_args!("Finishing cube with argument {x}!"));
        x * y
    }
}

fn step4(rt: byhand::Runtime) -> anyhow::Result<()> {
    say("== Step 4: the same async functions on a real scheduler ==");
    say("On the byhand executor (crates/byhand, std only), spawned together:");
    let start = Instant::now();
    // ANCHOR: step4_run
    let (c, s) = rt.block_on(async {
        let c = byhand::spawn(on_byhand::cube(2));
        let s = byhand::spawn(on_byhand::square(3));
        (c.await, s.await)
    });
    // ANCHOR_END: step4_run
    say(format_args!("cube(2) = {c}, square(3) = {s}"));
    say_elapsed(start, " (one after the other: 9 s)");

    say("On tokio, spawned together:");
    let tokio_rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .context("building a tokio runtime")?;
    let start = Instant::now();
    // ANCHOR: step4_tokio
    let (c, s) = tokio_rt.block_on(async {
        let c = tokio::spawn(on_tokio::cube(2));
        let s = tokio::spawn(on_tokio::square(3));
        (c.await, s.await)
    });
    // ANCHOR_END: step4_tokio
    let (c, s) = (c.context("cube task")?, s.context("square task")?);
    say(format_args!("cube(2) = {c}, square(3) = {s}"));
    say_elapsed(start, " (one after the other: 9 s)");
    Ok(())
}
