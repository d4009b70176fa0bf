"""The seed's agent patterns 15-21, as written, shared by the offline and the real-model tests.

Each ``pattern_NN`` runs one sample's code with its placeholders filled by real parts: the
seed's ``market-mcp``/``finance-mcp``, ``research_mcp_server`` and ``data_mcp_server`` are
MCP servers written with the official SDK (tests/nodes/mcp/servers), launched over stdio;
the seed's ``[...]`` data is real data. The samples never name a model provider, so the
provider is the environment's (``KAILASH_LLM_PROVIDER``, offline when unset): the offline
tests run them as they are, the real-model tests set the environment to a real model.

Two things vary, neither in the sample's text: :class:`Servers` builds the server specs
(with a file recording every tool request each server receives, when given a directory),
and ``tuning`` adds runtime parameters the sample's own nodes expose (``max_tokens``,
``temperature``), empty offline.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from kailash import Workflow
from kailash.runtime import LocalRuntime

SERVERS = Path(__file__).parents[1] / "nodes" / "mcp" / "servers"
RECORD_ENV = "KAILASH_TEST_MCP_RECORD"  # read by tests/nodes/mcp/servers/_recording.py


@dataclass(frozen=True)
class Servers:
    """Stdio specs of the test MCP servers; with ``record_dir`` each server records what it receives."""

    record_dir: Path | None = None

    def env(self, name: str) -> dict[str, str]:
        return {RECORD_ENV: str(self.record_dir / f"{name}.jsonl")} if self.record_dir else {}

    def script(self, name: str, script: str) -> dict[str, Any]:
        return {"name": name, "command": sys.executable, "args": [str(SERVERS / script)], "env": self.env(name)}

    def received(self, name: str) -> list[dict[str, Any]]:
        """The tool requests server ``name`` received: ``[{"tool", "arguments"}]``."""
        path = self.record_dir / f"{name}.jsonl" if self.record_dir else None
        return [json.loads(line) for line in path.read_text().splitlines()] if path and path.exists() else []


AGENTS_17 = [
    {"id": "researcher", "capabilities": ["research", "market_research"], "performance": 0.85, "cost": 1.0},
    {"id": "analyst", "capabilities": ["data_analysis", "statistics"], "performance": 0.9, "cost": 2.0},
    {"id": "strategist", "capabilities": ["strategy", "coordination"], "performance": 0.8, "cost": 1.5},
    {"id": "designer", "capabilities": ["visualization"], "performance": 0.7, "cost": 0.5},
]
REQUIRED_17 = ["market_research", "data_analysis", "strategy"]
HISTORY_18 = [{"quality": 0.62}, {"quality": 0.78}, {"quality": 0.87}]
PROPOSALS_20 = [
    {"id": "expand", "summary": "Enter two new regional markets", "confidence": 0.6},
    {"id": "optimize", "summary": "Use sales data analysis and statistics to cut churn", "confidence": 0.7},
    {"id": "research", "summary": "Commission market research before any move", "confidence": 0.65},
]
TASKS_16 = {"research_agent": {"task": "Search research documents about AI chip revenue"},
            "data_agent": {"task": "Run a SQL query on the sales data table"}}


def pattern_15(servers: Servers, tuning: dict[str, Any] | None = None) -> SimpleNamespace:
    """15. Basic Self-Organizing Agent Pool Pattern."""
    from kailash.nodes.ai.a2a import SharedMemoryPoolNode
    from kailash.nodes.ai.intelligent_agent_orchestrator import IntelligentCacheNode, OrchestrationManagerNode

    workflow = Workflow()

    # Shared infrastructure
    memory = workflow.add_node(SharedMemoryPoolNode(name="memory"))
    cache = workflow.add_node(IntelligentCacheNode(name="cache", ttl=3600))

    # Orchestration with self-organization
    orchestrator = workflow.add_node(OrchestrationManagerNode(
        name="orchestrator",
        max_iterations=5,
        quality_threshold=0.8,
        time_limit_minutes=10
    ))

    # Execute with MCP servers
    runtime = LocalRuntime()
    result, run_id = runtime.execute(workflow, parameters={
        "orchestrator": {
            "query": "Analyze market trends and recommend strategy",
            "mcp_servers": [
                servers.script("market_data", "market_server.py"),   # the seed's "market-mcp"
                servers.script("financial", "finance_server.py"),    # the seed's "finance-mcp"
            ],
            "agent_pool_size": 10,
            **(tuning or {}),
        }
    })
    return SimpleNamespace(result=result, run_id=run_id, runtime=runtime, workflow=workflow, memory=memory,
                           cache=cache, orchestrator=orchestrator)


@contextmanager
def pattern_16(servers: Servers, tuning: dict[str, Any] | None = None) -> Iterator[SimpleNamespace]:
    """16. MCP-Enhanced Agent Pattern; the seed's server names stay registered inside the ``with``."""
    from kailash.nodes.ai.a2a import SharedMemoryPoolNode
    from kailash.nodes.ai.intelligent_agent_orchestrator import IntelligentCacheNode, MCPAgentNode
    from kailash.nodes.mcp import register_mcp_server, unregister_mcp_server

    # the seed names servers; register what those names mean on this machine
    register_mcp_server("research_tools", servers.script("research_tools", "research_mcp_server.py"))
    register_mcp_server("data_tools", servers.script("data_tools", "data_mcp_server.py"))
    try:
        workflow = Workflow()
        memory = workflow.add_node(SharedMemoryPoolNode(name="memory"))
        cache = workflow.add_node(IntelligentCacheNode(name="cache", ttl=3600))

        # Create specialized agents with MCP access
        research_agent = workflow.add_node(MCPAgentNode(
            name="research_agent",
            mcp_server="research_tools",
            capabilities=["research", "analysis", "summarization"],
            shared_cache=cache,
            shared_memory=memory
        ))

        data_agent = workflow.add_node(MCPAgentNode(
            name="data_agent",
            mcp_server="data_tools",
            capabilities=["data_access", "sql", "visualization"],
            shared_cache=cache,
            shared_memory=memory
        ))

        # Agents automatically share tool results through cache
        runtime = LocalRuntime()
        result, run_id = runtime.execute(workflow, parameters={
            name: {**task, **(tuning or {})} for name, task in TASKS_16.items()})
        yield SimpleNamespace(result=result, run_id=run_id, runtime=runtime, workflow=workflow, memory=memory,
                              cache=cache, research_agent=research_agent, data_agent=data_agent)
    finally:
        unregister_mcp_server("research_tools")
        unregister_mcp_server("data_tools")


def pattern_17(strategy: str, tuning: dict[str, Any] | None = None) -> SimpleNamespace:
    """17. Team Formation Strategy Pattern, with the seed's alternative ``strategy`` at run time."""
    from kailash.nodes.ai.self_organizing import TeamFormationNode

    workflow = Workflow()
    # Capability-based team formation
    team_former = workflow.add_node(TeamFormationNode(
        name="team_former",
        formation_strategy="capability_matching"  # Best for skill-specific tasks
    ))
    # Alternative strategies:
    # "swarm_based" - For exploration/discovery
    # "market_based" - For resource-constrained scenarios
    # "hierarchical" - For complex multi-level problems
    runtime = LocalRuntime()
    result, run_id = runtime.execute(workflow, parameters={"team_former": {
        "problem_analysis": {"required_capabilities": REQUIRED_17},
        "available_agents": AGENTS_17, "formation_strategy": strategy, **(tuning or {})}})
    return SimpleNamespace(result=result, run_id=run_id, runtime=runtime, team_former=team_former)


def pattern_18() -> SimpleNamespace:
    """18. Convergence Detection Pattern."""
    from kailash.nodes.ai.intelligent_agent_orchestrator import ConvergenceDetectorNode

    workflow = Workflow()
    convergence = workflow.add_node(ConvergenceDetectorNode(
        name="convergence",
        quality_threshold=0.85,      # Stop when quality >= 85%
        improvement_threshold=0.02,   # Stop if improvement < 2%
        max_iterations=10,           # Hard limit
        timeout=600,                 # 10 minute timeout
        min_iterations=3             # Always run at least 3 times
    ))
    result, run_id = LocalRuntime().execute(workflow, parameters={"convergence": {"iteration_history": HISTORY_18}})
    return SimpleNamespace(result=result, run_id=run_id, convergence=convergence)


def pattern_19() -> SimpleNamespace:
    """19. Information Reuse Pattern."""
    from kailash.nodes.ai.intelligent_agent_orchestrator import IntelligentCacheNode

    cache = IntelligentCacheNode(name="cache", ttl=3600)

    # Cache expensive operations with semantic matching
    cache_result = cache.run(
        action="cache",
        cache_key="market_analysis_2024",
        data={"trends": ["AI infrastructure spending", "energy transition", "nearshoring"],
              "predictions": ["two rate cuts in 2025", "tech earnings +12%"]},
        metadata={
            "source": "market_mcp",
            "cost": 2.50,
            "semantic_tags": ["market", "analysis", "trends"]
        },
        ttl=3600  # 1 hour TTL
    )

    # Later agents can retrieve by semantic similarity
    similar_result = cache.run(
        action="get",
        query="stock market analysis trends",
        similarity_threshold=0.8
    )
    return SimpleNamespace(cache=cache, cache_result=cache_result, similar_result=similar_result)


def pattern_20() -> SimpleNamespace:
    """20. Coordinated Multi-Agent Pattern."""
    from kailash.nodes.ai.a2a import A2ACoordinatorNode

    workflow = Workflow()
    coordinator = workflow.add_node(A2ACoordinatorNode(name="coordinator"))

    # Register agents with specialized roles
    coordinator.run(
        action="register",
        agent_info={
            "agent_id": "analyst_001",
            "capabilities": ["data_analysis", "statistics"],
            "availability": "ready"
        }
    )
    for aid, caps in [("strategist_002", ["strategy", "planning"]), ("researcher_003", ["research", "market_research"])]:
        coordinator.run(action="register", agent_info={"agent_id": aid, "capabilities": caps, "availability": "ready"})

    # Delegate tasks based on capabilities
    result = coordinator.run(
        action="delegate",
        task={"type": "analysis", "description": "Analyze sales data"},
        coordination_strategy="best_match"
    )

    proposal1, proposal2, proposal3 = PROPOSALS_20

    # Build consensus on solutions
    consensus = coordinator.run(
        action="consensus",
        proposals=[proposal1, proposal2, proposal3],
        voting_agents=["analyst_001", "strategist_002", "researcher_003"]
    )
    results, run_id = LocalRuntime().execute(workflow)
    return SimpleNamespace(coordinator=coordinator, result=result, consensus=consensus, results=results,
                           run_id=run_id)


def pattern_21(servers: Servers, tuning: dict[str, Any] | None = None) -> SimpleNamespace:
    """21. MCP Ecosystem Integration Pattern: the orchestrator part (the gateway is pattern 07's)."""
    from kailash.nodes.ai.intelligent_agent_orchestrator import OrchestrationManagerNode
    from kailash.nodes.mcp import register_mcp_servers, unregister_mcp_server

    # Register MCP servers for external tool access
    mcp_config = {
        "research_tools": {
            "command": sys.executable,
            "args": ["-m", "research_mcp_server"],
            "env": {"PYTHONPATH": str(SERVERS), **servers.env("research_tools")},
            "capabilities": ["web_search", "document_analysis"]
        },
        "data_tools": {
            "command": sys.executable,
            "args": ["-m", "data_mcp_server"],
            "env": {"PYTHONPATH": str(SERVERS), **servers.env("data_tools")},
            "capabilities": ["sql_query", "visualization"]
        }
    }

    # Create orchestrated workflow with MCP integration
    workflow = Workflow()
    orchestrator = workflow.add_node(OrchestrationManagerNode(
        name="mcp_orchestrator",
        mcp_servers=list(mcp_config.keys()),
        agent_pool_size=15,
        enable_caching=True
    ))
    register_mcp_servers(mcp_config)  # what the gateway does with register_workflow(..., mcp_config=)
    runtime = LocalRuntime()
    try:
        result, run_id = runtime.execute(workflow, parameters={"mcp_orchestrator": {
            "query": "Research AI chip revenue and summarize sales data by region", **(tuning or {})}})
    finally:
        for name in mcp_config:
            unregister_mcp_server(name)
    return SimpleNamespace(result=result, run_id=run_id, runtime=runtime, workflow=workflow, orchestrator=orchestrator,
                           mcp_config=mcp_config)


def schema_violations(servers: Servers, specs: dict[str, dict[str, Any]]) -> list[str]:
    """Requests a recording server received that do not fit the tool's input schema (should be none).

    ``specs`` maps each recorded server's name to its spec (to list its tools).
    """
    from kailash.nodes.ai._schema import schema_problems
    from kailash.nodes.mcp.client import list_tools
    from kailash.nodes.mcp.servers import MCPServerConfig

    bad = []
    for name, spec in specs.items():
        tools = {t["name"]: t["input_schema"] for t in list_tools(
            MCPServerConfig.from_any(spec, owner="test", parameter="server"), owner="test")}
        for req in servers.received(name):
            problems = ["unknown tool"] if req["tool"] not in tools else schema_problems(tools[req["tool"]],
                                                                                        req["arguments"])
            bad += [f"{name}.{req['tool']}({req['arguments']}): {p}" for p in problems]
    return bad
