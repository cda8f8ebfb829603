//! RAII guards vs async cleanup: Python's `with` and `async with`.
//!
//! Rust's `with` is a value with a `Drop` impl (a guard). Its cleanup runs
//! when the value goes out of scope, on every path: normal end, early
//! return, `?`, panic. There is no block to forget and nothing to call.
//!
//! But `drop` is a plain function: it cannot `.await`. Rust has no async
//! drop because a value may be dropped anywhere: in sync code with no
//! runtime at hand, during a panic, or halfway through another future when
//! that future is cancelled (dropped) at an `.await`. The language cannot
//! promise that an async cleanup would ever be polled to the end.
//!
//! What to do instead, for cleanup that must wait (send a goodbye, flush a
//! buffer, close a connection politely):
//!
//! 1. give the resource an explicit `async fn close(self)`, and
//! 2. wrap its use in a scope function (`with_connection` below) that awaits
//!    `close` after the body, whether the body succeeded or failed;
//! 3. keep a `Drop` impl as the fallback for when `close` never ran (the
//!    future was cancelled): do what can be done synchronously, and say so.
//!
//! Set `COOP_SPEED=100` to divide every sleep by 100.

// ANCHOR: example
use std::fmt;
use std::time::Duration;

// ---------------------------------------------------------------------------
// `with`: a synchronous guard.

/// A file-like resource whose cleanup needs no waiting.
struct Ledger {
    name: &'static str,
}

impl Ledger {
    fn open(name: &'static str) -> Ledger {
        println!("open {name}");
        Ledger { name }
    }

    fn write(&self, line: &str) -> Result<(), DbError> {
        if line.is_empty() {
            return Err(DbError("empty line".into()));
        }
        println!("{}: {line}", self.name);
        Ok(())
    }
}

impl Drop for Ledger {
    fn drop(&mut self) {
        println!("close {} (Drop)", self.name);
    }
}

fn record(lines: &[&str]) -> Result<(), DbError> {
    let ledger = Ledger::open("ledger");
    for line in lines {
        // On error `?` returns early; `ledger` is still dropped, and closed.
        ledger.write(line)?;
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// `async with`: cleanup that must await.

#[derive(Debug)]
struct DbError(String);

impl fmt::Display for DbError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A connection whose polite close takes a round trip.
struct Connection {
    url: &'static str,
    /// Set by `close`; if still false in `drop`, nobody closed us.
    closed: bool,
}

impl Connection {
    async fn connect(url: &'static str) -> Connection {
        tokio::time::sleep(talk_seconds(1)).await;
        println!("connected to {url}");
        Connection { url, closed: false }
    }

    async fn set_key(&mut self, key: &str, value: &str) -> Result<(), DbError> {
        tokio::time::sleep(talk_seconds(1)).await;
        if key.is_empty() {
            return Err(DbError("empty key".into()));
        }
        println!("set {key} = {value}");
        Ok(())
    }

    /// The async cleanup: says goodbye to the server, which takes a wait.
    async fn close(mut self) {
        tokio::time::sleep(talk_seconds(1)).await;
        println!("said goodbye to {}, closed", self.url);
        self.closed = true;
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        if !self.closed {
            // Cannot await here: the best a sync drop can do is drop the
            // socket (the server sees a reset) and tell someone.
            println!("dropped {} without a goodbye (Drop cannot await)", self.url);
        }
    }
}

/// The `async with` of this example: connect, run `body`, and close
/// whether `body` succeeded or failed.
async fn with_connection<T>(
    url: &'static str,
    body: impl AsyncFnOnce(&mut Connection) -> Result<T, DbError>,
) -> Result<T, DbError> {
    let mut conn = Connection::connect(url).await;
    let result = body(&mut conn).await;
    conn.close().await;
    result
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    println!("-- with: a guard closes on every path --");
    let ok = record(&["cow says Moo!"]);
    println!("record: {ok:?}");
    let failed = record(&["pig says Oink!", "", "never written"]);
    println!("record: {failed:?}");

    println!("-- async with: a scope function awaits close --");
    let ok = with_connection("db://farm", async |db| db.set_key("cow", "Moo!").await).await;
    println!("with_connection: {ok:?}");
    let failed = with_connection("db://farm", async |db| db.set_key("", "?").await).await;
    println!("with_connection: {failed:?}");

    println!("-- cancelled: the future is dropped, close never runs --");
    let slow = with_connection("db://farm", async |db| {
        tokio::time::sleep(talk_seconds(10)).await;
        db.set_key("cat", "Meow!").await
    });
    match tokio::time::timeout(talk_seconds(2), slow).await {
        Ok(result) => println!("finished: {result:?}"),
        Err(_) => println!("timed out after 2 s"),
    }
}
// ANCHOR_END: example

/// The talk's `n` seconds, divided by `COOP_SPEED` (default 1: real time;
/// values outside 0.01..=1000000 are ignored).
fn talk_seconds(n: u64) -> Duration {
    let speed = std::env::var("COOP_SPEED")
        .ok()
        .and_then(|s| s.parse::<f64>().ok())
        .filter(|s| (0.01..=1e6).contains(s))
        .unwrap_or(1.0);
    Duration::from_secs(n).div_f64(speed)
}
