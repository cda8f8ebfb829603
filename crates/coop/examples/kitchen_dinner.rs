//! The talk's dinner in one page of async Rust, without the `kitchen`
//! library: the slides' `cook_salmon`, `cook_rice` and `cook_beans` with
//! `.await` where they had `sleep`, a semaphore for the one cook, and
//! `tokio::join!` (asyncio's `gather`) to cook all three at once.
//!
//! The runtime's clock is paused (`start_paused = true`): whenever every
//! future is waiting, tokio jumps the clock to the next timer, so the
//! 30-odd minutes take milliseconds and print exact virtual times. The
//! step durations are the ones `coop kitchen` uses (see
//! `crates/kitchen/src/recipe.rs`), so this prints the same total.
//!
//! `start_paused` needs tokio's `test-util` feature (see
//! `crates/coop/Cargo.toml`); `full` does not include it.
//!
//! Run: `cargo run --example kitchen_dinner`

use std::time::Duration;

use tokio::sync::Semaphore;
use tokio::time::{sleep, Instant};

/// The kitchen: one cook (who does one thing at a time) and the appliances.
/// A semaphore with one permit is a resource only one task may hold; one
/// with four permits is four identical resources, taken one at a time.
struct Kitchen {
    start: Instant,
    /// One permit: the cook.
    cook: Semaphore,
    /// One permit: the oven.
    oven: Semaphore,
    /// Four permits: the stove's four burners.
    burner: Semaphore,
    /// One permit: the microwave.
    microwave: Semaphore,
}

impl Kitchen {
    /// Virtual time since the start, as `mm:ss`.
    fn now(&self) -> String {
        let s = self.start.elapsed().as_secs();
        format!("{:02}:{:02}", s / 60, s % 60)
    }

    /// A hands-on step: wait for the cook, work, let the cook go.
    async fn by_hand(&self, recipe: &str, step: &str, secs: u64) {
        let _cook = self.cook.acquire().await.expect("never closed");
        println!("{}  {recipe:<6}  {step} (the cook)", self.now());
        sleep(Duration::from_secs(secs)).await;
    } // <- the permit drops here: the cook is free again

    /// A waiting step: the appliance works, the cook is free for others.
    async fn wait(&self, recipe: &str, step: &str, secs: u64) {
        println!("{}  {recipe:<6}  {step} (the cook is free)", self.now());
        sleep(Duration::from_secs(secs)).await;
    }
}

async fn cook_salmon(k: &Kitchen) -> &'static str {
    let _oven = k.oven.acquire().await.expect("never closed");
    k.wait("salmon", "preheat the oven to 350 °F", 30).await;
    k.by_hand("salmon", "arrange the filets on a baking sheet", 60)
        .await;
    k.by_hand("salmon", "slather with orange-ginger dressing", 30)
        .await;
    k.wait("salmon", "bake 18 minutes", 18 * 60).await;
    "salmon"
}

async fn cook_rice(k: &Kitchen) -> &'static str {
    k.by_hand("rice", "water and butter into the pot", 30).await;
    let _burner = k.burner.acquire().await.expect("never closed");
    k.wait("rice", "bring to a boil", 90).await;
    k.by_hand("rice", "stir in spices and rice, cover", 30)
        .await;
    k.wait("rice", "simmer 22 minutes", 22 * 60).await;
    k.by_hand("rice", "fluff", 30).await;
    k.wait("rice", "let stand 5 minutes", 5 * 60).await;
    "rice pilaf"
}

async fn cook_beans(k: &Kitchen) -> &'static str {
    k.by_hand("beans", "poke holes in the bag", 60).await;
    let _microwave = k.microwave.acquire().await.expect("never closed");
    k.wait("beans", "microwave 5 minutes", 5 * 60).await;
    "green beans"
}

#[tokio::main(flavor = "current_thread", start_paused = true)]
async fn main() {
    let k = Kitchen {
        start: Instant::now(),
        cook: Semaphore::new(1),
        oven: Semaphore::new(1),
        burner: Semaphore::new(4),
        microwave: Semaphore::new(1),
    };
    // One after the other would be 20 + 30 + 6 = 56 minutes. Together:
    let (meat, starch, veggie) = tokio::join!(cook_salmon(&k), cook_rice(&k), cook_beans(&k));
    println!("{}  dinner: {meat}, {starch} and {veggie}", k.now());
    println!("dinner in {} (one after the other: 56:00)", k.now());
}
