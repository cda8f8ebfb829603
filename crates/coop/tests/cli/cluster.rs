//! End-to-end: two `coop serve --redis` nodes on a `redis-server` of the
//! test's own. A subscriber on node A whose node is killed (`kill -9`)
//! moves to node B with its last id and gets every acknowledged message
//! exactly once, in order; `/healthz` on a node reports Redis going away.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::durable::{subscribe, Publisher, Received};
use crate::support::Server;

/// A `redis-server` on a free port (no persistence), killed on drop.
struct Redis {
    port: u16,
    child: Child,
}

impl Redis {
    /// `None` (and the test skips, saying so) when the binary is missing.
    fn start() -> Option<Redis> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .spawn();
        let Ok(child) = child else {
            eprintln!("redis-server not installed: skipping");
            return None;
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "redis-server did not start");
            std::thread::sleep(Duration::from_millis(10));
        }
        Some(Redis { port, child })
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn a_subscriber_moves_to_another_node_with_its_last_id_after_a_kill_9() {
    let Some(redis) = Redis::start() else { return };
    let a = Server::start(&["--redis", &redis.url()]);
    let b = Server::start(&["--redis", &redis.url()]);
    let sub = subscribe(a.url("/topics/seq?format=ndjson"));
    std::thread::sleep(Duration::from_millis(100)); // let it register

    // Published on B, received on A, until A dies mid-stream.
    let publisher = Publisher::start(b.url("/topics/seq"), 0);
    publisher.wait_for(200);
    drop(a); // SIGKILL
    let mut got = Received::default();
    got.read(&sub, |_| false);
    let last = *got.ids.last().expect("A delivered something before dying");
    publisher.wait_for(300);

    // The subscriber moves to B with its last id, while B keeps publishing.
    let sub = subscribe(b.url(&format!("/topics/seq?format=ndjson&since={last}")));
    publisher.wait_for(400);
    let (acked, _) = publisher.stop();
    got.read(&sub, |r| r.has_all(&acked));
    got.check(&acked);
}

#[test]
fn healthz_reports_redis_going_away_and_publishes_answer_503() {
    let Some(mut redis) = Redis::start() else {
        return;
    };
    let node = Server::start(&["--redis", &redis.url()]);
    let client = reqwest::blocking::Client::new();
    let health = || client.get(node.url("/healthz")).send().unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while health().status() != 200 {
        assert!(Instant::now() < deadline, "never healthy");
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = redis.child.kill();
    let _ = redis.child.wait();
    let resp = client
        .post(node.url("/topics/t"))
        .body("lost?")
        .send()
        .unwrap();
    assert_eq!(resp.status(), 503);
    assert!(resp.text().unwrap().contains("redis"));
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let resp = health();
        if resp.status() == 503 {
            assert!(resp.text().unwrap().contains("redis"));
            break;
        }
        assert!(Instant::now() < deadline, "/healthz still ok");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn an_unreachable_redis_is_a_clear_error_at_start() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port(); // closed again: nothing listens there
    let out = crate::support::coop()
        .args(["serve", "--port", "0", "--redis"])
        .arg(format!("redis://127.0.0.1:{port}/"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("cannot reach Redis"), "{err}");
}
