//! The wall clock the stores read: message times, ids that start from the
//! time, and the ages that `--history-ttl` retention compares. A test can
//! move its own clock forward instead of sleeping through an age.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// The system clock, plus an offset that only an adjustable clock changes.
/// `Copy`: it rides in [`crate::store::Retention`].
#[derive(Clone, Copy)]
pub struct Clock {
    offset_us: &'static AtomicU64,
}

/// The offset of every system clock: always zero.
static NO_OFFSET: AtomicU64 = AtomicU64::new(0);

impl Clock {
    /// The system clock.
    pub fn system() -> Clock {
        Clock {
            offset_us: &NO_OFFSET,
        }
    }

    /// A clock that [`Clock::advance`] moves forward, for tests. Each one
    /// holds a few bytes for the rest of the process.
    pub fn adjustable() -> Clock {
        Clock {
            offset_us: Box::leak(Box::new(AtomicU64::new(0))),
        }
    }

    /// Moves an adjustable clock forward by `by`.
    ///
    /// # Panics
    /// On the system clock, which nothing may move.
    pub fn advance(&self, by: Duration) {
        assert!(
            !std::ptr::eq(self.offset_us, &NO_OFFSET),
            "the system clock cannot be moved: use Clock::adjustable"
        );
        self.offset_us
            .fetch_add(by.as_micros() as u64, Ordering::Relaxed);
    }

    /// Now, as Unix microseconds.
    pub fn now_us(&self) -> u64 {
        crate::message::now_us() + self.offset_us.load(Ordering::Relaxed)
    }

    /// Now, as Unix milliseconds.
    pub fn now_ms(&self) -> u64 {
        self.now_us() / 1000
    }
}

impl Default for Clock {
    fn default() -> Clock {
        Clock::system()
    }
}

impl PartialEq for Clock {
    fn eq(&self, other: &Clock) -> bool {
        std::ptr::eq(self.offset_us, other.offset_us)
    }
}

impl Eq for Clock {}

impl std::fmt::Debug for Clock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.offset_us.load(Ordering::Relaxed) {
            0 => f.write_str("Clock(system)"),
            us => write!(f, "Clock(system + {us} µs)"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_adjustable_clock_moves_and_the_system_one_does_not() {
        let clock = Clock::adjustable();
        let before = clock.now_us();
        clock.advance(Duration::from_secs(60));
        assert!(clock.now_us() >= before + 60_000_000);
        let system = Clock::system();
        assert!(system.now_us() < clock.now_us());
        assert!(std::panic::catch_unwind(|| system.advance(Duration::from_secs(1))).is_err());
    }
}
