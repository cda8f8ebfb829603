//! Which requests the hub answers, judged by `Host` and `Origin`: the
//! defence against DNS rebinding and cross-site requests.
//!
//! A hub on `127.0.0.1` is still reachable from a browser on the same
//! machine. A page on another site can `POST` to it (a form or `fetch` in
//! `no-cors` mode needs no permission), and open a WebSocket to it (the
//! WebSocket handshake has no CORS check at all). With DNS rebinding, a
//! name the attacker controls resolves to `127.0.0.1`, and the browser then
//! believes the hub *is* that site. Two checks close both:
//!
//! - **Host.** The `Host` header must name the server: a loopback name, the
//!   address it is bound to, or a name given with `--allowed-host` (`*`
//!   turns the check off). A rebound name fails here: `421` with a reason.
//! - **Origin**, on publishes and WebSocket upgrades. A browser sends
//!   `Origin` with both; it must be the hub's own origin (the scheme and
//!   the `Host` the request was sent to) or one of `--cors-origin`
//!   (`*`: any). Otherwise `403` with a reason. Clients that send no
//!   `Origin` (curl, `coop pub`, `coop sub`, servers) are unaffected:
//!   forging it is only possible outside a browser, where the browser's
//!   ambient credentials, the point of the attack, do not exist.

use axum::http::{header, HeaderMap, Method};

use crate::error::HubError;

/// Hosts the hub answers to. Empty: any (`--allowed-host '*'`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AllowedHosts(Vec<String>);

impl AllowedHosts {
    /// Any host at all: the check is off.
    pub fn any() -> AllowedHosts {
        AllowedHosts(Vec::new())
    }

    /// The loopback names, `bind` (unless it is the unspecified address)
    /// and `extra` names (lower-cased, without ports). `*` among `extra`
    /// allows any host.
    pub fn new(bind: std::net::IpAddr, extra: &[String]) -> AllowedHosts {
        if extra.iter().any(|h| h.trim() == "*") {
            return AllowedHosts::any();
        }
        let mut names: Vec<String> = ["localhost", "127.0.0.1", "::1"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        if !bind.is_unspecified() {
            names.push(bind.to_string());
        }
        names.extend(extra.iter().map(|h| h.trim().to_ascii_lowercase()));
        names.sort();
        names.dedup();
        AllowedHosts(names)
    }

    /// Does `host` (a `Host` header value, with or without a port) name
    /// this server?
    pub fn allows(&self, host: &str) -> bool {
        if self.0.is_empty() {
            return true;
        }
        let name = host_name(host).to_ascii_lowercase();
        // Anything under `localhost.` resolves to loopback by RFC 6761.
        self.0.contains(&name) || name.ends_with(".localhost")
    }

    /// The names, for messages.
    pub fn names(&self) -> &[String] {
        &self.0
    }
}

/// The name part of a `Host` value: `[::1]:8080` -> `::1`, `a:80` -> `a`.
fn host_name(host: &str) -> &str {
    let host = host.trim();
    if let Some(rest) = host.strip_prefix('[') {
        return rest.split(']').next().unwrap_or("");
    }
    match host.rsplit_once(':') {
        Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) => name,
        _ => host,
    }
}

/// Checks a request's `Host` (always) and `Origin` (on publishes and
/// WebSocket upgrades) against `hosts` and the CORS `origins`.
pub fn check(
    hosts: &AllowedHosts,
    origins: &[String],
    method: &Method,
    headers: &HeaderMap,
) -> Result<(), HubError> {
    let host = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    // HTTP/2 requests carry the authority in the URI, not in `Host`; the
    // caller passes it as `Host` when it has it. No host at all: HTTP/1.0
    // or a hand-made request, not a browser.
    if !host.is_empty() && !hosts.allows(host) {
        return Err(HubError::Misdirected(format!(
            "host {:?} is not a name this hub answers to (start it with --allowed-host {})",
            host_name(host),
            host_name(host)
        )));
    }
    let upgrade = headers
        .get(header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("websocket"));
    if *method != Method::POST && !upgrade {
        return Ok(());
    }
    let Some(origin) = headers.get(header::ORIGIN) else {
        return Ok(());
    };
    let origin = origin.to_str().unwrap_or("").trim();
    if origins
        .iter()
        .any(|o| o == "*" || o.eq_ignore_ascii_case(origin))
    {
        return Ok(());
    }
    // Same origin: the page was served by this hub, under the name the
    // request was sent to.
    let own = origin
        .strip_prefix("http://")
        .or_else(|| origin.strip_prefix("https://"))
        .is_some_and(|rest| !host.is_empty() && rest.eq_ignore_ascii_case(host));
    if own {
        return Ok(());
    }
    Err(HubError::Forbidden(format!(
        "cross-origin {} from {origin:?} refused (allow it with --cors-origin {origin})",
        if upgrade { "WebSocket" } else { "publish" },
    )))
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn hosts_are_loopback_names_the_bind_address_and_extras() {
        let hosts = AllowedHosts::new("127.0.0.1".parse().unwrap(), &["Hub.Example".into()]);
        for ok in [
            "localhost:8080",
            "127.0.0.1",
            "[::1]:80",
            "hub.example",
            "a.localhost",
        ] {
            assert!(hosts.allows(ok), "{ok}");
        }
        for bad in ["evil.example", "127.0.0.2", "localhost.evil.example"] {
            assert!(!hosts.allows(bad), "{bad}");
        }
        assert!(AllowedHosts::new("0.0.0.0".parse().unwrap(), &["*".into()]).allows("x"));
    }

    #[test]
    fn cross_origin_publishes_and_upgrades_are_refused_others_pass() {
        let hosts = AllowedHosts::new("127.0.0.1".parse().unwrap(), &[]);
        let post = Method::POST;
        let get = Method::GET;
        let evil = [
            ("host", "127.0.0.1:8080"),
            ("origin", "http://evil.example"),
        ];
        assert!(check(&hosts, &[], &post, &headers(&evil)).is_err());
        assert!(
            check(&hosts, &[], &get, &headers(&evil)).is_ok(),
            "plain GET"
        );
        let ws = [
            ("host", "127.0.0.1:8080"),
            ("origin", "http://evil.example"),
            ("upgrade", "websocket"),
        ];
        assert!(check(&hosts, &[], &get, &headers(&ws)).is_err());
        let allowed = ["http://evil.example".to_string()];
        assert!(check(&hosts, &allowed, &post, &headers(&evil)).is_ok());
        let own = [
            ("host", "127.0.0.1:8080"),
            ("origin", "http://127.0.0.1:8080"),
        ];
        assert!(check(&hosts, &[], &post, &headers(&own)).is_ok());
        let curl = [("host", "127.0.0.1:8080")];
        assert!(check(&hosts, &[], &post, &headers(&curl)).is_ok());
        let rebound = [("host", "evil.example:8080")];
        let err = check(&hosts, &[], &get, &headers(&rebound)).unwrap_err();
        assert_eq!(err.status(), 421);
    }
}
