#!/usr/bin/env bash
# Session 6 figures (the front door, `crates/gate`): this build beside its
# reference in the same run, one JSON line per run (with the load before
# and after) in $OUT/front_door.jsonl, a summary by front_door_report.py.
#
#   COOP_SRC=/path/to/new/coop BASE_SRC=/path/to/base/coop \
#     scripts/bench/front_door.sh [PARTS...]
#
# Parts (all by default, in this order):
#   wrk      wrk -t2 -c100 -d10s /animals/cow at --delay 0: new, nginx
#            `return 200` (nchan.conf, :8090) and base alternated RUNS (3) times
#   hold     15,000 HTTP/1.1 requests held at --delay 5s (coop bench hold):
#            new with defaults (the generator spreads over 16 source
#            addresses), base; then from ONE address (--sources 1): new with
#            defaults (past --max-connections-per-ip, 12,288: refused with
#            503) and new with --max-connections-per-ip 16384
#   h2       100,000 h2c requests over 100 connections at --delay 5s: new
#            with --h2-max-streams 1000 --max-in-flight 100000, new with
#            defaults (256 streams, 16,384 in flight), base (its defaults)
#   fanmem   10,000 subscribers, 10 msg/s for 30 s (4 paced publishers, 16
#            source addresses, as hub.sh's latency scenario): new and base
#            alternated FANMEM_RUNS (3) times
#   fantput  1,000 subscribers x 5,000 messages, 1 closed-loop publisher:
#            new and base alternated FANTPUT_RUNS (5) times (safety.sh's
#            figure with -m 5000)
#   tls      wrk over https (new, --tls-cert, self-signed P-256), over http
#            (new, fast path) and over http through hyper (new,
#            --no-direct), alternated RUNS times; which clients can use TLS
#   speak    coop speak --http2 --timing, 10,000 cows at --delay 1s, new
#            (client and server) and base (client and server) alternated
#            RUNS times; new over HTTP/1.1 once
#
# Before each part it waits (polling /proc/loadavg every 30 s, at most
# QUIET_MAX seconds, default 1200) for the 1-minute load to drop below
# QUIET (1.5); if it never does the part runs anyway and its lines carry
# "quiet": false. The same load generator (this build's) drives both builds.
source "$(dirname "$0")/common.sh"
PARTS=${*:-wrk hold h2 fanmem fantput tls speak}
RUNS=${RUNS:-3}
FANMEM_RUNS=${FANMEM_RUNS:-3}
FANTPUT_RUNS=${FANTPUT_RUNS:-5}
QUIET=${QUIET:-1.5}
QUIET_MAX=${QUIET_MAX:-1200}
RESULTS="$OUT/front_door.jsonl"
BASE=""
[ -n "${BASE_SRC:-}" ] && private_copy BASE "$BASE_SRC"

TMP=$(mktemp -d /tmp/front-door-XXXXXX)
STARTED_NCHAN=0
cleanup() {
  rm -f "${COPIES[@]}"
  stop_all
  [ "$STARTED_NCHAN" = 1 ] && stop_nchan
  rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 143' TERM INT

QUIET_NOW=true
# wait_quiet PART: bounded wait for a quiet machine (see above).
wait_quiet() {
  local waited=0 l1
  while :; do
    l1=$(cut -d' ' -f1 /proc/loadavg)
    if python3 -c "import sys; sys.exit(0 if float('$l1') < $QUIET else 1)"; then
      QUIET_NOW=true; log "$1: load $l1 < $QUIET after ${waited}s"; return 0
    fi
    if [ "$waited" -ge "$QUIET_MAX" ]; then
      QUIET_NOW=false; log "$1: load still $l1 after ${waited}s: running anyway (under load, indication only)"; return 0
    fi
    sleep 30; waited=$((waited + 30))
  done
}

# Cores used by other processes during a run (others_cpu.py): cpu_snap
# before, cpu_diff after; rec records it and clears it.
OTHERS=null
cpu_snap() { python3 "$(dirname "$0")/others_cpu.py" snap "$TMP/cpu.snap"; }
cpu_diff() { OTHERS=$(python3 "$(dirname "$0")/others_cpu.py" diff "$TMP/cpu.snap"); }

# rec LABEL RUN LOAD_BEFORE JSON: one line in $RESULTS, echoed.
rec() {
  python3 -c 'import json,sys; print(json.dumps({"label":sys.argv[1],"run":int(sys.argv[2]),"load_before":sys.argv[3],"load":sys.argv[4],"quiet":sys.argv[5]=="true","others_cores":json.loads(sys.argv[6]),"report":json.loads(sys.argv[7])}))' \
    "$1" "$2" "$3" "$(load)" "$QUIET_NOW" "$OTHERS" "$4" | tee -a "$RESULTS"
  OTHERS=null
}

port_free() { ! (exec 3<>/dev/tcp/127.0.0.1/"$1") 2>/dev/null; }
# srv VAR NAME PORT BINARY ARGS...: starts a coop server of the given build
# (a child of this shell, stopped at exit), waits for its port, sets VAR to
# its pid.
srv() {
  local _var=$1 _name=$2 _port=$3 _bin=$4 _pid; shift 4   # _: VAR may be "pid"
  port_free "$_port" || { echo "port $_port is taken: not starting $_name" >&2; return 1; }
  "$_bin" serve -q --port "$_port" "$@" > "$OUT/$_name.log" 2>&1 &
  _pid=$!
  STARTED_PIDS+=("$_pid")
  printf -v "$_var" '%s' "$_pid"
  wait_port "$_port"
}

wrk_run() { # LABEL RUN URL
  local before out rps non2xx errors
  before=$(load); cpu_snap
  out=$(wrk -t2 -c100 -d10s "$3" 2>&1 || true)
  cpu_diff
  printf '%s\n' "$out" > "$OUT/wrk-$1-$2.txt"
  rps=$(awk '/Requests\/sec/ {print $2}' <<<"$out"); rps=${rps:-0}
  non2xx=$(awk '/Non-2xx/ {print $NF}' <<<"$out"); non2xx=${non2xx:-0}
  errors=$(awk -F'[ ,]+' '/Socket errors/ {print $5+$7+$9+$11}' <<<"$out"); errors=${errors:-0}
  rec "$1" "$2" "$before" "{\"value\": $rps, \"non2xx\": $non2xx, \"socket_errors\": $errors}"
}

hold_run() { # LABEL PID ARGS...
  local label=$1 pid=$2 before json; shift 2
  before=$(load); cpu_snap
  json=$("$COOP" bench hold --server-pid "$pid" --json --expect-body 'Moo!' "$@" 2> "$OUT/hold-$label.err" || true)
  cpu_diff
  [ -n "$json" ] || json="{\"failed\": true, \"stderr\": $(tail -n 3 "$OUT/hold-$label.err" | python3 -c 'import json,sys; print(json.dumps(sys.stdin.read()))')}"
  rec "$label" 1 "$before" "$json"
}

# refused PORT: the server's gate_refused_total lines, as a JSON object.
refused() {
  curl -s "http://127.0.0.1:$1/metrics" | python3 -c '
import json, re, sys
out = {}
for line in sys.stdin:
    m = re.match(r"gate_refused_total\{reason=\"(\w+)\"\} (\d+)", line)
    if m: out[m.group(1)] = int(m.group(2))
print(json.dumps(out))'
}

fan_run() { # LABEL RUN BINARY ARGS...
  local label=$1 run=$2 bin=$3 pid before json; shift 3
  srv pid "fan-$label" 18681 "$bin"
  before=$(load); cpu_snap
  json=$("$COOP" bench fanout --url "http://127.0.0.1:18681/" --server-pid "$pid" --json "$@" 2> "$OUT/fan-$label-$run.err" || true)
  cpu_diff
  stop_pid "$pid"
  [ -n "$json" ] || json='{"failed": true}'
  rec "$label" "$run" "$before" "$json"
}

speak_run() { # LABEL RUN BINARY URL ARGS...
  local label=$1 run=$2 bin=$3 url=$4 before wall rss lines; shift 4
  before=$(load); cpu_snap
  /usr/bin/time -f '%e %M' -o "$TMP/time.txt" "$bin" speak --url "$url" --timing --no-progress "$@" --file "$TMP/names" \
    > "$TMP/speak.out" 2> "$OUT/speak-$label-$run.err" || true
  cpu_diff
  read -r wall rss < <(tail -n 1 "$TMP/time.txt")
  lines=$(grep -c 'says "Moo!"' "$TMP/speak.out" || true)
  rec "$label" "$run" "$before" "$(python3 -c 'import json,sys; print(json.dumps({"wall_secs": float(sys.argv[1]), "rss_mib": int(sys.argv[2]) / 1024, "moos": int(sys.argv[3]), "timing": open(sys.argv[4]).read().strip().splitlines()[-3:]}))' "$wall" "$rss" "$lines" "$OUT/speak-$label-$run.err")"
}

for part in $PARTS; do
  wait_quiet "$part"
  case $part in
  wrk)
    if ! [ -f "$NCHAN_PREFIX/logs/nginx.pid" ] || ! kill -0 "$(cat "$NCHAN_PREFIX/logs/nginx.pid")" 2>/dev/null; then
      STARTED_NCHAN=1
    fi
    start_nchan
    srv new wrk-new 18682 "$COOP" --delay 0
    base=""; if [ -n "$BASE" ]; then srv base wrk-base 18683 "$BASE" --delay 0; fi
    for run in $(seq 1 "$RUNS"); do
      wrk_run wrk-new "$run" http://127.0.0.1:18682/animals/cow
      wrk_run wrk-nginx "$run" http://127.0.0.1:8090/animals/cow
      [ -n "$base" ] && wrk_run wrk-base "$run" http://127.0.0.1:18683/animals/cow
    done
    stop_pid "$new"; [ -n "$base" ] && stop_pid "$base"
    ;;
  hold)
    srv pid hold-new 18684 "$COOP" --delay 5s
    hold_run hold-new-16src "$pid" --url http://127.0.0.1:18684/animals/cow -c 15000 --delay 5s
    rec hold-new-16src-refused 1 "$(load)" "$(refused 18684)"
    stop_pid "$pid"; sleep 2
    if [ -n "$BASE" ]; then
      srv pid hold-base 18685 "$BASE" --delay 5s
      hold_run hold-base-16src "$pid" --url http://127.0.0.1:18685/animals/cow -c 15000 --delay 5s
      stop_pid "$pid"; sleep 2
    fi
    srv pid hold-new-1src 18686 "$COOP" --delay 5s
    hold_run hold-new-1src-default "$pid" --url http://127.0.0.1:18686/animals/cow -c 15000 --delay 5s --sources 1
    rec hold-new-1src-default-refused 1 "$(load)" "$(refused 18686)"
    stop_pid "$pid"; sleep 2
    srv pid hold-new-1src-16k 18687 "$COOP" --delay 5s --max-connections-per-ip 16384
    hold_run hold-new-1src-perip16384 "$pid" --url http://127.0.0.1:18687/animals/cow -c 15000 --delay 5s --sources 1
    rec hold-new-1src-perip16384-refused 1 "$(load)" "$(refused 18687)"
    stop_pid "$pid"
    ;;
  h2)
    srv pid h2-new-raised 18688 "$COOP" --delay 5s --h2-max-streams 1000 --max-in-flight 100000
    hold_run h2-new-raised "$pid" --url http://127.0.0.1:18688/animals/cow --http2 -c 100 -r 100000 --delay 5s
    rec h2-new-raised-refused 1 "$(load)" "$(refused 18688)"
    stop_pid "$pid"; sleep 2
    srv pid h2-new-default 18689 "$COOP" --delay 5s
    hold_run h2-new-default "$pid" --url http://127.0.0.1:18689/animals/cow --http2 -c 100 -r 100000 --delay 5s
    rec h2-new-default-refused 1 "$(load)" "$(refused 18689)"
    stop_pid "$pid"; sleep 2
    if [ -n "$BASE" ]; then
      srv pid h2-base 18690 "$BASE" --delay 5s
      hold_run h2-base "$pid" --url http://127.0.0.1:18690/animals/cow --http2 -c 100 -r 100000 --delay 5s
      stop_pid "$pid"
    fi
    ;;
  fanmem)
    for run in $(seq 1 "$FANMEM_RUNS"); do
      fan_run fanmem-new "$run" "$COOP" -n 10000 --rate 10 --duration 30s -p 4 --sources 16
      [ -n "$BASE" ] && fan_run fanmem-base "$run" "$BASE" -n 10000 --rate 10 --duration 30s -p 4 --sources 16
    done
    ;;
  fantput)
    for run in $(seq 1 "$FANTPUT_RUNS"); do
      fan_run fantput-new "$run" "$COOP" -n 1000 -m 5000 -p 1
      [ -n "$BASE" ] && fan_run fantput-base "$run" "$BASE" -n 1000 -m 5000 -p 1
    done
    ;;
  tls)
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
      -subj /CN=127.0.0.1 -addext subjectAltName=IP:127.0.0.1 \
      -keyout "$TMP/key.pem" -out "$TMP/cert.pem" 2> "$TMP/openssl.err"
    srv tls tls-new 18691 "$COOP" --delay 0 --tls-cert "$TMP/cert.pem" --tls-key "$TMP/key.pem"
    srv plain tls-plain 18692 "$COOP" --delay 0
    srv hyper tls-plain-hyper 18693 "$COOP" --delay 0 --no-direct
    # What speaks TLS to it: curl with the CA (ALPN h2 and http/1.1), coop
    # speak (no CA option: webpki roots only), coop bench (http:// only).
    rec tls-clients 1 "$(load)" "$(python3 -c 'import json,sys; print(json.dumps(dict(zip(sys.argv[1::2], sys.argv[2::2]))))' \
      curl_h2 "$(curl -s --cacert "$TMP/cert.pem" -o /dev/null -w '%{http_version} %{http_code}' https://127.0.0.1:18691/animals/cow)" \
      curl_h1 "$(curl -s --http1.1 --cacert "$TMP/cert.pem" -o /dev/null -w '%{http_version} %{http_code}' https://127.0.0.1:18691/animals/cow)" \
      speak "$("$COOP" speak --url https://127.0.0.1:18691/animals --retries 0 cow 2>&1 | tail -n 2 | tr '\n' ' ')" \
      hold "$("$COOP" bench hold --url https://127.0.0.1:18691/animals/cow -c 1 --delay 0s 2>&1 | tail -n 1)" \
      fanout "$("$COOP" bench fanout --url https://127.0.0.1:18691/ -n 1 -m 1 2>&1 | tail -n 1)")"
    for run in $(seq 1 "$RUNS"); do
      wrk_run tls-https "$run" https://127.0.0.1:18691/animals/cow
      wrk_run tls-http-fast "$run" http://127.0.0.1:18692/animals/cow
      wrk_run tls-http-hyper "$run" http://127.0.0.1:18693/animals/cow
    done
    stop_pid "$tls"; stop_pid "$plain"; stop_pid "$hyper"
    ;;
  speak)
    seq 10000 | sed 's/.*/cow/' > "$TMP/names"
    srv new speak-new 18694 "$COOP" --delay 1s
    base=""; if [ -n "$BASE" ]; then srv base speak-base 18695 "$BASE" --delay 1s; fi
    for run in $(seq 1 "$RUNS"); do
      speak_run speak-h2-new "$run" "$COOP" http://127.0.0.1:18694/animals --http2
      [ -n "$base" ] && speak_run speak-h2-base "$run" "$BASE" http://127.0.0.1:18695/animals --http2
    done
    speak_run speak-h1-new 1 "$COOP" http://127.0.0.1:18694/animals
    rec speak-new-refused 1 "$(load)" "$(refused 18694)"
    stop_pid "$new"; [ -n "$base" ] && stop_pid "$base"
    ;;
  *) echo "unknown part $part" >&2; exit 2 ;;
  esac
done
python3 "$(dirname "$0")/front_door_report.py" "$RESULTS"
