//! What one client, and all of them, can make the gate hold: connections
//! (in all and per address) and requests being answered.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use axum::response::{IntoResponse, Response};
use bytes::BytesMut;
use http::{header, HeaderValue, StatusCode};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// The gate's limits, each with a `coop serve` flag.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Open connections at most (`--max-connections`); more get `503`.
    pub max_connections: usize,
    /// Open connections from one address at most (IPv4, or IPv6 /64;
    /// `--max-connections-per-ip`); more get `503`.
    pub max_connections_per_ip: usize,
    /// Requests being answered at once, on every connection and stream
    /// (`--max-in-flight`); more get `503`. A request counts from its
    /// parsed head until its answer starts (a streaming answer stops
    /// counting once its head is sent; it holds a connection instead).
    pub max_in_flight: usize,
    /// Concurrent streams on one HTTP/2 connection (`--h2-max-streams`).
    pub h2_max_streams: u32,
    /// Time a client has to send a request head, from its connection or
    /// from the end of the previous answer (`--header-timeout`); also how
    /// long an idle keep-alive connection stays open.
    pub header_timeout: Duration,
    /// Largest request head (`--max-header-bytes`; hyper answers `431`).
    pub max_header_bytes: usize,
    /// A connection whose writes make no progress this long (its client
    /// stopped reading and the socket buffer is full) is closed
    /// (`--write-timeout`). Fast paths that write themselves apply it too.
    pub write_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_connections: 16_384,
            max_connections_per_ip: 12_288,
            max_in_flight: 16_384,
            h2_max_streams: 256,
            header_timeout: Duration::from_secs(10),
            max_header_bytes: 16 * 1024,
            write_timeout: Duration::from_secs(30),
        }
    }
}

/// Why a connection or a request was refused: rendered the same way on
/// the socket and through hyper.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    Connections,
    PerAddress,
    InFlight,
}

impl Refusal {
    pub fn reason(self) -> &'static str {
        match self {
            Refusal::Connections => {
                "Too many connections: the server is at its limit (--max-connections)."
            }
            Refusal::PerAddress => {
                "Too many connections from your address (--max-connections-per-ip)."
            }
            Refusal::InFlight => {
                "Too many requests in flight: the server is at its limit (--max-in-flight)."
            }
        }
    }

    /// The metric label.
    pub fn label(self) -> &'static str {
        match self {
            Refusal::Connections => "connections",
            Refusal::PerAddress => "per_ip",
            Refusal::InFlight => "in_flight",
        }
    }

    /// `503` with `Retry-After: 1` and the reason, for the socket.
    pub fn to_bytes(self) -> BytesMut {
        crate::write::error(
            StatusCode::SERVICE_UNAVAILABLE,
            self.reason(),
            &[("retry-after", b"1")],
        )
    }

    pub fn count(self) {
        metrics::counter!("gate_refused_total", "reason" => self.label()).increment(1);
    }
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        let mut resp = (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("{}\n", self.reason()),
        )
            .into_response();
        let headers = resp.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        );
        headers.insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        resp
    }
}

/// The key a client is counted under: its IPv4 address, or its IPv6 /64
/// (one host usually holds a whole /64). IPv4-mapped IPv6 counts as IPv4.
pub fn client_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(v4) => IpAddr::V4(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let s = v6.segments();
                IpAddr::V6(Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
            }
        },
    }
}

/// Open connections per address. An entry exists only while its address
/// has a connection open, so the table never holds more entries than
/// there are connections.
#[derive(Default)]
pub(crate) struct PerAddress {
    open: Mutex<HashMap<IpAddr, usize>>,
}

/// One connection counted against its address; uncounted on drop.
pub(crate) struct AddressSlot {
    table: Arc<PerAddress>,
    key: IpAddr,
}

impl PerAddress {
    pub(crate) fn try_open(table: &Arc<PerAddress>, ip: IpAddr, max: usize) -> Option<AddressSlot> {
        let key = client_key(ip);
        let mut open = table.open.lock().unwrap_or_else(PoisonError::into_inner);
        let count = open.entry(key).or_insert(0);
        if *count >= max {
            if *count == 0 {
                open.remove(&key);
            }
            return None;
        }
        *count += 1;
        Some(AddressSlot {
            table: table.clone(),
            key,
        })
    }
}

impl Drop for AddressSlot {
    fn drop(&mut self) {
        let mut open = self
            .table
            .open
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(count) = open.get_mut(&self.key) {
            *count -= 1;
            if *count == 0 {
                open.remove(&self.key);
            }
        }
    }
}

/// Requests being answered, over every connection.
#[derive(Clone)]
pub(crate) struct InFlight(Arc<Semaphore>);

impl InFlight {
    pub(crate) fn new(max: usize) -> InFlight {
        InFlight(Arc::new(Semaphore::new(max)))
    }

    pub(crate) fn try_start(&self) -> Option<OwnedSemaphorePermit> {
        let permit = self.0.clone().try_acquire_owned().ok();
        if permit.is_none() {
            Refusal::InFlight.count();
        }
        permit
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_are_counted_and_released() {
        let table = Arc::new(PerAddress::default());
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let one = PerAddress::try_open(&table, a, 2).unwrap();
        let two = PerAddress::try_open(&table, a, 2).unwrap();
        assert!(PerAddress::try_open(&table, a, 2).is_none());
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        assert!(PerAddress::try_open(&table, b, 2).is_some());
        drop(one);
        let _three = PerAddress::try_open(&table, a, 2).unwrap();
        drop(two);
        drop(_three);
        assert!(
            table.open.lock().unwrap().is_empty(),
            "no entry outlives its connections"
        );
    }

    #[test]
    fn ipv6_counts_by_64() {
        let a: IpAddr = "2001:db8::1".parse().unwrap();
        let b: IpAddr = "2001:db8::ffff:2".parse().unwrap();
        assert_eq!(client_key(a), client_key(b));
        let mapped: IpAddr = "::ffff:10.0.0.1".parse().unwrap();
        assert_eq!(client_key(mapped), "10.0.0.1".parse::<IpAddr>().unwrap());
    }
}
