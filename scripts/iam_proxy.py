#!/usr/bin/env python3
"""A TEST-ONLY, resource-aware IAM check in front of moto (for `make iam-proof`).

moto's own IAM enforcement treats every DynamoDB, Secrets Manager and KMS resource as `*`,
checks one action per request (dynamodb:TransactWriteItems, which AWS never checks) and knows
nothing of TagResource on tagged creates or of KMS behind Secrets Manager (docs/DEPLOY.md,
"`make iam-proof`"). This proxy does what AWS does for the calls this service makes, and
nothing more:

  * DynamoDB (X-Amz-Target DynamoDB_20120810.*): the table ARN, or the index ARN
    (`<table ARN>/index/<IndexName>`) for Query/Scan with IndexName; TransactWriteItems and
    TransactGetItems checked per item (Put -> PutItem, Update -> UpdateItem, Delete ->
    DeleteItem, ConditionCheck -> ConditionCheckItem, Get -> GetItem) on each item's table.
  * Secrets Manager (secretsmanager.*): the secret ARN from SecretId / Name. A full ARN is used
    as given; a name of an existing secret becomes its ARN (asked from moto); a name of a secret
    that does not exist yet becomes `...:secret:NAME-` plus six unknown characters, which only a
    pattern with `?`/`*` at those places matches (as for AWS's random suffix). CreateSecret with
    Tags also needs secretsmanager:TagResource. With a customer KMS key (not aws/secretsmanager)
    a value write (CreateSecret with a value, PutSecretValue) needs kms:GenerateDataKey and a
    read (GetSecretValue) kms:Decrypt, on the key ARN, with kms:ViaService =
    secretsmanager.<region>.amazonaws.com in the request context.
  * SQS (X-Amz-Target AmazonSQS.*, the JSON protocol of today's SDKs): the queue ARN made of
    the QueueUrl's account and name (`arn:aws:sqs:<region>:<account>:<name>`); a batch is
    authorised as its single action (SendMessageBatch -> sqs:SendMessage, DeleteMessageBatch
    -> sqs:DeleteMessage), as AWS does.
  * Anything else (another service, an operation not modelled) is denied.

The decision: explicit Deny wins, else some Allow statement must match the action (Action /
NotAction, `*` and `?` wildcards, case-insensitive), the resource (Resource / NotResource,
wildcards, case-sensitive) and its Condition (StringEquals, StringLike, StringNotEquals,
StringNotLike, each optionally ...IfExists; any other operator makes the statement not match,
i.e. fails closed); otherwise implicit deny. A denial answers HTTP 400 with a JSON AWS error
`{"__type": "AccessDeniedException", "message": ...}` (as AWS does for JSON protocols);
an allowed request is forwarded to moto unchanged. Every decision is logged (one JSON line).

Python standard library only. Usable as a module (IamProxy) or standalone:

    .venv/bin/python scripts/iam_proxy.py --moto http://127.0.0.1:4566 --port 4567 \
        --policy policy.json [--log decisions.jsonl]
"""

import argparse
import http.client
import http.server
import json
import re
import sys
import threading
import time
import urllib.parse

ACCOUNT = "123456789012"  # moto's default account
UNKNOWN = "\x00"  # a character of an ARN that is not known yet (a secret's random suffix)
HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "content-length", "proxy-connection"}
PRINCIPAL = f"arn:aws:sts::{ACCOUNT}:assumed-role/CreateWebhookFunctionRole/create-webhook"


# ---- policy evaluation -------------------------------------------------------------------


def _as_list(value):
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


def _wildcard(pattern, flags=0):
    """An IAM pattern (`*` any run, `?` one character) as a compiled full-match regex."""
    out = []
    for char in pattern:
        out.append(".*" if char == "*" else "." if char == "?" else re.escape(char))
    return re.compile("".join(out), flags | re.DOTALL)


def _matches(pattern, value, ignore_case=False):
    return _wildcard(pattern, re.IGNORECASE if ignore_case else 0).fullmatch(value) is not None


def _resource_matches(pattern, resource):
    """Case-sensitive. An UNKNOWN character of `resource` equals no literal character of the
    pattern, so only a `?` or `*` there matches it."""
    return _matches(pattern, resource)


_CONDITION_OPERATORS = {
    "StringEquals": (lambda want, got: want == got, False),
    "StringNotEquals": (lambda want, got: want != got, True),
    "StringLike": (lambda want, got: _matches(want, got), False),
    "StringNotLike": (lambda want, got: not _matches(want, got), True),
}


def _condition_holds(condition, context):
    """True when every operator/key of a Condition block holds for `context` (key -> value)."""
    lowered = {k.lower(): v for k, v in context.items()}
    for operator, keys in (condition or {}).items():
        if_exists = operator.endswith("IfExists")
        base = operator[: -len("IfExists")] if if_exists else operator
        if base not in _CONDITION_OPERATORS:
            return False  # unsupported operator: fail closed
        test, negated = _CONDITION_OPERATORS[base]
        for key, wanted in keys.items():
            got = lowered.get(key.lower())
            if got is None:
                if if_exists or negated:
                    continue
                return False
            values = [str(w) for w in _as_list(wanted)]
            if negated:
                if not all(test(w, got) for w in values):
                    return False
            elif not any(test(w, got) for w in values):
                return False
    return True


def _statement_applies(statement, action, resource, context):
    if "Action" in statement:
        if not any(_matches(p, action, ignore_case=True) for p in _as_list(statement["Action"])):
            return False
    elif "NotAction" in statement:
        if any(_matches(p, action, ignore_case=True) for p in _as_list(statement["NotAction"])):
            return False
    else:
        return False
    if "Resource" in statement:
        if not any(_resource_matches(p, resource) for p in _as_list(statement["Resource"])):
            return False
    elif "NotResource" in statement:
        if any(_resource_matches(p, resource) for p in _as_list(statement["NotResource"])):
            return False
    else:
        return False
    return _condition_holds(statement.get("Condition"), context)


def evaluate(documents, action, resource, context=None):
    """("Allow" | "Deny" | "ImplicitDeny", Sid or index of the deciding statement)."""
    context = context or {}
    allowed_by = None
    for d, document in enumerate(documents):
        for i, statement in enumerate(_as_list(document.get("Statement"))):
            if not _statement_applies(statement, action, resource, context):
                continue
            sid = statement.get("Sid") or f"policy{d}/statement{i}"
            if statement.get("Effect") == "Deny":
                return "Deny", sid
            if statement.get("Effect") == "Allow" and allowed_by is None:
                allowed_by = sid
    return ("Allow", allowed_by) if allowed_by else ("ImplicitDeny", None)


# ---- what AWS would check for a request --------------------------------------------------


class Check:
    def __init__(self, action, resource, context=None):
        self.action, self.resource, self.context = action, resource, context or {}

    def shown_resource(self):
        return self.resource.replace(UNKNOWN, "?")


def _table_arn(region, table):
    if table.startswith("arn:"):
        return table
    return f"arn:aws:dynamodb:{region}:{ACCOUNT}:table/{table}"


_TRANSACT_WRITE = {
    "Put": "PutItem",
    "Update": "UpdateItem",
    "Delete": "DeleteItem",
    "ConditionCheck": "ConditionCheckItem",
}


def dynamodb_checks(operation, body, region):
    if operation == "TransactWriteItems":
        checks = []
        for item in body.get("TransactItems") or []:
            for kind, spec in item.items():
                if kind not in _TRANSACT_WRITE:
                    raise ValueError(f"unknown transaction item {kind}")
                checks.append(
                    Check(
                        f"dynamodb:{_TRANSACT_WRITE[kind]}", _table_arn(region, spec["TableName"])
                    )
                )
        return checks
    if operation == "TransactGetItems":
        return [
            Check("dynamodb:GetItem", _table_arn(region, item["Get"]["TableName"]))
            for item in body.get("TransactItems") or []
        ]
    if operation in ("BatchGetItem", "BatchWriteItem"):
        return [
            Check(f"dynamodb:{operation}", _table_arn(region, table))
            for table in (body.get("RequestItems") or {})
        ]
    table = body.get("TableName")
    if not table:
        return [Check(f"dynamodb:{operation}", "*")]
    arn = _table_arn(region, table)
    if operation in ("Query", "Scan") and body.get("IndexName"):
        arn = f"{arn}/index/{body['IndexName']}"
    return [Check(f"dynamodb:{operation}", arn)]


# The SQS operations this service's code (and the event source mapping) makes; AWS authorises a
# batch as its single action.
_SQS_ACTIONS = {
    "SendMessage": "SendMessage",
    "SendMessageBatch": "SendMessage",
    "ReceiveMessage": "ReceiveMessage",
    "DeleteMessage": "DeleteMessage",
    "DeleteMessageBatch": "DeleteMessage",
    "GetQueueAttributes": "GetQueueAttributes",
    "ChangeMessageVisibility": "ChangeMessageVisibility",
    "ChangeMessageVisibilityBatch": "ChangeMessageVisibility",
}


def sqs_checks(operation, body, region):
    if operation not in _SQS_ACTIONS:
        raise ValueError(f"SQS operation {operation} not modelled")
    # https://sqs.<region>.amazonaws.com/<account>/<name> (or an emulator's host)
    account, name = urllib.parse.urlsplit(body["QueueUrl"]).path.strip("/").split("/")[-2:]
    return [Check(f"sqs:{_SQS_ACTIONS[operation]}", f"arn:aws:sqs:{region}:{account}:{name}")]


AWS_MANAGED_SECRETS_KEY = {"alias/aws/secretsmanager", None, ""}


def _kms_key_arn(region, key):
    if key.startswith("arn:"):
        return key
    if key.startswith("alias/"):
        return f"arn:aws:kms:{region}:{ACCOUNT}:{key}"
    return f"arn:aws:kms:{region}:{ACCOUNT}:key/{key}"


def secretsmanager_checks(operation, body, region, describe):
    """describe(secret_id, region) -> moto's DescribeSecret answer (dict), None if unknown."""
    if operation in ("ListSecrets", "BatchGetSecretValue", "GetRandomPassword"):
        return [Check(f"secretsmanager:{operation}", "*")]
    secret_id = body.get("Name") if operation == "CreateSecret" else body.get("SecretId")
    if not secret_id:
        raise ValueError(f"{operation} without a secret id")
    existing = None if operation == "CreateSecret" else describe(secret_id, region)
    if secret_id.startswith("arn:"):
        arn = secret_id
    elif existing:
        arn = existing["ARN"]
    else:
        arn = f"arn:aws:secretsmanager:{region}:{ACCOUNT}:secret:{secret_id}-" + UNKNOWN * 6
    checks = [Check(f"secretsmanager:{operation}", arn)]
    if operation == "CreateSecret" and body.get("Tags"):
        checks.append(Check("secretsmanager:TagResource", arn))
    key = body.get("KmsKeyId") if operation == "CreateSecret" else (existing or {}).get("KmsKeyId")
    if key not in AWS_MANAGED_SECRETS_KEY:
        via = {
            "kms:ViaService": f"secretsmanager.{region}.amazonaws.com",
            "kms:CallerAccount": ACCOUNT,
        }
        writes_value = operation == "PutSecretValue" or (
            operation == "CreateSecret" and ("SecretString" in body or "SecretBinary" in body)
        )
        if writes_value:
            checks.append(Check("kms:GenerateDataKey", _kms_key_arn(region, key), via))
        if operation == "GetSecretValue":
            checks.append(Check("kms:Decrypt", _kms_key_arn(region, key), via))
    return checks


# ---- the proxy ---------------------------------------------------------------------------


class IamProxy:
    """An HTTP proxy on 127.0.0.1 (a free port) that checks each request against `documents`
    (a list of IAM policy documents) and forwards allowed ones to `moto` (a base URL).
    `documents` and `tag` may be changed between requests; `decisions` keeps every decision."""

    def __init__(self, moto, documents, log_path=None, port=0):
        parsed = urllib.parse.urlsplit(moto)
        self.moto_host, self.moto_port = parsed.hostname, parsed.port
        self.documents = documents
        self.tag = None
        self.decisions = []
        self.lock = threading.Lock()
        self.log = open(log_path, "a", encoding="utf-8") if log_path else None
        self.server = _Server(("127.0.0.1", port), _Handler)
        self.server.proxy = self
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self):
        self.server.shutdown()
        self.server.server_close()
        if self.log:
            self.log.close()

    # moto, asked directly (unchecked): what a secret is, for its ARN and KMS key
    def describe_secret(self, secret_id, region):
        status, _, data = self.upstream(
            "POST",
            "/",
            json.dumps({"SecretId": secret_id}).encode(),
            {
                "Content-Type": "application/x-amz-json-1.1",
                "X-Amz-Target": "secretsmanager.DescribeSecret",
                "Authorization": f"AWS4-HMAC-SHA256 Credential=iamproxy/20260101/{region}/"
                "secretsmanager/aws4_request, SignedHeaders=host, Signature=0",
            },
        )
        return json.loads(data) if status == 200 else None

    def upstream(self, method, path, body, headers):
        connection = http.client.HTTPConnection(self.moto_host, self.moto_port, timeout=60)
        try:
            connection.request(method, path, body=body, headers=headers)
            reply = connection.getresponse()
            return reply.status, reply.getheaders(), reply.read()
        finally:
            connection.close()

    def decide(self, headers, body):
        """(service, operation, region, [(check, effect, sid)], denied?)"""
        target = headers.get("X-Amz-Target", "")
        credential = re.search(
            r"Credential=[^/]+/\d+/([^/]+)/([^/]+)/", headers.get("Authorization", "")
        )
        region = credential.group(1) if credential else "us-east-1"
        service, _, operation = target.partition(".")
        try:
            payload = json.loads(body or b"{}")
            if service.startswith("DynamoDB_"):
                service, checks = "dynamodb", dynamodb_checks(operation, payload, region)
            elif service == "secretsmanager":
                checks = secretsmanager_checks(operation, payload, region, self.describe_secret)
            elif service == "AmazonSQS":
                service, checks = "sqs", sqs_checks(operation, payload, region)
            else:
                raise ValueError("service not modelled by the IAM proof")
        except (ValueError, KeyError, TypeError, AttributeError) as error:
            return service or "?", operation or "?", region, [], f"not modelled: {error}"
        results = [(c, *evaluate(self.documents, c.action, c.resource, c.context)) for c in checks]
        return service, operation, region, results, None

    def record(self, entry):
        with self.lock:
            entry["tag"] = self.tag
            self.decisions.append(entry)
            if self.log:
                self.log.write(json.dumps(entry) + "\n")
                self.log.flush()


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address):
        if not isinstance(sys.exc_info()[1], (BrokenPipeError, ConnectionResetError)):
            super().handle_error(request, client_address)


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True

    def log_message(self, *args):
        pass

    def _body(self):
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";")[0], 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        return self.rfile.read(int(self.headers.get("Content-Length", 0)))

    def _answer(self, status, body, headers):
        self.send_response(status)
        for name, value in headers:
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _handle(self):
        proxy = self.server.proxy
        body = self._body()
        service, operation, region, results, unmodelled = proxy.decide(self.headers, body)
        denied = [(c, effect) for c, effect, _ in results if effect != "Allow"]
        entry = {
            "time": time.time(),
            "service": service,
            "operation": operation,
            "decision": "DENY" if unmodelled or denied else "ALLOW",
            "checks": [
                {
                    "action": c.action,
                    "resource": c.shown_resource(),
                    "context": c.context,
                    "effect": effect,
                    "statement": sid,
                }
                for c, effect, sid in results
            ],
        }
        if unmodelled:
            entry["reason"] = unmodelled
        proxy.record(entry)
        if unmodelled or denied:
            if unmodelled:
                message = f"User: {PRINCIPAL} is not authorized: {unmodelled}"
            else:
                check, effect = denied[0]
                how = (
                    "with an explicit deny in an identity-based policy"
                    if effect == "Deny"
                    else f"because no identity-based policy allows the {check.action} action"
                )
                message = (
                    f"User: {PRINCIPAL} is not authorized to perform: {check.action} "
                    f"on resource: {check.shown_resource()} {how}"
                )
            content_type = (
                "application/x-amz-json-1.0"
                if service in ("dynamodb", "sqs")
                else "application/x-amz-json-1.1"
            )
            error = json.dumps(
                {"__type": "AccessDeniedException", "message": message, "Message": message}
            ).encode()
            return self._answer(
                400,
                error,
                [("Content-Type", content_type), ("x-amzn-RequestId", "iam-proxy-denied")],
            )
        headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP}
        status, reply_headers, data = proxy.upstream(self.command, self.path, body, headers)
        self._answer(
            status, data, [(k, v) for k, v in reply_headers if k.lower() not in HOP_BY_HOP]
        )

    do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = _handle


def self_test():
    """Checks of the evaluator and of the request model (run by the proof before it starts)."""
    region, table = "eu-central-1", f"arn:aws:dynamodb:eu-central-1:{ACCOUNT}:table/t"
    secret = f"arn:aws:secretsmanager:eu-central-1:{ACCOUNT}:secret:app/hooks/"
    key = f"arn:aws:kms:eu-central-1:{ACCOUNT}:key/k"
    via = {"kms:ViaService": "secretsmanager.eu-central-1.amazonaws.com"}
    policy = [
        {
            "Statement": [
                {
                    "Sid": "Rows",
                    "Effect": "Allow",
                    "Action": ["dynamodb:GetItem", "DynamoDB:PutItem"],
                    "Resource": table,
                },
                {
                    "Sid": "Index",
                    "Effect": "Allow",
                    "Action": "dynamodb:Query",
                    "Resource": f"{table}/index/byApiKey",
                },
                {
                    "Sid": "Secrets",
                    "Effect": "Allow",
                    "Action": "secretsmanager:*Secret*",
                    "Resource": f"{secret}*",
                },
                {
                    "Sid": "Exact",
                    "Effect": "Allow",
                    "Action": "secretsmanager:DeleteSecret",
                    "Resource": f"{secret}fixed-??????",
                },
                {
                    "Sid": "Key",
                    "Effect": "Allow",
                    "Action": "kms:Decrypt",
                    "Resource": key,
                    "Condition": {"StringEquals": {"kms:ViaService": via["kms:ViaService"]}},
                },
                {
                    "Sid": "NoPuts",
                    "Effect": "Deny",
                    "Action": "dynamodb:PutItem",
                    "Resource": f"{table}-audit",
                },
            ]
        }
    ]
    unknown = UNKNOWN * 6
    cases = [
        ("dynamodb:getitem", table, {}, "Allow"),  # actions: any case
        ("dynamodb:PutItem", table, {}, "Allow"),
        ("dynamodb:UpdateItem", table, {}, "ImplicitDeny"),
        ("dynamodb:GetItem", table + "2", {}, "ImplicitDeny"),  # no prefix match
        ("dynamodb:Query", table, {}, "ImplicitDeny"),  # the table is not the index
        ("dynamodb:Query", f"{table}/index/byApiKey", {}, "Allow"),
        ("dynamodb:Query", f"{table}/index/other", {}, "ImplicitDeny"),
        ("secretsmanager:GetSecretValue", f"{secret}x-AbCdEf", {}, "Allow"),
        ("secretsmanager:CreateSecret", f"{secret}new-{unknown}", {}, "Allow"),
        ("secretsmanager:DeleteSecret", f"{secret}fixed-{unknown}", {}, "Allow"),
        (
            "secretsmanager:DeleteSecret",
            f"arn:aws:secretsmanager:eu-central-1:{ACCOUNT}:secret:other-{unknown}",
            {},
            "ImplicitDeny",
        ),
        ("secretsmanager:TagResource", f"{secret}x-AbCdEf", {}, "ImplicitDeny"),
        ("kms:Decrypt", key, via, "Allow"),
        ("kms:Decrypt", key, {}, "ImplicitDeny"),  # not through the service
        ("kms:Decrypt", key, {"kms:ViaService": "ec2.eu-central-1.amazonaws.com"}, "ImplicitDeny"),
        ("dynamodb:PutItem", f"{table}-audit", {}, "Deny"),
    ]
    deny = [
        {
            "Statement": policy[0]["Statement"]
            + [{"Effect": "Allow", "Action": "*", "Resource": "*"}]
        }
    ]
    failures = [
        f"{a} on {r} {c}: {evaluate(policy, a, r, c)[0]}, expected {want}"
        for a, r, c, want in cases
        if evaluate(policy, a, r, c)[0] != want
    ]
    if evaluate(deny, "dynamodb:PutItem", f"{table}-audit")[0] != "Deny":
        failures.append("an explicit Deny does not win over an Allow")
    if (
        evaluate(
            [
                {
                    "Statement": [
                        {
                            "Effect": "Allow",
                            "Action": "s3:*",
                            "Resource": "*",
                            "Condition": {"NumericLessThan": {"x": "1"}},
                        }
                    ]
                }
            ],
            "s3:GetObject",
            "*",
        )[0]
        != "ImplicitDeny"
    ):
        failures.append("an unsupported condition operator does not fail closed")
    checks = dynamodb_checks(
        "TransactWriteItems",
        {
            "TransactItems": [
                {"Put": {"TableName": "t"}},
                {"Update": {"TableName": "t"}},
                {"Delete": {"TableName": "t"}},
                {"ConditionCheck": {"TableName": "u"}},
            ]
        },
        region,
    )
    if [(c.action, c.resource) for c in checks] != [
        ("dynamodb:PutItem", table),
        ("dynamodb:UpdateItem", table),
        ("dynamodb:DeleteItem", table),
        ("dynamodb:ConditionCheckItem", table[:-1] + "u"),
    ]:
        failures.append("transaction items are not checked one by one")
    checks = dynamodb_checks("Query", {"TableName": "t", "IndexName": "byApiKey"}, region)
    if [c.resource for c in checks] != [f"{table}/index/byApiKey"]:
        failures.append("a Query on an index is not checked on the index ARN")
    checks = secretsmanager_checks(
        "CreateSecret",
        {
            "Name": "app/hooks/1",
            "SecretString": "{}",
            "Tags": [{"Key": "k", "Value": "v"}],
            "KmsKeyId": key,
        },
        region,
        lambda *_: None,
    )
    if [c.action for c in checks] != [
        "secretsmanager:CreateSecret",
        "secretsmanager:TagResource",
        "kms:GenerateDataKey",
    ] or checks[2].context.get("kms:ViaService") != via["kms:ViaService"]:
        failures.append(f"a tagged create with a key is modelled as {[c.action for c in checks]}")
    described = {"ARN": f"{secret}1-XyZabc", "KmsKeyId": key}
    checks = secretsmanager_checks(
        "GetSecretValue", {"SecretId": "app/hooks/1"}, region, lambda *_: described
    )
    if [(c.action, c.resource) for c in checks] != [
        ("secretsmanager:GetSecretValue", described["ARN"]),
        ("kms:Decrypt", key),
    ]:
        failures.append("a read by name of a secret with a customer key is mis-modelled")
    queue = f"https://sqs.eu-central-1.amazonaws.com/{ACCOUNT}/deliveries"
    checks = sqs_checks("SendMessageBatch", {"QueueUrl": queue}, region)
    if [(c.action, c.resource) for c in checks] != [
        ("sqs:SendMessage", f"arn:aws:sqs:eu-central-1:{ACCOUNT}:deliveries")
    ]:
        failures.append("a SendMessageBatch is not checked as sqs:SendMessage on the queue ARN")
    try:
        sqs_checks("PurgeQueue", {"QueueUrl": queue}, region)
        failures.append("an SQS operation that is not modelled is not refused")
    except ValueError:
        pass
    return failures


def main(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--moto", required=True, help="moto's base URL")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument(
        "--policy",
        required=True,
        action="append",
        help="an IAM policy document (JSON file); may be repeated",
    )
    parser.add_argument("--log", help="append one JSON line per decision here")
    args = parser.parse_args(argv)
    documents = [json.load(open(p, encoding="utf-8")) for p in args.policy]
    proxy = IamProxy(args.moto, documents, args.log, args.port)
    print(f"iam proxy on {proxy.url} -> {args.moto}", flush=True)
    try:
        proxy.thread.join()
    except KeyboardInterrupt:
        proxy.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
