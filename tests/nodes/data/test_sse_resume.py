"""EventStreamNode's SSE semantics against a real local server: the last event id
persists until changed and is sent as Last-Event-ID on reconnect, a server ``retry:``
field sets the reconnect delay, and multi-line data, comments and event types parse.

The server (uvicorn) records every connection's time and Last-Event-ID header; a first
connection is cut mid-stream by raising in the response body, the way a failing
network cuts it.
"""

from __future__ import annotations

import logging
import time
import uuid

import pytest

from kailash.nodes.data.streaming import EventStreamNode, _reconnect_delay
from tests.servers.fixtures import serve_app


class _Cut(Exception):
    """Raised in a response body to drop the connection."""


# first connection's body per scenario; every later connection sends one event and closes
FIRST = {
    "persist": [b"id: 7\ndata: {\"n\": 1}\n\n", b"data: {\"n\": 2}\n\n"],
    "idonly": [b"id: 7\ndata: {\"n\": 1}\n\n", b": heartbeat\nid: 9\n\n"],
    "cleared": [b"id: 7\ndata: {\"n\": 1}\n\n", b"id\ndata: {\"n\": 2}\n\n"],
    "retry": [b"retry: 2000\ndata: {\"n\": 1}\n\n"],
}


@pytest.fixture(scope="module")
def server():
    from starlette.applications import Starlette
    from starlette.responses import StreamingResponse
    from starlette.routing import Route

    seen: dict[str, list[tuple[float, str | None]]] = {}

    async def drop(request):
        kind, key = request.path_params["kind"], request.path_params["key"]
        conns = seen.setdefault(key, [])
        conns.append((time.monotonic(), request.headers.get("last-event-id")))
        first = len(conns) == 1

        async def body():
            if first:
                for chunk in FIRST[kind]:
                    yield chunk
                raise _Cut("cut by the test server")
            yield b"data: {\"n\": 3}\n\n"

        return StreamingResponse(body(), media_type="text/event-stream")

    async def shapes(request):
        async def body():
            yield b": heartbeat\n\n"
            yield b"event: tick\r\nid: a1\r\n: a comment inside an event\r\ndata: line one\r\ndata: line two\r\n\r\n"
            yield b":\n\ndata: plain\n\n"
            yield b"event: done\ndata: x\ndata\n\n"

        return StreamingResponse(body(), media_type="text/event-stream")

    class _Quiet(logging.Filter):
        def filter(self, record: logging.LogRecord) -> bool:
            exc = record.exc_info[1] if record.exc_info else None
            return not isinstance(exc, _Cut) and "_Cut" not in record.getMessage()

    quiet = _Quiet()
    logging.getLogger("uvicorn.error").addFilter(quiet)
    url, stop = serve_app(Starlette(routes=[Route("/drop/{kind}/{key}", drop), Route("/shapes", shapes)]))
    yield url, seen
    stop()
    logging.getLogger("uvicorn.error").removeFilter(quiet)


def batch(url: str, **kw) -> dict:
    return EventStreamNode(name="feed", stream_url=url, delivery="batch", timeout=20, **kw).execute()


@pytest.mark.parametrize(("kind", "sent", "ids"), [
    ("persist", "7", ["7", "7", "7"]),   # an event without id: keeps the last id
    ("idonly", "9", ["7", "9"]),         # an id-only block (no data) still moves the last id
    ("cleared", None, ["7", "", ""]),    # an empty id: clears it: no Last-Event-ID is sent
])
def test_the_last_event_id_persists_until_changed_and_is_sent_on_reconnect(server, kind, sent, ids):
    url, seen = server
    key = uuid.uuid4().hex[:8]
    out = batch(f"{url}/drop/{kind}/{key}", reconnect_backoff=0.01)
    assert [h for _, h in seen[key]] == [None, sent]
    assert [e["id"] for e in out["data"]] == ids
    assert out["data"][-1]["data"] == {"n": 3}


def test_a_server_retry_field_sets_the_reconnect_delay(server):
    url, seen = server
    key = uuid.uuid4().hex[:8]
    out = batch(f"{url}/drop/retry/{key}", reconnect_backoff=0.01)
    assert [e["data"]["n"] for e in out["data"]] == [1, 3]
    (t0, _), (t1, _) = seen[key]
    assert t1 - t0 >= 1.9  # retry: 2000, not reconnect_backoff=0.01


def test_the_reconnect_delay_grows_and_a_server_retry_is_capped():
    assert [_reconnect_delay(n, 0.5, None) for n in (1, 2, 3)] == [0.5, 1.0, 2.0]
    assert [_reconnect_delay(n, 0.5, 2000) for n in (1, 2, 3)] == [2.0, 4.0, 8.0]
    assert _reconnect_delay(1, 0.5, 10**9) == 60.0
    assert _reconnect_delay(9, 0.5, 10**9) == 60.0
    assert _reconnect_delay(20, 0.5, None) == 30.0


def test_multi_line_data_comments_and_event_types(server):
    url, _ = server
    out = batch(f"{url}/shapes", message_format="text")
    assert [(e["event_type"], e["data"], e["id"]) for e in out["data"]] == [
        ("tick", "line one\nline two", "a1"),
        ("message", "plain", "a1"),
        ("done", "x\n", "a1"),
    ]
