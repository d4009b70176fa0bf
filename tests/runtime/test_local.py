"""LocalRuntime: results and run ids, failures carrying context, recording, observers."""

from __future__ import annotations

import asyncio

import pytest

from kailash.errors import KailashError, NodeConfigurationError, NodeExecutionError, WorkflowValidationError
from kailash.nodes.base import Node, NodeParameter
from kailash.nodes.base_async import AsyncNode
from kailash.nodes.code.python import PythonCodeNode
from kailash.nodes.logic.operations import SwitchNode
from kailash.runtime import LocalRuntime
from kailash.runtime.store import RunRecord, SQLiteRunStore
from kailash.security.secrets import Secret
from kailash.workflow import Workflow


def pipeline(fail_at: str | None = None) -> Workflow:
    wf = Workflow("pipeline")
    wf.add_node("load", PythonCodeNode(code="result = [1, 2, 3]"))
    wf.add_node("double", PythonCodeNode(code="result = [x * 2 for x in data]"))
    boom = "raise RuntimeError('disk full')\n" if fail_at == "total" else ""
    wf.add_node("total", PythonCodeNode(code=boom + "result = sum(data)"))
    wf.add_node("report", PythonCodeNode(code="result = f'total={data}'"))
    wf.connect("load", "double")
    wf.connect("double", "total")
    wf.connect("total", "report")
    return wf


def test_execute_returns_results_and_run_id():
    runtime = LocalRuntime()
    results, run_id = runtime.execute(pipeline())
    assert results["report"] == {"result": "total=12"}
    assert results["double"] == {"result": [2, 4, 6]}
    assert list(results) == ["load", "double", "total", "report"]
    assert isinstance(run_id, str) and len(run_id) == 32
    assert results.run_id == run_id and results.skipped == ()


def test_every_run_is_recorded_with_per_node_status_and_timing(_isolated_home):
    runtime = LocalRuntime()
    _, run_id = runtime.execute(pipeline(), parameters={"load": {"note": "hello"}})
    record = runtime.get_run(run_id)
    assert (record.run_id, record.workflow, record.status, record.runtime) == (run_id, "pipeline", "completed", "local")
    assert record.ended_at >= record.started_at and record.duration >= 0
    assert [(n.node_id, n.status) for n in record.nodes] == [
        ("load", "completed"), ("double", "completed"), ("total", "completed"), ("report", "completed")
    ]
    assert all(n.duration is not None and n.duration >= 0 for n in record.nodes)
    assert all(record.started_at <= n.started_at <= record.ended_at for n in record.nodes)
    assert record.parameters == {"load": {"note": "hello"}}
    assert record.outputs is None  # completed runs keep no outputs by default
    assert record.error is None
    assert (_isolated_home / "runs.db").exists()


def test_failed_run_error_carries_run_id_node_id_and_finished_results():
    runtime = LocalRuntime()
    with pytest.raises(NodeExecutionError, match=r"node 'total' \(PythonCodeNode\) failed at line 1 of its code: RuntimeError: disk full") as info:
        runtime.execute(pipeline(fail_at="total"))
    err = info.value
    assert err.node_id == "total"
    assert err.run_id and f"(run {err.run_id})" in str(err)
    assert err.results == {"load": {"result": [1, 2, 3]}, "double": {"result": [2, 4, 6]}}
    assert isinstance(err.__cause__, RuntimeError)
    record = runtime.get_run(err.run_id)
    assert record.status == "failed"
    assert record.error_node == "total"
    assert "RuntimeError: disk full" in record.error
    assert record.outputs == {"load": {"result": [1, 2, 3]}, "double": {"result": [2, 4, 6]}}
    assert [(n.node_id, n.status) for n in record.nodes] == [
        ("load", "completed"), ("double", "completed"), ("total", "failed")
    ]
    assert "disk full" in record.node("total").error


def test_plain_exception_from_a_custom_node_is_wrapped():
    class Flaky(Node):
        def run(self, **kw):
            raise OSError("connection reset")

    wf = Workflow("w")
    wf.add_node("flaky", Flaky())
    with pytest.raises(NodeExecutionError, match=r"node 'flaky' \(Flaky\) failed: OSError: connection reset") as info:
        LocalRuntime().execute(wf)
    assert isinstance(info.value.__cause__, OSError)
    assert info.value.run_id


def test_kailash_error_from_a_node_keeps_its_class_and_gains_run_context():
    class Strict(Node):
        def run(self, **kw):
            raise NodeConfigurationError("threshold must be positive", parameter="threshold")

    wf = Workflow("w")
    wf.add_node("strict", Strict())
    with pytest.raises(NodeConfigurationError, match="threshold must be positive") as info:
        LocalRuntime().execute(wf)
    assert info.value.node_id == "strict" and info.value.run_id and info.value.parameter == "threshold"


def test_invalid_workflow_runs_nothing_and_records_nothing():
    runtime = LocalRuntime()
    wf = pipeline()
    wf.connect("report", "load")
    with pytest.raises(WorkflowValidationError, match="cycle"):
        runtime.execute(wf)
    assert runtime.list_runs() == []


def test_record_outputs_always_and_never():
    always = LocalRuntime(record_outputs="always")
    _, run_id = always.execute(pipeline())
    assert always.get_run(run_id).outputs["total"] == {"result": 12}
    never = LocalRuntime(record_outputs="never")
    with pytest.raises(KailashError) as info:
        never.execute(pipeline(fail_at="total"))
    assert never.get_run(info.value.run_id).outputs is None
    with pytest.raises(NodeConfigurationError, match=r"record_outputs must be 'failed', 'always' or 'never', got 'sometimes'"):
        LocalRuntime(record_outputs="sometimes")


def test_store_none_records_nothing_and_store_path_records_there(tmp_path, _isolated_home):
    results, run_id = LocalRuntime(store=None).execute(pipeline())
    assert results["total"] == {"result": 12}
    assert LocalRuntime(store=None).get_run(run_id) is None
    assert LocalRuntime(store=None).list_runs() == []
    db = tmp_path / "elsewhere" / "runs.db"
    rt = LocalRuntime(store=str(db))
    _, run_id = rt.execute(pipeline())
    assert rt.get_run(run_id).status == "completed"  # a read flushes this store's pending writes
    assert SQLiteRunStore(db).get_run(run_id).status == "completed"
    assert LocalRuntime().get_run(run_id) is None  # not in the default store


def test_a_custom_store_receives_records():
    class MemoryStore:
        def __init__(self):
            self.runs = {}

        def record(self, run: RunRecord) -> None:
            self.runs[run.run_id] = run

        def get_run(self, run_id):
            return self.runs.get(run_id)

        def list_runs(self, **kw):
            return list(self.runs.values())

        def flush(self):
            pass

    store = MemoryStore()
    _, run_id = LocalRuntime(store=store).execute(pipeline())
    assert store.runs[run_id].status == "completed"
    assert len(store.runs[run_id].nodes) == 4


def test_explicit_run_id():
    runtime = LocalRuntime()
    _, run_id = runtime.execute(pipeline(), run_id="my-run-1")
    assert run_id == "my-run-1"
    assert runtime.get_run("my-run-1").status == "completed"


def test_secrets_in_parameters_are_not_recorded():
    runtime = LocalRuntime()
    wf = Workflow("secret")
    wf.add_node("use", PythonCodeNode(code="result = len(token.reveal())"))
    results, run_id = runtime.execute(wf, parameters={"use": {"token": Secret("sk-very-secret", env="API_TOKEN")}})
    assert results["use"] == {"result": 14}
    record = runtime.get_run(run_id)
    assert record.parameters == {"use": {"token": "${API_TOKEN}"}}
    assert "sk-very-secret" not in repr(record.to_dict())


def test_observers_see_every_event_in_order():
    events = []
    wf = Workflow("observed")
    wf.add_node("router", SwitchNode(condition="x > 0"))
    wf.add_node("yes", PythonCodeNode(code="result = 'yes'"))
    wf.add_node("no", PythonCodeNode(code="result = 'no'"))
    wf.connect("router", "yes", "true")
    wf.connect("router", "no", "false")
    runtime = LocalRuntime(observers=[events.append])
    _, run_id = runtime.execute(wf, parameters={"router": {"data": {"x": 1}}})
    kinds = [(e["event"], e.get("node_id")) for e in events]
    assert kinds == [
        ("run_started", None),
        ("node_started", "router"), ("node_completed", "router"),
        ("node_started", "yes"), ("node_completed", "yes"),
        ("node_skipped", "no"),
        ("run_completed", None),
    ]
    assert all(e["run_id"] == run_id for e in events)
    assert all(e["duration"] >= 0 for e in events if e["event"] == "node_completed")


def test_per_call_observers_and_failure_events():
    events = []
    with pytest.raises(KailashError):
        LocalRuntime().execute(pipeline(fail_at="total"), observers=[events.append])
    assert [e["event"] for e in events][-2:] == ["node_failed", "run_failed"]
    assert events[-1]["error_node"] == "total"


def test_a_broken_observer_never_breaks_a_run():
    def broken(event):
        raise ValueError("observer bug")

    results, _ = LocalRuntime(observers=[broken]).execute(pipeline())
    assert results["total"] == {"result": 12}


def test_async_nodes_run_in_the_local_runtime_even_inside_an_event_loop():
    class Fetch(AsyncNode):
        def get_parameters(self):
            return {"n": NodeParameter(type=int, default=3)}

        async def async_run(self, n):
            await asyncio.sleep(0)
            return {"result": list(range(n))}

    wf = Workflow("async")
    wf.add_node("fetch", Fetch())
    wf.add_node("count", PythonCodeNode(code="result = len(data)"))
    wf.connect("fetch", "count")
    assert LocalRuntime(store=None).execute(wf)[0]["count"] == {"result": 3}

    async def main():
        return LocalRuntime(store=None).execute(wf, parameters={"fetch": {"n": 5}})[0]

    assert asyncio.run(main())["count"] == {"result": 5}


def test_results_of_separate_runs_are_independent():
    runtime = LocalRuntime(store=None)
    wf = Workflow("w")
    wf.add_node("echo", PythonCodeNode(code="result = data"))
    first, _ = runtime.execute(wf, parameters={"echo": {"data": 1}})
    second, _ = runtime.execute(wf, parameters={"echo": {"data": 2}})
    assert first["echo"] == {"result": 1} and second["echo"] == {"result": 2}


def test_list_runs_filters(_isolated_home):
    runtime = LocalRuntime()
    runtime.execute(pipeline())
    with pytest.raises(KailashError):
        runtime.execute(pipeline(fail_at="total"))
    other = Workflow("other")
    other.add_node("a", PythonCodeNode(code="result = 1"))
    runtime.execute(other)
    assert len(runtime.list_runs()) == 3
    assert [r.status for r in runtime.list_runs(workflow="pipeline", status="failed")] == ["failed"]
    assert [r.workflow for r in runtime.list_runs(limit=1)] == ["other"]
