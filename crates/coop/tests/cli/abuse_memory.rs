//! Abuse suite, memory: what hostile clients can make the real `coop serve`
//! hold stays bounded (`--max-memory`, topics per subscription and by
//! subscriptions, WebSocket fragments, history read in pages), and every
//! answer comes within a wide bound. Peak RSS is read from `/proc`.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use crate::support::{wait_subscribers, Server};

const MIB: u64 = 1 << 20;

/// `VmHWM` (peak) and `VmRSS` (now) of a process, in bytes.
fn rss(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let field = |name: &str| -> u64 {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse::<u64>().ok())
            .unwrap_or_else(|| panic!("no {name} in /proc/{pid}/status"))
            * 1024
    };
    (field("VmHWM:"), field("VmRSS:"))
}

fn client() -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

#[test]
fn a_flood_of_64k_publishes_over_distinct_topics_stays_within_the_budget() {
    let budget = 32 * MIB;
    let server = Server::start(&["--max-memory", "32MiB", "--delay", "0s"]);
    let pid = server.child.id();
    let http = client();
    // Warm up the allocator and the connection pool, then take a baseline.
    http.post(server.url("/topics/warm"))
        .body("x")
        .send()
        .unwrap();
    let (_, base) = rss(pid);
    let body = "m".repeat(64 * 1024);
    let started = Instant::now();
    let mut slowest = Duration::ZERO;
    // 2,000 × 64 KiB = 125 MiB offered, four times the budget.
    for i in 0..2_000 {
        let t = Instant::now();
        let resp = http
            .post(server.url(&format!("/topics/flood.{i}")))
            .body(body.clone())
            .send()
            .unwrap();
        assert_eq!(resp.status(), 200, "publish {i}: {}", resp.text().unwrap());
        slowest = slowest.max(t.elapsed());
    }
    let (peak, _) = rss(pid);
    let grew = peak.saturating_sub(base);
    eprintln!(
        "flood: 2000 x 64 KiB in {:?}, slowest {slowest:?}; RSS {} MiB at rest, peak {} MiB (+{} MiB)",
        started.elapsed(),
        base / MIB,
        peak / MIB,
        grew / MIB
    );
    // The budget counts bodies, their encodings and bookkeeping; the
    // allocator's slack and hyper's buffers are the fixed overhead.
    assert!(
        grew <= budget + 48 * MIB,
        "peak RSS grew by {} MiB over a {} MiB budget",
        grew / MIB,
        budget / MIB
    );
    assert!(
        slowest < Duration::from_secs(5),
        "slowest publish {slowest:?}"
    );
    // The newest messages are held, the oldest were evicted.
    let topics: serde_json::Value = http
        .get(server.url("/api/topics"))
        .send()
        .unwrap()
        .json()
        .unwrap();
    let names: Vec<&str> = topics["topics"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|t| t["name"].as_str())
        .collect();
    assert!(names.contains(&"flood.1999"), "the newest is held");
    assert!(!names.contains(&"flood.0"), "the oldest was evicted");
}

#[test]
fn a_subscription_naming_thousands_of_topics_is_refused_at_once() {
    let server = Server::start(&["--delay", "0s"]);
    let pid = server.child.id();
    let (_, base) = rss(pid);
    // The 16 KB request that once created 2,900 live topics.
    let spec: Vec<String> = (0..2_900).map(|i| format!("q{i}")).collect();
    let t = Instant::now();
    let resp = client()
        .get(server.url(&format!("/topics/{}", spec.join(","))))
        .send()
        .unwrap();
    assert_eq!(resp.status(), 400);
    let reason = resp.text().unwrap();
    assert!(reason.contains("at most 64"), "{reason}");
    assert!(t.elapsed() < Duration::from_secs(5));
    let topics: serde_json::Value = client()
        .get(server.url("/api/topics"))
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(topics["topics"].as_array().unwrap().len(), 0, "{topics}");
    let (peak, _) = rss(pid);
    assert!(
        peak - base < 16 * MIB,
        "RSS grew by {} KiB",
        (peak - base) / 1024
    );
}

#[test]
fn websocket_fragments_never_finished_are_cut_off_early() {
    let server = Server::start(&["--delay", "0s"]);
    let pid = server.child.id();
    let (_, base) = rss(pid);
    let mut s = TcpStream::connect(server.addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(
        b"GET /topics/t HTTP/1.1\r\nhost: 127.0.0.1\r\nupgrade: websocket\r\nconnection: upgrade\r\n\
          sec-websocket-version: 13\r\nsec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
    )
    .unwrap();
    let mut head = [0u8; 1024];
    let n = s.read(&mut head).unwrap();
    assert!(String::from_utf8_lossy(&head[..n]).starts_with("HTTP/1.1 101"));
    // Try to send 48 MiB of text fragments (FIN clear), 64 KiB each.
    let mut frame = vec![0x01u8, 0x80 | 127];
    frame.extend_from_slice(&(64u64 * 1024).to_be_bytes());
    frame.extend_from_slice(&[0, 0, 0, 0]);
    frame.extend(std::iter::repeat_n(b'a', 64 * 1024));
    let mut sent = 0u64;
    for i in 0..768 {
        if i == 1 {
            frame[0] = 0x00; // continuation
        }
        if s.write_all(&frame).is_err() {
            break;
        }
        sent += 64 * 1024;
    }
    let mut answer = Vec::new();
    let _ = s.read_to_end(&mut answer);
    assert!(
        sent < 48 * MIB,
        "the hub read all {} MiB of fragments without closing",
        sent / MIB
    );
    assert!(
        answer.len() >= 4 && answer[0] == 0x88 && answer[2..4] == [0x03, 0xf1],
        "close frame with 1009, got {:?}",
        &answer[..answer.len().min(16)]
    );
    let (peak, _) = rss(pid);
    assert!(
        peak - base < 16 * MIB,
        "RSS grew by {} MiB",
        (peak - base) / MIB
    );
}

#[test]
fn resuming_subscribers_that_never_read_do_not_each_copy_the_durable_history() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&["--delay", "0s", "--data-dir", dir.path().to_str().unwrap()]);
    let pid = server.child.id();
    let http = client();
    let body = "h".repeat(64 * 1024);
    // 24 MiB of durable history over 8 topics.
    for i in 0..384 {
        let resp = http
            .post(server.url(&format!("/topics/hist.{}", i % 8)))
            .body(body.clone())
            .send()
            .unwrap();
        assert_eq!(resp.status(), 200);
    }
    let (_, base) = rss(pid);
    // Eight subscribers ask for all of it and never read: loading it whole
    // would hold 8 × 24 MiB.
    let mut stalled = Vec::new();
    for _ in 0..8 {
        let mut s = TcpStream::connect(server.addr).unwrap();
        s.write_all(b"GET /topics/hist.**?since=all HTTP/1.1\r\nhost: 127.0.0.1\r\n\r\n")
            .unwrap();
        stalled.push(s);
    }
    wait_subscribers(&server.url(""), 8);
    // And a reader that does read gets every message.
    let mut reader = TcpStream::connect(server.addr).unwrap();
    reader
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    reader
        .write_all(
            b"GET /topics/hist.**?since=all&format=ndjson HTTP/1.1\r\nhost: 127.0.0.1\r\nconnection: close\r\n\r\n",
        )
        .unwrap();
    let needle = b"\"topic\":\"hist.";
    let mut tail: Vec<u8> = Vec::new();
    let mut buf = vec![0u8; 256 * 1024];
    let mut lines = 0;
    while lines < 384 {
        let n = reader.read(&mut buf).unwrap();
        assert!(n > 0, "stream ended after {lines} messages");
        // Count records as they pass, keeping fewer bytes than the needle
        // between reads so that none is counted twice.
        tail.extend_from_slice(&buf[..n]);
        lines += tail.windows(needle.len()).filter(|w| w == needle).count();
        tail.drain(..tail.len() - (needle.len() - 1));
    }
    assert_eq!(lines, 384);
    let (peak, _) = rss(pid);
    assert!(
        peak.saturating_sub(base) < 64 * MIB,
        "8 stalled resumers grew RSS by {} MiB (whole copies would be 192)",
        peak.saturating_sub(base) / MIB
    );
    drop(stalled);
}

#[test]
fn large_fault_bodies_held_at_once_are_bounded() {
    let server = Server::start(&["--delay", "0s"]);
    let pid = server.child.id();
    let (_, base) = rss(pid);
    // Eight answers of 8 MiB dripped over 30 s each fill the 64 MiB bound.
    let ask = "GET /animals/cow?bytes=8388608&drip=30s HTTP/1.1\r\nhost: 127.0.0.1\r\n\r\n";
    let mut held = Vec::new();
    for _ in 0..8 {
        let mut s = TcpStream::connect(server.addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        s.write_all(ask.as_bytes()).unwrap();
        // The head comes at once and the body drips: it is held from now.
        let mut head = [0u8; 64];
        let n = s.read(&mut head).unwrap();
        assert!(head[..n].starts_with(b"HTTP/1.1 200"), "{:?}", &head[..n]);
        held.push(s);
    }
    // One more is refused at once, with a reason.
    let mut s = TcpStream::connect(server.addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    s.write_all(
        b"GET /animals/cow?bytes=8388608 HTTP/1.1\r\nhost: 127.0.0.1\r\nconnection: close\r\n\r\n",
    )
    .unwrap();
    let mut answer = Vec::new();
    let _ = s.read_to_end(&mut answer);
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    assert!(answer.contains("large bodies in flight"), "{answer}");
    let (peak, _) = rss(pid);
    assert!(
        peak.saturating_sub(base) < 64 * MIB + 48 * MIB,
        "RSS grew by {} MiB",
        peak.saturating_sub(base) / MIB
    );
    drop(held);
}
