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
