"""Resolves the flags of examples/ofrep-types.toml through the published
OpenFeature Python SDK and its OFREP provider, against a running Rollgate.

    python tests/python/ofrep_client.py [SERVER_URL [TOKEN]]

SERVER_URL and TOKEN default to $ROLLGATE_SERVER and $ROLLGATE_TOKEN. The flags
must already be applied (`rollgate apply examples/ofrep-types.toml`). Prints one
line per check and exits 1 if any check fails, 2 on bad usage.

crates/server/tests/python_ofrep.rs runs this with a client token; scripts/test
installs the pinned SDK and provider into .venv.
"""

import os
import sys

from openfeature import api
from openfeature.contrib.provider.ofrep import OFREPProvider
from openfeature.evaluation_context import EvaluationContext
from openfeature.exception import ErrorCode
from openfeature.flag_evaluation import Reason

# Targeting keys tried on a 50/50 split; enough that both sides are seen.
SPLIT_SAMPLE_SIZE = 40

failures = 0
checks = 0


def check(label, actual, expected, details=None):
    """Records one check and prints a line for it."""
    global failures, checks
    checks += 1
    if actual == expected:
        print(f"ok    {label}: {actual!r}")
        return
    failures += 1
    extra = f" ({details})" if details else ""
    print(f"FAIL  {label}: got {actual!r}, expected {expected!r}{extra}")


def check_success(label, details, value, variant, reason):
    """A successful evaluation: value, its Python type, variant and reason."""
    why = details.error_message
    check(f"{label} value", details.value, value, why)
    check(f"{label} value type", type(details.value).__name__, type(value).__name__, why)
    check(f"{label} variant", details.variant, variant, why)
    check(f"{label} reason", details.reason, reason, why)
    check(f"{label} error code", details.error_code, None, why)


def check_error(label, details, default, error_code):
    """A failed evaluation: the code default comes back with the error code."""
    check(f"{label} value is the code default", details.value, default)
    check(f"{label} variant", details.variant, None)
    check(f"{label} reason", details.reason, Reason.ERROR)
    check(f"{label} error code", details.error_code, error_code, details.error_message)


def main(argv):
    url = argv[1] if len(argv) > 1 else os.environ.get("ROLLGATE_SERVER", "")
    token = argv[2] if len(argv) > 2 else os.environ.get("ROLLGATE_TOKEN", "")
    if not url or not token:
        print(__doc__, file=sys.stderr)
        return 2

    api.set_provider(
        OFREPProvider(url, headers_factory=lambda: {"Authorization": f"Bearer {token}"})
    )
    client = api.get_client()

    user = EvaluationContext(targeting_key="user-7", attributes={"plan": "free"})
    tester = EvaluationContext(
        targeting_key="user-8", attributes={"email": "ana@example.com"}
    )

    check_success(
        "boolean new-checkout",
        client.get_boolean_details("new-checkout", False, user),
        True, "on", Reason.STATIC,
    )

    # A flag with rules that none matches: OFREP has no DEFAULT, so the server
    # says UNKNOWN and puts the exact reason in the flag metadata.
    fallthrough = client.get_string_details("calc-model", "fallback", user)
    check_success("string calc-model, no rule matches", fallthrough, "simple", "simple", Reason.UNKNOWN)
    check("string calc-model metadata", dict(fallthrough.flag_metadata), {"reason": "DEFAULT"})
    check_success(
        "string calc-model, tester rule",
        client.get_string_details("calc-model", "fallback", tester),
        "advanced", "advanced", Reason.TARGETING_MATCH,
    )

    check_success(
        "integer max-items",
        client.get_integer_details("max-items", 1, user),
        100, "many", Reason.STATIC,
    )

    check_success(
        "float discount-rate",
        client.get_float_details("discount-rate", -1.0, user),
        0.25, "some", Reason.UNKNOWN,
    )
    # Written as the integer 1 in the file; must arrive as a float.
    check_success(
        "float discount-rate, staff rule",
        client.get_float_details("discount-rate", -1.0, tester),
        1.0, "full", Reason.TARGETING_MATCH,
    )

    check_success(
        "object ui-config",
        client.get_object_details("ui-config", {}, user),
        {"theme": "dark", "columns": 3}, "fancy", Reason.STATIC,
    )

    check_success(
        "disabled legacy-export",
        client.get_boolean_details("legacy-export", True, user),
        False, "off", Reason.DISABLED,
    )

    # Splits: sticky per targeting key, both sides served, the value is the
    # variant's own.
    seen = set()
    for i in range(SPLIT_SAMPLE_SIZE):
        ctx = EvaluationContext(targeting_key=f"user-{i}")
        first = client.get_string_details("rollout", "fallback", ctx)
        again = client.get_string_details("rollout", "fallback", ctx)
        if first.reason != Reason.SPLIT or first.variant not in ("a", "b") or first.value != first.variant:
            check(f"split rollout for user-{i}", (first.value, first.variant, first.reason),
                  ("a or b", "the value", Reason.SPLIT), first.error_message)
        if (again.value, again.variant) != (first.value, first.variant):
            check(f"split rollout is sticky for user-{i}", again.variant, first.variant)
        seen.add(first.variant)
    check(f"split rollout over {SPLIT_SAMPLE_SIZE} keys serves", sorted(seen), ["a", "b"])

    pro = EvaluationContext(targeting_key="user-3", attributes={"plan": "pro"})
    in_rule = client.get_string_details("calc-model", "fallback", pro)
    check("split rule calc-model reason", in_rule.reason, Reason.SPLIT, in_rule.error_message)
    check("split rule calc-model value is the variant's", in_rule.value, in_rule.variant)

    check_error(
        "split rollout without targeting key",
        client.get_string_details("rollout", "fallback", EvaluationContext(attributes={"plan": "free"})),
        "fallback", ErrorCode.TARGETING_KEY_MISSING,
    )

    check_error(
        "missing no-such-flag",
        client.get_boolean_details("no-such-flag", True, user),
        True, ErrorCode.FLAG_NOT_FOUND,
    )
    check("missing no-such-flag value API", client.get_boolean_value("no-such-flag", True, user), True)

    # The SDK checks the type it asked for; the server never knows it.
    check_error(
        "string flag read as integer",
        client.get_integer_details("calc-model", 7, user),
        7, ErrorCode.TYPE_MISMATCH,
    )

    api.set_provider(
        OFREPProvider(url, headers_factory=lambda: {"Authorization": "Bearer not-a-token"}),
        domain="stranger",
    )
    check_error(
        "unknown token",
        api.get_client("stranger").get_boolean_details("new-checkout", False, user),
        False, ErrorCode.GENERAL,
    )

    api.shutdown()
    if failures:
        print(f"python ofrep client: {failures} of {checks} checks FAILED")
        return 1
    print(f"python ofrep client: all {checks} checks ok")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
