"""LLMAgentNode, MCPAgentNode and OrchestrationManagerNode with real MCP servers and providers."""

from __future__ import annotations

import sys

import pytest

from kailash.errors import NodeConfigurationError, NodeExecutionError
from kailash.nodes.ai.a2a import SharedMemoryPoolNode
from kailash.nodes.ai.intelligent_agent_orchestrator import (
    IntelligentCacheNode,
    MCPAgentNode,
    OrchestrationManagerNode,
)
from kailash.nodes.ai.llm_agent import LLMAgentNode
from kailash.nodes.mcp import register_mcp_server, unregister_mcp_server

QUERY = "Analyze market trends and recommend strategy"


# -- LLMAgentNode -------------------------------------------------------------------------------
def test_llm_agent_offline_with_mcp_tools(time_server):
    out = LLMAgentNode(name="agent").execute(prompt="What is the current time in Asia/Tokyo?",
                                             mcp_servers=[time_server])
    assert out["provider"] == "offline"
    assert [(c["tool"], c["arguments"], c["ok"]) for c in out["tool_calls"]] == \
        [("get_current_time", {"timezone": "Asia/Tokyo"}, True)]
    assert "timezone: Asia/Tokyo" in out["response"] and "+09:00" in out["response"]
    assert [m["role"] for m in out["messages"]] == ["user", "assistant", "tool", "assistant"]


def test_llm_agent_through_an_openai_compatible_server(llm_server, time_server):
    node = LLMAgentNode(name="agent", provider="openai", model="tiny", base_url=f"{llm_server.url}/v1",
                        api_key=llm_server.key)
    out = node.execute(prompt="time?", system_prompt="Use tools.", mcp_servers=[time_server])
    assert out["provider"] == "openai" and out["tool_calls"][0]["arguments"] == {"timezone": "UTC"}
    assert out["response"].startswith('echo: {"timezone": "UTC"')  # the server saw the real tool result
    assert out["usage"]["prompt_tokens"] == 14
    assert llm_server.key not in repr(node.to_dict())


def test_llm_agent_errors_name_the_node_and_provider(llm_server, dead_url):
    with pytest.raises(NodeConfigurationError, match="node 'agent'.*give parameter 'prompt'"):
        LLMAgentNode(name="agent").execute()
    slow = LLMAgentNode(name="agent", provider="ollama", model="slow", base_url=llm_server.url, timeout=0.5)
    with pytest.raises(NodeExecutionError, match=r"node 'agent' \(LLMAgentNode\): provider 'ollama' timed out"):
        slow.execute(prompt="hi")
    with pytest.raises(NodeExecutionError, match=r"node 'agent'.*provider 'openai' is unreachable"):
        LLMAgentNode(name="agent", provider="openai", base_url=dead_url).execute(prompt="hi")


def test_llm_agent_records_failing_tools_and_servers(demo_server):
    bad = {"name": "ghost", "command": "no-such-mcp-binary"}
    out = LLMAgentNode(name="agent").execute(prompt="Always fails with the given message: fail message=oops",
                                             mcp_servers=[demo_server, bad])
    assert out["errors"][0]["server"] == "ghost" and "not found" in out["errors"][0]["error"]
    failed = [c for c in out["tool_calls"] if c["tool"] == "fail"]
    assert failed and failed[0]["ok"] is False and "oops" in failed[0]["error"]


# -- MCPAgentNode -------------------------------------------------------------------------------
def test_mcp_agents_share_tool_results_through_the_cache(market_server, finance_server):
    cache, memory = IntelligentCacheNode(name="cache"), SharedMemoryPoolNode(name="memory")
    register_mcp_server("research_tools", market_server)
    try:
        research = MCPAgentNode(name="research_agent", mcp_server="research_tools",
                                capabilities=["research", "analysis", "summarization"],
                                shared_cache=cache, shared_memory=memory)
        data = MCPAgentNode(name="data_agent", mcp_server=market_server, mcp_servers=[finance_server],
                            capabilities=["data_access", "sql", "visualization"],
                            shared_cache=cache, shared_memory=memory)
        first = research.execute(task="Rank the market sectors by performance")
        assert first["tool_calls"][0]["tool"] == "get_sector_performance" and first["cache_hits"] == 0
        second = data.execute(task="Rank the market sectors by performance")
        assert second["cache_hits"] >= 1 and second["tool_calls"][0]["cached"] is True
        assert cache.stats()["cost_saved"] >= 1.0
        assert memory.run(action="stats")["by_agent"] == {"research_agent": 1, "data_agent": 1}
        assert research.to_dict()["config"]["shared_cache"] == {"node": "cache"}
    finally:
        unregister_mcp_server("research_tools")


# -- OrchestrationManagerNode ---------------------------------------------------------------------
def test_orchestration_converges_with_real_tools(market_server, finance_server):
    node = OrchestrationManagerNode(name="orchestrator", max_iterations=5, quality_threshold=0.8,
                                    time_limit_minutes=10)
    out = node.execute(query=QUERY, mcp_servers=[market_server, finance_server], agent_pool_size=10)
    assert out["converged"] is True and out["stop_reason"] == "quality_threshold"
    assert out["quality"] >= 0.8 and out["errors"] == []
    used = {(t["server"], t["tool"]) for t in out["tools_used"]}
    assert ("market_data", "get_market_trends") in used and ("financial", "recommend_allocation") in used
    assert out["iterations"][0]["scores"]["coverage"] == 1.0
    summary = out["solution"]["summary"]
    assert "ytd_change_pct: 18.4" in summary and "Recommendation:" in summary
    assert {f["subtask_id"] for f in out["solution"]["findings"]} == {s["id"] for s in out["analysis"]["subtasks"]}
    assert set(out["team"]) >= set(out["team_formation"]["coverage"]["strategy"])


def test_repeated_query_is_served_from_the_cache(market_server, finance_server):
    node = OrchestrationManagerNode(name="orchestrator")
    first = node.execute(query=QUERY, mcp_servers=[market_server, finance_server])
    second = node.execute(query=QUERY, mcp_servers=[market_server, finance_server])
    calls = second["iterations"][0]["tool_calls"]
    assert calls and second["iterations"][0]["cache_hits"] == calls  # no tool was called again
    assert second["cache_stats"]["hit_rate"] > first["cache_stats"]["hit_rate"]
    assert second["solution"]["summary"] == first["solution"]["summary"]  # deterministic
    uncached = OrchestrationManagerNode(name="o2", enable_caching=False).execute(
        query=QUERY, mcp_servers=[market_server, finance_server])
    assert uncached["cache_stats"] is None and all(t["cached"] == 0 for t in uncached["tools_used"])


def test_team_borrows_tools_in_later_iterations(time_server):
    # the only agent (research, summarization) lacks the scheduling skill the time server
    # offers, so the first iteration has no evidence; the second lends every server to the
    # team and quality rises
    node = OrchestrationManagerNode(name="orchestrator", max_iterations=4, quality_threshold=0.9)
    out = node.execute(query="Research and summarize the current time in Europe/London",
                       context={"required_capabilities": ["research", "summarization"]},
                       mcp_servers=[time_server], agent_pool_size=1)
    qualities = [h["quality"] for h in out["iterations"]]
    assert len(qualities) >= 2 and qualities[1] > qualities[0]
    assert out["iterations"][0]["tool_calls"] == 0 and out["iterations"][1]["tool_calls"] > 0
    assert out["iterations"][0]["gaps"] and out["converged"] is True
    assert {t["tool"] for t in out["tools_used"]} == {"get_current_time"}


def test_failures_are_recorded_and_the_run_goes_on(market_server, llm_server):
    bad = [{"name": "broken", "command": sys.executable, "args": ["-c", "raise SystemExit(1)"]},
           {"name": "ghost", "command": "no-such-mcp-binary"}, "unregistered_name"]
    out = OrchestrationManagerNode(name="orchestrator", max_iterations=2).execute(
        query=QUERY, mcp_servers=[market_server, *bad])
    errors = {e["server"]: e["error"] for e in out["errors"] if "server" in e}
    assert set(errors) == {"broken", "ghost", "unregistered_name"}
    assert "exited at once" in errors["broken"] and "not found" in errors["ghost"]
    assert "not registered" in errors["unregistered_name"]
    assert out["tools_used"] and out["quality"] > 0
    # a provider that fails for every agent: recorded per subtask, the run still answers
    failing = OrchestrationManagerNode(name="o", provider="openai", model="empty", base_url=f"{llm_server.url}/v1",
                                       api_key=llm_server.key, max_iterations=2)
    out = failing.execute(query=QUERY)
    assert out["quality"] == 0.0 and len(out["iterations"]) == 2
    assert any("provider 'openai' returned a malformed answer" in e["error"] for e in out["errors"])


def test_names_resolved_through_mcp_config(market_server):
    config = {"market_tools": {"command": market_server["command"], "args": market_server["args"],
                               "capabilities": ["market_research"]}}
    out = OrchestrationManagerNode(name="o", mcp_servers=list(config), mcp_config=config).execute(
        query="Collect market trends for the energy sector")
    assert out["errors"] == [] and {t["server"] for t in out["tools_used"]} == {"market_tools"}


def test_orchestrator_parameter_errors():
    with pytest.raises(NodeConfigurationError, match="node 'o'.*parameter 'query' is required"):
        OrchestrationManagerNode(name="o").execute()
    with pytest.raises(NodeConfigurationError, match=r"'team_strategy' expects one of 'capability_matching', .*got 'chaos'"):
        OrchestrationManagerNode(name="o").execute(query="x", team_strategy="chaos")


def test_saved_agent_workflow_keeps_sharing_its_cache(tmp_path, market_server):
    from kailash import Workflow
    from kailash.runtime import LocalRuntime

    wf = Workflow("agents")
    cache = wf.add_node(IntelligentCacheNode(name="cache"))
    for name in ("a1", "a2"):
        wf.add_node(MCPAgentNode(name=name, mcp_server=market_server, shared_cache=cache,
                                 capabilities=["market_research"]))
    wf.save(tmp_path / "agents.yaml")
    loaded = Workflow.load(tmp_path / "agents.yaml")
    import yaml

    saved = yaml.safe_load((tmp_path / "agents.yaml").read_text())
    assert saved["nodes"][1]["config"]["shared_cache"] == {"node": "cache"}  # saved as a reference
    assert loaded.nodes["a1"].config["shared_cache"] is loaded.nodes["cache"]  # the workflow's own node
    task = "Rank the market sectors by performance"
    results, _ = LocalRuntime().execute(loaded, parameters={"a1": {"task": task}, "a2": {"task": task}})
    hits = [results[n]["cache_hits"] for n in ("a1", "a2")]
    assert sorted(hits) == [0, 1]  # whichever ran second was answered by the shared cache
