"""A gateway that loses its claim on a queued run stops running it.

The attack: a gateway stalls past its lease (a long GC pause, a network cut to the
database), another gateway takes the run over and starts it again, and the first one,
waking up, goes on running the rest of the nodes: every later node runs twice, side
effects and all. The first gateway must start no node once its claim is gone, and must
not write an outcome over the record the taker is writing.
"""

from __future__ import annotations

import threading
import time
from typing import Any

from starlette.testclient import TestClient

from kailash.api.gateway import WorkflowGateway
from kailash.nodes.base import Node, NodeParameter
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
