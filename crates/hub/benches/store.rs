//! `cargo bench -p hub --bench store`: acknowledged appends per second of
//! each store on its own (no HTTP), 64 concurrent publishers of 64-byte
//! messages on one topic, as the hub calls them. Prints one line per store;
//! a benchmark, not a test (nothing is asserted).
//!
//! Options (environment): `STORE_BENCH_MESSAGES` (default 200000),
//! `STORE_BENCH_PUBLISHERS` (64), `STORE_BENCH_FSYNC=1` (SQLite
//! `synchronous = FULL`).

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use hub::broker::Rings;
use hub::store::sqlite::{DataDir, SqliteOptions};
use hub::store::Store;
use hub::{Backend, Config, TopicName};

fn env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

async fn run(name: &str, store: Arc<dyn Store>, messages: usize, publishers: usize) {
    let body = Bytes::from(vec![b'x'; 64]);
    let topic = TopicName::new("bench").unwrap();
    let start = Instant::now();
    let tasks: Vec<_> = (0..publishers)
        .map(|_| {
            let (store, body, topic) = (store.clone(), body.clone(), topic.clone());
            tokio::spawn(async move {
                for _ in 0..messages / publishers {
                    store.append(topic.clone(), body.clone()).await.unwrap();
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    let secs = start.elapsed().as_secs_f64();
    let done = messages / publishers * publishers;
    println!(
        "{name:>8}: {done} appends by {publishers} publishers in {secs:.3} s = {:.0} acknowledged/s",
        done as f64 / secs
    );
}

fn main() {
    let messages = env("STORE_BENCH_MESSAGES", 200_000);
    let publishers = env("STORE_BENCH_PUBLISHERS", 64);
    let fsync = env("STORE_BENCH_FSYNC", 0) == 1;
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let config = Config::default();
        let memory = Backend::memory(&config, Rings::new(4096));
        run("memory", memory.store, messages, publishers).await;
        let dir = tempfile::tempdir().unwrap();
        let options = SqliteOptions {
            fsync,
            ..Default::default()
        };
        let data = DataDir::open(dir.path(), options).unwrap();
        let durable = data.backend(&config, Rings::new(4096));
        let name = if fsync { "sqlite+fsync" } else { "sqlite" };
        run(name, durable.store, messages, publishers).await;
    });
}
