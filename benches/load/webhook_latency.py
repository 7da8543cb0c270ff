#!/usr/bin/env python3
"""Time from a rollback to the arrival of its alert at a webhook receiver on
loopback.

Against a running server (ROLLGATE_SERVER, ROLLGATE_TOKEN: an admin token):
starts a receiver on a loopback port that records when each request arrives
and checks its signature, applies a flag with a rollout plan (one phase at
50%, an absolute error-rate guard at 2% with min_samples 200) and a `json`
channel that wants `rollback`, then ROUNDS times each:

- manual: (re)starts the rollout, rolls it back by hand (POST
  /api/v1/rollouts/{flag}/rollback, what `rollgate rollout rollback` sends)
  and waits for the alert. Latency from the moment the command returned
  (negative: the alert arrived before the command's answer), and from the
  moment it was sent (an upper bound);
- guard: restarts the rollout and sends one batch with a planted error
  regression (12.5% errors in 500 treatment units); the controller rolls back.
  Latency from the payload's `at` (the controller's clock when it built the
  step's announcements, just before committing the rollback).

Prints each latency and the median, p95 and max per path. Standard library
only."""

import hashlib
import hmac
import http.client
import http.server
import json
import os
import queue
import statistics
import sys
import threading
import time
import urllib.parse
from datetime import datetime, timezone

SERVER = urllib.parse.urlparse(os.environ.get("ROLLGATE_SERVER", "http://127.0.0.1:8080"))
TOKEN = os.environ["ROLLGATE_TOKEN"]
ROUNDS = int(sys.argv[1]) if len(sys.argv) > 1 else 100
UNITS = 2000
SECRET = b"webhook-latency-secret"
FLAG = "webhook-model"
WAIT_S = 10

arrivals = queue.Queue()


class Hook(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"]))
        arrived = time.time()
        expected = "sha256=" + hmac.new(SECRET, body, hashlib.sha256).hexdigest()
        signed = hmac.compare_digest(expected, self.headers.get("X-Rollgate-Signature", ""))
        self.send_response(204)
        self.send_header("Content-Length", "0")
        self.end_headers()
        arrivals.put((arrived, signed, json.loads(body)))

    def log_message(self, *args):
        pass


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


def epoch(rfc3339):
    return datetime.fromisoformat(rfc3339.replace("Z", "+00:00")).timestamp()


def plan(hook_url):
    return {
        "flags": [{
            "key": FLAG, "type": "string", "off_variant": "simple",
            "variants": {"simple": "simple", "advanced": "advanced"},
            "default": {"serve": {"variant": "simple"}},
        }],
        "metrics": [{"key": "webhook_error_rate", "kind": "ratio", "numerator": "calc_error",
                     "denominator": "calc_request", "higher_is_better": False}],
        "rollouts": [{
            "flag": FLAG, "treatment": "advanced", "control": "simple",
            "phases": [{"name": "half", "percent": 50, "duration": "30d"}],
            "guards": [{"metric": "webhook_error_rate", "max": 0.02, "action": "rollback",
                        "min_samples": 200}],
        }],
        "channels": [{"key": "bench", "url": hook_url, "format": "json",
                      "secret": SECRET.decode(), "events": ["rollback"]}],
    }


def alert():
    """The next rollback alert: (arrival, payload)."""
    try:
        arrived, signed, payload = arrivals.get(timeout=WAIT_S)
    except queue.Empty:
        raise SystemExit(f"no alert within {WAIT_S} s")
    if not signed:
        raise SystemExit(f"a badly signed alert: {payload}")
    if payload["event"] != "rollback" or payload["flag"] != FLAG:
        raise SystemExit(f"an unexpected alert: {payload}")
    return arrived, payload


def summary(name, latencies):
    ordered = sorted(latencies)
    p95 = ordered[min(len(ordered) - 1, int(round(0.95 * (len(ordered) - 1))))]
    print(f"webhook_latency_result path={name} runs={len(ordered)} "
          f"median_ms={statistics.median(ordered):.1f} p95_ms={p95:.1f} max_ms={ordered[-1]:.1f}",
          flush=True)


def main():
    hook = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Hook)
    threading.Thread(target=hook.serve_forever, daemon=True).start()
    api = connection()
    ofrep = connection()
    call(api, "POST", "/api/v1/apply", plan(f"http://127.0.0.1:{hook.server_address[1]}/hook"))

    from_return, from_sent = [], []
    for run in range(ROUNDS):
        command = "start" if run == 0 else "restart"
        call(api, "POST", f"/api/v1/rollouts/{FLAG}/{command}", {"reason": "webhook benchmark"})
        sent = time.time()
        call(api, "POST", f"/api/v1/rollouts/{FLAG}/rollback", {"reason": "manual benchmark"})
        returned = time.time()
        arrived, payload = alert()
        if payload["trigger"]["kind"] != "manual":
            raise SystemExit(f"expected a manual rollback: {payload}")
        from_return.append((arrived - returned) * 1000)
        from_sent.append((arrived - sent) * 1000)
        print(f"manual {run + 1}: {from_return[-1]:.1f} ms after the answer, "
              f"{from_sent[-1]:.1f} ms after the request", flush=True)

    call(api, "POST", f"/api/v1/rollouts/{FLAG}/restart", {"reason": "guard rounds"})
    assigned = {}
    for i in range(UNITS):
        unit = f"bench-{i}"
        reply = call(ofrep, "POST", f"/ofrep/v1/evaluate/flags/{FLAG}",
                     {"context": {"targetingKey": unit}})
        assigned[unit] = reply["variant"]
    treated = [u for u, v in assigned.items() if v == "advanced"]
    exposures = [{"kind": "exposure", "flag": FLAG, "variant": v, "targetingKey": u,
                  "timestamp": now()} for u, v in assigned.items()]
    for chunk in range(0, len(exposures), 1000):
        call(api, "POST", "/api/v1/events", {"events": exposures[chunk:chunk + 1000]})
    from_commit = []
    for run in range(ROUNDS):
        if run > 0:
            call(api, "POST", f"/api/v1/rollouts/{FLAG}/restart", {"reason": "next round"})
        batch = []
        for i, unit in enumerate(treated[:500]):
            for _ in range(4):
                batch.append({"kind": "track", "name": "calc_request", "targetingKey": unit,
                              "timestamp": now()})
            if i % 2 == 0:
                batch.append({"kind": "track", "name": "calc_error", "targetingKey": unit,
                              "timestamp": now()})
        call(api, "POST", "/api/v1/events", {"events": batch})
        arrived, payload = alert()
        if payload["trigger"]["kind"] != "guard":
            raise SystemExit(f"expected a guard's rollback: {payload}")
        from_commit.append((arrived - epoch(payload["at"])) * 1000)
        print(f"guard {run + 1}: {from_commit[-1]:.1f} ms after the rollback's `at`", flush=True)

    summary("manual_from_answer", from_return)
    summary("manual_from_request", from_sent)
    summary("guard_from_at", from_commit)


if __name__ == "__main__":
    main()
