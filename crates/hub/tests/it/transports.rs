//! Every transport end to end on the same URL, including what each does
//! with a message that contains line breaks; topics, several topics in one
//! subscription, and patterns (also matching topics created later).

use futures::StreamExt;
use tokio_tungstenite::tungstenite::Message as Ws;

use crate::support::{client, Stream, TestHub, WAIT};
use hub::Config;

const MULTI: &str = "line one\nline two\r\nline three";

#[tokio::test]
async fn sse_carries_ids_events_topics_and_multi_line_data() {
    sse_carries_ids_events_topics_and_multi_line_data_on(TestHub::start(Config::default()).await)
        .await;
}

#[tokio::test]
async fn sse_carries_ids_events_topics_and_multi_line_data_via_hyper() {
    sse_carries_ids_events_topics_and_multi_line_data_on(
        TestHub::start_via_hyper(Config::default()).await,
    )
    .await;
}

async fn sse_carries_ids_events_topics_and_multi_line_data_on(hub: TestHub) {
    let mut sub = Stream::open(
        client()
            .get(hub.url("/topics/news"))
            .header("accept", "text/event-stream"),
    )
    .await;
    assert_eq!(sub.resp_headers["content-type"], "text/event-stream");
    hub.wait_subscribers(1).await;
    let a = hub.publish("/topics/news", MULTI).await;
    let ev = sub.event().await.unwrap();
    assert_eq!(ev.id.as_deref(), Some(a["id"].to_string().as_str()));
    assert_eq!(ev.event, "message");
    assert_eq!(ev.topic, "news");
    // Every line break becomes a new data line; EventSource joins with \n.
    assert_eq!(ev.data, ["line one", "line two", "line three"]);
    assert_eq!(ev.data(), "line one\nline two\nline three");
}

#[tokio::test]
async fn sse_json_gives_browsers_each_messages_topic_under_a_pattern() {
    sse_json_gives_browsers_each_messages_topic_under_a_pattern_on(
        TestHub::start(Config::default()).await,
    )
    .await;
}

#[tokio::test]
async fn sse_json_gives_browsers_each_messages_topic_under_a_pattern_via_hyper() {
    sse_json_gives_browsers_each_messages_topic_under_a_pattern_on(
        TestHub::start_via_hyper(Config::default()).await,
    )
    .await;
}

async fn sse_json_gives_browsers_each_messages_topic_under_a_pattern_on(hub: TestHub) {
    let mut sub = Stream::get(&hub.url("/topics/farm.*?format=sse-json")).await;
    assert_eq!(sub.resp_headers["content-type"], "text/event-stream");
    hub.wait_subscribers(1).await;
    let cow = hub.publish("/topics/farm.cow", "Moo!").await;
    let pig = hub.publish("/topics/farm.pig", MULTI).await;
    for (answer, topic, message) in [(cow, "farm.cow", "Moo!"), (pig, "farm.pig", MULTI)] {
        let ev = sub.event().await.unwrap();
        assert_eq!(ev.id.as_deref(), Some(answer["id"].to_string().as_str()));
        assert_eq!(ev.event, "message");
        // One data line: the NDJSON record, line breaks escaped in it.
        assert_eq!(ev.data.len(), 1, "{:?}", ev.data);
        let rec = ev.json();
        assert_eq!(rec["id"], answer["id"]);
        assert_eq!(rec["topic"], topic);
        assert_eq!(rec["message"], message);
    }
    // Control events stay SSE events, as with `format=sse`.
    hub.shutdown.cancel();
    assert_eq!(sub.event().await.unwrap().event, "shutdown");
}

#[tokio::test(start_paused = false)]
async fn sse_sends_heartbeat_comments_when_idle() {
    let hub = TestHub::start(Config {
        heartbeat: std::time::Duration::from_millis(50),
        ..Config::default()
    })
    .await;
    let mut sub = Stream::get(&hub.url("/?format=sse")).await;
    assert_eq!(sub.until(b"retry: 2000\n").await.unwrap(), b"");
    assert_eq!(sub.until(b": hello\n\n").await.unwrap(), b"");
    assert_eq!(sub.until(b": hb\n\n").await.unwrap(), b"");
}

#[tokio::test]
async fn ndjson_escapes_line_breaks_exactly() {
    let hub = TestHub::start(Config::default()).await;
    let mut sub = Stream::open(
        client()
            .get(hub.url("/topics/news"))
            .header("accept", "application/x-ndjson"),
    )
    .await;
    hub.wait_subscribers(1).await;
    let a = hub.publish("/topics/news", MULTI).await;
    let rec = sub.json().await.unwrap();
    assert_eq!(rec["id"], a["id"]);
    assert_eq!(rec["topic"], "news");
    assert_eq!(rec["message"], MULTI);
    assert!(rec["time"].as_u64().unwrap() > 1_600_000_000_000);
}

#[tokio::test]
async fn raw_sends_line_breaks_as_they_are() {
    let hub = TestHub::start(Config::default()).await;
    let mut sub = Stream::get(&hub.url("/topics/news?format=raw")).await;
    hub.wait_subscribers(1).await;
    hub.publish("/topics/news", MULTI).await;
    assert_eq!(
        sub.until(b"line three\r\n").await.unwrap(),
        b"line one\nline two\r\n"
    );
}

#[tokio::test]
async fn websocket_upgrade_on_the_same_url_sends_json_frames() {
    websocket_upgrade_on_the_same_url_sends_json_frames_on(TestHub::start(Config::default()).await)
        .await;
}

#[tokio::test]
async fn websocket_upgrade_on_the_same_url_sends_json_frames_via_hyper() {
    websocket_upgrade_on_the_same_url_sends_json_frames_on(
        TestHub::start_via_hyper(Config::default()).await,
    )
    .await;
}

async fn websocket_upgrade_on_the_same_url_sends_json_frames_on(hub: TestHub) {
    let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://{}/topics/news", hub.addr))
        .await
        .unwrap();
    hub.wait_subscribers(1).await;
    let a = hub.publish("/topics/news", MULTI).await;
    hub.publish("/topics/news", "second").await;
    for want in [MULTI, "second"] {
        let frame = tokio::time::timeout(WAIT, ws.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        let Ws::Text(text) = frame else {
            panic!("expected text, got {frame:?}")
        };
        let rec: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(rec["message"], want);
        if want == MULTI {
            assert_eq!(rec["id"], a["id"]);
        }
    }
    ws.close(None).await.unwrap();
    hub.wait_subscribers(0).await;
}

#[tokio::test]
async fn several_topics_and_patterns_in_one_subscription_arrive_in_id_order() {
    let hub = TestHub::start(Config::default()).await;
    let mut sub = Stream::get(&hub.url("/topics/news,farm.*?format=ndjson")).await;
    hub.wait_subscribers(1).await;
    // farm.pig did not exist when the subscription started.
    for (path, msg) in [
        ("/topics/news", "n1"),
        ("/topics/farm.cow", "moo"),
        ("/topics/zoo", "not for us"),
        ("/topics/farm.pig.piglet", "not one segment"),
        ("/topics/farm.pig", "oink"),
        ("/topics/news", "n2"),
    ] {
        hub.publish(path, msg).await;
    }
    let mut got = Vec::new();
    let mut last_id = 0;
    for _ in 0..4 {
        let rec = sub.json().await.unwrap();
        let id = rec["id"].as_u64().unwrap();
        assert!(id > last_id, "ids increase");
        last_id = id;
        got.push(format!(
            "{}:{}",
            rec["topic"].as_str().unwrap(),
            rec["message"].as_str().unwrap()
        ));
    }
    assert_eq!(got, ["news:n1", "farm.cow:moo", "farm.pig:oink", "news:n2"]);
}

#[tokio::test]
async fn double_star_patterns_cross_segments() {
    let hub = TestHub::start(Config::default()).await;
    let mut sub = Stream::get(&hub.url("/topics/farm.**?format=ndjson")).await;
    hub.wait_subscribers(1).await;
    hub.publish("/topics/farm.pig.piglet", "squeak").await;
    assert_eq!(sub.json().await.unwrap()["topic"], "farm.pig.piglet");
}

#[tokio::test]
async fn bad_names_formats_and_since_are_400_with_a_reason() {
    let hub = TestHub::start(Config::default()).await;
    for (method, path, reason) in [
        ("GET", "/topics/a%20b", "contains ' '"),
        ("GET", "/topics/a..b", "empty segment"),
        ("GET", "/topics/a,", "empty topic name"),
        ("GET", "/topics/ok?format=xml", "unknown format"),
        ("GET", "/topics/ok?since=yesterday", "bad since"),
        ("POST", "/topics/a,b", "publish to one topic"),
        ("POST", "/topics/farm.*", "publish to one topic"),
    ] {
        let req = client().request(method.parse().unwrap(), hub.url(path));
        let resp = req.send().await.unwrap();
        assert_eq!(resp.status(), 400, "{method} {path}");
        let body = resp.text().await.unwrap();
        assert!(body.contains(reason), "{method} {path}: {body:?}");
    }
    let long = "x".repeat(129);
    let resp = client()
        .get(hub.url(&format!("/topics/{long}")))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
}
