"""The orchestrated agent system: MCP-enabled agents and the manager that runs them.

* :class:`OrchestrationManagerNode` — analyses the query, builds an agent pool, forms a
  team, runs iterations in which agents call MCP tools through a shared cache, evaluates
  each iteration and stops on convergence, on the iteration limit or on the time limit.
  A server or tool that fails is recorded and the run goes on without it.
* :class:`MCPAgentNode` — one agent bound to an MCP server, sharing cache and memory.
* :class:`IntelligentCacheNode` and :class:`ConvergenceDetectorNode` are defined in
  :mod:`.cache` and :mod:`.convergence` and exported here (the seed's import path).
"""

from __future__ import annotations

import time
from typing import Any

from kailash.errors import KailashError, NodeConfigurationError, NodeExecutionError
from kailash.nodes.ai import _decide
from kailash.nodes.ai import _organizing as org
from kailash.nodes.ai._agent_loop import ToolBox
from kailash.nodes.ai._text import capability_match
from kailash.nodes.ai.cache import IntelligentCacheNode
from kailash.nodes.ai.convergence import ConvergenceDetectorNode, decide
from kailash.nodes.ai.llm_agent import ModelNode, _node_ref, provider_from, provider_parameters, resolve_shared
from kailash.nodes.ai.memory import SharedMemoryPoolNode
from kailash.nodes.ai.providers import ChatMessage
from kailash.nodes.ai.self_organizing import work_on
from kailash.nodes.base import Node, NodeParameter, register_node

__all__ = ["ConvergenceDetectorNode", "IntelligentCacheNode", "MCPAgentNode", "OrchestrationManagerNode"]


def _opt(node: Node, kw: dict[str, Any]) -> dict[str, Any]:
    return {**node.config, **{k: v for k, v in kw.items() if v is not None}}


def _num(opt: dict[str, Any], key: str, default: float) -> Any:
    value = opt.get(key)
    return default if value is None else value


class _SharedRefs:
    """``to_dict`` that saves node instances held in config as references."""

    _ref_keys: tuple[str, ...] = ("shared_cache", "shared_memory")

    def to_dict(self) -> dict[str, Any]:
        out = super().to_dict()  # type: ignore[misc]
        for k in self._ref_keys:
            if k in out["config"]:
                out["config"][k] = _node_ref(self.config[k])  # type: ignore[attr-defined]
        return out


@register_node()
class MCPAgentNode(_SharedRefs, ModelNode):
    """An agent with an MCP server's tools, sharing a cache and a memory with other agents.

    Tool results go through ``shared_cache`` (a repeated call by any agent is a cache hit)
    and findings into ``shared_memory``.
    """

    primary_input = "task"
    primary_output = "result"

    def get_parameters(self) -> dict[str, NodeParameter]:
        return {
            "mcp_server": NodeParameter(type=Any, description="the agent's server: config dict, URL or registered name"),
            "mcp_servers": NodeParameter(type=list, description="more servers it may use"),
            "capabilities": NodeParameter(type=list, default=None, description="what this agent is good at"),
            "task": NodeParameter(type=Any, description="what to do: text or {'id', 'description', ...}"),
            "agent_id": NodeParameter(type=str, description="this agent's id (default the node id)"),
            "shared_cache": NodeParameter(type=Any, description="an IntelligentCacheNode shared by agents"),
            "shared_memory": NodeParameter(type=Any, description="a SharedMemoryPoolNode shared by agents"),
            "max_tool_rounds": NodeParameter(type=int, default=3, minimum=0, description="most model turns with tool calls"),
            "cache_ttl": NodeParameter(type=(int, float), default=3600, description="seconds a tool result stays cached"),
            **provider_parameters(),
        }

    def run(self, **kw: Any) -> dict[str, Any]:
        opt = resolve_shared(_opt(self, kw))
        owner = f"node {self.label} (MCPAgentNode)"
        task = opt.get("task")
        if not task:
            raise NodeConfigurationError(f"{owner}: parameter 'task' is required", node_id=self.name,
                                         parameter="task", expected="a task text or dict")
        task = org.as_task(task)
        servers = ([opt["mcp_server"]] if opt.get("mcp_server") else []) + list(opt.get("mcp_servers") or [])
        toolbox = ToolBox(servers, cache=opt.get("shared_cache"), owner=owner,
                          cache_ttl=float(opt.get("cache_ttl") or 3600), timeout=float(opt.get("timeout") or 60))
        finding = work_on(task, agent_id=opt.get("agent_id") or self.name or "mcp_agent",
                          capabilities=list(opt.get("capabilities") or []), provider=provider_from(self, opt),
                          toolbox=toolbox, memory=opt.get("shared_memory"), team_context=None,
                          max_rounds=int(opt.get("max_tool_rounds") or 3), owner=owner)
        return {"result": finding["content"], "finding": finding, "tool_calls": finding["tool_calls"],
                "cache_hits": sum(1 for t in finding["tool_calls"] if t["cached"]), "errors": list(toolbox.errors)}


@register_node()
class OrchestrationManagerNode(_SharedRefs, ModelNode):
    """Run a self-organising team of agents on a query until the answer is good enough.

    Outputs ``solution`` (summary, findings, recommendations), ``quality``, ``converged``,
    ``iterations`` (the history, one entry per iteration), ``tools_used``, ``team``,
    ``cache_stats`` and ``errors`` (servers or tools that failed; the run goes on).
    Servers are dicts ``{"name", "command", "args", "env"}``, URLs, or names resolved
    through ``mcp_config`` or :func:`kailash.nodes.mcp.register_mcp_server`.
    """

    primary_input = "query"
    primary_output = "solution"
    needs_context = True  # to find the workflow's own cache and memory nodes (seed pattern 15)

    def __init__(self, config: dict[str, Any] | None = None, **params: Any) -> None:
        super().__init__(config, **params)
        self._cache = IntelligentCacheNode(name=f"{self.name or 'orchestrator'}_cache")

    def run_in_context(self, context: Any, /, **kw: Any) -> dict[str, Any]:
        """Use the workflow's own IntelligentCacheNode / SharedMemoryPoolNode when the
        workflow has exactly one of each and none is given explicitly."""
        workflow = getattr(context, "workflow", None)
        if workflow is not None:
            for key, kind in (("shared_cache", IntelligentCacheNode), ("shared_memory", SharedMemoryPoolNode)):
                if kw.get(key) is None and self.config.get(key) is None:
                    found = [n for n in workflow.nodes.values() if isinstance(n, kind)]
                    if len(found) == 1:
                        kw[key] = found[0]
        return self.run(**kw)

    def get_parameters(self) -> dict[str, NodeParameter]:
        return {
            "query": NodeParameter(type=str, description="the problem to solve"),
            "context": NodeParameter(type=dict, description="extra facts; may fix 'required_capabilities'"),
            "mcp_servers": NodeParameter(type=list, description="MCP servers: config dicts, URLs or names"),
            "mcp_config": NodeParameter(type=dict, description="server configs by name, for names in mcp_servers"),
            "agent_pool_size": NodeParameter(type=int, default=10, minimum=1, description="agents available to form teams from"),
            "max_iterations": NodeParameter(type=int, default=5, minimum=1, description="hard limit on iterations"),
            "min_iterations": NodeParameter(type=int, default=1, minimum=0, description="iterations always run"),
            "quality_threshold": NodeParameter(type=float, default=0.8, description="stop once quality reaches this"),
            "improvement_threshold": NodeParameter(type=float, default=0.02, description="stop when quality stalls"),
            "time_limit_minutes": NodeParameter(type=(int, float), default=10, minimum=0, description="hard time limit"),
            "enable_caching": NodeParameter(type=bool, default=True, description="share tool results through a cache"),
            "team_strategy": NodeParameter(type=str, default="capability_matching", choices=org.STRATEGIES, description="how teams are formed"),
            "shared_cache": NodeParameter(type=Any, description="an IntelligentCacheNode (default: the node's own)"),
            "shared_memory": NodeParameter(type=Any, description="a SharedMemoryPoolNode (default: a fresh one per run)"),
            "tool_timeout": NodeParameter(type=(int, float), default=60, minimum=0, description="seconds per tool call"),
            "connect_timeout": NodeParameter(type=(int, float), default=30, minimum=0, description="seconds to start a server"),
            **provider_parameters(),
        }

    def run(self, **kw: Any) -> dict[str, Any]:
        opt = resolve_shared(_opt(self, kw))
        owner = f"node {self.label} (OrchestrationManagerNode)"
        query = opt.get("query")
        if not query:
            raise NodeConfigurationError(f"{owner}: parameter 'query' is required (give it in the node config or "
                                         "as a runtime parameter)", node_id=self.name, parameter="query",
                                         expected="the problem text")
        strategy = opt.get("team_strategy") or "capability_matching"
        if strategy not in org.STRATEGIES:
            raise NodeConfigurationError(f"{owner}: parameter 'team_strategy' got '{strategy}', expected one of "
                                         f"{', '.join(org.STRATEGIES)}", node_id=self.name, parameter="team_strategy",
                                         expected=org.STRATEGIES, got=strategy)
        started = time.monotonic()
        provider = provider_from(self, opt)
        cache = (opt.get("shared_cache") or self._cache) if opt.get("enable_caching", True) else None
        memory = opt.get("shared_memory") or SharedMemoryPoolNode(name=f"{self.name or 'orchestrator'}_memory")
        errors: list[dict[str, Any]] = []
        events: list[dict[str, Any]] = []
        servers, catalog, server_caps = self._connect(opt, owner, errors)
        unreachable = [e["server"] for e in errors if "server" in e]
        if unreachable and not servers and not _decide.has_model(provider):
            raise NodeExecutionError(
                f"{owner}: nothing could be done: no MCP server was reachable ({', '.join(map(str, unreachable))}) "
                "and no model is configured; " + "; ".join(f"{e['server']}: {e['error'][:160]}" for e in errors),
                node_id=self.name, parameter="mcp_servers", expected="at least one reachable MCP server or a model")
        analysis = _decide.analyze(provider, str(query), opt.get("context"), events)
        required = analysis["required_capabilities"]
        pool = org.create_pool(int(opt.get("agent_pool_size") or 10), required)
        for agent in pool:
            agent["servers"] = [s.name for s in servers if any(
                capability_match(a, c) >= org.COVERS for a in agent["capabilities"] for c in server_caps[s.name])]
        formed = _decide.choose_team(provider, required, pool, strategy, {"max_team_size": max(2, len(required) + 2)},
                                     query=str(query), events=events)
        team = list(formed["team_members"])
        by_name = {s.name: s for s in servers}
        findings: dict[str, dict[str, Any]] = {}
        history: list[dict[str, Any]] = []
        pending = sorted(analysis["subtasks"], key=lambda s: s["phase"])
        max_iterations = max(1, int(_num(opt, "max_iterations", 5)))
        limits: dict[str, Any] = {"quality_threshold": float(_num(opt, "quality_threshold", 0.8)),
                                  "improvement_threshold": float(_num(opt, "improvement_threshold", 0.02)),
                                  "max_iterations": max_iterations,
                                  "min_iterations": max(1, int(_num(opt, "min_iterations", 1))),
                                  "timeout": float(_num(opt, "time_limit_minutes", 10)) * 60}
        decision: dict[str, Any] = {}
        all_calls: list[dict[str, Any]] = []
        routes: list[str] = []
        for iteration in range(1, max_iterations + 1):
            t0 = time.monotonic()
            calls: list[dict[str, Any]] = []
            recruited: list[str] = []
            routing: list[str] = []
            for st in pending:
                agent, routed_by = self._route(provider, st, team, pool, recruited, events)
                routing.append(routed_by)
                # first attempt: the agent's own servers; a retry borrows every teammate's tools
                names = agent["servers"] if iteration == 1 else [s.name for s in servers]
                toolbox = ToolBox([by_name[n] for n in names], cache=cache, owner=owner, catalog=catalog,
                                  timeout=float(opt.get("tool_timeout") or 60),
                                  connect_timeout=float(opt.get("connect_timeout") or 30))
                try:
                    finding = work_on(st, agent_id=agent["id"], capabilities=agent["capabilities"], provider=provider,
                                      toolbox=toolbox, memory=memory, team_context={"query": query}, max_rounds=3,
                                      owner=owner, max_tokens=opt.get("max_tokens"),
                                      temperature=opt.get("temperature"))
                except KailashError as exc:  # a provider failure costs this subtask, not the run
                    errors.append({"iteration": iteration, "agent": agent["id"], "subtask": st["id"], "error": str(exc)})
                    continue
                finding["iteration"] = iteration
                events += finding.pop("events", [])
                calls += finding["tool_calls"]
                all_calls += finding["tool_calls"]
                errors += [{"iteration": iteration, "server": t["server"], "tool": t["tool"], "error": t["error"]}
                           for t in finding["tool_calls"] if not t["ok"]]
                old = findings.get(st["id"])
                if old is None or finding["confidence"] >= old["confidence"]:
                    findings[st["id"]] = finding
            routes += routing
            evaluation = _decide.evaluate(provider, str(query), list(findings.values()), analysis["subtasks"],
                                          tools_available=any(catalog.values()),
                                          quality_threshold=limits["quality_threshold"], events=events)
            history.append({
                "iteration": iteration, "quality": evaluation["quality"], "scores": evaluation["scores"],
                "evaluated_by": evaluation["decided_by"], "feedback": evaluation["feedback"][:10],
                "team": [a["id"] for a in team], "recruited": recruited, "subtasks": [s["id"] for s in pending],
                "tool_calls": len(calls), "cache_hits": sum(1 for c in calls if c["cached"]),
                "failed_calls": sum(1 for c in calls if not c["ok"]), "gaps": evaluation["gaps"],
                "duration": round(time.monotonic() - t0, 4), "elapsed_seconds": round(time.monotonic() - started, 4),
            })
            decision = decide(history, elapsed_seconds=time.monotonic() - started, **limits)
            history[-1]["decision"] = decision["reason"]
            if decision["should_stop"]:
                break
            gap_ids = set(evaluation["gaps"])
            pending = [s for s in analysis["subtasks"] if s["id"] in gap_ids] or sorted(
                analysis["subtasks"], key=lambda s: findings.get(s["id"], {}).get("confidence", 0))[:1]
        solution = self._synthesise(provider, str(query), analysis, findings, owner, errors, events,
                                    opt.get("max_tokens"))
        return {
            "solution": solution, "quality": history[-1]["quality"] if history else 0.0,
            "converged": bool(decision.get("converged")), "stop_reason": decision.get("reason"),
            "status": decision.get("status"), "stop_detail": decision.get("detail"),
            "decided_by": {"decomposition": analysis.get("decided_by", "heuristic"), "team": formed["decided_by"],
                           "routing": _by(routes), "evaluation": history[-1]["evaluated_by"] if history else None,
                           "convergence": "rule"},
            "unreachable_servers": unreachable, "events": events,
            "iterations": history, "tools_used": _tools_used(all_calls), "team": [a["id"] for a in team],
            "team_formation": {k: formed[k] for k in ("team", "strategy", "reasoning", "coverage",
                                                      "missing_capabilities", "decided_by", "model_error")
                               if k in formed},
            "analysis": analysis, "cache_stats": cache.stats() if cache is not None else None,
            "errors": errors, "elapsed_seconds": round(time.monotonic() - started, 3),
        }

    def _connect(self, opt: dict[str, Any], owner: str, errors: list[dict[str, Any]]) -> tuple[list, dict, dict]:
        from kailash.nodes.mcp.client import list_tools
        from kailash.nodes.mcp.servers import MCPServerConfig

        named = opt.get("mcp_config") or {}
        servers, catalog, caps = [], {}, {}
        for spec in opt.get("mcp_servers") or []:
            label = spec.get("name") if isinstance(spec, dict) else str(spec)
            try:
                if isinstance(spec, str) and spec in named:
                    spec = {**named[spec], "name": spec}
                cfg = MCPServerConfig.from_any(spec, owner=owner, parameter="mcp_servers")
                tools = list_tools(cfg, timeout=float(opt.get("tool_timeout") or 60),
                                   connect_timeout=float(opt.get("connect_timeout") or 30), owner=owner)
            except (KailashError, ImportError) as exc:
                errors.append({"server": label, "error": str(exc)})
                continue
            servers.append(cfg)
            catalog[cfg.name] = tools
            text = " ".join([*cfg.capabilities, *(f"{t['name']} {t['description']}" for t in tools)])
            caps[cfg.name] = list(dict.fromkeys([*cfg.capabilities, *org.capabilities_of(text)]))
        return servers, catalog, caps

    def _route(self, provider: Any, st: dict[str, Any], team: list[dict[str, Any]], pool: list[dict[str, Any]],
               recruited: list[str], events: list[dict[str, Any]]) -> tuple[dict[str, Any], str]:
        """Who acts on ``st``: the model picks (supervisor-style) when there is one, else the skill match."""
        if not _decide.has_model(provider) or not team:
            return self._assign(st, team, pool, recruited), "heuristic"
        ids = [a["id"] for a in team]
        roster = "\n".join(f"- {a['id']}: {', '.join(a['capabilities'])}" for a in team)
        pick = _decide.model_decision(
            provider, purpose="routing", events=events, fallback=lambda: {}, max_tokens=64,
            schema={"type": "object", "required": ["agent_id"],
                    "properties": {"agent_id": {"type": "string", "enum": ids},
                                   "reason": {"type": "string", "maxLength": 300}}},
            instruction="You supervise a team of agents. Pick the one agent who should act on the subtask next.",
            prompt=f"Team:\n{roster}\nSubtask: {st['description']}")
        if pick["decided_by"] == "model":
            return next(a for a in team if a["id"] == pick["agent_id"]), "model"
        return self._assign(st, team, pool, recruited), "heuristic"

    @staticmethod
    def _assign(st: dict[str, Any], team: list[dict[str, Any]], pool: list[dict[str, Any]],
                recruited: list[str]) -> dict[str, Any]:
        need = st["required_capabilities"]

        def fit(a: dict[str, Any]) -> float:
            return sum(max((capability_match(n, c) for c in a["capabilities"]), default=0) for n in need) / len(need)

        best = max(team, key=lambda a: (fit(a), a["performance"], a["id"]), default=None)
        if best is None or fit(best) < org.COVERS:  # the team adapts: recruit a specialist from the pool
            outside = [a for a in pool if a not in team and fit(a) >= org.COVERS]
            if outside:
                best = max(outside, key=lambda a: (fit(a), a["performance"], a["id"]))
                team.append(best)
                recruited.append(best["id"])
        return best or pool[0]

    @staticmethod
    def _synthesise(provider: Any, query: str, analysis: dict[str, Any], findings: dict[str, dict[str, Any]],
                    owner: str, errors: list[dict[str, Any]], events: list[dict[str, Any]],
                    max_tokens: int | None = None) -> dict[str, Any]:
        from kailash.nodes.ai._agent_loop import model_call_event

        ordered = [findings[s["id"]] for s in analysis["subtasks"] if s["id"] in findings]
        messages = [ChatMessage(role="system", content=f"Finding of {f['agent_id']} ({f['subtask_id']}).\n{f['content']}")
                    for f in ordered]
        messages.append(ChatMessage(role="user", content=f"Synthesize a final answer and recommend next steps: {query}"))
        t0 = time.perf_counter()
        try:
            response = provider.chat(messages, max_tokens=max_tokens)
            summary = response.content
            events.append(model_call_event(provider, response, time.perf_counter() - t0, purpose="synthesis"))
        except KailashError as exc:
            events.append(model_call_event(provider, None, time.perf_counter() - t0, purpose="synthesis",
                                           error=str(exc)))
            errors.append({"stage": "synthesis", "error": str(exc)})
            summary = "\n".join(f["content"] for f in ordered)
        recs = [line.split(":", 1)[1].strip() for f in ordered for line in f["content"].splitlines()
                if line.lower().startswith("recommendation:")]
        return {"summary": summary, "findings": ordered, "recommendations": list(dict.fromkeys(recs)),
                "confidence": round(sum(f["confidence"] for f in ordered) / len(ordered), 4) if ordered else 0.0}


def _by(decisions: list[str]) -> str | None:
    """``model``, ``heuristic`` or ``mixed`` for a list of per-decision ``decided_by``."""
    kinds = set(decisions)
    return None if not kinds else kinds.pop() if len(kinds) == 1 else "mixed"


def _tools_used(calls: list[dict[str, Any]]) -> list[dict[str, Any]]:
    used: dict[tuple[str, str], dict[str, Any]] = {}
    for t in calls:
        if t["ok"]:
            u = used.setdefault((t["server"], t["tool"]), {"server": t["server"], "tool": t["tool"], "calls": 0,
                                                            "cached": 0})
            u["calls"] += 1
            u["cached"] += int(t["cached"])
    return sorted(used.values(), key=lambda u: (u["server"], u["tool"]))
