//! The byhand executor (`crates/byhand`) on its own: tasks, timers and
//! wakers with nothing but the standard library underneath.
//!
//! Three things to watch:
//!
//! - sleepers wake in deadline order, not in the order they were spawned:
//!   the timer heap keeps the earliest deadline on top;
//! - ten thousand sleeping tasks cost ten thousand heap entries, not ten
//!   thousand threads, and all of them wake after one second;
//! - a task that wakes itself (`yield_now`) goes to the back of the run
//!   queue, so two such tasks take turns.
//!
//! Set `COOP_SPEED=100` to divide every sleep by 100.

// ANCHOR: example
use std::time::{Duration, Instant};

use byhand::{spawn, yield_now, Runtime};

fn main() {
    let rt = Runtime::with_speed(speed()).expect("speed() only returns valid speeds");
    rt.block_on(async {
        println!("-- three sleepers, spawned as 3 s, 1 s, 2 s --");
        let handles = [3, 1, 2].map(|n| {
            spawn(async move {
                byhand::sleep(Duration::from_secs(n)).await;
                println!("woke after {n} s");
            })
        });
        for handle in handles {
            handle.await;
        }

        println!("-- ten thousand sleepers, one thread --");
        let start = Instant::now();
        let handles: Vec<_> = (0..10_000u64)
            .map(|i| {
                spawn(async move {
                    byhand::sleep(Duration::from_secs(1)).await;
                    i
                })
            })
            .collect();
        let mut sum = 0;
        for handle in handles {
            sum += handle.await;
        }
        println!("sum of 0..10000: {sum}");
        println!(
            "elapsed: {:.1} s (one after the other: 10000 s)",
            start.elapsed().as_secs_f64() * speed()
        );

        println!("-- two tasks that wake themselves take turns --");
        let ping = spawn(async {
            for i in 1..=3 {
                println!("ping {i}");
                yield_now().await;
            }
        });
        let pong = spawn(async {
            for i in 1..=3 {
                println!("pong {i}");
                yield_now().await;
            }
        });
        ping.await;
        pong.await;
    });
}
// ANCHOR_END: example

/// `COOP_SPEED`, or 1 (real time) when unset or outside 0.01..=1000000.
fn speed() -> f64 {
    std::env::var("COOP_SPEED")
        .ok()
        .and_then(|s| s.parse::<f64>().ok())
        .filter(|s| (0.01..=1e6).contains(s))
        .unwrap_or(1.0)
}
