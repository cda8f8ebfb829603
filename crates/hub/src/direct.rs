//! Subscribers that own their socket: the fast path for streaming GETs.
//!
//! A streaming response through hyper costs about twice the CPU per
//! delivery and several KB more per connection than writing to the socket
//! ourselves. So [`Takeover`] is a [`gate::FastPath`]: the gate parses each
//! request head once and shows it here; a plain HTTP/1.1 `GET /` or
//! `GET /topics/…` that is not a WebSocket upgrade is claimed, the
//! subscription opened, the head answered here, and then batches are
//! written straight to the socket, chunked, one `write` per wake-up, by a
//! task that owns the socket. Anything else (publishes, the API,
//! WebSockets, HTTP/2, TLS) goes on to hyper and the router, where the
//! same subscription logic runs as a streaming body.
//!
//! Both paths share `server::start_subscriber` (validation, auth, limits,
//! history), `Subscriber::next_event` (batches, lag, shutdown) and
//! `HubError::to_bytes` / `into_response` (one rendering of an error), so
//! they answer the same bytes; the tests run against both.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::http::HeaderMap;
use bytes::{BufMut, BytesMut};
use gate::write::{chunk, LAST_CHUNK};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::hub::Hub;
use crate::server::{start_subscriber, DEFAULT_TOPIC};
use crate::subscriber::{heartbeat, lagged_notice, shutdown_notice, Event, Subscriber};

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
        // bypasses the router, so it checks them here.
        let config = self.hub.config();
        let started = match crate::origin::check(
            &config.allowed_hosts,
            &config.cors_origins,
            &axum::http::Method::GET,
            &request.headers,
        ) {
            Ok(()) => {
                start_subscriber(&self.hub, &request.spec, &request.query, &request.headers).await
            }
            Err(err) => Err(err),
        };
        drop(request);
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
        match self.delivery.as_ref().and_then(|d| d.0.as_ref()) {
            None => {
                tokio::spawn(async move {
                    run(stream, sub).await;
                    drop(held);
                });
            }
            Some(rt) => {
                // Move the socket to the delivery threads' reactor.
                let Ok(std) = stream.into_std() else {
                    return gate::Next::Done;
                };
                rt.spawn(async move {
                    if let Ok(stream) = TcpStream::from_std(std) {
                        run(stream, sub).await;
                    }
                    drop(held);
                });
            }
        }
        gate::Next::Done
    }
}

impl gate::FastPath for Takeover {
    /// Claims a plain HTTP/1.1 `GET /` or `GET /topics/…` (not a
    /// WebSocket upgrade); everything else goes on to hyper, where the same
    /// subscription logic runs as a streaming body.
    fn claim(&self, head: &gate::Head<'_>, _peer: SocketAddr) -> Option<gate::Answer> {
        if head.method != "GET" || !head.is_simple() {
            return None;
        }
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
        let takeover = self.clone();
        let request = Request {
            spec,
            query,
            headers,
        };
        Some(Box::new(move |conn| Box::pin(takeover.take(conn, request))))
    }
}

/// Writes the response head, then every batch as one chunk in one write.
async fn run(mut stream: TcpStream, mut sub: Subscriber) {
    let format = sub.format();
    let mut buf = BytesMut::with_capacity(512);
    gate::write::Head::new(&mut buf, axum::http::StatusCode::OK)
        .header("content-type", format.content_type())
        .header("cache-control", "no-cache")
        .header("x-accel-buffering", "no")
        .header("transfer-encoding", "chunked")
        .header("connection", "close")
        .end();
    if format.is_sse() {
        chunk(&mut buf, |b| b.put_slice(crate::transport::sse::PREAMBLE));
    }
    if let Some(notices) = sub.take_notices() {
        chunk(&mut buf, |b| b.put_slice(&notices));
    }
    if stream.write_all(&buf).await.is_err() {
        return;
    }
    let write_timeout = sub.write_timeout();
    let (mut rd, mut wr) = stream.split();
    let mut scratch = [0u8; 256];
    loop {
        // A fresh buffer per write (one allocation per batch): an idle
        // subscriber then holds no buffer at all, which is what keeps
        // 10,000 of them small.
        buf = BytesMut::new();
        let event = tokio::select! {
            event = sub.next_event() => event,
            // The client has nothing to send; EOF or an error means it left.
            read = rd.read(&mut scratch) => match read {
                Ok(0) | Err(_) => return,
                Ok(_) => continue,
            },
        };
        let last = match event {
            Event::Batch => {
                chunk(&mut buf, |b| sub.fill_frame(b));
                false
            }
            Event::Heartbeat => {
                let hb = heartbeat(format);
                if hb.is_empty() {
                    continue;
                }
                chunk(&mut buf, |b| b.put_slice(&hb));
                false
            }
            Event::Lagged(lag) => {
                if let Some(n) = lagged_notice(format, lag) {
                    chunk(&mut buf, |b| b.put_slice(&n));
                }
                true
            }
            Event::Shutdown => {
                if let Some(n) = shutdown_notice(format, sub.retry_ms()) {
                    chunk(&mut buf, |b| b.put_slice(&n));
                }
                true
            }
            Event::Idle => true,
        };
        if last {
            buf.put_slice(LAST_CHUNK);
        }
        // A client that stops reading fills its socket buffer and then
        // blocks this write: past `--write-timeout` it is dropped, and so
        // is the batch it held.
        let wrote = tokio::time::timeout(write_timeout, wr.write_all(&buf)).await;
        if !matches!(wrote, Ok(Ok(()))) || last {
            let _ = wr.shutdown().await;
            return;
        }
    }
}
