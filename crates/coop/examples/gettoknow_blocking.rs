//! A blocking function beside async tasks: the talk's
//! `loop.run_in_executor(None, blocking_square, 7)`.
//!
//! `blocking_square` sleeps with `std::thread::sleep`: it holds its thread
//! for 3 s. Called straight from async code, it holds the *runtime's*
//! thread, and every other task waits too. `tokio::task::spawn_blocking`
//! runs it on a separate pool of threads meant for blocking work and gives
//! back a future for its result, so the async squares carry on meanwhile.
//!
//! Both runs use one runtime thread (`current_thread`), like Python's event
//! loop, so the difference is plain: about 6 s the wrong way, 3 s the right
//! way. Set `COOP_SPEED=100` to divide every sleep by 100.

// ANCHOR: example
use std::future::Future;
use std::pin::Pin;
use std::time::{Duration, Instant};

use futures::future::join_all;

async fn square(x: u64) -> u64 {
    println!("Starting square with argument {x}!");
    tokio::time::sleep(talk_seconds(3)).await;
    println!("Finishing square with argument {x}!");
    x * x
}

fn blocking_square(x: u64) -> u64 {
    println!("Starting blocking square with argument {x}!");
    std::thread::sleep(talk_seconds(3));
    println!("Finishing blocking square with argument {x}!");
    x * x
}

/// Futures of different types in one list need a common type: a box.
type BoxedSquare = Pin<Box<dyn Future<Output = u64> + Send>>;

async fn list_squares(n: u64, pool: bool) -> Vec<u64> {
    let futures = (0..n).map(|x| -> BoxedSquare {
        if x != 7 {
            Box::pin(square(x))
        } else if pool {
            Box::pin(async move {
                // `Err` only if blocking_square panicked.
                tokio::task::spawn_blocking(move || blocking_square(x))
                    .await
                    .expect("blocking square panicked")
            })
        } else {
            // Wrong: the blocking call runs inside the runtime's thread.
            Box::pin(async move { blocking_square(x) })
        }
    });
    join_all(futures).await
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    for (title, pool) in [
        ("-- blocking call inside async code --", false),
        (
            "-- blocking call on the blocking pool (spawn_blocking) --",
            true,
        ),
    ] {
        println!("{title}");
        let start = Instant::now();
        let results = list_squares(10, pool).await;
        println!("results: {results:?}");
        println!("elapsed: {:.1} s", in_talk_seconds(start.elapsed()));
    }
}
// ANCHOR_END: example

fn speed() -> f64 {
    std::env::var("COOP_SPEED")
        .ok()
        .and_then(|s| s.parse::<f64>().ok())
        .filter(|s| (0.01..=1e6).contains(s))
        .unwrap_or(1.0)
}

/// The talk's `n` seconds, divided by `COOP_SPEED` (default 1: real time;
/// values outside 0.01..=1000000 are ignored).
fn talk_seconds(n: u64) -> Duration {
    Duration::from_secs(n).div_f64(speed())
}

/// Wall time back in the talk's seconds.
fn in_talk_seconds(elapsed: Duration) -> f64 {
    elapsed.as_secs_f64() * speed()
}
