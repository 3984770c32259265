#!/usr/bin/env python3
"""The checks of openapi.yaml that no maintained OpenAPI validator makes.

Usage: .venv/bin/python scripts/validate_openapi.py openapi.yaml

`make openapi` first runs openapi-spec-validator (pinned in requirements-dev.txt), which owns the
document's validity: the OpenAPI 3.1 meta-schema, every schema against its JSON Schema dialect
(so a `pattern` that is not a regex, in the schemas it walks), `$ref`s that resolve, unique
operationIds, path parameters declared for every template and no duplicate parameter, `required`
naming defined properties, `default` values valid against their schema. This script keeps only
what that tool does not check, in order (Spectral and Redocly, Node tools, also validate
examples, but not with jsonschema-rs, and none of them knows this API's own rules):
  1. the file is YAML whose values are all JSON values: no duplicate keys (a YAML loader keeps
     the last one silently, and so does the tool), no unquoted YAML timestamps, string keys only;
  2. every `pattern` compiles, in Python `re` and in the Rust engine schemathesis uses
     (jsonschema-rs): the tool walks component, parameter and media-type schemas only, never a
     response header's, and never tries the Rust engine;
  3. every example (schema `example`/`examples`, media type, parameter and header
     `example`/`examples[*].value`) validates against its own schema with jsonschema
     (Draft 2020-12, formats checked) and with jsonschema-rs (what schemathesis will generate
     and check against);
  4. the project's conventions: every operation response documents `x-request-id` and an
     `application/json` body with a schema and at least one example (204: no body);
  5. every link (schemathesis' stateful phase walks them) names an existing operation and
     parameters of it, gives every path parameter, and resolves on every example of its response
     to a value the target parameter accepts;
  6. the API's rules: the webhook view is the created webhook without `signingSecret` (same
     fields, same order), the rotate answer the view plus the new secret; every operation
     documents 401/405/429/500/503 (and 404 under /webhooks/{id}); X-RateLimit-* on every
     authenticated answer (required where the request was surely counted); Allow, Retry-After,
     Location, ETag and Cache-Control where the specs put them; Idempotency-Key on every POST,
     If-Match on PATCH and DELETE; PATCH takes application/json and application/merge-patch+json.

Exits 0 with a one-line summary, or 1 listing every problem found (2 on usage errors).
"""

from __future__ import annotations

import datetime
import re
import sys
import urllib.parse
from collections.abc import Iterator
from typing import Any

try:
    import yaml
except ImportError:  # pragma: no cover - depends on the environment
    sys.exit("validate_openapi: PyYAML is required (pip install pyyaml)")

try:
    import jsonschema
    from jsonschema import Draft202012Validator, FormatChecker
    from referencing import Registry, Resource
    from referencing.jsonschema import DRAFT202012
except ImportError:  # pragma: no cover - depends on the environment
    sys.exit("validate_openapi: jsonschema>=4.18 is required (pip install jsonschema)")

try:
    import jsonschema_rs
except ImportError:  # pragma: no cover - depends on the environment
    sys.exit("validate_openapi: jsonschema-rs is required (pip install -r requirements-dev.txt)")

DOC_URI = "urn:instaview:openapi"
HTTP_METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")
NO_BODY_STATUSES = ("204", "304")

# Schema keywords whose values are schemas, maps of schemas or lists of schemas.
SCHEMA_ONE = (
    "items",
    "not",
    "if",
    "then",
    "else",
    "additionalProperties",
    "contains",
    "propertyNames",
    "unevaluatedItems",
    "unevaluatedProperties",
    "contentSchema",
)
SCHEMA_MAP = ("properties", "patternProperties", "$defs", "definitions", "dependentSchemas")
SCHEMA_LIST = ("allOf", "anyOf", "oneOf", "prefixItems")


class Problems:
    def __init__(self) -> None:
        self.items: list[str] = []

    def add(self, where: str, message: str) -> None:
        self.items.append(f"{where}: {message}")


# ---------------------------------------------------------------------------- loading


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that refuses duplicate mapping keys."""


def _construct_mapping(loader: _StrictLoader, node: yaml.MappingNode, deep: bool = False) -> dict:
    loader.flatten_mapping(node)
    mapping: dict = {}
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in mapping:
            raise yaml.constructor.ConstructorError(
                "while constructing a mapping",
                node.start_mark,
                f"found duplicate key {key!r}",
                key_node.start_mark,
            )
        mapping[key] = loader.construct_object(value_node, deep=deep)
    return mapping


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def load_document(path: str) -> Any:
    with open(path, encoding="utf-8") as handle:
        return yaml.load(handle, Loader=_StrictLoader)  # noqa: S506 - a SafeLoader subclass


def check_json_compatible(node: Any, ptr: str, problems: Problems) -> None:
    """YAML can hold values JSON cannot: report them (they would reach tools as non-JSON)."""
    if isinstance(node, dict):
        for key, value in node.items():
            if not isinstance(key, str):
                problems.add(
                    ptr or "/",
                    f"mapping key {key!r} is a {type(key).__name__}, not a string; quote it",
                )
                key = str(key)
            check_json_compatible(value, f"{ptr}/{escape(key)}", problems)
    elif isinstance(node, list):
        for index, value in enumerate(node):
            check_json_compatible(value, f"{ptr}/{index}", problems)
    elif isinstance(node, (datetime.date, datetime.datetime)):
        problems.add(ptr, f"unquoted YAML timestamp {node!r}; quote it so it stays a string")
    elif node is not None and not isinstance(node, (str, bool, int, float)):
        problems.add(ptr, f"value of type {type(node).__name__} is not JSON")


# ---------------------------------------------------------------------------- helpers


def escape(token: str) -> str:
    return token.replace("~", "~0").replace("/", "~1")


def resolve(doc: dict, node: Any) -> tuple[Any, str | None]:
    """Follow local `$ref`s (OpenAPI reference objects); returns the target and its pointer."""
    ptr = None
    seen = set()
    while isinstance(node, dict) and isinstance(node.get("$ref"), str):
        ref = node["$ref"]
        if not ref.startswith("#") or ref in seen:
            return None, None
        seen.add(ref)
        ptr = urllib.parse.unquote(ref[1:])
        try:
            node = pointer_get(doc, ptr)
        except (KeyError, IndexError, ValueError, TypeError):
            return None, None
    return node, ptr


def pointer_get(doc: Any, ptr: str) -> Any:
    node = doc
    for raw in ptr.split("/")[1:]:
        token = raw.replace("~1", "/").replace("~0", "~")
        if isinstance(node, list):
            node = node[int(token)]
        else:
            node = node[token]
    return node


def make_format_checker() -> FormatChecker:
    """jsonschema's format checker, plus fallbacks for formats whose packages are missing."""
    checker = FormatChecker()
    checkers = checker.checkers

    if "uuid" not in checkers:

        @checker.checks("uuid", raises=ValueError)
        def _uuid(value: object) -> bool:
            return (
                not isinstance(value, str)
                or re.fullmatch(
                    r"[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}",
                    value,
                )
                is not None
            )

    if "date-time" not in checkers:

        @checker.checks("date-time", raises=ValueError)
        def _date_time(value: object) -> bool:
            if not isinstance(value, str):
                return True
            if not re.fullmatch(
                r"\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})",
                value,
                re.ASCII,
            ):
                return False
            datetime.datetime.fromisoformat(re.sub(r"[Zz]$", "+00:00", value.replace("t", "T")))
            return True

    if "uri" not in checkers:
        # RFC 3986 absolute URI, ASCII only (`rfc3987` is not installed).
        uri_re = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*:[!#$%&'()*+,\-./0-9:;=?@A-Z\[\]_a-z~]*")

        @checker.checks("uri")
        def _uri(value: object) -> bool:
            return not isinstance(value, str) or uri_re.fullmatch(value) is not None

    return checker


# ---------------------------------------------------------------------------- collecting examples


def walk_schema(node: Any, ptr: str, out: list) -> None:
    """Collect `example`/`examples` of a schema object and of its subschemas."""
    if not isinstance(node, dict):
        return
    if "example" in node:
        out.append((ptr, node["example"], f"{ptr}/example"))
    if isinstance(node.get("examples"), list):
        for index, value in enumerate(node["examples"]):
            out.append((ptr, value, f"{ptr}/examples/{index}"))
    for key in SCHEMA_ONE:
        if isinstance(node.get(key), dict):
            walk_schema(node[key], f"{ptr}/{key}", out)
    for key in SCHEMA_MAP:
        if isinstance(node.get(key), dict):
            for name, sub in node[key].items():
                walk_schema(sub, f"{ptr}/{key}/{escape(name)}", out)
    for key in SCHEMA_LIST:
        if isinstance(node.get(key), list):
            for index, sub in enumerate(node[key]):
                walk_schema(sub, f"{ptr}/{key}/{index}", out)


def walk_examples_of(
    owner: dict, owner_ptr: str, schema_ptr: str | None, doc: dict, out: list, problems: Problems
) -> None:
    """`example` / `examples` of a media type, parameter or header, checked against `schema_ptr`."""
    found = []
    if "example" in owner:
        found.append((owner["example"], f"{owner_ptr}/example"))
    if isinstance(owner.get("examples"), dict):
        for name, example in owner["examples"].items():
            target, _ = resolve(doc, example)
            where = f"{owner_ptr}/examples/{escape(name)}"
            if not isinstance(target, dict):
                problems.add(where, "example reference does not resolve")
            elif "value" in target:
                found.append((target["value"], f"{where}/value"))
            elif "externalValue" not in target:
                problems.add(where, "example object has neither `value` nor `externalValue`")
    if found and schema_ptr is None:
        problems.add(owner_ptr, "has an example but no schema to check it against")
        return
    for value, where in found:
        out.append((schema_ptr, value, where))


def walk_media_types(content: Any, ptr: str, doc: dict, out: list, problems: Problems) -> None:
    if not isinstance(content, dict):
        return
    for media, media_type in content.items():
        mptr = f"{ptr}/{escape(media)}"
        if not isinstance(media_type, dict):
            continue
        has_schema = "schema" in media_type
        if has_schema:
            walk_schema(media_type["schema"], f"{mptr}/schema", out)
        walk_examples_of(
            media_type, mptr, f"{mptr}/schema" if has_schema else None, doc, out, problems
        )


def walk_parameter_like(node: Any, ptr: str, doc: dict, out: list, problems: Problems) -> None:
    """A parameter or header object (references are walked where they are defined)."""
    if not isinstance(node, dict) or "$ref" in node:
        return
    if "schema" in node:
        walk_schema(node["schema"], f"{ptr}/schema", out)
        walk_examples_of(node, ptr, f"{ptr}/schema", doc, out, problems)
    elif "content" in node:
        walk_examples_of(node, ptr, None, doc, [], Problems())  # examples live in content
        walk_media_types(node["content"], f"{ptr}/content", doc, out, problems)


def walk_response(node: Any, ptr: str, doc: dict, out: list, problems: Problems) -> None:
    if not isinstance(node, dict) or "$ref" in node:
        return
    for name, header in (node.get("headers") or {}).items():
        walk_parameter_like(header, f"{ptr}/headers/{escape(name)}", doc, out, problems)
    walk_media_types(node.get("content"), f"{ptr}/content", doc, out, problems)


def walk_request_body(node: Any, ptr: str, doc: dict, out: list, problems: Problems) -> None:
    if isinstance(node, dict) and "$ref" not in node:
        walk_media_types(node.get("content"), f"{ptr}/content", doc, out, problems)


def walk_path_item(item: Any, ptr: str, doc: dict, out: list, problems: Problems) -> None:
    if not isinstance(item, dict) or "$ref" in item:
        return
    for index, param in enumerate(item.get("parameters") or []):
        walk_parameter_like(param, f"{ptr}/parameters/{index}", doc, out, problems)
    for method in HTTP_METHODS:
        operation = item.get(method)
        if not isinstance(operation, dict):
            continue
        optr = f"{ptr}/{method}"
        for index, param in enumerate(operation.get("parameters") or []):
            walk_parameter_like(param, f"{optr}/parameters/{index}", doc, out, problems)
        walk_request_body(operation.get("requestBody"), f"{optr}/requestBody", doc, out, problems)
        for status, response in (operation.get("responses") or {}).items():
            walk_response(response, f"{optr}/responses/{escape(str(status))}", doc, out, problems)


def collect_examples(doc: dict, problems: Problems) -> list[tuple[str, Any, str]]:
    """(pointer of the schema, example value, pointer of the example) for every example."""
    out: list[tuple[str, Any, str]] = []
    for section in ("paths", "webhooks"):
        for path, item in (doc.get(section) or {}).items():
            walk_path_item(item, f"/{section}/{escape(path)}", doc, out, problems)
    components = doc.get("components") or {}
    for name, schema in (components.get("schemas") or {}).items():
        walk_schema(schema, f"/components/schemas/{escape(name)}", out)
    for kind in ("parameters", "headers"):
        for name, node in (components.get(kind) or {}).items():
            walk_parameter_like(node, f"/components/{kind}/{escape(name)}", doc, out, problems)
    for name, node in (components.get("requestBodies") or {}).items():
        walk_request_body(node, f"/components/requestBodies/{escape(name)}", doc, out, problems)
    for name, node in (components.get("responses") or {}).items():
        walk_response(node, f"/components/responses/{escape(name)}", doc, out, problems)
    for name, item in (components.get("pathItems") or {}).items():
        walk_path_item(item, f"/components/pathItems/{escape(name)}", doc, out, problems)
    return out


# ---------------------------------------------------------------------------- checks


def check_patterns(node: Any, ptr: str, problems: Problems) -> int:
    """Compile every string `pattern` under a schema-looking mapping; returns how many.

    openapi-spec-validator compiles the patterns of the schemas it walks, but not those of
    response headers, and only with Python's engine; schemathesis generates with jsonschema-rs.
    """
    count = 0
    if isinstance(node, dict):
        pattern = node.get("pattern")
        if isinstance(pattern, str) and (
            "type" in node
            or "format" in node
            or "minLength" in node
            or "maxLength" in node
            or len(node) == 1
        ):
            count += 1
            try:
                re.compile(pattern)
            except re.error as exc:
                problems.add(f"{ptr}/pattern", f"does not compile as a Python regex: {exc}")
            try:
                jsonschema_rs.Draft202012Validator({"pattern": pattern})
            except Exception as exc:  # noqa: BLE001 - report whatever the engine says
                problems.add(f"{ptr}/pattern", f"jsonschema-rs refuses it: {first_line(exc)}")
        for key, value in node.items():
            count += check_patterns(value, f"{ptr}/{escape(str(key))}", problems)
    elif isinstance(node, list):
        for index, value in enumerate(node):
            count += check_patterns(value, f"{ptr}/{index}", problems)
    return count


def check_examples(doc: dict, examples: list, problems: Problems) -> None:
    registry = Registry().with_resource(
        DOC_URI, Resource.from_contents(doc, default_specification=DRAFT202012)
    )
    format_checker = make_format_checker()
    rs_registry = None
    try:
        rs_registry = jsonschema_rs.Registry([(DOC_URI, doc)], draft=jsonschema_rs.Draft202012)
    except Exception as exc:  # noqa: BLE001
        problems.add("document", f"jsonschema-rs cannot load it: {first_line(exc)}")
    for schema_ptr, value, where in examples:
        ref = {"$ref": DOC_URI + "#" + urllib.parse.quote(schema_ptr, safe="/~!$&'()*+,;=:@-._")}
        validator = Draft202012Validator(ref, registry=registry, format_checker=format_checker)
        try:
            errors = sorted(validator.iter_errors(value), key=lambda e: list(e.absolute_path))
        except jsonschema.exceptions.SchemaError as exc:
            problems.add(where, f"schema {schema_ptr} is invalid: {exc.message}")
            continue
        except Exception as exc:  # noqa: BLE001 - unresolvable references and the like
            problems.add(where, f"cannot check against {schema_ptr}: {first_line(exc)}")
            continue
        for error in errors:
            at = "/".join(str(part) for part in error.absolute_path)
            problems.add(
                where, f"does not validate against {schema_ptr} at '/{at}': {error.message}"
            )
        if rs_registry is not None and not errors:
            try:
                rs_validator = jsonschema_rs.Draft202012Validator(
                    ref, registry=rs_registry, validate_formats=True
                )
                for error in rs_validator.iter_errors(value):
                    problems.add(
                        where,
                        f"jsonschema-rs (used by schemathesis) rejects it against {schema_ptr}: "
                        f"{first_line(error)}",
                    )
            except Exception as exc:  # noqa: BLE001
                problems.add(
                    where, f"jsonschema-rs cannot check against {schema_ptr}: {first_line(exc)}"
                )


def check_conventions(doc: dict, problems: Problems) -> None:
    """Project rules: every answer documents x-request-id and a JSON body with a schema and an
    example."""
    for path, item in (doc.get("paths") or {}).items():
        item, _ = resolve(doc, item)
        if not isinstance(item, dict):
            continue
        for method in HTTP_METHODS:
            operation = item.get(method)
            if not isinstance(operation, dict):
                continue
            for status, response in (operation.get("responses") or {}).items():
                where = f"{method.upper()} {path} -> {status}"
                response, _ = resolve(doc, response)
                if not isinstance(response, dict):
                    problems.add(where, "response does not resolve")
                    continue
                headers = {name.lower(): name for name in (response.get("headers") or {})}
                if "x-request-id" not in headers:
                    problems.add(where, "does not document the x-request-id header")
                if str(status) in NO_BODY_STATUSES:
                    if response.get("content"):
                        problems.add(where, "documents a body, but this status has none")
                    continue
                media = (response.get("content") or {}).get("application/json")
                if not isinstance(media, dict):
                    problems.add(where, "has no application/json content")
                    continue
                if "schema" not in media:
                    problems.add(where, "application/json content has no schema")
                if "example" not in media and not media.get("examples"):
                    problems.add(where, "application/json content has no example")


# ---------------------------------------------------------------------------- links and API rules

RATE_LIMIT_HEADERS = tuple(
    f"x-ratelimit-{kind}-{window}"
    for window in ("minute", "hour")
    for kind in ("limit", "remaining", "reset")
)
# Answers always given after the request was counted: the six rate-limit headers are required.
COUNTED_STATUSES = ("200", "201", "204", "400", "409", "412", "413", "415", "429")


def operations(doc: dict) -> Iterator[tuple[str, str, dict, dict]]:
    for path, item in (doc.get("paths") or {}).items():
        item, _ = resolve(doc, item)
        if not isinstance(item, dict):
            continue
        for method in HTTP_METHODS:
            if isinstance(item.get(method), dict):
                yield path, method, item, item[method]


def operation_parameters(doc: dict, item: dict, operation: dict) -> dict[tuple[str, str], dict]:
    """(location, lower-cased name) -> parameter; the operation's override the path item's."""
    found: dict[tuple[str, str], dict] = {}
    for param in (item.get("parameters") or []) + (operation.get("parameters") or []):
        param, _ = resolve(doc, param)
        if isinstance(param, dict) and "name" in param and "in" in param:
            found[(param["in"], param["name"].lower())] = param
    return found


def response_examples(response: dict) -> list[Any]:
    media = (response.get("content") or {}).get("application/json") or {}
    values = [media["example"]] if "example" in media else []
    for example in (media.get("examples") or {}).values():
        if isinstance(example, dict) and "value" in example:
            values.append(example["value"])
    return values


def check_links(doc: dict, problems: Problems) -> int:
    """Every link names an existing operation and its parameters, and resolves on every example."""
    by_id = {
        op.get("operationId"): (path, method, item, op)
        for path, method, item, op in operations(doc)
    }
    count = 0
    for path, method, _item, operation in operations(doc):
        for status, response in (operation.get("responses") or {}).items():
            response, _ = resolve(doc, response)
            if not isinstance(response, dict):
                continue
            for name, link in (response.get("links") or {}).items():
                where = f"{method.upper()} {path} -> {status} link {name}"
                link, _ = resolve(doc, link)
                if not isinstance(link, dict):
                    problems.add(where, "does not resolve")
                    continue
                count += 1
                target = by_id.get(link.get("operationId"))
                if target is None:
                    problems.add(where, f"operationId {link.get('operationId')!r} does not exist")
                    continue
                t_path, t_method, t_item, t_op = target
                params = operation_parameters(doc, t_item, t_op)
                required_path = {n for (loc, n), p in params.items() if loc == "path"}
                given_path = set()
                for key, expression in (link.get("parameters") or {}).items():
                    location, _, pname = key.rpartition(".")
                    candidates = (
                        [(location, pname.lower())]
                        if location
                        else [(loc, n) for (loc, n) in params if n == pname.lower()]
                    )
                    match = [c for c in candidates if c in params]
                    if not match:
                        problems.add(
                            where,
                            f"parameter {key!r} is not a parameter of {t_method.upper()} {t_path}",
                        )
                        continue
                    if match[0][0] == "path":
                        given_path.add(match[0][1])
                    check_link_expression(
                        doc, where, key, expression, params[match[0]], response, problems
                    )
                for missing in sorted(required_path - given_path):
                    problems.add(where, f"does not give the path parameter {missing!r} of {t_path}")
    return count


def check_link_expression(
    doc: dict,
    where: str,
    key: str,
    expression: Any,
    param: dict,
    response: dict,
    problems: Problems,
) -> None:
    if not isinstance(expression, str):
        return
    if expression.startswith("$response.body#"):
        pointer = expression[len("$response.body#") :]
        schema = param.get("schema") or {}
        for value in response_examples(response):
            try:
                resolved = pointer_get(value, pointer)
            except (KeyError, IndexError, ValueError, TypeError):
                if not (isinstance(value, dict) and value.get("data") == {"data": [], "total": 0}):
                    problems.add(
                        where, f"{expression} does not resolve on an example of the response"
                    )
                continue
            errors = list(
                Draft202012Validator(schema, format_checker=make_format_checker()).iter_errors(
                    resolved
                )
            )
            if errors:
                problems.add(
                    where,
                    f"{expression} gives {resolved!r}, which {key!r} refuses: {errors[0].message}",
                )
    elif expression.startswith("$response.header."):
        header = expression[len("$response.header.") :].lower()
        if header not in {h.lower() for h in (response.get("headers") or {})}:
            problems.add(where, f"{expression}: the response does not document that header")
    elif not expression.startswith("$request."):
        problems.add(where, f"unsupported link expression {expression!r}")


def property_names(doc: dict, name: str) -> list[str]:
    schema = ((doc.get("components") or {}).get("schemas") or {}).get(name) or {}
    return list((schema.get("properties") or {}).keys())


def check_api_rules(doc: dict, problems: Problems) -> None:
    """The rules of WEBHOOKS-API.md and DELIVERY.md that a document can carry."""
    created, view, rotated = (
        property_names(doc, n) for n in ("Webhook", "WebhookView", "RotatedWebhook")
    )
    if view != [p for p in created if p != "signingSecret"]:
        problems.add(
            "WebhookView",
            f"must be the created webhook's fields without signingSecret, in order: {view}",
        )
    if rotated != view + ["signingSecret", "previousSecretExpiresAt"]:
        problems.add(
            "RotatedWebhook",
            "must be the view's fields, then signingSecret and previousSecretExpiresAt",
        )
    schemas = (doc.get("components") or {}).get("schemas") or {}
    for name, fields in (("WebhookView", view), ("RotatedWebhook", rotated), ("Webhook", created)):
        if list((schemas.get(name) or {}).get("required") or []) != fields:
            problems.add(name, "`required` must list every field, in the order of `properties`")

    for path, method, item, operation in operations(doc):
        label = f"{method.upper()} {path}"
        params = operation_parameters(doc, item, operation)
        statuses = {str(s) for s in (operation.get("responses") or {})}
        for needed in ("401", "405", "429", "500", "503"):
            if needed not in statuses:
                problems.add(label, f"does not document {needed}")
        if "{id}" in path and "404" not in statuses:
            problems.add(label, "does not document 404 RESOURCE_NOT_FOUND")
        if method == "post" and ("header", "idempotency-key") not in params:
            problems.add(label, "a POST without the Idempotency-Key header parameter")
        if method in ("patch", "delete") and ("header", "if-match") not in params:
            problems.add(label, "does not take If-Match")
        for status, response in (operation.get("responses") or {}).items():
            response, _ = resolve(doc, response)
            if not isinstance(response, dict):
                continue
            where = f"{label} -> {status}"
            headers = {}
            for hname, header in (response.get("headers") or {}).items():
                header, _ = resolve(doc, header)
                headers[hname.lower()] = header if isinstance(header, dict) else {}
            if str(status) in COUNTED_STATUSES:
                for rl in RATE_LIMIT_HEADERS:
                    if not headers.get(rl, {}).get("required"):
                        problems.add(where, f"does not require the {rl} header")
            # 401, 405 and a route's 404 NOT_FOUND come before the request is counted.
            elif str(status) not in ("401", "405") and not (
                str(status) == "404" and "{id}" not in path
            ):
                for rl in RATE_LIMIT_HEADERS:
                    if rl not in headers:
                        problems.add(where, f"does not document the {rl} header")
            if str(status) in ("405",) and not headers.get("allow", {}).get("required"):
                problems.add(where, "does not require the Allow header")
            if str(status) in ("429", "503") and not headers.get("retry-after", {}).get("required"):
                problems.add(where, "does not require the Retry-After header")
            if str(status) == "201" and not headers.get("location", {}).get("required"):
                problems.add(where, "does not require the Location header")
    for operation_id in ("getWebhook", "updateWebhook", "resetWebhookCircuit"):
        for path, method, _item, operation in operations(doc):
            if operation.get("operationId") != operation_id:
                continue
            response, _ = resolve(doc, (operation.get("responses") or {}).get("200"))
            headers = {h.lower() for h in ((response or {}).get("headers") or {})}
            for needed in ("etag", "cache-control"):
                if needed not in headers:
                    problems.add(f"{method.upper()} {path} -> 200", f"does not document {needed}")
    for path, method, _item, operation in operations(doc):
        if method == "patch":
            content = (resolve(doc, operation.get("requestBody"))[0] or {}).get("content") or {}
            if set(content) != {"application/json", "application/merge-patch+json"}:
                problems.add(
                    f"PATCH {path}", "must take application/json and application/merge-patch+json"
                )


def report(path: str, problems: Problems) -> int:
    print(f"validate_openapi: FAILED: {path}: {len(problems.items)} problem(s):", file=sys.stderr)
    for item in problems.items:
        print(f"  - {item}", file=sys.stderr)
    return 1


def first_line(exc: object) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else repr(exc)


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(f"usage: {argv[0]} openapi.yaml", file=sys.stderr)
        return 2
    path = argv[1]
    problems = Problems()

    try:
        doc = load_document(path)
    except (OSError, yaml.YAMLError) as exc:
        print(f"validate_openapi: FAILED: cannot load {path}: {exc}", file=sys.stderr)
        return 1
    if not isinstance(doc, dict):
        print(f"validate_openapi: FAILED: {path} is not a YAML mapping", file=sys.stderr)
        return 1

    check_json_compatible(doc, "", problems)
    if problems.items:  # later checks need a JSON document
        return report(path, problems)

    pattern_count = check_patterns(doc, "", problems)
    examples = collect_examples(doc, problems)
    check_examples(doc, examples, problems)
    check_conventions(doc, problems)
    link_count = check_links(doc, problems)
    check_api_rules(doc, problems)

    if problems.items:
        return report(path, problems)

    print(
        f"validate_openapi: OK: {path}: JSON-compatible YAML; {len(examples)} examples valid "
        f"against their schemas (jsonschema + jsonschema-rs); {pattern_count} patterns compile; "
        f"{link_count} links resolve; conventions and API rules hold"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
