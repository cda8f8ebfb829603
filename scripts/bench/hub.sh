#!/usr/bin/env bash
# Hub figures of issue 3: coop and nchan alternated RUNS times (default 5),
# the talk's aiohttp hub beside them, medians printed by median.py.
#   scripts/bench/hub.sh [RUNS] [SCENARIOS...]
# Scenarios: throughput offered latency (all by default). Results go to
# target/bench-results/results.jsonl (one JSON line per run). With
# BASE_SRC (another coop binary, say the build before a change) each run
# also measures it, labelled base-SCENARIO, right after coop.
source "$(dirname "$0")/common.sh"
RUNS=${1:-5}; shift || true
SCENARIOS=${*:-throughput offered latency}
COOP_PORT=8081

args_for() {
  case $1 in
    throughput) echo "-n 1000 -m 1000 -p 1" ;;
    offered) echo "-n 1000 -m 1000 -p 32 --rate 1000" ;;
    # 4 publishers: one slow publish answer must not hold back the schedule
    latency) echo "-n 10000 --rate 10 --duration 30s -p 4 --sources 16" ;;
  esac
}

fanout() { # LABEL RUN URL PIDS ARGS...
  local label=$1 run=$2 url=$3 pids=$4; shift 4
  log "$label run $run (load $(load))"
  local json
  json=$("$COOP" bench fanout --url "$url" --server-pid "$pids" --json "$@" || true)
  if [ -n "$json" ]; then record "$label" "$run" "$json"; else log "$label run $run failed"; fi
}

start_nchan
if [ -n "${BASE_SRC:-}" ]; then private_copy BASE "$BASE_SRC"; fi
for s in $SCENARIOS; do
  for run in $(seq 1 "$RUNS"); do
    pid=$(start_coop $COOP_PORT)
    # shellcheck disable=SC2046
    fanout "coop-$s" "$run" "http://127.0.0.1:$COOP_PORT/" "$pid" $(args_for "$s")
    stop_pid "$pid"
    if [ -n "${BASE:-}" ]; then
      pid=$(start_bg "base-$COOP_PORT" "$COOP_PORT" "$BASE" serve -q --port "$COOP_PORT")
      # shellcheck disable=SC2046
      fanout "base-$s" "$run" "http://127.0.0.1:$COOP_PORT/" "$pid" $(args_for "$s")
      stop_pid "$pid"
    fi
    fanout "nchan-$s" "$run" "http://127.0.0.1:8090/" "$(nchan_pids)" $(args_for "$s")
  done
  if [ "${AIOHTTP:-1}" = 1 ] && [ "$s" != offered ]; then
    pid=$(start_aiohub)
    # shellcheck disable=SC2046
    fanout "aiohttp-$s" 1 "http://127.0.0.1:8092/" "$pid" $(args_for "$s")
    stop_pid "$pid"
  fi
done
python3 "$(dirname "$0")/median.py" "$OUT/results.jsonl"
