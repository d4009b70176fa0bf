"""Resuming failed runs: what is reused, what runs again, and every way it can be refused."""

from __future__ import annotations

import pytest
from runtime_nodes import BoomNode, FlakyNode, TokenNode

from kailash.errors import NodeExecutionError, SerializationError, WorkflowValidationError
from kailash.nodes.base import Node
from kailash.nodes.code.python import PythonCodeNode
from kailash.nodes.logic.operations import SwitchNode
from kailash.runtime import LocalRuntime, ParallelRuntime
from kailash.runtime.resume import resume
from kailash.security.secrets import Secret
from kailash.workflow import Workflow


def pipeline() -> Workflow:
    wf = Workflow("pipeline")
    wf.add_node("load", TokenNode(x=[1, 2, 3]))
    wf.add_node("side", TokenNode(x="independent"))
    wf.add_node("check", BoomNode())
    wf.add_node("report", PythonCodeNode(code="result = {'n': len(data)}"))
    wf.connect("load", "check", mapping={"x": "data"})
    wf.connect("check", "report")
    return wf


def fail(runtime, wf, parameters=None) -> NodeExecutionError:
    with pytest.raises(NodeExecutionError) as info:
        runtime.execute(wf, parameters)
    return info.value


def test_resume_reuses_finished_nodes_and_runs_the_rest():
    wf = pipeline()
    runtime = LocalRuntime()
    err = fail(runtime, wf)
    load_token = err.results["load"]["token"]
    results, new_id = runtime.resume(err.run_id, wf, parameters={"check": {"ok": True}})
    assert results["load"]["token"] == load_token
    assert results["report"] == {"result": {"n": 3}}
    assert "side" in results  # it had not run before the failure, so it runs now
    record = runtime.get_run(new_id)
    assert record.status == "completed" and record.parent_run_id == err.run_id
    assert new_id != err.run_id


def test_recorded_parameters_are_used_by_default_and_a_prefix_is_enough():
    wf = Workflow("flaky")
    wf.add_node("src", TokenNode())
    wf.add_node("flaky", FlakyNode(failures=1))
    wf.connect("src", "flaky", mapping={"token": "data"})
    runtime = LocalRuntime()
    err = fail(runtime, wf, {"src": {"x": "from-the-first-run"}})
    results, _ = runtime.resume(err.run_id[:12], wf)
    assert results["src"]["x"] == "from-the-first-run"
    assert results["flaky"]["result"]["calls"] == 2


def test_skipped_branches_stay_skipped():
    wf = Workflow("routes")
    wf.add_node("src", PythonCodeNode(code="result = {'kind': 'a', 'v': 1}"))
    wf.add_node("route", SwitchNode(condition="kind", outputs=["a", "b"]))
    wf.add_node("a", BoomNode())
    wf.add_node("b", PythonCodeNode(code="result = data"))
    wf.connect("src", "route")
    wf.connect("route", "a", "a")
    wf.connect("route", "b", "b")
    runtime = LocalRuntime()
    err = fail(runtime, wf)
    results, _ = runtime.resume(err.run_id, wf, parameters={"a": {"ok": True}})
    assert results["a"] == {"result": {"kind": "a", "v": 1}}
    assert results.skipped == ("b",)


def test_a_parallel_failure_can_be_resumed_by_any_runtime():
    wf = pipeline()
    with pytest.raises(NodeExecutionError) as info:
        ParallelRuntime().execute_sync(wf)
    err = info.value
    results, new_id = resume(err.run_id, wf, parameters={"check": {"ok": True}})  # default: LocalRuntime
    assert results["load"]["token"] == err.results["load"]["token"]
    assert LocalRuntime().get_run(new_id).runtime == "local"


def test_rerun_forces_nodes_and_their_dependents_to_run_again():
    wf = pipeline()
    runtime = LocalRuntime()
    err = fail(runtime, wf)
    results, _ = runtime.resume(err.run_id, wf, parameters={"check": {"ok": True}}, rerun=["load"])
    assert results["load"]["token"] != err.results["load"]["token"]
    with pytest.raises(WorkflowValidationError, match=r"rerun names unknown node\(s\) 'lod'"):
        runtime.resume(err.run_id, wf, rerun=["lod"])


class Opaque:
    def __repr__(self) -> str:
        return "Opaque()"


class OpaqueNode(Node):
    def run(self):
        return {"handle": Opaque(), "raw": b"\x00\x01"}


def test_an_output_that_was_not_recorded_is_reported_with_a_way_out():
    wf = Workflow("opaque")
    wf.add_node("make", OpaqueNode())
    wf.add_node("use", BoomNode())
    wf.connect("make", "use", mapping={"handle": "data"})
    runtime = LocalRuntime()
    err = fail(runtime, wf)
    with pytest.raises(SerializationError, match=r"output 'make.handle' of node 'make' was a Opaque \(not "
                                                 r"JSON-serialisable\).*pass rerun=\['make'\]") as info:
        runtime.resume(err.run_id, wf, parameters={"use": {"ok": True}})
    assert info.value.node_id == "make"
    results, _ = runtime.resume(err.run_id, wf, parameters={"use": {"ok": True}}, rerun=["make"])
    assert isinstance(results["use"]["result"], Opaque)


def test_secret_parameters_must_be_given_again_unless_they_came_from_the_environment(monkeypatch):
    wf = Workflow("secret")
    wf.add_node("call", FlakyNode(failures=1))
    runtime = LocalRuntime()
    err = fail(runtime, wf, {"call": {"data": Secret("s3cret")}})
    with pytest.raises(SerializationError, match=r"recorded parameters.call.data was a secret .*parameters="):
        runtime.resume(err.run_id, wf)
    assert runtime.resume(err.run_id, wf, parameters={"call": {"data": Secret("s3cret")}})[0]["call"]

    monkeypatch.setenv("CALL_TOKEN", "from-env")
    wf2 = Workflow("secret-env")
    wf2.add_node("call", FlakyNode(failures=1))
    err = fail(runtime, wf2, {"call": {"data": Secret("from-env", env="CALL_TOKEN")}})
    results, _ = runtime.resume(err.run_id, wf2)
    data = results["call"]["result"]["data"]
    assert isinstance(data, Secret) and data.reveal() == "from-env"


def test_refusals_name_the_run_and_say_why():
    runtime = LocalRuntime()
    wf = pipeline()
    with pytest.raises(WorkflowValidationError, match=r"cannot resume run 'nope': no such run in the run store"):
        runtime.resume("nope", wf)
    ok = Workflow("ok")
    ok.add_node("t", TokenNode())
    _, ok_id = runtime.execute(ok)
    with pytest.raises(WorkflowValidationError, match=rf"run '{ok_id}': it completed successfully .*nothing to resume"):
        runtime.resume(ok_id, ok)
    err = fail(runtime, wf)
    with pytest.raises(WorkflowValidationError, match="it is a run of workflow 'pipeline', not of 'ok'"):
        runtime.resume(err.run_id, ok)
    with pytest.raises(WorkflowValidationError, match=r"records no runs \(store=None\)"):
        LocalRuntime(store=None).resume(err.run_id, wf)
    quiet = LocalRuntime(record_outputs="never")
    err = fail(quiet, wf)
    with pytest.raises(WorkflowValidationError, match=r"recorded no node outputs \(.*record_outputs='never'\)"):
        quiet.resume(err.run_id, wf)
    with pytest.raises(WorkflowValidationError, match="run_id must be a run id string"):
        runtime.resume(None, wf)  # type: ignore[arg-type]
