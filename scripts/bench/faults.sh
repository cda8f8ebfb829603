#!/usr/bin/env bash
# Session 5 figures (issue 14, the farm as a fault fixture): throughput of
# /animals/cow at --delay 0 with `wrk -t2 -c100 -d10s`, alternated RUNS
# times in one run:
#   nginx      `return 200` (nchan.conf, :8090), the reference
#   main       coop built from main (COOP_MAIN, optional), nothing configured
#   fixture    this coop, nothing configured: must not have moved
# then this coop with faults on a share of requests, RUNS times each:
#   status10   --faults 'status=200:0.9,503:0.1'  (keep-alive answers)
#   reset10    --faults 'fault=reset&toxicity=0.1' (connections killed)
#   uniform    --faults 'delay=uniform:0ms..1ms'    (a draw per request)
#   [COOP_MAIN=/tmp/coop-main] scripts/bench/faults.sh [RUNS]
source "$(dirname "$0")/common.sh"
RUNS=${1:-3}
MAIN=/tmp/coop-main-bench-$$
[ -n "${COOP_MAIN:-}" ] && cp "$COOP_MAIN" "$MAIN"
trap 'rm -f "$COOP" "$MAIN"; stop_all; stop_nchan' EXIT

wrk_run() { # LABEL RUN URL
  log "wrk $1 run $2 (load $(load))"
  local out rps non2xx errors
  out=$(wrk -t2 -c100 -d10s "$3")
  rps=$(awk '/Requests\/sec/ {print $2}' <<<"$out")
  non2xx=$(awk '/Non-2xx/ {print $NF}' <<<"$out"); non2xx=${non2xx:-0}
  errors=$(awk -F'[ ,]+' '/Socket errors/ {print $5+$7+$9+$11}' <<<"$out"); errors=${errors:-0}
  record "$1" "$2" "{\"value\": $rps, \"non2xx\": $non2xx, \"socket_errors\": $errors}"
  log "  $rps req/s, non-2xx $non2xx, socket errors $errors"
}

start_nchan
main=
[ -x "$MAIN" ] && main=$(start_bg coop-main 8301 "$MAIN" serve -q --port 8301 --delay 0)
fixture=$(start_coop 8302 --delay 0)
for run in $(seq 1 "$RUNS"); do
  wrk_run faults-nginx "$run" http://127.0.0.1:8090/animals/cow
  [ -n "$main" ] && wrk_run faults-main "$run" http://127.0.0.1:8301/animals/cow
  wrk_run faults-fixture "$run" http://127.0.0.1:8302/animals/cow
done
[ -n "$main" ] && stop_pid "$main"
stop_pid "$fixture"

for spec in "status10 status=200:0.9,503:0.1" "reset10 fault=reset&toxicity=0.1" "uniform delay=uniform:0ms..1ms"; do
  name=${spec%% *}; faults=${spec#* }
  pid=$(start_coop 8303 --delay 0 --faults "$faults")
  for run in $(seq 1 "$RUNS"); do
    wrk_run "faults-$name" "$run" http://127.0.0.1:8303/animals/cow
  done
  stop_pid "$pid"
done
python3 "$(dirname "$0")/median.py" "$OUT/results.jsonl" faults
