#!/usr/bin/env python3
"""parliament on every IAM policy the template makes, rendered as CloudFormation would.

Usage: .venv/bin/python scripts/check_policies.py template.yaml

The SAM template is translated offline (samtranslator), then each role's inline policies are
rendered with the parameters resolved and example ARNs for the resources, once per parameter
set below (so both branches of every condition that shapes a policy are audited). parliament
(https://github.com/duo-labs/parliament) checks each document: actions that exist, resources
of the type each action takes, condition keys that apply, no malformed elements. Any finding
fails the check (exit 1).
"""

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import template_render  # noqa: E402

ACCOUNT, REGION, STACK = "123456789012", "eu-central-1", "instaview-webhooks"
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
                    props["LogGroupName"])
            refs[logical] = group
            attrs[(logical, "Arn")] = f"arn:aws:logs:{REGION}:{ACCOUNT}:log-group:{group}:*"
        elif kind == "AWS::SecretsManager::Secret":
            refs[logical] = f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:{name}-AbCdEf"
        elif kind == "AWS::IAM::Role":
            refs[logical] = name
            attrs[(logical, "Arn")] = f"arn:aws:iam::{ACCOUNT}:role/{name}"
        elif kind == "AWS::Lambda::Function":
            refs[logical] = name
            attrs[(logical, "Arn")] = f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{name}"
        else:
            refs[logical] = f"{logical.lower()}1234"
    return refs, attrs


def main(argv):
    if len(argv) != 2:
        print(f"usage: {argv[0]} template.yaml", file=sys.stderr)
        return 2
    from parliament import analyze_policy_string

    # A placeholder package: SAM wants an S3 URI where `sam package` would put one.
    cfn = template_render.translate(template_render.load(argv[1]), "s3://example-bucket/function.zip")
    refs, attrs = example_names(cfn)
    problems, audited = [], 0
    for label, params in PARAMETER_SETS.items():
        renderer = template_render.Renderer(cfn, params=params, pseudo={"AWS::StackName": STACK},
                                            refs=refs, attrs=attrs)
        for where, document in renderer.policies():
            if "managed" in document:
                problems.append(f"{where} [{label}]: managed policy {document['managed']} attached")
                continue
            text = json.dumps(document)
            if "<missing>" in repr(document):
                problems.append(f"{where} [{label}]: could not render every value: {text}")
                continue
            audited += 1
            for finding in analyze_policy_string(text).findings:
                problems.append(f"{where} [{label}]: {finding.severity} {finding.issue}: "
                                f"{finding.detail} {finding.location}")
    if problems:
        print(f"parliament FAILED ({len(problems)} finding(s)):", file=sys.stderr)
        for line in problems:
            print(f"  - {line}", file=sys.stderr)
        return 1
    if audited == 0:
        print("parliament FAILED: no policy found to audit", file=sys.stderr)
        return 1
    print(f"parliament: {audited} rendered policies ({', '.join(PARAMETER_SETS)}), no findings")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
