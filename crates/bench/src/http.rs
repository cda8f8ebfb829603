//! The minimal HTTP/1.1 client pieces the generators share: response
//! heads and bodies (chunked, sized or until close) decoded as they stream
//! in (the `http1` crate, shared with `coop speak`), splitting a stream
//! into lines, and one request/response round trip on a raw socket.
//!
//! Everything here works on borrowed slices of a caller-owned buffer and
//! allocates nothing per message: with 10,000 subscribers and a million
//! deliveries a second on two shared cores, per-message allocation in the
//! client would show up as a slower server.

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

pub use http1::{parse_head, BadResponse, BodyDecoder, Framing, Head, MAX_HEAD};

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
