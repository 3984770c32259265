"""cfn-lint rules for the template's IAM that the custom-rules format (iam.rules) cannot say.

Loaded by cfn-lint from this folder (`append_rules` in .cfnlintrc.yaml), so `make lint`'s one
cfn-lint run applies them beside iam.rules. That format compares one property with one value; it
cannot relate two properties of one statement, and it skips every intrinsic function. Here:

* E9901 Resource "*" (also as Fn::Sub "*" or a parameter that may be "*"): refused, except in a
  statement whose actions are all in STAR_ONLY_ACTIONS and whose only Resource is "*".
* E9902 an Action or Resource whose value cannot be known from the template (Fn::GetAtt, Fn::Join,
  Fn::ImportValue, a resource's Ref as an Action...) cannot be shown free of wildcards: refused.
  A Ref to a parameter is judged by every value it may take (Default and AllowedValues).
* E9903 a wildcard ("*", "?") in an Action given through Fn::Sub or a parameter (iam.rules checks
  the literal ones).

Both branches of every Fn::If are checked; AWS::NoValue drops an element.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from cfnlint.rules import CloudFormationLintRule, RuleMatch

# Documented exceptions to 'no Resource "*"': actions that have no resource type in AWS's
# Service Authorization Reference, so a policy can grant them only on "*". Each needs a reason
# (who calls it and why it is safe); a statement granting "*" may name only these actions.
STAR_ONLY_ACTIONS = {
    "secretsmanager:ListSecrets": (
        "the reconciler (src/reconcile.rs) lists webhook secret names under its stack's "
        "prefix; ListSecrets returns names, ARNs, dates and version ids, never a value"
    ),
}

WILDCARD_CHARS = ("*", "?")
# Resource type -> paths (from Properties) of the policy documents it holds; "[]" is a list.
POLICY_DOCUMENTS = {
    "AWS::IAM::Role": (("AssumeRolePolicyDocument",), ("Policies", "[]", "PolicyDocument")),
    "AWS::IAM::User": (("Policies", "[]", "PolicyDocument"),),
    "AWS::IAM::Group": (("Policies", "[]", "PolicyDocument"),),
    "AWS::IAM::Policy": (("PolicyDocument",),),
    "AWS::IAM::ManagedPolicy": (("PolicyDocument",),),
    "AWS::IAM::RolePolicy": (("PolicyDocument",),),
    "AWS::IAM::UserPolicy": (("PolicyDocument",),),
    "AWS::IAM::GroupPolicy": (("PolicyDocument",),),
}

Path = list[Any]


def expand(value: Any, path: Path) -> Iterator[tuple[Any, Path]]:
    """Every concrete alternative of a value with its path: both Fn::If branches, no NoValue."""
    if isinstance(value, dict) and value.get("Ref") == "AWS::NoValue" and len(value) == 1:
        return
    if isinstance(value, dict) and set(value) == {"Fn::If"}:
        args = value["Fn::If"]
        if isinstance(args, list) and len(args) == 3:
            yield from expand(args[1], [*path, "Fn::If", 1])
            yield from expand(args[2], [*path, "Fn::If", 2])
            return
    yield value, path


def items(value: Any, path: Path) -> Iterator[tuple[Any, Path]]:
    """A policy element (a string or a list, maybe behind Fn::If) as a flat list of items."""
    if value is None:
        return
    for alternative, alt_path in expand(value, path):
        if isinstance(alternative, list):
            for index, item in enumerate(alternative):
                yield from expand(item, [*alt_path, index])
        else:
            yield alternative, alt_path


def documents(props: Any, steps: tuple[str, ...], path: Path) -> Iterator[tuple[Any, Path]]:
    """The policy documents found at `steps` under a resource's Properties."""
    if not steps:
        yield from expand(props, path)
        return
    step, rest = steps[0], steps[1:]
    if step == "[]":
        for item, item_path in items(props, path):
            yield from documents(item, rest, item_path)
        return
    for node, node_path in expand(props, path):
        if isinstance(node, dict) and step in node:
            yield from documents(node[step], rest, [*node_path, step])


class _Statements:
    """Shared walk over every statement of every IAM policy document."""

    def statements(self, cfn: Any) -> Iterator[tuple[dict, Path]]:
        for name, resource in cfn.get_resources(list(POLICY_DOCUMENTS)).items():
            props = resource.get("Properties")
            for steps in POLICY_DOCUMENTS[resource.get("Type")]:
                base = ["Resources", name, "Properties"]
                for document, doc_path in documents(props, steps, base):
                    if not isinstance(document, dict):
                        continue
                    for statement, st_path in items(
                        document.get("Statement"), [*doc_path, "Statement"]
                    ):
                        if isinstance(statement, dict):
                            yield statement, st_path


def literal_strings(cfn: Any, value: Any) -> list[str] | None:
    """The strings a value can statically be: [] for a resource's name or ARN, None if unknown."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict) and len(value) == 1:
        ((key, arg),) = value.items()
        if key == "Fn::Sub":
            text = arg[0] if isinstance(arg, list) and arg else arg
            return [text] if isinstance(text, str) else None
        if key == "Ref" and isinstance(arg, str):
            if arg.startswith("AWS::"):
                return []
            param = (cfn.template.get("Parameters") or {}).get(arg)
            if isinstance(param, dict):  # a parameter: judge every value it may be set to
                values = [param.get("Default"), *(param.get("AllowedValues") or [])]
                return [str(v) for v in values if v is not None]
            return []  # a resource's Ref is its name or ARN, never a wildcard
        if key == "Fn::GetAtt":
            return []  # an attribute of a specific resource
    return None


class StarResourceOnlyForStarOnlyActions(CloudFormationLintRule, _Statements):
    id = "E9901"
    shortdesc = 'Resource "*" only for actions AWS authorises on "*" alone'
    description = (
        'A statement may grant Resource "*" only if all its actions are in STAR_ONLY_ACTIONS '
        "(rules/cfn-lint/iam_resources.py, each with its reason) and "
        '"*" is its only resource.'
    )
    tags = ["iam", "instaview"]

    def match(self, cfn: Any) -> list[RuleMatch]:
        matches = []
        for statement, path in self.statements(cfn):
            if "Principal" in statement:
                continue  # a trust policy names a Principal, not a Resource
            actions = [a for a, _ in items(statement.get("Action"), [])]
            resources = list(items(statement.get("Resource"), [*path, "Resource"]))
            star_only = bool(actions) and all(
                isinstance(a, str) and a in STAR_ONLY_ACTIONS for a in actions
            )
            for resource, res_path in resources:
                texts = literal_strings(cfn, resource)
                if texts and any(text.strip() == "*" for text in texts):
                    if star_only and len(resources) == 1:
                        continue
                    matches.append(
                        RuleMatch(
                            res_path,
                            'Resource "*": scope it to specific ARNs (only actions AWS authorises '
                            'on "*" alone, in STAR_ONLY_ACTIONS, may have it, in a statement of '
                            "their own)",
                        )
                    )
        return matches


class StaticallyKnownActionsAndResources(CloudFormationLintRule, _Statements):
    id = "E9902"
    shortdesc = "IAM Action and Resource values must be known from the template"
    description = (
        "An Action or Resource the template cannot resolve (Fn::Join, Fn::ImportValue, an "
        "Action from Fn::GetAtt...) cannot be shown free of wildcards."
    )
    tags = ["iam", "instaview"]

    def match(self, cfn: Any) -> list[RuleMatch]:
        matches = []
        for statement, path in self.statements(cfn):
            # A trust policy names a Principal, not a Resource.
            for key in ("Action",) if "Principal" in statement else ("Action", "Resource"):
                for value, value_path in items(statement.get(key), [*path, key]):
                    texts = literal_strings(cfn, value)
                    # An action must be a name: a resource's Ref or attribute is not one.
                    if texts is None or (key == "Action" and not texts):
                        matches.append(
                            RuleMatch(value_path, f"{key} {value!r} cannot be verified statically")
                        )
        return matches


class NoWildcardActionsBehindIntrinsics(CloudFormationLintRule, _Statements):
    id = "E9903"
    shortdesc = "No wildcard Action through Fn::Sub or a parameter"
    description = (
        "iam.rules refuses literal wildcard actions; this rule the ones behind Fn::Sub or a Ref."
    )
    tags = ["iam", "instaview"]

    def match(self, cfn: Any) -> list[RuleMatch]:
        matches = []
        for statement, path in self.statements(cfn):
            for value, value_path in items(statement.get("Action"), [*path, "Action"]):
                if isinstance(value, str):
                    continue  # iam.rules
                for text in literal_strings(cfn, value) or []:
                    if any(ch in text for ch in WILDCARD_CHARS):
                        matches.append(
                            RuleMatch(
                                value_path, f"wildcard Action {text!r}: list the exact actions"
                            )
                        )
        return matches
