//! The executor: spawn, join, block_on, wakers from other threads, timers in
//! deadline order, and the speed factor. Timing assertions use generous
//! margins: the point is "concurrent, not one after the other".

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use byhand::{block_on, sleep, spawn, yield_now, BadSpeed, Runtime};

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

#[test]
fn block_on_runs_nested_async_fns_to_their_value() {
    async fn inner(x: u64) -> u64 {
        sleep(ms(1)).await;
        x + 1
    }
    async fn middle(x: u64) -> u64 {
        let a = inner(x).await;
        let b = inner(a).await;
        a * b
    }
    async fn outer() -> u64 {
        middle(1).await + middle(2).await
    }
    assert_eq!(block_on(outer()), 2 * 3 + 3 * 4);
}

#[test]
fn block_on_returns_a_ready_future_without_waiting() {
    assert_eq!(block_on(async { 42 }), 42);
}

#[test]
fn sleeping_tasks_wake_in_deadline_order() {
    let order = Arc::new(Mutex::new(Vec::new()));
    // Spawned in scrambled order; each records its delay when it wakes.
    // 40 ms apart, so that a stalled machine cannot reorder the deadlines
    // while the first round of polls computes them.
    let delays = [200, 40, 160, 0, 120, 80, 240];
    let rt = Runtime::new();
    rt.block_on(async {
        let handles: Vec<_> = delays
            .iter()
            .map(|&delay| {
                let order = order.clone();
                spawn(async move {
                    sleep(ms(delay)).await;
                    order.lock().unwrap().push(delay);
                })
            })
            .collect();
        for handle in handles {
            handle.await;
        }
    });
    let mut sorted = delays.to_vec();
    sorted.sort();
    assert_eq!(*order.lock().unwrap(), sorted);
}

#[test]
fn equal_deadlines_wake_in_the_order_they_were_set() {
    let order = Arc::new(Mutex::new(Vec::new()));
    block_on(async {
        let handles: Vec<_> = (0..20)
            .map(|i| {
                let order = order.clone();
                spawn(async move {
                    sleep(ms(5)).await;
                    order.lock().unwrap().push(i);
                })
            })
            .collect();
        for handle in handles {
            handle.await;
        }
    });
    // Each task computes its deadline at its first poll, in spawn order, so
    // the deadlines are non-decreasing and ties break by insertion.
    assert_eq!(*order.lock().unwrap(), (0..20).collect::<Vec<_>>());
}

#[test]
fn ten_thousand_sleeping_tasks_share_one_thread_and_one_wait() {
    let start = Instant::now();
    let total = block_on(async {
        let handles: Vec<_> = (0..10_000u64)
            .map(|i| {
                spawn(async move {
                    sleep(ms(100)).await;
                    i
                })
            })
            .collect();
        let mut total = 0;
        for handle in handles {
            total += handle.await;
        }
        total
    });
    let elapsed = start.elapsed();
    assert_eq!(total, (0..10_000u64).sum::<u64>());
    // One after the other this would be 1000 s; together it is one sleep.
    assert!(elapsed >= ms(100), "woke early: {elapsed:?}");
    assert!(
        elapsed < Duration::from_secs(5),
        "not concurrent: {elapsed:?}"
    );
}

#[test]
fn a_task_that_wakes_itself_is_polled_again_and_takes_turns() {
    let log = Arc::new(Mutex::new(Vec::new()));
    block_on(async {
        let a = {
            let log = log.clone();
            spawn(async move {
                for i in 0..3 {
                    log.lock().unwrap().push(format!("a{i}"));
                    yield_now().await;
                }
            })
        };
        let b = {
            let log = log.clone();
            spawn(async move {
                for i in 0..3 {
                    log.lock().unwrap().push(format!("b{i}"));
                    yield_now().await;
                }
            })
        };
        a.await;
        b.await;
    });
    assert_eq!(
        *log.lock().unwrap(),
        ["a0", "b0", "a1", "b1", "a2", "b2"],
        "yield_now sends the task to the back of the queue"
    );
}

#[test]
fn a_task_can_wake_itself_many_times() {
    // A hand-written future that wakes its own waker before every Pending.
    struct Countdown(u32);
    impl Future for Countdown {
        type Output = &'static str;
        fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<&'static str> {
            if self.0 == 0 {
                return Poll::Ready("liftoff");
            }
            self.0 -= 1;
            cx.waker().wake_by_ref();
            Poll::Pending
        }
    }
    let result = block_on(async { spawn(Countdown(10_000)).await });
    assert_eq!(result, "liftoff");
}

#[test]
fn join_handles_carry_results_between_tasks() {
    let result = block_on(async {
        let square = spawn(async {
            sleep(ms(5)).await;
            7 * 7
        });
        // A task that awaits another task's handle.
        let doubler = spawn(async move { square.await * 2 });
        doubler.await
    });
    assert_eq!(result, 98);
}

#[test]
fn is_finished_reports_without_waiting() {
    block_on(async {
        let handle = spawn(async {
            sleep(ms(20)).await;
            "done"
        });
        assert!(!handle.is_finished());
        let mut polls = 0;
        while !handle.is_finished() {
            polls += 1;
            sleep(ms(5)).await;
        }
        // At least the first check, made before the task had even started.
        assert!(polls >= 1, "polled {polls} times");
        assert_eq!(handle.await, "done");
    });
}

#[test]
fn a_dropped_handle_does_not_stop_its_task() {
    let ran = Arc::new(AtomicBool::new(false));
    block_on(async {
        let flag = ran.clone();
        drop(spawn(async move {
            sleep(ms(5)).await;
            flag.store(true, Ordering::SeqCst);
        }));
        sleep(ms(30)).await;
    });
    assert!(ran.load(Ordering::SeqCst));
}

#[test]
fn a_waker_sent_to_another_thread_wakes_the_parked_executor() {
    // A future that hands its waker to a plain thread, which wakes it later.
    struct FromThread {
        started: bool,
        done: Arc<AtomicBool>,
    }
    impl Future for FromThread {
        type Output = ();
        fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
            if self.done.load(Ordering::SeqCst) {
                return Poll::Ready(());
            }
            if !self.started {
                self.started = true;
                let waker = cx.waker().clone();
                let done = self.done.clone();
                std::thread::spawn(move || {
                    std::thread::sleep(Duration::from_millis(20));
                    done.store(true, Ordering::SeqCst);
                    waker.wake();
                });
            }
            Poll::Pending
        }
    }
    let new = || FromThread {
        started: false,
        done: Arc::new(AtomicBool::new(false)),
    };
    // No timers are pending, so the executor parks with no timeout: only the
    // thread's wake can bring it back. Once as the main future, once as a
    // task.
    block_on(new());
    block_on(async move { spawn(new()).await });
}

#[test]
fn unfinished_tasks_are_dropped_when_block_on_returns() {
    struct Guard(Arc<AtomicUsize>);
    impl Drop for Guard {
        fn drop(&mut self) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }
    let dropped = Arc::new(AtomicUsize::new(0));
    block_on(async {
        for _ in 0..3 {
            let guard = Guard(dropped.clone());
            spawn(async move {
                let _guard = guard;
                sleep(Duration::from_secs(3600)).await;
            });
        }
        sleep(ms(5)).await;
        assert_eq!(dropped.load(Ordering::SeqCst), 0);
    });
    assert_eq!(dropped.load(Ordering::SeqCst), 3);
}

#[test]
fn speed_divides_every_sleep() {
    let rt = Runtime::with_speed(100.0).unwrap();
    let start = Instant::now();
    rt.block_on(async {
        // Two "3 second" sleeps at once: 30 ms of wall time, not 60.
        let a = spawn(sleep(Duration::from_secs(3)));
        let b = spawn(sleep(Duration::from_secs(3)));
        a.await;
        b.await;
    });
    let elapsed = start.elapsed();
    assert!(elapsed >= ms(30), "woke early: {elapsed:?}");
    assert!(elapsed < ms(1000), "speed ignored: {elapsed:?}");
}

#[test]
fn bad_speeds_are_refused() {
    for speed in [0.0, -1.0, f64::NAN, f64::INFINITY] {
        let err = Runtime::with_speed(speed).unwrap_err();
        assert!(matches!(err, BadSpeed(_)));
        assert!(err.to_string().contains("speed must be"), "{err}");
    }
}

#[test]
#[should_panic(expected = "outside byhand::block_on")]
fn spawn_outside_an_executor_panics_with_a_reason() {
    drop(spawn(async {}));
}

#[test]
#[should_panic(expected = "inside byhand::block_on")]
fn nested_block_on_panics_with_a_reason() {
    block_on(async { block_on(async {}) });
}

#[test]
fn block_on_can_run_again_after_a_previous_run() {
    assert_eq!(block_on(async { spawn(async { 1 }).await }), 1);
    assert_eq!(block_on(async { spawn(async { 2 }).await }), 2);
}

#[test]
fn sleeps_too_long_to_represent_do_not_overflow() {
    // An endless sleep, at normal speed and on a very slow runtime: the
    // deadline is capped instead of overflowing `Instant` (which panics).
    for speed in [1.0, 1e-300] {
        let rt = Runtime::with_speed(speed).unwrap();
        let still_sleeping = rt.block_on(async {
            let endless = spawn(sleep(Duration::MAX));
            // Let the task run once, so its sleep computes the deadline.
            yield_now().await;
            yield_now().await;
            !endless.is_finished()
        });
        assert!(still_sleeping);
    }
}
