//! `coop pub` and `coop sub`: command-line clients for the hub.

use std::process::ExitCode;

use clap::Args;

/// Flags of `coop pub`.
#[derive(Debug, Args)]
pub struct PubArgs {}

/// Flags of `coop sub`.
#[derive(Debug, Args)]
pub struct SubArgs {}

pub async fn run_pub(args: PubArgs) -> anyhow::Result<ExitCode> {
    let _ = args;
    anyhow::bail!("coop pub is being built")
}

pub async fn run_sub(args: SubArgs) -> anyhow::Result<ExitCode> {
    let _ = args;
    anyhow::bail!("coop sub is being built")
}
