//! NDJSON: one JSON object per line. A message:
//!
//! ```text
//! {"id":1764097620000001,"topic":"farm.cow","time":1764097620000,"message":"Moo!"}
//! ```
//!
//! Control records carry an `"event"` field instead of an `"id"`:
//! `{"event":"gap","topic":T,"after":A,"dropped_through":D}` (past 64
//! topics, one more with `"topic":null` and `"topics":N` sums up the rest),
//! `{"event":"lagged","last_id":N}`, `{"event":"shutdown"}`. Heartbeats are
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::{MessageId, TopicName};

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
