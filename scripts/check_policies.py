#!/usr/bin/env python3
"""parliament on every IAM policy the template makes, rendered as CloudFormation would.

Usage: .venv/bin/python scripts/check_policies.py template.yaml

The SAM template is translated offline (samtranslator), then each role's inline policies are
rendered with the parameters resolved and example ARNs for the resources, once per parameter
set below (so both branches of every condition that shapes a policy are audited). parliament
(https://github.com/duo-labs/parliament) checks each document: actions that exist, resources
of the type each action takes, condition keys that apply, no malformed elements. Any finding
fails the check (exit 1).

It also compares each function role's grants with the calls the code makes (the list in the
lead's design notes, mirrored in docs/DEPLOY.md), resource by resource: a grant more or less
fails the check, so "exactly what the code calls" cannot drift silently.

Why a script and not a cfn-lint or cfn-guard rule (the template's shape rules are in
rules/cfn-lint/): both rule languages judge the template as written, one property at a time. This
check needs the policies as AWS would hold them -- the SAM transform run, Fn::Sub, Fn::Select and
the conditions resolved for each parameter set, ARNs for every resource -- then the set of
(resource, action) grants of each role compared with the calls its code makes, and parliament's
audit of each rendered document. Neither language can render a policy or hold the list of calls.

The one Resource "*" is the reconciler's secretsmanager:ListSecrets, which AWS authorises only
on "*" (no resource type); it is the documented exception of rules/cfn-lint/iam_resources.py
(STAR_ONLY_ACTIONS), and the expected grants below pin it to exactly that one action.
"""

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import template_render  # noqa: E402

ACCOUNT, REGION, STACK = "123456789012", "eu-central-1", "instaview-webhooks"
STACK_UUID = "0f2c3a10-9d4e-11ef-8b8c-0a1b2c3d4e5f"
# Every webhook's signing secret, under this stack's prefix (name and id).
WEBHOOK_SECRETS = (
    f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:instaview/{STACK}/{STACK_UUID}/webhooks/*"
)
KMS_KEY = f"arn:aws:kms:{REGION}:{ACCOUNT}:key/1234abcd-12ab-34cd-56ef-1234567890ab"
PARAMETER_SETS = {
    "defaults": {},
    "customer KMS key": {"WebhookSecretsKmsKeyArn": KMS_KEY},
}


def example_names(cfn):
    """Ref and GetAtt values as AWS gives them, for every resource of the template."""
    refs, attrs = {}, {}
    for logical, resource in cfn["Resources"].items():
        kind = resource["Type"]
        name = f"{STACK}-{logical}-EXAMPLE1234"
        if kind == "AWS::DynamoDB::Table":
            refs[logical] = name
            attrs[(logical, "Arn")] = f"arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/{name}"
        elif kind == "AWS::Logs::LogGroup":
            props = resource.get("Properties") or {}
            group = name
            if isinstance(props.get("LogGroupName"), dict):
                group = template_render.Renderer(cfn, pseudo={"AWS::StackName": STACK}).value(
                    props["LogGroupName"]
                )
            refs[logical] = group
            attrs[(logical, "Arn")] = f"arn:aws:logs:{REGION}:{ACCOUNT}:log-group:{group}:*"
        elif kind == "AWS::SecretsManager::Secret":
            refs[logical] = f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:{name}-AbCdEf"
        elif kind == "AWS::IAM::Role":
            refs[logical] = name
            attrs[(logical, "Arn")] = f"arn:aws:iam::{ACCOUNT}:role/{name}"
        elif kind == "AWS::SQS::Queue":
            refs[logical] = f"https://sqs.{REGION}.amazonaws.com/{ACCOUNT}/{name}"
            attrs[(logical, "Arn")] = f"arn:aws:sqs:{REGION}:{ACCOUNT}:{name}"
            attrs[(logical, "QueueName")] = name
        elif kind == "AWS::Lambda::Function":
            refs[logical] = name
            attrs[(logical, "Arn")] = f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{name}"
        else:
            refs[logical] = f"{logical.lower()}1234"
    return refs, attrs


def expected_grants(refs, attrs, params):
    """resource -> actions the function's code calls on it (AWS's per-item names for
    TransactWriteItems: PutItem, UpdateItem, DeleteItem; no ConditionCheckItem)."""
    table = attrs[("WebhooksTable", "Arn")]
    grants = {
        attrs[("CreateWebhookLogGroup", "Arn")]: {"logs:CreateLogStream", "logs:PutLogEvents"},
        attrs[("ApiKeysTable", "Arn")]: {"dynamodb:GetItem"},
        table: {
            "dynamodb:GetItem",
            "dynamodb:PutItem",
            "dynamodb:UpdateItem",
            "dynamodb:DeleteItem",
        },
        f"{table}/index/byApiKey": {"dynamodb:Query"},
        attrs[("DeliveryLogTable", "Arn")]: {
            "dynamodb:GetItem",
            "dynamodb:UpdateItem",
            "dynamodb:BatchWriteItem",
        },
        f"{attrs[('DeliveryLogTable', 'Arn')]}/index/deliveriesByWebhook": {"dynamodb:Query"},
        attrs[("DeliveriesQueue", "Arn")]: {"sqs:SendMessage"},
        WEBHOOK_SECRETS: {
            "secretsmanager:CreateSecret",
            "secretsmanager:TagResource",
            "secretsmanager:GetSecretValue",
            "secretsmanager:PutSecretValue",
            "secretsmanager:DeleteSecret",
        },
        refs["PepperSecret"]: {"secretsmanager:GetSecretValue"},
    }
    if params.get("WebhookSecretsKmsKeyArn"):
        grants[params["WebhookSecretsKmsKeyArn"]] = {"kms:Decrypt", "kms:GenerateDataKey"}
    return grants


def expected_pipeline_grants(refs, attrs, params):
    """role policy -> resource -> actions of the event pipeline's functions (src/pipeline):
    the event source mapping's reads of each function's own queue, then the code's calls."""
    webhooks = attrs[("WebhooksTable", "Arn")]
    log = attrs[("DeliveryLogTable", "Arn")]
    consume = {"sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:GetQueueAttributes"}
    fanout = {
        attrs[("FanoutLogGroup", "Arn")]: {"logs:CreateLogStream", "logs:PutLogEvents"},
        attrs[("EventsQueue", "Arn")]: set(consume),
        f"{webhooks}/index/byCompany": {"dynamodb:Query"},
        f"{attrs[('ApiKeysTable', 'Arn')]}/index/byApiKeyId": {"dynamodb:Query"},
        attrs[("DeliveriesQueue", "Arn")]: {"sqs:SendMessage"},
        attrs[("EventsDeadLetterQueue", "Arn")]: {"sqs:SendMessage"},
        log: {"dynamodb:PutItem"},
    }
    deliver = {
        attrs[("DeliverLogGroup", "Arn")]: {"logs:CreateLogStream", "logs:PutLogEvents"},
        attrs[("DeliveriesQueue", "Arn")]: consume | {"sqs:SendMessage"},
        webhooks: {"dynamodb:BatchGetItem", "dynamodb:GetItem", "dynamodb:UpdateItem"},
        f"{webhooks}/index/byApiKey": {"dynamodb:Query"},
        log: {"dynamodb:BatchGetItem", "dynamodb:UpdateItem", "dynamodb:PutItem"},
        f"{log}/index/eventsByCompany": {"dynamodb:Query"},
        f"{attrs[('ApiKeysTable', 'Arn')]}/index/byApiKeyId": {"dynamodb:Query"},
        WEBHOOK_SECRETS: {"secretsmanager:GetSecretValue"},
    }
    if params.get("WebhookSecretsKmsKeyArn"):
        deliver[params["WebhookSecretsKmsKeyArn"]] = {"kms:Decrypt"}
    return {"FanoutFunctionRole/fanout": fanout, "DeliverFunctionRole/deliver": deliver}


def expected_reconcile_grants(refs, attrs, params):
    """resource -> actions the reconciler (src/reconcile.rs) calls on it."""
    table = attrs[("WebhooksTable", "Arn")]
    return {
        attrs[("ReconcileLogGroup", "Arn")]: {"logs:CreateLogStream", "logs:PutLogEvents"},
        table: {"dynamodb:Scan", "dynamodb:UpdateItem", "dynamodb:DeleteItem"},
        # The documented exception: AWS authorises ListSecrets only on "*".
        "*": {"secretsmanager:ListSecrets"},
        WEBHOOK_SECRETS: {
            "secretsmanager:DescribeSecret",
            "secretsmanager:ListSecretVersionIds",
            "secretsmanager:DeleteSecret",
        },
    }


def expected_all(refs, attrs, params):
    """The calls each role's code makes, by the role's policy."""
    expected = {
        "CreateWebhookFunctionRole/create-webhook": expected_grants(refs, attrs, params),
        "ReconcileFunctionRole/reconcile": expected_reconcile_grants(refs, attrs, params),
    }
    expected.update(expected_pipeline_grants(refs, attrs, params))
    return expected


def granted(document):
    out = {}
    for statement in document["Statement"]:
        actions = (
            statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
        )
        resources = (
            statement["Resource"]
            if isinstance(statement["Resource"], list)
            else [statement["Resource"]]
        )
        for resource in resources:
            out.setdefault(resource, set()).update(actions)
    return out


def main(argv):
    if len(argv) != 2:
        print(f"usage: {argv[0]} template.yaml", file=sys.stderr)
        return 2
    from parliament import analyze_policy_string

    # A placeholder package: SAM wants an S3 URI where `sam package` would put one.
    cfn = template_render.translate(
        template_render.load(argv[1]), "s3://example-bucket/function.zip"
    )
    refs, attrs = example_names(cfn)
    problems, audited = [], 0
    for label, params in PARAMETER_SETS.items():
        pseudo = {
            "AWS::StackName": STACK,
            "AWS::StackId": f"arn:aws:cloudformation:{REGION}:{ACCOUNT}:stack/{STACK}/{STACK_UUID}",
        }
        renderer = template_render.Renderer(
            cfn, params=params, pseudo=pseudo, refs=refs, attrs=attrs
        )
        seen = set()
        expected = expected_all(refs, attrs, params)
        for where, document in renderer.policies():
            if where in expected:
                seen.add(where)
                want, got = expected[where], granted(document)
                for resource in sorted(set(want) | set(got)):
                    extra = sorted(got.get(resource, set()) - want.get(resource, set()))
                    lacking = sorted(want.get(resource, set()) - got.get(resource, set()))
                    if extra or lacking:
                        problems.append(
                            f"{where} [{label}]: {resource}: granted but not called "
                            f"{extra}, called but not granted {lacking}"
                        )
            elif "managed" not in document:
                problems.append(
                    f"{where} [{label}]: a role policy the check does not know; "
                    "add the calls its code makes to expected_all"
                )
            if "managed" in document:
                problems.append(f"{where} [{label}]: managed policy {document['managed']} attached")
                continue
            text = json.dumps(document)
            if "<missing>" in repr(document):
                problems.append(f"{where} [{label}]: could not render every value: {text}")
                continue
            audited += 1
            for finding in analyze_policy_string(text).findings:
                problems.append(
                    f"{where} [{label}]: {finding.severity} {finding.issue}: "
                    f"{finding.detail} {finding.location}"
                )
        for missing in sorted(set(expected) - seen):
            problems.append(f"{missing} [{label}]: policy not found in the template")
    if problems:
        print(f"parliament FAILED ({len(problems)} finding(s)):", file=sys.stderr)
        for line in problems:
            print(f"  - {line}", file=sys.stderr)
        return 1
    if audited == 0:
        print("parliament FAILED: no policy found to audit", file=sys.stderr)
        return 1
    print(
        f"parliament: {audited} rendered policies ({', '.join(PARAMETER_SETS)}), no findings; "
        "each function role grants exactly the calls its code makes"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
