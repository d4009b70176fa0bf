"""Issue 16: scores are earned, tool calls fit their tools, the heuristics say they decided.

The seed's pattern 15 as written names MCP servers that do not exist; it used to report
"converged" at quality 0.82 with no tool call at all, and 0.91 with a model answering
"I don't know." to everything. Servers here are real (a recording price server over stdio).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from kailash import Workflow
from kailash.errors import NodeExecutionError
from kailash.nodes.ai._agent_loop import ToolBox, run_agent
from kailash.nodes.ai._schema import schema_problems
from kailash.nodes.ai.intelligent_agent_orchestrator import OrchestrationManagerNode
from kailash.nodes.ai.providers import ChatMessage, OfflineProvider
from kailash.runtime import LocalRuntime

SERVERS = Path(__file__).parents[1] / "mcp" / "servers"
DEAD = [{"name": "market-mcp", "command": "market-mcp-server-that-does-not-exist"},
        {"name": "finance-mcp", "command": sys.executable, "args": ["-c", "raise SystemExit(3)"]}]


@pytest.fixture(scope="module", autouse=True)
def _close_mcp_sessions():
    yield
    from kailash.nodes.mcp import close_sessions

    close_sessions()


@pytest.fixture
def prices(tmp_path):
    record = tmp_path / "requests.jsonl"
    server = {"name": "prices", "command": sys.executable,
              "args": [str(SERVERS / "prices_server.py"), "--record", str(record)]}
    return server, record


def received(record: Path) -> list[dict]:
    return [json.loads(line) for line in record.read_text().splitlines()] if record.exists() else []


def test_pattern_15_with_dead_servers_fails_naming_them():
    workflow = Workflow()
    workflow.add_node(OrchestrationManagerNode(name="orchestrator", max_iterations=5, quality_threshold=0.8,
                                               time_limit_minutes=10))
    with pytest.raises(NodeExecutionError) as err:
        LocalRuntime().execute(workflow, parameters={"orchestrator": {
            "query": "Analyze market trends and recommend strategy", "mcp_servers": DEAD, "agent_pool_size": 10}})
    text = str(err.value)
    assert "nothing could be done" in text and "market-mcp" in text and "finance-mcp" in text


def test_pattern_15_with_an_i_dont_know_model_does_not_converge(llm_server, market_server, finance_server):
    node = OrchestrationManagerNode(name="orchestrator", provider="openai", model="idk",
                                    base_url=f"{llm_server.url}/v1", api_key=llm_server.key, max_iterations=5,
                                    quality_threshold=0.8)
    out = node.execute(query="Analyze market trends and recommend strategy",
                       mcp_servers=[market_server, finance_server])
    assert out["converged"] is False and out["quality"] == 0.0
    assert out["status"] in ("plateau", "stopped") and out["stop_reason"] != "quality_threshold"
    # the model was asked to decompose and grade; it never answered in shape, and the output says so
    assert out["decided_by"]["decomposition"] == "heuristic" and out["decided_by"]["evaluation"] == "heuristic"
    assert out["decided_by"]["routing"] == "heuristic"  # asked, never answered in shape
    assert {e["purpose"] for e in out["events"]} >= {"decomposition", "routing", "agent", "evaluation", "synthesis"}
    assert "did not fit its schema" in out["analysis"]["model_error"]
    assert any("carries no information" in f for f in out["iterations"][-1]["feedback"])
    # with dead servers too: no failure (a model exists), nothing obtained, not converged, servers named
    out = node.execute(query="Analyze market trends and recommend strategy", mcp_servers=DEAD)
    assert out["converged"] is False and out["quality"] == 0.0
    assert out["unreachable_servers"] == ["market-mcp", "finance-mcp"]
    model_calls = [e for e in out["events"] if e["type"] == "model_call"]
    assert model_calls and all(e["model"] == "idk" and e["total_tokens"] == 10 for e in model_calls)


def test_pattern_15_with_real_tools_still_converges_on_earned_quality(market_server, finance_server):
    out = OrchestrationManagerNode(name="orchestrator", max_iterations=5, quality_threshold=0.8).execute(
        query="Analyze market trends and recommend strategy", mcp_servers=[market_server, finance_server])
    assert out["converged"] is True and out["status"] == "converged" and out["quality"] >= 0.8
    assert out["iterations"][-1]["scores"]["grounding"] == 1.0
    assert out["decided_by"] == {"decomposition": "heuristic", "team": "heuristic", "routing": "heuristic",
                                 "evaluation": "heuristic", "convergence": "rule"}
    tool_events = [e for e in out["events"] if e["type"] == "tool_call"]
    assert tool_events and {e["outcome"] for e in tool_events} <= {"ok", "cached"}


def test_plateau_is_reported_as_plateau(prices):
    # the price tools cannot answer a strategy question beyond the prices: quality stalls below target
    server, _ = prices
    out = OrchestrationManagerNode(name="o", max_iterations=6, quality_threshold=0.99, improvement_threshold=0.02,
                                   min_iterations=2).execute(
        query="Get the prices for symbol: ACME and forecast the outlook", mcp_servers=[server])
    assert out["converged"] is False and out["status"] == "plateau" and out["quality"] < 0.99
    assert "plateau at quality" in out["stop_detail"]


def test_planner_fills_only_what_it_can_justify_and_chains(prices):
    server, record = prices
    toolbox = ToolBox([server], owner="test")
    # "trends" names the trend tool, but nothing in the request is a number series: skipped, never guessed
    r = run_agent(OfflineProvider(), [ChatMessage(role="user", content="Collect market trends")], toolbox=toolbox)
    assert r.tool_records == [] and received(record) == []
    # the symbol is stated: get_prices; its prices then justify trend(values)
    r = run_agent(OfflineProvider(), [ChatMessage(role="user", content="Get the prices and trend for symbol: ACME")],
                  toolbox=toolbox, max_rounds=4)
    assert [(t.tool, t.arguments) for t in r.tool_records] == [
        ("get_prices", {"symbol": "ACME"}), ("trend", {"values": [101.5, 102.25, 99.8, 104.1, 106.0]})]
    assert received(record) == [{"tool": t.tool, "arguments": t.arguments} for t in r.tool_records]
    assert "direction: up" in r.content


def test_schema_violating_calls_never_reach_the_server(prices):
    server, record = prices
    toolbox = ToolBox([server], owner="node x (MCPAgentNode)")
    bad = toolbox.call("trend", {"values": ["market", "trends", "collect"]})
    assert bad.outcome == "rejected" and not bad.ok
    assert "values/0: 'market' is not of type 'number'" in bad.error and "node x (MCPAgentNode)" in bad.error
    missing = toolbox.call("get_prices", {})
    assert missing.outcome == "rejected" and "'symbol' is a required property" in missing.error
    broken = toolbox.call("get_prices", {}, malformed="provider 'openai' returned malformed JSON arguments")
    assert broken.outcome == "rejected" and "malformed JSON" in broken.error
    assert received(record) == []
    good = toolbox.call("get_prices", {"symbol": "GLOBEX"})
    assert good.ok and good.result and received(record) == [{"tool": "get_prices", "arguments": {"symbol": "GLOBEX"}}]
    assert schema_problems(toolbox.spec("trend").input_schema, {"values": [1.0, 2.0]}) == []


def test_a_model_gets_its_invalid_call_back_as_a_correctable_error(llm_server, prices):
    # the scripted server calls the first tool with every required string set to "UTC": get_prices("UTC")
    # fits the schema and reaches the server, which refuses the symbol; "badargs" sends broken JSON
    from kailash.nodes.ai.providers import get_provider

    server, record = prices
    p = get_provider("openai", model="badargs", base_url=f"{llm_server.url}/v1", api_key=llm_server.key)
    r = run_agent(p, [ChatMessage(role="user", content="prices?")], toolbox=ToolBox([server], owner="t"), max_rounds=3)
    assert r.tool_records[0].outcome == "rejected" and received(record) == []
    tool_msgs = [m for m in r.messages if m.role == "tool"]
    assert tool_msgs[0].content.startswith("ERROR:") and "Correct the arguments and call again" in tool_msgs[0].content


def test_tool_call_records_redact_secret_arguments():
    from kailash.nodes.ai._agent_loop import ToolRecord

    rec = ToolRecord(server="s", tool="t", arguments={"symbol": "ACME", "api_key": "sk-live-123",
                                                      "auth": {"token": "abc"}}, ok=True)
    assert rec.to_dict()["arguments"] == {"symbol": "ACME", "api_key": "***", "auth": "***"}
    assert "sk-live-123" not in json.dumps(rec.event())
