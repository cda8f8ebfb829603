//! The gate over TLS, on real sockets: HTTP/1.1 and HTTP/2 (chosen by
//! ALPN), many streams sharing one HTTP/2 connection, clients that do not
//! speak TLS or never finish the handshake, and certificates replaced
//! without a restart (`reload`, `watch`) or kept when the new ones are bad.
//!
//! Every certificate is made here with rcgen: a CA of its own per test
//! identity and a leaf for `localhost` and `127.0.0.1` signed by it, so a
//! client that trusts one CA and not the other tells which certificate the
//! server presented.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::extract::{ConnectInfo, Request, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use futures::StreamExt;
use gate::tls::Tls;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// Wide: the machine is shared with compilers.
const WAIT: Duration = Duration::from_secs(30);

/// A certificate authority and a leaf certificate it signed, in PEM.
struct Identity {
    ca: String,
    cert: String,
    key: String,
}

/// A new CA named `name` and a leaf for `localhost` and `127.0.0.1`.
fn identity(name: &str) -> Identity {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, KeyUsagePurpose};
    let ca_key = KeyPair::generate().unwrap();
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(DnType::CommonName, format!("coop test CA {name}"));
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca = ca.self_signed(&ca_key).unwrap();
    let leaf_key = KeyPair::generate().unwrap();
    let mut leaf = CertificateParams::new(vec!["localhost".into(), "127.0.0.1".into()]).unwrap();
    leaf.distinguished_name
        .push(DnType::CommonName, format!("coop test {name}"));
    let leaf = leaf.signed_by(&leaf_key, &ca, &ca_key).unwrap();
    Identity {
        ca: ca.pem(),
        cert: leaf.pem(),
        key: leaf_key.serialize_pem(),
    }
}

/// `cert.pem` and `key.pem` in `dir`, written with `id`'s leaf.
fn write_files(dir: &Path, id: &Identity) -> (PathBuf, PathBuf) {
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    std::fs::write(&cert, &id.cert).unwrap();
    std::fs::write(&key, &id.key).unwrap();
    (cert, key)
}

/// A client that trusts only `ca` (no built-in roots).
fn client(ca: &str) -> reqwest::ClientBuilder {
    reqwest::Client::builder()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(ca.as_bytes()).unwrap())
        .timeout(WAIT)
}

/// What the test router shares with the test.
#[derive(Clone)]
struct App {
    /// Streams whose answer has started.
    opened: Arc<AtomicUsize>,
    /// Set to `true` to let every stream send its last event and end.
    release: watch::Receiver<bool>,
}

/// `GET /hello`: the protocol, the peer and the `Host` the router saw.
/// `GET /stream`: an SSE-like answer, one event at once (naming the peer),
/// one when released, then its end.
fn router(app: App) -> Router {
    Router::new()
        .route("/hello", get(hello))
        .route("/stream", get(stream))
        .with_state(app)
}

async fn hello(ConnectInfo(peer): ConnectInfo<SocketAddr>, req: Request) -> String {
    let host = req
        .headers()
        .get(header::HOST)
        .map(|h| h.to_str().unwrap().to_string())
        .unwrap_or_default();
    format!("{:?} {peer} host={host}", req.version())
}

async fn stream(
    State(app): State<App>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    req: Request,
) -> Response {
    app.opened.fetch_add(1, Ordering::SeqCst);
    let first = Bytes::from(format!("data: open {:?} {peer}\n\n", req.version()));
    let mut release = app.release.clone();
    let last = async move {
        let _ = release.wait_for(|go| *go).await;
        Ok::<_, Infallible>(Bytes::from_static(b"data: done\n\n"))
    };
    let body =
        futures::stream::iter([Ok::<_, Infallible>(first)]).chain(futures::stream::once(last));
    (
        [(header::CONTENT_TYPE, "text/event-stream")],
        Body::from_stream(body),
    )
        .into_response()
}

/// A gate serving the test router over `tls` on a port of its own.
struct Served {
    addr: SocketAddr,
    shutdown: CancellationToken,
    opened: Arc<AtomicUsize>,
    release: watch::Sender<bool>,
}

/// A server with a fresh identity (its files in the returned directory)
/// and a short header timeout.
fn served_with_header_timeout(header_timeout: Duration) -> (tempfile::TempDir, Identity, Served) {
    served_with(gate::Limits {
        header_timeout,
        ..gate::Limits::default()
    })
}

/// A server with a fresh identity (its files in the returned directory).
fn served_with(limits: gate::Limits) -> (tempfile::TempDir, Identity, Served) {
    let dir = tempfile::tempdir().unwrap();
    let id = identity("a");
    let (cert, key) = write_files(dir.path(), &id);
    let served = Served::start(Tls::from_files(&cert, &key).unwrap(), limits);
    (dir, id, served)
}

impl Served {
    fn start(tls: Tls, limits: gate::Limits) -> Served {
        let (release, released) = watch::channel(false);
        let opened = Arc::new(AtomicUsize::new(0));
        let app = App {
            opened: opened.clone(),
            release: released,
        };
        let listener = gate::listen("127.0.0.1:0".parse().unwrap()).unwrap();
        let addr = listener.local_addr().unwrap();
        let shutdown = CancellationToken::new();
        let gate = gate::Gate::new(router(app), limits).tls(tls);
        tokio::spawn(gate.run(listener, shutdown.clone()));
        Served {
            addr,
            shutdown,
            opened,
            release,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("https://127.0.0.1:{}{path}", self.addr.port())
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// `GET /hello` with a fresh client trusting only `ca`: the body, or the
/// error (with its causes) when the connection or handshake failed.
async fn hello_trusting(served: &Served, ca: &str) -> Result<String, String> {
    let client = client(ca).build().unwrap();
    match client.get(served.url("/hello")).send().await {
        Ok(res) => {
            assert_eq!(res.status(), 200);
            Ok(res.text().await.unwrap())
        }
        Err(err) => {
            let mut why = err.to_string();
            let mut source = std::error::Error::source(&err);
            while let Some(cause) = source {
                why.push_str(&format!(": {cause}"));
                source = cause.source();
            }
            Err(why)
        }
    }
}

/// Polls `ready` until it holds, failing after [`WAIT`].
async fn wait_until(what: &str, mut ready: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + WAIT;
    while !ready().await {
        assert!(Instant::now() < deadline, "waited {WAIT:?} for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn http1_over_tls_when_the_client_offers_only_http1() {
    let (_dir, id, served) = served_with(gate::Limits::default());
    let client = client(&id.ca).http1_only().build().unwrap();
    let res = client.get(served.url("/hello")).send().await.unwrap();
    assert_eq!(res.version(), reqwest::Version::HTTP_11);
    let body = res.text().await.unwrap();
    assert!(body.starts_with("HTTP/1.1 127.0.0.1:"), "{body}");
    // The same connection carries a second request (keep-alive).
    let again = client.get(served.url("/hello")).send().await.unwrap();
    assert_eq!(again.text().await.unwrap(), body);
}

#[tokio::test]
async fn http2_is_chosen_by_alpn_and_the_router_sees_the_host() {
    let (_dir, id, served) = served_with(gate::Limits::default());
    let client = client(&id.ca).build().unwrap();
    let res = client.get(served.url("/hello")).send().await.unwrap();
    assert_eq!(res.version(), reqwest::Version::HTTP_2, "ALPN chose h2");
    let body = res.text().await.unwrap();
    assert!(body.starts_with("HTTP/2.0 127.0.0.1:"), "{body}");
    // HTTP/2 sends the authority as `:authority`, not `Host`; the gate
    // gives the router a `Host` all the same (the hub's Host and Origin
    // checks read it).
    let port = served.addr.port();
    assert!(
        body.ends_with(&format!(" host=127.0.0.1:{port}")),
        "the router saw no Host over HTTP/2: {body}"
    );
}

#[tokio::test]
async fn ten_streams_at_once_share_one_http2_connection() {
    let (_dir, id, served) = served_with(gate::Limits::default());
    let client = client(&id.ca).build().unwrap();
    // One request first: the connection every stream then shares.
    let hello = client
        .get(served.url("/hello"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let peer = hello.split(' ').nth(1).unwrap().to_string();

    const STREAMS: usize = 10;
    let opening = (0..STREAMS).map(|_| {
        let client = client.clone();
        let url = served.url("/stream");
        async move {
            let mut res = client.get(url).send().await.unwrap();
            assert_eq!(res.version(), reqwest::Version::HTTP_2);
            assert_eq!(res.headers()["content-type"], "text/event-stream");
            let mut got = String::new();
            while !got.contains("\n\n") {
                let chunk = res.chunk().await.unwrap().expect("the first event");
                got.push_str(std::str::from_utf8(&chunk).unwrap());
            }
            (got, res)
        }
    });
    // Every stream has its first event while none has ended: all ten are
    // open at once.
    let open = tokio::time::timeout(WAIT, futures::future::join_all(opening))
        .await
        .expect("ten streams open");
    assert_eq!(served.opened.load(Ordering::SeqCst), STREAMS);
    for (first, _) in &open {
        assert_eq!(
            first,
            &format!("data: open HTTP/2.0 {peer}\n\n"),
            "every stream came over the first request's connection"
        );
    }
    served.release.send(true).unwrap();
    let ends = open.into_iter().map(|(_, mut res)| async move {
        let mut rest = String::new();
        while let Some(chunk) = res.chunk().await.unwrap() {
            rest.push_str(std::str::from_utf8(&chunk).unwrap());
        }
        rest
    });
    let ends = tokio::time::timeout(WAIT, futures::future::join_all(ends))
        .await
        .expect("ten streams end");
    assert!(ends.iter().all(|rest| rest == "data: done\n\n"), "{ends:?}");
}

/// Reads until the server closes (or resets) the connection, at most
/// [`WAIT`]; what it sent.
async fn read_until_closed(stream: &mut TcpStream) -> Vec<u8> {
    let mut got = Vec::new();
    let mut buf = [0u8; 1024];
    loop {
        match tokio::time::timeout(WAIT, stream.read(&mut buf)).await {
            Err(_) => panic!("the server kept the connection open for {WAIT:?}"),
            Ok(Ok(0)) | Ok(Err(_)) => return got,
            Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
        }
    }
}

#[tokio::test]
async fn a_client_that_does_not_speak_tls_is_closed_and_others_are_served() {
    let (_dir, id, served) = served_with(gate::Limits::default());
    let plain: [&[u8]; 3] = [
        b"GET /hello HTTP/1.1\r\nhost: 127.0.0.1\r\n\r\n",
        b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
        &[0x16, 0x03, 0x01, 0x00, 0x05, 0xde, 0xad, 0xbe, 0xef, 0x00],
    ];
    for bytes in plain {
        let mut s = TcpStream::connect(served.addr).await.unwrap();
        s.write_all(bytes).await.unwrap();
        let answer = read_until_closed(&mut s).await;
        // A TLS alert at most; never an HTTP answer in the clear.
        assert!(
            !answer.starts_with(b"HTTP/"),
            "{:?} got {:?}",
            String::from_utf8_lossy(bytes),
            String::from_utf8_lossy(&answer)
        );
    }
    let hello = hello_trusting(&served, &id.ca).await;
    assert!(hello.is_ok(), "{hello:?}");
}

#[tokio::test]
async fn a_handshake_that_never_completes_is_cut_off_at_the_header_timeout() {
    let header_timeout = Duration::from_millis(400);
    let (_dir, id, served) = served_with_header_timeout(header_timeout);
    // Silent after connecting, and silent after the first bytes of a
    // ClientHello (a record header announcing more than is sent).
    let starts: [&[u8]; 2] = [b"", &[0x16, 0x03, 0x01, 0x02, 0x00, 0x01]];
    for start in starts {
        let mut s = TcpStream::connect(served.addr).await.unwrap();
        let connected = Instant::now();
        s.write_all(start).await.unwrap();
        let answer = read_until_closed(&mut s).await;
        let waited = connected.elapsed();
        assert!(
            !answer.starts_with(b"HTTP/"),
            "{:?}",
            String::from_utf8_lossy(&answer)
        );
        assert!(
            waited >= header_timeout - Duration::from_millis(50),
            "closed after {waited:?}, before the header timeout {header_timeout:?}"
        );
    }
    let hello = hello_trusting(&served, &id.ca).await;
    assert!(hello.is_ok(), "{hello:?}");
}

#[tokio::test]
async fn reload_presents_the_new_certificate_to_new_connections() {
    let dir = tempfile::tempdir().unwrap();
    let (old, new) = (identity("old"), identity("new"));
    let (cert, key) = write_files(dir.path(), &old);
    let tls = Tls::from_files(&cert, &key).unwrap();
    let served = Served::start(tls.clone(), gate::Limits::default());

    assert!(hello_trusting(&served, &old.ca).await.is_ok());
    let refused = hello_trusting(&served, &new.ca).await;
    assert!(
        refused.as_ref().is_err_and(|e| e.contains("certificate")),
        "a client trusting only the new CA before the reload: {refused:?}"
    );

    write_files(dir.path(), &new);
    // Files replaced but not reloaded: still the old certificate.
    assert!(hello_trusting(&served, &old.ca).await.is_ok());
    tls.reload().expect("the new files load");
    let hello = hello_trusting(&served, &new.ca).await;
    assert!(hello.is_ok(), "after the reload: {hello:?}");
    let refused = hello_trusting(&served, &old.ca).await;
    assert!(
        refused.as_ref().is_err_and(|e| e.contains("certificate")),
        "a client trusting only the old CA after the reload: {refused:?}"
    );
}

#[tokio::test]
async fn a_failed_reload_keeps_the_current_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let (good, other) = (identity("good"), identity("other"));
    let (cert, key) = write_files(dir.path(), &good);
    let tls = Tls::from_files(&cert, &key).unwrap();
    let served = Served::start(tls.clone(), gate::Limits::default());

    // Not PEM at all.
    std::fs::write(&cert, "not a certificate\n").unwrap();
    let err = tls.reload().expect_err("garbage does not load");
    assert!(
        err.to_string().contains("holds no PEM certificate"),
        "{err}"
    );
    assert!(hello_trusting(&served, &good.ca).await.is_ok());

    // A PEM block cut short.
    let cut = &good.cert[..good.cert.len() / 2];
    std::fs::write(&cert, cut).unwrap();
    let err = tls.reload().expect_err("half a certificate does not load");
    assert!(err.to_string().contains("cannot read --tls-cert"), "{err}");
    assert!(hello_trusting(&served, &good.ca).await.is_ok());

    // A new certificate with the old key.
    std::fs::write(&cert, &other.cert).unwrap();
    let err = tls.reload().expect_err("a certificate without its key");
    assert!(
        err.to_string().contains("do not make a usable pair"),
        "{err}"
    );
    assert!(hello_trusting(&served, &good.ca).await.is_ok());
    assert!(hello_trusting(&served, &other.ca).await.is_err());
}

#[tokio::test]
async fn watch_reloads_when_the_files_change() {
    let dir = tempfile::tempdir().unwrap();
    let (old, new) = (identity("old"), identity("new"));
    let (cert, key) = write_files(dir.path(), &old);
    let tls = Tls::from_files(&cert, &key).unwrap();
    let served = Served::start(tls.clone(), gate::Limits::default());
    tls.watch(Duration::from_millis(50), served.shutdown.clone());
    assert!(hello_trusting(&served, &old.ca).await.is_ok());

    write_files(dir.path(), &new);
    // A modification time of its own, whatever the file system's clock
    // granularity.
    let later = std::time::SystemTime::now() + Duration::from_secs(10);
    for path in [&cert, &key] {
        std::fs::File::options()
            .write(true)
            .open(path)
            .unwrap()
            .set_modified(later)
            .unwrap();
    }
    wait_until("the watcher to load the new certificate", async || {
        hello_trusting(&served, &new.ca).await.is_ok()
    })
    .await;
    assert!(hello_trusting(&served, &old.ca).await.is_err());
}

/// The error of `Tls::from_files`, as the CLI would print it.
fn load_error(cert: &Path, key: &Path) -> String {
    Tls::from_files(cert, key)
        .err()
        .expect("the files do not load")
        .to_string()
}

#[test]
fn from_files_says_which_file_is_wrong_and_why() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (identity("a"), identity("b"));
    let (cert, key) = write_files(dir.path(), &a);
    assert!(Tls::from_files(&cert, &key).is_ok());
    let missing = dir.path().join("missing.pem");

    let err = load_error(&missing, &key);
    assert!(
        err.contains("--tls-cert") && err.contains("missing.pem") && err.contains("No such file"),
        "{err}"
    );
    let err = load_error(&cert, &missing);
    assert!(
        err.contains("--tls-key") && err.contains("missing.pem") && err.contains("No such file"),
        "{err}"
    );

    // The key where the certificate should be, and the other way round.
    let err = load_error(&key, &key);
    assert!(
        err.contains("--tls-cert") && err.contains("holds no PEM certificate"),
        "{err}"
    );
    let err = load_error(&cert, &cert);
    assert!(
        err.contains("--tls-key") && err.contains("holds no PEM private key"),
        "{err}"
    );

    // A certificate with another certificate's key.
    let other_key = dir.path().join("other-key.pem");
    std::fs::write(&other_key, &b.key).unwrap();
    let err = load_error(&cert, &other_key);
    assert!(
        err.contains("do not make a usable pair") && err.contains("other-key.pem"),
        "{err}"
    );
}

/// A TLS connection to `served` trusting only `ca`, offering `alpn`.
async fn tls_connect(
    served: &Served,
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
    let tcp = TcpStream::connect(served.addr).await.unwrap();
    let name = rustls_pki_types::ServerName::try_from("127.0.0.1").unwrap();
    tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await
        .unwrap()
}

#[tokio::test]
async fn a_client_silent_after_its_handshake_is_cut_off_at_the_header_timeout() {
    let header_timeout = Duration::from_millis(400);
    let (_dir, id, served) = served_with_header_timeout(header_timeout);
    // Whatever ALPN chose: HTTP/2, HTTP/1.1, or nothing (HTTP/1.1).
    let offers: [&[&[u8]]; 3] = [&[b"h2"], &[b"http/1.1"], &[]];
    for alpn in offers {
        let connected = Instant::now();
        let mut s = tls_connect(&served, &id.ca, alpn).await;
        let mut got = Vec::new();
        let mut buf = [0u8; 1024];
        loop {
            match tokio::time::timeout(WAIT, s.read(&mut buf)).await {
                Err(_) => panic!("ALPN {alpn:?}: a silent client was kept for {WAIT:?}"),
                Ok(Ok(0)) | Ok(Err(_)) => break,
                Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
            }
        }
        assert!(
            got.is_empty(),
            "ALPN {alpn:?}: {:?}",
            String::from_utf8_lossy(&got)
        );
        // The handshake and the silence share the one timeout.
        let waited = connected.elapsed();
        assert!(
            waited >= header_timeout - Duration::from_millis(50),
            "ALPN {alpn:?}: closed after {waited:?}, before the header timeout"
        );
    }
    // A client that speaks at once is served.
    let mut s = tls_connect(&served, &id.ca, &[b"http/1.1"]).await;
    s.write_all(b"GET /hello HTTP/1.1\r\nhost: 127.0.0.1\r\nconnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut answer = String::new();
    tokio::time::timeout(WAIT, s.read_to_string(&mut answer))
        .await
        .unwrap()
        .unwrap();
    assert!(answer.starts_with("HTTP/1.1 200 OK"), "{answer}");
}
