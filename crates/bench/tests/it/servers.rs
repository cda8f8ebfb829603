//! Tiny real servers for the generator tests: a hub with the talk's raw API
//! (optionally dropping some messages, to prove loss is noticed) and a slow
//! Animals endpoint. Both on `127.0.0.1:0`, served by axum (HTTP/1.1 and
//! h2c prior knowledge).

use std::net::SocketAddr;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Query, State};
use axum::routing::get;
use axum::Router;
use bytes::Bytes;
use tokio::sync::broadcast;

#[derive(Clone)]
struct Hub {
    tx: broadcast::Sender<Bytes>,
    /// Publish sequence numbers that are answered `ok` but never sent.
    drop_every: Option<u64>,
    count: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

#[derive(serde::Deserialize)]
struct Msg {
    msg: Option<String>,
}

/// Starts a raw-stream hub; with `drop_every = Some(k)` every k-th publish
/// is acknowledged and silently not delivered.
pub async fn hub(drop_every: Option<u64>) -> SocketAddr {
    // Capacity well above what a test publishes: no subscriber lags.
    let (tx, _) = broadcast::channel(4096);
    let state = Hub {
        tx,
        drop_every,
        count: Default::default(),
    };
    let app = Router::new()
        .route("/", get(subscribe).post(publish))
        .with_state(state);
    serve(app).await
}

async fn subscribe(State(hub): State<Hub>) -> Body {
    let rx = hub.tx.subscribe();
    let stream = futures::stream::unfold(rx, |mut rx| async move {
        match rx.recv().await {
            Ok(msg) => Some((Ok::<_, std::io::Error>(msg), rx)),
            Err(_) => None,
        }
    });
    Body::from_stream(stream)
}

async fn publish(State(hub): State<Hub>, Query(q): Query<Msg>, body: Bytes) -> &'static str {
    let n = hub.count.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
    let mut line = match q.msg {
        Some(m) => m.into_bytes(),
        None => body.to_vec(),
    };
    // Priming messages always go through, or the run would never start.
    let is_prime = line.starts_with(b"prime_");
    if is_prime || hub.drop_every.is_none_or(|k| n % k != 0) {
        line.extend_from_slice(b"\r\n");
        let _ = hub.tx.send(Bytes::from(line));
    }
    "ok"
}

/// Starts `/animals/cow` answering `Moo!` after `delay`.
pub async fn slow_farm(delay: Duration) -> SocketAddr {
    let app = Router::new().route(
        "/animals/cow",
        get(move || async move {
            tokio::time::sleep(delay).await;
            "Moo!"
        }),
    );
    serve(app).await
}

async fn serve(app: Router) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind port 0");
    let addr = listener.local_addr().expect("bound");
    tokio::spawn(async move {
        axum::serve(listener, app).await.expect("test server runs");
    });
    addr
}
