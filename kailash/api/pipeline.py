"""The gateway's fixed request pipeline: the slots every request passes, outermost first.

``guard`` (the cross-site and Host checks of :mod:`kailash.api.crosssite`, after settling
the client address from the trusted proxies), ``auth``, ``limits``, ``body`` (the size
cap). Each slot reads the gateway's settings per request, so keys, limits and origins
may change after the app is built. Nothing here touches storage or runs a workflow.
"""

from __future__ import annotations

from typing import Any

from kailash.api.crosssite import OriginPolicy, refusal
from kailash.api.limits import resolve_client
from kailash.api.responses import deny_websocket, error_body, send_json

__all__ = ["GatewayLayer", "guard", "origin_policy"]


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
            await gw._limit(scope, receive, send, self.app)
        else:
            await gw._body_limit.dispatch(scope, receive, send, self.app)


def origin_policy(gw: Any) -> OriginPolicy:
    """The gateway's :class:`~kailash.api.crosssite.OriginPolicy` for its current settings (cached)."""
    keyless = gw.keyless
    key = (keyless, tuple(gw.cors_origins or ()), gw.host)
    policy = gw._policies.get(key)
    if policy is None:
        policy = gw._policies[key] = OriginPolicy.build(gw.cors_origins, keyless=keyless, host=str(gw.host))
    return policy


async def guard(gw: Any, scope: dict[str, Any], receive: Any, send: Any, app: Any) -> None:
    """Settle the client address, then answer 403 to what :func:`~kailash.api.crosssite.refusal` refuses."""
    if scope["type"] in ("http", "websocket"):
        resolve_client(scope, gw.trusted_proxies)
        refused = refusal(scope, origin_policy(gw), trusted_proxies=gw.trusted_proxies)
        if refused is not None:
            body = error_body(*refused)
            if scope["type"] == "websocket":
                await deny_websocket(scope, send, 403, body)
            else:
                await send_json(send, 403, body)
            return
    await app(scope, receive, send)
