//! What travels through the hub: message ids, validated topic names, and the
//! immutable [`Message`] that the store returns and every subscriber shares.
//!
//! A message is created once (by the store, which assigns its id), wrapped in
//! an `Arc`, and from then on only read. Each wire format encodes it at most
//! once, lazily, into a [`Bytes`] that every subscriber of that format shares
//! (`Message::encoded`); fan-out therefore copies pointers, not payloads.

use std::fmt;
use std::str::FromStr;
use std::sync::{Arc, OnceLock};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;

/// A message id: a `u64`, increasing across the whole hub (all topics).
///
/// Why one hub-wide sequence and not one per topic: a subscription may span
/// several topics (`/topics/a,b`, patterns), and a single `Last-Event-ID`
/// must then say where to resume in all of them. With hub-wide increasing
/// ids, "everything after id N in these topics" is exact.
///
/// Encoding: plain decimal, in SSE `id:`, `Last-Event-ID`, `?since=` and
/// JSON. The in-memory store starts its sequence at the current Unix time in
/// microseconds, so ids keep increasing across a restart of a non-durable hub
/// and a client resuming with an old id never skips new messages. Durable
/// stores continue from their largest stored id; a Redis cluster uses one
/// `INCR`ed counter (see `broker/mod.rs`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct MessageId(pub u64);

impl MessageId {
    /// The largest id any store can hold: SQLite's `INTEGER` (and so the
    /// durable store) is an `i64`. Ids are publish times in microseconds,
    /// which reach this in the year 294,247; a resume point above it
    /// (`?since=`, `Last-Event-ID`) is refused with `400` on every store,
    /// rather than wrapping to a negative number on one and meaning
    /// "after everything" on another.
    pub const MAX: MessageId = MessageId(i64::MAX as u64);
}

impl fmt::Display for MessageId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl FromStr for MessageId {
    type Err = std::num::ParseIntError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        s.trim().parse().map(MessageId)
    }
}

/// Longest topic name accepted, in bytes.
pub const MAX_TOPIC_LEN: usize = 128;

/// A validated topic name: 1 to 128 of `A-Z a-z 0-9 . _ -`, not starting
/// or ending with `.` and without an empty segment (`a..b`). Dots separate
/// segments for pattern subscriptions (`farm.*`). Cheap to clone.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TopicName(Arc<str>);

impl TopicName {
    /// Validates `name`, or says in one line what is wrong with it.
    pub fn new(name: &str) -> Result<TopicName, String> {
        check_name(name, false)?;
        Ok(TopicName(Arc::from(name)))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for TopicName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Checks a topic name, or a pattern when `pattern` is true (then `*` and
/// `**` may appear as whole segments or inside one).
pub(crate) fn check_name(name: &str, pattern: bool) -> Result<(), String> {
    if name.is_empty() {
        return Err("empty topic name".into());
    }
    if name.len() > MAX_TOPIC_LEN {
        return Err(format!(
            "topic name longer than {MAX_TOPIC_LEN} bytes ({} bytes)",
            name.len()
        ));
    }
    if let Some(c) = name.chars().find(|&c| {
        !(c.is_ascii_alphanumeric() || c == '.' || c == '_' || c == '-' || (pattern && c == '*'))
    }) {
        return Err(format!(
            "topic name {name:?} contains {c:?}: use letters, digits, '.', '_' and '-'{}",
            if pattern {
                " (and '*' in patterns)"
            } else {
                ""
            }
        ));
    }
    if name.split('.').any(str::is_empty) {
        return Err(format!(
            "topic name {name:?} has an empty segment (leading, trailing or double '.')"
        ));
    }
    Ok(())
}

/// One published message. Immutable once created; shared as `Arc<Message>`.
pub struct Message {
    /// Assigned by the store; increasing hub-wide.
    pub id: MessageId,
    /// The topic it was published to.
    pub topic: TopicName,
    /// Wall-clock publish time, Unix milliseconds (what clients see).
    pub time_ms: u64,
    /// The payload: valid UTF-8 (checked at publish), at most `--max-message`.
    pub body: Bytes,
    /// When this process first saw the message (publish or arrival from
    /// another node); publish-to-delivery latency is measured from here.
    pub seen: Instant,
    /// Lazily built wire encodings, one per `transport::Encoding`; built
    /// by the first subscriber that needs it, then shared by all
    /// (`Message::encoded`, in `transport`: the wire is transport's idea).
    pub(crate) encoded: [OnceLock<Bytes>; ENCODINGS],
    /// This message's share of the hub's memory budget, taken by the first
    /// container that holds it (`budget.rs`) and released with the message.
    pub(crate) charge: OnceLock<crate::budget::Charge>,
}

/// How many wire encodings a message caches (`transport::Encoding`).
pub(crate) const ENCODINGS: usize = 4;

impl fmt::Debug for Message {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Message")
            .field("id", &self.id)
            .field("topic", &self.topic)
            .field("time_ms", &self.time_ms)
            .field("body", &self.body)
            .finish()
    }
}

impl Message {
    /// A message as a store creates it. `body` must be UTF-8 (the hub checks
    /// before it calls the store; stores reading back their own data may
    /// rely on it having been checked then).
    pub fn new(id: MessageId, topic: TopicName, time_ms: u64, body: Bytes) -> Message {
        Message {
            id,
            topic,
            time_ms,
            body,
            seen: Instant::now(),
            encoded: Default::default(),
            charge: OnceLock::new(),
        }
    }

    /// The body as text. Bodies are checked to be UTF-8 at publish; a store
    /// that hands back something else gets its bytes replaced lossily here
    /// rather than a panic.
    pub fn text(&self) -> std::borrow::Cow<'_, str> {
        String::from_utf8_lossy(&self.body)
    }

    /// Bytes of the encodings built so far (charged with the message).
    pub(crate) fn encoded_len(&self) -> usize {
        self.encoded
            .iter()
            .filter_map(OnceLock::get)
            .map(Bytes::len)
            .sum()
    }
}

/// Now, as Unix milliseconds.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Now, as Unix microseconds (the in-memory store's first id).
pub fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_validated_with_a_reason() {
        assert!(TopicName::new("farm.cow_1-a").is_ok());
        assert!(TopicName::new("").unwrap_err().contains("empty"));
        assert!(TopicName::new("a b").unwrap_err().contains("' '"));
        assert!(TopicName::new("a..b")
            .unwrap_err()
            .contains("empty segment"));
        assert!(TopicName::new(".a").is_err());
        assert!(TopicName::new("a*").unwrap_err().contains("'*'"));
        assert!(TopicName::new(&"x".repeat(129))
            .unwrap_err()
            .contains("longer"));
        assert!(check_name("farm.*", true).is_ok());
    }
}
