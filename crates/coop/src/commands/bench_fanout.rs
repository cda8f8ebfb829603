//! `coop bench fanout`.

use std::process::ExitCode;

use clap::Args;

/// Flags of `coop bench fanout`.
#[derive(Debug, Args)]
pub struct FanoutArgs {}

pub async fn run(args: FanoutArgs) -> anyhow::Result<ExitCode> {
    let _ = args;
    anyhow::bail!("coop bench fanout is being built")
}
