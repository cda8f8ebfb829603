//! HTTP/2 with prior knowledge (h2c): the `h2` crate's client for whole
//! requests, and raw frames where a test must see or send what a
//! well-behaved client would not.

use std::net::SocketAddr;

use bytes::Bytes;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::task::JoinHandle;

use super::{Raw, WAIT};

pub const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

pub const SETTINGS: u8 = 0x4;
pub const RST_STREAM: u8 = 0x3;
pub const GOAWAY: u8 = 0x7;
pub const SETTINGS_MAX_CONCURRENT_STREAMS: u16 = 0x3;
pub const REFUSED_STREAM: u32 = 0x7;

/// One HTTP/2 connection, through the `h2` crate.
pub struct H2 {
    send: h2::client::SendRequest<Bytes>,
    addr: SocketAddr,
    /// The connection's task: ends when the server closes it.
    pub conn: JoinHandle<()>,
}

impl H2 {
    pub async fn connect(addr: SocketAddr) -> H2 {
        let tcp = TcpStream::connect(addr).await.unwrap();
        let (send, conn) = h2::client::handshake(tcp).await.unwrap();
        let conn = tokio::spawn(async move {
            let _ = conn.await;
        });
        H2 { send, addr, conn }
    }

    /// Opens a stream for `GET {path}` on this connection; the task
    /// resolves to its whole answer.
    pub async fn start(&self, path: &str) -> JoinHandle<Raw> {
        let req = http::Request::get(format!("http://{}{path}", self.addr))
            .body(())
            .unwrap();
        let mut send = self.send.clone().ready().await.unwrap();
        let (resp, _) = send.send_request(req, true).unwrap();
        tokio::spawn(async move {
            let resp = tokio::time::timeout(WAIT, resp)
                .await
                .expect("an HTTP/2 answer in time")
                .unwrap();
            let status = resp.status().as_u16();
            let headers = resp
                .headers()
                .iter()
                .map(|(n, v)| (n.to_string(), v.to_str().unwrap().to_string()))
                .collect();
            let mut body = resp.into_body();
            let mut bytes = Vec::new();
            while let Some(chunk) = body.data().await {
                let chunk = chunk.unwrap();
                let _ = body.flow_control().release_capacity(chunk.len());
                bytes.extend_from_slice(&chunk);
            }
            Raw {
                status,
                headers,
                body: bytes,
            }
        })
    }

    /// `GET {path}` on a new stream, and its answer.
    pub async fn get(&self, path: &str) -> Raw {
        self.start(path).await.await.unwrap()
    }
}

/// A raw frame.
#[derive(Debug)]
pub struct Frame {
    pub kind: u8,
    pub flags: u8,
    pub stream: u32,
    pub payload: Vec<u8>,
}

impl Frame {
    /// The entries of a SETTINGS frame.
    pub fn settings(&self) -> Vec<(u16, u32)> {
        self.payload
            .chunks_exact(6)
            .map(|e| {
                (
                    u16::from_be_bytes([e[0], e[1]]),
                    u32::from_be_bytes([e[2], e[3], e[4], e[5]]),
                )
            })
            .collect()
    }
}

/// Encodes a frame.
pub fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = payload.len() as u32;
    let mut out = len.to_be_bytes()[1..].to_vec();
    out.push(kind);
    out.push(flags);
    out.extend_from_slice(&stream.to_be_bytes());
    out.extend_from_slice(payload);
    out
}

/// A HEADERS frame (END_STREAM, END_HEADERS) for `GET {path}` over http,
/// HPACK-encoded by hand: indexed `:method GET` and `:scheme http`, and
/// `:path` as a literal without indexing.
pub fn get_headers(stream: u32, path: &str) -> Vec<u8> {
    let mut block = vec![0x82, 0x86, 0x04, path.len() as u8];
    block.extend_from_slice(path.as_bytes());
    frame(0x1, 0x4 | 0x1, stream, &block)
}

/// Reads the next frame, within [`WAIT`]; `None` at the end of the stream.
pub async fn read_frame(stream: &mut TcpStream) -> Option<Frame> {
    tokio::time::timeout(WAIT, async {
        let mut head = [0u8; 9];
        stream.read_exact(&mut head).await.ok()?;
        let len = u32::from_be_bytes([0, head[0], head[1], head[2]]) as usize;
        let mut payload = vec![0u8; len];
        stream.read_exact(&mut payload).await.ok()?;
        Some(Frame {
            kind: head[3],
            flags: head[4],
            stream: u32::from_be_bytes([head[5], head[6], head[7], head[8]]) & 0x7fff_ffff,
            payload,
        })
    })
    .await
    .unwrap_or_else(|_| panic!("no HTTP/2 frame within {WAIT:?}"))
}

/// Opens an h2c connection by hand: the preface and an empty SETTINGS;
/// returns the socket and the server's SETTINGS (not yet acknowledged).
pub async fn raw_handshake(addr: SocketAddr) -> (TcpStream, Frame) {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(PREFACE).await.unwrap();
    stream.write_all(&frame(SETTINGS, 0, 0, &[])).await.unwrap();
    loop {
        let f = read_frame(&mut stream)
            .await
            .expect("the server's SETTINGS before the end of the stream");
        if f.kind == SETTINGS && f.flags & 0x1 == 0 {
            return (stream, f);
        }
    }
}
