#!/usr/bin/env bash
# Durability and cluster figures (docs/benchmarks.md, "Durability and
# cluster"): acknowledged publishes/s with 64 publishers in memory and
# --data-dir modes, then fan-out (1,000 subscribers, 1,000 messages) in
# memory mode, --data-dir mode and two --redis nodes (publish on A,
# subscribers on B), alternated RUNS times. Needs a release build and
# redis-server. Prints one line per run; the load is printed before and
# after.
#
#   scripts/bench/durability.sh [RUNS]
set -euo pipefail
runs=${1:-3}
root=$(cd "$(dirname "$0")/../.." && pwd)
coop="$root/target/release/coop"
[ -x "$coop" ] || { echo "build first: cargo build --release -p coop" >&2; exit 1; }
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT

free_port() { python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])'; }

# start NAME ARGS...: runs `coop serve --port 0 ARGS` and sets $url_NAME, $pid_NAME.
start() {
    local name=$1; shift
    "$coop" serve --port 0 "$@" > "$work/$name.log" 2>&1 &
    eval "pid_$name=$!"
    for _ in $(seq 200); do
        local u; u=$(grep -o 'http://[0-9.:]*' "$work/$name.log" | head -1 || true)
        if [ -n "$u" ]; then eval "url_$name=$u"; return; fi
        sleep 0.05
    done
    echo "coop serve $* did not start" >&2; cat "$work/$name.log" >&2; exit 1
}

report() { # MODE JSON
    python3 - "$1" "$2" <<'PY'
import json, sys
r = json.load(open(sys.argv[2]))
pubs = r['published'] / r['publish_secs'] if r['publish_secs'] else 0
srv = r.get('server') or {}
print(f"{sys.argv[1]:>8}: subs {r['subscribers']} publishers {r['publishers']} "
      f"acked {r['published']} ({r['publish_errors']} errors) {pubs:.0f} publishes/s; "
      f"delivered {r['delivered']}/{r['expected']} lost {r['lost']} dup {r['duplicates']} "
      f"{r['deliveries_per_sec']:.0f} deliveries/s p99 {r['latency'].get('p99_us', 0) / 1000:.0f} ms "
      f"cpu/delivery {srv.get('cpu_us_per_delivery')} us")
PY
}

run() { # MODE FANOUT-ARGS...
    local mode=$1; shift
    local sub pub pid redis_pid=""
    case $mode in
        memory) start a; sub=$url_a; pub=$url_a; pid=$pid_a ;;
        durable) start a --data-dir "$work/data-$RANDOM"; sub=$url_a; pub=$url_a; pid=$pid_a ;;
        cluster)
            local port; port=$(free_port)
            redis-server --port "$port" --bind 127.0.0.1 --save '' --appendonly no > /dev/null 2>&1 &
            redis_pid=$!
            sleep 0.3
            start a --redis "redis://127.0.0.1:$port/"
            start b --redis "redis://127.0.0.1:$port/"
            sub=$url_b; pub=$url_a; pid=$pid_b ;;
    esac
    "$coop" bench fanout --url "$sub${path:-/}" --publish-url "$pub${path:-/}" \
        --server-pid "$pid" --json "$@" > "$work/out.json" 2> "$work/err" || true
    report "$mode" "$work/out.json"
    kill $pid_a ${pid_b:-} $redis_pid 2>/dev/null || true
    wait 2>/dev/null || true
    unset pid_b
}

echo "load before: $(uptime)"
echo "# acknowledged publishes/s, 64 publishers, 64 bytes, one subscriber"
for _ in $(seq "$runs"); do
    for mode in memory durable; do path=/topics/bench run $mode -n 1 -p 64 -m 100000 --size 64; done
done
echo "# fan-out, 1,000 subscribers, 1,000 messages, one closed-loop publisher"
for _ in $(seq "$runs"); do
    for mode in memory durable cluster; do run $mode -n 1000 -m 1000; done
done
echo "# fan-out, 1,000 subscribers, 32 publishers pacing 1,000 messages/s"
for _ in $(seq "$runs"); do
    for mode in memory durable cluster; do run $mode -n 1000 -m 1000 -p 32 --rate 1000; done
done
echo "load after: $(uptime)"
