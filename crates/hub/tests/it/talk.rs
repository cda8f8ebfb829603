//! The talk's API, exactly: `GET /` streams `{message}\r\n`, `POST /?msg=`
//! answers `ok`, a missing `msg` publishes the empty message; and many
//! subscribers each get every message in order.

use crate::support::{client, Stream, TestHub};
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

#[tokio::test]
async fn a_thousand_subscribers_each_get_a_hundred_messages_in_order() {
    let hub = TestHub::start(Config::default()).await;
    let http = client();
    let mut readers = Vec::new();
    for _ in 0..1000 {
        let req = http.get(hub.url("/"));
        readers.push(tokio::spawn(async move {
            let mut sub = Stream::open(req).await;
            let mut got = Vec::with_capacity(100);
            for _ in 0..100 {
                got.push(sub.raw_line().await.expect("stream ended early"));
            }
            got
        }));
    }
    hub.wait_subscribers(1000).await;
    let publisher = client();
    for i in 0..100 {
        let resp = publisher
            .post(hub.url(&format!("/?msg=m{i}")))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
    }
    let want: Vec<String> = (0..100).map(|i| format!("m{i}")).collect();
    for r in readers {
        assert_eq!(r.await.unwrap(), want);
    }
}
