//! End-to-end tests: what operators expect of a server command. `coop
//! serve --config FILE` and its precedence (flag > `COOP_*` variable >
//! file > default), `--print-config`, shell completions, man pages and
//! the commit in `--version`.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{Command, Output};

use crate::support::{coop_clean_env, metric, Server};

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// A config file in a fresh directory (kept until the returned guard drops).
fn config_file(text: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("coop.toml");
    std::fs::write(&path, text).unwrap();
    (dir, path)
}

/// `coop serve ARGS --print-config` with only `env` as COOP_* variables.
fn print_config(args: &[&str], env: &[(&str, &str)]) -> Output {
    coop_clean_env()
        .arg("serve")
        .args(args)
        .arg("--print-config")
        .envs(env.iter().copied())
        .output()
        .expect("run coop serve --print-config")
}

/// One line of `--print-config`: the value as TOML text and its source.
#[derive(Debug, PartialEq)]
struct Setting {
    value: String,
    source: String,
}

/// `--print-config`'s output read back: a valid TOML document, and for
/// each key its value's text and the source its comment names.
fn settings(out: &Output) -> BTreeMap<String, Setting> {
    assert!(
        out.status.success(),
        "--print-config failed: {}",
        stderr(out)
    );
    let text = stdout(out);
    text.parse::<toml::Table>()
        .unwrap_or_else(|e| panic!("--print-config is not TOML: {e}\n{text}"));
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|line| {
            let (key, rest) = line.split_once(" = ").expect("key = value");
            let (value, source) = rest.rsplit_once("  # ").expect("a source comment");
            let setting = Setting {
                value: value.to_string(),
                source: source.to_string(),
            };
            (key.to_string(), setting)
        })
        .collect()
}

fn get<'a>(settings: &'a BTreeMap<String, Setting>, key: &str) -> &'a Setting {
    settings
        .get(key)
        .unwrap_or_else(|| panic!("no {key} in {settings:#?}"))
}

#[test]
fn print_config_lists_every_setting_and_reads_back_as_a_config_file() {
    let out = print_config(&[], &[]);
    let defaults = settings(&out);
    // A few of the defaults, as `--help` states them.
    assert_eq!(get(&defaults, "port").value, "8080");
    assert_eq!(get(&defaults, "delay").value, "\"5s\"");
    assert_eq!(get(&defaults, "max-connections").value, "16384");
    assert_eq!(get(&defaults, "no-direct").value, "false");
    assert!(defaults.values().all(|s| s.source == "default"));
    // Unset options are listed as comments, not left out.
    let text = stdout(&out);
    assert!(text.contains("# catalog: not set"), "{text}");
    assert!(text.contains("# allowed-host: not set"), "{text}");
    // Neither --config nor --print-config is a setting.
    assert!(!defaults.contains_key("config") && !defaults.contains_key("print-config"));

    // The output is a file --config takes, and gives the same settings.
    let (_dir, path) = config_file(&text);
    let again = settings(&print_config(&["--config", path.to_str().unwrap()], &[]));
    assert_eq!(
        defaults.keys().collect::<Vec<_>>(),
        again.keys().collect::<Vec<_>>()
    );
    for (key, setting) in &again {
        assert_eq!(setting.value, defaults[key].value, "{key}");
        assert_eq!(setting.source, "file", "{key}");
    }
}

#[test]
fn a_flag_beats_a_variable_which_beats_the_file_which_beats_the_default() {
    let (_dir, path) = config_file(
        r#"
        delay = "1s"
        max-connections = 1000
        allowed-host = ["a.example", "b.example"]
        auth-allow-no-exp = true
        "#,
    );
    let config = path.to_str().unwrap();

    let file = settings(&print_config(&["--config", config], &[]));
    assert_eq!(get(&file, "delay").value, "\"1s\"");
    assert_eq!(get(&file, "delay").source, "file");
    assert_eq!(get(&file, "max-connections").value, "1000");
    assert_eq!(
        get(&file, "allowed-host").value,
        r#"["a.example", "b.example"]"#
    );
    assert_eq!(get(&file, "auth-allow-no-exp").value, "true");
    assert_eq!(get(&file, "max-delay").source, "default");

    let env = [
        ("COOP_DELAY", "2s"),
        ("COOP_ALLOWED_HOSTS", "c.example"),
        ("COOP_AUTH_ALLOW_NO_EXP", "false"),
    ];
    let over_env = settings(&print_config(&["--config", config], &env));
    assert_eq!(get(&over_env, "delay").value, "\"2s\"");
    assert_eq!(get(&over_env, "delay").source, "environment COOP_DELAY");
    assert_eq!(get(&over_env, "allowed-host").value, r#"["c.example"]"#);
    assert_eq!(get(&over_env, "auth-allow-no-exp").value, "false");
    assert_eq!(get(&over_env, "max-connections").source, "file");

    let over_flag = settings(&print_config(
        &[
            "--config",
            config,
            "--delay",
            "3s",
            "--allowed-host",
            "d.example",
        ],
        &env,
    ));
    assert_eq!(get(&over_flag, "delay").value, "\"3s\"");
    assert_eq!(get(&over_flag, "delay").source, "command line");
    assert_eq!(get(&over_flag, "allowed-host").value, r#"["d.example"]"#);
    assert_eq!(get(&over_flag, "max-connections").value, "1000");

    // COOP_CONFIG names the file as --config does; --config beats it.
    let via_env = settings(&print_config(&[], &[("COOP_CONFIG", config)]));
    assert_eq!(get(&via_env, "delay").source, "file");
    let (_other_dir, other) = config_file("delay = \"4s\"\n");
    let both = settings(&print_config(
        &["--config", other.to_str().unwrap()],
        &[("COOP_CONFIG", config)],
    ));
    assert_eq!(get(&both, "delay").value, "\"4s\"");
    assert_eq!(get(&both, "max-connections").source, "default");
}

/// The same precedence, seen in what the server does: the file's `delay`
/// is how long `/animals/cow` takes, unless a variable or a flag says
/// otherwise. Timed by the server itself (the request's duration in
/// `/metrics`), so a loaded machine cannot blur a 1.5 s delay and none.
#[test]
fn the_files_delay_is_what_the_server_serves_unless_overridden() {
    const FILE_DELAY: f64 = 1.5;
    let (_dir, path) = config_file("delay = \"1500ms\"\nmax-delay = \"10s\"\n");
    let config = path.to_str().unwrap();
    let time_a_cow = |server: &Server| {
        let answer = reqwest::blocking::get(server.url("/animals/cow")).unwrap();
        assert_eq!(answer.status(), 200);
        let route = r#"{route="/animals/{name}"}"#;
        let base = server.url("");
        let count = metric(
            &base,
            &format!("animals_request_duration_seconds_count{route}"),
        );
        assert_eq!(count, Some(1.0), "one request timed");
        metric(
            &base,
            &format!("animals_request_duration_seconds_sum{route}"),
        )
        .expect("the request's duration")
    };

    let from_file = Server::start_env(&["--config", config], &[]);
    let took = time_a_cow(&from_file);
    assert!(took >= FILE_DELAY, "the file's delay: took {took} s");

    let from_env = Server::start_env(&["--config", config], &[("COOP_DELAY", "0s")]);
    let took = time_a_cow(&from_env);
    assert!(took < FILE_DELAY / 2.0, "COOP_DELAY=0s: took {took} s");

    let from_flag = Server::start_env(
        &["--config", config, "--delay", "0s"],
        &[("COOP_DELAY", "1500ms")],
    );
    let took = time_a_cow(&from_flag);
    assert!(took < FILE_DELAY / 2.0, "--delay 0s: took {took} s");
}

#[test]
fn a_bad_file_is_an_error_naming_the_file_and_the_key() {
    let cases = [
        ("bogus = 1\n", "unknown setting \"bogus\""),
        ("max_connections = 5\n", "did you mean \"max-connections\"?"),
        ("config = \"other.toml\"\n", "unknown setting \"config\""),
        ("delay = 5\n", "delay = 5: invalid value"),
        ("delay = \"soon\"\n", "delay = \"soon\": invalid value"),
        (
            "max-connections = 0\n",
            "max-connections = 0: invalid value",
        ),
        ("port = \"http\"\n", "port = \"http\": invalid value"),
        ("data-fsync = \"yes\"\n", "expected true or false"),
        (
            "port = [1, 2]\n",
            "expected a string or a number, not array",
        ),
        ("allowed-host = [\"a,b\"]\n", "contains ','"),
        (
            "proxy-header = \"via\"\n",
            "proxy-header = \"via\": invalid value",
        ),
        ("delay = \n", "not valid TOML"),
    ];
    for (text, want) in cases {
        let (_dir, path) = config_file(text);
        let out = print_config(&["--config", path.to_str().unwrap()], &[]);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(2), "{text}: {err}");
        assert!(err.contains(path.to_str().unwrap()), "{text}: {err}");
        assert!(err.contains(want), "{text}: wanted {want:?} in {err}");
        assert!(out.stdout.is_empty(), "{text}");
    }

    let out = print_config(&["--config", "/nonexistent/coop.toml"], &[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("--config /nonexistent/coop.toml: cannot read it"),
        "{}",
        stderr(&out)
    );

    // A requirement the file breaks is clap's error, with a note naming
    // what the file gave.
    let (_dir, path) = config_file("data-fsync = true\n");
    let out = print_config(&["--config", path.to_str().unwrap()], &[]);
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(err.contains("--data-dir"), "{err}");
    assert!(err.contains("gave (as if by flags): data-fsync"), "{err}");

    // COOP_CONFIG is for `coop serve` only.
    let out = coop_clean_env()
        .args(["byhand", "--help"])
        .env("COOP_CONFIG", "/nonexistent/coop.toml")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
}

#[test]
fn print_config_redacts_secrets_and_reads_no_file_it_names() {
    let (_dir, path) = config_file(
        r#"
        auth-secret = "file-secret-0123456789abcdef0123456789"
        tls-cert = "/nonexistent/cert.pem"
        tls-key = "/nonexistent/key.pem"
        catalog = "/nonexistent/farm.toml"
        "#,
    );
    let out = print_config(
        &["--config", path.to_str().unwrap()],
        &[("COOP_REDIS_URL", "redis://user:redis-pass@localhost:6379/0")],
    );
    let printed = stdout(&out);
    let all = settings(&out);
    assert!(!printed.contains("file-secret"), "{printed}");
    assert!(!printed.contains("redis-pass"), "{printed}");
    assert_eq!(get(&all, "auth-secret").value, "\"***\"");
    // Repeatable (one per shard): shown as a list.
    assert_eq!(
        get(&all, "redis").value,
        "[\"redis://user:***@localhost:6379/0\"]"
    );
    assert_eq!(get(&all, "tls-cert").value, "\"/nonexistent/cert.pem\"");
    assert_eq!(get(&all, "catalog").source, "file");

    // A secret on the command line is hidden as well.
    let out = print_config(&["--auth-secret", "flag-secret-0123456789abcdef0123"], &[]);
    assert!(!stdout(&out).contains("flag-secret"));
    assert_eq!(get(&settings(&out), "auth-secret").source, "command line");
}

#[test]
fn completions_are_printed_for_every_shell() {
    for shell in ["bash", "zsh", "fish", "elvish", "powershell"] {
        let out = coop_clean_env()
            .args(["completions", shell])
            .output()
            .unwrap();
        assert!(out.status.success(), "{shell}: {}", stderr(&out));
        let script = stdout(&out);
        assert!(
            script.contains("print-config") && script.contains("max-connections"),
            "{shell}: the serve flags are missing"
        );
    }
    // The bash script is valid bash, if bash is here to say so.
    let out = coop_clean_env()
        .args(["completions", "bash"])
        .output()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("coop.bash");
    std::fs::write(&script, &out.stdout).unwrap();
    if let Ok(check) = Command::new("bash").arg("-n").arg(&script).output() {
        assert!(check.status.success(), "bash -n: {}", stderr(&check));
    }
    let out = coop_clean_env()
        .args(["completions", "tcsh"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn man_pages_are_roff_for_coop_and_each_command() {
    let out = coop_clean_env().arg("man").output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let page = stdout(&out);
    assert!(page.contains(".TH coop 1"), "{page}");
    assert!(page.contains(".SH SUBCOMMANDS") && page.contains("serve"));

    let out = coop_clean_env()
        .args(["manpage", "serve"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let page = stdout(&out);
    assert!(page.contains(".TH coop-serve 1"), "{page}");
    for flag in [
        "config",
        "print\\-config",
        "max\\-connections",
        "auth\\-secret\\-file",
    ] {
        assert!(page.contains(&format!("\\-\\-{flag}")), "no --{flag}");
    }
    // Environment variables are part of the page.
    assert!(page.contains("COOP_MAX_CONNECTIONS"));

    let out = coop_clean_env().args(["man", "nope"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("no command \"nope\""));
}

#[test]
fn version_names_the_commit() {
    let out = coop_clean_env().arg("--version").output().unwrap();
    assert!(out.status.success());
    let line = stdout(&out);
    let line = line.trim();
    let inner = line
        .strip_prefix(&format!("coop {} (", env!("CARGO_PKG_VERSION")))
        .and_then(|rest| rest.strip_suffix(')'))
        .unwrap_or_else(|| panic!("unexpected --version: {line:?}"));
    let git_head = Command::new("git")
        .args(["rev-parse", "HEAD"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string());
    match git_head {
        // Built in a git checkout: the short hash of HEAD and its date.
        Some(head) => {
            let (hash, date) = inner.split_once(' ').expect("hash and date");
            assert!(
                hash.len() >= 7 && head.starts_with(hash),
                "{hash} vs {head}"
            );
            let b = date.as_bytes();
            assert!(
                b.len() == 10 && b[4] == b'-' && b[7] == b'-',
                "not a date: {date}"
            );
        }
        None => assert_eq!(inner, "unknown"),
    }
}
