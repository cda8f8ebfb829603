//! Shared helpers: run the built binary, start `coop serve` on port 0, find
//! built examples.

#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

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
            .recv_timeout(Duration::from_secs(20))
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
    let deadline = std::time::Instant::now() + within;
    while !ready() {
        assert!(
            std::time::Instant::now() < deadline,
            "waited {within:?} for {what}"
        );
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
    wait_until(Duration::from_secs(20), &format!("{n} subscribers"), || {
        subscribers(base) == Some(n)
    });
}
