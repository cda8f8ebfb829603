//! `coop completions SHELL` and `coop man [COMMAND]`: shell completions
//! (clap_complete) and man pages (clap_mangen), both from the same clap
//! definitions as `--help`, so they cannot drift from the flags.

use std::io::Write;
use std::process::ExitCode;

use clap::{Args, CommandFactory};

use super::ConfigError;
use crate::cli::Cli;

#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// The shell to complete for.
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}

#[derive(Debug, Args)]
pub struct ManArgs {
    /// A command of coop (`serve`): its own page, `coop-serve(1)`, with
    /// every flag. Without it, the page of `coop` itself.
    pub command: Option<String>,
}

pub fn completions(args: CompletionsArgs) -> anyhow::Result<ExitCode> {
    let mut cmd = Cli::command();
    let mut out = std::io::stdout().lock();
    clap_complete::generate(args.shell, &mut cmd, "coop", &mut out);
    out.flush()?;
    Ok(ExitCode::SUCCESS)
}

pub fn man(args: ManArgs) -> anyhow::Result<ExitCode> {
    let mut page = Vec::new();
    render_man(args.command.as_deref(), &mut page)?;
    let mut out = std::io::stdout().lock();
    out.write_all(&page)?;
    out.flush()?;
    Ok(ExitCode::SUCCESS)
}

/// The roff page of `coop`, or of `coop COMMAND` (named `coop-COMMAND`,
/// as git's pages are).
pub fn render_man(command: Option<&str>, out: &mut dyn Write) -> anyhow::Result<()> {
    let mut cmd = Cli::command();
    // Building sets each command's display name (`coop-serve`) and its
    // usage name (`coop serve`), and gives it the global flags.
    cmd.build();
    let page = match command {
        None => cmd,
        Some(name) => cmd.find_subcommand(name).cloned().ok_or_else(|| {
            let names: Vec<_> = cmd.get_subcommands().map(|c| c.get_name()).collect();
            ConfigError(format!(
                "no command {name:?} (the commands: {})",
                names.join(", ")
            ))
        })?,
    };
    clap_mangen::Man::new(page)
        .source(format!("coop {}", crate::cli::VERSION))
        .manual("coop")
        .render(out)?;
    Ok(())
}
