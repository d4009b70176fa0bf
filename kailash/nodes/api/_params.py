"""What every request node accepts: the shared parameters and credential-header marking.

:func:`common_parameters` is the parameter table of the HTTP and REST nodes;
:func:`protect_headers` wraps credential headers as
:class:`~kailash.security.secrets.Secret` values as soon as a node is built. No I/O here.
"""

from __future__ import annotations

from typing import Any

from kailash.nodes.api._transport import DEFAULT_MAX_RESPONSE_BYTES
from kailash.nodes.base import NodeParameter
from kailash.security.secrets import as_secret, is_credential_header

__all__ = ["common_parameters", "protect_headers", "marked_headers"]


def protect_headers(config: dict[str, Any]) -> dict[str, Any]:
    """``config`` with literal credential headers (no ``{placeholder}``) wrapped as Secrets.

    A header is a credential by name (:func:`~kailash.security.secrets.is_credential_header`)
    or because the node lists it in ``secret_headers``.
    """
    headers = config.get("headers")
    if not isinstance(headers, dict):
        return {}
    marked = marked_headers(config.get("secret_headers"))
    wrapped = {
        k: as_secret(v) if (is_credential_header(k) or str(k).lower() in marked) and isinstance(v, str)
        and "{" not in v else v
        for k, v in headers.items()
    }
    return {"headers": wrapped}


def marked_headers(names: Any) -> frozenset[str]:
    return frozenset(n.lower() for n in names or () if type(n) is str)


def common_parameters() -> dict[str, NodeParameter]:
    """Parameters every request node shares."""
    return {
        "method": NodeParameter(type=str, default="GET", description="HTTP method"),
        "headers": NodeParameter(type=dict, default=None, description="request headers (values may be secrets)"),
        "params": NodeParameter(type=dict, default=None, description="query-string parameters"),
        "query": NodeParameter(type=dict, default=None, description="alias of 'params'"),
        "data": NodeParameter(
            type=Any, default=None,
            description="request body: a dict or list is sent as JSON, str/bytes as they are",
        ),
        "json": NodeParameter(type=Any, default=None, description="request body sent as JSON"),
        "timeout": NodeParameter(type=float, default=30.0, minimum=0, description="seconds to wait for the server"),
        "response_format": NodeParameter(
            type=str, default="auto", choices=("auto", "json", "text", "bytes"), description="auto (JSON when the content type says so), json, text or bytes"
        ),
        "raise_for_status": NodeParameter(
            type=bool, default=False, description="fail the node on a 4xx/5xx response (after retries)"
        ),
        "retry_count": NodeParameter(
            type=int, default=0, minimum=0, description="retries on connection errors, 5xx and 429 (honouring Retry-After)"
        ),
        "retry_backoff": NodeParameter(
            type=float, default=0.5, minimum=0, description="first retry wait in seconds; doubles each retry"
        ),
        "max_backoff": NodeParameter(type=float, default=30.0, minimum=0, description="longest single wait between retries"),
        "rate_limit": NodeParameter(type=float, default=None, minimum=0, description="at most this many requests per minute"),
        "verify_ssl": NodeParameter(
            type=(bool, str), default=True, description="verify TLS certificates (or a CA bundle path to trust)"
        ),
        "follow_redirects": NodeParameter(
            type=bool, default=True,
            description="follow 3xx redirects (credential headers are dropped when one leads to another origin)",
        ),
        "max_response_bytes": NodeParameter(
            type=int, default=DEFAULT_MAX_RESPONSE_BYTES, minimum=1,
            description="largest response body accepted, in bytes received and after decompression (10 MiB)",
        ),
        "secret_headers": NodeParameter(
            type=list, default=None,
            description="further header names that carry credentials (redacted; not sent across origins)",
        ),
    }
