//! The `coop` binary: parses arguments, sets up logging, runs one command and
//! turns its outcome into an exit code.
//!
//! Exit codes: 0 success; 1 the command ran but something failed (an animal
//! did not answer, a benchmark missed messages); 2 bad usage or configuration
//! (clap uses 2 as well). A closed stdout pipe (`coop sub | head`) is not an
//! error.

mod cli;
mod commands;
mod web;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    cli.log.init();
    match commands::run(cli.command) {
        Ok(code) => code,
        Err(err) => {
            if is_broken_pipe(&err) {
                return ExitCode::SUCCESS;
            }
            eprintln!("error: {err:#}");
            ExitCode::from(commands::exit_code_for(&err))
        }
    }
}

/// `coop sub | head -1` closes our stdout early; that is the reader's choice,
/// not a failure.
fn is_broken_pipe(err: &anyhow::Error) -> bool {
    err.chain().any(|cause| {
        cause
            .downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}
