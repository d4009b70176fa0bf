"""The agent loop shared by every agent node: ask the model, run the tools it asks for, repeat.

:class:`ToolBox` gathers the tools of one or more MCP servers, routes calls to the
right server, answers repeated calls from a shared :class:`IntelligentCacheNode`, and
records every call (ok, cached or failed) — a failing server or tool is recorded and
reported to the model, never fatal. :func:`run_agent` drives a provider until it
answers without tool calls or ``max_rounds`` is reached. Nodes own their parameters;
this module owns only the loop.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from kailash.errors import KailashError
from kailash.nodes import calls
from kailash.nodes.ai._schema import schema_problems
from kailash.nodes.ai._text import keywords
from kailash.nodes.ai.providers.base import ChatMessage, ChatResponse, ModelProvider, ProviderError, ToolSpec

__all__ = ["AgentResult", "ToolBox", "ToolRecord", "run_agent", "schema_problems", "tool_cache_key",
           "TOOL_RESULT_CHARS"]

#: characters of one tool result the model is sent back (the record keeps it whole)
TOOL_RESULT_CHARS = 100_000

_SECRET_WORDS = ("key", "token", "secret", "password", "passwd", "auth", "credential")


def redacted(arguments: dict[str, Any]) -> dict[str, Any]:
    """Arguments for the record: values of secret-looking keys replaced by ``'***'``."""
    from kailash.security.secrets import Secret

    out: dict[str, Any] = {}
    for k, v in arguments.items():
        if isinstance(v, Secret) or any(w in str(k).lower() for w in _SECRET_WORDS):
            out[k] = "***"
        elif isinstance(v, dict):
            out[k] = redacted(v)
        else:
            out[k] = v
    return out


@dataclass(kw_only=True)
class ToolRecord:
    """One tool call as it happened."""

    server: str
    tool: str
    arguments: dict[str, Any]
    ok: bool
    cached: bool = False
    result: Any = None
    error: str | None = None
    duration: float = 0.0
    rejected: bool = False  # never sent: unknown tool, unreadable or schema-violating arguments

    @property
    def outcome(self) -> str:
        return "rejected" if self.rejected else "cached" if self.cached else "ok" if self.ok else "failed"

    def to_dict(self) -> dict[str, Any]:
        return {"server": self.server, "tool": self.tool, "arguments": redacted(self.arguments), "ok": self.ok,
                "cached": self.cached, "result": self.result, "error": self.error, "outcome": self.outcome,
                "duration": round(self.duration, 4)}

    def event(self) -> dict[str, Any]:
        """The run event of this call: server, tool, redacted arguments, outcome."""
        return {"type": "tool_call", "server": self.server, "tool": self.tool, "arguments": redacted(self.arguments),
                "outcome": self.outcome, "error": self.error, "duration": round(self.duration, 4)}


def tool_cache_key(server: Any, tool: str, arguments: dict[str, Any]) -> str:
    """The cache key of one tool call: the same server under any name, tool and arguments."""
    ident = hashlib.sha256(repr(server.key).encode()).hexdigest()[:16] if hasattr(server, "key") else str(server)
    return f"mcp:{ident}:{tool}:{json.dumps(arguments, sort_keys=True, default=str)}"


class ToolBox:
    """The tools an agent may call, from MCP servers, with an optional shared cache.

    Args:
        servers: server specs (dicts, URLs, registered names or MCPServerConfig).
        cache: an IntelligentCacheNode (or anything with ``put``/``lookup``) shared by agents.
        owner: how errors name the calling node.
        timeout: seconds per tool call.
        connect_timeout: seconds to start a server.
        cache_ttl: seconds a cached tool result lives.
        call_cost: the cost recorded for one real tool call (saved on every cache hit).
        catalog: tools already listed, by server name (skips ``list_tools`` for those).
    """

    def __init__(self, servers: Sequence[Any] = (), *, cache: Any = None, owner: str = "agent", timeout: float = 60.0,
                 connect_timeout: float = 30.0, cache_ttl: float = 3600.0, call_cost: float = 1.0,
                 catalog: dict[str, list[dict[str, Any]]] | None = None) -> None:
        from kailash.nodes.mcp.servers import MCPServerConfig

        self.owner = owner
        self.cache = cache
        self.timeout, self.connect_timeout = timeout, connect_timeout
        self.cache_ttl, self.call_cost = cache_ttl, call_cost
        self.errors: list[dict[str, Any]] = []
        self.records: list[ToolRecord] = []
        self.servers = []
        for spec in servers:
            try:
                self.servers.append(MCPServerConfig.from_any(spec, owner=owner, parameter="mcp_servers"))
            except KailashError as exc:
                self.errors.append({"server": str(spec.get("name") if isinstance(spec, dict) else spec),
                                    "error": str(exc)})
        self.catalog = dict(catalog or {})
        self._specs: list[ToolSpec] | None = None
        self._route: dict[str, tuple[Any, str]] = {}

    def specs(self) -> list[ToolSpec]:
        """Every reachable tool as a ToolSpec (servers that fail are recorded in ``errors``)."""
        if self._specs is None:
            from kailash.nodes.mcp.client import list_tools

            specs: list[ToolSpec] = []
            for cfg in self.servers:
                try:
                    tools = self.catalog[cfg.name] if cfg.name in self.catalog else \
                        list_tools(cfg, timeout=self.timeout, connect_timeout=self.connect_timeout, owner=self.owner)
                except (KailashError, ImportError) as exc:
                    self.errors.append({"server": cfg.name, "error": str(exc)})
                    continue
                for t in tools:
                    name = t["name"] if t["name"] not in self._route else f"{cfg.name}__{t['name']}"
                    self._route[name] = (cfg, t["name"])
                    specs.append(ToolSpec(name=name, description=t["description"], input_schema=t["input_schema"],
                                          server=cfg.name))
            self._specs = specs
        return self._specs

    def spec(self, name: str) -> ToolSpec | None:
        return next((s for s in self.specs() if s.name == name), None)

    def call(self, name: str, arguments: dict[str, Any], *, malformed: str | None = None) -> ToolRecord:
        """Call a tool (or take its cached result); never raises for tool or server failures.

        A call is validated against the tool's input JSON Schema first; a call that does
        not fit (or whose arguments could not be read: ``malformed``) is recorded as
        ``rejected`` and never reaches the server.
        """
        from kailash.nodes.mcp.client import call_tool

        self.specs()
        if name not in self._route:
            rec = ToolRecord(server="?", tool=name, arguments=arguments, ok=False, rejected=True,
                             error=f"{self.owner}: the model asked for unknown tool {name!r}; "
                                   f"available: {', '.join(sorted(self._route)) or 'none'}")
            self.records.append(rec)
            calls.tool_outcome(rec.server, name, arguments, "rejected", rec.error)  # never sent: reported here
            return rec
        cfg, tool = self._route[name]
        spec = self.spec(name)
        problems = [malformed] if malformed else schema_problems(spec.input_schema if spec else None, arguments)
        if problems:
            rec = ToolRecord(server=cfg.name, tool=tool, arguments=arguments, ok=False, rejected=True,
                             error=f"{self.owner}: call of tool {tool!r} on {cfg.name!r} not sent, its arguments do "
                                   f"not fit the tool's input schema: {'; '.join(problems)[:400]}; expected "
                                   f"{json.dumps((spec.input_schema if spec else {}), default=str)[:300]}")
            self.records.append(rec)
            calls.tool_outcome(cfg.name, tool, arguments, "rejected", rec.error)
            return rec
        key = tool_cache_key(cfg, tool, arguments)
        start = time.perf_counter()
        if self.cache is not None:
            hit = self.cache.lookup(key)
            if hit.get("hit"):
                rec = ToolRecord(server=cfg.name, tool=tool, arguments=arguments, ok=True, cached=True,
                                 result=hit["data"], duration=time.perf_counter() - start)
                self.records.append(rec)
                calls.tool_outcome(cfg.name, tool, arguments, "cached")
                return rec
        try:
            out = call_tool(cfg, tool, arguments, timeout=self.timeout, connect_timeout=self.connect_timeout,
                            owner=self.owner)
        except KailashError as exc:
            rec = ToolRecord(server=cfg.name, tool=tool, arguments=arguments, ok=False, error=str(exc),
                             duration=time.perf_counter() - start)
            self.records.append(rec)
            return rec
        rec = ToolRecord(server=cfg.name, tool=tool, arguments=arguments, ok=True, result=out["result"],
                         duration=time.perf_counter() - start)
        if self.cache is not None:
            self.cache.put(key, out["result"], ttl=self.cache_ttl,
                           metadata={"source": cfg.name, "tool": tool, "cost": self.call_cost,
                                     "semantic_tags": keywords(f"{tool} {spec.description if spec else ''}", 5)},
                           query=f"{tool} {' '.join(str(v) for v in arguments.values())}")
        self.records.append(rec)
        return rec


@dataclass(kw_only=True)
class AgentResult:
    """What one agent run produced."""

    content: str
    messages: list[ChatMessage]
    tool_records: list[ToolRecord] = field(default_factory=list)
    usage: dict[str, int] = field(default_factory=dict)
    rounds: int = 0
    provider: str = ""
    model: str = ""
    model_calls: list[dict[str, Any]] = field(default_factory=list)

    def events(self) -> list[dict[str, Any]]:
        """Model calls and tool calls in order of completion, as run events."""
        return [*self.model_calls, *(r.event() for r in self.tool_records)]


def model_call_event(provider: Any, response: ChatResponse | None, latency: float, *, purpose: str,
                     error: str | None = None) -> dict[str, Any]:
    """The run event of one model call: provider, model, tokens, latency (never the prompt)."""
    usage = dict(response.usage) if response is not None else {}
    if usage.get("total_tokens") is None and (usage.get("prompt_tokens") or usage.get("completion_tokens")):
        usage["total_tokens"] = int(usage.get("prompt_tokens") or 0) + int(usage.get("completion_tokens") or 0)
    return {"type": "model_call", "purpose": purpose, "provider": getattr(provider, "name", type(provider).__name__),
            "model": (response.model if response is not None and response.model else getattr(provider, "model", "")),
            "prompt_tokens": usage.get("prompt_tokens"), "completion_tokens": usage.get("completion_tokens"),
            "total_tokens": usage.get("total_tokens"), "latency": round(latency, 4), "error": error}


def run_agent(provider: ModelProvider, messages: Sequence[ChatMessage], *, toolbox: ToolBox | None = None,
              max_rounds: int = 4, temperature: float | None = None, max_tokens: int | None = None,
              owner: str = "agent") -> AgentResult:
    """Converse with ``provider`` until it answers without tool calls (or ``max_rounds``).

    Raises:
        ProviderError: the provider failed; the message names ``owner`` and the provider.
    """
    convo = list(messages)
    tools = toolbox.specs() if toolbox is not None else []
    start = len(toolbox.records) if toolbox is not None else 0
    usage: dict[str, int] = {}
    response = ChatResponse()
    rounds = 0
    model_calls: list[dict[str, Any]] = []
    for rounds in range(1, max(1, max_rounds) + 1):
        offer = tools if rounds < max_rounds else []  # the last round must answer in words
        t0 = time.perf_counter()
        try:
            response = provider.chat(convo, tools=offer, temperature=temperature, max_tokens=max_tokens)
        except ProviderError as exc:
            if not exc.message.startswith(owner):
                exc.message = f"{owner}: {exc.message}"
                exc.args = (exc.message,)
            raise
        model_calls.append(model_call_event(provider, response, time.perf_counter() - t0, purpose="agent"))
        for k, v in response.usage.items():
            usage[k] = usage.get(k, 0) + v
        convo.append(response.to_message())
        if not response.tool_calls or toolbox is None:
            break
        for call in response.tool_calls:
            rec = toolbox.call(call.name, dict(call.arguments), malformed=getattr(call, "error", None))
            body = json.dumps(rec.result, default=str) if rec.ok and not isinstance(rec.result, str) else \
                (rec.result if rec.ok else f"ERROR: {rec.error}" + (" Correct the arguments and call again, or "
                                                                     "answer without the tool." if rec.rejected else ""))
            body = str(body)
            if len(body) > TOOL_RESULT_CHARS:  # sent again on every later round: never whole
                body = f"{body[:TOOL_RESULT_CHARS]}...[truncated: {len(body) - TOOL_RESULT_CHARS} more characters]"
            convo.append(ChatMessage(role="tool", content=body, tool_call_id=call.id, name=call.name))
    return AgentResult(content=response.content, messages=convo,
                       tool_records=toolbox.records[start:] if toolbox is not None else [], usage=usage,
                       rounds=rounds, provider=getattr(provider, "name", ""), model=getattr(provider, "model", ""),
                       model_calls=model_calls)
