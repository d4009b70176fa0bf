"""Agent-to-agent coordination: the coordinator, a memory-sharing agent, and the memory pool.

* :class:`A2ACoordinatorNode` — a registry of agents that delegates tasks (best_match,
  round_robin, auction), broadcasts messages and runs consensus votes. Every decision
  is deterministic and explained in its answer (scores, bids, votes).
* :class:`A2AAgentNode` — an agent that reads the shared memory through its attention
  filter, asks the model (with MCP tools if given) and writes its finding back.
* :class:`SharedMemoryPoolNode` — defined in :mod:`kailash.nodes.ai.memory`, exported here.
"""

from __future__ import annotations

import itertools
import json
import threading
from typing import Any

from kailash.errors import NodeConfigurationError
from kailash.nodes.ai._agent_loop import ToolBox, run_agent
from kailash.nodes.ai._text import capability_match, keywords, stems
from kailash.nodes.ai.llm_agent import ModelNode, _node_ref, provider_from, provider_parameters, resolve_shared
from kailash.nodes.ai.memory import SharedMemoryPoolNode
from kailash.nodes.ai.providers import ChatMessage, answer_metadata
from kailash.nodes.base import NodeParameter, register_node

__all__ = ["A2AAgentNode", "A2ACoordinatorNode", "SharedMemoryPoolNode", "skill_score"]

STRATEGIES = ("best_match", "round_robin", "auction")
ACTIONS = ("register", "unregister", "delegate", "broadcast", "consensus", "status", "results")


def skill_score(task: dict[str, Any], capabilities: list[str]) -> float:
    """How well ``capabilities`` fit ``task`` (0..1).

    With ``required_skills`` (or ``required_capabilities``): the mean best match per
    skill. Otherwise: the share of the task's words (type, description, title) that the
    capabilities cover.
    """
    if not capabilities:
        return 0.0
    skills = task.get("required_skills") or task.get("required_capabilities")
    if skills:
        return sum(max(capability_match(s, c) for c in capabilities) for s in skills) / len(skills)
    words = set(stems(" ".join(str(task.get(k) or "") for k in ("type", "title", "description", "name"))))
    if not words:
        return 0.0
    offered = set(stems(" ".join(capabilities)))
    return len(words & offered) / len(words)


def _proposal_text(p: Any) -> str:
    return p if isinstance(p, str) else json.dumps(p, default=str, sort_keys=True)


def _merit(p: Any) -> float:
    if isinstance(p, dict):
        for k in ("confidence", "score", "quality", "rating"):
            v = p.get(k)
            if isinstance(v, (int, float)) and not isinstance(v, bool):
                return float(v) if v <= 1 else min(1.0, float(v) / 10.0)
    return 0.5


@register_node()
class A2ACoordinatorNode(ModelNode):
    """Coordinate agents: register, delegate, broadcast, reach consensus.

    Consensus is fair: only registered agents vote (an unknown voter is an error naming
    it), each agent votes once, and the outcome does not depend on the order of the
    proposals or of the voters. With a configured model each vote is the model's
    choice for that agent (a schema-validated answer); offline, an agent votes by merit
    and expertise. Every vote says ``decided_by``.

    Example:
        >>> c = A2ACoordinatorNode(name="coordinator")
        >>> _ = c.run(action="register", agent_info={"agent_id": "analyst_001",
        ...                                           "capabilities": ["data_analysis", "statistics"]})
        >>> _ = c.run(action="register", agent_info={"agent_id": "writer_001", "capabilities": ["copywriting"]})
        >>> c.run(action="delegate", task={"type": "analysis", "description": "Analyze sales data"},
        ...       coordination_strategy="best_match")["agent_id"]
        'analyst_001'
    """

    capabilities = frozenset({"network", "host_env"})  # host_env: provider="local"

    def __init__(self, config: dict[str, Any] | None = None, **params: Any) -> None:
        super().__init__(config, **params)
        self._lock = threading.RLock()
        self._agents: dict[str, dict[str, Any]] = {}
        self._inbox: dict[str, list[dict[str, Any]]] = {}
        self._rr = 0
        self._ids = itertools.count(1)
        self._log: list[dict[str, Any]] = []
        self._done: dict[str, dict[str, Any]] = {}

    def get_parameters(self) -> dict[str, NodeParameter]:
        return {
            "action": NodeParameter(type=str, default="status", choices=ACTIONS, description="what to do"),
            "agent_info": NodeParameter(type=dict, description="{'agent_id', 'capabilities', 'availability', "
                                                               "'performance', 'cost'} (register)"),
            "agent_id": NodeParameter(type=str, description="the agent to unregister"),
            "task": NodeParameter(type=dict, description="{'type', 'description', 'required_skills'} (delegate)"),
            "coordination_strategy": NodeParameter(type=str, default="best_match", choices=STRATEGIES, description="how to pick agents for a task"),
            "message": NodeParameter(type=Any, description="what to broadcast"),
            "target_agents": NodeParameter(type=list, description="broadcast recipients (default all)"),
            "proposals": NodeParameter(type=list, description="the options to vote on (consensus)"),
            "voting_agents": NodeParameter(type=list, description="who votes (default all registered)"),
            "consensus_threshold": NodeParameter(type=float, default=0.5, description="least share of votes to agree"),
            "task_id": NodeParameter(type=str, description="the delegated task whose result to return (results)"),
            **provider_parameters(),
        }

    def run(self, **kw: Any) -> dict[str, Any]:
        opt = {**self.config, **{k: v for k, v in kw.items() if v is not None}}
        action = opt.get("action") or "status"
        if action not in ACTIONS:
            raise self._bad("action", action, ACTIONS)
        with self._lock:
            return getattr(self, f"_{action}")(opt)

    def _bad(self, parameter: str, got: Any, expected: Any) -> NodeConfigurationError:
        exp = ", ".join(expected) if isinstance(expected, tuple) else expected
        return NodeConfigurationError(
            f"node {self.label} (A2ACoordinatorNode): parameter '{parameter}' got {got!r}, expected {exp}",
            node_id=self.name, parameter=parameter, expected=exp, got=got,
        )

    def _register(self, opt: dict[str, Any]) -> dict[str, Any]:
        info = opt.get("agent_info")
        if not isinstance(info, dict) or not (info.get("agent_id") or info.get("id")):
            raise self._bad("agent_info", info, "a dict with 'agent_id' and 'capabilities'")
        agent_id = str(info.get("agent_id") or info.get("id"))
        self._agents[agent_id] = {**info, "agent_id": agent_id,
                                  "capabilities": [str(c) for c in info.get("capabilities") or []],
                                  "availability": info.get("availability", "ready"),
                                  "performance": float(info.get("performance", 1.0)),
                                  "cost": float(info.get("cost", 1.0)),
                                  "tasks": self._agents.get(agent_id, {}).get("tasks", 0)}
        self._inbox.setdefault(agent_id, [])
        return {"success": True, "agent_id": agent_id, "registered_agents": len(self._agents)}

    def _unregister(self, opt: dict[str, Any]) -> dict[str, Any]:
        found = self._agents.pop(opt.get("agent_id") or "", None) is not None
        return {"success": found, "agent_id": opt.get("agent_id"), "registered_agents": len(self._agents)}

    def _status(self, opt: dict[str, Any]) -> dict[str, Any]:
        return {"success": True, "agents": [dict(a) for a in self._agents.values()],
                "registered_agents": len(self._agents), "delegations": list(self._log)}

    def _delegate(self, opt: dict[str, Any]) -> dict[str, Any]:
        task = opt.get("task")
        if not isinstance(task, dict):
            raise self._bad("task", task, "a dict such as {'type', 'description', 'required_skills'}")
        strategy = opt.get("coordination_strategy") or "best_match"
        if strategy not in STRATEGIES:
            raise self._bad("coordination_strategy", strategy, STRATEGIES)
        pool = [a for a in self._agents.values() if a["availability"] not in ("busy", "offline", "unavailable")]
        scored = sorted(((skill_score(task, a["capabilities"]), a) for a in pool),
                        key=lambda x: (-x[0], -x[1]["performance"], x[1]["tasks"]))
        capable = [(s, a) for s, a in scored if s > 0]
        candidates = [{"agent_id": a["agent_id"], "score": round(s, 4)} for s, a in scored]
        if not capable:
            return {"success": False, "agent_id": None, "delegated_to": None, "strategy": strategy,
                    "candidates": candidates,
                    "reason": f"no available agent has skills for this task ({len(self._agents)} registered)"}
        extra: dict[str, Any] = {}
        if strategy == "best_match":
            score, chosen = capable[0]
        elif strategy == "round_robin":
            order = sorted(capable, key=lambda x: list(self._agents).index(x[1]["agent_id"]))
            score, chosen = order[self._rr % len(order)]
            self._rr += 1
        else:
            bids = {a["agent_id"]: round(a["cost"] * (1 + a["tasks"]) / (max(s, 0.01) * max(a["performance"], 0.01)), 4)
                    for s, a in capable}
            winner = min(bids, key=lambda k: (bids[k], k))
            score, chosen = next((s, a) for s, a in capable if a["agent_id"] == winner)
            extra["bids"] = bids
        chosen["tasks"] += 1
        task_id = task.get("task_id") or f"task_{next(self._ids)}"
        self._inbox.setdefault(chosen["agent_id"], []).append({"type": "task", "task_id": task_id, "task": task})
        self._log.append({"task_id": task_id, "agent_id": chosen["agent_id"], "strategy": strategy})
        return {"success": True, "agent_id": chosen["agent_id"], "delegated_to": chosen["agent_id"],
                "task_id": task_id, "strategy": strategy, "score": round(score, 4), "candidates": candidates, **extra}

    def _broadcast(self, opt: dict[str, Any]) -> dict[str, Any]:
        if opt.get("message") is None:
            raise self._bad("message", None, "the message to broadcast")
        targets = opt.get("target_agents") or list(self._agents)
        unknown = [t for t in targets if t not in self._agents]
        recipients = [t for t in targets if t in self._agents]
        message_id = f"msg_{next(self._ids)}"
        for t in recipients:
            self._inbox[t].append({"type": "broadcast", "message_id": message_id, "message": opt["message"]})
        return {"success": True, "message_id": message_id, "recipients": recipients, "unknown_agents": unknown}

    def report(self, task_id: str, agent_id: str, result: dict[str, Any]) -> None:
        """An agent hands back the result of a task delegated to it."""
        with self._lock:
            self._done[task_id] = {"task_id": task_id, "agent_id": agent_id, **result}

    def _results(self, opt: dict[str, Any]) -> dict[str, Any]:
        delegated = [d["task_id"] for d in self._log]
        pending = [t for t in delegated if t not in self._done]
        if opt.get("task_id"):
            tid = opt["task_id"]
            return {"success": tid in self._done, "result": self._done.get(tid), "pending": pending}
        return {"success": True, "results": dict(self._done), "pending": pending}

    def messages_for(self, agent_id: str) -> list[dict[str, Any]]:
        """Take (and clear) the tasks and broadcasts queued for ``agent_id``."""
        with self._lock:
            return self._inbox.pop(agent_id, []) if agent_id in self._inbox else []

    def _consensus(self, opt: dict[str, Any]) -> dict[str, Any]:
        from kailash.nodes.ai._decide import model_decision

        proposals = opt.get("proposals")
        if not isinstance(proposals, list) or not proposals:
            raise self._bad("proposals", proposals, "a non-empty list of proposals")
        voters = list(dict.fromkeys(str(v) for v in (opt.get("voting_agents") or list(self._agents))))
        if not voters:
            raise self._bad("voting_agents", voters, "at least one voting agent (or registered agents)")
        unknown = [v for v in voters if v not in self._agents]
        if unknown:
            raise NodeConfigurationError(
                f"node {self.label} (A2ACoordinatorNode): parameter 'voting_agents' names agents that are not "
                f"registered: {', '.join(unknown)}; only registered agents vote (registered: "
                f"{', '.join(sorted(self._agents)) or 'none'})", node_id=self.name, parameter="voting_agents",
                expected="registered agent ids", got=unknown)
        texts = [_proposal_text(p) for p in proposals]
        # a canonical order (by content) decides ties, so the order proposals arrive in never matters
        canon = sorted(range(len(proposals)), key=lambda i: texts[i])
        rank = {i: r for r, i in enumerate(canon)}
        provider = provider_from(self, opt)
        votes: dict[str, int] = {}
        reasons: dict[str, str] = {}
        decided: dict[str, str] = {}
        events: list[dict[str, Any]] = []
        for voter in sorted(voters):
            caps = self._agents[voter].get("capabilities", [])
            cap_words = set(stems(" ".join(caps)))

            def heuristic(caps: list[str] = caps, cap_words: set[str] = cap_words) -> dict[str, Any]:
                scores = {i: (_merit(p) + 0.5 * len(cap_words & set(stems(texts[i]))) / max(1, len(cap_words)),
                              -rank[i]) for i, p in enumerate(proposals)}
                best = max(scores, key=lambda i: scores[i])
                return {"choice": rank[best] + 1, "reason": f"merit {_merit(proposals[best]):.2f}" +
                        (f", expertise {', '.join(caps)}" if caps else "")}

            listing = "\n".join(f"{n + 1}. {texts[i][:500]}" for n, i in enumerate(canon))
            vote = model_decision(
                provider, purpose="vote", events=events, fallback=heuristic, max_tokens=96,
                schema={"type": "object", "required": ["choice", "reason"],
                        "properties": {"choice": {"type": "integer", "minimum": 1, "maximum": len(canon)},
                                       "reason": {"type": "string", "maxLength": 300}}},
                instruction=f"You are agent {voter} with expertise in {', '.join(caps) or 'general work'}. Vote for "
                            "the one proposal you judge best; give its number and a short reason.",
                prompt=f"Proposals:\n{listing}")
            votes[voter] = canon[int(vote["choice"]) - 1]
            reasons[voter] = str(vote.get("reason") or "")
            decided[voter] = vote["decided_by"]
        tally = [sum(1 for v in votes.values() if v == i) for i in range(len(proposals))]
        win = max(range(len(proposals)), key=lambda i: (tally[i], _merit(proposals[i]), -rank[i]))
        support = tally[win] / len(voters)
        raw = opt.get("consensus_threshold")
        threshold = 0.5 if raw is None else float(raw)
        return {"success": True, "consensus_reached": support >= threshold, "winner": proposals[win],
                "winning_proposal": proposals[win], "winning_index": win, "votes": votes, "tally": tally,
                "support": round(support, 4), "reasons": reasons, "decided_by": decided, "events": events}


@register_node()
class A2AAgentNode(ModelNode):
    """An agent that works from and into a shared memory pool.

    It reads what its attention filter selects from ``memory_pool``, asks the model
    (with tools of ``mcp_servers``), and writes its answer back tagged with its
    capabilities and the task's keywords.
    """

    primary_input = "task"
    primary_output = "response"

    def get_parameters(self) -> dict[str, NodeParameter]:
        return {
            "agent_id": NodeParameter(type=str, description="this agent's id (default the node id)"),
            "task": NodeParameter(type=Any, description="what to do (text or {'description': ...})"),
            "capabilities": NodeParameter(type=list, default=None, description="what this agent is good at"),
            "memory_pool": NodeParameter(type=Any, description="a SharedMemoryPoolNode shared with other agents"),
            "attention_filter": NodeParameter(type=dict, description="which memories to read"),
            "importance": NodeParameter(type=float, default=0.7, minimum=0, maximum=1, description="importance of the written finding"),
            "mcp_servers": NodeParameter(type=list, description="MCP servers whose tools it may call"),
            "shared_cache": NodeParameter(type=Any, description="an IntelligentCacheNode for tool results"),
            "coordinator": NodeParameter(type=Any, description="an A2ACoordinatorNode: the agent works on the tasks "
                                                               "delegated to it and reports their results back"),
            **provider_parameters(),
        }

    def run(self, **kw: Any) -> dict[str, Any]:
        opt = resolve_shared({**self.config, **{k: v for k, v in kw.items() if v is not None}})
        owner = f"node {self.label} (A2AAgentNode)"
        task = opt.get("task")
        agent_id = opt.get("agent_id") or self.name or "agent"
        coordinator = opt.get("coordinator")
        if coordinator is not None and not isinstance(coordinator, A2ACoordinatorNode):
            raise NodeConfigurationError(f"{owner}: parameter 'coordinator' expects an A2ACoordinatorNode, got "
                                         f"{type(coordinator).__name__}", node_id=self.name, parameter="coordinator",
                                         expected="A2ACoordinatorNode", got=type(coordinator).__name__)
        inbox = [m for m in coordinator.messages_for(agent_id) if m["type"] == "task"] if coordinator else []
        if not task and not inbox:
            if coordinator is not None:
                return {"response": "", "agent_id": agent_id, "memory_id": None, "memories_used": 0,
                        "tool_calls": [], "errors": [], "delegated_results": []}
            raise NodeConfigurationError(f"{owner}: parameter 'task' is required", node_id=self.name,
                                         parameter="task", expected="a task text or dict")
        done = []
        out: dict[str, Any] = {}
        for m in inbox:  # delegated tasks reach the agent; their results go back to the coordinator
            assert coordinator is not None  # an inbox comes only from a coordinator
            out = self._work(m["task"], agent_id, opt, owner)
            coordinator.report(m["task_id"], agent_id, {"response": out["response"], "tool_calls": out["tool_calls"]})
            done.append({"task_id": m["task_id"], "response": out["response"]})
        if not task:
            return {**out, "delegated_results": done}
        return {**self._work(task, agent_id, opt, owner), "delegated_results": done}

    def _work(self, task: Any, agent_id: str, opt: dict[str, Any], owner: str) -> dict[str, Any]:
        text = task if isinstance(task, str) else str(task.get("description") or json.dumps(task, default=str))
        caps = [str(c) for c in opt.get("capabilities") or []]
        pool = opt.get("memory_pool")
        memories = []
        if pool is not None:
            flt = opt.get("attention_filter") or {"window_size": 10}
            memories = pool.run(action="read", agent_id=agent_id, attention_filter=flt)["memories"]
        messages = [ChatMessage(role="system", content=f"You are agent {agent_id} with capabilities: "
                                                       f"{', '.join(caps) or 'general'}.")]
        for m in memories:
            content = m["content"] if isinstance(m["content"], str) else json.dumps(m["content"], default=str)
            messages.append(ChatMessage(role="system", content=f"Memory from {m['agent_id']}: {content}"))
        messages.append(ChatMessage(role="user", content=text))
        toolbox = ToolBox(opt["mcp_servers"], cache=opt.get("shared_cache"), owner=owner) if opt.get("mcp_servers") else None
        provider = provider_from(self, opt)
        result = run_agent(provider, messages, toolbox=toolbox, owner=owner,
                           temperature=opt.get("temperature"), max_tokens=opt.get("max_tokens"))
        memory_id = None
        if pool is not None:
            memory_id = pool.run(action="write", agent_id=agent_id, content=result.content,
                                 tags=caps + keywords(text, 3), importance=float(opt.get("importance") or 0.7),
                                 segment="findings")["memory_id"]
        return {"response": result.content, "agent_id": agent_id, "memory_id": memory_id,
                "memories_used": len(memories), "tool_calls": [r.to_dict() for r in result.tool_records],
                "errors": list(toolbox.errors) if toolbox else [], "metadata": answer_metadata(provider)}

    def to_dict(self) -> dict[str, Any]:
        out = super().to_dict()
        for k in ("memory_pool", "shared_cache", "coordinator"):
            if k in out["config"]:
                out["config"][k] = _node_ref(self.config[k])
        return out
