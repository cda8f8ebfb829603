//! The talk's API, exactly: `GET /` streams `{message}\r\n`, `POST /?msg=`
//! answers `ok`, a missing `msg` publishes the empty message; and many
//! subscribers each get every message in order.

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::support::{client, Stream, TestHub, WAIT};
use hub::Config;

#[tokio::test]
async fn the_talks_curl_session_byte_for_byte() {
    the_talks_curl_session_byte_for_byte_on(TestHub::start(Config::default()).await).await;
}

#[tokio::test]
async fn the_talks_curl_session_byte_for_byte_via_hyper() {
    the_talks_curl_session_byte_for_byte_on(TestHub::start_via_hyper(Config::default()).await)
        .await;
}

async fn the_talks_curl_session_byte_for_byte_on(hub: TestHub) {
    let mut sub = Stream::get(&hub.url("/")).await;
    assert_eq!(
        sub.resp_headers["content-type"],
        "text/plain; charset=utf-8"
    );
    hub.wait_subscribers(1).await;

    let resp = client().post(hub.url("/?msg=hello")).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.text().await.unwrap(), "ok");
    // A missing msg (and no body) publishes the empty message.
    let resp = client().post(hub.url("/")).send().await.unwrap();
    assert_eq!(resp.text().await.unwrap(), "ok");
    client()
        .post(hub.url("/?msg=hello%20world"))
        .send()
        .await
        .unwrap();

    assert_eq!(
        sub.until(b"hello\r\n\r\nhello world\r\n").await.as_deref(),
        Some(&b""[..])
    );
}

#[tokio::test]
async fn a_body_is_a_message_up_to_max_message() {
    let hub = TestHub::start(Config {
        max_message: 10,
        ..Config::default()
    })
    .await;
    let mut sub = Stream::get(&hub.url("/topics/t")).await;
    hub.wait_subscribers(1).await;
    let ok = client()
        .post(hub.url("/topics/t"))
        .body("0123456789")
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);
    let big = client()
        .post(hub.url("/topics/t"))
        .body("0123456789x")
        .send()
        .await
        .unwrap();
    assert_eq!(big.status(), 413);
    assert_eq!(big.text().await.unwrap(), "message larger than 10 bytes\n");
    let big = client()
        .post(hub.url("/topics/t?msg=0123456789x"))
        .send()
        .await
        .unwrap();
    assert_eq!(big.status(), 413);
    let bad = client()
        .post(hub.url("/topics/t"))
        .body(vec![0xff, 0xfe])
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);
    assert!(bad.text().await.unwrap().contains("UTF-8"));
    assert_eq!(sub.raw_line().await.unwrap(), "0123456789");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_subscribers_each_get_a_hundred_messages_in_order() {
    let hub = TestHub::start(Config::default()).await;
    let mut readers = Vec::new();
    for _ in 0..1000 {
        let addr = hub.addr;
        // Plain sockets: a thousand reqwest streams would dominate the
        // test's time in a debug build.
        readers.push(tokio::spawn(async move {
            let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
            s.write_all(b"GET / HTTP/1.1\r\nhost: hub\r\n\r\n")
                .await
                .unwrap();
            let mut raw = Vec::new();
            let mut buf = [0u8; 4096];
            loop {
                let body = dechunk(&raw);
                if body.matches("\r\n").count() >= 100 {
                    return body;
                }
                let n = tokio::time::timeout(WAIT, s.read(&mut buf))
                    .await
                    .unwrap()
                    .unwrap();
                assert!(n > 0, "stream ended early");
                raw.extend_from_slice(&buf[..n]);
            }
        }));
    }
    hub.wait_subscribers(1000).await;
    // One publisher, pipelining its 100 requests on one connection: hyper
    // answers them in order, so the messages are published in order.
    let mut publisher = tokio::net::TcpStream::connect(hub.addr).await.unwrap();
    let requests: String = (0..100)
        .map(|i| format!("POST /?msg=m{i} HTTP/1.1\r\nhost: hub\r\ncontent-length: 0\r\n\r\n"))
        .collect();
    publisher.write_all(requests.as_bytes()).await.unwrap();
    let mut answers = Vec::new();
    let mut buf = [0u8; 4096];
    while String::from_utf8_lossy(&answers)
        .matches("\r\n\r\nok")
        .count()
        < 100
    {
        let n = tokio::time::timeout(WAIT, publisher.read(&mut buf))
            .await
            .unwrap()
            .unwrap();
        assert!(n > 0, "publisher connection closed");
        answers.extend_from_slice(&buf[..n]);
    }
    assert_eq!(
        String::from_utf8_lossy(&answers)
            .matches("HTTP/1.1 200 OK")
            .count(),
        100
    );
    let want: String = (0..100).map(|i| format!("m{i}\r\n")).collect();
    for r in readers {
        assert_eq!(r.await.unwrap(), want);
    }
}

/// The body of a chunked HTTP/1.1 response, as far as whole chunks go.
fn dechunk(raw: &[u8]) -> String {
    let text = String::from_utf8_lossy(raw);
    let Some((_, mut rest)) = text.split_once("\r\n\r\n") else {
        return String::new();
    };
    let mut body = String::new();
    while let Some((size, after)) = rest.split_once("\r\n") {
        let Ok(size) = usize::from_str_radix(size, 16) else {
            break;
        };
        if after.len() < size + 2 {
            break;
        }
        body.push_str(&after[..size]);
        rest = &after[size + 2..];
    }
    body
}
