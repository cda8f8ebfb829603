//! Shared helpers: serve a router on port 0, and speak raw HTTP/1.1 when a
//! test must see the bytes exactly as they travel.

use std::net::SocketAddr;
use std::time::Duration;

use animals::{Catalog, Config, Farm};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

/// Serves `router` on 127.0.0.1:0 through the gate, hyper only, in a
/// background task (stopped when the test's runtime ends) and returns the
/// address.
pub async fn serve(router: axum::Router) -> SocketAddr {
    serve_gate(gate::Gate::new(router, gate::Limits::default()))
}

fn serve_gate(gate: gate::Gate) -> SocketAddr {
    let listener = gate::listen("127.0.0.1:0".parse().unwrap()).unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(gate.run(listener, CancellationToken::new()));
    addr
}

/// The farm with the built-in animals and the given delay.
pub async fn farm(delay: Duration) -> SocketAddr {
    farm_with(Config {
        delay,
        ..Config::default()
    })
    .await
}

/// The farm served as `coop serve` serves it: the gate, the fast path
/// first, hyper and the router for the rest.
pub async fn farm_with(config: Config) -> SocketAddr {
    let farm = Farm::new(Catalog::builtin(), config);
    let direct = animals::Direct::new(farm.clone(), CancellationToken::new());
    serve_gate(gate::Gate::new(animals::router(farm), gate::Limits::default()).fast_path(direct))
}

/// The farm through hyper and the router only (no fast path).
pub async fn farm_via_hyper(config: Config) -> SocketAddr {
    serve(animals::router(Farm::new(Catalog::builtin(), config))).await
}

/// One answer as read off the wire.
#[derive(Debug)]
pub struct Raw {
    pub status: u16,
    /// Header names lowercased, in order.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Raw {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn text(&self) -> &str {
        std::str::from_utf8(&self.body).unwrap()
    }
}

/// Sends `GET {path}` with `extra` header lines, `Connection: close`, and
/// reads the whole answer.
pub async fn get(addr: SocketAddr, path: &str, extra: &[&str]) -> Raw {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let mut request = format!("GET {path} HTTP/1.1\r\nHost: farm\r\nConnection: close\r\n");
    for line in extra {
        request.push_str(line);
        request.push_str("\r\n");
    }
    request.push_str("\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut bytes = Vec::new();
    stream.read_to_end(&mut bytes).await.unwrap();
    parse(&bytes)
}

fn parse(bytes: &[u8]) -> Raw {
    let split = bytes
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a complete head");
    let head = std::str::from_utf8(&bytes[..split]).unwrap();
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap();
    let status = status_line.split(' ').nth(1).unwrap().parse().unwrap();
    let headers = lines
        .map(|l| {
            let (n, v) = l.split_once(':').unwrap();
            (n.trim().to_ascii_lowercase(), v.trim().to_string())
        })
        .collect();
    Raw {
        status,
        headers,
        body: bytes[split + 4..].to_vec(),
    }
}
