"""Anthropic's Messages API (``POST {base_url}/v1/messages``) with tool use.

The key comes from config or ``ANTHROPIC_API_KEY`` and is sent as ``x-api-key``. System
messages become the top-level ``system`` field; tool results become ``tool_result``
blocks in a user turn, consecutive ones merged as the API requires.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from kailash.nodes.ai.providers._http import HTTPProvider, malformed
from kailash.nodes.ai.providers.base import ChatMessage, ChatResponse, ToolCall, ToolSpec
from kailash.security.secrets import Secret

__all__ = ["AnthropicProvider", "ANTHROPIC_VERSION"]

ANTHROPIC_VERSION = "2023-06-01"


class AnthropicProvider(HTTPProvider):
    """A provider for Anthropic's Messages API.

    Args:
        model: e.g. ``"claude-3-5-haiku-latest"``.
        base_url: default ``https://api.anthropic.com``.
        api_key: a Secret or string; required by the real API.
        timeout: seconds to wait for one answer.
        default_max_tokens: the API requires ``max_tokens``; used when a call gives none.
        options: ``max_response_bytes`` and ``owner`` (see :class:`HTTPProvider`).
    """

    name = "anthropic"
    path = "/v1/messages"

    def __init__(self, *, model: str, base_url: str, api_key: Secret | str | None = None, timeout: float = 60.0,
                 default_max_tokens: int = 1024, **options: Any) -> None:
        super().__init__(model=model, base_url=base_url, api_key=api_key, timeout=timeout, **options)
        self.default_max_tokens = default_max_tokens

    def chat(
        self,
        messages: Sequence[ChatMessage],
        *,
        tools: Sequence[ToolSpec] = (),
        temperature: float | None = None,
        max_tokens: int | None = None,
    ) -> ChatResponse:
        system = "\n\n".join(m.content for m in messages if m.role == "system")
        payload: dict[str, Any] = {
            "model": self.model,
            "max_tokens": max_tokens or self.default_max_tokens,
            "messages": _to_wire([m for m in messages if m.role != "system"]),
        }
        if system:
            payload["system"] = system
        if tools:
            payload["tools"] = [{"name": t.name, "description": t.description, "input_schema": t.input_schema}
                                for t in tools]
        if temperature is not None:
            payload["temperature"] = temperature
        headers = {"x-api-key": self.api_key, "anthropic-version": ANTHROPIC_VERSION}
        data = self.post(payload, headers)
        blocks = data.get("content")
        if not isinstance(blocks, list):
            raise malformed(self.name, self.url, "no 'content' list")
        texts, calls = [], []
        for i, block in enumerate(blocks):
            if not isinstance(block, dict):
                raise malformed(self.name, self.url, f"content block {i} is not an object")
            if block.get("type") == "text":
                texts.append(str(block.get("text") or ""))
            elif block.get("type") == "tool_use":
                if "name" not in block or not isinstance(block.get("input", {}), dict):
                    raise malformed(self.name, self.url, f"tool_use block {i} without a name or an object input")
                calls.append(ToolCall(id=str(block.get("id") or f"toolu_{i}"), name=block["name"],
                                      arguments=dict(block.get("input") or {})))
        usage = data.get("usage") or {}
        return ChatResponse(
            content="".join(texts),
            tool_calls=tuple(calls),
            model=str(data.get("model") or self.model),
            provider=self.name,
            finish_reason="tool_calls" if calls else str(data.get("stop_reason") or "stop"),
            usage={k: int(v) for k, v in usage.items() if isinstance(v, int)},
        )


def _to_wire(messages: Sequence[ChatMessage]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for m in messages:
        if m.role == "tool":
            block = {"type": "tool_result", "tool_use_id": m.tool_call_id or "", "content": m.content}
            if out and out[-1]["role"] == "user" and isinstance(out[-1]["content"], list) and \
                    all(b.get("type") == "tool_result" for b in out[-1]["content"]):
                out[-1]["content"].append(block)
            else:
                out.append({"role": "user", "content": [block]})
        elif m.tool_calls:
            content: list[dict[str, Any]] = [{"type": "text", "text": m.content}] if m.content else []
            content += [{"type": "tool_use", "id": c.id, "name": c.name, "input": c.arguments} for c in m.tool_calls]
            out.append({"role": "assistant", "content": content})
        else:
            out.append({"role": "assistant" if m.role == "assistant" else "user", "content": m.content})
    return out
