//! Where the load goes and where it comes from: `http://host:port/path`
//! URLs, and connecting from a spread of loopback source addresses.
//!
//! One source address can hold at most ~28,000 connections to one server
//! port (the ephemeral port range), and sockets in TIME_WAIT from the
//! previous run eat into it. Binding each connection to one of
//! `127.0.0.1..=127.0.0.N` before connecting multiplies that room; on Linux
//! the whole 127/8 is the loopback interface, so no setup is needed.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use tokio::net::{TcpSocket, TcpStream};

use crate::BenchError;

/// A parsed `http://` URL: where to connect and what to ask for.
#[derive(Debug, Clone)]
pub struct Target {
    /// The original text, for reports.
    pub url: String,
    /// `Host` header value (`host:port` as written).
    pub authority: String,
    /// Path and query, at least `/`.
    pub path_and_query: String,
    /// The resolved server address (the first one the resolver gives).
    pub addr: SocketAddr,
}

impl Target {
    /// Parses and resolves `url`. Only cleartext `http://` is supported: the
    /// benchmarks measure servers, not TLS.
    pub async fn parse(url: &str) -> Result<Target, BenchError> {
        let bad = |reason: &str| BenchError::BadUrl {
            url: url.to_string(),
            reason: reason.to_string(),
        };
        let rest = url
            .strip_prefix("http://")
            .ok_or_else(|| bad("only http:// URLs are supported"))?;
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        if authority.is_empty() {
            return Err(bad("missing host"));
        }
        let with_port = if authority
            .rsplit_once(':')
            .is_some_and(|(_, p)| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
        {
            authority.to_string()
        } else {
            format!("{authority}:80")
        };
        let addr = tokio::net::lookup_host(with_port.as_str())
            .await
            .map_err(|e| bad(&format!("cannot resolve: {e}")))?
            .next()
            .ok_or_else(|| bad("host resolves to no address"))?;
        Ok(Target {
            url: url.to_string(),
            authority: authority.to_string(),
            path_and_query: path.to_string(),
            addr,
        })
    }

    /// The same server with another path and query (for example the
    /// publish URL beside the subscribe URL).
    pub fn with_path(&self, path_and_query: &str) -> Target {
        Target {
            url: format!("http://{}{}", self.authority, path_and_query),
            authority: self.authority.clone(),
            path_and_query: path_and_query.to_string(),
            addr: self.addr,
        }
    }

    /// A bodiless HTTP/1.1 GET for this target, kept alive, ready to write.
    pub fn get_request(&self) -> Vec<u8> {
        self.get_request_accepting("*/*")
    }

    /// The same GET asking for `accept` (`text/event-stream` picks coop's
    /// SSE format).
    pub fn get_request_accepting(&self, accept: &str) -> Vec<u8> {
        format!(
            "GET {} HTTP/1.1\r\nHost: {}\r\nAccept: {accept}\r\nUser-Agent: coop-bench\r\n\r\n",
            self.path_and_query, self.authority
        )
        .into_bytes()
    }

    /// The absolute URI of this target, as an HTTP/2 request names it
    /// (`:scheme`, `:authority`, `:path`).
    pub fn uri(&self) -> Result<hyper::http::Uri, BenchError> {
        format!("http://{}{}", self.authority, self.path_and_query)
            .parse()
            .map_err(|e| BenchError::BadUrl {
                url: self.url.clone(),
                reason: format!("{e}"),
            })
    }
}

/// Source addresses to spread connections over: `count` loopback addresses
/// starting at 127.0.0.1 when the server is on loopback, none otherwise
/// (then the kernel picks).
pub fn sources(server: &SocketAddr, count: u8) -> Vec<Option<IpAddr>> {
    match server.ip() {
        IpAddr::V4(ip) if ip.is_loopback() && count > 1 => (1..=count)
            .map(|last| Some(IpAddr::V4(Ipv4Addr::new(127, 0, 0, last))))
            .collect(),
        _ => vec![None],
    }
}

/// Connects to `addr`, first binding to `source` (port chosen by the kernel)
/// when given. `TCP_NODELAY` is set: requests are small and latency counts.
pub async fn connect(addr: SocketAddr, source: Option<IpAddr>) -> std::io::Result<TcpStream> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    if let Some(ip) = source {
        socket.bind(SocketAddr::new(ip, 0))?;
    }
    let stream = socket.connect(addr).await?;
    stream.set_nodelay(true)?;
    Ok(stream)
}
