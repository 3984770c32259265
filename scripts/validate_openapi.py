#!/usr/bin/env python3
"""Validate the OpenAPI document of the InstaView webhooks API.

Usage: .venv/bin/python scripts/validate_openapi.py openapi.yaml

Checks, in order:
  1. the file is YAML whose values are all JSON values (no duplicate keys, no unquoted
     YAML timestamps, string keys only);
  2. the document is valid OpenAPI (openapi-spec-validator, when importable);
  3. every `pattern` in the document compiles (Python `re`, and the Rust engine
     schemathesis uses via jsonschema-rs when importable);
  4. every example (schema `example`/`examples`, media type, parameter and header
     `example`/`examples[*].value`) validates against its own schema with jsonschema
     (Draft 2020-12, formats checked), and also with jsonschema-rs when importable;
  5. the project's conventions: every operation response documents `x-request-id` and an
     `application/json` body with a schema and at least one example.

Exits 0 with a one-line summary, or 1 listing every problem found (2 on usage errors).
"""

from __future__ import annotations

import datetime
import re
import sys
import urllib.parse
from typing import Any, Iterator

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
    import openapi_spec_validator
except ImportError:  # pragma: no cover - depends on the environment
    openapi_spec_validator = None

try:
    import jsonschema_rs
except ImportError:  # pragma: no cover - depends on the environment
    jsonschema_rs = None

DOC_URI = "urn:instaview:openapi"
HTTP_METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")
NO_BODY_STATUSES = ("204", "304")

# Schema keywords whose values are schemas, maps of schemas or lists of schemas.
SCHEMA_ONE = (
    "items", "not", "if", "then", "else", "additionalProperties", "contains", "propertyNames",
    "unevaluatedItems", "unevaluatedProperties", "contentSchema",
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
                "while constructing a mapping", node.start_mark,
                f"found duplicate key {key!r}", key_node.start_mark,
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
                problems.add(ptr or "/", f"mapping key {key!r} is a {type(key).__name__}, not a string; quote it")
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
    """jsonschema's format checker, plus fallbacks for formats whose optional packages are missing."""
    checker = FormatChecker()
    checkers = checker.checkers

    if "uuid" not in checkers:
        @checker.checks("uuid", raises=ValueError)
        def _uuid(value: object) -> bool:
            return not isinstance(value, str) or re.fullmatch(
                r"[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}", value
            ) is not None

    if "date-time" not in checkers:
        @checker.checks("date-time", raises=ValueError)
        def _date_time(value: object) -> bool:
            if not isinstance(value, str):
                return True
            if not re.fullmatch(
                r"\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})", value, re.ASCII
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


def walk_examples_of(owner: dict, owner_ptr: str, schema_ptr: str | None, doc: dict,
                     out: list, problems: Problems) -> None:
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
        walk_examples_of(media_type, mptr, f"{mptr}/schema" if has_schema else None, doc, out, problems)


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
    """Compile every string `pattern` under a schema-looking mapping; returns how many."""
    count = 0
    if isinstance(node, dict):
        pattern = node.get("pattern")
        if isinstance(pattern, str) and ("type" in node or "format" in node or "minLength" in node
                                         or "maxLength" in node or len(node) == 1):
            count += 1
            try:
                re.compile(pattern)
            except re.error as exc:
                problems.add(f"{ptr}/pattern", f"does not compile as a Python regex: {exc}")
            if jsonschema_rs is not None:
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
    registry = Registry().with_resource(DOC_URI, Resource.from_contents(doc, default_specification=DRAFT202012))
    format_checker = make_format_checker()
    rs_registry = None
    if jsonschema_rs is not None:
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
            problems.add(where, f"does not validate against {schema_ptr} at '/{at}': {error.message}")
        if rs_registry is not None and not errors:
            try:
                rs_validator = jsonschema_rs.Draft202012Validator(
                    ref, registry=rs_registry, validate_formats=True
                )
                for error in rs_validator.iter_errors(value):
                    problems.add(
                        where,
                        f"jsonschema-rs (used by schemathesis) rejects it against {schema_ptr}: {first_line(error)}",
                    )
            except Exception as exc:  # noqa: BLE001
                problems.add(where, f"jsonschema-rs cannot check against {schema_ptr}: {first_line(exc)}")


def check_conventions(doc: dict, problems: Problems) -> None:
    """Project rules: every answer documents x-request-id and a JSON body with a schema and an example."""
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

    spec_note = "openapi-spec-validator not installed, OpenAPI structure NOT checked"
    if openapi_spec_validator is not None:
        try:
            openapi_spec_validator.validate(doc)
            version = doc.get("openapi")
            spec_note = f"valid OpenAPI {version} (openapi-spec-validator)"
        except Exception as exc:  # noqa: BLE001 - the validator raises several kinds
            message = getattr(exc, "message", None) or str(exc)
            problems.add("document", f"not valid OpenAPI: {message.splitlines()[0] if message else exc!r}")
    else:
        print(f"validate_openapi: warning: {spec_note}", file=sys.stderr)

    pattern_count = check_patterns(doc, "", problems)
    examples = collect_examples(doc, problems)
    check_examples(doc, examples, problems)
    check_conventions(doc, problems)

    if problems.items:
        return report(path, problems)

    engines = "jsonschema" + (" + jsonschema-rs" if jsonschema_rs is not None else "")
    print(
        f"validate_openapi: OK: {path}: {spec_note}; {len(examples)} examples valid against their "
        f"schemas ({engines}); {pattern_count} patterns compile"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
