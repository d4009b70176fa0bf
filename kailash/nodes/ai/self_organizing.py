"""Self-organising agent nodes: analyse a problem, keep an agent pool, form teams, work, evaluate.

The decisions live in :mod:`kailash.nodes.ai._organizing` (pure functions); these nodes
give them parameters, validation and state. :class:`SelfOrganizingAgentNode` is the
worker: it reads teammates' findings from a shared memory pool, asks the model (with
MCP tools through a shared cache) and writes its finding back with a confidence.
"""

from __future__ import annotations

import json
import threading
from typing import Any

from kailash.errors import NodeConfigurationError
from kailash.nodes.ai import _organizing as org
from kailash.nodes.ai._agent_loop import ToolBox, run_agent
from kailash.nodes.ai._decide import choose_team
from kailash.nodes.ai._text import capability_match, keywords
from kailash.nodes.ai.llm_agent import ModelNode, _node_ref, provider_from, provider_parameters, resolve_shared
from kailash.nodes.ai.providers import ChatMessage
from kailash.nodes.base import Node, NodeParameter, register_node

__all__ = ["AgentPoolManagerNode", "ProblemAnalyzerNode", "SelfOrganizingAgentNode", "SolutionEvaluatorNode",
           "TeamFormationNode", "agent_confidence"]


def _opt(node: Node, kw: dict[str, Any]) -> dict[str, Any]:
    return {**node.config, **{k: v for k, v in kw.items() if v is not None}}


@register_node()
class ProblemAnalyzerNode(Node):
    """Break a problem into required capabilities and phased subtasks.

    Example:
        >>> out = ProblemAnalyzerNode().execute(problem_description="Analyze market trends and recommend strategy")
        >>> out["analysis"]["required_capabilities"]
        ['market_research', 'data_analysis', 'strategy']
    """

    capabilities = frozenset()

    primary_input = "problem_description"
    primary_output = "analysis"

    def get_parameters(self) -> dict[str, NodeParameter]:
        return {
            "problem_description": NodeParameter(type=str, description="the problem in words"),
            "query": NodeParameter(type=str, description="alias of problem_description"),
            "context": NodeParameter(type=dict, description="may fix 'required_capabilities'"),
        }

    def run(self, **kw: Any) -> dict[str, Any]:
        opt = _opt(self, kw)
        text = opt.get("problem_description") or opt.get("query")
        if not text:
            raise NodeConfigurationError(
                f"node {self.label} (ProblemAnalyzerNode): parameter 'problem_description' is required",
                node_id=self.name, parameter="problem_description", expected="the problem text",
            )
        analysis = org.analyze_problem(str(text), opt.get("context"))
        return {"analysis": analysis, "required_capabilities": analysis["required_capabilities"],
                "subtasks": analysis["subtasks"], "complexity_score": analysis["complexity_score"]}


@register_node()
class AgentPoolManagerNode(Node):
    """Keep the pool of available agents: register, find by capability, track performance.

    Actions: ``register`` (``agent_id``, ``capabilities``, ``performance``, ``cost``),
    ``unregister``, ``list``, ``find`` (``required_capabilities``), ``update_performance``
    (``agent_id`` with ``performance`` or ``success``), ``create_pool`` (``pool_size``
    generated agents covering ``capabilities``).
    """

    capabilities = frozenset()

    ACTIONS = ("register", "unregister", "list", "find", "update_performance", "create_pool")

    def __init__(self, config: dict[str, Any] | None = None, **params: Any) -> None:
        super().__init__(config, **params)
        self._agents: dict[str, dict[str, Any]] = {}
        self._lock = threading.RLock()

    def get_parameters(self) -> dict[str, NodeParameter]:
        return {
            "action": NodeParameter(type=str, default="list", choices=self.ACTIONS, description="what to do"),
            "agent_id": NodeParameter(type=str, description="the agent concerned"),
            "capabilities": NodeParameter(type=list, description="the agent's skills, or skills a created pool covers"),
            "performance": NodeParameter(type=float, description="0..1"),
            "cost": NodeParameter(type=float, description="relative cost of one task"),
            "success": NodeParameter(type=bool, description="outcome of a task (update_performance)"),
            "required_capabilities": NodeParameter(type=list, description="skills to find"),
            "pool_size": NodeParameter(type=int, default=10, minimum=1, description="agents to create (create_pool)"),
        }

    def run(self, **kw: Any) -> dict[str, Any]:
        opt = _opt(self, kw)
        action = opt.get("action") or "list"
        if action not in self.ACTIONS:
            raise NodeConfigurationError(
                f"node {self.label} (AgentPoolManagerNode): parameter 'action' got '{action}', expected one of "
                f"{', '.join(self.ACTIONS)}", node_id=self.name, parameter="action", expected=self.ACTIONS, got=action)
        with self._lock:
            if action == "create_pool":
                for a in org.create_pool(int(opt.get("pool_size") or 10), list(opt.get("capabilities") or [])):
                    self._agents[a["id"]] = {**a, "tasks": 0, "successes": 0}
            elif action in ("register", "unregister", "update_performance"):
                aid = opt.get("agent_id")
                if not aid:
                    raise NodeConfigurationError(
                        f"node {self.label} (AgentPoolManagerNode): action '{action}' needs parameter 'agent_id'",
                        node_id=self.name, parameter="agent_id", expected="an agent id")
                if action == "register":
                    self._agents[aid] = {"id": aid, "capabilities": list(opt.get("capabilities") or []),
                                         "performance": float(opt.get("performance") or 0.8),
                                         "cost": float(opt.get("cost") or 1.0), "tasks": 0, "successes": 0}
                elif action == "unregister":
                    self._agents.pop(aid, None)
                elif aid in self._agents:
                    a = self._agents[aid]
                    if opt.get("performance") is not None:
                        a["performance"] = float(opt["performance"])
                    elif opt.get("success") is not None:  # moving average towards 1 or 0
                        a["tasks"] += 1
                        a["successes"] += int(bool(opt["success"]))
                        a["performance"] = round(0.8 * a["performance"] + 0.2 * float(bool(opt["success"])), 4)
            agents = [dict(a) for a in self._agents.values()]
        if action == "find":
            need = list(opt.get("required_capabilities") or [])
            scored = [(sum(max((capability_match(n, c) for c in a["capabilities"]), default=0) for n in need), a)
                      for a in agents]
            agents = [dict(a, match=round(s / max(1, len(need)), 4)) for s, a in
                      sorted(scored, key=lambda x: (-x[0], -x[1]["performance"], x[1]["id"])) if s > 0]
        return {"success": True, "agents": agents, "count": len(agents)}


@register_node()
class TeamFormationNode(ModelNode):
    """Form a team for a problem with one of four strategies.

    ``capability_matching`` (greedy skill cover), ``swarm_based`` (larger, diverse team
    for exploration), ``market_based`` (best value per cost, within ``budget``),
    ``hierarchical`` (a leader plus one specialist per missing skill).

    With a configured model (``provider`` or ``KAILASH_LLM_PROVIDER``), the model chooses
    the team following the strategy; its answer is validated (ids from the pool, size
    within ``min_team_size``/``max_team_size``, ``budget``) and a wrong one is told to it
    and asked again, then the strategy's heuristic decides. Offline, the heuristic
    decides. ``decided_by`` says which (``model_error`` why the model did not).

    Example:
        >>> out = TeamFormationNode(formation_strategy="capability_matching").execute(
        ...     problem_analysis={"required_capabilities": ["research", "statistics"]},
        ...     available_agents=[{"id": "a", "capabilities": ["research"], "performance": 0.9, "cost": 1},
        ...                       {"id": "b", "capabilities": ["statistics"], "performance": 0.8, "cost": 1},
        ...                       {"id": "c", "capabilities": ["cooking"], "performance": 0.99, "cost": 1}])
        >>> out["team"], out["coverage_ratio"], out["decided_by"]
        (['a', 'b'], 1.0, 'heuristic')
    """

    capabilities = frozenset({"network"})

    primary_input = "problem_analysis"
    primary_output = "team"

    def get_parameters(self) -> dict[str, NodeParameter]:
        return {
            "problem_analysis": NodeParameter(type=dict, description="{'required_capabilities': [...]}"),
            "available_agents": NodeParameter(type=list, description="[{'id', 'capabilities', 'performance', 'cost'}]"),
            "formation_strategy": NodeParameter(type=str, default="capability_matching", choices=org.STRATEGIES,
                                                description="how the team is formed"),
            "constraints": NodeParameter(type=dict, description="{'max_team_size', 'min_team_size', 'budget'}"),
            **provider_parameters(),
        }

    def run(self, **kw: Any) -> dict[str, Any]:
        opt = _opt(self, kw)
        strategy = opt.get("formation_strategy") or "capability_matching"
        if strategy not in org.STRATEGIES:
            raise NodeConfigurationError(
                f"node {self.label} (TeamFormationNode): parameter 'formation_strategy' got '{strategy}', expected "
                f"one of {', '.join(org.STRATEGIES)}", node_id=self.name, parameter="formation_strategy",
                expected=org.STRATEGIES, got=strategy)
        analysis = opt.get("problem_analysis") or {}
        agents = opt.get("available_agents") or []
        bad = [i for i, a in enumerate(agents) if not isinstance(a, dict) or not (a.get("id") or a.get("agent_id"))]
        if bad:
            raise NodeConfigurationError(
                f"node {self.label} (TeamFormationNode): parameter 'available_agents' entries {bad} lack an 'id'",
                node_id=self.name, parameter="available_agents", expected="[{'id', 'capabilities', ...}]")
        query = analysis.get("query") or analysis.get("topic") or ""
        events: list[dict[str, Any]] = []
        out = choose_team(provider_from(self, opt), list(analysis.get("required_capabilities") or []), agents,
                          strategy, opt.get("constraints"), query=str(query), events=events)
        return {**out, "events": events}


def agent_confidence(tool_records: list[Any], capability_fit: float, used_memory: bool) -> float:
    """A finding's confidence: tool evidence, skill fit and shared context (0.2..0.95)."""
    ok = sum(1 for r in tool_records if r.ok)
    failed = sum(1 for r in tool_records if not r.ok)
    base = 0.45 + 0.15 * min(ok, 3) - 0.05 * min(failed, 3) + (0.05 if used_memory else 0.0)
    return round(max(0.2, min(0.95, base * (0.6 + 0.4 * capability_fit))), 4)


@register_node()
class SelfOrganizingAgentNode(ModelNode):
    """One agent of a self-organising team: reads teammates' findings, works, shares its own."""

    primary_input = "task"
    primary_output = "result"

    def get_parameters(self) -> dict[str, NodeParameter]:
        return {
            "agent_id": NodeParameter(type=str, description="this agent's id (default the node id)"),
            "capabilities": NodeParameter(type=list, default=None, description="what this agent is good at"),
            "task": NodeParameter(type=Any,
                                  description="a subtask {'id', 'description', 'required_capabilities'} or text"),
            "team_context": NodeParameter(type=dict, description="{'query', 'team', ...} shared by the team"),
            "shared_memory": NodeParameter(type=Any, description="a SharedMemoryPoolNode shared by the team"),
            "shared_cache": NodeParameter(type=Any, description="an IntelligentCacheNode for tool results"),
            "mcp_servers": NodeParameter(type=list, description="MCP servers whose tools it may call"),
            "max_tool_rounds": NodeParameter(type=int, default=3, minimum=0, description="most model turns with tool calls"),
            **provider_parameters(),
        }

    def run(self, **kw: Any) -> dict[str, Any]:
        opt = resolve_shared(_opt(self, kw))
        owner = f"node {self.label} (SelfOrganizingAgentNode)"
        task = opt.get("task")
        if not task:
            raise NodeConfigurationError(f"{owner}: parameter 'task' is required", node_id=self.name,
                                         parameter="task", expected="a subtask dict or text")
        task = org.as_task(task)
        toolbox = ToolBox(opt["mcp_servers"], cache=opt.get("shared_cache"), owner=owner) if opt.get("mcp_servers") else None
        finding = work_on(task, agent_id=opt.get("agent_id") or self.name or "agent",
                          capabilities=list(opt.get("capabilities") or []), provider=provider_from(self, opt),
                          toolbox=toolbox, memory=opt.get("shared_memory"), team_context=opt.get("team_context"),
                          max_rounds=int(opt.get("max_tool_rounds") or 3), owner=owner)
        return {"result": finding, "confidence": finding["confidence"], "tool_calls": finding["tool_calls"],
                "errors": list(toolbox.errors) if toolbox else []}

    def to_dict(self) -> dict[str, Any]:
        out = super().to_dict()
        for k in ("shared_memory", "shared_cache"):
            if k in out["config"]:
                out["config"][k] = _node_ref(self.config[k])
        return out


def work_on(task: dict[str, Any], *, agent_id: str, capabilities: list[str], provider: Any, toolbox: ToolBox | None,
            memory: Any, team_context: dict[str, Any] | None, max_rounds: int, owner: str,
            max_tokens: int | None = None, temperature: float | None = None) -> dict[str, Any]:
    """One agent's work on one subtask; returns its finding (also written to ``memory``)."""
    need = list(task.get("required_capabilities") or [])
    fit = (sum(max((capability_match(n, c) for c in capabilities), default=0.0) for n in need) / len(need)) \
        if need else 0.5
    notes = []
    if memory is not None:
        read = memory.run(action="read", agent_id=agent_id,
                          attention_filter={"segments": ["findings"], "window_size": 5, "importance_threshold": 0.3})
        notes = read["memories"]
    query = (team_context or {}).get("query")
    messages = [ChatMessage(role="system", content=f"You are agent {agent_id}; skills: "
                                                   f"{', '.join(capabilities) or 'general'}.")]
    messages += [ChatMessage(role="system", content=f"Teammate {m['agent_id']} found: {_short(m['content'])}")
                 for m in notes]
    request = str(task.get("description") or "")
    if query and query not in request:
        request = f"{request} (overall goal: {query})"
    messages.append(ChatMessage(role="user", content=request))
    result = run_agent(provider, messages, toolbox=toolbox, max_rounds=max_rounds, owner=owner,
                       max_tokens=max_tokens, temperature=temperature)
    confidence = agent_confidence(result.tool_records, fit, bool(notes))
    finding = {"agent_id": agent_id, "subtask_id": task.get("id"), "content": result.content,
               "confidence": confidence, "capability_fit": round(fit, 4),
               "tool_calls": [r.to_dict() for r in result.tool_records],
               "tools_used": sorted({f"{r.server}.{r.tool}" for r in result.tool_records if r.ok}),
               "events": result.events()}
    if memory is not None:
        memory.run(action="write", agent_id=agent_id, content=result.content, segment="findings",
                   tags=need + keywords(request, 3), importance=confidence,
                   metadata={"subtask_id": task.get("id")})
    return finding


def _short(content: Any, limit: int = 400) -> str:
    text = content if isinstance(content, str) else json.dumps(content, default=str)
    return text if len(text) <= limit else text[:limit] + "..."


@register_node()
class SolutionEvaluatorNode(Node):
    """Score a team's solution (0..1) and say what is missing.

    Dimensions: coverage of subtasks, tool evidence, agent confidence, tool reliability.
    """

    capabilities = frozenset()

    primary_input = "solution"

    def get_parameters(self) -> dict[str, NodeParameter]:
        return {
            "solution": NodeParameter(type=dict, description="{'findings': [{'subtask_id', 'content', 'confidence', "
                                                             "'tool_calls'}]}"),
            "problem_requirements": NodeParameter(type=dict, description="{'subtasks': [...], 'quality_threshold'}"),
            "team_performance": NodeParameter(type=dict, description="optional team statistics, echoed back"),
            "iteration_count": NodeParameter(type=int, default=1, description="which iteration this is"),
            "tools_available": NodeParameter(type=bool, default=True, description="whether tool evidence is expected"),
        }

    def run(self, **kw: Any) -> dict[str, Any]:
        opt = _opt(self, kw)
        solution = opt.get("solution") or {}
        req = opt.get("problem_requirements") or {}
        findings = solution.get("findings") if isinstance(solution, dict) else None
        if not isinstance(findings, list):
            raise NodeConfigurationError(
                f"node {self.label} (SolutionEvaluatorNode): parameter 'solution' needs a 'findings' list",
                node_id=self.name, parameter="solution", expected="{'findings': [...]}")
        out = org.evaluate_solution(findings, list(req.get("subtasks") or []),
                                    tools_available=bool(opt.get("tools_available", True)),
                                    quality_threshold=float(req.get("quality_threshold") or 0.8))
        return {**out, "iteration": int(opt.get("iteration_count") or 1),
                "team_performance": opt.get("team_performance") or {}}
