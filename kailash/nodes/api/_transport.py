"""The one outbound HTTP layer: requests, retries, rate limits, errors, decoding.

Every outbound HTTP call of Kailash goes through here: the request nodes
(:mod:`kailash.nodes.api.http`, :mod:`~kailash.nodes.api.rest`), the OAuth2 token
fetch (:mod:`kailash.nodes.api.auth`), the model providers
(:mod:`kailash.nodes.ai.providers._http`) and the SSE reader of ``EventStreamNode``
(:mod:`kailash.nodes.data._stream_io`). :func:`build_request` reveals secret values
only into the request and marks the credential headers; :func:`call_sync` is the
whole call for a caller that wants one answer.

One request exchange (rate-limit wait, send, retry on connection errors, 5xx and 429
honouring ``Retry-After``) is written once, as a generator that yields *steps*
(:class:`Sleep` or :class:`Send`); :func:`drive_sync` and :func:`drive_async` are the
thin doors that perform those steps with ``httpx.Client`` or ``httpx.AsyncClient``.
Reading bodies under a size cap and following redirects without leaking credentials is
:mod:`kailash.nodes.api._response`'s. This module owns no node; it must not log or raise
anything that contains a secret.
"""

from __future__ import annotations

import asyncio
import email.utils
import ssl
import threading
import time
from collections.abc import Callable, Generator
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from kailash._backoff import backoff_delay
from kailash.errors import NodeConfigurationError, NodeExecutionError, NodeTimeoutError
from kailash.nodes.context import bounded_by_run, run_time_left
from kailash.security.secrets import Secret, is_credential_header, redact, reveal

__all__ = [
    "require_httpx", "RetryPolicy", "TokenBucket", "Sleep", "Send", "exchange", "drive_sync",
    "drive_async", "where", "display_url", "is_tls_error", "transport_error", "decode_body", "status_error", "make_verify",
    "too_large_error", "DEFAULT_MAX_RESPONSE_BYTES", "credential_names", "build_request", "call_sync",
]

RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
DEFAULT_MAX_RESPONSE_BYTES = 10 * 1024 * 1024  # 10 MiB, received and decompressed


_httpx: Any = None


def require_httpx() -> Any:
    """Import httpx (once), or explain which extra installs it."""
    global _httpx
    if _httpx is None:
        try:
            import httpx
        except ImportError as exc:  # pragma: no cover - depends on the environment
            raise ImportError("the HTTP nodes need httpx: pip install 'kailash[http]'") from exc
        _httpx = httpx
    return _httpx


def where(node: Any) -> str:
    """How messages name ``node``: ``node 'id' (Type)``, the type when it has no id, or a label string."""
    if isinstance(node, str):
        return node
    return f"node '{node.name}' ({type(node).__name__})" if node.name else type(node).__name__


def make_verify(verify: Any) -> Any:
    """httpx's ``verify``: ``True``/``False``, or a CA bundle path turned into an SSL context."""
    if isinstance(verify, str):
        return ssl.create_default_context(cafile=verify)
    return bool(verify) if verify is not None else True


@dataclass(frozen=True, kw_only=True)
class RetryPolicy:
    """How often and how long to wait before sending a request again.

    Attributes:
        retries: further attempts after the first (0 = no retry).
        backoff: the first wait in seconds; each further wait doubles it.
        max_backoff: no single wait (including a server's ``Retry-After``) exceeds this.
        jitter: draw each wait from half of it to all of it so many clients do not retry
            in step (the schedule is :func:`kailash._backoff.backoff_delay`, shared with
            node failure policies).
    """

    retries: int = 0
    backoff: float = 0.5
    max_backoff: float = 30.0
    jitter: bool = True

    def delay(self, attempt: int, retry_after: float | None = None) -> float:
        if retry_after is not None:
            return min(max(retry_after, 0.0), self.max_backoff)
        return backoff_delay(attempt + 1, backoff=self.backoff, max_backoff=self.max_backoff, jitter=self.jitter)


class TokenBucket:
    """A thread-safe token bucket: ``rate_per_minute`` requests, ``burst`` at once.

    :meth:`reserve` takes a token and returns how long the caller must wait before
    using it (0 when one was available), so the same bucket serves sync callers
    (``time.sleep``) and async ones (``asyncio.sleep``).
    """

    def __init__(self, rate_per_minute: float, burst: int = 1, clock: Any = time.monotonic) -> None:
        if rate_per_minute <= 0:
            raise ValueError("rate_per_minute must be positive")
        self.rate = rate_per_minute / 60.0
        self.capacity = float(max(1, burst))
        self._tokens = self.capacity
        self._clock = clock
        self._last = clock()
        self._lock = threading.Lock()

    def reserve(self) -> float:
        with self._lock:
            now = self._clock()
            self._tokens = min(self.capacity, self._tokens + (now - self._last) * self.rate)
            self._last = now
            self._tokens -= 1.0
            return 0.0 if self._tokens >= 0 else -self._tokens / self.rate

    def __getstate__(self) -> dict[str, Any]:  # locks do not cross process boundaries
        state = dict(self.__dict__)
        del state["_lock"]
        state["_clock"] = None
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._clock = time.monotonic
        self._last = time.monotonic()
        self._lock = threading.Lock()


@dataclass(frozen=True, slots=True)
class Sleep:
    seconds: float


@dataclass(frozen=True, slots=True)
class Send:
    request: Any


@dataclass(slots=True)
class Outcome:
    """What an exchange produced: the final response and how many attempts it took."""

    response: Any
    attempts: int


def _retry_after(response: Any) -> float | None:
    value = response.headers.get("retry-after")
    if not value:
        return None
    try:
        return float(value)
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def exchange(request: Any, policy: RetryPolicy, bucket: TokenBucket | None) -> Generator[Any, Any, Outcome]:
    """Send ``request`` until it succeeds or the policy gives up; yields steps, returns an Outcome.

    Connection errors are re-raised (by the driver) once retries are exhausted; a final
    5xx/429 response is returned for the caller to judge.
    """
    httpx = require_httpx()
    attempt = 0
    while True:
        if bucket is not None:
            wait = bucket.reserve()
            if wait > 0:
                yield Sleep(wait)
        try:
            response = yield Send(request)
        except httpx.TransportError as exc:
            if attempt >= policy.retries or isinstance(exc, httpx.UnsupportedProtocol):
                exc.attempts = attempt + 1  # type: ignore[attr-defined]
                raise
            yield Sleep(policy.delay(attempt))
            attempt += 1
            continue
        if response.status_code in RETRY_STATUSES and attempt < policy.retries:
            retry_after = _retry_after(response) if response.status_code in (429, 503) else None
            yield Sleep(policy.delay(attempt, retry_after))
            attempt += 1
            continue
        return Outcome(response, attempt + 1)


def drive_sync(steps: Generator[Any, Any, Outcome], client: Any, *, limit: int, follow: bool) -> Outcome:
    """Perform an exchange's steps with a sync ``httpx.Client``.

    Each response is read with a body cap of ``limit`` bytes and redirects are followed
    (when ``follow``) by :mod:`kailash.nodes.api._response`; a body over the cap raises
    :class:`~kailash.nodes.api._response.ResponseTooLarge`, never retried.
    """
    from kailash.nodes.api._response import send_sync

    httpx = require_httpx()
    value: Any = None
    error: BaseException | None = None
    while True:
        try:
            step = steps.throw(error) if error is not None else steps.send(value)
        except StopIteration as stop:
            return stop.value
        value = error = None
        if isinstance(step, Sleep):
            time.sleep(step.seconds)
        else:
            try:
                value = send_sync(client, step.request, limit=limit, follow=follow)
            except httpx.TransportError as exc:
                error = exc


async def drive_async(steps: Generator[Any, Any, Outcome], client: Any, *, limit: int, follow: bool) -> Outcome:
    """Perform an exchange's steps with an ``httpx.AsyncClient`` (as :func:`drive_sync`)."""
    from kailash.nodes.api._response import send_async

    httpx = require_httpx()
    value: Any = None
    error: BaseException | None = None
    while True:
        try:
            step = steps.throw(error) if error is not None else steps.send(value)
        except StopIteration as stop:
            return stop.value
        value = error = None
        if isinstance(step, Sleep):
            await asyncio.sleep(step.seconds)
        else:
            try:
                value = await send_async(client, step.request, limit=limit, follow=follow)
            except httpx.TransportError as exc:
                error = exc


def credential_names(headers: dict[str, Any], marked: frozenset[str] = frozenset()) -> frozenset[str]:
    """Lower-case names of the headers never sent to another origin on a redirect.

    A header is a credential when its value is a Secret, its name looks like one
    (:func:`~kailash.security.secrets.is_credential_header`), or the caller marked it.
    """
    return frozenset(
        str(k).lower() for k, v in headers.items()
        if isinstance(v, Secret) or is_credential_header(str(k)) or str(k).lower() in marked
    )


def build_request(client: Any, method: str, url: Any, *, headers: dict[str, Any], timeout: Any,
                  marked: frozenset[str] = frozenset(), **body: Any) -> Any:
    """``client``'s request with Secret values revealed into it and its credential headers marked.

    ``Accept-Encoding`` offers only the codings decoded under the size cap unless the
    caller sets it; ``body`` is httpx's ``json=``, ``content=`` or ``data=``.
    """
    from kailash.nodes.api._response import ACCEPT_ENCODING, CREDENTIAL_EXTENSION

    plain = {str(k): str(reveal(v)) for k, v in headers.items() if v is not None}
    if not any(k.lower() == "accept-encoding" for k in plain):
        plain["Accept-Encoding"] = ACCEPT_ENCODING
    return client.build_request(method, url, headers=plain or None, timeout=bounded_by_run(timeout),
                                extensions={CREDENTIAL_EXTENSION: credential_names(headers, marked)}, **body)


def call_sync(client: Any, request: Any, *, limit: int, follow: bool, policy: RetryPolicy | None = None,
              bucket: TokenBucket | None = None) -> Outcome:
    """The whole call: the exchange (retries, rate limit) driven with a sync client, body capped.

    Raises httpx's transport errors once retries are exhausted and
    :class:`~kailash.nodes.api._response.ResponseTooLarge` past ``limit``.
    """
    return drive_sync(exchange(request, policy or RetryPolicy(), bucket), client, limit=limit, follow=follow)


def display_url(url: Any) -> str:
    """``url`` safe to show: no user info, no query string (API keys may travel there)."""
    parts = urlsplit(str(url))
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, host, parts.path, "", ""))


def is_tls_error(exc: BaseException) -> bool:
    """Whether ``exc`` (or what caused it) is a TLS/certificate failure."""
    seen: set[int] = set()
    cur: BaseException | None = exc
    while cur is not None and id(cur) not in seen:
        seen.add(id(cur))
        if isinstance(cur, ssl.SSLError):
            return True
        cur = cur.__cause__ or cur.__context__
    text = str(exc)
    return "SSL" in text or "CERTIFICATE" in text.upper()


def transport_error(exc: Exception, *, node: Any, method: str, url: Any, timeout: Any,
                    secrets: frozenset[str]) -> Exception:
    """A KailashError for a failed request: what, where, why, and how to fix it."""
    httpx = require_httpx()
    place = where(node)
    target = f"{method} {display_url(url)}"
    attempts = getattr(exc, "attempts", 1)
    tries = f" after {attempts} attempts" if attempts > 1 else ""
    reason = redact(str(exc) or type(exc).__name__, secrets)
    if isinstance(exc, httpx.UnsupportedProtocol):
        return NodeConfigurationError(
            f"{place}: cannot send {target}: the URL must start with http:// or https:// ({reason})",
            node_id=node.name, parameter="url", expected="an http:// or https:// URL",
        )
    if isinstance(exc, httpx.TimeoutException):
        left = run_time_left()
        if left is not None and isinstance(timeout, (int, float)) and left <= 0.01:
            return NodeTimeoutError(
                f"{place}: {target} got no response before the run's run_timeout ran out{tries} "
                f"({type(exc).__name__}); the run was stopped",
                node_id=node.name, parameter="run_timeout", expected="a response within the run's time limit",
            )
        return NodeTimeoutError(
            f"{place}: {target} got no response within {timeout} s{tries} ({type(exc).__name__}); "
            "raise 'timeout' or check the service",
            node_id=node.name, parameter="timeout", expected=f"a response within {timeout} s",
        )
    if isinstance(exc, httpx.ConnectError) and is_tls_error(exc):
        return NodeExecutionError(
            f"{place}: TLS error talking to {display_url(url)}{tries}: {reason}; the server's certificate "
            "is not trusted (pass verify_ssl='/path/to/ca.pem' to trust a private CA)",
            node_id=node.name, parameter="verify_ssl", expected="a certificate the client trusts",
        )
    if isinstance(exc, httpx.ConnectError):
        return NodeExecutionError(
            f"{place}: cannot connect to {display_url(url)}{tries}: {reason}; check that the host is "
            "reachable and the URL is right",
            node_id=node.name, parameter="url", expected="a reachable host",
        )
    return NodeExecutionError(
        f"{place}: {target} failed{tries}: {type(exc).__name__}: {reason}",
        node_id=node.name,
    )


def _snippet(response: Any, secrets: frozenset[str], limit: int = 200) -> str:
    try:
        text = response.text
    except Exception:  # undecodable body
        return f"<{len(response.content)} bytes>"
    text = " ".join(text.split())
    if len(text) > limit:
        text = text[:limit] + "..."
    return redact(text, secrets)


def decode_body(response: Any, fmt: str, *, node: Any, secrets: Callable[[], frozenset[str]]) -> Any:
    """The response body: JSON when the content type says so (or ``fmt='json'``), else text/bytes."""
    ctype = response.headers.get("content-type", "").split(";")[0].strip().lower()
    is_json = ctype == "application/json" or ctype.endswith("+json")
    if fmt == "bytes":
        return response.content
    if fmt == "text":
        return response.text
    if fmt == "json" or (fmt == "auto" and is_json):
        if not response.content:
            return None
        try:
            return response.json()
        except ValueError as exc:
            raise NodeExecutionError(
                f"{where(node)}: the response from {display_url(response.request.url)} "
                f"(status {response.status_code}, content-type {ctype or 'none'}) is not valid JSON: {exc}; "
                f"body starts: {_snippet(response, secrets(), 80)!r}. Set response_format='text' to accept any body",
                node_id=node.name, parameter="response_format", expected="a JSON body",
            ) from None
    return response.text


def too_large_error(exc: Any, *, node: Any, method: str, url: Any, error: type[NodeExecutionError] = NodeExecutionError,
                    **context: Any) -> NodeExecutionError:
    """The error for a body over ``max_response_bytes`` (``exc`` is a ResponseTooLarge).

    ``node`` is a node or a label; ``error`` a NodeExecutionError subclass built with ``context``.
    """
    if exc.declared is not None:
        what = f"declares {exc.declared} bytes (Content-Length)"
    elif exc.decoded > exc.limit:
        what = f"decompressed past {exc.limit} bytes after {exc.received} bytes received"
    else:
        what = f"sent more than {exc.limit} bytes"
    return error(
        f"{where(node)}: the response to {method} {display_url(url)} is larger than "
        f"max_response_bytes={exc.limit}: it {what}; raise 'max_response_bytes' if the body is expected",
        node_id=getattr(node, "name", None), parameter="max_response_bytes",
        expected=f"a body of at most {exc.limit} bytes", **context,
    )


def status_error(response: Any, *, node: Any, attempts: int, secrets: frozenset[str]) -> NodeExecutionError:
    """The error for a 4xx/5xx response when the node was asked to fail on it."""
    tries = f" after {attempts} attempts" if attempts > 1 else ""
    req = response.request
    return NodeExecutionError(
        f"{where(node)}: {req.method} {display_url(req.url)} returned "
        f"{response.status_code} {response.reason_phrase}{tries}: {_snippet(response, secrets)!r} "
        "(set raise_for_status=False to receive error responses as output)",
        node_id=node.name, expected="a 2xx/3xx response", got=response.status_code,
    )
