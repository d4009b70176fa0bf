"""The gateway's error shape, shared by routes and raw ASGI middleware.

Every error the gateway returns has one JSON shape::

    {"error": {"code": "workflow_not_found", "message": "...", ...extra fields}}

``code`` is stable and machine-readable; ``message`` says what failed and how to fix
it and never contains a secret. This module imports no third-party package at
module level, so the middleware can use it without FastAPI.
"""

from __future__ import annotations

import json
from collections.abc import MutableMapping
from typing import Any

__all__ = ["ApiError", "error_body", "send_json"]


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
    """``{"error": {"code", "message", **extra}}``."""
    return {"error": {"code": code, "message": message, **extra}}


async def send_json(send: Any, status: int, body: dict[str, Any], headers: dict[str, str] | None = None) -> None:
    """Send a complete JSON response on a raw ASGI ``send`` (for middleware)."""
    payload = json.dumps(body).encode()
    raw = [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode())]
    raw += [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in (headers or {}).items()]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": payload})


async def deny_websocket(scope: MutableMapping[str, Any], send: Any, status: int, body: dict[str, Any],
                         headers: dict[str, str] | None = None) -> None:
    """Refuse a websocket handshake with an HTTP status when the server supports it, else close."""
    if "websocket.http.response" in (scope.get("extensions") or {}):
        payload = json.dumps(body).encode()
        raw = [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode())]
        raw += [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in (headers or {}).items()]
        await send({"type": "websocket.http.response.start", "status": status, "headers": raw})
        await send({"type": "websocket.http.response.body", "body": payload})
    else:  # 4000 + HTTP status, the usual convention for application close codes
        await send({"type": "websocket.close", "code": 4000 + status, "reason": body["error"]["code"]})
