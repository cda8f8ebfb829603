//! Durable history (`store/sqlite/`) behind a real hub on a real socket:
//! ids continue after a reopen, resume after a restart, count and age
//! retention, a bounded file under a steady stream, and the start-up and
//! runtime errors (locked directory, corrupt file, full database).

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use hub::store::sqlite::{DataDir, DataDirError, SqliteOptions};
use hub::store::{Retention, Store};
use hub::{Config, Hub, TopicName};
use tokio_util::sync::CancellationToken;

use crate::support::{client, get_json, Stream, TestHub};

async fn start(dir: &Path, config: Config, options: SqliteOptions) -> TestHub {
    let data = DataDir::open(dir, options).unwrap();
    let shutdown = CancellationToken::new();
    let hub = Hub::with_backend(config, shutdown.clone(), |c, f| data.backend(c, f));
    TestHub::serve(hub, shutdown)
}

/// Stops the server and closes the store (which releases the lock).
async fn stop(h: TestHub) {
    h.hub.store().close().await.unwrap();
    h.shutdown.cancel();
    h.server.await.unwrap();
}

fn retention(max_count: usize, max_age: Option<Duration>) -> Config {
    Config {
        retention: Retention {
            max_count,
            max_age,
            ..Retention::default()
        },
        ..Config::default()
    }
}

#[tokio::test]
async fn ids_continue_after_a_reopen_and_a_subscriber_resumes_across_it() {
    let dir = tempfile::tempdir().unwrap();
    let h = start(dir.path(), Config::default(), SqliteOptions::default()).await;
    let first = h.publish("/topics/t", "one").await;
    let second = h.publish("/topics/t", "two").await;
    assert!(second["id"].as_u64() > first["id"].as_u64());
    stop(h).await;

    let h = start(dir.path(), Config::default(), SqliteOptions::default()).await;
    assert_eq!(
        h.hub.store().last_id().map(|i| i.0),
        second["id"].as_u64(),
        "last id survives the reopen"
    );
    let third = h.publish("/topics/t", "three").await;
    assert!(
        third["id"].as_u64() > second["id"].as_u64(),
        "ids continue, never reused"
    );
    // A subscriber that had seen "one" resumes on the new process.
    let mut sub = Stream::open(
        client()
            .get(h.url("/topics/t?format=ndjson"))
            .header("last-event-id", first["id"].to_string()),
    )
    .await;
    assert_eq!(sub.json().await.unwrap()["message"], "two");
    assert_eq!(sub.json().await.unwrap()["message"], "three");
    h.wait_subscribers(1).await;
    h.publish("/topics/t", "four").await;
    assert_eq!(sub.json().await.unwrap()["message"], "four");
    let topics: serde_json::Value = get_json(&h.url("/api/topics/t")).await;
    assert_eq!(topics["history"], 4, "{topics}");
}

#[tokio::test]
async fn count_retention_keeps_the_newest_and_reports_the_gap() {
    let dir = tempfile::tempdir().unwrap();
    let h = start(dir.path(), retention(3, None), SqliteOptions::default()).await;
    let mut ids = Vec::new();
    for i in 0..10 {
        ids.push(h.publish("/topics/t", &i.to_string()).await["id"].clone());
    }
    let mut all = Stream::get(&h.url("/topics/t?format=ndjson&since=all")).await;
    for want in ["7", "8", "9"] {
        assert_eq!(all.json().await.unwrap()["message"], want);
    }
    // Resuming after id 0 has lost 1..=6: told so, then given 7, 8, 9.
    let mut sub = Stream::get(&h.url(&format!("/topics/t?format=ndjson&since={}", ids[0]))).await;
    let notice = sub.json().await.unwrap();
    assert!(
        notice.to_string().contains(&ids[6].to_string()),
        "gap notice names the last dropped id: {notice}"
    );
    assert_eq!(sub.json().await.unwrap()["message"], "7");
}

#[tokio::test]
async fn age_retention_drops_old_messages_and_forgets_empty_topics() {
    let dir = tempfile::tempdir().unwrap();
    // The store's clock is the test's: an hour passes in no time.
    let clock = hub::clock::Clock::adjustable();
    let mut config = retention(1000, Some(Duration::from_secs(60)));
    config.retention.clock = clock;
    let h = start(dir.path(), config, SqliteOptions::default()).await;
    let old = h.publish("/topics/old", "x").await;
    clock.advance(Duration::from_secs(3600));
    h.publish("/topics/new", "y").await;
    let store = h.hub.store();
    // Pruned now (or already, by the hub's own pruning each second).
    let topics = || async {
        store
            .topics()
            .await
            .unwrap()
            .into_iter()
            .map(|(n, _)| n.to_string())
            .collect::<Vec<String>>()
    };
    let pruned = store.prune().await.unwrap();
    assert!(pruned <= 1, "only the old message is that old: {pruned}");
    assert_eq!(topics().await, ["new"]);
    let hist = store
        .read(&TopicName::new("old").unwrap(), None)
        .await
        .unwrap();
    assert!(hist.messages.is_empty());
    assert_eq!(hist.dropped_through.map(|i| i.0), old["id"].as_u64());
}

#[tokio::test]
async fn the_file_stays_bounded_under_a_steady_stream() {
    let dir = tempfile::tempdir().unwrap();
    let data = DataDir::open(dir.path(), SqliteOptions::default()).unwrap();
    let rings = hub::broker::Rings::new(16);
    let backend = data.backend(&retention(100, None), rings);
    let store = backend.store;
    let body = bytes::Bytes::from(vec![b'x'; 1000]);
    let size = || {
        ["hub.db", "hub.db-wal"]
            .iter()
            .map(|f| std::fs::metadata(dir.path().join(f)).map_or(0, |m| m.len()))
            .sum::<u64>()
    };
    // 64 concurrent publishers, 20,000 messages of 1 kB (20 MB written),
    // on 4 topics that each keep 100.
    let publish = |n: usize, store: Arc<dyn Store>, body: bytes::Bytes| async move {
        let tasks: Vec<_> = (0..64)
            .map(|p| {
                let store = store.clone();
                let body = body.clone();
                tokio::spawn(async move {
                    let topic = TopicName::new(&format!("t{}", p % 4)).unwrap();
                    for _ in 0..n / 64 {
                        store.append(topic.clone(), body.clone()).await.unwrap();
                    }
                })
            })
            .collect();
        for t in tasks {
            t.await.unwrap();
        }
    };
    publish(20_000, store.clone(), body.clone()).await;
    let total = size();
    assert!(
        total < 24 << 20,
        "20 MB written: database and WAL (capped at 16 MB) hold {total} bytes"
    );
    // Checkpoint everything into the database file: without page reuse it
    // would hold the 20 MB written; with it, little more than the 400 kB
    // retained.
    let conn = rusqlite::Connection::open(dir.path().join("hub.db")).unwrap();
    conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
        .unwrap();
    let db = std::fs::metadata(dir.path().join("hub.db")).unwrap().len();
    assert!(
        db < 4 << 20,
        "20 MB written, 400 kB retained: hub.db holds {db} bytes"
    );
    let stats = store.topics().await.unwrap();
    assert!(stats.iter().all(|(_, s)| s.len == 100), "{stats:?}");
}

#[tokio::test]
async fn a_locked_directory_a_file_and_a_corrupt_database_are_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let held = DataDir::open(dir.path(), SqliteOptions::default()).unwrap();
    let err = DataDir::open(dir.path(), SqliteOptions::default())
        .err()
        .expect("second open of a locked directory fails");
    assert!(matches!(err, DataDirError::Locked { .. }), "{err}");
    assert!(
        err.to_string().contains("in use by another process"),
        "{err}"
    );
    drop(held);
    DataDir::open(dir.path(), SqliteOptions::default()).expect("lock released on drop");

    let file = dir.path().join("a-file");
    std::fs::write(&file, "not a directory").unwrap();
    let err = DataDir::open(&file, SqliteOptions::default())
        .err()
        .unwrap();
    assert!(matches!(err, DataDirError::Dir { .. }), "{err}");

    let bad = tempfile::tempdir().unwrap();
    std::fs::write(bad.path().join("hub.db"), vec![0x5a; 8192]).unwrap();
    let err = DataDir::open(bad.path(), SqliteOptions::default())
        .err()
        .unwrap();
    assert!(matches!(err, DataDirError::Corrupt { .. }), "{err}");
    assert!(err.to_string().contains("hub.db"), "names the file: {err}");
}

#[tokio::test]
async fn a_full_database_answers_503_and_keeps_what_it_acknowledged() {
    let dir = tempfile::tempdir().unwrap();
    // SQLite's page cap returns SQLITE_FULL exactly as a full disk does.
    let options = SqliteOptions {
        max_bytes: Some(256 * 1024),
        ..Default::default()
    };
    let h = start(dir.path(), retention(100_000, None), options).await;
    let body = "y".repeat(4000);
    let mut acked = 0;
    let refused = loop {
        let resp = client()
            .post(h.url("/topics/t"))
            .body(body.clone())
            .send()
            .await
            .unwrap();
        if resp.status() == 200 {
            acked += 1;
            assert!(acked < 1000, "never filled up");
            continue;
        }
        break resp;
    };
    assert_eq!(refused.status(), 503);
    let reason = refused.text().await.unwrap();
    assert!(reason.contains("full"), "{reason}");
    let health = h.hub.health().unwrap_err();
    assert!(health.contains("full"), "{health}");
    let hist = h
        .hub
        .store()
        .read(&TopicName::new("t").unwrap(), None)
        .await
        .unwrap();
    assert_eq!(
        hist.messages.len(),
        acked,
        "every acknowledged message kept"
    );
}
