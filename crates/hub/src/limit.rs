//! Per-client publish rate limiting: one token bucket per client, where a
//! client is an IPv4 address or an IPv6 /64, and, behind a reverse proxy
//! the operator trusts, the address the proxy says it forwarded for.
//!
//! # Who is a client ([`ClientKey`])
//!
//! - An IPv4 address is one client.
//! - An IPv6 address is keyed by its /64: a single host usually owns a whole
//!   /64 (SLAAC, privacy addresses) and can rotate through 2^64 addresses,
//!   so keying on the full address would give it unlimited fresh buckets.
//!   (Someone holding a /48 still has 65,536 /64s: per-client limits cannot
//!   stop a well-provisioned attacker, only a careless or single-host one.)
//! - An IPv4-mapped IPv6 address (`::ffff:a.b.c.d`, what a dual-stack
//!   listener reports for IPv4 peers) is the IPv4 address it carries.
//! - An unknown address (the server did not provide one) is one shared
//!   client.
//!
//! # Behind a proxy ([`TrustedProxies`])
//!
//! Behind a reverse proxy every TCP peer is the proxy, so every client would
//! share one bucket. With `--trust-proxy CIDR[,CIDR]` (off by default), when
//! the TCP peer is inside one of those ranges, the client is read from the
//! forwarding header (`X-Forwarded-For` by default, or RFC 7239 `Forwarded:
//! for=` with `--proxy-header forwarded`): the **rightmost address that is
//! not itself a trusted proxy**. Everything left of it was written by the
//! client and is ignored, so a client cannot choose its own bucket by
//! sending the header itself. Only the configured header is read: a proxy
//! that sets `X-Forwarded-For` passes a client's own `Forwarded` header
//! through untouched, so reading both would let the client pick. When the
//! header is missing or unreadable, the client is the nearest hop known for
//! sure (the proxy itself): a tighter limit, never a looser one. A peer
//! outside the trusted ranges is always its own client, headers ignored.
//!
//! # The table ([`RateLimiter`])
//!
//! A fixed-size, set-associative table: a client's key is hashed (SipHash
//! with a per-process random key, so a client cannot aim at a chosen set)
//! to one of [`SETS`] sets of [`WAYS`] entries, each set behind its own
//! mutex. A check locks one set and looks at most [`WAYS`] entries: O(1),
//! whatever the number of clients, and concurrent checks rarely contend.
//! At most [`MAX_CLIENTS`] clients are tracked (about 40 bytes each, so
//! under 3 MB; sets are allocated as they fill). A new client in a full set
//! replaces the entry with the most tokens after refill: a bucket that has
//! refilled to its burst is the same as no entry, so forgetting it is free;
//! failing that, the one closest to full is forgotten (it gets the smallest
//! gift of a fresh burst), ties going to the least recently seen. A client
//! being throttled is therefore the last of its set to be forgotten. Time
//! comes from tokio's clock, so tests run on a paused clock.

use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::net::{IpAddr, Ipv6Addr};
use std::str::FromStr;
use std::sync::Mutex;
use std::time::Duration;

use axum::http::HeaderMap;
pub use ipnet::IpNet;
use tokio::time::Instant;

/// Sets of the client table (a power of two).
pub const SETS: usize = 8192;
/// Entries per set: the work of one check, and how many clients hashing to
/// the same set are tracked at once.
pub const WAYS: usize = 8;
/// Most clients tracked at once (65,536).
pub const MAX_CLIENTS: usize = SETS * WAYS;

/// Who a publish is counted against. See the module docs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ClientKey {
    /// The server did not say who the peer is: all such requests share one
    /// bucket.
    Unknown,
    /// One IPv4 address (also from an IPv4-mapped IPv6 address).
    V4(u32),
    /// The upper 64 bits of an IPv6 address (its /64).
    V6(u64),
}

impl ClientKey {
    /// The key of a client address (`None`: unknown).
    pub fn of(addr: Option<IpAddr>) -> ClientKey {
        match addr.map(canonical) {
            None => ClientKey::Unknown,
            Some(IpAddr::V4(v4)) => ClientKey::V4(u32::from(v4)),
            Some(IpAddr::V6(v6)) => ClientKey::V6((u128::from(v6) >> 64) as u64),
        }
    }
}

/// An IPv4-mapped IPv6 address as the IPv4 address it carries; any other
/// address unchanged.
fn canonical(addr: IpAddr) -> IpAddr {
    match addr {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(addr, IpAddr::V4),
        v4 => v4,
    }
}

/// Which forwarding header a trusted proxy writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ProxyHeader {
    /// `X-Forwarded-For: client, proxy1, proxy2` (nginx, HAProxy, most
    /// load balancers).
    #[default]
    XForwardedFor,
    /// RFC 7239 `Forwarded: for=client, for="[2001:db8::1]:4711"`.
    Forwarded,
}

impl FromStr for ProxyHeader {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "x-forwarded-for" => Ok(ProxyHeader::XForwardedFor),
            "forwarded" => Ok(ProxyHeader::Forwarded),
            _ => Err(format!(
                "unknown proxy header {s:?}: expected x-forwarded-for or forwarded"
            )),
        }
    }
}

/// The reverse proxies whose forwarding header is believed (empty: none,
/// the default; the TCP peer is then always the client).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustedProxies {
    pub nets: Vec<IpNet>,
    pub header: ProxyHeader,
}

/// Most forwarding entries looked at, from the right. A chain longer than
/// this many trusted hops ends at the last one examined (it is a proxy we
/// trust, so the limit is tighter, not looser).
pub const MAX_HOPS: usize = 16;

impl TrustedProxies {
    /// Parses `10.0.0.0/8,192.168.1.7,::1`: CIDRs or bare addresses (a bare
    /// address is a /32 or /128).
    pub fn parse_nets(list: &str) -> Result<Vec<IpNet>, String> {
        list.split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(|s| {
                IpNet::from_str(s)
                    .or_else(|_| IpAddr::from_str(s).map(IpNet::from))
                    .map(|n| n.trunc())
                    .map_err(|_| format!("{s:?} is not an address or a CIDR like 10.0.0.0/8"))
            })
            .collect()
    }

    fn trusts(&self, addr: IpAddr) -> bool {
        let addr = canonical(addr);
        self.nets.iter().any(|n| n.contains(&addr))
    }

    /// The client of a request that came from TCP peer `peer` with
    /// `headers`: see the module docs. Reads at most [`MAX_HOPS`] entries.
    pub fn client(&self, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
        let peer = canonical(peer);
        if !self.trusts(peer) {
            return peer;
        }
        let name = match self.header {
            ProxyHeader::XForwardedFor => "x-forwarded-for",
            ProxyHeader::Forwarded => "forwarded",
        };
        // Several header lines are one list, in order (RFC 9110 5.3); walk
        // it from the right: the last entry was written by the nearest hop.
        let mut nearest = peer;
        let entries = headers
            .get_all(name)
            .iter()
            .rev()
            .flat_map(|v| v.as_bytes().rsplit(|&b| b == b','));
        for entry in entries.take(MAX_HOPS) {
            let addr = std::str::from_utf8(entry)
                .ok()
                .and_then(|e| match self.header {
                    ProxyHeader::XForwardedFor => parse_node(e),
                    ProxyHeader::Forwarded => forwarded_for(e).and_then(parse_node),
                });
            let Some(addr) = addr.map(canonical) else {
                // Garbage or an obfuscated node: nothing to the left of it
                // can be believed, so the nearest known hop is the client.
                return nearest;
            };
            if !self.trusts(addr) {
                return addr;
            }
            nearest = addr;
        }
        nearest
    }
}

/// The `for=` value of one `Forwarded` element (`for=1.2.3.4;proto=https`),
/// unquoted.
fn forwarded_for(element: &str) -> Option<&str> {
    element.split(';').find_map(|pair| {
        let (k, v) = pair.trim().split_once('=')?;
        k.trim()
            .eq_ignore_ascii_case("for")
            .then(|| v.trim().trim_matches('"'))
    })
}

/// An address as proxies write it: `1.2.3.4`, `1.2.3.4:5678`, `2001:db8::1`,
/// `[2001:db8::1]`, `[2001:db8::1]:4711`.
fn parse_node(s: &str) -> Option<IpAddr> {
    let s = s.trim();
    if let Ok(ip) = s.parse::<IpAddr>() {
        return Some(ip);
    }
    if let Some(rest) = s.strip_prefix('[') {
        let (ip, after) = rest.split_once(']')?;
        if !(after.is_empty() || after.starts_with(':')) {
            return None;
        }
        return ip.parse::<Ipv6Addr>().ok().map(IpAddr::V6);
    }
    let (ip, port) = s.rsplit_once(':')?;
    port.parse::<u16>().ok()?;
    ip.parse::<std::net::Ipv4Addr>().ok().map(IpAddr::V4)
}

/// Token buckets keyed by client. See the module docs for the table.
pub struct RateLimiter {
    /// Tokens added per second.
    rate: f64,
    /// Bucket size: the burst a client may publish at once.
    burst: f64,
    /// Keyed randomly per process: which set a client lands in cannot be
    /// predicted, so no client can crowd out a chosen other one.
    hasher: RandomState,
    /// `SETS` sets; a std mutex each, held for a handful of comparisons,
    /// never across an await. Each `Vec` grows to at most `WAYS`.
    sets: Box<[Mutex<Vec<Entry>>]>,
}

#[derive(Clone, Copy)]
struct Entry {
    key: ClientKey,
    tokens: f64,
    at: Instant,
}

impl RateLimiter {
    /// `rate` publishes per second per client, bursts of `burst`.
    pub fn new(rate: f64, burst: u32) -> RateLimiter {
        RateLimiter {
            rate,
            burst: f64::from(burst.max(1)),
            hasher: RandomState::new(),
            sets: (0..SETS).map(|_| Mutex::new(Vec::new())).collect(),
        }
    }

    /// Takes one token for `client`, or says how long to wait. O(`WAYS`).
    pub fn check(&self, client: ClientKey) -> Result<(), Duration> {
        let now = Instant::now();
        let set = (self.hasher.hash_one(client) as usize) % SETS;
        let mut entries = self.sets[set].lock().unwrap_or_else(|e| e.into_inner());
        let refilled = |e: &Entry| {
            (e.tokens + now.duration_since(e.at).as_secs_f64() * self.rate).min(self.burst)
        };
        let i = match entries.iter().position(|e| e.key == client) {
            Some(i) => i,
            None => {
                let fresh = Entry {
                    key: client,
                    tokens: self.burst,
                    at: now,
                };
                if entries.len() < WAYS {
                    entries.push(fresh);
                    entries.len() - 1
                } else {
                    // The fullest bucket (ties: least recently seen).
                    let victim = (0..entries.len())
                        .max_by(|&a, &b| {
                            let (ea, eb) = (&entries[a], &entries[b]);
                            refilled(ea)
                                .total_cmp(&refilled(eb))
                                .then(eb.at.cmp(&ea.at))
                        })
                        .expect("a full set has WAYS > 0 entries");
                    entries[victim] = fresh;
                    victim
                }
            }
        };
        let e = &mut entries[i];
        e.tokens = refilled(e);
        e.at = now;
        if e.tokens >= 1.0 {
            e.tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - e.tokens) / self.rate))
        }
    }

    /// Clients tracked now (for tests).
    #[cfg(test)]
    fn len(&self) -> usize {
        self.sets
            .iter()
            .map(|s| s.lock().unwrap_or_else(|e| e.into_inner()).len())
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::net::Ipv4Addr;

    fn v4(a: [u8; 4]) -> ClientKey {
        ClientKey::of(Some(IpAddr::from(a)))
    }

    fn v6(s: &str) -> ClientKey {
        ClientKey::of(Some(s.parse().unwrap()))
    }

    #[tokio::test(start_paused = true)]
    async fn a_client_gets_its_burst_then_waits_while_others_are_unaffected() {
        let limiter = RateLimiter::new(2.0, 3);
        let (a, b) = (v4([10, 0, 0, 1]), v4([10, 0, 0, 2]));
        for _ in 0..3 {
            limiter.check(a).unwrap();
        }
        let wait = limiter.check(a).unwrap_err();
        assert_eq!(wait, Duration::from_millis(500));
        limiter.check(b).unwrap();
        tokio::time::advance(Duration::from_millis(500)).await;
        limiter.check(a).unwrap();
    }

    /// Regression (issue 9, item 10): an IPv6 client rotating through its
    /// /64 got a fresh bucket per address.
    #[tokio::test(start_paused = true)]
    async fn an_ipv6_client_rotating_through_its_64_shares_one_bucket() {
        let limiter = RateLimiter::new(1.0, 2);
        limiter.check(v6("2001:db8:1:2::1")).unwrap();
        limiter.check(v6("2001:db8:1:2:ffff::9")).unwrap();
        assert!(limiter
            .check(v6("2001:db8:1:2:abcd:1234:5678:9abc"))
            .is_err());
        // The neighbouring /64 is someone else.
        limiter.check(v6("2001:db8:1:3::1")).unwrap();
        // A mapped IPv4 address is that IPv4 client.
        limiter.check(v4([192, 0, 2, 1])).unwrap();
        limiter.check(v6("::ffff:192.0.2.1")).unwrap();
        assert!(limiter.check(v4([192, 0, 2, 1])).is_err());
    }

    /// Regression (issue 9, item 10): once full, the table was scanned whole
    /// under one mutex for every new client. Now each check is O(WAYS), the
    /// table never tracks more than MAX_CLIENTS, and a throttled client is
    /// not forgotten because many others come by.
    #[tokio::test(start_paused = true)]
    async fn the_table_is_bounded_and_a_flood_of_new_clients_does_not_free_a_throttled_one() {
        let limiter = RateLimiter::new(1.0, 5);
        let throttled = v4([10, 9, 9, 9]);
        for _ in 0..5 {
            limiter.check(throttled).unwrap();
        }
        assert!(limiter.check(throttled).is_err());
        let started = std::time::Instant::now();
        for i in 0..(3 * MAX_CLIENTS as u32) {
            limiter
                .check(ClientKey::V4(0x0b00_0000 + i))
                .expect("a new client has its burst");
        }
        assert!(limiter.len() <= MAX_CLIENTS, "{}", limiter.len());
        assert!(limiter.len() > MAX_CLIENTS / 2, "{}", limiter.len());
        assert!(
            limiter.check(throttled).is_err(),
            "the throttled client was forgotten"
        );
        // About 200,000 checks: a few hundred ms even unoptimised; a full
        // scan per new client would take minutes.
        assert!(started.elapsed() < Duration::from_secs(30));
        // Once its bucket refills, it may publish again.
        tokio::time::advance(Duration::from_secs(1)).await;
        limiter.check(throttled).unwrap();
    }

    fn headers(name: &str, values: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in values {
            h.append(
                axum::http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        h
    }

    fn trusted(nets: &str, header: ProxyHeader) -> TrustedProxies {
        TrustedProxies {
            nets: TrustedProxies::parse_nets(nets).unwrap(),
            header,
        }
    }

    #[test]
    fn the_rightmost_untrusted_forwarded_address_is_the_client() {
        let t = trusted("10.0.0.0/8, ::1", ProxyHeader::XForwardedFor);
        let proxy: IpAddr = "10.0.0.5".parse().unwrap();
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        // The client's own claim (left) is ignored; the proxy's entry wins.
        let h = headers("x-forwarded-for", &["6.6.6.6, 203.0.113.7"]);
        assert_eq!(t.client(proxy, &h), ip("203.0.113.7"));
        // Trusted hops are skipped; several header lines are one list.
        let h = headers("x-forwarded-for", &["6.6.6.6, 203.0.113.7", "10.1.1.1"]);
        assert_eq!(t.client(proxy, &h), ip("203.0.113.7"));
        // Ports and brackets as proxies write them.
        let h = headers("x-forwarded-for", &["[2001:db8::7]:4711"]);
        assert_eq!(t.client(proxy, &h), ip("2001:db8::7"));
        let h = headers("x-forwarded-for", &["198.51.100.2:5555"]);
        assert_eq!(t.client(proxy, &h), ip("198.51.100.2"));
        // No header or garbage: the nearest known hop (tighter, not looser).
        assert_eq!(t.client(proxy, &HeaderMap::new()), proxy);
        let h = headers("x-forwarded-for", &["6.6.6.6, nonsense, 10.2.2.2"]);
        assert_eq!(t.client(proxy, &h), ip("10.2.2.2"));
        // A peer that is not a trusted proxy is the client, headers ignored;
        // a mapped IPv4 peer is matched against IPv4 ranges.
        let h = headers("x-forwarded-for", &["6.6.6.6"]);
        assert_eq!(t.client(ip("192.0.2.1"), &h), ip("192.0.2.1"));
        assert_eq!(t.client(ip("::ffff:10.0.0.5"), &h), ip("6.6.6.6"));
        // Only the configured header is read.
        let h = headers("forwarded", &["for=6.6.6.6"]);
        assert_eq!(t.client(proxy, &h), proxy);
        let f = trusted("10.0.0.0/8", ProxyHeader::Forwarded);
        let h = headers(
            "forwarded",
            &["for=6.6.6.6, for=\"[2001:db8::9]:80\";proto=https, For=10.3.3.3"],
        );
        assert_eq!(f.client(proxy, &h), ip("2001:db8::9"));
        let h = headers("forwarded", &["for=_hidden"]);
        assert_eq!(f.client(proxy, &h), proxy);
    }

    #[test]
    fn trusted_ranges_parse_with_reasons() {
        let nets = TrustedProxies::parse_nets("10.0.0.1/8, 192.0.2.7,2001:db8::/32").unwrap();
        assert_eq!(nets[0].to_string(), "10.0.0.0/8");
        assert_eq!(nets[1].to_string(), "192.0.2.7/32");
        assert!(TrustedProxies::parse_nets("10.0.0.0/33")
            .unwrap_err()
            .contains("CIDR"));
        assert!(TrustedProxies::parse_nets("proxy.local").is_err());
        assert!("forwarded".parse::<ProxyHeader>().is_ok());
        assert!("via".parse::<ProxyHeader>().is_err());
    }

    proptest! {
        /// Every IPv6 address of one /64 is one client; addresses of
        /// different /64s are different clients.
        #[test]
        fn ipv6_keys_are_their_64(net in any::<u64>(), a in any::<u64>(), b in any::<u64>(), other in any::<u64>()) {
            let addr = |net: u64, host: u64| {
                Some(IpAddr::V6(Ipv6Addr::from((u128::from(net) << 64) | u128::from(host))))
            };
            // Skip the IPv4-mapped range (::ffff:0:0/96 lies in net 0).
            prop_assume!(net != 0 && other != 0);
            prop_assert_eq!(ClientKey::of(addr(net, a)), ClientKey::of(addr(net, b)));
            prop_assert_eq!(ClientKey::of(addr(net, a)), ClientKey::V6(net));
            if net != other {
                prop_assert_ne!(ClientKey::of(addr(net, a)), ClientKey::of(addr(other, a)));
            }
        }

        /// An IPv4 address and its IPv4-mapped IPv6 form are one client;
        /// distinct IPv4 addresses are distinct clients, never equal to an
        /// IPv6 client's key.
        #[test]
        fn ipv4_keys_are_the_address_mapped_or_not(a in any::<u32>(), b in any::<u32>(), v6 in any::<u128>()) {
            let a4 = Ipv4Addr::from(a);
            let key = ClientKey::of(Some(IpAddr::V4(a4)));
            prop_assert_eq!(key, ClientKey::of(Some(IpAddr::V6(a4.to_ipv6_mapped()))));
            prop_assert_eq!(key, ClientKey::V4(a));
            if a != b {
                prop_assert_ne!(key, ClientKey::of(Some(IpAddr::V4(Ipv4Addr::from(b)))));
            }
            let v6 = Ipv6Addr::from(v6);
            if v6.to_ipv4_mapped().is_none() {
                prop_assert!(matches!(ClientKey::of(Some(IpAddr::V6(v6))), ClientKey::V6(_)));
            }
        }

        /// Whatever a client writes in the header, the answer is its own
        /// forwarded address or a trusted hop, never an address it chose
        /// to the left of the proxy's entry; and never a panic.
        #[test]
        fn forged_forwarding_entries_never_choose_the_client(
            forged in "[ -~]{0,200}",
            client in any::<[u8; 4]>(),
        ) {
            let t = trusted("10.0.0.0/8", ProxyHeader::XForwardedFor);
            let proxy: IpAddr = "10.0.0.5".parse().unwrap();
            let client = IpAddr::from(client);
            prop_assume!(!t.trusts(client));
            let mut h = HeaderMap::new();
            if let Ok(v) = forged.parse() {
                h.append("x-forwarded-for", v);
            }
            h.append("x-forwarded-for", client.to_string().parse().unwrap());
            prop_assert_eq!(t.client(proxy, &h), client);
            // And with only the forged part: some address, no panic.
            let mut h = HeaderMap::new();
            if let Ok(v) = forged.parse() {
                h.append("x-forwarded-for", v);
            }
            let _ = t.client(proxy, &h);
            let f = trusted("10.0.0.0/8", ProxyHeader::Forwarded);
            let mut h2 = HeaderMap::new();
            if let Ok(v) = forged.parse() {
                h2.append("forwarded", v);
            }
            let _ = f.client(proxy, &h2);
        }
    }
}
