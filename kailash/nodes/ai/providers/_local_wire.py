"""How the local provider talks to a model: chats as llama.cpp requests, its JSON turns as responses.

The tools are described in the system message and the model's turn is constrained (by
llama.cpp's JSON-Schema grammar, see :func:`envelope`) to ``{"tool": NAME, "arguments":
{...}}`` or ``{"answer": TEXT}``, which :func:`read_turn` turns back into a ChatResponse.
Conversations are rendered so that any chat template takes them (:func:`to_wire`).
Pure functions, no I/O; :mod:`.local` owns the model.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from kailash.nodes.ai.providers.base import ChatMessage, ChatResponse, ToolCall, ToolSpec, read_json

__all__ = ["envelope", "offered", "read_turn", "to_wire", "tool_instruction", "usage", "with_system"]

_TOOL_NAME = re.compile(r'"tool"\s*:\s*"([^"]+)"')
_PARTIAL_ANSWER = re.compile(r'^\{\s*"answer"\s*:\s*"(.*)$', re.S)


def read_turn(base: ChatResponse, offer: Sequence[ToolSpec], *, call_id: str) -> ChatResponse:
    """The model's JSON turn as a ChatResponse: one tool call, or an answer in words.

    A call whose JSON was cut off (at ``max_tokens``) becomes a call marked ``error`` (the
    agent loop refuses it and tells the model); an answer cut off keeps its text so far.
    """
    text = base.content.strip()
    try:
        value = read_json(text)
    except ValueError:  # malformed, too deep, NaN/Infinity: not a call
        value = None
    if isinstance(value, dict) and isinstance(value.get("tool"), str):
        args = value.get("arguments")
        error = None if isinstance(args, dict) else \
            f"provider 'local' returned arguments for tool '{value['tool']}' that are not an object"
        call = ToolCall(id=call_id, name=value["tool"], arguments=args if isinstance(args, dict) else {}, error=error)
        return replace(base, content="", tool_calls=(call,), finish_reason="tool_calls")
    if isinstance(value, dict) and "answer" in value:
        return replace(base, content=str(value["answer"]))
    named = _TOOL_NAME.search(text)
    if named and any(t.name == named.group(1) for t in offer):  # a call cut off mid-arguments
        cut = " (the answer was cut off at max_tokens)" if base.finish_reason == "length" else ""
        call = ToolCall(id=call_id, name=named.group(1), arguments={},
                        error=f"provider 'local' returned malformed JSON arguments for tool '{named.group(1)}'{cut}")
        return replace(base, content="", tool_calls=(call,), finish_reason="tool_calls")
    partial = _PARTIAL_ANSWER.match(text)
    if partial:  # an answer cut off at max_tokens: its text so far
        return replace(base, content=_partial_string(partial.group(1)))
    return base  # neither a call nor an answer (cut off early): the text, as it came


def offered(tools: Sequence[ToolSpec], choice: str | None) -> list[ToolSpec]:
    """The tools this turn may call under ``tool_choice`` (a named one alone; none for ``"none"``)."""
    if not tools or choice == "none":
        return []
    if choice and choice not in ("auto", "required"):
        named = [t for t in tools if t.name == choice]
        return named or list(tools[:1])
    return list(tools)


def envelope(tools: Sequence[ToolSpec], *, allow_answer: bool) -> dict[str, Any]:
    """The JSON Schema of one turn: a call of one offered tool (its arguments in its schema), or an answer."""
    options: list[dict[str, Any]] = []
    defs: dict[str, Any] = {}
    for t in tools:
        arguments = _grammar_safe(t.input_schema)
        for key in ("$defs", "definitions"):  # '#/$defs/X' references resolve against the root: move them there
            if isinstance(arguments.get(key), dict):
                defs.setdefault(key, {}).update(arguments.pop(key))
        options.append({"type": "object", "properties": {"tool": {"const": t.name}, "arguments": arguments},
                        "required": ["tool", "arguments"], "additionalProperties": False})
    if allow_answer:
        options.append({"type": "object", "properties": {"answer": {"type": "string"}}, "required": ["answer"],
                        "additionalProperties": False})
    return {**(options[0] if len(options) == 1 else {"anyOf": options}), **defs}


def _grammar_safe(schema: Any) -> dict[str, Any]:
    """A tool's argument schema as the grammar gets it: an object schema (any object when it is not one)."""
    if not isinstance(schema, dict) or schema.get("type", "object") != "object":
        return {"type": "object"}
    out = {k: v for k, v in schema.items() if k not in ("$schema", "title")}
    out.setdefault("type", "object")
    out.setdefault("properties", {})
    return out


def tool_instruction(tools: Sequence[ToolSpec], *, allow_answer: bool) -> str:
    """The system-message text that describes the tools and the JSON form of a turn."""
    lines = ["You can call these tools:"] if tools else ["Answer the user now from the tool results above."]
    for t in tools:
        lines.append(f"- {t.name}: {t.description or t.name}. Arguments (JSON Schema): "
                     f"{json.dumps(t.input_schema.get('properties') or {}, separators=(',', ':'))[:1500]}")
    if tools:
        lines.append('To call a tool, reply with {"tool": "<name>", "arguments": {...}}.')
    if allow_answer:
        lines.append('To answer the user, reply with {"answer": "<your answer>"}. Use a tool result when you have '
                     "one; do not call the same tool twice with the same arguments.")
    return "\n".join(lines)


def with_system(wire: list[dict[str, Any]], text: str) -> list[dict[str, Any]]:
    """``wire`` with ``text`` appended to its system message (made when there is none)."""
    if wire and wire[0]["role"] == "system":
        return [{"role": "system", "content": f"{wire[0]['content']}\n\n{text}"}, *wire[1:]]
    return [{"role": "system", "content": text}, *wire]


def to_wire(messages: Sequence[ChatMessage]) -> list[dict[str, Any]]:
    """OpenAI-shaped messages any chat template renders: system messages first and merged, an
    assistant's tool calls written as the JSON it answers with, tool results as user turns, and
    consecutive turns of one role merged (templates that insist on alternation accept it)."""
    system = "\n\n".join(m.content for m in messages if m.role == "system" and m.content)
    names = {c.id: c.name for m in messages for c in m.tool_calls}
    out: list[dict[str, Any]] = [{"role": "system", "content": system}] if system else []
    for m in messages:
        if m.role == "system":
            continue
        if m.role == "tool":
            tool = m.name or names.get(m.tool_call_id or "", "the tool")
            role, content = "user", f"Result of tool {tool}: {m.content}"
        elif m.role == "assistant":
            calls = [json.dumps({"tool": c.name, "arguments": c.arguments}) for c in m.tool_calls]
            role, content = "assistant", "\n".join([m.content] * bool(m.content) + calls)
        else:
            role, content = "user", m.content
        if out and out[-1]["role"] == role:
            out[-1] = {"role": role, "content": f"{out[-1]['content']}\n\n{content}"}
        else:
            out.append({"role": role, "content": content})
    return out


def _partial_string(body: str) -> str:
    """The text of a JSON string literal cut off somewhere (escapes decoded where complete)."""
    for end in range(len(body), max(-1, len(body) - 8), -1):  # drop an escape cut in half
        try:
            return str(json.loads(f'"{body[:end]}"'))
        except ValueError:
            continue
    return body


def usage(data: dict[str, Any]) -> dict[str, int]:
    """The token counts of a llama.cpp completion."""
    usage = data.get("usage") or {}
    return {k: int(v) for k, v in usage.items() if isinstance(v, int)}
