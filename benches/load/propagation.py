"""Config propagation between replicas (run by propagation.sh).

For each change: apply the flag `banner` with a new default variant on
replica A; from the moment A answers, evaluate the flag on replica B over
and over until B serves the new variant; the time between is one sample.
"""

import json
import statistics
import sys
import time
import urllib.request

ADMIN = "load-test-admin-token"
VARIANTS = ["blue", "green"]


def call(base, path, body, token=ADMIN):
    request = urllib.request.Request(
        base + path,
        data=json.dumps(body).encode(),
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request) as response:
        return json.loads(response.read())


def config(variant):
    return {
        "flags": [{
            "key": "banner", "type": "string", "off_variant": "off",
            "variants": {"off": "off", "blue": "blue", "green": "green"},
            "default": {"serve": {"variant": variant}},
        }]
    }


def served(base):
    try:
        body = call(base, "/ofrep/v1/evaluate/flags/banner", {"context": {"targetingKey": "u"}})
    except urllib.error.HTTPError:
        return None
    return body.get("variant")


def main():
    changes, a, b = int(sys.argv[1]), sys.argv[2], sys.argv[3]
    call(a, "/api/v1/apply", config("off"))
    while served(b) != "off":
        pass
    samples = []
    polls = []
    for i in range(changes):
        variant = VARIANTS[i % 2]
        call(a, "/api/v1/apply", config(variant))
        start = time.perf_counter()
        n = 0
        while True:
            n += 1
            if served(b) == variant:
                break
            if time.perf_counter() - start > 30:
                sys.exit(f"change {i}: replica B never served {variant}")
        samples.append((time.perf_counter() - start) * 1000)
        polls.append(n)
    samples.sort()
    p = lambda q: samples[min(len(samples) - 1, int(q * len(samples)))]
    print(f"{changes} config changes applied on A, served by B after (ms): "
          f"median {statistics.median(samples):.1f}, p95 {p(0.95):.1f}, p99 {p(0.99):.1f}, "
          f"max {samples[-1]:.1f}; B answered the old config on {sum(polls) - changes} "
          f"of {sum(polls)} polls")


if __name__ == "__main__":
    main()
