//! Subscribers that own their socket: the fast path for streaming GETs
//! and WebSocket upgrades.
//!
//! A streaming response through hyper costs about twice the CPU per
//! delivery and several KB more per connection than writing to the socket
//! ourselves; a WebSocket through hyper and tungstenite costs more still
//! (an upgraded connection's buffers, a frame codec, a copy per message
//! into each socket's write buffer). So [`Takeover`] is a
//! [`gate::FastPath`]: the gate parses each request head once and shows it
//! here; a plain HTTP/1.1 `GET /` or `GET /topics/…`, or the same with a
//! valid WebSocket upgrade, is claimed, the subscription opened, the head
//! answered here (`200` and a chunked body, or `101`), and then batches
//! are written straight to the socket, one `write` per wake-up, by a task
//! that owns the socket: chunks of the shared encodings, or one text frame
//! per message (`transport/websocket.rs`). Anything else (publishes, the
//! API, HTTP/1.0, HTTP/2, TLS, an upgrade asking for another `?format=`)
//! goes on to hyper and the router, where the same subscription logic runs
//! as a streaming body or through tungstenite (`server.rs::run_websocket`).
//!
//! Both paths share `server::start_subscriber` (validation, auth, limits,
//! history), `Subscriber::next_event` (batches, lag, shutdown),
//! `subscriber::websocket_close` (how a WebSocket ends) and
//! `HubError::to_bytes` / `into_response` (one rendering of an error), so
//! they answer the same; the tests run against both.
//!
//! A WebSocket client must wait for the `101` before it sends frames (RFC
//! 6455 §4.1): bytes that arrived with the handshake are not read here.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::http::{HeaderMap, StatusCode};
use bytes::{BufMut, BytesMut};
use gate::write::{chunk, LAST_CHUNK};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::hub::Hub;
use crate::server::{choose_format, start_subscriber, DEFAULT_TOPIC};
use crate::subscriber::{
    heartbeat, lagged_notice, shutdown_notice, websocket_close, Event, Subscriber,
};
use crate::transport::websocket::{self as ws, Flow};
use crate::transport::Format;

/// Hands streaming subscriptions their own socket. Cheap to clone.
#[derive(Clone)]
pub struct Takeover {
    hub: Hub,
    /// Where subscriber tasks run once their request is parsed; `None`:
    /// on the caller's runtime.
    delivery: Option<Arc<DeliveryThreads>>,
}

/// The threads subscriber tasks run on (`--fanout-threads`), owned by the
/// [`Takeover`] that spawns onto them and stopped when the last clone of
/// it is dropped.
struct DeliveryThreads(Option<tokio::runtime::Runtime>);

impl Drop for DeliveryThreads {
    fn drop(&mut self) {
        if let Some(runtime) = self.0.take() {
            // Without waiting: this may run inside another runtime.
            runtime.shutdown_background();
        }
    }
}

/// What the subscription needs of its request head, copied out of it.
struct Request {
    spec: String,
    query: HashMap<String, String>,
    headers: HeaderMap,
    /// `Sec-WebSocket-Key` of a WebSocket upgrade; `None` for a stream.
    websocket: Option<String>,
}

impl Takeover {
    pub fn new(hub: Hub) -> Takeover {
        Takeover {
            hub,
            delivery: None,
        }
    }

    /// Runs subscriber tasks on `threads` threads of their own rather than
    /// on the runtime that accepts connections and answers publishes.
    ///
    /// Why: with one runtime, a publish arriving while a thousand
    /// subscriber tasks are queued waits behind all of them, so a
    /// closed-loop publisher gets one message in per fan-out round and
    /// every write carries one message. On separate threads the publish
    /// path is scheduled by the OS as soon as a request arrives, messages
    /// pile up in the rings during a round, and each subscriber write
    /// carries many of them.
    pub fn with_threads(hub: Hub, threads: usize) -> std::io::Result<Takeover> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads.max(1))
            .thread_name("coop-delivery")
            .enable_all()
            .build()?;
        Ok(Takeover {
            hub,
            delivery: Some(Arc::new(DeliveryThreads(Some(runtime)))),
        })
    }

    /// Opens the subscription and, if it is allowed, moves the socket to
    /// a task of its own (holding the connection's place in the gate's
    /// limits and drain until it ends).
    ///
    /// The subscriber gets a fresh, small task rather than living inside
    /// the gate's connection task: that is most of what 10,000 idle
    /// subscribers would otherwise cost.
    async fn take(self, mut conn: gate::Conn, request: Request) -> gate::Next {
        let peer = conn.peer();
        // The router checks `Host` and `Origin` in a middleware; this path
        // bypasses the router, so it checks them here (for an upgrade,
        // `Origin` too: the headers carry the `Upgrade`).
        let config = self.hub.config();
        let format = request.websocket.as_ref().map(|_| Format::WebSocket);
        let started = match crate::origin::check(
            &config.allowed_hosts,
            &config.cors_origins,
            &axum::http::Method::GET,
            &request.headers,
        ) {
            Ok(()) => {
                start_subscriber(
                    &self.hub,
                    &request.spec,
                    &request.query,
                    &request.headers,
                    format,
                )
                .await
            }
            Err(err) => Err(err),
        };
        let Request { websocket, .. } = request;
        let sub = match started {
            Ok(sub) => sub,
            Err(err) => {
                tracing::debug!(%peer, %err, "direct subscription refused");
                let _ = conn.stream().write_all(&err.to_bytes()).await;
                let _ = conn.stream().shutdown().await;
                return gate::Next::Done;
            }
        };
        let (stream, held) = conn.into_parts();
        match websocket {
            None => self.spawn(stream, held, sub, Chunked),
            Some(key) => {
                let accept = tungstenite::handshake::derive_accept_key(key.as_bytes());
                self.spawn(stream, held, sub, WebSocket::new(accept))
            }
        }
        gate::Next::Done
    }

    /// Runs `wire` on `stream` in a task of its own, on the delivery
    /// threads if there are some.
    fn spawn<W: Wire>(&self, stream: TcpStream, held: gate::Held, sub: Subscriber, wire: W) {
        match self.delivery.as_ref().and_then(|d| d.0.as_ref()) {
            None => {
                tokio::spawn(async move {
                    serve(stream, sub, wire).await;
                    drop(held);
                });
            }
            Some(rt) => {
                // Move the socket to the delivery threads' reactor.
                let Ok(std) = stream.into_std() else {
                    return;
                };
                rt.spawn(async move {
                    if let Ok(stream) = TcpStream::from_std(std) {
                        serve(stream, sub, wire).await;
                    }
                    drop(held);
                });
            }
        }
    }
}

impl gate::FastPath for Takeover {
    /// Claims a plain HTTP/1.1 `GET /` or `GET /topics/…`, or the same
    /// with a valid WebSocket upgrade ([`websocket_key`]) that asks for no
    /// other `?format=`; everything else goes on to hyper, where the same
    /// subscription logic runs as a streaming body or a WebSocket.
    fn claim(&self, head: &gate::Head<'_>, _peer: SocketAddr) -> Option<gate::Answer> {
        if head.method != "GET" || !head.is_http11() || head.has_body() {
            return None;
        }
        let websocket = if head.is_upgrade() {
            Some(websocket_key(head)?)
        } else {
            None
        };
        let spec = if head.path == "/" {
            DEFAULT_TOPIC.to_string()
        } else {
            // A path that is not UTF-8 once decoded: hyper's side answers
            // it (`400`), as for every other path.
            gate::decode::path(head.path.strip_prefix("/topics/")?)
                .ok()?
                .into_owned()
        };
        let query = head
            .query
            .map(|q| {
                gate::decode::query(q)
                    .map(|(k, v)| (k.into_owned(), v.into_owned()))
                    .collect()
            })
            .unwrap_or_default();
        let headers = head.header_map()?;
        // `?format=` wins over the upgrade (`Format::choose`): an upgrade
        // asking for another format (or an unknown one) is hyper's to
        // answer, as it always was.
        if websocket.is_some() && choose_format(&query, &headers) != Ok(Format::WebSocket) {
            return None;
        }
        let takeover = self.clone();
        let request = Request {
            spec,
            query,
            headers,
            websocket,
        };
        Some(Box::new(move |conn| Box::pin(takeover.take(conn, request))))
    }
}

/// The `Sec-WebSocket-Key` of a WebSocket upgrade this path answers:
/// `Upgrade: websocket`, `Connection` naming `upgrade`,
/// `Sec-WebSocket-Version: 13`, and a key that is 16 bytes in base64. Any
/// other upgrade is left to hyper (and axum's answers for bad handshakes).
fn websocket_key(head: &gate::Head<'_>) -> Option<String> {
    let is = |name: &str, value: &str| {
        head.header(name)
            .is_some_and(|v| v.trim_ascii().eq_ignore_ascii_case(value.as_bytes()))
    };
    let upgrade_token = head.header("connection").is_some_and(|v| {
        v.split(|&b| b == b',')
            .any(|t| t.trim_ascii().eq_ignore_ascii_case(b"upgrade"))
    });
    if !is("upgrade", "websocket") || !upgrade_token || !is("sec-websocket-version", "13") {
        return None;
    }
    let key = head.header("sec-websocket-key")?.trim_ascii();
    let base64 = |b: &u8| b.is_ascii_alphanumeric() || *b == b'+' || *b == b'/';
    (key.len() == 24 && key[..22].iter().all(base64) && key.ends_with(b"=="))
        .then(|| String::from_utf8_lossy(key).into_owned())
}

/// How a direct subscriber's events become bytes on its socket; the event
/// loop around it ([`serve`]) is the same for every transport.
trait Wire: Send + 'static {
    /// What is written first: the response head and anything before the
    /// first event (SSE's preamble, gap notices).
    fn open(&mut self, sub: &mut Subscriber, buf: &mut BytesMut);
    /// Appends one event's bytes (nothing for a raw heartbeat); `true` when
    /// they are the last.
    fn event(&mut self, sub: &mut Subscriber, event: Event, buf: &mut BytesMut) -> bool;
    /// Bytes the client sent: replies go to `buf`; `true` to end once they
    /// are written.
    fn incoming(&mut self, data: &[u8], buf: &mut BytesMut) -> bool;
}

/// Raw, SSE and NDJSON: a chunked `200`, each batch one chunk.
struct Chunked;

impl Wire for Chunked {
    fn open(&mut self, sub: &mut Subscriber, buf: &mut BytesMut) {
        let format = sub.format();
        gate::write::Head::new(buf, StatusCode::OK)
            .header("content-type", format.content_type())
            .header("cache-control", "no-cache")
            .header("x-accel-buffering", "no")
            .header("transfer-encoding", "chunked")
            .header("connection", "close")
            .end();
        if format.is_sse() {
            chunk(buf, |b| b.put_slice(crate::transport::sse::PREAMBLE));
        }
        if let Some(notices) = sub.take_notices() {
            chunk(buf, |b| b.put_slice(&notices));
        }
    }

    fn event(&mut self, sub: &mut Subscriber, event: Event, buf: &mut BytesMut) -> bool {
        let format = sub.format();
        let last = match event {
            Event::Batch => {
                chunk(buf, |b| sub.fill_frame(b));
                false
            }
            Event::Heartbeat => {
                chunk(buf, |b| b.put_slice(&heartbeat(format)));
                false
            }
            Event::Lagged(lag) => {
                if let Some(n) = lagged_notice(format, lag, &sub.interrupted_why()) {
                    chunk(buf, |b| b.put_slice(&n));
                }
                true
            }
            Event::Shutdown => {
                if let Some(n) = shutdown_notice(format, sub.retry_ms()) {
                    chunk(buf, |b| b.put_slice(&n));
                }
                true
            }
            Event::Idle => true,
        };
        if last {
            buf.put_slice(LAST_CHUNK);
        }
        last
    }

    /// The client has nothing to send: whatever comes is dropped.
    fn incoming(&mut self, _data: &[u8], _buf: &mut BytesMut) -> bool {
        false
    }
}

/// A WebSocket after its `101`: a text frame per message, a ping per
/// heartbeat, a close at the end, and the client's frames read by
/// [`ws::Reader`].
struct WebSocket {
    /// `Sec-WebSocket-Accept`, until the `101` is written.
    accept: String,
    reader: ws::Reader,
}

impl WebSocket {
    fn new(accept: String) -> WebSocket {
        WebSocket {
            accept,
            reader: ws::Reader::default(),
        }
    }
}

impl Wire for WebSocket {
    fn open(&mut self, sub: &mut Subscriber, buf: &mut BytesMut) {
        let accept = std::mem::take(&mut self.accept);
        gate::write::Head::new(buf, StatusCode::SWITCHING_PROTOCOLS)
            .header("connection", "upgrade")
            .header("upgrade", "websocket")
            .header("sec-websocket-accept", accept)
            .end();
        // Gap notices: one text frame per record, as through hyper.
        if let Some(notices) = sub.take_notices() {
            for line in notices.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
                ws::put_text(buf, line);
            }
        }
    }

    fn event(&mut self, sub: &mut Subscriber, event: Event, buf: &mut BytesMut) -> bool {
        match event {
            Event::Batch => {
                // The shared NDJSON bytes without their `\n`, each behind
                // a frame header: one copy per message into this write.
                sub.fill_with(buf, ws::HEADER_MAX, |buf, json| {
                    ws::put_text(buf, json.strip_suffix(b"\n").unwrap_or(json));
                });
                false
            }
            Event::Heartbeat => {
                buf.put_slice(ws::PING);
                false
            }
            ending => {
                if let Some((code, reason)) = websocket_close(&ending, &sub.interrupted_why()) {
                    ws::put_close(buf, code, &reason);
                }
                true
            }
        }
    }

    fn incoming(&mut self, data: &[u8], buf: &mut BytesMut) -> bool {
        self.reader.feed(data, buf) == Flow::End
    }
}

/// The event loop of a direct subscriber: writes what `wire` opens with,
/// then each event's bytes in one write, and answers what the client
/// sends, until the last bytes, the client leaving, or a write blocked
/// past `--write-timeout`.
///
/// Each event is encoded into the delivery thread's scratch buffer and
/// written at once with a non-blocking `write`: in the usual case the
/// socket takes it all, and the write costs neither an allocation nor a
/// timer. Only what the socket does not take (its buffer is full) is
/// copied into a buffer of this subscriber's own and written under
/// `--write-timeout`. An idle subscriber holds no buffer at all, which is
/// what keeps 10,000 of them small.
async fn serve(mut stream: TcpStream, mut sub: Subscriber, mut wire: impl Wire) {
    let write_timeout = sub.write_timeout();
    let mut buf = BytesMut::with_capacity(512);
    wire.open(&mut sub, &mut buf);
    let opened = tokio::time::timeout(write_timeout, stream.write_all(&buf)).await;
    if !matches!(opened, Ok(Ok(()))) {
        return;
    }
    drop(buf);
    let (mut rd, mut wr) = stream.split();
    let mut scratch = [0u8; 256];
    loop {
        let next = tokio::select! {
            event = sub.next_event() => Next::Event(event),
            // EOF or an error means the client left.
            read = rd.read(&mut scratch) => match read {
                Ok(0) | Err(_) => return,
                Ok(n) => Next::Incoming(n),
            },
        };
        let (last, written) = SCRATCH.with_borrow_mut(|buf| {
            buf.clear();
            let last = match next {
                Next::Event(event) => wire.event(&mut sub, event, buf),
                Next::Incoming(n) => wire.incoming(&scratch[..n], buf),
            };
            let written = if buf.is_empty() {
                Written::All
            } else {
                match wr.as_ref().try_write(buf) {
                    Ok(n) if n == buf.len() => Written::All,
                    Ok(n) => Written::Rest(BytesMut::from(&buf[n..])),
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                        Written::Rest(BytesMut::from(&buf[..]))
                    }
                    Err(_) => Written::Failed,
                }
            };
            if buf.capacity() > SCRATCH_KEEP {
                *buf = BytesMut::new();
            }
            (last, written)
        });
        let ok = match written {
            Written::All => true,
            Written::Failed => false,
            // A client that stops reading fills its socket buffer and then
            // blocks this write: past `--write-timeout` it is dropped, and
            // so is the batch it held.
            Written::Rest(rest) => matches!(
                tokio::time::timeout(write_timeout, wr.write_all(&rest)).await,
                Ok(Ok(()))
            ),
        };
        if !ok || last {
            let _ = wr.shutdown().await;
            return;
        }
    }
}

/// What woke a direct subscriber.
enum Next {
    Event(Event),
    /// This many bytes from the client, in the read buffer.
    Incoming(usize),
}

/// How the non-blocking write of an event went.
enum Written {
    All,
    /// What the socket did not take.
    Rest(BytesMut),
    Failed,
}

/// Largest scratch buffer a delivery thread keeps between events (a batch
/// is at most `FRAME_BYTES` and its framing).
const SCRATCH_KEEP: usize = 128 * 1024;

thread_local! {
    /// Where a delivery thread encodes the event it is about to write.
    static SCRATCH: std::cell::RefCell<BytesMut> = std::cell::RefCell::new(BytesMut::new());
}
