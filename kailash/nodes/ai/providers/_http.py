"""The one HTTP call every remote provider makes: POST JSON, get JSON, fail clearly.

The call goes through Kailash's one outbound HTTP layer (:mod:`kailash.nodes.api._transport`):
the response body is capped at ``max_response_bytes`` (received and decompressed), a
redirect to another origin drops the API key headers, and transport failures become
:class:`ProviderError` naming the caller, the provider and the URL — never the API
key, which is redacted from any echoed response text. ``httpx`` is imported on first use.

Like the HTTP nodes, a provider retries connection errors, 429 and 5xx answers
(``retries`` times, honouring ``Retry-After``, on the one backoff schedule of
:mod:`kailash._backoff`), and every provider of a process shares one connection pool,
so the runs of a model node reuse their connections instead of opening new ones.
"""

from __future__ import annotations

import atexit
import os
import threading
from typing import Any

from kailash.nodes.ai.providers.base import BaseProvider, ProviderError
from kailash.nodes.api._transport import DEFAULT_MAX_RESPONSE_BYTES
from kailash.security.secrets import Secret, redact, reveal

__all__ = ["HTTPProvider", "post_json", "require_httpx", "function_tool_calls", "shared_client", "DEFAULT_MAX_RESPONSE_BYTES",
           "DEFAULT_RETRIES"]

DEFAULT_RETRIES = 2  # as the vendors' own SDKs do


class HTTPProvider(BaseProvider):
    """What every remote provider holds: model, base URL, optional key (as a Secret), timeout.

    Subclasses set ``name`` and ``path`` (appended to the base URL) and implement ``chat``.
    ``max_response_bytes`` caps each answer's body; ``owner`` is how errors name the
    caller (a node label). The provider keeps one connection pool, closed when it goes away.
    """

    name = "http"
    path = ""

    def __init__(self, *, model: str, base_url: str, api_key: Secret | str | None = None, timeout: float = 60.0,
                 max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES, owner: str | None = None,
                 retries: int = DEFAULT_RETRIES, backoff: float = 0.5, max_backoff: float = 30.0) -> None:
        self.model = model
        self.base_url = base_url.rstrip("/")
        self.api_key = Secret(api_key) if api_key is not None and not isinstance(api_key, Secret) else api_key
        self.timeout = timeout
        self.max_response_bytes = max_response_bytes
        self.owner = owner
        self.retries = retries
        self.backoff = backoff
        self.max_backoff = max_backoff

    @property
    def url(self) -> str:
        return f"{self.base_url}{self.path}"

    def client(self) -> Any:
        """The process's shared provider client (redirects followed hop by hop by the shared layer)."""
        return shared_client()

    def post(self, payload: dict[str, Any], headers: dict[str, Any]) -> dict[str, Any]:
        """POST ``payload`` to :attr:`url` through the shared layer; the JSON object answer."""
        from kailash.nodes.api._transport import RetryPolicy

        policy = RetryPolicy(retries=self.retries, backoff=self.backoff, max_backoff=self.max_backoff)
        return post_json(provider=self.name, url=self.url, payload=payload, headers=headers, timeout=self.timeout,
                         secret=self.api_key, client=self.client(), limit=self.max_response_bytes, owner=self.owner,
                         policy=policy)

    def __repr__(self) -> str:  # never the key
        return f"{type(self).__name__}(model={self.model!r}, base_url={self.base_url!r})"


_shared: tuple[int, Any] | None = None  # (pid, client): a forked child opens its own
_shared_lock = threading.Lock()


def shared_client() -> Any:
    """The one httpx client (connection pool) every provider of this process uses.

    Requests carry their own headers, timeout and key, so one pool serves every
    provider and model node; it is closed at interpreter exit.
    """
    global _shared
    current = _shared
    pid = os.getpid()
    if current is not None and current[0] == pid:
        return current[1]
    from kailash.nodes.api._response import client_class

    require_httpx()
    with _shared_lock:
        if _shared is None or _shared[0] != pid:
            client = client_class(False)(follow_redirects=False)
            _shared = (pid, client)
            atexit.register(client.close)
        return _shared[1]


def require_httpx() -> Any:
    try:
        import httpx
    except ImportError as exc:  # pragma: no cover - httpx is in the ai extra
        raise ImportError("HTTP model providers need httpx: pip install 'kailash[ai]'") from exc
    return httpx


def post_json(
    *,
    provider: str,
    url: str,
    payload: dict[str, Any],
    headers: dict[str, Any],
    timeout: float,
    secret: Secret | str | None = None,
    client: Any = None,
    limit: int = DEFAULT_MAX_RESPONSE_BYTES,
    owner: str | None = None,
    policy: Any = None,
) -> dict[str, Any]:
    """POST ``payload`` as JSON and return the decoded JSON object answer.

    Raises:
        ProviderError: on timeout, connection failure, a body over ``limit`` bytes, a
            non-2xx status, or a body that is not a JSON object. Messages never contain
            the API key.
    """
    from kailash.nodes.api._response import ResponseTooLarge, client_class
    from kailash.nodes.api._transport import build_request, call_sync, too_large_error

    httpx = require_httpx()
    secret_values = _hidden(secret, url)
    who = f"{owner}: provider '{provider}'" if owner else f"provider '{provider}'"
    own = client is None
    if own:
        client = client_class(False)(follow_redirects=False)
    try:
        request = build_request(client, "POST", url, json=payload, timeout=timeout,
                                headers={k: v for k, v in headers.items() if v is not None})
        outcome = call_sync(client, request, limit=limit, follow=True, policy=policy)
        response = outcome.response
    except ResponseTooLarge as exc:
        raise too_large_error(exc, node=who, method="POST", url=url, error=ProviderError, provider=provider) from None
    except httpx.TimeoutException as exc:
        raise ProviderError(
            f"{who} timed out after {timeout:g}s at {url}; raise 'timeout' or check the server",
            provider=provider, expected=f"an answer within {timeout:g}s",
        ) from exc
    except (httpx.HTTPError, httpx.InvalidURL) as exc:
        attempts = getattr(exc, "attempts", 1)
        tries = f" after {attempts} attempts" if attempts > 1 else ""
        raise ProviderError(
            f"{who} is unreachable at {url}{tries}: {type(exc).__name__}: {redact(str(exc), secret_values)}",
            provider=provider,
        ) from exc
    finally:
        if own:
            client.close()
    if response.status_code >= 400:
        body = redact(response.text[:300], secret_values)
        hint = " (check the API key)" if response.status_code in (401, 403) else ""
        tries = f" after {outcome.attempts} attempts" if outcome.attempts > 1 else ""
        raise ProviderError(
            f"{who} answered HTTP {response.status_code} at {url}{tries}{hint}: {body}",
            provider=provider, expected="HTTP 2xx", got=response.status_code,
        )
    from kailash.nodes.ai.providers.base import read_json

    try:
        data = read_json(response.text)
    except ValueError as exc:  # malformed, nested too deep, NaN/Infinity
        raise ProviderError(
            f"{who} returned malformed JSON at {url}: {redact(response.text[:120], secret_values)!r}",
            provider=provider, expected="a JSON object",
        ) from exc
    if not isinstance(data, dict):
        raise ProviderError(
            f"{who} returned JSON {type(data).__name__} at {url}, expected an object",
            provider=provider, expected="a JSON object", got=type(data).__name__,
        )
    return data


def _hidden(secret: Any, url: str) -> frozenset[str]:
    """What a provider's errors must never quote: the key, and the URL's credentials in every
    form a server may echo them (the password, the ``Basic`` header's base64)."""
    from kailash.security.credentials import basic_auth_forms, url_credentials

    values = {str(reveal(secret))} if secret else set()
    values.update(url_credentials(url), basic_auth_forms(url))
    return frozenset(v for v in values if len(v) >= 4)


def malformed(provider: str, url: str, what: str) -> ProviderError:
    """The error for a JSON answer that lacks what the wire protocol promises."""
    return ProviderError(
        f"provider '{provider}' returned a malformed answer at {url}: {what}",
        provider=provider, expected="the provider's documented response shape",
    )


def function_tool_calls(raw_calls: Any, provider: str, url: str) -> list[Any]:
    """``[{"id", "function": {"name", "arguments"}}]`` (OpenAI and Ollama wire form) as ToolCalls."""
    from kailash.nodes.ai.providers.base import ToolCall, parse_arguments

    calls = []
    for i, raw in enumerate(raw_calls or []):
        fn = raw.get("function") if isinstance(raw, dict) else None
        if not isinstance(fn, dict) or "name" not in fn:
            raise malformed(provider, url, f"tool call {i} without a function name")
        try:
            arguments, error = parse_arguments(fn.get("arguments"), provider=provider, tool=fn["name"]), None
        except ProviderError as exc:  # a weak model's broken JSON: answered as a tool error, not fatal
            arguments, error = {}, exc.message
        calls.append(ToolCall(id=str(raw.get("id") or f"call_{i}"), name=str(fn["name"]), arguments=arguments,
                              error=error))
    return calls
