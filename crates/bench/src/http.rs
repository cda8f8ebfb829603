//! The minimal HTTP/1.1 client pieces the generators share: parsing a
//! response head, decoding a body (chunked, sized or until close) as it
//! streams in, splitting a stream into lines, and one request/response
//! round trip on a raw socket.
//!
//! Everything here works on borrowed slices of a caller-owned buffer and
//! allocates nothing per message: with 10,000 subscribers and a million
//! deliveries a second on two shared cores, per-message allocation in the
//! client would show up as a slower server.

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Largest response head accepted; bigger means we are not talking to the
/// server we think.
pub const MAX_HEAD: usize = 16 * 1024;

/// How a response body is framed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    Chunked,
    Length(u64),
    UntilClose,
}

/// A parsed response head.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Head {
    pub status: u16,
    pub framing: Framing,
    /// Bytes of the head, so the body starts at `buf[len..]`.
    pub len: usize,
}

/// A response that is not HTTP/1.1 as we know it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("bad response: {0}")]
pub struct BadResponse(pub String);

/// Parses a response head from the start of `buf`; `Ok(None)` when more
/// bytes are needed.
pub fn parse_head(buf: &[u8]) -> Result<Option<Head>, BadResponse> {
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut resp = httparse::Response::new(&mut headers);
    let len = match resp.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) if buf.len() > MAX_HEAD => {
            return Err(BadResponse("response head too long".into()))
        }
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(e) => return Err(BadResponse(e.to_string())),
    };
    let status = resp.code.unwrap_or(0);
    let mut framing = Framing::UntilClose;
    for h in resp.headers.iter() {
        if h.name.eq_ignore_ascii_case("transfer-encoding") {
            if h.value
                .windows(7)
                .any(|w| w.eq_ignore_ascii_case(b"chunked"))
            {
                framing = Framing::Chunked;
            }
        } else if h.name.eq_ignore_ascii_case("content-length") && framing != Framing::Chunked {
            let n = std::str::from_utf8(h.value)
                .ok()
                .and_then(|s| s.trim().parse().ok())
                .ok_or_else(|| BadResponse("bad content-length".into()))?;
            framing = Framing::Length(n);
        }
    }
    // No body for these whatever the headers say (RFC 9112 §6.3).
    if status == 204 || status == 304 || (100..200).contains(&status) {
        framing = Framing::Length(0);
    }
    Ok(Some(Head {
        status,
        framing,
        len,
    }))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ChunkState {
    Size,
    Extension,
    SizeLf,
    Data,
    DataCr,
    DataLf,
    Done,
}

/// Incremental body decoder: feed it raw bytes as they arrive, it hands out
/// the body's data runs and says when the body is complete.
#[derive(Debug, Clone)]
pub struct BodyDecoder {
    framing: Framing,
    state: ChunkState,
    /// Chunk bytes left (chunked) or body bytes left (sized).
    remaining: u64,
}

impl BodyDecoder {
    pub fn new(framing: Framing) -> BodyDecoder {
        let remaining = match framing {
            Framing::Length(n) => n,
            _ => 0,
        };
        BodyDecoder {
            framing,
            state: ChunkState::Size,
            remaining,
        }
    }

    /// Whether the whole body has been seen (never for an until-close body).
    pub fn is_done(&self) -> bool {
        match self.framing {
            Framing::Chunked => self.state == ChunkState::Done,
            Framing::Length(_) => self.remaining == 0,
            Framing::UntilClose => false,
        }
    }

    /// Decodes `input`, calling `data` with each run of body bytes in order.
    /// Returns how many input bytes were consumed (less than all only when
    /// the body ended inside `input`; the rest belongs to the next response).
    pub fn feed(
        &mut self,
        input: &[u8],
        mut data: impl FnMut(&[u8]),
    ) -> Result<usize, BadResponse> {
        match self.framing {
            Framing::UntilClose => {
                data(input);
                Ok(input.len())
            }
            Framing::Length(_) => {
                let n = (self.remaining.min(input.len() as u64)) as usize;
                if n > 0 {
                    data(&input[..n]);
                }
                self.remaining -= n as u64;
                Ok(n)
            }
            Framing::Chunked => self.feed_chunked(input, data),
        }
    }

    fn feed_chunked(
        &mut self,
        input: &[u8],
        mut data: impl FnMut(&[u8]),
    ) -> Result<usize, BadResponse> {
        let mut i = 0;
        while i < input.len() {
            match self.state {
                ChunkState::Size => {
                    let b = input[i];
                    i += 1;
                    match b {
                        b'0'..=b'9' | b'a'..=b'f' | b'A'..=b'F' => {
                            let digit = (b as char).to_digit(16).expect("matched hex") as u64;
                            if self.remaining > (1 << 40) {
                                return Err(BadResponse("chunk size too large".into()));
                            }
                            self.remaining = self.remaining * 16 + digit;
                        }
                        b';' | b' ' | b'\t' => self.state = ChunkState::Extension,
                        b'\r' => self.state = ChunkState::SizeLf,
                        b'\n' => self.end_size(),
                        _ => return Err(BadResponse(format!("bad chunk size byte {b:#04x}"))),
                    }
                }
                ChunkState::Extension => {
                    match input[i] {
                        b'\r' => self.state = ChunkState::SizeLf,
                        b'\n' => self.end_size(),
                        _ => {}
                    }
                    i += 1;
                }
                ChunkState::SizeLf => {
                    if input[i] != b'\n' {
                        return Err(BadResponse("chunk size line not ended by LF".into()));
                    }
                    i += 1;
                    self.end_size();
                }
                ChunkState::Data => {
                    let n = (self.remaining.min((input.len() - i) as u64)) as usize;
                    data(&input[i..i + n]);
                    i += n;
                    self.remaining -= n as u64;
                    if self.remaining == 0 {
                        self.state = ChunkState::DataCr;
                    }
                }
                ChunkState::DataCr => {
                    match input[i] {
                        b'\r' => self.state = ChunkState::DataLf,
                        b'\n' => self.state = ChunkState::Size,
                        _ => return Err(BadResponse("chunk data not ended by CRLF".into())),
                    }
                    i += 1;
                }
                ChunkState::DataLf => {
                    if input[i] != b'\n' {
                        return Err(BadResponse("chunk data not ended by CRLF".into()));
                    }
                    i += 1;
                    self.state = ChunkState::Size;
                }
                // Trailers after the last chunk are not used by any server
                // we measure; the body is over at the zero-size line.
                ChunkState::Done => return Ok(i),
            }
        }
        Ok(i)
    }

    fn end_size(&mut self) {
        self.state = if self.remaining == 0 {
            ChunkState::Done
        } else {
            ChunkState::Data
        };
    }
}

/// Splits a byte stream into lines ending in `\n` (a `\r` before it is
/// dropped), carrying a partial line over to the next call. The carry is
/// bounded: a line longer than `max` is an error, not a growing buffer.
#[derive(Debug, Default)]
pub struct LineSplitter {
    carry: Vec<u8>,
}

impl LineSplitter {
    pub fn feed(
        &mut self,
        mut input: &[u8],
        max: usize,
        mut line: impl FnMut(&[u8]),
    ) -> Result<(), BadResponse> {
        while let Some(pos) = memchr::memchr(b'\n', input) {
            let (head, rest) = (&input[..pos], &input[pos + 1..]);
            if self.carry.is_empty() {
                line(strip_cr(head));
            } else {
                self.carry.extend_from_slice(head);
                line(strip_cr(&self.carry));
                self.carry.clear();
            }
            input = rest;
        }
        if !input.is_empty() {
            if self.carry.len() + input.len() > max {
                return Err(BadResponse(format!("line longer than {max} bytes")));
            }
            self.carry.extend_from_slice(input);
        }
        Ok(())
    }
}

fn strip_cr(line: &[u8]) -> &[u8] {
    line.strip_suffix(b"\r").unwrap_or(line)
}

/// One complete response read from a socket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    pub body: Vec<u8>,
}

/// Writes `request` and reads one whole response (head and body) from
/// `stream`, using `buf` as scratch space (it grows only as far as the
/// response needs, so ten thousand waiting connections cost little). Bytes
/// after the response are discarded (the generators never pipeline).
pub async fn round_trip(
    stream: &mut TcpStream,
    request: &[u8],
    buf: &mut Vec<u8>,
) -> std::io::Result<Response> {
    let invalid = |e: BadResponse| std::io::Error::new(std::io::ErrorKind::InvalidData, e);
    stream.write_all(request).await?;
    buf.clear();
    let head = loop {
        buf.reserve(512);
        if stream.read_buf(buf).await? == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        if let Some(h) = parse_head(buf).map_err(invalid)? {
            break h;
        }
    };
    let mut decoder = BodyDecoder::new(head.framing);
    let mut body = Vec::new();
    decoder
        .feed(&buf[head.len..], |d| body.extend_from_slice(d))
        .map_err(invalid)?;
    while !decoder.is_done() {
        buf.clear();
        buf.reserve(512);
        if stream.read_buf(buf).await? == 0 {
            if head.framing == Framing::UntilClose {
                break;
            }
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        decoder
            .feed(buf, |d| body.extend_from_slice(d))
            .map_err(invalid)?;
    }
    Ok(Response {
        status: head.status,
        body,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode_all(framing: Framing, pieces: &[&[u8]]) -> (Vec<u8>, bool) {
        let mut d = BodyDecoder::new(framing);
        let mut out = Vec::new();
        for p in pieces {
            d.feed(p, |x| out.extend_from_slice(x)).unwrap();
        }
        (out, d.is_done())
    }

    #[test]
    fn head_framing() {
        let h = parse_head(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nxx")
            .unwrap()
            .unwrap();
        assert_eq!((h.status, h.framing, h.len), (200, Framing::Chunked, 47));
        let h = parse_head(b"HTTP/1.1 404 Not Found\r\ncontent-length: 5\r\n\r\n")
            .unwrap()
            .unwrap();
        assert_eq!(h.framing, Framing::Length(5));
        assert_eq!(parse_head(b"HTTP/1.1 200 OK\r\nA: b\r\n").unwrap(), None);
        assert!(parse_head(b"garbage\r\n\r\n").is_err());
    }

    #[test]
    fn chunked_split_anywhere() {
        let wire: &[u8] = b"5\r\nhello\r\n7;ext=1\r\n, world\r\n0\r\n\r\n";
        for cut in 0..wire.len() {
            let (out, done) = decode_all(Framing::Chunked, &[&wire[..cut], &wire[cut..]]);
            assert_eq!(out, b"hello, world", "cut at {cut}");
            assert!(done);
        }
    }

    #[test]
    fn chunked_rejects_garbage() {
        let mut d = BodyDecoder::new(Framing::Chunked);
        assert!(d.feed(b"zz\r\n", |_| {}).is_err());
    }

    #[test]
    fn sized_body_stops_at_length() {
        let mut d = BodyDecoder::new(Framing::Length(3));
        let mut out = Vec::new();
        let used = d.feed(b"abcdef", |x| out.extend_from_slice(x)).unwrap();
        assert_eq!((used, out.as_slice(), d.is_done()), (3, &b"abc"[..], true));
    }

    #[test]
    fn lines_across_feeds() {
        let mut s = LineSplitter::default();
        let mut lines = Vec::new();
        for piece in [&b"a\r\nbb"[..], b"b\r", b"\nc\n", b""] {
            s.feed(piece, 100, |l| lines.push(l.to_vec())).unwrap();
        }
        assert_eq!(lines, vec![b"a".to_vec(), b"bbb".to_vec(), b"c".to_vec()]);
        assert!(s.feed(&[b'x'; 200], 100, |_| {}).is_err());
    }
}
