//! Gather many futures: the talk's `asyncio.gather(cube(3), cube(4), cube(5))`.
//!
//! Two ways to wait for several futures at once:
//!
//! - `join_all` polls them all inside the *current* task and returns their
//!   results in the order you gave them, like `gather`;
//! - a `JoinSet` spawns each as its own task (they could run on other worker
//!   threads) and hands results back in the order they *finish*.
//!
//! Either way the three cubes take about 6 s together, not 18 one after the
//! other. Set `COOP_SPEED=100` to divide every sleep by 100.

// ANCHOR: example
use std::time::Duration;

use futures::future::join_all;
use tokio::task::JoinSet;

async fn square(x: u64) -> u64 {
    println!("Starting square with argument {x}!");
    tokio::time::sleep(talk_seconds(3)).await;
    println!("Finishing square with argument {x}!");
    x * x
}

async fn cube(x: u64) -> u64 {
    println!("Starting cube with argument {x}!");
    tokio::time::sleep(talk_seconds(3)).await;
    let y = square(x).await;
    println!("Finishing cube with argument {x}!");
    x * y
}

#[tokio::main]
async fn main() {
    println!("-- join_all: results in argument order --");
    let results = join_all([cube(3), cube(4), cube(5)]).await;
    println!("results: {results:?}");

    println!("-- JoinSet: results in the order the tasks finish --");
    let mut set = JoinSet::new();
    for x in [3, 4, 5] {
        set.spawn(async move { (x, cube(x).await) });
    }
    while let Some(joined) = set.join_next().await {
        // `Err` only if the task panicked or was aborted; neither happens here.
        let (x, y) = joined.expect("cube task failed");
        println!("cube({x}) = {y}");
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
