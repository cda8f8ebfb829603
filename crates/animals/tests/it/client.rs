//! The client against real servers: order, bounded concurrency, retries,
//! timeouts, and the timing shape (N requests of delay d take about d
//! concurrently and about N·d one at a time).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use animals::{Client, ClientConfig, Config, Error};
use axum::extract::Path;
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use futures::StreamExt;

use crate::support::{farm, farm_with, serve};

fn client(addr: std::net::SocketAddr, tweak: impl FnOnce(&mut ClientConfig)) -> Client {
    let mut config = ClientConfig {
        base: format!("http://{addr}/animals"),
        timeout: Duration::from_secs(10),
        backoff: Duration::from_millis(1),
        max_backoff: Duration::from_millis(10),
        ..ClientConfig::default()
    };
    tweak(&mut config);
    Client::new(config).unwrap()
}

fn names(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

/// Requests in flight on a test server, and the most at once: the shape
/// of a run (all together, or one at a time) read on the server's side,
/// where a loaded machine cannot blur it.
#[derive(Default)]
struct Peak {
    now: AtomicUsize,
    max: AtomicUsize,
    /// Requests answered so far.
    done: AtomicUsize,
}

impl Peak {
    fn enter(&self) {
        let now = self.now.fetch_add(1, Ordering::SeqCst) + 1;
        self.max.fetch_max(now, Ordering::SeqCst);
    }

    fn leave(&self) {
        self.now.fetch_sub(1, Ordering::SeqCst);
        self.done.fetch_add(1, Ordering::SeqCst);
    }

    fn max(&self) -> usize {
        self.max.load(Ordering::SeqCst)
    }
}

/// A server whose animals take as long as their name says (`/animals/300`
/// answers `300` after 300 ms), counting what is in flight.
async fn timed_server() -> (std::net::SocketAddr, Arc<Peak>) {
    let peak = Arc::new(Peak::default());
    let p = peak.clone();
    let router = axum::Router::new().route(
        "/animals/{ms}",
        get(move |Path(ms): Path<u64>| {
            let p = p.clone();
            async move {
                p.enter();
                tokio::time::sleep(Duration::from_millis(ms)).await;
                p.leave();
                ms.to_string()
            }
        }),
    );
    (serve(router).await, peak)
}

#[tokio::test]
async fn outcomes_come_in_input_order_each_as_soon_as_possible() {
    let (addr, peak) = timed_server().await;
    let c = client(addr, |_| {});
    let mut stream = Box::pin(c.speak(names(&["0", "1500", "0", "300", "0"])));

    // The first is ready at once: before the slow ones have finished on
    // the server.
    let first = stream.next().await.unwrap();
    assert_eq!((first.index, first.result.unwrap()), (0, "0".to_string()));
    assert!(
        peak.done.load(Ordering::SeqCst) < 5,
        "the first outcome waited for every request"
    );

    // The rest arrive in input order even though "0" and "300" finished
    // before "1500".
    let rest: Vec<_> = stream.collect().await;
    let got: Vec<_> = rest
        .iter()
        .map(|o| (o.index, o.result.as_ref().unwrap().clone()))
        .collect();
    assert_eq!(
        got,
        [
            (1, "1500".into()),
            (2, "0".into()),
            (3, "300".into()),
            (4, "0".into())
        ]
    );
    // All ran together: "1500" and "300" were in flight at once (with the
    // zero-delay ones, at least the two slow ones overlap).
    assert!(peak.max() >= 2, "at most {} at once", peak.max());
}

#[tokio::test]
async fn concurrency_is_bounded() {
    let peak = Arc::new(Peak::default());
    let p = peak.clone();
    let router = axum::Router::new().route(
        "/animals/{name}",
        get(move || {
            let p = p.clone();
            async move {
                p.enter();
                tokio::time::sleep(Duration::from_millis(50)).await;
                p.leave();
                "ok"
            }
        }),
    );
    let addr = serve(router).await;
    let c = client(addr, |c| c.concurrency = 4);
    let outcomes: Vec<_> = c.speak((0..20).map(|i| i.to_string())).collect().await;
    assert!(outcomes.iter().all(|o| o.result.is_ok()));
    assert_eq!(peak.max(), 4);
}

#[tokio::test]
async fn concurrent_runs_all_at_once_and_sequential_one_at_a_time() {
    // Shape on the server's side (how many at once), and time relative to
    // the delay: sequential cannot be faster than five delays, concurrent
    // is faster than sequential (whatever the machine's load).
    let (addr, peak) = timed_server().await;
    let list = names(&["200", "200", "200", "200", "200"]);
    let delay = Duration::from_millis(200);

    let start = Instant::now();
    let all: Vec<_> = client(addr, |_| {}).speak(list.clone()).collect().await;
    let concurrent = start.elapsed();
    assert!(all.iter().all(|o| o.result.is_ok()));
    assert_eq!(peak.max(), 5, "concurrent: all five at once");
    assert!(concurrent >= delay);

    let (addr, peak) = timed_server().await;
    let start = Instant::now();
    let all: Vec<_> = client(addr, |c| c.concurrency = 1)
        .speak(list)
        .collect()
        .await;
    let sequential = start.elapsed();
    assert!(all.iter().all(|o| o.result.is_ok()));
    assert_eq!(peak.max(), 1, "sequential: one at a time");
    assert!(sequential >= delay * 5, "sequential took {sequential:?}");
    assert!(
        concurrent < sequential,
        "concurrent {concurrent:?} vs sequential {sequential:?}"
    );
}

#[tokio::test]
async fn the_farm_answers_in_input_order_with_its_sounds() {
    let addr = farm(Duration::from_millis(50)).await;
    let list = names(&["cow", "pig", "chicken", "duck", "dog"]);
    let all: Vec<_> = client(addr, |c| c.concurrency = 1)
        .speak(list)
        .collect()
        .await;
    assert_eq!(all[2].line().unwrap(), "The chicken says \"Cluck!\".");
}

#[tokio::test]
async fn a_404_fails_that_animal_once_and_the_others_still_answer() {
    let addr = farm(Duration::ZERO).await;
    let all: Vec<_> = client(addr, |_| {})
        .speak(names(&["cow", "unicorn", "pig"]))
        .collect()
        .await;
    assert_eq!(all[0].line().unwrap(), "The cow says \"Moo!\".");
    assert_eq!(all[2].line().unwrap(), "The pig says \"Oink!\".");
    assert_eq!(all[1].attempts, 1, "a 404 is not retried");
    match &all[1].result {
        Err(Error::Status { status: 404, body }) => {
            assert_eq!(body, "The animal unicorn was not found.")
        }
        other => panic!("{other:?}"),
    }
}

/// A server that answers `503` (with `Retry-After: {retry_after}`) to the
/// first `failures` requests, then `Moo!`.
async fn flaky_server(
    failures: usize,
    retry_after: &'static str,
) -> (std::net::SocketAddr, Arc<AtomicUsize>) {
    let hits = Arc::new(AtomicUsize::new(0));
    let h = hits.clone();
    let router = axum::Router::new().route(
        "/animals/{name}",
        get(move || {
            let h = h.clone();
            async move {
                if h.fetch_add(1, Ordering::SeqCst) < failures {
                    let mut headers = HeaderMap::new();
                    headers.insert("retry-after", retry_after.parse().unwrap());
                    (StatusCode::SERVICE_UNAVAILABLE, headers, "busy").into_response()
                } else {
                    "Moo!".into_response()
                }
            }
        }),
    );
    (serve(router).await, hits)
}

#[tokio::test]
async fn server_errors_are_retried_until_success() {
    let (addr, hits) = flaky_server(2, "0").await;
    let o = client(addr, |c| c.retries = 2).ask(0, "cow".into()).await;
    assert_eq!(o.result.unwrap(), "Moo!");
    assert_eq!(o.attempts, 3);
    assert_eq!(hits.load(Ordering::SeqCst), 3);
}

#[tokio::test]
async fn retries_run_out_with_the_last_status_and_body() {
    let (addr, _) = flaky_server(10, "0").await;
    let o = client(addr, |c| c.retries = 1).ask(0, "cow".into()).await;
    assert_eq!(o.attempts, 2);
    match o.result {
        Err(Error::Status { status: 503, body }) => assert_eq!(body, "busy"),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn retry_after_sets_the_minimum_wait() {
    let (addr, _) = flaky_server(1, "1").await;
    let o = client(addr, |c| c.retries = 1).ask(0, "cow".into()).await;
    assert_eq!(o.result.unwrap(), "Moo!");
    assert!(o.elapsed >= Duration::from_secs(1), "{:?}", o.elapsed);
}

#[tokio::test]
async fn the_farms_fault_injection_is_survived_with_retries() {
    let addr = farm_with(Config {
        delay: Duration::ZERO,
        error_rate: 0.5,
        retry_after_secs: 0,
        ..Config::default()
    })
    .await;
    let all: Vec<_> = client(addr, |c| c.retries = 30)
        .speak((0..20).map(|_| "cow".to_string()))
        .collect()
        .await;
    assert!(all.iter().all(|o| o.result.is_ok()));
    assert!(
        all.iter().any(|o| o.attempts > 1),
        "no retry happened at a 50% error rate"
    );
}

#[tokio::test]
async fn connect_errors_are_retried_then_reported() {
    // A port that was just free: nothing listens there.
    let addr = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let o = client(addr, |c| c.retries = 2).ask(0, "cow".into()).await;
    assert_eq!(o.attempts, 3);
    assert!(
        matches!(o.result, Err(Error::Transport(_))),
        "{:?}",
        o.result
    );
}

#[tokio::test]
async fn a_slow_answer_times_out_and_is_not_retried() {
    let addr = farm(Duration::from_secs(5)).await;
    let start = Instant::now();
    let o = client(addr, |c| {
        c.timeout = Duration::from_millis(200);
        c.retries = 3;
    })
    .ask(0, "cow".into())
    .await;
    assert!(matches!(o.result, Err(Error::Timeout(_))), "{:?}", o.result);
    assert_eq!(o.attempts, 1);
    // Far below the farm's 5 s: the timeout cut the wait short.
    assert!(
        start.elapsed() < Duration::from_secs(4),
        "{:?}",
        start.elapsed()
    );
}

#[tokio::test]
async fn http2_prior_knowledge_multiplexes_many_requests() {
    // axum::serve speaks h2c too; a hundred requests ride a few connections.
    let addr = farm(Duration::from_millis(100)).await;
    let c = client(addr, |c| c.http2_prior_knowledge = true);
    let all: Vec<_> = c
        .speak((0..100).map(|_| "duck".to_string()))
        .collect()
        .await;
    assert!(all
        .iter()
        .all(|o| o.result.as_deref().ok() == Some("Quack!")));
}

/// What a [`scripted_server`] saw: connections accepted, and every request
/// head in the order read.
#[derive(Default)]
struct Seen {
    accepted: AtomicUsize,
    heads: std::sync::Mutex<Vec<String>>,
}

/// A hand-written HTTP/1.1 server on 127.0.0.1:0 for the client's own
/// connections: it answers every request head it reads with `answer`,
/// closes the connection after each answer when `close` is set, and
/// counts the connections it accepted and keeps the heads.
async fn scripted_server(answer: &'static [u8], close: bool) -> (std::net::SocketAddr, Arc<Seen>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = Arc::new(Seen::default());
    let count = seen.clone();
    tokio::spawn(async move {
        loop {
            let (mut socket, _) = listener.accept().await.unwrap();
            count.accepted.fetch_add(1, Ordering::SeqCst);
            let seen = count.clone();
            tokio::spawn(async move {
                let mut pending = Vec::new();
                let mut chunk = [0u8; 1024];
                loop {
                    while let Some(end) = pending.windows(4).position(|w| w == b"\r\n\r\n") {
                        let head = String::from_utf8_lossy(&pending[..end]).into_owned();
                        seen.heads.lock().unwrap().push(head);
                        pending.drain(..end + 4);
                        if socket.write_all(answer).await.is_err() || close {
                            return;
                        }
                    }
                    match socket.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => pending.extend_from_slice(&chunk[..n]),
                    }
                }
            });
        }
    });
    (addr, seen)
}

#[tokio::test]
async fn http1_connections_are_kept_and_never_more_than_the_concurrency() {
    let (addr, seen) =
        scripted_server(b"HTTP/1.1 200 OK\r\ncontent-length: 4\r\n\r\nMoo!", false).await;
    let all: Vec<_> = client(addr, |c| c.concurrency = 3)
        .speak((0..60).map(|_| "cow".to_string()))
        .collect()
        .await;
    assert!(all.iter().all(|o| o.result.as_deref().ok() == Some("Moo!")));
    assert!(all.iter().all(|o| o.attempts == 1));
    let n = seen.accepted.load(Ordering::SeqCst);
    assert!((1..=3).contains(&n), "{n} connections for concurrency 3");
}

#[tokio::test]
async fn http1_chunked_answers_with_trailers_leave_the_connection_usable() {
    let (addr, seen) = scripted_server(
        b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n\
          2\r\nMo\r\n2;ext=1\r\no!\r\n0\r\nx-trailer: 1\r\n\r\n",
        false,
    )
    .await;
    let all: Vec<_> = client(addr, |c| c.concurrency = 1)
        .speak((0..5).map(|_| "cow".to_string()))
        .collect()
        .await;
    for o in &all {
        assert_eq!(o.result.as_deref().ok(), Some("Moo!"), "{o:?}");
        assert_eq!(o.attempts, 1);
    }
    assert_eq!(
        seen.accepted.load(Ordering::SeqCst),
        1,
        "one connection, kept"
    );
}

/// A server that closes a kept-alive connection after each answer (as its
/// idle timeout would) costs a new connection, not a retry or a mishap.
#[tokio::test]
async fn http1_a_kept_connection_found_closed_is_replaced_without_a_mishap() {
    let (addr, seen) =
        scripted_server(b"HTTP/1.1 200 OK\r\ncontent-length: 4\r\n\r\nMoo!", true).await;
    let all: Vec<_> = client(addr, |c| {
        c.concurrency = 1;
        c.retries = 0;
    })
    .speak((0..5).map(|_| "cow".to_string()))
    .collect()
    .await;
    for o in &all {
        assert_eq!(o.result.as_deref().ok(), Some("Moo!"), "{o:?}");
        assert_eq!(o.mishaps, Default::default());
    }
    assert_eq!(seen.accepted.load(Ordering::SeqCst), 5);
}

/// `Connection: close` is obeyed even when the server leaves the socket
/// open: reusing it would wait for an answer that never comes.
#[tokio::test]
async fn http1_connection_close_is_not_reused() {
    let (addr, seen) = scripted_server(
        b"HTTP/1.1 200 OK\r\nconnection: close\r\ncontent-length: 4\r\n\r\nMoo!",
        false,
    )
    .await;
    let all: Vec<_> = client(addr, |c| c.concurrency = 1)
        .speak((0..3).map(|_| "cow".to_string()))
        .collect()
        .await;
    assert!(all.iter().all(|o| o.result.is_ok()), "{all:?}");
    assert_eq!(seen.accepted.load(Ordering::SeqCst), 3);
}

/// Once every name of a run has started, no request will want a kept
/// connection: the rest say `Connection: close`, so the server closes
/// first (its side keeps the `TIME_WAIT`, not the client's ports). Before
/// that, connections are kept and reused.
#[tokio::test]
async fn http1_the_requests_after_the_last_name_started_ask_the_server_to_close() {
    let (addr, seen) =
        scripted_server(b"HTTP/1.1 200 OK\r\ncontent-length: 4\r\n\r\nMoo!", false).await;
    let all: Vec<_> = client(addr, |c| c.concurrency = 3)
        .speak(names(&["cow", "cow", "cow", "cow", "cow", "cow"]))
        .collect()
        .await;
    assert!(all.iter().all(|o| o.result.is_ok()), "{all:?}");
    let heads = seen.heads.lock().unwrap().clone();
    let closing = |h: &String| h.to_ascii_lowercase().contains("\r\nconnection: close");
    assert_eq!(heads.len(), 6);
    assert!(!heads[..3].iter().any(closing), "{heads:?}");
    assert!(closing(&heads[5]), "{heads:?}");
    assert!(
        seen.accepted.load(Ordering::SeqCst) <= 3,
        "connections were reused"
    );

    // As many requests in flight as names: every one is the last on its
    // connection.
    let (addr, seen) =
        scripted_server(b"HTTP/1.1 200 OK\r\ncontent-length: 4\r\n\r\nMoo!", false).await;
    let all: Vec<_> = client(addr, |c| c.concurrency = 4)
        .speak((0..4).map(|_| "cow".to_string()))
        .collect()
        .await;
    assert!(all.iter().all(|o| o.result.is_ok()), "{all:?}");
    let heads = seen.heads.lock().unwrap().clone();
    assert_eq!(heads.len(), 4);
    assert!(heads.iter().all(closing), "{heads:?}");
}

#[tokio::test]
async fn http1_a_body_longer_than_it_said_is_not_an_answer_to_reuse() {
    // Five bytes after a four-byte body: the next answer would start
    // inside them.
    let (addr, seen) = scripted_server(
        b"HTTP/1.1 200 OK\r\ncontent-length: 4\r\n\r\nMoo!extra",
        false,
    )
    .await;
    let all: Vec<_> = client(addr, |c| c.concurrency = 1)
        .speak((0..3).map(|_| "cow".to_string()))
        .collect()
        .await;
    assert!(all.iter().all(|o| o.result.as_deref().ok() == Some("Moo!")));
    assert_eq!(seen.accepted.load(Ordering::SeqCst), 3);
}

#[tokio::test]
async fn http1_a_body_over_the_limit_is_a_bad_answer() {
    let (addr, _) = scripted_server(
        b"HTTP/1.1 200 OK\r\ncontent-length: 99999999\r\n\r\nMoo!",
        false,
    )
    .await;
    let o = client(addr, |c| c.retries = 0).ask(0, "cow".into()).await;
    assert!(
        matches!(o.result, Err(Error::BadAnswer(_))),
        "{:?}",
        o.result
    );
}
