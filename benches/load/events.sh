#!/usr/bin/env bash
# Event ingestion load test. Against a release build on a fresh data dir, wrk
# (2 threads, 16 connections) posts batches of 1,000 track events over 10,000
# units to POST /api/v1/events for DURATION seconds (after a 3 s warm-up). Then
# the server is killed with SIGKILL and the SQLite file is checked: every batch
# answered 200 must be stored whole. Last, the same number of events is written
# as raw rows (crates/store/benches/raw_insert.rs), for comparison.
#
# Usage: benches/load/events.sh [DURATION_SECONDS]
# Environment:
#   EVENTS_CONNECTIONS=N  wrk connections (default 16)
#   EVENTS_METRICS=1      first apply benches/load/events.toml (a flag and four
#                         metrics over the load's events) and expose the 10,000
#                         units to it, so the aggregator does its full work
#   EVENTS_PERF_DATA=FILE record a perf profile (DWARF call graphs) of the
#                         server during the measured run
set -euo pipefail
export LC_ALL=C
cd "$(dirname "$0")/../.."
duration="${1:-20}"
connections="${EVENTS_CONNECTIONS:-16}"
threads=2
events_per_batch=1000
target_events_per_s=250000
raw_sample_events=200000

for tool in wrk sqlite3 curl; do
  command -v "$tool" >/dev/null || { echo "$tool is missing: apt-get install $tool" >&2; exit 1; }
done
cargo build --release -q -p rollgate
cargo bench -q -p store --bench raw_insert --no-run

work="$(mktemp -d)"
: >"$work/setup.ids"
data_dir="$work/data"
export ROLLGATE_ADMIN_TOKEN="load-test-admin-token"
export ROLLGATE_TOKEN="$ROLLGATE_ADMIN_TOKEN"
server=""
rss_sampler=""
cleanup() {
  [ -n "$rss_sampler" ] && kill "$rss_sampler" 2>/dev/null
  [ -n "$server" ] && kill -9 "$server" 2>/dev/null && wait "$server" 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT

RUST_LOG=warn target/release/rollgate serve --addr 127.0.0.1:0 --data-dir "$data_dir" 2>"$work/server.log" &
server=$!
url=""
for _ in $(seq 200); do
  url="$(sed -n 's/^Rollgate listening on \(http:[^ ]*\).*/\1/p' "$work/server.log")"
  [ -n "$url" ] && break
  kill -0 "$server" 2>/dev/null || { cat "$work/server.log" >&2; exit 1; }
  sleep 0.05
done
[ -n "$url" ] || { echo "the server did not start:" >&2; cat "$work/server.log" >&2; exit 1; }

echo "machine: $(nproc) cores, $(awk '/MemTotal/ { printf "%.0f GiB", $2 / 1048576 }' /proc/meminfo); load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "server: $url (pid $server); wrk: $threads threads, $connections connections, ${duration} s, batches of $events_per_batch events"

if [ "${EVENTS_METRICS:-0}" = 1 ]; then
  ROLLGATE_SERVER="$url" target/release/rollgate apply benches/load/events.toml >/dev/null
  # Units u-0 … u-9999 alternate between the flag's two variants.
  for first in $(seq 0 1000 9999); do
    seq "$first" $((first + 999)) | awk 'BEGIN { printf "{\"events\":[" }
      { printf "%s{\"kind\":\"exposure\",\"flag\":\"calc-model\",\"variant\":\"%s\",\"targetingKey\":\"u-%d\"}",
          (NR > 1 ? "," : ""), ($1 % 2 ? "advanced" : "simple"), $1 }
      END { printf "]}" }' >"$work/exposures.json"
    curl -fsS -w '\n' -H "Authorization: Bearer $ROLLGATE_TOKEN" -H "Content-Type: application/json" \
      --data-binary @"$work/exposures.json" "$url/api/v1/events" |
      sed -n 's/.*"batch":\([0-9]*\).*/\1/p' >>"$work/setup.ids"
  done
  echo "applied benches/load/events.toml and exposed 10,000 units to calc-model"
fi

cpu_seconds() { # user + system CPU time of the server so far
  awk -v hz="$(getconf CLK_TCK)" '{ print ($14 + $15) / hz }' "/proc/$server/stat"
}
machine_seconds() { # CPU time of every process (user, nice, system, irq, softirq) and steal so far
  awk -v hz="$(getconf CLK_TCK)" '$1 == "cpu" { print ($2 + $3 + $4 + $7 + $8) / hz, $9 / hz }' /proc/stat
}
status_kib() { awk -v key="$1:" '$1 == key { print $2 }' "/proc/$server/status"; }

echo "warm-up (3 s)…"
EVENTS_ACKED_IDS="$work/warmup.ids" wrk -t"$threads" -c"$connections" -d3s --timeout 10s \
  -s benches/load/events.lua "$url" >"$work/warmup.out"
grep '^events_result' "$work/warmup.out"

( while sleep 1; do status_kib VmRSS; done >"$work/rss.kib" 2>/dev/null ) &
rss_sampler=$!
perf=""
if [ -n "${EVENTS_PERF_DATA:-}" ]; then
  perf record -q -F 99 --call-graph dwarf,16384 -p "$server" -o "$EVENTS_PERF_DATA" -- sleep "$duration" 2>/dev/null &
  perf=$!
fi
cpu_before="$(cpu_seconds)"
read -r busy_before steal_before < <(machine_seconds)
EVENTS_ACKED_IDS="$work/run.ids" wrk -t"$threads" -c"$connections" -d"${duration}s" --timeout 10s \
  --latency -s benches/load/events.lua "$url" | tee "$work/run.out"
cpu_after="$(cpu_seconds)"
read -r busy_after steal_after < <(machine_seconds)
load_after="$(cut -d' ' -f1-3 /proc/loadavg)"
kill "$rss_sampler" 2>/dev/null; wait "$rss_sampler" 2>/dev/null || true
rss_sampler=""
peak_rss_kib="$(status_kib VmHWM)"
final_rss_kib="$(status_kib VmRSS)"
[ -n "$perf" ] && wait "$perf"

db="$data_dir/rollgate.db"
# How far the background aggregator (if this build has one) had folded the log.
aggregation="$(sqlite3 "$db" "SELECT (SELECT MAX(id) FROM event_batches) - last_batch_id FROM aggregation_progress" 2>/dev/null || echo -)"

# A crash, not a shutdown: what was acknowledged must already be on disk.
kill -9 "$server"
wait "$server" 2>/dev/null || true
server=""

result="$(grep '^events_result' "$work/run.out")"
field() { sed -n "s/.* $1=\([^ ]*\).*/\1/p" <<<"$result"; }
ok="$(field ok)"
seconds="$(field seconds)"
ingest_rate="$(field events_per_s)"

cat "$work/setup.ids" "$work/warmup.ids" "$work/run.ids" | sort >"$work/acked.ids"
sqlite3 "$db" "SELECT id FROM event_batches" | sort >"$work/stored.ids"
acked_batches="$(wc -l <"$work/acked.ids")"
missing="$(comm -23 "$work/acked.ids" "$work/stored.ids" | wc -l)"
unanswered="$(comm -13 "$work/acked.ids" "$work/stored.ids" | wc -l)"
stored_events="$(sqlite3 "$db" "SELECT COALESCE(SUM(event_count), 0) FROM event_batches")"
partial="$(sqlite3 "$db" "SELECT COUNT(*) FROM event_batches WHERE event_count != $events_per_batch")"

echo
echo "== HTTP ingest (POST /api/v1/events) =="
echo "acknowledged: $((ok * events_per_batch)) events in $ok batches in $seconds s = $ingest_rate events/s"
echo "not acknowledged (non-200, e.g. 429 backpressure): $(field non200) [$(field statuses)]; socket errors $(field socket_errors), timeouts $(field timeouts)"
echo "latency per batch: p50 $(field p50_ms) ms, p99 $(field p99_ms) ms, max $(field max_ms) ms"
awk -v b="$cpu_before" -v a="$cpu_after" -v bb="$busy_before" -v ba="$busy_after" \
  -v sb="$steal_before" -v sa="$steal_after" -v s="$seconds" 'BEGIN {
  printf "CPU, cores busy on average: server %.2f; everything else (wrk, other processes) %.2f; stolen by the host %.2f\n",
    (a - b) / s, (ba - bb - (a - b)) / s, (sa - sb) / s }'
awk -v hwm="$peak_rss_kib" -v now="$final_rss_kib" '
  { if (n == 0) first = $1; n++; if ($1 > max) max = $1 }
  END { printf "server memory: peak RSS (VmHWM) %.0f MiB; RSS sampled each second: first %.0f, max %.0f, at the end %.0f MiB\n",
        hwm / 1024, first / 1024, max / 1024, now / 1024 }' "$work/rss.kib"
echo "server RSS every 5 s (MiB): $(awk 'NR % 5 == 0 { printf "%s%.0f", sep, $1 / 1024; sep = " " }' "$work/rss.kib")"
echo "aggregator behind by $aggregation batches when the load stopped"
echo "load average after: $load_after"
echo
echo "== Accounting after kill -9 (setup + warm-up + run) =="
echo "batches answered 200: $acked_batches; stored: $(wc -l <"$work/stored.ids"); answered but missing: $missing"
echo "stored but never answered (in flight when wrk stopped, at most 2 x $connections): $unanswered"
echo "events stored: $stored_events = $events_per_batch x ($acked_batches + $unanswered)? $(
  [ "$stored_events" -eq $((events_per_batch * (acked_batches + unanswered))) ] && [ "$partial" -eq 0 ] && echo yes || echo NO)"
if [ "$missing" -ne 0 ] || [ "$partial" -ne 0 ] || [ "$stored_events" -ne $((events_per_batch * (acked_batches + unanswered))) ]; then
  echo "DURABILITY CHECK FAILED" >&2
  exit 1
fi

echo
echo "== Raw SQLite inserts of the same rows (1,000 per transaction, WAL, synchronous=FULL) =="
# The faster way (one multi-row INSERT per transaction) writes as many events
# as the server acknowledged; the slower one (1,000 prepared single-row
# INSERTs) a sample, to show the difference without a minute's wait.
raw_bench() { cargo bench -q -p store --bench raw_insert -- --dir "$work" "$@" | grep '^raw_insert_result'; }
raw="$(raw_bench --method multi-row --events "$((ok * events_per_batch))")"
echo "$raw"
raw_bench --method prepared --events "$raw_sample_events"
raw_rate="$(sed -n 's/.*events_per_s=\([0-9]*\).*/\1/p' <<<"$raw")"
raw_method=multi-row

echo
echo "== Summary =="
awk -v i="$ingest_rate" -v r="$raw_rate" -v m="$raw_method" -v t="$target_events_per_s" 'BEGIN {
  printf "ingest %.0f events/s; raw inserts (%s, the faster) %.0f events/s; ingest/raw = %.2f\n", i, m, r, i / r
  printf "target >= %d events/s: %s; target >= half the raw rate: %s\n", t,
    (i >= t ? "met" : "NOT met"), (i >= r / 2 ? "met" : "NOT met")
}'
