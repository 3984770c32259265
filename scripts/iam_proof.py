#!/usr/bin/env python3
"""IAM proof (`make iam-proof`): the function's real code paths, run with exactly the function
role's policy rendered from template.yaml, checked per resource by scripts/iam_proxy.py.

    .venv/bin/python scripts/iam_proof.py [--only SUBSTRING]

1. Builds the function and webhooks-admin (debug), starts moto (scripts/moto_server.py), and
   makes the tables, the pepper and a customer KMS key directly in moto (not through the check).
2. Translates the template (samtranslator, offline) and renders, per parameter set (defaults;
   a customer KMS key), the role's inline policy and the function's environment variables
   with the names moto has (tables, pepper ARN, key ARN, stack name and id).
3. Runs the paths of the three functions whose roles the template grants:
   - the API function: create, replay (same Idempotency-Key), undo (a create refused for the
     key's webhook limit: its secret must be deleted and its claim released), list, get, patch
     (fields), patch (headers), reset-circuit, test (a signed ping, which must reach a
     receiver this script runs on 127.0.0.1 and be recorded in the delivery log: the
     BatchWriteItem), rotate-secret (the new secret must be the one stored), list-deliveries
     (the ping listed), get-delivery, resend and recover (each one job on the deliveries
     queue), delete;
   - fanout: an event (logged once, a delivery per subscribed webhook logged and queued), a
     malformed one (to the events dead-letter queue);
   - deliver: a delivery (received, logged delivered), a failed first attempt (logged, its
     retry queued), a failed last attempt (logged failed; its `delivery.failed` goes to the
     key's alert webhook: the byApiKey Query, the log's PutItems), a recover job (the walk of
     eventsByCompany and the BatchGetItem of deliveries; the missed event's delivery queued).
   Each path runs in a fresh process of its function (a cold start: pepper and key are read
   again) whose AWS endpoint is the IAM proxy, under its own role's policy. What a path needs
   beforehand (an API key, a webhook to read or delete, a quota at its limit; for the
   pipeline, webhooks of a company of the variant's own and the messages fan-out and the
   API's recover make for them) is made through a second proxy with the full policies, or
   directly in moto.
4. With the template's policies every path must succeed without a denial. Then, for each
   action of each statement (except the log permissions, which Lambda itself uses, and the
   event source mapping's reads of a function's own queue), that role's policy without it:
   at least one of that function's paths must fail (wrong answer or missing effect) with that
   action denied. A granted action whose removal breaks nothing fails the proof: the template
   should drop it.

Decisions are logged to .run/iam-proof/decisions.jsonl (one JSON line each, tagged
variant/path); the function's logs go to .run/iam-proof/function.log.
"""

import argparse
import copy
import hashlib
import http.server
import ipaddress
import json
import os
import subprocess
import sys
import threading
import time
import urllib.parse
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))

import check_policies  # noqa: E402
import iam_proxy  # noqa: E402
import lambda_stand_in as stand_in  # noqa: E402
import template_render  # noqa: E402

REGION, ACCOUNT = "eu-central-1", iam_proxy.ACCOUNT
STACK = check_policies.STACK
STACK_UUID = check_policies.STACK_UUID
# role -> (its inline policy, its function, the binary): the API function and the pipeline's.
ROLES = {
    "api": ("CreateWebhookFunctionRole/create-webhook", "CreateWebhookFunction", "create-webhook"),
    "fanout": ("FanoutFunctionRole/fanout", "FanoutFunction", "fanout"),
    "deliver": ("DeliverFunctionRole/deliver", "DeliverFunction", "deliver"),
}
# Used by the Lambda service, never by the function's code: the function's logs, and the
# event source mapping's reads of the function's own queue.
NOT_CALLED_BY_CODE = {
    "logs:CreateLogStream": "Lambda's own use",
    "logs:PutLogEvents": "Lambda's own use",
    "sqs:ReceiveMessage": "the event source mapping's",
    "sqs:DeleteMessage": "the event source mapping's",
    "sqs:GetQueueAttributes": "the event source mapping's",
}
COMPANY = "3f1c2a9e-8b4d-4e6f-9a7b-1c2d3e4f5a6b"
RUN_DIR = ROOT / ".run" / "iam-proof"


def target_dir():
    path = Path(os.environ.get("CARGO_TARGET_DIR", "target"))
    return path if path.is_absolute() else ROOT / path


class Aws:
    """boto3 clients straight to moto (setup and effect checks; never through the proxy)."""

    def __init__(self, endpoint):
        import boto3

        session = boto3.session.Session(
            aws_access_key_id="local", aws_secret_access_key="local", region_name=REGION
        )
        self.dynamodb = session.client("dynamodb", endpoint_url=endpoint)
        self.secrets = session.client("secretsmanager", endpoint_url=endpoint)
        self.kms = session.client("kms", endpoint_url=endpoint)
        self.sqs = session.client("sqs", endpoint_url=endpoint)

    def live_secrets_of(self, api_key_id):
        names = []
        for page in self.secrets.get_paginator("list_secrets").paginate():
            for secret in page["SecretList"]:
                tags = {t["Key"]: t["Value"] for t in secret.get("Tags") or []}
                if tags.get("apiKeyId") == api_key_id and not secret.get("DeletedDate"):
                    names.append(secret["Name"])
        return names

    def secret_exists(self, secret_id):
        try:
            found = self.secrets.describe_secret(SecretId=secret_id)
        except self.secrets.exceptions.ResourceNotFoundException:
            return False
        return not found.get("DeletedDate")


def http_event(method, route, path, token, body=None, headers=None, path_id=None, delivery_id=None):
    """An API Gateway HTTP API (payload 2.0) event, shaped like events/http-api/*.json."""
    event = json.loads(stand_in.SEED_EVENT.read_text())
    route_key = f"{method} {route}"
    event["routeKey"] = event["requestContext"]["routeKey"] = route_key
    event["rawPath"] = event["requestContext"]["http"]["path"] = path
    event["requestContext"]["http"]["method"] = method
    event["requestContext"]["requestId"] = uuid.uuid4().hex[:16]
    base = {
        k: v for k, v in event["headers"].items() if k not in ("content-length", "content-type")
    }
    base["authorization"] = f"Bearer {token}"
    if body is not None:
        base["content-type"] = "application/json"
        event["body"] = json.dumps(body)
    else:
        event.pop("body", None)
    base.update({k.lower(): v for k, v in (headers or {}).items()})
    event["headers"] = base
    if path_id:
        event["pathParameters"] = {"id": path_id}
    if delivery_id:
        event["pathParameters"]["deliveryId"] = delivery_id
    return json.dumps(event).encode()


def newest_delivery(stack, webhook):
    """The id of `webhook`'s newest delivery in the log (read in moto, not through the check)."""
    items = stack.aws.dynamodb.query(
        TableName=stack.refs["DeliveryLogTable"],
        IndexName="deliveriesByWebhook",
        KeyConditionExpression="webhookId = :w",
        ExpressionAttributeValues={":w": {"S": webhook}},
        ScanIndexForward=False,
        Limit=1,
    )["Items"]
    return items[0]["id"]["S"].removeprefix("delivery#") if items else None


def queued(stack, logical):
    """Messages sent to the template's queue `logical` so far (moto's counter, read directly)."""
    url = stack.aws.sqs.get_queue_url(QueueName=stack.attrs[(logical, "QueueName")])["QueueUrl"]
    attributes = stack.aws.sqs.get_queue_attributes(
        QueueUrl=url,
        AttributeNames=[
            "ApproximateNumberOfMessages",
            "ApproximateNumberOfMessagesNotVisible",
            "ApproximateNumberOfMessagesDelayed",
        ],
    )["Attributes"]
    return sum(int(v) for v in attributes.values())


def sqs_event(body):
    """An SQS event of one message, as Lambda's event source mapping sends it."""
    return json.dumps(
        {
            "Records": [
                {
                    "messageId": str(uuid.uuid4()),
                    "receiptHandle": "iam-proof",
                    "body": body,
                    "attributes": {},
                    "messageAttributes": {},
                    "eventSource": "aws:sqs",
                    "eventSourceARN": f"arn:aws:sqs:{REGION}:{ACCOUNT}:iam-proof",
                    "awsRegion": REGION,
                }
            ]
        }
    ).encode()


def no_failures(answer):
    """Whether a pipeline function's batch response reports no failed message."""
    return isinstance(answer, dict) and answer.get("batchItemFailures") == []


def delivery_id(event_id, webhook_id):
    """src/store/delivery_log.rs `delivery_id` (as scripts/soak.py derives it)."""
    digest = hashlib.sha256(
        b"instaview-delivery\0" + event_id.encode() + b"\0" + uuid.UUID(webhook_id).bytes
    ).digest()
    raw = bytearray(digest[:16])
    raw[6] = (raw[6] & 0x0F) | 0x80
    raw[8] = (raw[8] & 0x3F) | 0x80
    return str(uuid.UUID(bytes=bytes(raw)))


def answer_of(raw):
    """(status, body as JSON or text) of what the function posted to the Runtime API."""
    _, kind, body = raw
    if kind != "response":
        return f"{kind}", body[:300].decode("utf-8", "replace")
    response = json.loads(body)
    text = response.get("body") or ""
    try:
        parsed = json.loads(text) if text else None
    except ValueError:
        parsed = text
    return response.get("statusCode"), parsed


# Deliveries (the test path's ping) go only to the receiver below, on 127.0.0.1: every webhook
# of the proof is registered with its http://127.0.0.1:PORT URL, and every function process
# runs with these two settings on top of the template's environment (they change no AWS call).
LOOPBACK_ONLY_ENV = {"ALLOW_LOCALHOST_URLS": "true", "DELIVER_TO_LOOPBACK_ONLY": "true"}


class Receiver:
    """An HTTP receiver on 127.0.0.1 that answers `status` (204) and counts the requests it
    gets."""

    def __init__(self, status=204):
        receiver = self
        self.count = 0
        self.lock = threading.Lock()

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 (http.server's naming)
                self.rfile.read(int(self.headers.get("content-length") or 0))
                with receiver.lock:
                    receiver.count += 1
                self.send_response(status)
                self.send_header("connection", "close")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        host, port = self.server.server_address[:2]
        self.url = f"http://{host}:{port}/iam-proof"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def received(self):
        with self.lock:
            return self.count

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


def webhook_for(url):
    """The body of the proof's creates: a webhook (subscribed to ping) for a loopback `url`."""
    if not ipaddress.ip_address(urllib.parse.urlsplit(url).hostname).is_loopback:
        raise SystemExit(f"iam-proof: refusing a non-loopback webhook URL {url}")
    return {
        "url": url,
        "name": "IAM proof",
        "events": ["interview.completed", "ping"],
        "headers": [{"name": "Authorization", "value": "Bearer proof-token"}],
    }


def webhook_id(body):
    if isinstance(body, dict):
        data = body.get("data", body)
        if isinstance(data, dict):
            return data.get("id")
    return None


class Stack:
    """moto, the names the template renders to, and the two proxies (check; full policy)."""

    def __init__(self):
        RUN_DIR.mkdir(parents=True, exist_ok=True)
        for name in ("decisions.jsonl", "fixture-decisions.jsonl", "function.log"):
            (RUN_DIR / name).unlink(missing_ok=True)
        self.moto_log = open(RUN_DIR / "moto.log", "wb")
        self.function_log = open(RUN_DIR / "function.log", "ab")
        port = stand_in.free_port()
        self.moto_url = f"http://127.0.0.1:{port}"
        self.moto = subprocess.Popen(
            [
                sys.executable,
                str(ROOT / "scripts" / "moto_server.py"),
                "-H",
                "127.0.0.1",
                "-p",
                str(port),
            ],
            stdout=self.moto_log,
            stderr=subprocess.STDOUT,
        )
        stand_in.wait_for_port(port)
        self.aws = Aws(self.moto_url)
        self.receiver = Receiver()
        self.failing_receiver = Receiver(status=500)  # the pipeline's retries and failures
        self.webhook = webhook_for(self.receiver.url)
        self.cfn = template_render.translate(
            template_render.load(ROOT / "template.yaml"), "s3://example-bucket/function.zip"
        )
        self.refs, self.attrs = check_policies.example_names(self.cfn)
        pepper_name = f"{STACK}-PepperSecret-EXAMPLE1234"
        self.admin_env = dict(
            os.environ,
            AWS_ENDPOINT_URL=self.moto_url,
            AWS_REGION=REGION,
            AWS_DEFAULT_REGION=REGION,
            AWS_ACCESS_KEY_ID="local",
            AWS_SECRET_ACCESS_KEY="local",
            WEBHOOKS_TABLE_NAME=self.refs["WebhooksTable"],
            API_KEYS_TABLE_NAME=self.refs["ApiKeysTable"],
            DELIVERY_LOG_TABLE_NAME=self.refs["DeliveryLogTable"],
            PEPPER_SECRET_ID=pepper_name,
        )
        self.admin("setup")
        # The template's queues under their example names (moto finds a queue by the name at
        # the end of the URL, so the function's https://sqs.<region>.amazonaws.com/... URLs
        # reach these).
        for logical, resource in self.cfn["Resources"].items():
            if resource["Type"] == "AWS::SQS::Queue":
                self.aws.sqs.create_queue(QueueName=self.attrs[(logical, "QueueName")])
        self.refs["PepperSecret"] = self.aws.secrets.describe_secret(SecretId=pepper_name)["ARN"]
        self.kms_key = self.aws.kms.create_key(Description="IAM proof")["KeyMetadata"]["Arn"]
        self.parameter_sets = {
            "defaults": {},
            "customer KMS key": {"WebhookSecretsKmsKeyArn": self.kms_key},
        }
        self.fixture_proxy = iam_proxy.IamProxy(
            self.moto_url, [], RUN_DIR / "fixture-decisions.jsonl"
        )
        self.proxy = iam_proxy.IamProxy(self.moto_url, [], RUN_DIR / "decisions.jsonl")

    def admin(self, *args):
        out = subprocess.run(
            [str(target_dir() / "debug" / "webhooks-admin"), "--json", *args],
            env=self.admin_env,
            check=True,
            capture_output=True,
            text=True,
        )
        return out.stdout

    def new_key(self, name, company=COMPANY):
        created = json.loads(
            self.admin(
                "keys",
                "create",
                "--name",
                name,
                "--scope",
                "write:webhooks",
                "--scope",
                "read:webhooks",
                "--company",
                company,
            )
        )
        return created["token"], created["apiKeyId"]

    def render(self, params):
        """({role: policy document}, {role: function environment}) for one parameter set."""
        pseudo = {
            "AWS::StackName": STACK,
            "AWS::Region": REGION,
            "AWS::StackId": f"arn:aws:cloudformation:{REGION}:{ACCOUNT}:stack/{STACK}/{STACK_UUID}",
        }
        renderer = template_render.Renderer(
            self.cfn, params=params, pseudo=pseudo, refs=self.refs, attrs=self.attrs
        )
        policies = dict(renderer.policies())
        documents, envs = {}, {}
        for role, (policy, logical, _) in ROLES.items():
            document = policies[policy]
            function = self.cfn["Resources"][logical]["Properties"]
            env = renderer.value(function["Environment"]["Variables"])
            missing = [k for k, v in env.items() if v is template_render.MISSING]
            if missing or "<missing>" in repr(document):
                raise SystemExit(f"could not render {missing or document}")
            documents[role] = document
            envs[role] = dict({k: str(v) for k, v in env.items()}, **LOOPBACK_ONLY_ENV)
        return documents, envs

    def stop(self):
        self.proxy.stop()
        self.fixture_proxy.stop()
        self.receiver.stop()
        self.failing_receiver.stop()
        self.moto.terminate()
        self.moto.wait()
        self.moto_log.close()
        self.function_log.close()


class Function:
    """One cold start of the function with its AWS endpoint at `proxy`."""

    def __init__(self, stack, proxy, env, binary="create-webhook"):
        self.function = stand_in.Function(
            target_dir() / "debug" / binary,
            {"AWS_ENDPOINT_URL": proxy.url},
            stack.function_log,
            extra_env=env,
        )

    def call(self, *args, **kwargs):
        _, raw = self.function.invoke(http_event(*args, **kwargs))
        return answer_of(raw)

    def sqs(self, body):
        """Invokes a pipeline function with one SQS message; its batch response (or None)."""
        _, (_, kind, raw) = self.function.invoke(sqs_event(body))
        if kind != "response":
            return None
        return json.loads(raw)

    def stop(self):
        # The Runtime API's shutdown waits for its 0.5 s poll: let it happen in the background.
        self.function.process.kill()
        self.function.process.wait()
        threading.Thread(target=self.function.api.stop, daemon=True).start()


def run_paths(stack, envs, documents, variant, roles=tuple(ROLES)):
    """Runs the paths of `roles` with `documents` as the roles' policies. Returns {path:
    result}."""
    results = {}
    if "api" in roles:
        results.update(run_api_paths(stack, envs["api"], documents["api"], variant))
    pipeline = [r for r in roles if r != "api"]
    if pipeline:
        results.update(run_pipeline_paths(stack, envs, documents, variant, pipeline))
    return results


def run_one(stack, name, role, env, document, path):
    """One path in a fresh process of `role`'s function under `document`: its result."""
    stack.proxy.documents = [document]
    first = len(stack.proxy.decisions)
    function = Function(stack, stack.proxy, env, ROLES[role][2])
    try:
        ok, detail = path(function)
    finally:
        function.stop()
    decisions = stack.proxy.decisions[first:]
    denied = sorted(
        {
            c["action"]
            for d in decisions
            if d["decision"] == "DENY"
            for c in d["checks"]
            if c["effect"] != "Allow"
        }
        | {f"unmodelled {d['service']}.{d['operation']}" for d in decisions if d.get("reason")}
    )
    return {"ok": ok, "detail": detail, "denied": denied, "calls": len(decisions)}


def run_api_paths(stack, env, document, variant):
    """Runs the API function's paths with `document` as its role's policy."""
    webhook = stack.webhook
    stack.fixture_proxy.documents = list(stack.full_documents.values())
    stack.proxy.documents = [document]
    fixture = Function(stack, stack.fixture_proxy, env)
    stack.fixture_proxy.tag = f"{variant}/fixtures"
    try:
        token, key_id = stack.new_key(f"iam proof {variant}")
        limited_token, limited_key_id = stack.new_key(f"iam proof {variant} (at its limit)")
        limit = int(env["MAX_WEBHOOKS_PER_API_KEY"])
        stack.aws.dynamodb.put_item(
            TableName=stack.refs["WebhooksTable"],
            Item={"id": {"S": f"quota#{limited_key_id}"}, "webhookCount": {"N": str(limit)}},
        )
        replay_key = uuid.uuid4().hex
        status, body = fixture.call(
            "POST", "/webhooks", "/webhooks", token, webhook, {"Idempotency-Key": replay_key}
        )
        kept = webhook_id(body)
        status2, body2 = fixture.call("POST", "/webhooks", "/webhooks", token, webhook)
        doomed = webhook_id(body2)
        # A delivery of `kept` for get and resend: the test ping, recorded in the log (a
        # fresh one per run: a resent delivery is pending until the pipeline sends it).
        pinged, _ = fixture.call(
            "POST",
            "/webhooks/{id}/test",
            f"/webhooks/{kept}/test",
            token,
            headers={"Idempotency-Key": uuid.uuid4().hex},
            path_id=kept,
        )
        ping_delivery = newest_delivery(stack, kept) if kept else None
        if status != 201 or status2 != 201 or not kept or not doomed or not ping_delivery:
            denied = sorted(
                {
                    f"{c['action']} on {c['resource']}"
                    for d in stack.fixture_proxy.decisions
                    if d["decision"] == "DENY"
                    for c in d["checks"]
                    if c["effect"] != "Allow"
                }
            )
            raise SystemExit(
                f"iam-proof FAILED: creating fixtures with the template's policy "
                f"answered {status} / {status2}, ping {pinged} ({ping_delivery}); "
                f"denied: {denied}"
            )
    finally:
        fixture.stop()
    doomed_secret = env["WEBHOOK_SECRET_PREFIX"] + doomed
    one = f"/webhooks/{kept}"
    undo_key = uuid.uuid4().hex

    def create(call):
        status, body = call(
            "POST", "/webhooks", "/webhooks", token, webhook, {"Idempotency-Key": uuid.uuid4().hex}
        )
        return status == 201 and bool(webhook_id(body)), f"{status}"

    def replay(call):
        status, body = call(
            "POST", "/webhooks", "/webhooks", token, webhook, {"Idempotency-Key": replay_key}
        )
        return status in (200, 201) and webhook_id(body) == kept, f"{status}"

    def undo(call):
        answers = []
        for _ in range(2):  # the retry finds the claim released, not "in progress"
            status, body = call(
                "POST",
                "/webhooks",
                "/webhooks",
                limited_token,
                webhook,
                {"Idempotency-Key": undo_key},
            )
            code = (body.get("error") or {}).get("code") if isinstance(body, dict) else None
            answers.append((status, code))
        left = stack.aws.live_secrets_of(limited_key_id)
        ok = all(a == (409, "WEBHOOK_LIMIT_REACHED") for a in answers) and not left
        return ok, f"{answers}" + (f", secrets left: {len(left)}" if left else "")

    def list_(call):
        status, body = call("GET", "/webhooks", "/webhooks", token)
        page = (body.get("data") or {}) if isinstance(body, dict) else {}
        ids = [w.get("id") for w in page.get("data") or []]
        return status == 200 and kept in ids, f"{status}"

    def get(call):
        status, body = call("GET", "/webhooks/{id}", one, token, path_id=kept)
        return status == 200 and webhook_id(body) == kept, f"{status}"

    def patch_fields(call):
        status, _ = call(
            "PATCH", "/webhooks/{id}", one, token, {"name": f"renamed {variant}"}, path_id=kept
        )
        return status == 200, f"{status}"

    def patch_headers(call):
        status, _ = call(
            "PATCH",
            "/webhooks/{id}",
            one,
            token,
            {"headers": [{"name": "X-Proof", "value": uuid.uuid4().hex}]},
            path_id=kept,
        )
        return status == 200, f"{status}"

    def reset_circuit(call):
        status, _ = call(
            "POST",
            "/webhooks/{id}/reset-circuit",
            f"{one}/reset-circuit",
            token,
            headers={"Idempotency-Key": uuid.uuid4().hex},
            path_id=kept,
        )
        return status == 200, f"{status}"

    def test(call):
        before = stack.receiver.received()
        last = newest_delivery(stack, kept)
        status, body = call(
            "POST",
            "/webhooks/{id}/test",
            f"{one}/test",
            token,
            headers={"Idempotency-Key": uuid.uuid4().hex},
            path_id=kept,
        )
        data = (body.get("data") or {}) if isinstance(body, dict) else {}
        delivered = stack.receiver.received() - before
        # The ping is a delivery too (DELIVERY-LOG.md): listed, with its attempt recorded.
        ping = newest_delivery(stack, kept)
        item = (
            stack.aws.dynamodb.get_item(
                TableName=stack.refs["DeliveryLogTable"],
                Key={"id": {"S": f"delivery#{ping}"}},
                ConsistentRead=True,
            ).get("Item", {})
            if ping and ping != last
            else {}
        )
        recorded = item.get("status", {}).get("S") == "delivered" and "attempt#1" in item
        ok = status == 200 and data.get("success") is True and delivered == 1 and recorded
        return ok, f"{status}" + (f", success {data.get('success')}" if status == 200 else "") + (
            f", {delivered} deliveries" if delivered != 1 else ""
        ) + ("" if recorded else ", the ping is not in the log as delivered")

    def rotate_secret(call):
        status, body = call(
            "POST",
            "/webhooks/{id}/rotate-secret",
            f"{one}/rotate-secret",
            token,
            headers={"Idempotency-Key": uuid.uuid4().hex},
            path_id=kept,
        )
        data = (body.get("data") or {}) if isinstance(body, dict) else {}
        new = data.get("signingSecret")
        # The secret version the record now points at must hold the new secret.
        record = stack.aws.dynamodb.get_item(
            TableName=stack.refs["WebhooksTable"], Key={"id": {"S": kept}}, ConsistentRead=True
        )["Item"]
        stored = stack.aws.secrets.get_secret_value(
            SecretId=record["secretArn"]["S"], VersionId=record["secretVersion"]["S"]
        )
        current = json.loads(stored["SecretString"]).get("signingSecret")
        ok = status == 200 and bool(new) and new == current
        return ok, f"{status}" + (", new secret not stored" if status == 200 and not ok else "")

    deliveries = f"{one}/deliveries"

    def list_deliveries(call):
        status, body = call("GET", "/webhooks/{id}/deliveries", deliveries, token, path_id=kept)
        page = (body.get("data") or {}) if isinstance(body, dict) else {}
        ids = [d.get("id") for d in page.get("data") or []]
        return status == 200 and ping_delivery in ids, f"{status}" + (
            ", the ping is not listed" if status == 200 and ping_delivery not in ids else ""
        )

    def get_delivery(call):
        status, body = call(
            "GET",
            "/webhooks/{id}/deliveries/{deliveryId}",
            f"{deliveries}/{ping_delivery}",
            token,
            path_id=kept,
            delivery_id=ping_delivery,
        )
        data = (body.get("data") or {}) if isinstance(body, dict) else {}
        ok = status == 200 and data.get("id") == ping_delivery and bool(data.get("attempts"))
        return ok, f"{status}"

    def resend(call):
        before = queued(stack, "DeliveriesQueue")
        status, body = call(
            "POST",
            "/webhooks/{id}/deliveries/{deliveryId}/resend",
            f"{deliveries}/{ping_delivery}/resend",
            token,
            headers={"Idempotency-Key": uuid.uuid4().hex},
            path_id=kept,
            delivery_id=ping_delivery,
        )
        data = (body.get("data") or {}) if isinstance(body, dict) else {}
        sent = queued(stack, "DeliveriesQueue") - before
        ok = status == 202 and data.get("status") == "pending" and sent == 1
        return ok, f"{status}" + (f", {sent} messages queued" if sent != 1 else "")

    def recover(call):
        before = queued(stack, "DeliveriesQueue")
        since = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() - 3600))
        status, _ = call(
            "POST",
            "/webhooks/{id}/recover",
            f"{one}/recover",
            token,
            {"since": since},
            {"Idempotency-Key": uuid.uuid4().hex},
            path_id=kept,
        )
        sent = queued(stack, "DeliveriesQueue") - before
        return status == 202 and sent == 1, f"{status}" + (
            f", {sent} messages queued" if sent != 1 else ""
        )

    def delete(call):
        status, _ = call("DELETE", "/webhooks/{id}", f"/webhooks/{doomed}", token, path_id=doomed)
        left = stack.aws.secret_exists(doomed_secret)
        return status == 204 and not left, f"{status}" + (", secret left" if left else "")

    paths = {
        "create": create,
        "replay": replay,
        "undo": undo,
        "list": list_,
        "get": get,
        "patch-fields": patch_fields,
        "patch-headers": patch_headers,
        "reset-circuit": reset_circuit,
        "test": test,
        "rotate-secret": rotate_secret,
        "list-deliveries": list_deliveries,
        "get-delivery": get_delivery,
        "resend": resend,
        "recover": recover,
        "delete": delete,
    }
    results = {}
    for name, path in paths.items():
        stack.proxy.tag = f"{variant}/{name}"
        results[name] = run_one(
            stack, name, "api", env, document, lambda function, path=path: path(function.call)
        )
    return results


def queue_url(stack, logical):
    return stack.aws.sqs.get_queue_url(QueueName=stack.attrs[(logical, "QueueName")])["QueueUrl"]


def drain(stack, logical):
    """Every message now visible on the template's queue `logical`, received and deleted (in
    moto, not through the check)."""
    url, bodies = queue_url(stack, logical), []
    while True:
        got = stack.aws.sqs.receive_message(
            QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=0
        ).get("Messages", [])
        if not got:
            return bodies
        for message in got:
            bodies.append(message["Body"])
            stack.aws.sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])


def log_item(stack, key):
    return stack.aws.dynamodb.get_item(
        TableName=stack.refs["DeliveryLogTable"], Key={"id": {"S": key}}, ConsistentRead=True
    ).get("Item", {})


def platform_event(company, event_id=None):
    """An events-queue message for `company` (interview.completed), with its own id."""
    return json.dumps(
        {
            "eventId": event_id or str(uuid.uuid4()),
            "event": "interview.completed",
            "companyId": company,
            "data": {"interviewId": "int_iam_proof"},
            "occurredAt": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }
    )


def run_pipeline_paths(stack, envs, documents, variant, roles):
    """The pipeline functions' paths (fanout: an event, a malformed one; deliver: a delivery,
    a retry, a last failure with its operational event, a recover walk), each with its input
    made beforehand under the full policies: webhooks of a company of this variant's own (so
    that fan-out finds only them) created through the API function, messages made by fan-out
    and the API's recover."""
    stack.fixture_proxy.documents = list(stack.full_documents.values())
    stack.fixture_proxy.tag = f"{variant}/pipeline fixtures"
    company = str(uuid.uuid4())
    token, _ = stack.new_key(f"iam proof {variant} (pipeline)", company=company)
    alert_body = dict(
        webhook_for(stack.receiver.url), events=["delivery.failed", "webhook.circuit_opened"]
    )
    failing_body = dict(webhook_for(stack.failing_receiver.url), events=["interview.completed"])
    hooks = {}
    api = Function(stack, stack.fixture_proxy, envs["api"])
    try:
        for name, body in (
            ("ok", stack.webhook),
            ("retrying", failing_body),
            ("failing", failing_body),
            ("alert", alert_body),
        ):
            status, answer = api.call("POST", "/webhooks", "/webhooks", token, body)
            hooks[name] = webhook_id(answer)
            if status != 201 or not hooks[name]:
                raise SystemExit(f"iam-proof FAILED: pipeline fixture {name}: {status} {answer}")
        drain(stack, "DeliveriesQueue")
        fanout = Function(stack, stack.fixture_proxy, envs["fanout"], "fanout")
        try:
            fanned = fanout.sqs(platform_event(company))
        finally:
            fanout.stop()
        messages = {}
        for body in drain(stack, "DeliveriesQueue"):
            message = json.loads(body)
            for name, hook in hooks.items():
                if message.get("webhookId") == hook:
                    messages[name] = message
        # An event accepted after the webhooks were made, with no delivery yet: what the
        # recover walk must find and queue (written as fan-out writes an event item).
        time.sleep(1.1)
        missed = str(uuid.uuid4())
        now = time.time()
        stack.aws.dynamodb.put_item(
            TableName=stack.refs["DeliveryLogTable"],
            Item={
                "id": {"S": f"event#{missed}"},
                "eventId": {"S": missed},
                "event": {"S": "interview.completed"},
                "companyId": {"S": company},
                "occurredAt": {"S": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now - 30))},
                "occurredKey": {"S": f"{int((now - 30) * 1000):013d}#{missed}"},
                "receivedAt": {"S": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now))},
                "data": {"S": json.dumps({"interviewId": "int_missed"})},
                "expiresAt": {"N": str(int(now) + 30 * 86400)},
            },
        )
        time.sleep(1.1)
        since = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now - 3600))
        status, answer = api.call(
            "POST",
            "/webhooks/{id}/recover",
            f"/webhooks/{hooks['ok']}/recover",
            token,
            {"since": since},
            path_id=hooks["ok"],
        )
        recovers = [b for b in drain(stack, "DeliveriesQueue") if '"recover"' in b]
    finally:
        api.stop()
    wanted = {"ok", "retrying", "failing"}
    if not no_failures(fanned) or set(messages) != wanted or status != 202 or len(recovers) != 1:
        raise SystemExit(
            f"iam-proof FAILED: pipeline fixtures with the template's policies: fan-out "
            f"{fanned}, messages for {sorted(messages)}, recover {status} ({len(recovers)})"
        )
    # The last attempt of a delivery (maxRetries 3: attempt 4) fails for good: delivery.failed.
    last = dict(messages["failing"], attempt=messages["failing"].get("attempt", 1) + 3)

    def fanout_event(function):
        before = queued(stack, "DeliveriesQueue")
        event_id = str(uuid.uuid4())
        answer = function.sqs(platform_event(company, event_id))
        sent = queued(stack, "DeliveriesQueue") - before
        logged = bool(log_item(stack, f"event#{event_id}"))
        recorded = all(
            log_item(stack, f"delivery#{delivery_id(event_id, hooks[n])}") for n in wanted
        )
        ok = no_failures(answer) and sent == 3 and logged and recorded
        return ok, f"{answer}, {sent} queued" + ("" if logged and recorded else ", not in the log")

    def fanout_refused(function):
        before = queued(stack, "EventsDeadLetterQueue")
        answer = function.sqs(json.dumps({"event": "interview.completed", "data": {}}))
        dead = queued(stack, "EventsDeadLetterQueue") - before
        return no_failures(answer) and dead == 1, f"{answer}, {dead} dead-lettered"

    def delivery_status(message):
        item = log_item(stack, f"delivery#{message['deliveryId']}")
        return item.get("status", {}).get("S"), item

    def deliver(function):
        before = stack.receiver.received()
        answer = function.sqs(json.dumps(messages["ok"]))
        got = stack.receiver.received() - before
        status, item = delivery_status(messages["ok"])
        ok = no_failures(answer) and got == 1 and status == "delivered" and "attempt#1" in item
        return ok, f"{answer}, {got} received, {status}"

    def deliver_retry(function):
        before = queued(stack, "DeliveriesQueue")
        answer = function.sqs(json.dumps(messages["retrying"]))
        sent = queued(stack, "DeliveriesQueue") - before
        status, item = delivery_status(messages["retrying"])
        failed = item.get("attempt#1", {}).get("M", {}).get("outcome", {}).get("S") == "failed"
        ok = no_failures(answer) and sent == 1 and status == "pending" and failed
        return ok, f"{answer}, {sent} queued, {status}"

    def deliver_failed(function):
        before = queued(stack, "DeliveriesQueue")
        answer = function.sqs(json.dumps(last))
        sent = queued(stack, "DeliveriesQueue") - before
        status, _ = delivery_status(last)
        alert = newest_delivery(stack, hooks["alert"])
        kind = log_item(stack, f"delivery#{alert}").get("event", {}).get("S") if alert else None
        ok = no_failures(answer) and status == "failed" and kind == "delivery.failed" and sent == 1
        return ok, f"{answer}, {status}, alert {kind}, {sent} queued"

    def deliver_recover(function):
        before = queued(stack, "DeliveriesQueue")
        answer = function.sqs(recovers[0])
        sent = queued(stack, "DeliveriesQueue") - before
        status = log_item(stack, f"delivery#{delivery_id(missed, hooks['ok'])}").get("status")
        ok = no_failures(answer) and sent >= 1 and status == {"S": "pending"}
        return ok, f"{answer}, {sent} queued, the missed event's delivery {status}"

    paths = {
        "fanout": ("fanout", fanout_event),
        "fanout-refused": ("fanout", fanout_refused),
        "deliver": ("deliver", deliver),
        "deliver-retry": ("deliver", deliver_retry),
        "deliver-failed": ("deliver", deliver_failed),
        "deliver-recover": ("deliver", deliver_recover),
    }
    results = {}
    for name, (role, path) in paths.items():
        if role not in roles:
            continue
        stack.proxy.tag = f"{variant}/{name}"
        results[name] = run_one(stack, name, role, envs[role], documents[role], path)
    return results


def without(document, sid, action):
    """`document` with `action` removed from statement `sid` (the statement goes if empty)."""
    reduced = copy.deepcopy(document)
    statements = []
    for statement in reduced["Statement"]:
        if statement.get("Sid") == sid:
            actions = [a for a in iam_proxy._as_list(statement["Action"]) if a != action]
            if not actions:
                continue
            statement["Action"] = actions
        statements.append(statement)
    reduced["Statement"] = statements
    return reduced


def main(argv):
    parser = argparse.ArgumentParser(description="IAM proof against the template's role policy")
    parser.add_argument("--only", help="run only removal variants whose name contains this")
    args = parser.parse_args(argv)
    started = time.monotonic()
    failures = iam_proxy.self_test()
    if failures:
        print(
            "iam-proof FAILED: the IAM proxy's self-test:", *failures, sep="\n  - ", file=sys.stderr
        )
        return 1
    subprocess.run(
        ["cargo", "build", "--quiet", "--bin", "webhooks-admin"]
        + [arg for _, _, binary in ROLES.values() for arg in ("--bin", binary)],
        cwd=ROOT,
        check=True,
    )
    stack = Stack()
    problems, table, baseline_calls = [], [], {}
    try:
        for label, params in stack.parameter_sets.items():
            documents, envs = stack.render(params)
            stack.full_documents = documents
            results = run_paths(stack, envs, documents, f"{label}: full policy")
            for path, result in results.items():
                baseline_calls[(label, path)] = result["calls"]
                if not result["ok"] or result["denied"]:
                    problems.append(
                        f"[{label}] path {path} fails with the template's policy: "
                        f"{result['detail']}, denied {result['denied']}"
                    )
            print(
                f"[{label}] template's policy: "
                + ", ".join(
                    f"{p} {'ok' if r['ok'] and not r['denied'] else 'FAILED'}"
                    for p, r in results.items()
                ),
                flush=True,
            )
            for role, document in documents.items():
                for statement in document["Statement"]:
                    sid = statement.get("Sid")
                    actions = iam_proxy._as_list(statement["Action"])
                    if label != "defaults" and not all(a.startswith("kms:") for a in actions):
                        continue  # the other statements were proved with the defaults
                    for action in actions:
                        where = f"{role} {sid}"
                        if action in NOT_CALLED_BY_CODE:
                            why = NOT_CALLED_BY_CODE[action]
                            table.append((label, where, action, f"not exercised ({why})"))
                            continue
                        variant = f"{label}: without {where} {action}"
                        if args.only and args.only not in variant:
                            continue
                        reduced = dict(documents, **{role: without(document, sid, action)})
                        results = run_paths(stack, envs, reduced, variant, roles=(role,))
                        broken = [
                            p for p, r in results.items() if not r["ok"] and action in r["denied"]
                        ]
                        other = [
                            f"{p} ({r['detail']}; denied {r['denied']})"
                            for p, r in results.items()
                            if p not in broken and (not r["ok"] or r["denied"])
                        ]
                        if not broken:
                            problems.append(
                                f"[{label}] {where} grants {action}, but no path needs it"
                                + (f" (other effects: {other})" if other else "")
                                + ": the template should drop it"
                            )
                        table.append(
                            (
                                label,
                                where,
                                action,
                                ", ".join(f"{p} ({results[p]['detail']})" for p in broken)
                                or "NONE: never needed",
                            )
                        )
                        print(
                            f"  without {where} {action}: "
                            f"{', '.join(broken) if broken else 'no path fails'}",
                            flush=True,
                        )
    finally:
        stack.stop()
    print("\naction -> paths that fail without it (answer)")
    for label, sid, action, paths in table:
        print(f"  [{label}] {sid:38} {action:32} {paths}")
    report = {
        "table": [
            dict(zip(("parameters", "statement", "action", "paths"), row, strict=True))
            for row in table
        ],
        "problems": problems,
        "seconds": round(time.monotonic() - started, 1),
    }
    (RUN_DIR / "report.json").write_text(json.dumps(report, indent=2))
    print(f"\ndecisions: {RUN_DIR / 'decisions.jsonl'}; took {report['seconds']} s")
    if problems:
        print(f"iam-proof FAILED ({len(problems)} problem(s)):", file=sys.stderr)
        for line in problems:
            print(f"  - {line}", file=sys.stderr)
        return 1
    print(
        "iam-proof: every path works with the template's policy, and each granted action "
        "is needed by at least one path"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
