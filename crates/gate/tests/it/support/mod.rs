//! A small gate to attack: a router (hyper's side) and a test-only fast
//! path, both able to hold a request until the test releases it, served
//! on 127.0.0.1:0; and a raw HTTP/1.1 client that sees the bytes as they
//! travel.
//!
//! The real fast paths (`animals::Direct`, `hub::Takeover`) depend on
//! `gate`, so they cannot be dev-dependencies here without a cycle: they
//! are attacked in their own crates' tests and in the CLI suite
//! (`crates/coop/tests/cli/abuse_front_door.rs`).
//!
//! [`h2c`]: HTTP/2 with prior knowledge, whole requests and raw frames.

pub mod h2c;

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::ws::WebSocketUpgrade;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use bytes::{Buf, BytesMut};
use gate::{Conn, FastPath, Head, Limits, Next};
use http::StatusCode;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

/// The longest a test waits for a state it needs (the machine is loaded;
/// each wait normally takes milliseconds).
pub const WAIT: Duration = Duration::from_secs(10);

/// Requests held by the test: a held request says it has started, then
/// waits until the test releases it.
#[derive(Clone)]
pub struct Holds {
    entered: Arc<Semaphore>,
    release: Arc<Semaphore>,
}

impl Holds {
    fn new() -> Holds {
        Holds {
            entered: Arc::new(Semaphore::new(0)),
            release: Arc::new(Semaphore::new(0)),
        }
    }

    async fn hold(&self) {
        self.entered.add_permits(1);
        self.release
            .acquire()
            .await
            .expect("release is never closed")
            .forget();
    }

    /// Waits until `n` more held requests have started.
    pub async fn wait_entered(&self, n: u32) {
        tokio::time::timeout(WAIT, self.entered.acquire_many(n))
            .await
            .unwrap_or_else(|_| panic!("{n} held requests did not start within {WAIT:?}"))
            .expect("entered is never closed")
            .forget();
    }

    /// Lets `n` held requests answer.
    pub fn release(&self, n: usize) {
        self.release.add_permits(n);
    }
}

/// A fast path for the tests: claims simple `GET /fast/…` requests and
/// answers `200` with `x-path: fast` and a body naming the target;
/// `/fast/hold…` waits for [`Holds::release`] first. The same over
/// HTTP/2, through hyper but not the router.
pub struct TestPath {
    holds: Holds,
}

impl FastPath for TestPath {
    fn claim(&self, head: &Head<'_>, _peer: SocketAddr) -> Option<gate::Answer> {
        if head.method != "GET" || !head.is_simple() || !head.path.starts_with("/fast/") {
            return None;
        }
        let hold = head.path.starts_with("/fast/hold");
        let body = format!("fast {}\n", head.target);
        let close = head.wants_close();
        let holds = self.holds.clone();
        Some(Box::new(move |mut conn: Conn| {
            Box::pin(async move {
                if hold {
                    holds.hold().await;
                }
                let out = gate::write::response(
                    StatusCode::OK,
                    "text/plain; charset=utf-8",
                    &[("x-path", b"fast")],
                    close,
                    body.as_bytes(),
                    false,
                );
                if conn.stream().write_all(&out).await.is_err() {
                    return Next::Done;
                }
                if close {
                    let _ = conn.stream().shutdown().await;
                    return Next::Done;
                }
                Next::KeepAlive(conn)
            })
        }))
    }

    fn claim_h2(&self, req: gate::HyperRequest) -> Result<gate::Reply, gate::HyperRequest> {
        if req.method() != http::Method::GET || !req.uri().path().starts_with("/fast/") {
            return Err(req);
        }
        let hold = req.uri().path().starts_with("/fast/hold");
        let target = req.uri().path_and_query().map_or("", |p| p.as_str());
        let body = format!("fast {target}\n");
        let holds = self.holds.clone();
        Ok(Box::pin(async move {
            if hold {
                holds.hold().await;
            }
            ([("x-path", "fast")], body).into_response()
        }))
    }
}

/// hyper's side: `/hyper/…` answers `200` with `x-path: hyper` and a body
/// naming the path; `/hyper/hold` waits for [`Holds::release`] first;
/// `/hyper/ws` is a WebSocket that reads until the client leaves.
fn router(holds: Holds) -> Router {
    async fn hello(uri: http::Uri) -> ([(&'static str, &'static str); 1], String) {
        ([("x-path", "hyper")], format!("hyper {uri}\n"))
    }
    Router::new()
        .route("/hyper/hello", get(hello))
        .route(
            "/hyper/hold",
            get(move |uri: http::Uri| async move {
                holds.hold().await;
                hello(uri).await
            }),
        )
        .route(
            "/hyper/ws",
            get(|ws: WebSocketUpgrade| async move {
                ws.on_upgrade(
                    |mut socket| async move { while let Some(Ok(_)) = socket.recv().await {} },
                )
            }),
        )
}

/// The opening of a WebSocket on `/hyper/ws`.
pub const WS_UPGRADE: &str = "GET /hyper/ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n\
    Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
    Sec-WebSocket-Version: 13\r\n\r\n";

/// A gate serving the test router and fast path on 127.0.0.1:0; stopped
/// when dropped.
pub struct Served {
    pub addr: SocketAddr,
    pub holds: Holds,
    stop: CancellationToken,
}

impl Drop for Served {
    fn drop(&mut self) {
        // Release whatever a failed test left held, then stop.
        self.holds.release(1 << 16);
        self.stop.cancel();
    }
}

pub async fn serve(limits: Limits) -> Served {
    let holds = Holds::new();
    let listener = gate::listen("127.0.0.1:0".parse().unwrap()).unwrap();
    let addr = listener.local_addr().unwrap();
    let stop = CancellationToken::new();
    let gate = gate::Gate::new(router(holds.clone()), limits).fast_path(TestPath {
        holds: holds.clone(),
    });
    tokio::spawn(gate.run(listener, stop.clone()));
    Served { addr, holds, stop }
}

/// One answer as read off the wire.
#[derive(Debug)]
pub struct Raw {
    pub status: u16,
    /// Header names lower-cased, in order.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Raw {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn text(&self) -> &str {
        std::str::from_utf8(&self.body).unwrap()
    }

    /// Which side answered (`fast` or `hyper`), from `x-path`.
    pub fn path(&self) -> Option<&str> {
        self.header("x-path")
    }

    /// Asserts this is the gate's `503` for `refusal`.
    pub fn assert_refused(&self, refusal: gate::Refusal) {
        assert_eq!(self.status, 503, "{self:?}");
        assert_eq!(self.header("retry-after"), Some("1"), "{self:?}");
        assert_eq!(self.text(), format!("{}\n", refusal.reason()), "{self:?}");
    }
}

/// A raw HTTP/1.1 client connection.
pub struct Wire {
    pub stream: TcpStream,
    buf: BytesMut,
}

/// `GET {target}` with `Host` and nothing else.
pub fn get_request(target: &str) -> String {
    format!("GET {target} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
}

impl Wire {
    pub async fn connect(addr: SocketAddr) -> Wire {
        let stream = TcpStream::connect(addr).await.unwrap();
        stream.set_nodelay(true).unwrap();
        Wire {
            stream,
            buf: BytesMut::new(),
        }
    }

    /// Connects from `local` (`127.0.0.2`: another client address on the
    /// loopback interface).
    pub async fn connect_from(local: IpAddr, addr: SocketAddr) -> Wire {
        let socket = TcpSocket::new_v4().unwrap();
        socket.bind(SocketAddr::new(local, 0)).unwrap();
        let stream = socket.connect(addr).await.unwrap();
        stream.set_nodelay(true).unwrap();
        Wire {
            stream,
            buf: BytesMut::new(),
        }
    }

    pub async fn send(&mut self, bytes: impl AsRef<[u8]>) {
        self.stream.write_all(bytes.as_ref()).await.unwrap();
    }

    /// Sends `GET {target}` and reads its answer.
    pub async fn get(&mut self, target: &str) -> Raw {
        self.send(get_request(target)).await;
        self.response().await
    }

    /// Reads one answer (its body by `content-length`), within [`WAIT`].
    pub async fn response(&mut self) -> Raw {
        tokio::time::timeout(WAIT, async {
            loop {
                if let Some(raw) = self.parse() {
                    return raw;
                }
                let n = self.stream.read_buf(&mut self.buf).await.unwrap();
                assert!(
                    n > 0,
                    "closed before a whole answer; read {:?}",
                    String::from_utf8_lossy(&self.buf)
                );
            }
        })
        .await
        .unwrap_or_else(|_| panic!("no whole answer within {WAIT:?}"))
    }

    fn parse(&mut self) -> Option<Raw> {
        let mut headers = [httparse::EMPTY_HEADER; 32];
        let mut resp = httparse::Response::new(&mut headers);
        let len = match resp.parse(&self.buf).expect("a valid answer head") {
            httparse::Status::Complete(len) => len,
            httparse::Status::Partial => return None,
        };
        let status = resp.code.unwrap();
        let headers: Vec<(String, String)> = resp
            .headers
            .iter()
            .map(|h| {
                (
                    h.name.to_ascii_lowercase(),
                    String::from_utf8(h.value.to_vec()).unwrap(),
                )
            })
            .collect();
        let body_len = headers
            .iter()
            .find(|(n, _)| n == "content-length")
            .map_or(0, |(_, v)| v.parse().unwrap());
        if self.buf.len() < len + body_len {
            return None;
        }
        self.buf.advance(len);
        let body = self.buf.split_to(body_len).to_vec();
        Some(Raw {
            status,
            headers,
            body,
        })
    }

    /// Reads until the server closes the connection (end of stream or a
    /// reset), within `within`; returns how long that took and what was
    /// read (besides answers already taken).
    pub async fn closed_within(&mut self, within: Duration) -> (Duration, Vec<u8>) {
        let start = Instant::now();
        tokio::time::timeout(within, async {
            loop {
                match self.stream.read_buf(&mut self.buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {}
                }
            }
        })
        .await
        .unwrap_or_else(|_| {
            panic!(
                "the server did not close the connection within {within:?}; read {:?}",
                String::from_utf8_lossy(&self.buf)
            )
        });
        (start.elapsed(), self.buf.split().to_vec())
    }
}

/// Retries `attempt` (a fresh try each time, a few milliseconds apart)
/// until it returns `Some`, failing after [`WAIT`] with `what`.
pub async fn eventually<T, F, Fut>(what: &str, mut attempt: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + WAIT;
    loop {
        if let Some(t) = attempt().await {
            return t;
        }
        assert!(Instant::now() < deadline, "waited {WAIT:?} for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
