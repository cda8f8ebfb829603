//! What one client, and all of them, can make the gate hold: connections
//! per address, requests in flight (on the fast path, through hyper, on
//! HTTP/2 streams), and streams per HTTP/2 connection.

use std::net::IpAddr;

use gate::{Limits, Refusal};
use tokio::io::AsyncWriteExt;

use crate::support::h2c::{self, H2};
use crate::support::{eventually, get_request, serve, Wire, WAIT, WS_UPGRADE};

#[tokio::test]
async fn a_third_connection_from_one_address_is_refused_and_another_address_is_served() {
    let served = serve(Limits {
        max_connections_per_ip: 2,
        ..Limits::default()
    })
    .await;
    let addr = served.addr;
    // Two connections from 127.0.0.1, each answered and kept open (one on
    // the fast path, one handed to hyper): both are counted.
    let mut one = Wire::connect(addr).await;
    let mut two = Wire::connect(addr).await;
    assert_eq!(one.get("/fast/hello").await.path(), Some("fast"));
    assert_eq!(two.get("/hyper/hello").await.path(), Some("hyper"));

    // A third from the same address: the per-address 503, then closed.
    let mut three = Wire::connect(addr).await;
    three
        .get("/fast/hello")
        .await
        .assert_refused(Refusal::PerAddress);
    let (_, rest) = three.closed_within(WAIT).await;
    assert!(rest.is_empty(), "{:?}", String::from_utf8_lossy(&rest));

    // Another address has a count of its own.
    let other: IpAddr = "127.0.0.2".parse().unwrap();
    let mut elsewhere = Wire::connect_from(other, addr).await;
    let r = elsewhere.get("/fast/hello").await;
    assert_eq!((r.status, r.path()), (200, Some("fast")), "{r:?}");

    // The first two are still served, on their open connections.
    assert_eq!(one.get("/fast/hello").await.status, 200);
    assert_eq!(two.get("/hyper/hello").await.status, 200);

    // Closing one frees its place once the gate sees the close.
    drop(one);
    let r = eventually("a place freed by a closed connection", || async {
        let mut again = Wire::connect(addr).await;
        let r = again.get("/fast/hello").await;
        (r.status == 200).then_some(r)
    })
    .await;
    assert_eq!(r.path(), Some("fast"));
    drop(two);
}

/// A WebSocket is a connection like any other: upgraded, it still counts
/// against its address until it closes.
#[tokio::test]
async fn upgraded_connections_keep_their_place_under_the_per_address_cap() {
    let served = serve(Limits {
        max_connections_per_ip: 2,
        ..Limits::default()
    })
    .await;
    let addr = served.addr;
    let mut sockets = Vec::new();
    for _ in 0..2 {
        let mut ws = Wire::connect(addr).await;
        ws.send(WS_UPGRADE).await;
        let r = ws.response().await;
        assert_eq!(r.status, 101, "{r:?}");
        sockets.push(ws);
    }
    let mut third = Wire::connect(addr).await;
    third.send(WS_UPGRADE).await;
    third.response().await.assert_refused(Refusal::PerAddress);
    let mut third = Wire::connect(addr).await;
    third
        .get("/fast/hello")
        .await
        .assert_refused(Refusal::PerAddress);

    // Closing a WebSocket frees its place.
    drop(sockets.pop());
    let r = eventually("a place freed by a closed WebSocket", || async {
        let mut again = Wire::connect(addr).await;
        let r = again.get("/hyper/hello").await;
        (r.status == 200).then_some(r)
    })
    .await;
    assert_eq!(r.path(), Some("hyper"));
}

/// Asserts that a request gets the in-flight `503` on the fast path (then
/// its connection closes), through hyper over HTTP/1.1, and on a new
/// HTTP/2 stream.
async fn assert_refused_on_every_path(addr: std::net::SocketAddr, h2: &H2) {
    let mut fast = Wire::connect(addr).await;
    fast.get("/fast/hello")
        .await
        .assert_refused(Refusal::InFlight);
    fast.closed_within(WAIT).await;
    let mut hyper = Wire::connect(addr).await;
    hyper
        .get("/hyper/hello")
        .await
        .assert_refused(Refusal::InFlight);
    h2.get("/hyper/hello")
        .await
        .assert_refused(Refusal::InFlight);
    h2.get("/fast/hello")
        .await
        .assert_refused(Refusal::InFlight);
}

/// Asserts that every path answers again.
async fn assert_served_on_every_path(addr: std::net::SocketAddr, h2: &H2) {
    let mut w = Wire::connect(addr).await;
    assert_eq!(w.get("/fast/hello").await.path(), Some("fast"));
    assert_eq!(w.get("/hyper/hello").await.path(), Some("hyper"));
    let r = h2.get("/hyper/hello").await;
    assert_eq!((r.status, r.path()), (200, Some("hyper")), "{r:?}");
    let r = h2.get("/fast/hello").await;
    assert_eq!((r.status, r.path()), (200, Some("fast")), "{r:?}");
}

fn two_in_flight() -> Limits {
    Limits {
        max_in_flight: 2,
        ..Limits::default()
    }
}

#[tokio::test]
async fn past_the_in_flight_cap_held_on_the_fast_path_every_path_gets_503() {
    two_held_over_http1_then_every_path_refused("fast").await;
}

#[tokio::test]
async fn past_the_in_flight_cap_held_through_hyper_every_path_gets_503() {
    two_held_over_http1_then_every_path_refused("hyper").await;
}

/// Two HTTP/1.1 requests held by `side` (the test fast path or hyper) fill
/// the cap of two: every path is refused, then served once they end.
async fn two_held_over_http1_then_every_path_refused(side: &str) {
    let served = serve(two_in_flight()).await;
    let h2 = H2::connect(served.addr).await;
    let mut held = [
        Wire::connect(served.addr).await,
        Wire::connect(served.addr).await,
    ];
    for w in &mut held {
        w.send(get_request(&format!("/{side}/hold"))).await;
    }
    served.holds.wait_entered(2).await;
    assert_refused_on_every_path(served.addr, &h2).await;

    served.holds.release(2);
    for w in &mut held {
        let r = w.response().await;
        assert_eq!((r.status, r.path()), (200, Some(side)), "{r:?}");
    }
    assert_served_on_every_path(served.addr, &h2).await;
}

#[tokio::test]
async fn past_the_in_flight_cap_held_on_two_h2_streams_of_one_connection_every_path_gets_503() {
    let served = serve(two_in_flight()).await;
    let h2 = H2::connect(served.addr).await;
    let held = [h2.start("/hyper/hold").await, h2.start("/hyper/hold").await];
    served.holds.wait_entered(2).await;
    // A third stream on the same connection, and every other path.
    assert_refused_on_every_path(served.addr, &h2).await;

    served.holds.release(2);
    for task in held {
        let r = task.await.unwrap();
        assert_eq!((r.status, r.path()), (200, Some("hyper")), "{r:?}");
    }
    assert_served_on_every_path(served.addr, &h2).await;
}

/// Requests a fast path claims from hyper over HTTP/2 (no router) count
/// under the same cap as every other.
#[tokio::test]
async fn past_the_in_flight_cap_held_on_claimed_h2_streams_every_path_gets_503() {
    let served = serve(two_in_flight()).await;
    let h2 = H2::connect(served.addr).await;
    let held = [h2.start("/fast/hold").await, h2.start("/fast/hold").await];
    served.holds.wait_entered(2).await;
    assert_refused_on_every_path(served.addr, &h2).await;

    served.holds.release(2);
    for task in held {
        let r = task.await.unwrap();
        assert_eq!((r.status, r.path()), (200, Some("fast")), "{r:?}");
        assert_eq!(r.text(), "fast /fast/hold\n");
    }
    assert_served_on_every_path(served.addr, &h2).await;
}

#[tokio::test]
async fn h2_connections_are_offered_256_streams_by_default_and_the_flag_s_value_otherwise() {
    for (limits, expected) in [
        (Limits::default(), 256),
        (
            Limits {
                h2_max_streams: 8,
                ..Limits::default()
            },
            8,
        ),
    ] {
        let served = serve(limits).await;
        let (_stream, settings) = h2c::raw_handshake(served.addr).await;
        let offered = settings
            .settings()
            .into_iter()
            .find(|(id, _)| *id == h2c::SETTINGS_MAX_CONCURRENT_STREAMS)
            .map(|(_, v)| v);
        assert_eq!(offered, Some(expected), "{settings:?}");
    }
}

/// A client that ignores the advertised limit and opens 257 streams at
/// once: 256 are served (held, here), the 257th is refused
/// (`REFUSED_STREAM`) and never reaches a handler.
#[tokio::test]
async fn the_257th_concurrent_h2_stream_is_refused() {
    let served = serve(Limits::default()).await;
    let (mut stream, _settings) = h2c::raw_handshake(served.addr).await;
    // Acknowledge the server's SETTINGS: its limit applies from here.
    stream
        .write_all(&h2c::frame(h2c::SETTINGS, 0x1, 0, &[]))
        .await
        .unwrap();
    let mut frames = Vec::new();
    for i in 0..257u32 {
        frames.extend(h2c::get_headers(2 * i + 1, "/hyper/hold"));
    }
    stream.write_all(&frames).await.unwrap();
    served.holds.wait_entered(256).await;
    let last = 2 * 256 + 1;
    loop {
        let f = h2c::read_frame(&mut stream)
            .await
            .expect("a RST_STREAM before the connection ends");
        assert_ne!(f.kind, h2c::GOAWAY, "the connection was closed: {f:?}");
        if f.kind == h2c::RST_STREAM {
            assert_eq!(f.stream, last, "{f:?}");
            let code = u32::from_be_bytes(f.payload[..4].try_into().unwrap());
            assert_eq!(code, h2c::REFUSED_STREAM, "{f:?}");
            break;
        }
    }
    // Released, the 256 held streams are answered; the refused one never
    // is.
    served.holds.release(256);
    let mut answered = 0;
    while answered < 256 {
        let f = h2c::read_frame(&mut stream)
            .await
            .expect("the held streams' answers");
        if f.kind == 0x1 {
            answered += 1;
            assert!(f.stream < last, "{f:?}");
        }
    }
}
