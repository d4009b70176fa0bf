"""DaskRuntime specifics: connecting, closing, what travels to the workers, and bad input.

The shared embedded cluster comes from ``dask_client`` (tests/runtime/conftest.py);
results, errors and skipped branches are covered by the conformance suite.
"""

from __future__ import annotations

import sys
import threading

import pytest
from runtime_nodes import TokenNode

pytest.importorskip("distributed")

from kailash.errors import KailashError, NodeConfigurationError, SecurityError, SerializationError  # noqa: E402
from kailash.nodes.base import Node  # noqa: E402
from kailash.nodes.data.readers import CSVReaderNode  # noqa: E402
from kailash.runtime import DaskRuntime  # noqa: E402
from kailash.runtime.distributed import ClusterConnectionError  # noqa: E402
from kailash.security.config import SecurityConfig, set_security_config  # noqa: E402
from kailash.workflow import Workflow  # noqa: E402


@pytest.mark.timeout(20)
def test_an_unreachable_scheduler_fails_fast_naming_the_address():
    with pytest.raises(ClusterConnectionError, match=r"cannot reach the Dask scheduler at tcp://127.0.0.1:9 "
                                                     r"within 1 s .*DaskRuntime\(\) for an embedded") as info:
        DaskRuntime(address="tcp://127.0.0.1:9", connect_timeout=1)
    assert isinstance(info.value, ConnectionError) and info.value.got == "tcp://127.0.0.1:9"


def test_a_malformed_address_is_refused():
    with pytest.raises(NodeConfigurationError, match=r"address must be a scheduler address like 'tcp://host:8786', "
                                                     r"got '127.0.0.1:8786'"):
        DaskRuntime(address="127.0.0.1:8786")


def test_missing_dask_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "distributed", None)
    with pytest.raises(ImportError, match=r"pip install 'kailash\[dask\]'"):
        DaskRuntime()


def test_a_closed_runtime_says_so_and_leaves_a_given_client_open(dask_client):
    wf = Workflow("closing")
    wf.add_node("t", TokenNode(x=1))
    with DaskRuntime(client=dask_client) as runtime:
        assert runtime.execute(wf)[0]["t"]["x"] == 1
    with pytest.raises(KailashError, match="DaskRuntime is closed"):
        runtime.execute(wf)
    assert dask_client.status == "running"
    assert DaskRuntime(client=dask_client).execute(wf)[0]["t"]["x"] == 1


class HoldsALock(Node):
    def __init__(self, **kw):
        super().__init__(**kw)
        self.lock = threading.Lock()

    def run(self):
        return {"result": 1}


def test_a_node_that_cannot_travel_is_named(dask_client):
    wf = Workflow("unpicklable")
    wf.add_node("fine", TokenNode())
    wf.add_node("locked", HoldsALock())
    with pytest.raises(SerializationError, match=r"node 'locked' \(HoldsALock\) cannot be sent to the workers: "
                                                 r"TypeError: cannot pickle '_thread.lock'") as info:
        DaskRuntime(client=dask_client).execute(wf)
    assert info.value.node_id == "locked"


def test_the_security_policy_applies_on_the_workers(dask_client, tmp_path):
    allowed = tmp_path / "allowed"
    allowed.mkdir()
    outside = tmp_path / "outside.csv"
    outside.write_text("a\n1\n")
    (allowed / "in.csv").write_text("a\n2\n")
    wf = Workflow("secure")
    wf.add_node("read", CSVReaderNode(file_path=str(outside)))
    runtime = DaskRuntime(client=dask_client)
    assert runtime.execute(wf)[0]["read"]["data"] == [{"a": 1}]
    set_security_config(SecurityConfig(allowed_directories=[str(allowed)], sandbox=False))
    with pytest.raises(SecurityError) as info:
        runtime.execute(wf)
    assert info.value.node_id == "read"
    wf2 = Workflow("secure-ok")
    wf2.add_node("read", CSVReaderNode(file_path=str(allowed / "in.csv")))
    assert runtime.execute(wf2)[0]["read"]["data"] == [{"a": 2}]


def test_observers_get_each_nodes_events(dask_client):
    events = []
    wf = Workflow("observed")
    wf.add_node("a", TokenNode())
    wf.add_node("b", TokenNode())
    wf.connect("a", "b", mapping={"token": "x"})
    results, run_id = DaskRuntime(client=dask_client, observers=[events.append]).execute(wf)
    assert [(e["event"], e.get("node_id")) for e in events] == [
        ("run_started", None), ("node_started", "a"), ("node_completed", "a"),
        ("node_started", "b"), ("node_completed", "b"), ("run_completed", None),
    ]
    assert results["b"]["x"] == results["a"]["token"]


def test_a_large_workflow_is_scattered_to_the_workers(dask_client, monkeypatch):
    import kailash.runtime.distributed as distributed_runtime

    monkeypatch.setattr(distributed_runtime, "_INLINE_PAYLOAD", 0)  # every payload counts as large
    wf = Workflow("scattered")
    wf.add_node("a", TokenNode(x="big"))
    wf.add_node("b", TokenNode())
    wf.connect("a", "b", mapping={"x": "x"})
    results, _ = DaskRuntime(client=dask_client).execute(wf)
    assert results["b"]["x"] == "big"


@pytest.mark.slow
@pytest.mark.timeout(90)
def test_a_worker_killed_mid_run_on_one_host_is_survived(tmp_path):
    """SIGKILL of a worker process mid-run: Dask runs its task again elsewhere; the run completes.
    (Across hosts, with the link cut too: tests/cluster/test_dask_hosts.py.)"""
    import os
    import signal
    import time

    from kailash.nodes.code.python import PythonCodeNode

    log = tmp_path / "pids.txt"
    wf = Workflow("survive")
    for i in range(4):
        wf.add_node(f"s{i}", PythonCodeNode(imports=["os", "time"], code=(
            f"open({str(log)!r}, 'a').write(f'{i} {{os.getpid()}}\\n')\ntime.sleep(0.8)\nresult = os.getpid()")))
    with DaskRuntime(n_workers=2, threads_per_worker=1, store=None) as runtime:
        done: dict = {}
        thread = threading.Thread(target=lambda: done.update(out=runtime.execute(wf)[0]))
        thread.start()
        deadline = time.monotonic() + 30
        while len({line.split()[1] for line in (log.read_text().splitlines() if log.exists() else [])}) < 2:
            assert time.monotonic() < deadline, "both workers never started a node"
            time.sleep(0.01)
        victim = int(log.read_text().splitlines()[0].split()[1])
        os.kill(victim, signal.SIGKILL)
        thread.join(60)
        assert not thread.is_alive(), "the run hung after a worker was killed"
    results = done["out"]
    assert sorted(results) == ["s0", "s1", "s2", "s3"]
    assert victim not in {results[f"s{i}"]["result"] for i in range(4)}  # the killed worker's node ran again
    ran = [line.split()[0] for line in log.read_text().splitlines()]
    assert len(ran) == 5 and sorted(set(ran)) == ["0", "1", "2", "3"]  # one node ran twice: the one killed


@pytest.mark.parametrize("bad", [0, -1, "60", True])
def test_a_bad_no_workers_timeout_is_refused_naming_it(bad):
    with pytest.raises(NodeConfigurationError, match="no_workers_timeout") as info:
        DaskRuntime(address="tcp://127.0.0.1:1", no_workers_timeout=bad)
    assert info.value.parameter == "no_workers_timeout"
