"""The run API shows an agent run's model and tool calls: in GET /runs/{id} and in the run's events."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from gateway_test_helpers import HEADERS

from kailash.nodes.ai.llm_agent import LLMAgentNode
from kailash.nodes.base import Node, NodeParameter
from kailash.nodes.mcp import call_tool
from kailash.security.secrets import Secret, reveal
from kailash.workflow import Workflow

DEMO = {"name": "demo", "command": sys.executable,
        "args": [str(Path(__file__).parents[1] / "nodes" / "mcp" / "servers" / "demo_server.py")]}
TOKEN = "tok-NEVER-SHOWN-5150"


@pytest.fixture(autouse=True)
def _close_mcp_sessions():
    yield
    from kailash.nodes.mcp import close_sessions

    close_sessions()


class Sender(Node):
    def get_parameters(self) -> dict[str, NodeParameter]:
        return {"token": NodeParameter(type=(str, Secret), required=True, secret=True)}

    def run(self, token: Any) -> dict[str, Any]:
        out = call_tool(DEMO, "echo", {"text": f"sending {reveal(token)}"})
        return {"sent": bool(out["result"])}


def _sse(text: str) -> list[dict[str, Any]]:
    return [json.loads(line[len("data: "):]) for line in text.splitlines() if line.startswith("data: ")]


def test_get_run_and_its_events_show_the_agents_calls_with_secrets_masked(gateway, client, monkeypatch):
    wf = Workflow("agentic")
    wf.add_node(LLMAgentNode(name="agent", prompt="Echo the given text back unchanged, text: hi-there",
                             mcp_servers=[DEMO]))
    wf.add_node(Sender(name="send"))
    gateway.register_workflow("agentic", wf)
    params = {"parameters": {"send": {"token": TOKEN}}}
    sync = client.post("/workflows/agentic/execute", json=params, headers=HEADERS)
    assert sync.status_code == 200, sync.text
    run = client.get(f"/runs/{sync.json()['run_id']}", headers=HEADERS)
    calls = run.json()["calls"]
    assert [(c["event"], c["node_id"]) for c in calls] == [
        ("model_call", "agent"), ("tool_call", "agent"), ("model_call", "agent"), ("tool_call", "send")]
    assert calls[1]["server"] == "demo" and calls[1]["tool"] == "echo" and calls[1]["ok"] is True
    assert calls[3]["arguments"] == {"text": "sending ***"}
    assert TOKEN not in run.text

    monkeypatch.setenv("AGENTIC_TOKEN", TOKEN)  # a queued run names its secret; the gateway resolves it
    queued = {"parameters": {"send": {"token": "${AGENTIC_TOKEN}"}}}
    started = client.post("/workflows/agentic/execute?async=true", json=queued, headers=HEADERS)
    assert started.status_code == 202
    run_id = started.json()["run_id"]
    for _ in range(400):
        body = client.get(f"/runs/{run_id}", headers=HEADERS).json()
        if body["status"] not in ("running", "queued"):
            break
        time.sleep(0.05)
    assert body["status"] == "completed" and len(body["calls"]) == 4
    with client.stream("GET", f"/runs/{run_id}/events", headers=HEADERS) as stream:
        text = stream.read().decode()
    events = _sse(text)
    kinds = [e["event"] for e in events]
    assert kinds.count("model_call") == 2 and kinds.count("tool_call") == 2
    send = next(e for e in events if e["event"] == "tool_call" and e["node_id"] == "send")
    assert send["arguments"] == {"text": "sending ***"} and send["run_id"] == run_id
    assert kinds.index("tool_call") < kinds.index("run_completed")
    assert TOKEN not in text


def test_events_rebuilt_from_a_record_replay_the_calls_before_their_nodes_end():
    from kailash.api.runs import events_from_record
    from kailash.runtime.store import NodeRecord, RunRecord

    record = RunRecord(run_id="r1", workflow="w", status="completed", started_at=1.0, ended_at=2.0,
                       nodes=(NodeRecord(node_id="a", status="completed", started_at=1.0, duration=0.1),
                              NodeRecord(node_id="b", status="completed", started_at=1.1, duration=0.1)),
                       extra={"calls": [{"event": "model_call", "node_id": "b", "ok": True},
                                        {"event": "tool_call", "node_id": "a", "ok": False, "error": "x"}]})
    kinds = [(e["event"], e.get("node_id")) for e in events_from_record(record)]
    assert kinds == [("run_started", None), ("tool_call", "a"), ("node_completed", "a"), ("model_call", "b"),
                     ("node_completed", "b"), ("run_completed", None)]
