"""The gateway's catalog, workflow and Studio endpoints (runs are in :mod:`kailash.api.run_routes`).

``install(app, gateway)`` adds the routes and the error handlers that give every
error the one JSON shape of :mod:`kailash.api.responses`. Handlers that touch storage
are plain ``def`` functions, which FastAPI runs in its thread pool, so a database
round trip never blocks the event loop.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

try:
    from fastapi import Request
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import FileResponse, JSONResponse, PlainTextResponse, Response
    from starlette.concurrency import run_in_threadpool
    from starlette.exceptions import HTTPException as StarletteHTTPException
except ImportError:  # pragma: no cover - the gateway checks first; this keeps the message if imported directly
    raise ImportError("the workflow gateway needs FastAPI: pip install 'kailash[api]'") from None

from kailash.api.bodies import check_depth, read_json, too_deep
from kailash.api.documents import NAME_PATTERN, check_document, describe_workflow, problem, python_source
from kailash.api.middleware import BodyTooLarge, principal_of
from kailash.api.overrides import parse_allowed
from kailash.api.responses import ApiError, error_body

__all__ = ["install", "read_json", "STUDIO_DIR"]

logger = logging.getLogger("kailash.api")

STUDIO_DIR = Path(__file__).parent / "static" / "studio"
_catalog: tuple[int, list[dict[str, Any]]] | None = None


def node_catalog() -> list[dict[str, Any]]:
    """Every registered node type with its parameter schema and outputs (cached until new types register)."""
    global _catalog
    from kailash.nodes.registry import describe_node, list_node_types

    types = list_node_types()
    if _catalog is None or _catalog[0] != len(types):
        described = []
        for name, cls in types.items():
            info = describe_node(cls, name)
            try:
                outputs = cls().get_outputs()  # type: ignore[call-arg]
                info["outputs"] = None if outputs is None else list(outputs)
            except Exception:
                info["outputs"] = None
            described.append(info)
        _catalog = (len(types), described)
    return _catalog[1]


def _parse_text(text: str, filename: str = "") -> Any:
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


async def _upload(request: Any) -> tuple[str | None, Any]:
    """``(name, document)`` from a JSON body or a multipart form with a ``workflow`` file."""
    ctype = request.headers.get("content-type", "")
    if ctype.lower().startswith("multipart/form-data"):  # the documented file upload (Origin-checked upstream)
        gw = request.app.state.gateway
        form = await request.form(max_files=1, max_fields=4, max_part_size=gw._body_limit.max_body_size)
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
        return (str(name) if name else None), await run_in_threadpool(_parse_text, text, filename)
    body = await read_json(request)
    if isinstance(body, dict) and "workflow" in body:
        doc = body["workflow"]
        if isinstance(doc, str):
            doc = await run_in_threadpool(_parse_text, doc)
        name = body.get("name")
        return (name if isinstance(name, str) else None), doc
    if isinstance(body, dict) and "nodes" in body:  # a bare workflow document
        return None, body
    raise ApiError(422, "invalid_workflow", 'expected {"name": ..., "workflow": {...}} or a workflow document',
                   problems=[problem("the body has no 'workflow' and no 'nodes'", parameter="workflow")])


def install(app: Any, gw: Any) -> None:
    """Add the catalog, workflow and Studio routes and the error handlers to ``app``."""

    @app.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError) -> JSONResponse:
        return JSONResponse(exc.body(), status_code=exc.status, headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = [problem(f"{'.'.join(str(p) for p in e.get('loc', ()))}: {e.get('msg')}") for e in exc.errors()]
        return JSONResponse(error_body("invalid_request", "the request is not valid", problems=problems), 422)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        return JSONResponse(error_body(code, str(exc.detail)), exc.status_code, headers=exc.headers)

    @app.exception_handler(BodyTooLarge)
    async def _too_large(request: Request, exc: BodyTooLarge) -> JSONResponse:
        return JSONResponse(gw._body_limit._body(), 413)

    @app.exception_handler(Exception)
    async def _internal(request: Request, exc: Exception) -> JSONResponse:
        logger.error("internal error on %s %s: %s", request.method, request.url.path, type(exc).__name__)
        return JSONResponse(error_body("internal_error", "internal error; see the gateway's log"), 500)

    @app.get("/health", tags=["gateway"], summary="Liveness check (no key needed)")
    async def health() -> dict[str, Any]:
        from kailash._version import __version__

        return {"status": "ok", "version": __version__}

    @app.get("/nodes", tags=["catalog"], summary="The node catalog with parameter schemas (no key needed)")
    def nodes() -> dict[str, Any]:
        return {"nodes": node_catalog()}

    @app.get("/nodes/{node_type}", tags=["catalog"], summary="One node type (no key needed)")
    def node(node_type: str) -> dict[str, Any]:
        from kailash.errors import UnknownNodeTypeError

        for info in node_catalog():
            if info["name"] == node_type:
                return info
        try:
            from kailash.nodes.registry import get_node_class

            get_node_class(node_type)
        except UnknownNodeTypeError as exc:
            raise ApiError(404, "unknown_node_type", str(exc), suggestions=exc.suggestions) from None
        raise ApiError(404, "unknown_node_type", f"unknown node type '{node_type}'", suggestions=[])

    @app.get("/studio", include_in_schema=False)
    @app.get("/studio/", include_in_schema=False)
    async def studio() -> Any:
        index = STUDIO_DIR / "index.html"
        if not index.is_file():
            raise ApiError(404, "studio_not_installed", "the Studio assets are not installed with this Kailash")
        return FileResponse(index, media_type="text/html")

    @app.get("/studio/static/{path:path}", include_in_schema=False)
    async def studio_asset(path: str) -> Any:
        base = STUDIO_DIR.resolve()
        target = (base / path).resolve()
        if not target.is_relative_to(base) or not target.is_file():
            raise ApiError(404, "not_found", f"no Studio asset '{path}'")
        media = {".js": "text/javascript", ".css": "text/css", ".html": "text/html", ".svg": "image/svg+xml",
                 ".json": "application/json"}.get(target.suffix)
        return FileResponse(target, media_type=media)

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
        name, document = await _upload(request)
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

    @app.post("/validate", tags=["workflows"], summary="Check a workflow document; list every problem",
              openapi_extra={"requestBody": {"required": True, "content": {"application/json": {"schema": {
                  "type": "object", "description": "a workflow document, or {\"workflow\": document}"}}}}})
    async def validate(request: Request) -> dict[str, Any]:
        body = await read_json(request)
        document = body.get("workflow") if isinstance(body, dict) and "workflow" in body else body
        if isinstance(document, str):
            document = _parse_text(document)
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
