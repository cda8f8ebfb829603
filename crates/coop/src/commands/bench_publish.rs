//! `coop bench publish`: flags for the publish-latency generator
//! (`bench::publish`), and its text or JSON report.

use std::process::ExitCode;
use std::time::Duration;

use clap::Args;

use bench::publish::{PublishConfig, PublishReport};

/// Flags of `coop bench publish`.
///
/// One publisher, closed loop, one keep-alive connection: COUNT publishes,
/// each to a new topic name of --topic-len bytes, and the latency of each
/// answer. With a pattern subscription open on the hub, every publish
/// matches it against a new name: how the adversarial-pattern figures in
/// docs/benchmarks.md are made. Exits 1 unless every publish got `200`
/// within --limit.
#[derive(Debug, Args)]
pub struct PublishArgs {
    /// The hub's base URL.
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    pub url: String,
    /// Publishes to send.
    #[arg(short = 'n', long, default_value_t = 2000)]
    pub count: usize,
    /// Length of each topic name, in bytes (8 to 128).
    #[arg(long, default_value_t = 64)]
    pub topic_len: usize,
    /// Start of every topic name (then `a`s, then the publish's number).
    #[arg(long, default_value = "")]
    pub prefix: String,
    /// Give up after this long (the report says how far it got).
    #[arg(long, default_value = "60s", value_parser = super::parse_duration)]
    pub limit: Duration,
    /// Print the report as one JSON object.
    #[arg(long)]
    pub json: bool,
}

pub async fn run(args: PublishArgs) -> anyhow::Result<ExitCode> {
    let cfg = PublishConfig {
        url: args.url,
        count: args.count,
        topic_len: args.topic_len,
        prefix: args.prefix,
        limit: args.limit,
    };
    let report = bench::publish::run(cfg)
        .await
        .map_err(super::bench::bench_error)?;
    super::bench::finish(&report, args.json, print_text, report.passed(), || {
        format!(
            "{} of {} publishes answered 200{}",
            report.ok,
            report.count,
            if report.timed_out {
                " before the limit"
            } else {
                ""
            }
        )
    })
}

fn print_text(r: &PublishReport) {
    println!(
        "publish {}: {} publishes to {}-byte topics",
        r.url, r.count, r.topic_len
    );
    println!(
        "  ok {}  failed {}{}  wall {:.2} s",
        r.ok,
        r.failed,
        if r.timed_out { " (limit reached)" } else { "" },
        r.wall_secs
    );
    println!("  latency: {}", r.latency.line());
    if let Some(e) = &r.first_error {
        println!("  first error: {e}");
    }
}
