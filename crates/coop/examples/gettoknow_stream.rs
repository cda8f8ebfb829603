//! `Iterator` vs `Stream`: Python's `for` and `async for`.
//!
//! An `Iterator`'s `next()` is a plain function: it must have the item at
//! hand, or block the thread while it fetches it. A `Stream` is the async
//! version: `poll_next` may answer `Pending` ("no item yet, I will wake
//! you"), so while one item is on its way, other tasks run. Rust has no
//! `async for` yet; `while let Some(item) = stream.next().await` is the
//! loop. Set `COOP_SPEED=100` to divide every sleep by 100.

// ANCHOR: example
use std::future::Future;
use std::pin::{pin, Pin};
use std::task::{Context, Poll};
use std::time::Duration;

use futures::stream::{self, Stream, StreamExt};
use tokio::time::Sleep;

/// A hand-written stream, to show the one method a `Stream` has: counts
/// down from `n`, one number per (talk) second.
struct Countdown {
    n: u64,
    /// The wait for the next item. Boxed because a `Sleep` must stay at one
    /// address once polled (it is `!Unpin`), and a box gives it one.
    tick: Pin<Box<Sleep>>,
}

impl Countdown {
    fn new(n: u64) -> Countdown {
        Countdown {
            n,
            tick: Box::pin(tokio::time::sleep(talk_seconds(1))),
        }
    }
}

impl Stream for Countdown {
    type Item = u64;

    // Iterator::next returns Option<Item>; poll_next returns
    // Poll<Option<Item>>: Pending (not yet), Ready(Some) or Ready(None) (the
    // end, like StopAsyncIteration).
    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<u64>> {
        if self.n == 0 {
            return Poll::Ready(None);
        }
        // Not time yet: the Sleep has stored our waker and will wake us.
        if self.tick.as_mut().poll(cx).is_pending() {
            return Poll::Pending;
        }
        let item = self.n;
        self.n -= 1;
        let next = tokio::time::Instant::now() + talk_seconds(1);
        self.tick.as_mut().reset(next);
        Poll::Ready(Some(item))
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    println!("-- for: an Iterator, every item at hand --");
    for square in (1..=3).map(|x| x * x) {
        println!("iterator gave {square}");
    }

    println!("-- while let ... .next().await: a Stream, each item awaited --");
    // Each item takes a (pretend) round trip to a remote database. The
    // stream holds that in-flight future, which must not move once polled,
    // so the stream is pinned before we poll it.
    let mut remote = pin!(stream::iter(1..=3).then(|x| async move {
        tokio::time::sleep(talk_seconds(1)).await;
        x * x
    }));
    while let Some(square) = remote.next().await {
        println!("stream gave {square}");
    }

    println!("-- a hand-written Stream --");
    let mut countdown = Countdown::new(3);
    while let Some(n) = countdown.next().await {
        println!("countdown gave {n}");
    }

    println!("-- buffered(3): fetch three items at once, keep their order --");
    let squares: Vec<u64> = stream::iter(1..=6)
        .map(|x| async move {
            // Later items answer sooner, yet come out in order.
            tokio::time::sleep(talk_seconds(7 - x) / 2).await;
            x * x
        })
        .buffered(3)
        .collect()
        .await;
    println!("buffered gave {squares:?}");
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
