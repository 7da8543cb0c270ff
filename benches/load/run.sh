#!/usr/bin/env bash
# OFREP load test: drives the single-flag endpoint with wrk (2 threads, 64
# connections, a new targeting key per request) against a release build on a
# fresh data dir. Usage: benches/load/run.sh [DURATION_SECONDS]
# With EXPOSURES=off the flag does not record exposures (for comparison).
set -euo pipefail
cd "$(dirname "$0")/../.."
duration="${1:-30}"
command -v wrk >/dev/null || { echo "wrk is missing: apt-get install wrk" >&2; exit 1; }
cargo build --release -q -p rollgate
data_dir="$(mktemp -d)"
port="${ROLLGATE_LOAD_PORT:-18080}"
export ROLLGATE_ADMIN_TOKEN="load-test-admin-token"
export ROLLGATE_TOKEN="$ROLLGATE_ADMIN_TOKEN"
export ROLLGATE_SERVER="http://127.0.0.1:$port"
RUST_LOG=warn target/release/rollgate serve --addr "127.0.0.1:$port" --data-dir "$data_dir" &
server=$!
trap 'kill $server 2>/dev/null; wait $server 2>/dev/null; rm -rf "$data_dir"' EXIT
for _ in $(seq 100); do
  curl -fsS "$ROLLGATE_SERVER/healthz" >/dev/null 2>&1 && break
  sleep 0.1
done
flags="benches/load/flags.toml"
if [ "${EXPOSURES:-on}" = "off" ]; then
  flags="$data_dir/flags.toml"
  sed 's/^off_variant = "classic"$/&\nrecord_exposures = false/' benches/load/flags.toml > "$flags"
fi
target/release/rollgate apply "$flags" >/dev/null
echo "warm-up (5 s)…"
wrk -t2 -c64 -d5s -s benches/load/ofrep-single.lua "$ROLLGATE_SERVER" >/dev/null
wrk -t2 -c64 -d"${duration}s" --latency -s benches/load/ofrep-single.lua "$ROLLGATE_SERVER"
