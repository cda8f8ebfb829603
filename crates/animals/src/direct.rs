//! The farm's fast path: plain `GET /animals/...` requests answered straight
//! from the socket, without hyper.
//!
//! Why: the Animals API is mostly waiting. A request held through its
//! delay by hyper costs about 16 KB, most of it the two 8 KiB buffers that
//! hyper gives every HTTP/1 connection up front; 15,000 held requests are
//! then 330 MB. Here a held request costs its task, its timer and the
//! socket: the buffer that reads the request head lives only while the head
//! is parsed. At `--delay 0` the same loop also skips hyper's and the
//! router's per-request work.
//!
//! How: `coop serve` offers every new connection to [`Direct::serve`]
//! first. A complete HTTP/1.1 `GET` or `HEAD` for `/animals` or
//! `/animals/{name}`, with no body and no upgrade, is answered here,
//! through the same `decide` as the axum handler, so both paths send the
//! same status, headers and body and count the same metrics. Anything else
//! (another route, another method, HTTP/1.0 or HTTP/2, a head split over
//! several packets or longer than [`PEEK_BYTES`]) goes back to the caller
//! with the bytes already read ([`Served::Other`]), even in the middle of a
//! keep-alive connection, and hyper serves the rest of that connection
//! through [`Rewound`].
//!
//! The first request is only peeked at until it is known to be ours, so a
//! connection handed back at once has nothing consumed (the hub's own fast
//! path peeks at it next). After that, requests are read straight into a
//! buffer: one `recv` per request, as hyper does.
//!
//! A client that goes away during the delay cancels its request, as with
//! hyper: the timer is dropped and the cancellation is counted.
//!
//! A request whose answer fault injection made anything but "the sound
//! after a delay" (a status, a paced body, a fault: [`crate::faults`]) is
//! written by [`crate::faults::wire`] on this same socket; this path only
//! hands it over. With nothing configured, no such answer is ever drawn.

use std::cell::RefCell;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime};

use axum::body::Bytes;
use bytes::{Buf, BytesMut};
use http::StatusCode;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

use crate::faults::wire::{self, After};
use crate::server::{accepts_json, decide, welcome_body, Answer, Failure, Farm, FarmInner, Track};

/// Largest request head answered here; longer heads go to hyper.
pub const PEEK_BYTES: usize = 4 * 1024;

/// Headers looked at in a request head; more go to hyper.
const MAX_HEADERS: usize = 32;

/// A keep-alive connection idle this long between requests is closed.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// Answers the Animals API's simple requests on sockets it is handed.
/// Cheap to clone.
#[derive(Clone)]
pub struct Direct {
    farm: Farm,
    shutdown: CancellationToken,
}

/// What `Direct::serve` left of a connection.
pub enum Served {
    /// The connection is finished (closed, idle, shut down or broken).
    Done,
    /// The next request is not for this path. The bytes are what was
    /// already read of it (empty if nothing was): serve the connection
    /// through [`Rewound`] so they are read again.
    Other(TcpStream, Bytes),
}

/// A request head, borrowed from the bytes it was parsed from.
struct Head<'a> {
    /// Bytes of the head.
    len: usize,
    path: &'a str,
    query: Option<&'a str>,
    welcome: bool,
    head_only: bool,
    json: bool,
    close: bool,
}

enum Parsed<'a> {
    Ours(Head<'a>),
    /// Not a complete head yet.
    Partial,
    /// A request for someone else (or not one this path handles).
    Other,
}

/// One request to answer: its head's flags and what to send.
struct Request {
    welcome: bool,
    head_only: bool,
    json: bool,
    close: bool,
    /// The sound and its delay, or the error to send at once. `None` for
    /// the welcome route.
    plan: Option<Result<Answer, Failure>>,
}

impl Direct {
    /// `shutdown`: when cancelled, idle connections close and busy ones
    /// close after their answer (`connection: close`).
    pub fn new(farm: Farm, shutdown: CancellationToken) -> Direct {
        Direct { farm, shutdown }
    }

    /// Serves requests from `stream` while they are for this path. Call it
    /// once the first byte of the connection has arrived.
    pub async fn serve(&self, mut stream: TcpStream) -> Served {
        let farm = &*self.farm.inner;
        // Peek at the first request: if it is not ours, hand the
        // connection back untouched.
        {
            let mut buf = vec![0u8; PEEK_BYTES];
            let n = match stream.peek(&mut buf).await {
                Ok(0) | Err(_) => return Served::Done,
                Ok(n) => n,
            };
            if !matches!(parse_head(&buf[..n]), Parsed::Ours(_)) {
                return Served::Other(stream, Bytes::new());
            }
        }
        // Bytes read and not yet answered: usually empty between requests
        // (and then without an allocation), more only when a client
        // pipelines.
        let mut pending = BytesMut::new();
        let mut first = true;
        loop {
            let (len, request) = match parse_head(&pending) {
                Parsed::Ours(head) => (head.len, plan(farm, head)),
                Parsed::Other => return Served::Other(stream, pending.freeze()),
                Parsed::Partial if !pending.is_empty() => {
                    // The rest of a head split over packets: hyper reads
                    // it, under its header timeout.
                    return Served::Other(stream, pending.freeze());
                }
                Parsed::Partial => {
                    if !first && !self.next_request_arrives(&stream).await {
                        return Served::Done;
                    }
                    first = false;
                    pending.reserve(PEEK_BYTES);
                    match stream.read_buf(&mut pending).await {
                        Ok(0) | Err(_) => return Served::Done,
                        Ok(_) => continue,
                    }
                }
            };
            pending.advance(len);
            if pending.is_empty() {
                // Free the read buffer before a possibly long delay.
                pending = BytesMut::new();
            }

            let route = if request.welcome {
                &farm.welcome
            } else {
                &farm.animal
            };
            let track = Track::start(farm, route);
            let (status, body, retry_after) = match request.plan {
                None => (StatusCode::OK, welcome_body(farm, request.json), false),
                Some(Err(failure)) => (failure.status, failure.body, failure.retry_after),
                Some(Ok(Answer::Faulty(faulty))) => {
                    let close = request.close || self.shutdown.is_cancelled();
                    let after = wire::answer(
                        &mut stream,
                        &faulty,
                        request.head_only,
                        close,
                        farm.config.max_delay,
                    )
                    .await;
                    // A fault that killed the connection still answered
                    // (that was the answer asked for): count it.
                    track.answered_with(faulty.outcome.status);
                    farm.direct.increment(1);
                    match after {
                        After::KeepAlive => continue,
                        // Dropping the stream closes it (with `RST` when
                        // a reset was armed).
                        After::Closed => return Served::Done,
                    }
                }
                Some(Ok(Answer::Sound(body, delay))) => {
                    if !delay.is_zero() {
                        tokio::select! {
                            _ = tokio::time::sleep(delay) => {}
                            // The client went away: dropping `track`
                            // counts the cancellation.
                            _ = closed(&stream) => return Served::Done,
                        }
                    }
                    (StatusCode::OK, body, false)
                }
            };

            let close = request.close || self.shutdown.is_cancelled();
            let response = render(
                status,
                request.json,
                retry_after.then_some(farm.config.retry_after_secs),
                close,
                &body,
                request.head_only,
            );
            if stream.write_all(&response).await.is_err() {
                return Served::Done;
            }
            track.answered_with(status);
            farm.direct.increment(1);
            if close {
                let _ = stream.shutdown().await;
                return Served::Done;
            }
        }
    }

    /// Waits for the next request on a keep-alive connection: `false` when
    /// the client stays idle too long or the server shuts down.
    async fn next_request_arrives(&self, stream: &TcpStream) -> bool {
        tokio::select! {
            ready = tokio::time::timeout(IDLE_TIMEOUT, stream.readable()) => {
                matches!(ready, Ok(Ok(())))
            }
            _ = self.shutdown.cancelled() => false,
        }
    }
}

/// Resolves when the client closes its side (or the socket fails); never
/// when it merely sends more (a pipelined request, read after the answer).
pub(crate) async fn closed(stream: &TcpStream) {
    let mut byte = [0u8; 1];
    match stream.peek(&mut byte).await {
        Ok(0) | Err(_) => {}
        Ok(_) => std::future::pending().await,
    }
}

/// Decides what to answer to a parsed head.
fn plan(farm: &FarmInner, head: Head<'_>) -> Request {
    let plan = (!head.welcome).then(|| decide(farm, head.path, head.query, head.json));
    Request {
        welcome: head.welcome,
        head_only: head.head_only,
        json: head.json,
        close: head.close,
        plan,
    }
}

/// Parses the request head at the start of `bytes`, if it is one for this
/// path.
fn parse_head(bytes: &[u8]) -> Parsed<'_> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    let len = match req.parse(bytes) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => return Parsed::Partial,
        Err(_) => return Parsed::Other,
    };
    let (Some(method), Some(1), Some(target)) = (req.method, req.version, req.path) else {
        return Parsed::Other;
    };
    let head_only = match method {
        "GET" => false,
        "HEAD" => true,
        _ => return Parsed::Other,
    };
    let mut json = false;
    let mut close = false;
    for header in req.headers.iter() {
        let name = header.name;
        if name.eq_ignore_ascii_case("accept") {
            json |= accepts_json(Some(header.value));
        } else if name.eq_ignore_ascii_case("connection") {
            close |= header
                .value
                .split(|b| *b == b',')
                .any(|token| token.trim_ascii().eq_ignore_ascii_case(b"close"));
        } else if name.eq_ignore_ascii_case("content-length") {
            if header.value.trim_ascii() != b"0" {
                return Parsed::Other;
            }
        } else if name.eq_ignore_ascii_case("transfer-encoding")
            || name.eq_ignore_ascii_case("upgrade")
            || name.eq_ignore_ascii_case("expect")
        {
            return Parsed::Other;
        }
    }
    let (path, query) = match target.split_once('?') {
        Some((path, query)) => (path, Some(query)),
        None => (target, None),
    };
    let welcome = path == "/animals";
    if !welcome {
        // `/animals/` and `/animals//` are not the animal route: the
        // router's answer (404) comes from hyper's side.
        match path.strip_prefix("/animals/") {
            Some(rest) if !rest.trim_matches('/').is_empty() => {}
            _ => return Parsed::Other,
        }
    }
    Parsed::Ours(Head {
        len,
        path,
        query,
        welcome,
        head_only,
        json,
        close,
    })
}

/// The whole answer: what hyper would send for the same response.
fn render(
    status: StatusCode,
    json: bool,
    retry_after: Option<u32>,
    close: bool,
    body: &[u8],
    head_only: bool,
) -> Vec<u8> {
    let mut out = Vec::with_capacity(192 + body.len());
    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(status.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(status.canonical_reason().unwrap_or("").as_bytes());
    out.extend_from_slice(b"\r\ncontent-type: ");
    out.extend_from_slice(if json {
        b"application/json".as_slice()
    } else {
        b"text/plain; charset=utf-8".as_slice()
    });
    if let Some(secs) = retry_after {
        out.extend_from_slice(format!("\r\nretry-after: {secs}").as_bytes());
    }
    if close {
        out.extend_from_slice(b"\r\nconnection: close");
    }
    out.extend_from_slice(format!("\r\ncontent-length: {}\r\ndate: ", body.len()).as_bytes());
    with_date(|date| out.extend_from_slice(date));
    out.extend_from_slice(b"\r\n\r\n");
    if !head_only {
        out.extend_from_slice(body);
    }
    out
}

/// Calls `f` with the current `Date` header value, formatted at most once
/// a second per thread (as hyper does).
pub(crate) fn with_date<R>(f: impl FnOnce(&[u8]) -> R) -> R {
    thread_local! {
        static DATE: RefCell<(u64, String)> = const { RefCell::new((u64::MAX, String::new())) };
    }
    let now = SystemTime::now();
    let secs = now
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    DATE.with(|cell| {
        let mut cached = cell.borrow_mut();
        if cached.0 != secs {
            *cached = (secs, httpdate::fmt_http_date(now));
        }
        f(cached.1.as_bytes())
    })
}

/// A connection whose first bytes were already read: reads give those
/// bytes first, then the socket's. Writes go straight to the socket.
pub struct Rewound {
    prefix: Bytes,
    stream: TcpStream,
}

impl Rewound {
    pub fn new(prefix: Bytes, stream: TcpStream) -> Rewound {
        Rewound { prefix, stream }
    }
}

impl AsyncRead for Rewound {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if !self.prefix.is_empty() {
            let n = self.prefix.len().min(buf.remaining());
            buf.put_slice(&self.prefix[..n]);
            self.prefix.advance(n);
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for Rewound {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Catalog, Config};

    fn farm() -> Farm {
        Farm::new(Catalog::builtin(), Config::default())
    }

    fn parsed(head: &str) -> Option<(usize, Request)> {
        match parse_head(head.as_bytes()) {
            Parsed::Ours(h) => Some((h.len, plan(&farm().inner, h))),
            Parsed::Partial | Parsed::Other => None,
        }
    }

    #[test]
    fn takes_simple_animal_requests() {
        let (len, r) = parsed("GET /animals/cow HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
        assert!(!r.welcome && !r.head_only && !r.json && !r.close);
        assert_eq!(len, 38);
        let Some(Ok(Answer::Sound(body, delay))) = r.plan else {
            panic!("cow should be found")
        };
        assert_eq!(&body[..], b"Moo!");
        assert_eq!(delay, Duration::from_secs(5));

        let (_, r) = parsed("HEAD /animals?x=1 HTTP/1.1\r\nAccept: application/json\r\nConnection: keep-alive, close\r\n\r\n").unwrap();
        assert!(r.welcome && r.head_only && r.json && r.close);

        let (_, r) = parsed("GET /animals//nope HTTP/1.1\r\n\r\n").unwrap();
        let Some(Err(failure)) = r.plan else {
            panic!("nope is unknown")
        };
        assert_eq!(failure.status, StatusCode::NOT_FOUND);
    }

    #[test]
    fn hands_back_everything_else() {
        for head in [
            "GET /animals/cow HTTP/1.1\r\nHost: x\r\n",
            "GET /animals/cow HTTP/1.0\r\n\r\n",
            "POST /animals/cow HTTP/1.1\r\n\r\n",
            "GET /animals/cow HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc",
            "GET /animals/cow HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n",
            "GET /animals/cow HTTP/1.1\r\nUpgrade: websocket\r\n\r\n",
            "GET /animals/ HTTP/1.1\r\n\r\n",
            "GET /animalsx HTTP/1.1\r\n\r\n",
            "GET / HTTP/1.1\r\n\r\n",
            "GET http://x/animals/cow HTTP/1.1\r\n\r\n",
            "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
        ] {
            assert!(parsed(head).is_none(), "{head:?}");
        }
    }

    #[test]
    fn renders_what_hyper_sends() {
        let text = render(
            StatusCode::SERVICE_UNAVAILABLE,
            false,
            Some(1),
            true,
            b"busy",
            false,
        );
        let text = String::from_utf8(text).unwrap();
        assert!(text.starts_with(
            "HTTP/1.1 503 Service Unavailable\r\ncontent-type: text/plain; charset=utf-8\r\nretry-after: 1\r\nconnection: close\r\ncontent-length: 4\r\ndate: "
        ));
        assert!(text.ends_with(" GMT\r\n\r\nbusy"), "{text}");
        let head = render(StatusCode::OK, true, None, false, b"{}", true);
        let head = String::from_utf8(head).unwrap();
        assert!(head.contains("content-type: application/json\r\ncontent-length: 2\r\n"));
        assert!(head.ends_with(" GMT\r\n\r\n"), "{head}");
    }
}
