#!/usr/bin/env bash
# Figures of "Safe to expose" (issue 9), adversarial patterns:
#   scripts/bench/adversarial_pattern.sh [RUNS] [OLD_BINARY]
# p99 publish latency (coop bench publish: 2,000 closed-loop publishes, each
# to a new 64-byte topic of `a`s) on a hub with one subscription open to an
# adversarial pattern, against the same hub without it; the two variants
# alternated RUNS times (default 3), the load average logged beside each.
# With OLD_BINARY (the build before linear matching), one more run against
# it with the issue's 14-byte pattern, stopped after 20 s.
# Results: $OUT/adversarial.jsonl, one JSON line per run.
source "$(dirname "$0")/common.sh"
RUNS=${1:-3}
OLD_SRC=${2:-}
PORT=8082
RESULTS="$OUT/adversarial.jsonl"
# 16 wildcards (the most allowed): `*a` fifteen times, then `*b`; against
# names of `a`s a backtracking matcher tries every way to place them.
PATTERN="$(printf '*a%.0s' $(seq 15))*b"
# The issue's pattern: 14 bytes, 3.2 s per publish on a 64-byte topic.
ISSUE_PATTERN='*a*a*a*a*a*a*b'

OLD=""
[ -n "$OLD_SRC" ] && private_copy OLD "$OLD_SRC"


# one LABEL RUN BINARY [PATTERN] [LIMIT]
one() {
  local pid sub="" json
  pid=$(start_bg "adv-$1" $PORT "$3" serve -q --port $PORT --delay 0s)
  if [ -n "${4:-}" ]; then
    curl -sN "http://127.0.0.1:$PORT/topics/$4" > /dev/null &
    sub=$!
    # Wait for the subscription to be registered (a state, not a sleep).
    for _ in $(seq 1 100); do
      curl -s "http://127.0.0.1:$PORT/api/topics" | grep -q '"subscribers":1' && break
      sleep 0.1
    done
  fi
  log "$1 run $2 (load $(load))"
  json=$("$COOP" bench publish --url "http://127.0.0.1:$PORT" -n 2000 --topic-len 64 \
    --limit "${5:-60s}" --json || true)
  [ -n "$sub" ] && kill "$sub" 2>/dev/null || true
  # SIGKILL: a hub stuck in a match under its locks would not drain.
  kill -KILL "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  [ -n "$json" ] && note "$RESULTS" "$1" "$2" "$json"
}

for run in $(seq 1 "$RUNS"); do
  one without-pattern "$run" "$COOP"
  one with-pattern "$run" "$COOP" "$PATTERN"
  one with-issue-pattern "$run" "$COOP" "$ISSUE_PATTERN"
done
if [ -n "$OLD" ]; then
  one old-with-issue-pattern 1 "$OLD" "$ISSUE_PATTERN" 20s
fi
