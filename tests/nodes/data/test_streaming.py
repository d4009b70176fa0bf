"""EventStreamNode against the local websocket server and the SSE endpoint."""

from __future__ import annotations

import asyncio
import pickle
import uuid

import pytest

from kailash.errors import NodeConfigurationError, NodeExecutionError
from kailash.nodes.data.streaming import EventStreamNode
from tests.servers import fixtures as servers

# the local test servers (fixtures) this module uses
dead_url = servers.dead_url
http_server = servers.http_server
ws_server = servers.ws_server
wss_server = servers.wss_server
https_server = servers.https_server


def batch(url: str, **kw) -> dict:
    return EventStreamNode(stream_url=url, delivery="batch", **kw).execute()


def test_websocket_batch_collects_every_event_until_close(ws_server):
    out = batch(f"{ws_server.url}/events?count=5")
    assert out["count"] == 5 and out["stopped_by"] == "closed"
    assert [e["data"]["seq"] for e in out["data"]] == [0, 1, 2, 3, 4]
    assert out["data"][1] == {"event_type": "status_change", "data": {"seq": 1, "value": 10}, "id": 1}


def test_event_types_filter_and_max_events(ws_server):
    out = batch(f"{ws_server.url}/events?count=10", event_types=["status_change"], max_events=3)
    assert [e["data"]["seq"] for e in out["data"]] == [1, 3, 5]
    assert out["stopped_by"] == "max_events"


def test_stop_condition_ends_after_the_matching_event(ws_server):
    out = batch(f"{ws_server.url}/events?count=10", stop_condition="data['seq'] >= 3")
    assert [e["data"]["seq"] for e in out["data"]] == [0, 1, 2, 3]
    assert out["stopped_by"] == "stop_condition"


def test_stop_condition_can_stop_on_a_filtered_out_event(ws_server):
    out = batch(f"{ws_server.url}/events?count=10&types=a,b,end", event_types=["a"],
                stop_condition="event_type == 'end'")
    assert [e["data"]["seq"] for e in out["data"]] == [0]
    assert out["stopped_by"] == "stop_condition"


def test_timeout_stops_an_endless_stream(ws_server):
    out = batch(f"{ws_server.url}/endless?interval=0.02", timeout=1.0)
    assert out["stopped_by"] == "timeout" and out["count"] >= 1


def test_sse_stream_with_types_and_ids(http_server):
    out = batch(f"{http_server.url}/sse?count=4")
    assert [e["event_type"] for e in out["data"]] == ["data_update", "status_change"] * 2
    assert [e["id"] for e in out["data"]] == ["0", "1", "2", "3"]
    assert out["data"][2]["data"] == {"seq": 2, "value": 20}


def test_sse_reconnects_and_resumes_from_last_event_id(http_server):
    k = uuid.uuid4().hex[:8]
    out = batch(f"{http_server.url}/sse/drop/{k}?after=2&count=5", reconnect_backoff=0.01)
    assert [e["data"]["seq"] for e in out["data"]] == [0, 1, 2, 3, 4]
    assert http_server.state.sse_connections[k] == [None, "1"]


def test_websocket_reconnects_after_a_drop(ws_server):
    k = uuid.uuid4().hex[:8]
    out = batch(f"{ws_server.url}/drop/{k}?after=2&count=5", reconnect_backoff=0.01)
    assert [e["data"]["seq"] for e in out["data"]] == [0, 1, 2, 3, 4]
    assert ws_server.state.connections[f"/drop/{k}"] == 2


def test_malformed_websocket_message_fails_naming_node_and_message(ws_server):
    node = EventStreamNode(name="stream", stream_url=f"{ws_server.url}/malformed", delivery="batch")
    with pytest.raises(NodeExecutionError, match=r"node 'stream' \(EventStreamNode\): message #2 from "
                                                 r"ws://127\.0\.0\.1:\d+/malformed is not valid JSON.*'\{broken'"):
        node.execute()


def test_malformed_sse_message_fails_or_is_skipped(http_server):
    with pytest.raises(NodeExecutionError, match=r"message #2 .* is not valid JSON"):
        batch(f"{http_server.url}/sse/malformed")
    out = batch(f"{http_server.url}/sse/malformed", on_malformed="skip")
    assert [e["data"] for e in out["data"]] == [{"seq": 0}]


def test_text_messages(ws_server):
    out = batch(f"{ws_server.url}/plain", message_format="text")
    assert [(e["event_type"], e["data"]) for e in out["data"]] == [("message", w) for w in ("alpha", "beta", "gamma")]


def test_unreachable_stream_after_reconnects(dead_url):
    node = EventStreamNode(name="s", stream_url=dead_url.replace("http", "ws") + "/x", delivery="batch",
                           reconnect_attempts=2, reconnect_backoff=0.01)
    with pytest.raises(NodeExecutionError, match=r"node 's' \(EventStreamNode\): cannot read the stream "
                                                 r"ws://127\.0\.0\.1:\d+/x after 3 attempts"):
        node.execute()


def test_sse_endpoint_that_refuses(http_server):
    with pytest.raises(NodeExecutionError, match=r"the SSE endpoint .*/status/404 answered 404"):
        batch(f"{http_server.url}/status/404")


def test_bad_configuration_is_reported():
    with pytest.raises(NodeConfigurationError, match=r"'stream_url' must be a ws://, wss://, http:// or https:// URL"):
        EventStreamNode(name="s", stream_url="ftp://x/y").execute()
    with pytest.raises(NodeConfigurationError, match=r"'delivery' expects one of 'per_event', 'batch', got 'stream'"):
        EventStreamNode(stream_url="ws://x/y", delivery="stream").execute()
    with pytest.raises(NodeConfigurationError, match=r"node 's' \(EventStreamNode\): parameter 'stop_condition': "
                                                     r".*uses the private name '__import__'"):
        EventStreamNode(name="s", stream_url="ws://x/y", delivery="batch", stop_condition="__import__('os')").execute()


def test_stop_condition_error_names_the_condition(ws_server):
    with pytest.raises(NodeExecutionError, match=r"stop_condition \"data\['missing'\]\" failed on event"):
        batch(f"{ws_server.url}/events?count=3", stop_condition="data['missing']")


def test_per_event_delivery_gives_one_event_per_run(ws_server):
    node = EventStreamNode(name="s", stream_url=f"{ws_server.url}/events?count=3", event_types=["data_update"])
    try:
        first, second, third = node.execute(), node.execute(), node.execute()
    finally:
        node.close()
    assert (first["event_type"], first["data"]) == ("data_update", {"seq": 0, "value": 0})
    assert second["data"]["seq"] == 2 and second["done"] is False
    assert third["done"] is True and third["data"] is None and third["stopped_by"] == "closed"
    assert ws_server.state.connections["/events"] >= 1


def test_per_event_subscription_is_kept_between_runs_and_closes(ws_server):
    before = ws_server.state.connections.get("/endless", 0)
    node = EventStreamNode(stream_url=f"{ws_server.url}/endless?interval=0.01", max_events=5)
    try:
        seqs = [node.execute()["data"]["seq"] for _ in range(5)]
        assert node.execute()["stopped_by"] == "max_events"
    finally:
        node.close()
    assert seqs == [0, 1, 2, 3, 4]
    assert ws_server.state.connections["/endless"] == before + 1  # one connection for all runs
    assert pickle.loads(pickle.dumps(node)).config == node.config


def test_per_event_timeout_when_nothing_arrives(ws_server):
    node = EventStreamNode(stream_url=f"{ws_server.url}/endless?interval=5")
    try:
        assert node.execute(timeout=10)["data"] == {"seq": 0}  # the first tick is sent at once
        out = node.execute(timeout=0.2)  # the next one only after 5 s
    finally:
        node.close()
    assert out["stopped_by"] == "timeout" and out["done"] is False and out["event"] is None


def test_per_event_error_reaches_the_run(ws_server):
    node = EventStreamNode(name="s", stream_url=f"{ws_server.url}/malformed")
    try:
        assert node.execute()["data"]["seq"] == 0
        with pytest.raises(NodeExecutionError, match=r"message #2"):
            node.execute()
    finally:
        node.close()


def test_async_batch(ws_server):
    node = EventStreamNode(stream_url=f"{ws_server.url}/events?count=4", delivery="batch")
    out = asyncio.run(node.async_execute())
    assert out["count"] == 4


def test_wss_with_an_untrusted_certificate_fails_at_once_and_a_private_ca_fixes_it(wss_server):
    node = EventStreamNode(name="s", stream_url=f"{wss_server.url}/events?count=2", delivery="batch",
                           reconnect_backoff=5)
    with pytest.raises(NodeExecutionError, match=r"node 's' \(EventStreamNode\): TLS error opening the stream "
                                                 r"wss://127\.0\.0\.1:\d+/events.*certificate"):
        node.execute()  # no reconnect attempts (backoff 5 s would show as a slow test)
    out = batch(f"{wss_server.url}/events?count=2", verify_ssl=wss_server.cert_file)
    assert out["count"] == 2


def test_sse_over_tls_with_a_private_ca(https_server):
    with pytest.raises(NodeExecutionError, match=r"TLS error opening the stream https://"):
        batch(f"{https_server.url}/sse?count=2", reconnect_backoff=5)
    assert batch(f"{https_server.url}/sse?count=2", verify_ssl=https_server.cert_file)["count"] == 2
