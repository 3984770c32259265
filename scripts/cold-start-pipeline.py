#!/usr/bin/env python3
"""Cold starts of the pipeline functions (fanout, deliver), measured as scripts/cold-start.py
measures the API's: each start is a new process under the local Runtime API stand-in
(scripts/lambda_stand_in.py), with moto behind it and the invocation already waiting.

  ready        exec → the function's first GET .../invocation/next (its init is over)
  first answer exec → its POST .../invocation/{id}/response (the batch answer)
  first invoke ready → first answer
  warm invoke  the same event again in the same process

The events are the cheapest real paths, so that the figures are the functions' own:
fanout gets one event of a company no webhook subscribes to (two index queries, nothing
queued); deliver gets one delivery of a webhook that does not exist (one GetItem, dropped).

    .venv/bin/python scripts/cold-start-pipeline.py [--runs 10] [--profile debug|release]

The binaries are taken from $CARGO_TARGET_DIR (or target/) and built there first (debug by
default: `cargo build --bin fanout --bin deliver --bin webhooks-admin`).
"""

import argparse
import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

sys.dont_write_bytecode = True  # no __pycache__ in scripts/
sys.path.insert(0, str(Path(__file__).resolve().parent))
import lambda_stand_in as stand_in  # noqa: E402


def sqs_event(body):
    return json.dumps(
        {
            "Records": [
                {
                    "messageId": str(uuid.uuid4()),
                    "receiptHandle": "local",
                    "body": body,
                    "attributes": {},
                    "messageAttributes": {},
                    "eventSource": "aws:sqs",
                    "eventSourceARN": "arn:aws:sqs:eu-central-1:123456789012:local",
                    "awsRegion": "eu-central-1",
                }
            ]
        }
    ).encode()


def one_start(binary, env, event, log):
    function = stand_in.Function(binary, env, log, first_event=event)
    api = function.api
    try:
        ready_ns = function.wait_ready()
        first = api.wait(function.first)
        for answer in (first,):
            if answer[1] != "response" or json.loads(answer[2])["batchItemFailures"]:
                raise SystemExit(f"{binary.name} answered {answer[1]}: {answer[2][:300]!r}")
        warm_ns, warm = function.invoke(event)
        if warm[1] != "response":
            raise SystemExit(f"{binary.name} answered {warm[1]} the second time")
        ms = 1e-6
        return {
            "ready_ms": (ready_ns - function.started_ns) * ms,
            "first_answer_ms": (first[0] - function.started_ns) * ms,
            "first_invoke_ms": (first[0] - api.delivered[function.first]) * ms,
            "warm_invoke_ms": warm_ns * ms,
        }
    finally:
        function.stop()


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--profile", choices=("debug", "release"), default="debug")
    parser.add_argument("--no-build", action="store_true")
    args = parser.parse_args()
    target = Path(os.environ.get("CARGO_TARGET_DIR", stand_in.ROOT / "target"))
    stand_in.ADMIN = target / "debug" / "webhooks-admin"
    if not args.no_build:
        release = ["--release"] if args.profile == "release" else []
        subprocess.run(
            ["cargo", "build", "--quiet", *release, "--bin", "fanout", "--bin", "deliver"],
            cwd=stand_in.ROOT,
            check=True,
        )
        subprocess.run(
            ["cargo", "build", "--quiet", "--bin", "webhooks-admin"], cwd=stand_in.ROOT, check=True
        )
    local = stand_in.read_local_env()
    logs = stand_in.log_dir()
    moto = stand_in.Moto(logs)
    try:
        import boto3

        sqs = boto3.client(
            "sqs",
            endpoint_url=moto.endpoint,
            region_name=local["AWS_REGION"],
            aws_access_key_id=local["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=local["AWS_SECRET_ACCESS_KEY"],
        )
        queues = {
            name: sqs.create_queue(QueueName=f"cold-start-{name}")["QueueUrl"]
            for name in ("deliveries", "events-dlq")
        }
        env = {
            "AWS_ENDPOINT_URL": moto.endpoint,
            "DELIVERIES_QUEUE_URL": queues["deliveries"],
            "EVENTS_DLQ_URL": queues["events-dlq"],
            "DELIVER_TO_LOOPBACK_ONLY": "true",
        }
        events = {
            "fanout": sqs_event(
                json.dumps(
                    {
                        "event": "interview.completed",
                        "companyId": str(uuid.uuid4()),
                        "data": {"interviewId": "int_1"},
                        "occurredAt": "2026-11-27T12:00:00Z",
                    }
                )
            ),
            "deliver": sqs_event(
                json.dumps(
                    {
                        "deliveryId": str(uuid.uuid4()),
                        "webhookId": str(uuid.uuid4()),
                        "event": "interview.completed",
                        "body": "{}",
                        "attempt": 1,
                    }
                )
            ),
        }
        print(f"machine    {stand_in.machine()}")
        print(
            f"backend    moto (plain HTTP); {args.profile} build; {args.runs} starts after "
            f"{args.warmup} warm-up each"
        )
        with open(logs / "cold-start-pipeline.log", "wb") as log:
            for name, event in events.items():
                binary = target / args.profile / name
                runs = []
                for i in range(args.warmup + args.runs):
                    result = one_start(binary, env, event, log)
                    if i >= args.warmup:
                        runs.append(result)
                    time.sleep(0.05)
                print(f"{name} ({binary.stat().st_size:,} bytes)")
                print(f"  {'':20}{'min':>9}{'median':>9}{'p90':>9}{'max':>9}   (ms)")
                for key in runs[0]:
                    s = stand_in.stats([r[key] for r in runs])
                    print(
                        f"  {key:20}{s['min']:9.2f}{s['median']:9.2f}{s['p90']:9.2f}{s['max']:9.2f}"
                    )
    finally:
        moto.stop()


if __name__ == "__main__":
    main()
