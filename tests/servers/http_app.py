"""A local HTTP service for integration tests, served by uvicorn on 127.0.0.1.

Endpoints (all JSON unless noted):

* ``POST /token``: OAuth2 client-credentials (form fields or HTTP Basic). Valid client:
  ``test-client`` / ``test-secret``. ``expires_in`` comes from ``state.token_lifetime``.
* ``GET|POST /protected/{path}``: needs ``Authorization: Bearer <issued token>``, an
  ``X-API-Key``/``Authorization: Bearer <api key>`` header or ``?api_key=``; else 401.
* ``/flaky/{key}?fail=N&status=503&retry_after=S``: the first N calls per key fail.
* ``POST /token-broken``: answers 200 with a text body; ``POST /revoke`` forgets every token.
* ``/slow?delay=S&group=G``: answers after S seconds (``state.max_in_flight[G]`` counts overlap).
* ``/echo``: method, path, query, headers and body as received.
* ``/text`` (text/plain), ``/badjson`` (says JSON, is not), ``/status/{code}``.
* ``/sse?count=N&types=a,b``: a server-sent-events stream; ``/sse/malformed``,
  ``/sse/drop/{key}?after=K&count=N`` (drops the first connection after K events and
  resumes from ``Last-Event-ID``), ``/sse/endless?interval=S``.

Every request is logged in ``state.log`` as ``(path, monotonic time)``.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import secrets
import time
from dataclasses import dataclass, field
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from starlette.routing import Route

CLIENT_ID = "test-client"
CLIENT_SECRET = "test-secret"
API_KEY = "test-api-key-0123456789"


class DeliberateDrop(Exception):
    """Raised mid-response to cut a stream the way a failing network would."""


class _HideDeliberateDrops(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        while exc is not None:
            if isinstance(exc, DeliberateDrop):
                return False
            exc = exc.__cause__ or exc.__context__ or (exc.exceptions[0] if isinstance(exc, BaseExceptionGroup) else None)
        return True


logging.getLogger("uvicorn.error").addFilter(_HideDeliberateDrops())


@dataclass
class ServerState:
    """Mutable state of one server instance, inspected by tests."""

    token_lifetime: int = 3600
    tokens_issued: list[str] = field(default_factory=list)
    flaky_calls: dict[str, int] = field(default_factory=dict)
    log: list[tuple[str, float]] = field(default_factory=list)
    sse_connections: dict[str, list[str | None]] = field(default_factory=dict)
    in_flight: dict[str, int] = field(default_factory=dict)  # by ?group=
    max_in_flight: dict[str, int] = field(default_factory=dict)

    def hits(self, path: str) -> list[float]:
        return [t for p, t in self.log if p == path]


def _client_credentials(request: Request, form: Any) -> tuple[str | None, str | None]:
    auth = request.headers.get("authorization", "")
    if auth.lower().startswith("basic "):
        raw = base64.b64decode(auth[6:]).decode()
        cid, _, secret = raw.partition(":")
        return cid, secret
    return form.get("client_id"), form.get("client_secret")


def create_app(state: ServerState) -> Any:
    """Build the Starlette app bound to ``state``."""

    async def token(request: Request) -> Response:
        form = await request.form()
        if form.get("grant_type") != "client_credentials":
            return JSONResponse({"error": "unsupported_grant_type"}, status_code=400)
        cid, secret = _client_credentials(request, form)
        if cid != CLIENT_ID or secret != CLIENT_SECRET:
            return JSONResponse({"error": "invalid_client"}, status_code=401)
        tok = "tok-" + secrets.token_hex(12)
        state.tokens_issued.append(tok)
        body = {"access_token": tok, "token_type": "Bearer", "expires_in": state.token_lifetime}
        if form.get("scope"):
            body["scope"] = form.get("scope")
        return JSONResponse(body)

    def _authorised(request: Request) -> str | None:
        auth = request.headers.get("authorization", "")
        if auth.startswith("Bearer "):
            value = auth[7:]
            if value in state.tokens_issued:
                return "oauth2"
            if value == API_KEY:
                return "api_key"
        if request.headers.get("x-api-key") == API_KEY or request.query_params.get("api_key") == API_KEY:
            return "api_key"
        return None

    async def protected(request: Request) -> Response:
        how = _authorised(request)
        if how is None:
            return JSONResponse({"error": "unauthorized"}, status_code=401)
        body = None
        if request.method in ("POST", "PUT", "PATCH"):
            raw = await request.body()
            body = json.loads(raw) if raw else None
        return JSONResponse(
            {
                "resource": request.path_params["path"],
                "method": request.method,
                "auth": how,
                "query": dict(request.query_params),
                "body": body,
                "items": [{"id": 1, "name": "alpha"}, {"id": 2, "name": "beta"}],
            }
        )

    async def flaky(request: Request) -> Response:
        key = request.path_params["key"]
        fail = int(request.query_params.get("fail", "2"))
        status = int(request.query_params.get("status", "503"))
        n = state.flaky_calls.get(key, 0) + 1
        state.flaky_calls[key] = n
        if n <= fail:
            headers = {}
            if "retry_after" in request.query_params:
                headers["Retry-After"] = request.query_params["retry_after"]
            return JSONResponse({"error": "try again", "call": n}, status_code=status, headers=headers)
        return JSONResponse({"ok": True, "calls": n})

    async def slow(request: Request) -> Response:
        delay = float(request.query_params.get("delay", "0.3"))
        group = request.query_params.get("group", "")
        state.in_flight[group] = state.in_flight.get(group, 0) + 1
        state.max_in_flight[group] = max(state.max_in_flight.get(group, 0), state.in_flight[group])
        try:
            await asyncio.sleep(delay)
        finally:
            state.in_flight[group] -= 1
        return JSONResponse({"slept": delay, "source": request.query_params.get("source")})

    async def echo(request: Request) -> Response:
        raw = await request.body()
        try:
            body: Any = json.loads(raw) if raw else None
        except ValueError:
            body = raw.decode("utf-8", "replace")
        return JSONResponse(
            {
                "method": request.method,
                "path": request.url.path,
                "query": dict(request.query_params),
                "headers": {k.lower(): v for k, v in request.headers.items()},
                "body": body,
            }
        )

    async def token_broken(request: Request) -> Response:
        return PlainTextResponse("token service is down for maintenance")

    async def revoke(request: Request) -> Response:
        state.tokens_issued.clear()
        return JSONResponse({"revoked": True})

    async def text(request: Request) -> Response:
        return PlainTextResponse("plain text body")

    async def badjson(request: Request) -> Response:
        return Response("{not json", media_type="application/json")

    async def status(request: Request) -> Response:
        code = int(request.path_params["code"])
        return JSONResponse({"status": code}, status_code=code)

    def _sse(events: list[tuple[str | None, str, str | None]], interval: float = 0.0,
             drop_after: int | None = None) -> StreamingResponse:
        async def gen():
            sent = 0
            for event_id, payload, etype in events:
                if drop_after is not None and sent >= drop_after:
                    raise DeliberateDrop("connection dropped by the test server")
                sent += 1
                chunk = ""
                if event_id is not None:
                    chunk += f"id: {event_id}\n"
                if etype:
                    chunk += f"event: {etype}\n"
                for line in payload.split("\n"):
                    chunk += f"data: {line}\n"
                yield chunk + "\n"
                if interval:
                    await asyncio.sleep(interval)

        return StreamingResponse(gen(), media_type="text/event-stream")

    def _typed_events(request: Request, start: int = 0) -> list[tuple[str | None, str, str | None]]:
        count = int(request.query_params.get("count", "5"))
        types = request.query_params.get("types", "data_update,status_change").split(",")
        return [
            (str(i), json.dumps({"seq": i, "value": i * 10}), types[i % len(types)]) for i in range(start, count)
        ]

    async def sse(request: Request) -> Response:
        return _sse(_typed_events(request), float(request.query_params.get("interval", "0")))

    async def sse_malformed(request: Request) -> Response:
        return _sse([("0", json.dumps({"seq": 0}), "data_update"), ("1", "{broken", "data_update")])

    async def sse_drop(request: Request) -> Response:
        key = request.path_params["key"]
        last = request.headers.get("last-event-id")
        state.sse_connections.setdefault(key, []).append(last)
        start = int(last) + 1 if last is not None else 0
        first = len(state.sse_connections[key]) == 1
        return _sse(_typed_events(request, start), drop_after=int(request.query_params.get("after", "2")) if first else None)

    async def sse_endless(request: Request) -> Response:
        interval = float(request.query_params.get("interval", "0.05"))
        events = [(str(i), json.dumps({"seq": i}), "tick") for i in range(100_000)]
        return _sse(events, interval)

    async def middleware_log(scope, receive, send, app):
        state.log.append((scope.get("path", ""), time.monotonic()))
        await app(scope, receive, send)

    routes = [
        Route("/token", token, methods=["POST"]),
        Route("/token-broken", token_broken, methods=["POST"]),
        Route("/revoke", revoke, methods=["POST"]),
        Route("/protected/{path:path}", protected, methods=["GET", "POST", "PUT", "PATCH", "DELETE"]),
        Route("/flaky/{key}", flaky, methods=["GET", "POST"]),
        Route("/slow", slow),
        Route("/echo", echo, methods=["GET", "POST", "PUT", "PATCH", "DELETE"]),
        Route("/text", text),
        Route("/badjson", badjson),
        Route("/status/{code:int}", status, methods=["GET", "POST"]),
        Route("/sse", sse),
        Route("/sse/malformed", sse_malformed),
        Route("/sse/drop/{key}", sse_drop),
        Route("/sse/endless", sse_endless),
    ]
    inner = Starlette(routes=routes)

    async def app(scope, receive, send):
        if scope["type"] == "http":
            await middleware_log(scope, receive, send, inner)
        else:
            await inner(scope, receive, send)

    return app
