"""The run API exposes what each node printed and logged (``output``), with secrets masked."""

from __future__ import annotations

from typing import Any

from gateway_test_helpers import HEADERS

from kailash.nodes.base import Node, NodeParameter
from kailash.nodes.code.python import PythonCodeNode
from kailash.security.secrets import Secret, reveal
from kailash.workflow import Workflow


class Announcer(Node):
    def get_parameters(self) -> dict[str, NodeParameter]:
        return {"token": NodeParameter(type=(str, Secret), required=True, secret=True)}

    def run(self, token: Any) -> dict[str, Any]:
        print(f"connecting with {reveal(token)}")
        return {"ok": True}


def test_get_run_has_each_nodes_output_for_sync_and_async_runs(gateway, client, monkeypatch):
    wf = Workflow("noisy")
    wf.add_node("say", PythonCodeNode(code="print('step one done')\nresult = 1"))
    wf.add_node("announce", Announcer())
    gateway.register_workflow("noisy", wf)
    token = "tok-NEVER-SHOWN-9876"
    params = {"parameters": {"announce": {"token": token}}}
    sync = client.post("/workflows/noisy/execute", json=params, headers=HEADERS)
    assert sync.status_code == 200
    run = client.get(f"/runs/{sync.json()['run_id']}", headers=HEADERS)
    output = run.json()["output"]
    assert output["say"] == "step one done\n"
    assert output["announce"].startswith("connecting with ") and token not in run.text
    monkeypatch.setenv("NOISY_TOKEN", token)  # a queued run names its secret; the gateway resolves it
    queued = {"parameters": {"announce": {"token": "${NOISY_TOKEN}"}}}
    started = client.post("/workflows/noisy/execute?async=true", json=queued, headers=HEADERS)
    assert started.status_code == 202
    for _ in range(200):
        body = client.get(f"/runs/{started.json()['run_id']}", headers=HEADERS).json()
        if body["status"] not in ("running", "queued"):
            break
        import time

        time.sleep(0.05)
    assert body["status"] == "completed" and body["output"]["say"] == "step one done\n"
