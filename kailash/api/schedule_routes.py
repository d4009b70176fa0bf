"""The gateway's schedule endpoints: ``/schedules`` (list, create), ``/schedules/{id}`` (read, change, delete), its fires.

A schedule belongs to the namespace (gateway or tenant) of the key that created it;
every lookup goes through that namespace, and another namespace's schedule answers
exactly like one that does not exist (404). A new schedule is checked like a run of
its workflow would be (the workflow exists here, its parameters are valid, a tenant
may run it), and a bad field is a 422 naming it (``parameter``: ``cron``, ``every``,
``timezone``, ``catchup``, ``workflow``, ``parameters``). When schedules fire is
:mod:`kailash.api.scheduling`'s business.
"""

from __future__ import annotations

import threading
from typing import Any

from fastapi import Request, Response
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from kailash.api.bodies import read_json
from kailash.api.middleware import principal_of
from kailash.api.responses import ApiError
from kailash.api.scheduling import check_schedule_run

__all__ = ["install", "MAX_SCHEDULES"]

#: schedules one namespace (a tenant, or the gateway's own) may hold; each fires runs without a request, so
#: one tenant must not be able to make the tick loop (and the queue) carry an unbounded number of them.
#: ``gateway.max_schedules`` overrides it.
MAX_SCHEDULES = 500
_adding = threading.Lock()  # count-then-insert in one step (per process; gateways sharing a store may overshoot
#                             by the requests in flight at once)

_CREATE = ("workflow", "cron", "every", "timezone", "parameters", "catchup", "enabled")
_CHANGE = ("cron", "every", "timezone", "parameters", "catchup", "enabled")

_SCHEDULE_SCHEMA: dict[str, Any] = {"type": "object", "properties": {
    "workflow": {"type": "string", "description": "the saved (or registered) workflow to run"},
    "cron": {"type": "string", "description": "a cron expression, '*/5 * * * *' (or give 'every')"},
    "every": {"type": ["string", "integer"], "description": "an interval: seconds, or '30s', '5m', '2h', '1d'"},
    "timezone": {"type": "string", "description": "IANA timezone the cron expression is read in (default UTC)"},
    "parameters": {"type": "object", "description": "{node_id: {parameter: value}} for each run"},
    "catchup": {"type": "string", "enum": ["skip", "latest", "all"],
                "description": "fires missed while no gateway ran: skip (default), latest once, or all"},
    "enabled": {"type": "boolean", "description": "false pauses the schedule"}}}


def _view(schedule: Any) -> dict[str, Any]:
    d = schedule.to_dict()
    d.pop("tenant_id", None)
    d["links"] = {"self": f"/schedules/{schedule.id}", "fires": f"/schedules/{schedule.id}/fires"}
    return d


def _fields(body: Any, allowed: tuple[str, ...]) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise ApiError(422, "invalid_schedule", "expected a JSON object with the schedule's fields",
                       parameter="body")
    for name in body:
        if name not in allowed:
            raise ApiError(422, "invalid_schedule", f"unknown field '{name}'; a schedule has {', '.join(allowed)}",
                           parameter=name)
    if "enabled" in body and type(body["enabled"]) is not bool:
        raise ApiError(422, "invalid_schedule", "'enabled' must be true or false", parameter="enabled")
    return dict(body)


def _not_found(schedule_id: str) -> ApiError:
    return ApiError(404, "schedule_not_found", f"no schedule '{schedule_id}' here; GET /schedules lists them",
                    schedule_id=schedule_id)


def install(app: Any, gw: Any) -> None:
    """Add the schedule routes to ``app``."""

    def tenant_of(request: Request) -> str | None:
        principal = principal_of(request.scope)
        return principal.tenant_id if principal is not None else None

    @app.get("/schedules", tags=["schedules"], summary="The schedules of the caller's namespace")
    def list_schedules(request: Request) -> dict[str, Any]:
        return {"schedules": [_view(s) for s in gw.schedules.list(tenant_id=tenant_of(request))]}

    async def create(request: Request) -> JSONResponse:
        from kailash.runtime.schedules import check_schedule

        fields = _fields(await read_json(request), _CREATE)
        principal = principal_of(request.scope)

        def save() -> Any:
            given = {k: v for k, v in fields.items() if k not in ("enabled", "workflow")}
            checked = check_schedule(workflow=fields.get("workflow"), **given)  # field errors first
            check_schedule_run(gw, principal, checked["workflow"], checked["parameters"])
            tenant_id = tenant_of(request)
            limit = getattr(gw, "max_schedules", None) or MAX_SCHEDULES
            with _adding:
                if len(gw.schedules.list(tenant_id=tenant_id)) >= limit:
                    raise ApiError(429, "too_many_schedules", f"this namespace has {limit} schedules, the most it may "
                                   "have; delete one first", limit=limit)
                return gw.schedules.add(**checked, enabled=fields.get("enabled", True), tenant_id=tenant_id)

        schedule = await run_in_threadpool(save)
        return JSONResponse(_view(schedule), 201, headers={"Location": f"/schedules/{schedule.id}"})

    app.add_api_route("/schedules", create, methods=["POST"], status_code=201, tags=["schedules"],
                      summary="Create a schedule: a workflow run on a cron expression or an interval",
                      openapi_extra={"requestBody": {"required": True, "content": {"application/json": {
                          "schema": {**_SCHEDULE_SCHEMA, "required": ["workflow"]}}}},
                          "responses": {"422": {"description": "a field is invalid; 'parameter' names it"},
                                        "429": {"description": "too_many_schedules: the namespace holds "
                                                "max_schedules already"}}})

    @app.get("/schedules/{schedule_id}", tags=["schedules"], summary="One schedule, with its next fire time")
    def get_schedule(schedule_id: str, request: Request) -> dict[str, Any]:
        schedule = gw.schedules.get(schedule_id, tenant_id=tenant_of(request))
        if schedule is None:
            raise _not_found(schedule_id)
        return _view(schedule)

    async def change(schedule_id: str, request: Request) -> dict[str, Any]:
        fields = _fields(await read_json(request), _CHANGE)
        principal = principal_of(request.scope)
        tenant_id = tenant_of(request)

        def save() -> Any:
            if "parameters" in fields:
                current = gw.schedules.get(schedule_id, tenant_id=tenant_id)
                if current is None:
                    raise _not_found(schedule_id)
                if type(fields["parameters"]) is dict:
                    check_schedule_run(gw, principal, current.workflow, fields["parameters"])
            return gw.schedules.update(schedule_id, tenant_id=tenant_id, **fields)

        schedule = await run_in_threadpool(save)
        if schedule is None:
            raise _not_found(schedule_id)
        return _view(schedule)

    app.add_api_route("/schedules/{schedule_id}", change, methods=["PATCH"], tags=["schedules"],
                      summary="Change a schedule; {\"enabled\": false} pauses it, true resumes it from now",
                      openapi_extra={"requestBody": {"required": True, "content": {"application/json": {
                          "schema": {**_SCHEDULE_SCHEMA, "properties": {
                              k: v for k, v in _SCHEDULE_SCHEMA["properties"].items() if k != "workflow"}}}}}})

    @app.delete("/schedules/{schedule_id}", status_code=204, response_class=Response, response_model=None,
                tags=["schedules"], summary="Delete a schedule and its fire history")
    def delete_schedule(schedule_id: str, request: Request) -> Response:
        if not gw.schedules.delete(schedule_id, tenant_id=tenant_of(request)):
            raise _not_found(schedule_id)
        return Response(status_code=204)

    @app.get("/schedules/{schedule_id}/fires", tags=["schedules"],
             summary="A schedule's recent fires, newest first: each fire time and the run it started")
    def list_fires(schedule_id: str, request: Request, limit: int = 50) -> dict[str, Any]:
        if gw.schedules.get(schedule_id, tenant_id=tenant_of(request)) is None:
            raise _not_found(schedule_id)
        fires = gw.schedules.fires(schedule_id, limit=max(1, min(int(limit), 500)))
        return {"fires": [f.to_dict() | {"links": {"run": f"/runs/{f.run_id}"}} for f in fires]}
