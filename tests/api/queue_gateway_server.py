"""A gateway process for the durable-queue tests: ``python queue_gateway_server.py``.

Serves workflow ``effects`` (three nodes ``a b c`` in a chain, or those named in
``$QUEUE_TEST_STEPS``, each appending ``token node pid`` to the file ``$QUEUE_TEST_EFFECTS`` —
the side effect the tests count — then sleeping ``$QUEUE_TEST_DELAY`` s, a tenth of it for
``a``, then appending the same line and the time to ``$QUEUE_TEST_ENDS`` if set) on a free port, prints
``PORT <n>`` and serves until killed.
Storage: PostgreSQL schemas ``$QUEUE_TEST_REGISTRY``/``$QUEUE_TEST_SCHEMA`` when
``KAILASH_DATABASE_URL`` is set, else SQLite under ``KAILASH_HOME``. ``$QUEUE_TEST_DASK``: run on
the Dask scheduler at that address (``dask_address``).
"""

from __future__ import annotations

import os
import sys
import threading
import time
from typing import Any

from kailash.nodes.base import Node, NodeParameter


class EffectNode(Node):
    """Appends one line per execution to the effects file (O_APPEND: whole lines, even from two processes)."""

    def get_parameters(self) -> dict[str, NodeParameter]:
        return {"token": NodeParameter(type=str, required=True), "step": NodeParameter(type=str, default="?"),
                "data": NodeParameter(default=None)}

    def run(self, token: str, step: str, data: Any) -> dict[str, Any]:
        go = os.environ.get("QUEUE_TEST_GO")  # the test lets every run start at once, once all are queued
        deadline = time.monotonic() + 60
        while go and not os.path.exists(go) and time.monotonic() < deadline:
            time.sleep(0.005)
        fd = os.open(os.environ["QUEUE_TEST_EFFECTS"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            os.write(fd, f"{token} {step} {os.getpid()}\n".encode())
        finally:
            os.close(fd)
        delay = float(os.environ.get("QUEUE_TEST_DELAY", "0.02"))
        time.sleep(delay / 10 if step == "a" else delay)  # a kill mostly finds runs past their first node
        ends = os.environ.get("QUEUE_TEST_ENDS")
        if ends:
            fd = os.open(ends, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            try:
                os.write(fd, f"{token} {step} {os.getpid()} {time.time():.4f}\n".encode())
            finally:
                os.close(fd)
        return {"result": f"{token}:{step}"}


def main() -> None:
    from kailash.api.gateway import WorkflowGateway
    from kailash.workflow import Workflow

    wf = Workflow("effects")
    steps = (os.environ.get("QUEUE_TEST_STEPS") or "a,b,c").split(",")
    for step in steps:
        wf.add_node(step, EffectNode(step=step))
    for before, after in zip(steps, steps[1:], strict=False):
        wf.connect(before, after, mapping={"result": "data"})
    storage = None
    url = os.environ.get("KAILASH_DATABASE_URL")
    if url:
        from kailash.api.postgres import PostgresStorage

        storage = PostgresStorage(url, registry_schema=os.environ["QUEUE_TEST_REGISTRY"],
                                  default_schema=os.environ["QUEUE_TEST_SCHEMA"])
    gw = WorkflowGateway(port=0, auth=False, storage=storage, queue_slots=int(os.environ.get("QUEUE_TEST_SLOTS", "4")),
                         on_interrupted=os.environ.get("QUEUE_TEST_ON_INTERRUPTED", "resume"),
                         dask_address=os.environ.get("QUEUE_TEST_DASK") or None)
    gw.queue_options["expire_dead"] = os.environ.get("QUEUE_TEST_EXPIRE_DEAD", "1") == "1"
    gw.register_workflow("effects", wf)
    running = gw.serve_in_thread(log_level="warning")
    sys.stdout.write(f"PORT {running.port}\n")
    sys.stdout.flush()
    threading.Event().wait()


if __name__ == "__main__":
    main()
