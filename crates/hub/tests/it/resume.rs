//! Ids, history and resume: `Last-Event-ID` and `?since=` across a
//! reconnect with no gap and no duplicate, `?since=all`, and the explicit
//! gap notice when ids are no longer held.

use crate::support::{client, Stream, TestHub};
use hub::store::Retention;
use hub::Config;

#[tokio::test]
async fn last_event_id_resumes_after_a_reconnect_without_gap_or_duplicate() {
    let hub = TestHub::start(Config::default()).await;
    let url = hub.url("/topics/t?format=sse");
    let mut first = Stream::get(&url).await;
    hub.wait_subscribers(1).await;
    hub.publish("/topics/t", "1").await;
    hub.publish("/topics/t", "2").await;
    let _ = first.event().await.unwrap();
    let seen = first.event().await.unwrap();
    assert_eq!(seen.data(), "2");
    drop(first);
    hub.wait_subscribers(0).await;

    // Published while disconnected.
    hub.publish("/topics/t", "3").await;
    hub.publish("/topics/t", "4").await;
    let mut again = Stream::open(
        client()
            .get(&url)
            .header("last-event-id", seen.id.clone().unwrap()),
    )
    .await;
    hub.wait_subscribers(1).await;
    hub.publish("/topics/t", "5").await;
    let mut got = Vec::new();
    for _ in 0..3 {
        got.push(again.event().await.unwrap().data());
    }
    assert_eq!(got, ["3", "4", "5"]);
}

#[tokio::test]
async fn since_resumes_ndjson_and_since_all_replays_the_history() {
    let hub = TestHub::start(Config::default()).await;
    let a = hub.publish("/topics/t", "a").await;
    hub.publish("/topics/t", "b").await;
    hub.publish("/topics/other", "x").await;

    let mut sub =
        Stream::get(&hub.url(&format!("/topics/t?format=ndjson&since={}", a["id"]))).await;
    assert_eq!(sub.json().await.unwrap()["message"], "b");
    let mut all = Stream::get(&hub.url("/topics/t,other?format=ndjson&since=all")).await;
    let mut got = Vec::new();
    for _ in 0..3 {
        got.push(
            all.json().await.unwrap()["message"]
                .as_str()
                .unwrap()
                .to_string(),
        );
    }
    assert_eq!(got, ["a", "b", "x"]);
    // Then live, continuing the same order.
    hub.wait_subscribers(2).await;
    hub.publish("/topics/other", "y").await;
    assert_eq!(all.json().await.unwrap()["message"], "y");
}

#[tokio::test]
async fn ids_no_longer_held_are_reported_as_a_gap_not_skipped() {
    let hub = TestHub::start(Config {
        retention: Retention {
            max_count: 2,
            ..Retention::default()
        },
        ..Config::default()
    })
    .await;
    let first = hub.publish("/topics/t", "1").await;
    let dropped = hub.publish("/topics/t", "2").await;
    hub.publish("/topics/t", "3").await;
    hub.publish("/topics/t", "4").await;

    let mut sse =
        Stream::get(&hub.url(&format!("/topics/t?format=sse&since={}", first["id"]))).await;
    let gap = sse.event().await.unwrap();
    assert_eq!(gap.event, "gap");
    assert_eq!(gap.id, None, "a notice does not move Last-Event-ID");
    assert_eq!(gap.json()["after"], first["id"]);
    assert_eq!(gap.json()["dropped_through"], dropped["id"]);
    assert_eq!(sse.event().await.unwrap().data(), "3");
    assert_eq!(sse.event().await.unwrap().data(), "4");

    let mut nd =
        Stream::get(&hub.url(&format!("/topics/t?format=ndjson&since={}", first["id"]))).await;
    let rec = nd.json().await.unwrap();
    assert_eq!(rec["event"], "gap");
    assert_eq!(rec["topic"], "t");
    assert_eq!(nd.json().await.unwrap()["message"], "3");

    // Resuming from an id still held: no gap.
    let mut ok =
        Stream::get(&hub.url(&format!("/topics/t?format=ndjson&since={}", dropped["id"]))).await;
    assert_eq!(ok.json().await.unwrap()["message"], "3");
}
