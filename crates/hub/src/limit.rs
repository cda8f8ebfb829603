//! Per-client publish rate limiting: one token bucket per client address.
//!
//! The table of buckets is bounded ([`MAX_CLIENTS`]): when full, buckets
//! that have refilled completely (clients that are within their rate) are
//! forgotten first; if none can be, the oldest is. Time comes from tokio's
//! clock, so tests can run on a paused clock.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

/// Most clients tracked at once (about 48 bytes each).
const MAX_CLIENTS: usize = 65_536;

/// Token buckets keyed by client address.
pub struct RateLimiter {
    /// Tokens added per second.
    rate: f64,
    /// Bucket size: the burst a client may publish at once.
    burst: f64,
    buckets: Mutex<HashMap<Option<IpAddr>, Bucket>>,
}

#[derive(Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

impl RateLimiter {
    /// `rate` publishes per second per client, bursts of `burst`.
    pub fn new(rate: f64, burst: u32) -> RateLimiter {
        RateLimiter {
            rate,
            burst: f64::from(burst.max(1)),
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Takes one token for `client` (`None`: address unknown, all such
    /// clients share one bucket), or says how long to wait.
    pub fn check(&self, client: Option<IpAddr>) -> Result<(), Duration> {
        let now = Instant::now();
        let mut buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        if buckets.len() >= MAX_CLIENTS && !buckets.contains_key(&client) {
            let (rate, burst) = (self.rate, self.burst);
            buckets.retain(|_, b| b.tokens + now.duration_since(b.at).as_secs_f64() * rate < burst);
            if buckets.len() >= MAX_CLIENTS {
                if let Some(oldest) = buckets.iter().min_by_key(|(_, b)| b.at).map(|(k, _)| *k) {
                    buckets.remove(&oldest);
                }
            }
        }
        let b = buckets.entry(client).or_insert(Bucket {
            tokens: self.burst,
            at: now,
        });
        b.tokens = (b.tokens + now.duration_since(b.at).as_secs_f64() * self.rate).min(self.burst);
        b.at = now;
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - b.tokens) / self.rate))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_client_gets_its_burst_then_waits_while_others_are_unaffected() {
        let limiter = RateLimiter::new(2.0, 3);
        let a = Some(IpAddr::from([10, 0, 0, 1]));
        let b = Some(IpAddr::from([10, 0, 0, 2]));
        for _ in 0..3 {
            limiter.check(a).unwrap();
        }
        let wait = limiter.check(a).unwrap_err();
        assert_eq!(wait, Duration::from_millis(500));
        limiter.check(b).unwrap();
        tokio::time::advance(Duration::from_millis(500)).await;
        limiter.check(a).unwrap();
    }
}
