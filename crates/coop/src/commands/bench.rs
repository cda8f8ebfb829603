//! `coop bench`: load generators. Each generator lives in the `bench` crate;
//! this module only holds the flags and prints results.

use std::process::ExitCode;

use clap::{Args, Subcommand};

use super::{bench_fanout, bench_hold, bench_publish};

/// Flags of `coop bench`.
#[derive(Debug, Args)]
pub struct BenchArgs {
    #[command(subcommand)]
    pub which: BenchCommand,
}

#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// Hub fan-out: N streaming subscribers, M published messages; delivery
    /// rate, loss and latency. Works against any server with the talk's API.
    Fanout(bench_fanout::FanoutArgs),
    /// Slow API: hold many requests in flight against a delayed server.
    Hold(bench_hold::HoldArgs),
    /// Publish latency: closed-loop publishes, each to a new topic name
    /// (patterns are matched against it).
    Publish(bench_publish::PublishArgs),
}

pub async fn run(args: BenchArgs) -> anyhow::Result<ExitCode> {
    match args.which {
        BenchCommand::Fanout(a) => bench_fanout::run(a).await,
        BenchCommand::Hold(a) => bench_hold::run(a).await,
        BenchCommand::Publish(a) => bench_publish::run(a).await,
    }
}

/// A generator's setup error (bad URL, bad parameter) is a usage error
/// (exit 2); anything else failed while running (exit 1).
pub(super) fn bench_error(e: bench::BenchError) -> anyhow::Error {
    match e {
        bench::BenchError::BadParameter(_) | bench::BenchError::BadUrl { .. } => {
            anyhow::Error::new(super::ConfigError(e.to_string()))
        }
        other => anyhow::Error::new(other),
    }
}

/// Prints a report (one JSON line with `--json`, else text) and turns its
/// verdict into the exit status: a run that missed its goal exits 1 with
/// `failure` as the reason.
pub(super) fn finish<R: serde::Serialize>(
    report: &R,
    json: bool,
    print_text: fn(&R),
    passed: bool,
    failure: impl FnOnce() -> String,
) -> anyhow::Result<ExitCode> {
    if json {
        println!("{}", serde_json::to_string(report)?);
    } else {
        print_text(report);
    }
    if passed {
        Ok(ExitCode::SUCCESS)
    } else {
        Err(super::Exit(1, failure()).into())
    }
}
