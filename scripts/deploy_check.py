#!/usr/bin/env python3
"""Deploy check: create template.yaml as a stack in moto's CloudFormation and use it.

Usage: .venv/bin/python scripts/deploy_check.py [--template template.yaml] [--no-function]

1. Starts its own moto (scripts/moto_server.py) on a free port; kills it at the end.
2. Translates the SAM template offline (samtranslator) and creates the stack in moto's
   CloudFormation with the default parameters (deletion protection off).
3. Asserts what moto creates: the three tables' keys, billing, attributes and indexes (the
   webhooks table's byApiKey; the delivery log's eventsByCompany and deliveriesByWebhook, and
   its TTL on expiresAt);
   the log groups and their retention; the function's settings and environment (naming the
   stack's own tables and the stack-scoped secret prefix); one Lambda permission per route;
   the reconciler's environment, its EventBridge schedule and its own role;
   the role's trust policy and inline policy equal to the template's, rendered here with the
   stack's physical names.
4. Creates by hand what moto's CloudFormation skips (docs/DEPLOY.md): the pepper secret
   (GetRandomPassword + CreateSecret, under the template's stack-scoped name), the HTTP API
   (CreateApi + ReimportApi of the translated OpenAPI body, then its stage with the template's
   throttling) and the CloudWatch alarms (PutMetricAlarm), and checks each.
5. Runs the function's own code against the stack: `webhooks-admin setup` (must find the
   three tables and the pepper already there), `webhooks-admin keys create`, then the function
   under `cargo lambda watch` with the stack's environment, and POST /webhooks: 201, the record
   in the stack's table and in its byApiKey index, and its secret under the stack's prefix;
   GET .../deliveries answered from the stack's log table (its deliveriesByWebhook index), and
   POST .../recover queued on the stack's deliveries queue.

Exit 0 when every assertion holds; 1 with the failed ones listed.
"""

import argparse
import ast
import io
import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent))

import boto3  # noqa: E402

import template_render  # noqa: E402
from template_render import MISSING  # noqa: E402

REGION = "eu-central-1"
STACK = "instaview-deploy-check"
PARAMETERS = {"TableDeletionProtection": "false"}
# Resource types moto's CloudFormation (5.2.5) skips with a warning; made by hand below.
SKIPPED_BY_MOTO = {
    "AWS::SecretsManager::Secret",
    "AWS::ApiGatewayV2::Api",
    "AWS::ApiGatewayV2::Stage",
    "AWS::CloudWatch::Alarm",
    "AWS::Lambda::EventInvokeConfig",
}
COMPANY = "3f1c2a9e-8b4d-4e6f-9a7b-1c2d3e4f5a6b"

failures = []


def check(condition, message):
    if condition:
        print(f"  ok   {message}")
    else:
        print(f"  FAIL {message}", file=sys.stderr)
        failures.append(message)
    return condition


def check_equal(actual, expected, message):
    ok = check(actual == expected, message)
    if not ok:
        print(
            f"       expected: {json.dumps(expected, sort_keys=True, default=str)}", file=sys.stderr
        )
        print(
            f"       actual:   {json.dumps(actual, sort_keys=True, default=str)}", file=sys.stderr
        )
    return ok


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_port(port, seconds, process=None):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            return False
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return True
        except OSError:
            time.sleep(0.1)
    return False


class Processes:
    """Children started here, stopped (by their own ids) on exit."""

    def __init__(self):
        self.children = []

    def start(self, args, log, **kwargs):
        child = subprocess.Popen(
            args, stdout=log, stderr=subprocess.STDOUT, start_new_session=True, **kwargs
        )
        self.children.append(child)
        return child

    def stop(self):
        for child in reversed(self.children):
            if child.poll() is None:
                try:
                    os.killpg(child.pid, 15)  # its own process group (start_new_session)
                    child.wait(timeout=10)
                except (ProcessLookupError, subprocess.TimeoutExpired):
                    os.killpg(child.pid, 9)
                    child.wait()


# -- the stack -----------------------------------------------------------------------------
def resources_by_id(cloudformation):
    out = {}
    for resource in cloudformation.describe_stack_resources(StackName=STACK)["StackResources"]:
        # moto lists skipped resources too, without ids or types.
        if resource.get("LogicalResourceId"):
            out[resource["LogicalResourceId"]] = resource
    return out


def moto_policy_view(document):
    """The rendered policy as moto stores it (its differences from AWS, see docs/DEPLOY.md)."""
    statements = []
    for statement in document["Statement"]:
        statement = dict(statement)
        resource = statement.get("Resource")
        if resource is MISSING:  # a Ref to a resource moto skipped resolves to nothing
            del statement["Resource"]
        elif isinstance(resource, str) and ":log-group:" in resource and resource.endswith(":*"):
            statement["Resource"] = resource[:-2]  # moto's LogGroup Arn lacks AWS's ":*"
        statements.append(statement)
    return {**document, "Statement": statements}


def parse_moto_document(document):
    """moto 5.2.5 returns a CloudFormation-made inline policy as the repr of a Python dict, and
    an Fn::If that chose AWS::NoValue as a null statement."""
    if isinstance(document, str):
        try:
            document = json.loads(document)
        except ValueError:
            document = ast.literal_eval(document)
    statements = [s for s in document.get("Statement", []) if s is not None]
    return {**document, "Statement": statements}


def check_stack(session, cfn):
    cloudformation = session.client("cloudformation")
    stack = cloudformation.describe_stacks(StackName=STACK)["Stacks"][0]
    check_equal(stack["StackStatus"], "CREATE_COMPLETE", "stack created")
    stack_id = stack["StackId"]
    stack_uuid = stack_id.rsplit("/", 1)[1]
    found = resources_by_id(cloudformation)
    expected_ids = {
        logical for logical, r in cfn["Resources"].items() if r["Type"] not in SKIPPED_BY_MOTO
    }
    check_equal(
        sorted(found),
        sorted(expected_ids),
        "moto made every resource it supports (all but secrets, HTTP API, stage, alarms, "
        "event invoke config)",
    )
    physical = {logical: r.get("PhysicalResourceId") for logical, r in found.items()}

    dynamodb = session.client("dynamodb")
    tables = {}
    for logical in ("ApiKeysTable", "WebhooksTable", "DeliveryLogTable"):
        spec = cfn["Resources"][logical]["Properties"]
        table = dynamodb.describe_table(TableName=physical[logical])["Table"]
        tables[logical] = table
        check(
            table["TableName"].startswith(f"{STACK}-{logical}-"),
            f"{logical}: named after the stack ({table['TableName']})",
        )
        check_equal(table["KeySchema"], spec["KeySchema"], f"{logical}: key schema")
        check_equal(
            sorted(table["AttributeDefinitions"], key=lambda a: a["AttributeName"]),
            sorted(spec["AttributeDefinitions"], key=lambda a: a["AttributeName"]),
            f"{logical}: attribute definitions",
        )
        check_equal(
            table.get("BillingModeSummary", {}).get("BillingMode"),
            "PAY_PER_REQUEST",
            f"{logical}: on-demand billing",
        )
        got_indexes = [
            {
                "IndexName": i["IndexName"],
                "KeySchema": i["KeySchema"],
                "Projection": i["Projection"],
            }
            for i in table.get("GlobalSecondaryIndexes") or []
        ]
        check_equal(
            got_indexes,
            spec.get("GlobalSecondaryIndexes", []),
            f"{logical}: global secondary indexes",
        )
    byapikey = [
        i
        for i in tables["WebhooksTable"].get("GlobalSecondaryIndexes") or []
        if i["IndexName"] == "byApiKey"
    ]
    check(
        byapikey
        and byapikey[0]["KeySchema"]
        == [
            {"AttributeName": "apiKeyId", "KeyType": "HASH"},
            {"AttributeName": "createdAt", "KeyType": "RANGE"},
        ]
        and byapikey[0]["Projection"] == {"ProjectionType": "ALL"},
        "WebhooksTable: byApiKey = apiKeyId (HASH) + createdAt (RANGE), projection ALL",
    )
    # The delivery log (docs/TABLES.md): recover walks eventsByCompany, the list route reads
    # deliveriesByWebhook; both sort on "<epoch ms>#<id>" keys, and every item expires (TTL).
    log_indexes = {
        i["IndexName"]: (i["KeySchema"], i["Projection"])
        for i in tables["DeliveryLogTable"].get("GlobalSecondaryIndexes") or []
    }
    check_equal(
        log_indexes,
        {
            "eventsByCompany": (
                [
                    {"AttributeName": "companyId", "KeyType": "HASH"},
                    {"AttributeName": "occurredKey", "KeyType": "RANGE"},
                ],
                {"ProjectionType": "ALL"},
            ),
            "deliveriesByWebhook": (
                [
                    {"AttributeName": "webhookId", "KeyType": "HASH"},
                    {"AttributeName": "createdKey", "KeyType": "RANGE"},
                ],
                {"ProjectionType": "ALL"},
            ),
        },
        "DeliveryLogTable: eventsByCompany = companyId + occurredKey, deliveriesByWebhook = "
        "webhookId + createdKey, projection ALL",
    )
    check_equal(
        tables["DeliveryLogTable"]["KeySchema"],
        [{"AttributeName": "id", "KeyType": "HASH"}],
        "DeliveryLogTable: one key, id (event#<eventId> or delivery#<deliveryId>)",
    )
    # moto's CloudFormation ignores TimeToLiveSpecification (docs/DEPLOY.md): the template's
    # is asserted, then applied by hand as CloudFormation would, and read back.
    ttl_spec = cfn["Resources"]["DeliveryLogTable"]["Properties"].get("TimeToLiveSpecification")
    check_equal(
        ttl_spec,
        {"AttributeName": "expiresAt", "Enabled": True},
        "DeliveryLogTable: the template enables TTL on expiresAt (30 days, kept by DynamoDB)",
    )
    if ttl_spec:
        dynamodb.update_time_to_live(
            TableName=physical["DeliveryLogTable"], TimeToLiveSpecification=ttl_spec
        )
    ttl = dynamodb.describe_time_to_live(TableName=physical["DeliveryLogTable"])[
        "TimeToLiveDescription"
    ]
    check_equal(
        (ttl.get("TimeToLiveStatus"), ttl.get("AttributeName")),
        ("ENABLED", "expiresAt"),
        "DeliveryLogTable: TTL on expiresAt accepted by UpdateTimeToLive (made by hand)",
    )

    logs = session.client("logs")
    for logical in ("CreateWebhookLogGroup", "HttpApiAccessLogGroup"):
        groups = logs.describe_log_groups(logGroupNamePrefix=physical[logical])["logGroups"]
        group = next((g for g in groups if g["logGroupName"] == physical[logical]), {})
        check_equal(group.get("retentionInDays"), 30, f"{logical}: retention 30 days")
    check_equal(
        physical["CreateWebhookLogGroup"],
        f"/aws/lambda/{STACK}-create-webhook",
        "function log group named after the stack",
    )

    # What the template says, rendered with this stack's names.
    account, partition = "123456789012", "aws"
    table_arn = {k: t["TableArn"] for k, t in tables.items()}
    log_arn = (
        f"arn:{partition}:logs:{REGION}:{account}:log-group:{physical['CreateWebhookLogGroup']}:*"
    )
    role_name = physical["CreateWebhookFunctionRole"]
    renderer = template_render.Renderer(
        cfn,
        params=PARAMETERS,
        pseudo={"AWS::StackName": STACK, "AWS::StackId": stack_id, "AWS::Region": REGION},
        refs={
            **{
                k: v
                for k, v in physical.items()
                if k
                in (
                    "ApiKeysTable",
                    "WebhooksTable",
                    "DeliveryLogTable",
                    "DeliveriesQueue",
                    "CreateWebhookLogGroup",
                )
            }
        },
        attrs={
            ("ApiKeysTable", "Arn"): table_arn["ApiKeysTable"],
            ("WebhooksTable", "Arn"): table_arn["WebhooksTable"],
            ("DeliveryLogTable", "Arn"): table_arn["DeliveryLogTable"],
            # moto's physical id of a queue is its URL; AWS's ARN is made of its name.
            ("DeliveriesQueue", "Arn"): f"arn:{partition}:sqs:{REGION}:{account}:"
            + physical["DeliveriesQueue"].rsplit("/", 1)[-1],
            ("CreateWebhookLogGroup", "Arn"): log_arn,
            (
                "CreateWebhookFunctionRole",
                "Arn",
            ): f"arn:{partition}:iam::{account}:role/{role_name}",
        },
    )

    lambda_client = session.client("lambda")
    function = lambda_client.get_function_configuration(
        FunctionName=physical["CreateWebhookFunction"]
    )
    spec = renderer.value(cfn["Resources"]["CreateWebhookFunction"]["Properties"])
    for key in ("Runtime", "Handler", "MemorySize", "Timeout", "Role"):
        check_equal(function.get(key), spec[key], f"function {key}")
    env = function.get("Environment", {}).get("Variables", {})
    expected_env = {k: v for k, v in spec["Environment"]["Variables"].items() if v is not MISSING}
    # moto passes Number parameters through as ints (MaxWebhooksPerApiKey); AWS gives strings.
    check_equal(
        {k: str(v) for k, v in env.items()},
        expected_env,
        "function environment = template's (pepper absent: moto skipped the secret)",
    )
    check_equal(
        env.get("WEBHOOKS_TABLE_NAME"),
        physical["WebhooksTable"],
        "WEBHOOKS_TABLE_NAME names the stack's webhooks table",
    )
    check_equal(
        env.get("API_KEYS_TABLE_NAME"),
        physical["ApiKeysTable"],
        "API_KEYS_TABLE_NAME names the stack's API keys table",
    )
    prefix = f"instaview/{STACK}/{stack_uuid}/webhooks/"
    check_equal(
        env.get("WEBHOOK_SECRET_PREFIX"),
        prefix,
        "WEBHOOK_SECRET_PREFIX is scoped to the stack (name and id)",
    )
    check_equal(
        env.get("DELIVERY_LOG_TABLE_NAME"),
        physical["DeliveryLogTable"],
        "DELIVERY_LOG_TABLE_NAME names the stack's delivery log table",
    )
    check_equal(
        env.get("DELIVERIES_QUEUE_URL"),
        physical["DeliveriesQueue"],
        "DELIVERIES_QUEUE_URL names the stack's deliveries queue (resend and recover)",
    )
    check_equal(env.get("ALLOW_LOCALHOST_URLS"), "false", "loopback URLs refused by default")
    check_equal(
        str(spec.get("ReservedConcurrentExecutions")),
        "20",
        "reserved concurrency 20 by default (rendered)",
    )
    concurrency = lambda_client.get_function_concurrency(
        FunctionName=physical["CreateWebhookFunction"]
    ).get("ReservedConcurrentExecutions")
    check_equal(
        str(concurrency),
        str(spec.get("ReservedConcurrentExecutions")),
        f"reserved concurrency set by default ({concurrency})",
    )

    permissions = [r for r in found.values() if r.get("ResourceType") == "AWS::Lambda::Permission"]
    route_events = [e for e in cfn_events(cfn)]
    check_equal(len(permissions), len(route_events), "one Lambda permission per route")

    iam = session.client("iam")
    role = iam.get_role(RoleName=role_name)["Role"]
    role_spec = renderer.value(cfn["Resources"]["CreateWebhookFunctionRole"]["Properties"])
    trust = role["AssumeRolePolicyDocument"]
    check_equal(
        parse_moto_document(trust) if isinstance(trust, str) else trust,
        role_spec["AssumeRolePolicyDocument"],
        "role trust policy = template's",
    )
    check_equal(
        iam.list_attached_role_policies(RoleName=role_name)["AttachedPolicies"],
        [],
        "no managed policy attached to the role",
    )
    names = iam.list_role_policies(RoleName=role_name)["PolicyNames"]
    check_equal(names, [p["PolicyName"] for p in role_spec["Policies"]], "role inline policy names")
    for policy in role_spec["Policies"]:
        stored = iam.get_role_policy(RoleName=role_name, PolicyName=policy["PolicyName"])
        check_equal(
            parse_moto_document(stored["PolicyDocument"]),
            moto_policy_view(policy["PolicyDocument"]),
            f"role inline policy {policy['PolicyName']} = template's, rendered",
        )
    check_reconciler(session, cfn, physical, renderer, prefix)
    return {
        "stack_id": stack_id,
        "stack_uuid": stack_uuid,
        "physical": physical,
        "env": env,
        "renderer": renderer,
        "prefix": prefix,
    }


def check_reconciler(session, cfn, physical, renderer, prefix):
    """The scheduled reconciler: its environment, schedule, log group and own role."""
    account = "123456789012"
    renderer.refs["ReconcileLogGroup"] = physical["ReconcileLogGroup"]
    renderer.attrs[("ReconcileLogGroup", "Arn")] = (
        f"arn:aws:logs:{REGION}:{account}:log-group:{physical['ReconcileLogGroup']}:*"
    )
    role_name = physical["ReconcileFunctionRole"]
    renderer.attrs[("ReconcileFunctionRole", "Arn")] = f"arn:aws:iam::{account}:role/{role_name}"
    function = session.client("lambda").get_function_configuration(
        FunctionName=physical["ReconcileFunction"]
    )
    spec = renderer.value(cfn["Resources"]["ReconcileFunction"]["Properties"])
    for key in ("Runtime", "Handler", "Timeout", "Role"):
        check_equal(function.get(key), spec[key], f"reconciler {key}")
    env = function.get("Environment", {}).get("Variables", {})
    check_equal(env, spec["Environment"]["Variables"], "reconciler environment = template's")
    check_equal(
        env.get("WEBHOOKS_TABLE_NAME"),
        physical["WebhooksTable"],
        "reconciler sweeps the stack's webhooks table",
    )
    check_equal(
        env.get("WEBHOOK_SECRET_PREFIX"), prefix, "reconciler sweeps only the stack's secret prefix"
    )
    check_equal(
        physical["ReconcileLogGroup"],
        f"/aws/lambda/{STACK}-reconcile",
        "reconciler log group named after the stack",
    )
    rules = [logical for logical, r in cfn["Resources"].items() if r["Type"] == "AWS::Events::Rule"]
    events = session.client("events")
    schedules = []
    for logical in rules:
        rule = events.describe_rule(Name=physical[logical])
        targets = events.list_targets_by_rule(Rule=physical[logical])["Targets"]
        schedules.append(
            (
                rule.get("ScheduleExpression"),
                rule.get("State"),
                [t["Arn"] for t in targets] == [function["FunctionArn"]],
            )
        )
    check_equal(
        schedules,
        [("rate(15 minutes)", "ENABLED", True)],
        "one EventBridge schedule, every 15 minutes, invoking the reconciler",
    )
    iam = session.client("iam")
    role_spec = renderer.value(cfn["Resources"]["ReconcileFunctionRole"]["Properties"])
    check_equal(
        iam.list_attached_role_policies(RoleName=role_name)["AttachedPolicies"],
        [],
        "no managed policy attached to the reconciler's role",
    )
    for policy in role_spec["Policies"]:
        stored = iam.get_role_policy(RoleName=role_name, PolicyName=policy["PolicyName"])
        check_equal(
            parse_moto_document(stored["PolicyDocument"]),
            moto_policy_view(policy["PolicyDocument"]),
            f"reconciler role inline policy {policy['PolicyName']} = template's, rendered",
        )


def cfn_events(cfn):
    """The HttpApi route events SAM turned into Lambda permissions."""
    return [
        logical for logical, r in cfn["Resources"].items() if r["Type"] == "AWS::Lambda::Permission"
    ]


# -- what moto skips, by hand ----------------------------------------------------------------
def create_skipped(session, cfn, stack):
    renderer = stack["renderer"]
    secretsmanager = session.client("secretsmanager")
    pepper_spec = renderer.value(cfn["Resources"]["PepperSecret"]["Properties"])
    check_equal(
        pepper_spec["Name"],
        f"instaview/{STACK}/{stack['stack_uuid']}/api-key-pepper",
        "pepper name scoped to the stack (name and id)",
    )
    generate = pepper_spec["GenerateSecretString"]
    password = secretsmanager.get_random_password(
        PasswordLength=generate["PasswordLength"], ExcludePunctuation=generate["ExcludePunctuation"]
    )["RandomPassword"]
    pepper = secretsmanager.create_secret(
        Name=pepper_spec["Name"], Description=pepper_spec["Description"], SecretString=password
    )
    check(len(password) == 64, "pepper: 64 random characters (GenerateSecretString)")
    renderer.refs["PepperSecret"] = pepper["ARN"]

    # The policy's pepper statement, now that the pepper has an ARN.
    role = renderer.value(cfn["Resources"]["CreateWebhookFunctionRole"]["Properties"])
    statements = {s.get("Sid"): s for s in role["Policies"][0]["PolicyDocument"]["Statement"]}
    check_equal(
        statements["ReadPepper"]["Resource"],
        pepper["ARN"],
        "ReadPepper grants exactly the pepper's ARN",
    )

    # The function's ARN, for the integration URIs in the API body.
    function_arn = session.client("lambda").get_function_configuration(
        FunctionName=stack["physical"]["CreateWebhookFunction"]
    )["FunctionArn"]
    renderer.attrs[("CreateWebhookFunction", "Arn")] = function_arn
    renderer.refs["CreateWebhookFunction"] = stack["physical"]["CreateWebhookFunction"]
    renderer.refs["ReconcileFunction"] = stack["physical"]["ReconcileFunction"]
    # The alarms name the pipeline's functions and queues (a queue's Ref is its URL).
    for logical, resource in cfn["Resources"].items():
        physical = stack["physical"].get(logical)
        if physical is None:
            continue
        if resource["Type"] == "AWS::Lambda::Function":
            renderer.refs.setdefault(logical, physical)
        if resource["Type"] == "AWS::SQS::Queue":
            renderer.refs.setdefault(logical, physical)
            renderer.attrs.setdefault((logical, "QueueName"), physical.rsplit("/", 1)[-1])

    apigw = session.client("apigatewayv2")
    api_logical = next(
        k for k, r in cfn["Resources"].items() if r["Type"] == "AWS::ApiGatewayV2::Api"
    )
    api_spec = renderer.value(cfn["Resources"][api_logical]["Properties"])
    body = api_spec["Body"]
    api = apigw.create_api(Name=f"{STACK}-{api_logical}", ProtocolType="HTTP")
    apigw.reimport_api(ApiId=api["ApiId"], Body=json.dumps(body))
    # moto's ReimportApi keeps OpenAPI's "x-amazon-apigateway-any-method" as the method (upper
    # case) where API Gateway makes an ANY route of it.
    routes = sorted(
        r["RouteKey"].replace("X-AMAZON-APIGATEWAY-ANY-METHOD ", "ANY ")
        for r in apigw.get_routes(ApiId=api["ApiId"])["Items"]
    )
    expected_routes = sorted(
        f"{method.upper() if method != 'x-amazon-apigateway-any-method' else 'ANY'} {path}"
        for path, methods in body["paths"].items()
        for method in methods
    )
    check_equal(
        routes, expected_routes, f"HTTP API routes ({len(routes)}) from the template's OpenAPI body"
    )
    for route in (
        "POST /webhooks",
        "GET /webhooks",
        "GET /webhooks/{id}",
        "PATCH /webhooks/{id}",
        "DELETE /webhooks/{id}",
        "POST /webhooks/{id}/reset-circuit",
        "POST /webhooks/{id}/test",
        "POST /webhooks/{id}/rotate-secret",
        "GET /webhooks/{id}/deliveries",
        "GET /webhooks/{id}/deliveries/{deliveryId}",
        "POST /webhooks/{id}/deliveries/{deliveryId}/resend",
        "POST /webhooks/{id}/recover",
        "ANY /webhooks",
        "ANY /webhooks/{proxy+}",
    ):
        check(route in routes, f"route {route}")
    renderer.refs[api_logical] = api["ApiId"]

    stage_logical = next(
        k for k, r in cfn["Resources"].items() if r["Type"] == "AWS::ApiGatewayV2::Stage"
    )
    stage_spec = renderer.value(cfn["Resources"][stage_logical]["Properties"])
    settings = stage_spec["DefaultRouteSettings"]
    check_equal(
        (int(settings["ThrottlingRateLimit"]), int(settings["ThrottlingBurstLimit"])),
        (50, 100),
        "stage throttling by default: 50 requests/s, burst 100",
    )
    stage = apigw.create_stage(
        ApiId=api["ApiId"],
        StageName=stage_spec["StageName"],
        AutoDeploy=stage_spec.get("AutoDeploy", False),
        DefaultRouteSettings={
            "ThrottlingRateLimit": float(settings["ThrottlingRateLimit"]),
            "ThrottlingBurstLimit": int(settings["ThrottlingBurstLimit"]),
        },
        AccessLogSettings=stage_spec["AccessLogSettings"]
        | {
            "DestinationArn": f"arn:aws:logs:{REGION}:123456789012:log-group:"
            f"{stack['physical']['HttpApiAccessLogGroup']}"
        },
    )
    got = apigw.get_stage(ApiId=api["ApiId"], StageName=stage["StageName"])["DefaultRouteSettings"]
    check_equal(
        (got.get("ThrottlingRateLimit"), got.get("ThrottlingBurstLimit")),
        (50.0, 100),
        "HTTP API stage made with the template's throttling",
    )

    cloudwatch = session.client("cloudwatch")
    alarms = {
        k: renderer.value(r["Properties"])
        for k, r in cfn["Resources"].items()
        if r["Type"] == "AWS::CloudWatch::Alarm"
    }
    for logical, props in alarms.items():
        props = {k: v for k, v in props.items() if v is not MISSING}
        props["Threshold"] = float(props["Threshold"])
        cloudwatch.put_metric_alarm(AlarmName=f"{STACK}-{logical}", **props)
    made = {
        a["AlarmName"]: a for a in cloudwatch.describe_alarms(AlarmNamePrefix=STACK)["MetricAlarms"]
    }
    check_equal(
        sorted(made),
        sorted(f"{STACK}-{k}" for k in alarms),
        "alarms (function errors, throttles, API 5xx rate) accepted by PutMetricAlarm",
    )
    function_dims = [{"Name": "FunctionName", "Value": stack["physical"]["CreateWebhookFunction"]}]
    for logical, metric in (
        ("FunctionErrorsAlarm", "Errors"),
        ("FunctionThrottlesAlarm", "Throttles"),
    ):
        alarm = made.get(f"{STACK}-{logical}", {})
        check_equal(
            (alarm.get("Namespace"), alarm.get("MetricName"), alarm.get("Dimensions")),
            ("AWS/Lambda", metric, function_dims),
            f"{logical} watches the stack's function",
        )
    reconcile_alarm = made.get(f"{STACK}-ReconcileErrorsAlarm", {})
    check_equal(
        reconcile_alarm.get("Dimensions"),
        [{"Name": "FunctionName", "Value": stack["physical"]["ReconcileFunction"]}],
        "ReconcileErrorsAlarm watches the stack's reconciler",
    )
    lambda_client = session.client("lambda")
    for logical, resource in cfn["Resources"].items():
        if resource["Type"] != "AWS::Lambda::EventInvokeConfig":
            continue
        props = renderer.value(resource["Properties"])
        lambda_client.put_function_event_invoke_config(
            FunctionName=props["FunctionName"],
            MaximumRetryAttempts=int(props["MaximumRetryAttempts"]),
        )
        got = lambda_client.get_function_event_invoke_config(FunctionName=props["FunctionName"])
        check_equal(
            (props["FunctionName"], got.get("MaximumRetryAttempts")),
            (stack["physical"]["ReconcileFunction"], 0),
            f"{logical}: a failed scheduled run is not retried (made by hand)",
        )
    rate = made.get(f"{STACK}-ApiServerErrorRateAlarm", {})
    dims = [
        m["MetricStat"]["Metric"]["Dimensions"]
        for m in rate.get("Metrics", [])
        if "MetricStat" in m
    ]
    check(
        dims and all({"Name": "ApiId", "Value": api["ApiId"]} in d for d in dims),
        "ApiServerErrorRateAlarm watches the stack's HTTP API",
    )
    check(
        all(not a.get("AlarmActions") for a in made.values()),
        "no alarm actions without AlarmTopicArn",
    )
    return pepper["ARN"], pepper_spec["Name"]


# -- the function against the stack ------------------------------------------------------------
def run_function(procs, stack, pepper_arn, pepper_name, endpoint, run_dir):
    cargo_env = dict(os.environ)
    base_env = {
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_REGION": REGION,
        "AWS_ACCESS_KEY_ID": "local",
        "AWS_SECRET_ACCESS_KEY": "local",
    }
    function_env = {k: str(v) for k, v in stack["env"].items()}
    function_env["PEPPER_SECRET_ID"] = pepper_arn  # what the template's Ref would give on AWS
    print("==> building the function and the admin tool")
    subprocess.run(
        ["cargo", "build", "--quiet", "--bin", "create-webhook", "--bin", "webhooks-admin"],
        cwd=ROOT,
        check=True,
        env=cargo_env,
    )
    target = Path(os.environ.get("CARGO_TARGET_DIR") or ROOT / "target")
    if not target.is_absolute():
        target = ROOT / target
    admin = [str(target / "debug" / "webhooks-admin"), "--json"]
    admin_env = {
        **cargo_env,
        **base_env,
        "WEBHOOKS_TABLE_NAME": function_env["WEBHOOKS_TABLE_NAME"],
        "API_KEYS_TABLE_NAME": function_env["API_KEYS_TABLE_NAME"],
        "DELIVERY_LOG_TABLE_NAME": function_env["DELIVERY_LOG_TABLE_NAME"],
        # The name, not the ARN: `setup` creates a missing pepper under this id as its
        # *name*, so with an ARN it would try to create a second secret named like one.
        "PEPPER_SECRET_ID": pepper_name,
    }
    setup = subprocess.run(admin + ["setup"], env=admin_env, capture_output=True, text=True)
    check(setup.returncode == 0, f"webhooks-admin setup against the stack ({setup.stderr.strip()})")
    report = json.loads(setup.stdout or "{}")
    check_equal(
        report.get("created"), [], "setup found the stack's tables and the pepper (created nothing)"
    )
    created = subprocess.run(
        admin
        + [
            "keys",
            "create",
            "--name",
            "deploy check",
            "--scope",
            "write:webhooks",
            "--scope",
            "read:webhooks",
            "--company",
            COMPANY,
        ],
        env=admin_env,
        capture_output=True,
        text=True,
    )
    check(created.returncode == 0, f"webhooks-admin keys create ({created.stderr.strip()})")
    key = json.loads(created.stdout or "{}")
    token = key.get("token", "")

    port = free_port()
    watch_args = [
        str(ROOT / ".venv/bin/cargo-lambda"),
        "lambda",
        "watch",
        "--bin",
        "create-webhook",
        "-A",
        "127.0.0.1",
        "-P",
        str(port),
    ]
    # An env file, not --env-var: cargo lambda refuses an empty value (WEBHOOK_SECRET_KMS_KEY_ID).
    env_file = run_dir / f"deploy-check-{port}.env"
    env_file.write_text(
        "".join(f"{name}={value}\n" for name, value in {**function_env, **base_env}.items())
    )
    watch_args += ["--env-file", str(env_file)]
    print(f"==> serving the function with the stack's environment on 127.0.0.1:{port}")
    log = open(run_dir / f"deploy-check-function-{port}.log", "w")
    watch = procs.start(
        watch_args,
        log,
        cwd=ROOT,
        env={**cargo_env, "PATH": f"{ROOT / '.venv/bin'}:{os.environ['PATH']}"},
    )
    base = f"http://127.0.0.1:{port}/webhooks"

    def request(method, url, body=None, headers=None):
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(url, data=data, method=method, headers=headers or {})
        try:
            with urllib.request.urlopen(req, timeout=60) as answer:
                return answer.status, answer.read()
        except urllib.error.HTTPError as error:
            return error.code, error.read()
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            return None, b""

    deadline = time.monotonic() + 300
    status = None
    while time.monotonic() < deadline and watch.poll() is None:
        status, _ = request("PUT", base)  # answered by the function itself (405), not the emulator
        if status == 405:
            break
        time.sleep(0.5)
    if not check(status == 405, "the function answers (405 to PUT /webhooks)"):
        return
    status, answer = request(
        "POST",
        base,
        {
            "url": "https://api.example.com/webhooks/instaview",
            "name": "Deploy check",
            "events": ["interview.completed"],
            "headers": [{"name": "Authorization", "value": "Bearer internal"}],
        },
        {"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    )
    check_equal(status, 201, "POST /webhooks with the stack's environment: 201")
    created_webhook = json.loads(answer or b"{}").get("data", json.loads(answer or b"{}"))
    webhook_id = created_webhook.get("id")
    check(bool(webhook_id), f"created webhook has an id ({webhook_id})")
    status, _ = request(
        "POST",
        base,
        {
            "url": "http://localhost:8080/hook",
            "name": "loopback",
            "events": ["interview.completed"],
        },
        {"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    )
    check_equal(status, 400, "http://localhost URL refused with the stack's default (400)")

    session = boto3.session.Session(
        region_name=REGION, aws_access_key_id="local", aws_secret_access_key="local"
    )
    dynamodb = session.client("dynamodb", endpoint_url=endpoint)
    item = dynamodb.get_item(
        TableName=function_env["WEBHOOKS_TABLE_NAME"], Key={"id": {"S": str(webhook_id)}}
    ).get("Item", {})
    check(bool(item), "the webhook record is in the stack's webhooks table")
    listed = dynamodb.query(
        TableName=function_env["WEBHOOKS_TABLE_NAME"],
        IndexName="byApiKey",
        KeyConditionExpression="apiKeyId = :k",
        ExpressionAttributeValues={":k": {"S": key.get("apiKeyId") or "?"}},
    )["Items"]
    check_equal([i["id"]["S"] for i in listed], [webhook_id], "the record is in the byApiKey index")
    # The delivery log's routes on the stack's own table and queue (DELIVERY_LOG_TABLE_NAME,
    # DELIVERIES_QUEUE_URL): the list is a Query of deliveriesByWebhook (nothing yet), and
    # recover answers at once, its job on the deliveries queue for the pipeline to walk.
    auth = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    status, answer = request("GET", f"{base}/{webhook_id}/deliveries", headers=auth)
    listed_deliveries = json.loads(answer or b"{}").get("data") or {}
    check_equal(
        (status, listed_deliveries.get("data"), listed_deliveries.get("nextCursor")),
        (200, [], None),
        "GET /webhooks/{id}/deliveries on the stack's log table: 200, none yet",
    )
    status, _ = request(
        "GET", f"{base}/{webhook_id}/deliveries/00000000-0000-4000-8000-000000000000", headers=auth
    )
    check_equal(status, 404, "GET /webhooks/{id}/deliveries/{unknown} on the stack: 404")
    since = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() - 3600))
    status, answer = request("POST", f"{base}/{webhook_id}/recover", {"since": since}, auth)
    check_equal(status, 202, "POST /webhooks/{id}/recover on the stack: 202")
    sqs = session.client("sqs", endpoint_url=endpoint)
    queued = sqs.receive_message(
        QueueUrl=function_env["DELIVERIES_QUEUE_URL"], MaxNumberOfMessages=10, WaitTimeSeconds=1
    ).get("Messages", [])
    check(
        len(queued) == 1 and webhook_id in queued[0]["Body"],
        f"the recover job is on the stack's deliveries queue ({len(queued)} message(s))",
    )
    secrets = session.client("secretsmanager", endpoint_url=endpoint).list_secrets(
        Filters=[{"Key": "name", "Values": [stack["prefix"]]}]
    )["SecretList"]
    check_equal(
        [s["Name"] for s in secrets],
        [stack["prefix"] + str(webhook_id)],
        "its signing secret is under the stack's prefix",
    )
    # The reconciler's sweep on the stack (its environment names the same table and prefix,
    # asserted above): one healthy webhook, nothing to delete or deactivate.
    swept = subprocess.run(
        admin + ["reconcile", "--min-age-seconds", "0"],
        env={**admin_env, "WEBHOOK_SECRET_PREFIX": stack["prefix"]},
        capture_output=True,
        text=True,
    )
    check(
        swept.returncode == 0,
        "webhooks-admin reconcile against the stack"
        + (f" ({swept.stderr.strip()[-300:]})" if swept.returncode else ""),
    )
    sweep = json.loads(swept.stdout or "{}")
    check_equal(
        (
            sweep.get("records"),
            sweep.get("secrets"),
            sweep.get("orphanSecretsDeleted"),
            sweep.get("recordsWithoutSecret"),
            sweep.get("errors"),
        ),
        (1, 1, [], [], []),
        "reconcile on the stack: 1 record, 1 secret, nothing orphaned",
    )


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--template", default=str(ROOT / "template.yaml"))
    parser.add_argument("--no-function", action="store_true", help="skip step 5 (no Rust build)")
    args = parser.parse_args()
    started = time.monotonic()
    run_dir = ROOT / ".run"
    run_dir.mkdir(exist_ok=True)
    procs = Processes()
    port = free_port()
    endpoint = f"http://127.0.0.1:{port}"
    try:
        print(f"==> moto on {endpoint}")
        moto = procs.start(
            [
                sys.executable,
                str(ROOT / "scripts/moto_server.py"),
                "-H",
                "127.0.0.1",
                "-p",
                str(port),
            ],
            open(run_dir / f"deploy-check-moto-{port}.log", "w"),
        )
        if not wait_for_port(port, 60, moto):
            print("deploy check: moto did not start", file=sys.stderr)
            return 1
        session = boto3.session.Session(
            region_name=REGION, aws_access_key_id="local", aws_secret_access_key="local"
        )

        class Clients:
            def client(self, name):
                return session.client(name, endpoint_url=endpoint)

        clients = Clients()
        # The function's code package: a placeholder zip in moto's S3 (moto never runs it).
        s3 = clients.client("s3")
        s3.create_bucket(
            Bucket="deploy-check", CreateBucketConfiguration={"LocationConstraint": REGION}
        )
        package = io.BytesIO()
        with zipfile.ZipFile(package, "w") as archive:
            archive.writestr("bootstrap", "#!/bin/sh\n")
        s3.put_object(Bucket="deploy-check", Key="function.zip", Body=package.getvalue())

        print("==> translating the SAM template offline and creating the stack")
        template = template_render.load(args.template)
        cfn = template_render.translate(template, "s3://deploy-check/function.zip")
        clients.client("cloudformation").create_stack(
            StackName=STACK,
            TemplateBody=json.dumps(cfn),
            Parameters=[{"ParameterKey": k, "ParameterValue": v} for k, v in PARAMETERS.items()],
            Capabilities=["CAPABILITY_IAM", "CAPABILITY_NAMED_IAM", "CAPABILITY_AUTO_EXPAND"],
        )
        stack = check_stack(clients, cfn)
        print("==> creating by hand what moto's CloudFormation skips")
        pepper_arn, pepper_name = create_skipped(clients, cfn, stack)
        if not args.no_function:
            run_function(procs, stack, pepper_arn, pepper_name, endpoint, run_dir)
    finally:
        procs.stop()
    elapsed = time.monotonic() - started
    if failures:
        print(
            f"deploy check FAILED: {len(failures)} of the assertions above ({elapsed:.1f} s)",
            file=sys.stderr,
        )
        return 1
    print(f"deploy check: all assertions hold ({elapsed:.1f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
