#!/usr/bin/env python3
"""Least-privilege gate for the SAM/CloudFormation template.

Usage: python3 scripts/check_template_iam.py template.yaml

Walks every IAM policy statement the template defines -- SAM function `Policies`
(also under Globals), AWS::IAM::Role inline policies and trust policy,
AWS::IAM::Policy / ManagedPolicy / RolePolicy / UserPolicy / GroupPolicy documents --
and fails (exit 1) on:
  * an Action that is "*" or contains a wildcard ("*" or "?"), e.g. "s3:*", "dynamodb:Get*";
  * a Resource that is exactly "*" (also as Fn::Sub "*" or a parameter defaulting to "*");
    an ARN pattern such as "arn:...:secret:prefix/*" is allowed. The one exception: a
    statement whose actions are all in STAR_ONLY_ACTIONS below (actions that AWS authorises
    only on Resource "*", each with the reason we call it) may name "*", and nothing else;
  * NotAction, NotResource or NotPrincipal;
  * any managed policy attached (ManagedPolicyArns, a SAM policy template or managed
    policy name in `Policies`, PermissionsBoundary) -- and a SAM function without its own
    `Role`, because SAM then attaches AWSLambdaBasicExecutionRole, whose Resource is "*".
Both branches of Fn::If are checked. Exit 2 on a usage or parse error.
Needs PyYAML (installed with cfn-lint / aws-sam-cli).
"""

import sys

try:
    import yaml
except ImportError:  # pragma: no cover
    sys.exit("check_template_iam: PyYAML is required (use the project venv: .venv/bin/python)")

WILDCARD_CHARS = ("*", "?")
SAM_FUNCTION = "AWS::Serverless::Function"
POLICY_DOCUMENT_TYPES = {
    "AWS::IAM::Policy",
    "AWS::IAM::ManagedPolicy",
    "AWS::IAM::RolePolicy",
    "AWS::IAM::UserPolicy",
    "AWS::IAM::GroupPolicy",
}
PRINCIPAL_TYPES = {"AWS::IAM::Role", "AWS::IAM::User", "AWS::IAM::Group"}

# Documented exceptions to 'no Resource "*"': actions that have no resource type in AWS's
# Service Authorization Reference, so a policy can grant them only on "*". Each needs a reason
# (who calls it and why it is safe); a statement granting "*" may name only these actions.
STAR_ONLY_ACTIONS = {
    "secretsmanager:ListSecrets": (
        "the reconciler (src/reconcile.rs) lists webhook secret names under its stack's "
        "prefix; ListSecrets returns names, ARNs, dates and version ids, never a value"
    ),
}


class CfnLoader(yaml.SafeLoader):
    """SafeLoader that turns CloudFormation short-form tags into their long form."""


def _construct_short_form(loader, tag_suffix, node):
    if isinstance(node, yaml.ScalarNode):
        value = loader.construct_scalar(node)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)
    if tag_suffix == "Ref":
        return {"Ref": value}
    if tag_suffix == "Condition":
        return {"Condition": value}
    if tag_suffix == "GetAtt" and isinstance(value, str):
        value = value.split(".", 1)
    return {"Fn::" + tag_suffix: value}


CfnLoader.add_multi_constructor("!", _construct_short_form)


def _is_no_value(value):
    return isinstance(value, dict) and value.get("Ref") == "AWS::NoValue"


def expand(value):
    """All concrete alternatives of a value: both Fn::If branches, AWS::NoValue dropped."""
    if _is_no_value(value):
        return []
    if isinstance(value, dict) and set(value) == {"Fn::If"}:
        args = value["Fn::If"]
        if isinstance(args, list) and len(args) == 3:
            return expand(args[1]) + expand(args[2])
    return [value]


def as_list(value):
    """A policy element (string or list, maybe behind Fn::If) as a flat list of items."""
    items = []
    if value is None:
        return items
    for alternative in expand(value):
        if isinstance(alternative, list):
            for item in alternative:
                items.extend(expand(item))
        else:
            items.append(alternative)
    return items


class Checker:
    def __init__(self, template):
        self.template = template if isinstance(template, dict) else {}
        self.parameters = self.template.get("Parameters") or {}
        self.errors = []
        self.statements = 0
        self.star_exceptions = []

    def error(self, where, message):
        self.errors.append(f"{where}: {message}")

    # -- values -------------------------------------------------------------------
    def literal_strings(self, value):
        """The strings a value can statically be; None when it cannot be known."""
        if isinstance(value, str):
            return [value]
        if isinstance(value, dict) and len(value) == 1:
            (key, arg), = value.items()
            if key == "Fn::Sub":
                text = arg[0] if isinstance(arg, list) and arg else arg
                return [text] if isinstance(text, str) else None
            if key == "Ref" and isinstance(arg, str):
                if arg.startswith("AWS::"):
                    return []
                param = self.parameters.get(arg)
                if isinstance(param, dict):  # a parameter: check what it may be set to
                    values = [param.get("Default")] + list(param.get("AllowedValues") or [])
                    return [str(v) for v in values if v is not None]
                return []  # a resource's Ref is its name/ARN, never a wildcard
            if key == "Fn::GetAtt":
                return []  # an attribute of a specific resource
        return None

    # -- statements ---------------------------------------------------------------
    def check_document(self, where, document):
        for doc in expand(document):
            if not isinstance(doc, dict):
                self.error(where, "policy document is not a mapping; cannot verify it")
                continue
            statements = doc.get("Statement")
            if statements is None:
                self.error(where, "policy document has no Statement")
                continue
            for index, statement in enumerate(as_list(statements)):
                self.check_statement(f"{where} Statement[{index}]", statement)

    def check_statement(self, where, statement):
        if not isinstance(statement, dict):
            self.error(where, "statement is not a mapping; cannot verify it")
            return
        self.statements += 1
        if "Sid" in statement and isinstance(statement["Sid"], str):
            where = f"{where} ({statement['Sid']})"
        for forbidden in ("NotAction", "NotResource", "NotPrincipal"):
            if forbidden in statement:
                self.error(where, f"{forbidden} is not allowed (it grants everything not listed)")
        actions = as_list(statement.get("Action"))
        if not actions and "NotAction" not in statement:
            self.error(where, "statement has no Action")
        for action in actions:
            texts = self.literal_strings(action)
            if texts is None or not texts:
                self.error(where, f"Action {action!r} cannot be verified statically")
                continue
            for text in texts:
                if any(ch in text for ch in WILDCARD_CHARS):
                    self.error(where, f"wildcard Action {text!r}; list the exact actions")
        # Trust policies name a Principal instead of a Resource.
        if "Principal" in statement:
            return
        resources = as_list(statement.get("Resource"))
        if not resources and "NotResource" not in statement:
            self.error(where, "statement has no Resource")
        star_only = bool(actions) and all(
            isinstance(action, str) and action in STAR_ONLY_ACTIONS for action in actions)
        for resource in resources:
            texts = self.literal_strings(resource)
            if texts is None:
                self.error(where, f"Resource {resource!r} cannot be verified statically")
                continue
            for text in texts:
                if text.strip() == "*":
                    if star_only and len(resources) == 1:
                        self.star_exceptions.append(where)
                        continue
                    self.error(where, 'Resource "*"; scope it to specific ARNs (only actions '
                                      'AWS authorises on "*" alone, in STAR_ONLY_ACTIONS, may '
                                      'have it, in a statement of their own)')

    # -- resources ----------------------------------------------------------------
    def check_sam_function_properties(self, where, props):
        policies = props.get("Policies")
        for index, policy in enumerate(as_list(policies) if policies is not None else []):
            item = f"{where} Policies[{index}]"
            if isinstance(policy, dict) and "Statement" in policy:
                self.check_document(item, policy)
            elif isinstance(policy, str):
                self.error(item, f"managed policy {policy!r} attached; use explicit statements")
            else:
                self.error(item, f"SAM policy template/managed policy {policy!r}; use explicit statements")
        if "PermissionsBoundary" in props:
            self.error(where, "PermissionsBoundary attaches a managed policy")

    def run(self):
        resources = self.template.get("Resources")
        if not isinstance(resources, dict):
            self.error("template", "no Resources section")
            return
        globals_function = ((self.template.get("Globals") or {}).get("Function")) or {}
        self.check_sam_function_properties("Globals.Function", globals_function)
        for name, resource in resources.items():
            if not isinstance(resource, dict):
                continue
            rtype = resource.get("Type")
            props = resource.get("Properties") or {}
            where = f"{name} ({rtype})"
            if rtype == SAM_FUNCTION:
                self.check_sam_function_properties(where, props)
                if "Role" not in props and "Role" not in globals_function:
                    self.error(where, "no Role: SAM would attach AWSLambdaBasicExecutionRole "
                                      "(Resource \"*\"); give the function its own role")
            elif rtype in PRINCIPAL_TYPES:
                if props.get("ManagedPolicyArns"):
                    self.error(where, f"managed policies attached: {props['ManagedPolicyArns']!r}")
                if "PermissionsBoundary" in props:
                    self.error(where, "PermissionsBoundary attaches a managed policy")
                if "AssumeRolePolicyDocument" in props:
                    self.check_document(f"{where} AssumeRolePolicyDocument",
                                        props["AssumeRolePolicyDocument"])
                for index, policy in enumerate(as_list(props.get("Policies") or [])):
                    pname = policy.get("PolicyName", index) if isinstance(policy, dict) else index
                    doc = policy.get("PolicyDocument") if isinstance(policy, dict) else None
                    self.check_document(f"{where} Policies[{pname}]", doc)
            elif rtype in POLICY_DOCUMENT_TYPES:
                self.check_document(where, props.get("PolicyDocument"))


def main(argv):
    if len(argv) != 2:
        print(f"usage: {argv[0]} template.yaml", file=sys.stderr)
        return 2
    try:
        with open(argv[1], encoding="utf-8") as handle:
            template = yaml.load(handle, Loader=CfnLoader)
    except (OSError, yaml.YAMLError) as exc:
        print(f"check_template_iam: cannot read {argv[1]}: {exc}", file=sys.stderr)
        return 2
    checker = Checker(template)
    checker.run()
    if checker.errors:
        print(f"IAM policy check FAILED ({len(checker.errors)} problem(s)):", file=sys.stderr)
        for line in checker.errors:
            print(f"  - {line}", file=sys.stderr)
        return 1
    if checker.statements == 0:
        print("IAM policy check FAILED: no IAM policy statements found", file=sys.stderr)
        return 1
    exceptions = ""
    if checker.star_exceptions:
        exceptions = (f"; Resource \"*\" only for actions AWS authorises on \"*\" alone "
                      f"({', '.join(sorted(STAR_ONLY_ACTIONS))}): "
                      f"{', '.join(checker.star_exceptions)}")
    print(f"IAM policy check: {checker.statements} statements, no wildcard actions or "
          f"resources{exceptions}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
