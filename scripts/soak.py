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

Accounting, from the delivery log (DELIVERY-LOG.md; a scan of its table, fine in a test), for
every event (published with its own eventId) and every webhook created before it was published
(its delivery id derived from the two as src/store/delivery_log.rs does): the event is logged
once; an ok webhook got it, signed with its secret, and its delivery is `delivered` with one
attempt, delivered; an err or down webhook's delivery has attempts 1..n, all failed, and is
`failed` with n = maxRetries + 1, or `skipped` with fewer once its circuit opened, or `skipped`
with none when its circuit was open at fan-out; a gone webhook's is `failed` with one attempt,
gone, or `skipped` with none once it was inactive. Over the whole log: nothing left `pending`;
every `delivered` delivery (the test pings too) was received by its webhook's receiver under its
`webhook-id` (= the body's deliveryId), a `skipped` one without attempts never; no delivery id
was received with two different bodies; every item carries `expiresAt` (about 30 days for an
event, a day more for a delivery). Then: the queues are empty, the dead-letter queues too, no
restart happened that the soak did not cause, and one more event reaches every ok webhook.
Exits 1 with the list of what failed.
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


def delivery_id(event_id, webhook_id):
    """src/store/delivery_log.rs `delivery_id`: the first 16 bytes of SHA-256 over a prefix, the
    event's id (never the SQS message id) and the webhook id's bytes, as a version 8 UUID."""
    digest = hashlib.sha256(
        b"instaview-delivery\0" + event_id.encode() + b"\0" + uuid.UUID(webhook_id).bytes
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


def delivery_log(dynamodb):
    """The delivery log table's items: (events by event id, deliveries by delivery id, items
    without a numeric expiresAt). A scan, which only this test makes: the service reads the
    log by key and index."""
    events, deliveries, without_ttl = {}, {}, []
    for page in dynamodb.get_paginator("scan").paginate(
        TableName=ENV["DELIVERY_LOG_TABLE_NAME"], ConsistentRead=True
    ):
        for item in page["Items"]:
            key = item["id"]["S"]
            expires = int(item["expiresAt"]["N"]) if "N" in item.get("expiresAt", {}) else None
            if expires is None:
                without_ttl.append(key)
            if key.startswith("event#"):
                events.setdefault(item["eventId"]["S"], []).append(
                    {"key": key, "event": item["event"]["S"], "expiresAt": expires}
                )
                continue
            attempts = sorted(
                (
                    {
                        "attempt": int(value["M"]["attempt"]["N"]),
                        "outcome": value["M"]["outcome"]["S"],
                        "httpStatus": int(value["M"]["httpStatus"]["N"])
                        if "httpStatus" in value["M"]
                        else None,
                    }
                    for name, value in item.items()
                    if name.startswith("attempt#")
                ),
                key=lambda a: a["attempt"],
            )
            deliveries[item["deliveryId"]["S"]] = {
                "key": key,
                "status": item["status"]["S"],
                "webhookId": item["webhookId"]["S"],
                "eventId": item["eventId"]["S"],
                "event": item["event"]["S"],
                "attemptCount": int(item["attemptCount"]["N"]),
                "attempts": attempts,
                "expiresAt": expires,
            }
    return events, deliveries, without_ttl


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
        # The event's own id, as a publisher gives it: its deliveries' ids derive from it.
        event_id = str(uuid.uuid4())
        body = json.dumps(
            {
                "eventId": event_id,
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
        return {"n": n, "event_id": event_id, "message_id": message_id, "published": published}

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
    logged_events, deliveries, without_ttl = delivery_log(dynamodb)
    final = {}
    for webhook in webhooks:
        status, answer = api.call("GET", f"/webhooks/{webhook['id']}", route="/webhooks/{id}")
        final[webhook["id"]] = answer["data"] if status == 200 else {}
    got = {}  # delivery id -> requests (events only, not test pings)
    received = {}  # delivery id -> requests of every kind (events, pings), at every receiver
    for receiver in receivers.values():
        for request in receiver.got():
            body = json.loads(request["body"])
            webhook_header = request["headers"].get("webhook-id")
            received.setdefault(webhook_header, []).append(request)
            if body.get("event") == EVENT:
                got.setdefault(webhook_header, []).append(request)
    figures = {
        "delivered": 0,
        "failed (all attempts)": 0,
        "skipped (circuit opened while retrying)": 0,
        "gone": 0,
        "skipped (circuit open or inactive at fan-out)": 0,
        "attempts": 0,
    }
    by_id = {w["id"]: w for w in webhooks}
    for event in events:
        for webhook in webhooks:
            if webhook["created"] >= event["published"]:
                continue
            did = delivery_id(event["event_id"], webhook["id"])
            what = f"event {event['n']} -> {webhook['label']} (delivery {did})"
            delivery = deliveries.get(did)
            if delivery is None:
                problems.append(f"{what}: no delivery in the log (dropped, not recorded)")
                continue
            chain, log_status = delivery["attempts"], delivery["status"]
            figures["attempts"] += len(chain)
            state = final[webhook["id"]]
            closed = state.get("isActive", False) and not state.get("circuitOpenedAt")
            if (delivery["webhookId"], delivery["eventId"]) != (webhook["id"], event["event_id"]):
                problems.append(f"{what}: the log's delivery names another webhook or event")
                continue
            if delivery["attemptCount"] != len(chain):
                problems.append(
                    f"{what}: attemptCount {delivery['attemptCount']}, {len(chain)} attempts"
                )
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
                    problems.append(f"{what}: attempts {chain}, not one delivered")
                elif log_status != "delivered":
                    problems.append(f"{what}: received, but the log says {log_status}")
                else:
                    figures["delivered"] += 1
            elif not chain:
                if closed:
                    problems.append(f"{what}: no attempt, yet the webhook's circuit is closed")
                elif log_status != "skipped":
                    problems.append(f"{what}: no attempt, circuit open or inactive: {log_status}")
                else:
                    figures["skipped (circuit open or inactive at fan-out)"] += 1
            elif webhook["kind"] == "gone":
                if [r["outcome"] for r in chain] != ["gone"]:
                    problems.append(f"{what}: attempts {chain}, not one gone")
                elif log_status != "failed":
                    problems.append(f"{what}: one attempt, gone, yet the log says {log_status}")
                else:
                    figures["gone"] += 1
            else:
                status = 500 if webhook["kind"] == "err" else None
                if any(r["outcome"] != "failed" or r["httpStatus"] != status for r in chain):
                    problems.append(f"{what}: attempts {chain}, not all failed with {status}")
                elif len(chain) == webhook["maxRetries"] + 1:
                    if log_status != "failed":
                        problems.append(f"{what}: retries exhausted, yet the log says {log_status}")
                    else:
                        figures["failed (all attempts)"] += 1
                elif not closed:
                    # DELIVERY-LOG.md: a pending delivery whose next attempt meets an open
                    # circuit becomes skipped (so that recover brings it back).
                    if log_status != "skipped":
                        problems.append(
                            f"{what}: {len(chain)} attempts, then the circuit opened, yet the "
                            f"log says {log_status}, not skipped"
                        )
                    else:
                        figures["skipped (circuit opened while retrying)"] += 1
                else:
                    problems.append(
                        f"{what}: {len(chain)} attempts, the queues are empty and "
                        "the circuit is closed: the retries stopped"
                    )

    # Events once, each with its TTL; every delivery of the log agrees with the receivers.
    now = time.time()
    day = 86_400
    for event in events:
        copies = logged_events.get(event["event_id"], [])
        if len(copies) != 1:
            problems.append(f"event {event['n']} ({event['event_id']}): {len(copies)} log items")
    if without_ttl:
        problems.append(f"{len(without_ttl)} log item(s) without expiresAt: {without_ttl[:5]}")
    for copies in logged_events.values():
        for item in copies:
            left = (item["expiresAt"] or 0) - now
            if not 29 * day < left <= 30 * day + 60:
                problems.append(f"{item['key']}: expires in {left / day:.2f} days, not 30")
    pending = [did for did, d in deliveries.items() if d["status"] == "pending"]
    if pending:
        problems.append(
            f"{len(pending)} deliveries still pending with the queues empty: {pending[:5]}"
        )
    statuses = {}
    for did, delivery in deliveries.items():
        statuses[delivery["status"]] = statuses.get(delivery["status"], 0) + 1
        webhook = by_id.get(delivery["webhookId"])
        what = f"delivery {did} ({delivery['event']}, {delivery['status']})"
        left = (delivery["expiresAt"] or 0) - now
        if not 30 * day < left <= 31 * day + 60:
            problems.append(f"{what}: expires in {left / day:.2f} days, not 31")
        if webhook is None:
            continue  # another key's webhook (none in a fresh stack)
        arrived = received.get(did, [])
        if delivery["status"] == "delivered":
            mine = [r for r in arrived if r["path"].endswith(f"/hook/{webhook['label']}")]
            if not mine:
                problems.append(f"{what}: the log says delivered, {webhook['label']} never got it")
            elif any(json.loads(r["body"]).get("deliveryId") != did for r in mine):
                problems.append(f"{what}: received with another deliveryId in its body")
        elif delivery["status"] == "skipped" and not delivery["attempts"] and arrived:
            problems.append(f"{what}: skipped without an attempt, yet received {len(arrived)}x")
    for did, requests in received.items():
        if len({r["body"] for r in requests}) > 1:
            problems.append(f"delivery id {did} received with {len(requests)} different bodies")
    figures["log"] = {
        "events": len(logged_events),
        "deliveries": statuses,
        "without expiresAt": len(without_ttl),
    }

    # ---------------------------------------------------------------- still delivering
    last = publish(len(events), tag="last")
    oks = [w for w in webhooks if w["kind"] == "ok"]
    wanted = {delivery_id(last["event_id"], w["id"]) for w in oks}
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
