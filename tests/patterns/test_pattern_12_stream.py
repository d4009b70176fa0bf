"""Seed pattern 12 (Stream Processing), run against the local websocket server.

``stream_url`` points at the test server's ``/events`` stream; ``process_data_update`` and
``handle_status_change`` are real local functions passed in as inputs. One run of the
workflow, as written, processes the whole stream event by event (a stream run); a
batch variant processes a list of events in one run.
"""

from __future__ import annotations

import pytest

from kailash.errors import NodeExecutionError
from kailash.nodes.code.python import PythonCodeNode
from kailash.nodes.data.streaming import EventStreamNode
from kailash.runtime import LocalRuntime
from kailash.workflow import Workflow
from tests.servers import fixtures as servers

# the local test servers (fixtures) this module uses
http_server = servers.http_server
ws_server = servers.ws_server


def process_data_update(data):
    return {"kind": "update", "seq": data["seq"], "value": data["value"] * 2}


def handle_status_change(data):
    return {"kind": "status", "seq": data["seq"]}


HANDLERS = {"process_data_update": process_data_update, "handle_status_change": handle_status_change}


def build(stream_url: str) -> tuple[Workflow, EventStreamNode]:
    workflow = Workflow()

    # --- the sample, as written (placeholders filled) ---------------------------------------
    # Stream consumer
    stream_consumer = EventStreamNode(
        config={
            "stream_url": stream_url,
            "event_types": ["data_update", "status_change"]
        }
    )

    # Stream processor
    stream_processor = PythonCodeNode(
        config={
            "code": """
# Process each event as it arrives
if event_type == 'data_update':
    result = process_data_update(data)
elif event_type == 'status_change':
    result = handle_status_change(data)
else:
    result = data
""",
            "imports": []
        }
    )
    # ------------------------------------------------------------------------------------------
    workflow.add_node("stream_consumer", stream_consumer)
    workflow.add_node("stream_processor", stream_processor)

    workflow.connect("stream_consumer", "stream_processor")
    return workflow, stream_consumer


class Recording:
    """The seed's handlers, recording each result they produce."""

    def __init__(self) -> None:
        self.results: list[dict] = []

    def handlers(self) -> dict:
        def record(fn):
            def wrapped(data):
                self.results.append(fn(data))
                return self.results[-1]
            return wrapped

        return {name: record(fn) for name, fn in HANDLERS.items()}


def test_pattern_12_one_run_processes_the_whole_stream(ws_server):
    workflow, _ = build(f"{ws_server.url}/events?count=5&types=data_update,status_change,heartbeat")
    seen = Recording()
    results, run_id = LocalRuntime().execute(workflow, parameters={"stream_processor": seen.handlers()})
    assert seen.results == [
        {"kind": "update", "seq": 0, "value": 0},
        {"kind": "status", "seq": 1},
        {"kind": "update", "seq": 3, "value": 60},  # seq 2 was a heartbeat: filtered out
        {"kind": "status", "seq": 4},
    ]
    assert results["stream_consumer"]["events"] == 4
    assert results["stream_consumer"]["stopped_by"] == "closed"
    assert LocalRuntime().get_run(run_id).status == "completed"


def test_pattern_12_over_server_sent_events(http_server):
    workflow, _ = build(f"{http_server.url}/sse?count=3")
    seen = Recording()
    results, _ = LocalRuntime().execute(workflow, parameters={"stream_processor": seen.handlers()})
    assert seen.results[:2] == [{"kind": "update", "seq": 0, "value": 0}, {"kind": "status", "seq": 1}]
    assert results["stream_consumer"]["events"] == 3


def test_pattern_12_in_batches(ws_server):
    workflow = Workflow()
    workflow.add_node("stream_consumer", EventStreamNode(
        stream_url=f"{ws_server.url}/events?count=8", event_types=["data_update"], delivery="batch", max_events=3))
    workflow.add_node("stream_processor", PythonCodeNode(code="result = [process_data_update(e['data']) for e in data]"))
    workflow.connect("stream_consumer", "stream_processor")
    results, _ = LocalRuntime().execute(workflow, parameters={"stream_processor": HANDLERS})
    assert [r["seq"] for r in results["stream_processor"]["result"]] == [0, 2, 4]
    assert results["stream_consumer"]["stopped_by"] == "max_events"


def test_pattern_12_malformed_message_fails_the_run(ws_server):
    workflow, _ = build(f"{ws_server.url}/malformed")
    seen = Recording()
    with pytest.raises(NodeExecutionError, match=r"node 'stream_consumer' \(EventStreamNode\): message #2") as info:
        LocalRuntime().execute(workflow, parameters={"stream_processor": seen.handlers()})
    assert info.value.node_id == "stream_consumer"
    assert seen.results == [{"kind": "update", "seq": 0, "value": 0}]  # the good event before it was processed
