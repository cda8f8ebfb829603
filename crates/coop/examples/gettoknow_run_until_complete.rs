//! Run until complete: the talk's `loop.run_until_complete(cube(5))`.
//!
//! `#[tokio::main]` hides this, so here it is by hand: build a runtime (the
//! event loop), then `block_on` a future. `block_on` polls that one future on
//! the calling thread until it is done, then hands back its value to
//! ordinary, non-async code. Tasks it spawns are not its business: on this
//! multi-threaded runtime the worker threads run them, and they keep
//! running after `block_on` returns. The runtime outlives the call and can
//! run the next future. Set `COOP_SPEED=100` to divide every sleep by 100.

// ANCHOR: example
use std::time::Duration;

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

fn main() -> std::io::Result<()> {
    // Python: loop = asyncio.get_event_loop()
    let runtime = tokio::runtime::Runtime::new()?;

    // Calling cube(5) runs nothing yet: it only builds the future.
    let future = cube(5);
    println!("cube(5) is a future; nothing has run yet");

    // Python: result = loop.run_until_complete(cube(5))
    let result = runtime.block_on(future);
    println!("result: {result}");

    // Same loop, next future.
    let result = runtime.block_on(square(6));
    println!("result: {result}");
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
