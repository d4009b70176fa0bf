"""Secret values: carried through the engine, never shown.

A :class:`Secret` wraps a credential (API key, client secret, password, token). Nodes
that need the value call :meth:`Secret.reveal`; everything else (``repr``, ``str``,
logs, run records, results, saved and exported workflows) sees a redacted marker.
A secret read from the environment remembers the variable name, so a saved workflow
refers to ``$ENV_NAME`` rather than the value.

This module imports nothing from Kailash; it sits at the bottom of the layers.
"""

from __future__ import annotations

import os
from typing import Any

__all__ = [
    "Secret", "REDACTED", "redact", "reveal", "secret_from_env", "is_secret",
    "as_secret", "template_fields", "render_template", "plain_secret_values", "wrap_secrets",
    "known_secret_values", "is_credential_header", "CREDENTIAL_HEADERS", "url_credentials",
]

REDACTED = "***"

# String values of the secrets created in this process, so audit and log writers can
# scrub a credential that leaked into free text (an error message, a URL).
_known: set[str] = set()
_MIN_SCRUB_LENGTH = 4


def known_secret_values() -> frozenset[str]:
    """The string values of the secrets created so far (for scrubbing text; never log this)."""
    return frozenset(_known)


class Secret:
    """A credential whose value is only available through :meth:`reveal`.

    Example:
        >>> key = Secret("sk-123", env="API_KEY")
        >>> str(key), repr(key)
        ('***', "Secret(env='API_KEY')")
        >>> key.reveal()
        'sk-123'
    """

    __slots__ = ("_value", "env")
    _value: Any
    env: str | None

    def __init__(self, value: Any, env: str | None = None) -> None:
        if isinstance(value, Secret):
            env = env or value.env
            value = value._value
        object.__setattr__(self, "_value", value)
        object.__setattr__(self, "env", env)
        if isinstance(value, str) and len(value) >= _MIN_SCRUB_LENGTH:
            _known.add(value)

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError("Secret is immutable")

    def reveal(self) -> Any:
        """Return the wrapped value. Call it only where the value is sent to its service."""
        return self._value

    def __repr__(self) -> str:
        return f"Secret(env={self.env!r})" if self.env else "Secret('***')"

    def __str__(self) -> str:
        return REDACTED

    __format__ = lambda self, spec: REDACTED  # noqa: E731  f-strings never reveal

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash((Secret, self._value))

    def __bool__(self) -> bool:
        return bool(self._value)

    def __reduce__(self):  # crossing a process boundary (sandbox, Dask) keeps the value
        return (Secret, (self._value, self.env))

    def to_reference(self) -> str:
        """What a saved workflow stores: ``$ENV`` when known, else the redacted marker."""
        return f"${{{self.env}}}" if self.env else REDACTED


def is_secret(value: Any) -> bool:
    return isinstance(value, Secret)


def reveal(value: Any) -> Any:
    """The plain value of ``value`` if it is a :class:`Secret`, else ``value`` itself."""
    return value._value if isinstance(value, Secret) else value


def secret_from_env(name: str, default: Any = None) -> Secret | None:
    """A :class:`Secret` holding environment variable ``name`` (``None`` if unset and no default)."""
    value = os.environ.get(name, default)
    return None if value is None else Secret(value, env=name)


def redact(value: Any, secret_values: frozenset[str] | None = None) -> Any:
    """A copy of ``value`` (nested dicts/lists/tuples) with every :class:`Secret` replaced.

    ``secret_values`` are plain strings known to be secret; any string equal to one, or
    containing one, is redacted as well (for tokens that leaked into free text).
    """
    if isinstance(value, Secret):
        return value.to_reference()
    if isinstance(value, dict):
        return {k: redact(v, secret_values) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(redact(v, secret_values) for v in value) if isinstance(value, list) else tuple(
            redact(v, secret_values) for v in value
        )
    if secret_values and isinstance(value, str):
        for s in secret_values:
            if s and s in value:
                value = value.replace(s, REDACTED)
    return value


# -- helpers for nodes that take credentials -------------------------------------------

CREDENTIAL_HEADERS = frozenset({
    "authorization", "proxy-authorization", "cookie", "x-api-key", "api-key", "x-auth-token",
    "x-access-token", "x-amz-security-token", "x-goog-api-key", "ocp-apim-subscription-key",
})
_CREDENTIAL_WORDS = ("token", "secret", "password", "passwd", "apikey", "api-key", "api_key", "auth",
                     "session", "credential", "signature", "cookie")


def url_credentials(text: object) -> list[str]:
    """The credential parts of a URL: the password (or a lone user token) of its user info,
    and the values of credential-named query parameters (``api_key``, ``token``, ``sig``...).

    Example:
        >>> url_credentials("postgresql://app:s3cret@db:5432/x?sslmode=require&api_key=k-123")
        ['s3cret', 'k-123']
        >>> url_credentials("https://api.example.com/v1?page=2")
        []
    """
    if type(text) is not str or "://" not in text or len(text) > 65536:
        return []
    from urllib.parse import parse_qsl, unquote, urlsplit

    try:
        parts = urlsplit(text.strip())
        password, username = parts.password, parts.username
    except ValueError:
        return []
    found = []
    if password:
        found.append(unquote(password))
    elif username and "@" in parts.netloc and len(username) >= 16:  # https://TOKEN@host
        found.append(unquote(username))
    for key, value in parse_qsl(parts.query, keep_blank_values=False):
        if value and (key.lower() in ("key", "sig", "code", "pass", "pwd") or is_credential_header(key)):
            found.append(value)
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


_AUTH_SCHEMES = frozenset({"bearer", "basic", "token", "digest", "apikey"})
_SECRETISH = ("SECRET", "TOKEN", "KEY", "PASSWORD", "PASSWD", "PASS", "CREDENTIAL", "AUTH")


def as_secret(value: Any, *, find_env: bool = True) -> Any:
    """``value`` wrapped in a :class:`Secret` (``None`` and secrets pass through unchanged).

    A plain string equal to the value of an environment variable (typically passed as
    ``os.getenv("API_KEY")``) remembers that variable's name, so saving the workflow
    writes ``${API_KEY}`` instead of the value.

    Example:
        >>> import os
        >>> os.environ["DOC_EXAMPLE_KEY"] = "doc-example-value-5f1c"
        >>> as_secret(os.getenv("DOC_EXAMPLE_KEY")).to_reference()
        '${DOC_EXAMPLE_KEY}'
        >>> del os.environ["DOC_EXAMPLE_KEY"]
    """
    if value is None or isinstance(value, Secret):
        return value
    env = _env_name_of(value) if find_env and isinstance(value, str) else None
    return Secret(value, env=env)


def _env_name_of(value: str) -> str | None:
    if len(value) < 4:  # too short to identify a variable reliably
        return None
    matches = [k for k, v in os.environ.items() if v == value]
    if not matches:
        return None
    matches.sort(key=lambda k: (not any(s in k.upper() for s in _SECRETISH), k))
    return matches[0]


def template_fields(template: str) -> list[str]:
    """The ``{name}`` placeholders in ``template`` (``{{`` and ``}}`` are literal braces)."""
    import string

    names = []
    for _, field, _, _ in string.Formatter().parse(template):
        if field is not None and field not in names:
            names.append(field)
    return names


def render_template(template: str, values: dict[str, Any]) -> Any:
    """Fill ``{name}`` placeholders of ``template`` from ``values``.

    Secret values are revealed only inside the result, which is then itself a
    :class:`Secret`, so ``"Bearer {token}"`` with a secret token stays redacted until it
    is sent. Raises ``KeyError`` naming the first missing placeholder.

    Example:
        >>> h = render_template("Bearer {token}", {"token": Secret("abc")})
        >>> str(h), h.reveal()
        ('***', 'Bearer abc')
    """
    import string

    out: list[str] = []
    secret = False
    for literal, field, spec, conv in string.Formatter().parse(template):
        out.append(literal)
        if field is None:
            continue
        if field not in values or values[field] is None:
            raise KeyError(field)
        value = values[field]
        if isinstance(value, Secret):
            secret = True
            value = value.reveal()
        if conv == "r":
            value = repr(value)
        out.append(format(value, spec or ""))
    text = "".join(out)
    return Secret(text) if secret else text


def plain_secret_values(*values: Any) -> frozenset[str]:
    """The revealed strings of every :class:`Secret` found in ``values`` (nested), for :func:`redact`."""
    found: set[str] = set()

    def walk(v: Any) -> None:
        if isinstance(v, Secret):
            inner = v.reveal()
            if isinstance(inner, str) and inner:
                found.add(inner)
                for part in inner.split():  # "Bearer abc": the token alone is secret too
                    if len(part) >= 6 and part.lower() not in _AUTH_SCHEMES:
                        found.add(part)
        elif isinstance(v, dict):
            for x in v.values():
                walk(x)
        elif isinstance(v, (list, tuple, set)):
            for x in v:
                walk(x)

    for v in values:
        walk(v)
    return frozenset(found)


def wrap_secrets(values: dict[str, Any], names: Any) -> dict[str, Any]:
    """Wrap ``values[name]`` for each of ``names`` with :func:`as_secret`, in place; returns ``values``.

    Nested dicts are searched too, for configs such as ``auth_config={"api_key": ...}``.
    """
    names = frozenset(names)
    for key, value in list(values.items()):
        if key in names and value is not None and not isinstance(value, Secret):
            values[key] = as_secret(value)
        elif isinstance(value, dict) and any(k in names for k in value):
            values[key] = wrap_secrets(dict(value), names)
    return values
