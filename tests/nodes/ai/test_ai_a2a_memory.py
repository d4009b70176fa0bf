"""SharedMemoryPoolNode, A2ACoordinatorNode and A2AAgentNode."""

from __future__ import annotations

import pytest

from kailash.errors import NodeConfigurationError
from kailash.nodes.ai.a2a import A2AAgentNode, A2ACoordinatorNode, SharedMemoryPoolNode


def _memory() -> SharedMemoryPoolNode:
    memory = SharedMemoryPoolNode(name="memory")
    memory.run(action="write", agent_id="analyst", content="Tech sector up 18% year to date",
               tags=["market", "tech"], importance=0.9)
    memory.run(action="write", agent_id="analyst", content="Energy sector down 3%", tags=["market", "energy"],
               importance=0.6)
    memory.run(action="write", agent_id="admin", content="Team lunch moved to Friday", tags=["admin"], importance=0.2)
    return memory


def test_attention_filter_selects_by_tags_importance_agents_and_window():
    memory = _memory()
    read = memory.run(action="read", agent_id="strategist", attention_filter={"tags": ["market"]})["memories"]
    assert [m["content"] for m in read] == ["Tech sector up 18% year to date", "Energy sector down 3%"]
    strong = memory.run(action="read", attention_filter={"importance_threshold": 0.7})["memories"]
    assert [m["agent_id"] for m in strong] == ["analyst"] and len(strong) == 1
    assert memory.run(action="read", attention_filter={"agents": ["admin"]})["count"] == 1
    assert memory.run(action="read", attention_filter={"window_size": 1})["memories"][0]["importance"] == 0.9
    own = memory.run(action="read", agent_id="analyst", attention_filter={"exclude_own": True})["memories"]
    assert [m["agent_id"] for m in own] == ["admin"]


def test_query_by_meaning_and_subscriptions():
    memory = _memory()
    found = memory.run(action="query", query="how did the tech sector do this year", top_k=1)["memories"]
    assert found[0]["content"].startswith("Tech sector")
    memory.run(action="subscribe", agent_id="risk_bot", tags=["risk"])
    note = memory.run(action="write", agent_id="analyst", content="Volatility rising", tags=["risk"], importance=0.8)
    assert note["notified"] == ["risk_bot"]
    memory.run(action="write", agent_id="analyst", content="Unrelated", tags=["admin"])
    inbox = memory.run(action="read", agent_id="risk_bot", attention_filter={"tags": ["none"]})["notifications"]
    assert [m["content"] for m in inbox] == ["Volatility rising"]
    assert memory.run(action="read", agent_id="risk_bot")["notifications"] == []  # delivered once
    assert memory.run(action="stats")["by_agent"] == {"analyst": 4, "admin": 1}


def test_memory_errors_name_the_node():
    memory = SharedMemoryPoolNode(name="memory")
    with pytest.raises(NodeConfigurationError, match=r"node 'memory'.*action 'write' needs parameter 'content'"):
        memory.run(action="write", agent_id="a")
    with pytest.raises(NodeConfigurationError, match="'importance' must be within 0..1"):
        memory.run(action="write", content="x", importance=3)
    with pytest.raises(NodeConfigurationError, match="parameter 'action' got 'remember'"):
        memory.run(action="remember")


def _coordinator() -> A2ACoordinatorNode:
    c = A2ACoordinatorNode(name="coordinator")
    for aid, caps, perf, cost in [("analyst_001", ["data_analysis", "statistics"], 0.9, 3.0),
                                  ("analyst_002", ["data_analysis"], 0.7, 1.0),
                                  ("strategist_002", ["strategy", "planning"], 0.8, 1.0),
                                  ("researcher_003", ["research", "market_research"], 0.85, 1.0)]:
        c.run(action="register", agent_info={"agent_id": aid, "capabilities": caps, "availability": "ready",
                                             "performance": perf, "cost": cost})
    return c


def test_delegate_strategies():
    c = _coordinator()
    task = {"type": "analysis", "description": "Analyze sales data"}
    best = c.run(action="delegate", task=task, coordination_strategy="best_match")
    assert best["agent_id"] == "analyst_001" and best["score"] > 0
    rr = [c.run(action="delegate", task=task, coordination_strategy="round_robin")["agent_id"] for _ in range(3)]
    assert rr == ["analyst_001", "analyst_002", "analyst_001"]
    auction = c.run(action="delegate", task=task, coordination_strategy="auction")
    assert auction["agent_id"] == "analyst_002"  # cheaper bid wins
    assert set(auction["bids"]) == {"analyst_001", "analyst_002"}
    skills = c.run(action="delegate", task={"description": "x", "required_skills": ["planning"]})
    assert skills["agent_id"] == "strategist_002"
    none = c.run(action="delegate", task={"description": "bake a cake"})
    assert none["success"] is False and none["agent_id"] is None and "no available agent" in none["reason"]


def test_broadcast_and_consensus():
    c = _coordinator()
    sent = c.run(action="broadcast", message={"alert": "new data"}, target_agents=["analyst_001", "ghost"])
    assert sent["recipients"] == ["analyst_001"] and sent["unknown_agents"] == ["ghost"]
    assert c.messages_for("analyst_001")[0]["message"] == {"alert": "new data"}
    proposals = [{"id": "p1", "plan": "expand into new markets", "confidence": 0.6},
                 {"id": "p2", "plan": "improve data analysis and statistics tooling", "confidence": 0.7},
                 {"id": "p3", "plan": "market research before entering new markets", "confidence": 0.65}]
    out = c.run(action="consensus", proposals=proposals,
                voting_agents=["analyst_001", "strategist_002", "researcher_003"])
    assert out["votes"] == {"analyst_001": 1, "strategist_002": 1, "researcher_003": 2}
    assert out["winner"]["id"] == "p2" and out["tally"] == [0, 2, 1]
    assert out["consensus_reached"] is True and out["support"] == pytest.approx(2 / 3, abs=1e-3)
    strict = c.run(action="consensus", proposals=proposals, voting_agents=["analyst_001", "researcher_003"],
                   consensus_threshold=0.75)
    assert strict["consensus_reached"] is False


def test_coordinator_errors():
    c = A2ACoordinatorNode(name="coordinator")
    with pytest.raises(NodeConfigurationError, match="parameter 'agent_info'"):
        c.run(action="register", agent_info={"capabilities": []})
    with pytest.raises(NodeConfigurationError, match="parameter 'coordination_strategy' got 'lottery'"):
        c.run(action="delegate", task={"description": "x"}, coordination_strategy="lottery")
    with pytest.raises(NodeConfigurationError, match="parameter 'proposals'"):
        c.run(action="consensus", proposals=[])


def test_a2a_agent_reads_and_writes_shared_memory(time_server):
    memory = _memory()
    agent = A2AAgentNode(name="timekeeper", capabilities=["scheduling"], memory_pool=memory,
                         attention_filter={"tags": ["market"]}, mcp_servers=[time_server])
    out = agent.execute(task="What is the current time in Europe/London for the market open?")
    assert out["memories_used"] == 2
    assert out["tool_calls"][0]["tool"] == "get_current_time"
    assert out["tool_calls"][0]["arguments"] == {"timezone": "Europe/London"}
    assert "Europe/London" in out["response"]
    written = memory.run(action="read", attention_filter={"agents": ["timekeeper"]})["memories"]
    assert written[0]["id"] == out["memory_id"] and "scheduling" in written[0]["tags"]
    assert agent.to_dict()["config"]["memory_pool"] == {"node": "memory"}


def test_consensus_is_fair():
    c = _coordinator()
    proposals = [{"id": "p1", "plan": "expand into new markets", "confidence": 0.6},
                 {"id": "p2", "plan": "improve data analysis and statistics tooling", "confidence": 0.7},
                 {"id": "p3", "plan": "market research before entering new markets", "confidence": 0.65}]
    # never-registered voters cannot vote: an error naming them
    with pytest.raises(NodeConfigurationError, match=r"not registered: ghost_1, ghost_2"):
        c.run(action="consensus", proposals=proposals, voting_agents=["ghost_1", "analyst_001", "ghost_2"])
    # one vote per agent, whatever the list says
    twice = c.run(action="consensus", proposals=proposals, voting_agents=["analyst_001", "analyst_001"])
    assert twice["votes"] == {"analyst_001": 1} and twice["support"] == 1.0
    # the outcome does not depend on the order of proposals (ties included) or voters
    tied = [{"id": "a", "plan": "alpha plan", "confidence": 0.5}, {"id": "b", "plan": "beta plan", "confidence": 0.5}]
    import itertools

    winners = {c.run(action="consensus", proposals=list(order), voting_agents=list(voters))["winner"]["id"]
               for order in itertools.permutations(tied)
               for voters in itertools.permutations(["analyst_001", "strategist_002"])}
    assert len(winners) == 1
    winners = {c.run(action="consensus", proposals=list(order))["winner"]["id"]
               for order in itertools.permutations(proposals)}
    assert winners == {"p2"}
    out = c.run(action="consensus", proposals=proposals)
    assert set(out["decided_by"].values()) == {"heuristic"}


def test_consensus_votes_are_the_models_when_there_is_one(llm_server):
    # the scripted "idk" model never answers in shape: every vote falls back, and says why
    c = A2ACoordinatorNode(name="c", provider="openai", model="idk", base_url=f"{llm_server.url}/v1",
                           api_key=llm_server.key)
    c.run(action="register", agent_info={"agent_id": "a1", "capabilities": ["strategy"]})
    out = c.run(action="consensus", proposals=["plan x", "plan y"])
    assert out["decided_by"] == {"a1": "heuristic"} and out["events"][0]["purpose"] == "vote"


def test_delegated_tasks_reach_the_agent_and_results_come_back(time_server):
    from kailash.nodes.ai.a2a import A2AAgentNode

    c = _coordinator()
    d = c.run(action="delegate", task={"type": "analysis", "description": "Analyze sales data statistics"})
    assert d["agent_id"] == "analyst_001"
    assert c.run(action="results")["pending"] == [d["task_id"]]
    other = A2AAgentNode(name="other", agent_id="writer_999", coordinator=c)
    assert other.execute()["delegated_results"] == []  # nothing was delegated to it
    agent = A2AAgentNode(name="analyst", agent_id="analyst_001", capabilities=["data_analysis"], coordinator=c)
    out = agent.execute()
    assert [r["task_id"] for r in out["delegated_results"]] == [d["task_id"]]
    back = c.run(action="results", task_id=d["task_id"])
    assert back["success"] is True and back["result"]["agent_id"] == "analyst_001"
    assert back["result"]["response"] == out["delegated_results"][0]["response"] and back["pending"] == []
    with pytest.raises(NodeConfigurationError, match="parameter 'coordinator' expects an A2ACoordinatorNode"):
        A2AAgentNode(name="x", coordinator="nope").execute(task="t")
