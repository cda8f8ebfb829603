//! End-to-end tests: `coop serve --tls-cert --tls-key`, the real binary.
//!
//! Every transport over TLS (an animal, a publish, raw, SSE, NDJSON and
//! WebSocket subscribers, HTTP/1.1 and HTTP/2 chosen by ALPN), the
//! certificate reloaded on SIGHUP and when its files change, and clear
//! errors for files that cannot be used.
//!
//! Certificates are made with rcgen (`support::identity`): a CA per identity and a leaf for
//! `localhost` and `127.0.0.1`; a client that trusts only one CA tells
//! which certificate the server presented.

use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use futures::StreamExt;
use serde_json::Value;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;

use crate::support::{coop, identity, serve_tls, serve_tls_logging, write_files, Server, WAIT};

fn url(server: &Server, path: &str) -> String {
    format!("https://127.0.0.1:{}{path}", server.addr.port())
}

/// A client that trusts only `ca` (no built-in roots).
fn client(ca: &str) -> reqwest::ClientBuilder {
    reqwest::Client::builder()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(ca.as_bytes()).unwrap())
        .timeout(WAIT)
}

/// Reads `res`'s body until it holds `needle`; everything read.
async fn read_until(res: &mut reqwest::Response, needle: &str) -> String {
    let mut got = String::new();
    while !got.contains(needle) {
        let chunk = tokio::time::timeout(WAIT, res.chunk())
            .await
            .unwrap_or_else(|_| panic!("no {needle:?} within {WAIT:?}; got {got:?}"))
            .unwrap()
            .unwrap_or_else(|| panic!("the stream ended before {needle:?}; got {got:?}"));
        got.push_str(std::str::from_utf8(&chunk).unwrap());
    }
    got
}

/// Subscribers the hub counts now.
async fn subscribers(client: &reqwest::Client, server: &Server) -> Option<u64> {
    let v: Value = client
        .get(url(server, "/api/topics"))
        .send()
        .await
        .ok()?
        .json()
        .await
        .ok()?;
    v["subscribers"].as_u64()
}

/// A TLS connection to `server` trusting only `ca`, offering `alpn`.
async fn tls_connect(
    server: &Server,
    ca: &str,
    alpn: &[&[u8]],
) -> tokio_rustls::client::TlsStream<TcpStream> {
    use rustls_pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(rustls_pki_types::CertificateDer::from_pem_slice(ca.as_bytes()).unwrap())
        .unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    let tcp = TcpStream::connect(server.addr).await.unwrap();
    let name = rustls_pki_types::ServerName::try_from("127.0.0.1").unwrap();
    tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_transport_works_over_tls() {
    let dir = tempfile::tempdir().unwrap();
    let id = identity("farm");
    let (cert, key) = write_files(dir.path(), &id);
    let server = serve_tls(&cert, &key, &["--delay", "0s"]);
    let h2 = client(&id.ca).build().unwrap();
    let h1 = client(&id.ca).http1_only().build().unwrap();

    // An animal, over both protocols (through hyper: the fast path is
    // plain TCP only).
    for (client, version) in [
        (&h2, reqwest::Version::HTTP_2),
        (&h1, reqwest::Version::HTTP_11),
    ] {
        let res = client
            .get(url(&server, "/animals/cow?delay=0"))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200);
        assert_eq!(res.version(), version);
        assert_eq!(res.text().await.unwrap(), "Moo!");
    }

    // Four subscribers to topic x: raw over HTTP/1.1, SSE and NDJSON over
    // HTTP/2, and a WebSocket (HTTP/1.1 upgrade) over TLS.
    let mut raw = h1.get(url(&server, "/topics/x")).send().await.unwrap();
    assert_eq!(raw.status(), 200);
    assert_eq!(raw.version(), reqwest::Version::HTTP_11);
    let mut sse = h2
        .get(url(&server, "/topics/x"))
        .header("accept", "text/event-stream")
        .send()
        .await
        .unwrap();
    assert_eq!(sse.version(), reqwest::Version::HTTP_2);
    assert_eq!(sse.headers()["content-type"], "text/event-stream");
    let mut ndjson = h2
        .get(url(&server, "/topics/x?format=ndjson"))
        .send()
        .await
        .unwrap();
    assert_eq!(ndjson.version(), reqwest::Version::HTTP_2);
    assert_eq!(ndjson.headers()["content-type"], "application/x-ndjson");
    let tls = tls_connect(&server, &id.ca, &[b"http/1.1"]).await;
    let ws_url = format!("wss://127.0.0.1:{}/topics/x", server.addr.port());
    let (mut ws, answer) = tokio::time::timeout(WAIT, tokio_tungstenite::client_async(ws_url, tls))
        .await
        .expect("the WebSocket handshake within the wait")
        .expect("a WebSocket over TLS");
    assert_eq!(answer.status(), 101);

    let deadline = Instant::now() + WAIT;
    while subscribers(&h2, &server).await != Some(4) {
        assert!(
            Instant::now() < deadline,
            "waited {WAIT:?} for 4 subscribers"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // A publish over HTTP/2 reaches all four.
    let res = h2
        .post(url(&server, "/topics/x"))
        .header("accept", "application/json")
        .body("hello over tls")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.version(), reqwest::Version::HTTP_2);
    let v: Value = res.json().await.unwrap();
    assert_eq!(v["subscribers"], 4, "{v}");

    let got = read_until(&mut raw, "hello over tls\r\n").await;
    assert!(got.ends_with("hello over tls\r\n"), "raw: {got:?}");
    let got = read_until(&mut sse, "data: hello over tls\n\n").await;
    assert!(got.contains("event: message\ntopic: x\n"), "sse: {got:?}");
    // (Heartbeats are empty lines.)
    let got = read_until(&mut ndjson, "\"hello over tls\"}\n").await;
    let record: Value = serde_json::from_str(got.trim()).unwrap();
    assert_eq!(record["message"], "hello over tls", "{got}");
    assert_eq!(record["topic"], "x", "{got}");
    let frame = loop {
        let msg = tokio::time::timeout(WAIT, ws.next())
            .await
            .expect("a WebSocket message within the wait")
            .expect("the WebSocket is open")
            .unwrap();
        if let Message::Text(text) = msg {
            break text;
        }
    };
    let record: Value = serde_json::from_str(frame.as_str()).unwrap();
    assert_eq!(record["message"], "hello over tls", "{frame}");
    ws.close(None).await.unwrap();
    // A publish over plain HTTP/1.1 too.
    let res = h1
        .post(url(&server, "/topics/x"))
        .body("again")
        .send()
        .await
        .unwrap();
    assert_eq!(res.version(), reqwest::Version::HTTP_11);
    assert_eq!(res.text().await.unwrap(), "ok");
    read_until(&mut sse, "data: again\n\n").await;

    // Plain HTTP on the TLS port is not answered in the clear.
    let plain = reqwest::Client::new()
        .get(format!(
            "http://127.0.0.1:{}/animals/cow",
            server.addr.port()
        ))
        .timeout(WAIT)
        .send()
        .await;
    assert!(plain.is_err(), "{plain:?}");

    assert!(server.terminate().success(), "a clean exit on SIGTERM");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sse_over_http2_from_a_browser_like_client_gets_a_publish() {
    let dir = tempfile::tempdir().unwrap();
    let id = identity("farm");
    let (cert, key) = write_files(dir.path(), &id);
    let server = serve_tls(&cert, &key, &["--delay", "0s"]);
    let client = client(&id.ca).build().unwrap();
    let origin = format!("https://127.0.0.1:{}", server.addr.port());
    // As a page would: `EventSource` to several topics and a same-origin
    // publish (the hub's Origin check reads the Host the gate gives HTTP/2
    // requests from `:authority`), every stream on one connection.
    let mut streams = Vec::new();
    for i in 0..8 {
        let res = client
            .get(url(&server, &format!("/topics/t{i}")))
            .header("accept", "text/event-stream")
            .header("origin", &origin)
            .send()
            .await
            .unwrap();
        assert_eq!(res.version(), reqwest::Version::HTTP_2);
        streams.push(res);
    }
    let deadline = Instant::now() + WAIT;
    while subscribers(&client, &server).await != Some(8) {
        assert!(
            Instant::now() < deadline,
            "waited {WAIT:?} for 8 subscribers"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for i in 0..8 {
        let res = client
            .post(url(&server, &format!("/topics/t{i}")))
            .header("origin", &origin)
            .body(format!("message {i}"))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200, "a same-origin publish over HTTP/2");
    }
    for (i, sse) in streams.iter_mut().enumerate() {
        read_until(sse, &format!("data: message {i}\n\n")).await;
    }
    // A page of another origin may not publish, over HTTP/2 as over
    // HTTP/1.1; nor may a request for a name the hub does not answer to.
    let res = client
        .post(url(&server, "/topics/t0"))
        .header("origin", "https://evil.example")
        .body("no")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 403);
    // (The certificate does not name it either: a client that checks
    // nothing, as a rebinding attacker's page would not be.)
    let rebound = reqwest::Client::builder()
        .danger_accept_invalid_certs(true)
        .resolve("evil.example", server.addr)
        .timeout(WAIT)
        .build()
        .unwrap()
        .get(format!(
            "https://evil.example:{}/api/topics",
            server.addr.port()
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(rebound.version(), reqwest::Version::HTTP_2);
    assert_eq!(rebound.status(), 421, "the Host check holds over HTTP/2");
}

/// A client trusting only `ca` gets an answer from `server`.
async fn trusted_by(server: &Server, ca: &str) -> bool {
    client(ca)
        .build()
        .unwrap()
        .get(url(server, "/healthz"))
        .send()
        .await
        .is_ok_and(|r| r.status() == 200)
}

async fn wait_trusted_by(server: &Server, ca: &str, what: &str) {
    let deadline = Instant::now() + WAIT;
    while !trusted_by(server, ca).await {
        assert!(Instant::now() < deadline, "waited {WAIT:?} for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn set_modified(path: &Path, when: SystemTime) {
    std::fs::File::options()
        .write(true)
        .open(path)
        .unwrap()
        .set_modified(when)
        .unwrap();
}

fn modified(path: &Path) -> SystemTime {
    std::fs::metadata(path).unwrap().modified().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reloads_the_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let (old, new) = (identity("old"), identity("new"));
    let (cert, key) = write_files(dir.path(), &old);
    let log_path = dir.path().join("serve.log");
    let log = std::fs::File::create(&log_path).unwrap();
    let server = serve_tls_logging(&cert, &key, &["--delay", "0s"], log.into());
    assert!(trusted_by(&server, &old.ca).await);
    assert!(!trusted_by(&server, &new.ca).await);

    // The new files, with the old modification times: the file watcher
    // sees no change, so only the signal can load them.
    let stamps = (modified(&cert), modified(&key));
    write_files(dir.path(), &new);
    set_modified(&cert, stamps.0);
    set_modified(&key, stamps.1);
    let pid = server.child.id().to_string();
    let hup = Command::new("kill").args(["-HUP", &pid]).status().unwrap();
    assert!(hup.success());
    wait_trusted_by(&server, &new.ca, "the new certificate after SIGHUP").await;
    assert!(!trusted_by(&server, &old.ca).await);

    // A reload that fails keeps the certificate, and the server.
    std::fs::write(&cert, "not a certificate\n").unwrap();
    set_modified(&cert, stamps.0);
    let hup = Command::new("kill").args(["-HUP", &pid]).status().unwrap();
    assert!(hup.success());
    let deadline = Instant::now() + WAIT;
    while !std::fs::read_to_string(&log_path)
        .unwrap()
        .contains("SIGHUP: cannot reload the TLS files")
    {
        assert!(
            Instant::now() < deadline,
            "waited {WAIT:?} for the failed reload to be logged"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(trusted_by(&server, &new.ca).await);
    assert!(server.terminate().success(), "still running, exits cleanly");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_certificate_file_is_loaded_without_a_signal() {
    let dir = tempfile::tempdir().unwrap();
    let (old, new) = (identity("old"), identity("new"));
    let (cert, key) = write_files(dir.path(), &old);
    let server = serve_tls(&cert, &key, &["--delay", "0s"]);
    assert!(trusted_by(&server, &old.ca).await);
    write_files(dir.path(), &new);
    // Modification times of their own, whatever the file system's clock
    // granularity.
    let later = SystemTime::now() + Duration::from_secs(60);
    set_modified(&cert, later);
    set_modified(&key, later);
    // Checked every 5 s.
    wait_trusted_by(&server, &new.ca, "the watcher to load the new files").await;
    assert!(!trusted_by(&server, &old.ca).await);
}

/// Runs `coop serve` expecting it to fail at start: its exit status and
/// stderr.
fn serve_fails(args: &[&std::ffi::OsStr]) -> (std::process::ExitStatus, String) {
    let mut child = coop()
        .args(["serve", "--port", "0"])
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn coop serve");
    let deadline = Instant::now() + WAIT;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("coop serve {args:?} kept running");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
    (status, stderr)
}

#[test]
fn unusable_tls_files_are_a_clear_error_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (identity("a"), identity("b"));
    let (cert, key) = write_files(dir.path(), &a);
    let missing = dir.path().join("missing.pem");
    let other_key = dir.path().join("other-key.pem");
    std::fs::write(&other_key, &b.key).unwrap();
    let flag = |s: &'static str| std::ffi::OsStr::new(s);

    let (status, stderr) = serve_fails(&[
        flag("--tls-cert"),
        missing.as_os_str(),
        flag("--tls-key"),
        key.as_os_str(),
    ]);
    assert!(!status.success());
    assert!(
        stderr.contains("bad TLS files")
            && stderr.contains("cannot read --tls-cert")
            && stderr.contains(&missing.display().to_string())
            && stderr.contains("No such file"),
        "{stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");

    let (status, stderr) = serve_fails(&[
        flag("--tls-cert"),
        cert.as_os_str(),
        flag("--tls-key"),
        other_key.as_os_str(),
    ]);
    assert!(!status.success());
    assert!(stderr.contains("do not make a usable pair"), "{stderr}");

    let (status, stderr) = serve_fails(&[
        flag("--tls-cert"),
        cert.as_os_str(),
        flag("--tls-key"),
        cert.as_os_str(),
    ]);
    assert!(!status.success());
    assert!(stderr.contains("holds no PEM private key"), "{stderr}");

    // One without the other: a usage error from the flags.
    let (status, stderr) = serve_fails(&[flag("--tls-cert"), cert.as_os_str()]);
    assert_eq!(status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("--tls-key"), "{stderr}");
}
