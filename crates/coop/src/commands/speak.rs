//! `coop speak`: the talk's clients. Asks a farm what each animal says and
//! prints `The cow says "Moo!".` per animal, in the order given, each line
//! as soon as it and every line before it are ready.
//!
//! The work is done by `animals::Client` (one connection pool, bounded
//! concurrency, retries); this file turns flags into its config, gathers
//! names (arguments, `-` for stdin, `--file`), prints lines, failures,
//! progress and timing, and sets the exit status.

use std::io::{BufRead, IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Args;
use futures::StreamExt;

use super::parse_duration;
use super::{ConfigError, Exit};

/// The talk's animals, when none are given.
const DEFAULT_ANIMALS: [&str; 3] = ["cow", "pig", "chicken"];

/// Runs longer than this many animals get a progress bar (on a terminal).
const PROGRESS_MIN: usize = 20;

/// Open files the process needs besides its sockets: standard streams, the
/// runtime's epoll and wakers, a `--file`, with room to spare.
const FILES_BESIDES_SOCKETS: u64 = 64;

/// Flags of `coop speak`.
#[derive(Debug, Args)]
#[command(after_help = "Examples:\n  \
    coop speak                       # cow, pig and chicken, concurrently\n  \
    coop speak --sequential cow pig  # the talk's first client, one at a time\n  \
    seq 1000 | sed 's/.*/cow/' | coop speak --timing -")]
pub struct SpeakArgs {
    /// Animals to ask, in output order (`-` reads names from stdin, one per
    /// line). Default: cow pig chicken.
    #[arg(value_name = "ANIMAL")]
    pub names: Vec<String>,

    /// Also read names from FILE, one per line (blank lines are skipped).
    #[arg(long, short)]
    pub file: Option<PathBuf>,

    /// Base URL of the Animals API; each name is appended as a path segment.
    #[arg(
        long,
        default_value = "http://127.0.0.1:8080/animals",
        env = "COOP_URL"
    )]
    pub url: String,

    /// One animal at a time, like the talk's first client (same as
    /// `--concurrency 1`).
    #[arg(long, conflicts_with = "concurrency")]
    pub sequential: bool,

    /// Requests in flight at most. The default lets 10,000 animals go at
    /// once (over HTTP/1.1 that is one connection each: the soft limit on
    /// open files is lifted as far as `ulimit -Hn` allows; or use
    /// `--http2`).
    #[arg(long, short = 'c', default_value_t = 10_000, value_parser = clap::value_parser!(u32).range(1..))]
    pub concurrency: u32,

    /// Give up on an attempt after this long (connect, send, read).
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    pub timeout: Duration,

    /// Extra attempts after a connect error or a 5xx answer, with
    /// exponential backoff and jitter, honouring `Retry-After`.
    #[arg(long, default_value_t = 2)]
    pub retries: u32,

    /// Use HTTP/2 without TLS (prior knowledge): requests are multiplexed
    /// over 4 connections instead of one connection each; best for
    /// thousands of animals. (Over https, HTTP/2 is negotiated
    /// automatically.)
    #[arg(long)]
    pub http2: bool,

    /// Print wall time, the sum of request times, the speed-up, latency
    /// percentiles and what went wrong on the way (retries, timeouts,
    /// resets, early closes, truncated bodies, bad answers, error
    /// statuses, counted per attempt) to stderr at the end.
    #[arg(long)]
    pub timing: bool,

    /// Never show a progress bar (it only shows on a terminal anyway).
    #[arg(long)]
    pub no_progress: bool,
}

pub async fn run(args: SpeakArgs) -> anyhow::Result<ExitCode> {
    let names = gather_names(&args)?;
    let concurrency = if args.sequential {
        1
    } else {
        args.concurrency as usize
    };
    if !args.http2 {
        // Over HTTP/1.1 each request in flight holds a socket.
        allow_open_files(concurrency.min(names.len()) as u64 + FILES_BESIDES_SOCKETS);
    }
    let client = animals::Client::new(animals::ClientConfig {
        base: args.url.clone(),
        concurrency,
        timeout: args.timeout,
        retries: args.retries,
        http2_prior_knowledge: args.http2,
        ..Default::default()
    })
    .map_err(|e| ConfigError(e.to_string()))
    .context("bad --url")?;

    let total = names.len();
    let progress = (!args.no_progress && total >= PROGRESS_MIN && std::io::stderr().is_terminal())
        .then(|| {
            let bar = indicatif::ProgressBar::new(total as u64);
            bar.set_style(
                indicatif::ProgressStyle::with_template(
                    "{bar:40} {pos}/{len} animals {elapsed_precise}",
                )
                .expect("the template is valid"),
            );
            bar
        });

    let start = Instant::now();
    let mut outcomes = client.speak(names);
    let mut times = Vec::with_capacity(if args.timing { total } else { 0 });
    let mut failed = 0usize;
    let mut mishaps = animals::Mishaps::default();
    // Rust's stdout is line-buffered: each line leaves as soon as written.
    let mut out = std::io::stdout().lock();
    while let Some(outcome) = outcomes.next().await {
        if args.timing {
            times.push(outcome.elapsed);
            mishaps.add(&outcome.mishaps);
        }
        match &outcome.result {
            Ok(sound) => {
                writeln!(out, "{}", animals::client::says(&outcome.name, sound))?;
            }
            Err(err) => {
                failed += 1;
                let tries = match outcome.attempts {
                    1 => String::new(),
                    n => format!(" (after {n} attempts)"),
                };
                let line = format!("error: {}: {err}{tries}", outcome.name);
                match &progress {
                    Some(bar) => bar.suspend(|| eprintln!("{line}")),
                    None => eprintln!("{line}"),
                }
            }
        }
        if let Some(bar) = &progress {
            bar.inc(1);
        }
    }
    let wall = start.elapsed();
    out.flush()?;
    if let Some(bar) = progress {
        bar.finish_and_clear();
    }
    if args.timing {
        print_timing(&animals::Timing::new(times, wall), concurrency.min(total));
        print_mishaps(&mishaps);
    }
    if failed > 0 {
        return Err(Exit(1, format!("{failed} of {total} animals failed")).into());
    }
    Ok(ExitCode::SUCCESS)
}

/// Names from the arguments (`-` expands to stdin's lines, in place), then
/// from `--file`; the talk's three when there are none.
fn gather_names(args: &SpeakArgs) -> anyhow::Result<Vec<String>> {
    let mut names = Vec::new();
    for arg in &args.names {
        if arg == "-" {
            for line in std::io::stdin().lock().lines() {
                push_line(&mut names, &line.context("cannot read names from stdin")?);
            }
        } else {
            names.push(arg.clone());
        }
    }
    if let Some(path) = &args.file {
        let text = std::fs::read_to_string(path)
            .map_err(|e| ConfigError(format!("cannot read --file {}: {e}", path.display())))?;
        for line in text.lines() {
            push_line(&mut names, line);
        }
    }
    if names.is_empty() && args.names.is_empty() && args.file.is_none() {
        names.extend(DEFAULT_ANIMALS.iter().map(|s| s.to_string()));
    }
    Ok(names)
}

/// Lifts the soft limit on open files to `needed` if it is lower, as far
/// as the hard limit allows (what `ulimit -n` may do without privileges):
/// the usual soft limit of 1,024 would fail most of 10,000 connections
/// with `EMFILE`. Warns when the hard limit is too low.
fn allow_open_files(needed: u64) {
    use rustix::process::{getrlimit, setrlimit, Resource};
    let mut limit = getrlimit(Resource::Nofile);
    if limit.current.is_none_or(|now| now >= needed) {
        return;
    }
    let most = limit.maximum.map_or(needed, |hard| hard.min(needed));
    limit.current = Some(most);
    if let Err(e) = setrlimit(Resource::Nofile, limit) {
        tracing::warn!(error = %e, "cannot raise the open-files limit");
    }
    if most < needed {
        tracing::warn!(
            needed,
            limit = most,
            "the open-files limit is below the connections this run may open: \
             lower --concurrency, use --http2, or raise ulimit -Hn"
        );
    }
}

fn push_line(names: &mut Vec<String>, line: &str) {
    let name = line.trim();
    if !name.is_empty() {
        names.push(name.to_string());
    }
}

fn print_timing(t: &animals::Timing, concurrency: usize) {
    let s = |d: Duration| format!("{:.3} s", d.as_secs_f64());
    eprintln!(
        "timing: {} requests, concurrency {concurrency}: wall {}, sum of request times {} \
         (one at a time would take that), speed-up {:.1}x",
        t.requests,
        s(t.wall),
        s(t.sum),
        t.speedup()
    );
    eprintln!(
        "latency: p50 {}, p90 {}, p99 {}, max {}",
        s(t.p50),
        s(t.p90),
        s(t.p99),
        s(t.max)
    );
}

/// What the client had to cope with, per attempt: a farm run with faults
/// (`coop serve --faults ...`) shows here what a careful client absorbed.
fn print_mishaps(m: &animals::Mishaps) {
    eprintln!(
        "mishaps: retries {}, timeouts {}, resets {}, closed before answering {}, \
         truncated bodies {}, bad answers {}, error statuses {}, other {}",
        m.retries, m.timeouts, m.resets, m.closed, m.truncated, m.bad_answers, m.statuses, m.other
    );
}
