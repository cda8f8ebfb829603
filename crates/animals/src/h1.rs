//! The client's HTTP/1.1 path for plain `http://` URLs: a connection is a
//! socket, a request written in one piece and an answer read with a small
//! buffer that exists only while bytes are arriving.
//!
//! Why not reqwest here: `coop speak` holds one connection per request in
//! flight (10,000 by default), and a general-purpose client pays for each
//! one a connection task, a request channel, hyper's 8 KiB head buffer and
//! a read buffer sized for large answers, plus a pool that finds waiters
//! by scanning a list under a lock: 28 KB and a busy core per connection
//! at that scale. An animal's answer is under 200 bytes. So here:
//!
//! - The request is one `write` of bytes built from the URL once
//!   (`GET {path} HTTP/1.1`, `Host`, `User-Agent`).
//! - Waiting for the answer holds no buffer: the future waits for the
//!   socket to be readable, then reads into [`READ_CHUNK`] bytes (grown
//!   only for a longer head, up to [`http1::MAX_HEAD`]). The head is parsed
//!   by `httparse` and the body decoded as it streams in (`http1`), up to
//!   [`MAX_BODY`] bytes.
//! - No task per connection: the connection is driven by the request's
//!   own future (in `coop speak`, the request's task), so a request costs
//!   one future, its socket and its timer.
//! - Connections the server lets us keep go back to an idle list (a LIFO
//!   `Vec` under a std `Mutex`, held for a push or a pop only), at most
//!   as many as requests may be in flight. One taken from the list that
//!   turns out closed or reset before any byte of an answer (the server's
//!   idle timeout, racing our request) is replaced by a new connection
//!   once, uncounted, as browsers do; on that new connection the same
//!   failure counts.
//! - Once a run has started every request it will make, no request will
//!   want a kept connection: the rest say `Connection: close`, so the
//!   server closes first. Its side then keeps each closed connection's
//!   `TIME_WAIT`, not the client's local ports (10,000 a run, held for a
//!   minute, would otherwise run a client started a few times a minute
//!   out of ports), and no socket is left to close when the run ends.
//! - Connection attempts are paced by a semaphore
//!   ([`crate::ClientConfig::max_connecting`]); the address is resolved
//!   once per client.
//!
//! Failures are named as [`Error`] kinds for `coop speak --timing`: reset
//! (`ECONNRESET`), closed before any answer, truncated body (cut short or
//! malformed chunks), not an HTTP answer, other transport errors; timeouts
//! are the caller's ([`crate::Client`] bounds each attempt).

use std::io;
use std::net::SocketAddr;
use std::sync::Mutex;

use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::sync::{OnceCell, Semaphore};

use crate::client::Answer;
use crate::error::Error;
use http1::{BodyDecoder, Framing};

/// Bytes read at a time. An animal's whole answer (head and body) from
/// `coop serve` is about 150 bytes; a longer one takes more reads, and a
/// head that does not fit grows the buffer.
pub const READ_CHUNK: usize = 512;

/// Longest body accepted: an animal's sound, or an error page. A server
/// sending more is not the Animals API ([`Error::BadAnswer`]).
pub const MAX_BODY: usize = 1 << 20;

/// A failed exchange: the error, and whether it happened while
/// connecting (where nothing was sent, so trying again is always safe).
#[derive(Debug)]
pub(crate) struct Trouble {
    pub error: Error,
    pub connect: bool,
}

impl From<Error> for Trouble {
    fn from(error: Error) -> Trouble {
        Trouble {
            error,
            connect: false,
        }
    }
}

/// Connections to one server, and what every request to it shares.
#[derive(Debug)]
pub(crate) struct Conns {
    /// Host to connect to (IPv6 without brackets) and port.
    host: String,
    port: u16,
    /// Resolved at the first connection, kept for the client's life.
    addrs: OnceCell<Vec<SocketAddr>>,
    /// Everything after the request target: version, `Host`,
    /// `User-Agent`, the empty line.
    head_tail: Box<[u8]>,
    /// The same with `Connection: close`, for a request after which no
    /// other will want the connection.
    head_tail_close: Box<[u8]>,
    /// Kept-alive connections, newest last. At most `max_idle`: one per
    /// request that may be in flight, so never more sockets than the
    /// configured concurrency.
    idle: Mutex<Vec<TcpStream>>,
    max_idle: usize,
    /// Connection attempts in flight.
    connecting: Semaphore,
}

/// How an exchange ended badly. `Stale`: the connection was closed or
/// reset before any byte of the answer, which on a kept-alive connection
/// most likely means the server closed it while idle (try a new one); on
/// a new connection it is the error given.
enum Exchange {
    Stale(Error),
    Failed(Trouble),
}

impl From<Error> for Exchange {
    fn from(error: Error) -> Exchange {
        Exchange::Failed(error.into())
    }
}

impl Conns {
    /// `host`, `port` and `authority` (the `Host` header) come from the
    /// checked base URL.
    pub(crate) fn new(
        host: &str,
        port: u16,
        authority: &str,
        max_idle: usize,
        max_connecting: usize,
    ) -> Conns {
        let head_tail = |extra: &str| {
            format!(
                " HTTP/1.1\r\nhost: {authority}\r\nuser-agent: coop/{}\r\naccept: */*\r\n{extra}\r\n",
                env!("CARGO_PKG_VERSION")
            )
            .into_bytes()
            .into()
        };
        Conns {
            host: host.trim_start_matches('[').trim_end_matches(']').into(),
            port,
            addrs: OnceCell::new(),
            head_tail: head_tail(""),
            head_tail_close: head_tail("connection: close\r\n"),
            idle: Mutex::new(Vec::new()),
            max_idle,
            connecting: Semaphore::new(max_connecting.max(1)),
        }
    }

    /// `GET target` (path and query), on a kept-alive connection if one is
    /// idle, else on a new one.
    ///
    /// `last`: no request after this one will want a connection (the
    /// caller has started every request it will make). The request then
    /// says `Connection: close` and the connection is not kept, so the
    /// server closes first: it, not this client, keeps the closed
    /// connection's `TIME_WAIT` (a client that ran 10,000 requests a few
    /// times a minute would otherwise run out of local ports), and no
    /// socket is left to close when the run ends.
    pub(crate) async fn get(&self, target: &str, last: bool) -> Result<Answer, Trouble> {
        let tail = if last {
            &self.head_tail_close
        } else {
            &self.head_tail
        };
        let mut request = Vec::with_capacity(4 + target.len() + tail.len());
        request.extend_from_slice(b"GET ");
        request.extend_from_slice(target.as_bytes());
        request.extend_from_slice(tail);
        if let Some(stream) = self.take_idle() {
            match self.exchange(stream, &request, last).await {
                Err(Exchange::Stale(_)) => {}
                Err(Exchange::Failed(trouble)) => return Err(trouble),
                Ok(answer) => return Ok(answer),
            }
        }
        let stream = self.connect().await?;
        match self.exchange(stream, &request, last).await {
            Ok(answer) => Ok(answer),
            Err(Exchange::Failed(trouble)) => Err(trouble),
            Err(Exchange::Stale(error)) => Err(error.into()),
        }
    }

    /// The newest idle connection that is still open.
    fn take_idle(&self) -> Option<TcpStream> {
        loop {
            let stream = self
                .idle
                .lock()
                .expect("never poisoned: push and pop only")
                .pop()?;
            // A connection the server closed while idle has its end of
            // file (or a reset) waiting; one still open has nothing to
            // read. This reads only if the socket was reported readable.
            match stream.try_read(&mut [0u8; 1]) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Some(stream),
                _ => continue,
            }
        }
    }

    fn put_idle(&self, stream: TcpStream) {
        let mut idle = self.idle.lock().expect("never poisoned: push and pop only");
        if idle.len() < self.max_idle {
            idle.push(stream);
        }
    }

    async fn connect(&self) -> Result<TcpStream, Trouble> {
        let failed = |what: String| Trouble {
            error: Error::Transport(what),
            connect: true,
        };
        let addrs = self
            .addrs
            .get_or_try_init(|| async {
                let addrs: Vec<_> = tokio::net::lookup_host((self.host.as_str(), self.port))
                    .await?
                    .collect();
                if addrs.is_empty() {
                    return Err(io::Error::new(io::ErrorKind::NotFound, "no address"));
                }
                Ok(addrs)
            })
            .await
            .map_err(|e| failed(format!("cannot resolve {}: {e}", self.host)))?;
        let _permit = self
            .connecting
            .acquire()
            .await
            .expect("never closed: the semaphore lives as long as self");
        let mut last = None;
        for addr in addrs {
            match TcpStream::connect(addr).await {
                Ok(stream) => return Ok(stream),
                Err(e) => last = Some(failed(format!("cannot connect to {addr}: {e}"))),
            }
        }
        Err(last.expect("addrs is not empty"))
    }

    /// Writes the request, reads one answer; gives the connection back to
    /// the idle list when the server lets us keep it and `last` is false.
    async fn exchange(
        &self,
        mut stream: TcpStream,
        request: &[u8],
        last: bool,
    ) -> Result<Answer, Exchange> {
        if let Err(e) = stream.write_all(request).await {
            return Err(Exchange::Stale(io_error(&e)));
        }
        // The head, read into a buffer allocated only once bytes are there.
        let mut buf = Vec::new();
        let head = loop {
            match read_some(&mut stream, &mut buf).await {
                Ok(0) if buf.is_empty() => {
                    return Err(Exchange::Stale(Error::Closed(
                        "the server closed the connection without answering".into(),
                    )))
                }
                Ok(0) => {
                    return Err(Error::Closed(
                        "the connection closed inside the answer's head".into(),
                    )
                    .into())
                }
                Ok(_) => {}
                Err(e) if buf.is_empty() => return Err(Exchange::Stale(e)),
                Err(e) => return Err(e.into()),
            }
            match http1::parse_head(&buf) {
                Ok(Some(head)) => break head,
                Ok(None) => {}
                Err(e) => return Err(Error::BadAnswer(e.0).into()),
            }
        };
        let mut decoder = BodyDecoder::new(head.framing);
        let mut body = Vec::new();
        if let Framing::Length(n) = head.framing {
            if n > MAX_BODY as u64 {
                return Err(too_long().into());
            }
            body.reserve_exact(n as usize);
        }
        let mut start = head.len;
        // Bytes after the answer: the server sent more than it said, so
        // the connection cannot carry another request.
        let mut extra = false;
        loop {
            let input = &buf[start..];
            let used = decoder
                .feed(input, |data| body.extend_from_slice(data))
                .map_err(|e| Error::Truncated(e.0))?;
            extra |= used < input.len();
            if body.len() > MAX_BODY {
                return Err(too_long().into());
            }
            if decoder.is_done() {
                break;
            }
            buf.clear();
            start = 0;
            if read_some(&mut stream, &mut buf).await? == 0 {
                if head.framing == Framing::UntilClose {
                    break;
                }
                return Err(Error::Truncated(format!(
                    "connection closed after {} body bytes",
                    body.len()
                ))
                .into());
            }
        }
        drop(buf);
        if head.keep_alive && !extra && !last {
            self.put_idle(stream);
        }
        let body = match String::from_utf8(body) {
            Ok(text) => text,
            Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned(),
        };
        Ok(Answer {
            status: head.status,
            retry_after_secs: head.retry_after_secs,
            body,
        })
    }
}

/// Waits until `stream` is readable, then appends what it has to `buf`
/// (room made only then); 0 at end of file.
async fn read_some(stream: &mut TcpStream, buf: &mut Vec<u8>) -> Result<usize, Error> {
    loop {
        stream.readable().await.map_err(|e| io_error(&e))?;
        if buf.capacity() - buf.len() < READ_CHUNK / 2 {
            buf.reserve(READ_CHUNK);
        }
        match stream.try_read_buf(buf) {
            Ok(n) => return Ok(n),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
            Err(e) => return Err(io_error(&e)),
        }
    }
}

/// A socket error by kind: a reset, or a close seen as a broken pipe (a
/// reset after the server's `FIN` reads as `EPIPE` on Linux).
fn io_error(e: &io::Error) -> Error {
    match e.kind() {
        io::ErrorKind::ConnectionReset => Error::Reset(e.to_string()),
        io::ErrorKind::BrokenPipe => Error::Closed(e.to_string()),
        _ => Error::Transport(e.to_string()),
    }
}

fn too_long() -> Error {
    Error::BadAnswer(format!("body longer than {MAX_BODY} bytes"))
}
