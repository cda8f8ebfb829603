//! The catalogue: which animals live on the farm and what they say.
//!
//! The talk's twelve animals are built in. `--catalog FILE` (TOML or JSON)
//! either extends them (the default; an entry with a built-in name changes
//! its sound) or replaces them (`mode = "replace"`). Every entry is checked
//! when the file loads, and an error names the bad entry, so a server never
//! starts with a catalogue it cannot serve.
//!
//! The bodies the server sends (the sound as text, the JSON object, the JSON
//! list) are rendered once here and shared as `Bytes`, so answering a request
//! copies no string.
//!
//! File shape (TOML; the JSON file has the same fields):
//!
//! ```toml
//! mode = "extend"          # or "replace"
//! [[animals]]
//! name = "goat"
//! sound = "Meh!"
//! ```

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use axum::body::Bytes;
use serde::Deserialize;

use crate::error::Error;

/// The talk's catalogue, in the talk's order.
pub const BUILTIN: [(&str, &str); 12] = [
    ("cow", "Moo!"),
    ("pig", "Oink!"),
    ("sheep", "Baaa!"),
    ("chicken", "Cluck!"),
    ("bird", "Tweet!"),
    ("duck", "Quack!"),
    ("dog", "Woof!"),
    ("cat", "Meow!"),
    ("frog", "Ribbit!"),
    ("horse", "Neigh!"),
    ("turkey", "Gobble-Gobble!"),
    ("rooster", "Cock-a-Doodle-Doo!"),
];

/// Longest animal name the server accepts, in bytes. Longer names are a
/// `400`, not a lookup: nothing legitimate is that long, and it bounds what
/// the `404` text echoes back.
pub const MAX_NAME_LEN: usize = 64;

/// Longest sound a catalogue may define, in bytes.
pub const MAX_SOUND_LEN: usize = 256;

/// Why a name is not a valid animal name (the one-line reason of a `400`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NameError {
    Empty,
    TooLong,
    BadChar,
}

impl NameError {
    /// The reason as the server sends it (text/plain body of the `400`).
    pub fn reason(self) -> &'static str {
        match self {
            NameError::Empty => "Bad animal name: it is empty.",
            NameError::TooLong => "Bad animal name: it is longer than 64 bytes.",
            NameError::BadChar => {
                "Bad animal name: only ASCII letters, digits, '-' and '_' are allowed."
            }
        }
    }
}

impl std::fmt::Display for NameError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.reason())
    }
}

/// Checks the shape of an animal name: 1 to [`MAX_NAME_LEN`] bytes of ASCII
/// letters, digits, `-` and `_`. The same rule applies to catalogue entries
/// and to request paths, so every animal in a catalogue can be asked for.
pub fn validate_name(name: &str) -> Result<(), NameError> {
    if name.is_empty() {
        return Err(NameError::Empty);
    }
    if name.len() > MAX_NAME_LEN {
        return Err(NameError::TooLong);
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        return Err(NameError::BadChar);
    }
    Ok(())
}

/// One animal, with its answers pre-rendered.
#[derive(Debug, Clone)]
pub struct Entry {
    /// The sound as sent in a `text/plain` answer, e.g. `Moo!`.
    pub sound: Bytes,
    /// `{"animal":"cow","sound":"Moo!"}`.
    pub json: Bytes,
}

/// The farm's animals. A cheap `Clone` handle: the server and its handlers
/// share one immutable catalogue.
#[derive(Debug, Clone)]
pub struct Catalog {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    by_name: HashMap<Box<str>, Entry>,
    /// Names in catalogue order (built-ins first, then the file's new ones),
    /// for the `/animals` JSON list.
    order: Vec<Box<str>>,
    /// `[{"animal":..,"sound":..},...]`, the JSON answer of `GET /animals`.
    list_json: Bytes,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    #[serde(default)]
    mode: Mode,
    #[serde(default)]
    animals: Vec<FileEntry>,
}

#[derive(Debug, Default, Deserialize, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
enum Mode {
    #[default]
    Extend,
    Replace,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileEntry {
    name: Option<String>,
    sound: Option<String>,
}

impl Default for Catalog {
    fn default() -> Self {
        Catalog::builtin()
    }
}

impl Catalog {
    /// The talk's twelve animals.
    pub fn builtin() -> Catalog {
        Catalog::from_pairs(BUILTIN.iter().map(|(n, s)| (n.to_string(), s.to_string())))
    }

    /// Loads `path` (TOML, or JSON when the extension is `.json`) and applies
    /// it to the built-in catalogue.
    pub fn from_file(path: &Path) -> Result<Catalog, Error> {
        let text = std::fs::read_to_string(path).map_err(|source| Error::CatalogRead {
            path: path.to_owned(),
            source,
        })?;
        let is_json = path
            .extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("json"));
        Catalog::from_str(&text, is_json, path)
    }

    /// Parses a catalogue from text; `path` only names the source in errors.
    pub fn from_str(text: &str, json: bool, path: &Path) -> Result<Catalog, Error> {
        let parse_err = |reason: String| Error::CatalogParse {
            path: path.to_owned(),
            reason,
        };
        let file: File = if json {
            serde_json::from_str(text).map_err(|e| parse_err(e.to_string()))?
        } else {
            toml::from_str(text).map_err(|e| parse_err(e.message().to_string()))?
        };

        let mut pairs: Vec<(String, String)> = match file.mode {
            Mode::Extend => BUILTIN
                .iter()
                .map(|(n, s)| (n.to_string(), s.to_string()))
                .collect(),
            Mode::Replace => Vec::new(),
        };
        let mut seen = std::collections::HashSet::new();
        for (i, entry) in file.animals.into_iter().enumerate() {
            let position = i + 1;
            let bad = |entry: String, reason: &str| Error::CatalogEntry {
                path: path.to_owned(),
                entry,
                reason: reason.to_string(),
            };
            let Some(name) = entry.name else {
                return Err(bad(format!("#{position}"), "missing `name`"));
            };
            let label = format!("#{position} ({name:?})");
            if let Err(e) = validate_name(&name) {
                return Err(bad(label, e.reason()));
            }
            let Some(sound) = entry.sound else {
                return Err(bad(label, "missing `sound`"));
            };
            if sound.is_empty() {
                return Err(bad(label, "the sound is empty"));
            }
            if sound.len() > MAX_SOUND_LEN {
                return Err(bad(label, "the sound is longer than 256 bytes"));
            }
            if sound.chars().any(char::is_control) {
                return Err(bad(label, "the sound contains a control character"));
            }
            if !seen.insert(name.clone()) {
                return Err(bad(label, "this name appears twice in the file"));
            }
            match pairs.iter_mut().find(|(n, _)| *n == name) {
                Some(existing) => existing.1 = sound,
                None => pairs.push((name, sound)),
            }
        }
        if pairs.is_empty() {
            return Err(parse_err(
                "the catalogue has no animals (mode = \"replace\" needs at least one)".into(),
            ));
        }
        Ok(Catalog::from_pairs(pairs))
    }

    fn from_pairs(pairs: impl IntoIterator<Item = (String, String)>) -> Catalog {
        let mut by_name = HashMap::new();
        let mut order = Vec::new();
        let mut list = Vec::new();
        for (name, sound) in pairs {
            let object = serde_json::json!({ "animal": name, "sound": sound });
            let entry = Entry {
                sound: Bytes::from(sound.into_bytes()),
                json: Bytes::from(object.to_string()),
            };
            list.push(object);
            order.push(name.clone().into_boxed_str());
            by_name.insert(name.into_boxed_str(), entry);
        }
        let list_json = Bytes::from(serde_json::Value::Array(list).to_string());
        Catalog {
            inner: Arc::new(Inner {
                by_name,
                order,
                list_json,
            }),
        }
    }

    /// The animal called `name`, if it lives here.
    pub fn get(&self, name: &str) -> Option<&Entry> {
        self.inner.by_name.get(name)
    }

    /// Names in catalogue order.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.inner.order.iter().map(|n| &**n)
    }

    /// The JSON list answered by `GET /animals` with `Accept: application/json`.
    pub fn list_json(&self) -> &Bytes {
        &self.inner.list_json
    }

    pub fn len(&self) -> usize {
        self.inner.order.len()
    }

    pub fn is_empty(&self) -> bool {
        self.inner.order.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_toml(text: &str) -> Result<Catalog, Error> {
        Catalog::from_str(text, false, Path::new("farm.toml"))
    }

    #[test]
    fn builtin_has_the_talks_twelve_in_order() {
        let c = Catalog::builtin();
        assert_eq!(c.len(), 12);
        assert_eq!(c.names().next(), Some("cow"));
        assert_eq!(&c.get("rooster").unwrap().sound[..], b"Cock-a-Doodle-Doo!");
        assert_eq!(
            &c.get("cow").unwrap().json[..],
            br#"{"animal":"cow","sound":"Moo!"}"#
        );
    }

    #[test]
    fn extend_adds_and_overrides() {
        let c = parse_toml(
            "[[animals]]\nname = \"goat\"\nsound = \"Meh!\"\n[[animals]]\nname = \"cow\"\nsound = \"Mooo!\"\n",
        )
        .unwrap();
        assert_eq!(c.len(), 13);
        assert_eq!(&c.get("goat").unwrap().sound[..], b"Meh!");
        assert_eq!(&c.get("cow").unwrap().sound[..], b"Mooo!");
    }

    #[test]
    fn replace_keeps_only_the_file() {
        let c = Catalog::from_str(
            r#"{"mode":"replace","animals":[{"name":"goat","sound":"Meh!"}]}"#,
            true,
            Path::new("farm.json"),
        )
        .unwrap();
        assert_eq!(c.names().collect::<Vec<_>>(), ["goat"]);
        assert!(c.get("cow").is_none());
    }

    #[test]
    fn bad_entries_are_named() {
        let err = parse_toml("[[animals]]\nname = \"go at\"\nsound = \"Meh!\"\n").unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("entry #1 (\"go at\")"), "{msg}");
        assert!(msg.contains("only ASCII letters"), "{msg}");

        let err = parse_toml(
            "[[animals]]\nname = \"goat\"\nsound = \"Meh!\"\n[[animals]]\nname = \"yak\"\n",
        )
        .unwrap_err();
        assert!(
            err.to_string()
                .contains("entry #2 (\"yak\"): missing `sound`"),
            "{err}"
        );

        let err = parse_toml(
            "[[animals]]\nname = \"a\"\nsound = \"x\"\n[[animals]]\nname = \"a\"\nsound = \"y\"\n",
        )
        .unwrap_err();
        assert!(err.to_string().contains("appears twice"), "{err}");

        let err = parse_toml("mode = \"replace\"\n").unwrap_err();
        assert!(err.to_string().contains("no animals"), "{err}");

        let err = parse_toml("mode = \"sideways\"\n").unwrap_err();
        assert!(err.to_string().contains("does not parse"), "{err}");
    }

    #[test]
    fn name_rules() {
        assert_eq!(validate_name("cow"), Ok(()));
        assert_eq!(validate_name("big_cow-2"), Ok(()));
        assert_eq!(validate_name(""), Err(NameError::Empty));
        assert_eq!(validate_name(&"a".repeat(65)), Err(NameError::TooLong));
        assert_eq!(validate_name("c o w"), Err(NameError::BadChar));
        assert_eq!(validate_name("cow/moo"), Err(NameError::BadChar));
        assert_eq!(validate_name("kuh\u{e4}"), Err(NameError::BadChar));
    }
}
