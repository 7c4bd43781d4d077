"""OpenAPI 3.1 for a function, generated from the msgspec types that validate its requests.

OpenAPI 3.1 schemas are JSON Schema 2020-12, which is what msgspec emits, so no translation is needed.
"""

from __future__ import annotations

import re
from typing import Any

import msgspec

from shared.http import PROBLEM_JSON, Api, Operation

REF = "#/components/schemas/{name}"
_PATH_PARAM = re.compile(r"{([^}:]+)(?::[^}]+)?}")

PROBLEM_SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": "RFC 9457 problem details",
    "properties": {
        "type": {"type": "string"},
        "title": {"type": "string"},
        "status": {"type": "integer"},
        "detail": {"type": "string"},
        "field": {"type": "string", "description": "the input that is wrong, e.g. body.cost"},
        "request_id": {"type": "string"},
    },
    "required": ["type", "title", "status", "detail"],
}


def _parameters(kind: str, struct: type | None, schemas: dict[str, Any]) -> list[dict[str, Any]]:
    if struct is None:
        return []
    (ref,), components = msgspec.json.schema_components([struct], ref_template=REF)
    schemas.update(components)
    model = components[ref["$ref"].rsplit("/", 1)[1]]
    required = set(model.get("required", []))
    return [
        {"name": name, "in": kind, "required": kind == "path" or name in required, "schema": schema}
        for name, schema in model.get("properties", {}).items()
    ]


def _schema(kind: type, schemas: dict[str, Any]) -> dict[str, Any]:
    (schema,), components = msgspec.json.schema_components([kind], ref_template=REF)
    schemas.update(components)
    return schema


def _operation(op: Operation, schemas: dict[str, Any]) -> dict[str, Any]:
    problem = {
        "description": "problem details",
        "content": {PROBLEM_JSON: {"schema": {"$ref": REF.format(name="Problem")}}},
    }
    responses: dict[str, Any] = {}
    for status, kind in op.responses.items():
        if kind is not None:
            content = {"application/json": {"schema": _schema(kind, schemas)}}
            responses[str(status)] = {"description": "success" if status < 400 else "error", "content": content}
        else:  # an error status without a body type of its own is a problem document
            responses[str(status)] = problem if status >= 400 else {"description": "success"}
    for status in ((400, 422) if (op.body or op.query or op.path_params) else ()) + ((401, 503) if op.admin else ()):
        responses.setdefault(str(status), problem)
    if op.limit is not None:  # the guard may answer instead of the handler, and adds its headers
        for status in op.limit.statuses:
            responses.setdefault(str(status), problem)
        header_docs = {name: {"schema": {"type": "string"}} for name in op.limit.headers}
        for code, response in list(responses.items()):
            if int(code) < 300 or int(code) == 429:
                responses[code] = {**response, "headers": header_docs}
    responses.setdefault("default", problem)
    operation: dict[str, Any] = {
        "operationId": f"{op.method.lower()}_{op.handler.__name__}",
        "summary": op.summary,
        "parameters": _parameters("path", op.path_params, schemas) + _parameters("query", op.query, schemas),
        "responses": responses,
    }
    if op.body is not None:
        operation["requestBody"] = {
            "required": True,
            "content": {"application/json": {"schema": _schema(op.body, schemas)}},
        }
    if op.admin:
        operation["security"] = [{"adminToken": []}]
    return operation


def openapi_document(api: Api) -> dict[str, Any]:
    schemas: dict[str, Any] = {"Problem": PROBLEM_SCHEMA}
    paths: dict[str, dict[str, Any]] = {}
    for op in api.operations:
        paths.setdefault(_PATH_PARAM.sub(r"{\1}", op.path), {})[op.method.lower()] = _operation(op, schemas)
    return {
        "openapi": "3.1.0",
        "info": {"title": api.title, "version": api.version},
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {"adminToken": {"type": "http", "scheme": "bearer"}},
        },
    }
