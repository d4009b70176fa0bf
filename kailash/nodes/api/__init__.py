"""API integration nodes: HTTP requests, REST clients, OAuth2 and API-key authentication.

The node classes live in :mod:`~kailash.nodes.api.http`, :mod:`~kailash.nodes.api.rest`
and :mod:`~kailash.nodes.api.auth`; they are re-exported here lazily, and httpx itself is
imported only when a request is sent (``pip install 'kailash[http]'``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from kailash._lazy import lazy_exports

__all__ = ["HTTPRequestNode", "AsyncHTTPRequestNode", "RESTClientNode", "OAuth2Node", "APIKeyNode"]

_WHERE = {
    "HTTPRequestNode": "kailash.nodes.api.http",
    "AsyncHTTPRequestNode": "kailash.nodes.api.http",
    "RESTClientNode": "kailash.nodes.api.rest",
    "OAuth2Node": "kailash.nodes.api.auth",
    "APIKeyNode": "kailash.nodes.api.auth",
}


if TYPE_CHECKING:  # what type checkers see; at run time each name is imported on first use
    from kailash.nodes.api.auth import APIKeyNode as APIKeyNode
    from kailash.nodes.api.auth import OAuth2Node as OAuth2Node
    from kailash.nodes.api.http import AsyncHTTPRequestNode as AsyncHTTPRequestNode
    from kailash.nodes.api.http import HTTPRequestNode as HTTPRequestNode
    from kailash.nodes.api.rest import RESTClientNode as RESTClientNode

__getattr__ = lazy_exports("kailash.nodes.api", _WHERE, globals())



def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
