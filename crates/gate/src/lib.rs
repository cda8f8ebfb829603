//! The front door: every connection `coop serve` accepts goes through here,
//! once.
//!
//! [`Gate::run`] takes a bound listener, the router, the fast paths and a
//! shutdown token (as mini-redis's `server::run(listener, shutdown)` does)
//! and owns everything between the socket and a handler:
//!
//! - **accepting** ([`listen`] with a deep backlog), with `EMFILE`/`ENFILE`
//!   logged and backed off instead of spinning;
//! - **limits** ([`Limits`]): connections in all and per address, requests
//!   in flight over every connection and stream, HTTP/2 streams per
//!   connection, the header timeout (which is also the keep-alive idle
//!   timeout, HTTP/2 included), the largest head; past each, a `503`
//!   with a one-line reason ([`Refusal`]) or hyper's `431`;
//! - **one parse of each request head** ([`head::parse`], httparse) and one
//!   dispatch: each [`FastPath`] is shown the parsed head in turn and may
//!   claim the request; otherwise hyper serves the connection, re-reading
//!   what was read. A connection that started as HTTP/1.1 stays HTTP/1.1;
//!   HTTP/2 is chosen only by its preface at the start of a connection (h2c)
//!   or by ALPN (TLS). Each HTTP/2 request hyper parses is shown to the
//!   fast paths too ([`FastPath::claim_h2`]) before the router;
//! - **writers** shared by the fast paths ([`write`]: heads, chunks, a
//!   cached `Date`, the one rendering of an error) and **one
//!   percent-decoding rule** ([`decode`]);
//! - **TLS** ([`tls`]: rustls, ALPN `h2` and `http/1.1`, certificates
//!   reloaded without a restart);
//! - **the drain** ([`Drain`]): on shutdown, accepting stops, idle
//!   connections close, and the rest get until a deadline.
//!
//! Over TLS every request goes through hyper: the fast paths write to a
//! plain TCP socket (they peek at it and move it between runtimes).

pub mod decode;
pub mod head;
mod limits;
pub mod tls;
pub mod write;

mod conn;
mod wire;

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use hyper_util::server::graceful::{GracefulShutdown, Watcher};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;

pub use head::Head;
pub use limits::{client_key, Limits, Refusal};

use limits::{AddressSlot, InFlight, PerAddress};

/// Kernel accept queue length: a burst of thousands of clients connecting
/// at once (`coop speak` with 10,000 animals) must not overflow it, or their
/// SYNs are retried a second later. Linux caps it at `net.core.somaxconn`.
const LISTEN_BACKLOG: u32 = 16_384;

/// Refused connections being answered `503` at once; more than this are
/// closed without an answer (the kernel's RST is the answer).
const REJECT_SLOTS: usize = 256;

/// Pause after `EMFILE`/`ENFILE` before accepting again: the error repeats
/// until some connection closes, so retrying at once would spin a core.
const FD_BACKOFF: Duration = Duration::from_millis(100);

/// Binds `addr` with `SO_REUSEADDR` (a restart does not wait for old
/// connections in `TIME_WAIT`) and a deep accept queue.
pub fn listen(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(LISTEN_BACKLOG)
}

/// A path that answers some requests straight from the socket, without
/// hyper, chosen from the parsed head.
pub trait FastPath: Send + Sync + 'static {
    /// Looks at a parsed request head (without waiting: the head borrows
    /// the gate's read buffer) and either claims the request, returning
    /// how to answer it once the head is consumed, or leaves it (`None`)
    /// to the next path and finally to hyper.
    fn claim(&self, head: &Head<'_>, peer: SocketAddr) -> Option<Answer>;

    /// Looks at an HTTP/2 request hyper parsed, before the router, and
    /// either claims it, returning its answer, or hands it back (the
    /// default) to the next path and finally to the router. The gate
    /// counts a claimed request under `--max-in-flight` as it counts the
    /// router's, and hyper still frames the answer; what a claim skips is
    /// the router's per-request work (its routing, layers, extensions and
    /// boxed futures), so a path must answer exactly what the router
    /// would.
    // The request is handed back by value on purpose: boxing it would
    // cost an allocation per request, the kind of work a claim saves.
    #[allow(clippy::result_large_err)]
    fn claim_h2(&self, req: HyperRequest) -> Result<Reply, HyperRequest> {
        Err(req)
    }
}

/// A request as hyper hands it over.
pub type HyperRequest = http::Request<hyper::body::Incoming>;

/// The answer to a request claimed from hyper: resolves to the response
/// (its head; the body streams after).
pub type Reply = Pin<Box<dyn Future<Output = axum::response::Response> + Send>>;

/// How a claimed request is answered: given the connection (its head
/// consumed), answer and say what is left of it.
pub type Answer = Box<dyn FnOnce(Conn) -> Pin<Box<dyn Future<Output = Next> + Send>> + Send>;

/// What a fast path left of a connection.
pub enum Next {
    /// Answered; the connection may carry another request (the gate reads
    /// it, under the header timeout, and dispatches it again).
    KeepAlive(Conn),
    /// Closed, broken, or taken for good (a streaming subscriber keeps the
    /// socket and the connection's [`Held`] in a task of its own).
    Done,
}

/// A plain TCP connection handed to a fast path.
pub struct Conn {
    stream: TcpStream,
    peer: SocketAddr,
    held: Held,
    shutdown: CancellationToken,
}

/// What an open connection holds: its place under the connection limits
/// and in the drain. Whoever keeps the socket keeps this until it closes.
pub struct Held {
    _watcher: Watcher,
    _permit: OwnedSemaphorePermit,
    _address: AddressSlot,
}

impl Conn {
    pub fn stream(&mut self) -> &mut TcpStream {
        &mut self.stream
    }

    pub fn peer(&self) -> SocketAddr {
        self.peer
    }

    /// Whether the server is shutting down (answer, then close).
    pub fn closing(&self) -> bool {
        self.shutdown.is_cancelled()
    }

    /// The socket and what the connection holds, for a path that keeps the
    /// socket beyond this request (drop `Held` when the socket closes).
    pub fn into_parts(self) -> (TcpStream, Held) {
        (self.stream, self.held)
    }

    /// Resolves when the client closes its side (or the socket fails);
    /// never when it merely sends more (a pipelined request, read after
    /// the answer).
    pub async fn client_gone(&self) {
        peer_closed(&self.stream).await
    }
}

/// Resolves when the peer of `stream` closes its side (or the socket
/// fails); never when it merely sends more.
pub async fn peer_closed(stream: &TcpStream) {
    let mut byte = [0u8; 1];
    match stream.peek(&mut byte).await {
        Ok(0) | Err(_) => {}
        Ok(_) => std::future::pending().await,
    }
}

/// The front door, built once and run on a listener.
pub struct Gate {
    router: Router,
    paths: Vec<Arc<dyn FastPath>>,
    limits: Limits,
    tls: Option<tls::Tls>,
}

impl Gate {
    /// A gate that sends every request to `router` (through hyper) until
    /// fast paths are added.
    pub fn new(router: Router, limits: Limits) -> Gate {
        Gate {
            router,
            paths: Vec::new(),
            limits,
            tls: None,
        }
    }

    /// Adds a fast path; paths are asked in the order added.
    pub fn fast_path(mut self, path: impl FastPath) -> Gate {
        self.paths.push(Arc::new(path));
        self
    }

    /// Serves every connection over TLS.
    pub fn tls(mut self, tls: tls::Tls) -> Gate {
        self.tls = Some(tls);
        self
    }

    /// Accepts on `listener` until `shutdown` is cancelled, then returns
    /// the [`Drain`] of the connections still open.
    pub async fn run(self, listener: TcpListener, shutdown: CancellationToken) -> Drain {
        // Requests through hyper are counted by the gate's own service
        // (`conn::serve_hyper`), not by a router layer: one count per
        // request whoever answers it, without a boxed middleware future.
        let in_flight = InFlight::new(self.limits.max_in_flight);
        let shared = Arc::new(conn::Shared {
            router: self.router,
            paths: self.paths,
            hyper: conn::hyper_builder(&self.limits),
            limits: self.limits.clone(),
            in_flight,
            tls: self.tls,
            shutdown: shutdown.clone(),
        });
        let graceful = GracefulShutdown::new();
        let permits = Arc::new(Semaphore::new(self.limits.max_connections));
        let per_address = Arc::new(PerAddress::default());
        let reject_slots = Arc::new(Semaphore::new(REJECT_SLOTS));
        let mut last_fd_warning: Option<Instant> = None;

        loop {
            let accepted = tokio::select! {
                biased;
                _ = shutdown.cancelled() => break,
                accepted = listener.accept() => accepted,
            };
            let (stream, peer) = match accepted {
                Ok(pair) => pair,
                Err(err) => {
                    if is_out_of_fds(&err) {
                        if last_fd_warning.is_none_or(|t| t.elapsed() > Duration::from_secs(5)) {
                            tracing::error!(
                                error = %err,
                                "too many open files: raise ulimit -n (or lower --max-connections); \
                                 pausing accept briefly"
                            );
                            last_fd_warning = Some(Instant::now());
                        }
                        metrics::counter!("gate_accept_fd_exhausted_total").increment(1);
                        tokio::time::sleep(FD_BACKOFF).await;
                    } else {
                        // ECONNABORTED and friends: that one client is gone.
                        tracing::debug!(error = %err, "accept failed");
                    }
                    continue;
                }
            };
            let refused = match permits.clone().try_acquire_owned() {
                Err(_) => Err(Refusal::Connections),
                Ok(permit) => match PerAddress::try_open(
                    &per_address,
                    peer.ip(),
                    self.limits.max_connections_per_ip,
                ) {
                    None => Err(Refusal::PerAddress),
                    Some(address) => Ok(Held {
                        _watcher: graceful.watcher(),
                        _permit: permit,
                        _address: address,
                    }),
                },
            };
            let held = match refused {
                Ok(held) => held,
                Err(refusal) => {
                    tracing::debug!(%peer, reason = refusal.label(), "connection refused");
                    refusal.count();
                    if let Ok(slot) = reject_slots.clone().try_acquire_owned() {
                        tokio::spawn(async move {
                            reject(stream, refusal).await;
                            drop(slot);
                        });
                    }
                    continue;
                }
            };
            let _ = stream.set_nodelay(true);
            tokio::spawn(conn::serve(shared.clone(), stream, peer, held));
        }
        Drain { graceful }
    }
}

/// The connections still open when accepting stopped.
pub struct Drain {
    graceful: GracefulShutdown,
}

impl Drain {
    /// Connections still open (hyper's and the fast paths').
    pub fn connections(&self) -> usize {
        self.graceful.count()
    }

    /// Waits for every connection to finish, at most `timeout`: since the
    /// shutdown token was cancelled, hyper's close after their answer,
    /// upgraded ones (WebSockets) when their handler lets go of the
    /// socket, and fast paths see [`Conn::closing`] and the token. `true`
    /// if all finished in time; the rest are the caller's to abandon.
    pub async fn finish(self, timeout: Duration) -> bool {
        tokio::time::timeout(timeout, self.graceful.shutdown())
            .await
            .is_ok()
    }
}

fn is_out_of_fds(err: &std::io::Error) -> bool {
    // EMFILE (process limit) = 24, ENFILE (system limit) = 23 on Linux.
    matches!(err.raw_os_error(), Some(23) | Some(24))
}

/// Tells a refused client why, then closes.
async fn reject(stream: TcpStream, refusal: Refusal) {
    answer_and_close(stream, &refusal.to_bytes()).await;
}

/// Writes a last answer and closes. What the client sent after is read
/// (briefly, at most a second) before closing, so the kernel does not reset
/// the connection under the client's feet before it reads the answer.
pub(crate) async fn answer_and_close(mut stream: TcpStream, answer: &[u8]) {
    let _ = tokio::time::timeout(Duration::from_secs(1), async {
        stream.write_all(answer).await?;
        stream.shutdown().await?;
        let mut sink = [0u8; 1024];
        while stream.read(&mut sink).await? > 0 {}
        std::io::Result::Ok(())
    })
    .await;
}
