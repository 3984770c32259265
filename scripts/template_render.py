"""Load template.yaml, translate SAM offline, and resolve intrinsics to concrete values.

Shared by scripts/check_policies.py (parliament on each rendered policy) and
scripts/deploy_check.py (the expected policy of the role moto's CloudFormation made).

    template = load(path)                       # short-form tags -> long form
    cfn = translate(template, code_uri)         # AWS::Serverless::* -> plain CloudFormation
    Renderer(cfn, params, refs, attrs).value(x)  # Ref, Fn::GetAtt, Fn::Sub, Fn::If, ...
"""

import copy
import os
import re

import yaml


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


def load(path):
    with open(path, encoding="utf-8") as handle:
        return yaml.load(handle, Loader=CfnLoader)


class _NoManagedPolicies:
    """samtranslator's managed-policy loader: the template names no managed policy."""

    def load(self):
        return {}


def translate(template, code_uri=None, parameter_values=None):
    """The template as plain CloudFormation (the SAM transform, run offline, no AWS calls)."""
    from samtranslator.translator.transform import transform

    # The transform asks boto for a region (for pseudo parameters); any fixed one will do.
    os.environ.setdefault("AWS_DEFAULT_REGION", "eu-central-1")
    template = copy.deepcopy(template)
    if code_uri is not None:
        for resource in template.get("Resources", {}).values():
            if resource.get("Type") == "AWS::Serverless::Function":
                resource.setdefault("Properties", {})["CodeUri"] = code_uri
    return transform(template, parameter_values or {}, _NoManagedPolicies())


class Missing:
    """A value the environment does not have (e.g. a resource moto skipped)."""

    def __repr__(self):
        return "<missing>"


MISSING = Missing()
_SUB_VAR = re.compile(r"\$\{([^}!][^}]*)\}")


class Renderer:
    """Resolves CloudFormation intrinsics.

    params: parameter name -> string value (defaults are filled from the template);
    pseudo: AWS::Region etc.; refs: logical id -> Ref value; attrs: (logical id, attr) -> value.
    A Ref or GetAtt not in refs/attrs resolves to MISSING (callers decide what that means).
    """

    def __init__(self, cfn, params=None, pseudo=None, refs=None, attrs=None):
        self.cfn = cfn
        self.params = {}
        for name, spec in (cfn.get("Parameters") or {}).items():
            if "Default" in spec:
                self.params[name] = str(spec["Default"])
        self.params.update({k: str(v) for k, v in (params or {}).items()})
        self.pseudo = {
            "AWS::Region": "eu-central-1",
            "AWS::AccountId": "123456789012",
            "AWS::Partition": "aws",
            "AWS::URLSuffix": "amazonaws.com",
            "AWS::StackName": "instaview-webhooks",
            "AWS::StackId": "arn:aws:cloudformation:eu-central-1:123456789012:stack/"
            "instaview-webhooks/0f2c3a10-9d4e-11ef-8b8c-0a1b2c3d4e5f",
        }
        self.pseudo.update(pseudo or {})
        self.refs = refs or {}
        self.attrs = attrs or {}

    def condition(self, name):
        return bool(self.value((self.cfn.get("Conditions") or {})[name]))

    def _ref(self, name):
        if name in self.pseudo:
            return self.pseudo[name]
        if name in self.params:
            return self.params[name]
        return self.refs.get(name, MISSING)

    def value(self, node):
        if isinstance(node, list):
            out = [self.value(item) for item in node]
            return [item for item in out if item is not _NO_VALUE]
        if not isinstance(node, dict):
            return node
        if len(node) == 1:
            ((key, arg),) = node.items()
            if key == "Ref":
                if arg == "AWS::NoValue":
                    return _NO_VALUE
                return self._ref(arg)
            if key == "Condition":
                return self.condition(arg)
            if key == "Fn::GetAtt":
                logical, attr = arg if isinstance(arg, list) else arg.split(".", 1)
                return self.attrs.get((logical, attr), MISSING)
            if key == "Fn::If":
                name, yes, no = arg
                return self.value(yes if self.condition(name) else no)
            if key == "Fn::Equals":
                left, right = (self.value(a) for a in arg)
                return str(left) == str(right)
            if key == "Fn::Not":
                return not self.value(arg[0])
            if key == "Fn::And":
                return all(self.value(a) for a in arg)
            if key == "Fn::Or":
                return any(self.value(a) for a in arg)
            if key == "Fn::Select":
                index, items = self.value(arg[0]), self.value(arg[1])
                return MISSING if items is MISSING else items[int(index)]
            if key == "Fn::Split":
                sep, text = self.value(arg[0]), self.value(arg[1])
                return MISSING if text is MISSING else text.split(sep)
            if key == "Fn::Join":
                sep, items = self.value(arg[0]), self.value(arg[1])
                if any(i is MISSING for i in items):
                    return MISSING
                return sep.join(str(i) for i in items)
            if key == "Fn::Sub":
                text, extra = (arg, {}) if isinstance(arg, str) else (arg[0], arg[1])
                local = {k: self.value(v) for k, v in extra.items()}
                missing = []

                def substitute(match):
                    name = match.group(1)
                    if name in local:
                        got = local[name]
                    elif "." in name and name.split(".", 1)[0] not in self.params:
                        got = self.attrs.get(tuple(name.split(".", 1)), MISSING)
                    else:
                        got = self._ref(name)
                    if got is MISSING:
                        missing.append(name)
                        return ""
                    return str(got)

                out = _SUB_VAR.sub(substitute, text)
                return MISSING if missing else out
        out = {}
        for key, item in node.items():
            got = self.value(item)
            if got is not _NO_VALUE:
                out[key] = got
        return out

    def policies(self):
        """(where, policy document) for every IAM policy of every role, rendered."""
        found = []
        for logical, resource in (self.cfn.get("Resources") or {}).items():
            if resource.get("Type") != "AWS::IAM::Role":
                continue
            props = resource.get("Properties") or {}
            for policy in self.value(props.get("Policies") or []):
                found.append((f"{logical}/{policy.get('PolicyName')}", policy["PolicyDocument"]))
            for arn in props.get("ManagedPolicyArns") or []:
                found.append((f"{logical}/managed", {"managed": arn}))
        return found


class _NoValue:
    def __repr__(self):
        return "<AWS::NoValue>"


_NO_VALUE = _NoValue()
