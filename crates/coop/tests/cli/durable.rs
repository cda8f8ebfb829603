//! End-to-end: `coop serve --data-dir` killed with `kill -9` in the middle
//! of a stream of publishes, restarted on the same directory; a subscriber
//! that resumes with its last id gets every acknowledged message exactly
//! once, in order, and ids continue.

use crate::support::{subscribe, wait_subscribers, Publisher, Received, Server};

#[test]
fn kill_9_mid_stream_then_restart_loses_nothing_acknowledged() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_str().unwrap();
    let server = Server::start(&["--data-dir", data]);
    let sub = subscribe(server.url("/topics/seq?format=ndjson"));
    wait_subscribers(&server.url(""), 1);
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
