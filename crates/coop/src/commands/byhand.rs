//! `coop byhand`.

use std::process::ExitCode;

use clap::Args;

/// Flags of `coop byhand`.
#[derive(Debug, Args)]
pub struct ByhandArgs {}

pub fn run(args: ByhandArgs) -> anyhow::Result<ExitCode> {
    let _ = args;
    anyhow::bail!("coop byhand is being built")
}
