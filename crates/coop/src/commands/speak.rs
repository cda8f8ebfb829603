//! `coop speak`.

use std::process::ExitCode;

use clap::Args;

/// Flags of `coop speak`.
#[derive(Debug, Args)]
pub struct SpeakArgs {}

pub async fn run(args: SpeakArgs) -> anyhow::Result<ExitCode> {
    let _ = args;
    anyhow::bail!("coop speak is being built")
}
