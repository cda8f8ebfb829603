//! `bench::fanout` against a real in-process hub.

use std::time::Duration;

use bench::fanout::{run, FanoutConfig};

use crate::servers;

fn config(url: String) -> FanoutConfig {
    FanoutConfig {
        url,
        subscribers: 20,
        messages: 50,
        threads: 2,
        sources: 2,
        settle: Duration::from_millis(20),
        idle_timeout: Duration::from_millis(500),
        server_pids: vec![std::process::id()],
        ..FanoutConfig::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_message_reaches_every_subscriber() {
    let addr = servers::hub(None).await;
    let r = run(config(format!("http://{addr}/")))
        .await
        .expect("run starts");
    assert_eq!(r.expected, 20 * 50);
    assert_eq!(r.delivered, 1000, "{r:?}");
    assert_eq!((r.lost, r.duplicates, r.out_of_order), (0, 0, 0));
    assert_eq!(
        (r.published, r.publish_errors, r.subscriber_errors),
        (50, 0, 0)
    );
    assert!(r.passed());
    assert_eq!(r.latency.count, 1000);
    assert!(r.latency.p50_us > 0 && r.latency.max_us >= r.latency.p99_us);
    // The rate is what was delivered over the time it took.
    assert!(r.delivery_secs > 0.0, "{r:?}");
    let rate = r.delivered as f64 / r.delivery_secs;
    assert!(
        (r.deliveries_per_sec - rate).abs() <= rate * 1e-9,
        "{} per second reported, {rate} delivered",
        r.deliveries_per_sec
    );
    // The server figures (this process's): memory read, the peak (reset
    // before the first sample) at least every sample, and CPU per delivery
    // the CPU time over the deliveries.
    let server = r.server.expect("own pid given");
    assert!(server.rss_idle_kib > 0, "{server:?}");
    assert!(
        server.rss_peak_kib >= server.rss_idle_kib.max(server.rss_connected_kib),
        "{server:?}"
    );
    let per_delivery = server.cpu_us as f64 / r.delivered as f64;
    assert!(
        server.cpu_us_per_delivery.is_finite()
            && (server.cpu_us_per_delivery - per_delivery).abs() <= per_delivery * 1e-9,
        "{server:?}"
    );
    let per_subscriber = (server.rss_connected_kib as f64 - server.rss_idle_kib as f64) * 1024.0
        / r.subscribers as f64;
    assert_eq!(server.bytes_per_subscriber, per_subscriber, "{server:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paced_publishers_in_the_body() {
    let addr = servers::hub(None).await;
    let cfg = FanoutConfig {
        publishers: 4,
        rate: Some(500.0),
        body: true,
        size: 200,
        ..config(format!("http://{addr}/"))
    };
    let started = std::time::Instant::now();
    let r = run(cfg).await.expect("run starts");
    assert!(r.passed(), "{r:?}");
    assert_eq!(r.offered_per_sec, Some(500.0 * 20.0));
    // 50 messages at 500/s take about 0.1 s of publishing, not less.
    assert!(r.publish_secs >= 0.09, "paced: {}", r.publish_secs);
    assert!(started.elapsed() < Duration::from_secs(10));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn loss_is_reported() {
    // Every 10th publish is acknowledged but never delivered.
    let addr = servers::hub(Some(10)).await;
    let r = run(config(format!("http://{addr}/")))
        .await
        .expect("run starts");
    assert!(!r.passed());
    assert_eq!(r.lost, 20 * 5, "{r:?}");
    assert_eq!(r.delivered, 20 * 45);
}

#[tokio::test]
async fn server_that_refuses_subscribers_is_a_setup_error() {
    // The slow farm has no `/`: every subscriber gets a 404.
    let addr = servers::slow_farm(Duration::ZERO).await;
    let err = run(config(format!("http://{addr}/")))
        .await
        .expect_err("cannot subscribe");
    assert!(err.to_string().contains("404"), "{err}");
}
