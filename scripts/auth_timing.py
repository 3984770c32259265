"""Issue 11 item 7: unknown, revoked and expired tokens must be indistinguishable by timing.

Run through the local stack (it serves the function and exports local.env):
    scripts/local-stack.sh .venv/bin/python scripts/auth_timing.py [TRIES]

Makes a revoked and an expired key with the admin tool, then sends TRIES (default 200) requests
with each of: an unknown well-formed token, the revoked key, the expired key, a malformed token,
interleaved so that load drifts hit all alike, and prints the median and p90 latency of each in
milliseconds. Passes when the medians of unknown, revoked and expired are within 1 ms.
"""

import json
import os
import statistics
import subprocess
import sys
import time
import urllib.error
import urllib.request

TRIES = int(sys.argv[1]) if len(sys.argv) > 1 else 200
URL = f"http://127.0.0.1:{os.environ['API_PORT']}/webhooks"
ADMIN = [
    os.path.join(os.environ.get("CARGO_TARGET_DIR", "target"), "debug", "webhooks-admin"),
    "--json",
]


def admin(*args):
    out = subprocess.run(ADMIN + list(args), check=True, capture_output=True, text=True).stdout
    return json.loads(out)


def key(*extra):
    created = admin(
        "keys",
        "create",
        "--name",
        "timing",
        "--scope",
        "read:webhooks",
        "--company",
        os.environ["DEV_COMPANY_ID"],
        *extra,
    )
    return created["apiKeyId"], created["token"]


def timed(token):
    request = urllib.request.Request(URL, headers={"Authorization": f"Bearer {token}"})
    started = time.perf_counter()
    try:
        urllib.request.urlopen(request, timeout=10).read()
        status = 200
    except urllib.error.HTTPError as answer:
        answer.read()
        status = answer.code
    return (time.perf_counter() - started) * 1000, status


def main():
    revoked_id, revoked = key()
    admin("keys", "revoke", revoked_id)
    _, expired = key("--expires-at", "2020-01-01T00:00:00Z")
    tokens = {
        "unknown": "sk_" + "Unknown0123456789abcdefghijklmnopqrstuvw",
        "revoked": revoked,
        "expired": expired,
        "malformed": "sk_short",
    }
    samples = {name: [] for name in tokens}
    for _ in range(TRIES):
        for name, token in tokens.items():
            millis, status = timed(token)
            assert status == 401, f"{name}: {status}"
            samples[name].append(millis)
    print(f"auth timing over {TRIES} tries each (ms; local function via cargo lambda watch):")
    medians = {}
    for name, values in samples.items():
        values.sort()
        medians[name] = statistics.median(values)
        print(f"  {name:9} median {medians[name]:6.2f}  p90 {values[int(len(values) * 0.9)]:6.2f}")
    spread = max(medians[n] for n in ("unknown", "revoked", "expired")) - min(
        medians[n] for n in ("unknown", "revoked", "expired")
    )
    print(f"  spread of unknown/revoked/expired medians: {spread:.2f} ms (must be under 1 ms)")
    return 0 if spread < 1.0 else 1


if __name__ == "__main__":
    sys.exit(main())
