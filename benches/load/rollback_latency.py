#!/usr/bin/env python3
"""Time from the ingest response that makes a rollout guard fire to the first
OFREP answer that serves the control.

Against a running server (ROLLGATE_SERVER, ROLLGATE_TOKEN: an admin token):
applies a flag with a rollout plan (one phase at 50%, an absolute error-rate
guard at 2% with min_samples 200), starts it, assigns 2,000 units by OFREP,
sends their exposures, then, RUNS times: restarts the rollout, sends one batch
with a planted error regression for 500 of the treatment's units (12.5%
errors), and polls OFREP for a treatment unit until it is served the control. Prints each latency and the
median, p95 and max. Standard library only."""

import http.client
import json
import os
import statistics
import sys
import time
import urllib.parse
from datetime import datetime, timezone

SERVER = urllib.parse.urlparse(os.environ.get("ROLLGATE_SERVER", "http://127.0.0.1:8080"))
TOKEN = os.environ["ROLLGATE_TOKEN"]
RUNS = int(sys.argv[1]) if len(sys.argv) > 1 else 20
UNITS = 2000


def connection():
    return http.client.HTTPConnection(SERVER.hostname, SERVER.port, timeout=30)


def call(conn, method, path, body=None):
    headers = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}
    conn.request(method, path, body=None if body is None else json.dumps(body), headers=headers)
    response = conn.getresponse()
    data = response.read()
    if response.status >= 300:
        raise SystemExit(f"{method} {path}: {response.status} {data[:500]!r}")
    return json.loads(data) if data else None


def now():
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


PLAN = {
    "flags": [{
        "key": "latency-model", "type": "string", "off_variant": "simple",
        "variants": {"simple": "simple", "advanced": "advanced"},
        "default": {"serve": {"variant": "simple"}},
    }],
    "metrics": [{"key": "latency_error_rate", "kind": "ratio", "numerator": "calc_error",
                 "denominator": "calc_request", "higher_is_better": False}],
    "rollouts": [{
        "flag": "latency-model", "treatment": "advanced", "control": "simple",
        "phases": [{"name": "half", "percent": 50, "duration": "30d"}],
        "guards": [{"metric": "latency_error_rate", "max": 0.02, "action": "rollback",
                    "min_samples": 200}],
    }],
}


def main():
    api = connection()
    ofrep = connection()
    call(api, "POST", "/api/v1/apply", PLAN)
    call(api, "POST", "/api/v1/rollouts/latency-model/start", {"reason": "latency benchmark"})
    assigned = {}
    for i in range(UNITS):
        unit = f"bench-{i}"
        reply = call(ofrep, "POST", "/ofrep/v1/evaluate/flags/latency-model",
                     {"context": {"targetingKey": unit}})
        assigned[unit] = reply["variant"]
    treated = [u for u, v in assigned.items() if v == "advanced"]
    probe = treated[0]
    # Exposures, as the application's SDK would send them, so they are
    # folded before the measured batch (OFREP's own are flushed every 250 ms).
    exposures = [{"kind": "exposure", "flag": "latency-model", "variant": v,
                  "targetingKey": u, "timestamp": now()} for u, v in assigned.items()]
    for chunk in range(0, len(exposures), 1000):
        call(api, "POST", "/api/v1/events", {"events": exposures[chunk:chunk + 1000]})
    latencies = []
    for run in range(RUNS):
        if run > 0:
            call(api, "POST", "/api/v1/rollouts/latency-model/restart", {"reason": "next run"})
        reply = call(ofrep, "POST", "/ofrep/v1/evaluate/flags/latency-model",
                     {"context": {"targetingKey": probe}})
        assert reply["variant"] == "advanced", reply
        # 500 treatment units, 4 requests each, every other unit with an
        # error: a 12.5% error rate against the 2% limit.
        batch = []
        for i, unit in enumerate(treated[:500]):
            for _ in range(4):
                batch.append({"kind": "track", "name": "calc_request", "targetingKey": unit,
                              "timestamp": now()})
            if i % 2 == 0:
                batch.append({"kind": "track", "name": "calc_error", "targetingKey": unit,
                              "timestamp": now()})
        call(api, "POST", "/api/v1/events", {"events": batch})
        acknowledged = time.perf_counter()
        while True:
            reply = call(ofrep, "POST", "/ofrep/v1/evaluate/flags/latency-model",
                         {"context": {"targetingKey": probe}})
            if reply["variant"] == "simple":
                break
            if time.perf_counter() - acknowledged > 10:
                raise SystemExit("no rollback within 10 s")
        latency_ms = (time.perf_counter() - acknowledged) * 1000
        latencies.append(latency_ms)
        print(f"run {run + 1}: {latency_ms:.1f} ms", flush=True)
    latencies.sort()
    p95 = latencies[min(len(latencies) - 1, int(round(0.95 * (len(latencies) - 1))))]
    print(f"rollback_latency_result runs={len(latencies)} median_ms={statistics.median(latencies):.1f} "
          f"p95_ms={p95:.1f} max_ms={latencies[-1]:.1f}")


if __name__ == "__main__":
    main()
