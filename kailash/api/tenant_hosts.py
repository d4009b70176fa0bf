"""Tenants' host names: a tenant created with a domain is served only there, and only it is.

``normalise_domain`` checks and lower-cases a domain given to ``kailash tenant create``;
``request_host`` reads the host name a request was sent to; ``refuse_misdirected``
answers **421 Misdirected Request** (before any route runs) when a key is used under a
host name it may not be. The mapping of domains to tenants is the registry's
(:meth:`kailash.api.tenancy.TenantRegistry.host_refusal`).
"""

from __future__ import annotations

import re
from typing import Any

from kailash.errors import TenantError

__all__ = ["normalise_domain", "request_host", "refuse_misdirected"]

_DOMAIN = re.compile(r"^(?=.{1,253}$)[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*$")


def normalise_domain(domain: str | None) -> str | None:
    """``domain`` lower-cased without a trailing dot, or TenantError if it is not a host name."""
    if domain is None:
        return None
    name = domain.strip().lower().rstrip(".") if type(domain) is str else ""
    if not _DOMAIN.match(name):
        raise TenantError(f"domain {domain!r} is not a valid host name", parameter="domain",
                          expected="a host name such as acme.example.com", got=domain)
    return name


def request_host(headers: Any) -> str:
    """The host name a request was sent to (``Host`` header, lower case, without the port)."""
    for k, v in headers or ():
        if k == b"host":
            host = v.decode("latin-1").strip().lower()
            if host.startswith("["):
                return host[1:host.find("]")] if "]" in host else host
            return host.rsplit(":", 1)[0].rstrip(".") if ":" in host else host.rstrip(".")
    return ""


async def refuse_misdirected(tenants: Any, principal: Any, scope: dict[str, Any], send: Any) -> bool:
    """Answer 421 if ``principal``'s key may not be used at this request's host name; True if answered."""
    if not tenants.domains_cached():  # the registry may sit in a database: keep the lookup off the loop
        import anyio.to_thread

        await anyio.to_thread.run_sync(tenants.domains)
    why = tenants.host_refusal(principal.tenant_id, request_host(scope.get("headers")))
    if why is None:
        return False
    from kailash.api.responses import deny_websocket, error_body, send_json

    body = error_body("misdirected_request", why)
    if scope["type"] == "websocket":
        await deny_websocket(scope, send, 421, body, {})
    else:
        await send_json(send, 421, body, scope=scope)
    return True
