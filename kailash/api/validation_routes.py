"""``POST /validate``: check a workflow document and list every problem (nothing is stored or run).

A tenant's document is checked against its own capability policy; ``${ENV}`` references
are allowed only for the gateway's own namespace.
"""

from __future__ import annotations

from typing import Any

from fastapi import Request
from starlette.concurrency import run_in_threadpool

from kailash.api.bodies import read_json
from kailash.api.documents import check_document, problem
from kailash.api.middleware import principal_of
from kailash.api.workflow_routes import parse_workflow_text

__all__ = ["install"]


def install(app: Any, gw: Any) -> None:
    """Add ``POST /validate`` to ``app``."""

    @app.post("/validate", tags=["workflows"], summary="Check a workflow document; list every problem",
              openapi_extra={"requestBody": {"required": True, "content": {"application/json": {"schema": {
                  "type": "object", "description": "a workflow document, or {\"workflow\": document}"}}}}})
    async def validate(request: Request) -> dict[str, Any]:
        body = await read_json(request)
        document = body.get("workflow") if isinstance(body, dict) and "workflow" in body else body
        if isinstance(document, str):
            document = parse_workflow_text(document)
        principal = principal_of(request.scope)
        allow_env = principal is None or principal.tenant_id is None
        scope = None if allow_env else (await run_in_threadpool(gw.workspace, principal)).scope
        workflow, problems = await run_in_threadpool(check_document, document, allow_env=allow_env, scope=scope)
        warnings = []
        if workflow is not None:
            for step in workflow.compile().steps:
                for param in step.static_missing:
                    warnings.append(problem(f"node '{step.id}' needs parameter '{param}' at run time", step.id, param))
        return {"valid": not problems, "problems": problems, "warnings": warnings}
