//! NDJSON: one JSON object per line. A message:
//!
//! ```text
//! {"id":1764097620000001,"topic":"farm.cow","time":1764097620000,"message":"Moo!"}
//! ```
//!
//! Control records carry an `"event"` field instead of an `"id"`:
//! `{"event":"gap","topic":T,"after":A,"dropped_through":D}` (past 64
//! topics, one more with `"topic":null` and `"topics":N` sums up the rest),
//! `{"event":"lagged","last_id":N}`,
//! `{"event":"unavailable","last_id":N,"reason":R}` (the broker was
//! interrupted: resume after `N`), `{"event":"shutdown"}`. Heartbeats are
//! empty lines. WebSocket frames carry the same objects without the `\n`.

use bytes::{BufMut, Bytes, BytesMut};

use super::json_str;
use crate::message::Message;

pub(crate) fn encode(msg: &Message) -> Bytes {
    let text = msg.text();
    let mut b = BytesMut::with_capacity(text.len() + msg.topic.as_str().len() + 64);
    b.put_slice(b"{\"id\":");
    b.put_slice(msg.id.to_string().as_bytes());
    b.put_slice(b",\"topic\":");
    json_str(&mut b, msg.topic.as_str());
    b.put_slice(b",\"time\":");
    b.put_slice(msg.time_ms.to_string().as_bytes());
    b.put_slice(b",\"message\":");
    json_str(&mut b, &text);
    b.put_slice(b"}\n");
    b.freeze()
}

/// A control record line.
pub fn control(json: &serde_json::Value) -> Bytes {
    Bytes::from(format!("{json}\n"))
}

/// One line of an NDJSON stream as a client reads it: a message or a
/// control record. (`coop sub` reads the hub through this.)
#[derive(Debug, Clone, PartialEq, serde::Deserialize, serde::Serialize)]
#[serde(untagged)]
pub enum Record {
    Message(MessageRecord),
    Control(Control),
}

/// A message as NDJSON carries it.
#[derive(Debug, Clone, PartialEq, serde::Deserialize, serde::Serialize)]
pub struct MessageRecord {
    pub id: u64,
    pub topic: String,
    /// Publish time, Unix milliseconds.
    pub time: u64,
    pub message: String,
}

/// A control record: what happened to the stream rather than a message.
#[derive(Debug, Clone, PartialEq, serde::Deserialize, serde::Serialize)]
#[serde(tag = "event", rename_all = "lowercase")]
pub enum Control {
    /// Messages of `topic` after id `after` up to `dropped_through` are no
    /// longer held. `topic: None` sums up `topics` more topics past the
    /// first 64.
    Gap {
        topic: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        topics: Option<u64>,
        after: u64,
        dropped_through: u64,
    },
    /// The subscriber fell behind the hub and was cut off after `last_id`.
    Lagged {
        #[serde(default)]
        last_id: Option<u64>,
    },
    /// The hub's broker was interrupted (cluster mode: a Redis feed
    /// broke): resume after `last_id`, here or on another node.
    Unavailable {
        #[serde(default)]
        last_id: Option<u64>,
        #[serde(default)]
        reason: String,
    },
    /// The hub is shutting down: reconnect later.
    Shutdown,
    /// A kind this client does not know (a newer hub).
    #[serde(other)]
    Unknown,
}

impl Record {
    /// Parses one non-empty line.
    pub fn parse(line: &[u8]) -> Result<Record, serde_json::Error> {
        serde_json::from_slice(line)
    }
}

/// The client's side of an NDJSON stream: feed it the body's chunks as
/// they arrive, take whole records out. Heartbeats (empty lines) are
/// skipped; a line split over chunks waits for its end.
#[derive(Debug, Default)]
pub struct Decoder {
    buf: Vec<u8>,
}

impl Decoder {
    /// Adds `chunk` and returns the records completed by it, in order.
    pub fn push(&mut self, chunk: &[u8]) -> Vec<Result<Record, serde_json::Error>> {
        self.buf.extend_from_slice(chunk);
        let mut out = Vec::new();
        let mut start = 0;
        while let Some(nl) = self.buf[start..].iter().position(|&b| b == b'\n') {
            let line = self.buf[start..start + nl].trim_ascii();
            start += nl + 1;
            if !line.is_empty() {
                out.push(Record::parse(line));
            }
        }
        self.buf.drain(..start);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::{MessageId, TopicName};

    #[test]
    fn records_read_back_typed() {
        let m = Message::new(MessageId(3), TopicName::new("a").unwrap(), 42, "hi".into());
        let Record::Message(rec) = Record::parse(encode(&m).trim_ascii_end()).unwrap() else {
            panic!("a message")
        };
        assert_eq!(
            (rec.id, rec.topic.as_str(), rec.time, rec.message.as_str()),
            (3, "a", 42, "hi")
        );
        let gap = br#"{"event":"gap","topic":null,"topics":7,"after":1,"dropped_through":9}"#;
        assert_eq!(
            Record::parse(gap).unwrap(),
            Record::Control(Control::Gap {
                topic: None,
                topics: Some(7),
                after: 1,
                dropped_through: 9
            })
        );
        assert_eq!(
            Record::parse(br#"{"event":"lagged","last_id":5}"#).unwrap(),
            Record::Control(Control::Lagged { last_id: Some(5) })
        );
        assert_eq!(
            Record::parse(br#"{"event":"shutdown"}"#).unwrap(),
            Record::Control(Control::Shutdown)
        );
        assert_eq!(
            Record::parse(br#"{"event":"from-the-future","x":1}"#).unwrap(),
            Record::Control(Control::Unknown)
        );
        assert!(Record::parse(b"not json").is_err());
        assert!(
            Record::parse(br#"{"id":"x"}"#).is_err(),
            "neither a message nor an event"
        );
    }

    #[test]
    fn the_decoder_joins_split_lines_and_skips_heartbeats() {
        let mut d = Decoder::default();
        assert!(d.push(b"\n{\"event\":\"shu").is_empty());
        let got = d.push(b"tdown\"}\n\n{\"event\":\"lagged\"}\n");
        let got: Vec<Record> = got.into_iter().map(Result::unwrap).collect();
        assert_eq!(
            got,
            [
                Record::Control(Control::Shutdown),
                Record::Control(Control::Lagged { last_id: None })
            ]
        );
    }

    #[test]
    fn a_message_is_one_json_line_with_escapes() {
        let m = Message::new(
            MessageId(3),
            TopicName::new("a.b").unwrap(),
            42,
            "x\ny\"".into(),
        );
        let line = encode(&m);
        assert_eq!(line.iter().filter(|&&c| c == b'\n').count(), 1);
        let v: serde_json::Value = serde_json::from_slice(&line).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"id":3,"topic":"a.b","time":42,"message":"x\ny\""})
        );
    }
}
