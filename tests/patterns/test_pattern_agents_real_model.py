"""Seed patterns 15-21 under a real model: the same sample code as the offline tests, the environment set.

The samples never name a provider, so a user points them at a model with the environment:
``KAILASH_LLM_PROVIDER=openai`` with ``OPENAI_BASE_URL``/``OPENAI_MODEL`` naming llama.cpp's
server running SmolLM2-135M (tests/nodes/ai/real_model.py). The code run is
:mod:`tests.patterns.agent_samples`, the same the offline tests run; only runtime
parameters the samples' nodes expose keep answers short (``max_tokens``, ``temperature``).

A 135M model is weak: it writes little of use, rarely calls tools, and may answer a
decision out of shape. What is pinned is what must hold whatever it does: runs complete
and are recorded; every decision says who made it (``model``, or ``heuristic`` with the
``model_error`` that made the model's answer unusable); the recording MCP servers
received only calls that fit their tools' schemas, exactly the calls the run reports as
sent; and a run whose answers rest on nothing obtained is never "converged" at high quality.
"""

from __future__ import annotations

import json

import pytest

from kailash.nodes.ai import _organizing as org
from kailash.runtime.store import default_store
from tests.nodes.ai.real_model import real_model
from tests.patterns.agent_samples import (
    AGENTS_17,
    HISTORY_18,
    PROPOSALS_20,
    REQUIRED_17,
    TASKS_16,
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

pytestmark = pytest.mark.slow

# runtime parameters the samples' nodes expose: short, reproducible answers on a 2-core machine
TUNING = {"max_tokens": 48, "temperature": 0.0, "timeout": 120}
DECIDERS = {"model", "heuristic"}


@pytest.fixture(scope="module")
def model():
    return real_model()


@pytest.fixture(autouse=True)
def _real_model_environment(model, monkeypatch):
    monkeypatch.setenv("KAILASH_LLM_PROVIDER", "openai")
    monkeypatch.setenv("OPENAI_BASE_URL", model.url)
    monkeypatch.setenv("OPENAI_MODEL", model.model)
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)


@pytest.fixture(scope="module", autouse=True)
def _close_mcp_sessions():
    yield
    from kailash.nodes.mcp import close_sessions

    close_sessions()


def _recorded_completed(run_id: str, nodes: set[str]) -> None:
    record = default_store().get_run(run_id)
    assert record is not None and record.status == "completed", record
    assert {n.node_id for n in record.nodes if n.status == "completed"} >= nodes
    json.dumps(record.to_dict(), default=str)  # the record is plain data


def _model_calls(events: list[dict], model) -> list[dict]:
    calls = [e for e in events if e.get("type") == "model_call"]
    for e in calls:  # every call names the real model, with latency and (unless it failed) tokens
        assert e["provider"] == "openai" and e["latency"] > 0, e
        assert e["error"] or (e["total_tokens"] and e["model"] == model.model), e
    return calls


def _said_who_decided(decision: dict) -> None:
    assert decision["decided_by"] in DECIDERS, decision
    if decision["decided_by"] == "heuristic":  # a model was configured: the output says why it did not decide
        assert decision.get("model_error"), decision


def _check_orchestrator_run(out: dict, servers: Servers, specs: dict[str, dict], model, *, pool_size: int) -> None:
    """What holds for an orchestrated run under a real model, whatever the model said."""
    assert 1 <= len(out["iterations"]) <= 5 and 0.0 <= out["quality"] <= 1.0
    # every decision says who made it
    by = out["decided_by"]
    _said_who_decided({"decided_by": by["decomposition"], "model_error": out["analysis"].get("model_error")})
    _said_who_decided(out["team_formation"])
    assert by["team"] == out["team_formation"]["decided_by"]
    assert by["routing"] in ("model", "heuristic", "mixed") and by["evaluation"] in DECIDERS
    assert all(h["evaluated_by"] in DECIDERS for h in out["iterations"])
    # the team comes from the pool, within its bounds (the model's choice is validated)
    pool = {f"agent_{i + 1:03d}" for i in range(pool_size)}
    formed = out["team_formation"]["team"]
    assert formed and len(set(formed)) == len(formed) and set(formed) <= pool
    assert len(formed) <= max(2, len(out["analysis"]["required_capabilities"]) + 2)
    assert set(out["team"]) <= pool and out["team"][:len(formed)] == formed  # recruits come after
    # each decision was asked of the model
    calls = _model_calls(out["events"], model)
    assert {"decomposition", "team", "routing", "agent", "evaluation", "synthesis"} <= {e["purpose"] for e in calls}
    # no schema-violating call reached a server; the servers saw exactly the calls reported as sent
    tool_events = [e for e in out["events"] if e.get("type") == "tool_call"]
    assert all(e["outcome"] in ("ok", "cached", "failed", "rejected") for e in tool_events)
    assert schema_violations(servers, specs) == []
    for name in specs:
        sent = [e for e in tool_events if e["server"] == name and e["outcome"] in ("ok", "failed")]
        assert len(servers.received(name)) == len(sent), name
    # scores are earned: nothing obtained means quality 0, never "converged"
    findings = out["solution"]["findings"]
    obtained = any(t["ok"] and t["result"] not in (None, "", [], {}) for f in findings for t in f["tool_calls"])
    informative = any(org.information(f["content"]) > 0 for f in findings)
    if not obtained or not informative:
        assert not (out["converged"] and out["quality"] >= 0.8), out["iterations"]
    if not obtained:
        assert out["quality"] == 0.0 and out["converged"] is False
    if out["converged"]:
        assert out["quality"] >= 0.8 and out["status"] == "converged"
    else:
        assert out["status"] in ("plateau", "stopped") and out["stop_reason"] != "quality_threshold"
    # the solution is well-formed: findings by team agents on the analysed subtasks
    subtasks = {s["id"] for s in out["analysis"]["subtasks"]}
    assert isinstance(out["solution"]["summary"], str)
    assert all(f["subtask_id"] in subtasks and f["agent_id"] in out["team"] and 0.2 <= f["confidence"] <= 0.95
               for f in findings)
    json.dumps(out)  # the output is plain data


def test_pattern_15_under_a_real_model(model, tmp_path):
    servers = Servers(tmp_path)
    run = pattern_15(servers, TUNING)
    out = run.result["orchestrator"]
    assert out["unreachable_servers"] == []
    _check_orchestrator_run(out, servers, {n: servers.script(n, s) for n, s in (
        ("market_data", "market_server.py"), ("financial", "finance_server.py"))}, model, pool_size=10)
    _recorded_completed(run.run_id, {"memory", "cache", "orchestrator"})
    # the orchestrator still worked through the workflow's own memory (every finding is shared)
    assert run.memory.run(action="read", agent_id="reader")["memories"]


def test_pattern_16_under_a_real_model(model, tmp_path):
    servers = Servers(tmp_path)
    with pattern_16(servers, TUNING) as run:
        for name in TASKS_16:
            out = run.result[name]
            assert isinstance(out["result"], str)
            _model_calls(out["finding"]["events"], model)
            for call in out["tool_calls"]:  # whatever the model asked for is accounted for
                assert call["outcome"] in ("ok", "cached", "failed", "rejected")
                if call["outcome"] == "rejected":
                    assert "not sent" in call["error"] or "unknown tool" in call["error"]
            assert out["cache_hits"] == sum(1 for c in out["tool_calls"] if c["cached"])
        # Agents automatically share tool results through cache: a call made again is a hit
        done = {(c["tool"], json.dumps(c["arguments"], sort_keys=True)) for n in TASKS_16
                for c in run.result[n]["tool_calls"] if c["ok"]}
        again = run.data_agent.run(task=TASKS_16["data_agent"]["task"], **TUNING)
        for c in again["tool_calls"]:
            if c["ok"] and (c["tool"], json.dumps(c["arguments"], sort_keys=True)) in done:
                assert c["cached"]
        # each agent shared its finding through the memory
        by_agent = run.memory.run(action="stats")["by_agent"]
        assert by_agent["research_agent"] == 1 and by_agent["data_agent"] == 2
        specs = {n: servers.script(n, s) for n, s in (("research_tools", "research_mcp_server.py"),
                                                      ("data_tools", "data_mcp_server.py"))}
        assert schema_violations(servers, specs) == []
        sent = [c for n in TASKS_16 for c in run.result[n]["tool_calls"] if c["outcome"] in ("ok", "failed")]
        sent += [c for c in again["tool_calls"] if c["outcome"] in ("ok", "failed")]
        assert len(servers.received("research_tools")) + len(servers.received("data_tools")) == len(sent)
        _recorded_completed(run.run_id, set(TASKS_16))


@pytest.mark.parametrize("strategy", ["capability_matching", "swarm_based", "market_based", "hierarchical"])
def test_pattern_17_the_model_chooses_the_team(model, strategy):
    run = pattern_17(strategy)
    out = run.result["team_former"]
    assert out["strategy"] == strategy
    _said_who_decided(out)
    ids = [a["id"] for a in AGENTS_17]
    assert out["team"] and len(set(out["team"])) == len(out["team"]) and set(out["team"]) <= set(ids)
    # coverage is reported for the team actually chosen
    assert out["coverage_ratio"] == round(1 - len(out["missing_capabilities"]) / len(REQUIRED_17), 4)
    assert all(set(holders) <= set(out["team"]) for holders in out["coverage"].values())
    calls = _model_calls(out["events"], model)
    assert calls and {e["purpose"] for e in calls} == {"team"}  # the model was asked
    if out["decided_by"] == "model":
        assert out["reasoning"].startswith("the model's choice")
        if strategy == "hierarchical":
            assert out["structure"]["leader"] in out["team"]
    else:  # the strategy's heuristic decided, exactly as offline
        assert out["team"] == org.form_team(REQUIRED_17, AGENTS_17, strategy)["team"]
    _recorded_completed(run.run_id, {"team_former"})


def test_pattern_18_convergence_is_a_rule_under_a_model_too():
    run = pattern_18()
    assert run.result["convergence"]["should_stop"] is True
    assert run.result["convergence"]["reason"] == "quality_threshold"
    assert run.convergence.execute(iteration_history=HISTORY_18[:2])["reason"] == "min_iterations"


def test_pattern_19_cache_reuse_needs_no_model():
    run = pattern_19()
    assert run.cache_result["success"] is True
    assert run.similar_result["hit"] is True and run.similar_result["matched_key"] == "market_analysis_2024"


def test_pattern_20_votes_by_the_real_model(model):
    run = pattern_20()
    assert run.result["agent_id"] == "analyst_001"  # delegation by skills
    c = run.consensus
    voters = {"analyst_001", "strategist_002", "researcher_003"}
    assert set(c["votes"]) == voters and set(c["decided_by"]) == voters
    assert set(c["decided_by"].values()) <= DECIDERS and c["winner"] in PROPOSALS_20
    # the tally is the votes', and the verdict follows from it
    assert sum(c["tally"]) == 3 and c["tally"][c["winning_index"]] == max(c["tally"])
    assert c["support"] == round(max(c["tally"]) / 3, 4) and c["consensus_reached"] == (c["support"] >= 0.5)
    calls = _model_calls(c["events"], model)
    assert sum(1 for e in calls if e["purpose"] == "vote") >= 3
    assert run.results["coordinator"]["registered_agents"] == 3


def test_pattern_21_under_a_real_model(model, tmp_path):
    servers = Servers(tmp_path)
    run = pattern_21(servers, TUNING)
    out = run.result["mcp_orchestrator"]
    assert out["unreachable_servers"] == []
    assert all(("server" in e and "tool" in e) or "stage" in e or "subtask" in e for e in out["errors"])
    _check_orchestrator_run(out, servers, {n: {**c, "name": n} for n, c in run.mcp_config.items()}, model,
                            pool_size=15)
    _recorded_completed(run.run_id, {"mcp_orchestrator"})
