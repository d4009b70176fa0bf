"""The gateway's one error→status table and the one exception handler that consults it.

Every exception that leaves a route becomes an HTTP answer here, an RFC 9457 problem
document (``application/problem+json``, see :mod:`kailash.api.responses`). :data:`ERROR_STATUSES` maps an exception class to its
status and stable ``code``; an exception is answered by the row of the nearest class in
its MRO (the same rule Starlette uses to pick a handler), so a subclass without a row
of its own answers like its parent. :class:`~kailash.api.responses.ApiError` and
Starlette's ``HTTPException`` carry their own status. Anything not in the table (a bug)
is a 500 ``internal_error`` whose message says nothing about the cause; the cause goes
to the log by type name only. The table is documented in ``docs/api.md``.

Routes that know more about a failure (a run's bad parameters, a tenant's refused
capability) raise :class:`~kailash.api.responses.ApiError` with a specific code themselves.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from kailash.api.documents import problem
from kailash.api.limits import BodyTooLarge
from kailash.api.responses import PROBLEM_JSON, ApiError, error_body, problem_document
from kailash.errors import (
    CircuitOpenError,
    ClusterConnectionError,
    KailashError,
    NodeConfigurationError,
    NodeExecutionError,
    NodeTimeoutError,
    RunStoppedError,
    ScheduleError,
    SecurityError,
    SerializationError,
    TenantError,
    UnknownNodeTypeError,
    WorkflowValidationError,
)

__all__ = ["ErrorStatus", "ERROR_STATUSES", "status_of", "answer", "handle", "install"]

logger = logging.getLogger("kailash.api")


@dataclass(frozen=True, kw_only=True)
class ErrorStatus:
    """How one exception class is answered.

    Attributes:
        status: the HTTP status (``0``: the exception carries its own).
        code: the stable error code (``""``: the exception carries its own).
    """

    status: int
    code: str


#: exception class → answer; the nearest class in an exception's MRO wins.
ERROR_STATUSES: dict[type[BaseException], ErrorStatus] = {
    ApiError: ErrorStatus(status=0, code=""),
    StarletteHTTPException: ErrorStatus(status=0, code=""),
    RequestValidationError: ErrorStatus(status=422, code="invalid_request"),
    BodyTooLarge: ErrorStatus(status=413, code="body_too_large"),
    WorkflowValidationError: ErrorStatus(status=422, code="invalid_workflow"),
    SerializationError: ErrorStatus(status=422, code="invalid_workflow"),
    UnknownNodeTypeError: ErrorStatus(status=422, code="unknown_node_type"),
    NodeConfigurationError: ErrorStatus(status=422, code="invalid_node_configuration"),
    SecurityError: ErrorStatus(status=403, code="security_refused"),
    TenantError: ErrorStatus(status=404, code="tenant_not_found"),
    ScheduleError: ErrorStatus(status=422, code="invalid_schedule"),
    NodeTimeoutError: ErrorStatus(status=504, code="node_timeout"),
    CircuitOpenError: ErrorStatus(status=503, code="circuit_open"),
    RunStoppedError: ErrorStatus(status=409, code="run_stopped"),
    ClusterConnectionError: ErrorStatus(status=503, code="cluster_unavailable"),
    NodeExecutionError: ErrorStatus(status=422, code="node_failed"),  # the work failed, not the gateway
    KailashError: ErrorStatus(status=500, code="internal_error"),
    Exception: ErrorStatus(status=500, code="internal_error"),
}

_HTTP_CODES = {404: "not_found", 405: "method_not_allowed"}
_INTERNAL = "internal error; see the gateway's log"


def status_of(exc: BaseException) -> ErrorStatus:
    """The table row answering ``exc``: its nearest class (in MRO order) that has one."""
    for cls in type(exc).__mro__:
        row = ERROR_STATUSES.get(cls)
        if row is not None:
            return row
    return ERROR_STATUSES[Exception]


def answer(exc: BaseException) -> tuple[int, dict[str, Any], dict[str, str]]:
    """``(status, JSON body, headers)`` for ``exc``, from :data:`ERROR_STATUSES`."""
    row = status_of(exc)
    if isinstance(exc, ApiError):
        return exc.status, exc.body(), dict(exc.headers)
    if isinstance(exc, StarletteHTTPException):
        code = _HTTP_CODES.get(exc.status_code, "http_error")
        return exc.status_code, error_body(code, str(exc.detail)), dict(exc.headers or {})
    if isinstance(exc, RequestValidationError):
        problems = [problem(f"{'.'.join(str(p) for p in e.get('loc', ()))}: {e.get('msg')}") for e in exc.errors()]
        return row.status, error_body(row.code, "the request is not valid", problems=problems), {}
    if isinstance(exc, BodyTooLarge):
        return row.status, error_body(row.code, str(exc), max_body_size=exc.max_body_size), {}
    if isinstance(exc, KailashError) and row.code != "internal_error":
        extra: dict[str, Any] = {"node_id": exc.node_id, "parameter": exc.parameter}
        if isinstance(exc, WorkflowValidationError):
            extra["problems"] = [p.to_dict() for p in exc.problems]
        if isinstance(exc, UnknownNodeTypeError):
            extra["suggestions"] = exc.suggestions
        return row.status, error_body(row.code, exc.message, **extra), {}
    return row.status, error_body(row.code, _INTERNAL), {}


async def handle(request: Request, exc: Exception) -> JSONResponse:
    """The gateway's one exception handler: answer ``exc`` from the table."""
    status, body, headers = answer(exc)
    if status >= 500 and not isinstance(exc, (ApiError, StarletteHTTPException)):  # those chose their status
        logger.error("%s on %s %s: %s", body["error"]["code"], request.method, request.url.path, type(exc).__name__)
    return JSONResponse(problem_document(status, body, request.url.path), status, headers=headers or None,
                        media_type=PROBLEM_JSON)


def install(app: Any) -> None:
    """Make :func:`handle` the handler of every class in the table."""
    for cls in ERROR_STATUSES:
        app.add_exception_handler(cls, handle)
