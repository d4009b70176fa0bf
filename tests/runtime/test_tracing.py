"""OpenTelemetry spans per run and per node, from the observer hook, checked with the SDK's in-memory exporter."""

from __future__ import annotations

import subprocess
import sys

import pytest

pytest.importorskip("opentelemetry.sdk")

from opentelemetry.sdk.trace import TracerProvider  # noqa: E402
from opentelemetry.sdk.trace.export import SimpleSpanProcessor  # noqa: E402
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter  # noqa: E402
from opentelemetry.trace import StatusCode  # noqa: E402

from kailash.nodes.code.python import PythonCodeNode  # noqa: E402
from kailash.nodes.logic.operations import SwitchNode  # noqa: E402
from kailash.runtime import LocalRuntime, ParallelRuntime, tracing  # noqa: E402
from kailash.runtime.tracing import OpenTelemetryObserver  # noqa: E402
from kailash.workflow import Workflow  # noqa: E402


@pytest.fixture
def spans():
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    yield provider, exporter
    tracing.disable()


def chain(fail: bool = False) -> Workflow:
    wf = Workflow("traced")
    wf.add_node("make", PythonCodeNode(code="result = 2"))
    wf.add_node("use", PythonCodeNode(code="raise ValueError('no good')" if fail else "result = data * 3"))
    wf.connect("make", "use", mapping={"result": "data"})
    return wf


def test_a_run_is_a_span_with_a_child_span_per_node(spans):
    provider, exporter = spans
    _, run_id = LocalRuntime(observers=[OpenTelemetryObserver(provider)]).execute(chain())
    finished = {s.name: s for s in exporter.get_finished_spans()}
    assert set(finished) == {"kailash.run traced", "kailash.node make", "kailash.node use"}
    run = finished["kailash.run traced"]
    assert dict(run.attributes) == {"kailash.workflow": "traced", "kailash.run_id": run_id,
                                    "kailash.status": "completed"}
    for node_id in ("make", "use"):
        node = finished[f"kailash.node {node_id}"]
        assert node.parent is not None and node.parent.span_id == run.context.span_id
        assert node.context.trace_id == run.context.trace_id
        assert dict(node.attributes) == {"kailash.run_id": run_id, "kailash.node_id": node_id,
                                         "kailash.node_type": "PythonCodeNode", "kailash.workflow": "traced",
                                         "kailash.status": "completed"}
        assert run.start_time <= node.start_time <= node.end_time <= run.end_time
    assert finished["kailash.node make"].end_time <= finished["kailash.node use"].start_time


def test_a_failed_node_and_its_run_have_the_error_status(spans):
    provider, exporter = spans
    with pytest.raises(Exception):
        LocalRuntime(observers=[OpenTelemetryObserver(provider)]).execute(chain(fail=True))
    finished = {s.name: s for s in exporter.get_finished_spans()}
    use, run = finished["kailash.node use"], finished["kailash.run traced"]
    assert use.status.status_code == StatusCode.ERROR and "no good" in use.status.description
    assert use.attributes["kailash.status"] == "failed"
    assert run.status.status_code == StatusCode.ERROR and run.attributes["kailash.error_node"] == "use"
    assert finished["kailash.node make"].status.status_code == StatusCode.UNSET


def test_enable_traces_every_runtime_and_skipped_nodes(spans):
    provider, exporter = spans
    tracing.enable(provider)
    wf = Workflow("branchy")
    wf.add_node("src", PythonCodeNode(code="result = {'kind': 'a'}"))
    wf.add_node("route", SwitchNode(condition="kind", outputs=["a", "b"]))
    wf.add_node("on_a", PythonCodeNode(code="result = data"))
    wf.add_node("on_b", PythonCodeNode(code="result = data"))
    wf.connect("src", "route")
    wf.connect("route", "on_a", "a")
    wf.connect("route", "on_b", "b")
    ParallelRuntime().execute_sync(wf)
    statuses = {s.name: s.attributes["kailash.status"] for s in exporter.get_finished_spans()}
    assert statuses == {"kailash.run branchy": "completed", "kailash.node route": "completed",
                        "kailash.node src": "completed",
                        "kailash.node on_a": "completed", "kailash.node on_b": "skipped"}
    tracing.disable()
    exporter.clear()
    LocalRuntime().execute(chain())
    assert exporter.get_finished_spans() == ()  # off again: no spans


def test_tracing_is_off_by_default_and_on_with_the_environment_variable(tmp_path):
    code = ("from kailash.runtime import tracing; import kailash.runtime.engine; "
            "print(tracing.enabled() is not None)")
    off = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                         env={"PATH": "", "KAILASH_HOME": str(tmp_path)})
    on = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                        env={"PATH": "", "KAILASH_HOME": str(tmp_path), "KAILASH_OTEL": "1"})
    assert (off.stdout.strip(), on.stdout.strip()) == ("False", "True"), (off.stderr, on.stderr)
