"""The gateway's OpenAPI document: FastAPI's, plus the key schemes and one operation per registered workflow."""

from __future__ import annotations

from typing import Any

__all__ = ["openapi_document", "workflow_operations", "PROBLEM_SCHEMA", "PROBLEM_JSON"]


#: the media type of every error answer (RFC 9457)
PROBLEM_JSON = "application/problem+json"
#: an RFC 9457 problem document as the gateway writes it (see kailash.api.responses)
PROBLEM_SCHEMA: dict[str, Any] = {"type": "object", "required": ["type", "title", "status", "detail"], "properties": {
    "type": {"type": "string", "description": "urn:kailash:problem:<code>"},
    "title": {"type": "string"}, "status": {"type": "integer"}, "detail": {"type": "string"},
    "instance": {"type": "string"}, "code": {"type": "string"},
    "node_id": {"type": ["string", "null"]}, "parameter": {"type": ["string", "null"]},
    "error": {"type": "object", "description": "the same code, message and fields in the earlier shape",
              "properties": {"code": {"type": "string"}, "message": {"type": "string"}}}},
    "additionalProperties": True}


def workflow_operations(name: str, reg: Any) -> dict[str, Any]:
    """OpenAPI ``paths`` entries for one registered workflow."""
    from kailash.api.documents import parameters_schema

    schema = parameters_schema(reg.workflow)
    error = PROBLEM_SCHEMA
    responses = {
        "200": {"description": "the run completed", "content": {"application/json": {"schema": {
            "type": "object", "properties": {"run_id": {"type": "string"}, "status": {"type": "string"},
                                             "results": {"type": "object"}}}}}},
        "202": {"description": "started (with ?async=true)"},
        "401": {"description": "missing or invalid API key", "content": {PROBLEM_JSON: {"schema": error}}},
        "404": {"description": "no such workflow here", "content": {PROBLEM_JSON: {"schema": error}}},
        "415": {"description": "the body is not declared application/json", "content": {PROBLEM_JSON: {
            "schema": error}}},
        "422": {"description": "invalid parameters, or a parameter the workflow fixes (every problem listed); "
                               "or run_failed: the run ran and a node failed (node_id, error_type, run_id, "
                               "results of the nodes that finished)", "content": {PROBLEM_JSON: {"schema": error}}},
        "429": {"description": "rate or concurrency limit reached (see Retry-After)",
                "content": {PROBLEM_JSON: {"schema": error}}},
    }
    op: dict[str, Any] = {
        "tags": ["registered workflows"],
        "summary": f"Run workflow '{name}'",
        "description": reg.description or f"Run the registered workflow '{name}'.",
        "operationId": f"execute_{name}".replace("-", "_").replace(".", "_"),
        "parameters": [{"name": "async", "in": "query", "required": False, "schema": {"type": "boolean"},
                        "description": "return at once with the run id (202)"}],
        "requestBody": {"required": False, "content": {"application/json": {"schema": {
            "type": "object", "properties": {"parameters": schema}}}}},
        "responses": responses,
        "security": [{"ApiKeyHeader": []}, {"Bearer": []}],
    }
    describe = {"tags": ["registered workflows"], "summary": f"Describe workflow '{name}'",
                "operationId": f"describe_{name}".replace("-", "_").replace(".", "_"),
                "responses": {"200": {"description": "the graph and parameter schema"}},
                "security": [{"ApiKeyHeader": []}, {"Bearer": []}]}
    return {f"/workflows/{name}/execute": {"post": op}, f"/workflows/{name}": {"get": describe}}


def openapi_document(gw: Any, app: Any) -> dict[str, Any]:
    """FastAPI's OpenAPI document plus the key schemes and each registered workflow's operations."""
    from fastapi.openapi.utils import get_openapi

    from kailash._version import __version__

    schema = get_openapi(title=gw.title, version=__version__, description=app.description, routes=app.routes)
    schema.setdefault("components", {})["securitySchemes"] = {
        "ApiKeyHeader": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
        "Bearer": {"type": "http", "scheme": "bearer"},
    }
    for path in schema["paths"].values():  # every error is a problem document, whatever FastAPI assumes
        for op in path.values():
            for code, answer in (op.get("responses") or {}).items():
                if code[:1] in ("4", "5") and isinstance(answer, dict):
                    answer["content"] = {PROBLEM_JSON: {"schema": PROBLEM_SCHEMA}}
    for name, reg in sorted(gw.registered.items()):
        schema["paths"].update(workflow_operations(name, reg))
    return schema
