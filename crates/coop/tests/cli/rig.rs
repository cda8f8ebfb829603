//! The tests' own Redis high-availability rig and TCP fault proxy, and
//! their self-tests.
//!
//! - [`HaRig`]: a primary `redis-server`, one replica (`--replicaof`) and
//!   three sentinels (`redis-server FILE --sentinel`), all processes of the
//!   test's own on free loopback ports, killed on drop. It kills the primary
//!   (`kill -9`), waits for the sentinels to name a new one, and restarts
//!   the dead one as a replica of the new primary, so that every round of a
//!   chaos test has a replica to promote.
//! - [`Proxy`]: a TCP proxy between a client and a server whose behaviour
//!   is switched at run time ([`Fault`]): pass, added latency, a stall, a
//!   one-way blackout, refused connections, and a reset of every current
//!   connection. The kernel here has no `netem`; this is the tests' own.
//! - [`Resp`] and [`resp`]: just enough of the Redis protocol to send a
//!   command and read its answer, for the rig and its tests (the `redis`
//!   crate is the hub's dependency, not the tests').
//!
//! The chaos test (`chaos.rs`) puts `coop serve` nodes on both. Nothing
//! here sleeps to synchronise: every wait is for a state, with a deadline
//! (`support::wait_until`).

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::watch;

use crate::support::{missing, wait_until, Redis, WAIT};

// ---------------------------------------------------------------------------
// RESP: one command, one answer.

/// An answer in the Redis protocol (RESP2).
#[derive(Debug, Clone, PartialEq)]
pub enum Resp {
    Simple(String),
    Error(String),
    Int(i64),
    Bulk(Option<Vec<u8>>),
    Array(Option<Vec<Resp>>),
}

impl Resp {
    /// A simple or bulk string as text.
    pub fn text(&self) -> Option<String> {
        match self {
            Resp::Simple(s) => Some(s.clone()),
            Resp::Bulk(Some(b)) => Some(String::from_utf8_lossy(b).into_owned()),
            _ => None,
        }
    }

    /// The items of an array (none for anything else, or a null array).
    pub fn items(&self) -> &[Resp] {
        match self {
            Resp::Array(Some(items)) => items,
            _ => &[],
        }
    }

    /// A flat `key, value, key, value` array (as `SENTINEL replicas` gives
    /// for each instance) as a map.
    pub fn fields(&self) -> HashMap<String, String> {
        self.items()
            .chunks(2)
            .filter_map(|kv| Some((kv.first()?.text()?, kv.get(1)?.text()?)))
            .collect()
    }
}

/// Timeout on every read and write of a [`RespConn`]: a server that does
/// not answer a command within it is an error, not a hang.
const RESP_TIMEOUT: Duration = Duration::from_secs(5);

/// A connection to a Redis server (or a sentinel, or a proxy in front of
/// one) that sends one command at a time.
pub struct RespConn {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
}

impl RespConn {
    pub fn connect(addr: SocketAddr) -> std::io::Result<RespConn> {
        let stream = TcpStream::connect_timeout(&addr, RESP_TIMEOUT)?;
        stream.set_read_timeout(Some(RESP_TIMEOUT))?;
        stream.set_write_timeout(Some(RESP_TIMEOUT))?;
        stream.set_nodelay(true)?;
        Ok(RespConn {
            reader: BufReader::new(stream.try_clone()?),
            writer: stream,
        })
    }

    /// The underlying socket (to change its read timeout).
    pub fn socket(&self) -> &TcpStream {
        &self.writer
    }

    /// Sends a command without waiting for its answer.
    pub fn send(&mut self, args: &[&str]) -> std::io::Result<()> {
        let mut out = format!("*{}\r\n", args.len()).into_bytes();
        for a in args {
            out.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
            out.extend_from_slice(a.as_bytes());
            out.extend_from_slice(b"\r\n");
        }
        self.writer.write_all(&out)
    }

    /// Reads one answer.
    pub fn read(&mut self) -> std::io::Result<Resp> {
        read_resp(&mut self.reader)
    }

    /// Sends a command and reads its answer.
    pub fn cmd(&mut self, args: &[&str]) -> std::io::Result<Resp> {
        self.send(args)?;
        self.read()
    }
}

/// One command on a new connection to `port` on loopback.
pub fn resp(port: u16, args: &[&str]) -> std::io::Result<Resp> {
    RespConn::connect(loopback(port))?.cmd(args)
}

fn loopback(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

fn read_resp(r: &mut impl BufRead) -> std::io::Result<Resp> {
    use std::io::{Error, ErrorKind};
    let mut line = String::new();
    if r.read_line(&mut line)? == 0 {
        return Err(Error::new(ErrorKind::UnexpectedEof, "connection closed"));
    }
    let line = line.trim_end_matches("\r\n");
    let bad = || Error::new(ErrorKind::InvalidData, format!("bad RESP line {line:?}"));
    let (kind, rest) = line.split_at_checked(1).ok_or_else(bad)?;
    let len = || rest.parse::<i64>().map_err(|_| bad());
    Ok(match kind {
        "+" => Resp::Simple(rest.to_owned()),
        "-" => Resp::Error(rest.to_owned()),
        ":" => Resp::Int(len()?),
        "$" if len()? < 0 => Resp::Bulk(None),
        "$" => {
            let mut b = vec![0; len()? as usize + 2];
            r.read_exact(&mut b)?;
            b.truncate(b.len() - 2);
            Resp::Bulk(Some(b))
        }
        "*" if len()? < 0 => Resp::Array(None),
        "*" => Resp::Array(Some(
            (0..len()?)
                .map(|_| read_resp(r))
                .collect::<Result<_, _>>()?,
        )),
        _ => return Err(bad()),
    })
}

/// A free loopback port: bound, then released for the process that binds
/// it next (as `support::Redis` does; a collision is possible but rare).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

// ---------------------------------------------------------------------------
// The high-availability rig.

/// A primary, a replica and three sentinels of the test's own, killed on
/// drop. Data servers keep nothing on disk (`--save '' --appendonly no`);
/// sentinels rewrite their configuration files, one each in a temporary
/// directory, which also holds every server's log.
pub struct HaRig {
    name: String,
    dir: tempfile::TempDir,
    /// The two data servers, by port; `None` while killed.
    data: Vec<(u16, Option<Child>)>,
    sentinels: Vec<(u16, Child)>,
}

/// How long a sentinel waits without an answer before it holds the
/// primary down (`down-after-milliseconds`); the failover follows within a
/// few seconds (a vote, a promotion).
pub const DOWN_AFTER_MS: u64 = 1000;
/// `failover-timeout`: also how long a failed attempt waits before the
/// next (twice this), so short.
pub const FAILOVER_TIMEOUT_MS: u64 = 4000;

impl HaRig {
    /// Starts the five processes and waits until the sentinels know one
    /// another and a replica in sync. Without `redis-server`: `None`, after
    /// [`missing`] (which fails under CI).
    pub fn start() -> Option<HaRig> {
        if Command::new("redis-server")
            .arg("--version")
            .stdout(Stdio::null())
            .status()
            .is_err()
        {
            missing("redis-server not installed (the HA rig needs servers of its own)");
            return None;
        }
        let mut rig = HaRig {
            name: "coopha".to_owned(),
            dir: tempfile::tempdir().unwrap(),
            data: Vec::new(),
            sentinels: Vec::new(),
        };
        let primary = free_port();
        rig.data
            .push((primary, Some(rig.spawn_data(primary, None))));
        wait_accepting(primary);
        let replica = free_port();
        rig.data
            .push((replica, Some(rig.spawn_data(replica, Some(primary)))));
        wait_in_sync(replica);
        for _ in 0..3 {
            let port = free_port();
            let child = rig.spawn_sentinel(port, primary);
            rig.sentinels.push((port, child));
        }
        rig.wait_settled();
        Some(rig)
    }

    fn spawn_data(&self, port: u16, replica_of: Option<u16>) -> Child {
        // A directory of its own: a replica's full sync writes an RDB file
        // there, which a server would load at its next start.
        let dir = self.dir.path().join(format!("redis-{port}"));
        std::fs::create_dir_all(&dir).unwrap();
        let mut cmd = Command::new("redis-server");
        cmd.args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            // A full sync starts at once (the default waits 5 s for more
            // replicas to share it).
            .args(["--repl-diskless-sync", "yes"])
            .args(["--repl-diskless-sync-delay", "0"])
            .arg("--dir")
            .arg(&dir)
            .arg("--logfile")
            .arg(self.dir.path().join(format!("redis-{port}.log")));
        if let Some(p) = replica_of {
            cmd.args(["--replicaof", "127.0.0.1", &p.to_string()]);
        }
        cmd.stdout(Stdio::null())
            .spawn()
            .expect("start redis-server")
    }

    fn spawn_sentinel(&self, port: u16, primary: u16) -> Child {
        let dir = self.dir.path();
        let file = dir.join(format!("sentinel-{port}.conf"));
        let name = &self.name;
        let conf = format!(
            "port {port}\n\
             bind 127.0.0.1\n\
             dir {dir}\n\
             logfile {log}\n\
             sentinel monitor {name} 127.0.0.1 {primary} 2\n\
             sentinel down-after-milliseconds {name} {DOWN_AFTER_MS}\n\
             sentinel failover-timeout {name} {FAILOVER_TIMEOUT_MS}\n\
             sentinel parallel-syncs {name} 1\n",
            dir = dir.display(),
            log = dir.join(format!("sentinel-{port}.log")).display(),
        );
        std::fs::write(&file, conf).unwrap();
        let child = Command::new("redis-server")
            .arg(&file)
            .arg("--sentinel")
            .stdout(Stdio::null())
            .spawn()
            .expect("start redis-server --sentinel");
        wait_accepting(port);
        child
    }

    /// The sentinels' addresses, `HOST:PORT,HOST:PORT,HOST:PORT`.
    pub fn sentinels(&self) -> String {
        self.sentinels
            .iter()
            .map(|(p, _)| format!("127.0.0.1:{p}"))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// The name the sentinels monitor the primary by.
    pub fn master_name(&self) -> &str {
        &self.name
    }

    /// The primary's port as the first sentinel that answers names it.
    pub fn primary_port(&self) -> u16 {
        self.sentinel_views()
            .into_iter()
            .flatten()
            .next()
            .expect("no sentinel answers")
    }

    /// What each sentinel names as the primary (`None`: no answer).
    fn sentinel_views(&self) -> Vec<Option<u16>> {
        self.sentinels
            .iter()
            .map(|(p, _)| {
                let answer = resp(*p, &["SENTINEL", "get-master-addr-by-name", &self.name]).ok()?;
                answer.items().get(1)?.text()?.parse().ok()
            })
            .collect()
    }

    /// The data servers' ports.
    pub fn data_ports(&self) -> Vec<u16> {
        self.data.iter().map(|(p, _)| *p).collect()
    }

    /// `kill -9` of the primary the sentinels name; returns its port.
    pub fn kill9_primary(&mut self) -> u16 {
        let port = self.primary_port();
        let (_, child) = self
            .data
            .iter_mut()
            .find(|(p, _)| *p == port)
            .unwrap_or_else(|| panic!("the sentinels name {port}, not a server of the rig"));
        let mut child = child
            .take()
            .unwrap_or_else(|| panic!("the primary {port} is already dead"));
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        port
    }

    /// Cuts the replication link on the primary's side for good: its
    /// default user may no longer `SYNC`/`PSYNC` (`ACL SETUSER`, which is
    /// not replicated and dies with the process), and its replicas are
    /// disconnected (`CLIENT KILL TYPE replica`). From here on writes are
    /// on the primary alone, and a `kill -9` loses them with it, as an
    /// asynchronous replica that lagged would.
    pub fn cut_replication(&self) {
        let primary = self.primary_port();
        let denied = resp(primary, &["ACL", "SETUSER", "default", "-sync", "-psync"]).unwrap();
        assert_eq!(denied, Resp::Simple("OK".into()));
        let killed = resp(primary, &["CLIENT", "KILL", "TYPE", "replica"]).unwrap();
        assert!(matches!(killed, Resp::Int(_)), "CLIENT KILL: {killed:?}");
    }

    /// Replicas connected to the primary now (`connected_slaves`).
    pub fn replicas_connected(&self) -> usize {
        resp(self.primary_port(), &["INFO", "replication"])
            .ok()
            .and_then(|r| r.text())
            .and_then(|info| {
                let line = info.lines().find(|l| l.starts_with("connected_slaves:"))?;
                line["connected_slaves:".len()..].trim().parse().ok()
            })
            .unwrap_or(0)
    }

    /// Waits (up to [`WAIT`]) until every sentinel names a primary other
    /// than `old` and that server answers as a primary; returns its port.
    pub fn wait_new_primary(&self, old: u16) -> u16 {
        let mut new = None;
        wait_until(WAIT * 2, &format!("the sentinels to replace {old}"), || {
            let views = self.sentinel_views();
            new = views[0].filter(|&p| p != old);
            new.is_some_and(|p| views.iter().all(|v| *v == Some(p)) && role(p) == "master")
        });
        new.unwrap()
    }

    /// Restarts the killed server on `port` as a replica of the current
    /// primary, and waits until it is in sync and every sentinel counts it
    /// as a good replica (so that the next kill has one to promote).
    pub fn restart_as_replica(&mut self, port: u16) {
        let primary = self.primary_port();
        assert_ne!(primary, port, "{port} is still the primary");
        let child = self.spawn_data(port, Some(primary));
        let slot = self
            .data
            .iter_mut()
            .find(|(p, _)| *p == port)
            .unwrap_or_else(|| panic!("{port} is not a server of the rig"));
        assert!(slot.1.is_none(), "{port} is running");
        slot.1 = Some(child);
        // A cut (`cut_replication`) denies syncing on the server it was
        // made on; if the sentinels made that server primary again (a
        // failover of their own, under load), it would refuse this
        // replica for ever. Every live server allows it again.
        for (p, child) in &self.data {
            if child.is_some() {
                let _ = resp(*p, &["ACL", "SETUSER", "default", "+sync", "+psync"]);
            }
        }
        wait_in_sync(port);
        self.wait_settled();
    }

    /// Waits until every sentinel names the same primary, knows the two
    /// other sentinels, and sees a replica that is up and linked to it.
    pub fn wait_settled(&self) {
        let name = self.name.clone();
        wait_until(WAIT * 2, "the sentinels to settle", || {
            let views = self.sentinel_views();
            let Some(primary) = views[0] else {
                return false;
            };
            views.iter().all(|v| *v == Some(primary))
                && self.sentinels.iter().all(|(s, _)| {
                    let peers = resp(*s, &["SENTINEL", "sentinels", &name]);
                    let replicas = resp(*s, &["SENTINEL", "replicas", &name]);
                    let (Ok(peers), Ok(replicas)) = (peers, replicas) else {
                        return false;
                    };
                    peers.items().len() == 2
                        && replicas.items().iter().any(|r| {
                            let f = r.fields();
                            f.get("flags").map(String::as_str) == Some("slave")
                                && f.get("master-link-status").map(String::as_str) == Some("ok")
                                && f.get("master-port") == Some(&primary.to_string())
                        })
                })
        });
    }

    /// The last lines of every log in the rig's directory (for a failure
    /// message).
    pub fn logs(&self) -> String {
        let mut out = String::new();
        let mut files: Vec<_> = std::fs::read_dir(self.dir.path())
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|e| e == "log"))
            .collect();
        files.sort();
        for f in files {
            let text = std::fs::read_to_string(&f).unwrap_or_default();
            let lines: Vec<_> = text.lines().collect();
            out += &format!("--- {}\n", f.display());
            for l in &lines[lines.len().saturating_sub(30)..] {
                out += l;
                out.push('\n');
            }
        }
        out
    }
}

impl Drop for HaRig {
    fn drop(&mut self) {
        let data = self.data.iter_mut().filter_map(|(_, c)| c.as_mut());
        for child in data.chain(self.sentinels.iter_mut().map(|(_, c)| c)) {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// `ROLE`'s first word for the server on `port` (empty without an answer).
fn role(port: u16) -> String {
    resp(port, &["ROLE"])
        .ok()
        .and_then(|r| r.items().first()?.text())
        .unwrap_or_default()
}

fn wait_accepting(port: u16) {
    wait_until(WAIT, &format!("a server on {port} to answer PING"), || {
        resp(port, &["PING"]).is_ok_and(|r| r == Resp::Simple("PONG".into()))
    });
}

/// Waits until the replica on `port` has a live link to its primary (its
/// first full sync done).
fn wait_in_sync(port: u16) {
    wait_until(WAIT * 2, &format!("the replica on {port} to sync"), || {
        resp(port, &["INFO", "replication"])
            .ok()
            .and_then(|r| r.text())
            .is_some_and(|info| info.contains("master_link_status:up"))
    });
}

// ---------------------------------------------------------------------------
// The fault proxy.

/// What the proxy does to the bytes it relays, switched at run time with
/// [`Proxy::set`]. A chunk is judged by the fault in force when it was
/// read.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Fault {
    /// Relay as read.
    Pass,
    /// Hold every chunk this long before relaying it, in each direction.
    Latency(Duration),
    /// Hold every chunk (and so read no more) until the fault changes.
    Stall,
    /// Hold every chunk going one way until the fault changes; the other
    /// way passes. (A one-way partition as TCP lives it: what was sent
    /// arrives, late, once the network heals.)
    Hold(Dir),
    /// Drop, silently, every chunk going one way; the other way passes.
    /// (No network does this inside a TCP stream, which would retransmit:
    /// it is what a peer sees when its requests or answers vanish, and a
    /// client that goes on using a connection after a timeout goes out of
    /// step with it.)
    Blackout(Dir),
    /// Reset new connections as soon as they are accepted; current ones
    /// pass.
    Refuse,
}

/// A direction through the proxy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dir {
    /// From the client to the server.
    ToServer,
    /// From the server to the client.
    ToClient,
}

/// A TCP proxy on a free loopback port in front of `target`, with
/// [`Fault`]s switched at run time. It runs on a runtime of its own (one
/// worker thread), shut down on drop with every connection.
pub struct Proxy {
    addr: SocketAddr,
    /// Where new connections go ([`Proxy::follow_primary`]).
    target: watch::Sender<SocketAddr>,
    fault: watch::Sender<Fault>,
    /// Bumped by [`Proxy::reset`]; every connection open at that moment
    /// is reset.
    resets: watch::Sender<u64>,
    /// Connections relayed now (both sides open).
    live: Arc<AtomicUsize>,
    runtime: Option<tokio::runtime::Runtime>,
}

/// Bytes read at a time in each direction of a connection.
const CHUNK: usize = 16 * 1024;

impl Proxy {
    pub fn start(target: SocketAddr) -> Proxy {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let (fault, _) = watch::channel(Fault::Pass);
        let (resets, _) = watch::channel(0);
        let (target, _) = watch::channel(target);
        let live = Arc::new(AtomicUsize::new(0));
        let listener = runtime
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .unwrap();
        let addr = listener.local_addr().unwrap();
        let (f, r, l) = (fault.subscribe(), resets.subscribe(), live.clone());
        runtime.spawn(accept(listener, target.subscribe(), f, r, l));
        Proxy {
            addr,
            target,
            fault,
            resets,
            live,
            runtime: Some(runtime),
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn set(&self, fault: Fault) {
        self.fault.send_replace(fault);
    }

    /// Moves this address to whatever the sentinels at `sentinels` name as
    /// the primary of `master`, within a few milliseconds of each change,
    /// resetting the connections each time (as a virtual address managed
    /// by a Sentinel `client-reconfig-script` would), until `stop`.
    pub fn follow_primary(
        &self,
        sentinels: Vec<u16>,
        master: String,
        stop: Arc<std::sync::atomic::AtomicBool>,
    ) -> std::thread::JoinHandle<()> {
        let target = self.target.clone();
        let resets = self.resets.clone();
        std::thread::spawn(move || {
            while !stop.load(std::sync::atomic::Ordering::Acquire) {
                let named = sentinels.iter().find_map(|p| {
                    let answer =
                        resp(*p, &["SENTINEL", "get-master-addr-by-name", &master]).ok()?;
                    answer.items().get(1)?.text()?.parse::<u16>().ok()
                });
                if let Some(port) = named {
                    let new: SocketAddr = ([127, 0, 0, 1], port).into();
                    if *target.borrow() != new {
                        target.send_replace(new);
                        resets.send_modify(|n| *n += 1);
                    }
                }
                // Polling an outside state (no event to wait on).
                std::thread::sleep(Duration::from_millis(20));
            }
        })
    }

    /// Resets every current connection: both of its sockets are closed
    /// with a zero linger, so each peer gets an `RST`, not a `FIN`.
    pub fn reset(&self) {
        self.resets.send_modify(|n| *n += 1);
    }

    /// Connections relayed now.
    pub fn connections(&self) -> usize {
        self.live.load(Ordering::Acquire)
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }
}

async fn accept(
    listener: tokio::net::TcpListener,
    target: watch::Receiver<SocketAddr>,
    fault: watch::Receiver<Fault>,
    resets: watch::Receiver<u64>,
    live: Arc<AtomicUsize>,
) {
    loop {
        let Ok((client, _)) = listener.accept().await else {
            continue; // EMFILE and the like: try the next one
        };
        if *fault.borrow() == Fault::Refuse {
            let _ = client.set_zero_linger();
            continue;
        }
        let mut resets = resets.clone();
        resets.mark_unchanged(); // only resets from now on
        let to = *target.borrow();
        tokio::spawn(relay(client, to, fault.clone(), resets, live.clone()));
    }
}

/// Decrements the live count when a connection's relay ends.
struct Live(Arc<AtomicUsize>);

impl Drop for Live {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

async fn relay(
    mut client: tokio::net::TcpStream,
    target: SocketAddr,
    fault: watch::Receiver<Fault>,
    mut resets: watch::Receiver<u64>,
    live: Arc<AtomicUsize>,
) {
    let Ok(mut server) = tokio::net::TcpStream::connect(target).await else {
        // The target is down: the client sees a reset, as if refused.
        let _ = client.set_zero_linger();
        return;
    };
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    live.fetch_add(1, Ordering::AcqRel);
    let _live = Live(live);
    let abort = {
        let (cr, cw) = client.split();
        let (sr, sw) = server.split();
        let up = pump(cr, sw, Dir::ToServer, fault.clone());
        let down = pump(sr, cw, Dir::ToClient, fault);
        tokio::pin!(up, down);
        let (mut up_done, mut down_done) = (false, false);
        loop {
            // An error one way (a reset, a write to a closed peer) ends
            // both ways with a reset; an end of stream is passed on as a
            // half close, and the other way goes on.
            tokio::select! {
                r = &mut up, if !up_done => {
                    up_done = true;
                    if r.is_err() { break true; }
                }
                r = &mut down, if !down_done => {
                    down_done = true;
                    if r.is_err() { break true; }
                }
                _ = resets.changed() => break true,
            }
            if up_done && down_done {
                break false;
            }
        }
    };
    if abort {
        let _ = client.set_zero_linger();
        let _ = server.set_zero_linger();
    }
}

async fn pump(
    mut from: tokio::net::tcp::ReadHalf<'_>,
    mut to: tokio::net::tcp::WriteHalf<'_>,
    dir: Dir,
    mut fault: watch::Receiver<Fault>,
) -> std::io::Result<()> {
    let mut buf = vec![0; CHUNK];
    loop {
        let n = from.read(&mut buf).await?;
        if n == 0 {
            return to.shutdown().await;
        }
        let pass = loop {
            let now = *fault.borrow_and_update();
            match now {
                Fault::Pass | Fault::Refuse => break true,
                Fault::Latency(d) => {
                    tokio::time::sleep(d).await;
                    break true;
                }
                Fault::Blackout(d) => break d != dir,
                Fault::Hold(d) if d != dir => break true,
                Fault::Stall | Fault::Hold(_) => {
                    if fault.changed().await.is_err() {
                        return Ok(()); // the proxy is gone
                    }
                }
            }
        };
        if pass {
            to.write_all(&buf[..n]).await?;
        }
    }
}

// ---------------------------------------------------------------------------
// Self-tests.

/// A proxy in front of a `redis-server` of the test's own.
fn proxied_redis() -> Option<(Redis, Proxy)> {
    let redis = Redis::start(false)?;
    let proxy = Proxy::start(loopback(redis.port().expect("a server of our own")));
    Some((redis, proxy))
}

fn pong(conn: &mut RespConn) -> bool {
    conn.cmd(&["PING"])
        .is_ok_and(|r| r == Resp::Simple("PONG".into()))
}

#[test]
fn proxy_passes_redis_commands_intact() {
    let Some((_redis, proxy)) = proxied_redis() else {
        return;
    };
    let mut conn = RespConn::connect(proxy.addr()).unwrap();
    assert!(pong(&mut conn));
    // A value larger than a chunk, both ways.
    let big: String = (0..100_000)
        .map(|i| (b'a' + (i % 26) as u8) as char)
        .collect();
    assert_eq!(
        conn.cmd(&["SET", "big", &big]).unwrap(),
        Resp::Simple("OK".into())
    );
    assert_eq!(
        conn.cmd(&["GET", "big"]).unwrap().text().as_deref(),
        Some(big.as_str())
    );
    assert_eq!(proxy.connections(), 1);
}

#[test]
fn proxy_latency_delays_each_way() {
    let Some((_redis, proxy)) = proxied_redis() else {
        return;
    };
    let mut conn = RespConn::connect(proxy.addr()).unwrap();
    let round_trip = |conn: &mut RespConn| {
        let t = Instant::now();
        assert!(pong(conn));
        t.elapsed()
    };
    let mut plain: Vec<_> = (0..10).map(|_| round_trip(&mut conn)).collect();
    plain.sort();
    let delay = Duration::from_millis(100);
    proxy.set(Fault::Latency(delay));
    let slow: Vec<_> = (0..3).map(|_| round_trip(&mut conn)).collect();
    // The request and the answer are each held `delay`: no round trip is
    // shorter than both, whatever the load, and each is longer than a
    // plain one by about that much.
    for rtt in &slow {
        assert!(*rtt >= 2 * delay, "{rtt:?} with {delay:?} each way");
        assert!(
            *rtt >= plain[plain.len() / 2] + delay,
            "{rtt:?} against plain {plain:?}"
        );
    }
    proxy.set(Fault::Pass);
    assert!(round_trip(&mut conn) < slow.iter().copied().min().unwrap() + plain[9]);
}

#[test]
fn proxy_reset_is_an_error_for_the_client() {
    let Some((_redis, proxy)) = proxied_redis() else {
        return;
    };
    let mut conn = RespConn::connect(proxy.addr()).unwrap();
    assert!(pong(&mut conn));
    proxy.reset();
    wait_until(WAIT, "the proxy to drop the connection", || {
        proxy.connections() == 0
    });
    // The RST has been sent: the next read fails with a reset, not an
    // orderly end of stream.
    let err = conn.cmd(&["PING"]).unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::ConnectionReset, "{err}");
    // New connections pass.
    assert!(pong(&mut RespConn::connect(proxy.addr()).unwrap()));
}

#[test]
fn proxy_refuses_new_connections_and_keeps_current_ones() {
    let Some((_redis, proxy)) = proxied_redis() else {
        return;
    };
    let mut old = RespConn::connect(proxy.addr()).unwrap();
    assert!(pong(&mut old));
    proxy.set(Fault::Refuse);
    let refused = RespConn::connect(proxy.addr()).and_then(|mut c| c.cmd(&["PING"]));
    assert!(refused.is_err(), "{refused:?}");
    assert!(pong(&mut old));
    proxy.set(Fault::Pass);
    assert!(pong(&mut RespConn::connect(proxy.addr()).unwrap()));
}

/// How long a test watches for something that must not happen (an answer
/// through a stall or a blackout): a negative can only be seen for a time.
const QUIET: Duration = Duration::from_millis(300);

#[test]
fn proxy_stall_holds_bytes_until_released() {
    let Some((redis, proxy)) = proxied_redis() else {
        return;
    };
    let port = redis.port().unwrap();
    let mut conn = RespConn::connect(proxy.addr()).unwrap();
    assert!(pong(&mut conn));
    proxy.set(Fault::Stall);
    conn.send(&["SET", "held", "1"]).unwrap();
    conn.socket().set_read_timeout(Some(QUIET)).unwrap();
    let err = conn.read().unwrap_err();
    assert!(
        matches!(
            err.kind(),
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
        ),
        "{err}"
    );
    assert_eq!(resp(port, &["GET", "held"]).unwrap(), Resp::Bulk(None));
    proxy.set(Fault::Pass);
    conn.socket().set_read_timeout(Some(WAIT)).unwrap();
    assert_eq!(conn.read().unwrap(), Resp::Simple("OK".into()));
    assert_eq!(resp(port, &["GET", "held"]).unwrap().text().unwrap(), "1");
}

#[test]
fn proxy_hold_delivers_one_way_and_holds_the_other() {
    let Some((redis, proxy)) = proxied_redis() else {
        return;
    };
    let port = redis.port().unwrap();
    let mut conn = RespConn::connect(proxy.addr()).unwrap();
    proxy.set(Fault::Hold(Dir::ToClient));
    conn.send(&["SET", "held", "1"]).unwrap();
    wait_until(WAIT, "the command to reach Redis", || {
        resp(port, &["GET", "held"]).is_ok_and(|r| r.text().as_deref() == Some("1"))
    });
    conn.socket().set_read_timeout(Some(QUIET)).unwrap();
    assert!(conn.read().is_err(), "an answer came through the hold");
    proxy.set(Fault::Pass);
    conn.socket().set_read_timeout(Some(WAIT)).unwrap();
    assert_eq!(conn.read().unwrap(), Resp::Simple("OK".into()));
    assert!(pong(&mut conn));
}

#[test]
fn proxy_blackout_drops_one_way_only() {
    let Some((redis, proxy)) = proxied_redis() else {
        return;
    };
    let port = redis.port().unwrap();

    // Server to client dark: the command is applied, its answer lost.
    let mut conn = RespConn::connect(proxy.addr()).unwrap();
    proxy.set(Fault::Blackout(Dir::ToClient));
    conn.send(&["SET", "down", "1"]).unwrap();
    wait_until(WAIT, "the command to reach Redis", || {
        resp(port, &["GET", "down"]).is_ok_and(|r| r.text().as_deref() == Some("1"))
    });
    conn.socket().set_read_timeout(Some(QUIET)).unwrap();
    assert!(conn.read().is_err(), "an answer came through the blackout");

    // Client to server dark: nothing reaches Redis, nothing comes back.
    let mut conn = RespConn::connect(proxy.addr()).unwrap();
    proxy.set(Fault::Blackout(Dir::ToServer));
    conn.send(&["SET", "up", "1"]).unwrap();
    conn.socket().set_read_timeout(Some(QUIET)).unwrap();
    assert!(conn.read().is_err(), "an answer came through the blackout");
    assert_eq!(resp(port, &["GET", "up"]).unwrap(), Resp::Bulk(None));
    proxy.set(Fault::Pass);
    conn.socket().set_read_timeout(Some(WAIT)).unwrap();
    assert!(pong(&mut conn), "the connection still works after");
    assert_eq!(resp(port, &["GET", "up"]).unwrap(), Resp::Bulk(None));
}

#[test]
fn ha_rig_replicates_and_fails_over_twice() {
    let Some(mut rig) = HaRig::start() else {
        return;
    };
    let first = rig.primary_port();
    let replica = *rig.data_ports().iter().find(|&&p| p != first).unwrap();
    assert_eq!(
        resp(first, &["SET", "k", "v1"]).unwrap(),
        Resp::Simple("OK".into())
    );
    wait_until(WAIT, "the write to reach the replica", || {
        resp(replica, &["GET", "k"]).is_ok_and(|r| r.text().as_deref() == Some("v1"))
    });

    let killed_at = Instant::now();
    assert_eq!(rig.kill9_primary(), first);
    let second = rig.wait_new_primary(first);
    eprintln!(
        "ha rig: new primary {second} {:?} after the kill",
        killed_at.elapsed()
    );
    assert_eq!(second, replica);
    assert_eq!(resp(second, &["GET", "k"]).unwrap().text().unwrap(), "v1");

    // The dead one comes back as a replica, gets the data, and is the one
    // promoted at the next kill.
    rig.restart_as_replica(first);
    resp(second, &["SET", "k", "v2"]).unwrap();
    wait_until(WAIT, "the write to reach the restarted replica", || {
        resp(first, &["GET", "k"]).is_ok_and(|r| r.text().as_deref() == Some("v2"))
    });
    assert_eq!(rig.replicas_connected(), 1);

    // With the link cut, a write on the primary dies with it.
    rig.cut_replication();
    assert_eq!(rig.replicas_connected(), 0);
    resp(second, &["SET", "alone", "1"]).unwrap();
    assert_eq!(rig.kill9_primary(), second);
    let third = rig.wait_new_primary(second);
    assert_eq!(third, first, "logs:\n{}", rig.logs());
    assert_eq!(resp(third, &["GET", "k"]).unwrap().text().unwrap(), "v2");
    assert_eq!(resp(third, &["GET", "alone"]).unwrap(), Resp::Bulk(None));
    assert_eq!(role(third), "master");
}
