//! The one error type of the `animals` library. Server-side problems that
//! become HTTP answers are handled in `server.rs`; these variants are what a
//! caller of the library can get back: a catalogue that does not load, or an
//! animal the client could not fetch.

use std::path::PathBuf;
use std::time::Duration;

/// Everything that can go wrong in the `animals` library.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The catalogue file could not be read.
    #[error("cannot read catalogue {path}: {source}")]
    CatalogRead {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// The catalogue file is not valid TOML or JSON of the expected shape.
    #[error("catalogue {path} does not parse: {reason}")]
    CatalogParse { path: PathBuf, reason: String },

    /// One entry of the catalogue is invalid; `entry` names it (its position
    /// and, when it has one, its name).
    #[error("catalogue {path}: entry {entry}: {reason}")]
    CatalogEntry {
        path: PathBuf,
        entry: String,
        reason: String,
    },

    /// The scenario file could not be read.
    #[error("cannot read scenario {path}: {source}")]
    ScenarioRead {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// The scenario file is not valid TOML, or a rule in it is wrong.
    #[error("scenario {path}: {reason}")]
    ScenarioParse { path: PathBuf, reason: String },

    /// The base URL given to the client is not usable.
    #[error("bad base URL {url:?}: {reason}")]
    BadUrl { url: String, reason: String },

    /// The server answered with a non-2xx status (the talk raises here too).
    /// `body` is the server's text, trimmed.
    #[error("HTTP {status}: {body}")]
    Status { status: u16, body: String },

    /// No answer within the per-request timeout.
    #[error("timed out after {0:?}")]
    Timeout(Duration),

    /// Connecting, sending or reading failed.
    #[error("{0}")]
    Transport(String),
}

impl Error {
    /// Builds a `Transport` error from reqwest's, keeping the whole chain of
    /// causes in one line (reqwest's top-level message alone is vague).
    pub(crate) fn transport(err: &reqwest::Error) -> Error {
        let mut msg = err.to_string();
        let mut source = std::error::Error::source(err);
        while let Some(cause) = source {
            msg.push_str(": ");
            msg.push_str(&cause.to_string());
            source = cause.source();
        }
        Error::Transport(msg)
    }
}
