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

/// Runs `coop bench fanout` with `args` after `--url URL`, returns its exit
/// status, its JSON report (when it printed one) and its stderr.
fn fanout(url: &str, args: &[&str]) -> (Option<i32>, serde_json::Value, String) {
    let out = coop()
        .args(["bench", "fanout", "--url", url])
        .args(args)
        .args(["--json"])
        .output()
        .expect("run coop bench fanout");
    let report = serde_json::from_slice(&out.stdout).unwrap_or(serde_json::Value::Null);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    (out.status.code(), report, stderr)
}

#[test]
fn fanout_reads_sse_over_http1_and_over_a_few_http2_connections() {
    let server = Server::start(&["--delay", "0s"]);
    let url = server.url("/topics/bench");

    // One HTTP/1.1 connection per SSE subscriber (the hub's fast path).
    let (code, report, stderr) = fanout(&url, &["-n", "6", "-m", "20", "--sse"]);
    assert_eq!(code, Some(0), "{report} {stderr}");
    assert_eq!(report["transport"], "http", "{report}");
    assert_eq!(report["format"], "sse", "{report}");
    assert_eq!(report["delivered"], 120, "{report}");
    // Every line besides `data:` is SSE framing, not a stray message.
    assert_eq!(report["stray_lines"], 0, "{report}");

    // The same six SSE streams over two h2c connections (through hyper),
    // and raw lines over h2 too.
    for format in [&["--sse"][..], &[]] {
        let mut args = vec!["-n", "6", "-m", "20", "--h2-connections", "2"];
        args.extend_from_slice(format);
        let (code, report, stderr) = fanout(&url, &args);
        assert_eq!(code, Some(0), "{args:?}: {report} {stderr}");
        assert_eq!(report["transport"], "h2", "{report}");
        assert_eq!(report["h2_connections"], 2, "{report}");
        assert_eq!(report["delivered"], 120, "{report}");
        assert_eq!(
            (
                &report["lost"],
                &report["duplicates"],
                &report["stray_lines"]
            ),
            (&0.into(), &0.into(), &0.into()),
            "{report}"
        );
    }

    // More connections than streams is a usage error.
    let (code, _, stderr) = fanout(&url, &["-n", "2", "--h2-connections", "3"]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("more HTTP/2 connections"), "{stderr}");
}

#[test]
fn h2_streams_past_the_servers_limit_wait_and_are_reported() {
    // coop advertises `--h2-max-streams` as SETTINGS_MAX_CONCURRENT_STREAMS.
    // The generator opens its first stream and reads its answer before the
    // others (so it knows the limit): the third stream on the one
    // connection waits in the client instead of being refused, never hears
    // the priming message, and the run fails saying how many did.
    let server = Server::start(&["--delay", "0s", "--h2-max-streams", "2"]);
    let (code, _, stderr) = fanout(
        &server.url("/topics/bench"),
        &[
            "-n",
            "3",
            "-m",
            "1",
            "--sse",
            "--h2-connections",
            "1",
            "--connect-timeout",
            "1s",
        ],
    );
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stderr.contains("only 2 of 3 subscribers"),
        "the two open streams are counted: {stderr}"
    );
}
