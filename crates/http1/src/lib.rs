//! The minimal HTTP/1.1 client pieces coop's own clients share: a
//! response head parsed (status, body framing, whether the connection may
//! be kept, `Retry-After`) and a body decoded as it streams in (chunked,
//! sized or until close).
//!
//! Users: `coop speak`'s HTTP/1.1 path (`animals::h1`), which holds ten
//! thousand connections with a small buffer each, and the load generators
//! of `coop bench` (`bench::http`), which read millions of messages a
//! second. Both hand in their own buffers: nothing here allocates per
//! message, and nothing here does I/O.
//!
//! Layout: [`parse_head`] and its [`Head`]; [`BodyDecoder`] and its
//! [`Framing`]; [`BadResponse`], the one error (bytes that are not the
//! HTTP/1.1 we expect).

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
    /// The server lets the connection carry another request after this
    /// answer: HTTP/1.1 without `Connection: close`, and a body whose end
    /// is known.
    pub keep_alive: bool,
    /// `Retry-After` in seconds (the HTTP-date form is not read).
    pub retry_after_secs: Option<u64>,
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
    let mut close = resp.version != Some(1);
    let mut retry_after_secs = None;
    for h in resp.headers.iter() {
        if h.name.eq_ignore_ascii_case("connection") {
            close |= h.value.windows(5).any(|w| w.eq_ignore_ascii_case(b"close"));
        } else if h.name.eq_ignore_ascii_case("retry-after") {
            retry_after_secs = std::str::from_utf8(h.value)
                .ok()
                .and_then(|s| s.trim().parse().ok());
        } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
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
        keep_alive: !close && framing != Framing::UntilClose,
        retry_after_secs,
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
    /// At the start of a line after the last chunk: a trailer field, or
    /// the empty line that ends the body.
    Trailer,
    /// Inside a trailer field, which is skipped.
    TrailerField,
    /// After the `\r` of the empty line.
    EndLf,
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
                // Trailer fields are skipped, but read to the empty line
                // that ends the body: a connection used again must start
                // at the next answer.
                ChunkState::Trailer => {
                    self.state = match input[i] {
                        b'\r' => ChunkState::EndLf,
                        b'\n' => ChunkState::Done,
                        _ => ChunkState::TrailerField,
                    };
                    i += 1;
                }
                ChunkState::TrailerField => {
                    if input[i] == b'\n' {
                        self.state = ChunkState::Trailer;
                    }
                    i += 1;
                }
                ChunkState::EndLf => {
                    if input[i] != b'\n' {
                        return Err(BadResponse("chunked body not ended by CRLF".into()));
                    }
                    i += 1;
                    self.state = ChunkState::Done;
                }
                ChunkState::Done => return Ok(i),
            }
        }
        Ok(i)
    }

    fn end_size(&mut self) {
        self.state = if self.remaining == 0 {
            ChunkState::Trailer
        } else {
            ChunkState::Data
        };
    }
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
    fn keep_alive_and_retry_after() {
        let head = |raw: &[u8]| parse_head(raw).unwrap().unwrap();
        let h = head(b"HTTP/1.1 503 Busy\r\nRetry-After: 7\r\ncontent-length: 0\r\n\r\n");
        assert_eq!((h.keep_alive, h.retry_after_secs), (true, Some(7)));
        let h = head(b"HTTP/1.1 200 OK\r\nConnection: Close\r\ncontent-length: 0\r\n\r\n");
        assert!(!h.keep_alive, "Connection: close");
        assert!(!head(b"HTTP/1.0 200 OK\r\ncontent-length: 0\r\n\r\n").keep_alive);
        assert!(
            !head(b"HTTP/1.1 200 OK\r\n\r\n").keep_alive,
            "body until close"
        );
        let h = head(b"HTTP/1.1 429 Slow\r\nRetry-After: Wed, 21 Oct 2015 07:28:00 GMT\r\n\r\n");
        assert_eq!(h.retry_after_secs, None, "the date form is not read");
    }

    /// A connection used again must start at the next answer: the chunked
    /// body is consumed to its last CRLF, trailer fields included, and not
    /// a byte further.
    #[test]
    fn chunked_body_ends_after_its_trailers() {
        for wire in [
            &b"3\r\nMoo\r\n0\r\n\r\nHTTP/1.1"[..],
            b"3\r\nMoo\r\n0\r\nx-sum: 1\r\nx-b: 2\r\n\r\nHTTP/1.1",
        ] {
            let mut d = BodyDecoder::new(Framing::Chunked);
            let mut out = Vec::new();
            let used = d.feed(wire, |x| out.extend_from_slice(x)).unwrap();
            assert_eq!(&wire[used..], b"HTTP/1.1");
            assert_eq!(out, b"Moo");
            assert!(d.is_done());
        }
        let mut d = BodyDecoder::new(Framing::Chunked);
        d.feed(b"0\r\n", |_| {}).unwrap();
        assert!(!d.is_done(), "the last CRLF has not come yet");
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
}
