//! What a client can make the gate wait for: an idle keep-alive
//! connection, a connection that sends nothing, a head sent a byte at a
//! time. Each is closed at the header timeout.

use std::time::{Duration, Instant};

use gate::Limits;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::support::h2c::{self, H2};
use crate::support::{serve, Wire};

const HEADER_TIMEOUT: Duration = Duration::from_millis(300);

/// Far more than the header timeout, far less than what the attacks
/// below would hold a connection for without one.
const CLOSED_WITHIN: Duration = Duration::from_secs(5);

fn short_header_timeout() -> Limits {
    Limits {
        header_timeout: HEADER_TIMEOUT,
        ..Limits::default()
    }
}

#[tokio::test]
async fn an_idle_keep_alive_connection_is_closed_after_the_header_timeout() {
    let served = serve(short_header_timeout()).await;
    for (target, path) in [("/fast/hello", "fast"), ("/hyper/hello", "hyper")] {
        let mut w = Wire::connect(served.addr).await;
        let r = w.get(target).await;
        assert_eq!((r.status, r.path()), (200, Some(path)), "{r:?}");
        assert_eq!(r.header("connection"), None, "kept alive: {r:?}");
        let (took, rest) = w.closed_within(CLOSED_WITHIN).await;
        assert!(
            rest.is_empty(),
            "{path}: {:?}",
            String::from_utf8_lossy(&rest)
        );
        assert!(took >= HEADER_TIMEOUT / 2, "{path}: closed after {took:?}");
    }
}

#[tokio::test]
async fn a_connection_that_sends_nothing_is_closed_after_the_header_timeout() {
    let served = serve(short_header_timeout()).await;
    let mut w = Wire::connect(served.addr).await;
    let (took, rest) = w.closed_within(CLOSED_WITHIN).await;
    assert!(rest.is_empty(), "{:?}", String::from_utf8_lossy(&rest));
    assert!(took >= HEADER_TIMEOUT / 2, "closed after {took:?}");
}

/// Sends `burst` at once, then `bytes` one every 100 ms (the attack's
/// pace) while reading what comes back; returns how long until the server
/// closed and what it sent.
async fn trickle(addr: std::net::SocketAddr, burst: &[u8], bytes: Vec<u8>) -> (Duration, Vec<u8>) {
    let stream = TcpStream::connect(addr).await.unwrap();
    stream.set_nodelay(true).unwrap();
    let (mut rd, mut wr) = stream.into_split();
    wr.write_all(burst).await.unwrap();
    let pace = Duration::from_millis(100);
    assert!(
        pace * bytes.len() as u32 > CLOSED_WITHIN * 2,
        "the whole trickle must outlast the bound"
    );
    let writer = tokio::spawn(async move {
        let mut tick = tokio::time::interval(pace);
        for b in bytes {
            tick.tick().await;
            if wr.write_all(&[b]).await.is_err() {
                return;
            }
        }
    });
    let start = Instant::now();
    let mut got = Vec::new();
    tokio::time::timeout(CLOSED_WITHIN, async {
        let mut buf = [0u8; 1024];
        loop {
            match rd.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await
    .unwrap_or_else(|_| {
        panic!(
            "a head trickled a byte every {pace:?} was not cut off within {CLOSED_WITHIN:?} \
             (header timeout {HEADER_TIMEOUT:?}); got {:?}",
            String::from_utf8_lossy(&got)
        )
    });
    writer.abort();
    (start.elapsed(), got)
}

#[tokio::test]
async fn a_head_sent_one_byte_every_100ms_is_cut_off_at_the_header_timeout() {
    let served = serve(short_header_timeout()).await;
    for target in ["/fast/hello", "/hyper/hello"] {
        let head = format!(
            "GET {target} HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: slowloris/{}\r\n\r\n",
            "x".repeat(80)
        );
        let (took, got) = trickle(served.addr, b"", head.into_bytes()).await;
        assert!(
            !got.starts_with(b"HTTP/1.1 200"),
            "{target}: {:?}",
            String::from_utf8_lossy(&got)
        );
        assert!(
            took >= HEADER_TIMEOUT / 2,
            "{target}: closed after {took:?}"
        );
    }
}

#[tokio::test]
async fn an_h2c_preface_and_request_sent_one_byte_every_100ms_are_cut_off_at_the_header_timeout() {
    let served = serve(short_header_timeout()).await;
    // The preface's first line at once (no longer an HTTP/1.x head as
    // soon as its version is read), then the rest of the preface, the
    // client's SETTINGS and a request a byte at a time.
    let (burst, rest) = h2c::PREFACE.split_at(16);
    let mut bytes = rest.to_vec();
    bytes.extend(h2c::frame(h2c::SETTINGS, 0, 0, &[]));
    bytes.extend(h2c::get_headers(
        1,
        &format!("/hyper/hello?{}", "x".repeat(80)),
    ));
    let (took, got) = trickle(served.addr, burst, bytes).await;
    // Whatever the server sent (its SETTINGS), never an answer: no
    // HEADERS frame on stream 1.
    let mut rest = &got[..];
    while rest.len() >= 9 {
        let len = u32::from_be_bytes([0, rest[0], rest[1], rest[2]]) as usize;
        assert!(rest[3] != 0x1, "answered: {got:?}");
        rest = &rest[(9 + len).min(rest.len())..];
    }
    assert!(took >= HEADER_TIMEOUT / 2, "closed after {took:?}");
}

/// HTTP/2 keeps no connection open for nothing either: after its last
/// answer (a well-behaved client: it answers the server's PING, so the
/// server's GOAWAY completes) and after a handshake with no request at
/// all (a client that answers nothing).
#[tokio::test]
async fn an_idle_h2_connection_is_closed_after_the_header_timeout() {
    let served = serve(short_header_timeout()).await;
    let h2 = H2::connect(served.addr).await;
    let r = h2.get("/hyper/hello").await;
    assert_eq!((r.status, r.path()), (200, Some("hyper")), "{r:?}");
    let start = Instant::now();
    tokio::time::timeout(CLOSED_WITHIN, h2.conn)
        .await
        .unwrap_or_else(|_| {
            panic!("an idle HTTP/2 connection was still open after {CLOSED_WITHIN:?}")
        })
        .unwrap();
    let took = start.elapsed();
    assert!(took >= HEADER_TIMEOUT / 2, "closed after {took:?}");

    let (mut stream, _) = h2c::raw_handshake(served.addr).await;
    let start = Instant::now();
    tokio::time::timeout(CLOSED_WITHIN, async {
        while let Some(f) = h2c::read_frame(&mut stream).await {
            // SETTINGS' acknowledgement, GOAWAY, PING: never an answer.
            assert_ne!(f.kind, 0x1, "{f:?}");
        }
    })
    .await
    .unwrap_or_else(|_| {
        panic!("an HTTP/2 connection with no request was still open after {CLOSED_WITHIN:?}")
    });
    let took = start.elapsed();
    assert!(took >= HEADER_TIMEOUT / 2, "closed after {took:?}");
}
