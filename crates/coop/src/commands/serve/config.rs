//! `coop serve --config FILE` and `coop serve --print-config`.
//!
//! The file is TOML whose keys are the long names of `coop serve`'s flags:
//! `max-connections = 1000`, `delay = "5s"`, `allowed-host = ["a", "b"]`,
//! `data-fsync = true`. Precedence: a flag, then a `COOP_*` variable, then
//! the file, then the default.
//!
//! The file goes through the environment. Every setting of `coop serve`
//! has a `COOP_*` variable; before clap parses, each key of the file sets
//! its flag's variable, unless the variable is already set. clap then does
//! what it does for any variable: a flag beats it, it beats the default,
//! and its value is parsed, and checked against the flags it requires or
//! conflicts with, like any other. The keys come from clap's definition of
//! `coop serve` (each flag with a variable, but `--config` itself), so
//! there is no second list of names to keep in step with the flags.
//!
//! `--print-config` goes the other way: from clap's `ArgMatches` (each
//! setting's raw values and where they came from) back to a file that
//! `--config` reads.

use std::collections::BTreeSet;
use std::ffi::{OsStr, OsString};
use std::fmt::Write as _;
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::parser::ValueSource;
use clap::{Arg, ArgAction, ArgMatches, Command};

use super::ConfigError;

/// The id of `--config` (the one flag with a variable that a file cannot
/// hold).
const CONFIG_ID: &str = "config";

/// What `load` did: the file it read and the settings it supplied (its
/// keys whose variables were not set already), so that `--print-config`
/// can say where each value came from.
#[derive(Debug, Clone)]
pub struct Loaded {
    pub path: PathBuf,
    pub keys: BTreeSet<String>,
}

impl Loaded {
    /// For clap's errors, which name flags only: a requirement or a
    /// conflict may involve a setting of the file.
    pub fn note(&self) -> Option<String> {
        (!self.keys.is_empty()).then(|| {
            let keys: Vec<&str> = self.keys.iter().map(String::as_str).collect();
            format!(
                "note: --config {} gave (as if by flags): {}",
                self.path.display(),
                keys.join(", ")
            )
        })
    }
}

/// The settings a file may hold: `serve`'s flags that have a variable, but
/// `--config`. (`--print-config` and `--help` have none.)
pub fn settings(serve: &Command) -> impl Iterator<Item = &Arg> {
    serve.get_arguments().filter(|arg| {
        arg.get_env().is_some() && arg.get_long().is_some() && arg.get_id() != CONFIG_ID
    })
}

/// If `args` (the whole command line, program name first) run `coop serve`
/// with `--config FILE` or `COOP_CONFIG`, reads FILE and sets the
/// variable of each setting it holds that is not already set. Must run
/// before the command that parses `args` is built: clap reads a variable
/// when its flag is defined.
///
/// Unreadable files, bad TOML, unknown keys, values of the wrong type or
/// that the flag would refuse are errors naming the file and the key;
/// nothing is set then.
pub fn load(cli: &Command, args: &[OsString]) -> Result<Option<Loaded>, ConfigError> {
    // Built, so that each flag shows its final defaults (a boolean's
    // `false` is added then).
    let mut cli = cli.clone();
    cli.build();
    let Some(serve) = cli.find_subcommand("serve") else {
        return Ok(None);
    };
    let Some(config) = serve.get_arguments().find(|a| a.get_id() == CONFIG_ID) else {
        return Ok(None);
    };
    let long = config.get_long().unwrap_or(CONFIG_ID);
    let path = match flag_value(args, serve.get_name(), long) {
        Found::NotThisCommand | Found::Flag(FlagValue::Missing) => return Ok(None),
        Found::Flag(FlagValue::Given(path)) => PathBuf::from(path),
        Found::NoFlag => match config.get_env().and_then(std::env::var_os) {
            Some(path) => PathBuf::from(path),
            None => return Ok(None),
        },
    };

    let shown = path.display();
    let text = std::fs::read_to_string(&path)
        .map_err(|e| ConfigError(format!("--config {shown}: cannot read it: {e}")))?;
    let table: toml::Table = text
        .parse()
        .map_err(|e| ConfigError(format!("--config {shown}: not valid TOML: {e}")))?;

    // Check every key before setting anything.
    let mut to_set = Vec::new();
    for (key, value) in &table {
        let arg = settings(serve)
            .find(|arg| arg.get_long() == Some(key.as_str()))
            .ok_or_else(|| ConfigError(unknown_key(&shown.to_string(), key, serve)))?;
        let raw = env_value(arg, value)
            .map_err(|why| ConfigError(format!("--config {shown}: {key} = {value}: {why}")))?;
        if let Some(var) = arg.get_env() {
            to_set.push((key.clone(), var.to_os_string(), raw));
        }
    }

    let mut keys = BTreeSet::new();
    for (key, var, raw) in to_set {
        if std::env::var_os(&var).is_none() {
            if let Some(raw) = raw {
                // Single-threaded still: `main` calls this before anything
                // else runs.
                std::env::set_var(&var, raw);
            }
            keys.insert(key);
        }
    }
    Ok(Some(Loaded { path, keys }))
}

enum Found {
    /// The command line does not run that subcommand.
    NotThisCommand,
    /// It does, without the flag.
    NoFlag,
    Flag(FlagValue),
}

enum FlagValue {
    Given(OsString),
    /// The flag ends the command line: clap will say so.
    Missing,
}

/// The value of `--LONG VALUE` or `--LONG=VALUE` on a command line that
/// runs `subcommand` (the last one, if repeated: clap refuses the repeat
/// itself). Global flags (`-v`, `-q`) may stand before the subcommand and
/// take no value; `--` ends the flags.
fn flag_value(args: &[OsString], subcommand: &str, long: &str) -> Found {
    let mut rest = args.iter().skip(1);
    match rest.find(|a| !a.as_bytes().starts_with(b"-")) {
        Some(first) if first == subcommand => {}
        _ => return Found::NotThisCommand,
    }
    let flag = format!("--{long}");
    let with_eq = format!("--{long}=");
    let mut found = None;
    while let Some(arg) = rest.next() {
        let bytes = arg.as_bytes();
        if bytes == b"--" {
            break;
        } else if bytes == flag.as_bytes() {
            found = Some(match rest.next() {
                Some(value) => FlagValue::Given(value.clone()),
                None => FlagValue::Missing,
            });
        } else if let Some(value) = bytes.strip_prefix(with_eq.as_bytes()) {
            found = Some(FlagValue::Given(OsStr::from_bytes(value).to_os_string()));
        }
    }
    found.map_or(Found::NoFlag, Found::Flag)
}

fn unknown_key(file: &str, key: &str, serve: &Command) -> String {
    let hint = if key == CONFIG_ID {
        " (a file cannot name another file)".to_string()
    } else if let Some(near) = settings(serve)
        .filter_map(Arg::get_long)
        .find(|long| *long == key.replace('_', "-").trim_start_matches('-'))
    {
        format!(" (did you mean {near:?}?)")
    } else {
        " (the keys are the long flags of `coop serve`, without `--`: see `coop serve --help`)"
            .to_string()
    };
    format!("--config {file}: unknown setting {key:?}{hint}")
}

/// The text of a setting's variable for a value of the file, or `None`
/// for what is the default already: an empty list, or a boolean flag's
/// default (`false`). Such a variable is left unset, as clap counts a set
/// variable as a given flag: `data-fsync = false` would otherwise demand
/// `--data-dir`.
///
/// Booleans take `true` or `false`; repeatable flags a list (or one
/// value), joined with the flag's value delimiter, which is how clap splits
/// their variable; the others one string or number. Each value is checked
/// with the flag's own parser.
fn env_value(arg: &Arg, value: &toml::Value) -> Result<Option<String>, String> {
    match arg.get_action() {
        ArgAction::SetTrue | ArgAction::SetFalse => match value {
            toml::Value::Boolean(b) => {
                let text = b.to_string();
                let default = arg.get_default_values().iter().any(|d| *d == *text);
                Ok((!default).then_some(text))
            }
            other => Err(format!("expected true or false, not {}", other.type_str())),
        },
        ArgAction::Append => {
            let items = match value {
                toml::Value::Array(items) => items.as_slice(),
                one => std::slice::from_ref(one),
            };
            let delimiter = arg.get_value_delimiter();
            let mut parts = Vec::with_capacity(items.len());
            for item in items {
                let text = scalar(item)?;
                check(arg, &text)?;
                match delimiter {
                    Some(d) if text.contains(d) => {
                        return Err(format!(
                            "{text:?} contains {d:?}: give each value as its own item of a list"
                        ))
                    }
                    None if !parts.is_empty() => {
                        return Err("takes one value in a file".to_string())
                    }
                    _ => parts.push(text),
                }
            }
            let joined = parts.join(&delimiter.map(String::from).unwrap_or_default());
            Ok((!parts.is_empty()).then_some(joined))
        }
        ArgAction::Set => {
            let text = scalar(value)?;
            check(arg, &text)?;
            Ok(Some(text))
        }
        other => Err(format!("cannot be set in a file ({other:?})")),
    }
}

/// A string or a number of the file, as a flag's value.
fn scalar(value: &toml::Value) -> Result<String, String> {
    match value {
        toml::Value::String(s) => Ok(s.clone()),
        toml::Value::Integer(n) => Ok(n.to_string()),
        toml::Value::Float(f) => Ok(f.to_string()),
        other => Err(format!(
            "expected a string or a number, not {}",
            other.type_str()
        )),
    }
}

/// Runs the flag's own value parser on `text`, so that a bad value is
/// reported with the file's key (clap's own error, later, would name only
/// the variable).
fn check(arg: &Arg, text: &str) -> Result<(), String> {
    let long = arg.get_long().unwrap_or("value").to_string();
    let probe = Command::new("coop-serve-config")
        .no_binary_name(true)
        .disable_help_flag(true)
        .disable_version_flag(true)
        .arg(
            Arg::new(arg.get_id().clone())
                .long(long.clone())
                .action(ArgAction::Set)
                .value_parser(arg.get_value_parser().clone()),
        );
    match probe.try_get_matches_from([format!("--{long}={text}")]) {
        Ok(_) => Ok(()),
        Err(err) => Err(match std::error::Error::source(&err) {
            Some(why) => format!("invalid value: {why}"),
            None => {
                let rendered = err.render().to_string();
                let first = rendered.lines().next().unwrap_or_default();
                first.trim_start_matches("error: ").to_string()
            }
        }),
    }
}

/// `coop serve --print-config`: the settings in effect as a file for
/// `--config`, each line saying where its value came from. Secrets (the
/// flags whose variables `--help` hides) show as `***`, or for a URL only
/// its password does.
pub fn render(serve: &Command, matches: &ArgMatches, loaded: Option<&Loaded>) -> String {
    let mut out = String::new();
    let file = loaded.map(|l| l.path.display().to_string());
    let _ = writeln!(
        out,
        "# coop serve --print-config: the settings in effect, a file for --config.\n\
         # Precedence: command line > COOP_* variable > file ({}) > default;\n\
         # each line says which gave its value. Secrets show as \"***\".\n",
        file.as_deref().unwrap_or("none")
    );
    for arg in settings(serve) {
        let id = arg.get_id().as_str();
        let key = arg.get_long().unwrap_or(id);
        let source = match matches.value_source(id) {
            Some(ValueSource::CommandLine) => "command line".to_string(),
            // The file's settings came through their variables, or left
            // them unset when they repeat the default.
            Some(ValueSource::EnvVariable | ValueSource::DefaultValue)
                if loaded.is_some_and(|l| l.keys.contains(key)) =>
            {
                "file".to_string()
            }
            Some(ValueSource::EnvVariable) => format!(
                "environment {}",
                arg.get_env().unwrap_or_default().to_string_lossy()
            ),
            Some(ValueSource::DefaultValue) => "default".to_string(),
            _ => "?".to_string(),
        };
        let value = match arg.get_action() {
            ArgAction::SetTrue | ArgAction::SetFalse => matches.get_flag(id).to_string(),
            action => {
                let raw: Vec<String> = match matches.get_raw(id) {
                    Some(raw) => raw
                        .map(|v| {
                            let v = v.to_string_lossy();
                            if arg.is_hide_env_values_set() {
                                redact(&v)
                            } else {
                                v.into_owned()
                            }
                        })
                        .collect(),
                    None => Vec::new(),
                };
                if raw.is_empty() {
                    let _ = writeln!(out, "# {key}: not set");
                    continue;
                }
                if matches!(action, ArgAction::Append) {
                    let items: Vec<String> = raw.iter().map(|v| toml_scalar(v)).collect();
                    format!("[{}]", items.join(", "))
                } else {
                    toml_scalar(&raw[0])
                }
            }
        };
        let _ = writeln!(out, "{key} = {value}  # {source}");
    }
    out
}

/// A secret's value as shown: a URL keeps all but its password, anything
/// else is `***`.
fn redact(value: &str) -> String {
    if value.contains("://") {
        hub::cluster::redact_url(value)
    } else {
        "***".to_string()
    }
}

/// A raw value as TOML: bare when TOML reads it back as the same number,
/// else a string (which `--config` accepts for any flag).
fn toml_scalar(raw: &str) -> String {
    let bare = format!("v = {raw}");
    if let Ok(table) = bare.parse::<toml::Table>() {
        if let Some(v @ (toml::Value::Integer(_) | toml::Value::Float(_))) = table.get("v") {
            if v.to_string() == raw {
                return raw.to_string();
            }
        }
    }
    toml::Value::String(raw.to_string()).to_string()
}

/// Prints `render` for `coop serve --print-config` (the serve command
/// from `cli`, its matches from `matches`).
pub fn print(
    cli: &Command,
    matches: &ArgMatches,
    loaded: Option<&Loaded>,
) -> anyhow::Result<ExitCode> {
    use std::io::Write;
    let serve = cli
        .find_subcommand("serve")
        .ok_or_else(|| anyhow::anyhow!("no serve command"))?;
    let serve_matches = matches
        .subcommand_matches("serve")
        .ok_or_else(|| anyhow::anyhow!("not coop serve"))?;
    let mut out = std::io::stdout().lock();
    out.write_all(render(serve, serve_matches, loaded).as_bytes())?;
    out.flush()?;
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    /// `coop serve` as declared: its own flags only.
    fn serve() -> Command {
        crate::cli::Cli::command()
            .find_subcommand("serve")
            .expect("serve")
            .clone()
    }

    /// `coop serve` as `load` sees it: built (final defaults; with the
    /// global flags, `--help` and `--version`).
    fn built_serve() -> Command {
        let mut cli = crate::cli::Cli::command();
        cli.build();
        cli.find_subcommand("serve").expect("serve").clone()
    }

    /// Every flag of `coop serve` can be set in a file: it has a variable
    /// (the file goes through it) and an action the file knows, and a
    /// repeatable one splits its variable. The exceptions are named.
    #[test]
    fn every_serve_flag_has_a_variable_the_file_can_set() {
        let serve = serve();
        for arg in serve.get_arguments() {
            let id = arg.get_id().as_str();
            if matches!(id, "print_config" | "help") {
                assert!(arg.get_env().is_none(), "{id} must not be settable");
                continue;
            }
            let env = arg.get_env().unwrap_or_else(|| panic!("--{id} has no env"));
            assert!(env.to_string_lossy().starts_with("COOP_"), "{id}: {env:?}");
            assert!(arg.get_long().is_some(), "{id} has no long name");
            match arg.get_action() {
                ArgAction::Set | ArgAction::SetTrue => {}
                ArgAction::Append => assert!(
                    arg.get_value_delimiter().is_some(),
                    "--{id} is repeatable: its variable needs a value_delimiter"
                ),
                other => panic!("--{id}: {other:?} cannot come from a file"),
            }
        }
        assert!(settings(&serve).all(|a| a.get_id() != CONFIG_ID));
        assert!(settings(&serve).count() > 40);
    }

    #[test]
    fn the_config_flag_is_found_after_serve_only() {
        let os = |v: &[&str]| v.iter().map(OsString::from).collect::<Vec<_>>();
        let got = |v: &[&str]| match flag_value(&os(v), "serve", "config") {
            Found::Flag(FlagValue::Given(p)) => Some(p.to_string_lossy().into_owned()),
            Found::Flag(FlagValue::Missing) => Some("<missing>".into()),
            Found::NoFlag => Some("<none>".into()),
            Found::NotThisCommand => None,
        };
        assert_eq!(
            got(&["coop", "serve", "--config", "a.toml"]).as_deref(),
            Some("a.toml")
        );
        assert_eq!(
            got(&["coop", "-v", "serve", "--config=b.toml"]).as_deref(),
            Some("b.toml")
        );
        assert_eq!(
            got(&["coop", "serve", "--config"]).as_deref(),
            Some("<missing>")
        );
        assert_eq!(got(&["coop", "speak", "--config", "a.toml"]), None);
        assert_eq!(
            got(&["coop", "serve", "--", "--config", "a.toml"]).as_deref(),
            Some("<none>")
        );
        assert_eq!(
            got(&["coop", "serve", "-p", "0"]).as_deref(),
            Some("<none>")
        );
        assert_eq!(got(&["coop", "-q"]), None);
    }

    #[test]
    fn values_become_variables_and_bad_ones_are_refused_with_a_reason() {
        let serve = built_serve();
        let arg = |long: &str| {
            settings(&serve)
                .find(|a| a.get_long() == Some(long))
                .unwrap()
                .clone()
        };
        let v = |s: &str| -> toml::Value {
            format!("v = {s}").parse::<toml::Table>().unwrap()["v"].clone()
        };
        assert_eq!(
            env_value(&arg("delay"), &v("\"250ms\"")),
            Ok(Some("250ms".into()))
        );
        assert_eq!(
            env_value(&arg("max-connections"), &v("1000")),
            Ok(Some("1000".into()))
        );
        assert_eq!(
            env_value(&arg("error-rate"), &v("0.25")),
            Ok(Some("0.25".into()))
        );
        assert_eq!(
            env_value(&arg("data-fsync"), &v("true")),
            Ok(Some("true".into()))
        );
        assert_eq!(env_value(&arg("data-fsync"), &v("false")), Ok(None));
        assert_eq!(
            env_value(&arg("allowed-host"), &v("[\"a.example\", \"b.example\"]")),
            Ok(Some("a.example,b.example".into()))
        );
        assert_eq!(env_value(&arg("allowed-host"), &v("[]")), Ok(None));
        let err = env_value(&arg("delay"), &v("\"five\"")).unwrap_err();
        assert!(err.contains("invalid value"), "{err}");
        let err = env_value(&arg("max-connections"), &v("0")).unwrap_err();
        assert!(err.contains("invalid value"), "{err}");
        let err = env_value(&arg("data-fsync"), &v("\"yes\"")).unwrap_err();
        assert!(err.contains("true or false"), "{err}");
        let err = env_value(&arg("allowed-host"), &v("[\"a,b\"]")).unwrap_err();
        assert!(err.contains("contains ','"), "{err}");
        let err = env_value(&arg("port"), &v("[1, 2]")).unwrap_err();
        assert!(err.contains("not array"), "{err}");
    }

    #[test]
    fn printed_values_read_back_the_same() {
        for raw in [
            "8080",
            "0.05",
            "5s",
            "127.0.0.1",
            "1e3",
            "007",
            "a \"quoted\" \\ value",
        ] {
            let line = format!("v = {}", toml_scalar(raw));
            let table: toml::Table = line.parse().unwrap_or_else(|e| panic!("{line}: {e}"));
            assert_eq!(scalar(&table["v"]).unwrap(), raw, "{line}");
        }
        assert_eq!(toml_scalar("8080"), "8080");
        assert_eq!(toml_scalar("0.05"), "0.05");
        assert_eq!(toml_scalar("5s"), "\"5s\"");
    }

    #[test]
    fn secrets_are_redacted() {
        assert_eq!(redact("hunter2"), "***");
        assert_eq!(
            redact("redis://u:pw@host:6379/0"),
            "redis://u:***@host:6379/0"
        );
    }
}
