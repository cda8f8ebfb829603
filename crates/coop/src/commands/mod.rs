//! One module per subcommand. Each owns its clap `Args` struct and a `run`
//! function; this module dispatches and maps errors to exit codes.

pub mod bench;
pub mod bench_fanout;
pub mod bench_hold;
pub mod bench_publish;
pub mod byhand;
pub mod generate;
pub mod kitchen;
pub mod pubsub;
pub mod serve;
pub mod speak;

use std::process::ExitCode;

use crate::cli::Command;

/// An error that carries its own exit code (for example "some animals
/// failed", which is exit 1 without being a crash).
#[derive(Debug)]
pub struct Exit(pub u8, pub String);

impl std::fmt::Display for Exit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.1)
    }
}

impl std::error::Error for Exit {}

/// clap value parser for durations with units (`250ms`, `5s`, `1m`): the one
/// rule every command's duration flags follow.
pub fn parse_duration(s: &str) -> Result<std::time::Duration, String> {
    humantime::parse_duration(s)
        .map_err(|e| format!("{e} (expected a duration with a unit, like 250ms or 5s)"))
}

/// [`parse_duration`], refusing zero (for timeouts that must run out).
pub fn parse_nonzero_duration(s: &str) -> Result<std::time::Duration, String> {
    match parse_duration(s)? {
        d if d.is_zero() => Err("must be more than zero".into()),
        d => Ok(d),
    }
}

/// Bad configuration (a flag value, a catalogue or menu file) exits with 2,
/// like a usage error; everything else with 1.
#[derive(Debug)]
pub struct ConfigError(pub String);

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ConfigError {}

pub fn exit_code_for(err: &anyhow::Error) -> u8 {
    if let Some(Exit(code, _)) = err.downcast_ref::<Exit>() {
        return *code;
    }
    if err.chain().any(|c| c.is::<ConfigError>()) {
        return 2;
    }
    1
}

/// Runs one command to completion. Async commands get a multi-threaded tokio
/// runtime; `byhand` deliberately runs without one.
pub fn run(command: Command) -> anyhow::Result<ExitCode> {
    match command {
        Command::Byhand(args) => byhand::run(args),
        Command::Kitchen(args) => kitchen::run(args),
        Command::Completions(args) => generate::completions(args),
        Command::Man(args) => generate::man(args),
        other => {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()?;
            // `coop speak` may end with thousands of pooled connections
            // open; closing them one by one at exit costs seconds and helps
            // nobody, so its runtime is abandoned rather than torn down.
            let abandon_runtime = matches!(other, Command::Speak(_));
            let result = rt.block_on(async move {
                match other {
                    Command::Serve(args) => serve::run(*args).await,
                    Command::Speak(args) => speak::run(args).await,
                    Command::Pub(args) => pubsub::run_pub(args).await,
                    Command::Sub(args) => pubsub::run_sub(args).await,
                    Command::Bench(args) => bench::run(args).await,
                    Command::Byhand(_)
                    | Command::Kitchen(_)
                    | Command::Completions(_)
                    | Command::Man(_) => unreachable!("handled above"),
                }
            });
            if abandon_runtime {
                rt.shutdown_background();
            }
            result
        }
    }
}
