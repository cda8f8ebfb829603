//! `coop bench fanout`: flags for the hub fan-out generator
//! (`bench::fanout`), and its text or JSON report.

use std::process::ExitCode;
use std::time::Duration;

use clap::Args;

use bench::fanout::{FanoutConfig, FanoutReport};
use bench::summary::ms;

/// Flags of `coop bench fanout`.
///
/// Opens N streaming subscribers (`GET URL`, lines `message\r\n`; with
/// `--sse`, Server-Sent Events; with `--ws`, WebSocket subscribers reading
/// text frames; with `--h2-connections`, HTTP/2 streams sharing a few
/// connections), waits
/// until all are registered (priming messages), publishes M messages that
/// carry a sequence number and a send timestamp, and reports loss,
/// duplicates, deliveries per second and publish-to-delivery latency. Works
/// against any server with the talk's API: coop, nchan, the aiohttp hub.
/// Exits 1 if any delivery was lost or duplicated.
#[derive(Debug, Args)]
pub struct FanoutArgs {
    /// Subscribe URL (streaming GET).
    #[arg(long, default_value = "http://127.0.0.1:8080/", env = "COOP_BENCH_URL")]
    pub url: String,
    /// Publish URL (POST); the subscribe URL by default.
    #[arg(long)]
    pub publish_url: Option<String>,
    /// Streaming subscribers to open.
    #[arg(short = 'n', long, default_value_t = 1000)]
    pub subscribers: usize,
    /// Messages to publish (see also --duration).
    #[arg(short = 'm', long, default_value_t = 1000)]
    pub messages: u64,
    /// Publish for this long at --rate instead of a fixed --messages.
    #[arg(long, value_parser = super::parse_duration, requires = "rate")]
    pub duration: Option<Duration>,
    /// Concurrent publishers, each with its own connection.
    #[arg(short = 'p', long, default_value_t = 1)]
    pub publishers: usize,
    /// Total messages per second over all publishers; without it each
    /// publisher runs closed-loop (next publish after the previous answer).
    #[arg(long)]
    pub rate: Option<f64>,
    /// Message size in bytes (sequence number, timestamp, padding).
    #[arg(long, default_value_t = 64)]
    pub size: usize,
    /// Publish the message as the request body instead of `?msg=`.
    #[arg(long)]
    pub body: bool,
    /// Subscriber threads (default: available cores).
    #[arg(long)]
    pub threads: Option<usize>,
    /// Loopback source addresses (127.0.0.1..N) to spread connections over.
    #[arg(long, default_value_t = 8)]
    pub sources: u8,
    /// Subscriber connects in progress at once.
    #[arg(long, default_value_t = 256)]
    pub connect_concurrency: usize,
    /// Time allowed to connect and prime every subscriber.
    #[arg(long, default_value = "60s", value_parser = super::parse_duration)]
    pub connect_timeout: Duration,
    /// Pause after priming before the first publish.
    #[arg(long, default_value = "200ms", value_parser = super::parse_duration)]
    pub settle: Duration,
    /// Stop waiting when nothing arrives for this long after the last publish.
    #[arg(long, default_value = "5s", value_parser = super::parse_duration)]
    pub idle_timeout: Duration,
    /// Server process(es) to read RSS and CPU time from (repeat or comma
    /// separate; several are summed, e.g. nginx master and workers).
    #[arg(long, value_delimiter = ',')]
    pub server_pid: Vec<u32>,
    /// Subscribe over WebSocket: each subscriber upgrades `--url` and reads
    /// text frames (coop's NDJSON records, or the bare messages nchan's
    /// `nchan_subscriber websocket` sends). Publishing is unchanged.
    #[arg(long, conflicts_with_all = ["sse", "h2_connections"])]
    pub ws: bool,
    /// Subscribe to Server-Sent Events (`Accept: text/event-stream`) and read
    /// each message from its `data:` line.
    #[arg(long)]
    pub sse: bool,
    /// Carry the subscribers as HTTP/2 streams (h2c, prior knowledge) over
    /// this many connections, as a browser tab's `EventSource`s share one
    /// connection, instead of one HTTP/1.1 connection per subscriber.
    ///
    /// Stream i rides connection i mod N. Streams beyond the server's
    /// `SETTINGS_MAX_CONCURRENT_STREAMS` (coop: `--h2-max-streams`) wait in
    /// the client, as a browser's do, never hear the priming message, and
    /// fail the run after --connect-timeout.
    #[arg(long, value_name = "N")]
    pub h2_connections: Option<usize>,
    /// Print the report as one JSON object.
    #[arg(long)]
    pub json: bool,
}

pub async fn run(args: FanoutArgs) -> anyhow::Result<ExitCode> {
    let messages = match (args.duration, args.rate) {
        (Some(d), Some(r)) => ((d.as_secs_f64() * r).round() as u64).max(1),
        _ => args.messages,
    };
    let cfg = FanoutConfig {
        url: args.url,
        publish_url: args.publish_url,
        subscribers: args.subscribers,
        messages,
        publishers: args.publishers,
        rate: args.rate,
        size: args.size,
        body: args.body,
        threads: args
            .threads
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(2, |n| n.get())),
        sources: args.sources,
        connect_concurrency: args.connect_concurrency,
        connect_timeout: args.connect_timeout,
        settle: args.settle,
        idle_timeout: args.idle_timeout,
        server_pids: args.server_pid,
        websocket: args.ws,
        sse: args.sse,
        h2_connections: args.h2_connections,
    };
    let report = bench::fanout::run(cfg)
        .await
        .map_err(super::bench::bench_error)?;
    super::bench::finish(&report, args.json, print_text, report.passed(), || {
        format!(
            "{} of {} deliveries lost, {} duplicated",
            report.lost, report.expected, report.duplicates
        )
    })
}

fn print_text(r: &FanoutReport) {
    let mode = match r.rate {
        Some(rate) => format!("paced at {rate} msg/s total"),
        None => "closed loop".to_string(),
    };
    let transport = match r.h2_connections {
        Some(c) => format!("{} on {c} connections, {}", r.transport, r.format),
        None => format!("{}, {}", r.transport, r.format),
    };
    println!(
        "fanout {} ({}): {} subscribers, {} messages of {} B, {} publisher(s) {}",
        r.url, transport, r.subscribers, r.messages, r.size, r.publishers, mode
    );
    println!("  connected+primed in {:.2} s", r.connect_secs);
    println!(
        "  delivered {}/{}  lost {}  duplicates {}  out of order {}  stray lines {}",
        r.delivered, r.expected, r.lost, r.duplicates, r.out_of_order, r.stray_lines
    );
    println!(
        "  published {} ({} errors) in {:.3} s; last delivery at {:.3} s",
        r.published, r.publish_errors, r.publish_secs, r.delivery_secs
    );
    match r.offered_per_sec {
        Some(offered) => println!(
            "  deliveries/s {:.0} ({:.1}% of {:.0} offered)",
            r.deliveries_per_sec,
            100.0 * r.deliveries_per_sec / offered,
            offered
        ),
        None => println!("  deliveries/s {:.0}", r.deliveries_per_sec),
    }
    println!("  latency publish→delivery: {}", r.latency.line());
    println!(
        "  publish round trip: p50 {}  p99 {}",
        ms(r.publish_rtt.p50_us),
        ms(r.publish_rtt.p99_us)
    );
    if let Some(s) = &r.server {
        println!(
            "  server RSS idle {:.1} MiB, connected {:.1} MiB ({:.0} B/subscriber), peak {:.1} MiB{}",
            s.rss_idle_kib as f64 / 1024.0,
            s.rss_connected_kib as f64 / 1024.0,
            s.bytes_per_subscriber,
            s.rss_peak_kib as f64 / 1024.0,
            if s.peak_reset { "" } else { " (peak not reset)" }
        );
        println!(
            "  server CPU {:.3} s, {:.2} µs per delivery",
            s.cpu_us as f64 / 1e6,
            s.cpu_us_per_delivery
        );
    }
    if let Some(e) = &r.first_error {
        println!("  first error: {e}");
    }
}
