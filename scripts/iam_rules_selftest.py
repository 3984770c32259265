#!/usr/bin/env python3
"""Proof that the project's cfn-lint IAM rules fire: each case below breaks one rule in a small
template, and cfn-lint (with .cfnlintrc.yaml's rules) must report it, and none of the project's
other rules; the unbroken template and the controls (cases expecting None) must pass. A rule
that silently stopped matching (a typo in a property path of rules/cfn-lint/iam.rules, a
cfn-lint upgrade that changes how SAM is read) fails here.

Usage: .venv/bin/python scripts/iam_rules_selftest.py   (from the repository's root; `make lint`)

One cfn-lint run over all the cases (about 3 s). iam.rules' ids follow its line numbers, so they
are matched by message; the Python rules' ids (E99xx) are fixed.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

BASE = """\
AWSTemplateFormatVersion: "2010-09-09"
Transform: AWS::Serverless-2016-10-31
Parameters:
  Target:
    Type: String
    Default: arn:aws:sqs:eu-central-1:123456789012:q
Resources:
  Queue:
    Type: AWS::SQS::Queue
  Fn:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: .
      Handler: bootstrap
      Runtime: provided.al2023
      Role: !GetAtt FnRole.Arn
  FnRole:
    Type: AWS::IAM::Role
    Properties:
      AssumeRolePolicyDocument:
        Version: "2012-10-17"
        Statement:
          - Effect: Allow
            Principal:
              Service: lambda.amazonaws.com
            Action: sts:AssumeRole
      Policies:
        - PolicyName: fn
          PolicyDocument:
            Version: "2012-10-17"
            Statement:
              - Effect: Allow
                Action: sqs:SendMessage
                Resource: !GetAtt Queue.Arn
              - Effect: Allow
                Action: secretsmanager:ListSecrets
                Resource: "*"
"""

SEND = "                Action: sqs:SendMessage\n"
SEND_RESOURCE = "                Resource: !GetAtt Queue.Arn\n"
ROLE = "      Role: !GetAtt FnRole.Arn\n"

# name -> (old text, new text, what the finding's message or rule id must contain)
CASES = {
    "wildcard action": (
        SEND,
        "                Action: sqs:Send*\n",
        "wildcard Action: list the exact actions",
    ),
    "? in an action": (
        SEND,
        "                Action: [sqs:SendMessag?]\n",
        "wildcard Action: list the exact actions",
    ),
    "wildcard in Fn::If": (
        SEND,
        "                Action: !If [C, sqs:SendMessage, 'sqs:*']\n",
        "wildcard Action: list the exact actions",
    ),
    "wildcard trust action": (
        "            Action: sts:AssumeRole\n",
        "            Action: sts:*\n",
        "wildcard Action in the trust policy",
    ),
    "wildcard through Fn::Sub": (
        SEND,
        "                Action: !Sub 'sqs:${AWS::Region}*'\n",
        "E9903",
    ),
    "NotAction": (
        SEND,
        "                NotAction: sqs:SendMessage\n",
        "NotAction grants everything",
    ),
    "NotResource": (
        SEND_RESOURCE,
        "                NotResource: !GetAtt Queue.Arn\n",
        "NotResource grants everything",
    ),
    "NotPrincipal": (
        "            Principal:\n",
        "            NotPrincipal:\n",
        "NotPrincipal trusts everyone",
    ),
    "managed policy": (
        "      Policies:\n        - PolicyName: fn\n",
        "      ManagedPolicyArns: [arn:aws:iam::aws:policy/ReadOnlyAccess]\n"
        "      Policies:\n        - PolicyName: fn\n",
        "managed policy attached",
    ),
    "permissions boundary": (
        "      Policies:\n        - PolicyName: fn\n",
        "      PermissionsBoundary: arn:aws:iam::123456789012:policy/b\n"
        "      Policies:\n        - PolicyName: fn\n",
        "PermissionsBoundary attaches a managed policy",
    ),
    "SAM function without Role": (
        ROLE,
        "",
        "no Role: SAM would attach AWSLambdaBasicExecutionRole",
    ),
    "SAM Policies": (ROLE, ROLE + "      Policies: [AmazonS3ReadOnlyAccess]\n", "SAM Policies"),
    "SAM Policies in Globals": (
        "Resources:\n",
        "Globals:\n  Function:\n    Policies: [AWSLambdaBasicExecutionRole]\nResources:\n",
        "SAM Policies",
    ),
    "Globals without Policies": (
        "Resources:\n",
        "Globals:\n  Function:\n    Timeout: 3\nResources:\n",
        None,
    ),
    "Resource *": (SEND_RESOURCE, '                Resource: "*"\n', "E9901"),
    "Resource * as Fn::Sub": (SEND_RESOURCE, "                Resource: !Sub '*'\n", "E9901"),
    "Resource * as a parameter's default": (
        "    Default: arn:aws:sqs:eu-central-1:123456789012:q\n",
        "    Default: '*'\n",
        None,  # not used by any statement yet: still passes
    ),
    "Resource * through a parameter": (
        SEND_RESOURCE,
        "                Resource: !Ref Target\n",
        None,
    ),
    "star-only action beside another": (
        "                Action: secretsmanager:ListSecrets\n",
        "                Action: [secretsmanager:ListSecrets, secretsmanager:GetSecretValue]\n",
        "E9901",
    ),
    "unknowable Resource": (
        SEND_RESOURCE,
        "                Resource: !Join ['', ['arn:', '*']]\n",
        "E9902",
    ),
}
# Cases that need two edits: (base case, second old, second new, expected).
COMBINED = {
    "Resource * through a parameter's default": (
        "Resource * through a parameter",
        "    Default: arn:aws:sqs:eu-central-1:123456789012:q\n",
        "    Default: '*'\n",
        "E9901",
    ),
}
CONDITION = "Conditions:\n  C: !Equals [!Ref AWS::Region, eu-central-1]\n"


def build(old: str, new: str, base: str = BASE) -> str:
    if old not in base:
        raise SystemExit(f"iam_rules_selftest: case text not in the base template: {old!r}")
    text = base.replace(old, new, 1)
    return text.replace("Resources:\n", CONDITION + "Resources:\n", 1) if "!If [C" in text else text


def main() -> int:
    templates = {"unbroken": (BASE, None)}
    for name, (old, new, expected) in CASES.items():
        templates[name] = (build(old, new), expected)
    for name, (base_case, old, new, expected) in COMBINED.items():
        templates[name] = (build(old, new, templates[base_case][0]), expected)

    with tempfile.TemporaryDirectory() as tmp:
        files = {}
        for index, (name, (text, _)) in enumerate(templates.items()):
            path = Path(tmp) / f"case{index:02d}.yaml"
            path.write_text(text, encoding="utf-8")
            files[str(path)] = name
        run = subprocess.run(
            [str(ROOT / ".venv/bin/cfn-lint"), "--format", "parseable", *files],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=False,
        )
    findings: dict[str, list[str]] = {name: [] for name in templates}
    for line in run.stdout.splitlines():
        path, _, rest = line.partition(":")
        if path in files:
            # file:line:col:endline:endcol:rule:message -> "rule:message"
            findings[files[path]].append(rest.split(":", 4)[-1])
    # cfn-lint's exit code is a bit mask: 2 errors, 4 warnings, 8 informational; 1 is a failure.
    if run.returncode & 1 or (run.returncode and not any(findings.values())):
        print(
            f"iam_rules_selftest: cfn-lint failed ({run.returncode}): {run.stderr.strip()}",
            file=sys.stderr,
        )
        return 1

    problems = []
    for name, (_, expected) in templates.items():
        got = findings[name]
        if expected is None:
            if got:
                problems.append(f"{name}: expected no finding, got {got}")
        elif not any(expected in finding for finding in got):
            problems.append(f"{name}: expected a finding with {expected!r}, got {got}")
        else:
            # Ours may not fire beside the expected one (cfn-lint's own rules may, e.g. E3724).
            stray = [f for f in got if f.startswith("E9") and expected not in f]
            if stray:
                problems.append(f"{name}: unexpected findings of the project's rules: {stray}")
    if problems:
        print(f"iam_rules_selftest: FAILED ({len(problems)} case(s)):", file=sys.stderr)
        for line in problems:
            print(f"  - {line}", file=sys.stderr)
        return 1
    print(
        f"iam_rules_selftest: {len(templates)} cases, each IAM rule fires where it should "
        "and nowhere else"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
