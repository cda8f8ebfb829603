//! Faults in their TCP form: one HTTP/1.1 answer written byte by byte on a
//! socket this code owns (handed over by the fast path, [`crate::direct`]).
//!
//! Every fault the issue names is a few lines here, because nothing stands
//! between the code and the socket: a reset is `SO_LINGER` 0 then close
//! (the kernel sends `RST`, the peer's read fails with `ECONNRESET`); a
//! truncated body is a close after half of it; a malformed chunk is bytes
//! no HTTP library would write. The delay, the drip and the bandwidth cap
//! are tokio timers, so a held or dripping answer costs its task and its
//! body, never a thread. A client that goes away while the farm waits
//! (delay, black hole, slow close) ends the wait at once.
//!
//! The answer's head is the one the fast path sends (same headers, same
//! order), so a client sees the same server with and without faults.

use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use super::{Fault, Faulty, Pace, Rng};

/// What is left of the connection after a faulty answer.
#[derive(Debug, PartialEq, Eq)]
pub enum After {
    /// The answer was whole and the connection may carry the next request.
    KeepAlive,
    /// The connection is finished: drop the stream (a reset is armed on it
    /// when the fault asked for one, and dropping it sends the `RST`).
    Closed,
}

/// Pause between drip chunks at most this often: finer ticks would cost
/// timer wake-ups without making a drip any more even.
const DRIP_TICK: Duration = Duration::from_millis(10);

/// Bandwidth pacing sends a chunk this often.
const BANDWIDTH_TICK: Duration = Duration::from_millis(50);

/// Extra `Content-Length` promised by `bad-length`, beyond the real body.
pub const BAD_LENGTH_EXTRA: usize = 100;

/// Garbage is this many bytes at least, plus up to [`GARBAGE_SPREAD`].
const GARBAGE_MIN: usize = 64;
const GARBAGE_SPREAD: u64 = 449;

/// After the part of a body sent before a mid-body reset, time for those
/// bytes to leave the send buffer: a zero-linger close discards whatever
/// is still queued, and the client should see the part, then the reset.
const RESET_SETTLE: Duration = Duration::from_millis(20);

/// Writes the answer `f` (already decided) to `stream`, faults included.
/// `head_only`: a `HEAD` request (no body bytes). `close`: the client asked
/// for `Connection: close` or the server is shutting down.
/// `max_delay` ends a black hole.
pub async fn answer(
    stream: &mut TcpStream,
    f: &Faulty,
    head_only: bool,
    close: bool,
    max_delay: Duration,
) -> After {
    let o = &f.outcome;
    if !o.delay.is_zero() && wait(stream, o.delay).await.is_err() {
        return After::Closed;
    }
    // A `HEAD` answer announces the body's length and sends none of it.
    let len = f.body.len();
    let body: &[u8] = if head_only { &[] } else { &f.body };
    let half = body.len() / 2;
    let result = match o.fault {
        Some(Fault::Reset) => reset(stream),
        Some(Fault::Empty) => stream.shutdown().await,
        Some(Fault::Blackhole) => {
            let _ = wait(stream, max_delay).await;
            stream.shutdown().await
        }
        Some(Fault::Garbage) => {
            let mut rng = Rng::new(o.noise);
            let len = GARBAGE_MIN + (rng.next_u64() % GARBAGE_SPREAD) as usize;
            let mut noise = vec![0u8; len];
            rng.fill(&mut noise);
            // Never let garbage start like an HTTP status line by chance.
            noise[0] = 0;
            write_all(stream, &noise).await
        }
        Some(Fault::Truncate) => {
            async {
                write_all(stream, &head(f, Framing::Length(len), false)).await?;
                paced(stream, &body[..half], o.pace).await?;
                stream.shutdown().await
            }
            .await
        }
        Some(Fault::ResetMid) => {
            async {
                write_all(stream, &head(f, Framing::Length(len), false)).await?;
                paced(stream, &body[..half], o.pace).await?;
                stream.flush().await?;
                tokio::time::sleep(RESET_SETTLE).await;
                reset(stream)
            }
            .await
        }
        Some(Fault::BadLength) => {
            async {
                let promised = len + BAD_LENGTH_EXTRA;
                write_all(stream, &head(f, Framing::Length(promised), false)).await?;
                paced(stream, body, o.pace).await?;
                stream.shutdown().await
            }
            .await
        }
        Some(Fault::BadChunk) => {
            async {
                write_all(stream, &head(f, Framing::Chunked, false)).await?;
                if !head_only {
                    // One good chunk (half the body), then a chunk header that
                    // is not hexadecimal, the rest, and a close.
                    let mut good = format!("{:x}\r\n", half).into_bytes();
                    good.extend_from_slice(&body[..half]);
                    good.extend_from_slice(b"\r\n");
                    write_all(stream, &good).await?;
                    let mut bad = b"zz\r\n".to_vec();
                    bad.extend_from_slice(&body[half..]);
                    write_all(stream, &bad).await?;
                }
                stream.shutdown().await
            }
            .await
        }
        Some(Fault::SlowClose) => {
            async {
                write_all(stream, &head(f, Framing::Length(len), false)).await?;
                paced(stream, body, o.pace).await?;
                let _ = wait(stream, o.hold).await;
                stream.shutdown().await
            }
            .await
        }
        None => {
            async {
                write_all(stream, &head(f, Framing::Length(len), close)).await?;
                paced(stream, body, o.pace).await
            }
            .await
        }
    };
    match (result, o.fault) {
        (Ok(()), None) if !close => After::KeepAlive,
        _ => After::Closed,
    }
}

/// Arms a reset: the next close of this socket sends `RST`, not `FIN`.
fn reset(stream: &TcpStream) -> std::io::Result<()> {
    stream.set_zero_linger()
}

/// Waits `d`, or fails as soon as the client closes its side.
async fn wait(stream: &TcpStream, d: Duration) -> Result<(), ()> {
    tokio::select! {
        _ = tokio::time::sleep(d) => Ok(()),
        _ = gate::peer_closed(stream) => Err(()),
    }
}

async fn write_all(stream: &mut TcpStream, bytes: &[u8]) -> std::io::Result<()> {
    stream.write_all(bytes).await
}

/// Writes `body` at the outcome's pace.
async fn paced(stream: &mut TcpStream, body: &[u8], pace: Pace) -> std::io::Result<()> {
    for (pause, chunk) in chunks(body.len(), pace) {
        if !pause.is_zero() {
            tokio::time::sleep(pause).await;
        }
        stream.write_all(&body[chunk]).await?;
    }
    Ok(())
}

/// The body's chunks as (pause before, byte range): all at once, evenly
/// over a drip (the last byte at the end of it), or at most `n` bytes a
/// second. Shared with the HTTP/2 form so both pace alike.
pub(crate) fn chunks(len: usize, pace: Pace) -> Vec<(Duration, std::ops::Range<usize>)> {
    match pace {
        _ if len == 0 => Vec::new(),
        Pace::Burst => vec![(Duration::ZERO, 0..len)],
        Pace::Drip(total) => {
            let ticks = (total.as_nanos() / DRIP_TICK.as_nanos()).max(1);
            let n = (len as u128).min(ticks) as usize;
            let pause = total / n as u32;
            (0..n)
                .map(|i| (pause, len * i / n..len * (i + 1) / n))
                .collect()
        }
        Pace::Bandwidth(rate) => {
            let per_tick = ((rate as u128 * BANDWIDTH_TICK.as_millis()) / 1000).max(1) as usize;
            (0..len)
                .step_by(per_tick)
                .map(|start| {
                    let end = (start + per_tick).min(len);
                    let pause = Duration::from_secs_f64((end - start) as f64 / rate as f64);
                    (pause, start..end)
                })
                .collect()
        }
    }
}

enum Framing {
    Length(usize),
    Chunked,
}

/// The answer's head, written by the gate's writer as every fast path's.
fn head(f: &Faulty, framing: Framing, close: bool) -> Vec<u8> {
    let mut out = bytes::BytesMut::with_capacity(256);
    let content_type = if f.json {
        "application/json"
    } else {
        "text/plain; charset=utf-8"
    };
    let mut head =
        gate::write::Head::new(&mut out, f.outcome.status).header("content-type", content_type);
    if let Some(secs) = f.retry_after {
        head = head.header("retry-after", secs.to_string());
    }
    // hyper's order: `content-length` then `connection`; with chunks,
    // `connection` then `transfer-encoding`; the date last.
    head = match framing {
        Framing::Length(n) => {
            let head = head.length(n);
            if close {
                head.header("connection", "close")
            } else {
                head
            }
        }
        Framing::Chunked => {
            if close {
                head = head.header("connection", "close");
            }
            head.header("transfer-encoding", "chunked")
        }
    };
    head.end();
    out.to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn covers(c: &[(Duration, std::ops::Range<usize>)], len: usize) -> bool {
        let mut at = 0;
        for (_, r) in c {
            if r.start != at {
                return false;
            }
            at = r.end;
        }
        at == len
    }

    #[test]
    fn drips_spread_the_body_over_the_duration() {
        let c = chunks(100, Pace::Drip(ms(1000)));
        assert_eq!(c.len(), 100);
        assert!(covers(&c, 100));
        assert_eq!(c.iter().map(|(p, _)| *p).sum::<Duration>(), ms(1000));
        // Fewer bytes than ticks: one byte per pause.
        let c = chunks(5, Pace::Drip(ms(1000)));
        assert_eq!(c.len(), 5);
        assert!(c.iter().all(|(p, r)| *p == ms(200) && r.len() == 1));
        // A big body: chunks of several bytes every 10 ms.
        let c = chunks(10_000, Pace::Drip(ms(500)));
        assert_eq!(c.len(), 50);
        assert!(covers(&c, 10_000));
    }

    #[test]
    fn bandwidth_caps_bytes_per_second() {
        let c = chunks(2000, Pace::Bandwidth(1000));
        assert!(covers(&c, 2000));
        let total: Duration = c.iter().map(|(p, _)| *p).sum();
        assert!((total.as_secs_f64() - 2.0).abs() < 0.01, "{total:?}");
        assert!(c.iter().all(|(_, r)| r.len() <= 50));
        assert_eq!(chunks(3, Pace::Bandwidth(1)).len(), 3);
        assert_eq!(chunks(0, Pace::Drip(ms(100))).len(), 0);
        assert_eq!(chunks(7, Pace::Burst), vec![(Duration::ZERO, 0..7)]);
    }
}
