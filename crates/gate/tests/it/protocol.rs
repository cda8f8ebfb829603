//! What a client can make the gate misread: a connection that changes
//! protocol half-way, pipelined requests, a head in pieces.

use std::time::Duration;

use crate::support::h2c;
use crate::support::{get_request, serve, Wire, WAIT};

#[tokio::test]
async fn an_h2_preface_after_an_http1_request_gets_400_and_a_close_never_h2() {
    let served = serve(gate::Limits::default()).await;
    // Answered by the fast path: the gate itself sees the preface.
    let mut w = Wire::connect(served.addr).await;
    let r = w.get("/fast/cow?delay=0").await;
    assert_eq!((r.status, r.path()), (200, Some("fast")), "{r:?}");
    w.send(h2c::PREFACE).await;
    let r = w.response().await;
    assert_eq!(r.status, 400, "{r:?}");
    assert_eq!(r.header("connection"), Some("close"), "{r:?}");
    assert_eq!(
        r.text(),
        "An HTTP/2 preface on a connection that started as HTTP/1.1.\n"
    );
    let (_, rest) = w.closed_within(WAIT).await;
    assert!(rest.is_empty(), "after the 400: {rest:?}");

    // Answered by hyper: hyper's HTTP/1.1 sees it, and does not switch
    // either.
    let mut w = Wire::connect(served.addr).await;
    let r = w.get("/hyper/hello").await;
    assert_eq!((r.status, r.path()), (200, Some("hyper")), "{r:?}");
    w.send(h2c::PREFACE).await;
    let (_, rest) = w.closed_within(WAIT).await;
    assert!(
        rest.is_empty() || rest.starts_with(b"HTTP/1.1 4") || rest.starts_with(b"HTTP/1.1 5"),
        "not an HTTP/1.1 refusal: {rest:?}"
    );
}

#[tokio::test]
async fn pipelined_requests_in_one_write_are_answered_in_order() {
    let served = serve(gate::Limits::default()).await;
    let mut w = Wire::connect(served.addr).await;
    let batch = [
        get_request("/fast/hello?1"),
        get_request("/fast/hello?2"),
        get_request("/hyper/hello?3"),
        get_request("/hyper/hello?4"),
    ]
    .concat();
    w.send(batch).await;
    for (body, path) in [
        ("fast /fast/hello?1\n", "fast"),
        ("fast /fast/hello?2\n", "fast"),
        ("hyper /hyper/hello?3\n", "hyper"),
        ("hyper /hyper/hello?4\n", "hyper"),
    ] {
        let r = w.response().await;
        assert_eq!((r.status, r.path(), r.text()), (200, Some(path), body));
    }
}

#[tokio::test]
async fn a_head_split_over_several_packets_is_answered() {
    let served = serve(gate::Limits::default()).await;
    for (target, path) in [
        ("/fast/hello?split", "fast"),
        ("/hyper/hello?split", "hyper"),
    ] {
        let head = get_request(target);
        // Cut inside the method's target, the version, a header, and
        // between the final CR and LF.
        let cuts = [
            6,
            head.find("HTTP/1").unwrap() + 6,
            head.len() - 8,
            head.len() - 1,
        ];
        let mut w = Wire::connect(served.addr).await;
        let mut from = 0;
        for to in cuts.into_iter().chain([head.len()]) {
            w.send(&head.as_bytes()[from..to]).await;
            from = to;
            // Each piece its own segment (the pace of the attack, not a
            // wait for a state).
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let r = w.response().await;
        assert_eq!(
            (r.status, r.path(), r.text()),
            (200, Some(path), format!("{path} {target}\n").as_str())
        );
    }
}
