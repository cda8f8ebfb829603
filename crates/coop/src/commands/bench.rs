//! `coop bench`.

use std::process::ExitCode;

use clap::Args;

/// Flags of `coop bench`.
#[derive(Debug, Args)]
pub struct BenchArgs {}

pub async fn run(args: BenchArgs) -> anyhow::Result<ExitCode> {
    let _ = args;
    anyhow::bail!("coop bench is being built")
}
