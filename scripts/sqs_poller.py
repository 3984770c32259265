#!/usr/bin/env python3
"""Stands in for Lambda's SQS event source mappings on the local emulator (moto).

Usage: .venv/bin/python scripts/sqs_poller.py INVOKE_BASE_URL
  e.g. scripts/sqs_poller.py http://127.0.0.1:9001

Creates the pipeline's queues (events and deliveries, each with a dead-letter queue and a
redrive after 5 receives, as template.yaml does) where missing, then, one thread per queue:
polls up to 10 messages (short polls every half second, not long polls: scripts/moto_server.py
serves one request at a time, so a long poll would hold every other call to the emulator), hands them to the function as Lambda would (an SQS event, through
the Lambda Invoke API that `cargo lambda watch` serves: POST
/2015-03-31/functions/<name>/invocations), and honours the answer's batchItemFailures: the
messages that succeeded are deleted, the failed ones are left to come back after the visibility
timeout (and to the dead-letter queue after 5 receives). A failed invocation deletes nothing.

Queue URLs come from the environment (local.env): EVENTS_QUEUE_URL, EVENTS_DLQ_URL,
DELIVERIES_QUEUE_URL, DELIVERIES_DLQ_URL; the endpoint from AWS_ENDPOINT_URL.
"""

import json
import os
import sys
import threading
import time
import urllib.error
import urllib.request

import boto3

# Short locally, so that a failed message comes back within seconds (6 x the function's
# timeout on AWS).
VISIBILITY_SECONDS = 30
MAX_RECEIVES = 5
IDLE_SECONDS = 0.5


def sqs_client():
    return boto3.client(
        "sqs",
        endpoint_url=os.environ["AWS_ENDPOINT_URL"],
        region_name=os.environ.get("AWS_REGION", "eu-central-1"),
        aws_access_key_id=os.environ.get("AWS_ACCESS_KEY_ID", "local"),
        aws_secret_access_key=os.environ.get("AWS_SECRET_ACCESS_KEY", "local"),
    )


def name_of(url):
    return url.rstrip("/").rsplit("/", 1)[-1]


def create_queues(sqs):
    """The queues of template.yaml, by the names in the URLs of local.env; answers their URLs."""
    urls = {}
    for queue, dlq in (("EVENTS_QUEUE_URL", "EVENTS_DLQ_URL"),
                       ("DELIVERIES_QUEUE_URL", "DELIVERIES_DLQ_URL")):
        dlq_url = sqs.create_queue(QueueName=name_of(os.environ[dlq]))["QueueUrl"]
        dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"])[
            "Attributes"]["QueueArn"]
        urls[queue] = sqs.create_queue(
            QueueName=name_of(os.environ[queue]),
            Attributes={
                "VisibilityTimeout": str(VISIBILITY_SECONDS),
                "RedrivePolicy": json.dumps(
                    {"deadLetterTargetArn": dlq_arn, "maxReceiveCount": str(MAX_RECEIVES)}),
            },
        )["QueueUrl"]
        urls[dlq] = dlq_url
    return urls


def lambda_event(queue_arn, messages):
    """The event Lambda hands a function for a batch of SQS messages."""
    return {"Records": [{
        "messageId": m["MessageId"],
        "receiptHandle": m["ReceiptHandle"],
        "body": m["Body"],
        "attributes": m.get("Attributes", {}),
        "messageAttributes": {},
        "md5OfBody": m.get("MD5OfBody", ""),
        "eventSource": "aws:sqs",
        "eventSourceARN": queue_arn,
        "awsRegion": os.environ.get("AWS_REGION", "eu-central-1"),
    } for m in messages]}


def invoke(base_url, function, event):
    """Invokes `function`; answers the ids of the failed messages, or None if it failed as a
    whole (then nothing is deleted)."""
    request = urllib.request.Request(
        f"{base_url}/2015-03-31/functions/{function}/invocations",
        data=json.dumps(event).encode(), method="POST",
        headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=120) as response:
            answer = json.loads(response.read() or b"{}")
    except (urllib.error.URLError, OSError, ValueError) as error:
        print(f"sqs_poller: invoking {function} failed: {error}", file=sys.stderr, flush=True)
        return None
    if not isinstance(answer, dict) or "errorType" in answer:
        print(f"sqs_poller: {function} failed: {answer}", file=sys.stderr, flush=True)
        return None
    return {f["itemIdentifier"] for f in answer.get("batchItemFailures", [])}


def poll(base_url, function, queue_url):
    sqs = sqs_client()
    arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])[
        "Attributes"]["QueueArn"]
    while True:
        try:
            messages = sqs.receive_message(
                QueueUrl=queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=0,
                AttributeNames=["All"]).get("Messages", [])
        except Exception as error:  # the emulator restarting: try again shortly
            print(f"sqs_poller: receive from {name_of(queue_url)} failed: {error}",
                  file=sys.stderr, flush=True)
            time.sleep(1)
            continue
        if not messages:
            time.sleep(IDLE_SECONDS)
            continue
        failed = invoke(base_url, function, lambda_event(arn, messages))
        if failed is None:
            continue
        done = [m for m in messages if m["MessageId"] not in failed]
        for start in range(0, len(done), 10):
            sqs.delete_message_batch(QueueUrl=queue_url, Entries=[
                {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]}
                for i, m in enumerate(done[start:start + 10])])
        print(f"sqs_poller: {function}: {len(messages)} message(s), {len(failed)} failed",
              flush=True)


def main(argv):
    if len(argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    urls = create_queues(sqs_client())
    print(f"sqs_poller: events queue {urls['EVENTS_QUEUE_URL']}", flush=True)
    threads = [
        threading.Thread(target=poll, args=(argv[1], "fanout", urls["EVENTS_QUEUE_URL"]),
                         daemon=True),
        threading.Thread(target=poll, args=(argv[1], "deliver", urls["DELIVERIES_QUEUE_URL"]),
                         daemon=True),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
