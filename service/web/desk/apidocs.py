"""The app's OpenAPI document as a readable page for staff, rendered on the server."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from service.web.desk.access import current_viewer, guard
from service.web.desk.view import desk_page

router = APIRouter(dependencies=[Depends(guard)], include_in_schema=False)
METHODS = ("get", "post", "put", "patch", "delete")


@dataclass
class Field:
    name: str
    type: str
    required: bool
    description: str = ""


@dataclass
class Endpoint:
    method: str
    path: str
    summary: str
    description: str
    auth: list[str]
    body_type: str = ""
    body: list[Field] = field(default_factory=list)
    responses: list[tuple[str, str]] = field(default_factory=list)


def resolve(doc: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    """Follow a local $ref (#/components/schemas/Name) to the schema it names."""
    seen = 0
    while "$ref" in schema and seen < 10:
        name = schema["$ref"].rsplit("/", 1)[-1]
        schema = doc.get("components", {}).get("schemas", {}).get(name, {})
        seen += 1
    return schema


def type_of(doc: dict[str, Any], schema: dict[str, Any]) -> str:
    if "$ref" in schema:
        return str(schema["$ref"].rsplit("/", 1)[-1])
    if "anyOf" in schema:
        return " | ".join(type_of(doc, s) for s in schema["anyOf"])
    if schema.get("type") == "array":
        return f"array[{type_of(doc, schema.get('items', {}))}]"
    kind = str(schema.get("type", "any"))
    return f"{kind} ({schema['format']})" if "format" in schema else kind


def fields_of(doc: dict[str, Any], schema: dict[str, Any]) -> list[Field]:
    target = resolve(doc, schema)
    required = set(target.get("required", []))
    return [Field(name, type_of(doc, prop), name in required, str(prop.get("description", "")))
            for name, prop in target.get("properties", {}).items()]


def endpoints(doc: dict[str, Any]) -> list[Endpoint]:
    """Every operation in the document, in path order, with what a caller must send."""
    schemes = doc.get("components", {}).get("securitySchemes", {})
    found: list[Endpoint] = []
    for path, item in sorted(doc.get("paths", {}).items()):
        for method in METHODS:
            op = item.get(method)
            if op is None:
                continue
            security = op.get("security", doc.get("security", []))
            auth = [f"{name} ({schemes.get(name, {}).get('type', '')})" for req in security for name in req]
            endpoint = Endpoint(method.upper(), path, op.get("summary", ""), op.get("description", ""), auth)
            for kind, content in op.get("requestBody", {}).get("content", {}).items():
                endpoint.body_type = kind
                endpoint.body = fields_of(doc, content.get("schema", {}))
                break
            endpoint.responses = [(code, str(r.get("description", "")))
                                  for code, r in sorted(op.get("responses", {}).items())]
            found.append(endpoint)
    return found


@router.get("/desk/api")
def api_docs(request: Request) -> Response:
    doc = request.app.openapi()
    return desk_page(request, "api.html", current_viewer(request), endpoints=endpoints(doc),
                     title=doc.get("info", {}).get("title", ""),
                     version=doc.get("info", {}).get("version", ""))
