//! The abuse suite, operations half (issue 9, items 6b to 10): the real
//! `coop serve` over real sockets, used as a hostile client or a careless
//! operator would. Each test asserts the answer, a bounded answer time and
//! the server's bounded peak memory (`VmHWM`).
//!
//! - resume points past `i64::MAX` are `400` on the memory store and on
//!   `--data-dir` alike (the durable store used to read everything);
//! - with `--auth-secret`, `/api/topics` lists only what the token may
//!   subscribe to, pages, and answers `401` without a token; `/metrics`
//!   needs a `**` token or moves to `--metrics-addr`;
//! - the data directory is `0700` and its files `0600`;
//! - the Redis password never appears in stderr, `--help` or `/readyz`;
//! - the publish limiter keys IPv6 clients by /64, IPv4-mapped peers as
//!   IPv4, and believes `X-Forwarded-For` only from `--trust-proxy`.

use std::io::Read;
use std::net::IpAddr;
use std::os::unix::fs::PermissionsExt;
use std::process::Stdio;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use jsonwebtoken::{encode, EncodingKey, Header};

use crate::support::{coop, wait_until, Redis, Server, WAIT};

/// A 32+ byte HS256 secret.
const SECRET: &str = "abuse-ops-secret-0123456789abcdef-0123";

/// The longest any one request may take on this loaded machine (they take
/// milliseconds).
const ANSWER: Duration = Duration::from_secs(5);

/// Peak RSS allowed to a debug `coop serve` through a test (it idles near
/// 20 MB; a listing or resume that copied everything would not stay here).
const MAX_HWM_KB: u64 = 256 * 1024;

/// A token for `claims`, always with an `exp` an hour ahead (tokens
/// without one are refused by default).
fn token(mut claims: serde_json::Value) -> String {
    let exp = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 3600;
    claims["exp"] = exp.into();
    encode(
        &Header::default(),
        &claims,
        &EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .unwrap()
}

fn client() -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder()
        .timeout(ANSWER * 2)
        .build()
        .unwrap()
}

/// An HTTP/2 (cleartext, prior knowledge) client: served by hyper and the
/// router, never by the subscribers' fast path.
fn h2() -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder()
        .timeout(ANSWER * 2)
        .http2_prior_knowledge()
        .build()
        .unwrap()
}

/// A client whose connections come from `local` (`127.0.0.2`, `::1`).
fn client_from(local: IpAddr) -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder()
        .timeout(ANSWER * 2)
        .local_address(local)
        .build()
        .unwrap()
}

/// Sends `req`, asserting it is answered within [`ANSWER`]; returns the
/// status and body.
fn answer(req: reqwest::blocking::RequestBuilder) -> (u16, String) {
    let started = Instant::now();
    let resp = req.send().expect("an answer");
    let status = resp.status().as_u16();
    let body = resp.text().unwrap_or_default();
    let took = started.elapsed();
    assert!(took < ANSWER, "answered in {took:?}: {status} {body}");
    (status, body)
}

/// The server's peak resident memory, in kB.
fn vm_hwm_kb(server: &Server) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{}/status", server.child.id())).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM in /proc/PID/status")
}

fn assert_bounded_memory(server: &Server) {
    let hwm = vm_hwm_kb(server);
    assert!(hwm < MAX_HWM_KB, "peak RSS {hwm} kB");
}

fn publish(server: &Server, topic: &str, token: Option<&str>) {
    let mut req = client().post(server.url(&format!("/topics/{topic}?msg=x")));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let (status, body) = answer(req);
    assert_eq!(status, 200, "publish to {topic}: {body}");
}

/// Regression (issue 9, item 7): `?since=` past `i64::MAX` read the whole
/// history on `--data-dir` (the id wrapped to a negative number) and
/// nothing on the memory store. Now both answer `400` with a reason, for
/// `?since=` and `Last-Event-ID`, on the fast path and through hyper alike.
#[test]
fn resume_points_past_i64_max_are_refused_on_every_store() {
    let data = tempfile::tempdir().unwrap();
    let dir = data.path().join("hub");
    for args in [vec![], vec!["--data-dir", dir.to_str().unwrap()]] {
        let server = Server::start(&args);
        publish(&server, "t", None);
        for since in [
            "9223372036854775808",
            "18446744073709551615",
            "18446744073709551616",
            "-1",
            "12abc",
        ] {
            let (status, body) =
                answer(client().get(server.url(&format!("/topics/t?since={since}"))));
            assert_eq!(status, 400, "{args:?} since={since}: {body}");
            assert!(body.starts_with("bad since"), "{body}");
            assert_eq!(body.lines().count(), 1, "{body}");
            // The same through hyper: an HTTP/2 request is never taken by
            // the fast path (`hub/src/direct.rs`).
            let (status, body) =
                answer(h2().get(server.url(&format!("/topics/t?since={since}&format=ndjson"))));
            assert_eq!(status, 400, "HTTP/2 since={since}: {body}");
            assert!(body.starts_with("bad since"), "{body}");
            let (status, body) = answer(
                client()
                    .get(server.url("/topics/t?since=all"))
                    .header("last-event-id", since),
            );
            assert_eq!(status, 400, "{args:?} Last-Event-ID {since}: {body}");
            assert!(body.starts_with("Last-Event-ID: bad since"), "{body}");
        }
        // The largest id is valid: a live stream (nothing after it).
        let started = Instant::now();
        let resp = client()
            .get(server.url("/topics/t?since=9223372036854775807&format=ndjson"))
            .send()
            .unwrap();
        assert_eq!(resp.status(), 200);
        assert!(started.elapsed() < ANSWER);
        drop(resp);
        assert_bounded_memory(&server);
    }
}

/// Regression (issue 9, item 6): with auth on, `/api/topics` and
/// `/api/topics/{name}` listed every topic to anyone.
#[test]
fn topic_listings_show_only_what_the_token_may_read_and_are_paged() {
    let server = Server::start(&["--auth-secret", SECRET]);
    let publisher = token(serde_json::json!({"coop": {"publish": ["**"]}}));
    for t in ["farm.cow", "farm.pig", "zoo.lion"] {
        publish(&server, t, Some(&publisher));
    }
    let get = |path: &str, token: Option<&str>| {
        let mut req = client().get(server.url(path));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        answer(req)
    };
    let json = |(status, body): (u16, String)| {
        assert_eq!(status, 200, "{body}");
        serde_json::from_str::<serde_json::Value>(&body).unwrap()
    };
    let names = |v: &serde_json::Value| -> Vec<String> {
        v["topics"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["name"].as_str().unwrap().to_string())
            .collect()
    };

    let (status, body) = get("/api/topics", None);
    assert_eq!(status, 401, "{body}");
    assert!(body.contains("missing token"), "{body}");
    assert_eq!(get("/api/topics", Some("not.a.jwt")).0, 401);
    assert_eq!(get("/api/topics/farm.cow", None).0, 401);

    let farmer = token(serde_json::json!({"coop": {"subscribe": ["farm.*"]}}));
    let v = json(get("/api/topics", Some(&farmer)));
    assert_eq!(names(&v), ["farm.cow", "farm.pig"]);
    // Hub-wide figures are for tokens that may read everything.
    assert!(v["subscribers"].is_null() && v["last_id"].is_null(), "{v}");
    assert_eq!(get("/api/topics/farm.cow", Some(&farmer)).0, 200);
    let (status, body) = get("/api/topics/zoo.lion", Some(&farmer));
    assert_eq!(status, 403, "{body}");
    // A refusal says nothing about existence: same for a topic never seen.
    assert_eq!(get("/api/topics/zoo.ghost", Some(&farmer)).0, 403);

    let admin = token(serde_json::json!({"coop": {"subscribe": ["**"]}}));
    let v = json(get("/api/topics", Some(&admin)));
    assert_eq!(names(&v), ["farm.cow", "farm.pig", "zoo.lion"]);
    assert!(v["last_id"].is_u64(), "{v}");
    // Pages: `limit`, then `after` = the previous page's `next`.
    let v = json(get("/api/topics?limit=2", Some(&admin)));
    assert_eq!(names(&v), ["farm.cow", "farm.pig"]);
    assert_eq!(v["next"], "farm.pig");
    let v = json(get("/api/topics?limit=2&after=farm.pig", Some(&admin)));
    assert_eq!(names(&v), ["zoo.lion"]);
    assert!(v["next"].is_null());
    for bad in ["0", "10001", "many"] {
        let (status, body) = get(&format!("/api/topics?limit={bad}"), Some(&admin));
        assert_eq!(status, 400, "limit={bad}: {body}");
    }
    assert_bounded_memory(&server);
}

/// Regression (issue 9, item 6): a listing was every topic in one answer,
/// with a scan of the held topics per live one. Now a default page is
/// 1,000 names with a cursor, whatever the count.
#[test]
fn a_large_listing_is_one_bounded_page_at_a_time() {
    let server = Server::start(&[]);
    let c = client();
    for i in 0..1_200 {
        let resp = c
            .post(server.url(&format!("/topics/many.t{i:05}?msg=x")))
            .send()
            .unwrap();
        assert_eq!(resp.status(), 200);
    }
    let (status, body) = answer(c.get(server.url("/api/topics")));
    assert_eq!(status, 200);
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["topics"].as_array().unwrap().len(), 1000);
    assert_eq!(v["next"], "many.t00999");
    let (_, body) = answer(c.get(server.url("/api/topics?after=many.t00999")));
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["topics"].as_array().unwrap().len(), 200);
    assert!(v["next"].is_null());
    assert_bounded_memory(&server);
}

/// Regression (issue 9, item 6): with auth on, `/metrics` was open to
/// anyone. Now it needs a `**` token, or lives on `--metrics-addr` only.
#[test]
fn metrics_need_a_full_token_or_their_own_address() {
    let server = Server::start(&["--auth-secret", SECRET]);
    let get = |path: &str, token: Option<&str>| {
        let mut req = client().get(server.url(path));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        answer(req)
    };
    let (status, body) = get("/metrics", None);
    assert_eq!(status, 401, "{body}");
    let narrow = token(serde_json::json!({"coop": {"subscribe": ["farm.*"], "publish": ["**"]}}));
    let (status, body) = get("/metrics", Some(&narrow));
    assert_eq!(status, 403, "{body}");
    let admin = token(serde_json::json!({"coop": {"subscribe": ["**"]}}));
    let (status, body) = get("/metrics", Some(&admin));
    assert_eq!(status, 200);
    assert!(
        body.contains("http_requests") || body.contains("hub_"),
        "{body}"
    );
    assert_bounded_memory(&server);
    drop(server);

    // On its own address: gone from the main port, open on its own.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let metrics_addr = format!("127.0.0.1:{port}");
    let server = Server::start(&["--auth-secret", SECRET, "--metrics-addr", &metrics_addr]);
    let (status, _) = answer(client().get(server.url("/metrics")).bearer_auth(&admin));
    assert_eq!(status, 404);
    let (status, body) = answer(client().get(format!("http://{metrics_addr}/metrics")));
    assert_eq!(status, 200, "{body}");
    assert_bounded_memory(&server);
}

/// Regression (issue 9, item 9): the data directory was 0755 and its files
/// 0644. Now 0700 and 0600, and a directory found open is tightened.
#[test]
fn the_data_directory_is_private_after_a_publish() {
    let parent = tempfile::tempdir().unwrap();
    let dir = parent.path().join("hub");
    std::fs::create_dir(&dir).unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    let server = Server::start(&["--data-dir", dir.to_str().unwrap()]);
    publish(&server, "secret.plans", None);
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&dir), 0o700);
    let mut files = Vec::new();
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        assert_eq!(mode(&path), 0o600, "{}", path.display());
        files.push(path.file_name().unwrap().to_string_lossy().into_owned());
    }
    files.sort();
    assert_eq!(files, ["coop.lock", "hub.db", "hub.db-shm", "hub.db-wal"]);
    assert_bounded_memory(&server);

    // A shared directory (like /tmp) is refused at start, not chmod-ed
    // under its other users.
    let shared = parent.path().join("shared");
    std::fs::create_dir(&shared).unwrap();
    std::fs::write(shared.join("someone-elses.txt"), "x").unwrap();
    std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o1777)).unwrap();
    let started = Instant::now();
    let out = coop()
        .args(["serve", "--port", "0", "--data-dir"])
        .arg(&shared)
        .output()
        .unwrap();
    assert!(started.elapsed() < Duration::from_secs(20));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(stderr.contains("use a directory of its own"), "{stderr}");
    let mode = std::fs::metadata(&shared).unwrap().permissions().mode() & 0o7777;
    assert_eq!(mode, 0o1777);
    assert!(!shared.join("hub.db").exists());
}

/// Regression (issue 9, item 8): the Redis URL, password included, was
/// logged and quoted in errors. Unreachable at start: the error names the
/// URL with `***`. Lost while running: `/readyz` and the log say so
/// without the password. `--help` does not echo `COOP_REDIS_URL`.
#[test]
fn the_redis_password_is_never_printed() {
    const PASSWORD: &str = "hunter2-very-secret";
    // Nothing listens on port 1.
    let started = Instant::now();
    let out = coop()
        .args(["serve", "--port", "0", "--redis"])
        .arg(format!("redis://user:{PASSWORD}@127.0.0.1:1/"))
        .output()
        .unwrap();
    assert!(started.elapsed() < Duration::from_secs(20));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(!stderr.contains(PASSWORD), "{stderr}");
    assert!(
        stderr.contains("cannot reach Redis at redis://user:***@127.0.0.1:1/"),
        "{stderr}"
    );

    let help = coop()
        .args(["serve", "--help"])
        .env("COOP_REDIS_URL", format!("redis://:{PASSWORD}@h/"))
        .output()
        .unwrap();
    assert!(!String::from_utf8_lossy(&help.stdout).contains(PASSWORD));

    // Running, then Redis goes away (a server of the test's own: it is
    // killed, and it has a password).
    let Some(mut redis) = Redis::start_with(&["--requirepass", PASSWORD], false) else {
        return; // the /readyz half needs redis-server (said so, or failed under CI)
    };
    let port = redis.port().expect("a server of the test's own");
    let log = tempfile::NamedTempFile::new().unwrap();
    let mut child = coop()
        .args(["serve", "--port", "0", "--redis"])
        .arg(format!("redis://default:{PASSWORD}@127.0.0.1:{port}/"))
        .stdout(Stdio::piped())
        .stderr(log.reopen().unwrap())
        .spawn()
        .unwrap();
    let addr = crate::support::announced_addr(&mut child);
    let server = Server { child, addr };
    let readyz = || answer(client().get(server.url("/readyz")));
    let wait_for = |want: u16| {
        let mut last = String::new();
        wait_until(WAIT, &format!("/readyz to answer {want}"), || {
            let (status, body) = readyz();
            assert!(!body.contains(PASSWORD), "{body}");
            last = body;
            status == want
        });
        last
    };
    wait_for(200);
    redis.kill();
    let reason = wait_for(503);
    assert!(reason.contains("redis"), "{reason}");
    publish_fails_without_leaking(&server, PASSWORD);
    assert_bounded_memory(&server);
    let _ = server.terminate();
    let mut stderr = String::new();
    log.reopen().unwrap().read_to_string(&mut stderr).unwrap();
    assert!(!stderr.contains(PASSWORD), "{stderr}");
    assert!(stderr.contains("default:***@127.0.0.1"), "{stderr}");
}

fn publish_fails_without_leaking(server: &Server, password: &str) {
    let (status, body) = answer(client().post(server.url("/topics/t?msg=x")));
    assert_eq!(status, 503, "{body}");
    assert!(!body.contains(password), "{body}");
}

/// Regression (issue 9, item 10): the limiter keyed on the full address
/// (an IPv6 client rotating through its /64 had endless buckets), and
/// behind a proxy every client shared the proxy's bucket. Now: IPv4
/// addresses, IPv4-mapped peers as IPv4, IPv6 by /64, and the forwarded
/// client only from a `--trust-proxy` peer.
#[test]
fn the_publish_limiter_keys_by_64_and_trusts_only_configured_proxies() {
    let ip = |s: &str| s.parse::<IpAddr>().unwrap();
    let post = |c: &reqwest::blocking::Client, url: String, xff: Option<&str>| {
        let mut req = c.post(url);
        if let Some(x) = xff {
            req = req.header("x-forwarded-for", x);
        }
        answer(req).0
    };

    // Dual-stack, no proxy trusted: IPv4 peers arrive as ::ffff:a.b.c.d.
    let server = Server::start(&[
        "--bind",
        "::",
        "--publish-rate",
        "0.001",
        "--publish-burst",
        "2",
    ]);
    let v4 = format!("http://127.0.0.1:{}/topics/t?msg=x", server.addr.port());
    let one = client_from(ip("127.0.0.1"));
    assert_eq!(post(&one, v4.clone(), None), 200);
    assert_eq!(post(&one, v4.clone(), Some("203.0.113.1")), 200);
    // X-Forwarded-For is not believed from an untrusted peer.
    assert_eq!(post(&one, v4.clone(), Some("203.0.113.2")), 429);
    // Another IPv4 address is another client, though both map into the
    // same IPv6 /64 (::ffff:0:0/96).
    let two = client_from(ip("127.0.0.2"));
    assert_eq!(post(&two, v4.clone(), None), 200);
    // An IPv6 peer has a bucket of its own.
    let v6 = format!("http://[::1]:{}/topics/t?msg=x", server.addr.port());
    let six = client_from(ip("::1"));
    assert_eq!(post(&six, v6.clone(), None), 200);
    assert_eq!(post(&six, v6.clone(), None), 200);
    assert_eq!(post(&six, v6.clone(), None), 429);
    assert_bounded_memory(&server);
    drop(server);

    // Behind a trusted proxy (::1): the client is the rightmost untrusted
    // X-Forwarded-For entry, keyed by /64.
    let server = Server::start(&[
        "--bind",
        "::1",
        "--publish-rate",
        "0.001",
        "--publish-burst",
        "1",
        "--trust-proxy",
        "::1",
    ]);
    let url = server.url("/topics/t?msg=x");
    let proxy = client();
    assert_eq!(post(&proxy, url.clone(), Some("2001:db8:1:2::1")), 200);
    // The same /64, another address: the same client.
    assert_eq!(post(&proxy, url.clone(), Some("2001:db8:1:2:ffff::9")), 429);
    // The neighbouring /64 is someone else.
    assert_eq!(post(&proxy, url.clone(), Some("2001:db8:1:3::1")), 200);
    // What the client wrote itself (left of the proxy's entry) is ignored.
    assert_eq!(
        post(&proxy, url.clone(), Some("2001:db8:9::1, 2001:db8:1:2::7")),
        429
    );
    // IPv4 clients behind it are one each.
    assert_eq!(post(&proxy, url.clone(), Some("198.51.100.1")), 200);
    assert_eq!(post(&proxy, url.clone(), Some("198.51.100.2")), 200);
    // No header: the proxy itself, a client like any other.
    assert_eq!(post(&proxy, url.clone(), None), 200);
    assert_eq!(post(&proxy, url.clone(), None), 429);
    assert_bounded_memory(&server);
}
