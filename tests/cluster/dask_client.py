"""The submitting host of the cross-host Dask tests: ``python dask_client.py SCENARIO ADDRESS``.

Runs one scenario against the scheduler at ADDRESS and prints one JSON object (the last
line of stdout). Scenarios:

* ``cross``: a text file named in node config → a node class installed on the workers →
  a code node → a node class defined here in ``__main__`` (shipped by value); plus a fan
  of four slow nodes spread over the workers.
* ``missing``: a workflow with a node class only this host has (``kxc_private``).
* ``fan``: ``$KXC_N`` slow nodes (``$KXC_DELAY`` s each) feeding one join; if the run fails,
  waits for ``$KXC_RESUME_AT`` (a file holding a scheduler address) and resumes there.
"""

from __future__ import annotations

import json
import os
import sys
import time
from typing import Any

from kailash.nodes.base import Node, NodeParameter


class Signed(Node):
    """Defined in ``__main__``: travels to the workers by value (cloudpickle)."""

    def get_parameters(self) -> dict[str, NodeParameter]:
        return {"data": NodeParameter(default=None)}

    def run(self, data: Any) -> dict[str, Any]:
        return {"result": {"signed": f"{data}!", "host": os.environ.get("KXC_HOST")}}


def _error(exc: BaseException) -> dict[str, Any]:
    return {"type": type(exc).__name__, "message": str(exc), "node_id": getattr(exc, "node_id", None),
            "run_id": getattr(exc, "run_id", None)}


def cross(runtime: Any) -> dict[str, Any]:
    from kxc_nodes import SlowNode, WhereNode

    from kailash.nodes.code.python import PythonCodeNode
    from kailash.nodes.data.readers import TextReaderNode
    from kailash.workflow import Workflow

    wf = Workflow("cross")
    wf.add_node("read", TextReaderNode(file_path=os.environ["KXC_FILE"]))
    wf.add_node("where", WhereNode())
    wf.add_node("code", PythonCodeNode(code="import os\nresult = {'n': len(data['text']), "
                                            "'host': os.environ.get('KXC_HOST'), 'text': data['text']}"))
    wf.add_node("signed", Signed())
    wf.connect("read", "where", mapping={"data": "data"})
    wf.connect("where", "code", mapping={"result": "data"})
    wf.connect("code", "signed", mapping={"result": "data"})
    for i in range(4):
        wf.add_node(f"fan{i}", SlowNode(index=i, delay=0.3))
    results, run_id = runtime.execute(wf)
    return {"results": results, "run_id": run_id, "status": runtime.store.get_run(run_id).status}


def missing(runtime: Any) -> dict[str, Any]:
    from kxc_private import PrivateNode

    from kailash.nodes.code.python import PythonCodeNode
    from kailash.workflow import Workflow

    wf = Workflow("missing")
    wf.add_node("first", PythonCodeNode(code="result = 1"))
    wf.add_node("private", PrivateNode())
    wf.connect("first", "private", mapping={"result": "data"})
    try:
        runtime.execute(wf)
    except Exception as exc:
        return {"error": _error(exc)}
    return {"error": None}


def fan_workflow() -> Any:
    from kxc_nodes import SlowNode

    from kailash.nodes.code.python import PythonCodeNode
    from kailash.workflow import Workflow

    n, delay, token = int(os.environ.get("KXC_N", "8")), float(os.environ.get("KXC_DELAY", "0.5")), "f"
    wf = Workflow("fan")
    parts = ", ".join(f"p{i}" for i in range(n))
    wf.add_node("join", PythonCodeNode(code=f"result = sorted(d['index'] for d in [{parts}])"))
    for i in range(n):
        wf.add_node(f"s{i}", SlowNode(token=token, index=i, delay=delay))
        wf.connect(f"s{i}", "join", mapping={"result": f"p{i}"})
    return wf


def fan(runtime: Any) -> dict[str, Any]:
    from kailash.runtime.distributed import DaskRuntime

    wf = fan_workflow()
    started = time.monotonic()
    out: dict[str, Any] = {}
    try:
        results, run_id = runtime.execute(wf)
        out.update(status="completed", run_id=run_id, join=results["join"]["result"])
    except Exception as exc:
        out.update(status="failed", error=_error(exc))
        run_id = out["error"]["run_id"]
    out["seconds"] = time.monotonic() - started
    if run_id:
        record = runtime.store.get_run(run_id)
        out["record"] = {"status": record.status, "error": record.error, "error_node": record.error_node,
                         "nodes": {n.node_id: n.status for n in record.nodes}}
    resume_at = os.environ.get("KXC_RESUME_AT")
    if out["status"] == "failed" and resume_at and run_id:
        print(json.dumps({"waiting": True}), flush=True)
        deadline = time.monotonic() + 60
        while not os.path.exists(resume_at) and time.monotonic() < deadline:
            time.sleep(0.05)
        address = open(resume_at).read().strip()
        with DaskRuntime(address=address, store=runtime.store) as again:
            results, new_id = again.resume(run_id, wf)
        out["resumed"] = {"run_id": new_id, "join": results["join"]["result"],
                          "status": again.store.get_run(new_id).status}
    return out


def main() -> None:
    from kailash.runtime.distributed import DaskRuntime

    scenario, address = sys.argv[1], sys.argv[2]
    with DaskRuntime(address=address, connect_timeout=float(os.environ.get("KXC_CONNECT", "10")),
                     no_workers_timeout=float(os.environ.get("KXC_NO_WORKERS", "60"))) as runtime:
        out = {"cross": cross, "missing": missing, "fan": fan}[scenario](runtime)
    print(json.dumps(out, default=repr), flush=True)


if __name__ == "__main__":
    main()
