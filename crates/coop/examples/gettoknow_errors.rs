//! Errors as values: the talk's `gather(*coros, return_exceptions=True)`,
//! where `square(7)` refuses and the other squares succeed.
//!
//! In Rust a failure is a value: `square` returns `Result<u64, SquareError>`
//! and `join_all` gathers ten `Result`s, one per future, in argument order.
//! One failure does not disturb the others.
//!
//! `try_join_all` stops at the first `Err` and *drops* the futures still
//! running, which in Rust cancels them on the spot: a dropped future is
//! never polled again. Python's plain `gather` (without
//! `return_exceptions`) is not its twin: it hands the first exception to
//! whoever awaits it, but the other awaitables are *not* cancelled. They
//! are tasks already, and they run on to the end with nobody waiting for
//! their results.
//! Set `COOP_SPEED=100` to divide every sleep by 100.

// ANCHOR: example
use std::fmt;
use std::time::Duration;

use futures::future::{join_all, try_join_all};

/// Why `square` gave up.
#[derive(Debug)]
struct SquareError(u64);

impl fmt::Display for SquareError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Can't square {} - I'm not very good at this :(", self.0)
    }
}

impl std::error::Error for SquareError {}

async fn square(x: u64) -> Result<u64, SquareError> {
    println!("Starting square with argument {x}!");
    if x == 7 {
        return Err(SquareError(x));
    }
    tokio::time::sleep(talk_seconds(3)).await;
    println!("Finishing square with argument {x}!");
    Ok(x * x)
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    println!("-- join_all: every result, errors included --");
    let results = join_all((0..10).map(square)).await;
    for (x, result) in results.iter().enumerate() {
        match result {
            Ok(y) => println!("square({x}) = {y}"),
            Err(err) => println!("square({x}) failed: {err}"),
        }
    }

    println!("-- try_join_all: the first error, the rest cancelled --");
    match try_join_all((0..10).map(square)).await {
        Ok(all) => println!("all squares: {all:?}"),
        Err(err) => println!("gave up: {err}"),
    }
}
// ANCHOR_END: example

/// The talk's `n` seconds, divided by `COOP_SPEED` (default 1: real time;
/// values outside 0.01..=1000000 are ignored).
fn talk_seconds(n: u64) -> Duration {
    let speed = std::env::var("COOP_SPEED")
        .ok()
        .and_then(|s| s.parse::<f64>().ok())
        .filter(|s| (0.01..=1e6).contains(s))
        .unwrap_or(1.0);
    Duration::from_secs(n).div_f64(speed)
}
