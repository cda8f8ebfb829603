//! Subscribers that own their socket: the fast path for streaming GETs.
//!
//! A streaming response through hyper costs about twice the CPU per
//! delivery and several KB more per connection than writing to the socket
//! ourselves. So `coop serve` offers each new connection to [`Takeover`]
//! first: it peeks at the first request without consuming it, and if that
//! is a complete HTTP/1.1 `GET /` or `GET /topics/…` head that is not a
//! WebSocket upgrade, the hub parses it, answers the head itself and then
//! writes batches straight to the socket, chunked, one `write` per wake-up.
//! Anything else (publishes, the API, WebSockets, HTTP/2, a head split
//! over several packets) is handed back untouched to hyper and the router,
//! where the same subscription logic runs as a streaming body.
//!
//! Both paths share `server::start_subscriber` (validation, auth, limits,
//! history) and `Subscriber::next_event` (batches, lag, shutdown), so they
//! answer the same bytes; the tests run against both.

use std::collections::HashMap;
use std::net::SocketAddr;

use axum::http::{HeaderMap, HeaderName, HeaderValue};
use bytes::{BufMut, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::error::HubError;
use crate::hub::Hub;
use crate::server::{start_subscriber, DEFAULT_TOPIC};
use crate::subscriber::{heartbeat, lagged_notice, shutdown_notice, Event, Subscriber};

/// Largest request head looked at; longer heads go to hyper.
const PEEK_BYTES: usize = 8 * 1024;

/// Hands streaming subscriptions their own socket. Cheap to clone.
#[derive(Clone)]
pub struct Takeover {
    hub: Hub,
    /// Where subscriber tasks run once their request is parsed; `None`:
    /// on the caller's runtime.
    fanout: Option<tokio::runtime::Handle>,
}

/// A parsed request head.
struct Head {
    path: String,
    query: HashMap<String, String>,
    headers: HeaderMap,
    /// Bytes of the head (consumed from the socket once taken over).
    len: usize,
}

impl Takeover {
    pub fn new(hub: Hub) -> Takeover {
        Takeover { hub, fanout: None }
    }

    /// Runs subscriber tasks on `runtime` (its own threads) rather than on
    /// the runtime that accepts connections and answers publishes.
    ///
    /// Why: with one runtime, a publish arriving while a thousand
    /// subscriber tasks are queued waits behind all of them, so a
    /// closed-loop publisher gets one message in per fan-out round and
    /// every write carries one message. On separate threads the publish
    /// path is scheduled by the OS as soon as a request arrives, messages
    /// pile up in the rings during a round, and each subscriber write
    /// carries many of them.
    pub fn with_fanout_runtime(hub: Hub, runtime: tokio::runtime::Handle) -> Takeover {
        Takeover {
            hub,
            fanout: Some(runtime),
        }
    }

    /// Takes `stream` if its first request is a streaming subscription:
    /// the subscriber then runs in a task of its own (holding `guard`, say
    /// the server's graceful-shutdown watcher and connection permit, until
    /// it ends) and this returns `Ok`. Otherwise gives both back untouched
    /// (nothing consumed) for the HTTP server.
    ///
    /// The subscriber gets a fresh, small task rather than living inside
    /// the caller's connection task, whose state is sized for everything
    /// an HTTP connection may do: that is most of what 10,000 idle
    /// subscribers would otherwise cost.
    pub async fn try_take<G: Send + 'static>(
        &self,
        mut stream: TcpStream,
        peer: SocketAddr,
        guard: G,
    ) -> Result<(), (TcpStream, G)> {
        let mut peek = vec![0u8; PEEK_BYTES];
        let n = match stream.peek(&mut peek).await {
            Ok(n) => n,
            Err(_) => return Err((stream, guard)),
        };
        let Some(head) = parse_head(&peek[..n]) else {
            return Err((stream, guard));
        };
        let spec = if head.path == "/" {
            DEFAULT_TOPIC.to_string()
        } else if let Some(spec) = head.path.strip_prefix("/topics/") {
            percent_decode(spec)
        } else {
            return Err((stream, guard));
        };
        drop(peek);
        // Consume the head we parsed (it is in the kernel buffer already).
        let mut sink = vec![0u8; head.len];
        if stream.read_exact(&mut sink).await.is_err() {
            return Ok(());
        }
        drop(sink);
        let _ = stream.set_nodelay(true);
        // The router checks `Host` and `Origin` in a middleware; this path
        // bypasses the router, so it checks them here.
        let config = self.hub.config();
        let started = match crate::origin::check(
            &config.allowed_hosts,
            &config.cors_origins,
            &axum::http::Method::GET,
            &head.headers,
        ) {
            Ok(()) => start_subscriber(&self.hub, &spec, &head.query, &head.headers).await,
            Err(err) => Err(err),
        };
        drop((head, spec));
        let sub = match started {
            Ok(sub) => sub,
            Err(err) => {
                tracing::debug!(%peer, %err, "direct subscription refused");
                let _ = stream.write_all(&error_response(&err)).await;
                let _ = stream.shutdown().await;
                return Ok(());
            }
        };
        match &self.fanout {
            None => {
                tokio::spawn(async move {
                    run(stream, sub).await;
                    drop(guard);
                });
            }
            Some(rt) => {
                // Move the socket to the fan-out runtime's reactor.
                let Ok(std) = stream.into_std() else {
                    return Ok(());
                };
                rt.spawn(async move {
                    if let Ok(stream) = TcpStream::from_std(std) {
                        run(stream, sub).await;
                    }
                    drop(guard);
                });
            }
        }
        Ok(())
    }
}

/// Writes the response head, then every batch as one chunk in one write.
async fn run(mut stream: TcpStream, mut sub: Subscriber) {
    let format = sub.format();
    let mut buf = BytesMut::with_capacity(512);
    buf.put_slice(b"HTTP/1.1 200 OK\r\ncontent-type: ");
    buf.put_slice(format.content_type().as_bytes());
    buf.put_slice(
        b"\r\ncache-control: no-cache\r\nx-accel-buffering: no\r\n\
          transfer-encoding: chunked\r\nconnection: close\r\n\r\n",
    );
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
            buf.put_slice(b"0\r\n\r\n");
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

/// Appends one HTTP/1.1 chunk whose data `fill` writes. The size line is
/// reserved first with a fixed width (leading zeros are allowed) and
/// patched after, so the data is copied once.
fn chunk(buf: &mut BytesMut, fill: impl FnOnce(&mut BytesMut)) {
    let at = buf.len();
    buf.put_slice(b"00000000\r\n");
    let data = buf.len();
    fill(buf);
    let len = buf.len() - data;
    if len == 0 {
        buf.truncate(at);
        return;
    }
    const HEX: &[u8; 16] = b"0123456789abcdef";
    for (i, byte) in buf[at..at + 8].iter_mut().enumerate() {
        *byte = HEX[(len >> (28 - 4 * i)) & 0xf];
    }
    buf.put_slice(b"\r\n");
}

fn error_response(err: &HubError) -> Vec<u8> {
    let status = err.status();
    let body = format!("{err}\n");
    let mut extra = String::new();
    match err {
        HubError::RateLimited(secs) => extra.push_str(&format!("retry-after: {secs}\r\n")),
        HubError::Unavailable(_) => extra.push_str("retry-after: 1\r\n"),
        HubError::Unauthorized(_) => extra.push_str("www-authenticate: Bearer\r\n"),
        _ => {}
    }
    format!(
        "HTTP/1.1 {} {}\r\ncontent-type: text/plain; charset=utf-8\r\n{extra}content-length: {}\r\nconnection: close\r\n\r\n{body}",
        status.as_u16(),
        status.canonical_reason().unwrap_or(""),
        body.len()
    )
    .into_bytes()
}

/// Parses a complete HTTP/1.1 GET head that is not an upgrade; `None` for
/// anything else (the caller then leaves the connection to hyper).
fn parse_head(bytes: &[u8]) -> Option<Head> {
    let end = bytes.windows(4).position(|w| w == b"\r\n\r\n")?;
    let text = std::str::from_utf8(&bytes[..end]).ok()?;
    let mut lines = text.split("\r\n");
    let mut request = lines.next()?.split(' ');
    let (method, target, version) = (request.next()?, request.next()?, request.next()?);
    // HTTP/1.0 has no chunked encoding: leave it to hyper.
    if method != "GET" || version != "HTTP/1.1" || request.next().is_some() {
        return None;
    }
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let mut headers = HeaderMap::new();
    for line in lines {
        let (name, value) = line.split_once(':')?;
        let name = HeaderName::from_bytes(name.trim().as_bytes()).ok()?;
        let value = HeaderValue::from_str(value.trim()).ok()?;
        headers.append(name, value);
    }
    if headers.contains_key(axum::http::header::UPGRADE) {
        return None;
    }
    let query = query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (percent_decode(k), percent_decode(v))
        })
        .collect();
    Some(Head {
        path: path.to_string(),
        query,
        headers,
        len: end + 4,
    })
}

/// Decodes `%XX` escapes and `+` (as in query strings); invalid escapes
/// stay as they are.
fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' if i + 2 < b.len() => {
                let hex = std::str::from_utf8(&b[i + 1..i + 3]).ok();
                match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                    Some(v) => {
                        out.push(v);
                        i += 3;
                    }
                    None => {
                        out.push(b'%');
                        i += 1;
                    }
                }
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heads_are_parsed_or_left_to_hyper() {
        let h = parse_head(b"GET /topics/a,b?since=5&token=x%2By HTTP/1.1\r\nHost: h\r\nAccept: text/event-stream\r\n\r\n").unwrap();
        assert_eq!(h.path, "/topics/a,b");
        assert_eq!(h.query["since"], "5");
        assert_eq!(h.query["token"], "x+y");
        assert_eq!(h.headers["accept"], "text/event-stream");
        assert!(parse_head(b"POST / HTTP/1.1\r\n\r\n").is_none());
        assert!(
            parse_head(b"GET / HTTP/1.1\r\nHost: h\r\n").is_none(),
            "incomplete"
        );
        assert!(parse_head(b"GET / HTTP/1.1\r\nUpgrade: websocket\r\n\r\n").is_none());
        assert!(parse_head(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n").is_none());
        assert!(parse_head(b"GET / HTTP/1.0\r\n\r\n").is_none());
    }

    #[test]
    fn chunks_have_a_fixed_width_size_line() {
        let mut b = BytesMut::new();
        chunk(&mut b, |b| b.put_slice(b"hello\r\n"));
        chunk(&mut b, |_| {});
        assert_eq!(&b[..], b"00000007\r\nhello\r\n\r\n");
        assert_eq!(percent_decode("a%20b%zz%"), "a b%zz%");
    }
}
