//! `coop bench`: load generators. Each generator lives in the `bench` crate;
//! this module only holds the flags and prints results.

use std::process::ExitCode;

use clap::{Args, Subcommand};

use super::{bench_fanout, bench_hold};

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
}

pub async fn run(args: BenchArgs) -> anyhow::Result<ExitCode> {
    match args.which {
        BenchCommand::Fanout(a) => bench_fanout::run(a).await,
        BenchCommand::Hold(a) => bench_hold::run(a).await,
    }
}
