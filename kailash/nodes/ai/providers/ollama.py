"""Ollama's native chat API (``POST {host}/api/chat``, non-streaming, with tools).

The host comes from config or ``OLLAMA_HOST`` (default ``http://127.0.0.1:11434``).
Ollama sends tool arguments as JSON objects and needs no key.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from kailash.nodes.ai.providers._http import HTTPProvider, function_tool_calls, malformed
from kailash.nodes.ai.providers.base import ChatMessage, ChatResponse, ToolSpec

__all__ = ["OllamaProvider"]


class OllamaProvider(HTTPProvider):
    """A provider for a local or remote Ollama server.

    Args:
        model: a pulled model name, e.g. ``"llama3.2"``.
        base_url: the server, e.g. ``"http://127.0.0.1:11434"``.
        timeout: seconds to wait for one answer (local models can be slow).
        options: ``max_response_bytes`` and ``owner`` (see :class:`HTTPProvider`).
    """

    name = "ollama"
    path = "/api/chat"

    def __init__(self, *, model: str, base_url: str, timeout: float = 120.0, **options: Any) -> None:
        super().__init__(model=model, base_url=base_url, timeout=timeout, **options)

    def chat(
        self,
        messages: Sequence[ChatMessage],
        *,
        tools: Sequence[ToolSpec] = (),
        temperature: float | None = None,
        max_tokens: int | None = None,
    ) -> ChatResponse:
        payload: dict[str, Any] = {"model": self.model, "messages": [_to_wire(m) for m in messages], "stream": False}
        if tools:
            payload["tools"] = [
                {"type": "function", "function": {"name": t.name, "description": t.description,
                                                  "parameters": t.input_schema}}
                for t in tools
            ]
        options: dict[str, Any] = {}
        if temperature is not None:
            options["temperature"] = temperature
        if max_tokens is not None:
            options["num_predict"] = max_tokens
        if options:
            payload["options"] = options
        data = self.post(payload, {})
        if "error" in data and "message" not in data:
            raise malformed(self.name, self.url, f"error {str(data['error'])[:200]}")
        message = data.get("message")
        if not isinstance(message, dict):
            raise malformed(self.name, self.url, "no 'message' object")
        calls = function_tool_calls(message.get("tool_calls"), self.name, self.url)
        usage = {}
        if isinstance(data.get("prompt_eval_count"), int):
            usage["prompt_tokens"] = data["prompt_eval_count"]
        if isinstance(data.get("eval_count"), int):
            usage["completion_tokens"] = data["eval_count"]
        return ChatResponse(
            content=str(message.get("content") or ""),
            tool_calls=tuple(calls),
            model=str(data.get("model") or self.model),
            provider=self.name,
            finish_reason="tool_calls" if calls else str(data.get("done_reason") or "stop"),
            usage=usage,
        )


def _to_wire(m: ChatMessage) -> dict[str, Any]:
    if m.role == "tool":
        out: dict[str, Any] = {"role": "tool", "content": m.content}
        if m.name:
            out["tool_name"] = m.name
        return out
    out = {"role": m.role, "content": m.content}
    if m.tool_calls:
        out["tool_calls"] = [{"function": {"name": c.name, "arguments": c.arguments}} for c in m.tool_calls]
    return out
