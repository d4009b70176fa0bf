"""Refusing what a web page on another origin asks of the gateway (cross-site requests, DNS rebinding).

A browser sends a form submission or a ``fetch(..., {mode: "no-cors"})`` to any address
without asking that address first, and with ``auth=False`` nothing else stands between
such a request and running code. :func:`refusal` decides, from the request's headers
alone, whether to refuse it:

* a state-changing request (any method but GET, HEAD, OPTIONS) and a websocket handshake
  must come from the gateway's own origin or an allowed origin: ``Sec-Fetch-Site`` must be
  ``same-origin`` or ``none`` (or absent), and ``Origin``, when present, must match the
  request's ``Host`` or be allowed;
* when the gateway serves without keys, the ``Host`` header must be a loopback name (or
  an allowed host), because a DNS-rebinding page is same-origin as far as its browser knows.

Clients that are not browsers send neither header and are not affected. This module
reads headers only; it never touches a body, a key or storage.
"""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

__all__ = ["OriginPolicy", "refusal", "normalize_origin", "is_loopback_host", "check_keyless_exposure"]

logger = logging.getLogger("kailash.api")

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
_DEFAULT_PORTS = {"http": 80, "https": 443, "ws": 80, "wss": 443}
_LOOPBACK_NAMES = frozenset({"localhost", "localhost.localdomain", "ip6-localhost", "ip6-loopback"})


def is_loopback_host(host: str) -> bool:
    """Whether ``host`` (a name or an address, without port) always means this machine.

    Only literal loopback addresses and the ``localhost`` names count; other names are not
    resolved (what they resolve to is up to whoever controls their DNS).
    """
    name = host.strip().strip("[]").lower().rstrip(".")
    if name in _LOOPBACK_NAMES or name.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def check_keyless_exposure(host: str, cors_origins: Iterable[str] | None, *, override: bool) -> None:
    """Raise ValueError unless serving without keys on ``host`` is safe (or ``override`` says so, loudly)."""
    if cors_origins and "*" in cors_origins:
        raise ValueError("WorkflowGateway: cors_origins=['*'] with auth=False would let every web page run "
                         "workflows on this machine; list the origins you trust, or turn keys on")
    if is_loopback_host(host):
        return
    if not override:
        raise ValueError(f"WorkflowGateway: auth=False on host {host!r} would let anyone who can reach it run code "
                         "as this process; serve on 127.0.0.1 (the default), turn keys on, or pass "
                         "insecure_no_auth_on_network=True if you really mean it")
    logger.warning("INSECURE: serving without API keys on %s: anyone who can reach this port can run code as "
                   "this process", host)


def _split_host(value: str, default_port: int | None) -> tuple[str, int | None] | None:
    """``(host, port)`` of a ``Host`` header value, or ``None`` if it is malformed."""
    value = value.strip().lower()
    if not value or any(c in value for c in "/\\@?#"):
        return None
    try:
        parts = urlsplit("//" + value)
        host, port = parts.hostname, parts.port
    except ValueError:
        return None
    if not host:
        return None
    return host.rstrip("."), port if port is not None else default_port


def normalize_origin(origin: str) -> str | None:
    """``scheme://host:port`` with the default port filled in, or ``None`` if ``origin`` is not one.

    Example:
        >>> normalize_origin("https://Example.COM"), normalize_origin("null")
        ('https://example.com:443', None)
    """
    try:
        parts = urlsplit(origin.strip())
        scheme, host, port = parts.scheme.lower(), parts.hostname, parts.port
    except ValueError:
        return None
    if scheme not in _DEFAULT_PORTS or not host or parts.path not in ("", "/") or parts.query or parts.username:
        return None
    port = port if port is not None else _DEFAULT_PORTS[scheme]
    host = f"[{host}]" if ":" in host else host.rstrip(".")
    return f"{scheme}://{host}:{port}"


@dataclass(frozen=True, kw_only=True, slots=True)
class OriginPolicy:
    """Which browsers' requests the gateway answers.

    Attributes:
        allowed_origins: normalized origins (see :func:`normalize_origin`) whose pages may
            change state, besides the gateway's own.
        any_origin: every origin is allowed (``cors_origins=["*"]``; only with keys on).
        allowed_hosts: ``Host`` names accepted when serving without keys (loopback names
            are always accepted); ``None`` accepts any ``Host``.
    """

    allowed_origins: frozenset[str] = frozenset()
    any_origin: bool = False
    allowed_hosts: frozenset[str] | None = None

    @classmethod
    def build(cls, origins: Iterable[str] | None, *, keyless: bool, host: str = "") -> OriginPolicy:
        """The policy for a gateway with these ``cors_origins`` and key setting, listening on ``host``."""
        given = [o for o in (origins or ()) if type(o) is str]
        normalized = {n for n in map(normalize_origin, given) if n is not None}
        hosts: frozenset[str] | None = None
        if keyless:
            names = {urlsplit(o).hostname or "" for o in normalized}
            if host and host not in ("0.0.0.0", "::", ""):
                names.add(host.strip("[]").lower())
            hosts = frozenset(n for n in names if n)
        return cls(allowed_origins=frozenset(normalized), any_origin="*" in given, allowed_hosts=hosts)

    def origin_allowed(self, origin: str) -> bool:
        if self.any_origin:
            return origin.strip() != "null"
        if not self.allowed_origins:
            return False
        normalized = normalize_origin(origin)
        return normalized is not None and normalized in self.allowed_origins


def _header(scope: dict[str, Any], name: bytes) -> str | None:
    for k, v in scope.get("headers") or ():
        if k == name:
            return v.decode("latin-1")
    return None


_SAME_ORIGIN: dict[tuple[str, str | None], bool] = {}  # a browser repeats the same pair on every request


def _same_origin(origin: str, host_header: str | None) -> bool:
    key = (origin, host_header)
    hit = _SAME_ORIGIN.get(key)
    if hit is None:
        if len(_SAME_ORIGIN) > 1024:
            _SAME_ORIGIN.clear()
        hit = _SAME_ORIGIN[key] = _compare_origin(origin, host_header)
    return hit


def _compare_origin(origin: str, host_header: str | None) -> bool:
    normalized = normalize_origin(origin)
    if normalized is None or host_header is None:
        return False
    scheme = normalized.split("://", 1)[0]
    own = _split_host(host_header, _DEFAULT_PORTS[scheme])
    if own is None:
        return False
    parts = urlsplit(normalized)
    return (parts.hostname, parts.port) == own


def refusal(scope: dict[str, Any], policy: OriginPolicy, *, trusted_proxies: Any = None) -> tuple[str, str] | None:
    """``(code, message)`` if the request must be refused with 403, else ``None``.

    Behind a trusted proxy (``trusted_proxies.trusts(peer)``), the proxy's
    ``X-Forwarded-Host`` is the host the browser asked for.
    """
    kind = scope.get("type")
    if kind not in ("http", "websocket"):
        return None
    host_header = _header(scope, b"host")
    peer = scope.get("client")
    if trusted_proxies is not None and peer and trusted_proxies.trusts(str(peer[0])):
        forwarded = _header(scope, b"x-forwarded-host")
        if forwarded:
            host_header = forwarded.split(",")[0].strip()
    if policy.allowed_hosts is not None:
        split = _split_host(host_header or "", None)
        name = split[0].strip("[]") if split else ""
        if not (name and (is_loopback_host(name) or name in policy.allowed_hosts)):
            return ("host_not_allowed",
                    f"this gateway serves without API keys, so it answers only to localhost names, not to "
                    f"Host {(host_header or '')[:100]!r} (a web page that rebinds its own name to this machine "
                    "looks like that); open it as http://127.0.0.1:<port> or turn keys on")
    if kind == "http" and scope.get("method", "GET").upper() in SAFE_METHODS:
        return None
    origin = _header(scope, b"origin")
    site = (_header(scope, b"sec-fetch-site") or "").strip().lower()
    allowed = origin is not None and policy.origin_allowed(origin)
    if origin is not None and not allowed and not _same_origin(origin, host_header):
        return ("cross_site_request",
                f"refused a request from a web page on another origin ({origin[:100]}); the gateway accepts "
                "state-changing requests only from its own pages, from clients that are not browsers, and from "
                "origins listed in cors_origins")
    if site not in ("", "same-origin", "none") and not allowed:
        return ("cross_site_request",
                f"refused a {site} request from a web page (Sec-Fetch-Site: {site[:20]}); the gateway accepts "
                "state-changing requests only from its own pages, from clients that are not browsers, and from "
                "origins listed in cors_origins")
    return None
