"""Authentication nodes: :class:`OAuth2Node` (client credentials) and :class:`APIKeyNode`.

Both output credentials as :class:`~kailash.security.secrets.Secret` values, which a
connected :class:`~kailash.nodes.api.rest.RESTClientNode` reveals only when it sends a
request; results, run records, logs and saved workflows show ``***`` or the
environment variable's name. OAuth2 tokens are cached in-process, keyed by token URL,
client id, scope and a digest of the secret, until shortly before they expire.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import threading
import time
import weakref
from dataclasses import dataclass
from typing import Any

from kailash.errors import NodeConfigurationError, NodeExecutionError
from kailash.nodes.api._response import ResponseTooLarge, client_class
from kailash.nodes.api._transport import (
    build_request,
    call_sync,
    display_url,
    make_verify,
    require_httpx,
    transport_error,
    where,
)
from kailash.nodes.base import Node, NodeParameter, register_node
from kailash.security.secrets import Secret, as_secret, plain_secret_values, redact, reveal, wrap_secrets

__all__ = ["OAuth2Node", "APIKeyNode", "CachedToken", "clear_token_cache"]

logger = logging.getLogger(__name__)

DEFAULT_LIFETIME = 300.0  # seconds a token without ``expires_in`` is reused
TOKEN_RESPONSE_LIMIT = 1024 * 1024  # bytes of a token endpoint's answer (received and decompressed)


@dataclass(frozen=True, kw_only=True)
class CachedToken:
    """An access token and when it stops being valid."""

    token: Secret
    token_type: str
    expires_at: float
    obtained_at: float
    scope: str | None = None

    def usable(self, margin: float, now: float | None = None) -> bool:
        """Valid for more than ``margin`` seconds (at most a tenth of its lifetime) from now."""
        now = time.time() if now is None else now
        lifetime = max(self.expires_at - self.obtained_at, 0.0)
        return self.expires_at - min(margin, lifetime * 0.1) > now

    def header(self) -> Secret:
        return Secret(f"{self.token_type} {self.token.reveal()}")


_cache: dict[tuple[str, str, str, str], CachedToken] = {}
_cache_locks: dict[tuple[str, str, str, str], threading.Lock] = {}
_cache_guard = threading.Lock()


def clear_token_cache() -> None:
    """Forget every cached OAuth2 token (tests, credential rotation)."""
    with _cache_guard:
        _cache.clear()


def _key_lock(key: tuple[str, str, str, str]) -> threading.Lock:
    with _cache_guard:
        lock = _cache_locks.get(key)
        if lock is None:
            lock = _cache_locks[key] = threading.Lock()
        return lock


class _SecretConfig:
    """Wraps config values of parameters declared ``secret=True`` as soon as the node is built."""

    secret_config_keys: frozenset[str] = frozenset()

    def __init__(self, config: dict[str, Any] | None = None, **kwargs: Any) -> None:
        super().__init__(config, **kwargs)  # type: ignore[call-arg]
        names = {n for n, p in self.parameters.items() if p.secret} | set(self.secret_config_keys)  # type: ignore[attr-defined]
        wrap_secrets(self.config, names)  # type: ignore[attr-defined]


@register_node(category="api")
class OAuth2Node(_SecretConfig, Node):
    """Obtain an OAuth2 access token with the client-credentials flow.

    The token is cached in-process (keyed by ``token_url``, ``client_id``, ``scope`` and the secret's digest)
    and reused across runs and node instances until ``refresh_margin`` seconds (at most
    a tenth of its lifetime) before it expires. Outputs ``token`` (a Secret),
    ``token_type``, ``expires_in``, ``expires_at``, ``scope``, ``auth_headers``
    (``{"Authorization": "<type> <token>"}`` as a Secret) and ``from_cache``. Connect it
    to a :class:`~kailash.nodes.api.rest.RESTClientNode` to fill its ``{token}``
    placeholders.

    Example:
        >>> node = OAuth2Node(token_url="https://auth.example.com/token",
        ...                   client_id="app", client_secret="s3cr3t-value")
        >>> node.config["client_secret"]
        Secret('***')
    """

    capabilities = frozenset({"network"})

    def get_parameters(self) -> dict[str, NodeParameter]:
        return {
            "token_url": NodeParameter(type=str, required=True, format="uri", description="the token endpoint URL"),
            "client_id": NodeParameter(type=(str, Secret), required=True, description="the OAuth2 client id"),
            "client_secret": NodeParameter(
                type=(str, Secret), required=True, secret=True, description="the OAuth2 client secret"
            ),
            "scope": NodeParameter(type=str, default=None, description="space-separated scopes to request"),
            "audience": NodeParameter(type=str, default=None, description="audience, for providers that need one"),
            "extra_params": NodeParameter(type=dict, default=None, description="more form fields for the request"),
            "auth_method": NodeParameter(
                type=str, default="body", choices=("body", "basic"),
                description="send the client credentials in the form body ('body') or as HTTP Basic ('basic')",
            ),
            "refresh_margin": NodeParameter(
                type=float, default=60.0, description="refresh this many seconds before the token expires"
            ),
            "use_cache": NodeParameter(type=bool, default=True, description="reuse a cached token while valid"),
            "timeout": NodeParameter(type=float, default=30.0, minimum=0, description="seconds to wait for the token endpoint"),
            "verify_ssl": NodeParameter(type=(bool, str), default=True, description="verify TLS (or a CA bundle path)"),
        }

    def get_outputs(self) -> dict[str, NodeParameter]:
        return {
            "token": NodeParameter(type=Secret, description="the access token (a Secret)"),
            "token_type": NodeParameter(type=str, description="usually 'Bearer'"),
            "expires_in": NodeParameter(type=int, description="seconds until the token expires"),
            "expires_at": NodeParameter(type=float, description="when it expires (epoch seconds)"),
            "scope": NodeParameter(type=str, description="the granted scope"),
            "auth_headers": NodeParameter(type=dict, description="{'Authorization': '<type> <token>'} (secret)"),
            "from_cache": NodeParameter(type=bool, description="whether the token came from the cache"),
        }

    def run(self, **inputs: Any) -> dict[str, Any]:
        cached, from_cache = self._token(inputs, force=False)
        return {
            "token": cached.token,
            "token_type": cached.token_type,
            "expires_in": max(0, int(cached.expires_at - time.time())),
            "expires_at": cached.expires_at,
            "scope": cached.scope,
            "auth_headers": {"Authorization": cached.header()},
            "from_cache": from_cache,
        }

    # -- for nodes that hold a reference to this one (RESTClientNode auth_config) -------
    def get_token(self, *, force_refresh: bool = False) -> CachedToken:
        """The current token (cached unless ``force_refresh``), using this node's config."""
        return self._token(self.resolve_inputs({}), force=force_refresh)[0]

    def invalidate(self) -> None:
        """Drop this node's cached token, so the next use fetches a new one."""
        key = self._cache_key(self.resolve_inputs({}))
        with _cache_guard:
            _cache.pop(key, None)

    # -- internals -----------------------------------------------------------------------
    @staticmethod
    def _cache_key(v: dict[str, Any]) -> tuple[str, str, str, str]:
        # the secret's digest is part of the key: a wrong secret must never get a cached token
        digest = hashlib.sha256(str(reveal(v["client_secret"])).encode()).hexdigest()
        return (str(v["token_url"]), str(reveal(v["client_id"])), str(v.get("scope") or ""), digest)

    def _token(self, v: dict[str, Any], *, force: bool) -> tuple[CachedToken, bool]:
        method = v.get("auth_method") or "body"
        if method not in ("body", "basic"):  # checked before the cache, so a typo never hides
            raise NodeConfigurationError(
                f"{where(self)}: parameter 'auth_method' must be 'body' or 'basic', got {method!r}",
                node_id=self.name, parameter="auth_method", expected="body | basic", got=method,
            )
        key = self._cache_key(v)
        margin = v.get("refresh_margin")
        margin = 60.0 if margin is None else float(margin)
        use_cache = v.get("use_cache") is not False
        with _key_lock(key):  # one fetch per key at a time: concurrent runs share the result
            cached = _cache.get(key)
            if use_cache and not force and cached is not None and cached.usable(margin):
                return cached, True
            fresh = self._fetch(v)
            if use_cache:
                _cache[key] = fresh
            return fresh, False

    def _client(self, verify: Any) -> Any:
        require_httpx()
        key = str(verify)
        clients = self.__dict__.setdefault("_oauth_clients", {})
        if key not in clients:
            clients[key] = client_class(False)(verify=make_verify(verify), follow_redirects=False)
            weakref.finalize(self, clients[key].close)  # the node went away: close its connections
        return clients[key]

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state.pop("_oauth_clients", None)
        return state

    def _fetch(self, v: dict[str, Any]) -> CachedToken:
        httpx = require_httpx()
        method = v.get("auth_method") or "body"
        secret = as_secret(v["client_secret"])
        client_id = str(reveal(v["client_id"]))
        form: dict[str, Any] = {"grant_type": "client_credentials"}
        headers = {"Accept": "application/json"}
        if method == "basic":
            raw = f"{client_id}:{secret.reveal()}".encode()
            headers["Authorization"] = "Basic " + base64.b64encode(raw).decode()
        else:
            form["client_id"] = client_id
            form["client_secret"] = secret.reveal()
        if v.get("scope"):
            form["scope"] = v["scope"]
        if v.get("audience"):
            form["audience"] = v["audience"]
        for k, x in (v.get("extra_params") or {}).items():
            form[k] = reveal(x)
        url = str(v["token_url"])
        secrets = plain_secret_values(secret)
        timeout = float(v.get("timeout") or 30.0)
        try:
            client = self._client(v.get("verify_ssl", True))
            request = build_request(client, "POST", url, data=form, headers=headers, timeout=timeout)
            # the shared exchange, body capped; never redirected: the secret travels in the body
            response = call_sync(client, request, limit=TOKEN_RESPONSE_LIMIT, follow=False).response
        except ResponseTooLarge:
            raise NodeExecutionError(
                f"{where(self)}: the token endpoint {display_url(url)} answered with more than "
                f"{TOKEN_RESPONSE_LIMIT} bytes; a token response is small, check 'token_url'",
                node_id=self.name, parameter="token_url", expected=f"a response under {TOKEN_RESPONSE_LIMIT} bytes",
            ) from None
        except (httpx.TransportError, httpx.DecodingError) as exc:
            raise transport_error(exc, node=self, method="POST", url=url, timeout=timeout, secrets=secrets) from exc
        except httpx.InvalidURL:
            raise NodeConfigurationError(
                f"{where(self)}: parameter 'token_url' is not a valid URL",
                node_id=self.name, parameter="token_url", expected="an http(s) URL",
            ) from None
        return self._parse(response, url, client_id, secrets)

    def _parse(self, response: Any, url: str, client_id: str, secrets: frozenset[str]) -> CachedToken:
        try:
            body = response.json()
        except ValueError:
            body = None
        if response.status_code >= 400:
            detail = ""
            if isinstance(body, dict) and body.get("error"):
                detail = f" {body['error']}"
                if body.get("error_description"):
                    detail += f": {body['error_description']}"
            code = response.status_code
            if code in (400, 401, 403):
                hint = "check client_id and client_secret"
            elif code < 500:
                hint = "check token_url"
            else:
                hint = "the token endpoint failed; try again later"
            raise NodeExecutionError(
                redact(
                    f"{where(self)}: the token endpoint {display_url(url)} rejected the request for client_id "
                    f"'{client_id}' (HTTP {response.status_code}{detail}); {hint}",
                    secrets,
                ),
                node_id=self.name, parameter="client_secret", expected="valid client credentials",
                got=response.status_code,
            )
        if not isinstance(body, dict) or not isinstance(body.get("access_token"), str):
            what = "is not JSON" if body is None else "has no 'access_token'"
            raise NodeExecutionError(
                f"{where(self)}: the token endpoint {display_url(url)} answered {response.status_code} but the "
                f"body {what}; expected {{'access_token': ..., 'token_type': ..., 'expires_in': ...}}",
                node_id=self.name, parameter="token_url", expected="an OAuth2 token response",
            )
        now = time.time()
        expires_in = body.get("expires_in")
        try:
            lifetime = float(expires_in) if expires_in is not None else DEFAULT_LIFETIME
        except (TypeError, ValueError):
            lifetime = DEFAULT_LIFETIME
        token_type = str(body.get("token_type") or "Bearer")
        if token_type.lower() == "bearer":
            token_type = "Bearer"
        logger.debug("%s: obtained a token from %s (lifetime %.0f s)", where(self), display_url(url), lifetime)
        return CachedToken(
            token=Secret(body["access_token"]),
            token_type=token_type,
            expires_at=now + lifetime,
            obtained_at=now,
            scope=body.get("scope"),
        )


@register_node(category="api")
class APIKeyNode(_SecretConfig, Node):
    """Present an API key, in a header or in the query string.

    ``placement="header"`` outputs ``auth_headers`` (``{key_name: "<prefix> <key>"}``),
    ``placement="query"`` outputs ``auth_params`` (``{key_name: key}``); values are
    Secrets. A connected :class:`~kailash.nodes.api.rest.RESTClientNode` merges them
    into its requests.

    Example:
        >>> out = APIKeyNode(api_key="k-123456", key_name="Authorization", prefix="Bearer").execute()
        >>> out["auth_headers"]["Authorization"].reveal()
        'Bearer k-123456'
        >>> str(out["auth_headers"]["Authorization"])
        '***'
    """

    capabilities = frozenset()

    def get_parameters(self) -> dict[str, NodeParameter]:
        return {
            "api_key": NodeParameter(type=(str, Secret), required=True, secret=True, description="the API key"),
            "placement": NodeParameter(type=str, default="header", description="'header' or 'query'"),
            "key_name": NodeParameter(
                type=str, default=None,
                description="header or query parameter name (default X-API-Key / api_key)",
            ),
            "prefix": NodeParameter(type=str, default="", description="put before the key, e.g. 'Bearer'"),
        }

    def get_outputs(self) -> dict[str, NodeParameter]:
        return {
            "auth_headers": NodeParameter(type=dict, description="headers to add (secret values)"),
            "auth_params": NodeParameter(type=dict, description="query parameters to add (secret values)"),
            "placement": NodeParameter(type=str, description="where the key goes"),
        }

    def run(self, **inputs: Any) -> dict[str, Any]:
        placement = inputs.get("placement") or "header"
        if placement not in ("header", "query"):
            raise NodeConfigurationError(
                f"{where(self)}: parameter 'placement' must be 'header' or 'query', got {placement!r}",
                node_id=self.name, parameter="placement", expected="header | query", got=placement,
            )
        key = as_secret(inputs["api_key"])
        name = inputs.get("key_name") or ("X-API-Key" if placement == "header" else "api_key")
        prefix = (inputs.get("prefix") or "").strip()
        value = Secret(f"{prefix} {key.reveal()}" if prefix else key.reveal())
        if placement == "header":
            return {"auth_headers": {name: value}, "auth_params": {}, "placement": placement}
        return {"auth_headers": {}, "auth_params": {name: value}, "placement": placement}
