//! A sleep future with no executor behind it: the talk's `manual_sleep`,
//! which politely asks whoever drives it to wait.
//!
//! In Python, `manual_sleep(3)` yields the string `Please do not continue
//! until 3 seconds have elapsed.` and that string travels up through every
//! `await` to the code calling `send`. Rust's `Poll::Pending` carries no
//! value at all: it only says "not yet". So the request goes through a side
//! channel instead, a per-thread mailbox that the driver reads after each
//! poll with [`take_request`]. Real runtimes do the same thing: tokio's
//! `sleep` does not tell its caller when to come back, it registers its
//! deadline with the runtime's timer through a thread-local context (our
//! `Sleep` in `timer.rs` does too) and returns a bare `Pending`.
//!
//! [`ManualSleep`] trusts its driver completely: the first poll posts the
//! request and returns `Pending`; the next poll returns `Ready`, whether or
//! not the time really passed. It never touches its waker, so only a
//! driver that polls by hand (or knows to come back) will ever finish it.

use std::cell::RefCell;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

thread_local! {
    /// The last request posted on this thread and not yet taken.
    static MAILBOX: RefCell<Option<Request>> = const { RefCell::new(None) };
}

/// What a [`ManualSleep`] asks of its driver. Displays as the talk's
/// request, word for word: `Please do not continue until 3 seconds have
/// elapsed.`
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Request {
    /// How long the driver should wait before polling again.
    pub seconds: u64,
}

impl fmt::Display for Request {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Please do not continue until {} seconds have elapsed.",
            self.seconds
        )
    }
}

/// Asks the driver to wait `seconds` seconds (see [`ManualSleep`]).
pub fn manual_sleep(seconds: u64) -> ManualSleep {
    ManualSleep {
        seconds,
        asked: false,
    }
}

/// Takes the request the last `Pending` left behind, if any.
pub fn take_request() -> Option<Request> {
    MAILBOX.with(|mailbox| mailbox.borrow_mut().take())
}

/// The future returned by [`manual_sleep`].
#[derive(Debug)]
pub struct ManualSleep {
    seconds: u64,
    /// Whether the request went out; the next poll means "time is up".
    asked: bool,
}

impl ManualSleep {
    /// How long the driver is asked to wait.
    pub fn seconds(&self) -> u64 {
        self.seconds
    }
}

// ANCHOR: manual_poll
impl Future for ManualSleep {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<()> {
        if self.asked {
            return Poll::Ready(());
        }
        self.asked = true;
        let request = Request {
            seconds: self.seconds,
        };
        MAILBOX.with(|mailbox| *mailbox.borrow_mut() = Some(request));
        Poll::Pending
    }
}
// ANCHOR_END: manual_poll
