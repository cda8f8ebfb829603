//! Server-side figures read from `/proc`: resident memory (`VmRSS`), its
//! peak (`VmHWM`) and CPU time (`utime + stime`) of one or more processes.
//!
//! Several pids are summed (nginx runs a master and workers). Summing
//! resident sizes counts pages shared between forked workers more than
//! once, so for nginx the sum is an upper bound; the reports say so.

use serde::Serialize;

/// One reading of the watched processes, summed.
#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq)]
pub struct ProcSample {
    /// Current resident set, KiB.
    pub rss_kib: u64,
    /// Peak resident set since start or since the last [`reset_peak`], KiB.
    pub hwm_kib: u64,
    /// User plus system CPU time, microseconds.
    pub cpu_us: u64,
}

/// Reads `/proc` for `pids` (None when the list is empty or a process is
/// gone: a benchmark without a server pid just reports no server figures).
pub fn sample(pids: &[u32]) -> Option<ProcSample> {
    if pids.is_empty() {
        return None;
    }
    let tick_us = 1_000_000 / clock_ticks_per_sec();
    let mut total = ProcSample::default();
    for pid in pids {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
        total.rss_kib += kib_field(&status, "VmRSS:").unwrap_or(0);
        total.hwm_kib += kib_field(&status, "VmHWM:").unwrap_or(0);
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        // The command name (field 2) may hold spaces; fields after the last
        // ')' are plain. utime and stime are fields 14 and 15.
        let after = &stat[stat.rfind(')')? + 1..];
        let fields: Vec<&str> = after.split_whitespace().collect();
        let utime: u64 = fields.get(11)?.parse().ok()?;
        let stime: u64 = fields.get(12)?.parse().ok()?;
        total.cpu_us += (utime + stime) * tick_us;
    }
    Some(total)
}

/// Resets the peak resident set of `pids` (`echo 5 > /proc/PID/clear_refs`,
/// needs the same user or root) so `VmHWM` covers this run only. Returns
/// whether every reset worked; when not, the peak may include earlier runs.
pub fn reset_peak(pids: &[u32]) -> bool {
    pids.iter()
        .all(|pid| std::fs::write(format!("/proc/{pid}/clear_refs"), "5").is_ok())
}

fn kib_field(status: &str, name: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with(name))?;
    line[name.len()..].split_whitespace().next()?.parse().ok()
}

/// `CLK_TCK`, the unit of `utime`/`stime`: asked of `getconf` once, 100
/// (the Linux default on every common architecture) if that fails.
fn clock_ticks_per_sec() -> u64 {
    static TICKS: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    *TICKS.get_or_init(|| {
        std::process::Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8(o.stdout).ok())
            .and_then(|s| s.trim().parse().ok())
            .filter(|&t: &u64| t > 0)
            .unwrap_or(100)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_this_process() {
        let s = sample(&[std::process::id()]).expect("own /proc entry");
        assert!(s.rss_kib > 0 && s.hwm_kib >= s.rss_kib);
    }

    #[test]
    fn missing_process_gives_none() {
        assert_eq!(sample(&[]), None);
        assert_eq!(sample(&[u32::MAX]), None);
    }
}
