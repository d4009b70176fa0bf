"""The gateway's fixed request pipeline: the slots every request passes, outermost first.

``guard`` (the cross-site and Host checks of :mod:`kailash.api.crosssite`, after settling
the client address from the trusted proxies), ``auth``, ``limits``, ``body`` (the size
cap). Each slot reads the gateway's settings per request (through its public methods),
so keys, limits and origins may change after the app is built. Nothing here touches
storage or runs a workflow.
"""

from __future__ import annotations

from typing import Any

from kailash.api.crosssite import refusal
from kailash.api.limits import resolve_client
from kailash.api.middleware import principal_of, reject_rate_limited
from kailash.api.responses import deny_websocket, error_body, send_json

__all__ = ["GatewayLayer", "guard", "limit"]


class GatewayLayer:
    """One of the gateway's fixed middleware slots; looks up the gateway's current settings per request."""

    def __init__(self, app: Any, gateway: Any, kind: str) -> None:
        self.app = app
        self.gateway = gateway
        self.kind = kind

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        gw = self.gateway
        if self.kind == "guard":
            await guard(gw, scope, receive, send, self.app)
        elif self.kind == "auth":
            auth = gw.authentication
            if auth is None:
                await self.app(scope, receive, send)
            else:
                await auth.dispatch(scope, receive, send, self.app)
        elif self.kind == "limits":
            await limit(gw, scope, receive, send, self.app)
        else:
            await gw.body_limit.dispatch(scope, receive, send, self.app)


async def limit(gw: Any, scope: dict[str, Any], receive: Any, send: Any, app: Any) -> None:
    """The ``limits`` slot: a tenant key's host name (421), the tenant's own rate, then added rate limits."""
    if scope["type"] in ("http", "websocket"):
        principal = principal_of(scope)
        if principal is not None and gw.tenants is not None:
            from kailash.api.tenant_hosts import refuse_misdirected

            if principal.tenant_id is not None:
                gw.refresh_tenant(principal.tenant_id)
            if await refuse_misdirected(gw.tenants, principal, scope, send):
                return
        if principal is not None and principal.tenant_id is not None and principal.requests_per_minute:
            limiter = gw.tenant_limiter(principal.requests_per_minute)
            wait = await limiter.retry_after(f"{principal.tenant_id}", principal.requests_per_minute,
                                             redis_db=principal.redis_db)
            if wait > 0:
                await reject_rate_limited(scope, send, principal.requests_per_minute, wait)
                return
    inner = app
    for limiter in reversed(gw.rate_limiters):
        inner = _bind(limiter, inner)
    await inner(scope, receive, send)


def _bind(middleware: Any, app: Any) -> Any:
    async def call(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await middleware.dispatch(scope, receive, send, app)

    return call


async def guard(gw: Any, scope: dict[str, Any], receive: Any, send: Any, app: Any) -> None:
    """Settle the client address, then answer 403 to what :func:`~kailash.api.crosssite.refusal` refuses."""
    if scope["type"] in ("http", "websocket"):
        resolve_client(scope, gw.trusted_proxies)
        refused = refusal(scope, gw.origin_policy(), trusted_proxies=gw.trusted_proxies)
        if refused is not None:
            body = error_body(*refused)
            if scope["type"] == "websocket":
                await deny_websocket(scope, send, 403, body)
            else:
                await send_json(send, 403, body, scope=scope)
            return
    await app(scope, receive, send)
