//! Run forever, until a task stops the loop: the talk's `loop.run_forever()`
//! with `stop_in(3)` counting down `Shutdown in 3...`.
//!
//! A tokio runtime has no `run_forever` because it needs none: its worker
//! threads run spawned tasks from the moment the runtime is built until it
//! is dropped. What the main thread needs is something to wait on, so
//! "forever" is `block_on` of a future that waits for a stop signal, and the
//! talk's `loop.stop()` becomes sending that signal. A `CancellationToken`
//! is the usual signal: cheap to clone, any task may cancel it, and every
//! clone sees it. When `main` returns, the runtime is dropped and whatever
//! tasks are left are dropped with it. (A real server would also stop on
//! Ctrl-C; so does this example.) Set `COOP_SPEED=100` to count faster.

// ANCHOR: example
use std::time::Duration;

use tokio_util::sync::CancellationToken;

/// Counts down and then stops the loop, like the talk's `stop_in(n)`.
async fn stop_in(mut n: u64, stop: CancellationToken) {
    while n > 0 {
        println!("Shutdown in {n}...");
        tokio::time::sleep(talk_seconds(1)).await;
        n -= 1;
    }
    stop.cancel();
}

fn main() -> std::io::Result<()> {
    let runtime = tokio::runtime::Runtime::new()?;
    let stop = CancellationToken::new();

    // Printed before the spawn: on a multi-threaded runtime an idle worker
    // thread picks a spawned task up at once, while Python's loop only
    // starts it inside run_forever().
    println!("running until a task stops us");

    // Python: loop.create_task(stop_in(3))
    runtime.spawn(stop_in(3, stop.clone()));

    // Python: loop.run_forever(). The worker threads run the countdown;
    // this thread only waits until the token is cancelled (or Ctrl-C).
    runtime.block_on(async {
        tokio::select! {
            _ = stop.cancelled() => println!("stopped by the countdown task"),
            _ = tokio::signal::ctrl_c() => println!("stopped by Ctrl-C"),
        }
    });
    Ok(())
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
