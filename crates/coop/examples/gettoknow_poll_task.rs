//! Spawn a task and check on it until it is done: the talk's
//! `loop.create_task(square(x))` and `while not task.done()`.
//!
//! `tokio::spawn` starts the future as a task right away; the returned
//! `JoinHandle` is a future for its result and can also be asked, without
//! waiting, whether the task has finished. Every time we sleep, the runtime
//! is free to run the task. Set `COOP_SPEED=100` to divide every sleep by
//! 100.

use std::time::Duration;

async fn square(x: u64) -> u64 {
    println!("Starting square with argument {x}!");
    tokio::time::sleep(talk_seconds(3)).await;
    println!("Finishing square with argument {x}!");
    x * x
}

async fn launch_square(x: u64) -> u64 {
    let task = tokio::spawn(square(x));
    while !task.is_finished() {
        println!("waiting for square({x})...");
        tokio::time::sleep(talk_seconds(1)).await;
    }
    // Finished, so this await returns at once. `Err` only if the task
    // panicked, which square does not.
    task.await.expect("square panicked")
}

// One worker thread, like Python's single event loop: the spawned task runs
// only while `launch_square` sleeps.
#[tokio::main(flavor = "current_thread")]
async fn main() {
    let result = launch_square(4).await;
    println!("square(4) = {result}");
}

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
