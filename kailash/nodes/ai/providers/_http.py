"""The one HTTP call every remote provider makes: POST JSON, get JSON, fail clearly.

Owns timeouts, status handling and turning transport failures into
:class:`ProviderError` with the provider's name and URL — never the API key, which is
redacted from any echoed response text. ``httpx`` is imported here, on first use.
"""

from __future__ import annotations

from typing import Any

from kailash.nodes.ai.providers.base import ProviderError
from kailash.security.secrets import Secret, redact, reveal

__all__ = ["HTTPProvider", "post_json", "require_httpx", "function_tool_calls"]


class HTTPProvider:
    """What every remote provider holds: model, base URL, optional key (as a Secret), timeout.

    Subclasses set ``name`` and ``path`` (appended to the base URL) and implement ``chat``.
    """

    name = "http"
    path = ""

    def __init__(self, *, model: str, base_url: str, api_key: Secret | str | None = None, timeout: float = 60.0) -> None:
        self.model = model
        self.base_url = base_url.rstrip("/")
        self.api_key = Secret(api_key) if api_key is not None and not isinstance(api_key, Secret) else api_key
        self.timeout = timeout

    @property
    def url(self) -> str:
        return f"{self.base_url}{self.path}"

    def __repr__(self) -> str:  # never the key
        return f"{type(self).__name__}(model={self.model!r}, base_url={self.base_url!r})"


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
) -> dict[str, Any]:
    """POST ``payload`` as JSON and return the decoded JSON object answer.

    Raises:
        ProviderError: on timeout, connection failure, a non-2xx status, or a body that
            is not a JSON object. Messages never contain the API key.
    """
    httpx = require_httpx()
    plain_headers = {k: str(reveal(v)) for k, v in headers.items() if v is not None}
    secret_values = frozenset({str(reveal(secret))}) if secret else frozenset()
    try:
        response = httpx.post(url, json=payload, headers=plain_headers, timeout=timeout)
    except httpx.TimeoutException as exc:
        raise ProviderError(
            f"provider '{provider}' timed out after {timeout:g}s at {url}; raise 'timeout' or check the server",
            provider=provider, expected=f"an answer within {timeout:g}s",
        ) from exc
    except httpx.HTTPError as exc:
        raise ProviderError(
            f"provider '{provider}' is unreachable at {url}: {type(exc).__name__}: {redact(str(exc), secret_values)}",
            provider=provider,
        ) from exc
    if response.status_code >= 400:
        body = redact(response.text[:300], secret_values)
        hint = " (check the API key)" if response.status_code in (401, 403) else ""
        raise ProviderError(
            f"provider '{provider}' answered HTTP {response.status_code} at {url}{hint}: {body}",
            provider=provider, expected="HTTP 2xx", got=response.status_code,
        )
    try:
        data = response.json()
    except ValueError as exc:
        raise ProviderError(
            f"provider '{provider}' returned malformed JSON at {url}: {redact(response.text[:120], secret_values)!r}",
            provider=provider, expected="a JSON object",
        ) from exc
    if not isinstance(data, dict):
        raise ProviderError(
            f"provider '{provider}' returned JSON {type(data).__name__} at {url}, expected an object",
            provider=provider, expected="a JSON object", got=type(data).__name__,
        )
    return data


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
        calls.append(ToolCall(id=str(raw.get("id") or f"call_{i}"), name=fn["name"],
                              arguments=parse_arguments(fn.get("arguments"), provider=provider, tool=fn["name"])))
    return calls
