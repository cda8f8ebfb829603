//! The command line: one `Cli` with global logging flags and one `Command`
//! enum. Each command's flags live beside its code in `commands/*.rs`.

use clap::{Args, Parser, Subcommand};

use crate::commands;

/// `coop --version`: the crate's version, then the commit it was built
/// from and that commit's date (`build.rs`; `unknown` outside a git
/// checkout).
pub const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (",
    env!("COOP_GIT_VERSION"),
    ")"
);

/// coop: the talk "A Brief Introduction to Concurrency and Coroutines",
/// made real in Rust.
///
/// A deliberately slow Animals API and a pub/sub hub in one server, the
/// clients that talk to them, a dinner cooked on virtual time, and futures
/// taken apart by hand.
#[derive(Debug, Parser)]
#[command(name = "coop", version = VERSION, propagate_version = true)]
pub struct Cli {
    #[command(flatten)]
    pub log: LogArgs,

    #[command(subcommand)]
    pub command: Command,
}

// Parsed once per process and moved into its command: the size of the
// largest variant (`serve`'s many flags) costs nothing worth a `Box`.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve the Animals API and the pub/sub hub on one port.
    Serve(Box<commands::serve::ServeArgs>),
    /// Ask animals what they say: the talk's sequential and concurrent clients.
    Speak(commands::speak::SpeakArgs),
    /// Publish messages to a hub topic.
    Pub(commands::pubsub::PubArgs),
    /// Subscribe to hub topics and print messages, resuming after reconnects.
    Sub(commands::pubsub::SubArgs),
    /// Cook the talk's dinner with async Rust on a virtual clock.
    Kitchen(commands::kitchen::KitchenArgs),
    /// Futures and an executor taken apart by hand (the talk's square and cube).
    Byhand(commands::byhand::ByhandArgs),
    /// Load generators: hub fan-out and held slow requests (see docs/benchmarks.md).
    Bench(commands::bench::BenchArgs),
    /// Print a shell completion script: `coop completions bash >
    /// /etc/bash_completion.d/coop`.
    Completions(commands::generate::CompletionsArgs),
    /// Print the man page (roff) of coop, or of one command (`coop man
    /// serve`): `coop man | man -l -`.
    #[command(alias = "manpage")]
    Man(commands::generate::ManArgs),
}

/// Logging flags shared by every command. `RUST_LOG` overrides both.
#[derive(Debug, Args)]
pub struct LogArgs {
    /// More log output (-v: debug, -vv: trace).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,

    /// Only log errors.
    #[arg(short, long, global = true, conflicts_with = "verbose")]
    pub quiet: bool,
}

impl LogArgs {
    /// Installs the `tracing` subscriber: logs go to stderr so that stdout
    /// stays clean for a command's output.
    pub fn init(&self) {
        use tracing_subscriber::EnvFilter;
        let default = match (self.quiet, self.verbose) {
            (true, _) => "error",
            (false, 0) => "info",
            (false, 1) => "debug",
            (false, _) => "trace",
        };
        let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
        // Colour only for a person at a terminal: logs piped to a file or
        // captured by a test stay plain text.
        let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
        tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_writer(std::io::stderr)
            .with_ansi(ansi)
            .init();
    }
}
