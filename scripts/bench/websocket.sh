#!/usr/bin/env bash
# WebSocket subscriber figures of issue 13 (session 6): coop's WebSocket
# subscribers beside coop's raw subscribers (same server, same run) and
# nchan's WebSocket subscribers (`location = /ws` of reference/nchan.conf),
# alternated RUNS times (default 3), medians printed by median.py.
#   [BASE_SRC=old/coop] scripts/bench/websocket.sh [RUNS] [SCENARIOS...]
# Scenarios:
#   throughput  1,000 subscribers x 1,000 messages, one closed-loop publisher
#   long        the same with 5,000 messages (runs of about 1 s, steadier)
#   memory      10,000 subscribers, 10 msg/s for 30 s (4 paced publishers)
# With BASE_SRC, that build's WebSocket subscribers run too (base-ws-*),
# measured by this build's load generator.
# nginx runs from a private copy of reference/nchan.conf on NCHAN_PORT
# (default 18090; its echo helper on NCHAN_PORT+1) under a private prefix,
# so another nchan on 8090 is left alone. Results go to
# target/bench-results/websocket.jsonl (or RESULTS; one JSON line per run,
# with the load average).
source "$(dirname "$0")/common.sh"
RUNS=${1:-3}; shift || true
SCENARIOS=${*:-throughput long memory}
BASE=""
if [ -n "${BASE_SRC:-}" ]; then private_copy BASE "$BASE_SRC"; fi
COOP_PORT=${COOP_PORT:-18081}
NCHAN_PORT=${NCHAN_PORT:-18090}
ECHO_PORT=$((NCHAN_PORT + 1))
RESULTS="${RESULTS:-$OUT/websocket.jsonl}"
PREFIX=$(mktemp -d /tmp/nchan-ws-XXXXXX)

start_private_nchan() {
  mkdir -p "$PREFIX/logs" "$PREFIX/tmp"
  sed -e "s/127.0.0.1:8090/127.0.0.1:$NCHAN_PORT/g" -e "s/127.0.0.1:8091/127.0.0.1:$ECHO_PORT/g" \
    "$ROOT/scripts/bench/reference/nchan.conf" > "$PREFIX/nchan.conf"
  nginx -c "$PREFIX/nchan.conf" -p "$PREFIX/"
  wait_port "$NCHAN_PORT"
}
stop_private_nchan() {
  [ -f "$PREFIX/logs/nginx.pid" ] && nginx -c "$PREFIX/nchan.conf" -p "$PREFIX/" -s quit 2>/dev/null || true
  sleep 0.5
}
private_nchan_pids() {
  local m; m=$(cat "$PREFIX/logs/nginx.pid")
  echo "$m $(pgrep -P "$m")" | tr -s ' \n' ',' | sed 's/,$//'
}
trap 'rm -f "${COPIES[@]}"; stop_all; stop_private_nchan; rm -rf "$PREFIX"' EXIT

args_for() {
  case $1 in
    throughput) echo "-n 1000 -m 1000 -p 1" ;;
    long) echo "-n 1000 -m 5000 -p 1" ;;
    memory) echo "-n 10000 --rate 10 --duration 30s -p 4 --sources 16" ;;
  esac
}

fanout() { # LABEL RUN PIDS ARGS...
  local label=$1 run=$2 pids=$3; shift 3
  log "$label run $run (load $(load))"
  local json
  json=$("$COOP" bench fanout --server-pid "$pids" --json "$@" || true)
  if [ -n "$json" ]; then note "$RESULTS" "$label" "$run" "$json" > /dev/null; else log "$label run $run failed"; fi
}

coop_raw() { fanout "coop-raw-$1" "$2" "$3" --url "http://127.0.0.1:$COOP_PORT/" $(args_for "$1"); }
coop_ws() { fanout "coop-ws-$1" "$2" "$3" --url "http://127.0.0.1:$COOP_PORT/" --ws $(args_for "$1"); }
base_ws() {
  local pid
  pid=$(start_bg base-$COOP_PORT "$COOP_PORT" "$BASE" serve -q --port "$COOP_PORT")
  fanout "base-ws-$1" "$2" "$pid" --url "http://127.0.0.1:$COOP_PORT/" --ws $(args_for "$1")
  stop_pid "$pid"
}
nchan_ws() {
  fanout "nchan-ws-$1" "$2" "$(private_nchan_pids)" --url "http://127.0.0.1:$NCHAN_PORT/ws" \
    --publish-url "http://127.0.0.1:$NCHAN_PORT/" --ws $(args_for "$1")
}

start_private_nchan
for s in $SCENARIOS; do
  for run in $(seq 1 "$RUNS"); do
    if [ "$s" != memory ]; then
      # Raw and WebSocket on the same server, the order alternated.
      pid=$(start_coop $COOP_PORT)
      if [ $((run % 2)) = 1 ]; then coop_ws "$s" "$run" "$pid"; coop_raw "$s" "$run" "$pid";
      else coop_raw "$s" "$run" "$pid"; coop_ws "$s" "$run" "$pid"; fi
      stop_pid "$pid"
    else
      # A fresh server each: its peak RSS is the figure.
      pid=$(start_coop $COOP_PORT); coop_ws "$s" "$run" "$pid"; stop_pid "$pid"
      pid=$(start_coop $COOP_PORT); coop_raw "$s" "$run" "$pid"; stop_pid "$pid"
    fi
    nchan_ws "$s" "$run"
    if [ -n "$BASE" ]; then base_ws "$s" "$run"; fi
  done
done
python3 "$(dirname "$0")/median.py" "$RESULTS"
