"""Property-based tests: save/load round trips, topological order and cycles, input
precedence, switch partitioning."""

from __future__ import annotations

import re

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kailash.errors import WorkflowValidationError
from kailash.nodes.base import Node, NodeParameter
from kailash.nodes.code.python import PythonCodeNode
from kailash.nodes.logic.operations import SwitchNode
from kailash.runtime import LocalRuntime
from kailash.workflow import Workflow
from kailash.workflow.serialization import dumps, loads

SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@st.composite
def dags(draw, max_nodes: int = 9):
    """(n, edges, order): node ``i`` may only feed nodes after it; inserted in a shuffled order."""
    n = draw(st.integers(min_value=1, max_value=max_nodes))
    edges = sorted({(i, j) for i in range(n) for j in range(i + 1, n) if draw(st.booleans())})
    order = draw(st.permutations(range(n)))
    return n, edges, list(order)


def build_sum_workflow(n, edges, order, constants):
    """Node i computes constants[i] + the sum of its upstream results (explicit mappings)."""
    wf = Workflow("dag")
    ups = {j: [i for i, t in edges if t == j] for j in range(n)}
    for j in order:
        names = [f"u{i}" for i in ups[j]]
        wf.add_node(f"n{j}", PythonCodeNode(code=f"result = {constants[j]} + sum([{', '.join(names)}])"))
    for i, j in edges:
        wf.connect(f"n{i}", f"n{j}", mapping={"result": f"u{i}"})
    return wf


@SETTINGS
@given(dags(), st.data())
def test_topological_order_respects_every_connection_and_results_are_correct(dag, data):
    n, edges, order = dag
    constants = data.draw(st.lists(st.integers(-50, 50), min_size=n, max_size=n))
    wf = build_sum_workflow(n, edges, order, constants)
    steps = [s.id for s in wf.compile().steps]
    assert sorted(steps) == sorted(f"n{i}" for i in range(n))
    position = {sid: k for k, sid in enumerate(steps)}
    for i, j in edges:
        assert position[f"n{i}"] < position[f"n{j}"]
    expected = {}
    for j in range(n):
        expected[j] = constants[j] + sum(expected[i] for i, t in edges if t == j)
    results, _ = LocalRuntime(store=None).execute(wf)
    assert {k: v["result"] for k, v in results.items()} == {f"n{j}": expected[j] for j in range(n)}


@SETTINGS
@given(dags(max_nodes=8), st.data())
def test_any_back_edge_is_reported_as_a_real_cycle(dag, data):
    n, edges, order = dag
    if n < 1:
        return
    j = data.draw(st.integers(0, n - 1))
    i = data.draw(st.integers(j, n - 1))  # i >= j: an edge back to (or onto) an earlier node
    reachable = {j}
    for a, b in edges:  # edges are sorted by source, so one pass finds everything j reaches
        if a in reachable:
            reachable.add(b)
    if i not in reachable:
        i = j  # a self-loop is always a cycle
    wf = build_sum_workflow(n, edges, order, [0] * n)
    wf.connect(f"n{i}", f"n{j}", mapping={"result": "back"})
    with pytest.raises(WorkflowValidationError) as info:
        wf.validate()
    match = re.search(r"the workflow has a cycle: (.*)$", str(info.value), re.M)
    assert match, str(info.value)
    path = match.group(1).split(" -> ")
    assert path[0] == path[-1]
    all_edges = {(f"n{a}", f"n{b}") for a, b in edges} | {(f"n{i}", f"n{j}")}
    for a, b in zip(path, path[1:], strict=False):
        assert (a, b) in all_edges


# -- save / load ------------------------------------------------------------------------------
plain_scalars = st.one_of(
    st.none(), st.booleans(), st.integers(-10**6, 10**6),
    st.floats(allow_nan=False, allow_infinity=False, width=32), st.text(max_size=20),
)
plain_values = st.recursive(
    plain_scalars,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(min_size=1, max_size=8), children, max_size=4),
    max_leaves=12,
)
identifiers = st.from_regex(r"[a-z][a-z0-9_]{0,6}", fullmatch=True).filter(
    lambda s: s not in {"code", "imports", "result", "data", "self", "security_config", "function", "name"}
    and s not in {"and", "as", "assert", "async", "await", "break", "class", "continue", "def", "del", "elif",
                  "else", "except", "finally", "for", "from", "global", "if", "import", "in", "is", "lambda",
                  "nonlocal", "not", "or", "pass", "raise", "return", "try", "while", "with", "yield"}
)


@SETTINGS
@given(dags(max_nodes=6), st.data(), st.sampled_from(["yaml", "json"]))
def test_save_load_round_trip_preserves_everything_and_runs_identically(dag, data, fmt):
    n, edges, order = dag
    constants = data.draw(st.lists(st.integers(-5, 5), min_size=n, max_size=n))
    wf = build_sum_workflow(n, edges, order, constants)
    wf.description = data.draw(st.text(max_size=30))
    wf.metadata = data.draw(st.dictionaries(st.text(min_size=1, max_size=5), plain_values, max_size=3))
    for node in wf.nodes.values():  # extra plain config travels as inputs the code ignores
        node.config.update(data.draw(st.dictionaries(identifiers, plain_values, max_size=3)))
    wf._touch()
    text = dumps(wf, fmt)
    back = loads(text, fmt)
    assert back.to_dict() == wf.to_dict()
    assert dumps(back, fmt) == text
    assert list(back.nodes) == list(wf.nodes)
    rt = LocalRuntime(store=None)
    assert rt.execute(back)[0] == rt.execute(wf)[0]


# -- input precedence -------------------------------------------------------------------------
class Probe(Node):
    """Reports the value its input ``x`` received."""

    def get_parameters(self):
        return {"x": NodeParameter(type=str, default="default"), "data": NodeParameter(default=None)}

    def run(self, x, data):
        return {"x": x}


class Offer(Node):
    """Offers ``x`` by name (default connection rule) and ``y`` for an explicit mapping."""

    def get_parameters(self):
        return {}

    def run(self):
        return {"x": "by-name", "y": "mapped"}


@SETTINGS
@given(config=st.booleans(), by_name=st.booleans(), mapped=st.booleans(), runtime=st.booleans())
def test_input_precedence(config, by_name, mapped, runtime):
    """Later wins: default < value offered by name < config < explicit connection < runtime parameter.

    (A value offered by name through a plain ``connect(a, b)`` does not override what the
    node was explicitly configured with; an explicit mapping does.)
    """
    wf = Workflow("precedence")
    wf.add_node("probe", Probe(**({"x": "config"} if config else {})))
    if by_name:
        wf.add_node("offer", Offer())
        wf.connect("offer", "probe")
    if mapped:
        wf.add_node("mapper", Offer())
        wf.connect("mapper", "probe", mapping={"y": "x"})
    params = {"probe": {"x": "runtime"}} if runtime else None
    expected = ("runtime" if runtime else "mapped" if mapped else "config" if config
                else "by-name" if by_name else "default")
    results, _ = LocalRuntime(store=None).execute(wf, parameters=params)
    assert results["probe"]["x"] == expected


# -- switch partitioning ----------------------------------------------------------------------
records = st.lists(st.sampled_from(["gold", "silver", "bronze", "lead", 1, None]), max_size=30).map(
    lambda tiers: [{"id": i, "tier": t} for i, t in enumerate(tiers)]
)


@SETTINGS
@given(records, st.lists(st.sampled_from(["gold", "silver", "bronze", "1"]), unique=True, min_size=1))
def test_switch_partitions_every_record_exactly_once_in_order(recs, values):
    out = SwitchNode(condition="tier", outputs=values).execute(data=recs)
    assert set(out) <= {*values, "default"}
    for port, part in out.items():
        assert part, "ports without records are not produced"
        for r in part:
            if port == "default":
                assert str(r["tier"]) not in values
            else:
                assert str(r["tier"]) == port
        # each port keeps the input order
        positions = [r["id"] for r in part]
        assert positions == sorted(positions)
    flattened = sorted((r["id"], str(r["tier"])) for part in out.values() for r in part)
    assert flattened == sorted((r["id"], str(r["tier"])) for r in recs)


@SETTINGS
@given(records)
def test_expression_form_agrees_with_the_value_list_form(recs):
    listed = SwitchNode(condition="tier", outputs=["gold", "silver"]).execute(data=recs)
    expressed = SwitchNode(condition="tier", outputs={"gold": "tier == 'gold'", "silver": "value == 'silver'"}).execute(data=recs)
    assert listed == expressed
    for r in recs:  # a single record goes where its list would have put it
        (port,) = SwitchNode(condition="tier", outputs=["gold", "silver"]).execute(data=r)
        assert r in listed[port]


@SETTINGS
@given(records)
def test_in_a_workflow_exactly_the_ports_that_received_records_run(recs):
    wf = Workflow("partition")
    wf.add_node("router", SwitchNode(condition="tier", outputs=["gold", "silver", "bronze"]))
    for port in ("gold", "silver", "bronze", "default"):
        wf.add_node(port, PythonCodeNode(code="result = [r['id'] for r in data]"))
        wf.connect("router", port, port)
    results, _ = LocalRuntime(store=None).execute(wf, parameters={"router": {"data": recs}})
    taken = {str(r["tier"]) if str(r["tier"]) in ("gold", "silver", "bronze") else "default" for r in recs}
    assert {k for k in results if k != "router"} == taken
    assert set(results.skipped) == {"gold", "silver", "bronze", "default"} - taken
    for port in taken:
        assert results[port]["result"] == [r["id"] for r in results["router"][port]]
