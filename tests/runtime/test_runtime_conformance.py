"""The runtime conformance suite: every runtime gives LocalRuntime's results, errors and records.

Each test builds fresh workflows (node state must not leak between runtimes), runs them
on LocalRuntime as the reference and on the runtime under test, and compares.
"""

from __future__ import annotations

import pytest
from runtime_nodes import AsyncDelayNode, BoomNode, FlakyNode, ScaleNode, SlowNode, TokenNode, outcome

from kailash.errors import NodeExecutionError, NodeTimeoutError, WorkflowValidationError
from kailash.nodes.code.python import PythonCodeNode
from kailash.nodes.logic.async_operations import AsyncMergeNode
from kailash.nodes.logic.operations import MergeNode, SwitchNode
from kailash.nodes.logic.workflow import WorkflowNode
from kailash.runtime.policies import policy_state
from kailash.workflow import Workflow

CUSTOMERS = [
    {"name": "Ada", "tier": "gold", "age": 36},
    {"name": "Grace", "tier": "silver", "age": 85},
    {"name": "Alan", "tier": "gold", "age": 41},
    {"name": "Edsger", "tier": "silver", "age": 17},
]


def linear() -> Workflow:
    wf = Workflow("linear")
    wf.add_node("load", PythonCodeNode(code="result = list(range(n))"))
    wf.add_node("square", PythonCodeNode(code="result = [x * x for x in data]"))
    wf.add_node("total", PythonCodeNode(code="result = {'sum': sum(data), 'label': label}", label="squares"))
    wf.connect("load", "square")
    wf.connect("square", "total")
    return wf


def diamond() -> Workflow:
    wf = Workflow("diamond")
    wf.add_node("src", PythonCodeNode(code="result = [3, 1, 2]"))
    wf.add_node("low", PythonCodeNode(code="result = min(data)"))
    wf.add_node("high", PythonCodeNode(code="result = max(data)"))
    wf.add_node("slow", AsyncDelayNode(delay=0.05, tag="slow"))
    wf.add_node("join", PythonCodeNode(code="result = (lo, hi, extra)"))
    for mid in ("low", "high", "slow"):
        wf.connect("src", mid)
    wf.connect("low", "join", mapping={"result": "lo"})
    wf.connect("high", "join", mapping={"result": "hi"})
    wf.connect("slow", "join", mapping={"result": "extra"})
    return wf


def branches() -> Workflow:
    """Two levels of switches; the 'bronze' and 'minor' paths are never taken."""
    wf = Workflow("branches")
    wf.add_node("customers", PythonCodeNode(code="result = rows"))
    wf.add_node("tier", SwitchNode(condition="tier", outputs=["gold", "silver", "bronze"]))
    wf.add_node("gold", PythonCodeNode(code="result = [dict(r, discount=0.2) for r in data]"))
    wf.add_node("silver", PythonCodeNode(code="result = [dict(r, discount=0.1) for r in data]"))
    wf.add_node("bronze", PythonCodeNode(code="result = [dict(r, discount=0.0) for r in data]"))
    wf.add_node("bronze_mail", PythonCodeNode(code="result = len(data)"))
    wf.add_node("adult", SwitchNode(condition="age >= 18"))
    wf.add_node("adults", PythonCodeNode(code="result = sorted(r['name'] for r in data)"))
    wf.add_node("minors", PythonCodeNode(code="result = sorted(r['name'] for r in data)"))
    wf.add_node("merge", MergeNode(merge_strategy="concat"))
    wf.connect("customers", "tier")
    for t in ("gold", "silver", "bronze"):
        wf.connect("tier", t, t)
        wf.connect(t, "merge")
    wf.connect("bronze", "bronze_mail")
    wf.connect("merge", "adult")
    wf.connect("adult", "adults", "true")
    wf.connect("adult", "minors", "false")
    return wf


def async_fan() -> Workflow:
    wf = Workflow("async-fan")
    for i in range(4):
        wf.add_node(f"a{i}", AsyncDelayNode(delay=0.05, tag=f"a{i}", data=i))
    wf.add_node("sync", PythonCodeNode(code="result = {'sync': 42}"))
    wf.add_node("merge", AsyncMergeNode(merge_strategy="dict_merge"))
    for i in range(4):
        wf.connect(f"a{i}", "merge")
    wf.connect("sync", "merge")
    return wf


def nested() -> Workflow:
    inner = Workflow("inner")
    inner.add_node("clean", PythonCodeNode(code="result = [s.strip().lower() for s in data]"))
    wf = Workflow("outer")
    wf.add_node("raw", PythonCodeNode(code="result = ['  A', 'b ', ' C ']"))
    wf.add_node("sub", WorkflowNode(workflow=inner, input_mapping={"data": "data"},
                                    output_mapping={"cleaned": "clean.result"}))
    wf.add_node("count", PythonCodeNode(code="result = len(cleaned)"))
    wf.connect("raw", "sub")
    wf.connect("sub", "count", mapping={"cleaned": "cleaned"})
    return wf


def failing() -> Workflow:
    wf = Workflow("failing")
    wf.add_node("load", TokenNode(x=[1, 2]))
    wf.add_node("check", BoomNode())
    wf.add_node("report", PythonCodeNode(code="result = data"))
    wf.connect("load", "check", mapping={"x": "data"})
    wf.connect("check", "report")
    return wf


CASES = {
    "linear": (linear, {"load": {"n": 5}}),
    "diamond": (diamond, None),
    "branches": (branches, {"customers": {"rows": CUSTOMERS}}),
    "async_fan": (async_fan, None),
    "nested": (nested, None),
}


@pytest.mark.parametrize("case", list(CASES))
def test_same_results_and_skipped_branches(runner, reference, case):
    build, params = CASES[case]
    expected = reference.run(build(), params)
    got = runner.run(build(), params)
    assert dict(got) == dict(expected)
    assert list(got) == list(expected)  # results come in the same (topological) order
    assert got.skipped == expected.skipped


def test_branch_results_are_right(runner):
    results = runner.run(branches(), {"customers": {"rows": CUSTOMERS}})
    assert set(results.skipped) == {"bronze", "bronze_mail"}
    assert "bronze" not in results and "bronze_mail" not in results
    assert results["adults"]["result"] == ["Ada", "Alan", "Grace"]
    assert results["minors"]["result"] == ["Edsger"]
    assert results["silver"]["result"][1]["discount"] == 0.1


def test_same_run_records(recording_runner, reference):
    runner = recording_runner
    params = {"customers": {"rows": CUSTOMERS}}
    ref = reference.record(reference.run(branches(), params).run_id)
    got = runner.record(runner.run(branches(), params).run_id)
    assert got.status == ref.status == "completed"
    assert [(n.node_id, n.status) for n in got.nodes] == [(n.node_id, n.status) for n in ref.nodes]
    assert got.runtime == runner.runtime.name
    assert got.workflow == "branches"


def test_same_error_and_failed_record(runner, reference):
    expected = outcome(lambda: reference.run(failing()))
    assert expected[0] == "NodeExecutionError" and expected[1] == "check"
    assert "cannot handle [1, 2]" in expected[2]
    with pytest.raises(NodeExecutionError) as info:
        runner.run(failing())
    err = info.value
    assert outcome(lambda: (_ for _ in ()).throw(err)) == expected
    assert err.node_id == "check"
    assert list(err.results) == ["load"]  # what finished before the failure
    record = runner.record(err.run_id)
    assert record.status == "failed" and record.error_node == "check"
    assert "cannot handle" in record.error
    assert [(n.node_id, n.status) for n in record.nodes] == [("load", "completed"), ("check", "failed")]
    assert record.outputs["load"]["x"] == [1, 2]


def needs_input() -> Workflow:
    wf = Workflow("needs-input")
    wf.add_node("first", TokenNode())
    wf.add_node("scale", ScaleNode())
    wf.connect("first", "scale", mapping={"x": "factor"})
    return wf


def test_same_validation_error_before_anything_runs(runner, reference):
    expected = outcome(lambda: reference.run(needs_input()))  # scale's 'value' is missing
    assert expected[:2] == ("WorkflowValidationError", "scale")
    assert "requires parameter 'value'" in expected[2]
    assert outcome(lambda: runner.run(needs_input())) == expected
    assert outcome(lambda: runner.run(needs_input(), {"scale": {"value": "7"}})) == outcome(
        lambda: reference.run(needs_input(), {"scale": {"value": "7"}}))
    with pytest.raises(WorkflowValidationError, match="parameter 'nn' names no node"):
        runner.run(needs_input(), {"nn": 1})
    assert runner.run(needs_input(), {"scale": {"value": 7}, "first": {"x": 3}})["scale"] == {"result": 21}


def test_retry_policy_is_honoured(runner):
    wf = Workflow("retry")
    wf.add_node("flaky", FlakyNode(failures=2, data="payload"))
    wf.add_node("after", PythonCodeNode(code="result = data['calls']"))
    wf.connect("flaky", "after")
    wf.set_policy("flaky", retries=2, backoff=0.01)
    assert runner.run(wf)["after"]["result"] == 3

    wf2 = Workflow("retry-exhausted")
    wf2.add_node("flaky", FlakyNode(failures=5))
    wf2.set_policy("flaky", retries=1, backoff=0.01, jitter=False)
    with pytest.raises(NodeExecutionError, match=r"node 'flaky' .*transient failure 2 \(failed 2 attempts\)"):
        runner.run(wf2)


def test_timeout_policy_stops_and_reports(runner):
    wf = Workflow("timeouts")
    wf.add_node("slow", SlowNode(seconds=5.0))
    wf.set_policy("slow", timeout=0.3)
    with pytest.raises(NodeTimeoutError, match=r"node 'slow' \(SlowNode\) timed out after 0.3 s") as info:
        runner.run(wf)
    assert info.value.node_id == "slow"

    wf2 = Workflow("async-timeout")
    wf2.add_node("wait", AsyncDelayNode(delay=5.0))
    wf2.set_policy("wait", timeout=0.2)
    with pytest.raises(NodeTimeoutError, match="node 'wait' .*timed out after 0.2 s"):
        runner.run(wf2)


def test_result_cache_is_shared_across_runs(runner):
    wf = Workflow("cached")
    wf.add_node("token", TokenNode())
    wf.set_policy("token", cache_ttl=60)
    first = runner.run(wf, {"token": {"x": 1}})["token"]
    again = runner.run(wf, {"token": {"x": 1}})["token"]
    other = runner.run(wf, {"token": {"x": 2}})["token"]
    assert again == first
    assert other["token"] != first["token"] and other["x"] == 2


def test_circuit_breaker_state_is_shared_across_runs(runner):
    wf = Workflow("breaker")
    wf.add_node("boom", BoomNode(data="x"))
    wf.set_policy("boom", circuit_breaker={"failure_threshold": 2, "reset_timeout": 60})
    for _ in range(2):
        with pytest.raises(NodeExecutionError, match="cannot handle 'x'"):
            runner.run(wf)
    with pytest.raises(NodeExecutionError, match="node 'boom': circuit breaker is open after 2 consecutive failures"):
        runner.run(wf)
    assert policy_state(wf.policies["boom"]).breaker.state == "open"  # the state lives in the runtime


def test_resume_reruns_only_the_failed_part(recording_runner):
    runner = recording_runner
    wf = failing()
    with pytest.raises(NodeExecutionError) as info:
        runner.run(wf)
    failed_id = info.value.run_id
    token = info.value.results["load"]["token"]
    results, new_id = runner.resume(failed_id, wf, parameters={"check": {"ok": True}})
    assert results["load"]["token"] == token  # reused, not run again
    assert results["report"]["result"] == [1, 2]
    record = runner.record(new_id)
    assert record.status == "completed" and record.parent_run_id == failed_id


def test_same_live_events(runner, reference):
    """Every runtime reports each node through the same recorder, live (Dask included)."""
    def events(r) -> tuple[list, list]:
        seen: list[dict] = []
        params = {"customers": {"rows": CUSTOMERS}}
        if r.kind == "parallel":
            r.runtime.execute_sync(branches(), params, observers=[seen.append])
        else:
            r.runtime.execute(branches(), params, observers=[seen.append])
        return [e["event"] for e in seen[:1] + seen[-1:]], sorted((e["event"], e.get("node_id")) for e in seen[1:-1])

    assert events(runner) == events(reference)
