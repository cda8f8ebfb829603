//! The hub's error type and how each variant answers over HTTP: the right
//! status and a one-line reason as the body.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

/// Everything a hub request can fail with.
#[derive(Debug, thiserror::Error)]
pub enum HubError {
    /// Malformed request: bad topic name, bad `since`, bad format (`400`).
    #[error("{0}")]
    BadRequest(String),
    /// No or invalid token (`401`).
    #[error("{0}")]
    Unauthorized(String),
    /// Valid token that does not cover the topic (`403`).
    #[error("{0}")]
    Forbidden(String),
    /// Not found (`404`).
    #[error("{0}")]
    NotFound(String),
    /// The body did not arrive within `--body-timeout` (`408`).
    #[error("{0}")]
    Timeout(String),
    /// The `Host` is not a name this hub answers to (`421`): DNS rebinding
    /// or a misconfigured proxy (`origin.rs`).
    #[error("{0}")]
    Misdirected(String),
    /// Message larger than `--max-message` (`413`).
    #[error("message larger than {0} bytes")]
    TooLarge(usize),
    /// Publishing too fast (`429` with `Retry-After` in whole seconds).
    #[error("publishing too fast: retry in {0} s")]
    RateLimited(u64),
    /// Backend unavailable, limits reached, shutting down (`503`).
    #[error("{0}")]
    Unavailable(String),
}

impl HubError {
    pub fn status(&self) -> StatusCode {
        match self {
            HubError::BadRequest(_) => StatusCode::BAD_REQUEST,
            HubError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            HubError::Forbidden(_) => StatusCode::FORBIDDEN,
            HubError::NotFound(_) => StatusCode::NOT_FOUND,
            HubError::Misdirected(_) => StatusCode::MISDIRECTED_REQUEST,
            HubError::Timeout(_) => StatusCode::REQUEST_TIMEOUT,
            HubError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            HubError::RateLimited(_) => StatusCode::TOO_MANY_REQUESTS,
            HubError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
        }
    }
}

impl HubError {
    /// The header that goes with the status, if any: when to retry, or
    /// how to authenticate.
    pub fn extra_header(&self) -> Option<(&'static str, String)> {
        match self {
            HubError::RateLimited(secs) => Some(("retry-after", secs.to_string())),
            HubError::Unavailable(_) => Some(("retry-after", "1".into())),
            HubError::Unauthorized(_) => Some(("www-authenticate", "Bearer".into())),
            _ => None,
        }
    }

    /// Logs a failure on the server's side (5xx), whichever path answers.
    fn note(&self) {
        if self.status().is_server_error() {
            tracing::warn!(error = %self, "hub request failed");
        }
    }

    /// The whole answer for a socket the hub writes itself (the fast path):
    /// the same status, headers and body as [`IntoResponse`], through the
    /// gate's one error writer, and `connection: close`.
    pub fn to_bytes(&self) -> bytes::BytesMut {
        self.note();
        let extra = self.extra_header();
        let extra: Vec<(&str, &[u8])> = extra
            .iter()
            .map(|(name, value)| (*name, value.as_bytes()))
            .collect();
        gate::write::error(self.status(), &self.to_string(), &extra)
    }
}

impl IntoResponse for HubError {
    fn into_response(self) -> Response {
        self.note();
        let mut resp = (self.status(), format!("{self}\n")).into_response();
        let headers = resp.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        );
        if let Some((name, value)) = self.extra_header() {
            if let Ok(value) = HeaderValue::from_str(&value) {
                headers.insert(name, value);
            }
        }
        resp
    }
}
