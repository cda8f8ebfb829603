#!/usr/bin/env bash
# Installs the reference servers the benchmarks compare against (nginx with
# the nchan module, wrk, aiohttp) and builds coop in release mode.
set -euo pipefail
cd "$(dirname "$0")/../.."
if ! command -v nginx >/dev/null || [ ! -e /usr/lib/nginx/modules/ngx_nchan_module.so ] || ! command -v wrk >/dev/null; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx-light libnginx-mod-nchan wrk
fi
python3 -c 'import aiohttp' 2>/dev/null || pip install -q aiohttp
cargo build --release -p coop
