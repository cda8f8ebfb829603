//! WebSocket subscribers, frame by frame, on both paths: the direct one
//! (the hub owns the socket after its own `101`) and hyper's (axum and
//! tungstenite). Each test runs twice, as `…::direct` and `…::via_hyper`,
//! and both must answer alike: pings get pongs, a close gets a close,
//! fragments are read within 4 KiB, too much is 1009, broken framing 1002,
//! a stalled reader is dropped after `--write-timeout`, a lagging one gets
//! 1008 naming the last id it was sent.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::support::{client_frame, ws_request, RawWs, TestHub, WAIT};
use hub::Config;

/// Defines `mod $name { direct, via_hyper }`: `$on` against a hub started
/// with `$config` on each path.
macro_rules! on_both_paths {
    ($name:ident, $config:expr, $on:ident) => {
        mod $name {
            use super::*;

            #[tokio::test]
            async fn direct() {
                $on(TestHub::start($config).await).await;
            }

            #[tokio::test]
            async fn via_hyper() {
                $on(TestHub::start_via_hyper($config).await).await;
            }
        }
    };
}

/// The `message` of a text frame's NDJSON record.
fn message_of(frame: &crate::support::Frame) -> String {
    assert_eq!(frame.opcode, 0x1, "a text frame: {frame:?}");
    let rec: serde_json::Value = serde_json::from_slice(&frame.payload).unwrap();
    rec["message"].as_str().unwrap().to_string()
}

on_both_paths!(a_ping_gets_a_pong, Config::default(), ping_gets_pong_on);

async fn ping_gets_pong_on(hub: TestHub) {
    let mut ws = RawWs::connect(hub.addr, "/topics/t").await;
    hub.wait_subscribers(1).await;
    ws.send(0x89, b"are you there").await;
    let pong = ws.next_non_ping().await.expect("a pong");
    assert_eq!(pong.opcode, 0xA);
    assert_eq!(pong.payload, b"are you there");
    // The subscription goes on.
    hub.publish("/topics/t", "after the ping").await;
    let frame = ws.next_non_ping().await.unwrap();
    assert_eq!(message_of(&frame), "after the ping");
}

on_both_paths!(a_close_gets_a_close, Config::default(), close_gets_close_on);

async fn close_gets_close_on(hub: TestHub) {
    let mut ws = RawWs::connect(hub.addr, "/topics/t").await;
    hub.wait_subscribers(1).await;
    let mut payload = 1000u16.to_be_bytes().to_vec();
    payload.extend_from_slice(b"bye");
    ws.send(0x88, &payload).await;
    let close = ws.next_non_ping().await.expect("a close frame");
    assert_eq!(close.close_code(), 1000, "the code echoed");
    assert_eq!(ws.frame().await, None, "then the end");
    hub.wait_subscribers(0).await;
}

on_both_paths!(
    a_masked_fragmented_message_is_read_and_dropped,
    Config::default(),
    fragments_on
);

async fn fragments_on(hub: TestHub) {
    let mut ws = RawWs::connect(hub.addr, "/topics/t").await;
    hub.wait_subscribers(1).await;
    // 3,000 bytes in three fragments, a ping between them (control frames
    // may interleave), each sent in two writes.
    for (first, payload) in [
        (0x01, vec![b'a'; 1000]),
        (0x89, b"mid".to_vec()),
        (0x00, vec![b'b'; 1000]),
        (0x80, vec![b'c'; 1000]),
    ] {
        let frame = client_frame(first, &payload, true);
        let (a, b) = frame.split_at(frame.len() / 2);
        ws.send_raw(a).await;
        tokio::time::sleep(Duration::from_millis(5)).await;
        ws.send_raw(b).await;
    }
    let pong = ws.next_non_ping().await.unwrap();
    assert_eq!((pong.opcode, &pong.payload[..]), (0xA, &b"mid"[..]));
    hub.publish("/topics/t", "still here").await;
    assert_eq!(message_of(&ws.next_non_ping().await.unwrap()), "still here");
    hub.wait_subscribers(1).await;
}

on_both_paths!(
    five_kib_from_a_client_is_1009,
    Config::default(),
    too_big_on
);

async fn too_big_on(hub: TestHub) {
    let mut ws = RawWs::connect(hub.addr, "/topics/t").await;
    hub.wait_subscribers(1).await;
    ws.send(0x81, &vec![b'x'; 5 * 1024]).await;
    let close = ws.next_non_ping().await.expect("a close frame");
    assert_eq!(close.close_code(), 1009, "{}", close.text());
    hub.wait_subscribers(0).await;
}

on_both_paths!(
    an_unmasked_client_frame_is_1002,
    Config::default(),
    unmasked_on
);

async fn unmasked_on(hub: TestHub) {
    let mut ws = RawWs::connect(hub.addr, "/topics/t").await;
    hub.wait_subscribers(1).await;
    ws.send_raw(&client_frame(0x81, b"hello", false)).await;
    let close = ws.next_non_ping().await.expect("a close frame");
    assert_eq!(close.close_code(), 1002, "{}", close.text());
    hub.wait_subscribers(0).await;
}

on_both_paths!(
    heartbeats_are_pings,
    Config {
        heartbeat: Duration::from_millis(50),
        ..Config::default()
    },
    heartbeats_on
);

async fn heartbeats_on(hub: TestHub) {
    let mut ws = RawWs::connect(hub.addr, "/topics/t").await;
    let ping = ws.frame().await.unwrap();
    assert_eq!((ping.opcode, ping.payload.len()), (0x9, 0));
}

on_both_paths!(
    a_stalled_subscriber_is_dropped_after_the_write_timeout,
    Config {
        write_timeout: Duration::from_secs(1),
        ..Config::default()
    },
    stalled_on
);

async fn stalled_on(hub: TestHub) {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let stream = socket.connect(hub.addr).await.unwrap();
    let stalled = RawWs::upgrade(stream, "/topics/t").await;
    hub.wait_subscribers(1).await;
    // Publish until the socket buffers are full and a write blocks: then
    // the hub lets go of it within the timeout.
    let payload = "w".repeat(64 * 1024);
    let http = crate::support::client();
    let mut published = 0;
    while published < 200 && hub.hub.subscriber_count() > 0 {
        let resp = http
            .post(hub.url("/topics/t"))
            .body(payload.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        published += 1;
    }
    hub.wait_subscribers(0).await;
    drop(stalled);
}

on_both_paths!(
    a_lagging_subscriber_gets_1008_with_the_last_id_sent,
    Config {
        buffer: 16,
        ..Config::default()
    },
    lagging_on
);

async fn lagging_on(hub: TestHub) {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let stream = socket.connect(hub.addr).await.unwrap();
    let mut stalled = RawWs::upgrade(stream, "/topics/t").await;
    hub.wait_subscribers(1).await;
    let payload = "x".repeat(16 * 1024);
    let n = 400; // 6.4 MB: far more than the socket buffers and the ring.
    let http = crate::support::client();
    for i in 0..n {
        let resp = http
            .post(hub.url("/topics/t"))
            .body(format!("{i} {payload}"))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
    }
    // One more publish wakes the stalled subscriber's task.
    hub.publish("/topics/t", "wake").await;
    let mut last_sent = None;
    let mut texts = 0;
    let close = loop {
        let frame = stalled.next_non_ping().await.expect("a close at the end");
        if frame.opcode == 0x8 {
            break frame;
        }
        let rec: serde_json::Value = serde_json::from_slice(&frame.payload).unwrap();
        last_sent = rec["id"].as_u64();
        texts += 1;
    };
    assert_eq!(close.close_code(), 1008, "{}", close.text());
    let last_sent = last_sent.expect("it got some messages before");
    assert_eq!(
        close.text(),
        format!("lagged; last id {last_sent}"),
        "the close names the last id it was sent"
    );
    assert!(texts < n, "it did not get everything");
    hub.wait_subscribers(0).await;
}

on_both_paths!(
    refusals_before_the_upgrade_are_http_answers,
    Config {
        auth_secret: Some("a secret of at least thirty-two bytes!".into()),
        ..Config::default()
    },
    refusals_on
);

/// Writes `request` and reads the answer: its head and `content-length`
/// bytes of body (the direct path closes after it, hyper keeps the
/// connection).
async fn ask(hub: &TestHub, request: &str) -> String {
    let mut s = tokio::net::TcpStream::connect(hub.addr).await.unwrap();
    s.write_all(request.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    tokio::time::timeout(WAIT, async {
        loop {
            let text = String::from_utf8_lossy(&answer).to_lowercase();
            if let Some(end) = text.find("\r\n\r\n") {
                let len: usize = text
                    .split("content-length: ")
                    .nth(1)
                    .and_then(|v| v.split("\r\n").next())
                    .and_then(|v| v.parse().ok())
                    .expect("an answer with a length");
                if answer.len() >= end + 4 + len {
                    return;
                }
            }
            let mut chunk = [0u8; 1024];
            let n = s.read(&mut chunk).await.unwrap();
            assert!(n > 0, "closed before the whole answer");
            answer.extend_from_slice(&chunk[..n]);
        }
    })
    .await
    .expect("an answer within the wait");
    String::from_utf8_lossy(&answer).into_owned()
}

async fn refusals_on(hub: TestHub) {
    let answer = ask(&hub, &ws_request("/topics/t", "")).await;
    assert!(answer.starts_with("HTTP/1.1 401 "), "{answer}");
    let answer = ask(
        &hub,
        &ws_request("/topics/t", "origin: http://evil.example\r\n"),
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 403 "), "{answer}");
    assert!(answer.contains("--cors-origin"), "{answer}");
    assert_eq!(hub.hub.subscriber_count(), 0);
}

on_both_paths!(
    an_upgrade_asking_for_another_format_gets_that_format,
    Config::default(),
    other_format_on
);

/// `?format=` wins over the upgrade (`Format::choose`), on both paths: a
/// streaming `200`, or a `400` for a format that does not exist.
async fn other_format_on(hub: TestHub) {
    let mut s = tokio::net::TcpStream::connect(hub.addr).await.unwrap();
    s.write_all(ws_request("/topics/t?format=ndjson", "").as_bytes())
        .await
        .unwrap();
    let mut head = vec![0u8; 1024];
    let n = tokio::time::timeout(WAIT, s.read(&mut head))
        .await
        .unwrap()
        .unwrap();
    let head = String::from_utf8_lossy(&head[..n]).to_lowercase();
    assert!(head.starts_with("http/1.1 200 "), "{head}");
    assert!(
        head.contains("content-type: application/x-ndjson"),
        "{head}"
    );
    let answer = ask(&hub, &ws_request("/topics/t?format=xml", "")).await;
    assert!(answer.starts_with("HTTP/1.1 400 "), "{answer}");
}
