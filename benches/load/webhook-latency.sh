#!/usr/bin/env bash
# Rollback to webhook latency: the time from a rollout's rollback (by hand,
# and by a guard) to the arrival of its signed alert at a webhook receiver on
# loopback, against a release build on a fresh data dir.
# Usage: benches/load/webhook-latency.sh [ROUNDS]
set -euo pipefail
cd "$(dirname "$0")/../.."
rounds="${1:-100}"
cargo build --release -q -p rollgate
data_dir="$(mktemp -d)"
port="${ROLLGATE_LOAD_PORT:-18083}"
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
echo "machine: $(nproc) cores; server pid $server"
python3 benches/load/webhook_latency.py "$rounds"
