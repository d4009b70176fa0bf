"""API integration nodes: HTTP requests, REST clients, OAuth2 and API-key authentication.

The node classes live in :mod:`~kailash.nodes.api.http`, :mod:`~kailash.nodes.api.rest`
and :mod:`~kailash.nodes.api.auth`; they are re-exported here lazily, and httpx itself is
imported only when a request is sent (``pip install 'kailash[http]'``).
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = ["HTTPRequestNode", "AsyncHTTPRequestNode", "RESTClientNode", "OAuth2Node", "APIKeyNode"]

_WHERE = {
    "HTTPRequestNode": "http",
    "AsyncHTTPRequestNode": "http",
    "RESTClientNode": "rest",
    "OAuth2Node": "auth",
    "APIKeyNode": "auth",
}


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'kailash.nodes.api' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"kailash.nodes.api.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
