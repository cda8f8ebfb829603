//! End-to-end tests: animals. The real `coop serve` and `coop speak`
//! binaries over real sockets: output and exit status, flags and their
//! errors, and the server's defences (slowloris, disconnects mid-delay,
//! oversized requests, connection limit, graceful shutdown, h2c).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Output, Stdio};
use std::time::{Duration, Instant};

use crate::support::{announced_addr, coop, metric, output_with_stdin, wait_until, Server, WAIT};

fn speak(server: &Server, args: &[&str]) -> Output {
    coop()
        .arg("speak")
        .args(["--url", &server.url("/animals")])
        .args(args)
        .output()
        .expect("run coop speak")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Sends raw bytes and reads until the server closes (or 5 s pass).
fn raw(server: &Server, request: &[u8]) -> String {
    let mut s = TcpStream::connect(server.addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(request).unwrap();
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    String::from_utf8_lossy(&out).into_owned()
}

fn get(url: &str) -> reqwest::blocking::Response {
    reqwest::blocking::get(url).expect("request")
}

#[test]
fn help_lists_every_subcommand_and_each_has_help() {
    let out = coop().arg("--help").output().unwrap();
    assert!(out.status.success());
    let help = stdout(&out);
    let commands = [
        "serve",
        "speak",
        "pub",
        "sub",
        "kitchen",
        "byhand",
        "bench",
        "completions",
        "man",
    ];
    for command in commands {
        assert!(
            help.lines()
                .any(|l| l.trim_start().starts_with(&format!("{command} "))),
            "`coop --help` does not list {command}:\n{help}"
        );
        let out = coop().args([command, "--help"]).output().unwrap();
        assert!(out.status.success(), "coop {command} --help failed");
        assert!(
            stdout(&out).contains("Usage: coop"),
            "coop {command} --help"
        );
    }
    let serve_help = stdout(&coop().args(["serve", "--help"]).output().unwrap());
    for flag in [
        "--delay",
        "--max-delay",
        "--catalog",
        "--error-rate",
        "--drain-timeout",
    ] {
        assert!(serve_help.contains(flag), "serve --help lacks {flag}");
    }
}

#[test]
fn speak_prints_the_talks_lines_in_order() {
    let server = Server::start(&["--delay", "100ms"]);
    let out = speak(&server, &["chicken", "cow", "pig"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        stdout(&out),
        "The chicken says \"Cluck!\".\nThe cow says \"Moo!\".\nThe pig says \"Oink!\".\n"
    );
}

#[test]
fn speak_defaults_to_cow_pig_chicken_and_reads_the_url_from_env() {
    let server = Server::start(&["--delay", "0s"]);
    let out = coop()
        .arg("speak")
        .env("COOP_URL", server.url("/animals/"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        stdout(&out),
        "The cow says \"Moo!\".\nThe pig says \"Oink!\".\nThe chicken says \"Cluck!\".\n"
    );
}

#[test]
fn speak_reads_names_from_stdin_and_a_file() {
    let server = Server::start(&["--delay", "0s"]);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("names.txt");
    std::fs::write(&file, "duck\n\n  dog \n").unwrap();
    let out = output_with_stdin(
        coop()
            .arg("speak")
            .args(["--url", &server.url("/animals")])
            .args(["cat", "-", "--file"])
            .arg(&file),
        b"frog\nhorse\n",
    );
    assert!(out.status.success());
    let animals: Vec<String> = stdout(&out)
        .lines()
        .map(|l| l.split(' ').nth(1).unwrap().to_string())
        .collect();
    assert_eq!(animals, ["cat", "frog", "horse", "duck", "dog"]);
}

#[test]
fn a_failed_animal_goes_to_stderr_the_others_print_and_the_exit_is_1() {
    let server = Server::start(&["--delay", "0s"]);
    let out = speak(&server, &["cow", "unicorn", "pig"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        stdout(&out),
        "The cow says \"Moo!\".\nThe pig says \"Oink!\".\n"
    );
    let err = stderr(&out);
    assert!(
        err.contains("error: unicorn: HTTP 404: The animal unicorn was not found."),
        "{err}"
    );
    assert!(err.contains("1 of 3 animals failed"), "{err}");
}

#[test]
fn speak_against_no_server_reports_the_transport_error() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let out = coop()
        .args(["speak", "--retries", "1", "--url"])
        .arg(format!("http://127.0.0.1:{port}/animals"))
        .arg("cow")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(err.contains("error: cow:"), "{err}");
    assert!(err.contains("(after 2 attempts)"), "{err}");
}

#[test]
fn timing_shows_concurrency_beats_one_at_a_time() {
    let server = Server::start(&["--delay", "200ms"]);
    let names = ["cow", "pig", "sheep", "duck", "dog"];

    let start = Instant::now();
    let out = speak(&server, &[&["--timing"][..], &names].concat());
    let concurrent = start.elapsed();
    assert!(out.status.success());
    let err = stderr(&out);
    assert!(err.contains("timing: 5 requests"), "{err}");
    assert!(err.contains("speed-up"), "{err}");
    assert!(err.contains("latency: p50"), "{err}");

    let start = Instant::now();
    let out = speak(&server, &[&["--sequential"][..], &names].concat());
    let sequential = start.elapsed();
    assert!(out.status.success());
    assert_eq!(stdout(&out).lines().count(), 5);
    assert!(sequential >= Duration::from_secs(1), "{sequential:?}");
    assert!(
        concurrent < sequential,
        "concurrent {concurrent:?} vs sequential {sequential:?}"
    );
}

/// Over HTTP/1.1 every request in flight holds a socket: with a soft
/// limit of 48 open files, 200 animals at once need `coop speak` to lift
/// it (up to the hard limit) rather than fail with `EMFILE`.
#[test]
fn speak_lifts_a_low_open_files_limit_for_its_connections() {
    let server = Server::start(&["--delay", "300ms"]);
    let out = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!(
            "ulimit -Sn 48 && exec {} speak --retries 0 --url {} \"$@\"",
            env!("CARGO_BIN_EXE_coop"),
            server.url("/animals")
        ))
        .arg("sh")
        .args(std::iter::repeat_n("cow", 200))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out).lines().count(), 200);
    assert!(stdout(&out).lines().all(|l| l == "The cow says \"Moo!\"."));
}

#[test]
fn bad_flag_values_give_clear_errors() {
    let cases: [(&[&str], &str); 6] = [
        (&["serve", "--delay", "soon"], "--delay"),
        (&["serve", "--error-rate", "2"], "between 0 and 1"),
        (&["serve", "--port", "99999"], "--port"),
        (&["serve", "--delay", "2m"], "longer than --max-delay"),
        (&["speak", "--url", "not a url", "cow"], "bad --url"),
        (&["speak", "--concurrency", "0", "cow"], "--concurrency"),
    ];
    for (args, needle) in cases {
        let out = coop().args(args).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stderr(&out));
        assert!(stderr(&out).contains(needle), "{args:?}: {}", stderr(&out));
    }
}

#[test]
fn a_catalogue_file_extends_the_farm_and_a_bad_one_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("farm.toml");
    std::fs::write(&good, "[[animals]]\nname = \"goat\"\nsound = \"Meh!\"\n").unwrap();
    let server = Server::start(&["--delay", "0s", "--catalog", good.to_str().unwrap()]);
    assert_eq!(get(&server.url("/animals/goat")).text().unwrap(), "Meh!");
    assert_eq!(get(&server.url("/animals/cow")).text().unwrap(), "Moo!");

    let bad = dir.path().join("bad.json");
    std::fs::write(
        &bad,
        r#"{"animals":[{"name":"goat","sound":"Meh!"},{"name":"bad name","sound":"x"}]}"#,
    )
    .unwrap();
    let out = coop()
        .args(["serve", "--port", "0", "--catalog"])
        .arg(&bad)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(err.contains("entry #2 (\"bad name\")"), "{err}");
}

#[test]
fn healthz_and_metrics() {
    let server = Server::start(&["--delay", "0s"]);
    let r = get(&server.url("/healthz"));
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().unwrap(), "ok");
    get(&server.url("/animals/cow"));
    get(&server.url("/animals/unicorn"));
    let base = server.url("");
    for (name, value) in [
        (
            r#"animals_requests_total{route="/animals/{name}",status="200"}"#,
            1.0,
        ),
        (
            r#"animals_requests_total{route="/animals/{name}",status="404"}"#,
            1.0,
        ),
        ("animals_requests_in_flight", 0.0),
        (
            r#"animals_request_duration_seconds_count{route="/animals/{name}"}"#,
            2.0,
        ),
    ] {
        assert_eq!(metric(&base, name), Some(value), "{name}");
    }
}

#[test]
fn unknown_routes_are_404_and_wrong_methods_405() {
    let server = Server::start(&["--delay", "0s"]);
    let answer = raw(
        &server,
        b"GET /nowhere HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    );
    assert!(answer.starts_with("HTTP/1.1 404 "), "{answer}");
    let answer = raw(
        &server,
        b"DELETE /animals/cow HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    );
    assert!(answer.starts_with("HTTP/1.1 405 "), "{answer}");
    assert!(
        answer.to_ascii_lowercase().contains("allow: get,head"),
        "{answer}"
    );
}

#[test]
fn oversized_and_garbage_requests_get_a_status_and_the_server_lives_on() {
    let server = Server::start(&["--delay", "0s"]);
    let mut big = b"GET /animals/cow HTTP/1.1\r\nHost: x\r\n".to_vec();
    for i in 0..1000 {
        big.extend_from_slice(format!("X-Filler-{i}: {}\r\n", "y".repeat(60)).as_bytes());
    }
    big.extend_from_slice(b"\r\n");
    let answer = raw(&server, &big);
    assert!(answer.starts_with("HTTP/1.1 431 "), "{answer:.200}");

    let answer = raw(&server, b"THIS IS NOT HTTP\r\n\r\n");
    assert!(answer.starts_with("HTTP/1.1 400 "), "{answer:.200}");

    assert_eq!(get(&server.url("/animals/cow")).text().unwrap(), "Moo!");
}

#[test]
fn a_slowloris_client_is_cut_off_by_the_header_timeout() {
    let server = Server::start(&["--delay", "0s", "--header-timeout", "500ms"]);
    let mut s = TcpStream::connect(server.addr).unwrap();
    s.write_all(b"GET /animals/cow HTTP/1.1\r\nHost: x\r\n")
        .unwrap();
    let start = Instant::now();
    // Drip one header byte every 100 ms; the server must hang up within
    // a few header timeouts, not wait forever.
    let mut closed = false;
    while start.elapsed() < Duration::from_secs(5) {
        if s.write_all(b"X").is_err() {
            closed = true;
            break;
        }
        s.set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        let mut buf = [0u8; 512];
        match s.read(&mut buf) {
            Ok(0) => {
                closed = true;
                break;
            }
            Ok(_) => {} // an error status (408) before the close is fine
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {}
            Err(_) => {
                closed = true;
                break;
            }
        }
    }
    assert!(closed, "slowloris connection still open after 5 s");
    assert!(
        start.elapsed() < Duration::from_secs(3),
        "{:?}",
        start.elapsed()
    );

    // A connection that sends nothing at all is closed too.
    let mut idle = TcpStream::connect(server.addr).unwrap();
    idle.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let start = Instant::now();
    let mut buf = [0u8; 16];
    let n = idle.read(&mut buf).unwrap_or(0);
    assert_eq!(n, 0);
    assert!(start.elapsed() < Duration::from_secs(3));

    assert_eq!(get(&server.url("/animals/cow")).text().unwrap(), "Moo!");
}

#[test]
fn a_client_leaving_mid_delay_does_not_hurt_the_others() {
    // Both paths: the socket-level fast path and hyper.
    for path in [None, Some("--no-direct")] {
        let mut args = vec!["--delay", "3s"];
        args.extend(path);
        a_client_leaves_mid_delay(&Server::start(&args));
    }
}

fn a_client_leaves_mid_delay(server: &Server) {
    let base = server.url("");
    let in_flight = |n: f64| {
        wait_until(WAIT, &format!("{n} requests in flight"), || {
            metric(&base, "animals_requests_in_flight") == Some(n)
        })
    };
    // The leaver's delay outlasts any wait here; the other's is the
    // server's, long enough to be seen in flight beside it.
    let mut leaver = TcpStream::connect(server.addr).unwrap();
    leaver
        .write_all(b"GET /animals/cow?delay=60s HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    in_flight(1.0);
    let other = {
        let url = server.url("/animals/pig");
        std::thread::spawn(move || get(&url).text().unwrap())
    };
    // Both mid-delay when the leaver goes.
    in_flight(2.0);
    drop(leaver);
    assert_eq!(other.join().unwrap(), "Oink!");
    // The dropped request was counted as cancelled, not left in flight.
    let cancelled = r#"animals_requests_cancelled_total{route="/animals/{name}"}"#;
    wait_until(WAIT, "the dropped request to be cancelled", || {
        metric(&base, cancelled) == Some(1.0)
    });
    in_flight(0.0);
}

#[test]
fn past_the_connection_limit_a_client_gets_a_clear_503() {
    let server = Server::start(&["--delay", "2s", "--max-connections", "1"]);
    let mut holder = TcpStream::connect(server.addr).unwrap();
    holder
        .write_all(b"GET /animals/cow HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    // No wait needed: the kernel's accept queue is first in, first out,
    // and a connection takes its place under the limit when accepted.
    let answer = raw(
        &server,
        b"GET /animals HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    );
    assert!(answer.starts_with("HTTP/1.1 503 "), "{answer}");
    assert!(answer.contains("retry-after: 1"), "{answer}");
    assert!(
        answer.ends_with("Too many connections: the server is at its limit (--max-connections).\n"),
        "{answer}"
    );
}

#[test]
fn graceful_shutdown_drains_an_in_flight_request_then_exits_0() {
    // The drain timeout far above the delay: the exit comes when the
    // request is answered, not when the drain gives up.
    let server = Server::start(&["--delay", "5s", "--drain-timeout", "60s"]);
    let url = server.url("/animals/sheep");
    let addr = server.addr;
    let in_flight = std::thread::spawn(move || {
        let client = reqwest::blocking::Client::new();
        let r = client.get(url).send().unwrap();
        (r.status().as_u16(), r.text().unwrap())
    });
    // In flight when the signal comes (else there is nothing to drain).
    wait_until(WAIT, "the request to be in flight", || {
        metric(&server.url(""), "animals_requests_in_flight") == Some(1.0)
    });
    let start = Instant::now();
    let status = server.terminate();
    let took = start.elapsed();
    assert_eq!(status.code(), Some(0), "coop serve exit status");
    assert_eq!(in_flight.join().unwrap(), (200, "Baaa!".to_string()));
    assert!(took < Duration::from_secs(30), "exited after {took:?}");
    // And it no longer accepts.
    assert!(TcpStream::connect(addr).is_err());
}

#[test]
fn the_drain_timeout_bounds_shutdown() {
    // A delay far beyond the drain timeout: the exit comes when the drain
    // gives up, not when the request is answered.
    let server = Server::start(&["--delay", "60s", "--drain-timeout", "300ms"]);
    let mut held = TcpStream::connect(server.addr).unwrap();
    held.write_all(b"GET /animals/cow HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    // In flight when the signal comes (else the exit is quick anyway).
    wait_until(WAIT, "the request to be in flight", || {
        metric(&server.url(""), "animals_requests_in_flight") == Some(1.0)
    });
    let start = Instant::now();
    let status = server.terminate();
    let took = start.elapsed();
    assert_eq!(status.code(), Some(0));
    assert!(took < Duration::from_secs(20), "exited after {took:?}");
}

#[test]
fn http2_prior_knowledge_is_served_on_the_same_port() {
    let server = Server::start(&["--delay", "0s"]);
    let h2 = reqwest::blocking::Client::builder()
        .http2_prior_knowledge()
        .build()
        .unwrap();
    let r = h2.get(server.url("/animals/frog")).send().unwrap();
    assert_eq!(r.version(), reqwest::Version::HTTP_2);
    assert_eq!(r.text().unwrap(), "Ribbit!");
    // And speak can use it.
    let out = speak(&server, &["--http2", "cow", "turkey"]);
    assert!(out.status.success());
    assert_eq!(
        stdout(&out),
        "The cow says \"Moo!\".\nThe turkey says \"Gobble-Gobble!\".\n"
    );
}

#[test]
fn running_out_of_file_descriptors_is_logged_and_survived() {
    use std::io::{BufRead, BufReader};
    // A tiny descriptor limit, set by the shell before exec: the server
    // runs out after a couple of dozen connections.
    let mut child = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!(
            "ulimit -n 48 && exec {} serve --port 0 --delay 300ms",
            env!("CARGO_BIN_EXE_coop")
        ))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let addr = announced_addr(&mut child);
    let (tx, rx) = std::sync::mpsc::channel();
    let stderr = child.stderr.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });

    let mut clients = Vec::new();
    for _ in 0..80 {
        let mut s = TcpStream::connect(addr).unwrap();
        s.write_all(b"GET /animals/cow HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .unwrap();
        clients.push(s);
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut warned = false;
    while Instant::now() < deadline && !warned {
        if let Ok(l) = rx.recv_timeout(Duration::from_millis(100)) {
            warned = l.contains("too many open files: raise ulimit -n");
        }
    }
    assert!(warned, "no clear log line about running out of descriptors");

    // Every client is answered eventually: as connections finish,
    // descriptors free up and the server accepts the rest.
    for mut s in clients {
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut answer = String::new();
        s.read_to_string(&mut answer).unwrap();
        assert!(answer.ends_with("Moo!"), "{answer}");
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// Reads one response (head and `content-length` body) off a keep-alive
/// connection: the status line, the headers lowercased and sorted without
/// `date`, and the body (none when answering a `HEAD`).
fn read_response(reader: &mut impl std::io::BufRead, head: bool) -> (String, Vec<String>, String) {
    let mut status = String::new();
    reader.read_line(&mut status).unwrap();
    let mut headers = Vec::new();
    let mut length = 0;
    loop {
        let mut line = String::new();
        reader.read_line(&mut line).unwrap();
        let line = line.trim_end().to_ascii_lowercase();
        if line.is_empty() {
            break;
        }
        if let Some(n) = line.strip_prefix("content-length: ") {
            length = n.parse().unwrap();
        }
        if !line.starts_with("date: ") {
            headers.push(line);
        }
    }
    headers.sort();
    let mut body = vec![0; if head { 0 } else { length }];
    reader.read_exact(&mut body).unwrap();
    (
        status.trim_end().to_owned(),
        headers,
        String::from_utf8(body).unwrap(),
    )
}

/// The requests of the wire contract, one connection each, answered by
/// `server` (`connection: close` ends each).
fn answers(server: &Server, requests: &[&str]) -> Vec<(String, Vec<String>, String)> {
    requests
        .iter()
        .map(|head| {
            let mut s = TcpStream::connect(server.addr).unwrap();
            s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            s.write_all(head.as_bytes()).unwrap();
            let mut reader = std::io::BufReader::new(s);
            let answer = read_response(&mut reader, head.starts_with("HEAD"));
            let mut rest = Vec::new();
            let _ = reader.read_to_end(&mut rest);
            assert!(rest.is_empty(), "{head:?}: more after the answer: {rest:?}");
            answer
        })
        .collect()
}

fn direct_count(server: &Server) -> Option<u64> {
    metric(&server.url(""), "animals_requests_direct_total").map(|n| n as u64)
}

#[test]
fn the_fast_path_answers_exactly_what_hyper_answers() {
    let requests: Vec<String> = [
        "GET /animals/cow HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        "GET /animals//pig?delay=10ms HTTP/1.1\r\nConnection: close\r\n\r\n",
        "HEAD /animals/cow HTTP/1.1\r\nConnection: close\r\n\r\n",
        "GET /animals/cow HTTP/1.1\r\nAccept: application/json\r\nConnection: close\r\n\r\n",
        "GET /animals HTTP/1.1\r\nConnection: close\r\n\r\n",
        "GET /animals HTTP/1.1\r\naccept: text/html, application/json\r\nConnection: close\r\n\r\n",
        "GET /animals/unicorn HTTP/1.1\r\nConnection: close\r\n\r\n",
        "GET /animals/unicorn HTTP/1.1\r\nAccept: application/json\r\nConnection: close\r\n\r\n",
        "GET /animals/c%zzw HTTP/1.1\r\nConnection: close\r\n\r\n",
        "GET /animals/cow?delay=soon HTTP/1.1\r\nConnection: close\r\n\r\n",
        "GET /animals/a.b HTTP/1.1\r\nConnection: close\r\n\r\n",
    ]
    .map(String::from)
    .into();
    let requests: Vec<&str> = requests.iter().map(String::as_str).collect();
    for extra in [&[][..], &["--error-rate", "1", "--retry-after", "7"][..]] {
        let mut args = vec!["--delay", "0s"];
        args.extend(extra);
        let fast = Server::start(&args);
        args.push("--no-direct");
        let hyper = Server::start(&args);
        let (a, b) = (answers(&fast, &requests), answers(&hyper, &requests));
        for ((request, a), b) in requests.iter().zip(&a).zip(&b) {
            assert_eq!(a, b, "{request:?} with {extra:?}");
        }
        // The comparison compared something: every request went through
        // the fast path on one server and none on the other.
        assert_eq!(direct_count(&fast), Some(requests.len() as u64));
        assert_eq!(direct_count(&hyper).unwrap_or(0), 0);
        if extra.is_empty() {
            assert_eq!(a[0].0, "HTTP/1.1 200 OK");
            assert_eq!(a[0].2, "Moo!");
            assert_eq!(a[2].2, "", "HEAD has no body");
            assert_eq!(a[6].0, "HTTP/1.1 404 Not Found");
            assert_eq!(a[6].2, "The animal unicorn was not found.");
        } else {
            assert_eq!(a[0].0, "HTTP/1.1 503 Service Unavailable");
            assert!(a[0].1.contains(&"retry-after: 7".to_owned()), "{:?}", a[0]);
        }
    }
}

/// One HTTP/2 request of the wire contract (method, path, `Accept`):
/// status, headers but `date` (sorted), body.
fn h2_answer(
    h2: &reqwest::blocking::Client,
    server: &Server,
    (method, path, accept): (&str, &str, Option<&str>),
) -> (u16, Vec<String>, String) {
    let mut req = h2.request(method.parse().unwrap(), server.url(path));
    if let Some(accept) = accept {
        req = req.header("accept", accept);
    }
    let r = req.send().unwrap();
    assert_eq!(r.version(), reqwest::Version::HTTP_2);
    let status = r.status().as_u16();
    let mut headers: Vec<String> = r
        .headers()
        .iter()
        .filter(|(n, _)| *n != "date")
        .map(|(n, v)| format!("{n}: {}", v.to_str().unwrap()))
        .collect();
    headers.sort();
    (status, headers, r.text().unwrap())
}

fn h2_direct_count(server: &Server) -> Option<u64> {
    metric(&server.url(""), "animals_requests_h2_direct_total").map(|n| n as u64)
}

#[test]
fn the_h2_path_answers_exactly_what_the_router_answers() {
    let json = Some("application/json");
    let requests = [
        ("GET", "/animals/cow", None),
        ("GET", "/animals//pig?delay=10ms", None),
        ("HEAD", "/animals/cow", None),
        ("GET", "/animals/cow", json),
        ("GET", "/animals", None),
        ("HEAD", "/animals", json),
        ("GET", "/animals", Some("text/html, application/json")),
        ("GET", "/animals/unicorn", None),
        ("GET", "/animals/unicorn", json),
        ("GET", "/animals/c%zzw", None),
        ("GET", "/animals/cow?delay=soon", None),
        ("GET", "/animals/a.b", None),
        ("GET", "/animals/cow?status=429", None),
    ];
    // Left to the router on both servers: counted on neither.
    let routed = [
        ("POST", "/animals/cow", None),
        ("GET", "/animals/", None),
        ("GET", "/animalsx", None),
    ];
    let h2 = reqwest::blocking::Client::builder()
        .http2_prior_knowledge()
        .build()
        .unwrap();
    for extra in [&[][..], &["--error-rate", "1", "--retry-after", "7"][..]] {
        let mut args = vec!["--delay", "0s"];
        args.extend(extra);
        let fast = Server::start(&args);
        args.push("--no-direct");
        let router = Server::start(&args);
        for request in requests.iter().chain(&routed) {
            let (a, b) = (
                h2_answer(&h2, &fast, *request),
                h2_answer(&h2, &router, *request),
            );
            assert_eq!(a, b, "{request:?} with {extra:?}");
            if extra.is_empty() && *request == requests[0] {
                assert_eq!(a.0, 200);
                assert_eq!(a.2, "Moo!");
            }
            if extra.is_empty() && *request == requests[2] {
                assert_eq!(a.2, "", "HEAD has no body");
                assert!(a.1.contains(&"content-length: 4".to_owned()), "{a:?}");
            }
        }
        // The comparison compared something: the farm's requests went
        // through the HTTP/2 path on one server and none on the other.
        assert_eq!(h2_direct_count(&fast), Some(requests.len() as u64));
        assert_eq!(h2_direct_count(&router).unwrap_or(0), 0);
        assert_eq!(direct_count(&fast).unwrap_or(0), 0);
    }
}

#[test]
fn one_connection_moves_from_the_fast_path_to_hyper_and_pipelines() {
    let server = Server::start(&["--delay", "20ms"]);
    let s = TcpStream::connect(server.addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut writer = s.try_clone().unwrap();
    let mut reader = std::io::BufReader::new(s);
    // Fast path, then a route it does not serve (hyper takes the rest of
    // the connection), then an animal again (now through hyper).
    for (head, body) in [
        ("GET /animals/cow HTTP/1.1\r\nHost: x\r\n\r\n", "Moo!"),
        ("GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n", "ok"),
        ("GET /animals/pig HTTP/1.1\r\nHost: x\r\n\r\n", "Oink!"),
    ] {
        writer.write_all(head.as_bytes()).unwrap();
        let (status, _, got) = read_response(&mut reader, false);
        assert_eq!((status.as_str(), got.as_str()), ("HTTP/1.1 200 OK", body));
    }
    assert_eq!(direct_count(&server), Some(1));

    // Three requests in one write: answered in order on one connection.
    let mut s = TcpStream::connect(server.addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(
        b"GET /animals/cow HTTP/1.1\r\n\r\nGET /animals/unicorn HTTP/1.1\r\n\r\n\
          GET /animals/duck HTTP/1.1\r\nConnection: close\r\n\r\n",
    )
    .unwrap();
    let mut reader = std::io::BufReader::new(s);
    let bodies: Vec<String> = (0..3)
        .map(|_| read_response(&mut reader, false).2)
        .collect();
    assert_eq!(
        bodies,
        ["Moo!", "The animal unicorn was not found.", "Quack!"]
    );
    let mut rest = Vec::new();
    reader.read_to_end(&mut rest).unwrap();
    assert!(
        rest.is_empty(),
        "the connection closes after the last answer"
    );
    assert_eq!(direct_count(&server), Some(4));
}
