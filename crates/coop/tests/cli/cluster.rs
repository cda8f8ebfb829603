//! End-to-end: two `coop serve --redis` nodes on a `redis-server` of the
//! test's own. A subscriber on node A whose node is killed (`kill -9`)
//! moves to node B with its last id and gets every acknowledged message
//! exactly once, in order; `/readyz` on a node reports Redis going away
//! (`/healthz`, liveness, stays `200`); cluster flags are checked.
//!
//! Without the `redis-server` binary, the move between nodes runs against
//! `REDIS_URL` if it is set (on a topic of its own); the test that kills
//! Redis skips, saying so, or fails under CI (`support::missing`).

use crate::support::{
    subscribe, wait_subscribers, wait_until, Publisher, Received, Redis, Server, WAIT,
};

#[test]
fn a_subscriber_moves_to_another_node_with_its_last_id_after_a_kill_9() {
    let Some(redis) = Redis::start(true) else {
        return;
    };
    // A topic of its own: a shared Redis may hold an earlier run's `seq`.
    let topic = format!("seq{}", std::process::id());
    let a = Server::start(&["--redis", &redis.url()]);
    let b = Server::start(&["--redis", &redis.url()]);
    let sub = subscribe(a.url(&format!("/topics/{topic}?format=ndjson")));
    wait_subscribers(&a.url(""), 1);

    // Published on B, received on A, until A dies mid-stream.
    let publisher = Publisher::start(b.url(&format!("/topics/{topic}")), 0);
    publisher.wait_for(200);
    drop(a); // SIGKILL
    let mut got = Received::default();
    got.read(&sub, |_| false);
    let last = *got.ids.last().expect("A delivered something before dying");
    publisher.wait_for(300);

    // The subscriber moves to B with its last id, while B keeps publishing.
    let sub = subscribe(b.url(&format!("/topics/{topic}?format=ndjson&since={last}")));
    publisher.wait_for(400);
    let (acked, _) = publisher.stop();
    got.read(&sub, |r| r.has_all(&acked));
    got.check(&acked);
}

#[test]
fn readyz_reports_redis_going_away_while_healthz_stays_ok_and_publishes_answer_503() {
    let Some(mut redis) = Redis::start(false) else {
        return;
    };
    let node = Server::start(&["--redis", &redis.url()]);
    let client = reqwest::blocking::Client::new();
    let ready = || client.get(node.url("/readyz")).send().unwrap();
    wait_until(WAIT, "the node to be ready", || ready().status() == 200);
    redis.kill();
    let resp = client
        .post(node.url("/topics/t"))
        .body("lost?")
        .send()
        .unwrap();
    assert_eq!(resp.status(), 503);
    assert!(resp.text().unwrap().contains("redis"));
    let mut reason = String::new();
    wait_until(WAIT, "/readyz to report Redis gone", || {
        let resp = ready();
        let down = resp.status() == 503;
        reason = resp.text().unwrap();
        down
    });
    assert!(reason.contains("redis"), "{reason}");
    // Liveness: the process is fine; restarting it would not bring Redis.
    let live = client.get(node.url("/healthz")).send().unwrap();
    assert_eq!(live.status(), 200);
    // A subscription is refused with the reason, not left waiting.
    let sub = client
        .get(node.url("/topics/t?format=ndjson"))
        .send()
        .unwrap();
    assert_eq!(sub.status(), 503);
    assert!(sub.text().unwrap().contains("redis"));
}

#[test]
fn cluster_flags_are_checked_before_connecting() {
    for (args, says) in [
        (vec!["--redis-sentinel", "127.0.0.1:1"], "--redis-master"),
        (
            vec!["--redis-sentinel", "nohost", "--redis-master", "m"],
            "not HOST:PORT",
        ),
        (
            vec!["--redis-min-replicas", "1"],
            "--redis-min-replicas needs cluster mode",
        ),
        (
            vec![
                "--redis",
                "redis://127.0.0.1:1/",
                "--redis-sentinel",
                "127.0.0.1:2",
                "--redis-master",
                "m",
            ],
            "cannot be used with",
        ),
    ] {
        let out = crate::support::coop()
            .args(["serve", "--port", "0"])
            .args(&args)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(says), "{args:?}: {err}");
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
