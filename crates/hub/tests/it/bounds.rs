//! What a client can make the hub hold is bounded: the memory budget
//! (eviction of the oldest, gap and lagged notices, `503` when nothing is
//! left to evict), topics named by subscriptions (`--max-topics`), topics
//! per subscription, WebSocket frames (closed with 1009), and history read
//! a page at a time.

use std::time::Duration;

use futures::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message as WsMessage;

use crate::support::{client, Stream, TestHub, WAIT};
use hub::Config;

fn memory_backend() -> bool {
    std::env::var("HUB_TEST_BACKEND").map_or(true, |b| b.is_empty() || b == "memory")
}

#[tokio::test]
async fn the_memory_budget_evicts_the_oldest_history_and_resumers_hear_of_the_gap() {
    let limit = 1 << 20;
    let hub = TestHub::start(Config {
        max_memory: limit,
        ..Config::default()
    })
    .await;
    let body = "m".repeat(32 * 1024);
    let first = hub.publish("/topics/t0", &body).await;
    // 4 MiB of messages over 128 topics into a 1 MiB budget.
    for i in 1..128 {
        hub.publish(&format!("/topics/t{i}"), &body).await;
        let used = hub.hub.rings().budget().used();
        assert!(
            used <= limit + 2 * body.len(),
            "budget {limit} B, holding {used} B after {i} publishes"
        );
    }
    if !memory_backend() {
        // Durable and cluster history live outside this process: nothing
        // of it is held, so nothing is evicted.
        return;
    }
    // The first topic's message went first: a resume from before it hears
    // of the gap, and `since=all` finds nothing of it.
    let before = first["id"].as_u64().unwrap() - 1;
    let url = hub.url(&format!("/topics/t0?format=ndjson&since={before}"));
    let mut sub = Stream::get(&url).await;
    let notice = sub.json().await.unwrap();
    assert_eq!(notice["event"], "gap", "{notice}");
    // (The topic was forgotten once empty: the store reports the newest
    // id any forgotten topic lost, which covers this one.)
    assert!(
        notice["dropped_through"].as_u64() >= first["id"].as_u64(),
        "{notice} covers {first}"
    );
    let held: serde_json::Value = client()
        .get(hub.url("/api/topics"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let held = held["topics"].as_array().unwrap().len();
    assert!(
        (20..=40).contains(&held),
        "about 1 MiB / 32 KiB topics still held, not {held}"
    );
}

#[tokio::test]
async fn a_stalled_subscriber_cannot_pin_memory_past_the_budget() {
    let limit = 1 << 20;
    let hub = TestHub::start(Config {
        max_memory: limit,
        ..Config::default()
    })
    .await;
    // A subscriber that never reads: its socket buffers fill, then the ring
    // holds what it has not taken.
    let stalled = std::net::TcpStream::connect(hub.addr).unwrap();
    {
        use std::io::Write;
        (&stalled)
            .write_all(b"GET /topics/t HTTP/1.1\r\nhost: hub\r\n\r\n")
            .unwrap();
    }
    hub.wait_subscribers(1).await;
    let body = "s".repeat(60 * 1024);
    let mut refused = 0;
    for _ in 0..200 {
        let resp = client()
            .post(hub.url("/topics/t"))
            .header("accept", "application/json")
            .body(body.clone())
            .send()
            .await
            .unwrap();
        match resp.status().as_u16() {
            200 => {
                // In cluster mode the message reaches the rings after the
                // publish is answered (through Redis), so after the
                // eviction this publish made: measure once it is there,
                // or a loaded machine's backlog of deliveries is counted
                // as if no eviction would follow it.
                let id = resp.json::<serde_json::Value>().await.unwrap()["id"]
                    .as_u64()
                    .unwrap();
                hub.wait_delivered(id).await;
            }
            503 => {
                refused += 1;
                let reason = resp.text().await.unwrap();
                assert!(reason.contains("memory budget"), "{reason}");
            }
            other => panic!("unexpected status {other}"),
        }
        let used = hub.hub.rings().budget().used();
        // The batch being written to the socket may outlive its eviction
        // (a body and its encoding, 64 KiB and a message); nothing else does.
        assert!(
            used <= limit + 4 * (64 * 1024 + body.len()),
            "budget {limit} B, holding {used} B with a stalled subscriber"
        );
    }
    // It holds at most one batch (`BATCH_BYTES` and a message) beyond the
    // budget, so eviction always makes room.
    assert_eq!(refused, 0, "a stalled reader does not stop publishing");
    drop(stalled);
}

#[tokio::test]
async fn topics_named_by_subscriptions_count_toward_max_topics_and_per_subscription() {
    let hub = TestHub::start(Config {
        max_topics: 10,
        max_subscription_topics: 8,
        ..Config::default()
    })
    .await;
    let many: Vec<String> = (0..9).map(|i| format!("q{i}")).collect();
    let resp = client()
        .get(hub.url(&format!("/topics/{}", many.join(","))))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    let reason = resp.text().await.unwrap();
    assert!(reason.contains("at most 8"), "{reason}");

    let _a = Stream::get(&hub.url(&format!("/topics/{}", many[..8].join(",")))).await;
    hub.wait_subscribers(1).await;
    let resp = client()
        .get(hub.url("/topics/x1,x2,x3"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 503, "8 live topics + 3 new > 10");
    assert!(resp.text().await.unwrap().contains("too many topics"));
    // Topics that already have subscribers cost nothing more.
    let _b = Stream::get(&hub.url("/topics/q0,q1,x1,x2")).await;
    hub.wait_subscribers(2).await;
}

#[tokio::test]
async fn a_websocket_subscriber_sending_too_much_is_closed_with_1009() {
    a_websocket_subscriber_sending_too_much_is_closed_with_1009_on(
        TestHub::start(Config::default()).await,
    )
    .await;
}

#[tokio::test]
async fn a_websocket_subscriber_sending_too_much_is_closed_with_1009_via_hyper() {
    a_websocket_subscriber_sending_too_much_is_closed_with_1009_on(
        TestHub::start_via_hyper(Config::default()).await,
    )
    .await;
}

async fn a_websocket_subscriber_sending_too_much_is_closed_with_1009_on(hub: TestHub) {
    let url = format!("ws://{}/topics/t", hub.addr);
    let (mut ws, _) = tokio_tungstenite::connect_async(url).await.unwrap();
    hub.wait_subscribers(1).await;
    let big = "x".repeat(hub::server::WS_MAX_INCOMING + 1);
    ws.send(WsMessage::Text(big.into())).await.unwrap();
    let close = tokio::time::timeout(WAIT, async {
        while let Some(msg) = ws.next().await {
            match msg {
                Ok(WsMessage::Close(frame)) => return frame,
                Ok(_) => continue,
                Err(e) => panic!("no close frame: {e}"),
            }
        }
        None
    })
    .await
    .expect("closed within the wait");
    let frame = close.expect("a close frame");
    assert_eq!(u16::from(frame.code), 1009, "{frame:?}");
    hub.wait_subscribers(0).await;
}

#[tokio::test]
async fn unfinished_websocket_fragments_are_bounded_too() {
    unfinished_websocket_fragments_are_bounded_too_on(TestHub::start(Config::default()).await)
        .await;
}

#[tokio::test]
async fn unfinished_websocket_fragments_are_bounded_too_via_hyper() {
    unfinished_websocket_fragments_are_bounded_too_on(
        TestHub::start_via_hyper(Config::default()).await,
    )
    .await;
}

async fn unfinished_websocket_fragments_are_bounded_too_on(hub: TestHub) {
    let mut s = tokio::net::TcpStream::connect(hub.addr).await.unwrap();
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    s.write_all(
        b"GET /topics/t HTTP/1.1\r\nhost: hub\r\nupgrade: websocket\r\nconnection: upgrade\r\n\
          sec-websocket-version: 13\r\nsec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
    )
    .await
    .unwrap();
    let mut head = vec![0u8; 1024];
    let n = s.read(&mut head).await.unwrap();
    assert!(String::from_utf8_lossy(&head[..n]).starts_with("HTTP/1.1 101"));
    // Masked text fragments (FIN clear), 1 KiB each, never finished.
    let mut frame = vec![0x01u8, 0x80 | 126, 0x04, 0x00, 0, 0, 0, 0];
    frame.extend(std::iter::repeat_n(b'a', 1024));
    let cont = {
        let mut c = frame.clone();
        c[0] = 0x00;
        c
    };
    let mut sent = 0;
    let mut closed = false;
    s.write_all(&frame).await.unwrap();
    for _ in 0..64 {
        if s.write_all(&cont).await.is_err() {
            closed = true;
            break;
        }
        sent += 1024;
    }
    // The hub answers with a close frame (0x88) carrying 1009 (0x03f1).
    let mut buf = vec![0u8; 256];
    let n = tokio::time::timeout(WAIT, s.read(&mut buf))
        .await
        .expect("an answer within the wait")
        .unwrap_or(0);
    assert!(
        closed || (n >= 4 && buf[0] == 0x88 && buf[2..4] == [0x03, 0xf1]),
        "after {sent} bytes of fragments: {:?}",
        &buf[..n]
    );
    let _ = Duration::ZERO;
}

#[tokio::test]
async fn pattern_subscriptions_past_max_patterns_get_503() {
    let hub = TestHub::start(Config {
        max_patterns: 2,
        ..Config::default()
    })
    .await;
    let _a = Stream::get(&hub.url("/topics/a.*,b.*")).await;
    hub.wait_subscribers(1).await;
    let resp = client().get(hub.url("/topics/c.*")).send().await.unwrap();
    assert_eq!(resp.status(), 503);
    assert!(resp.text().await.unwrap().contains("pattern"));
    // Plain topics are not patterns.
    let _b = Stream::get(&hub.url("/topics/c")).await;
    hub.wait_subscribers(2).await;
}
