#!/usr/bin/env bash
# Figures of issue 12, sharding: scripts/bench/shards.sh [SHARD_COUNTS] [PUBLISHERS] [EACH]
# For each shard count (default "1 2 4"): that many `redis-server`s of its
# own on free loopback ports (no persistence), one release `coop serve`
# with one `--redis` per shard, then PUBLISHERS (default 8) `coop bench
# publish` processes at once, EACH (default 2500) publishes apiece, every
# publish to a new topic. Prints per shard count: publishes per second
# (all publishers together), the Redis CPU per publish (user + system, all
# shards, from INFO cpu before and after), how evenly the topics spread
# (max/min of each shard's topic count) after the run and after a first
# 1,000 topics, and the load average at the end. Loopback only, bounded by
# the publish count.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
COUNTS="${1:-1 2 4}"
PUBLISHERS="${2:-8}"
EACH="${3:-2500}"
COOP="${COOP:-$ROOT/target/release/coop}"
[ -x "$COOP" ] || (cd "$ROOT" && cargo build --release -q -p coop)
WORK="$(mktemp -d)"
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
cpu() { # user+sys seconds of the redis on port $1
  redis-cli -p "$1" INFO cpu | tr -d '\r' | awk -F: '/^used_cpu_(user|sys):/ {s+=$2} END {printf "%.6f", s}'
}
publishes() { # PUBLISH calls on the redis on port $1 (one per message, one per tick)
  redis-cli -p "$1" INFO commandstats | tr -d '\r' | sed -n 's/^cmdstat_publish:calls=\([0-9]*\).*/\1/p'
}
spread() { # max/min of the shards' topic counts
  local counts=()
  for p in "$@"; do counts+=("$(redis-cli -p "$p" SCARD coop:topics)"); done
  python3 -c 'import sys; c=[int(x) for x in sys.argv[1:]]; print("%.3f (%s)" % (max(c)/max(1,min(c)), ",".join(map(str,c))))' "${counts[@]}"
}

for n in $COUNTS; do
  ports=(); args=()
  for _ in $(seq "$n"); do
    p="$(free_port)"
    redis-server --port "$p" --bind 127.0.0.1 --save '' --appendonly no >/dev/null 2>&1 &
    PIDS+=("$!"); ports+=("$p"); args+=(--redis "redis://127.0.0.1:$p/")
  done
  for p in "${ports[@]}"; do
    until redis-cli -p "$p" PING >/dev/null 2>&1; do sleep 0.05; done
  done
  port="$(free_port)"
  "$COOP" serve --port "$port" "${args[@]}" --max-topics 1000000 --history 10 \
    >"$WORK/serve-$n.log" 2>&1 &
  serve=$!; PIDS+=("$serve")
  until curl -fs "http://127.0.0.1:$port/readyz" >/dev/null 2>&1; do sleep 0.05; done
  # A first 1,000 topics, for the spread of a small deployment.
  "$COOP" bench publish --url "http://127.0.0.1:$port" -n 1000 --prefix "s." >/dev/null
  small="$(spread "${ports[@]}")"
  before=0
  for p in "${ports[@]}"; do before="$(python3 -c "print($before + $(cpu "$p"))")"; done
  start="$(date +%s.%N)"
  for k in $(seq "$PUBLISHERS"); do
    "$COOP" bench publish --url "http://127.0.0.1:$port" -n "$EACH" --prefix "p$k." --json \
      >"$WORK/pub-$n-$k.json" &
  done
  wait_ok=0
  for job in $(jobs -p); do
    case " ${PIDS[*]} " in *" $job "*) ;; *) wait "$job" || wait_ok=1 ;; esac
  done
  end="$(date +%s.%N)"
  sent=0
  for p in "${ports[@]}"; do sent=$((sent + $(publishes "$p"))); done
  ticks=$((sent - PUBLISHERS * EACH - 1000))
  after=0
  for p in "${ports[@]}"; do after="$(python3 -c "print($after + $(cpu "$p"))")"; done
  total=$((PUBLISHERS * EACH))
  python3 - "$n" "$total" "$start" "$end" "$before" "$after" "$(spread "${ports[@]}")" "$small" "$(cut -d' ' -f1-3 /proc/loadavg)" "$wait_ok" "$ticks" <<'EOF'
import sys
n, total, start, end, before, after, spread, small, load, failed, ticks = sys.argv[1:]
secs = float(end) - float(start)
cpu_us = (float(after) - float(before)) * 1e6 / int(total)
print(f"shards {n}: {int(total)/secs:,.0f} publishes/s ({total} in {secs:.2f} s), "
      f"Redis CPU {cpu_us:.1f} us/publish (all shards), ticks {int(ticks)/int(total):.2f}/publish, "
      f"topics spread max/min {spread}, "
      f"first 1,000 topics {small}, load {load}{'  SOME PUBLISHES FAILED' if failed != '0' else ''}")
EOF
  kill "$serve"; wait "$serve" 2>/dev/null || true
  for p in "${ports[@]}"; do redis-cli -p "$p" SHUTDOWN NOSAVE >/dev/null 2>&1 || true; done
done
