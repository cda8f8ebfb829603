//! Abuse suite, the front door (`gate`): the real `coop serve` with its
//! real fast paths (the farm's `Direct`, the hub's `Takeover`), over real
//! sockets.
//!
//! - past `--max-connections-per-ip`, a connection gets `503` with the
//!   per-address reason, counted in `gate_refused_total`; another address
//!   is still served, and a closed connection frees its place;
//! - past `--max-in-flight`, a request gets `503` with the in-flight
//!   reason, on the fast path and through hyper alike, until the held one
//!   ends;
//! - on SIGTERM, a subscriber that stopped reading (its writes blocked)
//!   does not hold the exit past `--drain-timeout`, however long
//!   `--write-timeout` is.

use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::support::{metric, sample, wait_subscribers, wait_until, Server, WAIT};

/// A raw HTTP/1.1 connection that reads answers one at a time.
struct Wire {
    stream: TcpStream,
    buf: Vec<u8>,
}

/// One answer: status, lower-cased headers, body.
#[derive(Debug)]
struct Answer {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

impl Wire {
    fn connect(addr: SocketAddr) -> Wire {
        let stream = TcpStream::connect(addr).unwrap();
        stream.set_read_timeout(Some(WAIT)).unwrap();
        Wire {
            stream,
            buf: Vec::new(),
        }
    }

    fn send(&mut self, request: &str) {
        self.stream.write_all(request.as_bytes()).unwrap();
    }

    /// `GET {target}` (with the `Host` the hub accepts), kept alive.
    fn get(&mut self, target: &str) -> Answer {
        self.send(&format!("GET {target} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"));
        self.answer()
    }

    /// Reads one answer, its body by `content-length`.
    fn answer(&mut self) -> Answer {
        loop {
            if let Some(end) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&self.buf[..end]).to_string();
                let mut lines = head.split("\r\n");
                let status = lines.next().unwrap().split(' ').nth(1).unwrap();
                let headers: Vec<(String, String)> = lines
                    .map(|l| {
                        let (n, v) = l.split_once(':').unwrap();
                        (n.trim().to_ascii_lowercase(), v.trim().to_string())
                    })
                    .collect();
                let len: usize = headers
                    .iter()
                    .find(|(n, _)| n == "content-length")
                    .map_or(0, |(_, v)| v.parse().unwrap());
                if self.buf.len() >= end + 4 + len {
                    let body = String::from_utf8_lossy(&self.buf[end + 4..end + 4 + len]);
                    let answer = Answer {
                        status: status.parse().unwrap(),
                        headers,
                        body: body.to_string(),
                    };
                    self.buf.drain(..end + 4 + len);
                    return answer;
                }
            }
            let mut chunk = [0u8; 4096];
            let n = self.stream.read(&mut chunk).expect("an answer in time");
            assert!(
                n > 0,
                "closed before a whole answer: {:?}",
                String::from_utf8_lossy(&self.buf)
            );
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }

    /// Asserts the server closes the connection (after what was read).
    fn assert_closed(&mut self) {
        let mut chunk = [0u8; 4096];
        match self.stream.read(&mut chunk) {
            Ok(0) => {}
            Ok(n) => panic!(
                "more after the answer: {:?}",
                String::from_utf8_lossy(&chunk[..n])
            ),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
            Err(e) => panic!("not closed within {WAIT:?}: {e}"),
        }
    }
}

/// Asserts `answer` is the gate's `503` with `reason`.
fn assert_refused(answer: &Answer, reason: &str) {
    assert_eq!(answer.status, 503, "{answer:?}");
    assert_eq!(answer.header("retry-after"), Some("1"), "{answer:?}");
    assert_eq!(answer.body, format!("{reason}\n"), "{answer:?}");
}

const PER_IP: &str = "Too many connections from your address (--max-connections-per-ip).";
const IN_FLIGHT: &str =
    "Too many requests in flight: the server is at its limit (--max-in-flight).";

/// A client whose connections come from `local`.
fn client_from(local: IpAddr) -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder()
        .timeout(WAIT)
        .local_address(local)
        .build()
        .unwrap()
}

#[test]
fn past_max_connections_per_ip_a_connection_gets_503_with_the_reason() {
    let server = Server::start(&["--delay", "0s", "--max-connections-per-ip", "2"]);
    // Two connections from 127.0.0.1, answered and kept open: one by the
    // farm's fast path, one by hyper (`/healthz`).
    let mut one = Wire::connect(server.addr);
    let mut two = Wire::connect(server.addr);
    let a = one.get("/animals/cow");
    assert_eq!((a.status, a.body.as_str()), (200, "Moo!"), "{a:?}");
    assert_eq!(two.get("/healthz").status, 200);

    let mut three = Wire::connect(server.addr);
    assert_refused(&three.get("/animals/cow"), PER_IP);
    three.assert_closed();

    // Another address is served, and sees the refusal counted.
    let other = client_from("127.0.0.2".parse().unwrap());
    let page = other
        .get(server.url("/metrics"))
        .send()
        .unwrap()
        .text()
        .unwrap();
    assert_eq!(
        sample(&page, r#"gate_refused_total{reason="per_ip"}"#),
        Some(1.0),
        "{page}"
    );

    // A closed connection frees its place (once the server sees it).
    drop(one);
    wait_until(WAIT, "a place freed by a closed connection", || {
        Wire::connect(server.addr).get("/animals/pig").status == 200
    });
    drop(two);
}

#[test]
fn past_max_in_flight_a_request_gets_503_until_the_held_one_ends() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    // `/metrics` on its own address: not a request under the cap.
    let metrics_addr = format!("127.0.0.1:{port}");
    let server = Server::start(&[
        "--delay",
        "0s",
        "--max-in-flight",
        "1",
        "--metrics-addr",
        &metrics_addr,
    ]);
    let metrics = format!("http://{metrics_addr}/metrics");

    // One animal held by the fast path for far longer than the test.
    let mut held = Wire::connect(server.addr);
    held.send("GET /animals/cow?delay=50s HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n");
    wait_until(WAIT, "the held animal to be in flight", || {
        metric(&metrics, "animals_requests_in_flight") == Some(1.0)
    });

    // The fast path refuses, and closes.
    let mut fast = Wire::connect(server.addr);
    assert_refused(&fast.get("/animals/pig"), IN_FLIGHT);
    fast.assert_closed();
    // hyper refuses too (a route the fast paths leave to it, and an
    // animal over HTTP/1.0).
    let mut hyper = Wire::connect(server.addr);
    assert_refused(&hyper.get("/healthz"), IN_FLIGHT);
    hyper.send("GET /animals/pig HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n");
    assert_refused(&hyper.answer(), IN_FLIGHT);
    wait_until(WAIT, "the refusals to be counted", || {
        metric(&metrics, r#"gate_refused_total{reason="in_flight"}"#) == Some(3.0)
    });

    // The held client leaves: its request ends, the next is served.
    drop(held);
    wait_until(WAIT, "a request served after the held one ended", || {
        Wire::connect(server.addr).get("/animals/pig").status == 200
    });
}

/// One side of a TCP connection as `/proc/net/tcp` shows it: the bytes
/// queued to send and received but unread.
fn tcp_queues(local: u16, remote: u16) -> Option<(u64, u64)> {
    let table = std::fs::read_to_string("/proc/net/tcp").ok()?;
    let port = |addr: &str| u16::from_str_radix(addr.rsplit(':').next()?, 16).ok();
    table.lines().skip(1).find_map(|line| {
        let f: Vec<&str> = line.split_whitespace().collect();
        if port(f[1])? != local || port(f[2])? != remote {
            return None;
        }
        let (tx, rx) = f[4].split_once(':')?;
        Some((
            u64::from_str_radix(tx, 16).ok()?,
            u64::from_str_radix(rx, 16).ok()?,
        ))
    })
}

#[test]
fn the_drain_never_waits_past_the_drain_timeout_for_a_subscriber_that_stopped_reading() {
    let drain_timeout = Duration::from_secs(2);
    let mut server = Server::start(&[
        "--delay",
        "0s",
        "--drain-timeout",
        "2s",
        "--write-timeout",
        "60s",
    ]);
    let base = server.url("");
    // A subscriber on the hub's fast path that never reads.
    let mut stalled = TcpStream::connect(server.addr).unwrap();
    stalled
        .write_all(b"GET /topics/x HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        .unwrap();
    wait_subscribers(&base, 1);

    // Publish until the server's writes to it are stuck: its receive
    // queue full and the server's send queue full, neither moving while
    // more is published.
    let here = stalled.local_addr().unwrap().port();
    let there = server.addr.port();
    let http = reqwest::blocking::Client::builder()
        .timeout(WAIT)
        .build()
        .unwrap();
    let body = "w".repeat(64 * 1024);
    let mut last = None;
    let mut unmoved = 0;
    wait_until(
        Duration::from_secs(60),
        "the subscriber's socket to fill up",
        || {
            let resp = http
                .post(server.url("/topics/x"))
                .body(body.clone())
                .send()
                .unwrap();
            assert_eq!(resp.status(), 200);
            let now = (tcp_queues(there, here), tcp_queues(here, there));
            let filled =
                matches!(now, (Some((sending, _)), Some((_, unread))) if sending > 0 && unread > 0);
            unmoved = if filled && last == Some(now) {
                unmoved + 1
            } else {
                0
            };
            last = Some(now);
            unmoved >= 5
        },
    );
    assert_eq!(crate::support::subscribers(&base), Some(1));

    let started = Instant::now();
    let pid = server.child.id().to_string();
    assert!(Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap()
        .success());
    let bound = drain_timeout + Duration::from_secs(10);
    let mut status = None;
    wait_until(bound, "coop serve to exit after the drain timeout", || {
        status = server.child.try_wait().unwrap();
        status.is_some()
    });
    let took = started.elapsed();
    assert!(status.unwrap().success(), "{status:?}");
    assert!(took < bound, "exited after {took:?}");
    // It did have to cut the drain short (else this test proves nothing):
    // the subscriber's write was still blocked when the signal came.
    assert!(took >= drain_timeout / 2, "exited after {took:?}");
    drop(stalled);
}
