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
}

impl<I> Wire<I> {
    pub(crate) fn new(prefix: Bytes, io: I, write_timeout: Duration) -> Wire<I> {
        Wire {
            prefix,
            io,
            _held: None,
            write_timeout,
            stalled: None,
        }
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
            done => self.progressed(done),
        }
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}
