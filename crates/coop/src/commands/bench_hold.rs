//! `coop bench hold`.

use std::process::ExitCode;

use clap::Args;

/// Flags of `coop bench hold`.
#[derive(Debug, Args)]
pub struct HoldArgs {}

pub async fn run(args: HoldArgs) -> anyhow::Result<ExitCode> {
    let _ = args;
    anyhow::bail!("coop bench hold is being built")
}
