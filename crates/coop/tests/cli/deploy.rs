//! End-to-end tests: `deploy/`. The example configuration is read by the
//! real binary, the systemd unit starts the binary with flags it accepts,
//! the two agree with each other, and `systemd-analyze verify` (where it
//! is installed) finds nothing to say about the unit.
//!
//! `--print-config` reads no file that a configuration names (certificates,
//! secrets, catalogs), so the example is checked as it is, with its paths
//! under `/etc/coop` that do not exist here.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::support::coop_clean_env;

fn deploy(file: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../deploy")
        .join(file)
}

fn read(file: &str) -> String {
    std::fs::read_to_string(deploy(file)).unwrap_or_else(|e| panic!("deploy/{file}: {e}"))
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// The values of `Key=` in the unit, in order (a key may repeat).
fn unit_values<'a>(unit: &'a str, key: &str) -> Vec<&'a str> {
    let prefix = format!("{key}=");
    unit.lines()
        .filter_map(|l| l.trim().strip_prefix(prefix.as_str()))
        .collect()
}

/// `coop serve --config deploy/coop.toml --print-config`, as TOML.
fn effective_example() -> toml::Table {
    let out = coop_clean_env()
        .args(["serve", "--config"])
        .arg(deploy("coop.toml"))
        .arg("--print-config")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    String::from_utf8(out.stdout).unwrap().parse().unwrap()
}

#[test]
fn the_example_configuration_is_read_by_the_binary() {
    let example: toml::Table = read("coop.toml").parse().expect("deploy/coop.toml is TOML");
    let effective = effective_example();
    // Every key of the example is a setting, and is in effect as written.
    for (key, value) in &example {
        let got = effective
            .get(key)
            .unwrap_or_else(|| panic!("{key} of deploy/coop.toml is not in effect"));
        let same = match (value, got) {
            (toml::Value::Float(f), toml::Value::Integer(n)) => *f == *n as f64,
            (a, b) => a == b,
        };
        assert!(same, "{key}: the file says {value}, in effect {got}");
    }
    // Hardened: TLS, auth from a file, names and origins, private metrics.
    for key in [
        "tls-cert",
        "tls-key",
        "auth-secret-file",
        "allowed-host",
        "cors-origin",
        "max-connections-per-ip",
        "publish-rate",
        "metrics-addr",
        "data-dir",
    ] {
        assert!(example.contains_key(key), "deploy/coop.toml sets no {key}");
    }
    assert!(!example.contains_key("auth-secret"), "a secret in the file");
}

#[test]
fn the_unit_starts_the_binary_with_flags_it_accepts() {
    let unit = read("coop.service");
    let exec = unit_values(&unit, "ExecStart");
    assert_eq!(
        exec,
        ["/usr/local/bin/coop serve --config /etc/coop/coop.toml"]
    );
    let mut words = exec[0].split_whitespace();
    assert_eq!(words.next(), Some("/usr/local/bin/coop"));
    let args: Vec<&str> = words.collect();
    // The same arguments to this build, with the example in place of
    // /etc/coop/coop.toml: accepted (--print-config exits before serving).
    let example = deploy("coop.toml");
    let out = coop_clean_env()
        .args(args.iter().map(|a| {
            if *a == "/etc/coop/coop.toml" {
                example.as_os_str()
            } else {
                std::ffi::OsStr::new(a)
            }
        }))
        .arg("--print-config")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));

    assert_eq!(
        unit_values(&unit, "ExecReload"),
        ["/bin/kill -HUP $MAINPID"]
    );
    for line in [
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        "ProtectHome=yes",
        "PrivateTmp=yes",
        "CapabilityBoundingSet=",
        "LimitNOFILE=65536",
        "RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX",
    ] {
        assert!(unit.lines().any(|l| l == line), "coop.service lacks {line}");
    }
}

/// What the unit provides and what the configuration expects of it.
#[test]
fn the_unit_and_the_configuration_agree() {
    let unit = read("coop.service");
    let effective = effective_example();
    let str_of = |key: &str| effective[key].as_str().unwrap().to_string();

    // The data directory is in the unit's StateDirectory (the only place
    // ProtectSystem=strict leaves writable).
    let state = unit_values(&unit, "StateDirectory");
    assert_eq!(state, ["coop"]);
    assert!(str_of("data-dir").starts_with("/var/lib/coop/"));

    // The auth secret is the credential the unit loads.
    let creds = unit_values(&unit, "LoadCredential");
    let name = creds
        .iter()
        .find_map(|c| c.split_once(':').map(|(name, _)| name))
        .expect("a LoadCredential=");
    assert_eq!(
        str_of("auth-secret-file"),
        format!("/run/credentials/coop.service/{name}")
    );

    // Connections fit the descriptors; the drain fits the stop timeout;
    // no capability is needed for the port.
    let nofile: i64 = unit_values(&unit, "LimitNOFILE")[0].parse().unwrap();
    assert!(effective["max-connections"].as_integer().unwrap() < nofile);
    let stop = humantime_secs(unit_values(&unit, "TimeoutStopSec")[0]);
    let drain = humantime_secs(&str_of("drain-timeout"));
    assert!(drain < stop, "drain {drain}s, TimeoutStopSec {stop}s");
    assert!(effective["port"].as_integer().unwrap() >= 1024);
    assert_eq!(unit_values(&unit, "CapabilityBoundingSet"), [""]);
}

/// Seconds of `30s` or `1m` (what the two files use).
fn humantime_secs(text: &str) -> u64 {
    let (n, unit) = text.split_at(text.find(|c: char| !c.is_ascii_digit()).unwrap());
    let n: u64 = n.parse().unwrap();
    match unit {
        "s" => n,
        "m" | "min" => n * 60,
        other => panic!("unit {other:?} in {text:?}"),
    }
}

/// `systemd-analyze verify` on a copy of the unit whose ExecStart is this
/// build (it checks the binary exists); skipped where systemd-analyze is
/// not installed. Any warning fails too: verify exits 0 on unknown keys.
#[test]
fn systemd_analyze_verifies_the_unit() {
    let Ok(version) = Command::new("systemd-analyze").arg("--version").output() else {
        eprintln!("systemd-analyze is not installed: the unit is not verified");
        return;
    };
    assert!(version.status.success());
    let unit = read("coop.service").replace(
        "ExecStart=/usr/local/bin/coop ",
        &format!("ExecStart={} ", env!("CARGO_BIN_EXE_coop")),
    );
    assert!(unit.contains(env!("CARGO_BIN_EXE_coop")));
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("coop.service");
    std::fs::write(&path, unit).unwrap();
    // --man=no: the man page (`coop man serve`) is not installed here.
    let out = Command::new("systemd-analyze")
        .args(["verify", "--man=no"])
        .arg(&path)
        .output()
        .unwrap();
    let said = format!("{}{}", String::from_utf8_lossy(&out.stdout), stderr(&out));
    assert!(out.status.success(), "systemd-analyze verify: {said}");
    assert!(said.trim().is_empty(), "systemd-analyze verify: {said}");
}
