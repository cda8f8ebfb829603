//! `coop bench hold`: flags for the held-requests generator
//! (`bench::hold`), and its text or JSON report.

use std::process::ExitCode;
use std::time::Duration;

use clap::Args;

use bench::hold::{HoldConfig, HoldReport};

/// Flags of `coop bench hold`.
///
/// Holds many requests in flight at once against a slow server (start it
/// with `coop serve --delay 5s`), checks that every answer is right and
/// arrives within delay + slack, and reports latency percentiles and, with
/// --server-pid, the server's peak RSS and bytes per in-flight request.
/// HTTP/1.1 uses one connection per request; --http2 multiplexes --requests
/// streams over at most --connections cleartext HTTP/2 connections.
/// Exits 1 unless every request was answered correctly in time.
#[derive(Debug, Args)]
pub struct HoldArgs {
    /// URL every request asks for.
    #[arg(long, default_value = "http://127.0.0.1:8080/animals/cow")]
    pub url: String,
    /// HTTP/1.1: connections, one request each. HTTP/2: most connections.
    #[arg(short = 'c', long, default_value_t = 1000)]
    pub connections: usize,
    /// HTTP/2: requests in flight in total.
    #[arg(short = 'r', long, default_value_t = 0)]
    pub requests: usize,
    /// Use HTTP/2 with prior knowledge (h2c).
    #[arg(long)]
    pub http2: bool,
    /// The delay the server applies to each answer.
    #[arg(long, default_value = "5s", value_parser = super::parse_duration)]
    pub delay: Duration,
    /// Allowed lateness past --delay.
    #[arg(long, default_value = "1s", value_parser = super::parse_duration)]
    pub slack: Duration,
    /// Expected status of every answer.
    #[arg(long, default_value_t = 200)]
    pub expect_status: u16,
    /// Expected body of every answer (unchecked when absent).
    #[arg(long)]
    pub expect_body: Option<String>,
    /// Loopback source addresses (127.0.0.1..N) to spread connections over.
    #[arg(long, default_value_t = 16)]
    pub sources: u8,
    /// Connects in progress at once.
    #[arg(long, default_value_t = 512)]
    pub connect_concurrency: usize,
    /// Server process(es) to read RSS from (repeat or comma separate).
    #[arg(long, value_delimiter = ',')]
    pub server_pid: Vec<u32>,
    /// Print the report as one JSON object.
    #[arg(long)]
    pub json: bool,
}

pub async fn run(args: HoldArgs) -> anyhow::Result<ExitCode> {
    let cfg = HoldConfig {
        url: args.url,
        connections: args.connections,
        requests: args.requests,
        http2: args.http2,
        delay: args.delay,
        slack: args.slack,
        expect_status: args.expect_status,
        expect_body: args.expect_body,
        sources: args.sources,
        connect_concurrency: args.connect_concurrency,
        server_pids: args.server_pid,
    };
    let report = bench::hold::run(cfg)
        .await
        .map_err(super::bench::bench_error)?;
    super::bench::finish(&report, args.json, print_text, report.passed(), || {
        format!(
            "{} of {} answered correctly within {} ms",
            report.ok, report.expected, report.deadline_ms
        )
    })
}

fn print_text(r: &HoldReport) {
    println!(
        "hold {} over {}: {} requests on {} connection(s)",
        r.url,
        r.protocol,
        r.expected,
        r.connections.min(r.expected)
    );
    println!(
        "  ok {}/{} within {} ms  late {}  wrong {}  errors {}",
        r.ok, r.expected, r.deadline_ms, r.late, r.wrong, r.errors
    );
    println!(
        "  peak in flight {}  sends spread over {:.2} s  wall {:.2} s",
        r.peak_in_flight, r.send_spread_secs, r.wall_secs
    );
    println!("  latency: {}", r.latency.line());
    println!("  client CPU {:.2} s", r.client_cpu_us as f64 / 1e6);
    if let Some(s) = &r.server {
        println!(
            "  server RSS idle {:.1} MiB, peak {:.1} MiB (sampled {:.1} MiB){}, {:.0} B per in-flight request",
            s.rss_idle_kib as f64 / 1024.0,
            s.rss_peak_kib as f64 / 1024.0,
            s.rss_sampled_peak_kib as f64 / 1024.0,
            if s.peak_reset { "" } else { " (peak not reset)" },
            s.bytes_per_in_flight
        );
        println!("  server CPU {:.2} s", s.cpu_us as f64 / 1e6);
    }
    if let Some(e) = &r.first_error {
        println!("  first error: {e}");
    }
}
