#!/usr/bin/env python3
"""The local pipeline's soak (issue 15.2): mixed traffic against the stack exactly as `make run`
starts it, then every event accounted for, and the pipeline still delivering.

Run through scripts/local-stack.sh with the pipeline (see `make soak`):
  PIPELINE=1 RETRY_DELAYS_SECONDS=1,2,2 scripts/local-stack.sh .venv/bin/python scripts/soak.py

Settings (environment): SOAK_SECONDS (traffic, default 180, at least 180 for make test), of which
SOAK_IDLE_SECONDS (default 70) in the middle publish nothing: the functions sit idle longer than
the 60 s that used to kill them; SOAK_KILL=1 (default) kills the deliver function's process once
(SIGKILL) during the first traffic phase, so that the supervision must restart it;
SOAK_DRAIN_SECONDS (default 420) for the queues to empty afterwards.

Traffic: its own API key (high rate limits); webhooks to receivers answering 200 ("ok", two of
them), 500 ("err"), 410 ("gone") and to a port nobody listens on ("down"); an event every 2 s;
a webhook created every 15 s (cycling ok, err, down); a test ping to an ok webhook every 10 s;
a list every 10 s.

Accounting, for every event and every webhook created before it was published (its delivery id
is derived as src/pipeline/messages.rs does): an ok webhook got it, signed with its secret, and
its attempt record says delivered; an err or down webhook has attempt records 1..n, all failed,
n = maxRetries + 1 unless its circuit opened, or none when its circuit was open at fan-out; a
gone webhook has one attempt, gone, or none once it was gone. Then: the queues are empty, the
dead-letter queues too, no restart happened that the soak did not cause, and one more event
reaches every ok webhook. Exits 1 with the list of what failed.
"""

import hashlib
import json
import os
import random
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from datetime import UTC, datetime

import boto3

# No __pycache__ in scripts/: cargo lambda watch would take it for a change and reload.
sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from dev_receiver import Receiver, verify  # noqa: E402

ENV = os.environ
API = f"http://127.0.0.1:{ENV['API_PORT']}"
PIPELINE_PORT = ENV["PIPELINE_PORT"]
ADMIN = os.path.join(ENV.get("CARGO_TARGET_DIR", "target"), "debug", "webhooks-admin")
COMPANY = ENV["DEV_COMPANY_ID"]
EVENT = "interview.completed"
SOAK_SECONDS = int(ENV.get("SOAK_SECONDS", "180"))
IDLE_SECONDS = int(ENV.get("SOAK_IDLE_SECONDS", "70"))
KILL = ENV.get("SOAK_KILL", "1") == "1"
DRAIN_SECONDS = int(ENV.get("SOAK_DRAIN_SECONDS", "420"))
RESTART_MARK = "PIPELINE RESTART"


def aws(service):
    return boto3.client(
        service,
        endpoint_url=ENV["AWS_ENDPOINT_URL"],
        region_name=ENV.get("AWS_REGION", "eu-central-1"),
        aws_access_key_id="local",
        aws_secret_access_key="local",
    )


def say(message):
    print(f"soak: {time.strftime('%H:%M:%S')} {message}", flush=True)


class Api:
    def __init__(self, token):
        self.token = token
        self.answers = {}  # "METHOD route -> status" -> count

    def call(self, method, path, body=None, route=None):
        request = urllib.request.Request(
            API + path,
            method=method,
            data=None if body is None else json.dumps(body).encode(),
            headers={"Authorization": f"Bearer {self.token}", "Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=120) as response:
                status, raw = response.status, response.read()
        except urllib.error.HTTPError as error:
            status, raw = error.code, error.read()
        key = f"{method} {route or path} -> {status}"
        self.answers[key] = self.answers.get(key, 0) + 1
        return status, (json.loads(raw) if raw else None)


def delivery_id(message_id, webhook_id):
    """src/pipeline/messages.rs `delivery_id`: the first 16 bytes of SHA-256 over a prefix, the
    event's queue message id and the webhook id's bytes, as a version 8 UUID."""
    digest = hashlib.sha256(
        b"instaview-delivery\0" + message_id.encode() + b"\0" + uuid.UUID(webhook_id).bytes
    ).digest()
    raw = bytearray(digest[:16])
    raw[6] = (raw[6] & 0x0F) | 0x80
    raw[8] = (raw[8] & 0x3F) | 0x80
    return str(uuid.UUID(bytes=bytes(raw)))


def function_pids(name):
    """The pids of this stack's `name` function processes (their Runtime API names our port)."""
    wanted = f"AWS_LAMBDA_RUNTIME_API=http://127.0.0.1:{PIPELINE_PORT}/"
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as handle:
                argv0 = handle.read().split(b"\0")[0].decode(errors="replace")
            if not argv0.endswith(f"/debug/{name}"):
                continue
            with open(f"/proc/{entry}/environ", "rb") as handle:
                environ = handle.read().decode(errors="replace").split("\0")
        except OSError:
            continue
        if any(item.startswith(wanted) for item in environ):
            found.append(int(entry))
    return found


def restarts_seen():
    try:
        with open(ENV["POLLER_LOG"], encoding="utf-8", errors="replace") as f:
            return [line.strip() for line in f if RESTART_MARK in line]
    except OSError:
        return []


def queue_counts(sqs, url):
    attributes = sqs.get_queue_attributes(
        QueueUrl=url,
        AttributeNames=[
            "ApproximateNumberOfMessages",
            "ApproximateNumberOfMessagesNotVisible",
            "ApproximateNumberOfMessagesDelayed",
        ],
    )["Attributes"]
    return sum(int(value) for value in attributes.values())


def attempt_records(dynamodb):
    """attempt#<deliveryId>#<n> items of the webhooks table, by delivery id."""
    by_delivery = {}
    for page in dynamodb.get_paginator("scan").paginate(TableName=ENV["WEBHOOKS_TABLE_NAME"]):
        for item in page["Items"]:
            key = item["id"]["S"]
            if not key.startswith("attempt#"):
                continue
            by_delivery.setdefault(item["deliveryId"]["S"], []).append(
                {
                    "attempt": int(item["attempt"]["N"]),
                    "outcome": item["outcome"]["S"],
                    "httpStatus": int(item["httpStatus"]["N"]) if "httpStatus" in item else None,
                    "webhookId": item["webhookId"]["S"],
                }
            )
    for records in by_delivery.values():
        records.sort(key=lambda r: r["attempt"])
    return by_delivery


def main():
    started = time.monotonic()
    problems = []
    sqs, dynamodb = aws("sqs"), aws("dynamodb")

    token = json.loads(
        subprocess.run(
            [
                ADMIN,
                "--json",
                "keys",
                "create",
                "--name",
                "soak",
                "--scope",
                "read:webhooks",
                "--scope",
                "write:webhooks",
                "--company",
                COMPANY,
                "--rate-limit-minute",
                "100000",
                "--rate-limit-hour",
                "1000000",
            ],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
    )["token"]
    api = Api(token)

    receivers = {
        kind: Receiver(status=status).start()
        for kind, status in (("ok", 200), ("err", 500), ("gone", 410))
    }
    down = Receiver()  # bound for a free port, then closed: connections are refused
    down_port = down.port
    down.server.server_close()
    ports = {kind: r.port for kind, r in receivers.items()}
    ports["down"] = down_port

    webhooks = []  # {"id", "kind", "secret", "created"}

    def create(kind):
        label = f"{kind}-{len(webhooks)}"
        status, answer = api.call(
            "POST",
            "/webhooks",
            {
                "url": f"http://127.0.0.1:{ports[kind]}/hook/{label}",
                "name": f"soak {label}",
                # ping: the test route delivers only to webhooks subscribed to it.
                "events": [EVENT, "ping"],
            },
            route="/webhooks",
        )
        if status != 201:
            problems.append(f"create {label}: HTTP {status} {answer}")
            return
        data = answer["data"]
        webhooks.append(
            {
                "id": data["id"],
                "kind": kind,
                "label": label,
                "secret": data["signingSecret"],
                "maxRetries": data["maxRetries"],
                "created": time.monotonic(),
            }
        )

    for kind in ("ok", "ok", "err", "gone", "down"):
        create(kind)
    say(
        f"receivers: {ports}; {len(webhooks)} webhooks; traffic for {SOAK_SECONDS} s "
        f"({IDLE_SECONDS} s of them idle), kill deliver once: {KILL}"
    )

    events = []  # {"n", "message_id", "published"}
    pings = {"success": 0, "failure": 0}
    killed = 0

    def publish(n, tag="soak"):
        body = json.dumps(
            {
                "event": EVENT,
                "companyId": COMPANY,
                "data": {"soak": tag, "n": n},
                "occurredAt": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            }
        )
        published = time.monotonic()
        message_id = sqs.send_message(QueueUrl=ENV["EVENTS_QUEUE_URL"], MessageBody=body)[
            "MessageId"
        ]
        return {"n": n, "message_id": message_id, "published": published}

    busy = (SOAK_SECONDS - IDLE_SECONDS) / 2
    idle_from, idle_to = busy, busy + IDLE_SECONDS
    kill_at = busy / 2
    creates = 0
    t0 = time.monotonic()
    last_tick = -1
    while (elapsed := time.monotonic() - t0) < SOAK_SECONDS:
        tick = int(elapsed)
        if tick == last_tick:  # each second's traffic once
            time.sleep(0.05)
            continue
        last_tick = tick
        idle = idle_from <= elapsed < idle_to
        if not idle and tick % 2 == 0:
            events.append(publish(len(events)))
        if tick % 15 == 7 and len(webhooks) < 90:
            create(("ok", "err", "down")[creates % 3])
            creates += 1
        if tick % 10 == 3:
            target = random.choice([w for w in webhooks if w["kind"] == "ok"])
            status, answer = api.call(
                "POST", f"/webhooks/{target['id']}/test", route="/webhooks/{id}/test"
            )
            if status != 200:
                problems.append(f"test ping: HTTP {status} {answer}")
            elif answer["data"].get("success"):
                pings["success"] += 1
            else:
                pings["failure"] += 1
        if tick % 10 == 5:
            status, answer = api.call("GET", "/webhooks", route="/webhooks")
            if status != 200:
                problems.append(f"list: HTTP {status} {answer}")
        if KILL and not killed and elapsed >= kill_at:
            pids = function_pids("deliver")
            for pid in pids:
                os.kill(pid, signal.SIGKILL)
            killed = len(pids)
            say(f"killed the deliver function (pids {pids}): the poller must restart it")
            if not pids:
                problems.append("SOAK_KILL: no deliver process of this stack found")
            time.sleep(max(0.0, t0 + tick + 1 - time.monotonic()))
    traffic_seconds = time.monotonic() - t0
    say(f"traffic done: {len(events)} events, {len(webhooks)} webhooks, pings {pings}")

    # ---------------------------------------------------------------- drain
    queues = {name: ENV[name] for name in ("EVENTS_QUEUE_URL", "DELIVERIES_QUEUE_URL")}
    drain_start = time.monotonic()
    quiet = 0
    while time.monotonic() - drain_start < DRAIN_SECONDS:
        left = {name: queue_counts(sqs, url) for name, url in queues.items()}
        quiet = quiet + 1 if not any(left.values()) else 0
        if quiet >= 3:
            break
        time.sleep(3)
    else:
        problems.append(f"queues not empty {DRAIN_SECONDS} s after the traffic: {left}")
    drain_seconds = time.monotonic() - drain_start
    say(f"queues drained in {drain_seconds:.0f} s")
    for name in ("EVENTS_DLQ_URL", "DELIVERIES_DLQ_URL"):
        if (count := queue_counts(sqs, ENV[name])) != 0:
            problems.append(f"{count} message(s) in the dead-letter queue {ENV[name]}")

    # ---------------------------------------------------------------- accounting
    records = attempt_records(dynamodb)
    final = {}
    for webhook in webhooks:
        status, answer = api.call("GET", f"/webhooks/{webhook['id']}", route="/webhooks/{id}")
        final[webhook["id"]] = answer["data"] if status == 200 else {}
    got = {}  # delivery id -> requests (events only, not test pings)
    for receiver in receivers.values():
        for request in receiver.got():
            body = json.loads(request["body"])
            if body.get("event") == EVENT:
                got.setdefault(request["headers"].get("webhook-id"), []).append(request)
    figures = {
        "delivered": 0,
        "failed (all attempts)": 0,
        "failed (circuit opened)": 0,
        "gone": 0,
        "skipped (circuit open or gone)": 0,
        "attempts": 0,
    }
    for event in events:
        for webhook in webhooks:
            if webhook["created"] >= event["published"]:
                continue
            did = delivery_id(event["message_id"], webhook["id"])
            chain = records.get(did, [])
            figures["attempts"] += len(chain)
            what = f"event {event['n']} -> {webhook['label']} (delivery {did})"
            state = final[webhook["id"]]
            closed = state.get("isActive", False) and not state.get("circuitOpenedAt")
            if [r["attempt"] for r in chain] != list(range(1, len(chain) + 1)):
                problems.append(f"{what}: attempts {[r['attempt'] for r in chain]} not 1..n")
                continue
            if webhook["kind"] == "ok":
                arrived = got.get(did, [])
                if not arrived:
                    problems.append(f"{what}: never arrived at the 200 receiver")
                elif not all(verify(webhook["secret"], r["headers"], r["body"]) for r in arrived):
                    problems.append(f"{what}: arrived with a signature that does not verify")
                elif json.loads(arrived[0]["body"])["data"] != {"soak": "soak", "n": event["n"]}:
                    problems.append(f"{what}: arrived with another event's data")
                elif [r["outcome"] for r in chain] != ["delivered"]:
                    problems.append(f"{what}: attempt records {chain}, not one delivered")
                else:
                    figures["delivered"] += 1
            elif not chain:
                if closed:
                    problems.append(f"{what}: no attempt, yet the webhook's circuit is closed")
                else:
                    figures["skipped (circuit open or gone)"] += 1
            elif webhook["kind"] == "gone":
                if [r["outcome"] for r in chain] != ["gone"]:
                    problems.append(f"{what}: attempt records {chain}, not one gone")
                else:
                    figures["gone"] += 1
            else:
                status = 500 if webhook["kind"] == "err" else None
                if any(r["outcome"] != "failed" or r["httpStatus"] != status for r in chain):
                    problems.append(
                        f"{what}: attempt records {chain}, not all failed with {status}"
                    )
                elif len(chain) == webhook["maxRetries"] + 1:
                    figures["failed (all attempts)"] += 1
                elif not closed:
                    figures["failed (circuit opened)"] += 1
                else:
                    problems.append(
                        f"{what}: {len(chain)} attempts, the queues are empty and "
                        "the circuit is closed: the retries stopped"
                    )

    # ---------------------------------------------------------------- still delivering
    last = publish(len(events), tag="last")
    oks = [w for w in webhooks if w["kind"] == "ok"]
    wanted = {delivery_id(last["message_id"], w["id"]) for w in oks}
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        seen = {r["headers"].get("webhook-id") for r in receivers["ok"].got()}
        if wanted <= seen:
            break
        time.sleep(1)
    else:
        problems.append(
            f"the last event did not reach {len(wanted - seen)} of {len(oks)} "
            "ok webhooks within 180 s: the pipeline stopped delivering"
        )
    last_seconds = time.monotonic() - last["published"]

    restarts = restarts_seen()
    forced = 1 if killed else 0
    if killed and not restarts:
        problems.append("the deliver function was killed, yet the poller never restarted it")
    if len(restarts) > forced:
        problems.append(
            f"{len(restarts) - forced} restart(s) the soak did not cause: " + "; ".join(restarts)
        )
    bad_answers = {k: v for k, v in api.answers.items() if " -> 5" in k}
    if bad_answers:
        problems.append(f"5xx answers from the API: {bad_answers}")

    summary = {
        "traffic_seconds": round(traffic_seconds),
        "drain_seconds": round(drain_seconds),
        "total_seconds": round(time.monotonic() - started),
        "events_published": len(events) + 1,
        "webhooks": {kind: sum(w["kind"] == kind for w in webhooks) for kind in ports},
        "deliveries": figures,
        "receiver_requests": {kind: len(r.got()) for kind, r in receivers.items()},
        "test_pings": pings,
        "restarts": {"seen": len(restarts), "caused_by_soak": forced},
        "last_event_arrived_after_seconds": round(last_seconds, 1),
        "api_answers": api.answers,
    }
    print(json.dumps(summary, indent=1), flush=True)
    if pings["failure"]:
        say(
            f"note: {pings['failure']} test ping(s) answered success=false (issue 15.1: the "
            "test route's deadline under cargo lambda watch; the README check covers it)"
        )
    if problems:
        print(
            "soak: FAILED:\n  "
            + "\n  ".join(problems[:50])
            + (f"\n  ... and {len(problems) - 50} more" if len(problems) > 50 else ""),
            file=sys.stderr,
            flush=True,
        )
        return 1
    say("passed: every event accounted for, the pipeline still delivering")
    return 0


if __name__ == "__main__":
    sys.exit(main())
