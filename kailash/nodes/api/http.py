"""HTTP request nodes: :class:`HTTPRequestNode` (sync) and :class:`AsyncHTTPRequestNode`.

Both sit on httpx and keep one client per node instance (sync) or per node instance and
event loop (async), so repeated runs reuse connections. :class:`HTTPNodeBase` holds
what the request nodes share (parameters, request building, decoding, retries, rate
limit) and is reused by :mod:`kailash.nodes.api.rest`. httpx is imported only when a
request is made.
"""

from __future__ import annotations

import asyncio
import threading
import weakref
from collections.abc import AsyncGenerator
from dataclasses import dataclass, field
from typing import Any, ClassVar

from kailash.errors import NodeConfigurationError
from kailash.nodes.api._params import common_parameters, marked_headers, protect_headers
from kailash.nodes.api._response import ResponseTooLarge, client_class
from kailash.nodes.api._transport import (
    DEFAULT_MAX_RESPONSE_BYTES,
    RetryPolicy,
    TokenBucket,
    build_request,
    credential_names,
    decode_body,
    drive_async,
    drive_sync,
    exchange,
    make_verify,
    require_httpx,
    status_error,
    too_large_error,
    transport_error,
    where,
)
from kailash.nodes.base import Node, NodeParameter, register_node
from kailash.nodes.base_async import AsyncNode
from kailash.security.secrets import Secret, as_secret, plain_secret_values, reveal

__all__ = ["HTTPRequestNode", "AsyncHTTPRequestNode", "HTTPNodeBase", "RequestPlan", "common_parameters", "protect_headers"]

METHODS = frozenset({"GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"})
FORMATS = ("auto", "json", "text", "bytes")


@dataclass(kw_only=True)
class RequestPlan:
    """Everything needed to send one request; header/param values may be Secrets."""

    method: str
    url: str
    headers: dict[str, Any] = field(default_factory=dict)
    params: dict[str, Any] = field(default_factory=dict)
    body: dict[str, Any] = field(default_factory=dict)  # httpx kwargs: json= or content=
    timeout: float = 30.0
    response_format: str = "auto"
    raise_for_status: bool = False
    policy: RetryPolicy = field(default_factory=RetryPolicy)
    rate_limit: float | None = None
    verify: Any = True
    follow_redirects: bool = True
    max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES
    secret_headers: frozenset[str] = frozenset()  # lower-case names the node marked as credentials

    def credential_headers(self) -> frozenset[str]:
        """Lower-case names of the headers never sent to another origin on a redirect."""
        return credential_names(self.headers, self.secret_headers)

    def secrets(self) -> frozenset[str]:
        return plain_secret_values(self.headers, self.params, self.url)


async def _close_with_loop(client: Any) -> AsyncGenerator[None, None]:
    """Closes ``client`` when its event loop shuts down its async generators (``asyncio.run`` does).

    An ``AsyncClient`` is bound to one loop; without this, a loop that ends (each
    ``asyncio.run``) would leave its pooled connections open until garbage collection.
    """
    try:
        yield  # parked here until the loop's shutdown_asyncgens() closes us
    finally:
        await client.aclose()


class _Clients:
    """One node instance's httpx clients: sync per option set, async per event loop too."""

    def __init__(self) -> None:
        self._sync: dict[tuple[Any, ...], Any] = {}
        self._async: weakref.WeakKeyDictionary[Any, dict[tuple[Any, ...], tuple[Any, Any]]] = (
            weakref.WeakKeyDictionary()
        )
        self._lock = threading.Lock()
        self.bucket: TokenBucket | None = None

    @staticmethod
    def _key(plan: RequestPlan) -> tuple[Any, ...]:
        return (str(plan.verify) if not isinstance(plan.verify, bool) else plan.verify,)

    def sync(self, plan: RequestPlan) -> Any:
        key = self._key(plan)
        client = self._sync.get(key)
        if client is None:
            require_httpx()
            with self._lock:
                client = self._sync.get(key)
                if client is None:  # redirects are followed by _response, hop by hop
                    client = client_class(False)(verify=make_verify(plan.verify), follow_redirects=False)
                    weakref.finalize(self, client.close)  # the node went away: close its connections
                    self._sync[key] = client
        return client

    async def async_(self, plan: RequestPlan) -> Any:
        loop = asyncio.get_running_loop()
        key = self._key(plan)
        per_loop = self._async.get(loop)
        if per_loop is None:
            per_loop = self._async.setdefault(loop, {})
        entry = per_loop.get(key)
        if entry is None:
            require_httpx()
            client = client_class(True)(verify=make_verify(plan.verify), follow_redirects=False)
            keeper = _close_with_loop(client)
            entry = per_loop[key] = (client, keeper)
            await keeper.__anext__()  # now the loop knows it, and closes the client when it shuts down
        return entry[0]

    def rate_bucket(self, rate: float | None) -> TokenBucket | None:
        if not rate:
            return None
        with self._lock:
            if self.bucket is None or self.bucket.rate != rate / 60.0:
                self.bucket = TokenBucket(rate)
            return self.bucket

    def close(self) -> None:
        for client in self._sync.values():
            client.close()
        self._sync.clear()


class HTTPNodeBase:
    """Request building, sending and decoding shared by the HTTP and REST nodes."""

    primary_output: ClassVar[str | None] = "data"
    label: str
    name: str | None
    config: dict[str, Any]

    def get_outputs(self) -> dict[str, NodeParameter]:
        return {
            "data": NodeParameter(type=Any, description="the body: parsed JSON, text or bytes"),
            "status_code": NodeParameter(type=int, description="the HTTP status code"),
            "response_headers": NodeParameter(type=dict, description="the response headers (lower-case names)"),
            "ok": NodeParameter(type=bool, description="True for a status below 400"),
        }

    def __init__(self, config: dict[str, Any] | None = None, **kwargs: Any) -> None:
        super().__init__(config, **kwargs)  # type: ignore[call-arg]
        self.config.update(protect_headers(self.config))

    # -- state kept per node instance (never pickled) -----------------------------------
    def _http(self) -> _Clients:
        clients = self.__dict__.get("_http_clients")
        if clients is None:
            clients = self.__dict__.setdefault("_http_clients", _Clients())
        return clients

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state.pop("_http_clients", None)
        return state

    def close(self) -> None:
        """Close this node's sync connections (async ones close with their event loop)."""
        clients = self.__dict__.get("_http_clients")
        if clients is not None:
            clients.close()

    # -- planning ----------------------------------------------------------------------
    def _base_plan(self, url: str, v: dict[str, Any]) -> RequestPlan:
        method = str(v.get("method") or "GET").upper()
        if method not in METHODS:
            raise NodeConfigurationError(
                f"{where(self)}: parameter 'method' must be one of "
                f"{', '.join(sorted(METHODS))}, got {v.get('method')!r}",
                node_id=self.name, parameter="method", expected="an HTTP method", got=v.get("method"),
            )
        fmt = v.get("response_format") or "auto"
        if fmt not in FORMATS:
            raise NodeConfigurationError(
                f"{where(self)}: parameter 'response_format' must be one of "
                f"{', '.join(FORMATS)}, got {fmt!r}",
                node_id=self.name, parameter="response_format", expected=" | ".join(FORMATS), got=fmt,
            )
        body: dict[str, Any] = {}
        data, js = v.get("data"), v.get("json")
        if data is not None and js is not None:
            raise NodeConfigurationError(
                f"{where(self)}: give the request body as 'data' or 'json', not both",
                node_id=self.name, parameter="json",
            )
        if js is not None:
            body["json"] = js
        elif isinstance(data, (bytes, bytearray)):
            body["content"] = bytes(data)
        elif isinstance(data, str):
            body["content"] = data.encode("utf-8")
        elif data is not None:
            body["json"] = data
        retries = v.get("retry_count") or 0
        if retries < 0:
            raise NodeConfigurationError(
                f"{where(self)}: parameter 'retry_count' must be >= 0, got {retries}",
                node_id=self.name, parameter="retry_count", expected=">= 0", got=retries,
            )
        rate = v.get("rate_limit")
        if rate is not None and rate <= 0:
            raise NodeConfigurationError(
                f"{where(self)}: parameter 'rate_limit' must be a positive number "
                f"of requests per minute, got {rate}",
                node_id=self.name, parameter="rate_limit", expected="> 0", got=rate,
            )
        cap = v.get("max_response_bytes")
        cap = DEFAULT_MAX_RESPONSE_BYTES if cap is None else cap
        if type(cap) is not int or cap <= 0:
            raise NodeConfigurationError(
                f"{where(self)}: parameter 'max_response_bytes' must be a positive number of bytes, got {cap!r}",
                node_id=self.name, parameter="max_response_bytes", expected="an int > 0", got=cap,
            )
        marked = marked_headers(v.get("secret_headers"))
        headers = {k: as_secret(x) if str(k).lower() in marked and isinstance(x, str) else x
                   for k, x in (v.get("headers") or {}).items()}
        params = dict(v.get("query") or {})
        params.update(v.get("params") or {})
        return RequestPlan(
            method=method,
            url=url,
            headers=headers,
            params=params,
            body=body,
            timeout=float(v.get("timeout") or 30.0),
            response_format=fmt,
            raise_for_status=bool(v.get("raise_for_status")),
            policy=RetryPolicy(
                retries=int(retries),
                backoff=0.5 if v.get("retry_backoff") is None else float(v["retry_backoff"]),
                max_backoff=float(v.get("max_backoff") or 30.0),
            ),
            rate_limit=rate,
            verify=v.get("verify_ssl") if v.get("verify_ssl") is not None else True,
            follow_redirects=v.get("follow_redirects") is not False,
            max_response_bytes=cap,
            secret_headers=marked,
        )

    # -- sending -----------------------------------------------------------------------
    def _build(self, client: Any, plan: RequestPlan) -> Any:
        httpx = require_httpx()
        params = {str(k): reveal(x) for k, x in plan.params.items() if x is not None}
        try:
            url: Any = str(reveal(plan.url))
            if params:  # merged with the URL's own query string, which httpx would otherwise replace
                url = httpx.URL(url).copy_merge_params(params)
            return build_request(client, plan.method, url, headers=plan.headers, timeout=plan.timeout,
                                 marked=plan.secret_headers, **plan.body)
        except (httpx.InvalidURL, httpx.UnsupportedProtocol, ValueError, TypeError) as exc:
            raise NodeConfigurationError(
                f"{where(self)}: cannot build the request: {type(exc).__name__}; "
                "check 'url' (http:// or https://), header values and the body",
                node_id=self.name, parameter="url", expected="a valid http(s) URL",
            ) from None

    def send_sync(self, plan: RequestPlan, tolerate: frozenset[int] = frozenset()) -> dict[str, Any]:
        """Send ``plan`` with this node's sync client (retries, rate limit) and decode the reply."""
        httpx = require_httpx()
        clients = self._http()
        client = clients.sync(plan)
        request = self._build(client, plan)
        try:
            outcome = drive_sync(exchange(request, plan.policy, clients.rate_bucket(plan.rate_limit)), client,
                                 limit=plan.max_response_bytes, follow=plan.follow_redirects)
        except (httpx.TransportError, httpx.DecodingError, httpx.TooManyRedirects) as exc:
            raise transport_error(exc, node=self, method=plan.method, url=request.url,
                                  timeout=plan.timeout, secrets=plan.secrets()) from exc
        except ResponseTooLarge as exc:
            raise too_large_error(exc, node=self, method=plan.method, url=request.url) from None
        return self._outputs(outcome, plan, tolerate)

    async def send_async(self, plan: RequestPlan, tolerate: frozenset[int] = frozenset()) -> dict[str, Any]:
        """The async twin of :meth:`send_sync` (same exchange, driven on the event loop)."""
        httpx = require_httpx()
        clients = self._http()
        client = await clients.async_(plan)
        request = self._build(client, plan)
        try:
            outcome = await drive_async(exchange(request, plan.policy, clients.rate_bucket(plan.rate_limit)), client,
                                        limit=plan.max_response_bytes, follow=plan.follow_redirects)
        except (httpx.TransportError, httpx.DecodingError, httpx.TooManyRedirects) as exc:
            raise transport_error(exc, node=self, method=plan.method, url=request.url,
                                  timeout=plan.timeout, secrets=plan.secrets()) from exc
        except ResponseTooLarge as exc:
            raise too_large_error(exc, node=self, method=plan.method, url=request.url) from None
        return self._outputs(outcome, plan, tolerate)

    def _outputs(self, outcome: Any, plan: RequestPlan, tolerate: frozenset[int]) -> dict[str, Any]:
        response = outcome.response
        if plan.raise_for_status and response.status_code >= 400 and response.status_code not in tolerate:
            raise status_error(response, node=self, attempts=outcome.attempts, secrets=plan.secrets())
        return {
            "data": decode_body(response, plan.response_format, node=self, secrets=plan.secrets),
            "status_code": response.status_code,
            "response_headers": dict(response.headers),
            "ok": response.status_code < 400,
        }


def _request_parameters() -> dict[str, NodeParameter]:
    params = {"url": NodeParameter(type=(str, Secret), required=True, description="the URL to request")}
    params.update(common_parameters())
    return params


@register_node(category="api")
class HTTPRequestNode(HTTPNodeBase, Node):
    """Send one HTTP request and output the decoded response.

    Outputs ``data`` (parsed JSON when the response says it is JSON, else text),
    ``status_code``, ``response_headers`` and ``ok``. Connection errors, 5xx and 429
    responses are retried ``retry_count`` times with exponential backoff, honouring
    ``Retry-After``. A 4xx/5xx response is returned as output unless
    ``raise_for_status=True``.

    Example:
        >>> node = HTTPRequestNode(url="http://127.0.0.1:9/none", retry_count=0, timeout=1)
        >>> sorted(node.get_outputs())
        ['data', 'ok', 'response_headers', 'status_code']
    """

    capabilities = frozenset({"network"})

    def get_parameters(self) -> dict[str, NodeParameter]:
        return _request_parameters()

    def run(self, **inputs: Any) -> dict[str, Any]:
        return self.send_sync(self._base_plan(inputs["url"], inputs))


@register_node(category="api")
class AsyncHTTPRequestNode(HTTPNodeBase, AsyncNode):
    """:class:`HTTPRequestNode` as an :class:`AsyncNode`, for concurrent requests.

    Under ``ParallelRuntime`` the request is awaited on the event loop (an httpx
    ``AsyncClient`` kept per node and loop); under ``LocalRuntime`` and ``execute()`` it
    uses the same exchange through a sync client, so connections are reused there too.
    """

    capabilities = frozenset({"network"})

    def get_parameters(self) -> dict[str, NodeParameter]:
        return _request_parameters()

    async def async_run(self, **inputs: Any) -> dict[str, Any]:
        return await self.send_async(self._base_plan(inputs["url"], inputs))

    def run(self, **inputs: Any) -> dict[str, Any]:
        return self.send_sync(self._base_plan(inputs["url"], inputs))
