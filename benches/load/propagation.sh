#!/usr/bin/env bash
# Config propagation between replicas: two release-build replicas on one
# PostgreSQL database; the time from the HTTP response of a config change on
# replica A to the first OFREP response of replica B that serves it.
# Usage: benches/load/propagation.sh [CHANGES]
# PostgreSQL: ROLLGATE_BENCH_PG (default postgres://postgres@127.0.0.1:5432/postgres);
# a fresh database is created on it and dropped afterwards.
set -euo pipefail
cd "$(dirname "$0")/../.."
changes="${1:-200}"
admin_url="${ROLLGATE_BENCH_PG:-postgres://postgres@127.0.0.1:5432/postgres}"
cargo build --release -q -p rollgate
db="rollgate_bench_propagation_$$"
psql -q "$admin_url" -c "CREATE DATABASE $db"
db_url="${admin_url%/*}/$db"
export ROLLGATE_ADMIN_TOKEN="load-test-admin-token"
port_a="${ROLLGATE_LOAD_PORT:-18081}"
port_b=$((port_a + 1))
RUST_LOG=warn target/release/rollgate serve --addr "127.0.0.1:$port_a" --database-url "$db_url" &
a=$!
RUST_LOG=warn target/release/rollgate serve --addr "127.0.0.1:$port_b" --database-url "$db_url" &
b=$!
cleanup() {
  kill "$a" "$b" 2>/dev/null || true
  wait "$a" "$b" 2>/dev/null || true
  psql -q "$admin_url" -c "DROP DATABASE IF EXISTS $db WITH (FORCE)"
}
trap cleanup EXIT
for port in "$port_a" "$port_b"; do
  for _ in $(seq 100); do
    curl -fsS "http://127.0.0.1:$port/healthz" >/dev/null 2>&1 && break
    sleep 0.1
  done
done
echo "machine: $(nproc) cores; replicas $a (:$port_a) and $b (:$port_b)"
python3 benches/load/propagation.py "$changes" "http://127.0.0.1:$port_a" "http://127.0.0.1:$port_b"
