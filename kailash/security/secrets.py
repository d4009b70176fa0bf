"""Secret values: carried through the engine, never shown.

A :class:`Secret` wraps a credential (API key, client secret, password, token). Nodes
that need the value call :meth:`Secret.reveal`; everything else (``repr``, ``str``,
logs, run records, results, saved and exported workflows) sees a redacted marker.
A secret read from the environment remembers the variable name, so a saved workflow
refers to ``$ENV_NAME`` rather than the value.

**Secrets belong to a run.** A :class:`RunSecrets` (one per run, carried in a context
variable that the runtime sets for the run) holds the plain values a run must scrub
from free text: secrets among its parameters (declared secret parameters arrive as
:class:`Secret`), passwords and credential query values in URLs (``scheme://user:PASS@host``),
and secrets created while the run is in progress (an OAuth token). The runtime redacts
at the three boundaries with it: the run record, the raised error, and live events.
Nothing process-wide grows per run; outside a run :func:`known_secret_values` is empty.
A ``Secret`` rebuilt from a sandboxed worker's reply (:func:`sandbox_secret`) is hidden
when shown, but never scrubs text, so sandboxed code cannot blank words in host logs.

This module imports nothing from Kailash; it sits at the bottom of the layers.
"""

from __future__ import annotations

import contextlib
import contextvars
import os
from collections.abc import Iterator
from typing import Any

from kailash.security.credentials import (
    CREDENTIAL_HEADERS,
    basic_auth_forms,
    is_credential_header,
    url_credentials,
    url_credentials_in_text,
)

__all__ = [
    "Secret", "REDACTED", "redact", "reveal", "secret_from_env", "is_secret",
    "as_secret", "template_fields", "render_template", "plain_secret_values", "wrap_secrets",
    "known_secret_values", "is_credential_header", "CREDENTIAL_HEADERS", "url_credentials",
    "RunSecrets", "run_secrets", "secrets_for_run", "make_current", "restore", "current_run_secrets",
    "note_secrets", "sandbox_secret",
]

REDACTED = "***"

_MIN_SCRUB_LENGTH = 4
_MAX_RUN_SECRETS = 10_000  # one run cannot make its redactor unbounded either
_current: contextvars.ContextVar[RunSecrets | None] = contextvars.ContextVar("kailash_run_secrets", default=None)


def known_secret_values() -> frozenset[str]:
    """The plain values the current run must scrub from free text (empty outside a run; never log this)."""
    rs = _current.get()
    return rs.values() if rs is not None else frozenset()


class Secret:
    """A credential whose value is only available through :meth:`reveal`.

    Example:
        >>> key = Secret("sk-123", env="API_KEY")
        >>> str(key), repr(key)
        ('***', "Secret(env='API_KEY')")
        >>> key.reveal()
        'sk-123'
    """

    __slots__ = ("_value", "env", "_trusted")
    _value: Any
    env: str | None
    _trusted: bool  # False for a Secret rebuilt from sandboxed code: never used to scrub text

    def __init__(self, value: Any, env: str | None = None) -> None:
        if isinstance(value, Secret):
            env = env or value.env
            value = value._value
        object.__setattr__(self, "_value", value)
        object.__setattr__(self, "env", env)
        object.__setattr__(self, "_trusted", True)
        if type(value) is str and len(value) >= _MIN_SCRUB_LENGTH:
            rs = _current.get()
            if rs is not None:  # made during a run (a fetched token): that run scrubs it
                rs._add(value)

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


def sandbox_secret(value: Any, env: Any = None) -> Secret:
    """A :class:`Secret` rebuilt from a sandboxed worker's reply: hidden when shown, but its
    value is never registered for scrubbing (else code could blank any word it likes)."""
    s = object.__new__(Secret)
    object.__setattr__(s, "_value", value._value if isinstance(value, Secret) else value)
    object.__setattr__(s, "env", env if type(env) is str else None)
    object.__setattr__(s, "_trusted", False)
    return s


class RunSecrets:
    """The secret values of one run, and the redaction applied at the run's boundaries.

    Example:
        >>> with run_secrets("r1", {"db": {"dsn": "postgresql://u:pw-123@h/db"}}) as rs:
        ...     rs.redact({"error": "cannot reach postgresql://u:pw-123@h/db"})
        {'error': 'cannot reach postgresql://u:***@h/db'}
    """

    __slots__ = ("run_id", "_values", "_frozen")

    def __init__(self, run_id: str | None = None) -> None:
        self.run_id = run_id
        self._values: set[str] = set()
        self._frozen: frozenset[str] | None = frozenset()

    def _add(self, text: str) -> None:
        if text not in self._values and len(self._values) < _MAX_RUN_SECRETS:
            self._values.add(text)
            self._frozen = None

    def add(self, *values: Any) -> RunSecrets:
        """Remember the secrets found in ``values`` (Secrets and URL credentials, nested); returns self."""
        for text in plain_secret_values(*values):
            if len(text) >= _MIN_SCRUB_LENGTH:
                self._add(text)
        for text in _url_secrets(values, 0):
            if len(text) >= _MIN_SCRUB_LENGTH:
                self._add(text)
        return self

    def add_values(self, texts: Any) -> RunSecrets:
        """Remember plain secret strings (a workflow's configured credentials); returns self."""
        for text in texts:
            if type(text) is str and len(text) >= _MIN_SCRUB_LENGTH:
                self._add(text)
        return self

    def values(self) -> frozenset[str]:
        frozen = self._frozen
        if frozen is None:
            frozen = self._frozen = frozenset(self._values)
        return frozen

    def redact(self, value: Any) -> Any:
        """``value`` with Secrets as references and this run's secret values (and URL passwords) masked."""
        return redact(value, self.values(), urls=True)

    def close(self) -> None:
        """Forget the values (the run is over)."""
        self._values.clear()
        self._frozen = frozenset()


def _url_secrets(value: Any, depth: int) -> list[str]:
    if depth > 50:
        return []
    if type(value) is str:
        return url_credentials(value) + basic_auth_forms(value) if "://" in value else []
    if isinstance(value, dict):
        return [x for v in value.values() for x in _url_secrets(v, depth + 1)]
    if isinstance(value, (list, tuple)):
        return [x for v in value for x in _url_secrets(v, depth + 1)]
    return []


def current_run_secrets() -> RunSecrets | None:
    """The :class:`RunSecrets` of the run in progress here, if any."""
    return _current.get()


def note_secrets(*values: Any) -> None:
    """Add the secrets in ``values`` to the current run's (no-op outside a run)."""
    rs = _current.get()
    if rs is not None:
        rs.add(*values)


def secrets_for_run(run_id: str | None, parameters: Any = None) -> RunSecrets:
    """The :class:`RunSecrets` of run ``run_id``, seeded from ``parameters`` (not made current).

    A sub-workflow of the run current here shares its run's object. The scheduler makes
    it current around the walk (:func:`make_current`), in whatever thread or task runs it.
    """
    rs = _current.get()
    if rs is not None and run_id is not None and rs.run_id == run_id:
        if parameters:
            rs.add(parameters)
        return rs
    rs = RunSecrets(run_id)
    if parameters:
        rs.add(parameters)
    return rs


def make_current(rs: RunSecrets) -> Any:
    """Make ``rs`` current in this context; returns a token for :func:`restore` (None if it already was)."""
    return None if _current.get() is rs else _current.set(rs)


def restore(token: Any) -> None:
    """Undo :func:`make_current` (in the same context)."""
    if token is not None:
        _current.reset(token)


@contextlib.contextmanager
def run_secrets(run_id: str | None, parameters: Any = None) -> Iterator[RunSecrets]:
    """The secrets of run ``run_id`` (seeded from ``parameters``), current inside the block."""
    rs = secrets_for_run(run_id, parameters)
    token = make_current(rs)
    try:
        yield rs
    finally:
        restore(token)
        if token is not None:
            rs.close()


def is_secret(value: Any) -> bool:
    return isinstance(value, Secret)


def reveal(value: Any) -> Any:
    """The plain value of ``value`` if it is a :class:`Secret`, else ``value`` itself."""
    return value._value if isinstance(value, Secret) else value


def secret_from_env(name: str, default: Any = None) -> Secret | None:
    """A :class:`Secret` holding environment variable ``name`` (``None`` if unset and no default)."""
    value = os.environ.get(name, default)
    return None if value is None else Secret(value, env=name)


def redact(value: Any, secret_values: frozenset[str] | None = None, *, urls: bool = False) -> Any:
    """A copy of ``value`` (nested dicts/lists/tuples) with every :class:`Secret` replaced.

    ``secret_values`` are plain strings known to be secret; any string equal to one, or
    containing one, is redacted as well (for tokens that leaked into free text). With
    ``urls=True`` the password and credential query values of any URL inside a string
    are masked too (what a run record or error shows; a saved workflow keeps its URLs).
    """
    if isinstance(value, Secret):
        return value.to_reference()
    if isinstance(value, dict):  # keys too: a secret used as a key is as visible as a value
        return {redact(k, secret_values, urls=urls) if isinstance(k, str) else k: redact(v, secret_values, urls=urls)
                for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        items = [redact(v, secret_values, urls=urls) for v in value]
        return items if isinstance(value, list) else tuple(items)
    if isinstance(value, str):
        if type(value) is not str:  # a subclass's own __contains__ or replace must not decide what is masked
            value = str.__str__(value)
        if urls and "://" in value:
            for s in url_credentials_in_text(value):
                value = value.replace(s, REDACTED)
        if secret_values:
            for s in secret_values:
                if s and s in value:
                    value = value.replace(s, REDACTED)
    return value


# -- helpers for nodes that take credentials -------------------------------------------

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
            if not v._trusted:  # from sandboxed code: hidden itself, never a scrub pattern
                return
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
