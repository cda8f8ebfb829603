//! Abuse suite, time: what a client can make the real `coop serve` wait
//! for is bounded. A subscriber that stops reading is dropped after
//! `--write-timeout`; a publisher that dribbles its body gets `408` after
//! `--body-timeout`.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use crate::support::{subscribers, wait_subscribers, wait_until, Server};

#[test]
fn a_subscriber_that_stops_reading_is_dropped_after_the_write_timeout() {
    // HTTP/1.1: the hub's fast path writes to the socket itself.
    stalled_subscriber_is_dropped("GET /topics/t HTTP/1.1\r\nhost: 127.0.0.1\r\n\r\n");
}

#[test]
fn a_subscriber_through_hyper_that_stops_reading_is_dropped_too() {
    // HTTP/1.0 is served by hyper (a close-delimited stream): the gate's
    // write timeout on hyper's connections drops it.
    stalled_subscriber_is_dropped("GET /topics/t HTTP/1.0\r\nhost: 127.0.0.1\r\n\r\n");
}

#[test]
fn a_websocket_subscriber_that_stops_reading_is_dropped_too() {
    // The upgrade is answered by the fast path, which then writes frames
    // to the socket itself: a blocked write ends it as for a stream.
    stalled_subscriber_is_dropped(
        "GET /topics/t HTTP/1.1\r\nhost: 127.0.0.1\r\nupgrade: websocket\r\n\
         connection: upgrade\r\nsec-websocket-version: 13\r\n\
         sec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
    );
}

fn stalled_subscriber_is_dropped(request: &str) {
    let server = Server::start(&["--delay", "0s", "--write-timeout", "1s"]);
    let mut stalled = TcpStream::connect(server.addr).unwrap();
    stalled.write_all(request.as_bytes()).unwrap();
    wait_subscribers(&server.url(""), 1);
    // Publish until the kernel buffers are full and a write blocks; then
    // the hub must let go of it within the timeout (plus wide slack).
    let http = reqwest::blocking::Client::new();
    let body = "w".repeat(64 * 1024);
    let mut published = 0;
    while published < 1_000 && subscribers(&server.url("")) != Some(0) {
        let resp = http
            .post(server.url("/topics/t"))
            .body(body.clone())
            .send()
            .unwrap();
        assert_eq!(resp.status(), 200);
        published += 1;
    }
    wait_until(
        Duration::from_secs(60),
        "the hub to drop a subscriber that never reads",
        || subscribers(&server.url("")) == Some(0),
    );
    drop(stalled);
}

#[test]
fn a_publisher_that_dribbles_its_body_gets_408() {
    let server = Server::start(&["--delay", "0s", "--body-timeout", "1s"]);
    let mut s = TcpStream::connect(server.addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    s.write_all(
        b"POST /topics/t HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-length: 100\r\n\r\nonly ten..",
    )
    .unwrap();
    let started = Instant::now();
    let mut answer = Vec::new();
    let mut buf = [0u8; 1024];
    while !String::from_utf8_lossy(&answer).contains("\r\n\r\n") {
        let n = s.read(&mut buf).expect("an answer before the read timeout");
        assert!(n > 0, "closed without an answer");
        answer.extend_from_slice(&buf[..n]);
    }
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(started.elapsed() < Duration::from_secs(15));
}
