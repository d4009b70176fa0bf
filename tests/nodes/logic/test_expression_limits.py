"""Conditions are bounded: expressions that explode in time or memory are stopped.

A switch or stream stop condition may come from a caller of the gateway, so each
attack below must be stopped with a NodeExecutionError naming the node, the
parameter and the limit, instead of running for seconds or allocating gigabytes.
Each attack runs in a child process capped at 1 GiB of address space and 60 s, so
an unbounded evaluator fails the test instead of the machine.
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys

import pytest

from kailash.errors import NodeExecutionError
from kailash.nodes.data.streaming import EventStreamNode
from kailash.nodes.logic.expressions import compile_expression
from kailash.nodes.logic.operations import SwitchNode

ATTACKS = [
    "10**10**10",
    "2**(10**9) > 0",
    "len('a'*10**10) > 0",
    "len([0]*10**9) > 0",
    "len((1,)*10**9) > 0",
    "len([1 for a in [0]*10000 for b in [0]*10000 for c in [0]*10000]) > 0",  # 10**12 iterations
    "sum(1 for a in [0]*10**5 for b in [0]*10**5) > 0",
    "len('x'.center(10**10)) > 0",
    "len('x'.zfill(10**10)) > 0",
    "len(s.replace('', s)) > 0",
    "len(','.join([s]*1000)) > 0",
    "len(s.translate({120: s})) > 0",
    "len(('\\t'*1000).expandtabs(10**6)) > 0",
    "len((1).to_bytes(10**10, 'big')) > 0",
    "round(7, -10**9) == 0",
    "len(f'{1:>{10**10}}') > 0",
    "len(f'{1.5:.999999999f}') > 0",
    "len('%999999999d' % 1) > 0",
    "len('%*d' % (10**9, 1)) > 0",
    "len(sum([[0]*1000]*3000, [])) > 0",
    "len([x + x for x in ['y'*100000]*10000]) > 0",  # 2 GB of fresh strings
]

_CHILD = r"""
import json, resource, sys, time
resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30))
from kailash.errors import NodeExecutionError
from kailash.nodes.logic.expressions import compile_expression
expr = sys.argv[1]
ns = {"l": list(range(10000)), "s": "x" * 100000}
t0 = time.perf_counter()
try:
    compile_expression(expr, node_id="route", parameter="outputs.big")(ns)
    out = {"outcome": "ran"}
except NodeExecutionError as exc:
    out = {"outcome": "stopped", "message": str(exc), "parameter": exc.parameter, "node_id": exc.node_id}
except BaseException as exc:
    out = {"outcome": type(exc).__name__}
out["seconds"] = time.perf_counter() - t0
print(json.dumps(out))
"""


def _limits() -> None:
    resource.setrlimit(resource.RLIMIT_CPU, (60, 60))


@pytest.mark.parametrize("expr", ATTACKS)
def test_an_exploding_expression_is_stopped(expr):
    try:
        proc = subprocess.run([sys.executable, "-c", _CHILD, expr], capture_output=True, text=True, timeout=90,
                              preexec_fn=_limits)
    except subprocess.TimeoutExpired:
        pytest.fail(f"{expr!r} ran for more than 90 s")
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["outcome"] == "stopped", out
    assert out["node_id"] == "route" and out["parameter"] == "outputs.big"
    assert out["message"].startswith("node 'route': expression") and "was stopped: it would need" in out["message"]


@pytest.mark.parametrize(
    ("expr", "namespace", "expected"),
    [
        ("2**64", {}, 18446744073709551616),
        ("len('ab'*1000)", {}, 2000),
        ("[0]*3", {}, [0, 0, 0]),
        ("'x'.center(5, '-')", {}, "--x--"),
        ("'%05.1f' % x", {"x": 3.14159}, "003.1"),
        ("f'{x:>8.2f}'", {"x": 3.14159}, "    3.14"),
        ("f'{name!r}'", {"name": "a"}, "'a'"),
        ("', '.join(str(i) for i in items)", {"items": [1, 2, 3]}, "1, 2, 3"),
        ("[x for x in items if x > threshold]", {"items": [1, 5, 9], "threshold": 4}, [5, 9]),
        ("sum(items, 10)", {"items": [1, 2]}, 13),
        ("round(x, 2)", {"x": 2.34567}, 2.35),
        ("d.get('missing', 10**9)", {"d": {}}, 10**9),
    ],
)
def test_ordinary_expressions_still_work(expr, namespace, expected):
    assert compile_expression(expr)(namespace) == expected


def test_switch_node_stops_a_bounded_expression_with_its_name_and_parameter():
    node = SwitchNode(name="route", condition="tier", outputs={"big": "len('a' * 10**10) > 0", "rest": "True"})
    with pytest.raises(NodeExecutionError, match=r"node 'route': expression .* \(outputs.big\) was stopped") as info:
        node.execute(data={"tier": "gold"})
    assert info.value.parameter == "outputs.big"


def test_stream_stop_condition_uses_the_same_bounded_evaluator():
    node = EventStreamNode(name="feed", stream_url="ws://127.0.0.1:9/none", stop_condition="10**10**10 > 0")
    check = node._condition("10**10**10 > 0")
    with pytest.raises(NodeExecutionError, match=r"\(stop_condition\) was stopped: it would need an integer over"):
        check({"data": {}, "event_type": "x"})


def test_an_overlong_expression_is_refused_at_configuration():
    from kailash.errors import NodeConfigurationError

    with pytest.raises(NodeConfigurationError, match="over the 10000-character limit"):
        compile_expression("1+" * 6000 + "1", node_id="route")


def test_an_uploaded_switch_condition_is_stopped_in_the_gateway():
    """The report: ``9**9**8`` in an uploaded switch condition ran over 20 s in the gateway."""
    pytest.importorskip("fastapi")
    from starlette.testclient import TestClient

    from kailash.api.gateway import WorkflowGateway

    key = "expression-limit-key-0123456789"
    gw = WorkflowGateway(port=0, api_keys=[key])
    doc = {"nodes": [{"id": "route", "type": "SwitchNode",
                      "config": {"condition": "amount", "outputs": {"big": "9**9**8 > amount"}}}]}
    with TestClient(gw.app) as client:
        assert client.post("/workflows", json={"name": "sw", "workflow": doc}, headers={"X-API-Key": key}).status_code == 201
        reply = client.post("/workflows/sw/execute", json={"parameters": {"route": {"data": {"amount": 5}}}},
                            headers={"X-API-Key": key})
    error = reply.json()["error"]
    assert error["node_id"] == "route" and error["parameter"] == "outputs.big"
    # refused before the power is computed (the check is on the operands' sizes, not a clock)
    assert "was stopped: it would need an integer over 100000 bits" in error["message"]
