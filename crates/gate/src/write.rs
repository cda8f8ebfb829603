//! Writers for answers sent without hyper: response heads with a cached
//! `Date`, chunks, and the one way an error is rendered on the socket.
//!
//! What these write matches what hyper sends for the same response
//! (lower-case header names, `content-length` then `date` last), so a
//! client cannot tell which path answered.

use std::cell::RefCell;
use std::time::SystemTime;

use bytes::{BufMut, BytesMut};
use http::StatusCode;

/// Calls `f` with the current `Date` header value, formatted at most once
/// a second per thread (as hyper does).
pub fn with_date<R>(f: impl FnOnce(&[u8]) -> R) -> R {
    thread_local! {
        static DATE: RefCell<(u64, String)> = const { RefCell::new((u64::MAX, String::new())) };
    }
    let now = SystemTime::now();
    let secs = now
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    DATE.with(|cell| {
        let mut cached = cell.borrow_mut();
        if cached.0 != secs {
            *cached = (secs, httpdate::fmt_http_date(now));
        }
        f(cached.1.as_bytes())
    })
}

/// Builds an HTTP/1.1 response head.
pub struct Head<'a> {
    out: &'a mut BytesMut,
}

impl<'a> Head<'a> {
    /// Starts a head with its status line.
    pub fn new(out: &'a mut BytesMut, status: StatusCode) -> Head<'a> {
        out.put_slice(b"HTTP/1.1 ");
        out.put_slice(status.as_str().as_bytes());
        out.put_u8(b' ');
        out.put_slice(status.canonical_reason().unwrap_or("").as_bytes());
        out.put_slice(b"\r\n");
        Head { out }
    }

    /// Adds a header (`name` lower-case, as hyper writes them).
    pub fn header(self, name: &str, value: impl AsRef<[u8]>) -> Head<'a> {
        self.out.put_slice(name.as_bytes());
        self.out.put_slice(b": ");
        self.out.put_slice(value.as_ref());
        self.out.put_slice(b"\r\n");
        self
    }

    /// Ends a head whose body is `len` bytes long.
    pub fn sized(self, len: usize) {
        let mut digits = itoa_buf(len);
        self.out.put_slice(b"content-length: ");
        self.out.put_slice(digits.as_bytes_mut());
        self.finish();
    }

    /// Ends a head whose body follows in chunks.
    pub fn chunked(self) {
        self.out.put_slice(b"transfer-encoding: chunked");
        self.finish();
    }

    /// Ends a head that has no body and no framing: a `101 Switching
    /// Protocols`, after which the connection speaks another protocol.
    pub fn switching(self) {
        self.out.put_slice(b"date: ");
        with_date(|date| self.out.put_slice(date));
        self.out.put_slice(b"\r\n\r\n");
    }

    fn finish(self) {
        self.out.put_slice(b"\r\ndate: ");
        with_date(|date| self.out.put_slice(date));
        self.out.put_slice(b"\r\n\r\n");
    }
}

/// Decimal digits of `n` (no allocation).
struct Digits {
    buf: [u8; 20],
    start: usize,
}

impl Digits {
    fn as_bytes_mut(&mut self) -> &[u8] {
        &self.buf[self.start..]
    }
}

fn itoa_buf(mut n: usize) -> Digits {
    let mut buf = [0u8; 20];
    let mut start = buf.len();
    loop {
        start -= 1;
        buf[start] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    Digits { buf, start }
}

/// Appends one chunk whose data `fill` writes. The size line is reserved
/// first with a fixed width (leading zeros are allowed) and patched after,
/// so the data is copied once. Nothing is appended if `fill` writes
/// nothing (an empty chunk would end the body).
pub fn chunk(buf: &mut BytesMut, fill: impl FnOnce(&mut BytesMut)) {
    let at = buf.len();
    buf.put_slice(b"00000000\r\n");
    let data = buf.len();
    fill(buf);
    let len = buf.len() - data;
    if len == 0 {
        buf.truncate(at);
        return;
    }
    const HEX: &[u8; 16] = b"0123456789abcdef";
    for (i, byte) in buf[at..at + 8].iter_mut().enumerate() {
        *byte = HEX[(len >> (28 - 4 * i)) & 0xf];
    }
    buf.put_slice(b"\r\n");
}

/// The chunk that ends a chunked body.
pub const LAST_CHUNK: &[u8] = b"0\r\n\r\n";

/// A whole answer with a body, in one buffer: the status, `content-type`,
/// `extra` headers, `connection: close` when `close`, the length and the
/// date. `head_only` leaves the body out (an answer to `HEAD`).
pub fn response(
    status: StatusCode,
    content_type: &str,
    extra: &[(&str, &[u8])],
    close: bool,
    body: &[u8],
    head_only: bool,
) -> BytesMut {
    let mut out = BytesMut::with_capacity(192 + body.len());
    let mut head = Head::new(&mut out, status).header("content-type", content_type);
    for (name, value) in extra {
        head = head.header(name, value);
    }
    if close {
        head = head.header("connection", "close");
    }
    head.sized(body.len());
    if !head_only {
        out.put_slice(body);
    }
    out
}

/// The one rendering of an error on the socket: `status`, a plain-text
/// body of `reason` and a line break, `extra` headers (`retry-after`,
/// `www-authenticate`), and `connection: close`.
pub fn error(status: StatusCode, reason: &str, extra: &[(&str, &[u8])]) -> BytesMut {
    let mut body = String::with_capacity(reason.len() + 1);
    body.push_str(reason);
    body.push('\n');
    response(
        status,
        "text/plain; charset=utf-8",
        extra,
        true,
        body.as_bytes(),
        false,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heads_look_like_hyper_s() {
        let out = response(
            StatusCode::SERVICE_UNAVAILABLE,
            "text/plain; charset=utf-8",
            &[("retry-after", b"1")],
            true,
            b"busy",
            false,
        );
        let text = String::from_utf8(out.to_vec()).unwrap();
        assert!(text.starts_with(
            "HTTP/1.1 503 Service Unavailable\r\ncontent-type: text/plain; charset=utf-8\r\nretry-after: 1\r\nconnection: close\r\ncontent-length: 4\r\ndate: "
        ));
        assert!(text.ends_with(" GMT\r\n\r\nbusy"), "{text}");
        let mut out = BytesMut::new();
        Head::new(&mut out, StatusCode::OK).chunked();
        let text = String::from_utf8(out.to_vec()).unwrap();
        assert!(text.starts_with("HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\ndate: "));
        assert!(text.ends_with(" GMT\r\n\r\n"), "{text}");
        let mut out = BytesMut::new();
        Head::new(&mut out, StatusCode::SWITCHING_PROTOCOLS)
            .header("upgrade", "websocket")
            .switching();
        let text = String::from_utf8(out.to_vec()).unwrap();
        assert!(
            text.starts_with("HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\ndate: ")
        );
        assert!(text.ends_with(" GMT\r\n\r\n"), "{text}");
        let out = response(StatusCode::OK, "application/json", &[], false, b"{}", true);
        let text = String::from_utf8(out.to_vec()).unwrap();
        assert!(text.contains("content-type: application/json\r\ncontent-length: 2\r\n"));
        assert!(text.ends_with(" GMT\r\n\r\n"), "{text}");
    }

    #[test]
    fn errors_are_one_line_and_close() {
        let out = error(StatusCode::FORBIDDEN, "no", &[]);
        let text = String::from_utf8(out.to_vec()).unwrap();
        assert!(text.starts_with("HTTP/1.1 403 Forbidden\r\n"));
        assert!(text.contains("connection: close\r\ncontent-length: 3\r\ndate: "));
        assert!(text.ends_with("\r\n\r\nno\n"));
    }

    #[test]
    fn chunks_have_a_fixed_width_size_line() {
        let mut b = BytesMut::new();
        chunk(&mut b, |b| b.put_slice(b"hello\r\n"));
        chunk(&mut b, |_| {});
        assert_eq!(&b[..], b"00000007\r\nhello\r\n\r\n");
        assert_eq!(itoa_buf(0).as_bytes_mut(), b"0");
        assert_eq!(itoa_buf(1234567).as_bytes_mut(), b"1234567");
    }
}
