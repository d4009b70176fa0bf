"""OpenAI-compatible chat completions (OpenAI, vLLM, llama.cpp server, LM Studio...).

Speaks ``POST {base_url}/chat/completions`` with function tools. The base URL and key
come from config or from ``OPENAI_BASE_URL`` / ``OPENAI_API_KEY``; a key is optional so
local servers work. Translation to and from the wire format lives here, the HTTP call
in :mod:`._http`.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from typing import Any

from kailash.nodes.ai.providers._http import HTTPProvider, _hidden, function_tool_calls, malformed
from kailash.nodes.ai.providers.base import ChatMessage, ChatResponse, ToolSpec, read_json
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
    #: ``None`` (the server decides), ``"auto"``, ``"required"`` or a tool name (that tool is forced:
    #: servers without native tool templates, such as llama.cpp's generic chat format, need this).
    tool_choice: str | None = None

    def _payload(self, messages: Sequence[ChatMessage], tools: Sequence[ToolSpec], temperature: float | None,
                 max_tokens: int | None) -> dict[str, Any]:
        payload: dict[str, Any] = {"model": self.model, "messages": [_to_wire(m) for m in messages]}
        if tools:
            payload["tools"] = [
                {"type": "function", "function": {"name": t.name, "description": t.description,
                                                  "parameters": t.input_schema}}
                for t in tools
            ]
            choice = self.tool_choice
            if choice in ("auto", "required", "none"):
                payload["tool_choice"] = choice
            elif choice:
                name = choice if any(t.name == choice for t in tools) else tools[0].name
                payload["tool_choice"] = {"type": "function", "function": {"name": name}}
        if temperature is not None:
            payload["temperature"] = temperature
        if max_tokens is not None:
            payload["max_tokens"] = max_tokens
        return payload

    def _headers(self) -> dict[str, Any]:
        return {"Authorization": Secret(f"Bearer {self.api_key.reveal()}") if self.api_key else None}

    def chat(
        self,
        messages: Sequence[ChatMessage],
        *,
        tools: Sequence[ToolSpec] = (),
        temperature: float | None = None,
        max_tokens: int | None = None,
    ) -> ChatResponse:
        data = self.post(self._payload(messages, tools, temperature, max_tokens), self._headers())
        return self._from_wire(data)

    def structured(self, messages: Sequence[ChatMessage], schema: dict[str, Any], *, name: str = "decision",
                   max_tokens: int | None = 256, temperature: float | None = 0.0) -> ChatResponse:
        """A chat answer constrained to the JSON Schema ``schema`` (``response_format``).

        Asks in OpenAI's form (``json_schema``); a server that only knows llama.cpp's
        ``json_object`` + ``schema`` form says so and is asked that way from then on
        (or set ``json_mode="json_object"``). The caller still validates the answer: a
        server may ignore the constraint.
        """
        from kailash.nodes.ai.providers.base import ProviderError

        payload = self._payload(messages, (), temperature, max_tokens)
        if self.json_mode != "json_object":
            payload["response_format"] = {"type": "json_schema", "json_schema": {"name": name, "schema": schema}}
            try:
                return self._from_wire(self.post(payload, self._headers()))
            except ProviderError as exc:
                if "json_object" not in exc.message:
                    raise
                self.json_mode = "json_object"  # llama.cpp's server: remember, ask its way
        payload["response_format"] = {"type": "json_object", "schema": schema}
        return self._from_wire(self.post(payload, self._headers()))

    #: ``"json_schema"`` (OpenAI's structured outputs) or ``"json_object"`` (llama.cpp's server).
    json_mode: str = "json_schema"

    def stream(
        self,
        messages: Sequence[ChatMessage],
        *,
        temperature: float | None = None,
        max_tokens: int | None = None,
    ) -> Iterator[str]:
        """The answer's text as the server streams it (server-sent events), piece by piece.

        Raises:
            ProviderError: unreachable server, HTTP error or a malformed event; never the key.
        """
        from kailash.nodes.ai.providers._http import require_httpx, shared_client
        from kailash.nodes.ai.providers.base import ProviderError
        from kailash.security.secrets import redact, reveal

        httpx = require_httpx()
        payload = {**self._payload(messages, (), temperature, max_tokens), "stream": True}
        headers = {k: str(reveal(v)) for k, v in self._headers().items() if v is not None}
        secrets = _hidden(self.api_key, self.url)
        who = f"{self.owner}: provider '{self.name}'" if self.owner else f"provider '{self.name}'"
        try:
            with shared_client().stream("POST", self.url, json=payload, headers=headers, timeout=self.timeout) as resp:
                if resp.status_code >= 400:
                    body = redact(resp.read().decode("utf-8", "replace")[:300], secrets)
                    raise ProviderError(f"{who} answered HTTP {resp.status_code} at {self.url}: {body}",
                                        provider=self.name, expected="HTTP 2xx", got=resp.status_code)
                for line in resp.iter_lines():
                    if not line.startswith("data:"):
                        continue
                    data = line[5:].strip()
                    if data == "[DONE]":
                        return
                    try:
                        event = read_json(data)
                        delta = (event.get("choices") or [{}])[0].get("delta") or {}
                    except (ValueError, AttributeError, IndexError) as exc:
                        raise ProviderError(f"{who} streamed a malformed event at {self.url}: {data[:80]!r}",
                                            provider=self.name, expected="chat.completion.chunk JSON") from exc
                    if delta.get("content"):
                        yield str(delta["content"])
        except httpx.HTTPError as exc:
            raise ProviderError(f"{who} is unreachable at {self.url}: {type(exc).__name__}: "
                                f"{redact(str(exc), secrets)}", provider=self.name) from exc

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
        # a string even when empty: OpenAI takes "" and llama.cpp's server refuses null
        out["content"] = m.content or ""
        out["tool_calls"] = [
            {"id": c.id, "type": "function", "function": {"name": c.name, "arguments": json.dumps(c.arguments)}}
            for c in m.tool_calls
        ]
    return out
