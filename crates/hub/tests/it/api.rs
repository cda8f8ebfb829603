//! Publish answers, `/api/topics`, CORS, and graceful shutdown of every
//! transport.

use futures::StreamExt;
use tokio_tungstenite::tungstenite::Message as Ws;

use crate::support::{client, get_json, Stream, TestHub, WAIT};
use hub::Config;

#[tokio::test]
async fn publish_answers_json_and_api_topics_reports_state() {
    let hub = TestHub::start(Config::default()).await;
    let _sub = Stream::get(&hub.url("/topics/a")).await;
    hub.wait_subscribers(1).await;
    let first = hub.publish("/topics/a", "1").await;
    assert_eq!(first["topic"], "a");
    assert_eq!(first["subscribers"], 1);
    let second = hub.publish("/topics/b", "2").await;
    assert_eq!(second["subscribers"], 0);
    assert!(second["id"].as_u64() > first["id"].as_u64());

    let all: serde_json::Value = get_json(&hub.url("/api/topics")).await;
    assert_eq!(all["subscribers"], 1);
    assert_eq!(all["last_id"], second["id"]);
    assert_eq!(all["topics"][0]["name"], "a");
    assert_eq!(all["topics"][0]["subscribers"], 1);
    assert_eq!(all["topics"][0]["history"], 1);
    assert_eq!(all["topics"][1]["last_id"], second["id"]);

    let one: serde_json::Value = get_json(&hub.url("/api/topics/a")).await;
    assert_eq!(one["last_id"], first["id"]);
    let missing = client()
        .get(hub.url("/api/topics/nope"))
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);
}

#[tokio::test]
async fn cors_origins_are_configurable() {
    let hub = TestHub::start(Config {
        cors_origins: vec!["https://farm.example".into()],
        ..Config::default()
    })
    .await;
    let resp = client()
        .post(hub.url("/?msg=x"))
        .header("origin", "https://farm.example")
        .send()
        .await
        .unwrap();
    assert_eq!(
        resp.headers()["access-control-allow-origin"],
        "https://farm.example"
    );
    let other = client()
        .post(hub.url("/?msg=x"))
        .header("origin", "https://evil.example")
        .send()
        .await
        .unwrap();
    assert!(other.headers().get("access-control-allow-origin").is_none());
}

#[tokio::test]
async fn shutdown_tells_every_transport_and_keeps_answered_publishes() {
    shutdown_tells_every_transport_and_keeps_answered_publishes_on(
        TestHub::start(Config::default()).await,
    )
    .await;
}

#[tokio::test]
async fn shutdown_tells_every_transport_and_keeps_answered_publishes_via_hyper() {
    shutdown_tells_every_transport_and_keeps_answered_publishes_on(
        TestHub::start_via_hyper(Config::default()).await,
    )
    .await;
}

async fn shutdown_tells_every_transport_and_keeps_answered_publishes_on(hub: TestHub) {
    let mut sse = Stream::get(&hub.url("/?format=sse")).await;
    let mut nd = Stream::get(&hub.url("/?format=ndjson")).await;
    let mut raw = Stream::get(&hub.url("/")).await;
    let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://{}/", hub.addr))
        .await
        .unwrap();
    hub.wait_subscribers(4).await;
    let last = hub.publish("/", "last words").await;
    // In cluster mode a node delivers its own publish when it comes back
    // through Redis (a tick later with several shards): a shutdown in that
    // instant ends the subscriber first, the message being in history
    // (`cluster/broker.rs`). Here the point is the last words after it.
    let id = hub::MessageId(last["id"].as_u64().unwrap());
    tokio::time::timeout(crate::support::WAIT, async {
        while hub.hub.rings().high_water() < id {
            tokio::time::sleep(std::time::Duration::from_millis(2)).await;
        }
    })
    .await
    .expect("the publish reached this node's rings");

    hub.shutdown.cancel();

    assert_eq!(sse.event().await.unwrap().data(), "last words");
    let bye = sse.event().await.unwrap();
    assert_eq!(bye.event, "shutdown");
    assert_eq!(bye.retry, Some(1000));
    sse.expect_end().await;

    assert_eq!(nd.json().await.unwrap()["message"], "last words");
    assert_eq!(nd.json().await.unwrap()["event"], "shutdown");
    nd.expect_end().await;

    assert_eq!(raw.raw_line().await.unwrap(), "last words");
    raw.expect_end().await;

    let mut close = None;
    while let Some(frame) = tokio::time::timeout(WAIT, ws.next()).await.unwrap() {
        if let Ok(Ws::Close(frame)) = frame {
            close = frame;
            break;
        }
    }
    assert_eq!(u16::from(close.expect("a close frame").code), 1001);

    // The answered publish is in history.
    let held = hub
        .hub
        .store()
        .read(&hub::TopicName::new("default").unwrap(), None)
        .await
        .unwrap();
    assert_eq!(
        held.messages.last().unwrap().id.0,
        last["id"].as_u64().unwrap()
    );
    tokio::time::timeout(WAIT, hub.server)
        .await
        .unwrap()
        .unwrap();
}

/// The fast path and hyper judge a request target by the same decoding
/// rule (the gate's): `+` in a path is a plus sign, `%2B` is one too, a
/// path that is not UTF-8 is refused. Both answer the same status and
/// reason for each of these.
#[tokio::test]
async fn both_paths_decode_targets_alike() {
    let direct = TestHub::start(Config::default()).await;
    let hyper = TestHub::start_via_hyper(Config::default()).await;
    for target in [
        "/topics/a+b",
        "/topics/a%2Bb",
        "/topics/%ff",
        "/topics/a%zz",
        "/topics/ok?since=9999999999999999999999",
        "/topics/ok?since=1+2",
    ] {
        let mut answers = Vec::new();
        for hub in [&direct, &hyper] {
            let resp = client()
                .get(hub.url(target))
                .timeout(std::time::Duration::from_secs(5))
                .send()
                .await
                .unwrap();
            let status = resp.status();
            // A subscription that opened streams forever: read only the
            // status then.
            let body = if status.is_success() {
                String::new()
            } else {
                resp.text().await.unwrap()
            };
            answers.push((status, body));
        }
        assert_eq!(answers[0], answers[1], "{target}: direct vs hyper");
    }
}
