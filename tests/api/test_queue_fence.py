"""A gateway that loses its claim on a queued run stops running it.

The attack: a gateway stalls past its lease (a long GC pause, a network cut to the
database), another gateway takes the run over and starts it again, and the first one,
waking up, goes on running the rest of the nodes: every later node runs twice, side
effects and all. The first gateway must start no node once its claim is gone, and must
not write an outcome over the record the taker is writing.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from typing import Any

from starlette.testclient import TestClient

from kailash.api.gateway import WorkflowGateway
from kailash.nodes.base import Node, NodeParameter
from kailash.runtime.scheduler import lease_run
from kailash.workflow import Workflow
from gateway_test_helpers import API_KEY, HEADERS


class StepNode(Node):
    """Notes that it started, then waits until the test lets it finish."""

    started: list[str] = []
    entered = threading.Semaphore(0)
    go = threading.Semaphore(0)

    def get_parameters(self) -> dict[str, NodeParameter]:
        return {"data": NodeParameter(default=None)}

    def run(self, data: Any) -> dict[str, Any]:
        StepNode.started.append(self.name)
        StepNode.entered.release()
        if not StepNode.go.acquire(timeout=20):
            raise TimeoutError("the test never let the step finish")
        return {"result": (data or 0) + 1}


def _steps(n: int) -> Workflow:
    wf = Workflow("steps")
    for i in range(1, n + 1):
        wf.add_node(f"s{i}", StepNode(name=f"s{i}"))
        if i > 1:
            wf.connect(f"s{i - 1}", f"s{i}")
    return wf


def _until(predicate, timeout: float = 10.0) -> None:
    end = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > end:
            raise AssertionError("condition not reached")
        time.sleep(0.01)


def test_a_gateway_that_lost_its_claim_starts_no_further_node(_isolated_home):
    StepNode.started.clear()
    gw = WorkflowGateway(port=0, api_keys=[API_KEY], queue_lease=60)
    gw.register_workflow("steps", _steps(5))
    with TestClient(gw.app) as c:
        run_id = c.post("/workflows/steps/execute?async=true", json={}, headers=HEADERS).json()["run_id"]
        worker, queue = gw.runs.worker, gw.run_queue
        for _ in range(2):  # s1 and s2 finish here
            assert StepNode.entered.acquire(timeout=10)
            StepNode.go.release()
        assert StepNode.entered.acquire(timeout=10)  # s3 is running
        # this gateway stalls past its lease; another gateway claims the run
        queue.release(worker.id, [run_id])
        taken = queue.claim("other-gateway", limit=1, lease=60)
        assert [t.run_id for t in taken] == [run_id] and taken[0].attempts == 2
        worker.beat()  # this gateway's heartbeat finds the claim gone
        StepNode.go.release()  # s3 was in flight: it finishes
        try:
            assert not StepNode.entered.acquire(timeout=1.5), f"a node started after the claim was lost: " \
                                                              f"{StepNode.started}"
        finally:
            for _ in range(5):
                StepNode.go.release()  # (a broken gateway's later nodes end)
        _until(lambda: run_id not in worker.inflight)
        assert StepNode.started == ["s1", "s2", "s3"]  # s4 never started here
        row = queue.get(run_id)
        assert (row.status, row.owner, row.attempts) == ("running", "other-gateway", 2)  # still the taker's
        gw.workspace(None).runs.flush()
        record = gw.workspace(None).runs.get_run(run_id)
        assert record.status == "running"  # no outcome written over the record the taker writes
        assert [n.node_id for n in record.nodes if n.status == "completed"] == ["s1", "s2", "s3"]
        view = c.get(f"/runs/{run_id}", headers=HEADERS).json()
        assert view["status"] == "running" and [n["node_id"] for n in view["nodes"]] == ["s1", "s2", "s3"], view


def _start_steps(c: TestClient, gw: WorkflowGateway, n: int) -> tuple[str, Any, Any]:
    StepNode.started.clear()
    for sem in (StepNode.entered, StepNode.go):
        while sem.acquire(blocking=False):
            pass
    run_id = c.post("/workflows/steps/execute?async=true", json={}, headers=HEADERS).json()["run_id"]
    for _ in range(n):  # the first n-1 nodes finish; node n is running
        assert StepNode.entered.acquire(timeout=10)
        StepNode.go.release()
    assert StepNode.entered.acquire(timeout=10)
    return run_id, gw.runs.worker, gw.run_queue


def test_a_lease_lapsed_by_the_gateways_own_clock_is_renewed_before_the_next_node(_isolated_home):
    """The gateway stalled past its lease but nobody took the run: the run's own thread renews
    the lease before its next node and goes on (no run is dropped for a pause alone)."""
    gw = WorkflowGateway(port=0, api_keys=[API_KEY], queue_lease=60)
    gw.register_workflow("steps", _steps(3))
    with TestClient(gw.app) as c:
        run_id, worker, queue = _start_steps(c, gw, 1)  # s2 is running
        fence = worker._fences[run_id]
        lease_run(fence, time.perf_counter() - 1)  # as after a stall: its lease ran out by this host's clock
        StepNode.go.release()
        assert StepNode.entered.acquire(timeout=10), "the run stopped though its claim was still held"
        assert fence.at > time.perf_counter() + 50  # renewed in the run's thread
        StepNode.go.release()
        _until(lambda: run_id not in worker.inflight)
        row = queue.get(run_id)
        assert (row.status, row.owner, row.attempts) == ("completed", worker.id, 1)
        assert StepNode.started == ["s1", "s2", "s3"]


def test_a_lapsed_lease_that_cannot_be_renewed_stops_the_run_and_lets_it_be_taken_over(_isolated_home):
    """The lease ran out and the database does not answer the renewal: the run starts no further
    node (another gateway may hold it by then), ends without an outcome, and its row is let go
    at once; claimed again (here by the same gateway), it resumes from the nodes that finished."""
    gw = WorkflowGateway(port=0, api_keys=[API_KEY], queue_lease=60)
    gw.register_workflow("steps", _steps(4))
    with TestClient(gw.app) as c:
        run_id, worker, queue = _start_steps(c, gw, 2)  # s3 is running
        renew = queue.renew

        def unreachable(*args: Any, **kwargs: Any) -> set[str]:
            raise sqlite3.OperationalError("unable to open database file")

        queue.renew = unreachable  # the fault: the renewal fails
        try:
            lease_run(worker._fences[run_id], time.perf_counter() - 1)
            StepNode.go.release()  # s3 finishes; s4 must not start on this attempt
            # (had it started, it would wait for the test, the attempt would not end, nor the 60 s lease)
            _until(lambda: queue.get(run_id).attempts == 2)  # let go at once, and claimed again
        finally:
            queue.renew = renew
        assert StepNode.entered.acquire(timeout=10)  # attempt 2 runs s4
        StepNode.go.release()
        assert StepNode.started == ["s1", "s2", "s3", "s4"]
        _until(lambda: queue.get(run_id).status == "completed")
        gw.workspace(None).runs.flush()
        record = gw.workspace(None).runs.get_run(run_id)
        assert record.status == "completed" and record.extra["queue"]["attempt"] == 2
        assert record.extra["queue"]["reused"] == ["s1", "s2", "s3"]
