"""Recognising credentials by shape: credential header names and secrets inside URLs.

Used by the HTTP nodes (which headers never follow a redirect to another origin), by
the exporter (which values become ``${ENV}`` references) and by run redaction (which
parts of a URL in a parameter or an error message are masked). Pure functions over
exact ``str`` values; this module imports nothing from Kailash.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from urllib.parse import SplitResult

__all__ = ["CREDENTIAL_HEADERS", "basic_auth_forms", "is_credential_header", "url_credentials", "url_credentials_in_text"]

_URL = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://[^\s'\"<>]+")

CREDENTIAL_HEADERS = frozenset({
    "authorization", "proxy-authorization", "cookie", "x-api-key", "api-key", "x-auth-token",
    "x-access-token", "x-amz-security-token", "x-goog-api-key", "ocp-apim-subscription-key",
})
_CREDENTIAL_WORDS = ("token", "secret", "password", "passwd", "apikey", "api-key", "api_key", "auth",
                     "session", "credential", "signature", "cookie")


def _split_url(text: object) -> SplitResult | None:
    """``text`` split as a URL (``urllib.parse.SplitResult``, its user info readable), or ``None``
    when it is not an exact ``str`` holding a URL of at most 64 KiB."""
    if type(text) is not str or "://" not in text or len(text) > 65536:
        return None
    from urllib.parse import urlsplit

    try:
        parts = urlsplit(text.strip())
        parts.password, parts.username  # noqa: B018  # a malformed port or user info raises here
    except ValueError:
        return None
    return parts


def url_credentials(text: object) -> list[str]:
    """The credential parts of a URL: the password (or a lone user token) of its user info,
    and the values of credential-named query parameters (``api_key``, ``token``, ``sig``...).

    Example:
        >>> url_credentials("postgresql://app:s3cret@db:5432/x?sslmode=require&api_key=k-123")
        ['s3cret', 'k-123']
        >>> url_credentials("https://api.example.com/v1?page=2")
        []
    """
    parts = _split_url(text)
    if parts is None:
        return []
    from urllib.parse import parse_qsl, unquote

    password, username = parts.password, parts.username
    found = []
    if password:
        found.append(unquote(password))
    elif username and "@" in parts.netloc and len(username) >= 16:  # https://TOKEN@host
        found.append(unquote(username))
    for key, value in parse_qsl(parts.query, keep_blank_values=False):
        if value and (key.lower() in ("key", "sig", "code", "pass", "pwd") or is_credential_header(key)):
            found.append(value)
    return found


def basic_auth_forms(text: object) -> list[str]:
    """What a client sends for a URL's user info: ``base64(user:password)`` of its ``Basic``
    ``Authorization`` header. A server that quotes the header it got (an error page, an echo)
    shows the password in this form, which :func:`url_credentials` does not match.

    Example:
        >>> basic_auth_forms("http://app:s3cret@host/v1")
        ['YXBwOnMzY3JldA==', 'YXBwOnMzY3JldA']
        >>> basic_auth_forms("http://host/v1")
        []
    """
    parts = _split_url(text)
    if parts is None:
        return []
    import base64
    from urllib.parse import unquote

    password, username = parts.password, parts.username
    if not password:
        return []
    encoded = base64.b64encode(f"{unquote(username or '')}:{unquote(password)}".encode()).decode()
    return list(dict.fromkeys([encoded, encoded.rstrip("=")]))


def url_credentials_in_text(text: str) -> list[str]:
    """:func:`url_credentials` (and :func:`basic_auth_forms`) of every URL inside free text (an
    error message quoting a DSN)."""
    found: list[str] = []
    for m in _URL.finditer(text[:1_000_000]):
        found += [c for c in url_credentials(m.group(0)) + basic_auth_forms(m.group(0)) if len(c) >= 3]
    return found


def is_credential_header(name: object) -> bool:
    """Whether an HTTP header named ``name`` carries a credential (by name: the well-known
    ones and any whose name contains token, secret, password, api-key, auth, session...).

    Example:
        >>> is_credential_header("X-Auth-Token"), is_credential_header("X-Vendor-Session"), is_credential_header("Accept")
        (True, True, False)
    """
    if type(name) is not str:
        return False
    low = name.lower()
    return low in CREDENTIAL_HEADERS or any(w in low for w in _CREDENTIAL_WORDS)
