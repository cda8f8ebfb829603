//! Slow subscribers: a reader that stops reading falls off its topic's
//! ring, is cut off with a notice naming the last id it got, and never
//! slows the publisher or a fast reader, who loses nothing.

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::support::{client, Stream, TestHub, WAIT};
use hub::Config;

#[tokio::test]
async fn a_stalled_subscriber_is_cut_off_while_a_fast_one_loses_nothing() {
    a_stalled_subscriber_is_cut_off_while_a_fast_one_loses_nothing_on(
        TestHub::start(Config {
            buffer: 16,
            ..Config::default()
        })
        .await,
    )
    .await;
}

#[tokio::test]
async fn a_stalled_subscriber_is_cut_off_while_a_fast_one_loses_nothing_via_hyper() {
    a_stalled_subscriber_is_cut_off_while_a_fast_one_loses_nothing_on(
        TestHub::start_via_hyper(Config {
            buffer: 16,
            ..Config::default()
        })
        .await,
    )
    .await;
}

async fn a_stalled_subscriber_is_cut_off_while_a_fast_one_loses_nothing_on(hub: TestHub) {
    // The stalled reader: a socket with a tiny receive buffer that reads
    // nothing until the end.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let mut stalled = socket.connect(hub.addr).await.unwrap();
    stalled
        .write_all(b"GET /topics/t?format=sse HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut fast = Stream::get(&hub.url("/topics/t?format=ndjson")).await;
    hub.wait_subscribers(2).await;

    let payload = "x".repeat(16 * 1024);
    let n = 400; // 6.4 MB: far more than the socket buffers and the ring.
    let publisher = {
        let url = hub.url("/topics/t");
        let payload = payload.clone();
        tokio::spawn(async move {
            let http = client();
            for i in 0..n {
                let resp = http
                    .post(&url)
                    .body(format!("{i} {payload}"))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(resp.status(), 200);
            }
        })
    };
    for i in 0..n {
        let rec = fast.json().await.unwrap();
        let msg = rec["message"].as_str().unwrap();
        assert!(
            msg.starts_with(&format!("{i} ")),
            "fast reader got message {i} in order"
        );
    }
    tokio::time::timeout(WAIT, publisher)
        .await
        .unwrap()
        .unwrap();
    // One more publish wakes the stalled subscriber's task, which finds its
    // cursor off the ring.
    hub.publish("/topics/t", "wake").await;

    // Now the stalled reader reads: what it got, then the notice, then EOF.
    let mut got = Vec::new();
    tokio::time::timeout(WAIT, stalled.read_to_end(&mut got))
        .await
        .unwrap()
        .unwrap();
    let text = String::from_utf8_lossy(&got);
    let notice = text
        .split("event: lagged\ndata: ")
        .nth(1)
        .expect("a lagged notice at the end");
    let notice: serde_json::Value =
        serde_json::from_str(notice.split('\n').next().unwrap()).unwrap();
    let last_id = notice["last_id"]
        .as_u64()
        .expect("the notice names the last id");
    let last_sent = text
        .rsplit("id: ")
        .next()
        .and_then(|s| s.split('\n').next())
        .and_then(|s| s.parse::<u64>().ok())
        .expect("it got some messages before");
    assert_eq!(
        last_id, last_sent,
        "the notice names the last id it was sent"
    );
    assert!(
        text.matches("event: message").count() < n,
        "it did not get everything"
    );
    hub.wait_subscribers(1).await;
}
