//! The talk's publish/subscribe hub in a few dozen lines of axum.
//!
//! `GET /` opens a stream that never ends: every message published while it
//! is open arrives as `{message}\r\n`. `POST /?msg=hello` publishes to every
//! open stream and answers `ok`.
//!
//! As in the talk, each subscriber has its own queue, registered while its
//! stream is open and removed when it closes: here a [`Registration`] guard
//! whose `Drop` unregisters, the Rust twin of the talk's context manager.
//! Unlike the talk's, each queue is **bounded**: a subscriber that stops
//! reading is dropped when its queue is full, instead of growing memory
//! without limit and slowing everyone.
//!
//! ```sh
//! cargo run --example pubsub -- 8080
//! curl -N localhost:8080/                       # in one terminal
//! curl -X POST 'localhost:8080/?msg=hello'      # in another
//! ```
//!
//! (`coop serve` is the production hub: topics, ids, history, four
//! transports, one shared ring instead of a queue per subscriber.)

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};

use axum::body::{Body, Bytes};
use axum::extract::{Query, State};
use axum::routing::get;
use axum::Router;
use futures::StreamExt;
use tokio::sync::mpsc;

/// Messages a subscriber may have waiting before it is dropped.
const QUEUE: usize = 256;

/// Every open stream's queue, by subscriber number.
#[derive(Clone, Default)]
struct Hub {
    streams: Arc<Mutex<HashMap<u64, mpsc::Sender<Bytes>>>>,
    next: Arc<Mutex<u64>>,
}

/// Keeps a subscriber registered while it lives (the talk's `with`).
struct Registration {
    hub: Hub,
    id: u64,
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.hub.streams.lock().unwrap().remove(&self.id);
    }
}

async fn subscribe(State(hub): State<Hub>) -> Body {
    let (tx, rx) = mpsc::channel(QUEUE);
    let id = {
        let mut next = hub.next.lock().unwrap();
        *next += 1;
        *next
    };
    hub.streams.lock().unwrap().insert(id, tx);
    let guard = Registration { hub, id };
    // The stream owns the guard: when the client goes away, axum drops the
    // stream, the guard drops, and the queue is unregistered.
    let stream = tokio_stream_from(rx).map(move |msg| {
        let _alive = &guard;
        Ok::<_, Infallible>(msg)
    });
    Body::from_stream(stream)
}

async fn publish(State(hub): State<Hub>, Query(q): Query<HashMap<String, String>>) -> &'static str {
    let msg = q.get("msg").cloned().unwrap_or_default();
    let line = Bytes::from(format!("{msg}\r\n"));
    // Never wait for a subscriber: a full queue means it stopped reading.
    hub.streams
        .lock()
        .unwrap()
        .retain(|_, queue| queue.try_send(line.clone()).is_ok());
    "ok"
}

/// A receiver as a stream of messages (what `tokio_stream`'s wrapper does).
fn tokio_stream_from(rx: mpsc::Receiver<Bytes>) -> impl futures::Stream<Item = Bytes> {
    futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|m| (m, rx)) })
}

#[tokio::main]
async fn main() {
    let port: u16 = std::env::args()
        .nth(1)
        .map_or(8080, |p| p.parse().expect("PORT is a number"));
    let app = Router::new()
        .route("/", get(subscribe).post(publish))
        .with_state(Hub::default());
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .expect("port is free");
    println!("listening on http://{}", listener.local_addr().unwrap());
    axum::serve(listener, app).await.unwrap();
}
