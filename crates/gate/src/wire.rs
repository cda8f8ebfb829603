//! What hyper reads and writes through: a connection's socket (plain or
//! TLS) with three duties added, in one wrapper rather than three.
//!
//! - **Rewound**: the bytes the gate already read (to parse the first head,
//!   or to time the first bytes after a TLS handshake) are read again first.
//! - **Held**: the wrapper carries the connection's place under the limits
//!   and in the drain ([`Held`]); whoever owns the socket (hyper, or the
//!   task of a connection hyper upgraded to a WebSocket) keeps it until the
//!   socket is dropped.
//! - **Stalled writes fail**: a client that stops reading fills its socket
//!   buffer, and hyper would wait on it forever (holding the connection,
//!   its buffers and the drain). A write that makes no progress for
//!   `--write-timeout` fails. The timer runs only while a write is
//!   blocked, and wakes the connection's own task: no task of its own.
//! - **HTTP/2 answers leave together** ([`Wire::coalesce`]): each HTTP/2
//!   stream is answered by a task of its own, which wakes the connection's
//!   task to send its frames, and tokio runs a task woken that way next:
//!   answers due at the same instant (held requests whose delays end in
//!   one timer tick) would go out one `writev` each, and on loopback each
//!   write also costs the delivery to the client. So the first write
//!   after a flush first lets the tasks already queued run once (the
//!   connection's task wakes itself, which tokio queues behind them), and
//!   sends what they answered in the same write.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Buf, Bytes};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::Held;

pub(crate) struct Wire<I> {
    /// Read again before the socket.
    prefix: Bytes,
    io: I,
    _held: Option<Held>,
    write_timeout: Duration,
    /// Armed while a write is blocked.
    stalled: Option<Pin<Box<tokio::time::Sleep>>>,
    /// Whether writes wait for the queued tasks once per flush.
    coalesce: bool,
    /// Set once the current batch has waited: cleared by a flush.
    waited: bool,
}

impl<I> Wire<I> {
    pub(crate) fn new(prefix: Bytes, io: I, write_timeout: Duration) -> Wire<I> {
        Wire {
            prefix,
            io,
            _held: None,
            write_timeout,
            stalled: None,
            coalesce: false,
            waited: false,
        }
    }

    /// From now on, the first write after each flush waits for the tasks
    /// already queued to run once (see the module's doc). For HTTP/2,
    /// whose writer (h2) buffers frames and flushes after each batch.
    pub(crate) fn coalesce(&mut self) {
        self.coalesce = true;
    }

    /// Whether this write waits: the first of a batch does, once, waking
    /// the task at once so that it is polled again right after the tasks
    /// queued before it.
    fn waits(&mut self, cx: &mut Context<'_>) -> bool {
        if !self.coalesce || self.waited {
            return false;
        }
        self.waited = true;
        cx.waker().wake_by_ref();
        true
    }

    /// From now on the socket keeps the connection's place.
    pub(crate) fn hold(&mut self, held: Held) {
        self._held = Some(held);
    }

    /// After a write returned `Pending`: arms the timer (once per stall)
    /// and fails when it has run out.
    fn blocked<T>(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<T>> {
        let timeout = self.write_timeout;
        let stalled = self
            .stalled
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(timeout)));
        match stalled.as_mut().poll(cx) {
            Poll::Ready(()) => {
                metrics::counter!("gate_write_timeouts_total").increment(1);
                Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "the client stopped reading (--write-timeout)",
                )))
            }
            Poll::Pending => Poll::Pending,
        }
    }

    /// A write finished (or failed): the stall, if any, is over.
    fn progressed<T>(&mut self, done: Poll<io::Result<T>>) -> Poll<io::Result<T>> {
        self.stalled = None;
        done
    }
}

impl<I: AsyncRead + Unpin> AsyncRead for Wire<I> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if !self.prefix.is_empty() {
            let n = self.prefix.len().min(buf.remaining());
            buf.put_slice(&self.prefix[..n]);
            self.prefix.advance(n);
            if self.prefix.is_empty() {
                // Drop the buffer it came from.
                self.prefix = Bytes::new();
            }
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl<I: AsyncWrite + Unpin> AsyncWrite for Wire<I> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        if self.waits(cx) {
            return Poll::Pending;
        }
        match Pin::new(&mut self.io).poll_write(cx, buf) {
            Poll::Pending => self.blocked(cx),
            done => self.progressed(done),
        }
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        if self.waits(cx) {
            return Poll::Pending;
        }
        match Pin::new(&mut self.io).poll_write_vectored(cx, bufs) {
            Poll::Pending => self.blocked(cx),
            done => self.progressed(done),
        }
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match Pin::new(&mut self.io).poll_flush(cx) {
            Poll::Pending => self.blocked(cx),
            done => {
                // The batch is out: the next write starts another.
                self.waited = false;
                self.progressed(done)
            }
        }
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    use std::task::Wake;

    use super::*;

    /// Counts its wake-ups.
    struct Wakes(AtomicUsize);

    impl Wake for Wakes {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::Relaxed);
        }
    }

    #[tokio::test]
    async fn a_coalescing_wire_holds_back_the_first_write_of_each_batch_once() {
        let wakes = Arc::new(Wakes(AtomicUsize::new(0)));
        let waker = std::task::Waker::from(wakes.clone());
        let mut cx = Context::from_waker(&waker);
        let mut wire = Wire::new(Bytes::new(), Vec::<u8>::new(), Duration::from_secs(1));
        let mut wire = Pin::new(&mut wire);

        // Without `coalesce`, writes go straight through.
        assert!(matches!(
            wire.as_mut().poll_write(&mut cx, b"a"),
            Poll::Ready(Ok(1))
        ));
        wire.coalesce();
        for batch in [&b"bc"[..], b"de"] {
            // The first write waits, and has woken the task to come back.
            let before = wakes.0.load(Ordering::Relaxed);
            assert!(wire.as_mut().poll_write(&mut cx, batch).is_pending());
            assert_eq!(wakes.0.load(Ordering::Relaxed), before + 1);
            // Polled again: the batch goes out, every write of it at once.
            assert!(matches!(
                wire.as_mut().poll_write(&mut cx, &batch[..1]),
                Poll::Ready(Ok(1))
            ));
            assert!(matches!(
                wire.as_mut().poll_write(&mut cx, &batch[1..]),
                Poll::Ready(Ok(1))
            ));
            assert!(wire.as_mut().poll_flush(&mut cx).is_ready());
        }
        assert_eq!(wire.io, b"abcde");
    }
}
