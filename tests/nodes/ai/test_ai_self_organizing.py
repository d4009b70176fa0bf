"""Problem analysis, agent pools, team formation, evaluation and convergence."""

from __future__ import annotations

import time

import pytest

from kailash.errors import NodeConfigurationError
from kailash.nodes.ai.intelligent_agent_orchestrator import ConvergenceDetectorNode
from kailash.nodes.ai.self_organizing import (
    AgentPoolManagerNode,
    ProblemAnalyzerNode,
    SelfOrganizingAgentNode,
    SolutionEvaluatorNode,
    TeamFormationNode,
)

AGENTS = [
    {"id": "ana", "capabilities": ["data_analysis", "statistics"], "performance": 0.9, "cost": 3.0},
    {"id": "res", "capabilities": ["research", "market_research"], "performance": 0.8, "cost": 1.0},
    {"id": "str", "capabilities": ["strategy", "planning"], "performance": 0.85, "cost": 2.0},
    {"id": "gen", "capabilities": ["research", "data_analysis", "strategy", "coordination"], "performance": 0.7,
     "cost": 4.0},
    {"id": "viz", "capabilities": ["visualization"], "performance": 0.95, "cost": 0.5},
    {"id": "cheap", "capabilities": ["data_analysis"], "performance": 0.6, "cost": 0.5},
]
NEED = {"required_capabilities": ["market_research", "data_analysis", "strategy"]}


def test_problem_analyzer_decomposes_into_phased_subtasks():
    out = ProblemAnalyzerNode(name="pa").execute(problem_description="Analyze market trends and recommend strategy")
    a = out["analysis"]
    assert a["required_capabilities"] == ["market_research", "data_analysis", "strategy"]
    phases = {s["required_capabilities"][0]: s["phase"] for s in a["subtasks"]}
    assert phases == {"market_research": 0, "data_analysis": 1, "strategy": 2}
    strategy = next(s for s in a["subtasks"] if s["phase"] == 2)
    assert len(strategy["depends_on"]) == 2
    fixed = ProblemAnalyzerNode().execute(query="anything", context={"required_capabilities": ["visualization"]})
    assert fixed["required_capabilities"] == ["visualization"]
    with pytest.raises(NodeConfigurationError, match="parameter 'problem_description' is required"):
        ProblemAnalyzerNode(name="pa").execute()


@pytest.mark.parametrize("strategy", ["capability_matching", "swarm_based", "market_based", "hierarchical"])
def test_every_strategy_covers_the_needed_skills(strategy):
    out = TeamFormationNode(name="tf", formation_strategy=strategy).execute(problem_analysis=NEED,
                                                                           available_agents=AGENTS)
    assert out["strategy"] == strategy and out["coverage_ratio"] == 1.0 and out["missing_capabilities"] == []
    assert set(out["team"]) <= {a["id"] for a in AGENTS} and out["reasoning"]
    for ids in out["coverage"].values():
        assert ids and all(i in out["team"] for i in ids)


def test_strategies_differ_as_documented():
    form = lambda s, **c: TeamFormationNode(formation_strategy=s).execute(  # noqa: E731
        problem_analysis=NEED, available_agents=AGENTS, constraints=c or None)
    cm = form("capability_matching")
    assert cm["team"] == ["gen", "res"]  # gen covers two missing skills at once, then the best researcher
    swarm = form("swarm_based")
    assert len(swarm["team"]) > len(cm["team"])  # explores with a larger, diverse team
    market = form("market_based")
    assert "cheap" in market["team"] and market["total_cost"] < cm["total_cost"]  # value per cost
    assert form("market_based", budget=1.5)["total_cost"] <= 1.5
    hier = form("hierarchical")
    assert hier["structure"]["leader"] == "gen"  # most skills plus coordination
    assert set(hier["structure"]["members"]) == set(NEED["required_capabilities"])
    assert len(form("swarm_based", max_team_size=2)["team"]) == 2


def test_team_formation_input_errors():
    node = TeamFormationNode(name="tf")
    with pytest.raises(NodeConfigurationError, match=r"'formation_strategy' expects one of 'capability_matching', .*got 'random'"):
        node.execute(problem_analysis=NEED, available_agents=AGENTS, formation_strategy="random")
    with pytest.raises(NodeConfigurationError, match="entries \\[0\\] lack an 'id'"):
        node.execute(problem_analysis=NEED, available_agents=[{"capabilities": []}])


def test_agent_pool_manager_registers_finds_and_learns():
    pool = AgentPoolManagerNode(name="pool")
    pool.run(action="register", agent_id="a1", capabilities=["research"], performance=0.5)
    pool.run(action="register", agent_id="a2", capabilities=["data_analysis", "research"], performance=0.9)
    found = pool.run(action="find", required_capabilities=["research", "data_analysis"])["agents"]
    assert [a["id"] for a in found] == ["a2", "a1"] and found[0]["match"] == 1.0
    pool.run(action="update_performance", agent_id="a1", success=True)
    a1 = next(a for a in pool.run(action="list")["agents"] if a["id"] == "a1")
    assert a1["performance"] == pytest.approx(0.6) and a1["tasks"] == 1
    created = pool.run(action="create_pool", pool_size=5, capabilities=["forecasting"])["agents"]
    assert len(created) == 7 and any("forecasting" in a["capabilities"] for a in created)


def test_solution_evaluator_scores_and_lists_gaps():
    subtasks = [{"id": "s1", "description": "Collect prices"}, {"id": "s2", "description": "Assess risk"}]
    good = "prices: ACME 101.5, 102.25, 99.8 over three sessions; volume rising; spread narrowed to 0.4 percent"
    findings = [{"subtask_id": "s1", "content": good, "confidence": 0.9,
                 "tool_calls": [{"ok": True, "tool": "t", "server": "s", "result": [101.5, 102.25]}]}]
    partial = SolutionEvaluatorNode().execute(solution={"findings": findings},
                                              problem_requirements={"subtasks": subtasks, "quality_threshold": 0.8})
    assert partial["scores"]["coverage"] == 0.5 and partial["gaps"] == ["s2"]
    assert partial["recommendation"] == "iterate" and "subtask s2 has no finding" in partial["feedback"]
    assert partial["quality"] == 0.5 and partial["decided_by"] == "heuristic"
    findings.append({"subtask_id": "s2", "content": "volatility 0.31 implies drawdown exposure near 12 percent, hedge "
                                                    "with puts", "confidence": 0.9,
                     "tool_calls": [{"ok": True, "result": {"vol": 0.31}},
                                    {"ok": False, "tool": "q", "server": "s", "error": "down"}]})
    full = SolutionEvaluatorNode().execute(solution={"findings": findings},
                                           problem_requirements={"subtasks": subtasks, "quality_threshold": 0.8})
    assert full["quality"] > partial["quality"] and full["gaps"] == [] and full["quality"] == 1.0
    assert full["scores"]["reliability"] == pytest.approx(2 / 3, abs=1e-3)
    assert any("tool q on s failed: down" in f for f in full["feedback"])


def test_scores_are_earned_not_counted():
    subtasks = [{"id": "s1", "description": "Collect market data"}, {"id": "s2", "description": "Recommend strategy"}]
    # every tool failed: nothing obtained, quality 0 whatever the answers say
    failed = [{"subtask_id": s["id"], "content": "A long confident answer about markets, sectors and growth rates",
               "confidence": 0.9, "tool_calls": [{"ok": False, "tool": "t", "server": "dead", "error": "refused"}]}
              for s in subtasks]
    out = SolutionEvaluatorNode().execute(solution={"findings": failed}, problem_requirements={"subtasks": subtasks})
    assert out["quality"] == 0.0 and out["feedback"][0].startswith("no tool returned anything")
    # tools answered but the answers say nothing: "I don't know." carries no information
    blank = [{"subtask_id": s["id"], "content": "I don't know.", "confidence": 0.9,
              "tool_calls": [{"ok": True, "tool": "t", "server": "s", "result": {"x": 1}}]} for s in subtasks]
    out = SolutionEvaluatorNode().execute(solution={"findings": blank}, problem_requirements={"subtasks": subtasks})
    assert out["quality"] == 0.6 and out["scores"]["information"] == 0.0
    assert "subtask s1's answer carries no information" in out["feedback"]
    # an empty result is not a result
    empty = [{**f, "tool_calls": [{"ok": True, "result": []}]} for f in failed]
    assert SolutionEvaluatorNode().execute(solution={"findings": empty},
                                           problem_requirements={"subtasks": subtasks})["quality"] == 0.0


def test_self_organizing_agent_uses_tools_and_memory(market_server):
    from kailash.nodes.ai.a2a import SharedMemoryPoolNode
    from kailash.nodes.ai.intelligent_agent_orchestrator import IntelligentCacheNode

    memory, cache = SharedMemoryPoolNode(name="memory"), IntelligentCacheNode(name="cache")
    agent = SelfOrganizingAgentNode(name="so", agent_id="scout", capabilities=["market_research"],
                                    shared_memory=memory, shared_cache=cache, mcp_servers=[market_server])
    task = {"id": "st_1", "description": "Collect market trends for the energy sector",
            "required_capabilities": ["market_research"]}
    first = agent.execute(task=task)["result"]
    assert "market_data.get_market_trends" in first["tools_used"]
    assert first["tool_calls"][0]["arguments"] == {"sector": "energy"}
    assert "ytd_change_pct: -3.1" in first["content"] and first["confidence"] > 0.6
    second = agent.execute(task=task)["result"]
    assert all(t["cached"] for t in second["tool_calls"])  # the shared cache answered
    assert memory.run(action="stats")["by_agent"] == {"scout": 2}


# -- convergence -------------------------------------------------------------------------------
def detector(**kw):
    cfg = {"quality_threshold": 0.85, "improvement_threshold": 0.02, "max_iterations": 10, "timeout": 600,
           "min_iterations": 3, **kw}
    return ConvergenceDetectorNode(name="convergence", **cfg)


def q(*values):
    return [{"quality": v} for v in values]


def test_convergence_reasons_in_priority_order():
    c = detector()
    assert c.execute(iteration_history=[])["reason"] == "no_iterations"
    assert c.execute(iteration_history=q(0.9))["reason"] == "min_iterations"
    out = c.execute(iteration_history=q(0.5, 0.7, 0.86))
    assert (out["should_stop"], out["converged"], out["reason"]) == (True, True, "quality_threshold")
    out = c.execute(iteration_history=q(0.5, 0.6, 0.61))
    assert (out["should_stop"], out["reason"]) == (True, "improvement_threshold")
    # a plateau below the target stops but is not convergence
    assert (out["converged"], out["status"]) == (False, "plateau") and "plateau at quality 0.610" in out["detail"]
    out = c.execute(iteration_history=q(0.47, 0.47, 0.47))
    assert (out["should_stop"], out["converged"], out["status"]) == (True, False, "plateau")
    out = c.execute(iteration_history=q(0.5, 0.6, 0.7))
    assert (out["should_stop"], out["reason"], out["improvement"]) == (False, "continue", pytest.approx(0.1))
    out = detector(max_iterations=4).execute(iteration_history=q(0.1, 0.2, 0.3, 0.4))
    assert (out["should_stop"], out["converged"], out["reason"]) == (True, False, "max_iterations")
    out = c.execute(iteration_history=q(0.1), elapsed_seconds=601)
    assert (out["should_stop"], out["reason"]) == (True, "timeout")  # a hard limit beats min_iterations
    out = c.execute(iteration_history=[{"quality": 0.2, "duration": 400}, {"quality": 0.3, "duration": 300}])
    assert out["reason"] == "timeout" and out["elapsed_seconds"] == 700


def test_convergence_patience_start_time_and_own_history():
    assert detector(patience=2).execute(iteration_history=q(0.5, 0.6, 0.61))["should_stop"] is False
    assert detector(patience=2).execute(iteration_history=q(0.5, 0.6, 0.61, 0.615))["should_stop"] is True
    assert detector(timeout=5).execute(iteration_history=q(0.1), start_time=time.time() - 10)["reason"] == "timeout"
    c = detector(min_iterations=1)
    assert c.execute(quality=0.5)["should_stop"] is False
    assert c.execute(quality=0.9)["iterations"] == 2
    assert c.execute(quality=0.1, reset=True)["iterations"] == 1
    with pytest.raises(NodeConfigurationError, match="min_iterations \\(5\\) exceeds max_iterations \\(2\\)"):
        detector(min_iterations=5, max_iterations=2).execute(iteration_history=q(0.1))
