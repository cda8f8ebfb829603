//! One connection's life: read a head, show it to the fast paths, answer
//! or hand the connection (with what was read) to hyper.

use std::convert::Infallible;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::response::IntoResponse;
use axum::Router;
use bytes::{Buf, Bytes, BytesMut};
use http::StatusCode;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite};
use tokio::net::TcpStream;
use tokio::sync::{watch, OwnedSemaphorePermit};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::head::{self, Parsed, H2_PREFACE};
use crate::limits::InFlight;
use crate::wire::Wire;
use crate::{tls, Conn, FastPath, Held, HyperRequest, Limits, Next, Refusal, Reply};

/// What every connection task shares.
pub(crate) struct Shared {
    pub(crate) router: Router,
    pub(crate) paths: Vec<Arc<dyn FastPath>>,
    pub(crate) limits: Limits,
    pub(crate) in_flight: InFlight,
    pub(crate) tls: Option<tls::Tls>,
    pub(crate) shutdown: CancellationToken,
    pub(crate) hyper: auto::Builder<TokioExecutor>,
}

/// hyper's HTTP/1.1 and HTTP/2 settings from the gate's limits.
pub(crate) fn hyper_builder(limits: &Limits) -> auto::Builder<TokioExecutor> {
    let mut hyper = auto::Builder::new(TokioExecutor::new());
    hyper
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .max_buf_size(limits.max_header_bytes.max(8192));
    hyper
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(limits.h2_max_streams);
    hyper
}

/// Serves one accepted connection to its end.
pub(crate) async fn serve(shared: Arc<Shared>, stream: TcpStream, peer: SocketAddr, held: Held) {
    if let Some(tls) = &shared.tls {
        // Boxed: the TLS state is large and only this connection needs it.
        return Box::pin(serve_tls(tls.clone(), shared.clone(), stream, peer, held)).await;
    }
    let mut conn = Conn {
        stream,
        peer,
        held,
        shutdown: shared.shutdown.clone(),
    };
    // Bytes read and not yet answered: empty (and unallocated) between
    // requests, more only while a head arrives or when a client pipelines.
    let mut buf = BytesMut::new();
    // Set once a request on this connection was HTTP/1.x: it stays so.
    let mut http1 = false;
    loop {
        let deadline = Instant::now() + shared.limits.header_timeout;
        let claimed = loop {
            match head::parse(&buf) {
                Parsed::Complete(head) => {
                    http1 = true;
                    break shared
                        .paths
                        .iter()
                        .find_map(|path| path.claim(&head, peer))
                        .map(|answer| (head.len, answer));
                }
                Parsed::Invalid => break None,
                Parsed::Partial if buf.len() >= shared.limits.max_header_bytes => break None,
                Parsed::Partial => {}
            }
            // Idle between requests (or before the first): shutting down
            // closes the connection; a head on its way is waited for.
            let idle = buf.is_empty();
            let read = tokio::select! {
                read = read_more(&conn.stream, &mut buf, deadline) => read,
                _ = shared.shutdown.cancelled(), if idle => return,
            };
            match read {
                Ok(0) | Err(_) => {
                    if !buf.is_empty() {
                        tracing::debug!(%peer, "closed: request head not complete within the header timeout");
                    }
                    return;
                }
                Ok(_) => {}
            }
        };

        let Some((len, answer)) = claimed else {
            break;
        };
        let Some(permit) = shared.in_flight.try_start() else {
            crate::answer_and_close(conn.stream, &Refusal::InFlight.to_bytes()).await;
            return;
        };
        buf.advance(len);
        if buf.is_empty() {
            // Free the read buffer before a possibly long answer.
            buf = BytesMut::new();
        }
        conn = match answer(conn).await {
            Next::KeepAlive(conn) => conn,
            Next::Done => return,
        };
        drop(permit);
        if conn.closing() {
            return;
        }
    }

    // Not for a fast path: hyper serves the rest of the connection,
    // reading what was already read first.
    if http1 && could_be_preface(&buf) {
        // A connection that started as HTTP/1.1 does not become HTTP/2.
        let answer = crate::write::error(
            StatusCode::BAD_REQUEST,
            "An HTTP/2 preface on a connection that started as HTTP/1.1.",
            &[],
        );
        crate::answer_and_close(conn.stream, &answer).await;
        return;
    }
    let Conn { stream, held, .. } = conn;
    // Not HTTP/1.x, and its first bytes are the preface: h2c.
    let h2 = !http1 && could_be_preface(&buf);
    let mut io = Wire::new(buf.freeze(), stream, shared.limits.write_timeout);
    if h2 {
        io.coalesce();
    }
    // Boxed, so that connections answered by a fast path do not carry the
    // size of hyper's connection state.
    Box::pin(serve_hyper(&shared, io, peer, held)).await;
}

/// Whether `buf` is (the start of) the HTTP/2 connection preface.
fn could_be_preface(buf: &[u8]) -> bool {
    let n = buf.len().min(H2_PREFACE.len());
    n > 0 && buf[..n] == H2_PREFACE[..n]
}

/// Reads what arrives into `buf`, waiting at most until `deadline`;
/// `Ok(0)` at the end of the stream or the deadline. Nothing is allocated
/// until there are bytes to read, so a connection waiting for a request
/// holds no buffer.
async fn read_more(stream: &TcpStream, buf: &mut BytesMut, deadline: Instant) -> io::Result<usize> {
    loop {
        match tokio::time::timeout_at(deadline, stream.readable()).await {
            Err(_) => return Ok(0),
            Ok(ready) => ready?,
        }
        if buf.capacity() - buf.len() < 1024 {
            buf.reserve(4096);
        }
        match stream.try_read_buf(buf) {
            Ok(n) => return Ok(n),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
            Err(e) => return Err(e),
        }
    }
}

async fn serve_tls(
    tls: tls::Tls,
    shared: Arc<Shared>,
    stream: TcpStream,
    peer: SocketAddr,
    held: Held,
) {
    // The handshake is part of the head: the handshake and the first bytes
    // of a request share the header timeout.
    let deadline = Instant::now() + shared.limits.header_timeout;
    let accepted = tokio::select! {
        accepted = tokio::time::timeout_at(deadline, tls.acceptor().accept(stream)) => accepted,
        _ = shared.shutdown.cancelled() => return,
    };
    let mut stream = match accepted {
        Ok(Ok(stream)) => stream,
        Ok(Err(err)) => {
            tracing::debug!(%peer, error = %err, "TLS handshake failed");
            metrics::counter!("gate_tls_handshake_failed_total").increment(1);
            return;
        }
        Err(_) => {
            tracing::debug!(%peer, "closed: no TLS handshake within the header timeout");
            return;
        }
    };
    // hyper reads the first bytes (to tell HTTP/1.1 from HTTP/2) without
    // a timeout of its own: a client silent after its handshake would hold
    // the connection for good. They are read here, under the deadline, and
    // handed to hyper first.
    let mut first = BytesMut::with_capacity(4096);
    let read = tokio::select! {
        read = tokio::time::timeout_at(deadline, stream.read_buf(&mut first)) => read,
        _ = shared.shutdown.cancelled() => return,
    };
    match read {
        Ok(Ok(n)) if n > 0 => {}
        Ok(_) => return,
        Err(_) => {
            tracing::debug!(%peer, "closed: no request within the header timeout after the TLS handshake");
            return;
        }
    }
    let h2 = stream.get_ref().1.alpn_protocol() == Some(b"h2");
    let mut io = Wire::new(first.freeze(), stream, shared.limits.write_timeout);
    if h2 {
        io.coalesce();
    }
    serve_hyper(&shared, io, peer, held).await;
}

/// hyper's HTTP/1.1 (with upgrades) or HTTP/2 on `io`, under the drain
/// and the header timeout.
///
/// The header timeout is also how long hyper's connection may go without
/// a request being answered. hyper's HTTP/1.1 has that timer itself; its
/// HTTP/2 has none, so without this an h2c client could send the start of
/// the preface and then trickle (or send nothing), or keep a connection
/// with no stream open, for ever.
async fn serve_hyper<I>(shared: &Arc<Shared>, mut io: Wire<I>, peer: SocketAddr, held: Held)
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    // The socket carries the connection's place under the limits and in
    // the drain: an upgraded connection (a WebSocket) outlives hyper's
    // connection future, and keeps its place until it closes.
    io.hold(held);
    let io = TokioIo::new(io);
    let activity = Activity::new();
    let service = {
        let shared = shared.clone();
        let activity = activity.clone();
        tower::service_fn(move |req: HyperRequest| {
            let active = activity.start();
            let (permit, reply) = dispatch(&shared, req, peer);
            async move {
                let resp = reply.await;
                // Counted until the answer's head is ready, as on the
                // fast paths (a streaming body holds a connection instead).
                drop(permit);
                Ok::<_, Infallible>(resp.map(|body| Counted {
                    body,
                    _active: active,
                }))
            }
        })
    };
    let conn = shared
        .hyper
        .serve_connection_with_upgrades(io, TowerToHyperService::new(service))
        .into_owned();
    let mut conn = std::pin::pin!(conn);
    let timeout = shared.limits.header_timeout;
    let mut idle = std::pin::pin!(activity.idle_for(timeout));
    let mut idled = false;
    let mut draining = false;
    let ended = loop {
        tokio::select! {
            ended = conn.as_mut() => break ended,
            _ = shared.shutdown.cancelled(), if !draining => {
                draining = true;
                conn.as_mut().graceful_shutdown();
            }
            _ = idle.as_mut() => {
                if idled {
                    // Still idle a header timeout after being asked to
                    // close: an HTTP/2 client that never acknowledges the
                    // GOAWAY's PING, or never finished its handshake.
                    tracing::debug!(%peer, "closed: idle past the header timeout");
                    return;
                }
                idled = true;
                conn.as_mut().graceful_shutdown();
                idle.set(activity.idle_for(timeout));
            }
        }
    };
    if let Err(err) = ended {
        tracing::debug!(%peer, error = %err, "connection ended with an error");
    }
}

/// One request through hyper: its place under `--max-in-flight` (none:
/// the `503` is its answer), then its answer from the first fast path that
/// claims it (HTTP/2 only) or from the router.
fn dispatch(
    shared: &Shared,
    mut req: HyperRequest,
    peer: SocketAddr,
) -> (Option<OwnedSemaphorePermit>, Reply) {
    let Some(permit) = shared.in_flight.try_start() else {
        let refused = Refusal::InFlight.into_response();
        return (None, Box::pin(std::future::ready(refused)));
    };
    if req.version() == http::Version::HTTP_2 {
        for path in &shared.paths {
            match path.claim_h2(req) {
                Ok(reply) => return (Some(permit), reply),
                Err(back) => req = back,
            }
        }
    }
    // The peer address as `ConnectInfo`, for per-client limits (the hub's
    // publish rate).
    req.extensions_mut()
        .insert(axum::extract::ConnectInfo(peer));
    host_from_authority(&mut req);
    let routed = tower::ServiceExt::oneshot(shared.router.clone(), req);
    let reply = async move {
        match routed.await {
            Ok(resp) => resp,
            Err(never) => match never {},
        }
    };
    (Some(permit), Box::pin(reply))
}

/// Requests being answered on one hyper connection: each counts from the
/// call of the service to the end of its answer's body.
#[derive(Clone)]
struct Activity(Arc<watch::Sender<usize>>);

/// One request counted in its connection's [`Activity`].
struct Active(Arc<watch::Sender<usize>>);

impl Activity {
    fn new() -> Activity {
        Activity(Arc::new(watch::Sender::new(0)))
    }

    /// Counts a request. Only the change from idle to busy is announced:
    /// [`Activity::idle_for`] waits for zero and then for any change, so
    /// waking the connection's task for every request would be work for
    /// nothing (100,000 streams on one server are 200,000 wake-ups).
    fn start(&self) -> Active {
        self.0.send_if_modified(|n| {
            *n += 1;
            *n == 1
        });
        Active(self.0.clone())
    }

    /// Resolves once no request has been answered for `timeout` in a row.
    async fn idle_for(&self, timeout: Duration) {
        let mut rx = self.0.subscribe();
        loop {
            // The sender lives as long as `self`: these never fail.
            let _ = rx.wait_for(|active| *active == 0).await;
            if tokio::time::timeout(timeout, rx.changed()).await.is_err() {
                return;
            }
        }
    }
}

impl Drop for Active {
    fn drop(&mut self) {
        // Announced only when the connection becomes idle (see `start`).
        self.0.send_if_modified(|n| {
            *n -= 1;
            *n == 0
        });
    }
}

/// An answer's body, counted as activity until hyper drops it (sent, or
/// abandoned).
struct Counted {
    body: axum::body::Body,
    _active: Active,
}

impl hyper::body::Body for Counted {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<hyper::body::Frame<Bytes>, axum::Error>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.body.size_hint()
    }
}

/// An HTTP/2 request names its server in `:authority` (hyper puts it in
/// the URI), not in `Host`, which browsers leave out: the router gets it as
/// `Host` all the same, as an HTTP/1.1 request would carry it, so that
/// checks reading `Host` (the hub's Host and Origin checks) see every
/// request alike whatever its protocol.
fn host_from_authority<B>(req: &mut http::Request<B>) {
    if req.version() != http::Version::HTTP_2 || req.headers().contains_key(http::header::HOST) {
        return;
    }
    let host = req
        .uri()
        .authority()
        .and_then(|a| http::HeaderValue::from_str(a.as_str()).ok());
    if let Some(host) = host {
        req.headers_mut().insert(http::header::HOST, host);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TIMEOUT: Duration = Duration::from_secs(10);

    /// Whether `idle` has resolved once the clock has moved `by`.
    async fn resolved_after<F: std::future::Future>(idle: Pin<&mut F>, by: Duration) -> bool {
        tokio::time::timeout(by, idle).await.is_ok()
    }

    /// Only the changes to and from zero are announced: a connection with
    /// requests still being answered is never idle, however many started
    /// and ended meanwhile, and one whose last answer ended is idle a
    /// whole timeout later.
    #[tokio::test(start_paused = true)]
    async fn a_connection_is_idle_a_timeout_after_its_last_answer_only() {
        let activity = Activity::new();
        let a = activity.start();
        let b = activity.start();
        let mut idle = std::pin::pin!(activity.idle_for(TIMEOUT));
        assert!(!resolved_after(idle.as_mut(), TIMEOUT * 3).await);
        drop(a);
        let c = activity.start();
        drop(b);
        assert!(!resolved_after(idle.as_mut(), TIMEOUT * 3).await);
        drop(c);
        assert!(!resolved_after(idle.as_mut(), TIMEOUT / 2).await);
        // A request within the timeout starts the count again.
        drop(activity.start());
        assert!(!resolved_after(idle.as_mut(), TIMEOUT * 3 / 4).await);
        assert!(resolved_after(idle.as_mut(), TIMEOUT / 2).await);
    }
}
