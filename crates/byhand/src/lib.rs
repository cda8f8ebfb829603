//! # An executor by hand
//!
//! An `async fn` does nothing when you call it. It returns a *future*: a
//! value with one method, `poll`, that runs the function until it either
//! finishes (`Poll::Ready(value)`) or has to wait (`Poll::Pending`). Whoever
//! calls `poll` is the scheduler. In the talk that is first a human typing
//! `coro.send(None)`, then asyncio's event loop. This crate is the event
//! loop, written with nothing but the standard library, so that nothing is
//! hidden in a runtime you cannot read.
//!
//! Three ideas make it work:
//!
//! 1. **Tasks and a run queue.** [`spawn`] boxes a future into a task and
//!    puts it on a queue of tasks ready to be polled. The executor pops a
//!    task, polls it once, and moves on. A task that returns `Pending` is
//!    *not* put back: polling it again now would only waste time.
//! 2. **Wakers.** Before returning `Pending`, a future hands its `Waker` to
//!    whatever it waits for (a timer, another task, a thread). When that
//!    thing is ready it calls `wake()`, which puts the task back on the
//!    queue. Our waker *is* the task, through `std::task::Wake`.
//! 3. **Timers.** [`sleep`] writes its deadline and waker into a heap. When
//!    no task is ready, the executor parks the thread until the earliest
//!    deadline, then wakes the sleepers whose time has come. This is why a
//!    thousand tasks can sleep at once on one thread: waiting costs a heap
//!    entry, not a thread.
//!
//! [`block_on`] ties them together: it polls the future you give it, runs
//! ready tasks, fires due timers, and parks, until your future is ready.
//!
//! ```
//! use std::time::Duration;
//!
//! // Speed 1000: the talk's 3 s take 3 ms, so this example runs fast.
//! let rt = byhand::Runtime::with_speed(1000.0).unwrap();
//! let (c, s) = rt.block_on(async {
//!     let c = byhand::spawn(async {
//!         byhand::sleep(Duration::from_secs(3)).await;
//!         8
//!     });
//!     let s = byhand::spawn(async {
//!         byhand::sleep(Duration::from_secs(3)).await;
//!         9
//!     });
//!     // Both tasks sleep at the same time: 3 s in all, not 6.
//!     (c.await, s.await)
//! });
//! assert_eq!((c, s), (8, 9));
//! ```
//!
//! What a real runtime adds: I/O readiness (epoll/kqueue) next to the
//! timers, several worker threads stealing each other's tasks, a panic in a
//! task caught and handed to its `JoinHandle` (here it unwinds out of
//! `block_on`), cancellation through `JoinHandle::abort`, and budgets so a
//! busy task yields. tokio also keeps its timers differently: in a
//! hierarchical timing wheel (levels of 64 slots, millisecond ticks), where
//! adding and cancelling a timer cost the same however many there are, not
//! in a heap. None of it changes the three ideas.
//!
//! ## Layout
//!
//! - `lib.rs` (this essay): [`Runtime`], [`block_on`], [`spawn`], [`sleep`],
//!   [`yield_now`], and the per-thread "current runtime" they share.
//! - `task.rs`: a task (a pinned, boxed future and the queue it goes back
//!   on), the run queue the executor parks on, and [`JoinHandle`].
//! - `waker.rs`: wakers built with `std::task::Wake`.
//! - `timer.rs`: the deadline heap and the [`Sleep`] future.
//! - `manual.rs`: the talk's `manual_sleep`, a future with no executor
//!   behind it that asks a human to wait, for driving futures by hand.

mod manual;
mod task;
mod timer;
mod waker;

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::pin::{pin, Pin};
use std::rc::Rc;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

pub use manual::{manual_sleep, take_request, ManualSleep, Request};
pub use task::JoinHandle;
pub use timer::Sleep;

use task::{RunQueue, Task};
use timer::Timers;
use waker::MainWaker;

/// An executor's settings. [`block_on`] is `Runtime::new().block_on`.
#[derive(Debug, Clone, Copy)]
pub struct Runtime {
    speed: f64,
}

/// A speed that is not a finite number above zero.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BadSpeed(pub f64);

impl fmt::Display for BadSpeed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "speed must be a finite number above 0, got {}", self.0)
    }
}

impl std::error::Error for BadSpeed {}

impl Default for Runtime {
    fn default() -> Self {
        Runtime::new()
    }
}

impl Runtime {
    /// Real time: `sleep(3s)` takes three seconds.
    pub fn new() -> Runtime {
        Runtime { speed: 1.0 }
    }

    /// Every [`sleep`] is divided by `speed`: at 100, `sleep(3s)` takes
    /// 30 ms. Demos and tests use it to run the talk's seconds quickly.
    pub fn with_speed(speed: f64) -> Result<Runtime, BadSpeed> {
        if speed.is_finite() && speed > 0.0 {
            Ok(Runtime { speed })
        } else {
            Err(BadSpeed(speed))
        }
    }

    /// Runs `future` to completion on this thread, together with every task
    /// it spawns. Tasks still unfinished when `future` returns are dropped.
    ///
    /// # Panics
    ///
    /// When called from inside another `block_on` on the same thread (the
    /// outer executor would stall while the inner one runs), or when a task
    /// panics.
    // ANCHOR: block_on
    pub fn block_on<F: Future>(&self, future: F) -> F::Output {
        let queue = Arc::new(RunQueue::new());
        let rt = Rc::new(Current {
            queue: queue.clone(),
            timers: RefCell::new(Timers::default()),
            tasks: RefCell::new(HashMap::new()),
            next_id: Cell::new(0),
            speed: self.speed,
        });
        let _enter = Enter::new(rt.clone());

        let main_waker = Waker::from(Arc::new(MainWaker {
            queue: queue.clone(),
        }));
        let mut cx = Context::from_waker(&main_waker);
        let mut future = pin!(future);
        // The main future has never been polled, so it counts as woken.
        let mut main_woken = true;
        loop {
            if main_woken {
                if let Poll::Ready(value) = future.as_mut().poll(&mut cx) {
                    return value;
                }
            }
            // Poll every task that is ready now, once each.
            for task in queue.take_all() {
                if task.poll() {
                    rt.forget(&task);
                }
            }
            // Wake the sleepers whose deadline has passed; they join the
            // queue and run next round. A waker can be any code (combinators
            // such as `join_all` wrap ours in their own), so none is called
            // while the heap is borrowed.
            let due = rt.timers.borrow_mut().expired(Instant::now());
            for waker in due {
                waker.wake();
            }
            // Park until something is woken or the next deadline passes
            // (at once, if the timers just queued tasks).
            let next = rt.timers.borrow().next_deadline();
            main_woken = queue.wait(next);
        }
    }
    // ANCHOR_END: block_on
}

/// Runs `future` to completion in real time (see [`Runtime::block_on`]).
pub fn block_on<F: Future>(future: F) -> F::Output {
    Runtime::new().block_on(future)
}

/// Starts `future` as a task on the current executor and returns a handle
/// that resolves to its output. The task starts running at the executor's
/// next round, whether or not anyone awaits the handle.
///
/// # Panics
///
/// Outside [`block_on`]: there is no executor to run the task.
// ANCHOR: spawn
pub fn spawn<F>(future: F) -> JoinHandle<F::Output>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    current(|rt| {
        let (boxed, handle) = task::joinable(future);
        let id = rt.next_id.get() + 1;
        rt.next_id.set(id);
        let task = Task::new(id, boxed, rt.queue.clone());
        rt.tasks.borrow_mut().insert(id, task.clone());
        task.schedule();
        handle
    })
}
// ANCHOR_END: spawn

/// Waits `duration` (divided by the runtime's speed) without blocking the
/// thread: other tasks run meanwhile.
///
/// # Panics
///
/// When polled outside [`block_on`]: there is no timer heap to wait on.
pub fn sleep(duration: Duration) -> Sleep {
    Sleep::new(duration)
}

/// Returns `Pending` once, after waking itself: the task goes to the back of
/// the run queue and everything else ready gets a turn first.
pub fn yield_now() -> YieldNow {
    YieldNow { yielded: false }
}

/// The future returned by [`yield_now`].
#[derive(Debug)]
pub struct YieldNow {
    yielded: bool,
}

impl Future for YieldNow {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.yielded {
            return Poll::Ready(());
        }
        self.yielded = true;
        // A task that wakes itself: it is queued again before it even
        // returns `Pending`, which is exactly why `Task::poll` clears the
        // `queued` flag before polling rather than after.
        cx.waker().wake_by_ref();
        Poll::Pending
    }
}

/// The executor state that `spawn` and `sleep` reach through a thread-local,
/// so they can be free functions like tokio's. Only the executor thread
/// touches it, hence `Rc` and `RefCell`; the run queue alone is shared with
/// other threads (through wakers) and is an `Arc` with a `Mutex` inside.
struct Current {
    queue: Arc<RunQueue>,
    timers: RefCell<Timers>,
    /// Every unfinished task, so that shutdown can drop them all. A finished
    /// task leaves at once, so this holds only live tasks.
    tasks: RefCell<HashMap<usize, Arc<Task>>>,
    next_id: Cell<usize>,
    speed: f64,
}

impl Current {
    /// How long a sleep of `duration` really takes at this speed, capped at
    /// [`LONGEST_SLEEP`] so that `sleep(Duration::MAX)` or a tiny speed
    /// cannot overflow the deadline (`Instant + Duration` panics on
    /// overflow; a monotonic clock plus a century does not).
    fn wall_time(&self, duration: Duration) -> Duration {
        Duration::try_from_secs_f64(duration.as_secs_f64() / self.speed)
            .unwrap_or(LONGEST_SLEEP)
            .min(LONGEST_SLEEP)
    }

    fn forget(&self, task: &Task) {
        self.tasks.borrow_mut().remove(&task.id());
    }
}

/// The longest a sleep really waits: a hundred years is "forever" for
/// every program this executor will run.
const LONGEST_SLEEP: Duration = Duration::from_secs(100 * 365 * 24 * 60 * 60);

thread_local! {
    static CURRENT: RefCell<Option<Rc<Current>>> = const { RefCell::new(None) };
}

fn current<R>(f: impl FnOnce(&Current) -> R) -> R {
    let rt = CURRENT.with(|current| current.borrow().clone());
    let rt = rt.expect("byhand::spawn or byhand::sleep used outside byhand::block_on");
    f(&rt)
}

/// Installs the current executor for the duration of `block_on` and tears
/// it down when `block_on` ends, even by panic.
struct Enter {
    rt: Rc<Current>,
}

impl Enter {
    fn new(rt: Rc<Current>) -> Enter {
        CURRENT.with(|current| {
            let mut current = current.borrow_mut();
            assert!(
                current.is_none(),
                "byhand::block_on called inside byhand::block_on; await the future instead"
            );
            *current = Some(rt.clone());
        });
        Enter { rt }
    }
}

impl Drop for Enter {
    fn drop(&mut self) {
        CURRENT.with(|current| current.borrow_mut().take());
        // Drop every unfinished task's future. They may hold wakers of one
        // another (and the queue holds them), so without this the `Arc`s
        // would keep each other alive forever.
        let tasks: Vec<_> = self.rt.tasks.borrow_mut().drain().collect();
        for (_, task) in tasks {
            task.cancel();
        }
        self.rt.queue.clear();
        self.rt.timers.borrow_mut().clear();
    }
}
