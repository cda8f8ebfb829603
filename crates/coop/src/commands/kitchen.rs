//! `coop kitchen`.

use std::process::ExitCode;

use clap::Args;

/// Flags of `coop kitchen`.
#[derive(Debug, Args)]
pub struct KitchenArgs {}

pub fn run(args: KitchenArgs) -> anyhow::Result<ExitCode> {
    let _ = args;
    anyhow::bail!("coop kitchen is being built")
}
