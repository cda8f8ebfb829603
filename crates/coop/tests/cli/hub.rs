//! End-to-end tests: the hub in the real `coop serve`, `coop pub`/`coop sub`,
//! and the `pubsub` example.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use crate::support::{
    announced_addr, coop, example, metric, output_with_stdin, wait_subscribers, wait_until, Server,
    WAIT,
};

/// Opens a streaming GET by hand and returns the socket after the
/// response head (the body is chunked: read with `read_until_contains`).
fn open_stream(addr: std::net::SocketAddr, path: &str, accept: &str) -> TcpStream {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nhost: 127.0.0.1\r\naccept: {accept}\r\nconnection: close\r\n\r\n"
    )
    .unwrap();
    s
}

/// Reads until `needle` has been seen; returns everything read.
fn read_until_contains(s: &mut TcpStream, needle: &str) -> String {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while !String::from_utf8_lossy(&got).contains(needle) {
        let n = s.read(&mut buf).expect("read within the timeout");
        assert!(
            n > 0,
            "stream ended before {needle:?}: {}",
            String::from_utf8_lossy(&got)
        );
        got.extend_from_slice(&buf[..n]);
    }
    String::from_utf8(got).unwrap()
}

fn post(url: &str) -> (u16, String) {
    let resp = reqwest::blocking::Client::new().post(url).send().unwrap();
    (resp.status().as_u16(), resp.text().unwrap())
}

#[test]
fn the_talks_curl_session_against_coop_serve() {
    let server = Server::start(&[]);
    let mut sub = open_stream(server.addr, "/", "*/*");
    let head = read_until_contains(&mut sub, "\r\n\r\n");
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(head.contains("content-type: text/plain"), "{head}");
    wait_subscribers(&server.url(""), 1);
    assert_eq!(post(&server.url("/?msg=hello")), (200, "ok".into()));
    assert_eq!(post(&server.url("/")), (200, "ok".into()));
    // Chunked framing aside, the body is the talk's: each message + CRLF,
    // the empty message an empty line.
    let mut raw = String::new();
    let mut buf = [0u8; 4096];
    while dechunk(&raw) != "hello\r\n\r\n" {
        let n = sub.read(&mut buf).expect("read within the timeout");
        assert!(n > 0, "stream ended: {raw:?}");
        raw.push_str(std::str::from_utf8(&buf[..n]).unwrap());
    }
    // /metrics counts them (a delivery once its write returns, which may
    // be just after the bytes arrived here).
    let base = server.url("");
    assert_eq!(metric(&base, "hub_publishes_total"), Some(2.0));
    let mut delivered = None;
    wait_until(WAIT, "both deliveries to be counted", || {
        delivered = metric(&base, "hub_deliveries_total");
        delivered >= Some(2.0)
    });
    assert_eq!(delivered, Some(2.0));
    assert_eq!(
        metric(&base, r#"hub_subscribers{transport="raw"}"#),
        Some(1.0)
    );
    let latencies = metric(&base, "hub_publish_to_delivery_duration_seconds_count");
    assert!(latencies >= Some(1.0), "{latencies:?}");
}

/// The body carried by complete chunks of a chunked HTTP/1.1 body.
fn dechunk(mut raw: &str) -> String {
    let mut body = String::new();
    while let Some((size, rest)) = raw.split_once("\r\n") {
        let Ok(size) = usize::from_str_radix(size, 16) else {
            break;
        };
        if rest.len() < size + 2 {
            break;
        }
        body.push_str(&rest[..size]);
        raw = &rest[size + 2..];
    }
    body
}

/// `coop serve` on a given port (support's `Server::start` always passes
/// `--port 0`).
fn start_on_port(port: &str) -> Server {
    let mut child = coop()
        .args(["serve", "--port", port])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let addr = announced_addr(&mut child);
    Server { child, addr }
}

fn spawn_sub(args: &[&str]) -> Child {
    coop()
        .arg("sub")
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

fn wait_output(child: Child) -> (String, String) {
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "coop sub failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    (
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

#[test]
fn coop_pub_and_sub_talk_through_the_hub() {
    let server = Server::start(&[]);
    let base = server.url("");
    let sub = spawn_sub(&[
        "--url", &base, "--topic", "farm.*", "--format", "ndjson", "-n", "3",
    ]);
    wait_subscribers(&base, 1);
    let status = coop()
        .args(["pub", "--url", &base, "--topic", "farm.cow", "moo"])
        .status()
        .unwrap();
    assert!(status.success());
    let ids = output_with_stdin(
        coop().args(["pub", "--url", &base, "--topic", "farm.pig", "--print-id"]),
        b"oink\nsnort\n",
    );
    assert!(ids.status.success());
    let ids: Vec<u64> = String::from_utf8(ids.stdout)
        .unwrap()
        .lines()
        .map(|l| l.parse().unwrap())
        .collect();
    assert_eq!(ids.len(), 2);

    let (out, _) = wait_output(sub);
    let recs: Vec<serde_json::Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let messages: Vec<_> = recs
        .iter()
        .map(|r| r["message"].as_str().unwrap())
        .collect();
    assert_eq!(messages, ["moo", "oink", "snort"]);
    assert_eq!(recs[2]["id"], ids[1]);
    assert_eq!(recs[0]["topic"], "farm.cow");
}

#[test]
fn coop_pub_reports_refusals_and_bad_flags() {
    let server = Server::start(&["--max-message", "4"]);
    let out = coop()
        .args(["pub", "--url", &server.url(""), "too long"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("413"));
    let out = coop()
        .args(["pub", "--topic", "a,b", "x"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let out = coop()
        .args(["sub", "--since", "yesterday"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn coop_sub_resumes_after_a_hub_restart_without_losing_or_repeating() {
    let first = Server::start(&["--heartbeat", "1s"]);
    let port = first.addr.port().to_string();
    let base = first.url("");
    let sub = spawn_sub(&[
        "--url",
        &base,
        "--format",
        "raw",
        "-n",
        "4",
        "--max-backoff",
        "200ms",
    ]);
    let mut sub = sub;
    let lines = stdout_lines(&mut sub);
    let next_line = || {
        lines
            .recv_timeout(WAIT)
            .expect("coop sub printed a line in time")
    };
    wait_subscribers(&base, 1);
    assert_eq!(post(&first.url("/?msg=one")).0, 200);
    assert_eq!(post(&first.url("/?msg=two")).0, 200);
    // Both received before the restart: `coop sub` printed them.
    assert_eq!((next_line(), next_line()), ("one".into(), "two".into()));
    assert!(first.terminate().success(), "graceful exit");

    // A new hub on the same port; messages published before `sub` is back
    // reach it from history, because it resumes after the last id it saw.
    let second = start_on_port(&port);
    assert_eq!(post(&second.url("/?msg=three")).0, 200);
    assert_eq!(post(&second.url("/?msg=four")).0, 200);
    assert_eq!((next_line(), next_line()), ("three".into(), "four".into()));
    let out = sub.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "coop sub failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Nothing repeated after the four (`-n 4` stops it there, and its
    // output ends).
    assert!(
        lines.recv_timeout(WAIT).is_err(),
        "more than four lines printed"
    );
}

/// `child`'s stdout (taken), line by line as it prints them; the receiver
/// disconnects when the output ends.
fn stdout_lines(child: &mut Child) -> std::sync::mpsc::Receiver<String> {
    let out = child.stdout.take().expect("piped stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines() {
            let Ok(line) = line else { return };
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    rx
}

#[test]
fn sse_subscribers_are_told_at_shutdown_and_serve_exits_cleanly() {
    let server = Server::start(&[]);
    let mut sse = open_stream(server.addr, "/topics/news", "text/event-stream");
    read_until_contains(&mut sse, ": hello");
    wait_subscribers(&server.url(""), 1);
    assert!(server.terminate().success());
    let rest = read_until_contains(&mut sse, "event: shutdown");
    assert!(rest.contains("retry: 1000"), "{rest}");
}

#[test]
fn the_pubsub_example_is_the_talks_hub() {
    let mut child = example("pubsub")
        .arg("0")
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let addr = announced_addr(&mut child);
    let mut sub = open_stream(addr, "/", "*/*");
    read_until_contains(&mut sub, "\r\n\r\n");
    // The example has no subscriber count: publish until the first arrives.
    let url = format!("http://{addr}/?msg=hello");
    let deadline = Instant::now() + Duration::from_secs(10);
    sub.set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 1024];
    while !String::from_utf8_lossy(&got).contains("hello\r\n") {
        assert!(Instant::now() < deadline, "no message arrived");
        assert_eq!(post(&url), (200, "ok".into()));
        if let Ok(n) = sub.read(&mut buf) {
            got.extend_from_slice(&buf[..n]);
        }
    }
    let _ = child.kill();
    let _ = child.wait();
}

#[test]
fn coop_serve_limits_the_publish_rate_per_client() {
    let server = Server::start(&["--publish-rate", "0.5", "--publish-burst", "1"]);
    assert_eq!(post(&server.url("/?msg=1")).0, 200);
    let resp = reqwest::blocking::Client::new()
        .post(server.url("/?msg=2"))
        .send()
        .unwrap();
    assert_eq!(resp.status(), 429);
    assert_eq!(resp.headers()["retry-after"], "2");
}
