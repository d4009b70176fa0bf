"""Seed patterns 15-20 and the orchestrator part of 21, run as written, offline.

The samples' code lives in :mod:`tests.patterns.agent_samples` (shared with the real-model
tests in test_pattern_agents_real_model.py); their placeholders are filled with real parts:
MCP servers written with the official SDK (tests/nodes/mcp/servers), launched over stdio,
which record every tool request they receive. Every agent uses the deterministic offline
provider (no ``KAILASH_LLM_PROVIDER``).
"""

from __future__ import annotations

import pytest

from tests.patterns.agent_samples import (
    AGENTS_17,
    PROPOSALS_20,
    Servers,
    pattern_15,
    pattern_16,
    pattern_17,
    pattern_18,
    pattern_19,
    pattern_20,
    pattern_21,
    schema_violations,
)


@pytest.fixture(autouse=True)
def _offline(monkeypatch):
    monkeypatch.delenv("KAILASH_LLM_PROVIDER", raising=False)


@pytest.fixture(scope="module", autouse=True)
def _close_mcp_sessions():
    yield
    from kailash.nodes.mcp import close_sessions

    close_sessions()


def test_pattern_15_basic_self_organizing_agent_pool(tmp_path):
    from kailash.nodes.ai.a2a import SharedMemoryPoolNode
    from kailash.nodes.ai.intelligent_agent_orchestrator import IntelligentCacheNode

    servers = Servers(tmp_path)
    run = pattern_15(servers)
    result, memory, cache = run.result, run.memory, run.cache
    out = result["orchestrator"]
    assert isinstance(memory, SharedMemoryPoolNode) and isinstance(cache, IntelligentCacheNode)
    assert run.orchestrator is run.workflow.nodes["orchestrator"]
    assert out["converged"] is True and out["quality"] >= 0.8
    assert 1 <= len(out["iterations"]) <= 5
    assert {t["server"] for t in out["tools_used"]} == {"market_data", "financial"}
    assert "ytd_change_pct" in out["solution"]["summary"]
    assert result["cache"]["stats"]["entries"] == 0 and result["memory"]["success"] is True
    # the orchestrator worked through the workflow's own shared infrastructure
    assert cache.run(action="stats")["stats"]["entries"] > 0
    assert memory.run(action="read", agent_id="reader")["memories"]
    # offline, every decision is the heuristics', and says so
    assert out["decided_by"]["team"] == "heuristic" and out["team_formation"]["decided_by"] == "heuristic"
    # the planner's calls reached the servers, and every one fits its tool's schema
    assert servers.received("market_data") and servers.received("financial")
    assert schema_violations(servers, {n: servers.script(n, s) for n, s in (("market_data", "market_server.py"),
                                                                            ("financial", "finance_server.py"))}) == []


def test_pattern_16_mcp_enhanced_agents(tmp_path):
    servers = Servers(tmp_path)
    with pattern_16(servers) as run:
        result, cache, memory, data_agent = run.result, run.cache, run.memory, run.data_agent
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
        assert run.research_agent.config["shared_cache"] is cache
    # the cache hit never reached the server
    assert [r["tool"] for r in servers.received("data_tools")] == ["sql_query"]


@pytest.mark.parametrize("strategy", ["capability_matching", "swarm_based", "market_based", "hierarchical"])
def test_pattern_17_team_formation_strategies(strategy):
    run = pattern_17(strategy)
    out = run.result["team_former"]
    assert out["strategy"] == strategy and out["coverage_ratio"] == 1.0
    assert {"researcher", "analyst", "strategist"} <= set(out["team"])
    assert out["decided_by"] == "heuristic" and "model_error" not in out and out["events"] == []
    assert set(out["team"]) <= {a["id"] for a in AGENTS_17}
    assert run.team_former.config["formation_strategy"] == "capability_matching"


def test_pattern_18_convergence_detection():
    run = pattern_18()
    result, convergence = run.result, run.convergence
    assert result["convergence"]["should_stop"] is True and result["convergence"]["reason"] == "quality_threshold"
    early = convergence.execute(iteration_history=[{"quality": 0.62}, {"quality": 0.78}])
    assert early["should_stop"] is False and early["reason"] == "min_iterations"


def test_pattern_19_information_reuse():
    run = pattern_19()
    cache, cache_result, similar_result = run.cache, run.cache_result, run.similar_result
    assert cache_result["success"] is True
    assert similar_result["hit"] is True and similar_result["matched_key"] == "market_analysis_2024"
    assert similar_result["data"]["trends"][0] == "AI infrastructure spending"
    assert cache.run(action="get", query="chocolate cake recipe", similarity_threshold=0.8)["hit"] is False


def test_pattern_20_coordinated_multi_agent():
    run = pattern_20()
    assert run.result["agent_id"] == "analyst_001"
    consensus = run.consensus
    assert consensus["winner"] == PROPOSALS_20[1] and consensus["votes"]["analyst_001"] == 1
    assert consensus["consensus_reached"] is True
    assert run.results["coordinator"]["registered_agents"] == 3


def test_pattern_21_orchestrator_with_mcp_config(tmp_path):
    servers = Servers(tmp_path)
    run = pattern_21(servers)
    out = run.result["mcp_orchestrator"]
    assert out["errors"] == [] and out["converged"] is True
    assert {t["server"] for t in out["tools_used"]} == {"research_tools", "data_tools"}
    assert "doc-ai-chips" in out["solution"]["summary"] or any(
        "doc-ai-chips" in f["content"] for f in out["solution"]["findings"])
    assert run.orchestrator.config["agent_pool_size"] == 15
    assert servers.received("research_tools") and servers.received("data_tools")
    assert schema_violations(servers, {n: {**c, "name": n} for n, c in run.mcp_config.items()}) == []
