//! Publish latency (`coop bench publish`): one publisher, closed loop, over
//! one keep-alive connection; each publish goes to its own topic name of a
//! chosen length, so the hub matches every live pattern against a new
//! name each time (the path an adversarial pattern used to stall).
//!
//! The run stops after `count` publishes or at `limit`, whichever comes
//! first: against a hub that stalls, the report says how far it got
//! instead of hanging.

use std::time::{Duration, Instant};

use serde::Serialize;

use crate::summary::{new_histogram, Latency};
use crate::target::{connect, Target};
use crate::BenchError;

/// What to publish.
#[derive(Debug, Clone)]
pub struct PublishConfig {
    /// The hub's base URL (`http://127.0.0.1:8080`).
    pub url: String,
    /// Publishes to send.
    pub count: usize,
    /// Length of each topic name (8 to 128): `prefix`, then the
    /// publish's number, padded with `a`s in between.
    pub topic_len: usize,
    /// Start of every topic name.
    pub prefix: String,
    /// Stop here even if not every publish was answered.
    pub limit: Duration,
}

/// The result of a run.
#[derive(Debug, Clone, Serialize)]
pub struct PublishReport {
    pub url: String,
    pub count: usize,
    pub topic_len: usize,
    /// Publishes answered `200`.
    pub ok: usize,
    /// Publishes answered otherwise, or not answered before `limit`.
    pub failed: usize,
    /// Whether the run hit `limit` before `count` publishes.
    pub timed_out: bool,
    pub wall_secs: f64,
    pub latency: Latency,
    pub first_error: Option<String>,
}

impl PublishReport {
    pub fn passed(&self) -> bool {
        self.ok == self.count
    }
}

/// The `i`th topic: `prefix`, `a`s, then `i`, `len` bytes in all.
fn topic(prefix: &str, i: usize, len: usize) -> String {
    let n = i.to_string();
    let pad = len.saturating_sub(prefix.len() + n.len());
    format!("{prefix}{}{n}", "a".repeat(pad))
}

pub async fn run(cfg: PublishConfig) -> Result<PublishReport, BenchError> {
    if cfg.count == 0 {
        return Err(BenchError::BadParameter(
            "--count must be at least 1".into(),
        ));
    }
    if !(8..=128).contains(&cfg.topic_len) || cfg.prefix.len() + 4 > cfg.topic_len {
        return Err(BenchError::BadParameter(format!(
            "--topic-len {} must be 8 to 128 and leave room after the prefix",
            cfg.topic_len
        )));
    }
    let target = Target::parse(&cfg.url).await?;
    let mut stream = connect(target.addr, None)
        .await
        .map_err(|e| BenchError::io(format!("connecting to {}", target.addr), e))?;
    let mut hist = new_histogram();
    let mut buf = Vec::new();
    let (mut ok, mut failed, mut first_error) = (0, 0, None);
    let started = Instant::now();
    let deadline = tokio::time::Instant::now() + cfg.limit;
    let mut timed_out = false;
    for i in 0..cfg.count {
        let request = format!(
            "POST /topics/{} HTTP/1.1\r\nHost: {}\r\nUser-Agent: coop-bench\r\nContent-Length: 1\r\n\r\nx",
            topic(&cfg.prefix, i, cfg.topic_len),
            target.authority
        );
        let t = Instant::now();
        let answer = tokio::time::timeout_at(
            deadline,
            crate::http::round_trip(&mut stream, request.as_bytes(), &mut buf),
        )
        .await;
        let took = t.elapsed();
        match answer {
            Err(_) => {
                timed_out = true;
                failed += cfg.count - i;
                first_error.get_or_insert_with(|| format!("no answer within {:?}", cfg.limit));
                break;
            }
            Ok(Ok(resp)) if resp.status == 200 => {
                ok += 1;
                let _ = hist.record((took.as_micros() as u64).max(1));
            }
            Ok(Ok(resp)) => {
                failed += 1;
                first_error.get_or_insert_with(|| {
                    format!(
                        "HTTP {}: {}",
                        resp.status,
                        String::from_utf8_lossy(&resp.body).trim()
                    )
                });
            }
            Ok(Err(e)) => {
                failed += cfg.count - i;
                first_error.get_or_insert_with(|| e.to_string());
                break;
            }
        }
    }
    Ok(PublishReport {
        url: cfg.url,
        count: cfg.count,
        topic_len: cfg.topic_len,
        ok,
        failed,
        timed_out,
        wall_secs: started.elapsed().as_secs_f64(),
        latency: Latency::from_histogram(&hist),
        first_error,
    })
}

#[cfg(test)]
mod tests {
    use super::topic;

    #[test]
    fn topics_have_the_asked_length_and_are_distinct() {
        assert_eq!(topic("bench.", 7, 64).len(), 64);
        assert_eq!(topic("bench.", 1999, 64).len(), 64);
        assert_ne!(topic("b.", 1, 16), topic("b.", 11, 16));
        assert!(topic("b.", 12, 16).ends_with("aa12"));
    }
}
