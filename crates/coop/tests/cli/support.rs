//! Shared helpers: run the built binary, start `coop serve` on port 0 (in
//! the clear or over TLS), find built examples, wait for a state (a
//! subscriber count, a metric), a `redis-server` of the test's own, and a
//! subscriber and a publisher that count what got through.

use std::collections::HashSet;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The bound on any one wait for a state (a server's address, a
/// subscriber count, an answer, a message): generous, since the machine is
/// shared with compilers and a browser's first start takes seconds, while
/// the states waited for come in milliseconds. A broken test fails after
/// it instead of hanging.
pub const WAIT: Duration = Duration::from_secs(30);

/// A dependency the test needs (a `redis-server`) is missing. On a
/// developer's machine the test is skipped, saying so; under CI (`CI` set
/// and not empty, as `.ci/run` does, which installs every dependency) it
/// fails, so that a run where nothing was tested cannot pass.
pub fn missing(why: &str) {
    if std::env::var_os("CI").is_some_and(|v| !v.is_empty()) {
        panic!("{why}, and CI is set: a missing dependency fails the run");
    }
    eprintln!("{why}: skipping");
}

/// The address a freshly spawned server announces on the first line of its
/// stdout (`... listening on http://ADDR`, or `https://` with TLS); `child`
/// has a piped stdout, which this takes and closes.
pub fn announced_addr(child: &mut Child) -> std::net::SocketAddr {
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("piped stdout"))
        .read_line(&mut line)
        .unwrap();
    listening_on(&line)
        .unwrap_or("")
        .parse()
        .unwrap_or_else(|e| panic!("no address in {line:?}: {e}"))
}

/// The address in a `listening on http://ADDR` (or `https://ADDR`) line.
pub fn listening_on(line: &str) -> Option<&str> {
    let rest = line.split("listening on ").nth(1)?;
    let rest = rest
        .strip_prefix("http://")
        .or_else(|| rest.strip_prefix("https://"))?;
    rest.split_whitespace().next()
}

/// The `coop` binary cargo built for this test run.
pub fn coop() -> Command {
    Command::new(env!("CARGO_BIN_EXE_coop"))
}

/// `coop` without any `COOP_*` variable of the environment the tests run
/// in (settings from a developer's shell would change what they see).
pub fn coop_clean_env() -> Command {
    let mut cmd = coop();
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("COOP_") {
            cmd.env_remove(name);
        }
    }
    cmd
}

/// A built example. `cargo test --workspace --all-targets` (scripts/test)
/// builds examples before running tests; they land beside the binary.
pub fn example(name: &str) -> Command {
    let bin = PathBuf::from(env!("CARGO_BIN_EXE_coop"));
    let path = bin
        .parent()
        .expect("binary has a parent dir")
        .join("examples")
        .join(name);
    assert!(
        path.exists(),
        "example {name} not built at {}: run the tests with scripts/test (cargo test --all-targets)",
        path.display()
    );
    Command::new(path)
}

/// Runs `cmd` with `input` on its stdin (then closed) and collects its
/// output, as `echo input | coop ...` would.
pub fn output_with_stdin(cmd: &mut Command, input: &[u8]) -> std::process::Output {
    use std::io::Write;
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    child
        .stdin
        .take()
        .expect("piped stdin")
        .write_all(input)
        .expect("write stdin");
    child.wait_with_output().expect("wait for output")
}

/// A running `coop serve`, killed on drop.
pub struct Server {
    pub child: Child,
    pub addr: std::net::SocketAddr,
}

impl Server {
    /// Starts `coop serve --port 0 <args>` and waits for its
    /// `listening on http://ADDR` (or `https://ADDR`) line on stdout.
    pub fn start(args: &[&str]) -> Server {
        Server::start_with(coop(), args)
    }

    /// `start` with `COOP_*` variables of its own: none inherited from the
    /// test's environment, `env` set.
    pub fn start_env(args: &[&str], env: &[(&str, &str)]) -> Server {
        let mut cmd = coop_clean_env();
        cmd.envs(env.iter().copied());
        Server::start_with(cmd, args)
    }

    fn start_with(mut cmd: Command, args: &[&str]) -> Server {
        let mut child = cmd
            .arg("serve")
            .args(["--port", "0"])
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn coop serve");
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            for line in lines.by_ref() {
                let Ok(line) = line else { break };
                if let Some(addr) = listening_on(&line) {
                    let _ = tx.send(addr.to_string());
                    break;
                }
            }
            // Keep draining so the server never blocks on a full pipe.
            for _ in lines {}
        });
        let addr = rx
            .recv_timeout(WAIT)
            .expect("coop serve did not print its address");
        Server {
            child,
            addr: addr.parse().expect("address parses"),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// Sends SIGTERM (graceful shutdown) and waits for the exit status.
    pub fn terminate(mut self) -> std::process::ExitStatus {
        let pid = self.child.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        let status = self.child.wait().expect("wait for coop serve");
        std::mem::forget(self);
        status
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Polls `ready` (every few milliseconds) until it holds; fails naming
/// `what` after `within`. Tests wait for a state, never for a fixed time.
pub fn wait_until(within: Duration, what: &str, mut ready: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !ready() {
        assert!(Instant::now() < deadline, "waited {within:?} for {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Subscribers the hub at `base` counts now (`/api/topics`), if it answers.
pub fn subscribers(base: &str) -> Option<u64> {
    let v: serde_json::Value = reqwest::blocking::get(format!("{base}/api/topics"))
        .and_then(|r| r.json())
        .ok()?;
    v["subscribers"].as_u64()
}

/// Waits until the hub at `base` counts `n` subscribers.
pub fn wait_subscribers(base: &str, n: u64) {
    wait_until(WAIT, &format!("{n} subscribers"), || {
        subscribers(base) == Some(n)
    });
}

/// The value of the sample `name` (with its labels, as rendered, e.g.
/// `gate_refused_total{reason="per_ip"}`) on the Prometheus page at `url`
/// (a server's base URL, `/metrics` added, or the page's own URL); `None`
/// when the page does not answer or has no such sample.
pub fn metric(url: &str, name: &str) -> Option<f64> {
    sample(&metrics_page(url)?, name)
}

/// The Prometheus page at `url` (a server's base URL, `/metrics` added, or
/// the page's own URL), if it answers.
pub fn metrics_page(url: &str) -> Option<String> {
    let url = if url.ends_with("/metrics") {
        url.to_owned()
    } else {
        format!("{}/metrics", url.trim_end_matches('/'))
    };
    reqwest::blocking::Client::builder()
        .timeout(WAIT)
        .build()
        .ok()?
        .get(url)
        .send()
        .and_then(|r| r.error_for_status())
        .and_then(|r| r.text())
        .ok()
}

/// The value of the sample `name` (with its labels, as rendered) in a
/// Prometheus text page (fetched another way than [`metric`]'s).
pub fn sample(page: &str, name: &str) -> Option<f64> {
    page.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
}

/// A `redis-server` of the test's own on a free port (no persistence),
/// killed on drop; or, where the binary is not installed, the shared one
/// at `REDIS_URL` (`child` and `port` are then `None`).
pub struct Redis {
    url: String,
    port: Option<u16>,
    child: Option<Child>,
}

impl Redis {
    /// Without the `redis-server` binary: `REDIS_URL` when `shared_ok`
    /// and it is set, else `None` after [`missing`] (which fails under CI).
    pub fn start(shared_ok: bool) -> Option<Redis> {
        Redis::start_with(&[], shared_ok)
    }

    /// [`start`](Redis::start) with more `redis-server` flags (only a
    /// server of the test's own gets them).
    pub fn start_with(flags: &[&str], shared_ok: bool) -> Option<Redis> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let spawned = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .args(flags)
            .stdout(Stdio::null())
            .spawn();
        let child = match spawned {
            Ok(child) => child,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return match std::env::var("REDIS_URL") {
                    Ok(url) if shared_ok && !url.is_empty() => {
                        eprintln!("redis-server not installed: using REDIS_URL {url}");
                        Some(Redis {
                            url,
                            port: None,
                            child: None,
                        })
                    }
                    _ => {
                        missing(if shared_ok {
                            "redis-server not installed and REDIS_URL not set"
                        } else {
                            "redis-server not installed (this test needs a server of its own)"
                        });
                        None
                    }
                };
            }
            Err(e) => panic!("start redis-server: {e}"),
        };
        // Killed on drop from here on, even if it never answers.
        let redis = Redis {
            url: format!("redis://127.0.0.1:{port}/"),
            port: Some(port),
            child: Some(child),
        };
        wait_until(WAIT, "redis-server to accept connections", || {
            std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
        });
        Some(redis)
    }

    pub fn url(&self) -> String {
        self.url.clone()
    }

    /// The port of a server of the test's own.
    pub fn port(&self) -> Option<u16> {
        self.port
    }

    /// `kill -9` (only a server of the test's own).
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Opens an NDJSON subscription; its records arrive on the receiver (which
/// disconnects when the stream ends). Empty heartbeat lines are skipped.
pub fn subscribe(url: String) -> Receiver<serde_json::Value> {
    let (tx, rx) = std::sync::mpsc::channel();
    let client = reqwest::blocking::Client::builder()
        .timeout(None)
        .build()
        .unwrap();
    let resp = client.get(&url).send().expect("subscribe");
    assert_eq!(resp.status(), 200, "subscribe to {url}");
    std::thread::spawn(move || {
        for line in BufReader::new(resp).lines() {
            let Ok(line) = line else { return };
            if line.is_empty() {
                continue;
            }
            if tx.send(serde_json::from_str(&line).unwrap()).is_err() {
                return;
            }
        }
    });
    rx
}

/// Publishes numbered messages to `url` in a thread until `stop`, keeping
/// the numbers that were acknowledged (`200 ok`).
pub struct Publisher {
    acked: Arc<Mutex<Vec<u64>>>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<u64>>,
}

impl Publisher {
    pub fn start(url: String, first: u64) -> Publisher {
        let acked = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (a, s) = (acked.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            let client = reqwest::blocking::Client::builder()
                .timeout(Duration::from_secs(5))
                .build()
                .unwrap();
            let mut seq = first;
            while !s.load(Ordering::Acquire) {
                let ok = client
                    .post(&url)
                    .body(seq.to_string())
                    .send()
                    .is_ok_and(|r| r.status() == 200);
                if ok {
                    a.lock().unwrap().push(seq);
                } else {
                    std::thread::sleep(Duration::from_millis(10));
                }
                seq += 1;
            }
            seq
        });
        Publisher {
            acked,
            stop,
            thread: Some(thread),
        }
    }

    pub fn count(&self) -> usize {
        self.acked.lock().unwrap().len()
    }

    /// Waits until `n` publishes have been acknowledged.
    pub fn wait_for(&self, n: usize) {
        wait_until(WAIT, &format!("{n} acknowledged publishes"), || {
            self.count() >= n
        });
    }

    /// Stops; returns the acknowledged numbers and the next unused one.
    pub fn stop(mut self) -> (Vec<u64>, u64) {
        self.stop.store(true, Ordering::Release);
        let next = self.thread.take().unwrap().join().unwrap();
        (self.acked.lock().unwrap().clone(), next)
    }
}

/// A subscriber's view: what it received (number, id), in arrival order.
#[derive(Default)]
pub struct Received {
    pub seqs: Vec<u64>,
    pub ids: Vec<u64>,
}

impl Received {
    /// Reads from `rx` until it ends or `until` holds for what was read.
    pub fn read(&mut self, rx: &Receiver<serde_json::Value>, until: impl Fn(&Received) -> bool) {
        while !until(self) {
            match rx.recv_timeout(WAIT) {
                Ok(rec) => {
                    let Some(msg) = rec["message"].as_str() else {
                        continue; // a notice, not a message
                    };
                    self.seqs.push(msg.parse().unwrap());
                    self.ids.push(rec["id"].as_u64().unwrap());
                }
                Err(RecvTimeoutError::Disconnected) => return,
                Err(RecvTimeoutError::Timeout) => panic!(
                    "subscriber stalled after {} messages (last id {:?})",
                    self.seqs.len(),
                    self.ids.last()
                ),
            }
        }
    }

    pub fn has_all(&self, acked: &[u64]) -> bool {
        let seen: HashSet<_> = self.seqs.iter().collect();
        acked.iter().all(|s| seen.contains(s))
    }

    /// No duplicate, ids strictly increasing, every acknowledged one there.
    pub fn check(&self, acked: &[u64]) {
        let unique: HashSet<_> = self.seqs.iter().collect();
        assert_eq!(unique.len(), self.seqs.len(), "duplicates: {:?}", self.seqs);
        assert!(
            self.ids.windows(2).all(|w| w[0] < w[1]),
            "ids out of order: {:?}",
            self.ids
        );
        assert!(self.has_all(acked), "missing acknowledged messages");
    }
}

/// A certificate authority and a leaf certificate it signed, in PEM.
pub struct Identity {
    pub ca: String,
    pub cert: String,
    pub key: String,
}

/// A new CA named `name` and a leaf for `localhost` and `127.0.0.1`.
pub fn identity(name: &str) -> Identity {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, KeyUsagePurpose};
    let ca_key = KeyPair::generate().unwrap();
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(DnType::CommonName, format!("coop test CA {name}"));
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca = ca.self_signed(&ca_key).unwrap();
    let leaf_key = KeyPair::generate().unwrap();
    let mut leaf = CertificateParams::new(vec!["localhost".into(), "127.0.0.1".into()]).unwrap();
    leaf.distinguished_name
        .push(DnType::CommonName, format!("coop test {name}"));
    let leaf = leaf.signed_by(&leaf_key, &ca, &ca_key).unwrap();
    Identity {
        ca: ca.pem(),
        cert: leaf.pem(),
        key: leaf_key.serialize_pem(),
    }
}

/// `cert.pem` and `key.pem` in `dir`, written with `id`'s leaf.
pub fn write_files(dir: &Path, id: &Identity) -> (PathBuf, PathBuf) {
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    std::fs::write(&cert, &id.cert).unwrap();
    std::fs::write(&key, &id.key).unwrap();
    (cert, key)
}

/// `coop serve --port 0 --tls-cert CERT --tls-key KEY <args>`; checks that
/// it announces an `https://` address.
pub fn serve_tls(cert: &Path, key: &Path, args: &[&str]) -> Server {
    serve_tls_logging(cert, key, args, Stdio::inherit())
}

/// [`serve_tls`] with its stderr (the log) sent to `log`.
pub fn serve_tls_logging(cert: &Path, key: &Path, args: &[&str], log: Stdio) -> Server {
    let mut child = coop()
        .args(["serve", "--port", "0"])
        .arg("--tls-cert")
        .arg(cert)
        .arg("--tls-key")
        .arg(key)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(log)
        .spawn()
        .expect("spawn coop serve");
    let mut out = BufReader::new(child.stdout.take().expect("piped stdout"));
    let mut line = String::new();
    out.read_line(&mut line).expect("read the first line");
    assert!(
        line.starts_with("coop listening on https://"),
        "unexpected: {line:?}"
    );
    let addr = listening_on(&line).unwrap().parse().unwrap();
    // Keep draining so the server never blocks on a full pipe.
    std::thread::spawn(move || std::io::copy(&mut out, &mut std::io::sink()));
    Server { child, addr }
}
