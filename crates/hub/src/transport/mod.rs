//! Wire formats. One subscription URL, four transports, chosen by
//! [`Format::choose`] from `?format=`, a WebSocket upgrade, or `Accept`:
//!
//! | format | chosen by | one message | a message with line breaks |
//! |---|---|---|---|
//! | raw (default) | anything else | `{message}\r\n` (the talk's) | sent as is: a reader splitting on lines sees several (raw has no framing) |
//! | SSE | `Accept: text/event-stream`, `?format=sse` | `id:`, `event: message`, `topic:`, one `data:` per line, blank line | each line its own `data:` line; `EventSource` joins them with `\n` (a `\r\n` or `\r` comes back as `\n`) |
//! | SSE with JSON data | `?format=sse-json` | `id:`, `event: message`, `data: {"id","topic","time","message"}` | escaped inside the JSON string: exact |
//! | NDJSON | `Accept: application/x-ndjson`, `?format=ndjson` | `{"id","topic","time","message"}\n` | escaped inside the JSON string: exact |
//! | WebSocket | an `Upgrade: websocket` request | one text frame holding the NDJSON object (no `\n`) | exact |
//!
//! `time` is the publish time in Unix milliseconds. The `topic:` field of SSE
//! is ignored by browsers (unknown fields are, by the SSE spec) and read by
//! `coop sub`; a browser that needs each message's topic (a pattern or a
//! list of topics) asks for `sse-json`, whose data is the NDJSON record, and
//! keeps `EventSource`'s reconnect and `Last-Event-ID`. Control records (gap, lag, shutdown) are described in
//! `sse.rs` and `ndjson.rs`; raw streams simply end.
//!
//! Each message is encoded at most once per format (`Message::encoded`) and
//! the bytes are shared by every subscriber of that format; a subscriber
//! concatenates everything new into one buffer and writes it at once.

pub mod ndjson;
pub mod raw;
pub mod sse;
pub mod websocket;

use bytes::{BufMut, Bytes, BytesMut};

use crate::message::{Message, ENCODINGS};

/// How a subscriber wants its stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Raw,
    Sse,
    /// SSE framing, the NDJSON record as `data:`.
    SseJson,
    Ndjson,
    WebSocket,
}

impl Format {
    /// Label for metrics and logs.
    pub fn label(self) -> &'static str {
        match self {
            Format::Raw => "raw",
            Format::Sse => "sse",
            Format::SseJson => "sse-json",
            Format::Ndjson => "ndjson",
            Format::WebSocket => "websocket",
        }
    }

    /// The shared encoding this format writes.
    pub fn encoding(self) -> Encoding {
        match self {
            Format::Raw => Encoding::Raw,
            Format::Sse => Encoding::Sse,
            Format::SseJson => Encoding::SseJson,
            Format::Ndjson | Format::WebSocket => Encoding::Json,
        }
    }

    /// Picks the format: `?format=` wins, then a WebSocket upgrade, then
    /// `Accept`. An unknown `?format=` is an error naming the choices.
    pub fn choose(
        query: Option<&str>,
        upgrade: bool,
        accept: Option<&str>,
    ) -> Result<Format, String> {
        if let Some(q) = query {
            return match q {
                "raw" | "text" => Ok(Format::Raw),
                "sse" | "event-stream" => Ok(Format::Sse),
                "sse-json" => Ok(Format::SseJson),
                "ndjson" | "json" | "jsonl" => Ok(Format::Ndjson),
                "ws" | "websocket" if upgrade => Ok(Format::WebSocket),
                "ws" | "websocket" => Err("format=ws needs a WebSocket upgrade request".into()),
                other => Err(format!(
                    "unknown format {other:?}: use raw, sse, sse-json, ndjson or a WebSocket upgrade"
                )),
            };
        }
        if upgrade {
            return Ok(Format::WebSocket);
        }
        let accept = accept.unwrap_or("");
        if accept.contains("text/event-stream") {
            Ok(Format::Sse)
        } else if accept.contains("application/x-ndjson")
            || accept.contains("application/jsonl")
            || accept.contains("application/ndjson")
        {
            Ok(Format::Ndjson)
        } else {
            Ok(Format::Raw)
        }
    }

    /// Whether this is Server-Sent Events (preamble, heartbeats and control
    /// events as SSE).
    pub fn is_sse(self) -> bool {
        matches!(self, Format::Sse | Format::SseJson)
    }

    /// The `Content-Type` of the streaming response.
    pub fn content_type(self) -> &'static str {
        match self {
            Format::Raw => "text/plain; charset=utf-8",
            Format::Sse | Format::SseJson => "text/event-stream",
            Format::Ndjson | Format::WebSocket => "application/x-ndjson",
        }
    }
}

/// Encodes one message (called once per message and encoding).
/// The wire encodings a message can be shared in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    /// `{message}\r\n`, the talk's format.
    Raw = 0,
    /// One Server-Sent Event (`id:`, `event:`, `data:` lines).
    Sse = 1,
    /// One JSON object and `\n` (NDJSON; also the WebSocket text frame).
    Json = 2,
    /// One Server-Sent Event whose `data:` is the NDJSON object.
    SseJson = 3,
}

// A message keeps one cache slot per encoding.
const _: () = assert!(Encoding::SseJson as usize + 1 == ENCODINGS);

impl Message {
    /// This message encoded for `enc`, built once and shared (and charged
    /// to the memory budget with the message).
    pub fn encoded(&self, enc: Encoding) -> &Bytes {
        let cell = &self.encoded[enc as usize];
        if let Some(b) = cell.get() {
            return b;
        }
        let mut built = false;
        let b = cell.get_or_init(|| {
            built = true;
            encode(self, enc)
        });
        if built {
            if let Some(charge) = self.charge.get() {
                charge.add(b.len());
            }
        }
        b
    }
}

fn encode(msg: &Message, enc: Encoding) -> Bytes {
    match enc {
        Encoding::Raw => raw::encode(msg),
        Encoding::Sse => sse::encode(msg),
        Encoding::Json => ndjson::encode(msg),
        Encoding::SseJson => sse::encode_json(msg),
    }
}

/// Appends `s` to `out` as a JSON string literal (with quotes).
pub(crate) fn json_str(out: &mut BytesMut, s: &str) {
    out.put_u8(b'"');
    let bytes = s.as_bytes();
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let esc: &[u8] = match b {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            0..=0x1f => {
                out.put_slice(&bytes[start..i]);
                out.put_slice(format!("\\u{b:04x}").as_bytes());
                start = i + 1;
                continue;
            }
            _ => continue,
        };
        out.put_slice(&bytes[start..i]);
        out.put_slice(esc);
        start = i + 1;
    }
    out.put_slice(&bytes[start..]);
    out.put_u8(b'"');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn format_choice_follows_query_upgrade_then_accept() {
        assert_eq!(Format::choose(None, false, None), Ok(Format::Raw));
        assert_eq!(
            Format::choose(None, false, Some("text/event-stream")),
            Ok(Format::Sse)
        );
        assert_eq!(
            Format::choose(None, false, Some("application/x-ndjson")),
            Ok(Format::Ndjson)
        );
        assert_eq!(
            Format::choose(None, true, Some("text/event-stream")),
            Ok(Format::WebSocket)
        );
        assert_eq!(Format::choose(Some("sse"), true, None), Ok(Format::Sse));
        assert_eq!(
            Format::choose(Some("sse-json"), false, None),
            Ok(Format::SseJson)
        );
        assert!(Format::choose(Some("xml"), false, None)
            .unwrap_err()
            .contains("unknown format"));
    }

    #[test]
    fn json_strings_are_escaped() {
        let mut b = BytesMut::new();
        json_str(&mut b, "a\"b\\c\nd\u{1}é");
        assert_eq!(std::str::from_utf8(&b).unwrap(), r#""a\"b\\c\nd\u0001é""#);
        let s: String = serde_json::from_slice(&b).unwrap();
        assert_eq!(s, "a\"b\\c\nd\u{1}é");
    }

    use crate::message::{MessageId, TopicName};
    use proptest::prelude::*;

    fn message(body: &str) -> Message {
        Message::new(
            MessageId(42),
            TopicName::new("farm.cow").unwrap(),
            1_700_000_000_000,
            body.to_owned().into(),
        )
    }

    /// The data of the one event in `sse`, read as `EventSource` does:
    /// lines split on `\r\n`, `\r` or `\n`, `data:` fields joined by `\n`.
    fn sse_data(sse: &str) -> (Vec<String>, String) {
        let mut names = Vec::new();
        let mut data: Vec<String> = Vec::new();
        let normalised = sse.replace("\r\n", "\n").replace('\r', "\n");
        let body = normalised
            .strip_suffix("\n\n")
            .expect("an event ends with a blank line");
        for line in body.split('\n') {
            assert!(!line.is_empty(), "one event only: {sse:?}");
            let (name, value) = line.split_once(':').unwrap_or((line, ""));
            let value = value.strip_prefix(' ').unwrap_or(value);
            names.push(name.to_string());
            if name == "data" {
                data.push(value.to_string());
            }
        }
        (names, data.join("\n"))
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        /// Any message, line breaks and control characters included,
        /// comes back exact from NDJSON, SSE-JSON and WebSocket, as the
        /// talk's line from raw, and from SSE with its line breaks read
        /// as `EventSource` reads them: one event, never a forged field.
        #[test]
        fn every_encoding_carries_any_message(body in "\\PC*|[a\r\n:\u{0}-\u{1f}é]{0,40}") {
            let msg = message(&body);

            let json = encode(&msg, Encoding::Json);
            prop_assert!(json.ends_with(b"\n"));
            prop_assert!(!json[..json.len() - 1].contains(&b'\n'), "one line");
            let rec: serde_json::Value = serde_json::from_slice(&json).unwrap();
            prop_assert_eq!(rec["message"].as_str(), Some(body.as_str()));
            prop_assert_eq!(rec["id"].as_u64(), Some(42));
            prop_assert_eq!(rec["topic"].as_str(), Some("farm.cow"));

            let raw = encode(&msg, Encoding::Raw);
            let line = format!("{body}\r\n");
            prop_assert_eq!(&raw[..], line.as_bytes());

            let sse = encode(&msg, Encoding::Sse);
            let (names, data) = sse_data(std::str::from_utf8(&sse).unwrap());
            prop_assert_eq!(data, body.replace("\r\n", "\n").replace('\r', "\n"));
            prop_assert!(
                names.iter().all(|n| ["id", "event", "topic", "data"].contains(&n.as_str())),
                "no forged field: {:?}", names
            );

            let sse_json = encode(&msg, Encoding::SseJson);
            let (_, data) = sse_data(std::str::from_utf8(&sse_json).unwrap());
            let rec: serde_json::Value = serde_json::from_str(&data).unwrap();
            prop_assert_eq!(rec["message"].as_str(), Some(body.as_str()));
        }
    }
}
