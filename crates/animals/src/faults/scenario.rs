//! The scenario file (`coop serve --scenario FILE`): how the whole farm
//! misbehaves, per animal, in TOML.
//!
//! ```toml
//! # Every animal: a realistic latency and a few overloaded answers.
//! [all]
//! delay = "lognormal:100ms,2s"
//! status = "200:0.9,503:0.08,429:0.02"
//!
//! # The cow's connection dies half-way through a large, slow body,
//! # one time in five.
//! [animals.cow]
//! bytes = 4096
//! drip = "2s"
//! fault = "reset-mid"
//! toxicity = 0.2
//! ```
//!
//! (`scenario.example.toml` beside this file is a longer example; the
//! guide includes it and a test parses it.)
//!
//! Keys are the query parameters of [`super::Spec`], with the same values
//! (numbers may be written bare). A rule for an animal is layered over
//! `[all]`, `--faults` over both, and a request's own query over
//! everything. Unknown tables and keys are errors naming them, so a typo
//! does not silently leave the farm well-behaved.

use std::collections::HashMap;
use std::path::Path;

use super::Spec;
use crate::error::Error;

/// Most animal rules in one file.
const MAX_RULES: usize = 10_000;

/// A parsed scenario.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Scenario {
    /// `[all]`: every animal.
    pub all: Spec,
    /// `[animals.NAME]`: one animal, layered over `all`.
    pub animals: HashMap<String, Spec>,
}

impl Scenario {
    /// Reads and checks a scenario file.
    pub fn from_file(path: &Path) -> Result<Scenario, Error> {
        let text = std::fs::read_to_string(path).map_err(|source| Error::ScenarioRead {
            path: path.to_path_buf(),
            source,
        })?;
        Scenario::parse(&text).map_err(|reason| Error::ScenarioParse {
            path: path.to_path_buf(),
            reason,
        })
    }

    /// Parses scenario TOML; the error is one line.
    pub fn parse(text: &str) -> Result<Scenario, String> {
        let table: toml::Table = toml::from_str(text).map_err(|e| e.message().to_string())?;
        let mut scenario = Scenario::default();
        for (key, value) in &table {
            match (key.as_str(), value) {
                ("all", toml::Value::Table(rule)) => scenario.all = spec(rule, "[all]")?,
                ("animals", toml::Value::Table(animals)) => {
                    if animals.len() > MAX_RULES {
                        return Err(format!("more than {MAX_RULES} animal rules"));
                    }
                    for (name, rule) in animals {
                        crate::catalog::validate_name(name)
                            .map_err(|e| format!("[animals.{name}]: {}", e.reason()))?;
                        let toml::Value::Table(rule) = rule else {
                            return Err(format!("animals.{name} must be a table"));
                        };
                        let where_ = format!("[animals.{name}]");
                        scenario.animals.insert(name.clone(), spec(rule, &where_)?);
                    }
                }
                _ => {
                    return Err(format!(
                        "unknown entry {key:?}: a scenario has [all] and [animals.NAME] tables"
                    ))
                }
            }
        }
        Ok(scenario)
    }

    /// The rule for one animal: its own over `[all]`.
    pub fn for_animal(&self, name: &str) -> Spec {
        match self.animals.get(name) {
            Some(rule) => rule.clone().over(&self.all),
            None => self.all.clone(),
        }
    }
}

/// One rule: each key set through the same parser as a query parameter.
fn spec(rule: &toml::Table, where_: &str) -> Result<Spec, String> {
    let mut spec = Spec::default();
    for (key, value) in rule {
        let text = match value {
            toml::Value::String(s) => s.clone(),
            toml::Value::Integer(n) => n.to_string(),
            toml::Value::Float(x) => x.to_string(),
            _ => return Err(format!("{where_} {key}: use a string or a number")),
        };
        spec.set(key, &text).map_err(|e| format!("{where_}: {e}"))?;
    }
    Ok(spec)
}

#[cfg(test)]
mod tests {
    use super::super::{DelaySpec, Fault, Pace};
    use super::*;
    use std::time::Duration;

    #[test]
    fn the_documented_example_parses() {
        let text = include_str!("scenario.rs")
            .lines()
            .skip_while(|l| !l.starts_with("//! ```toml"))
            .skip(1)
            .take_while(|l| !l.starts_with("//! ```"))
            .map(|l| l.trim_start_matches("//!").trim_start())
            .collect::<Vec<_>>()
            .join("\n");
        let s = Scenario::parse(&text).unwrap();
        assert_eq!(
            s.all.delay,
            Some(DelaySpec::Lognormal {
                p50: Duration::from_millis(100),
                p99: Duration::from_secs(2)
            })
        );
        let cow = s.for_animal("cow");
        assert_eq!(cow.fault, Some(Fault::ResetMid));
        assert_eq!(cow.pace, Some(Pace::Drip(Duration::from_secs(2))));
        assert_eq!(cow.bytes, Some(4096));
        assert!(cow.status.is_some(), "inherited from [all]");
        assert_eq!(s.for_animal("pig").fault, None);

        let example = Scenario::parse(include_str!("scenario.example.toml")).unwrap();
        assert_eq!(example.for_animal("pig").fault, Some(Fault::Blackhole));
        assert_eq!(example.for_animal("cow").toxicity, Some(0.2));
        assert!(example.for_animal("duck").status.is_some());
    }

    #[test]
    fn mistakes_are_named() {
        for (text, needle) in [
            ("[al]\ndelay = 1\n", "\"al\""),
            ("[all]\ndelya = 1\n", "delya"),
            ("[all]\ntoxicity = 3\n", "toxicity"),
            ("[animals.cow]\nfault = \"boom\"\n", "[animals.cow]"),
            ("[animals.\"c w\"]\nfault = \"reset\"\n", "c w"),
            ("[all]\nbytes = true\n", "bytes"),
            ("[all\n", ""),
        ] {
            let err = Scenario::parse(text).unwrap_err();
            assert!(err.contains(needle), "{text:?}: {err}");
        }
    }
}
