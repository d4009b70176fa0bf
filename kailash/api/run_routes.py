"""The gateway's run endpoints: execute, run history, one run (live events: :mod:`kailash.api.event_routes`).

A run belongs to the namespace (gateway or tenant) of the key that started it; every
lookup here goes through that namespace, and a run of another namespace is reported
exactly like a run that does not exist (404).
"""

from __future__ import annotations

import time
from typing import Any

from fastapi import Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from kailash.api.bodies import read_json
from kailash.api.middleware import principal_of
from kailash.api.overrides import workflow_allowed
from kailash.api.responses import PROBLEM_JSON, ApiError, error_body, problem_document
from kailash.api.runs import new_run_id

__all__ = ["install", "find_record", "RUN_FAILED_STATUS"]

#: the status of ``POST /workflows/{name}/execute`` when the run ran and a node failed
RUN_FAILED_STATUS = 422


def _summary(record: Any) -> dict[str, Any]:
    return {"run_id": record.run_id, "workflow": record.workflow, "status": record.status,
            "started_at": record.started_at, "ended_at": record.ended_at, "duration": record.duration,
            "error": record.error, "error_node": record.error_node}


RUN_STATUSES = ("running", "completed", "failed", "interrupted")


def _moment(value: str | None, name: str) -> float | None:
    """A ``since``/``until`` query value (Unix seconds or ISO 8601; no zone: UTC) as Unix seconds."""
    if value is None or value == "":
        return None
    try:
        return float(value)
    except ValueError:
        pass
    from datetime import UTC, datetime

    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise ApiError(422, "invalid_request", f"{name} must be Unix seconds or an ISO 8601 time "
                       f"(2026-12-04T16:30:00Z), got {value[:40]!r}", parameter=name,
                       expected="Unix seconds | ISO 8601", got=repr(value[:40])) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


def _make_cursor(started_at: float, run_id: str) -> str:
    import base64
    import json

    return base64.urlsafe_b64encode(json.dumps([started_at, run_id]).encode()).decode().rstrip("=")


def _read_cursor(cursor: str) -> tuple[float, str]:
    import base64
    import json

    try:
        raw = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        if (isinstance(raw, list) and len(raw) == 2 and isinstance(raw[0], (int, float))
                and isinstance(raw[1], str)):
            return float(raw[0]), raw[1]
    except (ValueError, TypeError):
        pass
    raise ApiError(422, "invalid_request", "cursor is not one this gateway gave: pass the next_cursor of the "
                   "previous page as it is", parameter="cursor", got=repr(cursor[:40]))


def _inside(started_at: float, run_id: str, window: dict[str, Any]) -> bool:
    """Whether a run started at ``started_at`` falls in a /runs request's time window and page."""
    since, until, before = window["since"], window["until"], window["before"]
    if since is not None and started_at < since:
        return False
    if until is not None and started_at >= until:
        return False
    return before is None or (started_at, run_id) < before


def _registered_secrets(gw: Any, tenant_id: str | None) -> frozenset[str]:
    """The config secrets of every workflow registered in code (the gateway's namespace only).

    A record names its workflow by the workflow's own name, which need not be the name it
    was registered under: every registered workflow's secrets are masked in what is read
    back (records written before runs scrubbed their config secrets themselves included)."""
    if tenant_id is not None:
        return frozenset()
    out: frozenset[str] = frozenset()
    for reg in list(gw.registered.values()):
        out |= reg.secrets
    return out


def _redacted(gw: Any, tenant_id: str | None, workflow: str, value: Any) -> Any:
    """``value`` with the secrets of the workflows registered in code masked."""
    secrets = _registered_secrets(gw, tenant_id)
    if secrets:
        from kailash.security.secrets import redact

        return redact(value, secrets)
    return value


def find_record(gw: Any, principal: Any, run_id: str) -> Any:
    """The stored record of ``run_id`` in the caller's namespace, else ``None`` (blocking)."""
    ws = gw.workspace(principal)
    record = ws.runs.get_run(run_id)
    if record is None or record.tenant != ws.tenant_id:
        return None
    return record


def _stop_queued(gw: Any, principal: Any, tenant_id: str | None, run_id: str) -> str | None:
    """Stop a run of the durable queue that no LiveRun of this gateway holds (blocking): ``"cancelled"``
    (it had not started), ``"stopping"`` (a stream run on another gateway: its worker stops it), ``None``
    (not queued or running)."""
    worker = gw.runs.worker
    if worker is None:
        return None
    row = worker.queue.get(run_id)
    if row is None or row.tenant_id != tenant_id or row.status not in ("queued", "running"):
        return None
    if row.status == "running" and not _maybe_stream(gw, principal, row.workflow):
        raise ApiError(409, "not_a_stream_run", f"run '{run_id}' is not a stream run; only stream runs can be "
                       "stopped (an ordinary run ends when its last node does)", run_id=run_id)
    outcome: str | None = worker.queue.request_stop(run_id, tenant_id)
    if outcome == "cancelled":
        from kailash.runtime.queue import CANCELLED
        from kailash.runtime.store import RunRecord

        ws = gw.workspace(principal)
        now = time.time()
        ws.runs.record(RunRecord(run_id=run_id, workflow=row.workflow, status="interrupted",
                                 started_at=row.enqueued_at or now, ended_at=now, error=CANCELLED,
                                 tenant=ws.tenant_id, extra={"queue": {"cancelled": True}}))
    return outcome


def _maybe_stream(gw: Any, principal: Any, name: str) -> bool:
    """Whether workflow ``name`` has a stream source (``True`` when this gateway does not serve it: its owner decides)."""
    try:
        workflow = gw.resolve(principal, name)[0]
        return bool(workflow.compile().stream_sources)
    except Exception:
        return True


def install(app: Any, gw: Any) -> None:
    """Add the execute, run-history and run routes to ``app``."""

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
        workspace = gw.open_workspace(tenant_id) or await run_in_threadpool(gw.workspace, principal)
        # only code-registered workflows are fixed programs: whoever may run an uploaded one may replace it outright
        allowed = workflow_allowed(workflow, reg.allow_overrides) if reg is not None else None
        run = await gw.runs.start(workspace=workspace, name=name, workflow=workflow, parameters=parameters,
                                  limit=gw.concurrency_limit(principal), wait=wait, run_id=new_run_id(),
                                  secrets=reg.secrets if reg is not None else frozenset(), allowed=allowed)
        links = {"run": f"/runs/{run.run_id}", "events": f"/runs/{run.run_id}/events",
                 "websocket": f"/ws/runs/{run.run_id}"}
        if not wait:
            accepted = "queued" if run.status == "queued" else "running"  # a quick run may already have ended
            return JSONResponse({"run_id": run.run_id, "workflow": name, "status": accepted, "links": links}, 202,
                                headers={"Location": links["run"]})
        if run.error is not None:
            err = run.error
            where = f" at node '{err['node_id']}'" if err.get("node_id") else ""
            body = error_body("run_failed", f"workflow '{name}' failed{where}: {err['message']}",
                              type=err["type"], node_id=err.get("node_id"), parameter=err.get("parameter"))
            body.update(run_id=run.run_id, workflow=name, run_status="failed", error_type=err["type"],
                        results=run.results or {}, links=links)
            # the run happened and failed as the workflow decided: not a gateway fault (5xx)
            return JSONResponse(problem_document(RUN_FAILED_STATUS, body, request.url.path), RUN_FAILED_STATUS,
                                media_type=PROBLEM_JSON, headers={"Location": links["run"]})
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

    @app.get("/runs", tags=["runs"], summary="Run history of the caller's namespace, newest first, a page at a time",
             description="Filters: `workflow`, `status` (running, completed, failed, interrupted), `since` and "
                         "`until` (start time: Unix seconds or ISO 8601; `since` inclusive, `until` exclusive). "
                         "Pages: at most `limit` runs (1-500, default 50); when there are more, `next_cursor` is "
                         "set and `links.next` is the URL of the next page (same filters, `cursor=`).")
    def list_runs(request: Request, workflow: str | None = None, status: str | None = None,
                  since: str | None = None, until: str | None = None, cursor: str | None = None,
                  limit: int = 50) -> dict[str, Any]:
        principal = principal_of(request.scope)
        tenant_id = principal.tenant_id if principal is not None else None
        limit = max(1, min(int(limit), 500))
        if status is not None and status not in RUN_STATUSES:
            raise ApiError(422, "invalid_request", f"status must be one of {', '.join(RUN_STATUSES)}, got {status!r}",
                           parameter="status", expected=" | ".join(RUN_STATUSES), got=repr(status)[:80])
        t_since, t_until = _moment(since, "since"), _moment(until, "until")
        before = _read_cursor(cursor) if cursor else None
        window = {"since": t_since, "until": t_until, "before": before}
        out: dict[str, dict[str, Any]] = {}
        if status in (None, "running"):
            for run in gw.runs.running(tenant_id):
                if (workflow is None or run.workflow == workflow) and _inside(run.started_at, run.run_id, window):
                    d = run.to_dict()
                    out[run.run_id] = {k: d[k] for k in ("run_id", "workflow", "status", "started_at", "ended_at",
                                                         "duration")} | {"error": None, "error_node": None}
        ws = gw.workspace(principal)
        if status != "running":
            for record in ws.runs.list_runs(limit=limit + 1, workflow=workflow, status=status, since=t_since,
                                            until=t_until, before=before):
                if record.tenant != ws.tenant_id:
                    continue
                if record.run_id in out:  # live here too: order by the stored start, as every other gateway does
                    out[record.run_id]["started_at"] = record.started_at
                else:
                    out[record.run_id] = _summary(record)
        runs = sorted(out.values(), key=lambda r: (r["started_at"], r["run_id"]), reverse=True)
        page, more = runs[:limit], len(runs) > limit
        page = _redacted(gw, tenant_id, "", page)  # an error text of an older record may quote a credential
        next_cursor = _make_cursor(page[-1]["started_at"], page[-1]["run_id"]) if more and page else None
        links: dict[str, str | None] = {"next": None}
        if next_cursor:  # the same request, one page on (a path, like every link here)
            from urllib.parse import urlencode

            query = [(k, v) for k, v in request.query_params.multi_items() if k != "cursor"]
            links["next"] = f"{request.url.path}?{urlencode([*query, ('cursor', next_cursor)])}"
        return {"runs": page, "next_cursor": next_cursor, "links": links}

    @app.post("/runs/{run_id}/stop", tags=["runs"], status_code=202,
              summary="Stop a stream run gracefully: the event in flight finishes, the run completes",
              description="The run may execute on another gateway on the same storage (its queue worker stops it "
                          "within about 2 s). A run still waiting in the durable queue is cancelled: "
                          "`status` `cancelled`, the run ends `interrupted` without starting.")
    def stop_run(run_id: str, request: Request) -> JSONResponse:
        principal = principal_of(request.scope)
        tenant_id = principal.tenant_id if principal is not None else None
        live = gw.runs.find(run_id, tenant_id)
        if live is None:
            elsewhere = _stop_queued(gw, principal, tenant_id, run_id)
            if elsewhere is not None:
                return JSONResponse({"run_id": run_id, "status": elsewhere, "links": {
                    "run": f"/runs/{run_id}", "events": f"/runs/{run_id}/events"}}, 202)
            if find_record(gw, principal, run_id) is not None:
                raise ApiError(409, "run_not_running", f"run '{run_id}' has finished; nothing to stop", run_id=run_id)
            raise ApiError(404, "run_not_found", f"no run '{run_id}' here; GET /runs lists them", run_id=run_id)
        if live.status != "running":
            raise ApiError(409, "run_not_running", f"run '{run_id}' has finished; nothing to stop", run_id=run_id)
        if not live.streaming:
            raise ApiError(409, "not_a_stream_run", f"run '{run_id}' is not a stream run; only stream runs can be "
                           "stopped (an ordinary run ends when its last node does)", run_id=run_id)
        live.stop_requested.set()
        live.observe({"event": "stream_stop_requested", "run_id": run_id})
        return JSONResponse({"run_id": run_id, "status": "stopping", "links": {"run": f"/runs/{run_id}",
                             "events": f"/runs/{run_id}/events"}}, 202)

    @app.get("/runs/{run_id}", tags=["runs"], summary="A run: status, per-node status and timing, errors, results")
    def get_run(run_id: str, request: Request) -> dict[str, Any]:
        principal = principal_of(request.scope)
        tenant_id = principal.tenant_id if principal is not None else None
        live = gw.runs.find(run_id, tenant_id)
        if live is not None:
            d = live.to_dict()
            if live.status != "running":  # what its nodes printed and logged is in the record
                record = find_record(gw, principal, run_id)
                d["output"] = _redacted(gw, tenant_id, record.workflow, record.output) if record is not None else {}
                if record is not None:  # the agents' calls as stored (all of the run's, redacted)
                    d["calls"] = _redacted(gw, tenant_id, record.workflow, record.calls)
                    d.pop("calls_truncated", None)
                    if record.calls_truncated:
                        d["calls_truncated"] = record.calls_truncated
            return d
        record = find_record(gw, principal, run_id)
        if record is None and gw.runs.worker is not None:  # waiting in the durable queue
            queued = gw.runs.worker.queue.get(run_id)
            if queued is not None and queued.tenant_id == tenant_id:
                return queued.to_dict()
        if record is None:
            raise ApiError(404, "run_not_found", f"no run '{run_id}' here; GET /runs lists them", run_id=run_id)
        d = record.to_dict()
        d = _redacted(gw, tenant_id, record.workflow, d)
        d.pop("tenant", None)
        d["results"] = d.pop("outputs", None)
        if d.get("error"):
            d["error"] = {"type": None, "message": d["error"], "node_id": record.error_node, "parameter": None}
        return d
