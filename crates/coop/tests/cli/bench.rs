//! End-to-end tests: `coop bench` against a real `coop serve`.

use crate::support::{coop, Server};

#[test]
fn hold_and_fanout_pass_against_coop_serve_and_report_json() {
    let server = Server::start(&["--delay", "50ms"]);

    let out = coop()
        .args(["bench", "hold", "--url", &server.url("/animals/cow")])
        .args([
            "-c",
            "20",
            "--delay",
            "50ms",
            "--expect-body",
            "Moo!",
            "--json",
        ])
        .output()
        .expect("run coop bench hold");
    assert!(out.status.success(), "hold failed: {out:?}");
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("hold prints JSON");
    assert_eq!(report["ok"], 20, "{report}");

    let out = coop()
        .args(["bench", "fanout", "--url", &server.url("/topics/bench")])
        .args(["-n", "5", "-m", "20", "--json"])
        .output()
        .expect("run coop bench fanout");
    assert!(out.status.success(), "fanout failed: {out:?}");
    let report: serde_json::Value =
        serde_json::from_slice(&out.stdout).expect("fanout prints JSON");
    assert_eq!(report["expected"], 100, "{report}");
    assert_eq!(report["lost"], 0, "{report}");

    // The same over WebSocket: the subscribers upgrade and read frames.
    let out = coop()
        .args(["bench", "fanout", "--url", &server.url("/topics/bench")])
        .args(["-n", "5", "-m", "20", "--ws", "--json"])
        .output()
        .expect("run coop bench fanout --ws");
    assert!(out.status.success(), "fanout --ws failed: {out:?}");
    let report: serde_json::Value =
        serde_json::from_slice(&out.stdout).expect("fanout prints JSON");
    assert_eq!(report["transport"], "websocket", "{report}");
    assert_eq!(report["expected"], 100, "{report}");
    assert_eq!(report["lost"], 0, "{report}");
    assert_eq!(report["duplicates"], 0, "{report}");
}

#[test]
fn a_bad_url_is_a_usage_error_and_a_failed_run_exits_1() {
    let out = coop()
        .args(["bench", "fanout", "--url", "notaurl", "-n", "1", "-m", "1"])
        .output()
        .expect("run coop bench fanout");
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("bad url"));

    // Nothing listens on port 1: every request fails, so the run fails.
    let out = coop()
        .args(["bench", "hold", "--url", "http://127.0.0.1:1/animals/cow"])
        .args(["-c", "1", "--delay", "1ms"])
        .output()
        .expect("run coop bench hold");
    assert_eq!(out.status.code(), Some(1), "{out:?}");
}

#[test]
fn publish_reports_latency_of_every_publish_to_new_topics() {
    let server = Server::start(&["--delay", "0s"]);
    let out = coop()
        .args(["bench", "publish", "--url", &server.url("")])
        .args([
            "-n",
            "50",
            "--topic-len",
            "64",
            "--prefix",
            "bench.",
            "--json",
        ])
        .output()
        .expect("run coop bench publish");
    assert!(out.status.success(), "publish failed: {out:?}");
    let report: serde_json::Value =
        serde_json::from_slice(&out.stdout).expect("publish prints JSON");
    assert_eq!(report["ok"], 50, "{report}");
    assert_eq!(report["latency"]["count"], 50, "{report}");
    let topics: serde_json::Value = reqwest::blocking::get(server.url("/api/topics"))
        .and_then(|r| r.json())
        .unwrap();
    assert!(
        topics
            .to_string()
            .contains(&format!("bench.{}49", "a".repeat(56))),
        "64-byte topics: {topics}"
    );
}
