//! The client side of a WebSocket subscriber, as small as the HTTP one: a
//! hand-written upgrade request and a decoder of the server's frames that
//! keeps a header of at most 14 bytes and, only when a message is split
//! across reads or fragments, its bytes so far.
//!
//! The server under test (coop, nchan) sends unmasked frames; text and
//! binary messages are handed over whole, pings and pongs are skipped (the
//! runs are shorter than any server's ping interval, and a subscriber that
//! does not answer them is what the server would see from a slow client
//! anyway), and a close frame ends the stream with its code and reason.

use crate::http::BadResponse;

/// The key every subscriber sends: RFC 6455's example, so the answer's
/// `Sec-WebSocket-Accept` is known without hashing.
pub const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";
/// The `Sec-WebSocket-Accept` that answers [`KEY`].
pub const ACCEPT: &str = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=";

/// A WebSocket upgrade of `path_and_query` on `authority`.
pub fn upgrade_request(path_and_query: &str, authority: &str) -> Vec<u8> {
    format!(
        "GET {path_and_query} HTTP/1.1\r\nHost: {authority}\r\nUpgrade: websocket\r\n\
         Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: {KEY}\r\n\
         User-Agent: coop-bench\r\n\r\n"
    )
    .into_bytes()
}

/// Whether a `101` head carries the accept key that answers [`KEY`].
pub fn accepts(head: &[u8]) -> bool {
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut resp = httparse::Response::new(&mut headers);
    if !matches!(resp.parse(head), Ok(httparse::Status::Complete(_))) {
        return false;
    }
    resp.headers.iter().any(|h| {
        h.name.eq_ignore_ascii_case("sec-websocket-accept")
            && h.value.trim_ascii() == ACCEPT.as_bytes()
    })
}

/// Decodes server frames, a read at a time.
#[derive(Debug, Default)]
pub struct FrameDecoder {
    /// Header bytes so far (2 to 14).
    head: [u8; 14],
    have: usize,
    /// Past a header: the frame's opcode, whether it ends its message, and
    /// the payload bytes still to come.
    in_frame: bool,
    opcode: u8,
    fin: bool,
    left: u64,
    /// Whether a fragmented message is open.
    in_message: bool,
    /// The message so far, when it spans reads or fragments.
    carry: Vec<u8>,
    /// A close frame's payload.
    close: Vec<u8>,
}

impl FrameDecoder {
    /// Feeds `input`, calling `message` with each whole text or binary
    /// message. Errors on a close frame (with its code and reason), a
    /// message longer than `max`, or broken framing.
    pub fn feed(
        &mut self,
        mut input: &[u8],
        max: usize,
        mut message: impl FnMut(&[u8]),
    ) -> Result<(), BadResponse> {
        loop {
            if !self.in_frame && self.have == 0 && !self.in_message {
                // The common case, a whole unfragmented data frame in this
                // read: handed over in place, no state touched.
                if let Some((payload, used)) = whole_frame(input, max) {
                    message(payload);
                    input = &input[used..];
                    continue;
                }
            }
            if !self.in_frame {
                if input.is_empty() {
                    return Ok(());
                }
                let n = (self.header_len() - self.have).min(input.len());
                self.head[self.have..self.have + n].copy_from_slice(&input[..n]);
                self.have += n;
                input = &input[n..];
                // The second byte tells how long the header is.
                if self.have < self.header_len() {
                    continue;
                }
                self.start_frame(max)?;
            }
            let n = self.left.min(input.len() as u64) as usize;
            let data = &input[..n];
            input = &input[n..];
            self.left -= n as u64;
            match self.opcode {
                0x9 | 0xA => {} // ping, pong: skipped
                0x8 => self.close.extend_from_slice(data),
                _ if self.left == 0 && self.fin && self.carry.is_empty() => {
                    // The whole message is in this read: no copy.
                    message(data);
                    self.in_frame = false;
                    continue;
                }
                _ => self.carry.extend_from_slice(data),
            }
            if self.left > 0 {
                return Ok(());
            }
            self.in_frame = false;
            match self.opcode {
                0x8 => return Err(close_error(&self.close)),
                0x9 | 0xA => {}
                _ if self.fin => {
                    message(&self.carry);
                    self.carry.clear();
                    if self.carry.capacity() > 64 * 1024 {
                        self.carry = Vec::new();
                    }
                }
                _ => {}
            }
        }
    }

    fn header_len(&self) -> usize {
        if self.have < 2 {
            return 2;
        }
        let ext = match self.head[1] & 0x7f {
            126 => 2,
            127 => 8,
            _ => 0,
        };
        let mask = if self.head[1] & 0x80 != 0 { 4 } else { 0 };
        2 + ext + mask
    }

    fn start_frame(&mut self, max: usize) -> Result<(), BadResponse> {
        let bad = |m: &str| Err(BadResponse(format!("WebSocket: {m}")));
        let (b0, b1) = (self.head[0], self.head[1]);
        self.have = 0;
        if b1 & 0x80 != 0 {
            return bad("masked frame from the server");
        }
        let len = match b1 & 0x7f {
            126 => u16::from_be_bytes([self.head[2], self.head[3]]) as u64,
            127 => u64::from_be_bytes(self.head[2..10].try_into().expect("8 bytes")),
            n => n as u64,
        };
        let (opcode, fin) = (b0 & 0x0f, b0 & 0x80 != 0);
        match opcode {
            0x0..=0x2 => {
                if (opcode == 0x0) != self.in_message {
                    return bad("fragments out of order");
                }
                if self.carry.len() as u64 + len > max as u64 {
                    return bad(&format!("message longer than {max} bytes"));
                }
                self.in_message = !fin;
            }
            0x8..=0xA if fin && len <= 125 => self.close.clear(),
            0x8..=0xA => return bad("fragmented or long control frame"),
            _ => return bad("unknown opcode"),
        }
        self.opcode = opcode;
        self.fin = fin;
        self.left = len;
        self.in_frame = true;
        Ok(())
    }
}

/// A final, unmasked text or binary frame of at most `max` bytes whole at
/// the start of `input`: its payload and its length with the header.
fn whole_frame(input: &[u8], max: usize) -> Option<(&[u8], usize)> {
    let (&b0, &b1) = (input.first()?, input.get(1)?);
    if b0 != 0x81 && b0 != 0x82 {
        return None;
    }
    let (len, at) = match b1 {
        0..=125 => (b1 as usize, 2),
        126 => (
            u16::from_be_bytes([*input.get(2)?, *input.get(3)?]) as usize,
            4,
        ),
        _ => return None,
    };
    if len > max || input.len() < at + len {
        return None;
    }
    Some((&input[at..at + len], at + len))
}

fn close_error(payload: &[u8]) -> BadResponse {
    match payload {
        [a, b, reason @ ..] => BadResponse(format!(
            "WebSocket closed by the server: {} {}",
            u16::from_be_bytes([*a, *b]),
            String::from_utf8_lossy(reason)
        )),
        _ => BadResponse("WebSocket closed by the server".into()),
    }
}

/// The message a subscriber's frame carries: coop's NDJSON record
/// (`{"id":…,"topic":…,"time":…,"message":"…"}`, whose `message` the
/// benchmark's messages never need to escape), or the frame itself
/// (nchan sends the published bytes as they are).
pub fn message_of(payload: &[u8]) -> &[u8] {
    const KEY: &[u8] = b"\"message\":\"";
    // `message` is the record's last field: `…,"message":"TEXT"}`. Found
    // from the end (TEXT has no `"`), it costs a scan of TEXT alone.
    let Some(body) = payload
        .strip_prefix(b"{")
        .and_then(|p| p.strip_suffix(b"\"}"))
    else {
        return payload;
    };
    match memchr::memrchr(b'"', body) {
        Some(q) if body[..=q].ends_with(KEY) => &body[q + 1..],
        _ => payload,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(first: u8, payload: &[u8]) -> Vec<u8> {
        let mut f = vec![first];
        match payload.len() {
            n if n < 126 => f.push(n as u8),
            n if n <= 65535 => {
                f.push(126);
                f.extend_from_slice(&(n as u16).to_be_bytes());
            }
            n => {
                f.push(127);
                f.extend_from_slice(&(n as u64).to_be_bytes());
            }
        }
        f.extend_from_slice(payload);
        f
    }

    fn decode(bytes: &[u8], step: usize) -> (Vec<Vec<u8>>, Option<String>) {
        let mut d = FrameDecoder::default();
        let mut got = Vec::new();
        for piece in bytes.chunks(step) {
            if let Err(e) = d.feed(piece, 1 << 20, |m| got.push(m.to_vec())) {
                return (got, Some(e.0));
            }
        }
        (got, None)
    }

    #[test]
    fn messages_come_out_whole_whatever_the_reads() {
        let long = vec![b'z'; 70_000];
        let mut bytes = frame(0x81, b"one");
        bytes.extend(frame(0x89, b"")); // a ping: skipped
        bytes.extend(frame(0x81, &[b'y'; 300]));
        bytes.extend(frame(0x01, b"frag"));
        bytes.extend(frame(0x8a, b"pong between fragments"));
        bytes.extend(frame(0x80, b"ment"));
        bytes.extend(frame(0x82, &long));
        for step in [1, 2, 7, 300, 1 << 20] {
            let (got, err) = decode(&bytes, step);
            assert_eq!(err, None, "step {step}");
            assert_eq!(
                got,
                vec![
                    b"one".to_vec(),
                    vec![b'y'; 300],
                    b"fragment".to_vec(),
                    long.clone()
                ],
                "step {step}"
            );
        }
    }

    #[test]
    fn a_close_ends_with_its_code() {
        let mut bytes = frame(0x81, b"last");
        bytes.extend(frame(0x88, b"\x03\xe9hub shutting down"));
        let (got, err) = decode(&bytes, 3);
        assert_eq!(got, vec![b"last".to_vec()]);
        assert!(err.unwrap().contains("1001 hub shutting down"));
        let (_, err) = decode(&[0x81, 0x81, 0, 0, 0, 0], 6);
        assert!(err.unwrap().contains("masked"));
    }

    #[test]
    fn the_message_is_the_record_s_or_the_frame() {
        let rec = br#"{"id":5,"topic":"default","time":1,"message":"7_9_0badf00d_xx"}"#;
        assert_eq!(message_of(rec), b"7_9_0badf00d_xx");
        assert_eq!(message_of(b"7_9_0badf00d_xx"), b"7_9_0badf00d_xx");
        let odd = br#"{"message":"a","x":"b"}"#;
        assert_eq!(message_of(odd), &odd[..], "not a record of ours");
        let request = String::from_utf8(upgrade_request("/ws", "127.0.0.1:8090")).unwrap();
        assert!(request.starts_with("GET /ws HTTP/1.1\r\nHost: 127.0.0.1:8090\r\n"));
        assert!(request.ends_with("\r\n\r\n"));
        assert!(accepts(
            format!("HTTP/1.1 101 Switching Protocols\r\nSec-WebSocket-Accept: {ACCEPT}\r\n\r\n")
                .as_bytes()
        ));
        assert!(!accepts(b"HTTP/1.1 101 Switching Protocols\r\n\r\n"));
    }
}
