#!/usr/bin/env bash
# Figures of issue 12, failover: scripts/bench/failover.sh [KILLS] [MIN_REPLICAS]
# The chaos test's failover scenario (crates/coop/tests/cli/chaos.rs,
# `failover_figures`, ignored in the suite) on loopback: a primary
# `redis-server`, a replica and three sentinels (down-after 1 s) of its own,
# two `coop serve` nodes on the sentinels, a steady publisher through each,
# resuming subscribers on both; the primary `kill -9`ed KILLS times (default
# 50), restarted each time as a replica of the new one. With MIN_REPLICAS
# (default 0) as `--redis-min-replicas`.
# Prints, per node, the time from each primary's death to the first publish
# acknowledged through it (median, max; goal: under 5 s), and the account:
# acknowledged, delivered, duplicated, reported as gap, silently missing.
# The release build is measured (PROFILE=dev measures the debug build:
# the recovery time is the sentinels' and the nodes' timers, not code
# speed). Bounded: the run is stopped after LIMIT
# (default 30 min); the log is kept in $OUT/failover.log.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
OUT="${OUT:-$ROOT/target/bench-results}"
LIMIT="${LIMIT:-30m}"
mkdir -p "$OUT"
export CHAOS_KILLS="${1:-50}" CHAOS_MIN_REPLICAS="${2:-0}"
cd "$ROOT"
PROFILE="${PROFILE:-release}"
if [ "$PROFILE" = release ]; then PFLAG=(--release); else PFLAG=(); fi
cargo test "${PFLAG[@]}" -p coop --test cli --no-run
echo "failover: $CHAOS_KILLS kills, min replicas $CHAOS_MIN_REPLICAS (log: $OUT/failover.log)" >&2
status=0
timeout --kill-after=30s "$LIMIT" \
  cargo test "${PFLAG[@]}" -p coop --test cli chaos::failover_figures -- \
  --ignored --exact --nocapture > "$OUT/failover.log" 2>&1 || status=$?
# The figures and the account (the per-round lines stay in the log).
grep -E '^chaos .*(node [0-9]: kill|acknowledged|subscriber|figures)' "$OUT/failover.log" || true
if [ "$status" -ne 0 ]; then
  echo "failover: the run failed (status $status); the end of $OUT/failover.log:" >&2
  tail -n 30 "$OUT/failover.log" >&2
fi
exit "$status"
