//! Spawn a task and check on it until it is done: the talk's
//! `loop.create_task(square(x))` and `while not task.done()`.
//!
//! `tokio::spawn` makes the future a task and *schedules* it: it puts the
//! task on the run queue and returns. The task first runs when the
//! scheduler gets to it; on this one-thread runtime, that is only when
//! `launch_square` reaches an `.await` that returns `Pending`. So the first
//! check always finds it unfinished (not even started). The returned
//! `JoinHandle` is a future for the task's result and can also be asked,
//! without waiting, whether the task has finished. Set `COOP_SPEED=100` to
//! divide every sleep by 100.
//!
//! At the 3-second mark the poller's timer and the task's are due at about
//! the same moment; which one the runtime fires first decides whether a fourth
//! `waiting for square(4)...` is printed. That is a race in the program
//! (the talk's has it too), not in tokio.

// ANCHOR: example
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
