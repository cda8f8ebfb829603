//! Faults in their HTTP/2 form (and the HTTP/1.1 requests that hyper, not
//! the fast path, serves): the answer as an axum `Response` whose body can
//! stall, drip, stop half-way or fail.
//!
//! HTTP/2 multiplexes many requests over one connection, so a fault that
//! killed the connection would hit innocent streams: each fault takes the
//! form of its stream instead. When a response body fails, hyper sends
//! `RST_STREAM` (`INTERNAL_ERROR`) on that stream and leaves the others
//! alone; that is the reset, and what a broken body becomes:
//!
//! | fault | HTTP/2 form |
//! |---|---|
//! | `reset`, `empty`, `garbage` | `HEADERS`, then `RST_STREAM` before any `DATA` |
//! | `reset-mid`, `truncate`, `bad-chunk` | half of the body, then `RST_STREAM` |
//! | `bad-length` | a `content-length` above the body, the body, then `RST_STREAM` |
//! | `blackhole` | nothing until `--max-delay`, then `RST_STREAM` |
//! | `slow-close` | the body, then the stream held open (`hold=`) before it ends |
//!
//! (hyper sends the `HEADERS` frame before it polls the body, so a stream
//! cannot be reset before its headers from inside a handler; what a client
//! sees is the same: no body, and a stream error.)
//!
//! Over HTTP/1.1 through hyper (`--no-direct`, or a request on a connection
//! hyper already serves) the same body failure makes hyper close the
//! connection: a reset becomes a close there. The fast path's [`super::wire`]
//! is the TCP form.

use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::response::Response;
use futures::StreamExt;
use http::header::{HeaderValue, CONTENT_LENGTH, CONTENT_TYPE, RETRY_AFTER};

use super::wire::{chunks, BAD_LENGTH_EXTRA};
use super::{Fault, Faulty, Pace};

/// The error a failing body ends with (hyper logs it at debug level).
fn broken(fault: Fault) -> std::io::Error {
    std::io::Error::other(format!("fault injected: {fault}"))
}

/// Waits the outcome's delay, then builds the response. The caller awaits
/// this inside the handler, so a client that goes away drops the wait.
pub async fn respond(f: Faulty, max_delay: Duration) -> Response {
    let o = &f.outcome;
    if !o.delay.is_zero() {
        tokio::time::sleep(o.delay).await;
    }
    if o.fault == Some(Fault::Blackhole) {
        tokio::time::sleep(max_delay).await;
    }
    let body = f.body.clone();
    let half = body.len() / 2;
    let (sent, ending, hold) = match o.fault {
        None => (body.len(), None, Duration::ZERO),
        Some(Fault::SlowClose) => (body.len(), None, o.hold),
        Some(Fault::BadLength) => (body.len(), Some(Fault::BadLength), Duration::ZERO),
        Some(fault @ (Fault::ResetMid | Fault::Truncate | Fault::BadChunk)) => {
            (half, Some(fault), Duration::ZERO)
        }
        Some(fault @ (Fault::Reset | Fault::Empty | Fault::Garbage | Fault::Blackhole)) => {
            (0, Some(fault), Duration::ZERO)
        }
    };
    let paced = body_stream(body.slice(..sent), o.pace, ending, hold);
    let mut response = Response::new(paced);
    *response.status_mut() = o.status;
    let headers = response.headers_mut();
    headers.insert(
        CONTENT_TYPE,
        HeaderValue::from_static(if f.json {
            "application/json"
        } else {
            "text/plain; charset=utf-8"
        }),
    );
    if let Some(secs) = f.retry_after {
        headers.insert(RETRY_AFTER, HeaderValue::from(secs));
    }
    let promised = match o.fault {
        Some(Fault::BadLength) => Some(body.len() + BAD_LENGTH_EXTRA),
        Some(Fault::Truncate | Fault::ResetMid) => Some(body.len()),
        _ if ending.is_none() => Some(body.len()),
        _ => None,
    };
    if let Some(n) = promised {
        headers.insert(CONTENT_LENGTH, HeaderValue::from(n));
    }
    response
}

/// The body: chunks at their pace, then an error (`ending`) or, after
/// `hold`, the end of the stream.
fn body_stream(body: Bytes, pace: Pace, ending: Option<Fault>, hold: Duration) -> Body {
    let parts = chunks(body.len(), pace);
    let data = futures::stream::iter(parts).then(move |(pause, range)| {
        let chunk = body.slice(range);
        async move {
            if !pause.is_zero() {
                tokio::time::sleep(pause).await;
            }
            Ok::<Bytes, std::io::Error>(chunk)
        }
    });
    let tail = futures::stream::once(async move {
        if !hold.is_zero() {
            tokio::time::sleep(hold).await;
        }
        match ending {
            Some(fault) => Err(broken(fault)),
            None => Ok(Bytes::new()),
        }
    })
    .filter(|item| futures::future::ready(!matches!(item, Ok(b) if b.is_empty())));
    Body::from_stream(data.chain(tail))
}
