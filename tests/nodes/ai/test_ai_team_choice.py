"""Issue 16: the model chooses the team when there is a model; its choice is validated.

The model here is the local OpenAI-compatible server of conftest.py, which answers
``echo: <the last message>``: a problem whose text carries a JSON answer makes the model
"answer" that JSON, so each rule can be met or broken on purpose, over the real wire
protocol. (What a real weak model does is pinned in tests/patterns/test_pattern_agents_real_model.py.)
"""

from __future__ import annotations

import json

import pytest

from kailash.nodes.ai import _organizing as org
from kailash.nodes.ai.intelligent_agent_orchestrator import OrchestrationManagerNode
from kailash.nodes.ai.self_organizing import TeamFormationNode

AGENTS = [
    {"id": "researcher", "capabilities": ["research", "market_research"], "performance": 0.85, "cost": 1.0},
    {"id": "analyst", "capabilities": ["data_analysis", "statistics"], "performance": 0.9, "cost": 2.0},
    {"id": "strategist", "capabilities": ["strategy", "coordination"], "performance": 0.8, "cost": 1.5},
    {"id": "designer", "capabilities": ["visualization"], "performance": 0.7, "cost": 0.5},
]
NEED = ["market_research", "data_analysis", "strategy"]


def former(llm_server, strategy="capability_matching", **kw) -> TeamFormationNode:
    return TeamFormationNode(name="tf", formation_strategy=strategy, provider="openai", model="echo",
                             base_url=f"{llm_server.url}/v1", api_key=llm_server.key, **kw)


def answering(answer: dict) -> dict:
    """A problem analysis whose text makes the echo model answer ``answer``."""
    return {"required_capabilities": NEED, "query": f"Plan the launch. {json.dumps(answer)}"}


def asked(llm_server, since: int) -> list[list[dict]]:
    return [r["body"]["messages"] for r in llm_server.requests[since:] if r["body"].get("model") == "echo"]


def test_offline_the_heuristic_chooses_and_says_so():
    out = TeamFormationNode(name="tf").execute(problem_analysis={"required_capabilities": NEED},
                                               available_agents=AGENTS)
    assert out["decided_by"] == "heuristic" and "model_error" not in out and out["events"] == []
    assert out["team"] == org.form_team(NEED, AGENTS)["team"]


def test_the_model_chooses_the_team(llm_server):
    since = len(llm_server.requests)
    out = former(llm_server).execute(problem_analysis=answering({"team": ["analyst", "designer"],
                                                                 "reason": "numbers and charts"}),
                                     available_agents=AGENTS)
    assert out["decided_by"] == "model" and out["team"] == ["analyst", "designer"]
    assert out["reasoning"] == "the model's choice: numbers and charts"
    # what the model's team covers is reported, not made up
    assert out["missing_capabilities"] == ["market_research", "strategy"] and out["coverage_ratio"] == 0.3333
    assert out["total_cost"] == 2.5 and [e["purpose"] for e in out["events"]] == ["team"]
    # the model was told the pool, the strategy and the rules
    prompt = json.dumps(asked(llm_server, since)[0])
    assert "researcher: research, market_research" in prompt and "capability_matching" in prompt


def test_unknown_agents_are_told_to_the_model_then_the_heuristic_decides(llm_server):
    since = len(llm_server.requests)
    out = former(llm_server).execute(problem_analysis=answering({"team": ["analyst", "ghost"], "reason": "x"}),
                                     available_agents=AGENTS)
    assert out["decided_by"] == "heuristic" and "'ghost' is not one of" in out["model_error"]
    assert out["team"] == org.form_team(NEED, AGENTS)["team"]
    conversations = asked(llm_server, since)
    assert len(conversations) == 2  # asked again once, told what was wrong
    assert "'ghost' is not one of" in conversations[1][-1]["content"]
    assert len(out["events"]) == 2


@pytest.mark.parametrize(("answer", "constraints", "why"), [
    ({"team": [], "reason": "none"}, None, "should be non-empty"),
    ({"team": ["analyst", "researcher", "strategist"], "reason": "all"}, {"max_team_size": 2}, "is too long"),
    ({"team": ["analyst", "analyst"], "reason": "twice"}, None, "non-unique"),
])
def test_a_team_out_of_bounds_is_refused(llm_server, answer, constraints, why):
    out = former(llm_server).execute(problem_analysis=answering(answer), available_agents=AGENTS,
                                     constraints=constraints)
    assert out["decided_by"] == "heuristic" and why in out["model_error"]
    assert out["team"] == org.form_team(NEED, AGENTS, "capability_matching", constraints)["team"]


def test_a_team_over_budget_is_refused(llm_server):
    out = former(llm_server, "market_based").execute(
        problem_analysis=answering({"team": ["analyst", "strategist"], "reason": "best"}), available_agents=AGENTS,
        constraints={"budget": 3})
    assert out["decided_by"] == "heuristic" and "over the budget 3" in out["model_error"]
    assert "broke a rule" in out["model_error"]
    assert out["total_cost"] <= 3


def test_hierarchical_the_leader_belongs_to_the_team(llm_server):
    out = former(llm_server, "hierarchical").execute(
        problem_analysis=answering({"leader": "strategist", "team": ["analyst", "researcher"], "reason": "lead"}),
        available_agents=AGENTS)
    assert out["decided_by"] == "model" and out["team"] == ["strategist", "analyst", "researcher"]
    assert out["structure"] == {"leader": "strategist", "members": {"market_research": "researcher",
                                                                    "data_analysis": "analyst",
                                                                    "strategy": "strategist"}}
    too_big = former(llm_server, "hierarchical").execute(
        problem_analysis=answering({"leader": "strategist", "team": ["analyst", "researcher"], "reason": "lead"}),
        available_agents=AGENTS, constraints={"max_team_size": 2})
    assert too_big["decided_by"] == "heuristic" and "with its leader has 3 members" in too_big["model_error"]


def test_the_orchestrator_reports_who_chose_its_team(llm_server, market_server):
    node = OrchestrationManagerNode(name="orchestrator", provider="openai", model="idk",
                                    base_url=f"{llm_server.url}/v1", api_key=llm_server.key, max_iterations=1)
    out = node.execute(query="Analyze market trends and recommend strategy", mcp_servers=[market_server])
    # a model that never answers in shape: asked, then the heuristic, which says why
    assert out["decided_by"]["team"] == "heuristic" == out["team_formation"]["decided_by"]
    assert "not a JSON object" in out["team_formation"]["model_error"]
    assert "team" in {e["purpose"] for e in out["events"] if e["type"] == "model_call"}
    offline = OrchestrationManagerNode(name="orchestrator", max_iterations=1).execute(
        query="Analyze market trends and recommend strategy", mcp_servers=[market_server])
    assert offline["decided_by"]["team"] == "heuristic" and "model_error" not in offline["team_formation"]
    assert offline["team_formation"]["team"] == offline["team"][:len(offline["team_formation"]["team"])]


def test_the_orchestrator_works_with_the_team_the_model_chose(llm_server, market_server):
    # one answer fits every decision's schema (none forbids extra keys): the plan, the team, the routing
    answer = {"subtasks": [{"description": "Collect sector trends", "capability": "market_research"}],
              "team": ["agent_007"], "reason": "trends first", "agent_id": "agent_007"}
    node = OrchestrationManagerNode(name="orchestrator", provider="openai", model="echo",
                                    base_url=f"{llm_server.url}/v1", api_key=llm_server.key, max_iterations=1)
    out = node.execute(query=f"Analyze market trends {json.dumps(answer)}", mcp_servers=[market_server])
    assert out["decided_by"]["decomposition"] == "model" and out["decided_by"]["team"] == "model"
    assert out["team_formation"]["team"] == ["agent_007"] and out["team"] == ["agent_007"]
    assert out["team_formation"]["reasoning"] == "the model's choice: trends first"
    # the supervisor (the model) sent the agent it chose to work
    assert out["decided_by"]["routing"] == "model"
    assert [f["agent_id"] for f in out["solution"]["findings"]] == ["agent_007"]
