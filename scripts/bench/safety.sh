#!/usr/bin/env bash
# Figures of "Safe to expose" (issue 9), memory and fan-out:
#   scripts/bench/safety.sh [RUNS] [BASE_BINARY]
# 1. fan-out throughput (coop bench fanout, 1,000 subscribers x 1,000
#    messages, one closed-loop publisher) of this build and of BASE_BINARY
#    (the build before the work), alternated RUNS times (default 5), the
#    same load generator (this build's) for both;
# 2. a flood of 64 KiB publishes, each to a new topic, 100,000 of them, on
#    this build with default flags (peak RSS against --max-memory 256 MiB),
#    and 20,000 of them on BASE_BINARY for contrast (it keeps them all).
# Results: $OUT/safety.jsonl, one JSON line per run, with the load average.
source "$(dirname "$0")/common.sh"
RUNS=${1:-5}
BASE_SRC=${2:-}
PORT=8081
RESULTS="$OUT/safety.jsonl"

BASE=""
[ -n "$BASE_SRC" ] && private_copy BASE "$BASE_SRC"


fan() { # LABEL RUN BINARY
  local pid json
  pid=$(start_bg "fan-$1" $PORT "$3" serve -q --port $PORT)
  log "$1 run $2 (load $(load))"
  json=$("$COOP" bench fanout --url "http://127.0.0.1:$PORT/" --server-pid "$pid" --json \
    -n 1000 -m 1000 -p 1 || true)
  stop_pid "$pid"
  [ -n "$json" ] && note "$RESULTS" "$1" "$2" "$json"
}

for run in $(seq 1 "$RUNS"); do
  fan fanout-new "$run" "$COOP"
  [ -n "$BASE" ] && fan fanout-base "$run" "$BASE"
done

flood() { # LABEL BINARY N
  local pid json
  pid=$(start_bg "flood-$1" $PORT "$2" serve -q --port $PORT)
  log "$1 flood of $3 (load $(load))"
  json=$(python3 "$(dirname "$0")/flood.py" --port $PORT --pid "$pid" -n "$3")
  stop_pid "$pid"
  note "$RESULTS" "$1" 1 "$json"
}
flood flood-new "$COOP" 100000
[ -n "$BASE" ] && flood flood-base "$BASE" 20000
python3 - "$RESULTS" <<'PY'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
for label in ("fanout-new", "fanout-base"):
    r = [x for x in rows if x["label"] == label]
    if r:
        rates = [x["report"].get("deliveries_per_sec") or x["report"].get("rate") for x in r]
        print(label, "runs", len(r), "median deliveries/s", statistics.median([v for v in rates if v]))
PY
