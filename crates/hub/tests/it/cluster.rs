//! Cluster mode (`store/redis.rs`, `broker/redis.rs`): two hubs on one real
//! `redis-server` that the test starts on a free port (and kills and
//! restarts): publish on A, receive on B; resume on B with an id from A;
//! Redis killed mid-stream: `503` while down, then every acknowledged
//! message delivered once, in order.
//!
//! Without the `redis-server` binary, the tests that need not kill Redis
//! run against `REDIS_URL` if it is set (on topics of their own, as that
//! server may be shared); the others skip, saying so, or fail under CI
//! (`support::missing`).

use std::collections::HashSet;
use std::time::{Duration, Instant};

use hub::store::redis::RedisConn;
use hub::{Config, Hub};
use tokio_util::sync::CancellationToken;

use crate::support::{client, get_json, RedisServer, Stream, TestHub, WAIT};

/// A hub node on `url`, served on 127.0.0.1:0.
pub async fn node(url: &str, config: Config) -> TestHub {
    let conn = RedisConn::connect(url).await.unwrap();
    let shutdown = CancellationToken::new();
    let hub = Hub::with_backend(config, shutdown.clone(), |c, f| conn.backend(c, f));
    let node = TestHub::serve(hub, shutdown);
    wait_healthy(&node).await;
    node
}

async fn wait_healthy(node: &TestHub) {
    tokio::time::timeout(WAIT, async {
        while node.hub.health().is_err() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("node never healthy: {:?}", node.hub.health()));
}

#[tokio::test]
async fn a_message_published_on_one_node_reaches_the_other_and_resumes_there() {
    let Some(redis) = RedisServer::start(false) else {
        return;
    };
    let farm = redis.topic("farm");
    let a = node(&redis.url(), Config::default()).await;
    let b = node(&redis.url(), Config::default()).await;

    let mut on_b = Stream::get(&b.url(&format!("/topics/{farm}.*?format=sse"))).await;
    b.wait_subscribers(1).await;
    let first = a.publish(&format!("/topics/{farm}.cow"), "moo").await;
    let second = a.publish(&format!("/topics/{farm}.pig"), "oink").await;
    assert!(second["id"].as_u64() > first["id"].as_u64());
    let ev = on_b.event().await.unwrap();
    assert_eq!(
        (ev.data(), ev.id),
        ("moo".into(), Some(first["id"].to_string()))
    );
    assert_eq!(on_b.event().await.unwrap().data(), "oink");

    // Ids are global: B's next id continues after A's.
    let third = b.publish(&format!("/topics/{farm}.cow"), "moo again").await;
    assert!(third["id"].as_u64() > second["id"].as_u64());

    // A subscriber that saw only the first message on A resumes on B.
    let mut moved = Stream::open(
        client()
            .get(b.url(&format!("/topics/{farm}.*?format=ndjson")))
            .header("last-event-id", first["id"].to_string()),
    )
    .await;
    assert_eq!(moved.json().await.unwrap()["message"], "oink");
    assert_eq!(moved.json().await.unwrap()["message"], "moo again");

    // History and stats on A reflect messages published on B.
    let stats: serde_json::Value = get_json(&a.url(&format!("/api/topics/{farm}.cow"))).await;
    assert_eq!(stats["history"], 2, "{stats}");
    assert_eq!(stats["last_id"], third["id"], "{stats}");
}

/// Publishes `n` numbered messages on `node` until `acked` holds `n`
/// acknowledged ones (503s are retried with the next number).
async fn publish_until_acked(node: &TestHub, next: &mut u64, acked: &mut Vec<u64>, n: usize) {
    let want = acked.len() + n;
    let deadline = Instant::now() + WAIT * 2;
    while acked.len() < want {
        assert!(Instant::now() < deadline, "publishes never acknowledged");
        let seq = *next;
        *next += 1;
        let resp = client()
            .post(node.url("/topics/seq"))
            .body(seq.to_string())
            .send()
            .await
            .unwrap();
        if resp.status() == 200 {
            acked.push(seq);
        } else {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

#[tokio::test]
async fn redis_killed_mid_stream_503s_then_delivers_every_acknowledged_message_once() {
    let Some(mut redis) = RedisServer::start(true) else {
        return;
    };
    if !redis.ours() {
        return;
    }
    let (a, b, mut on_a, mut on_b) = two_nodes_streaming_seq(&redis.url()).await;

    let mut next = 0;
    let mut acked = Vec::new();
    publish_until_acked(&a, &mut next, &mut acked, 50).await;

    redis.kill();
    // While Redis is down: 503 with a reason, never a false ok.
    let resp = client()
        .post(a.url("/topics/seq"))
        .body("while down")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 503);
    let reason = resp.text().await.unwrap();
    assert!(reason.to_lowercase().contains("redis"), "{reason}");
    tokio::time::timeout(WAIT, async {
        while b.hub.health().is_ok() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("/healthz reports the outage");

    redis.restart();
    publish_until_acked(&a, &mut next, &mut acked, 50).await;
    publish_until_acked(&b, &mut next, &mut acked, 50).await;
    wait_healthy(&a).await;

    for (name, sub) in [("A", &mut on_a), ("B", &mut on_b)] {
        let got = expect_all_once(name, sub, &acked).await;
        // Anything beyond the acknowledged ones is a publish whose answer
        // was lost with the connection: delivered, but never acknowledged.
        assert!(got.windows(2).all(|w| w[0] < w[1]), "{name}: {got:?}");
    }
}

/// Two nodes on `url`, each with one NDJSON subscriber of topic `seq`,
/// registered before anything is published.
async fn two_nodes_streaming_seq(url: &str) -> (TestHub, TestHub, Stream, Stream) {
    let a = node(url, Config::default()).await;
    let b = node(url, Config::default()).await;
    let on_a = Stream::get(&a.url("/topics/seq?format=ndjson")).await;
    let on_b = Stream::get(&b.url("/topics/seq?format=ndjson")).await;
    a.wait_subscribers(1).await;
    b.wait_subscribers(1).await;
    (a, b, on_a, on_b)
}

/// Reads `acked` from `sub`: each exactly once, ids increasing. Returns
/// the numbers read, in order.
async fn expect_all_once(name: &str, sub: &mut Stream, acked: &[u64]) -> Vec<u64> {
    let mut seen = HashSet::new();
    let mut got = Vec::new();
    let mut last_id = 0;
    while !acked.iter().all(|s| seen.contains(s)) {
        let rec = sub.json().await.expect("subscriber stayed connected");
        let seq: u64 = rec["message"].as_str().unwrap().parse().unwrap();
        assert!(seen.insert(seq), "{name}: {seq} delivered twice");
        got.push(seq);
        let id = rec["id"].as_u64().unwrap();
        assert!(id > last_id, "{name}: ids out of order");
        last_id = id;
    }
    got
}

#[tokio::test]
async fn nodes_whose_pubsub_connection_drops_catch_up_from_the_streams() {
    let Some(redis) = RedisServer::start(false) else {
        return;
    };
    if !redis.ours() {
        return;
    }
    let (a, b, mut on_a, mut on_b) = two_nodes_streaming_seq(&redis.url()).await;
    let mut next = 0;
    let mut acked = Vec::new();
    publish_until_acked(&a, &mut next, &mut acked, 20).await;

    // Cut every node's pub/sub connection while publishes keep succeeding:
    // what is published before the nodes resubscribe reaches their
    // subscribers only through the catch-up read of the streams.
    let client = redis::Client::open(redis.url()).unwrap();
    let mut admin = client.get_multiplexed_async_connection().await.unwrap();
    let killed: i64 = redis::cmd("CLIENT")
        .arg("KILL")
        .arg("TYPE")
        .arg("pubsub")
        .query_async(&mut admin)
        .await
        .unwrap();
    assert_eq!(killed, 2, "one pub/sub connection per node");
    publish_until_acked(&a, &mut next, &mut acked, 30).await;
    publish_until_acked(&b, &mut next, &mut acked, 30).await;

    expect_all_once("A", &mut on_a, &acked).await;
    expect_all_once("B", &mut on_b, &acked).await;
}
