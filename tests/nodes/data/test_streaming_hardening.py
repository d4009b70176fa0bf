"""EventStreamNode's SSE side on the one outbound HTTP layer, against a hostile server.

Two real uvicorn servers: ``feed`` (an SSE endpoint that may send one endless event,
or redirect) and ``elsewhere`` (another origin that streams events and records the
headers it is sent).
"""

from __future__ import annotations

import tracemalloc

import pytest

from kailash.errors import NodeConfigurationError, NodeExecutionError
from kailash.nodes.data.streaming import EventStreamNode
from kailash.security.secrets import Secret
from tests.servers.fixtures import serve_app

MIB = 1024 * 1024
TOKEN = "stream-token-5521"


def _events(n: int):
    async def body():
        for i in range(n):
            yield f"event: tick\nid: {i}\ndata: {{\"seq\": {i}}}\n\n".encode()

    return body


@pytest.fixture(scope="module")
def elsewhere():
    from starlette.applications import Starlette
    from starlette.responses import StreamingResponse
    from starlette.routing import Route

    seen: list[dict[str, str]] = []

    async def feed(request):
        seen.append({k.lower(): v for k, v in request.headers.items()})
        return StreamingResponse(_events(3)(), media_type="text/event-stream")

    url, stop = serve_app(Starlette(routes=[Route("/feed", feed)]))
    yield url, seen
    stop()


@pytest.fixture(scope="module")
def feed(elsewhere):
    from starlette.applications import Starlette
    from starlette.responses import RedirectResponse, StreamingResponse
    from starlette.routing import Route

    other, _ = elsewhere

    async def endless(request):  # one "data:" line that never ends
        async def body():
            yield b"data: "
            for _ in range(64 * 16):  # 64 MiB if nobody stops reading
                yield b"x" * 65536

        return StreamingResponse(body(), media_type="text/event-stream")

    async def ticks(request):
        return StreamingResponse(_events(3)(), media_type="text/event-stream")

    async def away(request):
        return RedirectResponse(f"{other}/feed", status_code=302)

    async def home(request):
        return RedirectResponse("/ticks", status_code=302)

    url, stop = serve_app(Starlette(routes=[Route("/endless", endless), Route("/ticks", ticks),
                                            Route("/away", away), Route("/home", home)]))
    yield url
    stop()


def batch(url: str, **kw) -> dict:
    return EventStreamNode(name="feed", stream_url=url, delivery="batch", timeout=20, **kw).execute()


def test_an_endless_event_is_refused_at_the_cap(feed):
    tracemalloc.start()
    try:
        with pytest.raises(NodeExecutionError, match=r"node 'feed' \(EventStreamNode\): the stream .*/endless sent an "
                                                     r"event larger than max_event_bytes=1048576"):
            batch(f"{feed}/endless", max_event_bytes=MIB)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 8 * MIB


def test_a_bad_event_cap_is_a_configuration_error():
    with pytest.raises(NodeConfigurationError, match=r"parameter 'max_event_bytes' must be a positive number"):
        batch("http://127.0.0.1:9/sse", max_event_bytes=0)


def test_sse_still_streams_and_follows_a_same_origin_redirect(feed):
    out = batch(f"{feed}/home", headers={"Authorization": f"Bearer {TOKEN}"})
    assert [e["data"]["seq"] for e in out["data"]] == [0, 1, 2] and out["stopped_by"] == "closed"
    assert [e["event_type"] for e in out["data"]] == ["tick"] * 3


def test_a_redirect_to_another_origin_does_not_carry_the_credentials(feed, elsewhere):
    _, seen = elsewhere
    seen.clear()
    out = batch(f"{feed}/away", headers={"Authorization": f"Bearer {TOKEN}", "X-Feed-Key": Secret(TOKEN)})
    assert [e["data"]["seq"] for e in out["data"]] == [0, 1, 2]
    assert len(seen) == 1 and "authorization" not in seen[0]
    assert not any(TOKEN in v for v in seen[0].values()), seen[0]
