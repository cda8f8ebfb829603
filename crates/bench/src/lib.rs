//! Load generators behind `coop bench`: they measure coop beside the
//! reference servers (nchan, the talk's aiohttp programs) with the same
//! client, so the ratios are fair.
//!
//! Subscribers (the side that must scale to ten thousand connections) read
//! raw tokio sockets with hand-written requests and a small decoder: on a
//! 2-core machine that shares its CPU with the server under test, a
//! general-purpose client per connection would be the bottleneck and the
//! figures would measure it instead of the server. The same goes for the
//! HTTP/1.1 requests `hold` keeps in flight (`http::round_trip`). The fan-out
//! publishers use hyper's HTTP/1.1 client; `hold`'s HTTP/2 streams and the
//! fan-out's HTTP/2 subscribers (`--h2-connections`, many streams per
//! connection) the `h2` crate hyper is built on, on connections the
//! generator opens itself (from chosen source addresses).
//!
//! Layout:
//! - `fanout`: hub fan-out (N streaming subscribers over real TCP, publishers
//!   closed-loop or paced, loss, order, delivery rate and latency).
//! - `hold`: many requests held in flight against the slow Animals API,
//!   over HTTP/1.1 connections or multiplexed HTTP/2 streams.
//! - `publish`: publish latency, one closed-loop publisher, each publish to
//!   a new topic name (so the hub matches its patterns against it).
//! - `http`: the minimal HTTP/1.1 pieces both use (response heads, chunked
//!   bodies, line splitting).
//! - `target`: URLs, source addresses (127.0.0.x) and connecting.
//! - `ws`: the WebSocket subscriber's upgrade request and frame decoder.
//! - `probe`: server peak RSS and CPU time from `/proc`.
//! - `summary`: latency percentiles from an HDR histogram.

pub mod fanout;
pub mod hold;
pub mod http;
pub mod probe;
pub mod publish;
pub mod summary;
pub mod target;
pub mod ws;

/// Everything that can stop a benchmark before it measures anything.
/// Losses and wrong answers are not errors: they are figures in the report.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    /// The target URL cannot be used (only `http://host:port/path`).
    #[error("bad url {url:?}: {reason}")]
    BadUrl { url: String, reason: String },
    /// A parameter makes no sense (zero subscribers, rate of 0, ...).
    #[error("bad parameter: {0}")]
    BadParameter(String),
    /// A socket operation failed where the run cannot go on.
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    /// The server did not get ready (subscribers not connected or primed,
    /// publishes refused) within the time allowed.
    #[error("{0}")]
    Setup(String),
}

impl BenchError {
    pub(crate) fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        BenchError::Io {
            context: context.into(),
            source,
        }
    }
}

/// Wall-clock nanoseconds since the Unix epoch. Publishers stamp messages
/// with it and subscribers (possibly in other processes) compare against it,
/// so it must be the shared realtime clock, not `Instant`.
pub fn now_ns() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}
