"""Fixtures for the AI tests: a local model server speaking three wire protocols, MCP servers.

``llm_server`` is a Starlette app under uvicorn on an ephemeral 127.0.0.1 port that
answers like a tiny deterministic model over the OpenAI chat-completions
(``/v1/chat/completions``), Ollama (``/api/chat``) and Anthropic (``/v1/messages``)
protocols: offered tools and no tool result yet, it calls the first tool with every
required string argument set to ``"UTC"``; otherwise it answers ``"echo: <last text>"``.
Special model names misbehave on purpose: ``slow`` (sleeps 3 s), ``garbage`` (a body
that is not JSON), ``empty`` (JSON without the expected fields), ``badargs`` (tool
arguments that are not JSON), ``idk`` (answers "I don't know." to everything). Every request is kept in ``llm_server.requests``.
"""

from __future__ import annotations

import asyncio
import json
import socket
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

SERVERS = Path(__file__).parents[1] / "mcp" / "servers"
KEY = "test-key-123"


@dataclass
class LLMServer:
    url: str
    requests: list[dict[str, Any]] = field(default_factory=list)
    key: str = KEY


def _plan(messages: list[dict[str, Any]], tools: list[dict[str, Any]], tool_role: str) -> tuple[str, dict | None]:
    """('text', None) for an answer, or ('', {'name', 'arguments'}) for a tool call."""
    answered = any(m.get("role") == tool_role or (isinstance(m.get("content"), list) and any(
        b.get("type") == "tool_result" for b in m["content"])) for m in messages)
    if tools and not answered:
        tool = tools[0].get("function", tools[0])
        schema = tool.get("parameters") or tool.get("input_schema") or {}
        args = {k: "UTC" for k in schema.get("required", []) if schema["properties"][k].get("type") == "string"}
        return "", {"name": tool["name"], "arguments": args}
    last = messages[-1]
    content = last.get("content")
    if isinstance(content, list):
        content = " ".join(str(b.get("content") or b.get("text") or "") for b in content)
    return f"echo: {content}", None


def create_app(state: LLMServer) -> Any:
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse, PlainTextResponse
    from starlette.routing import Route

    async def common(request: Request, auth_ok: bool) -> tuple[dict | None, Any]:
        body = await request.json()
        state.requests.append({"path": request.url.path, "headers": dict(request.headers), "body": body})
        if not auth_ok:
            return None, JSONResponse({"error": {"message": "invalid api key"}}, status_code=401)
        model = body.get("model")
        if model == "slow":
            await asyncio.sleep(3)
        if model == "garbage":
            return None, PlainTextResponse("<html>upstream error</html>")
        if model == "empty":
            return None, JSONResponse({"id": "x"})
        return body, None

    async def openai(request: Request) -> Any:
        body, early = await common(request, request.headers.get("authorization") == f"Bearer {KEY}")
        if early is not None:
            return early
        text, call = _plan(body["messages"], body.get("tools") or [], "tool")
        if body["model"] == "idk":  # a model with nothing to say: never calls a tool, never gives JSON
            text, call = "I don't know.", None
        message: dict[str, Any] = {"role": "assistant", "content": text or None}
        if call:
            args = "{not json" if body["model"] == "badargs" else json.dumps(call["arguments"])
            message["tool_calls"] = [{"id": "call_1", "type": "function",
                                      "function": {"name": call["name"], "arguments": args}}]
        return JSONResponse({"id": "cmpl-1", "model": body["model"], "usage": {"prompt_tokens": 7, "completion_tokens": 3},
                             "choices": [{"index": 0, "message": message,
                                          "finish_reason": "tool_calls" if call else "stop"}]})

    async def ollama(request: Request) -> Any:
        body, early = await common(request, True)
        if early is not None:
            return early
        text, call = _plan(body["messages"], body.get("tools") or [], "tool")
        message: dict[str, Any] = {"role": "assistant", "content": text}
        if call:
            message["tool_calls"] = [{"function": {"name": call["name"], "arguments": call["arguments"]}}]
        return JSONResponse({"model": body["model"], "message": message, "done": True, "done_reason": "stop",
                             "prompt_eval_count": 5, "eval_count": 2})

    async def anthropic(request: Request) -> Any:
        ok = request.headers.get("x-api-key") == KEY and request.headers.get("anthropic-version") == "2023-06-01"
        body, early = await common(request, ok)
        if early is not None:
            return early
        text, call = _plan(body["messages"], body.get("tools") or [], "tool")
        content: list[dict[str, Any]] = [{"type": "text", "text": text}] if text else []
        if call:
            content.append({"type": "tool_use", "id": "toolu_1", "name": call["name"], "input": call["arguments"]})
        return JSONResponse({"id": "msg_1", "type": "message", "role": "assistant", "model": body["model"],
                             "content": content, "stop_reason": "tool_use" if call else "end_turn",
                             "usage": {"input_tokens": 9, "output_tokens": 4}})

    return Starlette(routes=[Route("/v1/chat/completions", openai, methods=["POST"]),
                             Route("/api/chat", ollama, methods=["POST"]),
                             Route("/v1/messages", anthropic, methods=["POST"])])


@pytest.fixture(scope="session")
def llm_server():
    import uvicorn

    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    state = LLMServer(url=f"http://127.0.0.1:{sock.getsockname()[1]}")
    server = uvicorn.Server(uvicorn.Config(create_app(state), log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if time.monotonic() > deadline:
            pytest.fail("local model server did not start")
        time.sleep(0.02)
    yield state
    server.should_exit = True
    thread.join(10)


@pytest.fixture
def dead_url():
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    return f"http://127.0.0.1:{port}"


def stdio(name: str, script: str, *args: str) -> dict:
    return {"name": name, "command": sys.executable, "args": [str(SERVERS / script), *args]}


@pytest.fixture
def market_server() -> dict:
    return stdio("market_data", "market_server.py")


@pytest.fixture
def finance_server() -> dict:
    return stdio("financial", "finance_server.py")


@pytest.fixture
def demo_server() -> dict:
    return stdio("demo", "demo_server.py")


@pytest.fixture
def time_server() -> dict:
    return {"name": "time", "command": sys.executable, "args": ["-m", "mcp_server_time", "--local-timezone", "UTC"]}


@pytest.fixture(scope="module", autouse=True)
def _close_mcp_sessions():
    yield
    from kailash.nodes.mcp import close_sessions

    close_sessions()
