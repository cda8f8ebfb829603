//! `coop serve`: binds the socket, builds one router from the Animals API and
//! the hub, adds `/healthz` and `/metrics`, and serves until a signal.
//! (Owned by the Animals API work; the hub plugs in through `hub_args`.)

use std::process::ExitCode;

use clap::Args;

use super::hub_args::HubArgs;

/// Flags of `coop serve`.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1", env = "COOP_BIND")]
    pub bind: std::net::IpAddr,

    /// Port to listen on (0 picks a free one and prints it).
    #[arg(long, short, default_value_t = 8080, env = "COOP_PORT")]
    pub port: u16,

    #[command(flatten)]
    pub hub: HubArgs,
}

pub async fn run(args: ServeArgs) -> anyhow::Result<ExitCode> {
    let _ = args;
    anyhow::bail!("coop serve is being built")
}
