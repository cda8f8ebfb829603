//! WebSocket framing (RFC 6455) for subscribers that own their socket
//! (`direct.rs`): the frames the hub writes, and a small reader of what a
//! client may send.
//!
//! The hub writes unmasked frames: one text frame per message, whose
//! payload is the message's shared NDJSON encoding without its `\n`
//! (`Encoding::Json`), so a batch is a header and a copy per message;
//! empty pings as heartbeats; a close frame at the end, with the code and
//! reason `server.rs::run_websocket` sends for the same ending (the two
//! paths answer alike).
//!
//! A subscriber has nothing to say. [`Reader`] reads its frames as they
//! come, keeping a header of at most 14 bytes and the payload of one
//! control frame (at most 125): pings are answered with pongs, a close
//! with a close, data frames are counted and dropped, and anything past
//! [`WS_MAX_INCOMING`] (one frame, or the fragments of one message) ends
//! the connection with 1009 before its payload is read. Broken framing
//! (an unmasked frame, reserved bits or opcodes, a fragmented or long
//! control frame, fragments out of order) ends it with 1002.

use bytes::{BufMut, BytesMut};

use crate::server::WS_MAX_INCOMING;

pub const OP_CONTINUATION: u8 = 0x0;
pub const OP_TEXT: u8 = 0x1;
pub const OP_BINARY: u8 = 0x2;
pub const OP_CLOSE: u8 = 0x8;
pub const OP_PING: u8 = 0x9;
pub const OP_PONG: u8 = 0xA;

/// Bytes a server frame's header takes at most (no mask).
pub const HEADER_MAX: usize = 10;

/// An empty ping: the heartbeat of an idle subscriber.
pub const PING: &[u8] = &[0x80 | OP_PING, 0];

/// Close code: going away (the hub shuts down).
pub const CLOSE_AWAY: u16 = 1001;
/// Close code: the peer broke the protocol.
pub const CLOSE_PROTOCOL: u16 = 1002;
/// Close code: a policy was violated (a subscriber fell behind).
pub const CLOSE_POLICY: u16 = 1008;
/// "Try again later": the hub's broker was interrupted; resume with the
/// last id (the reason says which).
pub const CLOSE_TRY_AGAIN: u16 = 1013;
/// Close code: a frame or message was too big.
pub const CLOSE_TOO_BIG: u16 = 1009;

/// The reason sent with 1009.
pub fn too_big_reason() -> String {
    format!("message too big: a subscriber sends at most {WS_MAX_INCOMING} bytes")
}

/// Appends the header of one unmasked, final frame of `len` bytes.
#[inline]
pub fn put_header(buf: &mut BytesMut, opcode: u8, len: usize) {
    buf.put_u8(0x80 | opcode);
    if len < 126 {
        buf.put_u8(len as u8);
    } else if len <= u16::MAX as usize {
        buf.put_u8(126);
        buf.put_u16(len as u16);
    } else {
        buf.put_u8(127);
        buf.put_u64(len as u64);
    }
}

/// Appends one text frame carrying `payload` (UTF-8: the shared JSON).
#[inline]
pub fn put_text(buf: &mut BytesMut, payload: &[u8]) {
    put_header(buf, OP_TEXT, payload.len());
    buf.put_slice(payload);
}

/// Appends a close frame with `code` and `reason` (cut to the 123 bytes a
/// control frame leaves for it, at a character boundary).
pub fn put_close(buf: &mut BytesMut, code: u16, reason: &str) {
    let mut end = reason.len().min(123);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    put_header(buf, OP_CLOSE, 2 + end);
    buf.put_u16(code);
    buf.put_slice(&reason.as_bytes()[..end]);
}

/// Whether a peer may send `code` in a close frame (RFC 6455 §7.4: the
/// defined codes, the registered ones up to 1014, and 3000–4999).
pub fn close_code_allowed(code: u16) -> bool {
    matches!(code, 1000..=1003 | 1007..=1014 | 3000..=4999)
}

/// Whether the reader wants the connection to go on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    /// Go on (replies, if any, were appended).
    More,
    /// Close after writing what was appended (a close frame last).
    End,
}

/// The frame being read past its header.
#[derive(Debug, Clone, Copy)]
struct Frame {
    opcode: u8,
    /// Payload bytes still to come.
    left: u64,
    mask: [u8; 4],
    /// Payload bytes read so far (the mask's position).
    at: usize,
}

/// Reads a client's frames from the bytes it sends, a read at a time.
#[derive(Debug, Default)]
pub struct Reader {
    /// Header bytes gathered so far (2 to 14).
    head: [u8; 14],
    have: usize,
    /// The frame whose payload is being read.
    frame: Option<Frame>,
    /// Bytes of the unfinished fragmented data message (`None`: no message
    /// is open).
    message: Option<usize>,
    /// The control frame's payload, unmasked (empty and unallocated
    /// between control frames).
    control: Vec<u8>,
    /// Set once the reader asked to end: it reads nothing more.
    ended: bool,
}

impl Reader {
    /// Reads `data`, appending replies (pongs, a close) to `out`.
    pub fn feed(&mut self, mut data: &[u8], out: &mut BytesMut) -> Flow {
        if self.ended {
            return Flow::End;
        }
        loop {
            if self.frame.is_none() {
                if data.is_empty() {
                    return Flow::More;
                }
                let need = self.header_len();
                let n = (need - self.have).min(data.len());
                self.head[self.have..self.have + n].copy_from_slice(&data[..n]);
                self.have += n;
                data = &data[n..];
                // The second byte tells how long the header is.
                if self.have < need || self.header_len() > self.have {
                    continue;
                }
                if let Err(close) = self.start_frame() {
                    return self.end(out, close);
                }
            }
            let Some(frame) = self.frame.as_mut() else {
                continue;
            };
            let n = frame.left.min(data.len() as u64) as usize;
            if frame.opcode >= OP_CLOSE {
                let (mask, at) = (frame.mask, frame.at);
                self.control.extend(
                    data[..n]
                        .iter()
                        .enumerate()
                        .map(|(i, b)| b ^ mask[(at + i) % 4]),
                );
            }
            frame.left -= n as u64;
            frame.at += n;
            data = &data[n..];
            if frame.left > 0 {
                return Flow::More;
            }
            if self.finish_frame(out) == Flow::End {
                self.ended = true;
                return Flow::End;
            }
        }
    }

    /// How long the header being read is, from what arrived of it.
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

    /// Checks a complete header and starts reading its payload.
    fn start_frame(&mut self) -> Result<(), (u16, String)> {
        let protocol = |what: &str| Err((CLOSE_PROTOCOL, format!("protocol error: {what}")));
        let (b0, b1) = (self.head[0], self.head[1]);
        let fin = b0 & 0x80 != 0;
        let opcode = b0 & 0x0f;
        if b0 & 0x70 != 0 {
            return protocol("reserved bits set");
        }
        if b1 & 0x80 == 0 {
            return protocol("unmasked frame from a client");
        }
        let (len, mask_at) = match b1 & 0x7f {
            126 => (u16::from_be_bytes([self.head[2], self.head[3]]) as u64, 4),
            127 => {
                let mut b = [0u8; 8];
                b.copy_from_slice(&self.head[2..10]);
                (u64::from_be_bytes(b), 10)
            }
            n => (n as u64, 2),
        };
        if len >> 63 != 0 {
            return protocol("frame length with its top bit set");
        }
        let mut mask = [0u8; 4];
        mask.copy_from_slice(&self.head[mask_at..mask_at + 4]);
        self.have = 0;
        match opcode {
            OP_CONTINUATION | OP_TEXT | OP_BINARY => {
                match (opcode, self.message) {
                    (OP_CONTINUATION, None) => {
                        return protocol("continuation frame outside a message")
                    }
                    (OP_TEXT | OP_BINARY, Some(_)) => {
                        return protocol("new message inside a fragmented one")
                    }
                    _ => {}
                }
                let total = self.message.unwrap_or(0) as u64 + len;
                if len > WS_MAX_INCOMING as u64 || total > WS_MAX_INCOMING as u64 {
                    return Err((CLOSE_TOO_BIG, too_big_reason()));
                }
                self.message = (!fin).then_some(total as usize);
            }
            OP_CLOSE | OP_PING | OP_PONG => {
                if !fin {
                    return protocol("fragmented control frame");
                }
                if len > 125 {
                    return protocol("control frame longer than 125 bytes");
                }
                self.control = Vec::with_capacity(len as usize);
            }
            _ => return protocol("unknown opcode"),
        }
        self.frame = Some(Frame {
            opcode,
            left: len,
            mask,
            at: 0,
        });
        Ok(())
    }

    /// A frame was read whole: answers it.
    fn finish_frame(&mut self, out: &mut BytesMut) -> Flow {
        let Some(frame) = self.frame.take() else {
            return Flow::More;
        };
        let payload = std::mem::take(&mut self.control);
        match frame.opcode {
            OP_PING => {
                put_header(out, OP_PONG, payload.len());
                out.put_slice(&payload);
                Flow::More
            }
            OP_CLOSE => {
                // Echo the client's code, as tungstenite does behind hyper;
                // a code a peer may not send is a protocol error.
                match payload.len() {
                    0 => put_header(out, OP_CLOSE, 0),
                    1 => put_close(out, CLOSE_PROTOCOL, "protocol error: close frame of 1 byte"),
                    _ => {
                        let code = u16::from_be_bytes([payload[0], payload[1]]);
                        if !close_code_allowed(code) {
                            put_close(out, CLOSE_PROTOCOL, "Protocol violation");
                        } else if std::str::from_utf8(&payload[2..]).is_err() {
                            put_close(
                                out,
                                CLOSE_PROTOCOL,
                                "protocol error: close reason not UTF-8",
                            );
                        } else {
                            put_close(out, code, "");
                        }
                    }
                }
                Flow::End
            }
            _ => Flow::More,
        }
    }

    fn end(&mut self, out: &mut BytesMut, (code, reason): (u16, String)) -> Flow {
        put_close(out, code, &reason);
        self.ended = true;
        self.control = Vec::new();
        Flow::End
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A masked client frame.
    fn client_frame(first: u8, payload: &[u8]) -> Vec<u8> {
        let mask = [0x12, 0x34, 0x56, 0x78];
        let mut f = vec![first];
        match payload.len() {
            n if n < 126 => f.push(0x80 | n as u8),
            n if n <= 65535 => {
                f.push(0x80 | 126);
                f.extend_from_slice(&(n as u16).to_be_bytes());
            }
            n => {
                f.push(0x80 | 127);
                f.extend_from_slice(&(n as u64).to_be_bytes());
            }
        }
        f.extend_from_slice(&mask);
        f.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        f
    }

    /// Feeds `bytes` one read at a time of `step` bytes.
    fn feed(bytes: &[u8], step: usize) -> (BytesMut, Flow) {
        let mut r = Reader::default();
        let mut out = BytesMut::new();
        let mut flow = Flow::More;
        for piece in bytes.chunks(step) {
            flow = r.feed(piece, &mut out);
            if flow == Flow::End {
                break;
            }
        }
        (out, flow)
    }

    fn close_code(out: &[u8]) -> u16 {
        let at = out.iter().position(|&b| b == 0x88).expect("a close frame");
        u16::from_be_bytes([out[at + 2], out[at + 3]])
    }

    #[test]
    fn server_frames_use_the_shortest_length() {
        let mut b = BytesMut::new();
        put_text(&mut b, b"hi");
        assert_eq!(&b[..], b"\x81\x02hi");
        let mut b = BytesMut::new();
        put_header(&mut b, OP_TEXT, 300);
        assert_eq!(&b[..], &[0x81, 126, 0x01, 0x2c]);
        let mut b = BytesMut::new();
        put_header(&mut b, OP_TEXT, 70_000);
        assert_eq!(&b[..2], &[0x81, 127]);
        assert_eq!(u64::from_be_bytes(b[2..10].try_into().unwrap()), 70_000);
        let mut b = BytesMut::new();
        put_close(&mut b, 1001, &"é".repeat(100));
        assert_eq!(b[1] as usize, b.len() - 2);
        assert!(b.len() - 2 <= 125);
        assert!(std::str::from_utf8(&b[4..]).is_ok());
    }

    #[test]
    fn pings_get_pongs_with_their_payload_whatever_the_reads() {
        for step in [1, 3, 100] {
            let (out, flow) = feed(&client_frame(0x89, b"are you there"), step);
            assert_eq!(flow, Flow::More);
            assert_eq!(&out[..], b"\x8a\x0dare you there", "step {step}");
        }
        let (out, _) = feed(&client_frame(0x89, b""), 1);
        assert_eq!(&out[..], b"\x8a\x00");
    }

    #[test]
    fn a_close_is_answered_with_its_code_and_ends() {
        let mut payload = 1000u16.to_be_bytes().to_vec();
        payload.extend_from_slice(b"bye");
        let (out, flow) = feed(&client_frame(0x88, &payload), 2);
        assert_eq!(flow, Flow::End);
        assert_eq!(&out[..], b"\x88\x02\x03\xe8");
        let (out, flow) = feed(&client_frame(0x88, b""), 7);
        assert_eq!((flow, &out[..]), (Flow::End, &b"\x88\x00"[..]));
        let (out, _) = feed(&client_frame(0x88, &1005u16.to_be_bytes()), 7);
        assert_eq!(close_code(&out), 1002);
    }

    #[test]
    fn fragments_within_the_limit_are_read_and_dropped() {
        let mut bytes = client_frame(0x01, &[b'a'; 2000]);
        bytes.extend(client_frame(0x89, b"mid")); // control frames may interleave
        bytes.extend(client_frame(0x00, &[b'b'; 2000]));
        bytes.extend(client_frame(0x80, &[b'c'; 96]));
        bytes.extend(client_frame(0x82, &[0; 4096]));
        for step in [1, 5, 256, 10_000] {
            let (out, flow) = feed(&bytes, step);
            assert_eq!(flow, Flow::More, "step {step}");
            assert_eq!(&out[..], b"\x8a\x03mid");
        }
    }

    #[test]
    fn too_much_is_1009_before_the_payload() {
        // One frame past the limit: its header alone ends it.
        let big = client_frame(0x81, &vec![b'x'; 5 * 1024]);
        let (out, flow) = feed(&big[..8], 1);
        assert_eq!(flow, Flow::End);
        assert_eq!(close_code(&out), 1009);
        // Fragments adding up to more.
        let mut bytes = client_frame(0x01, &[b'a'; 4000]);
        bytes.extend(client_frame(0x80, &[b'b'; 97]));
        let (out, _) = feed(&bytes, 64);
        assert_eq!(close_code(&out), 1009);
    }

    #[test]
    fn broken_framing_is_1002() {
        let mut unmasked = vec![0x81, 2];
        unmasked.extend_from_slice(b"hi");
        let cases: Vec<Vec<u8>> = vec![
            unmasked,
            client_frame(0xc1, b"rsv1"),
            client_frame(0x83, b"opcode 3"),
            client_frame(0x80, b"continuation first"),
            client_frame(0x09, b"fragmented ping"),
            client_frame(0x89, &[0; 126]),
            [client_frame(0x01, b"a"), client_frame(0x81, b"b")].concat(),
            client_frame(0x88, &[3]),
        ];
        for bytes in cases {
            let (out, flow) = feed(&bytes, 1);
            assert_eq!(flow, Flow::End, "{bytes:?}");
            assert_eq!(close_code(&out), 1002, "{bytes:?}");
        }
    }

    #[test]
    fn nothing_is_read_after_the_end() {
        let mut r = Reader::default();
        let mut out = BytesMut::new();
        assert_eq!(r.feed(&client_frame(0x88, b""), &mut out), Flow::End);
        out.clear();
        assert_eq!(r.feed(&client_frame(0x89, b"x"), &mut out), Flow::End);
        assert!(out.is_empty());
    }
}
