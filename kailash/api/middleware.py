"""Gateway middleware: API-key authentication, rate limiting and a request-body cap.

Each class is plain ASGI middleware, usable two ways: handed to a gateway
(``gateway.add_middleware(AuthenticationMiddleware(api_keys=[...]))``) or to any
Starlette/FastAPI app (``app.add_middleware(RateLimitingMiddleware, requests_per_minute=60)``).
Keys are compared by SHA-256 digest and never logged or echoed; an authenticated
request carries a :class:`Principal` in ``scope["state"]["kailash_principal"]``.
Rate limits use GCRA (a smooth token bucket) in memory, or in Redis for counters
shared by several gateway processes.
"""

from __future__ import annotations

import hashlib
import logging
import math
import os
import re
import secrets
import time
from collections.abc import Iterable, MutableMapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kailash.api.limits import (
    BodySizeLimitMiddleware,
    BodyTooLarge,
    FailedKeyLimiter,
    MemoryCounters,
    RedisCounters,
    address_bucket,
    client_address,
)
from kailash.api.responses import deny_websocket, error_body, send_json

__all__ = ["Principal", "AuthenticationMiddleware", "RateLimitingMiddleware", "BodySizeLimitMiddleware",
           "BodyTooLarge", "FailedKeyLimiter", "key_digest", "PUBLIC_PATHS", "QUERY_KEY_PATHS"]

logger = logging.getLogger("kailash.api")

PUBLIC_PATHS = ("/health", "/nodes", "/schema/workflow.json", "/openapi.json", "/docs", "/redoc", "/studio")
PRINCIPAL = "kailash_principal"
# where ?api_key= is read: a browser's EventSource and WebSocket cannot send headers
QUERY_KEY_PATHS = re.compile(r"^/runs/[^/]+/events/?$")


def key_digest(key: str) -> str:
    """The SHA-256 hex digest under which an API key is stored and compared."""
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


@dataclass(frozen=True, kw_only=True, slots=True)
class Principal:
    """Who a request comes from.

    Attributes:
        tenant_id: the tenant, or ``None`` for the gateway's own namespace.
        key_id: the first 12 hex digits of the key's digest (safe to log).
        requests_per_minute: the tenant's request limit, if it has one.
        max_concurrent_runs: the tenant's concurrent-run limit, if it has one.
        redis_db: the Redis database for the tenant's counters, if set.
    """

    tenant_id: str | None
    key_id: str
    requests_per_minute: int | None = None
    max_concurrent_runs: int | None = None
    redis_db: int | None = None


def principal_of(scope: MutableMapping[str, Any]) -> Principal | None:
    """The :class:`Principal` that authentication attached to ``scope`` (None if none)."""
    state = scope.get("state")
    return state.get(PRINCIPAL) if isinstance(state, dict) else None


def _header(scope: dict[str, Any], name: bytes) -> str | None:
    for k, v in scope.get("headers") or ():
        if k == name:
            return v.decode("latin-1")
    return None


def _is_public(path: str, public: tuple[str, ...]) -> bool:
    return any(path == p or path.startswith(p.rstrip("/") + "/") for p in public)


class AuthenticationMiddleware:
    """Require an API key on everything but the public paths.

    The key is read from the ``X-API-Key`` header or ``Authorization: Bearer <key>``; an
    ``api_key`` query parameter is read only on event streams (``/runs/{id}/events``) and
    websockets, which a browser's ``EventSource``/``WebSocket`` cannot give headers (the
    gateway's access log redacts it). A client address that sends more than
    ``max_failed_keys`` invalid keys gets 429 for a growing while (see
    :class:`~kailash.api.limits.FailedKeyLimiter`). Keys are the
    ``api_keys`` given here plus those in ``KAILASH_API_KEYS`` (comma-separated), plus
    tenant keys when the gateway serves tenants. When neither ``api_keys`` nor the
    environment gives a key, one is generated once into ``$KAILASH_HOME/gateway_api_key``
    (mode 0600) and the log says where — never what.

    Args:
        app: the wrapped ASGI app (given by Starlette's ``add_middleware``; omit otherwise).
        api_keys: accepted keys (strings or :class:`~kailash.security.secrets.Secret`).
        public_paths: paths (and their sub-paths) readable without a key.
        tenants: a tenant registry whose keys are accepted too (the gateway sets it).
        max_failed_keys: invalid keys a client address may send before it is locked out
            (``None``: never locked out).

    Example:
        >>> auth = AuthenticationMiddleware(api_keys=["k-123"])
        >>> auth.authenticate("k-123").tenant_id is None, auth.authenticate("nope")
        (True, None)
    """

    kind = "authentication"

    def __init__(self, app: Any = None, api_keys: Iterable[Any] | None = None, *,
                 public_paths: Iterable[str] | None = None, tenants: Any = None,
                 max_failed_keys: int | None = 10) -> None:
        if isinstance(app, (list, tuple, set, str)) and api_keys is None:  # AuthenticationMiddleware(["k"])
            app, api_keys = None, [app] if isinstance(app, str) else app
        self.app = app
        self._given = [_reveal(k) for k in (api_keys or ())]
        self.public_paths = tuple(public_paths) if public_paths is not None else PUBLIC_PATHS
        self.tenants = tenants
        self._digests: dict[str, Principal] | None = None
        self._cache: dict[str, tuple[Principal | None, float]] = {}
        self.key_file: Path | None = None
        self.failed_keys = FailedKeyLimiter(max_failed_keys) if max_failed_keys is not None else None

    # -- keys --------------------------------------------------------------------------
    def prepare(self) -> None:
        """Read the configured keys now (and generate the key file if there are none)."""
        self._static()

    def _static(self) -> dict[str, Principal]:
        if self._digests is None:
            keys = [k for k in self._given if k]
            keys += [k.strip() for k in os.environ.get("KAILASH_API_KEYS", "").split(",") if k.strip()]
            if not keys:  # the gateway's own namespace needs a key even when tenants have theirs
                keys = [self._generated_key()]
            self._digests = {d: Principal(tenant_id=None, key_id=d[:12]) for d in map(key_digest, keys)}
        return self._digests

    def _generated_key(self) -> str:
        from kailash.runtime.store import kailash_home

        path = kailash_home() / "gateway_api_key"
        self.key_file = path
        if path.exists():
            return path.read_text(encoding="utf-8").strip()
        path.parent.mkdir(parents=True, exist_ok=True)
        key = "kg_" + secrets.token_urlsafe(32)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(key + "\n")
        logger.warning("no API key configured: generated one in %s (set KAILASH_API_KEYS to choose your own)", path)
        return key

    def authenticate(self, key: str | None) -> Principal | None:
        """The principal for ``key``, or ``None`` if the key is not accepted (blocking)."""
        if not key:
            return None
        digest = key_digest(key)
        found = self._static().get(digest)
        if found is None and self.tenants is not None:
            hit = self._cache.get(digest)
            now = time.monotonic()
            if hit is not None and hit[1] > now:
                return hit[0]
            found = self.tenants.authenticate_key(key)
            self._cache[digest] = (found, now + (30.0 if found else 2.0))
            if len(self._cache) > 10_000:
                self._cache.clear()
        return found

    def forget_cached(self) -> None:
        """Drop cached tenant key lookups (after a key is revoked)."""
        self._cache.clear()

    @staticmethod
    def extract_key(scope: dict[str, Any]) -> str | None:
        key = _header(scope, b"x-api-key")
        if key:
            return key.strip()
        auth = _header(scope, b"authorization")
        if auth:
            scheme, _, value = auth.partition(" ")
            if scheme.lower() == "bearer" and value.strip():
                return value.strip()
        qs = scope.get("query_string") or b""
        if b"api_key=" in qs and (scope.get("type") == "websocket" or QUERY_KEY_PATHS.match(scope.get("path", ""))):
            from urllib.parse import parse_qs

            values = parse_qs(qs.decode("latin-1")).get("api_key")
            if values:
                return values[0]
        return None

    # -- ASGI --------------------------------------------------------------------------
    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        await self.dispatch(scope, receive, send, self.app)

    async def dispatch(self, scope: dict[str, Any], receive: Any, send: Any, app: Any) -> None:
        if scope["type"] not in ("http", "websocket"):
            await app(scope, receive, send)
            return
        key = self.extract_key(scope)
        principal = None
        limiter = self.failed_keys
        if key and limiter is not None:
            locked = limiter.retry_after(client_address(scope))
            if locked > 0:  # refused before the key is looked at: guessing on tells nothing
                await _refuse(scope, send, 429, error_body(
                    "too_many_invalid_keys", f"too many invalid API keys from this address; retry after "
                    f"{math.ceil(locked)} s", retry_after=math.ceil(locked)), {"Retry-After": str(math.ceil(locked))})
                return
        if key:
            digest = key_digest(key)
            principal = self._static().get(digest)
            if principal is None and self.tenants is not None:
                hit = self._cache.get(digest)
                if hit is not None and hit[1] > time.monotonic():
                    principal = hit[0]
                else:  # a tenant lookup may touch a database: keep it off the event loop
                    import anyio.to_thread

                    principal = await anyio.to_thread.run_sync(self.authenticate, key)
        if principal is None and key and limiter is not None:
            limiter.failed(client_address(scope))
        if principal is None and not _is_public(scope.get("path", ""), self.public_paths):
            if _browser_at_root(scope):  # a person opened the gateway's address: show them the Studio
                await send_redirect(send, "/studio")
                return
            if key:
                body = error_body("invalid_api_key", "the API key is not valid (it may have been revoked)")
            else:
                body = error_body("missing_api_key",
                                  "this endpoint needs an API key: send 'X-API-Key: <key>' or "
                                  "'Authorization: Bearer <key>'")
            await _refuse(scope, send, 401, body, {"WWW-Authenticate": 'Bearer realm="kailash"'})
            return
        if principal is not None:
            scope.setdefault("state", {})[PRINCIPAL] = principal
        await app(scope, receive, send)


def _browser_at_root(scope: dict[str, Any]) -> bool:
    """A browser's ``GET /`` (it asks for HTML), which is sent to the Studio rather than refused."""
    return (scope["type"] == "http" and scope.get("path") == "/" and scope.get("method") in ("GET", "HEAD")
            and "text/html" in (_header(scope, b"accept") or ""))


async def send_redirect(send: Any, location: str) -> None:
    """Answer with ``307 Temporary Redirect`` to ``location`` (a path on this gateway)."""
    await send({"type": "http.response.start", "status": 307,
                "headers": [(b"location", location.encode()), (b"content-length", b"0"),
                            (b"cache-control", b"no-store")]})
    await send({"type": "http.response.body", "body": b""})


async def _refuse(scope: dict[str, Any], send: Any, status: int, body: dict[str, Any], headers: dict[str, str]) -> None:
    if scope["type"] == "websocket":
        await deny_websocket(scope, send, status, body, headers)
    else:
        await send_json(send, status, body, headers, scope=scope)


def _reveal(key: Any) -> str:
    from kailash.security.secrets import reveal

    value = reveal(key)
    return str(value) if value is not None else ""


# -- rate limiting -----------------------------------------------------------------------

class RateLimitingMiddleware:
    """Limit each caller to ``requests_per_minute``; excess requests get 429 with ``Retry-After``.

    A caller is its tenant, else its API key, else its client address (an IPv6 client
    counts by its /64 network; ``X-Forwarded-For`` counts only from the gateway's
    ``trusted_proxies``). Up to
    ``burst`` requests (default: ``requests_per_minute``) may come at once; after that
    one every ``60 / requests_per_minute`` seconds. With ``redis_url`` (or
    ``KAILASH_REDIS_URL``) the counters live in Redis, shared by every gateway process
    (a tenant created with ``--redis-db N`` uses database N); if Redis cannot be
    reached, counting falls back to this process and the log says so once.

    Args:
        app: the wrapped ASGI app (given by Starlette's ``add_middleware``; omit otherwise).
        requests_per_minute: the sustained limit per caller.
        burst: how many requests may arrive at once.
        redis_url: ``redis://host:port/db`` for shared counters.
        key_prefix: prefix of the Redis keys.
        exempt_paths: paths never limited.
    """

    kind = "rate_limit"

    def __init__(self, app: Any = None, requests_per_minute: int = 600, *, burst: int | None = None,
                 redis_url: str | None = None, key_prefix: str = "kailash:ratelimit",
                 exempt_paths: Iterable[str] = ("/health",)) -> None:
        if isinstance(app, int) and not isinstance(app, bool):  # RateLimitingMiddleware(60)
            app, requests_per_minute = None, app
        if not isinstance(requests_per_minute, int) or requests_per_minute < 1:
            raise ValueError(f"RateLimitingMiddleware: requests_per_minute must be a positive int, "
                             f"got {requests_per_minute!r}")
        self.app = app
        self.requests_per_minute = requests_per_minute
        self.burst = burst or requests_per_minute
        self.redis_url = redis_url if redis_url is not None else os.environ.get("KAILASH_REDIS_URL") or None
        self.key_prefix = key_prefix
        self.exempt_paths = tuple(exempt_paths)
        self._memory = MemoryCounters()
        self._redis: dict[int | None, RedisCounters] = {}
        self._redis_failed = False

    def _counters(self, db: int | None) -> Any:
        if not self.redis_url or self._redis_failed:
            return self._memory
        counters = self._redis.get(db)
        if counters is None:
            counters = self._redis[db] = RedisCounters(self.redis_url, db)
        return counters

    async def aclose(self) -> None:
        """Close the Redis connections (the gateway calls this when it shuts down)."""
        counters, self._redis = self._redis, {}
        for c in counters.values():
            try:
                await c.client.aclose()
            except Exception:  # closing on shutdown: nothing useful to do on failure
                pass

    async def retry_after(self, bucket: str, requests_per_minute: int, *, burst: int | None = None,
                          redis_db: int | None = None) -> float:
        """Count one request for ``bucket``; return 0 if allowed, else seconds until it would be."""
        interval = 60.0 / requests_per_minute
        counters = self._counters(redis_db)
        try:
            return await counters.hit(f"{self.key_prefix}:{bucket}", interval, burst or requests_per_minute)
        except Exception as exc:
            if counters is self._memory:
                raise
            self._redis_failed = True
            logger.warning("rate limiting: Redis unavailable (%s); counting in this process instead",
                           type(exc).__name__)
            return await self._memory.hit(f"{self.key_prefix}:{bucket}", interval, burst or requests_per_minute)

    @staticmethod
    def bucket_of(scope: dict[str, Any]) -> str:
        principal = principal_of(scope)
        if principal is not None:
            return f"tenant:{principal.tenant_id}" if principal.tenant_id else f"key:{principal.key_id}"
        return f"ip:{address_bucket(client_address(scope))}"

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        await self.dispatch(scope, receive, send, self.app)

    async def dispatch(self, scope: dict[str, Any], receive: Any, send: Any, app: Any) -> None:
        if scope["type"] not in ("http", "websocket") or _is_public(scope.get("path", ""), self.exempt_paths):
            await app(scope, receive, send)
            return
        principal = principal_of(scope)
        wait = await self.retry_after(self.bucket_of(scope), self.requests_per_minute, burst=self.burst,
                                      redis_db=principal.redis_db if principal else None)
        if wait > 0:
            await reject_rate_limited(scope, send, self.requests_per_minute, wait)
            return
        await app(scope, receive, send)


async def reject_rate_limited(scope: dict[str, Any], send: Any, limit: int, wait: float) -> None:
    """Answer 429 with ``Retry-After`` (whole seconds, at least 1)."""
    seconds = max(1, math.ceil(wait))
    body = error_body("rate_limited", f"rate limit of {limit} requests per minute exceeded; "
                                      f"retry after {seconds} s", retry_after=seconds)
    headers = {"Retry-After": str(seconds), "X-RateLimit-Limit": str(limit)}
    if scope["type"] == "websocket":
        await deny_websocket(scope, send, 429, body, headers)
    else:
        await send_json(send, 429, body, headers, scope=scope)
