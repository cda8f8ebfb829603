#!/usr/bin/env bash
# SSE over HTTP/2 (issue 13, session 7): N SSE streams carried by a few h2c
# connections (as a browser tab's EventSources share one connection behind
# TLS) against the same N SSE streams over HTTP/1.1, one connection each,
# alternated RUNS times (default 3). Each run gets a fresh `coop serve`, so
# its peak RSS is the run's; memory per stream is (peak - idle) / N.
#   [COOP_SRC=target/release/coop] scripts/bench/sse_h2.sh [RUNS]
# Knobs (environment): STREAMS (1000), H2_CONNECTIONS (10), MESSAGES (1000),
# COOP_PORT (18181), SERVE_ARGS (extra `coop serve` flags, e.g.
# "--h2-max-streams 64"). Results: target/bench-results/sse_h2.jsonl (or
# RESULTS), one JSON line per run with the load average at its end; the
# table printed at the end has the load at each run's start and end.
source "$(dirname "$0")/common.sh"
RUNS=${1:-3}
STREAMS=${STREAMS:-1000}
H2_CONNECTIONS=${H2_CONNECTIONS:-10}
MESSAGES=${MESSAGES:-1000}
COOP_PORT=${COOP_PORT:-18181}
RESULTS="${RESULTS:-$OUT/sse_h2.jsonl}"

fanout() { # LABEL RUN ARGS...
  local label=$1 run=$2; shift 2
  local pid json before
  # shellcheck disable=SC2086 # SERVE_ARGS is a list of flags
  pid=$(start_coop "$COOP_PORT" ${SERVE_ARGS:-})
  before=$(load)
  log "$label run $run (load $before)"
  json=$("$COOP" bench fanout --url "http://127.0.0.1:$COOP_PORT/topics/bench" --sse \
    -n "$STREAMS" -m "$MESSAGES" -p 1 --server-pid "$pid" --json "$@" || true)
  stop_pid "$pid"
  if [ -n "$json" ]; then
    json=$(python3 -c 'import json,sys; r=json.loads(sys.argv[1]); r["load_before"]=sys.argv[2]; print(json.dumps(r))' "$json" "$before")
    note "$RESULTS" "$label" "$run" "$json" > /dev/null
  else
    log "$label run $run failed (see $OUT/coop-$COOP_PORT.log)"
  fi
}

h1() { fanout sse-h1 "$1"; }
h2() { fanout sse-h2 "$1" --h2-connections "$H2_CONNECTIONS"; }

for run in $(seq 1 "$RUNS"); do
  if [ $((run % 2)) = 1 ]; then h2 "$run"; h1 "$run"; else h1 "$run"; h2 "$run"; fi
done

# One line per run, then the medians per label.
python3 - "$RESULTS" "$((RUNS * 2))" <<'PY'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1])][-int(sys.argv[2]):]
print(f"{'label':7} {'run':>3} {'deliv/s':>10} {'p50 ms':>7} {'p99 ms':>7} {'lost':>5} "
      f"{'idle MiB':>8} {'peak MiB':>8} {'KB/stream':>9}  load before -> after")
by = {}
for r in rows:
    x, s = r["report"], r["report"]["server"]
    per = (s["rss_peak_kib"] - s["rss_idle_kib"]) * 1024 / x["subscribers"] / 1000
    by.setdefault(r["label"], []).append((x["deliveries_per_sec"], x["latency"]["p99_us"], per))
    print(f"{r['label']:7} {r['run']:>3} {x['deliveries_per_sec']:>10,.0f} {x['latency']['p50_us']/1000:>7.1f} "
          f"{x['latency']['p99_us']/1000:>7.1f} {x['lost']:>5} {s['rss_idle_kib']/1024:>8.1f} "
          f"{s['rss_peak_kib']/1024:>8.1f} {per:>9.1f}  {x.get('load_before','?')} -> {r['load']}")
for label, v in sorted(by.items()):
    d, p, m = (statistics.median(c) for c in zip(*v))
    print(f"median {label}: {d:,.0f} deliveries/s, p99 {p/1000:.1f} ms, {m:.1f} KB per stream")
PY
