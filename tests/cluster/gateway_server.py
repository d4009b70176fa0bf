"""A gateway replica for the cross-host tests: ``python gateway_server.py HOST PORT``.

Serves, on PostgreSQL at ``$KAILASH_DATABASE_URL`` (schemas ``$QUEUE_TEST_REGISTRY`` for
the registry, queue and tenants, ``$QUEUE_TEST_SCHEMA`` for the gateway's own namespace):
the code-registered workflow ``effects`` of tests/api/queue_gateway_server.py (three nodes,
each appending ``token node pid`` to ``$QUEUE_TEST_EFFECTS``), the operator key
``$GW_OPERATOR_KEY``, and the tenants of the shared registry. Schedules fire every 0.2 s tick.
"""

from __future__ import annotations

import os
import sys
import threading


def main() -> None:
    from queue_gateway_server import EffectNode

    from kailash.api.gateway import WorkflowGateway
    from kailash.api.postgres import PostgresStorage
    from kailash.api.tenancy import TenantRegistry
    from kailash.workflow import Workflow

    wf = Workflow("effects")
    for step in ("a", "b", "c"):
        wf.add_node(step, EffectNode(step=step))
    wf.connect("a", "b", mapping={"result": "data"})
    wf.connect("b", "c", mapping={"result": "data"})
    storage = PostgresStorage(os.environ["KAILASH_DATABASE_URL"], registry_schema=os.environ["QUEUE_TEST_REGISTRY"],
                              default_schema=os.environ["QUEUE_TEST_SCHEMA"])
    gw = WorkflowGateway(host=sys.argv[1], port=int(sys.argv[2]), api_keys=[os.environ["GW_OPERATOR_KEY"]],
                         tenants=TenantRegistry(storage=storage), storage=storage, queue_slots=4,
                         schedule_tick=0.2)
    gw.queue_options["expire_dead"] = False  # another host's dead process is noticed by its lease alone
    gw.register_workflow("effects", wf)
    gw.serve_in_thread(log_level="warning")
    sys.stdout.write("READY\n")
    sys.stdout.flush()
    threading.Event().wait()


if __name__ == "__main__":
    main()
