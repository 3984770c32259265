#!/usr/bin/env bash
# Drives the locally served function with schemathesis from openapi.yaml: no 5xx, and every
# answer must match the document. Run through scripts/local-stack.sh (see `make fuzz-api`), which
# exports local.env, API_PORT and AWS_ENDPOINT_URL.
#
#   scripts/fuzz-api.sh [EXAMPLES]    EXAMPLES: test cases per operation and mode (default 50)
#
# Schemathesis runs over all twelve operations:
#   1. the stateful phase: schemathesis walks the document's `links` (create -> get -> patch ->
#      delete, and to reset-circuit, test, rotate-secret, the deliveries list and recover; the
#      list -> get and resend of its first delivery; delete -> get answers 404), with the
#      checks that need real resources (use_after_free, ensure_resource_availability). It runs
#      first, so that its creates are not refused because the fuzzing already used up the API
#      key's webhook limit. A second stateful run walks only create, test and the four delivery
#      operations, whose links from create the first reaches only now and then.
#   2. the examples and fuzzing phases (positive and negative data), with per-operation budgets:
#      operations whose only input is the path id need far fewer cases than create and PATCH.
#   3. a walk of the delivery routes in order (create, test ping, list, get, resend, recover,
#      an unknown delivery): each answers its success on the deliveries queue made here.
#
# Rate limits: the run sends a few thousand requests with one API key within minutes, so that key
# needs limits far above the default 60 a minute / 2,000 an hour (see FUZZ_MIN_PER_MINUTE). A
# preflight request reads the key's X-RateLimit-* headers and stops early when they are too low,
# and the run fails if any answer was 429: a rate-limited run would pass while testing nothing.
#
# cargo lambda watch (the local stand-in for API Gateway) answers 500 itself, before the function
# runs, to header bytes that are not UTF-8. So strings are ASCII, and the coverage phase (which
# sends Latin-1 header values whatever the codec) is left out. The function's own answer to such
# bytes is a 400, checked by the handler tests; non-ASCII bodies by the property tests.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
examples=${1:-50}
# A key of its own, with both scopes and limits high enough for thousands of requests (the
# development keys keep InstaView's defaults).
if [[ -z ${FUZZ_API_TOKEN:-} ]]; then
  FUZZ_API_TOKEN=$("${CARGO_TARGET_DIR:-target}/debug/webhooks-admin" --json keys create \
    --name "schemathesis" --scope read:webhooks --scope write:webhooks --company "$DEV_COMPANY_ID" \
    --rate-limit-minute 1000000 --rate-limit-hour 1000000 |
    "$root/.venv/bin/python" -c 'import json, sys; print(json.load(sys.stdin)["token"])')
fi
token=$FUZZ_API_TOKEN
base_url="http://127.0.0.1:${API_PORT}"
min_per_minute=${FUZZ_MIN_PER_MINUTE:-3000}
min_per_hour=${FUZZ_MIN_PER_HOUR:-20000}
stateful_examples=${FUZZ_STATEFUL_EXAMPLES:-$examples}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
spec="$root/openapi.yaml"
schemathesis="$root/.venv/bin/schemathesis"
python="$root/.venv/bin/python"

at_least() { # at_least N MIN: the larger of the two
  if (($1 > $2)); then echo "$1"; else echo "$2"; fi
}

# ---------------------------------------------------------------- the deliveries queue
# Resend and recover queue their jobs on the deliveries queue (DELIVERIES_QUEUE_URL). Without
# PIPELINE=1, local-stack.sh starts no SQS poller, which is what creates the queues: create
# this one here, so that those routes answer 202 instead of failing on a missing queue. Nothing
# consumes it; its messages go with moto.
"$python" - <<'PY'
import os
import boto3

url = os.environ["DELIVERIES_QUEUE_URL"]
sqs = boto3.client(
    "sqs",
    endpoint_url=os.environ["AWS_ENDPOINT_URL"],
    region_name=os.environ["AWS_REGION"],
    aws_access_key_id=os.environ["AWS_ACCESS_KEY_ID"],
    aws_secret_access_key=os.environ["AWS_SECRET_ACCESS_KEY"],
)
made = sqs.create_queue(QueueName=url.rstrip("/").rsplit("/", 1)[-1])["QueueUrl"]
print(f"==> deliveries queue for resend and recover: {made}")
PY

# ---------------------------------------------------------------- preflight: the key's rate limits
headers="$work/preflight.headers"
status=$(curl -sS -o /dev/null -D "$headers" -w '%{http_code}' \
  -H "Authorization: Bearer ${token}" "$base_url/webhooks")
limit_of() { # limit_of HEADER-NAME: its value in the preflight answer, or empty
  { grep -i "^$1:" "$headers" || true; } | tail -n 1 | cut -d: -f2 | tr -d ' \r'
}
per_minute=$(limit_of X-RateLimit-Limit-Minute)
per_hour=$(limit_of X-RateLimit-Limit-Hour)
echo "==> fuzz key: GET /webhooks answered $status; limits: ${per_minute:-?} a minute, ${per_hour:-?} an hour"
if [[ $status == 401 || $status == 403 ]]; then
  echo "error: the fuzz API key is refused (GET /webhooks answered $status); it needs read:webhooks and write:webhooks" >&2
  exit 1
fi
if [[ -n $per_minute && -n $per_hour ]]; then
  if ((per_minute < min_per_minute || per_hour < min_per_hour)); then
    echo "error: the fuzz API key allows ${per_minute} requests a minute and ${per_hour} an hour;" >&2
    echo "       this run needs at least ${min_per_minute} and ${min_per_hour} (it sends thousands of requests)." >&2
    echo "       Give the key higher limits (webhooks-admin keys update) or set FUZZ_API_TOKEN." >&2
    exit 1
  fi
else
  echo "warning: no X-RateLimit-* headers in the preflight answer; rate limits not checked" >&2
fi

# ---------------------------------------------------------------- configuration
# Per-operation budgets, relative to EXAMPLES (create and PATCH get the whole budget).
few=$(at_least $((examples / 8)) 10)
some=$(at_least $((examples / 4)) 20)
cat >"$work/schemathesis.toml" <<TOML
base-url = "${base_url}"
seed = 42
workers = 1
color = false
# Deliveries (POST /webhooks/{id}/test) may wait for the receiver up to timeoutMs (30 s).
request-timeout = 45

[headers]
Authorization = "Bearer ${token}"

[generation]
codec = "ascii"
max-examples = ${examples}

[checks]
# All on by default except those set off here.
# The document cannot express every rule of the server (the URL rules of CONTRACT.md, the
# reserved header names, "not blank"), so valid-by-schema data may get a 400: no
# positive_data_acceptance.
positive_data_acceptance.enabled = false
# Only meaningful with several identities (an auth file); 404 for another key's webhook is
# covered by the handler tests.
object_level_authorization.enabled = false

[phases.coverage]
enabled = false

[warnings]
# A run that never authenticated, was rate limited or could not use the document is a failure.
fail-on = ["missing_auth", "rate_limited", "base_url_mismatch", "missing_deserializer",
           "unsupported_regex", "method_not_allowed", "unresolvable_reference", "unmatched_filter"]

[phases.stateful]
max-steps = 20
# The stateful phase walks life cycles with valid data; its negative bodies can be bytes that
# are not UTF-8, which the local HTTP emulator answers 500 to itself (the function never runs;
# see above). Negative data is the fuzzing phase's job.
generation.mode = "positive"
generation.codec = "ascii"

[[operations]]
include-operation-id = ["listWebhooks", "listDeliveries"]
generation.max-examples = ${some}

[[operations]]
include-operation-id = "getDelivery"
generation.max-examples = ${few}

# Operations with a request body: positive data only. Negative bodies include bytes that are not
# UTF-8, which the local HTTP emulator answers with its own 500 before the function runs (see
# the top of this file); the function's answers to malformed, non-object and non-UTF-8 bodies
# are tested in tests/api/handler.rs, tests/api/webhooks.rs, tests/api/properties.rs and by make fuzz-body.
[[operations]]
include-operation-id = "rotateWebhookSecret"
generation.max-examples = ${some}
generation.mode = "positive"

[[operations]]
include-operation-id = ["getWebhook", "deleteWebhook"]
generation.max-examples = ${few}

[[operations]]
include-operation-id = ["resetWebhookCircuit", "testWebhook", "resendDelivery"]
generation.max-examples = ${few}
generation.mode = "positive"

[[operations]]
include-operation-id = "recoverWebhook"
generation.max-examples = ${some}
generation.mode = "positive"

[[operations]]
include-operation-id = ["createWebhook", "updateWebhook"]
generation.mode = "positive"
TOML

run_schemathesis() { # run_schemathesis NAME ARGS...: one run, with a HAR report for the 429 count
  local name=$1
  shift
  echo "==> schemathesis: $name"
  # Run from the scratch directory: schemathesis keeps caches in the working directory.
  (cd "$work" && "$schemathesis" --config-file "$work/schemathesis.toml" run "$spec" \
    --report har --report-har-path "$work/$name.har" "$@")
}

# ---------------------------------------------------------------- 1. stateful phase
run_schemathesis stateful --phases stateful --max-examples "$stateful_examples"
# The delivery log's routes again on their own (with create, and test, whose ping is a
# delivery): among the document's 64 links the walk above reaches the links from create to
# the deliveries list and recover only now and then.
run_schemathesis stateful-deliveries --phases stateful --max-examples "$stateful_examples" \
  --include-operation-id-regex '^(createWebhook|testWebhook|listDeliveries|getDelivery|resendDelivery|recoverWebhook)$'

# ---------------------------------------------------------------- 2. examples and fuzzing
run_schemathesis fuzzing --phases examples,fuzzing

# ---------------------------------------------------------------- what the runs reached
# No answer may be a 429 (the run would pass while testing nothing), and the stateful run must
# have walked the whole life of a webhook: a stateful phase that never got a 201 proves nothing.
"$python" - "$work/stateful.har" "$work/fuzzing.har" "$work/stateful-deliveries.har" <<'PY'
import json, re, sys
from urllib.parse import urlsplit

ITEM = r"/webhooks/[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}"
STATEFUL_MUST_REACH = {
    "POST /webhooks -> 201": ("POST", r"/webhooks/?", 201),
    "GET /webhooks/{id} -> 200": ("GET", ITEM + "/?", 200),
    "PATCH /webhooks/{id} -> 200": ("PATCH", ITEM + "/?", 200),
    "DELETE /webhooks/{id} -> 204": ("DELETE", ITEM + "/?", 204),
    "POST /webhooks/{id}/reset-circuit -> 200": ("POST", ITEM + "/reset-circuit/?", 200),
    "POST /webhooks/{id}/test -> 200": ("POST", ITEM + "/test/?", 200),
    "POST /webhooks/{id}/rotate-secret -> 200": ("POST", ITEM + "/rotate-secret/?", 200),
    # The list's generated query parameters are mostly refused (a made-up cursor, since after
    # until: 400), and generated recover windows mostly more than 30 days back (400): what
    # counts here is that the links from create reached a real webhook (not a 404). The 200s
    # and 202s are asserted by the walk below.
    "GET /webhooks/{id}/deliveries -> 200 or 400": ("GET", ITEM + "/deliveries/?", (200, 400)),
    "POST /webhooks/{id}/recover -> 202, 400 or 409": (
        "POST", ITEM + "/recover/?", (202, 400, 409)),
}

def entries(path):
    with open(path, encoding="utf-8") as handle:
        for entry in json.load(handle).get("log", {}).get("entries", []):
            request, response = entry.get("request", {}), entry.get("response", {})
            yield request.get("method", ""), urlsplit(request.get("url", "")).path, response.get("status")

problems, total, limited = [], 0, 0
stateful_path, fuzzing_path, deliveries_path = sys.argv[1], sys.argv[2], sys.argv[3]
seen = set()
for path in (stateful_path, fuzzing_path, deliveries_path):
    for method, url_path, status in entries(path):
        total += 1
        limited += status == 429
        if path != fuzzing_path:
            seen.add((method, url_path, status))
if limited:
    problems.append(f"{limited} of {total} answers were 429 RATE_LIMIT_EXCEEDED: the fuzz key's "
                    "limits are too low for this run (see FUZZ_MIN_PER_MINUTE)")
for label, (method, pattern, status) in STATEFUL_MUST_REACH.items():
    statuses = status if isinstance(status, tuple) else (status,)
    if not any(m == method and s in statuses and re.fullmatch(pattern, p) for m, p, s in seen):
        got = sorted({s for m, p, s in seen if m == method and re.fullmatch(pattern, p)})
        problems.append(f"the stateful phase never got {label}, only {got} "
                        "(raise FUZZ_STATEFUL_EXAMPLES?)")
if problems:
    sys.exit("error: " + "\nerror: ".join(problems))
print(f"==> {total} requests recorded, none rate limited; the stateful phases reached every operation")
PY

# ---------------------------------------------------------------- the delivery routes, walked
# Schemathesis reaches get and resend of a real delivery only by chance (a test ping, then the
# list, on the same webhook) and recover mostly with windows out of range; this walk makes each
# route answer its success at least once, on the deliveries queue made above: create, test
# ping (to a receiver on 127.0.0.1), the ping listed, read, resent (202, then 409 while
# pending), recover (202), an unknown delivery (404 Delivery), delete. With a key of its own:
# the fuzzing may have filled the first key's webhook limit (100).
walk_token=$("${CARGO_TARGET_DIR:-target}/debug/webhooks-admin" --json keys create \
  --name "delivery routes walk" --scope read:webhooks --scope write:webhooks \
  --company "$DEV_COMPANY_ID" --rate-limit-minute 1000000 --rate-limit-hour 1000000 |
  "$python" -c 'import json, sys; print(json.load(sys.stdin)["token"])')
"$python" - "$base_url" "$walk_token" <<'PY'
import http.server, json, os, sys, threading, time, urllib.error, urllib.request, uuid

import boto3

base, token = sys.argv[1], sys.argv[2]
problems = []


class Handler(http.server.BaseHTTPRequestHandler):
    def do_POST(self):  # noqa: N802
        self.rfile.read(int(self.headers.get("content-length") or 0))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args):
        pass


receiver = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
threading.Thread(target=receiver.serve_forever, daemon=True).start()


def call(method, path, body=None, want=None):
    request = urllib.request.Request(
        base + path,
        method=method,
        data=None if body is None else json.dumps(body).encode(),
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=60) as answer:
            status, raw = answer.status, answer.read()
    except urllib.error.HTTPError as error:
        status, raw = error.code, error.read()
    parsed = json.loads(raw) if raw else {}
    if want is not None and status != want:
        problems.append(f"{method} {path}: {status}, expected {want}: {raw[:300]!r}")
    return status, (parsed.get("data") if isinstance(parsed, dict) else None) or {}, parsed


def queued():
    sqs = boto3.client(
        "sqs",
        endpoint_url=os.environ["AWS_ENDPOINT_URL"],
        region_name=os.environ["AWS_REGION"],
        aws_access_key_id=os.environ["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=os.environ["AWS_SECRET_ACCESS_KEY"],
    )
    attributes = sqs.get_queue_attributes(
        QueueUrl=os.environ["DELIVERIES_QUEUE_URL"],
        AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible",
                        "ApproximateNumberOfMessagesDelayed"],
    )["Attributes"]
    return sum(int(v) for v in attributes.values())


port = receiver.server_address[1]
_, hook, _ = call("POST", "/webhooks", {"url": f"http://127.0.0.1:{port}/walk",
                                        "events": ["interview.completed", "ping"]}, 201)
wid = hook.get("id")
if wid:
    before = queued()
    _, ping, _ = call("POST", f"/webhooks/{wid}/test", want=200)
    did = ping.get("deliveryId")
    if not ping.get("success") or not did:
        problems.append(f"test ping: {ping}")
    _, page, _ = call("GET", f"/webhooks/{wid}/deliveries", want=200)
    if did not in [d.get("id") for d in page.get("data") or []]:
        problems.append(f"the ping {did} is not listed: {page}")
    _, one, _ = call("GET", f"/webhooks/{wid}/deliveries/{did}", want=200)
    if one.get("status") != "delivered" or len(one.get("attempts") or []) != 1 or not one.get("payload"):
        problems.append(f"the ping's delivery: {one}")
    _, resent, _ = call("POST", f"/webhooks/{wid}/deliveries/{did}/resend", want=202)
    if resent.get("status") != "pending":
        problems.append(f"resend answered {resent}, not pending")
    call("POST", f"/webhooks/{wid}/deliveries/{did}/resend", want=409)  # on its way
    since = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() - 3600))
    call("POST", f"/webhooks/{wid}/recover", {"since": since}, 202)
    if (sent := queued() - before) != 2:
        problems.append(f"{sent} jobs on the deliveries queue, not 2 (the resend, the recover)")
    _, _, refused = call("GET", f"/webhooks/{wid}/deliveries/{uuid.uuid4()}", want=404)
    if ((refused.get("error") or {}).get("details") or {}).get("resourceType") != "Delivery":
        problems.append(f"an unknown delivery: {refused}")
    call("DELETE", f"/webhooks/{wid}", want=204)
receiver.shutdown()
if problems:
    sys.exit("error: the delivery routes' walk: " + "\nerror: ".join(problems))
print("==> delivery routes walked: list, get, resend (202, then 409), recover (202), 404 Delivery")
PY
