//! One subscriber's life: what it is sent, in which order, and how it ends.
//!
//! [`Subscriber::next_event`] is the whole policy, shared by every
//! transport: first the gap notices and history of a resume, then live
//! messages; each wake-up takes **everything** new (a batch) so that the
//! transport writes it at once; heartbeats while idle; and one of three
//! endings: lagged (fell more than `--buffer` messages behind: told the last
//! id it got, then closed), shutdown (told to come back), or idle timeout.
//!
//! Streaming transports (raw, SSE, NDJSON) turn events into bytes with
//! [`Subscriber::into_body`]: a batch becomes one buffer of at most
//! [`FRAME_BYTES`] (the pre-encoded, shared bytes of each message,
//! concatenated), so hyper makes one write per wake-up rather than one per
//! message. WebSocket turns a batch into one text frame per message,
//! written at once (`direct.rs`, or through tungstenite in `server.rs`).

use std::convert::Infallible;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use tokio::time::{Instant, Interval};

use crate::hub::{Hub, Opened};
use crate::message::{Message, TopicName};
use crate::topic::{Cut, Lagged};
use crate::transport::{ndjson, sse, Format};

/// Largest buffer handed to hyper at once. Bigger batches are split; this
/// bounds the copy a lagging subscriber makes (its pending list holds only
/// `Arc`s).
pub const FRAME_BYTES: usize = 64 * 1024;

/// What a subscriber should send next.
pub enum Event {
    /// Messages to send, in id order: `Subscriber::pending()`.
    Batch,
    /// Nothing happened for a heartbeat interval.
    Heartbeat,
    /// Fell behind: send the notice and close.
    Lagged(Lagged),
    /// The hub is stopping: tell the client to come back, then close.
    Shutdown,
    /// Nothing for `--idle-timeout`: close.
    Idle,
}

/// A connected subscriber of any transport.
pub struct Subscriber {
    hub: Hub,
    format: Format,
    opened: Opened,
    /// Messages taken from the rings (or history) and not yet encoded.
    pending: Vec<Arc<Message>>,
    /// Next index of `pending` to send.
    sent: usize,
    /// Gap notices to send first (already encoded for `format`).
    notices: Option<Bytes>,
    /// Whether the history in `opened` is still to be read and sent.
    history_left: bool,
    heartbeat: Interval,
    /// Watched while history is read. Live waiting watches the rings'
    /// flag instead (`Rings::stop`): polling the token takes a lock each
    /// time, and a waiting subscriber is polled on every delivery.
    shutdown: std::pin::Pin<Box<tokio_util::sync::WaitForCancellationFutureOwned>>,
    last_activity: Instant,
    /// Batches sent (for sampling the latency metric).
    batches: u32,
    done: bool,
    _gauge: GaugeGuard,
}

/// Counts this subscriber in `hub_subscribers{transport}` while alive.
struct GaugeGuard(metrics::Gauge);

impl Drop for GaugeGuard {
    fn drop(&mut self) {
        self.0.decrement(1.0);
    }
}

impl Subscriber {
    pub fn new(hub: Hub, format: Format, opened: Opened) -> Subscriber {
        let gauge = metrics::gauge!("hub_subscribers", "transport" => format.label());
        gauge.increment(1.0);
        let period = hub.config().heartbeat;
        let mut heartbeat = tokio::time::interval_at(Instant::now() + period, period);
        heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let notices = encode_gaps(format, &opened);
        let shutdown = Box::pin(hub.inner.shutdown.clone().cancelled_owned());
        Subscriber {
            hub,
            format,
            history_left: !opened.history.is_done(),
            opened,
            pending: Vec::new(),
            sent: 0,
            notices,
            heartbeat,
            shutdown,
            last_activity: Instant::now(),
            batches: 0,
            done: false,
            _gauge: GaugeGuard(gauge),
        }
    }

    pub fn format(&self) -> Format {
        self.format
    }

    /// Longest one write to this subscriber may take (`--write-timeout`).
    pub fn write_timeout(&self) -> std::time::Duration {
        self.hub.config().write_timeout
    }

    /// `retry:` for SSE clients at shutdown, in milliseconds.
    pub fn retry_ms(&self) -> u64 {
        self.hub.config().shutdown_retry_ms
    }

    /// Why the broker interrupted live delivery (the text of an
    /// `unavailable` notice), if it ever did.
    pub fn interrupted_why(&self) -> String {
        self.hub.rings().interrupted_why()
    }

    /// The last message id handed to the transport.
    pub fn last_id(&self) -> Option<crate::MessageId> {
        self.opened.live.last_id()
    }

    /// Messages of the current batch not sent yet.
    pub fn pending(&self) -> &[Arc<Message>] {
        &self.pending[self.sent..]
    }

    /// Marks `n` pending messages as sent, recording metrics.
    pub fn mark_sent(&mut self, n: usize) {
        if n == 0 {
            return;
        }
        let first = &self.pending[self.sent];
        let m = &self.hub.inner.metrics;
        m.deliveries.increment(n as u64);
        // Latency of the oldest message of one batch in eight (and of the
        // first): the exporter keeps every sample until it is scraped, and
        // a million samples a second would be megabytes.
        if self.batches.is_multiple_of(8) {
            m.latency.record(first.seen.elapsed().as_secs_f64());
        }
        self.batches = self.batches.wrapping_add(1);
        self.sent += n;
        if self.sent == self.pending.len() {
            self.pending.clear();
            self.sent = 0;
            // An idle subscriber stays small after a burst.
            if self.pending.capacity() > 256 {
                self.pending = Vec::new();
            }
        }
    }

    /// Gap notices to send before anything else (once).
    pub fn take_notices(&mut self) -> Option<Bytes> {
        self.notices.take()
    }

    /// Waits for the next thing to send. Cancel-safe: dropping the future
    /// loses nothing.
    pub async fn next_event(&mut self) -> Event {
        if !self.pending().is_empty() {
            return Event::Batch;
        }
        if self.history_left {
            // The next page of history (`history.rs`); once it runs dry,
            // live delivery takes over from the last id sent.
            let page = tokio::select! {
                biased;
                _ = self.shutdown.as_mut() => {
                    self.done = true;
                    return Event::Shutdown;
                }
                page = self.opened.history.next_page(&mut self.pending) => page,
            };
            match page {
                Ok(()) if !self.pending.is_empty() => {
                    if let Some(last) = self.pending.last() {
                        self.opened.live.skip_through(last.id);
                    }
                    return Event::Batch;
                }
                Ok(()) => self.history_left = false,
                Err(err) => {
                    // The store failed mid-history: end the stream as at
                    // shutdown, so the client comes back and resumes.
                    tracing::warn!(%err, "reading history failed; ending the subscription");
                    self.done = true;
                    return Event::Shutdown;
                }
            }
        }
        let idle = self.hub.config().idle_timeout;
        loop {
            if self.done {
                // Ended already; a transport should have stopped asking.
                return Event::Shutdown;
            }
            if let Err(lag) = self.opened.live.next_batch(&mut self.pending) {
                self.done = true;
                if lag.cause == Cut::Behind {
                    self.hub.inner.metrics.slow_disconnects.increment(1);
                }
                return Event::Lagged(lag);
            }
            if !self.pending.is_empty() {
                if idle.is_some() {
                    self.last_activity = Instant::now();
                }
                return Event::Batch;
            }
            // The hub's shutdown raises every subscriber's signal
            // (`Rings::stop`).
            if self.hub.rings().stopping() {
                self.done = true;
                return Event::Shutdown;
            }
            let idle_at = idle.map(|d| self.last_activity + d);
            tokio::select! {
                biased;
                _ = self.opened.live.changed() => {}
                _ = self.heartbeat.tick() => return Event::Heartbeat,
                _ = sleep_until_opt(idle_at) => {
                    self.done = true;
                    return Event::Idle;
                }
            }
        }
    }

    /// The next chunk of a streaming (raw, SSE, NDJSON) response, or `None`
    /// when the stream ends.
    async fn next_chunk(&mut self) -> Option<Bytes> {
        if let Some(n) = self.take_notices() {
            return Some(n);
        }
        if self.done && self.pending().is_empty() {
            return None;
        }
        match self.next_event().await {
            Event::Batch => Some(self.encode_frame()),
            Event::Heartbeat => Some(heartbeat(self.format)),
            Event::Lagged(lag) => lagged_notice(self.format, lag, &self.interrupted_why()),
            Event::Shutdown => shutdown_notice(self.format, self.hub.config().shutdown_retry_ms),
            Event::Idle => None,
        }
    }

    /// Appends pending messages' shared encodings to `buf`, up to
    /// `FRAME_BYTES` (at least one message), and marks them sent.
    pub(crate) fn fill_frame(&mut self, buf: &mut BytesMut) {
        self.fill_with(buf, 0, |buf, encoded| buf.extend_from_slice(encoded));
    }

    /// Appends pending messages to `buf` through `put` (given each one's
    /// shared encoding, to which it adds at most `overhead` bytes of
    /// framing), up to `FRAME_BYTES` (at least one message), and marks
    /// them sent. One reservation for the whole batch.
    pub(crate) fn fill_with(
        &mut self,
        buf: &mut BytesMut,
        overhead: usize,
        mut put: impl FnMut(&mut BytesMut, &Bytes),
    ) {
        let enc = self.format.encoding();
        let mut want = 0;
        for m in self.pending() {
            want += m.encoded(enc).len() + overhead;
            if want >= FRAME_BYTES {
                break;
            }
        }
        buf.reserve(want + 16);
        let mut n = 0;
        let start = buf.len();
        for m in self.pending() {
            let b = m.encoded(enc);
            if n > 0 && buf.len() - start + b.len() + overhead > FRAME_BYTES {
                break;
            }
            put(buf, b);
            n += 1;
        }
        self.mark_sent(n);
    }

    /// Concatenates pending messages' shared encodings into one buffer of
    /// at most `FRAME_BYTES` (or exactly one message, if that is larger).
    fn encode_frame(&mut self) -> Bytes {
        let enc = self.format.encoding();
        let pending = self.pending();
        if pending.len() == 1 {
            let b = pending[0].encoded(enc).clone();
            self.mark_sent(1);
            return b;
        }
        let mut n = 0;
        let mut size = 0;
        for m in pending {
            let len = m.encoded(enc).len();
            if n > 0 && size + len > FRAME_BYTES {
                break;
            }
            size += len;
            n += 1;
        }
        let mut buf = BytesMut::with_capacity(size);
        for m in &pending[..n] {
            buf.extend_from_slice(m.encoded(enc));
        }
        self.mark_sent(n);
        buf.freeze()
    }

    /// The streaming response body of this subscriber, opening with
    /// `preamble` (SSE's `retry:`).
    pub fn into_body(self) -> axum::body::Body {
        let preamble = match self.format {
            Format::Sse | Format::SseJson => Some(Bytes::from_static(sse::PREAMBLE)),
            _ => None,
        };
        let stream = futures::stream::unfold((self, preamble), |(mut sub, mut pre)| async move {
            let chunk = match pre.take() {
                Some(p) => Some(p),
                None => sub.next_chunk().await,
            };
            chunk.map(|c| (Ok::<_, Infallible>(c), (sub, None)))
        });
        axum::body::Body::from_stream(stream)
    }
}

/// A heartbeat in `format` (empty for raw, which has none).
pub(crate) fn heartbeat(format: Format) -> Bytes {
    match format {
        Format::Sse | Format::SseJson => Bytes::from_static(sse::HEARTBEAT),
        Format::Ndjson => Bytes::from_static(b"\n"),
        _ => Bytes::new(),
    }
}

/// The last words to a subscriber that was cut off (none for raw): it fell
/// behind (`lagged`), or the broker was interrupted (`unavailable`, with
/// `why` and, for SSE, a `retry:` so that `EventSource` comes back).
/// Either way the client resumes after `last_id`.
pub(crate) fn lagged_notice(format: Format, lag: Lagged, why: &str) -> Option<Bytes> {
    let last_id = lag.last_id.map(|i| i.0);
    let (event, json) = match lag.cause {
        Cut::Behind => {
            tracing::debug!(last_id = ?lag.last_id, "slow subscriber disconnected");
            (
                "lagged",
                serde_json::json!({"event": "lagged", "last_id": last_id}),
            )
        }
        Cut::Interrupted => (
            "unavailable",
            serde_json::json!({"event": "unavailable", "last_id": last_id, "reason": why}),
        ),
    };
    match format {
        Format::Sse | Format::SseJson if lag.cause == Cut::Interrupted => Some(Bytes::from(
            format!("retry: {UNAVAILABLE_RETRY_MS}\nevent: {event}\ndata: {json}\n\n"),
        )),
        Format::Sse | Format::SseJson => Some(sse::control(event, &json)),
        Format::Ndjson => Some(ndjson::control(&json)),
        _ => None,
    }
}

/// How long an `EventSource` waits before coming back after an
/// `unavailable` notice (the broker is reconnecting meanwhile).
pub const UNAVAILABLE_RETRY_MS: u64 = 1000;

/// The last words at shutdown (none for raw).
pub(crate) fn shutdown_notice(format: Format, retry_ms: u64) -> Option<Bytes> {
    let json = serde_json::json!({"event": "shutdown"});
    match format {
        Format::Sse | Format::SseJson => Some(Bytes::from(format!(
            "retry: {retry_ms}\nevent: shutdown\ndata: {json}\n\n"
        ))),
        Format::Ndjson => Some(ndjson::control(&json)),
        _ => None,
    }
}

/// How a WebSocket subscriber's stream ends at `event` (close code and
/// reason), where the other transports send their last words: 1008 with
/// the last id sent when lagged, 1013 ("try again later") with the reason
/// and the last id when the broker was interrupted, 1001 at shutdown, 1000
/// when idle. `None` for events that do not end it. Both WebSocket paths
/// (`server.rs` through hyper, `direct.rs` on the socket) close with these.
pub(crate) fn websocket_close(event: &Event, why: &str) -> Option<(u16, String)> {
    match event {
        Event::Batch | Event::Heartbeat => None,
        Event::Lagged(lag) if lag.cause == Cut::Interrupted => {
            let last = lag.last_id.map_or("none".to_string(), |i| i.to_string());
            // A close reason is at most 123 bytes: the id first, then as
            // much of the reason as fits.
            let mut text = format!("unavailable; last id {last}; {why}");
            if text.len() > 123 {
                let mut end = 123;
                while !text.is_char_boundary(end) {
                    end -= 1;
                }
                text.truncate(end);
            }
            Some((crate::transport::websocket::CLOSE_TRY_AGAIN, text))
        }
        Event::Lagged(lag) => {
            tracing::debug!(last_id = ?lag.last_id, "slow subscriber disconnected");
            let last = lag.last_id.map_or("none".to_string(), |i| i.to_string());
            Some((
                crate::transport::websocket::CLOSE_POLICY,
                format!("lagged; last id {last}"),
            ))
        }
        Event::Shutdown => Some((
            crate::transport::websocket::CLOSE_AWAY,
            "hub shutting down".into(),
        )),
        Event::Idle => Some((1000, "idle timeout".into())),
    }
}

async fn sleep_until_opt(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

fn encode_gaps(format: Format, opened: &Opened) -> Option<Bytes> {
    if opened.gaps.is_empty() {
        return None;
    }
    let mut buf = BytesMut::new();
    for gap in &opened.gaps {
        let mut json = serde_json::json!({
            "event": "gap",
            "topic": gap.topic.as_ref().map(TopicName::as_str),
            "after": gap.after.0,
            "dropped_through": gap.dropped_through.0,
        });
        if gap.topic.is_none() {
            // The summary past `MAX_GAP_NOTICES`: how many topics it covers.
            json["topics"] = gap.topics.into();
        }
        match format {
            Format::Sse | Format::SseJson => buf.extend_from_slice(&sse::control("gap", &json)),
            Format::Ndjson => buf.extend_from_slice(&ndjson::control(&json)),
            Format::WebSocket => {
                buf.extend_from_slice(json.to_string().as_bytes());
                buf.extend_from_slice(b"\n");
            }
            Format::Raw => {}
        }
    }
    (!buf.is_empty()).then(|| buf.freeze())
}
