#!/usr/bin/env bash
# Controller failover between replicas: two release-build replicas on one
# PostgreSQL database; the leader (rollgate_controller_leader 1 on /metrics)
# is killed with SIGKILL, and the time until the other reports that it leads
# is one sample. The killed replica is started again (as the follower) before
# the next kill.
# Usage: benches/load/failover.sh [KILLS]
# PostgreSQL: ROLLGATE_BENCH_PG (default postgres://postgres@127.0.0.1:5432/postgres);
# a fresh database is created on it and dropped afterwards.
set -euo pipefail
cd "$(dirname "$0")/../.."
kills="${1:-20}"
admin_url="${ROLLGATE_BENCH_PG:-postgres://postgres@127.0.0.1:5432/postgres}"
cargo build --release -q -p rollgate
db="rollgate_bench_failover_$$"
psql -q "$admin_url" -c "CREATE DATABASE $db"
export ROLLGATE_BENCH_DB_URL="${admin_url%/*}/$db"
export ROLLGATE_ADMIN_TOKEN="load-test-admin-token"
cleanup() {
  psql -q "$admin_url" -c "DROP DATABASE IF EXISTS $db WITH (FORCE)"
}
trap cleanup EXIT
echo "machine: $(nproc) cores"
python3 benches/load/failover.py "$kills" "${ROLLGATE_LOAD_PORT:-18081}"
