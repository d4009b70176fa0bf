"""OpenAI-compatible chat completions (OpenAI, vLLM, llama.cpp server, LM Studio...).

Speaks ``POST {base_url}/chat/completions`` with function tools. The base URL and key
come from config or from ``OPENAI_BASE_URL`` / ``OPENAI_API_KEY``; a key is optional so
local servers work. Translation to and from the wire format lives here, the HTTP call
in :mod:`._http`.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from kailash.nodes.ai.providers._http import HTTPProvider, function_tool_calls, malformed
from kailash.nodes.ai.providers.base import ChatMessage, ChatResponse, ToolSpec
from kailash.security.secrets import Secret

__all__ = ["OpenAIProvider"]


class OpenAIProvider(HTTPProvider):
    """A provider for any endpoint that speaks the OpenAI chat-completions protocol.

    Args:
        model: the model name the server knows.
        base_url: e.g. ``"http://127.0.0.1:8000/v1"`` for vLLM; default OpenAI's.
        api_key: a :class:`~kailash.security.secrets.Secret` or string; sent as a bearer token.
        timeout: seconds to wait for one answer.
        max_response_bytes: the largest answer body accepted (received and decompressed).
        owner: how errors name the caller (a node label).

    Example:
        >>> p = OpenAIProvider(model="gpt-4o-mini", base_url="http://127.0.0.1:9/v1")
        >>> p.name, p.url
        ('openai', 'http://127.0.0.1:9/v1/chat/completions')
    """

    name = "openai"
    path = "/chat/completions"

    def chat(
        self,
        messages: Sequence[ChatMessage],
        *,
        tools: Sequence[ToolSpec] = (),
        temperature: float | None = None,
        max_tokens: int | None = None,
    ) -> ChatResponse:
        payload: dict[str, Any] = {"model": self.model, "messages": [_to_wire(m) for m in messages]}
        if tools:
            payload["tools"] = [
                {"type": "function", "function": {"name": t.name, "description": t.description,
                                                  "parameters": t.input_schema}}
                for t in tools
            ]
        if temperature is not None:
            payload["temperature"] = temperature
        if max_tokens is not None:
            payload["max_tokens"] = max_tokens
        headers = {"Authorization": Secret(f"Bearer {self.api_key.reveal()}") if self.api_key else None}
        data = self.post(payload, headers)
        return self._from_wire(data)

    def _from_wire(self, data: dict[str, Any]) -> ChatResponse:
        choices = data.get("choices")
        if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
            raise malformed(self.name, self.url, "no 'choices' list")
        message = choices[0].get("message")
        if not isinstance(message, dict):
            raise malformed(self.name, self.url, "choice without a 'message' object")
        calls = function_tool_calls(message.get("tool_calls"), self.name, self.url)
        usage = data.get("usage") or {}
        return ChatResponse(
            content=message.get("content") or "",
            tool_calls=tuple(calls),
            model=str(data.get("model") or self.model),
            provider=self.name,
            finish_reason=str(choices[0].get("finish_reason") or ("tool_calls" if calls else "stop")),
            usage={k: int(v) for k, v in usage.items() if isinstance(v, int)},
        )


def _to_wire(m: ChatMessage) -> dict[str, Any]:
    if m.role == "tool":
        return {"role": "tool", "tool_call_id": m.tool_call_id or "", "content": m.content}
    out: dict[str, Any] = {"role": m.role, "content": m.content}
    if m.tool_calls:
        out["content"] = m.content or None
        out["tool_calls"] = [
            {"id": c.id, "type": "function", "function": {"name": c.name, "arguments": json.dumps(c.arguments)}}
            for c in m.tool_calls
        ]
    return out
