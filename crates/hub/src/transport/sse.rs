//! Server-Sent Events.
//!
//! A message:
//!
//! ```text
//! id: 1764097620000001
//! event: message
//! topic: farm.cow
//! data: first line
//! data: second line
//!
//! ```
//!
//! Control events (no `id:`, so they do not move `Last-Event-ID`):
//! - `event: gap`, `data: {"after":A,"dropped_through":D,"topic":T}`: ids after
//!   `A` up to `D` of topic `T` are no longer held; what follows is what is.
//! - `event: lagged`, `data: {"last_id":N}`: this subscriber fell behind by
//!   more than its buffer and is disconnected; resume with `?since=N`.
//! - `event: unavailable`, preceded by `retry: MS`,
//!   `data: {"last_id":N,"reason":R}`: the hub's broker was interrupted
//!   (cluster mode); `EventSource` comes back after `MS` and resumes.
//! - `event: shutdown`, preceded by `retry: MS`: the hub is stopping;
//!   `EventSource` reconnects after `MS` with its `Last-Event-ID`.
//! - `: hb` comments every `--heartbeat` keep proxies from timing out.
//!
//! The stream opens with `retry: 2000` and a `: hello` comment.

use bytes::{BufMut, Bytes, BytesMut};

use crate::message::Message;

pub(crate) fn encode(msg: &Message) -> Bytes {
    let text = msg.text();
    let mut b = BytesMut::with_capacity(text.len() + msg.topic.as_str().len() + 64);
    b.put_slice(b"id: ");
    b.put_slice(msg.id.to_string().as_bytes());
    b.put_slice(b"\nevent: message\ntopic: ");
    b.put_slice(msg.topic.as_str().as_bytes());
    b.put_u8(b'\n');
    data_lines(&mut b, &text);
    b.put_u8(b'\n');
    b.freeze()
}

/// One event whose data is the message's NDJSON record (one line: JSON
/// escapes line breaks), for browsers that need the topic.
pub(crate) fn encode_json(msg: &Message) -> Bytes {
    let record = super::ndjson::encode(msg);
    let record = record.strip_suffix(b"\n").unwrap_or(&record);
    let mut b = BytesMut::with_capacity(record.len() + 48);
    b.put_slice(b"id: ");
    b.put_slice(msg.id.to_string().as_bytes());
    b.put_slice(b"\nevent: message\ndata: ");
    b.put_slice(record);
    b.put_slice(b"\n\n");
    b.freeze()
}

/// Appends `data: ` lines for `text`, splitting on `\r\n`, `\r` and `\n`
/// as SSE parsers do.
pub(crate) fn data_lines(b: &mut BytesMut, text: &str) {
    let mut rest = text;
    loop {
        let cut = rest.find(['\r', '\n']);
        let (line, next) = match cut {
            None => (rest, None),
            Some(i) => {
                let skip = if rest[i..].starts_with("\r\n") { 2 } else { 1 };
                (&rest[..i], Some(&rest[i + skip..]))
            }
        };
        b.put_slice(b"data: ");
        b.put_slice(line.as_bytes());
        b.put_u8(b'\n');
        match next {
            Some(n) => rest = n,
            None => break,
        }
    }
}

/// A control event with a JSON `data` line.
pub fn control(event: &str, json: &serde_json::Value) -> Bytes {
    Bytes::from(format!("event: {event}\ndata: {json}\n\n"))
}

/// The first bytes of every SSE stream.
pub const PREAMBLE: &[u8] = b"retry: 2000\n: hello\n\n";
/// A heartbeat comment.
pub const HEARTBEAT: &[u8] = b": hb\n\n";

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::{MessageId, TopicName};

    #[test]
    fn multi_line_messages_become_several_data_lines() {
        let m = Message::new(
            MessageId(7),
            TopicName::new("t").unwrap(),
            0,
            "a\nb\r\nc\rd".into(),
        );
        assert_eq!(
            &encode(&m)[..],
            b"id: 7\nevent: message\ntopic: t\ndata: a\ndata: b\ndata: c\ndata: d\n\n".as_slice()
        );
        let empty = Message::new(MessageId(8), TopicName::new("t").unwrap(), 0, "".into());
        assert!(encode(&empty).ends_with(b"data: \n\n"));
    }
}
