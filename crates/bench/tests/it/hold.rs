//! `bench::hold` against a real slow server, over HTTP/1.1 and h2c.

use std::time::Duration;

use bench::hold::{run, HoldConfig};

use crate::servers;

const DELAY: Duration = Duration::from_millis(300);

fn config(url: String) -> HoldConfig {
    HoldConfig {
        url,
        connections: 200,
        delay: DELAY,
        slack: Duration::from_secs(1),
        expect_body: Some("Moo!".into()),
        sources: 4,
        server_pids: vec![std::process::id()],
        ..HoldConfig::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http1_requests_are_held_and_checked() {
    let addr = servers::slow_farm(DELAY).await;
    let r = run(config(format!("http://{addr}/animals/cow")))
        .await
        .expect("run starts");
    assert!(r.passed(), "{r:?}");
    assert_eq!(
        (r.ok, r.expected, r.wrong, r.errors, r.late),
        (200, 200, 0, 0, 0)
    );
    // They waited together (one at a time would peak at 1; connecting 200
    // on a loaded debug build may take part of the delay), and none came
    // back before the delay.
    assert!(r.peak_in_flight >= 100, "peak {}", r.peak_in_flight);
    assert!(
        r.latency.p50_us >= DELAY.as_micros() as u64,
        "{:?}",
        r.latency
    );
    assert!(r.server.is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_streams_share_few_connections() {
    let addr = servers::slow_farm(DELAY).await;
    let cfg = HoldConfig {
        http2: true,
        connections: 2,
        requests: 300,
        ..config(format!("http://{addr}/animals/cow"))
    };
    let r = run(cfg).await.expect("run starts");
    assert!(r.passed(), "{r:?}");
    assert_eq!((r.ok, r.expected, r.connections), (300, 300, 2));
    assert!(r.latency.p50_us >= DELAY.as_micros() as u64);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_and_late_answers_fail_the_run() {
    let addr = servers::slow_farm(DELAY).await;
    let wrong = HoldConfig {
        connections: 10,
        expect_body: Some("Oink!".into()),
        ..config(format!("http://{addr}/animals/cow"))
    };
    let r = run(wrong).await.expect("run starts");
    assert_eq!((r.ok, r.wrong), (0, 10));
    assert!(!r.passed());

    // A server slower than promised: answers arrive after delay + slack.
    let late = HoldConfig {
        connections: 10,
        delay: Duration::ZERO,
        slack: Duration::from_millis(50),
        ..config(format!("http://{addr}/animals/cow"))
    };
    let r = run(late).await.expect("run starts");
    assert_eq!((r.ok, r.late), (0, 10));
    assert!(!r.passed());
}
