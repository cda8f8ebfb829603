//! Abuse suite, origins: a page on another site, or a DNS name rebound to
//! the hub's address, cannot drive a local `coop serve` (`origin.rs`).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use crate::support::Server;

/// Sends `request` and returns the status line and the body's first line.
fn ask(server: &Server, request: &str) -> (String, String) {
    let mut s = TcpStream::connect(server.addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(request.as_bytes()).unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let text = String::from_utf8_lossy(&got).to_string();
        if let Some((head, body)) = text.split_once("\r\n\r\n") {
            if !body.is_empty() || head.contains("101") {
                let status = head.lines().next().unwrap_or("").to_string();
                return (status, body.lines().next().unwrap_or("").to_string());
            }
        }
        let n = s.read(&mut buf).expect("an answer within the timeout");
        if n == 0 {
            return (text, String::new());
        }
        got.extend_from_slice(&buf[..n]);
    }
}

#[test]
fn a_cross_site_publish_or_websocket_is_refused_and_own_pages_and_curl_are_not() {
    let server = Server::start(&["--delay", "0s"]);
    let host = server.addr.to_string();
    let publish = |origin: &str| {
        ask(
            &server,
            &format!(
                "POST /topics/t HTTP/1.1\r\nhost: {host}\r\n{origin}content-length: 2\r\nconnection: close\r\n\r\nhi"
            ),
        )
    };
    let (status, reason) = publish("origin: http://evil.example\r\n");
    assert!(status.contains("403"), "{status}");
    assert!(reason.contains("--cors-origin"), "{reason}");
    let (status, _) = publish(&format!("origin: http://{host}\r\n"));
    assert!(status.contains("200"), "same origin: {status}");
    let (status, _) = publish("");
    assert!(status.contains("200"), "no Origin (curl): {status}");

    let (status, _) = ask(
        &server,
        &format!(
            "GET /topics/**?since=all HTTP/1.1\r\nhost: {host}\r\norigin: http://evil.example\r\n\
             upgrade: websocket\r\nconnection: upgrade\r\nsec-websocket-version: 13\r\n\
             sec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
        ),
    );
    assert!(status.contains("403"), "cross-site WebSocket: {status}");
}

#[test]
fn a_rebound_host_name_gets_421_unless_allowed() {
    let server = Server::start(&["--delay", "0s"]);
    let rebound =
        "GET /topics/t?since=all HTTP/1.1\r\nhost: evil.example:8080\r\nconnection: close\r\n\r\n";
    let (status, reason) = ask(&server, rebound);
    assert!(status.contains("421"), "{status}");
    assert!(reason.contains("--allowed-host evil.example"), "{reason}");
    let (status, _) = ask(
        &server,
        "GET /api/topics HTTP/1.1\r\nhost: evil.example\r\nconnection: close\r\n\r\n",
    );
    assert!(status.contains("421"), "the API too: {status}");
    let (status, _) = ask(
        &server,
        "GET /api/topics HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\n\r\n",
    );
    assert!(status.contains("200"), "{status}");

    let allowed = Server::start(&["--delay", "0s", "--allowed-host", "evil.example"]);
    let (status, _) = ask(
        &allowed,
        "GET /api/topics HTTP/1.1\r\nhost: evil.example\r\nconnection: close\r\n\r\n",
    );
    assert!(status.contains("200"), "{status}");
}

#[test]
fn serving_a_public_address_without_auth_says_so() {
    use std::io::BufRead;
    let mut child = crate::support::coop()
        .args(["serve", "--bind", "0.0.0.0", "--port", "0", "--delay", "0s"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            if line.contains("without --auth-secret") {
                let _ = tx.send(line);
                break;
            }
        }
    });
    let warned = rx.recv_timeout(Duration::from_secs(20));
    let _ = child.kill();
    let _ = child.wait();
    assert!(
        warned.is_ok(),
        "no warning about a public address without auth"
    );
}
