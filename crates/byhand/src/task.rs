//! A task: one spawned future, boxed and pinned, plus the run queue it puts
//! itself back on when something wakes it. Also the run queue itself, and
//! the `JoinHandle` through which a task's result travels to whoever awaits
//! it.
//!
//! The executor loop in `lib.rs` pops tasks off the [`RunQueue`] and calls
//! [`Task::poll`]; the waker in `waker.rs` calls [`Task::schedule`].

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};
use std::time::Instant;

/// A future with its type erased, so tasks of every kind fit in one queue.
/// `Send` because a `Waker` may be sent to another thread, and the waker
/// holds the task (see `waker.rs`).
pub(crate) type BoxFuture = Pin<Box<dyn Future<Output = ()> + Send + 'static>>;

/// One spawned future.
pub(crate) struct Task {
    /// The executor's name for this task, so it can forget it when done.
    id: usize,
    /// `Some` until the future returns `Ready`; then `None`, so a late wake
    /// of a finished task polls nothing. A std `Mutex` because only the
    /// executor thread polls, so the lock is never contended for long; it
    /// exists to make `Task` `Sync`, which `Arc<Task>`-as-`Waker` demands.
    future: Mutex<Option<BoxFuture>>,
    /// The queue this task goes back on when woken.
    queue: Arc<RunQueue>,
    /// True while the task sits in the queue. Waking a task that is already
    /// queued does nothing, so the queue never holds a task twice: its length
    /// is bounded by the number of live tasks.
    queued: AtomicBool,
}

impl Task {
    pub(crate) fn new(id: usize, future: BoxFuture, queue: Arc<RunQueue>) -> Arc<Task> {
        Arc::new(Task {
            id,
            future: Mutex::new(Some(future)),
            queue,
            queued: AtomicBool::new(false),
        })
    }

    pub(crate) fn id(&self) -> usize {
        self.id
    }

    // ANCHOR: schedule_and_poll
    /// Puts the task on its run queue, unless it is there already. Called by
    /// `spawn` (a new task is ready at once) and by every wake.
    pub(crate) fn schedule(self: &Arc<Self>) {
        if !self.queued.swap(true, Ordering::AcqRel) {
            self.queue.push(self.clone());
        }
    }

    /// Polls the future once. Returns true when it has finished.
    pub(crate) fn poll(self: &Arc<Self>) -> bool {
        // Clear the flag *before* polling: a wake that arrives while the
        // future runs must queue the task again, or it would be lost.
        self.queued.store(false, Ordering::Release);
        let waker = Waker::from(self.clone());
        let mut cx = Context::from_waker(&waker);
        let mut slot = lock(&self.future);
        let Some(future) = slot.as_mut() else {
            return true;
        };
        if future.as_mut().poll(&mut cx).is_ready() {
            *slot = None;
            true
        } else {
            false
        }
    }
    // ANCHOR_END: schedule_and_poll

    /// Drops the future without finishing it (executor shutdown). Dropping
    /// it releases whatever it holds, including wakers of other tasks, which
    /// breaks the reference cycles a queue of `Arc`s can form.
    pub(crate) fn cancel(&self) {
        lock(&self.future).take();
    }
}

/// Tasks that are ready to be polled, and the flag for the `block_on`
/// future, which is not a task. The executor thread sleeps on `signal` when
/// there is nothing to do; wakes from any thread notify it.
pub(crate) struct RunQueue {
    ready: Mutex<Ready>,
    signal: Condvar,
}

#[derive(Default)]
struct Ready {
    /// FIFO: tasks run in the order they were woken.
    tasks: VecDeque<Arc<Task>>,
    /// The future given to `block_on` was woken.
    main: bool,
}

impl RunQueue {
    pub(crate) fn new() -> RunQueue {
        RunQueue {
            ready: Mutex::new(Ready::default()),
            signal: Condvar::new(),
        }
    }

    fn push(&self, task: Arc<Task>) {
        lock(&self.ready).tasks.push_back(task);
        self.signal.notify_one();
    }

    pub(crate) fn wake_main(&self) {
        lock(&self.ready).main = true;
        self.signal.notify_one();
    }

    /// Everything queued right now. Tasks woken while these run land in the
    /// queue again and are taken next round, so one busy task that keeps
    /// waking itself cannot starve the timers or the main future.
    pub(crate) fn take_all(&self) -> VecDeque<Arc<Task>> {
        std::mem::take(&mut lock(&self.ready).tasks)
    }

    /// Parks the executor thread until a task or the main future is woken,
    /// or until `deadline` (the next timer) passes. Returns whether the main
    /// future was woken, clearing that flag.
    pub(crate) fn wait(&self, deadline: Option<Instant>) -> bool {
        let mut ready = lock(&self.ready);
        // The state lives under the same lock the wakers take, so a wake
        // between our check and our sleep cannot be lost.
        while ready.tasks.is_empty() && !ready.main {
            match deadline {
                None => {
                    ready = self
                        .signal
                        .wait(ready)
                        .unwrap_or_else(|poisoned| poisoned.into_inner());
                }
                Some(deadline) => {
                    let now = Instant::now();
                    if now >= deadline {
                        break;
                    }
                    ready = self
                        .signal
                        .wait_timeout(ready, deadline - now)
                        .unwrap_or_else(|poisoned| poisoned.into_inner())
                        .0;
                }
            }
        }
        std::mem::take(&mut ready.main)
    }

    /// Empties the queue at shutdown.
    pub(crate) fn clear(&self) {
        lock(&self.ready).tasks.clear();
    }
}

/// The result slot shared by a spawned task and its [`JoinHandle`].
pub(crate) struct JoinState<T> {
    result: Option<T>,
    finished: bool,
    /// Whoever awaits the handle, to be woken when the result arrives.
    waiter: Option<Waker>,
}

/// Awaits the result of a task started with [`spawn`](crate::spawn).
///
/// Dropping the handle does not stop the task (as in tokio): it runs to the
/// end and its result is thrown away.
pub struct JoinHandle<T> {
    state: Arc<Mutex<JoinState<T>>>,
}

impl<T> JoinHandle<T> {
    /// Whether the task has finished, without waiting for it: the talk's
    /// `task.done()`.
    pub fn is_finished(&self) -> bool {
        lock(&self.state).finished
    }
}

impl<T> Future for JoinHandle<T> {
    type Output = T;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<T> {
        let mut state = lock(&self.state);
        match state.result.take() {
            Some(value) => Poll::Ready(value),
            None => {
                assert!(!state.finished, "JoinHandle polled after it returned");
                state.waiter = Some(cx.waker().clone());
                Poll::Pending
            }
        }
    }
}

/// Wraps `future` so that its output lands in a join slot, and returns the
/// wrapped future (what becomes the task) and the handle.
pub(crate) fn joinable<F>(future: F) -> (BoxFuture, JoinHandle<F::Output>)
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    let state = Arc::new(Mutex::new(JoinState {
        result: None,
        finished: false,
        waiter: None,
    }));
    let slot = state.clone();
    let task = Box::pin(async move {
        let value = future.await;
        let waiter = {
            let mut state = lock(&slot);
            state.result = Some(value);
            state.finished = true;
            state.waiter.take()
        };
        // Wake outside the lock: the waiter may run on another thread.
        if let Some(waiter) = waiter {
            waiter.wake();
        }
    });
    (task, JoinHandle { state })
}

/// Locks a mutex, ignoring poison: a task that panicked takes the whole
/// executor down anyway (the panic unwinds out of `block_on`), so a
/// poisoned lock is never seen by code that goes on running.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}
