"""Request bodies in the OpenAPI document for routes that read their body themselves.

The API routes check the caller's key before reading a byte of the body, and answer
validation errors in their own shape, so they cannot declare the body as a FastAPI
parameter (FastAPI reads and validates it before any check runs). They describe it
with `openapi_extra=json_body(Model)` instead, and the models' schemas are added to
the document's components, where generated clients find them by name.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

REF_TEMPLATE = "#/components/schemas/{model}"
_models: dict[str, type[BaseModel]] = {}


def json_body(model: type[BaseModel]) -> dict[str, Any]:
    """`openapi_extra` for a route whose JSON body is `model`."""
    _models[model.__name__] = model
    return {"requestBody": {"required": True, "content": {
        "application/json": {"schema": {"$ref": REF_TEMPLATE.format(model=model.__name__)}},
    }}}


def raw_body(media_type: str, description: str) -> dict[str, Any]:
    """`openapi_extra` for a route whose body is a document of `media_type`, as is."""
    return {"requestBody": {"required": True, "description": description, "content": {
        media_type: {"schema": {"type": "string", "format": "binary"}},
    }}}


def request_schemas() -> dict[str, Any]:
    """The component schemas of every model named by json_body, and of the models they use."""
    if not _models:
        return {}
    _, top = models_json_schema([(model, "validation") for model in _models.values()],
                                ref_template=REF_TEMPLATE)
    schemas: dict[str, Any] = top.get("$defs", {})
    return schemas
