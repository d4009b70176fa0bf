"""The gateway's workflow endpoints: list, upload, describe, delete and export workflows.

A caller sees its own namespace only (the gateway's registered and uploaded workflows,
or its tenant's uploads). Handlers that touch storage are plain ``def`` functions, which
FastAPI runs in its thread pool, so a database round trip never blocks the event loop.
"""

from __future__ import annotations

import json
from typing import Any

from fastapi import Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from starlette.concurrency import run_in_threadpool

from kailash.api.bodies import check_depth, read_json, too_deep
from kailash.api.documents import NAME_PATTERN, check_document, describe_workflow, problem, python_source
from kailash.api.middleware import principal_of
from kailash.api.overrides import parse_allowed
from kailash.api.responses import ApiError

__all__ = ["install", "parse_workflow_text"]


def parse_workflow_text(text: str, filename: str = "") -> Any:
    """A workflow document from YAML or JSON text (422 ``invalid_workflow`` when it does not parse)."""
    from kailash.errors import SerializationError
    from kailash.workflow.serialization import _safe_yaml_load

    if filename.lower().endswith(".json") or text.lstrip().startswith("{"):
        try:
            value = json.loads(text)
        except RecursionError:
            raise too_deep("the workflow file") from None
        except ValueError as exc:
            raise ApiError(422, "invalid_workflow", "the workflow file is not valid JSON",
                           problems=[problem(f"malformed JSON: {exc}")]) from None
    else:
        try:
            value = _safe_yaml_load(text)
        except SerializationError as exc:
            raise ApiError(422, "invalid_workflow", "the workflow file is not valid YAML",
                           problems=[problem(str(exc))]) from None
    return check_depth(value, "the workflow file")


async def _upload(request: Any, max_part_size: int) -> tuple[str | None, Any]:
    """``(name, document)`` from a JSON body or a multipart form with a ``workflow`` file."""
    ctype = request.headers.get("content-type", "")
    if ctype.lower().startswith("multipart/form-data"):  # the documented file upload (Origin-checked upstream)
        form = await request.form(max_files=1, max_fields=4, max_part_size=max_part_size)
        part = form.get("workflow")
        if part is None:
            raise ApiError(422, "invalid_workflow", "the form needs a 'workflow' field holding a YAML or JSON file",
                           problems=[problem("missing form field 'workflow'", parameter="workflow")])
        if hasattr(part, "read"):
            raw = await part.read()
            filename = part.filename or ""
        else:
            raw, filename = str(part).encode(), ""
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise ApiError(422, "invalid_workflow", "the workflow file is not UTF-8 text",
                           problems=[problem("the workflow file is not UTF-8 text")]) from None
        name = form.get("name")
        return (str(name) if name else None), await run_in_threadpool(parse_workflow_text, text, filename)
    body = await read_json(request)
    if isinstance(body, dict) and "workflow" in body:
        doc = body["workflow"]
        if isinstance(doc, str):
            doc = await run_in_threadpool(parse_workflow_text, doc)
        name = body.get("name")
        return (name if isinstance(name, str) else None), doc
    if isinstance(body, dict) and "nodes" in body:  # a bare workflow document
        return None, body
    raise ApiError(422, "invalid_workflow", 'expected {"name": ..., "workflow": {...}} or a workflow document',
                   problems=[problem("the body has no 'workflow' and no 'nodes'", parameter="workflow")])


def install(app: Any, gw: Any) -> None:
    """Add the workflow routes to ``app``."""

    @app.get("/workflows", tags=["workflows"], summary="Workflows in the caller's namespace")
    def list_workflows(request: Request) -> dict[str, Any]:
        principal = principal_of(request.scope)
        out = []
        if principal is None or principal.tenant_id is None:
            for name, reg in sorted(gw.registered.items()):
                out.append({"name": name, "description": reg.description, "version": reg.workflow.version,
                            "source": "registered", "nodes": len(reg.workflow.nodes), "revision": None,
                            "updated_at": None})
        for stored in gw.workspace(principal).workflows.list():
            if any(w["name"] == stored.name for w in out):
                continue
            out.append({"name": stored.name, "description": stored.description,
                        "version": str(stored.document.get("version") or "1.0.0"), "source": "uploaded",
                        "nodes": len(stored.document.get("nodes") or []), "revision": stored.revision,
                        "updated_at": stored.updated_at})
        return {"workflows": out}

    def save(request: Request, name: str | None, document: Any) -> JSONResponse:
        principal = principal_of(request.scope)
        tenant_id = principal.tenant_id if principal is not None else None
        if name is None and isinstance(document, dict):
            name = document.get("name")
        if not isinstance(name, str) or not NAME_PATTERN.match(name):
            raise ApiError(422, "invalid_workflow", "the workflow needs a name: 1-128 letters, digits, '_', '.' "
                           "or '-', starting with a letter or digit",
                           problems=[problem(f"invalid workflow name {name!r}", parameter="name")])
        workflow, problems = check_document(document, allow_env=tenant_id is None, scope=gw.workspace(principal).scope)
        if problems:
            raise ApiError(422, "invalid_workflow", f"workflow '{name}' has {len(problems)} problem"
                           f"{'s' if len(problems) > 1 else ''}", problems=problems)
        try:
            parse_allowed(workflow.metadata.get("allow_overrides"), workflow, where=f"workflow '{name}' metadata")
        except ValueError as exc:
            raise ApiError(422, "invalid_workflow", str(exc),
                           problems=[problem(str(exc), parameter="allow_overrides")]) from None
        if tenant_id is None and name in gw.registered:
            raise ApiError(409, "workflow_registered", f"workflow '{name}' is registered in code by the gateway; "
                           "upload under another name")
        canonical = workflow.to_dict()
        canonical["name"] = name
        store = gw.workspace(principal).workflows
        existed = store.get(name) is not None
        stored = store.put(name, canonical)
        gw.forget_parsed(tenant_id, name)
        body = {"name": name, "revision": stored.revision, "created": not existed,
                "workflow": describe_workflow(name, workflow, source="uploaded")}
        return JSONResponse(body, 201, headers={"Location": f"/workflows/{name}"})

    async def upload(request: Request) -> JSONResponse:
        name, document = await _upload(request, gw.max_body_size)
        return await run_in_threadpool(save, request, name, document)

    upload_body = {"requestBody": {"required": True, "content": {
        "application/json": {"schema": {"type": "object", "properties": {
            "name": {"type": "string"}, "workflow": {"type": "object", "description": "Workflow.to_dict() form"}}}},
        "multipart/form-data": {"schema": {"type": "object", "properties": {
            "workflow": {"type": "string", "format": "binary", "description": "a YAML or JSON workflow file"},
            "name": {"type": "string"}}, "required": ["workflow"]}}}}}
    for path in ("/workflows", "/api/workflows/import"):
        app.add_api_route(path, upload, methods=["POST"], status_code=201, tags=["workflows"],
                          summary="Upload a workflow (JSON body or multipart 'workflow' file)",
                          include_in_schema=path == "/workflows", openapi_extra=upload_body)

    @app.get("/workflows/{name}", tags=["workflows"], summary="A workflow's graph and parameter schema")
    def get_workflow(name: str, request: Request) -> dict[str, Any]:
        principal = principal_of(request.scope)
        workflow, source, reg, stored = gw.resolve(principal, name)
        extra: dict[str, Any] = {}
        if reg is not None and reg.mcp_config:
            extra["mcp_servers"] = [{"name": n, "capabilities": list((c or {}).get("capabilities") or [])}
                                    for n, c in reg.mcp_config.items()]
        if stored is not None:
            extra.update(revision=stored.revision, updated_at=stored.updated_at)
        described = describe_workflow(name, workflow, source=source, extra=extra)
        if reg is not None and reg.description:
            described["description"] = reg.description
        return described

    @app.get("/workflows/{name}/mcp", tags=["workflows"],
             summary="The MCP servers of a workflow's mcp_config: their tools and whether they answer now")
    def workflow_mcp(name: str, request: Request, timeout: float = 5.0) -> dict[str, Any]:
        from concurrent.futures import ThreadPoolExecutor

        principal = principal_of(request.scope)
        _, _, reg, _ = gw.resolve(principal, name)
        config = dict(reg.mcp_config or {}) if reg is not None else {}
        wait = max(0.5, min(float(timeout), 30.0))

        def check(server: str, spec: Any) -> dict[str, Any]:
            from kailash.nodes.mcp.client import list_tools
            from kailash.nodes.mcp.servers import MCPServerConfig

            out: dict[str, Any] = {"name": server, "reachable": False, "tools": [], "error": None}
            cfg = None
            try:
                cfg = MCPServerConfig.from_any(server)  # registered with the workflow under this name
                out.update(transport=cfg.transport, capabilities=list(cfg.capabilities))  # never its command or env
                tools = list_tools(cfg, timeout=wait, connect_timeout=wait, owner=f"workflow '{name}'")
            except Exception as exc:  # unreachable, not installed, timed out: say so, never fail the page
                from kailash.security.secrets import redact

                text = str(exc)
                if cfg is not None:  # the server by name: its arguments (and env) may hold credentials
                    text = text.replace(cfg.describe(), f"'{cfg.name}'")
                    for arg in cfg.args:
                        if len(arg) >= 4:
                            text = text.replace(arg, "…")
                out["error"] = redact(text, reg.secrets) if reg is not None else text
                return out
            out.update(reachable=True, tools=[{"name": t["name"], "description": t["description"]} for t in tools])
            return out

        if not config:
            return {"workflow": name, "servers": []}
        with ThreadPoolExecutor(min(8, len(config)), thread_name_prefix="kailash-mcp-check") as pool:
            servers = list(pool.map(lambda item: check(*item), config.items()))
        return {"workflow": name, "servers": servers}

    @app.delete("/workflows/{name}", status_code=204, response_class=Response, response_model=None, tags=["workflows"], summary="Delete an uploaded workflow")
    def delete_workflow(name: str, request: Request) -> Response:
        principal = principal_of(request.scope)
        tenant_id = principal.tenant_id if principal is not None else None
        if tenant_id is None and name in gw.registered:
            raise ApiError(409, "workflow_registered", f"workflow '{name}' is registered in code; it cannot be "
                           "deleted over the API")
        if not gw.workspace(principal).workflows.delete(name):
            raise ApiError(404, "workflow_not_found", f"no workflow '{name}' here", workflow=name)
        gw.forget_parsed(tenant_id, name)
        return Response(status_code=204)

    @app.get("/workflows/{name}/export", response_model=None, tags=["workflows"], summary="A workflow as YAML, JSON or Python")
    def export_workflow(name: str, request: Request, format: str = "yaml") -> Response:
        from kailash.errors import KailashError

        principal = principal_of(request.scope)
        workflow, _, _, stored = gw.resolve(principal, name)
        if format not in ("yaml", "yml", "json", "python", "py"):
            raise ApiError(422, "invalid_format", f"unknown export format '{format}'; use yaml, json or python",
                           parameter="format")
        try:
            document = dict(stored.document) if stored is not None else workflow.to_dict()
        except KailashError as exc:
            raise ApiError(422, "not_exportable", str(exc), node_id=exc.node_id) from None
        document["name"] = name
        if format in ("json",):
            text, media, ext = json.dumps(document, indent=2), "application/json", "json"
        elif format in ("python", "py"):
            text, media, ext = python_source(document), "text/x-python", "py"
        else:
            import yaml

            text, media, ext = yaml.safe_dump(document, sort_keys=False, allow_unicode=True), "application/yaml", "yaml"
        return PlainTextResponse(text, media_type=media,
                                 headers={"Content-Disposition": f'attachment; filename="{name}.{ext}"'})
