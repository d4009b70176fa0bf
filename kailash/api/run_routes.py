"""The gateway's run endpoints: execute, run history, and live events (SSE and websocket).

A run belongs to the namespace (gateway or tenant) of the key that started it; every
lookup here goes through that namespace, and a run of another namespace is reported
exactly like a run that does not exist (404). ``workflow_operations`` writes the
OpenAPI description of one registered workflow's execute endpoint.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from fastapi import Request, WebSocket
from fastapi.responses import JSONResponse, StreamingResponse
from starlette.concurrency import run_in_threadpool
from starlette.websockets import WebSocketDisconnect

from kailash.api.bodies import read_json
from kailash.api.middleware import principal_of
from kailash.api.overrides import workflow_allowed
from kailash.api.responses import ApiError, deny_websocket, error_body
from kailash.api.runs import TERMINAL_EVENTS, events_from_record, new_run_id

__all__ = ["install", "workflow_operations", "openapi_document"]

KEEPALIVE_SECONDS = 15.0


def _summary(record: Any) -> dict[str, Any]:
    return {"run_id": record.run_id, "workflow": record.workflow, "status": record.status,
            "started_at": record.started_at, "ended_at": record.ended_at, "duration": record.duration,
            "error": record.error, "error_node": record.error_node}


def install(app: Any, gw: Any) -> None:
    """Add the run routes to ``app``."""

    async def execute(name: str, request: Request) -> JSONResponse:
        principal = principal_of(request.scope)
        body = await read_json(request, required=False)
        if body is None:
            body = {}
        if not isinstance(body, dict) or (body and "parameters" not in body):
            raise ApiError(422, "invalid_request", 'expected a JSON object {"parameters": {node_id: {name: value}}}',
                           parameter="parameters")
        parameters = body.get("parameters") or {}
        if not isinstance(parameters, dict):
            raise ApiError(422, "invalid_request", f"'parameters' must be an object, got {type(parameters).__name__}",
                           parameter="parameters")
        wait = request.query_params.get("async", "false").lower() not in ("1", "true", "yes")
        tenant_id = principal.tenant_id if principal is not None else None
        reg = gw.registered.get(name) if tenant_id is None else None
        if reg is not None:  # registered in code: no storage to consult
            workflow = reg.workflow
        else:
            workflow, _, reg, _ = await run_in_threadpool(gw.resolve, principal, name)
        workspace = gw._workspaces.get(tenant_id) or await run_in_threadpool(gw.workspace, principal)
        # only code-registered workflows are fixed programs: whoever may run an uploaded one may replace it outright
        allowed = workflow_allowed(workflow, reg.allow_overrides) if reg is not None else None
        run = await gw.runs.start(workspace=workspace, name=name, workflow=workflow, parameters=parameters,
                                  limit=gw.concurrency_limit(principal), wait=wait, run_id=new_run_id(),
                                  secrets=reg.secrets if reg is not None else frozenset(), allowed=allowed)
        links = {"run": f"/runs/{run.run_id}", "events": f"/runs/{run.run_id}/events",
                 "websocket": f"/ws/runs/{run.run_id}"}
        if not wait:
            return JSONResponse({"run_id": run.run_id, "workflow": name, "status": "running", "links": links}, 202,
                                headers={"Location": links["run"]})
        if run.error is not None:
            err = run.error
            where = f" at node '{err['node_id']}'" if err.get("node_id") else ""
            body = error_body("run_failed", f"workflow '{name}' failed{where}: {err['message']}",
                              type=err["type"], node_id=err.get("node_id"), parameter=err.get("parameter"))
            body.update(run_id=run.run_id, workflow=name, status="failed", results=run.results or {}, links=links)
            return JSONResponse(body, 500)
        return JSONResponse({"run_id": run.run_id, "workflow": name, "status": "completed", "results": run.results,
                             "skipped": run.skipped, "duration": (run.ended_at or 0) - run.started_at,
                             "links": links})

    app.add_api_route("/workflows/{name}/execute", execute, methods=["POST"], tags=["runs"],
                      summary="Run a workflow: body {\"parameters\": {...}}; ?async=true returns at once",
                      openapi_extra={"requestBody": {"required": False, "content": {"application/json": {"schema": {
                          "type": "object", "properties": {"parameters": {
                              "type": "object", "description": "{node_id: {parameter: value}}"}}}}}},
                          "parameters": [{"name": "async", "in": "query", "required": False,
                                          "schema": {"type": "boolean"}}]})

    def find_record(principal: Any, run_id: str) -> Any:
        ws = gw.workspace(principal)
        record = ws.runs.get_run(run_id)
        if record is None or record.tenant != ws.tenant_id:
            return None
        return record

    @app.get("/runs", tags=["runs"], summary="Run history of the caller's namespace, newest first")
    def list_runs(request: Request, workflow: str | None = None, status: str | None = None,
                  limit: int = 50) -> dict[str, Any]:
        principal = principal_of(request.scope)
        tenant_id = principal.tenant_id if principal is not None else None
        limit = max(1, min(int(limit), 500))
        out = []
        if status in (None, "running"):
            for run in reversed(gw.runs.running(tenant_id)):
                if workflow is None or run.workflow == workflow:
                    d = run.to_dict()
                    out.append({k: d[k] for k in ("run_id", "workflow", "status", "started_at", "ended_at",
                                                  "duration")} | {"error": None, "error_node": None})
        ws = gw.workspace(principal)
        if status != "running":
            seen = {r["run_id"] for r in out}
            for record in ws.runs.list_runs(limit=limit, workflow=workflow, status=status):
                if record.tenant == ws.tenant_id and record.run_id not in seen:
                    out.append(_summary(record))
        return {"runs": out[:limit]}

    @app.get("/runs/{run_id}", tags=["runs"], summary="A run: status, per-node status and timing, errors, results")
    def get_run(run_id: str, request: Request) -> dict[str, Any]:
        principal = principal_of(request.scope)
        tenant_id = principal.tenant_id if principal is not None else None
        live = gw.runs.find(run_id, tenant_id)
        if live is not None:
            return live.to_dict()
        record = find_record(principal, run_id)
        if record is None:
            raise ApiError(404, "run_not_found", f"no run '{run_id}' here; GET /runs lists them", run_id=run_id)
        d = record.to_dict()
        reg = gw.registered.get(record.workflow) if tenant_id is None else None
        if reg is not None and reg.secrets:
            from kailash.security.secrets import redact

            d = redact(d, reg.secrets)
        d.pop("tenant", None)
        d["results"] = d.pop("outputs", None)
        if d.get("error"):
            d["error"] = {"type": None, "message": d["error"], "node_id": record.error_node, "parameter": None}
        return d

    async def subscribe(principal: Any, run_id: str) -> tuple[list[dict[str, Any]], Any, Any]:
        tenant_id = principal.tenant_id if principal is not None else None
        live = gw.runs.find(run_id, tenant_id)
        if live is not None:
            past, queue = live.subscribe()
            return past, queue, live
        record = await run_in_threadpool(find_record, principal, run_id)
        if record is None:
            raise ApiError(404, "run_not_found", f"no run '{run_id}' here", run_id=run_id)
        return events_from_record(record), None, None

    async def follow(past: list[dict[str, Any]], queue: Any) -> Any:
        """Yield the run's events until the terminal one (``None`` = nothing for a while)."""
        for ev in past:
            yield ev
            if ev.get("event") in TERMINAL_EVENTS:
                return
        if queue is None:
            return
        seen = past[-1]["seq"] if past else -1
        while True:
            try:
                ev = await asyncio.wait_for(queue.get(), KEEPALIVE_SECONDS)
            except TimeoutError:
                yield None
                continue
            if ev["seq"] <= seen:
                continue
            yield ev
            if ev.get("event") in TERMINAL_EVENTS:
                return

    @app.get("/runs/{run_id}/events", tags=["runs"], summary="A run's live events (Server-Sent Events)")
    async def run_events(run_id: str, request: Request) -> StreamingResponse:
        past, queue, live = await subscribe(principal_of(request.scope), run_id)

        async def stream() -> Any:
            try:
                async for ev in follow(past, queue):
                    if ev is None:
                        yield ": keepalive\n\n"
                        continue
                    yield f"id: {ev['seq']}\nevent: {ev['event']}\ndata: {json.dumps(ev, default=str)}\n\n"
            finally:
                if live is not None:
                    live.unsubscribe(queue)

        return StreamingResponse(stream(), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})

    @app.websocket("/ws/runs/{run_id}")
    async def run_socket(websocket: WebSocket, run_id: str) -> None:
        try:
            past, queue, live = await subscribe(principal_of(websocket.scope), run_id)
        except ApiError as exc:
            await deny_websocket(websocket.scope, websocket._send, exc.status, exc.body())
            return
        await websocket.accept()
        try:
            async for ev in follow(past, queue):
                if ev is not None:
                    await websocket.send_text(json.dumps(ev, default=str))
            await websocket.close(1000)
        except (WebSocketDisconnect, RuntimeError, OSError):  # the client went away first
            pass
        finally:
            if live is not None:
                live.unsubscribe(queue)


def workflow_operations(name: str, reg: Any) -> dict[str, Any]:
    """OpenAPI ``paths`` entries for one registered workflow."""
    from kailash.api.documents import parameters_schema

    schema = parameters_schema(reg.workflow)
    error = {"type": "object", "properties": {"error": {"type": "object", "properties": {
        "code": {"type": "string"}, "message": {"type": "string"}, "node_id": {"type": "string"}}}}}
    responses = {
        "200": {"description": "the run completed", "content": {"application/json": {"schema": {
            "type": "object", "properties": {"run_id": {"type": "string"}, "status": {"type": "string"},
                                             "results": {"type": "object"}}}}}},
        "202": {"description": "started (with ?async=true)"},
        "401": {"description": "missing or invalid API key", "content": {"application/json": {"schema": error}}},
        "404": {"description": "no such workflow here"},
        "415": {"description": "the body is not declared application/json"},
        "422": {"description": "invalid parameters, or a parameter the workflow fixes (every problem listed)"},
        "429": {"description": "rate or concurrency limit reached (see Retry-After)"},
        "500": {"description": "a node failed; the error names it", "content": {"application/json": {
            "schema": error}}},
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
    for name, reg in sorted(gw.registered.items()):
        schema["paths"].update(workflow_operations(name, reg))
    return schema
