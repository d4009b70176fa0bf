"""The model-provider interface: chat messages, tool specs, tool calls and responses.

Every provider (offline, OpenAI-compatible, Ollama, Anthropic) turns a list of
:class:`ChatMessage` plus optional :class:`ToolSpec` into one :class:`ChatResponse`.
The value objects here are frozen dataclasses; providers translate them to and from
their wire format. :class:`BaseProvider` is the base of the built-in providers: every
``chat``, ``structured`` and ``stream`` call of a subclass is reported to the run in
progress (:mod:`kailash.nodes.calls`: a ``model_call`` run event and an entry of the run
record). This module imports nothing beyond the standard library, ``kailash.errors``,
``kailash.nodes.calls`` and (when an error quotes a URL) ``kailash.security.credentials``,
and must not do I/O.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from kailash.errors import NodeConfigurationError, NodeExecutionError
from kailash.nodes.calls import model_call

__all__ = [
    "BaseProvider",
    "ChatMessage",
    "ChatResponse",
    "ModelProvider",
    "ProviderError",
    "ToolCall",
    "ToolSpec",
    "parse_arguments",
    "read_json",
    "MAX_JSON_DEPTH",
]

#: the deepest nesting accepted in JSON a model or server sends (deeper is refused as malformed)
MAX_JSON_DEPTH = 64


_STRINGS = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"')
_BRACKETS = re.compile(r"[\[\]{}]")


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def read_json(text: str | bytes, *, limit: int | None = None) -> Any:
    """JSON sent by a model or a server, parsed with its hostile forms refused as ValueError.

    Refused: text longer than ``limit`` characters, nesting deeper than
    :data:`MAX_JSON_DEPTH` (checked before parsing: Python's parser would recurse until a
    RecursionError), ``NaN``/``Infinity`` (not JSON; NaN passes every bound a schema sets),
    and integers too long to convert (Python's own ValueError).

    Example:
        >>> read_json('{"a": [1, 2.5]}')
        {'a': [1, 2.5]}
        >>> read_json('{"n": NaN}')
        Traceback (most recent call last):
        ...
        ValueError: NaN is not a JSON number
    """
    if isinstance(text, (bytes, bytearray)):
        text = bytes(text).decode("utf-8")
    if limit is not None and len(text) > limit:
        raise ValueError(f"the JSON text has {len(text)} characters, more than {limit}")
    if text.count("[") + text.count("{") > MAX_JSON_DEPTH:  # only then can it nest too deep
        depth = 0
        for m in _BRACKETS.finditer(_STRINGS.sub('""', text)):  # brackets inside strings do not nest
            depth += 1 if m.group() in "[{" else -1
            if depth > MAX_JSON_DEPTH:
                raise ValueError(f"the JSON nests deeper than {MAX_JSON_DEPTH} levels")
    try:
        return json.loads(text, parse_constant=_no_constant)
    except RecursionError as exc:  # a guard, should the count above ever miss a form
        raise ValueError(f"the JSON nests deeper than {MAX_JSON_DEPTH} levels") from exc


class ProviderError(NodeExecutionError):
    """A model provider failed: unreachable, timed out, refused, or answered malformed data.

    Attributes:
        provider: the provider's name (``"openai"``, ``"ollama"``...).
    """

    def __init__(self, message: str, *, provider: str, **context: Any) -> None:
        if "://" in message:  # a provider's URL with user info: its password never shows (results, logs)
            from kailash.security.credentials import url_credentials_in_text

            for found in sorted(set(url_credentials_in_text(message)), key=len, reverse=True):
                message = message.replace(found, "***")
        super().__init__(message, **context)
        self.provider = provider


@dataclass(frozen=True, kw_only=True)
class ToolSpec:
    """A tool the model may call.

    Attributes:
        name: the tool's name as the model must spell it.
        description: what the tool does (models choose tools by it).
        input_schema: JSON Schema of the tool's arguments object.
        server: the MCP server that provides the tool, if any.
    """

    name: str
    description: str = ""
    input_schema: dict[str, Any] = field(default_factory=lambda: {"type": "object", "properties": {}})
    server: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "description": self.description, "input_schema": self.input_schema,
                "server": self.server}


@dataclass(frozen=True, kw_only=True)
class ToolCall:
    """A model's request to call one tool with arguments.

    ``error`` is set when the model's arguments could not be read (malformed JSON, not an
    object); such a call is never sent: the agent loop answers it with a tool error the
    model can correct.
    """

    id: str
    name: str
    arguments: dict[str, Any] = field(default_factory=dict)
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        out = {"id": self.id, "name": self.name, "arguments": dict(self.arguments)}
        if self.error:
            out["error"] = self.error
        return out


@dataclass(frozen=True, kw_only=True)
class ChatMessage:
    """One message of a conversation.

    Attributes:
        role: ``"system"``, ``"user"``, ``"assistant"`` or ``"tool"``.
        content: the text.
        tool_calls: on an assistant message, the tools it asked for.
        tool_call_id: on a tool message, the call it answers.
        name: on a tool message, the tool's name.
    """

    role: str
    content: str = ""
    tool_calls: tuple[ToolCall, ...] = ()
    tool_call_id: str | None = None
    name: str | None = None

    @classmethod
    def from_any(cls, value: Any) -> ChatMessage:
        """Accept a ChatMessage, a ``{"role", "content"}`` dict or a plain string (a user message)."""
        if isinstance(value, ChatMessage):
            return value
        if isinstance(value, str):
            return cls(role="user", content=value)
        if isinstance(value, dict) and "role" in value:
            calls = tuple(
                c if isinstance(c, ToolCall) else ToolCall(id=str(c.get("id", "")), name=c["name"],
                                                           arguments=dict(c.get("arguments") or {}))
                for c in value.get("tool_calls") or ()
            )
            return cls(role=str(value["role"]), content=str(value.get("content") or ""), tool_calls=calls,
                       tool_call_id=value.get("tool_call_id"), name=value.get("name"))
        raise NodeConfigurationError(
            f"a chat message must be a string or a dict with 'role' and 'content', got {type(value).__name__}",
            parameter="messages", expected="str | {'role', 'content'}", got=type(value).__name__,
        )

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"role": self.role, "content": self.content}
        if self.tool_calls:
            out["tool_calls"] = [c.to_dict() for c in self.tool_calls]
        if self.tool_call_id:
            out["tool_call_id"] = self.tool_call_id
        if self.name:
            out["name"] = self.name
        return out


@dataclass(frozen=True, kw_only=True)
class ChatResponse:
    """A provider's answer: text and/or tool calls.

    Attributes:
        content: the assistant's text (may be empty when it only calls tools).
        tool_calls: the tools it wants called before it answers.
        model: the model that answered.
        provider: the provider's name.
        finish_reason: ``"stop"``, ``"tool_calls"``, ``"length"``...
        usage: token counts when the provider reports them.
    """

    content: str = ""
    tool_calls: tuple[ToolCall, ...] = ()
    model: str = ""
    provider: str = ""
    finish_reason: str = "stop"
    usage: dict[str, int] = field(default_factory=dict)

    def to_message(self) -> ChatMessage:
        return ChatMessage(role="assistant", content=self.content, tool_calls=self.tool_calls)

    def to_dict(self) -> dict[str, Any]:
        return {
            "content": self.content,
            "tool_calls": [c.to_dict() for c in self.tool_calls],
            "model": self.model,
            "provider": self.provider,
            "finish_reason": self.finish_reason,
            "usage": dict(self.usage),
        }


@runtime_checkable
class ModelProvider(Protocol):
    """What every provider implements: one chat completion, possibly with tool calls."""

    name: str
    model: str

    def chat(
        self,
        messages: Sequence[ChatMessage],
        *,
        tools: Sequence[ToolSpec] = (),
        temperature: float | None = None,
        max_tokens: int | None = None,
    ) -> ChatResponse:
        """Answer the conversation; raise :class:`ProviderError` on failure."""
        ...


class BaseProvider:
    """The base of providers: each call of ``chat``, ``structured`` or ``stream`` a subclass
    defines is reported to the run in progress as a ``model_call`` (provider, model, tokens,
    latency, outcome; never the prompt). Outside a run nothing is reported.

    A provider that does not derive from this class still works everywhere; its calls are
    just not reported.
    """

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        for op in ("chat", "structured", "stream"):
            fn = cls.__dict__.get(op)
            if callable(fn):
                setattr(cls, op, model_call(fn, op))


def parse_arguments(raw: Any, *, provider: str, tool: str) -> dict[str, Any]:
    """Tool-call arguments as a dict, from a dict or a JSON string; ProviderError when malformed."""
    if raw is None or raw == "":
        return {}
    if isinstance(raw, dict):
        return raw
    if isinstance(raw, str):
        try:
            value = read_json(raw)
        except ValueError as exc:  # malformed, too deep, NaN/Infinity, an integer too long
            why = exc.msg if isinstance(exc, json.JSONDecodeError) else str(exc)[:200]
            raise ProviderError(
                f"provider '{provider}' returned malformed JSON arguments for tool '{tool}': {why}",
                provider=provider, expected="a JSON object", got=raw[:80],
            ) from exc
        if isinstance(value, dict):
            return value
    raise ProviderError(
        f"provider '{provider}' returned arguments for tool '{tool}' that are not an object",
        provider=provider, expected="a JSON object", got=type(raw).__name__,
    )
