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

    /// The connection was reset (`ECONNRESET`), or over HTTP/2 the stream
    /// (`RST_STREAM`), before or during the answer.
    #[error("connection reset: {0}")]
    Reset(String),

    /// The server closed the connection before any answer.
    #[error("closed before any answer: {0}")]
    Closed(String),

    /// The answer's body ended early or broke: a close half-way, a
    /// `Content-Length` larger than the body, a malformed chunk.
    #[error("body cut short: {0}")]
    Truncated(String),

    /// What came back was not HTTP.
    #[error("not an HTTP answer: {0}")]
    BadAnswer(String),

    /// Connecting, sending or reading failed otherwise.
    #[error("{0}")]
    Transport(String),
}

impl Error {
    /// Builds a `Transport` error from reqwest's, keeping the whole chain of
    /// causes in one line (reqwest's top-level message alone is vague).
    pub(crate) fn transport(err: &reqwest::Error) -> Error {
        Error::Transport(chain(err))
    }

    /// Names what happened to a request that failed in transport:
    /// `in_body` when the head had arrived and the body was being read.
    /// The causes are looked for in the error's source chain (reqwest
    /// wraps hyper's and h2's errors, which wrap the socket's).
    pub(crate) fn from_reqwest(err: &reqwest::Error, in_body: bool) -> Error {
        let (mut reset, mut incomplete, mut parse) = (false, false, false);
        let mut source: Option<&(dyn std::error::Error + 'static)> = Some(err);
        while let Some(cause) = source {
            if let Some(io) = cause.downcast_ref::<std::io::Error>() {
                reset |= io.kind() == std::io::ErrorKind::ConnectionReset;
            }
            if let Some(h) = cause.downcast_ref::<hyper::Error>() {
                incomplete |= h.is_incomplete_message();
                parse |= h.is_parse();
            }
            if let Some(h2) = cause.downcast_ref::<h2::Error>() {
                reset |= h2.is_reset();
            }
            source = cause.source();
        }
        let msg = chain(err);
        if reset {
            Error::Reset(msg)
        } else if in_body {
            Error::Truncated(msg)
        } else if parse {
            Error::BadAnswer(msg)
        } else if incomplete {
            Error::Closed(msg)
        } else {
            Error::Transport(msg)
        }
    }

    /// What kind of failure this is, for counting ([`crate::client::Mishaps`]).
    pub fn kind(&self) -> &'static str {
        match self {
            Error::Status { .. } => "status",
            Error::Timeout(_) => "timeout",
            Error::Reset(_) => "reset",
            Error::Closed(_) => "closed",
            Error::Truncated(_) => "truncated",
            Error::BadAnswer(_) => "bad answer",
            _ => "other",
        }
    }
}

/// An error and its causes in one line.
fn chain(err: &reqwest::Error) -> String {
    let mut msg = err.to_string();
    let mut source = std::error::Error::source(err);
    while let Some(cause) = source {
        msg.push_str(": ");
        msg.push_str(&cause.to_string());
        source = cause.source();
    }
    msg
}
