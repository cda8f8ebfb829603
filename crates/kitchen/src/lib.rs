//! The talk's dinner, cooked by async Rust on a virtual clock.
//!
//! "Cooking with coroutines": one cook, three recipes. Cooked one after the
//! other, dinner takes 20 + 30 + 6 = 56 minutes, although the cook spends
//! only 4 of them actually doing something; the rest is waiting for the
//! oven, the stove and the microwave. A cook who starts the rice while the
//! oven preheats and pokes the beans while the water boils has dinner ready
//! in 30½ minutes (the slides say 35, the written notes about 30). A second
//! cook saves just 30 seconds more: the work is mostly waiting, and no
//! number of cooks makes rice simmer faster. Concurrency is *dealing with*
//! many things at once; parallelism, *doing* many things at once.
//!
//! Here each recipe is a real `async fn`, the cook is a real tokio
//! semaphore, and the waits are real `tokio::time::sleep`s. Run on a runtime
//! whose clock is paused, tokio skips ahead to the next timer whenever every
//! task is waiting: half an hour of cooking takes milliseconds, and the
//! timeline is exact and the same every time.
//!
//! ```
//! let menu = kitchen::Menu::builtin();
//! let dinner = kitchen::cook_virtual(&menu, kitchen::Mode::Interleaved, 1);
//! assert_eq!(kitchen::mmss(dinner.total_ms), "30:30");
//! let slow = kitchen::cook_virtual(&menu, kitchen::Mode::Sequential, 1);
//! assert_eq!(kitchen::mmss(slow.total_ms), "56:00");
//! ```
//!
//! # Layout
//!
//! - `recipe.rs`: the menu as data (recipes, steps, appliances), the
//!   built-in dinner, the TOML format and its validation.
//! - `kitchen.rs`: the cooks, oven, burners and microwave as numbered pools
//!   over tokio semaphores.
//! - `sim.rs`: each recipe as an `async fn`; [`cook`] and [`cook_virtual`]
//!   run a menu and record a [`Timeline`] (serde: the web page's JSON).
//! - `chart.rs`: the timeline as an ASCII chart and as an SVG.
//!
//! # Why 30½ minutes and not 30
//!
//! The rice takes 30 minutes on its own, so 30 is the floor. With one cook
//! who serves whoever asked first (tokio's semaphore is fair, FIFO), the
//! beans get the cook at 0:30 because they asked at 0:00, so the salmon's
//! minute of arranging runs 1:30–2:30, and the rice, ready to stir at 2:00,
//! waits 30 seconds for the cook. The rice is the critical path, so the
//! dinner is 30 seconds late. A cook who gave the critical path priority
//! would make 30:00; a second cook makes 30:00 too.
//!
//! # SimPy and coop
//!
//! SimPy, the Python discrete-event simulator, models the same dinner with
//! *processes* (generator functions), *timeouts* (`yield env.timeout(5)`)
//! and *resources* (`with cook.request() as req: yield req`) on a simulated
//! clock that its environment advances from event to event. Here the
//! process is an `async fn` spawned as a tokio task, the timeout is
//! `tokio::time::sleep(..).await`, the resource is a `tokio::sync::Semaphore`
//! (its permit released on drop, like SimPy's `with` block), and the
//! simulated clock is tokio's own clock, paused, which likewise jumps to the
//! next timer when every task is waiting. The difference is that nothing here
//! is a simulator: it is the runtime that serves coop's HTTP requests,
//! running the very code that `--real-time` runs on the wall clock.

pub mod chart;
pub mod kitchen;
pub mod recipe;
pub mod report;
pub mod sim;
pub mod web;

pub use chart::{ascii, svg};
pub use kitchen::{Kitchen, Pool, Unit};
pub use recipe::{Appliance, Appliances, Menu, MenuError, Need, Recipe, Step};
pub use sim::{
    cook, cook_virtual, minutes, mmss, Event, Kind, Mode, Observer, Options, Pace, RecipeRun,
    StepRun, Timeline,
};
