"""The gateway's error shape, shared by routes and raw ASGI middleware.

Every error the gateway returns is an RFC 9457 problem document, served as
``application/problem+json``::

    {"type": "urn:kailash:problem:workflow_not_found", "title": "Workflow not found",
     "status": 404, "detail": "...", "instance": "/workflows/x", "code": "workflow_not_found",
     ...extra fields,
     "error": {"code": "workflow_not_found", "message": "...", ...extra fields}}

``code`` is stable and machine-readable (``type`` is the same code as a URI); ``detail``
says what failed and how to fix it and never contains a secret. ``error`` repeats the
code, message and fields in the gateway's earlier shape, for clients written against it.
Routes and middleware build the body with :func:`error_body`; :func:`problem_document`
turns it into the document when it is sent. This module imports no third-party package
at module level, so the middleware can use it without FastAPI.
"""

from __future__ import annotations

import json
from collections.abc import MutableMapping
from typing import Any

__all__ = ["ApiError", "error_body", "send_json", "problem_document", "PROBLEM_JSON", "PROBLEM_TYPE"]

#: the media type of every error response (RFC 9457)
PROBLEM_JSON = "application/problem+json"
#: a problem's ``type`` is this prefix and its ``code``
PROBLEM_TYPE = "urn:kailash:problem:"
_MEMBERS = ("type", "title", "status", "detail", "instance")


class ApiError(Exception):
    """An HTTP error with the gateway's JSON body.

    Args:
        status: the HTTP status code.
        code: a stable machine-readable code (``"workflow_not_found"``).
        message: what went wrong, for people.
        headers: extra response headers (``Retry-After``).
        **extra: more fields for the error object (``problems``, ``node_id``...).
    """

    def __init__(self, status: int, code: str, message: str, *, headers: dict[str, str] | None = None,
                 **extra: Any) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers or {}
        self.extra = extra

    def body(self) -> dict[str, Any]:
        return error_body(self.code, self.message, **self.extra)


def error_body(code: str, message: str, **extra: Any) -> dict[str, Any]:
    """``{"error": {"code", "message", **extra}}``: what :func:`problem_document` turns into the answer."""
    return {"error": {"code": code, "message": message, **extra}}


def problem_document(status: int, body: dict[str, Any], instance: str | None = None) -> dict[str, Any]:
    """The RFC 9457 problem document for an :func:`error_body` (``status``: the HTTP status;
    ``instance``: the request path). Fields beside ``error`` in ``body`` (a failed run's
    ``run_id``, ``results``...) become members too; a document is returned unchanged.

    Example:
        >>> doc = problem_document(404, error_body("run_not_found", "no run 'x' here", run_id="x"), "/runs/x")
        >>> doc["type"], doc["title"], doc["status"], doc["detail"], doc["run_id"]
        ('urn:kailash:problem:run_not_found', 'Run not found', 404, "no run 'x' here", 'x')
    """
    err = body.get("error")
    if not isinstance(err, dict) or "type" in body:
        return body
    code = str(err.get("code") or "error")
    doc: dict[str, Any] = {"type": PROBLEM_TYPE + code, "title": code.replace("_", " ").capitalize(),
                           "status": status, "detail": str(err.get("message", ""))}
    if instance:
        doc["instance"] = instance
    for key, value in err.items():
        if key != "message" and key not in _MEMBERS:
            doc[key] = value
    for key, value in body.items():
        if key != "error" and key not in _MEMBERS:
            doc[key] = value
    doc["error"] = err
    return doc


def _encode(status: int, body: dict[str, Any], scope: Any = None) -> tuple[bytes, bytes]:
    """``(payload, content type)``: an error body as a problem document."""
    if status >= 400 and isinstance(body.get("error"), dict):
        path = scope.get("path") if isinstance(scope, dict) else None
        return json.dumps(problem_document(status, body, path)).encode(), PROBLEM_JSON.encode()
    return json.dumps(body).encode(), b"application/json"


async def send_json(send: Any, status: int, body: dict[str, Any], headers: dict[str, str] | None = None,
                    scope: Any = None) -> None:
    """Send a complete JSON response on a raw ASGI ``send`` (for middleware); an error body
    goes as a problem document (``scope``: the request's, for its ``instance``)."""
    payload, media = _encode(status, body, scope)
    raw = [(b"content-type", media), (b"content-length", str(len(payload)).encode())]
    raw += [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in (headers or {}).items()]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": payload})


async def deny_websocket(scope: MutableMapping[str, Any], send: Any, status: int, body: dict[str, Any],
                         headers: dict[str, str] | None = None) -> None:
    """Refuse a websocket handshake with an HTTP status when the server supports it, else close."""
    if "websocket.http.response" in (scope.get("extensions") or {}):
        payload, media = _encode(status, body, scope)
        raw = [(b"content-type", media), (b"content-length", str(len(payload)).encode())]
        raw += [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in (headers or {}).items()]
        await send({"type": "websocket.http.response.start", "status": status, "headers": raw})
        await send({"type": "websocket.http.response.body", "body": payload})
    else:  # 4000 + HTTP status, the usual convention for application close codes
        await send({"type": "websocket.close", "code": 4000 + status, "reason": body["error"]["code"]})
