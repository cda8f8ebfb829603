//! The kitchen's resources as real async primitives: the cooks, the oven's
//! racks, the stove's burners and the microwave are each a [`Pool`], a tokio
//! [`Semaphore`] with one permit per unit plus the numbers of the free units
//! (so the timeline can say *which* cook or burner).
//!
//! `sim.rs` awaits these the way the talk's cook reaches for the stove: a
//! recipe that wants the cook while the cook is busy is parked (it yields to
//! the runtime) until the cook is free. Nothing here knows about time.

use std::collections::BTreeSet;
use std::sync::Mutex;

use tokio::sync::{Semaphore, SemaphorePermit};

use crate::recipe::{Appliance, Appliances};

/// A pool of identical, numbered units (cooks, burners, ...).
///
/// The semaphore does the waiting and the fairness: tokio's `Semaphore` is
/// first-in first-out, so whoever asked first is served first. That, plus a
/// single-threaded runtime, makes the kitchen's schedule deterministic.
/// The set of free unit numbers only says which unit a permit stands for; it
/// is a std `Mutex` because it is never held across an `.await`.
#[derive(Debug)]
pub struct Pool {
    /// "cook", "burner", ...: the label in the timeline.
    name: &'static str,
    size: usize,
    permits: Semaphore,
    /// Invariant: `free.len() == permits.available_permits()` whenever no
    /// guard is being created or dropped. The lowest free number is handed
    /// out first, so one cook of two is "cook 1" whenever possible.
    free: Mutex<BTreeSet<usize>>,
}

/// One unit of a [`Pool`], held until dropped.
#[derive(Debug)]
pub struct Unit<'a> {
    pool: &'a Pool,
    number: usize,
    // Dropped after `Drop::drop` has put `number` back, so a waiter woken by
    // this permit always finds a free number.
    _permit: SemaphorePermit<'a>,
}

impl Pool {
    /// A pool of `size` units numbered 1..=size. `size` may be 0 (a kitchen
    /// without a microwave); menus that need a missing unit are rejected by
    /// validation before anything awaits it.
    pub fn new(name: &'static str, size: usize) -> Pool {
        Pool {
            name,
            size,
            permits: Semaphore::new(size),
            free: Mutex::new((1..=size).collect()),
        }
    }

    pub fn name(&self) -> &'static str {
        self.name
    }

    pub fn size(&self) -> usize {
        self.size
    }

    /// Waits (asynchronously) for a free unit.
    pub async fn acquire(&self) -> Unit<'_> {
        let permit = self
            .permits
            .acquire()
            .await
            .expect("the kitchen never closes its semaphores");
        let number = self
            .free
            .lock()
            .expect("no code panics while holding the free-list lock")
            .pop_first()
            .expect("a permit always has a free unit number (see Pool::free)");
        Unit {
            pool: self,
            number,
            _permit: permit,
        }
    }
}

impl Unit<'_> {
    /// 1-based number of this unit in its pool.
    pub fn number(&self) -> usize {
        self.number
    }

    /// "cook 1", "burner 3"; a pool of one is just "oven", "microwave".
    pub fn label(&self) -> String {
        if self.pool.size == 1 && self.pool.name != "cook" {
            self.pool.name.to_string()
        } else {
            format!("{} {}", self.pool.name, self.number)
        }
    }
}

impl Drop for Unit<'_> {
    fn drop(&mut self) {
        self.pool
            .free
            .lock()
            .expect("no code panics while holding the free-list lock")
            .insert(self.number);
    }
}

/// The whole kitchen: cooks and appliances, shared by every recipe task
/// (behind an `Arc` in `sim.rs`).
#[derive(Debug)]
pub struct Kitchen {
    pub cooks: Pool,
    pub oven: Pool,
    pub burners: Pool,
    pub microwave: Pool,
}

impl Kitchen {
    pub fn new(cooks: usize, appliances: &Appliances) -> Kitchen {
        Kitchen {
            cooks: Pool::new("cook", cooks),
            oven: Pool::new("oven", appliances.oven_racks),
            burners: Pool::new("burner", appliances.burners),
            microwave: Pool::new("microwave", appliances.microwaves),
        }
    }

    /// The pool behind an appliance.
    pub fn appliance(&self, a: Appliance) -> &Pool {
        match a {
            Appliance::Oven => &self.oven,
            Appliance::Burner => &self.burners,
            Appliance::Microwave => &self.microwave,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn lowest_free_unit_first_and_returned_on_drop() {
        let pool = Pool::new("burner", 3);
        let a = pool.acquire().await;
        let b = pool.acquire().await;
        assert_eq!((a.number(), b.number()), (1, 2));
        drop(a);
        let c = pool.acquire().await;
        assert_eq!(c.number(), 1);
        assert_eq!(c.label(), "burner 1");
    }

    #[tokio::test]
    async fn a_full_pool_makes_the_next_one_wait() {
        let pool = Pool::new("oven", 1);
        let held = pool.acquire().await;
        assert_eq!(held.label(), "oven");
        let waiting = pool.acquire();
        tokio::pin!(waiting);
        assert!(futures_poll_once(waiting.as_mut()).await.is_none());
        drop(held);
        assert_eq!(waiting.await.number(), 1);
    }

    #[tokio::test]
    async fn a_single_cook_is_still_numbered() {
        let pool = Pool::new("cook", 1);
        assert_eq!(pool.acquire().await.label(), "cook 1");
    }

    /// Polls a future once; `None` if it is pending.
    async fn futures_poll_once<F: std::future::Future + Unpin>(f: F) -> Option<F::Output> {
        let mut f = f;
        std::future::poll_fn(|cx| {
            std::task::Poll::Ready(match std::pin::Pin::new(&mut f).poll(cx) {
                std::task::Poll::Ready(v) => Some(v),
                std::task::Poll::Pending => None,
            })
        })
        .await
    }
}
