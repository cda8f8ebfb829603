//! Test helpers: a hub served on port 0, small streaming clients (raw
//! lines, an SSE parser, NDJSON) reading a reqwest byte stream, and a
//! `redis-server` of the test's own.

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use futures::StreamExt;
use hub::{Config, Hub};
use tokio_util::sync::CancellationToken;

/// Generous bound on any single wait, so a broken test fails instead of
/// hanging.
pub const WAIT: Duration = Duration::from_secs(10);

/// A dependency the test needs (a `redis-server`) is missing. On a
/// developer's machine the test is skipped, saying so; under CI (`CI` set
/// and not empty, as `.ci/run` does, which installs every dependency) it
/// fails, so that a run where nothing was tested cannot pass.
pub fn missing(why: &str) {
    if std::env::var_os("CI").is_some_and(|v| !v.is_empty()) {
        panic!("{why}, and CI is set: a missing dependency fails the run");
    }
    eprintln!("{why}: skipping");
}

pub struct TestHub {
    pub addr: SocketAddr,
    pub hub: Hub,
    pub shutdown: CancellationToken,
    pub server: tokio::task::JoinHandle<()>,
}

impl TestHub {
    /// A hub served like `coop serve` does: each connection is offered to
    /// the direct path first (streaming GETs own their socket), the rest
    /// goes to hyper and the router.
    pub async fn start(config: Config) -> TestHub {
        TestHub::start_with(config, true).await
    }

    /// A hub whose subscribers all stream through hyper (no takeover).
    pub async fn start_via_hyper(config: Config) -> TestHub {
        TestHub::start_with(config, false).await
    }

    async fn start_with(config: Config, direct: bool) -> TestHub {
        let shutdown = CancellationToken::new();
        let hub = backend_for_tests(config, shutdown.clone()).await;
        TestHub::serve_with(hub, shutdown, direct)
    }

    /// Serves `hub` (built by the test, on a backend of its choosing) as
    /// [`start`](TestHub::start) does; `shutdown` stops the server.
    pub fn serve(hub: Hub, shutdown: CancellationToken) -> TestHub {
        TestHub::serve_with(hub, shutdown, true)
    }

    fn serve_with(hub: Hub, shutdown: CancellationToken, direct: bool) -> TestHub {
        // The front door `coop serve` uses, in-process.
        let mut gate = gate::Gate::new(hub::router(hub.clone()), gate::Limits::default());
        if direct {
            gate = gate.fast_path(hub::Takeover::new(hub.clone()));
        }
        let listener = gate::listen("127.0.0.1:0".parse().unwrap()).unwrap();
        let addr = listener.local_addr().unwrap();
        let stop = shutdown.clone();
        let server = tokio::spawn(async move {
            let drain = gate.run(listener, stop).await;
            drain.finish(WAIT).await;
        });
        TestHub {
            addr,
            hub,
            shutdown,
            server,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// Publishes `msg` as the body to `path`, returns the JSON answer.
    pub async fn publish(&self, path: &str, msg: &str) -> serde_json::Value {
        let resp = client()
            .post(self.url(path))
            .header("accept", "application/json")
            .body(msg.to_string())
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200, "publish {msg:?} to {path}");
        resp.json().await.unwrap()
    }

    /// Waits until `n` subscribers are connected (they register before
    /// their response starts, but the request may still be in flight).
    pub async fn wait_subscribers(&self, n: usize) {
        tokio::time::timeout(WAIT, async {
            while self.hub.subscriber_count() != n {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
        .await
        .unwrap_or_else(|_| {
            panic!(
                "expected {n} subscribers, have {}",
                self.hub.subscriber_count()
            )
        });
    }

    /// Waits until message `id` has reached this hub's rings (in cluster
    /// mode that happens after its publish is answered).
    pub async fn wait_delivered(&self, id: u64) {
        tokio::time::timeout(WAIT, async {
            while self.hub.rings().high_water().0 < id {
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        })
        .await
        .unwrap_or_else(|_| panic!("message {id} never reached the rings"));
    }
}

pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()
        .unwrap()
}

/// GETs `url` and parses the answer as JSON (`/api/topics` and friends).
pub async fn get_json(url: &str) -> serde_json::Value {
    client()
        .get(url)
        .send()
        .await
        .expect("GET succeeds")
        .json()
        .await
        .expect("answer is JSON")
}

/// A streaming response read incrementally.
pub struct Stream {
    pub resp_headers: reqwest::header::HeaderMap,
    body: futures::stream::BoxStream<'static, reqwest::Result<bytes::Bytes>>,
    buf: Vec<u8>,
    pub ended: bool,
}

impl Stream {
    pub async fn open(req: reqwest::RequestBuilder) -> Stream {
        let resp = req.send().await.unwrap();
        assert_eq!(resp.status(), 200, "subscribe");
        Stream {
            resp_headers: resp.headers().clone(),
            body: resp.bytes_stream().boxed(),
            buf: Vec::new(),
            ended: false,
        }
    }

    pub async fn get(url: &str) -> Stream {
        Stream::open(client().get(url)).await
    }

    /// Reads more bytes; false at end of stream.
    async fn fill(&mut self) -> bool {
        match tokio::time::timeout(WAIT, self.body.next())
            .await
            .expect("stream stalled")
        {
            Some(Ok(b)) => {
                self.buf.extend_from_slice(&b);
                true
            }
            _ => {
                self.ended = true;
                false
            }
        }
    }

    /// Reads until `sep` appears; returns what came before it (without
    /// `sep`), or `None` at the end of the stream.
    pub async fn until(&mut self, sep: &[u8]) -> Option<Vec<u8>> {
        loop {
            if let Some(i) = self.buf.windows(sep.len()).position(|w| w == sep) {
                let item = self.buf[..i].to_vec();
                self.buf.drain(..i + sep.len());
                return Some(item);
            }
            if !self.fill().await {
                return None;
            }
        }
    }

    /// The next raw-format message (`…\r\n`).
    pub async fn raw_line(&mut self) -> Option<String> {
        self.until(b"\r\n")
            .await
            .map(|l| String::from_utf8(l).unwrap())
    }

    /// The next non-empty NDJSON record.
    pub async fn json(&mut self) -> Option<serde_json::Value> {
        loop {
            let line = self.until(b"\n").await?;
            if !line.is_empty() {
                return Some(serde_json::from_slice(&line).unwrap());
            }
        }
    }

    /// The next SSE event (comments skipped), parsed as the spec says:
    /// fields per line, `data` lines joined with `\n`.
    pub async fn event(&mut self) -> Option<Sse> {
        let mut ev = Sse::default();
        let mut any = false;
        loop {
            let line = String::from_utf8(self.until(b"\n").await?).unwrap();
            if line.is_empty() {
                // The stream's opening `retry:` alone is not an event.
                if any && (!ev.event.is_empty() || !ev.data.is_empty()) {
                    return Some(ev);
                }
                any = false;
                continue;
            }
            if line.starts_with(':') {
                ev.comments.push(line);
                continue;
            }
            any = true;
            let (field, value) = match line.split_once(':') {
                Some((f, v)) => (f, v.strip_prefix(' ').unwrap_or(v)),
                None => (line.as_str(), ""),
            };
            match field {
                "id" => ev.id = Some(value.to_string()),
                "event" => ev.event = value.to_string(),
                "topic" => ev.topic = value.to_string(),
                "retry" => ev.retry = Some(value.parse().unwrap()),
                "data" => ev.data.push(value.to_string()),
                other => panic!("unexpected SSE field {other:?}"),
            }
        }
    }

    /// Expects the stream to end (after discarding nothing): no more data.
    pub async fn expect_end(&mut self) {
        while self.fill().await {}
        assert!(
            self.buf.iter().all(|b| b.is_ascii_whitespace()),
            "trailing data: {:?}",
            String::from_utf8_lossy(&self.buf)
        );
    }
}

#[derive(Debug, Default, Clone)]
pub struct Sse {
    pub id: Option<String>,
    pub event: String,
    pub topic: String,
    pub retry: Option<u64>,
    pub data: Vec<String>,
    pub comments: Vec<String>,
}

impl Sse {
    /// The data as `EventSource` gives it.
    pub fn data(&self) -> String {
        self.data.join("\n")
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.data()).unwrap()
    }
}

/// The hub under test: the memory backend, or the one named by
/// `HUB_TEST_BACKEND`, so that every test here also runs against durable
/// history and cluster mode:
///
/// - `HUB_TEST_BACKEND=sqlite`: a fresh data directory per hub (left in the
///   temporary directory).
/// - `HUB_TEST_BACKEND=redis REDIS_URL=redis://…`: that Redis, **flushed**
///   before each hub (use a Redis for tests only), with
///   `-- --test-threads=1` since the tests share it.
/// - `HUB_TEST_BACKEND=redis-sharded`: the same server as three shards
///   (databases 1 to 3), ids merged across them.
/// - `HUB_TEST_BACKEND=sentinel REDIS_SENTINEL=h:p,… REDIS_MASTER=name`:
///   the primary found through the sentinels (`REDIS_URL` is that primary,
///   to flush).
async fn backend_for_tests(config: Config, shutdown: CancellationToken) -> Hub {
    let storage = match std::env::var("HUB_TEST_BACKEND").as_deref() {
        Ok("sqlite") => hub::Storage::Sqlite {
            dir: tempfile::tempdir().unwrap().keep(),
            options: Default::default(),
        },
        Ok(kind @ ("redis" | "redis-sharded" | "sentinel")) => {
            let url = std::env::var("REDIS_URL").expect("HUB_TEST_BACKEND=redis needs REDIS_URL");
            let client = redis::Client::open(url.as_str()).unwrap();
            let mut admin = client.get_multiplexed_async_connection().await.unwrap();
            let () = redis::cmd("FLUSHALL")
                .query_async(&mut admin)
                .await
                .unwrap();
            let shards = match kind {
                // Three shards: databases 1 to 3 of that server.
                "redis-sharded" => (1..=3)
                    .map(|db| {
                        hub::cluster::ShardSpec::Url(format!("{}/{db}", url.trim_end_matches('/')))
                    })
                    .collect(),
                // REDIS_URL is then the primary the sentinels watch.
                "sentinel" => vec![hub::cluster::ShardSpec::Sentinel {
                    sentinels: std::env::var("REDIS_SENTINEL")
                        .expect("HUB_TEST_BACKEND=sentinel needs REDIS_SENTINEL")
                        .split(',')
                        .map(String::from)
                        .collect(),
                    master: std::env::var("REDIS_MASTER").unwrap_or_else(|_| "coop".into()),
                }],
                _ => vec![hub::cluster::ShardSpec::Url(url)],
            };
            hub::Storage::Cluster(hub::cluster::ClusterSpec {
                shards,
                ..hub::cluster::ClusterSpec::single("")
            })
        }
        _ => hub::Storage::Memory,
    };
    // The one way the binary builds a hub, too.
    let hub = Hub::with_storage(config, &storage, shutdown).await.unwrap();
    // Subscribed to Redis (healthy) before the test publishes.
    tokio::time::timeout(WAIT, async {
        while hub.health().is_err() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .expect("the backend is healthy");
    hub
}

/// A `redis-server` of the test's own on a free port, killed on drop. With
/// `persist`, it keeps an append-only file fsynced at every write in its
/// own temporary directory, so that a kill and restart loses nothing it
/// acknowledged (Redis's durability, which cluster mode relies on).
pub struct RedisServer {
    pub port: u16,
    child: Option<Child>,
    dir: tempfile::TempDir,
    persist: bool,
    /// `REDIS_URL` when `redis-server` is not installed: not ours to kill.
    external: Option<String>,
}

impl RedisServer {
    /// Without `redis-server`: the server at `REDIS_URL` if set, else
    /// `None` after [`missing`] (the test then skips, saying so, or fails
    /// under CI).
    pub fn start(persist: bool) -> Option<RedisServer> {
        let probe = Command::new("redis-server")
            .arg("--version")
            .stdout(Stdio::null())
            .status();
        if !probe.is_ok_and(|s| s.success()) {
            let url = match std::env::var("REDIS_URL") {
                Ok(url) if !url.is_empty() => url,
                _ => {
                    missing("redis-server not installed and REDIS_URL not set");
                    return None;
                }
            };
            eprintln!("redis-server not installed: using REDIS_URL {url}");
            return Some(RedisServer {
                port: 0,
                child: None,
                dir: tempfile::tempdir().unwrap(),
                persist,
                external: Some(url),
            });
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut server = RedisServer {
            port,
            child: None,
            dir: tempfile::tempdir().unwrap(),
            persist,
            external: None,
        };
        server.spawn();
        Some(server)
    }

    pub fn url(&self) -> String {
        match &self.external {
            Some(url) => url.clone(),
            None => format!("redis://127.0.0.1:{}/", self.port),
        }
    }

    /// Whether this test may kill, restart or disconnect the server's
    /// clients: only a server of its own. When it may not, [`missing`]
    /// says so (or fails under CI).
    pub fn ours(&self) -> bool {
        if self.external.is_some() {
            missing("redis-server not installed, and REDIS_URL is not ours to kill or disconnect");
        }
        self.external.is_none()
    }

    /// A topic name of this test's own: `name` on a server of its own, and
    /// made unique on a shared one (whose history may hold earlier runs).
    pub fn topic(&self, name: &str) -> String {
        match self.external {
            None => name.to_owned(),
            Some(_) => {
                let nanos = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap()
                    .as_nanos();
                format!("t{}x{nanos}.{name}", std::process::id())
            }
        }
    }

    fn spawn(&mut self) {
        let mut cmd = Command::new("redis-server");
        cmd.args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", ""])
            .arg("--dir")
            .arg(self.dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        if self.persist {
            cmd.args(["--appendonly", "yes", "--appendfsync", "always"]);
        } else {
            cmd.args(["--appendonly", "no"]);
        }
        self.child = Some(cmd.spawn().expect("spawn redis-server"));
        // Blocking, but only a few milliseconds: the tests start it before
        // anything else runs on their runtime.
        let deadline = Instant::now() + WAIT;
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(Instant::now() < deadline, "redis-server did not start");
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// `kill -9`.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts it again on the same port and directory.
    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A WebSocket client on a raw socket, for what a library client will not
/// send (unmasked frames, reserved bits, fragments of our choosing) and to
/// see each frame the hub writes.
pub struct RawWs {
    pub stream: tokio::net::TcpStream,
    /// Bytes read and not yet parsed into frames.
    buf: Vec<u8>,
}

/// A frame the hub sent: opcode and payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    pub opcode: u8,
    pub payload: Vec<u8>,
}

impl Frame {
    /// The code of a close frame.
    pub fn close_code(&self) -> u16 {
        assert_eq!(self.opcode, 0x8, "not a close frame: {self:?}");
        u16::from_be_bytes([self.payload[0], self.payload[1]])
    }

    /// The reason of a close frame, or the text of a text frame.
    pub fn text(&self) -> String {
        let text = if self.opcode == 0x8 {
            &self.payload[2..]
        } else {
            &self.payload[..]
        };
        String::from_utf8(text.to_vec()).unwrap()
    }
}

/// A WebSocket upgrade request for `path`.
pub fn ws_request(path: &str, extra: &str) -> String {
    format!(
        "GET {path} HTTP/1.1\r\nhost: 127.0.0.1\r\nupgrade: websocket\r\nconnection: Upgrade\r\n\
         sec-websocket-version: 13\r\nsec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\n{extra}\r\n"
    )
}

impl RawWs {
    /// Connects and upgrades `path`, checking the `101` and its accept key.
    pub async fn connect(addr: SocketAddr, path: &str) -> RawWs {
        let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        RawWs::upgrade(stream, path).await
    }

    /// Upgrades `path` on `stream`.
    pub async fn upgrade(mut stream: tokio::net::TcpStream, path: &str) -> RawWs {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        stream
            .write_all(ws_request(path, "").as_bytes())
            .await
            .unwrap();
        let mut buf = Vec::new();
        let end = loop {
            if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            let mut chunk = [0u8; 1024];
            let n = tokio::time::timeout(WAIT, stream.read(&mut chunk))
                .await
                .expect("a handshake answer")
                .unwrap();
            assert!(n > 0, "closed before the handshake answer");
            buf.extend_from_slice(&chunk[..n]);
        };
        let head = String::from_utf8_lossy(&buf[..end]).to_lowercase();
        assert!(head.starts_with("http/1.1 101 "), "{head}");
        // The accept key of RFC 6455's example key.
        assert!(
            head.contains("sec-websocket-accept: s3pplmbitxaq9kygzzhzrbk+xoo=\r\n"),
            "{head}"
        );
        buf.drain(..end);
        RawWs { stream, buf }
    }

    /// Writes raw bytes.
    pub async fn send_raw(&mut self, bytes: &[u8]) {
        use tokio::io::AsyncWriteExt;
        self.stream.write_all(bytes).await.unwrap();
    }

    /// Writes one masked frame: `first` is the first byte (FIN, RSV,
    /// opcode).
    pub async fn send(&mut self, first: u8, payload: &[u8]) {
        self.send_raw(&client_frame(first, payload, true)).await;
    }

    /// The next frame the hub sent, or `None` at the end of the stream.
    pub async fn frame(&mut self) -> Option<Frame> {
        use tokio::io::AsyncReadExt;
        loop {
            if let Some((frame, used)) = parse_server_frame(&self.buf) {
                self.buf.drain(..used);
                return Some(frame);
            }
            let mut chunk = vec![0u8; 64 * 1024];
            let n = tokio::time::timeout(WAIT, self.stream.read(&mut chunk))
                .await
                .expect("a frame within the wait")
                .unwrap_or(0);
            if n == 0 {
                assert!(self.buf.is_empty(), "a partial frame at the end");
                return None;
            }
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }

    /// The next frame that is not a ping (heartbeat).
    pub async fn next_non_ping(&mut self) -> Option<Frame> {
        loop {
            let f = self.frame().await?;
            if f.opcode != 0x9 {
                return Some(f);
            }
        }
    }
}

/// A client frame, masked or not.
pub fn client_frame(first: u8, payload: &[u8], masked: bool) -> Vec<u8> {
    let mask = [0xa1, 0xb2, 0xc3, 0xd4];
    let bit = if masked { 0x80 } else { 0 };
    let mut f = vec![first];
    match payload.len() {
        n if n < 126 => f.push(bit | n as u8),
        n if n <= 65535 => {
            f.push(bit | 126);
            f.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            f.push(bit | 127);
            f.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    if masked {
        f.extend_from_slice(&mask);
        f.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    } else {
        f.extend_from_slice(payload);
    }
    f
}

/// One unmasked, final server frame at the start of `buf` and its length.
pub fn parse_server_frame(buf: &[u8]) -> Option<(Frame, usize)> {
    if buf.len() < 2 {
        return None;
    }
    assert_eq!(buf[0] & 0xf0, 0x80, "a final frame without RSV bits");
    assert_eq!(buf[1] & 0x80, 0, "server frames are not masked");
    let (len, at) = match buf[1] & 0x7f {
        126 if buf.len() >= 4 => (u16::from_be_bytes([buf[2], buf[3]]) as usize, 4),
        127 if buf.len() >= 10 => (
            u64::from_be_bytes(buf[2..10].try_into().unwrap()) as usize,
            10,
        ),
        126 | 127 => return None,
        n => (n as usize, 2),
    };
    if buf.len() < at + len {
        return None;
    }
    Some((
        Frame {
            opcode: buf[0] & 0x0f,
            payload: buf[at..at + len].to_vec(),
        },
        at + len,
    ))
}
