# Shared helpers for the benchmark scripts (sourced, not run). Starts and
# stops the reference programs in scripts/bench/reference/ and coop itself, and records
# results as JSON lines. Benchmarks are not tests: nothing here runs in CI.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
# The reference programs this repository carries (its own nchan config,
# the talk's farm, hub and gather client in aiohttp).
ANCHORS="${ANCHORS:-$ROOT/scripts/bench/reference}"
OUT="${OUT:-$ROOT/target/bench-results}"
mkdir -p "$OUT"
NCHAN_PREFIX=/tmp/nchan

# The binary under test and the load generator. A private copy, so a
# rebuild by someone else during a run cannot swap it.
COOP_SRC="${COOP_SRC:-$ROOT/target/release/coop}"
COOP=/tmp/coop-bench-$$
cp "$COOP_SRC" "$COOP"
COPIES=("$COOP")
trap 'rm -f "${COPIES[@]}"; stop_all' EXIT

# private_copy VAR SRC: sets VAR to a private copy of another binary under
# test (say the build before a change), removed at exit like $COOP.
private_copy() {
  local copy
  copy=$(mktemp /tmp/coop-other-XXXXXX)
  cp "$2" "$copy"
  chmod 755 "$copy"   # mktemp makes it 0600, and cp keeps that
  COPIES+=("$copy")
  printf -v "$1" '%s' "$copy"
}

# note FILE LABEL RUN JSON: one result line (with the load now) in FILE,
# echoed to stdout.
note() {
  python3 -c 'import json,sys; print(json.dumps({"label":sys.argv[1],"run":int(sys.argv[2]),"load":sys.argv[3],"report":json.loads(sys.argv[4])}))' \
    "$2" "$3" "$(load)" "$4" | tee -a "$1"
}

STARTED_PIDS=()

log() { echo "[$(date -u +%H:%M:%S)] $*" >&2; }
load() { uptime | sed 's/.*load average: //'; }

wait_port() { # port
  for _ in $(seq 1 100); do
    (exec 3<>/dev/tcp/127.0.0.1/"$1") 2>/dev/null && return 0
    sleep 0.1
  done
  echo "nothing listens on port $1" >&2; return 1
}

start_nchan() {
  mkdir -p "$NCHAN_PREFIX/logs" "$NCHAN_PREFIX/tmp"
  if [ -f "$NCHAN_PREFIX/logs/nginx.pid" ] && kill -0 "$(cat "$NCHAN_PREFIX/logs/nginx.pid")" 2>/dev/null; then
    return 0
  fi
  nginx -c "$ANCHORS/nchan.conf" -p "$NCHAN_PREFIX/"
  wait_port 8090
}
stop_nchan() {
  [ -f "$NCHAN_PREFIX/logs/nginx.pid" ] && nginx -c "$ANCHORS/nchan.conf" -p "$NCHAN_PREFIX/" -s quit 2>/dev/null || true
  sleep 0.5
}
# master and workers, comma separated (coop bench --server-pid sums them)
nchan_pids() {
  local m; m=$(cat "$NCHAN_PREFIX/logs/nginx.pid")
  echo "$m $(pgrep -P "$m")" | tr -s ' \n' ',' | sed 's/,$//'
}

# start_bg NAME PORT CMD... : starts CMD in the background, waits for PORT,
# prints its pid.
start_bg() {
  local name=$1 port=$2; shift 2
  "$@" > "$OUT/$name.log" 2>&1 &
  local pid=$!
  STARTED_PIDS+=("$pid")
  wait_port "$port"
  echo "$pid"
}
# stop_pid PID: stops a process start_bg started and waits (at most 15 s)
# until it is gone. start_bg usually runs in a command substitution, so the
# process is not this shell's child and `wait` alone returns at once.
stop_pid() {
  kill "$1" 2>/dev/null || true
  wait "$1" 2>/dev/null || true
  for _ in $(seq 1 150); do kill -0 "$1" 2>/dev/null || return 0; sleep 0.1; done
  log "process $1 still there 15 s after SIGTERM"
}
stop_all() { for p in "${STARTED_PIDS[@]:-}"; do [ -n "$p" ] && kill "$p" 2>/dev/null || true; done; }

start_coop() { # PORT ARGS...
  local port=$1; shift
  start_bg "coop-$port" "$port" "$COOP" serve -q --port "$port" "$@"
}
start_aiohub() { start_bg aiohub 8092 python3 "$ANCHORS/hub.py" 8092; }
start_aiofarm() { start_bg aiofarm 8093 python3 "$ANCHORS/farm.py" 8093 "$1"; }

# record LABEL RUN JSON: one line per run in $OUT/results.jsonl
record() {
  python3 -c 'import json,sys; print(json.dumps({"label":sys.argv[1],"run":int(sys.argv[2]),"load":sys.argv[3],"report":json.loads(sys.argv[4])}))' \
    "$1" "$2" "$(load)" "$3" >> "$OUT/results.jsonl"
}
