//! End-to-end: `coop serve --data-dir` killed with `kill -9` in the middle
//! of a stream of publishes, restarted on the same directory; a subscriber
//! that resumes with its last id gets every acknowledged message exactly
//! once, in order, and ids continue.

use std::collections::HashSet;
use std::io::{BufRead, BufReader};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::support::Server;

/// Generous bound on any single wait.
pub const WAIT: Duration = Duration::from_secs(10);

/// Opens an NDJSON subscription; its records arrive on the receiver (which
/// disconnects when the stream ends). Empty heartbeat lines are skipped.
pub fn subscribe(url: String) -> Receiver<serde_json::Value> {
    let (tx, rx) = std::sync::mpsc::channel();
    let client = reqwest::blocking::Client::builder()
        .timeout(None)
        .build()
        .unwrap();
    let resp = client.get(&url).send().expect("subscribe");
    assert_eq!(resp.status(), 200, "subscribe to {url}");
    std::thread::spawn(move || {
        for line in BufReader::new(resp).lines() {
            let Ok(line) = line else { return };
            if line.is_empty() {
                continue;
            }
            if tx.send(serde_json::from_str(&line).unwrap()).is_err() {
                return;
            }
        }
    });
    rx
}

/// Publishes numbered messages to `url` in a thread until `stop`, keeping
/// the numbers that were acknowledged (`200 ok`).
pub struct Publisher {
    pub acked: Arc<Mutex<Vec<u64>>>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<u64>>,
}

impl Publisher {
    pub fn start(url: String, first: u64) -> Publisher {
        let acked = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (a, s) = (acked.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            let client = reqwest::blocking::Client::builder()
                .timeout(Duration::from_secs(5))
                .build()
                .unwrap();
            let mut seq = first;
            while !s.load(Ordering::Acquire) {
                let ok = client
                    .post(&url)
                    .body(seq.to_string())
                    .send()
                    .is_ok_and(|r| r.status() == 200);
                if ok {
                    a.lock().unwrap().push(seq);
                } else {
                    std::thread::sleep(Duration::from_millis(10));
                }
                seq += 1;
            }
            seq
        });
        Publisher {
            acked,
            stop,
            thread: Some(thread),
        }
    }

    pub fn count(&self) -> usize {
        self.acked.lock().unwrap().len()
    }

    pub fn wait_for(&self, n: usize) {
        let deadline = std::time::Instant::now() + WAIT;
        while self.count() < n {
            assert!(
                std::time::Instant::now() < deadline,
                "only {} acknowledged",
                self.count()
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Stops; returns the acknowledged numbers and the next unused one.
    pub fn stop(mut self) -> (Vec<u64>, u64) {
        self.stop.store(true, Ordering::Release);
        let next = self.thread.take().unwrap().join().unwrap();
        (self.acked.lock().unwrap().clone(), next)
    }
}

/// A subscriber's view: what it received (number, id), in arrival order.
#[derive(Default)]
pub struct Received {
    pub seqs: Vec<u64>,
    pub ids: Vec<u64>,
}

impl Received {
    /// Reads from `rx` until it ends or `until` holds for what was read.
    pub fn read(&mut self, rx: &Receiver<serde_json::Value>, until: impl Fn(&Received) -> bool) {
        while !until(self) {
            match rx.recv_timeout(WAIT) {
                Ok(rec) => {
                    let Some(msg) = rec["message"].as_str() else {
                        continue; // a notice, not a message
                    };
                    self.seqs.push(msg.parse().unwrap());
                    self.ids.push(rec["id"].as_u64().unwrap());
                }
                Err(RecvTimeoutError::Disconnected) => return,
                Err(RecvTimeoutError::Timeout) => panic!(
                    "subscriber stalled after {} messages (last id {:?})",
                    self.seqs.len(),
                    self.ids.last()
                ),
            }
        }
    }

    pub fn has_all(&self, acked: &[u64]) -> bool {
        let seen: HashSet<_> = self.seqs.iter().collect();
        acked.iter().all(|s| seen.contains(s))
    }

    /// No duplicate, ids strictly increasing, every acknowledged one there.
    pub fn check(&self, acked: &[u64]) {
        let unique: HashSet<_> = self.seqs.iter().collect();
        assert_eq!(unique.len(), self.seqs.len(), "duplicates: {:?}", self.seqs);
        assert!(
            self.ids.windows(2).all(|w| w[0] < w[1]),
            "ids out of order: {:?}",
            self.ids
        );
        assert!(self.has_all(acked), "missing acknowledged messages");
    }
}

#[test]
fn kill_9_mid_stream_then_restart_loses_nothing_acknowledged() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_str().unwrap();
    let server = Server::start(&["--data-dir", data]);
    let sub = subscribe(server.url("/topics/seq?format=ndjson"));
    std::thread::sleep(Duration::from_millis(100)); // let it register
    let publisher = Publisher::start(server.url("/topics/seq"), 0);
    publisher.wait_for(300);
    drop(server); // SIGKILL while the publisher is still publishing
    let (mut acked, next) = publisher.stop();
    let before = acked.len();

    let mut got = Received::default();
    got.read(&sub, |_| false); // until the killed server's stream ends
    let last = *got.ids.last().expect("received something before the kill");

    let server = Server::start(&["--data-dir", data]);
    let sub = subscribe(server.url(&format!("/topics/seq?format=ndjson&since={last}")));
    let publisher = Publisher::start(server.url("/topics/seq"), next);
    publisher.wait_for(100);
    let (more, _) = publisher.stop();
    acked.extend(more);
    got.read(&sub, |r| r.has_all(&acked));
    got.check(&acked);
    assert!(before >= 300 && acked.len() >= 400);
    let status = server.terminate();
    assert!(status.success(), "{status}");
}

#[test]
fn a_second_server_on_the_same_data_dir_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_str().unwrap();
    let _first = Server::start(&["--data-dir", data]);
    let out = crate::support::coop()
        .args(["serve", "--port", "0", "--data-dir", data])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("in use by another process"), "{err}");
}
