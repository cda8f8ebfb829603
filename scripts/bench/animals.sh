#!/usr/bin/env bash
# Animals API figures of issue 2, each beside its reference in the same run:
#   wrk    wrk -t2 -c100 -d10s on /animals/cow at zero delay: coop, nginx
#          `return 200` (nchan.conf, :8090), aiohttp farm; alternated RUNS times
#   hold   15,000 HTTP/1.1 requests held at --delay 5s: coop and the aiohttp
#          farm; 100,000 HTTP/2 (h2c) requests over 100 connections: coop
#   client 10,000 animals at --delay 1s: coop speak --timing and the talk's
#          aiohttp gather client, same server, wall time and peak RSS;
#          with BASE_SRC (another coop binary) its `speak` too. PAUSE=S
#          waits S seconds before each client run: a client that closes
#          first leaves 10,000 local ports in TIME_WAIT for a minute, which
#          slows the next client's connects (PAUSE=61 runs each on a clean
#          slate; 0, the default, back to back).
#   scripts/bench/animals.sh [RUNS] [wrk|hold|client ...]
source "$(dirname "$0")/common.sh"
RUNS=${1:-3}; shift || true
PARTS=${*:-wrk hold client}

wrk_rps() { # LABEL RUN URL
  log "wrk $1 run $2 (load $(load))"
  local rps
  rps=$(wrk -t2 -c100 -d10s "$3" | awk '/Requests\/sec/ {print $2}')
  record "$1" "$2" "{\"value\": $rps}"
  log "  $rps req/s"
}

hold() { # LABEL PIDS ARGS...
  local label=$1 pids=$2; shift 2
  log "hold $label (load $(load))"
  local json
  json=$("$COOP" bench hold --server-pid "$pids" --json --expect-body 'Moo!' "$@" || true)
  [ -n "$json" ] && record "$label" 1 "$json"
}

for part in $PARTS; do
  case $part in
  wrk)
    start_nchan
    coop=$(start_coop 8082 --delay 0)
    farm=$(start_aiofarm 0)
    for run in $(seq 1 "$RUNS"); do
      wrk_rps wrk-coop "$run" http://127.0.0.1:8082/animals/cow
      wrk_rps wrk-nginx "$run" http://127.0.0.1:8090/animals/cow
      wrk_rps wrk-aiohttp "$run" http://127.0.0.1:8093/animals/cow
    done
    stop_pid "$coop"; stop_pid "$farm"
    ;;
  hold)
    coop=$(start_coop 8083 --delay 5s)
    hold hold-coop-h1 "$coop" --url http://127.0.0.1:8083/animals/cow -c 15000 --delay 5s
    stop_pid "$coop"; sleep 2
    farm=$(start_aiofarm 5)
    hold hold-aiohttp-h1 "$farm" --url http://127.0.0.1:8093/animals/cow -c 15000 --delay 5s
    stop_pid "$farm"; sleep 2
    coop=$(start_coop 8083 --delay 5s)
    hold hold-coop-h2 "$coop" --url http://127.0.0.1:8083/animals/cow --http2 -c 100 -r 100000 --delay 5s
    stop_pid "$coop"
    ;;
  client)
    coop=$(start_coop 8084 --delay 1s)
    names=$(mktemp)
    python3 -c 'import itertools as i; a="cow pig sheep chicken bird duck dog cat frog horse turkey rooster".split(); print("\n".join(i.islice(i.cycle(a), 10000)))' > "$names"
    clients=(coop)
    if [ -n "${BASE_SRC:-}" ]; then private_copy BASE "$BASE_SRC"; clients+=(base); fi
    clients+=(aiohttp)
    for run in $(seq 1 "$RUNS"); do
      for client in "${clients[@]}"; do
        sleep "${PAUSE:-0}"
        log "client $client run $run (load $(load), $(ss -tan state time-wait | wc -l) sockets in TIME_WAIT)"
        case $client in
          coop|base)
            bin=$COOP; [ "$client" = base ] && bin=$BASE
            /usr/bin/time -f '%e %M' -o "$OUT/time.txt" "$bin" speak --url http://127.0.0.1:8084/animals --timing - < "$names" > "$OUT/speak.out" 2> "$OUT/speak.err" || true
            tail -n 3 "$OUT/speak.err" >&2 || true ;;
          aiohttp)
            # shellcheck disable=SC2046
            /usr/bin/time -f '%e %M' -o "$OUT/time.txt" python3 "$ANCHORS/gather_client.py" http://127.0.0.1:8084/animals $(cat "$names") > /dev/null 2> "$OUT/gather.err" || true ;;
        esac
        read -r wall rss < "$OUT/time.txt"
        record "client-$client-wall" "$run" "{\"value\": $wall}"
        record "client-$client-rss-mib" "$run" "{\"value\": $((rss / 1024))}"
        log "  wall $wall s, peak RSS $((rss / 1024)) MiB (load $(load))"
      done
    done
    rm -f "$names"
    stop_pid "$coop"
    ;;
  esac
done
python3 "$(dirname "$0")/median.py" "$OUT/results.jsonl" wrk hold client
