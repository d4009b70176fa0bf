"""What agents do, reported to the run in progress: each model call and each MCP tool call.

Two layers every agent node goes through report here: the provider base
(:class:`kailash.nodes.ai.providers.base.BaseProvider`: every ``chat``, ``structured`` and
``stream`` call of a provider, the offline one included) and the MCP client
(:func:`kailash.nodes.mcp.client.call_tool`). ``LLMAgentNode``, the orchestrators, A2A and
``MCPAgentNode`` get it without code of their own.

The runtime says where a call goes: :func:`set_finder` installs a function (the run
capture's, :mod:`kailash.runtime.capture`) that returns ``(recorder, node_id)`` for the run
and node running in this context, or None. The recorder turns each call into a run event
(``{"event": "model_call"|"tool_call", "run_id", "node_id", ...}``, delivered to the run's
observers) and keeps it in the run record (``RunRecord.calls``), redacted with the run's
secrets and bounded. Outside a run, or with no runtime loaded, a call costs one context
variable read.

Tool arguments are reported with the values of secret-named keys (``api_key``,
``token``, ``password``...) and :class:`~kailash.security.secrets.Secret` values replaced
by ``"***"``; the recorder then masks the run's own secrets. Never the prompt or the
answer: a model call reports provider, model, tokens, latency and outcome.
"""

from __future__ import annotations

import contextvars
import re
import time
from collections.abc import Callable, Iterator
from typing import Any

__all__ = ["set_finder", "model_call", "tool_call", "redact_arguments", "Call", "ARGUMENT_CHARS", "ARGUMENT_ITEMS"]

#: characters kept of one string inside reported tool arguments (longer ones are cut and marked)
ARGUMENT_CHARS = 1000
#: characters kept of a reported error
ERROR_CHARS = 1000

#: entries kept of one dict, list or set inside reported tool arguments (the rest are counted)
ARGUMENT_ITEMS = 100

_SECRET_WORDS = ("key", "token", "secret", "password", "passwd", "passphrase", "pwd", "auth", "credential",
                 "cookie", "session", "bearer", "jwt", "private", "signature")
# a credential written into free text: "Bearer abc...", "token=abc...", "password: abc..."
_CREDENTIAL_TEXT = re.compile(
    r"(?i)(\b(?:bearer|basic|digest)\s+)[A-Za-z0-9._~+/=-]{8,}"
    r"|(\b(?:api[_-]?key|access[_-]?token|token|secret|password|passwd|pwd)\s*[=:]\s*)[^\s&,;\"']{4,}")
# objects whose str() is safe to show: the standard library's value types (never a subclass from elsewhere)
_SHOWN_MODULES = frozenset({"pathlib", "datetime", "decimal", "uuid", "fractions", "ipaddress"})

_finder: Callable[[], Any] | None = None  # installed by the runtime: () -> (recorder, node_id) | None
_inside: contextvars.ContextVar[bool] = contextvars.ContextVar("kailash_agent_call", default=False)


def set_finder(finder: Callable[[], Any] | None) -> Callable[[], Any] | None:
    """Install the function that finds the current run's recorder and node; returns the previous one."""
    global _finder
    previous, _finder = _finder, finder
    return previous


def redact_arguments(value: Any, depth: int = 0) -> Any:
    """Tool arguments as reported: plain JSON values only, secret-named keys and Secrets as
    ``'***'``, credentials written in text (``Bearer ...``, ``token=...``) masked, at most
    :data:`ARGUMENT_ITEMS` entries of each dict, list or set.

    A subclass of ``str``, ``int`` or ``float`` is reported as the plain value it holds (its
    own methods never run again: a ``__contains__`` or ``replace`` could hide a secret from
    the run's redaction); any other object as ``<TypeName>``, never its ``repr`` (which may
    quote credentials, or be huge); bytes by their length.
    """
    from kailash.security.secrets import Secret

    if isinstance(value, Secret):
        return "***"
    if depth > 8:
        return "..."
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for i, (k, v) in enumerate(dict.items(value)):
            if i == ARGUMENT_ITEMS:
                out["..."] = f"[truncated: {len(value) - ARGUMENT_ITEMS} more keys]"
                break
            key = _text(k) if isinstance(k, str) else _scalar_key(k)
            out[key] = "***" if v is not None and any(w in key.lower() for w in _SECRET_WORDS) \
                else redact_arguments(v, depth + 1)
        return out
    if isinstance(value, (list, tuple, set, frozenset)):
        items = []
        for i, v in enumerate(value):
            if i == ARGUMENT_ITEMS:
                items.append(f"...[truncated: {len(value) - ARGUMENT_ITEMS} more items]")
                break
            items.append(redact_arguments(v, depth + 1))
        return items
    if isinstance(value, str):
        return _text(value)
    if value is None or type(value) is bool:
        return value
    if isinstance(value, bool):  # a bool subclass cannot exist; kept for the type checker's sake
        return bool(value)
    if isinstance(value, int):
        return int.__int__(value)
    if isinstance(value, float):
        return float.__float__(value)
    if isinstance(value, (bytes, bytearray, memoryview)):
        return f"<{type(value).__name__}: {len(value)} bytes>"
    if type(value).__module__ in _SHOWN_MODULES:
        return _text(str(value))
    return f"<{type(value).__name__}>"


def _text(value: str) -> str:
    """``value`` as a plain ``str`` with credentials written in it masked (only in the part a
    report keeps: the rest is cut by :func:`shorten`)."""
    value = str.__str__(value)  # an exact str: a subclass's methods are not called again
    head = ARGUMENT_CHARS + 200
    if len(value) > head:
        return _CREDENTIAL_TEXT.sub(_mask, value[:head]) + value[head:]
    return _CREDENTIAL_TEXT.sub(_mask, value)


def _mask(match: re.Match[str]) -> str:
    return (match.group(1) or match.group(2)) + "***"


def _scalar_key(key: Any) -> str:
    if key is None or type(key) in (bool, int, float):
        return str(key)
    return f"<{type(key).__name__}>"


def shorten(value: Any) -> Any:
    """``value`` with strings longer than :data:`ARGUMENT_CHARS` cut (after redaction: a secret
    across the cut would leave a piece that no longer matches)."""
    if isinstance(value, str):
        if len(value) > ARGUMENT_CHARS:
            return f"{value[:ARGUMENT_CHARS]}...[truncated: {len(value) - ARGUMENT_CHARS} more characters]"
        return value
    if isinstance(value, dict):
        return {k: shorten(v) for k, v in value.items()}
    if isinstance(value, list):
        return [shorten(v) for v in value]
    return value


class Call:
    """One call in progress: :meth:`done` reports it (once) with its outcome and latency."""

    __slots__ = ("recorder", "event", "t0", "reported")

    def __init__(self, recorder: Any, event: dict[str, Any]) -> None:
        self.recorder = recorder
        self.event = event
        self.reported = False
        self.t0 = time.perf_counter()

    def done(self, ok: bool, error: str | None = None, **more: Any) -> None:
        if self.reported:
            return
        self.reported = True
        event = self.event
        event["latency_ms"] = round((time.perf_counter() - self.t0) * 1000, 3)
        event["ok"] = bool(ok)
        if error is not None:
            event["error"] = str(error)[:ERROR_CHARS]
        event.update(more)
        if event["event"] == "tool_call" and "outcome" not in event:
            event["outcome"] = "ok" if ok else "failed"
        try:
            self.recorder.agent_call(event)
        except Exception:  # reporting must never break the call
            pass


def _start(kind: str, fields: dict[str, Any]) -> Call | None:
    finder = _finder
    if finder is None:
        return None
    try:
        found = finder()
    except Exception:
        return None
    if found is None:
        return None
    recorder, node_id = found
    return Call(recorder, {"event": kind, "run_id": recorder.run_id, "node_id": node_id,
                           "at": round(time.time(), 6), **fields})


def tool_call(server: str, tool: str, arguments: Any) -> Call | None:
    """A tool call starting now (None outside a run); call :meth:`Call.done` when it ends."""
    if _finder is None:
        return None
    return _start("tool_call", {"server": server, "tool": tool, "arguments": redact_arguments(arguments or {})})


def tool_outcome(server: str, tool: str, arguments: Any, outcome: str, error: str | None = None) -> None:
    """A tool call answered without reaching the server (``outcome``: ``"cached"`` or ``"rejected"``)."""
    if _finder is None:
        return
    call = _start("tool_call", {"server": server, "tool": tool, "arguments": redact_arguments(arguments or {})})
    if call is not None:
        call.done(outcome == "cached", error, outcome=outcome)


def _usage(response: Any) -> dict[str, Any]:
    usage = getattr(response, "usage", None)
    if not isinstance(usage, dict):
        return {"prompt_tokens": None, "completion_tokens": None}
    return {"prompt_tokens": usage.get("prompt_tokens"), "completion_tokens": usage.get("completion_tokens")}


def _provider_fields(provider: Any, operation: str) -> dict[str, Any]:
    return {"provider": str(getattr(provider, "name", type(provider).__name__)),
            "model": str(getattr(provider, "model", "") or ""), "operation": operation}


def _key_scrub(provider: Any, text: str) -> str:
    """``text`` without the provider's API key (errors already leave it out; this makes sure)."""
    from kailash.security.secrets import reveal

    key = reveal(getattr(provider, "api_key", None))
    if isinstance(key, str) and len(key) >= 4 and key in text:
        text = text.replace(key, "***")
    return text


def model_call(fn: Callable[..., Any], operation: str) -> Callable[..., Any]:
    """``fn`` (a provider's ``chat``/``structured``/``stream``) reporting each call to the run in progress.

    A call made inside another reported call of the same context (a provider's ``chat``
    calling its base's) is reported once, by the outer one.
    """
    if getattr(fn, "_kailash_reported", False):
        return fn

    def reported(self: Any, *args: Any, **kwargs: Any) -> Any:
        if _finder is None or _inside.get():
            return fn(self, *args, **kwargs)
        call = _start("model_call", _provider_fields(self, operation))
        if call is None:
            return fn(self, *args, **kwargs)
        token = _inside.set(True)
        try:
            result = fn(self, *args, **kwargs)
        except BaseException as exc:
            call.done(False, _key_scrub(self, f"{type(exc).__name__}: {exc}"), prompt_tokens=None,
                      completion_tokens=None)
            raise
        finally:
            _inside.reset(token)
        if operation == "stream" and hasattr(result, "__next__"):
            return _streamed(self, result, call)
        model = getattr(result, "model", None)
        call.done(True, None, **_usage(result), **({"model": str(model)} if model else {}))
        return result

    reported.__name__ = getattr(fn, "__name__", operation)
    reported.__qualname__ = getattr(fn, "__qualname__", operation)
    reported.__doc__ = fn.__doc__
    reported.__wrapped__ = fn  # type: ignore[attr-defined]
    reported._kailash_reported = True  # type: ignore[attr-defined]
    return reported


def _streamed(provider: Any, chunks: Iterator[Any], call: Call) -> Iterator[Any]:
    """A streamed answer, reported when it ends (``chunks``: pieces received)."""
    n = 0
    try:
        for piece in chunks:
            n += 1
            yield piece
    except BaseException as exc:
        if not isinstance(exc, GeneratorExit):
            call.done(False, _key_scrub(provider, f"{type(exc).__name__}: {exc}"), prompt_tokens=None,
                      completion_tokens=None, chunks=n)
        else:
            call.done(True, None, prompt_tokens=None, completion_tokens=None, chunks=n, closed_early=True)
        raise
    call.done(True, None, prompt_tokens=None, completion_tokens=None, chunks=n)
