//! One parse of a request head (httparse), shared by every fast path.
//!
//! The gate parses each HTTP/1.x request head once, from the bytes it read
//! off the socket, and shows the same [`Head`] to each fast path in turn.
//! A path that takes the request copies what it needs out of the head
//! before it answers; the head itself borrows the read buffer and lives
//! only while the gate chooses who answers.

/// Headers looked at in a request head. A head with more is not parsed
/// here (hyper answers it, under its own limits).
pub const MAX_HEADERS: usize = 64;

/// The start of an HTTP/2 connection with prior knowledge (h2c).
pub const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// A parsed HTTP/1.x request head, borrowed from the bytes it came from.
pub struct Head<'b> {
    /// `GET`, `HEAD`, `POST`, …
    pub method: &'b str,
    /// The request target as sent: path and query.
    pub target: &'b str,
    /// The target's path, still percent-encoded.
    pub path: &'b str,
    /// The target's query (after `?`), still encoded; `None` without `?`.
    pub query: Option<&'b str>,
    /// 1 for HTTP/1.1, 0 for HTTP/1.0.
    pub minor_version: u8,
    /// Bytes of the head, blank line included.
    pub len: usize,
    headers: [httparse::Header<'b>; MAX_HEADERS],
    count: usize,
}

/// What a buffer holds at its start.
// The head is large (its header array) but lives only on the stack while
// the gate chooses who answers, never across an await: boxing it would
// cost an allocation per request for nothing.
#[allow(clippy::large_enum_variant)]
pub enum Parsed<'b> {
    /// A complete HTTP/1.x head.
    Complete(Head<'b>),
    /// The beginning of a head: read more.
    Partial,
    /// Not an HTTP/1.x head that this parse accepts (an h2 preface, a
    /// malformed line, too many headers): hyper decides what to answer.
    Invalid,
}

/// Parses the request head at the start of `bytes`.
pub fn parse(bytes: &[u8]) -> Parsed<'_> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    let len = match req.parse(bytes) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => return Parsed::Partial,
        Err(_) => return Parsed::Invalid,
    };
    let (Some(method), Some(target), Some(minor_version)) = (req.method, req.path, req.version)
    else {
        return Parsed::Invalid;
    };
    let count = req.headers.len();
    let (path, query) = match target.split_once('?') {
        Some((path, query)) => (path, Some(query)),
        None => (target, None),
    };
    Parsed::Complete(Head {
        method,
        target,
        path,
        query,
        minor_version,
        len,
        headers,
        count,
    })
}

impl<'b> Head<'b> {
    /// The headers in the order sent.
    pub fn headers(&self) -> &[httparse::Header<'b>] {
        &self.headers[..self.count]
    }

    /// The first header called `name` (any case).
    pub fn header(&self, name: &str) -> Option<&'b [u8]> {
        self.headers()
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case(name))
            .map(|h| h.value)
    }

    /// Whether the request is HTTP/1.1 (HTTP/1.0 has no chunked answers
    /// and no default keep-alive).
    pub fn is_http11(&self) -> bool {
        self.minor_version == 1
    }

    /// Whether the client asked to close the connection after this
    /// request (`Connection: close`, or HTTP/1.0 without `keep-alive`).
    pub fn wants_close(&self) -> bool {
        let mut close = !self.is_http11();
        for h in self.headers() {
            if h.name.eq_ignore_ascii_case("connection") {
                for token in h.value.split(|b| *b == b',') {
                    let token = token.trim_ascii();
                    if token.eq_ignore_ascii_case(b"close") {
                        return true;
                    }
                    if token.eq_ignore_ascii_case(b"keep-alive") {
                        close = false;
                    }
                }
            }
        }
        close
    }

    /// Whether a body follows the head (a non-zero `Content-Length`, or
    /// any `Transfer-Encoding`), or the client expects an interim answer
    /// (`Expect`). Fast paths that answer from the head alone refuse such
    /// requests.
    pub fn has_body(&self) -> bool {
        self.headers().iter().any(|h| {
            (h.name.eq_ignore_ascii_case("content-length") && h.value.trim_ascii() != b"0")
                || h.name.eq_ignore_ascii_case("transfer-encoding")
                || h.name.eq_ignore_ascii_case("expect")
        })
    }

    /// Whether the request asks to switch protocols (`Upgrade`).
    pub fn is_upgrade(&self) -> bool {
        self.header("upgrade").is_some()
    }

    /// A plain HTTP/1.1 request without body or upgrade: what the fast
    /// paths answer.
    pub fn is_simple(&self) -> bool {
        self.is_http11() && !self.has_body() && !self.is_upgrade()
    }

    /// The headers as an `http::HeaderMap` (for code shared with the
    /// handlers behind hyper). `None` when one is not a valid header.
    pub fn header_map(&self) -> Option<http::HeaderMap> {
        let mut map = http::HeaderMap::with_capacity(self.count);
        for h in self.headers() {
            let name = http::HeaderName::from_bytes(h.name.as_bytes()).ok()?;
            let value = http::HeaderValue::from_bytes(h.value.trim_ascii()).ok()?;
            map.append(name, value);
        }
        Some(map)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(text: &str) -> Head<'_> {
        match parse(text.as_bytes()) {
            Parsed::Complete(h) => h,
            _ => panic!("not complete: {text:?}"),
        }
    }

    #[test]
    fn parses_a_head_once() {
        let h = head(
            "GET /topics/a+b?since=5 HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\n\r\nrest",
        );
        assert_eq!(h.method, "GET");
        assert_eq!(h.path, "/topics/a+b");
        assert_eq!(h.query, Some("since=5"));
        assert_eq!(h.len, 72);
        assert_eq!(h.header("accept"), Some(&b"text/event-stream"[..]));
        assert!(h.is_simple() && !h.wants_close());
        let map = h.header_map().unwrap();
        assert_eq!(map["host"], "x");
    }

    #[test]
    fn knows_bodies_upgrades_and_closes() {
        assert!(head("POST / HTTP/1.1\r\nContent-Length: 3\r\n\r\n").has_body());
        assert!(!head("GET / HTTP/1.1\r\nContent-Length: 0\r\n\r\n").has_body());
        assert!(head("GET / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n").has_body());
        assert!(head("GET / HTTP/1.1\r\nUpgrade: websocket\r\n\r\n").is_upgrade());
        assert!(head("GET / HTTP/1.1\r\nConnection: keep-alive, close\r\n\r\n").wants_close());
        assert!(head("GET / HTTP/1.0\r\n\r\n").wants_close());
        assert!(!head("GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n").wants_close());
        assert!(!head("GET / HTTP/1.0\r\n\r\n").is_simple());
    }

    #[test]
    fn partial_and_invalid() {
        assert!(matches!(
            parse(b"GET / HTTP/1.1\r\nHost: x\r\n"),
            Parsed::Partial
        ));
        assert!(matches!(parse(H2_PREFACE), Parsed::Invalid));
        assert!(matches!(
            parse(b"GET / HTTP/1.1\r\nbad header\r\n\r\n"),
            Parsed::Invalid
        ));
        let many: String = (0..=MAX_HEADERS).map(|i| format!("x{i}: y\r\n")).collect();
        let text = format!("GET / HTTP/1.1\r\n{many}\r\n");
        assert!(matches!(parse(text.as_bytes()), Parsed::Invalid));
    }
}
