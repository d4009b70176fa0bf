"""The counting behind the rate limits, and the request-body cap.

Rate limits use GCRA (the "generic cell rate algorithm", a smooth token bucket): per
bucket only a theoretical arrival time is kept. :class:`MemoryCounters` keeps it in
this process; :class:`RedisCounters` keeps it in Redis, updated by one atomic Lua
script using the Redis server's clock, so several gateway processes share the
counts. :class:`BodySizeLimitMiddleware` refuses oversized request bodies with 413.
"""

from __future__ import annotations

import time
from typing import Any

from kailash.api.responses import error_body, send_json

__all__ = ["MemoryCounters", "RedisCounters", "BodySizeLimitMiddleware", "BodyTooLarge"]


def _header(scope: dict[str, Any], name: bytes) -> str | None:
    for k, v in scope.get("headers") or ():
        if k == name:
            return v.decode("latin-1")
    return None


_GCRA_LUA = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local interval = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
if tat < now then tat = now end
local new_tat = tat + interval
local allow_at = new_tat - burst * interval
if now < allow_at then return tostring(allow_at - now) end
redis.call('SET', KEYS[1], tostring(new_tat), 'PX', math.ceil((new_tat - now) * 1000) + 1000)
return '0'
"""


class MemoryCounters:
    """GCRA state in this process: bucket -> theoretical arrival time."""

    def __init__(self) -> None:
        self.tat: dict[str, float] = {}

    async def hit(self, bucket: str, interval: float, burst: int) -> float:
        now = time.monotonic()
        tat = max(self.tat.get(bucket, now), now)
        new_tat = tat + interval
        allow_at = new_tat - burst * interval
        if now < allow_at:
            return allow_at - now
        self.tat[bucket] = new_tat
        if len(self.tat) > 50_000:  # drop buckets that have fully refilled
            self.tat = {b: t for b, t in self.tat.items() if t > now}
        return 0.0


class RedisCounters:
    """GCRA state in Redis (one atomic script per request), shared by every gateway process."""

    def __init__(self, url: str, db: int | None) -> None:
        import redis.asyncio as aioredis

        if db is not None:  # the URL's own database would win over a db= argument: replace it
            from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

            parts = urlsplit(url)
            query = urlencode([(k, v) for k, v in parse_qsl(parts.query) if k != "db"])
            url = urlunsplit(parts._replace(path=f"/{db}", query=query))
        self.client = aioredis.from_url(url)
        self.script = self.client.register_script(_GCRA_LUA)

    async def hit(self, bucket: str, interval: float, burst: int) -> float:
        return float(await self.script(keys=[bucket], args=[interval, burst]))


class BodyTooLarge(Exception):
    """Raised from ``receive`` when a request body passes the cap."""


class BodySizeLimitMiddleware:
    """Refuse request bodies larger than ``max_body_size`` bytes with 413.

    A declared ``Content-Length`` over the cap is refused before anything is read; a
    streamed body is counted as it arrives and refused when it passes the cap.
    """

    def __init__(self, app: Any = None, max_body_size: int = 10 * 1024 * 1024) -> None:
        self.app = app
        self.max_body_size = max_body_size

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        await self.dispatch(scope, receive, send, self.app)

    def _body(self) -> dict[str, Any]:
        return error_body("body_too_large", f"request body is larger than {self.max_body_size} bytes",
                          max_body_size=self.max_body_size)

    async def dispatch(self, scope: dict[str, Any], receive: Any, send: Any, app: Any) -> None:
        if scope["type"] != "http":
            await app(scope, receive, send)
            return
        limit = self.max_body_size
        declared = _header(scope, b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            await send_json(send, 413, self._body())
            return
        seen = 0
        started = False

        async def counted_receive() -> dict[str, Any]:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    raise BodyTooLarge()
            return message

        async def tracking_send(message: dict[str, Any]) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await app(scope, counted_receive, tracking_send)
        except BodyTooLarge:
            if not started:
                await send_json(send, 413, self._body())
