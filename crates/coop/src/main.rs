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

use std::ffi::OsString;
use std::process::ExitCode;

use clap::{CommandFactory, FromArgMatches};

fn main() -> ExitCode {
    let args: Vec<OsString> = std::env::args_os().collect();
    // `coop serve --config FILE`: the file's settings become COOP_*
    // variables (those not already set) before the command that parses
    // the arguments is built, since clap reads a variable when it defines
    // its flag. Flags still beat variables, variables the file.
    let loaded = match commands::serve::config::load(&cli::Cli::command(), &args) {
        Ok(loaded) => loaded,
        Err(err) => return finish(Err(err.into())),
    };
    let command = cli::Cli::command();
    let matches = match command.clone().try_get_matches_from(&args) {
        Ok(matches) => matches,
        Err(err) => {
            // A requirement or conflict clap reports may come from the file.
            let _ = err.print();
            if let Some(note) = loaded.as_ref().and_then(|l| l.note()) {
                if err.use_stderr() {
                    eprintln!("{note}");
                }
            }
            std::process::exit(err.exit_code());
        }
    };
    let cli = cli::Cli::from_arg_matches(&matches).unwrap_or_else(|err| err.exit());
    cli.log.init();
    if let cli::Command::Serve(serve) = &cli.command {
        if serve.print_config {
            return finish(commands::serve::config::print(
                &command,
                &matches,
                loaded.as_ref(),
            ));
        }
    }
    finish(commands::run(cli.command))
}

/// A command's outcome as the process's exit code (see the module's doc).
fn finish(result: anyhow::Result<ExitCode>) -> ExitCode {
    match result {
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
