"""Controller failover between replicas (run by failover.sh).

Starts two `rollgate serve` replicas on ROLLGATE_BENCH_DB_URL, then, KILLS
times: finds the leader, kills it with SIGKILL, and measures the time until
the survivor's /metrics says `rollgate_controller_leader 1`; then starts the
killed replica again on the same port.
"""

import os
import signal
import statistics
import subprocess
import sys
import time
import urllib.request

BIN = "target/release/rollgate"


def start(port):
    process = subprocess.Popen(
        [BIN, "serve", "--addr", f"127.0.0.1:{port}", "--database-url", os.environ["ROLLGATE_BENCH_DB_URL"]],
        env={**os.environ, "RUST_LOG": "error"},
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz").read()
            return process
        except OSError:
            time.sleep(0.05)
    sys.exit(f"replica on :{port} did not start")


def leads(port):
    try:
        text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics").read().decode()
    except OSError:
        return False
    return "rollgate_controller_leader 1" in text.splitlines()


def main():
    kills, base = int(sys.argv[1]), int(sys.argv[2])
    ports = [base, base + 1]
    replicas = {port: start(port) for port in ports}
    samples = []
    try:
        for _ in range(kills):
            deadline = time.monotonic() + 30
            while not any(leads(p) for p in ports):
                if time.monotonic() > deadline:
                    sys.exit("no replica leads")
                time.sleep(0.01)
            leader = next(p for p in ports if leads(p))
            survivor = next(p for p in ports if p != leader)
            replicas[leader].send_signal(signal.SIGKILL)
            killed = time.perf_counter()
            replicas[leader].wait()
            while not leads(survivor):
                if time.perf_counter() - killed > 30:
                    sys.exit("the survivor never took the lead")
                time.sleep(0.005)
            samples.append((time.perf_counter() - killed) * 1000)
            replicas[leader] = start(leader)
    finally:
        for process in replicas.values():
            process.kill()
            process.wait()
    samples.sort()
    print(f"{kills} SIGKILLs of the leader; the other replica led after (ms): "
          f"median {statistics.median(samples):.0f}, p95 {samples[min(len(samples) - 1, int(0.95 * len(samples)))]:.0f}, "
          f"max {samples[-1]:.0f}")


if __name__ == "__main__":
    main()
