"""The counting behind the rate limits, and the request-body cap.

Rate limits use GCRA (the "generic cell rate algorithm", a smooth token bucket): per
bucket only a theoretical arrival time is kept. :class:`MemoryCounters` keeps it in
this process; :class:`RedisCounters` keeps it in Redis, updated by one atomic Lua
script using the Redis server's clock, so several gateway processes share the
counts. :class:`BodySizeLimitMiddleware` refuses oversized request bodies with 413.

Who a request comes from is decided once, by :func:`client_address`: the socket's peer,
unless that peer is a configured trusted proxy, in which case the nearest address in
``X-Forwarded-For`` that is not itself a trusted proxy. :class:`FailedKeyLimiter` counts
requests with an invalid key per client address and locks an address out, with a
doubling delay, once it has guessed too often.
"""

from __future__ import annotations

import ipaddress
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from kailash.api.responses import error_body, send_json

__all__ = ["MemoryCounters", "RedisCounters", "BodySizeLimitMiddleware", "BodyTooLarge", "TrustedProxies",
           "client_address", "resolve_client", "address_bucket", "FailedKeyLimiter"]

CLIENT = "kailash_client"


def _header(scope: dict[str, Any], name: bytes) -> str | None:
    for k, v in scope.get("headers") or ():
        if k == name:
            return v.decode("latin-1")
    return None


Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True, kw_only=True, slots=True)
class TrustedProxies:
    """The proxies whose ``X-Forwarded-For`` the gateway believes (addresses or CIDR networks).

    Example:
        >>> proxies = TrustedProxies.parse(["10.0.0.0/8", "127.0.0.1"])
        >>> proxies.trusts("10.1.2.3"), proxies.trusts("192.0.2.7")
        (True, False)
    """

    networks: tuple[Network, ...] = ()

    @classmethod
    def parse(cls, given: Iterable[str] | None) -> TrustedProxies:
        if given is None:
            return cls()
        if isinstance(given, str):
            given = [given]
        networks = []
        for item in given:
            if type(item) is not str:
                raise TypeError(f"trusted_proxies: expected addresses or networks as strings, got "
                                f"{type(item).__name__}")
            try:
                networks.append(ipaddress.ip_network(item.strip(), strict=False))
            except ValueError:
                raise ValueError(f"trusted_proxies: {item!r} is not an IP address or network "
                                 "(like '10.0.0.5' or '10.0.0.0/8')") from None
        return cls(networks=tuple(networks))

    def trusts(self, address: str) -> bool:
        if not self.networks:
            return False
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return False
        return any(ip in n for n in self.networks)


def resolve_client(scope: dict[str, Any], proxies: TrustedProxies | None = None) -> str:
    """Settle the address a request comes from and keep it in the scope (the gateway's first step).

    The socket's peer, unless it is a trusted proxy: then ``X-Forwarded-For`` is read from
    the right, skipping trusted proxies, and the first other address is the client's. A
    forwarded header from anyone else is ignored, so a caller cannot pick its own bucket.
    """
    peer = scope.get("client")
    address = str(peer[0]) if peer else "unknown"
    if proxies is not None and proxies.trusts(address):
        hops = [h.strip() for v in _headers(scope, b"x-forwarded-for") for h in v.split(",")]
        for hop in reversed(hops):
            try:
                hop = str(ipaddress.ip_address(hop.strip("[]")))
            except ValueError:
                break  # a proxy we trust wrote something that is not an address: stop at that proxy
            address = hop
            if not proxies.trusts(hop):
                break
    scope.setdefault("state", {})[CLIENT] = address
    return address


def client_address(scope: dict[str, Any]) -> str:
    """The address :func:`resolve_client` settled for this request, else the socket's peer."""
    state = scope.get("state")
    if isinstance(state, dict) and type(state.get(CLIENT)) is str:
        return state[CLIENT]
    peer = scope.get("client")
    return str(peer[0]) if peer else "unknown"


def address_bucket(address: str) -> str:
    """The unit counted for an address: itself for IPv4, its /64 network for IPv6 (one host's share)."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return address
    if ip.version == 6 and ip.ipv4_mapped is None:
        return str(ipaddress.ip_network(f"{ip}/64", strict=False))
    return str(ip.ipv4_mapped or ip) if ip.version == 6 else str(ip)


def _headers(scope: dict[str, Any], name: bytes) -> list[str]:
    return [v.decode("latin-1") for k, v in scope.get("headers") or () if k == name]


class FailedKeyLimiter:
    """Count invalid API keys per client address; lock an address out once it guessed too often.

    The first ``max_failures`` invalid keys within ``window`` seconds cost nothing; each
    further one locks the address out for ``base_delay`` seconds, doubling up to
    ``max_delay``. A locked-out address gets 429 for every request that carries a key,
    before the key is looked at, so guessing on stops telling right from wrong. The count
    fades after ``window`` seconds without a failure; a valid key does not reset it (a
    caller holding one key must not be able to guess others at full speed).

    Args:
        max_failures: invalid keys allowed per window before the lockouts start.
        window: seconds after the last failure at which an address is forgotten.
        base_delay: the first lockout, in seconds.
        max_delay: the longest lockout, in seconds.
    """

    def __init__(self, max_failures: int = 10, *, window: float = 600.0, base_delay: float = 1.0,
                 max_delay: float = 900.0, max_tracked: int = 100_000) -> None:
        if type(max_failures) is not int or max_failures < 0:
            raise ValueError(f"FailedKeyLimiter: max_failures must be an int >= 0, got {max_failures!r}")
        self.max_failures = max_failures
        self.window = window
        self.base_delay = base_delay
        self.max_delay = max_delay
        self.max_tracked = max_tracked
        self._state: dict[str, tuple[int, float, float]] = {}  # bucket -> (failures, last failure, locked until)

    def retry_after(self, address: str) -> float:
        """Seconds ``address`` is still locked out for (0: not locked)."""
        entry = self._state.get(address_bucket(address))
        if entry is None:
            return 0.0
        return max(0.0, entry[2] - time.monotonic())

    def failed(self, address: str) -> float:
        """Count one invalid key from ``address``; return the lockout now in force (seconds)."""
        bucket = address_bucket(address)
        now = time.monotonic()
        failures, last, locked = self._state.get(bucket, (0, now, 0.0))
        if now - last > self.window and locked <= now:
            failures = 0
        failures += 1
        if failures > self.max_failures:
            excess = min(failures - self.max_failures - 1, 30)
            locked = max(locked, now + min(self.base_delay * 2 ** excess, self.max_delay))
        self._state[bucket] = (failures, now, locked)
        if len(self._state) > self.max_tracked:
            self._forget(now)
        return max(0.0, locked - now)

    def _forget(self, now: float) -> None:
        keep = {b: e for b, e in self._state.items() if e[2] > now or now - e[1] <= self.window}
        if len(keep) > self.max_tracked:  # under a flood of addresses keep the locked ones only
            keep = {b: e for b, e in keep.items() if e[2] > now}
        self._state = keep


_GCRA_LUA = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local interval = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
if tat < now then tat = now end
local new_tat = tat + interval
local allow_at = new_tat - burst * interval
if now < allow_at then return tostring(allow_at - now) end
redis.call('SET', KEYS[1], tostring(new_tat), 'PX', math.ceil((new_tat - now) * 1000) + 1000)
return '0'
"""


class MemoryCounters:
    """GCRA state in this process: bucket -> theoretical arrival time."""

    def __init__(self) -> None:
        self.tat: dict[str, float] = {}

    async def hit(self, bucket: str, interval: float, burst: int) -> float:
        now = time.monotonic()
        tat = max(self.tat.get(bucket, now), now)
        new_tat = tat + interval
        allow_at = new_tat - burst * interval
        if now < allow_at:
            return allow_at - now
        self.tat[bucket] = new_tat
        if len(self.tat) > 50_000:  # drop buckets that have fully refilled
            self.tat = {b: t for b, t in self.tat.items() if t > now}
        return 0.0


class RedisCounters:
    """GCRA state in Redis (one atomic script per request), shared by every gateway process."""

    def __init__(self, url: str, db: int | None) -> None:
        import redis.asyncio as aioredis

        if db is not None:  # the URL's own database would win over a db= argument: replace it
            from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

            parts = urlsplit(url)
            query = urlencode([(k, v) for k, v in parse_qsl(parts.query) if k != "db"])
            url = urlunsplit(parts._replace(path=f"/{db}", query=query))
        self.client = aioredis.from_url(url)
        self.script = self.client.register_script(_GCRA_LUA)

    async def hit(self, bucket: str, interval: float, burst: int) -> float:
        return float(await self.script(keys=[bucket], args=[interval, burst]))


class BodyTooLarge(Exception):
    """Raised from ``receive`` when a request body passes the cap of ``max_body_size`` bytes."""

    def __init__(self, max_body_size: int = 0) -> None:
        super().__init__(f"request body is larger than {max_body_size} bytes")
        self.max_body_size = max_body_size


class BodySizeLimitMiddleware:
    """Refuse request bodies larger than ``max_body_size`` bytes with 413.

    A declared ``Content-Length`` over the cap is refused before anything is read; a
    streamed body is counted as it arrives and refused when it passes the cap.
    """

    def __init__(self, app: Any = None, max_body_size: int = 10 * 1024 * 1024) -> None:
        self.app = app
        self.max_body_size = max_body_size

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        await self.dispatch(scope, receive, send, self.app)

    def too_large_body(self) -> dict[str, Any]:
        """The 413 error body naming the cap."""
        return error_body("body_too_large", f"request body is larger than {self.max_body_size} bytes",
                          max_body_size=self.max_body_size)

    async def dispatch(self, scope: dict[str, Any], receive: Any, send: Any, app: Any) -> None:
        if scope["type"] != "http":
            await app(scope, receive, send)
            return
        limit = self.max_body_size
        declared = _header(scope, b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            await send_json(send, 413, self.too_large_body(), scope=scope)
            return
        seen = 0
        started = False

        async def counted_receive() -> dict[str, Any]:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    raise BodyTooLarge(limit)
            return message

        async def tracking_send(message: dict[str, Any]) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await app(scope, counted_receive, tracking_send)
        except BodyTooLarge:
            if not started:
                await send_json(send, 413, self.too_large_body(), scope=scope)
