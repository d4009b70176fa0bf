"""Property: every exported YAML/JSON loads back with Workflow.load and runs identically.

Workflows are generated as random DAGs of PythonCodeNodes (small arithmetic code, fed
through explicit mappings, the default connection rule, or switch ports) and SwitchNodes
(expression and value forms, nested), with random entry parameters.
"""

from __future__ import annotations

import re
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kailash.nodes.code.python import PythonCodeNode
from kailash.nodes.logic.operations import SwitchNode
from kailash.runtime import LocalRuntime
from kailash.utils.export import WorkflowExporter
from kailash.workflow import Workflow

MOD = 7  # values stay small so value-form switch branches are actually taken


@st.composite
def generated(draw):
    wf = Workflow(draw(st.sampled_from(["gen", "Generated Flow", "g-1"])))
    kinds: dict[str, str] = {}
    ports: dict[str, list[str]] = {}
    params: dict[str, dict[str, int]] = {}
    for i in range(draw(st.integers(1, 7))):
        nid = f"n{i}"
        earlier = list(kinds)
        if earlier and draw(st.integers(0, 3)) == 0:
            parent = draw(st.sampled_from(earlier))
            if draw(st.booleans()):
                k = draw(st.integers(0, MOD))
                outputs: dict | list = {"lo": f"v < {k}", "hi": f"v >= {k}"}
                ports[nid] = ["lo", "hi", "default"]
            else:
                values = draw(st.lists(st.integers(0, MOD - 1), min_size=1, max_size=3, unique=True))
                outputs = values
                ports[nid] = [str(v) for v in values] + ["default"]
            wf.add_node(nid, SwitchNode(condition="v", outputs=outputs))
            if kinds[parent] == "code":
                wf.connect(parent, nid)
            elif draw(st.booleans()):
                wf.connect(parent, nid, draw(st.sampled_from(ports[parent])))
            else:
                wf.connect(parent, nid, mapping={draw(st.sampled_from(ports[parent])): "data"})
            kinds[nid] = "switch"
            continue
        parents = (
            draw(st.lists(st.sampled_from(earlier), max_size=min(3, len(earlier)), unique=True)) if earlier else []
        )
        b = draw(st.integers(-20, 20))
        if not parents:
            a = draw(st.integers(-9, 9))
            expr = f"x * {a} + {b}"
            params[nid] = {"x": draw(st.integers(-100, 100))}
        elif len(parents) == 1 and kinds[parents[0]] == "code" and draw(st.booleans()):
            wf.connect(parents[0], nid)  # default rule: result -> data
            expr = f"data['v'] * {draw(st.integers(-9, 9))} + {b}"
        else:
            terms = []
            for j, p in enumerate(parents):
                out = "result" if kinds[p] == "code" else draw(st.sampled_from(ports[p]))
                wf.connect(p, nid, mapping={out: f"in_{j}"})
                terms.append(f"in_{j}['v'] * {draw(st.integers(-9, 9))}")
            expr = f" {draw(st.sampled_from(['+', '-', '*']))} ".join(terms) + f" + {b}"
        lines = [f"# node {nid}"] if draw(st.booleans()) else []
        lines.append(f"acc = {expr}")
        if draw(st.booleans()):
            lines.append("if acc < 0:\n    acc = -acc\n")
        value = f"{{'v': acc % {MOD}, 'raw': acc}}"
        lines.append(f"return {value}" if draw(st.booleans()) else f"result = {value}")
        wf.add_node(nid, PythonCodeNode(code="\n".join(lines) + "\n"))
        kinds[nid] = "code"
    return wf, params


def run(wf: Workflow, params: dict) -> dict:
    return dict(LocalRuntime(store=None).execute(wf, parameters=params)[0])


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=generated(), fmt=st.sampled_from(["yaml", "json"]), version=st.sampled_from([None, "2.1.0"]))
def test_exported_workflow_loads_back_and_runs_identically(case, fmt, version):
    wf, params = case
    expected = run(wf, params)
    config = {"include_dependencies": True, "metadata": {"origin": "property"}}
    if version:
        config["version"] = version
    with tempfile.TemporaryDirectory() as d:
        path = getattr(WorkflowExporter(wf), f"to_{fmt}")(Path(d) / f"wf.{fmt}", config=config)
        loaded = Workflow.load(path)
    assert loaded.version == (version or wf.version)
    assert [(n, type(x).__name__, x.config) for n, x in loaded.nodes.items()] == [
        (n, type(x).__name__, x.config) for n, x in wf.nodes.items()
    ]
    assert loaded.connections == wf.connections
    assert run(loaded, params) == expected


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(10**12), 10**12)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=30),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)
ENV_REF = re.compile(r"^\$\{[A-Za-z_][A-Za-z0-9_]*\}$")


def has_env_ref(value) -> bool:  # "${NAME}" strings are environment references by design
    if isinstance(value, str):
        return bool(ENV_REF.match(value))
    if isinstance(value, list):
        return any(has_env_ref(v) for v in value)
    if isinstance(value, dict):
        return any(has_env_ref(v) for v in value.values())
    return False


@settings(max_examples=150, deadline=None)
@given(
    payload=json_values.filter(lambda v: not has_env_ref(v)),
    fmt=st.sampled_from(["yaml", "json"]),
    code_tail=st.text(alphabet=" \t\n#x", max_size=6),
)
def test_config_values_and_code_text_survive_exactly(payload, fmt, code_tail):
    wf = Workflow("values")
    code = "result = payload" + (
        "\n" + code_tail if code_tail.strip(" \t\n") == "" else "\n# " + code_tail.replace("\n", " ")
    )
    wf.add_node("echo", PythonCodeNode(code=code, payload=payload))
    with tempfile.TemporaryDirectory() as d:
        path = getattr(WorkflowExporter(wf), f"to_{fmt}")(Path(d) / f"wf.{fmt}")
        loaded = Workflow.load(path)
    assert loaded.nodes["echo"].config == {"code": code, "payload": payload}
    assert run(loaded, {})["echo"]["result"] == payload
