//! Cooking: each recipe is a real `async fn` that awaits the kitchen's
//! resources (`kitchen.rs`) and `tokio::time::sleep`s through its steps,
//! and this module records what happened as a [`Timeline`].
//!
//! Time comes from tokio. On a runtime whose clock is paused
//! (`start_paused(true)`, or `#[tokio::test(start_paused = true)]`), tokio
//! jumps the clock to the next timer whenever every task is waiting, so 30
//! virtual minutes pass in milliseconds and land on exact milliseconds:
//! [`cook_virtual`] builds such a runtime. With [`Pace::RealTime`] the very
//! same code sleeps `duration / speedup` on the wall clock and reports
//! elapsed time times `speedup`, so `--speedup 60` shows a minute per second.
//!
//! Determinism: on a single-threaded runtime, tasks run in the order they
//! were spawned or woken, and the cooks' semaphore is first-come
//! first-served, so the same menu always gives the same timeline. The tests
//! rely on that to assert exact totals. One subtlety: when two steps end at
//! the same virtual instant, their tasks resume in the order tokio's timer
//! yields them, which is fixed for a given tokio but not documented. It only
//! decides ties (with two cooks, whether cook 1 or cook 2 stirs the rice at
//! 02:00), never a total of the built-in menu; the tests pin it.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use crate::kitchen::{Kitchen, Unit};
use crate::recipe::{Appliance, Menu, Need, Recipe};

/// How the recipes share the kitchen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// One task per recipe, all started at once: while one recipe waits on an
    /// appliance, the cook works on another (the talk's "dinner in 35").
    Interleaved,
    /// The same async recipes awaited one after the other, like the talk's
    /// `make_salmon_dinner()` with plain functions: the cook stands by the
    /// oven.
    Sequential,
}

/// Which clock the recipes sleep on.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Pace {
    /// The runtime's clock is paused and tokio advances it: instant and
    /// exact. The caller must provide such a runtime (or use
    /// [`cook_virtual`]); on a running clock this would take real minutes.
    Virtual,
    /// The wall clock, `speedup` times faster than life (60: a minute per
    /// second). Must be finite and positive.
    RealTime { speedup: f64 },
}

impl Pace {
    fn speedup(self) -> f64 {
        match self {
            Pace::Virtual => 1.0,
            Pace::RealTime { speedup } => speedup,
        }
    }
}

/// How to cook a menu.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Options {
    pub mode: Mode,
    /// How many cooks (at least 1).
    pub cooks: usize,
    pub pace: Pace,
}

impl Default for Options {
    /// The talk's setting: one cook, interleaved, virtual time.
    fn default() -> Self {
        Options {
            mode: Mode::Interleaved,
            cooks: 1,
            pace: Pace::Virtual,
        }
    }
}

/// What a step used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Kind {
    HandsOn,
    Wait,
}

/// One step as it happened. Times are virtual milliseconds since the
/// dinner started.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepRun {
    /// Position of the recipe in the menu (lanes are drawn in this order).
    pub recipe_index: usize,
    pub recipe: String,
    /// Position of the step in its recipe.
    pub step_index: usize,
    pub step: String,
    pub kind: Kind,
    /// The appliance of a waiting step.
    pub appliance: Option<Appliance>,
    /// The cook number (1-based) of a hands-on step.
    pub cook: Option<usize>,
    /// Who does it: "cook 1", "oven", "burner 2", "microwave".
    pub who: String,
    /// When the recipe reached this step and asked for what it needs.
    /// `start_ms - asked_ms` is time spent waiting for a cook or appliance.
    pub asked_ms: u64,
    pub start_ms: u64,
    pub end_ms: u64,
}

impl StepRun {
    /// Time spent waiting for the cook (or appliance) before starting.
    pub fn queued_ms(&self) -> u64 {
        self.start_ms - self.asked_ms
    }
}

/// One recipe's outcome.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecipeRun {
    pub name: String,
    /// The recipe on its own (sum of its steps).
    pub own_ms: u64,
    /// Its hands-on share.
    pub hands_on_ms: u64,
    /// When it was ready.
    pub ready_ms: u64,
}

/// Everything that happened while cooking, in virtual time. Serializes to
/// JSON for the web page (`coop kitchen --json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Timeline {
    pub mode: Mode,
    pub cooks: usize,
    /// `None` on virtual time; the speedup on the wall clock.
    pub speedup: Option<f64>,
    /// When the last recipe was ready.
    pub total_ms: u64,
    /// In menu order.
    pub recipes: Vec<RecipeRun>,
    /// Sorted by start, then recipe, then step.
    pub steps: Vec<StepRun>,
}

impl Timeline {
    /// How long cook `n` (1-based) worked.
    pub fn cook_busy_ms(&self, n: usize) -> u64 {
        self.steps
            .iter()
            .filter(|s| s.cook == Some(n))
            .map(|s| s.end_ms - s.start_ms)
            .sum()
    }

    /// The recipe that was ready last (the first of them on a tie).
    pub fn last_recipe(&self) -> Option<(usize, &RecipeRun)> {
        self.recipes
            .iter()
            .enumerate()
            .max_by(|(ia, a), (ib, b)| a.ready_ms.cmp(&b.ready_ms).then(ib.cmp(ia)))
    }

    /// The steps of recipe `index` that had to wait before starting.
    pub fn queued_steps(&self, index: usize) -> impl Iterator<Item = &StepRun> {
        self.steps
            .iter()
            .filter(move |s| s.recipe_index == index && s.queued_ms() > 0)
    }

    /// The step cook `n` was doing at virtual time `at_ms`, if any.
    pub fn cook_doing(&self, n: usize, at_ms: u64) -> Option<&StepRun> {
        self.steps
            .iter()
            .find(|s| s.cook == Some(n) && s.start_ms <= at_ms && at_ms < s.end_ms)
    }
}

/// Something that just happened, for watching a dinner live
/// (`--real-time` prints these as they come).
#[derive(Debug, Clone, Copy)]
pub enum Event<'a> {
    /// A step started; its `end_ms` is the planned end.
    Started(&'a StepRun),
    /// A recipe is ready.
    Ready { recipe: &'a str, at_ms: u64 },
}

/// A callback for [`Event`]s. It runs inside a recipe task, so it must be
/// quick (printing a line is fine).
pub type Observer = Arc<dyn Fn(Event<'_>) + Send + Sync>;

/// Cooks `menu` on a fresh single-threaded runtime with a paused clock and
/// returns the timeline. Synchronous, so it suits the command line and a
/// web handler's `spawn_blocking`; do not call it from inside a runtime's
/// own thread.
pub fn cook_virtual(menu: &Menu, mode: Mode, cooks: usize) -> Timeline {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .expect("a current-thread runtime with only a timer always builds");
    let opts = Options {
        mode,
        cooks,
        pace: Pace::Virtual,
    };
    rt.block_on(cook(menu, opts, None))
}

/// Cooks `menu` on the current runtime's clock. For exact, instant virtual
/// time the runtime must be current-thread with its clock paused (see
/// [`cook_virtual`]).
///
/// # Panics
/// If `opts.cooks` is 0, or the speedup of [`Pace::RealTime`] is not finite
/// and positive: callers validate those first (the CLI does).
pub async fn cook(menu: &Menu, opts: Options, observer: Option<Observer>) -> Timeline {
    assert!(opts.cooks > 0, "at least one cook");
    let speedup = opts.pace.speedup();
    assert!(
        speedup.is_finite() && speedup > 0.0,
        "speedup must be positive"
    );

    let kitchen = Arc::new(Kitchen::new(opts.cooks, &menu.kitchen));
    let log = Arc::new(Log {
        start: Instant::now(),
        speedup,
        steps: Mutex::new(Vec::new()),
        ready: Mutex::new(vec![0; menu.recipes.len()]),
        observer,
    });
    let recipes: Arc<[Recipe]> = menu.recipes.clone().into();

    match opts.mode {
        Mode::Interleaved => {
            // One task per recipe, spawned in menu order: with a
            // single-threaded runtime they first run in that order, which is
            // also the order they queue for the cook.
            let mut tasks = tokio::task::JoinSet::new();
            for index in 0..recipes.len() {
                let (kitchen, log, recipes) = (kitchen.clone(), log.clone(), recipes.clone());
                tasks.spawn(
                    async move { cook_recipe(&kitchen, &log, index, &recipes[index]).await },
                );
            }
            while let Some(done) = tasks.join_next().await {
                if let Err(err) = done {
                    // A recipe task only panics on a bug; surface it.
                    std::panic::resume_unwind(err.into_panic());
                }
            }
        }
        Mode::Sequential => {
            for (index, recipe) in recipes.iter().enumerate() {
                cook_recipe(&kitchen, &log, index, recipe).await;
            }
        }
    }

    let mut steps = std::mem::take(&mut *log.steps.lock().expect("log lock"));
    steps.sort_by_key(|s| (s.start_ms, s.recipe_index, s.step_index));
    let ready = log.ready.lock().expect("log lock").clone();
    let recipes_out: Vec<RecipeRun> = recipes
        .iter()
        .zip(ready)
        .map(|(r, ready_ms)| RecipeRun {
            name: r.name.clone(),
            own_ms: ms(r.own_duration()),
            hands_on_ms: ms(r.hands_on()),
            ready_ms,
        })
        .collect();
    Timeline {
        mode: opts.mode,
        cooks: opts.cooks,
        speedup: matches!(opts.pace, Pace::RealTime { .. }).then_some(speedup),
        total_ms: recipes_out.iter().map(|r| r.ready_ms).max().unwrap_or(0),
        recipes: recipes_out,
        steps,
    }
}

// ANCHOR: cook_recipe
/// One recipe, step by step: the talk's `cook_rice()` with `await` where it
/// had `sleep`.
///
/// Hands-on steps hold a cook for exactly the step. A waiting step takes its
/// appliance, and the recipe keeps it through the following hands-on steps
/// when its next waiting step uses the same kind of appliance (the salmon's
/// oven stays preheated and reserved while the filets are prepared; the
/// rice's pot stays on its burner). Otherwise the appliance is released
/// right after the step. So a recipe holds at most one appliance at a time
/// and never waits for an appliance while holding a cook: no two recipes can
/// wait on each other forever, whatever the menu.
async fn cook_recipe(kitchen: &Kitchen, log: &Log, index: usize, recipe: &Recipe) {
    let mut held: Option<(Appliance, Unit<'_>)> = None;
    for (step_index, step) in recipe.steps.iter().enumerate() {
        let asked_ms = log.now_ms();
        // `_cook` is dropped at the end of this iteration: the cook is free
        // as soon as the step is done.
        let (_cook, who, cook_no, appliance) = match step.need {
            Need::HandsOn => {
                let cook = kitchen.cooks.acquire().await;
                let (who, n) = (cook.label(), cook.number());
                (Some(cook), who, Some(n), None)
            }
            Need::Wait(a) => {
                if !matches!(&held, Some((h, _)) if *h == a) {
                    // Let go of a different appliance before waiting for
                    // this one (see above: never hold one while waiting).
                    drop(held.take());
                    held = Some((a, kitchen.appliance(a).acquire().await));
                }
                let who = held.as_ref().map(|(_, u)| u.label()).unwrap_or_default();
                (None, who, None, Some(a))
            }
        };
        let start_ms = log.now_ms();
        let mut run = StepRun {
            recipe_index: index,
            recipe: recipe.name.clone(),
            step_index,
            step: step.name.clone(),
            kind: match step.need {
                Need::HandsOn => Kind::HandsOn,
                Need::Wait(_) => Kind::Wait,
            },
            appliance,
            cook: cook_no,
            who,
            asked_ms,
            start_ms,
            end_ms: start_ms + ms(step.duration),
        };
        log.notify(Event::Started(&run));
        log.sleep(step.duration).await;
        run.end_ms = log.now_ms();
        log.steps.lock().expect("log lock").push(run);

        if let Need::Wait(a) = step.need {
            let next_wait = recipe.steps[step_index + 1..]
                .iter()
                .find_map(|s| match s.need {
                    Need::Wait(b) => Some(b),
                    Need::HandsOn => None,
                });
            if next_wait != Some(a) {
                held = None;
            }
        }
    }
    drop(held);
    let at_ms = log.now_ms();
    log.ready.lock().expect("log lock")[index] = at_ms;
    log.notify(Event::Ready {
        recipe: &recipe.name,
        at_ms,
    });
}
// ANCHOR_END: cook_recipe

/// The shared record of a dinner and its clock. The std mutexes are only
/// held to push or copy, never across an `.await`.
struct Log {
    start: Instant,
    speedup: f64,
    steps: Mutex<Vec<StepRun>>,
    /// Ready time per recipe, by menu index.
    ready: Mutex<Vec<u64>>,
    observer: Option<Observer>,
}

impl Log {
    /// Virtual milliseconds since the start. On the paused clock the
    /// elapsed time is exact; on the wall clock it is scaled and rounded.
    fn now_ms(&self) -> u64 {
        let real = self.start.elapsed();
        (real.as_secs_f64() * self.speedup * 1000.0).round() as u64
    }

    async fn sleep(&self, virtual_duration: Duration) {
        tokio::time::sleep(virtual_duration.div_f64(self.speedup)).await;
    }

    fn notify(&self, event: Event<'_>) {
        if let Some(observer) = &self.observer {
            observer(event);
        }
    }
}

fn ms(d: Duration) -> u64 {
    d.as_millis() as u64
}

/// `mm:ss` for a virtual time in milliseconds (minutes keep counting past
/// 59: `75:00`).
pub fn mmss(ms: u64) -> String {
    let secs = (ms + 500) / 1000;
    format!("{:02}:{:02}", secs / 60, secs % 60)
}

/// Minutes for summaries: `56 min`, `30.5 min`.
pub fn minutes(ms: u64) -> String {
    let m = ms as f64 / 60_000.0;
    if (m - m.round()).abs() < 0.005 {
        format!("{} min", m.round() as u64)
    } else {
        let s = format!("{m:.2}");
        format!("{} min", s.trim_end_matches('0').trim_end_matches('.'))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_formats() {
        assert_eq!(mmss(0), "00:00");
        assert_eq!(mmss(90_000), "01:30");
        assert_eq!(mmss(75 * 60_000), "75:00");
        assert_eq!(minutes(56 * 60_000), "56 min");
        assert_eq!(minutes(30 * 60_000 + 30_000), "30.5 min");
        assert_eq!(minutes(60_000 / 4), "0.25 min");
    }

    #[tokio::test(start_paused = true)]
    async fn paused_clock_makes_the_builtin_dinner_exact() {
        let t = cook(&Menu::builtin(), Options::default(), None).await;
        assert_eq!(t.total_ms, 30 * 60_000 + 30_000);
        assert_eq!(t.cook_busy_ms(1), 4 * 60_000);
    }
}
