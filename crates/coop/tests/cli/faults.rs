//! End-to-end tests: the farm as a fault-injection fixture. Each fault is
//! observed from a raw `std::net::TcpStream` against the real `coop serve`:
//! the bytes that arrive, when they arrive, and how the connection ends
//! (a reset is `ConnectionReset`, a close is EOF). HTTP/2 forms are checked
//! with reqwest over h2c.

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use crate::support::{coop, metric, metrics_page, sample, Server};

/// How a connection ended, and what came before.
#[derive(Debug)]
struct Seen {
    bytes: Vec<u8>,
    /// `None`: EOF. `Some(kind)`: the read failed so.
    error: Option<ErrorKind>,
    /// Reads that returned data: more than one means the body trickled.
    reads: usize,
    /// From the request to the first byte, and to the end.
    first_byte: Option<Duration>,
    end: Duration,
}

impl Seen {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.bytes).into_owned()
    }

    /// The head (up to the blank line) and the body after it.
    fn split(&self) -> (String, Vec<u8>) {
        let at = self
            .bytes
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .unwrap_or_else(|| panic!("no complete head in {:?}", self.text()));
        (
            String::from_utf8_lossy(&self.bytes[..at]).to_lowercase(),
            self.bytes[at + 4..].to_vec(),
        )
    }
}

/// Sends one keep-alive `GET` (the fast path's kind of request) and reads
/// until the server ends the connection, or 20 s pass.
fn fetch(server: &Server, path: &str) -> Seen {
    let mut s = TcpStream::connect(server.addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let start = Instant::now();
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: farm\r\n\r\n").as_bytes())
        .unwrap();
    read_to_end(&mut s, start)
}

fn read_to_end(s: &mut TcpStream, start: Instant) -> Seen {
    let mut seen = Seen {
        bytes: Vec::new(),
        error: None,
        reads: 0,
        first_byte: None,
        end: Duration::ZERO,
    };
    let mut buf = [0u8; 65536];
    loop {
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                seen.first_byte.get_or_insert(start.elapsed());
                seen.bytes.extend_from_slice(&buf[..n]);
                seen.reads += 1;
            }
            Err(e) => {
                seen.error = Some(e.kind());
                break;
            }
        }
    }
    seen.end = start.elapsed();
    seen
}

/// Reads exactly one answer with a `content-length` from a keep-alive
/// connection (for tests that send a second request after it).
fn one_answer(s: &mut TcpStream) -> (String, Vec<u8>) {
    let mut bytes = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let n = s.read(&mut buf).unwrap();
        assert!(n > 0, "closed early: {:?}", String::from_utf8_lossy(&bytes));
        bytes.extend_from_slice(&buf[..n]);
        if let Some(at) = bytes.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&bytes[..at]).to_lowercase();
            let len: usize = header(&head, "content-length").unwrap().parse().unwrap();
            if bytes.len() >= at + 4 + len {
                return (head, bytes[at + 4..at + 4 + len].to_vec());
            }
        }
    }
}

fn header<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.lines()
        .find_map(|l| l.strip_prefix(&format!("{name}: ")))
        .map(str::trim)
}

fn status(head: &str) -> u16 {
    head.split(' ').nth(1).unwrap().parse().unwrap()
}

/// A farm with no delay; `--max-delay 1s` unless `extra` sets it.
fn farm(extra: &[&str]) -> Server {
    let mut args = vec!["--delay", "0s"];
    if !extra.contains(&"--max-delay") {
        args.extend(["--max-delay", "1s"]);
    }
    args.extend_from_slice(extra);
    Server::start(&args)
}

#[test]
fn reset_before_any_byte_is_econnreset() {
    let server = farm(&[]);
    let seen = fetch(&server, "/animals/cow?fault=reset");
    assert_eq!(seen.error, Some(ErrorKind::ConnectionReset), "{seen:?}");
    assert!(seen.bytes.is_empty(), "{seen:?}");
}

#[test]
fn reset_mid_sends_the_head_and_half_the_body_then_resets() {
    let server = farm(&[]);
    let seen = fetch(&server, "/animals/cow?bytes=1000&fault=reset-mid");
    assert_eq!(seen.error, Some(ErrorKind::ConnectionReset), "{seen:?}");
    let (head, body) = seen.split();
    assert_eq!(status(&head), 200);
    assert_eq!(header(&head, "content-length"), Some("1000"));
    assert_eq!(body.len(), 500);
    assert!(body.starts_with(b"Moo!Moo!"));
}

#[test]
fn empty_closes_before_any_byte() {
    let server = farm(&[]);
    let seen = fetch(&server, "/animals/cow?fault=empty");
    assert_eq!(seen.error, None, "a close, not a reset: {seen:?}");
    assert!(seen.bytes.is_empty());
}

#[test]
fn truncate_closes_after_half_the_body() {
    let server = farm(&[]);
    let seen = fetch(&server, "/animals/cow?bytes=1000&fault=truncate");
    assert_eq!(seen.error, None, "{seen:?}");
    let (head, body) = seen.split();
    assert_eq!(header(&head, "content-length"), Some("1000"));
    assert_eq!(body.len(), 500);
}

#[test]
fn bad_length_promises_more_than_it_sends() {
    let server = farm(&[]);
    let seen = fetch(&server, "/animals/cow?bytes=1000&fault=bad-length");
    assert_eq!(seen.error, None, "{seen:?}");
    let (head, body) = seen.split();
    assert_eq!(header(&head, "content-length"), Some("1100"));
    assert_eq!(body.len(), 1000);
}

#[test]
fn bad_chunk_sends_a_chunk_header_that_is_not_hex() {
    let server = farm(&[]);
    let seen = fetch(&server, "/animals/cow?bytes=1000&fault=bad-chunk");
    let (head, body) = seen.split();
    assert_eq!(header(&head, "transfer-encoding"), Some("chunked"));
    assert_eq!(header(&head, "content-length"), None);
    assert!(body.starts_with(b"1f4\r\nMoo!"), "{:?}", &body[..10]);
    assert_eq!(&body[5 + 500..5 + 500 + 6], b"\r\nzz\r\n");
}

#[test]
fn garbage_is_random_bytes_then_a_close_and_a_seed_repeats_them() {
    let server = farm(&[]);
    let a = fetch(&server, "/animals/cow?fault=garbage&seed=5");
    assert_eq!(a.error, None, "{a:?}");
    assert!((64..=512).contains(&a.bytes.len()), "{}", a.bytes.len());
    assert!(!a.bytes.starts_with(b"HTTP/"));
    let b = fetch(&server, "/animals/cow?fault=garbage&seed=5");
    assert_eq!(a.bytes, b.bytes);
    let c = fetch(&server, "/animals/cow?fault=garbage&seed=6");
    assert_ne!(a.bytes, c.bytes);
}

#[test]
fn blackhole_never_answers_and_closes_at_max_delay() {
    let server = farm(&[]); // --max-delay 1s
    let seen = fetch(&server, "/animals/cow?fault=blackhole");
    assert!(seen.bytes.is_empty(), "{seen:?}");
    assert_eq!(seen.error, None);
    assert!(seen.end >= Duration::from_millis(900), "{:?}", seen.end);
    assert!(seen.end < Duration::from_secs(10), "{:?}", seen.end);
}

#[test]
fn slow_close_answers_then_holds_the_connection() {
    let server = farm(&["--max-delay", "5s"]);
    let seen = fetch(&server, "/animals/cow?fault=slow-close&hold=1s");
    let (head, body) = seen.split();
    assert_eq!(status(&head), 200);
    assert_eq!(body, b"Moo!");
    assert!(header(&head, "connection").is_none());
    let answered = seen.first_byte.unwrap();
    assert!(
        seen.end >= answered + Duration::from_millis(900),
        "answered at {answered:?}, closed at {:?}",
        seen.end
    );
    assert!(seen.end < Duration::from_secs(10));
}

#[test]
fn drip_spreads_the_body_over_its_duration() {
    let server = farm(&["--max-delay", "5s"]);
    let seen = fetch_closing(&server, "/animals/cow?bytes=40&drip=1s");
    let (head, body) = seen.split();
    assert_eq!(header(&head, "content-length"), Some("40"));
    assert_eq!(body.len(), 40, "{seen:?}");
    // Spread: a second from the first byte to the last (sleeps never end
    // early, so this holds however loaded the machine), in many reads.
    let first = seen.first_byte.unwrap();
    assert!(
        seen.end >= first + Duration::from_millis(900),
        "first byte at {first:?}, end at {:?}",
        seen.end
    );
    assert!(seen.reads >= 5, "the body came in {} reads", seen.reads);
}

#[test]
fn bandwidth_caps_the_body() {
    let server = farm(&["--max-delay", "5s"]);
    let start = Instant::now();
    let mut s = TcpStream::connect(server.addr).unwrap();
    s.write_all(b"GET /animals/cow?bytes=2000&bandwidth=2000 HTTP/1.1\r\nHost: farm\r\n\r\n")
        .unwrap();
    let (head, body) = one_answer(&mut s);
    let took = start.elapsed();
    assert_eq!(status(&head), 200);
    assert_eq!(body.len(), 2000);
    assert!(took >= Duration::from_millis(900), "{took:?}");
    assert!(took < Duration::from_secs(10), "{took:?}");
    // The connection is still good for the next request.
    s.write_all(b"GET /animals/pig HTTP/1.1\r\nHost: farm\r\n\r\n")
        .unwrap();
    assert_eq!(one_answer(&mut s).1, b"Oink!");
}

#[test]
fn weighted_statuses_carry_retry_after_for_429_and_503() {
    let server = farm(&["--retry-after", "3"]);
    let mut s = TcpStream::connect(server.addr).unwrap();
    for (query, code, retry) in [
        ("status=429", 429, Some("3")),
        ("status=503:1,200:0", 503, Some("3")),
        ("status=500", 500, None),
        ("status=200:0,418:1", 418, None),
    ] {
        s.write_all(format!("GET /animals/cow?{query} HTTP/1.1\r\nHost: farm\r\n\r\n").as_bytes())
            .unwrap();
        let (head, body) = one_answer(&mut s);
        assert_eq!(status(&head), code, "{query}");
        assert_eq!(header(&head, "retry-after"), retry, "{query}");
        assert!(!body.is_empty());
    }
    // The share: 200:0.5,503:0.5 over 100 requests gives both.
    let mut counts = [0usize; 2];
    for _ in 0..100 {
        s.write_all(b"GET /animals/cow?status=200:0.5,503:0.5 HTTP/1.1\r\nHost: farm\r\n\r\n")
            .unwrap();
        let (head, _) = one_answer(&mut s);
        counts[usize::from(status(&head) == 503)] += 1;
    }
    assert!(counts[0] >= 25 && counts[1] >= 25, "{counts:?}");
}

#[test]
fn delay_distributions_are_waited_and_capped() {
    let server = farm(&[]); // --max-delay 1s
    let seen = fetch_one(&server, "/animals/cow?delay=uniform:300ms..400ms");
    assert!(seen >= Duration::from_millis(290), "{seen:?}");
    // A lognormal far above --max-delay is capped by it.
    let seen = fetch_one(&server, "/animals/cow?delay=lognormal:30s,60s");
    assert!(seen >= Duration::from_millis(900), "{seen:?}");
    assert!(seen < Duration::from_secs(10), "{seen:?}");
}

/// Time to a whole keep-alive answer.
fn fetch_one(server: &Server, path: &str) -> Duration {
    let start = Instant::now();
    let mut s = TcpStream::connect(server.addr).unwrap();
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: farm\r\n\r\n").as_bytes())
        .unwrap();
    let (head, _) = one_answer(&mut s);
    assert_eq!(status(&head), 200, "{head}");
    start.elapsed()
}

#[test]
fn bad_values_get_400_naming_the_parameter() {
    let server = farm(&[]);
    for (query, name) in [
        ("fault=explode", "fault"),
        ("delay=uniform:2s..1s", "delay"),
        ("status=99", "status"),
        ("toxicity=2", "toxicity"),
        ("bytes=lots", "bytes"),
        ("seed=x", "seed"),
        ("drip=1s&bandwidth=5", "bandwidth"),
    ] {
        let res = reqwest::blocking::get(server.url(&format!("/animals/cow?{query}"))).unwrap();
        assert_eq!(res.status().as_u16(), 400, "{query}");
        let text = res.text().unwrap();
        assert!(
            text.contains(name) && !text.contains('\n'),
            "{query}: {text}"
        );
    }
}

/// What one request saw, as a short label: the status, or how it died.
fn outcome_label(server: &Server, path: &str) -> String {
    let seen = fetch_closing(server, path);
    match (seen.bytes.is_empty(), seen.error) {
        (true, None) => "empty".into(),
        (true, Some(kind)) => format!("{kind:?}"),
        (false, _) => status(&seen.split().0).to_string(),
    }
}

/// Like `fetch`, with `Connection: close` so every answer ends in EOF.
fn fetch_closing(server: &Server, path: &str) -> Seen {
    let mut s = TcpStream::connect(server.addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let start = Instant::now();
    s.write_all(
        format!("GET {path} HTTP/1.1\r\nHost: farm\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .unwrap();
    read_to_end(&mut s, start)
}

#[test]
fn the_same_seed_gives_the_same_hundred_outcomes_twice() {
    let faults = "status=200:0.5,503:0.3,429:0.2&fault=empty&toxicity=0.3";
    let run = || {
        let server = farm(&["--seed", "42", "--faults", faults]);
        (0..100)
            .map(|_| outcome_label(&server, "/animals/cow"))
            .collect::<Vec<_>>()
    };
    let first = run();
    assert_eq!(first, run());
    for label in ["200", "503", "429", "empty"] {
        assert!(first.iter().any(|l| l == label), "no {label} in {first:?}");
    }
    // A request's own seed: the same answer whatever the server's order.
    let server = farm(&[]);
    let per_request = |server: &Server| {
        (0..100)
            .map(|i| outcome_label(server, &format!("/animals/cow?{faults}&seed={i}")))
            .collect::<Vec<_>>()
    };
    let a = per_request(&server);
    assert_eq!(a, per_request(&server));
    assert!(a.iter().any(|l| l == "empty") && a.iter().any(|l| l == "200"));
}

#[test]
fn toxicity_is_the_share_of_requests_a_fault_hits() {
    let server = farm(&[]);
    let hit = (0..200)
        .filter(|_| outcome_label(&server, "/animals/cow?fault=empty&toxicity=0.25") == "empty")
        .count();
    assert!((20..=80).contains(&hit), "{hit} of 200 at toxicity 0.25");
}

#[test]
fn metrics_count_faults_by_kind() {
    let server = farm(&[]);
    fetch(&server, "/animals/cow?fault=reset");
    fetch(&server, "/animals/cow?fault=truncate");
    fetch(&server, "/animals/pig?fault=truncate");
    fetch_closing(&server, "/animals/pig?status=429");
    let base = server.url("");
    for (name, value) in [
        (r#"animals_faults_total{kind="reset"}"#, 1.0),
        (r#"animals_faults_total{kind="truncate"}"#, 2.0),
        (r#"animals_faults_total{kind="status"}"#, 1.0),
        (
            r#"animals_requests_total{route="/animals/{name}",status="429"}"#,
            1.0,
        ),
    ] {
        assert_eq!(metric(&base, name), Some(value), "{name}");
    }
}

#[test]
fn a_scenario_file_sets_faults_per_animal_and_queries_override_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("farm.toml");
    std::fs::write(
        &path,
        "[all]\nstatus = \"200\"\n\n[animals.cow]\nstatus = 503\n\n[animals.pig]\nfault = \"reset\"\n",
    )
    .unwrap();
    let server = farm(&["--scenario", path.to_str().unwrap()]);
    assert_eq!(outcome_label(&server, "/animals/cow"), "503");
    assert_eq!(outcome_label(&server, "/animals/sheep"), "200");
    assert_eq!(outcome_label(&server, "/animals/pig"), "ConnectionReset");
    assert_eq!(outcome_label(&server, "/animals/cow?status=200"), "200");
    // --faults sits between the scenario and the query.
    let server = farm(&[
        "--scenario",
        path.to_str().unwrap(),
        "--faults",
        "status=429",
    ]);
    assert_eq!(outcome_label(&server, "/animals/cow"), "429");

    std::fs::write(&path, "[animals.cow]\ndelya = \"1s\"\n").unwrap();
    let out = coop()
        .args(["serve", "--port", "0", "--scenario", path.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("delya") && err.contains("[animals.cow]"),
        "{err}"
    );
    let out = coop()
        .args(["serve", "--port", "0", "--faults", "fault=boom"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("fault"));
}

#[test]
fn without_faults_the_fast_path_answers_as_before() {
    let server = farm(&[]);
    let mut s = TcpStream::connect(server.addr).unwrap();
    s.write_all(b"GET /animals/cow?delay=0 HTTP/1.1\r\nHost: farm\r\n\r\n")
        .unwrap();
    let (head, body) = one_answer(&mut s);
    assert_eq!(status(&head), 200);
    assert_eq!(body, b"Moo!");
    let text = metrics_page(&server.url("")).expect("/metrics answers");
    assert_eq!(
        sample(&text, "animals_requests_direct_total"),
        Some(1.0),
        "{text}"
    );
    for line in text
        .lines()
        .filter(|l| l.starts_with("animals_faults_total"))
    {
        assert!(line.ends_with(" 0"), "no fault was asked for: {line}");
    }
}

fn h2() -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder()
        .http2_prior_knowledge()
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap()
}

#[test]
fn http2_resets_the_stream_and_keeps_the_connection() {
    let server = farm(&[]);
    let client = h2();
    let url = |q: &str| server.url(&format!("/animals/cow?{q}"));
    for fault in [
        "reset",
        "reset-mid",
        "truncate",
        "garbage",
        "empty",
        "bad-chunk",
    ] {
        let res = client.get(url(&format!("bytes=1000&fault={fault}"))).send();
        let failed = match res {
            Err(_) => true,
            Ok(res) => res.bytes().is_err(),
        };
        assert!(failed, "{fault}: the stream should fail over HTTP/2");
    }
    // Other streams on the same connection are unharmed.
    let res = client.get(url("status=429")).send().unwrap();
    assert_eq!(res.version(), reqwest::Version::HTTP_2);
    assert_eq!(res.status().as_u16(), 429);
    assert!(res.headers().get("retry-after").is_some());
    let start = Instant::now();
    let res = client.get(url("bytes=20&drip=1s")).send().unwrap();
    assert_eq!(res.bytes().unwrap().len(), 20);
    assert!(start.elapsed() >= Duration::from_millis(900));
    // A black hole stalls the stream until --max-delay (1 s), then resets it.
    let start = Instant::now();
    let res = client.get(url("fault=blackhole")).send();
    assert!(res.is_err() || res.unwrap().bytes().is_err());
    assert!(start.elapsed() >= Duration::from_millis(900));
    assert_eq!(client.get(url("")).send().unwrap().text().unwrap(), "Moo!");
}

/// Runs `coop speak --timing` against `server` with `query` on every
/// request; returns (success, stderr).
fn speak_with(server: &Server, query: &str, args: &[&str]) -> (bool, String) {
    let out = coop()
        .args(["speak", "--timing", "--url"])
        .arg(server.url(&format!("/animals?{query}")))
        .args(args)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn speak_names_each_failure_and_counts_what_went_wrong() {
    let server = farm(&[]);
    for (query, line, counts) in [
        ("fault=reset", "error: cow: connection reset: ", "resets 3"),
        (
            "fault=empty",
            "error: cow: closed before any answer: ",
            "closed before answering 3",
        ),
        (
            "bytes=100&fault=truncate",
            "error: cow: body cut short: ",
            "truncated bodies 3",
        ),
        (
            "bytes=100&fault=bad-chunk",
            "error: cow: body cut short: ",
            "truncated bodies 3",
        ),
        (
            "fault=garbage",
            "error: cow: not an HTTP answer: ",
            "bad answers 3",
        ),
        ("status=429", "error: cow: HTTP 429: ", "error statuses 3"),
    ] {
        let (ok, err) = speak_with(
            &server,
            &format!("{query}&seed=1"),
            &["--retries", "2", "cow"],
        );
        assert!(!ok, "{query}");
        assert!(err.contains(line), "{query}: {err}");
        assert!(err.contains("(after 3 attempts)"), "{query}: {err}");
        assert!(err.contains("mishaps: retries 2, "), "{query}: {err}");
        assert!(err.contains(counts), "{query}: {err}");
    }
    // A timeout takes the whole budget: reported, not retried.
    let (ok, err) = speak_with(&server, "fault=blackhole", &["--timeout", "300ms", "cow"]);
    assert!(!ok);
    assert!(err.contains("error: cow: timed out after 300ms"), "{err}");
    assert!(err.contains("mishaps: retries 0, timeouts 1, "), "{err}");
}

#[test]
fn speak_recovers_from_a_share_of_resets_with_retries() {
    let server = farm(&["--seed", "3", "--faults", "fault=reset&toxicity=0.5"]);
    let names: Vec<String> = (0..10).map(|_| "cow".to_string()).collect();
    let mut args = vec!["--retries", "20"];
    args.extend(names.iter().map(String::as_str));
    let (ok, err) = speak_with(&server, "", &args);
    assert!(ok, "{err}");
    let resets: u32 = err
        .split("resets ")
        .nth(1)
        .and_then(|rest| rest.split(',').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no resets count in {err}"));
    assert!(resets > 0, "{err}");
    assert!(
        err.contains(&format!("mishaps: retries {resets}, ")),
        "each reset was retried: {err}"
    );
}

#[test]
fn serve_help_documents_the_fault_flags() {
    let out = coop().args(["serve", "--help"]).output().unwrap();
    let help = String::from_utf8_lossy(&out.stdout);
    for needle in [
        "--faults <QUERY>",
        "--scenario <FILE>",
        "--seed <SEED>",
        "lognormal:P50,P99",
        "bad-chunk",
        "toxicity=P",
    ] {
        assert!(
            help.contains(needle),
            "serve --help lacks {needle}:\n{help}"
        );
    }
}
