//! The farm's fast path (`animals::Direct`) behind the gate, attacked over
//! real sockets: its answers are hyper's, byte for byte (but the date);
//! it keeps a connection open no longer than the header timeout; it
//! answers pipelined and fragmented heads; it never lets a connection turn
//! into HTTP/2.
//!
//! To be sure the fast path answered, most tests serve it in front of an
//! empty router: a request it did not claim would get hyper's bare `404`.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use animals::{Catalog, Config, Farm};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

use crate::support::{farm_via_hyper, farm_with, Raw};

/// The longest a test waits for an answer or a close (each takes
/// milliseconds; the machine is loaded).
const WAIT: Duration = Duration::from_secs(10);

/// The fast path alone: the gate with `Direct` and an empty router.
fn fast_path_only(config: Config, limits: gate::Limits) -> SocketAddr {
    let farm = Farm::new(Catalog::builtin(), config);
    let direct = animals::Direct::new(farm, CancellationToken::new());
    let listener = gate::listen("127.0.0.1:0".parse().unwrap()).unwrap();
    let addr = listener.local_addr().unwrap();
    let gate = gate::Gate::new(axum::Router::new(), limits).fast_path(direct);
    tokio::spawn(gate.run(listener, CancellationToken::new()));
    addr
}

fn no_delay() -> Config {
    Config {
        delay: Duration::ZERO,
        ..Config::default()
    }
}

/// A raw HTTP/1.1 connection that reads answers one at a time.
struct Wire {
    stream: TcpStream,
    buf: Vec<u8>,
}

impl Wire {
    async fn connect(addr: SocketAddr) -> Wire {
        let stream = TcpStream::connect(addr).await.unwrap();
        stream.set_nodelay(true).unwrap();
        Wire {
            stream,
            buf: Vec::new(),
        }
    }

    async fn send(&mut self, bytes: impl AsRef<[u8]>) {
        self.stream.write_all(bytes.as_ref()).await.unwrap();
    }

    /// Reads one answer (a body by `content-length`, none when
    /// `head_only`).
    async fn answer(&mut self, head_only: bool) -> Raw {
        tokio::time::timeout(WAIT, async {
            loop {
                if let Some(raw) = self.take(head_only) {
                    return raw;
                }
                let mut chunk = [0u8; 4096];
                let n = self.stream.read(&mut chunk).await.unwrap();
                assert!(
                    n > 0,
                    "closed before a whole answer: {:?}",
                    String::from_utf8_lossy(&self.buf)
                );
                self.buf.extend_from_slice(&chunk[..n]);
            }
        })
        .await
        .expect("a whole answer in time")
    }

    fn take(&mut self, head_only: bool) -> Option<Raw> {
        let end = self.buf.windows(4).position(|w| w == b"\r\n\r\n")? + 4;
        let head = std::str::from_utf8(&self.buf[..end - 4]).unwrap();
        let mut lines = head.split("\r\n");
        let status = lines.next().unwrap().split(' ').nth(1).unwrap();
        let status = status.parse().unwrap();
        let headers: Vec<(String, String)> = lines
            .map(|l| {
                let (n, v) = l.split_once(':').unwrap();
                (n.trim().to_ascii_lowercase(), v.trim().to_string())
            })
            .collect();
        let len = match head_only {
            true => 0,
            false => headers
                .iter()
                .find(|(n, _)| n == "content-length")
                .map_or(0, |(_, v)| v.parse().unwrap()),
        };
        if self.buf.len() < end + len {
            return None;
        }
        let body = self.buf[end..end + len].to_vec();
        self.buf.drain(..end + len);
        Some(Raw {
            status,
            headers,
            body,
        })
    }

    /// Reads until the server closes, within `within`; returns how long
    /// that took and what came before the close.
    async fn closed_within(&mut self, within: Duration) -> (Duration, Vec<u8>) {
        let start = Instant::now();
        let mut rest = std::mem::take(&mut self.buf);
        tokio::time::timeout(within, async {
            let mut chunk = [0u8; 4096];
            loop {
                match self.stream.read(&mut chunk).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => rest.extend_from_slice(&chunk[..n]),
                }
            }
        })
        .await
        .unwrap_or_else(|_| panic!("the connection was still open after {within:?}"));
        (start.elapsed(), rest)
    }
}

/// The answer without its `date` (the one header that may differ).
fn without_date(raw: &Raw) -> (u16, Vec<(String, String)>, Vec<u8>) {
    let headers = raw
        .headers
        .iter()
        .filter(|(n, _)| n != "date")
        .cloned()
        .collect();
    (raw.status, headers, raw.body.clone())
}

/// Sends each case to both, on one kept-alive connection each, then each
/// on a connection of its own with `Connection: close`, and compares.
async fn assert_same_answers(config: Config, cases: &[(&str, &str, &str)]) {
    let fast = fast_path_only(config.clone(), gate::Limits::default());
    let hyper = farm_via_hyper(config).await;
    for close in ["", "Connection: close\r\n"] {
        let mut on_fast = Wire::connect(fast).await;
        let mut on_hyper = Wire::connect(hyper).await;
        for (method, target, extra) in cases {
            let request = format!("{method} {target} HTTP/1.1\r\nHost: farm\r\n{extra}{close}\r\n");
            if !close.is_empty() {
                on_fast = Wire::connect(fast).await;
                on_hyper = Wire::connect(hyper).await;
            }
            on_fast.send(&request).await;
            on_hyper.send(&request).await;
            let head_only = *method == "HEAD";
            let a = on_fast.answer(head_only).await;
            let b = on_hyper.answer(head_only).await;
            assert!(a.header("date").is_some(), "{a:?}");
            assert_eq!(without_date(&a), without_date(&b), "{request:?}");
            if head_only {
                // Nothing follows a HEAD answer on either path.
                assert!(on_fast.buf.is_empty() && on_hyper.buf.is_empty());
            }
        }
    }
}

#[tokio::test]
async fn the_fast_path_and_hyper_answer_the_same_bytes_but_the_date() {
    let json = "Accept: application/json\r\n";
    let cases = [
        ("GET", "/animals/cow", ""),
        ("GET", "/animals/cow?delay=0", json),
        ("GET", "/animals//cow/", ""),
        ("GET", "/animals/unicorn", ""),
        ("GET", "/animals/unicorn", json),
        ("GET", "/animals/c%20w", ""),
        ("GET", "/animals/c%20w", json),
        ("GET", "/animals/pig?delay=soon", ""),
        ("HEAD", "/animals/cow", ""),
        ("HEAD", "/animals/unicorn", json),
        ("GET", "/animals", ""),
        ("GET", "/animals", json),
        ("HEAD", "/animals", ""),
    ];
    assert_same_answers(no_delay(), &cases).await;

    // The farm's injected `503` (with `Retry-After`).
    let busy = Config {
        error_rate: 1.0,
        retry_after_secs: 7,
        ..no_delay()
    };
    let cases = [("GET", "/animals/cow", ""), ("GET", "/animals/cow", json)];
    assert_same_answers(busy, &cases).await;
}

#[tokio::test]
async fn pipelined_and_fragmented_heads_are_answered_by_the_fast_path() {
    let fast = fast_path_only(no_delay(), gate::Limits::default());
    // Two requests in one write: two answers, in order.
    let mut w = Wire::connect(fast).await;
    w.send(
        "GET /animals/cow HTTP/1.1\r\nHost: farm\r\n\r\n\
         GET /animals/pig HTTP/1.1\r\nHost: farm\r\n\r\n",
    )
    .await;
    let a = w.answer(false).await;
    let b = w.answer(false).await;
    assert_eq!((a.status, a.text()), (200, "Moo!"));
    assert_eq!((b.status, b.text()), (200, "Oink!"));

    // A head in pieces (its own segments: the attack's pace, not a wait
    // for a state), on the same kept-alive connection.
    let head = "GET /animals/duck HTTP/1.1\r\nHost: farm\r\nAccept: application/json\r\n\r\n";
    let mut from = 0;
    for to in [5, 20, 29, head.len() - 1, head.len()] {
        w.send(&head.as_bytes()[from..to]).await;
        from = to;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let c = w.answer(false).await;
    assert_eq!(
        (c.status, c.text()),
        (200, r#"{"animal":"duck","sound":"Quack!"}"#)
    );
}

#[tokio::test]
async fn an_idle_fast_path_connection_is_closed_at_the_header_timeout() {
    let header_timeout = Duration::from_millis(300);
    let fast = fast_path_only(
        no_delay(),
        gate::Limits {
            header_timeout,
            ..gate::Limits::default()
        },
    );
    let mut w = Wire::connect(fast).await;
    w.send("GET /animals/cow HTTP/1.1\r\nHost: farm\r\n\r\n")
        .await;
    let a = w.answer(false).await;
    assert_eq!(
        (a.status, a.text(), a.header("connection")),
        (200, "Moo!", None)
    );
    let (took, rest) = w.closed_within(Duration::from_secs(5)).await;
    assert!(rest.is_empty(), "{:?}", String::from_utf8_lossy(&rest));
    assert!(took >= header_timeout / 2, "closed after {took:?}");

    // And a connection that never sends a byte.
    let mut w = Wire::connect(fast).await;
    let (took, rest) = w.closed_within(Duration::from_secs(5)).await;
    assert!(rest.is_empty(), "{:?}", String::from_utf8_lossy(&rest));
    assert!(took >= header_timeout / 2, "closed after {took:?}");
}

#[tokio::test]
async fn an_h2_preface_after_a_fast_path_answer_gets_400_and_a_close() {
    let addr = farm_with(no_delay()).await;
    let mut w = Wire::connect(addr).await;
    w.send("GET /animals/cow?delay=0 HTTP/1.1\r\nHost: farm\r\n\r\n")
        .await;
    let a = w.answer(false).await;
    assert_eq!((a.status, a.text()), (200, "Moo!"));
    w.send(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n").await;
    let (_, rest) = w.closed_within(WAIT).await;
    let text = String::from_utf8_lossy(&rest);
    // An HTTP/1.1 answer, never the server's HTTP/2 SETTINGS frame.
    assert!(text.starts_with("HTTP/1.1 400 Bad Request\r\n"), "{text:?}");
    assert!(text.contains("\r\nconnection: close\r\n"), "{text:?}");
    assert!(
        text.ends_with("\r\n\r\nAn HTTP/2 preface on a connection that started as HTTP/1.1.\n"),
        "{text:?}"
    );
}
