"""Seed patterns 15-20 and the orchestrator part of 21, run as written.

Placeholders are filled with real parts: the seed's ``market-mcp``/``finance-mcp``,
``research_mcp_server`` and ``data_mcp_server`` are MCP servers written with the official
SDK (tests/nodes/mcp/servers), launched over stdio by ``command``/``args``; the seed's
``[...]`` data is real data. Every agent uses the deterministic offline provider.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from kailash import Workflow
from kailash.runtime import LocalRuntime

SERVERS = Path(__file__).parents[1] / "nodes" / "mcp" / "servers"


@pytest.fixture(scope="module", autouse=True)
def _close_mcp_sessions():
    yield
    from kailash.nodes.mcp import close_sessions

    close_sessions()


def _server(name: str, script: str) -> dict:
    return {"name": name, "command": sys.executable, "args": [str(SERVERS / script)], "env": {}}


def test_pattern_15_basic_self_organizing_agent_pool():
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
    result, _ = runtime.execute(workflow, parameters={
        "orchestrator": {
            "query": "Analyze market trends and recommend strategy",
            "mcp_servers": [
                _server("market_data", "market_server.py"),   # the seed's "market-mcp"
                _server("financial", "finance_server.py"),    # the seed's "finance-mcp"
            ],
            "agent_pool_size": 10
        }
    })

    out = result["orchestrator"]
    assert isinstance(memory, SharedMemoryPoolNode) and isinstance(cache, IntelligentCacheNode)
    assert orchestrator is workflow.nodes["orchestrator"]
    assert out["converged"] is True and out["quality"] >= 0.8
    assert 1 <= len(out["iterations"]) <= 5
    assert {t["server"] for t in out["tools_used"]} == {"market_data", "financial"}
    assert "ytd_change_pct" in out["solution"]["summary"]
    assert result["cache"]["stats"]["entries"] == 0 and result["memory"]["success"] is True
    # the orchestrator worked through the workflow's own shared infrastructure
    assert cache.run(action="stats")["stats"]["entries"] > 0
    assert memory.run(action="read", agent_id="reader")["memories"]


def test_pattern_16_mcp_enhanced_agents():
    from kailash.nodes.ai.a2a import SharedMemoryPoolNode
    from kailash.nodes.ai.intelligent_agent_orchestrator import IntelligentCacheNode, MCPAgentNode
    from kailash.nodes.mcp import register_mcp_server, unregister_mcp_server

    # the seed names servers; register what those names mean on this machine
    register_mcp_server("research_tools", _server("research_tools", "research_mcp_server.py"))
    register_mcp_server("data_tools", _server("data_tools", "data_mcp_server.py"))
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

        tasks = {"research_agent": {"task": "Search research documents about AI chip revenue"},
                 "data_agent": {"task": "Run a SQL query on the sales data table"}}
        result, _ = LocalRuntime().execute(workflow, parameters=tasks)
        research_calls = result["research_agent"]["tool_calls"]
        assert research_calls[0]["tool"] == "web_search" and research_calls[0]["ok"]
        assert research_calls[0]["result"][0]["id"] == "doc-ai-chips"
        data_calls = result["data_agent"]["tool_calls"]
        assert data_calls[0]["tool"] == "sql_query" and data_calls[0]["result"][0] == {"region": "north",
                                                                                       "revenue": 255.5}
        # Agents automatically share tool results through cache
        again = data_agent.run(task="Run a SQL query on the sales data table")
        assert again["cache_hits"] == 1 and cache.run(action="stats")["stats"]["hits"] >= 1
        assert memory.run(action="stats")["by_agent"]["research_agent"] == 1
        assert research_agent.config["shared_cache"] is cache
    finally:
        unregister_mcp_server("research_tools")
        unregister_mcp_server("data_tools")


@pytest.mark.parametrize("strategy", ["capability_matching", "swarm_based", "market_based", "hierarchical"])
def test_pattern_17_team_formation_strategies(strategy):
    from kailash.nodes.ai.self_organizing import TeamFormationNode

    workflow = Workflow()
    team_former = workflow.add_node(TeamFormationNode(
        name="team_former",
        formation_strategy="capability_matching"  # Best for skill-specific tasks
    ))
    agents = [
        {"id": "researcher", "capabilities": ["research", "market_research"], "performance": 0.85, "cost": 1.0},
        {"id": "analyst", "capabilities": ["data_analysis", "statistics"], "performance": 0.9, "cost": 2.0},
        {"id": "strategist", "capabilities": ["strategy", "coordination"], "performance": 0.8, "cost": 1.5},
        {"id": "designer", "capabilities": ["visualization"], "performance": 0.7, "cost": 0.5},
    ]
    result, _ = LocalRuntime().execute(workflow, parameters={"team_former": {
        "problem_analysis": {"required_capabilities": ["market_research", "data_analysis", "strategy"]},
        "available_agents": agents, "formation_strategy": strategy}})
    out = result["team_former"]
    assert out["strategy"] == strategy and out["coverage_ratio"] == 1.0
    assert {"researcher", "analyst", "strategist"} <= set(out["team"])
    assert team_former.config["formation_strategy"] == "capability_matching"


def test_pattern_18_convergence_detection():
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
    history = [{"quality": 0.62}, {"quality": 0.78}, {"quality": 0.87}]
    result, _ = LocalRuntime().execute(workflow, parameters={"convergence": {"iteration_history": history}})
    assert result["convergence"]["should_stop"] is True and result["convergence"]["reason"] == "quality_threshold"
    early = convergence.execute(iteration_history=history[:2])
    assert early["should_stop"] is False and early["reason"] == "min_iterations"


def test_pattern_19_information_reuse():
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
    assert cache_result["success"] is True
    assert similar_result["hit"] is True and similar_result["matched_key"] == "market_analysis_2024"
    assert similar_result["data"]["trends"][0] == "AI infrastructure spending"
    assert cache.run(action="get", query="chocolate cake recipe", similarity_threshold=0.8)["hit"] is False


def test_pattern_20_coordinated_multi_agent():
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
    assert result["agent_id"] == "analyst_001"

    proposal1 = {"id": "expand", "summary": "Enter two new regional markets", "confidence": 0.6}
    proposal2 = {"id": "optimize", "summary": "Use sales data analysis and statistics to cut churn", "confidence": 0.7}
    proposal3 = {"id": "research", "summary": "Commission market research before any move", "confidence": 0.65}

    # Build consensus on solutions
    consensus = coordinator.run(
        action="consensus",
        proposals=[proposal1, proposal2, proposal3],
        voting_agents=["analyst_001", "strategist_002", "researcher_003"]
    )
    assert consensus["winner"] == proposal2 and consensus["votes"]["analyst_001"] == 1
    assert consensus["consensus_reached"] is True
    results, _ = LocalRuntime().execute(workflow)
    assert results["coordinator"]["registered_agents"] == 3


def test_pattern_21_orchestrator_with_mcp_config():
    from kailash.nodes.ai.intelligent_agent_orchestrator import OrchestrationManagerNode
    from kailash.nodes.mcp import register_mcp_servers, unregister_mcp_server

    # Register MCP servers for external tool access
    mcp_config = {
        "research_tools": {
            "command": sys.executable,
            "args": ["-m", "research_mcp_server"],
            "env": {"PYTHONPATH": str(SERVERS)},
            "capabilities": ["web_search", "document_analysis"]
        },
        "data_tools": {
            "command": sys.executable,
            "args": ["-m", "data_mcp_server"],
            "env": {"PYTHONPATH": str(SERVERS)},
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
    try:
        result, _ = LocalRuntime().execute(workflow, parameters={"mcp_orchestrator": {
            "query": "Research AI chip revenue and summarize sales data by region"}})
    finally:
        for name in mcp_config:
            unregister_mcp_server(name)
    out = result["mcp_orchestrator"]
    assert out["errors"] == [] and out["converged"] is True
    assert {t["server"] for t in out["tools_used"]} == {"research_tools", "data_tools"}
    assert "doc-ai-chips" in out["solution"]["summary"] or any(
        "doc-ai-chips" in f["content"] for f in out["solution"]["findings"])
    assert orchestrator.config["agent_pool_size"] == 15
