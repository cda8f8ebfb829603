//! Cluster mode (`cluster/`): hub nodes on real `redis-server`s that the
//! tests start on free ports (and kill and restart): publish on A, receive
//! on B; resume on B with an id from A; topics sharded over two Redis with
//! one id order; Redis killed or its pub/sub cut mid-stream: subscribers
//! are told (`unavailable`), resume with their last id, and get every
//! acknowledged message once, in order; a Redis that comes back without
//! the newest messages (as a promoted replica may) makes resumers get a
//! gap notice naming them, and ids keep increasing.
//!
//! Without the `redis-server` binary, the tests that need not kill Redis
//! run against `REDIS_URL` if it is set (on topics of their own, as that
//! server may be shared); the others skip, saying so, or fail under CI
//! (`support::missing`).

use std::collections::HashSet;
use std::time::{Duration, Instant};

use futures::StreamExt;
use hub::cluster::{ClusterSpec, ShardSpec};
use hub::{Config, Hub};
use tokio_util::sync::CancellationToken;

use crate::support::{client, get_json, RedisServer, Stream, TestHub, WAIT};

/// A hub node on the shards `urls`, served on 127.0.0.1:0.
pub async fn node_on(urls: &[String], config: Config) -> TestHub {
    let spec = ClusterSpec {
        shards: urls.iter().map(|u| ShardSpec::Url(u.clone())).collect(),
        ..ClusterSpec::single("")
    };
    let shutdown = CancellationToken::new();
    let hub = Hub::with_storage(config, &hub::Storage::Cluster(spec), shutdown.clone())
        .await
        .unwrap();
    let node = TestHub::serve(hub, shutdown);
    wait_healthy(&node).await;
    node
}

/// A hub node on one Redis.
pub async fn node(url: &str, config: Config) -> TestHub {
    node_on(&[url.to_string()], config).await
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

/// Publishes `n` numbered messages on `topic` through `node` until `acked`
/// holds `n` more acknowledged ones (refusals are retried with the next
/// number). Returns the ids given.
async fn publish_until_acked(
    node: &TestHub,
    topic: &str,
    next: &mut u64,
    acked: &mut Vec<u64>,
    n: usize,
) -> Vec<u64> {
    let want = acked.len() + n;
    let deadline = Instant::now() + WAIT * 2;
    let mut ids = Vec::new();
    while acked.len() < want {
        assert!(Instant::now() < deadline, "publishes never acknowledged");
        let seq = *next;
        *next += 1;
        let resp = client()
            .post(node.url(&format!("/topics/{topic}")))
            .header("accept", "application/json")
            .body(seq.to_string())
            .send()
            .await
            .unwrap();
        if resp.status() == 200 {
            acked.push(seq);
            let v: serde_json::Value = resp.json().await.unwrap();
            ids.push(v["id"].as_u64().unwrap());
        } else {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    ids
}

/// A subscriber that resumes with its last id whenever its stream ends
/// (an `unavailable` notice, or the connection closing), as clients of a
/// cluster must; it records every message and gap it is given.
struct Resumer {
    url: String,
    last: Option<u64>,
    /// Message bodies (numbers) with their ids, in the order received.
    got: Vec<(u64, u64)>,
    /// `(topic, after, dropped_through)` of every gap notice.
    gaps: Vec<(String, u64, u64)>,
    /// `unavailable` notices received.
    told: usize,
    body: Option<futures::stream::BoxStream<'static, reqwest::Result<bytes::Bytes>>>,
    buf: Vec<u8>,
}

impl Resumer {
    /// Subscribes to `spec` on `node` (live, from now).
    async fn start(node: &TestHub, spec: &str) -> Resumer {
        let mut r = Resumer {
            url: node.url(&format!("/topics/{spec}?format=ndjson")),
            last: None,
            got: Vec::new(),
            gaps: Vec::new(),
            told: 0,
            body: None,
            buf: Vec::new(),
        };
        r.connect().await;
        node.wait_subscribers(1).await;
        r
    }

    /// (Re)connects, retrying refusals (`503` while the node is not
    /// ready) until [`WAIT`] passes.
    async fn connect(&mut self) {
        let deadline = Instant::now() + WAIT;
        loop {
            let mut req = client().get(&self.url);
            if let Some(last) = self.last {
                req = req.header("last-event-id", last.to_string());
            }
            match req.send().await {
                Ok(resp) if resp.status() == 200 => {
                    self.body = Some(resp.bytes_stream().boxed());
                    self.buf.clear();
                    return;
                }
                Ok(resp) => assert_eq!(resp.status(), 503, "only refusals while not ready"),
                Err(_) => {}
            }
            assert!(Instant::now() < deadline, "never subscribed again");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Reads (resuming as needed) until `done` holds of what was received.
    async fn read_until(&mut self, what: &str, done: impl Fn(&Resumer) -> bool) {
        let deadline = Instant::now() + WAIT * 2;
        while !done(self) {
            assert!(
                Instant::now() < deadline,
                "{what}: got {} messages, gaps {:?}",
                self.got.len(),
                self.gaps
            );
            if let Some(i) = self.buf.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = self.buf.drain(..=i).collect();
                if line.len() > 1 {
                    self.record(&line[..line.len() - 1]).await;
                }
                continue;
            }
            let body = self.body.as_mut().expect("connected");
            match tokio::time::timeout(WAIT, body.next()).await {
                Ok(Some(Ok(b))) => self.buf.extend_from_slice(&b),
                Ok(_) => self.connect().await,
                Err(_) => panic!("{what}: stream stalled"),
            }
        }
    }

    async fn record(&mut self, line: &[u8]) {
        let rec: serde_json::Value = serde_json::from_slice(line).unwrap();
        match rec["event"].as_str() {
            None => {
                let id = rec["id"].as_u64().unwrap();
                assert!(
                    self.last.is_none_or(|l| id > l),
                    "ids go up: {id} after {:?}",
                    self.last
                );
                self.last = Some(id);
                let n = rec["message"].as_str().unwrap().parse().unwrap();
                self.got.push((n, id));
            }
            Some("gap") => self.gaps.push((
                rec["topic"].as_str().unwrap_or("").to_string(),
                rec["after"].as_u64().unwrap(),
                rec["dropped_through"].as_u64().unwrap(),
            )),
            Some("unavailable") => {
                assert!(rec["reason"].as_str().unwrap().contains("redis"), "{rec}");
                assert_eq!(rec["last_id"].as_u64(), self.last, "{rec}");
                self.told += 1;
                self.connect().await;
            }
            other => panic!("unexpected record {other:?}: {rec}"),
        }
    }

    fn numbers(&self) -> HashSet<u64> {
        self.got.iter().map(|(n, _)| *n).collect()
    }

    /// Every message once.
    fn assert_once(&self, name: &str) {
        let mut seen = HashSet::new();
        for (n, _) in &self.got {
            assert!(seen.insert(n), "{name}: {n} delivered twice");
        }
    }
}

#[tokio::test]
async fn redis_killed_mid_stream_tells_subscribers_who_resume_and_miss_nothing() {
    let Some(mut redis) = RedisServer::start(true) else {
        return;
    };
    if !redis.ours() {
        return;
    }
    let a = node(&redis.url(), Config::default()).await;
    let b = node(&redis.url(), Config::default()).await;
    let mut on_a = Resumer::start(&a, "seq").await;
    let mut on_b = Resumer::start(&b, "seq").await;

    let mut next = 0;
    let mut acked = Vec::new();
    publish_until_acked(&a, "seq", &mut next, &mut acked, 50).await;
    for (name, sub) in [("A", &mut on_a), ("B", &mut on_b)] {
        sub.read_until(name, |s| s.got.len() >= 50).await;
    }

    redis.kill();
    // While Redis is down: 503 with a reason, never a false ok; the node
    // says it is not ready, and its subscribers are told.
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
    .expect("readiness reports the outage");

    redis.restart();
    publish_until_acked(&a, "seq", &mut next, &mut acked, 50).await;
    publish_until_acked(&b, "seq", &mut next, &mut acked, 50).await;
    wait_healthy(&a).await;

    for (name, sub) in [("A", &mut on_a), ("B", &mut on_b)] {
        let want: HashSet<u64> = acked.iter().copied().collect();
        sub.read_until(name, |s| want.is_subset(&s.numbers())).await;
        sub.assert_once(name);
        assert!(sub.told >= 1, "{name} was never told of the outage");
        assert!(sub.gaps.is_empty(), "{name}: {:?}", sub.gaps);
    }
}

#[tokio::test]
async fn nodes_whose_pubsub_connection_drops_tell_their_subscribers_who_miss_nothing() {
    let Some(redis) = RedisServer::start(false) else {
        return;
    };
    if !redis.ours() {
        return;
    }
    let a = node(&redis.url(), Config::default()).await;
    let b = node(&redis.url(), Config::default()).await;
    let mut on_a = Resumer::start(&a, "seq").await;
    let mut on_b = Resumer::start(&b, "seq").await;
    let mut next = 0;
    let mut acked = Vec::new();
    publish_until_acked(&a, "seq", &mut next, &mut acked, 20).await;

    // Cut every node's pub/sub connection while publishes keep succeeding.
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
    publish_until_acked(&a, "seq", &mut next, &mut acked, 30).await;
    publish_until_acked(&b, "seq", &mut next, &mut acked, 30).await;

    for (name, sub) in [("A", &mut on_a), ("B", &mut on_b)] {
        let want: HashSet<u64> = acked.iter().copied().collect();
        sub.read_until(name, |s| want.is_subset(&s.numbers()) && s.told >= 1)
            .await;
        sub.assert_once(name);
        assert!(sub.gaps.is_empty(), "{name}: {:?}", sub.gaps);
    }
}

#[tokio::test]
async fn a_redis_back_without_the_newest_messages_gives_resumers_a_gap_and_ids_keep_rising() {
    // As a promoted replica that missed the last writes: Redis restarts
    // empty (no persistence) on the same port.
    let Some(mut redis) = RedisServer::start(false) else {
        return;
    };
    if !redis.ours() {
        return;
    }
    let a = node(&redis.url(), Config::default()).await;
    let mut live = Resumer::start(&a, "seq").await;
    let mut next = 0;
    let mut acked = Vec::new();
    let ids = publish_until_acked(&a, "seq", &mut next, &mut acked, 10).await;
    live.read_until("live", |s| s.got.len() >= 10).await;

    redis.restart();
    wait_healthy(&a).await;
    let after = publish_until_acked(&a, "seq", &mut next, &mut acked, 3).await;
    assert!(
        after[0] > ids[9],
        "ids went back: {} after {}",
        after[0],
        ids[9]
    );
    // A subscriber that had only the first five resumes: it is told the
    // rest are gone, then gets what followed.
    let mut resumer = Resumer {
        last: Some(ids[4]),
        ..Resumer::start(&a, "seq").await
    };
    resumer.connect().await;
    resumer.read_until("resumer", |s| s.got.len() >= 3).await;
    assert_eq!(resumer.gaps, [("seq".to_string(), ids[4], ids[9])]);
    assert_eq!(
        resumer.got.iter().map(|(_, id)| *id).collect::<Vec<_>>(),
        after
    );
    // The live subscriber was told, resumed with the last id it had (the
    // newest lost one): it missed nothing it had not seen.
    live.read_until("live", |s| s.got.len() >= 13).await;
    assert!(live.told >= 1);
    assert!(live.gaps.is_empty(), "{:?}", live.gaps);
}

#[tokio::test]
async fn topics_sharded_over_two_redis_keep_one_id_order_and_resume_exactly() {
    let (Some(r1), Some(r2)) = (RedisServer::start(false), RedisServer::start(false)) else {
        return;
    };
    if !r1.ours() || !r2.ours() {
        return;
    }
    let shards = [r1.url(), r2.url()];
    let a = node_on(&shards, Config::default()).await;
    let b = node_on(&shards, Config::default()).await;
    // Topics that land on each shard.
    let topics: Vec<String> = (0..40).map(|i| format!("farm.t{i}")).collect();
    let on = |s: usize| {
        topics
            .iter()
            .filter(|t| hub::cluster::shard_of(t, 2) == s)
            .cloned()
            .collect::<Vec<_>>()
    };
    let (zero, one) = (on(0), on(1));
    assert!(!zero.is_empty() && !one.is_empty());

    let mut all = Resumer::start(&b, "farm.*").await;
    // Publishers on both nodes, topics on both shards, concurrently.
    let mut tasks = Vec::new();
    for (i, node) in [&a, &b].into_iter().enumerate() {
        let url = node.url("");
        let zero = zero.clone();
        let one = one.clone();
        tasks.push(tokio::spawn(async move {
            let mut ids = Vec::new();
            for k in 0..100u64 {
                let topic = if k % 2 == 0 { &zero } else { &one }
                    [(k as usize) % zero.len().min(one.len())]
                .clone();
                let n = i as u64 * 1000 + k;
                let resp = client()
                    .post(format!("{url}/topics/{topic}"))
                    .header("accept", "application/json")
                    .body(n.to_string())
                    .send()
                    .await
                    .unwrap();
                assert_eq!(resp.status(), 200);
                let v: serde_json::Value = resp.json().await.unwrap();
                ids.push((v["id"].as_u64().unwrap(), topic));
            }
            ids
        }));
    }
    let mut ids = Vec::new();
    for t in tasks {
        ids.extend(t.await.unwrap());
    }
    // Ids are unique across shards, and each carries its shard.
    let unique: HashSet<u64> = ids.iter().map(|(id, _)| *id).collect();
    assert_eq!(unique.len(), 200);
    for (id, topic) in &ids {
        assert_eq!(
            *id as usize % 2,
            hub::cluster::shard_of(topic, 2),
            "{id} {topic}"
        );
    }
    // One subscriber over both shards: everything, in id order (checked
    // by the reader), once.
    all.read_until("pattern", |s| s.got.len() >= 200).await;
    all.assert_once("pattern");

    // Resume from the middle, on the other node, with one id: exactly the
    // rest, in order, nothing twice, no gap.
    let mid = all.got[99].1;
    let mut rest = Resumer {
        last: Some(mid),
        ..Resumer::start(&a, "farm.*").await
    };
    rest.connect().await;
    rest.read_until("resume", |s| s.got.len() >= 100).await;
    assert_eq!(rest.got, all.got[100..].to_vec());
    assert!(rest.gaps.is_empty());

    // Stats and the topic list come from both shards.
    let list: serde_json::Value = get_json(&a.url("/api/topics")).await;
    let names = list.to_string();
    assert!(
        zero.iter()
            .chain(one.iter())
            .take(4)
            .all(|t| names.contains(t.as_str())),
        "{list}"
    );
}
