"""A local websocket server for stream tests (the ``websockets`` library, 127.0.0.1).

Paths:

* ``/events?count=N&types=a,b&interval=S&keys=K``: N JSON messages
  ``{"event_type": ..., "data": {"seq": i, "value": 10*i}, "id": i}`` (with ``keys``, the
  data also has ``"key": "k{i % K}"``), then a normal close.
* ``/malformed``: one good message, then ``"{broken"``.
* ``/drop/{key}?after=K&count=N``: the first connection for ``key`` is dropped after K
  messages (no close frame); later connections send the remaining ones.
* ``/endless?interval=S``: ``tick`` messages until the client goes away.
* ``/plain``: three plain-text messages.

``state.connections`` counts connections per path.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from dataclasses import dataclass, field
from urllib.parse import parse_qs, urlsplit

from websockets.exceptions import ConnectionClosed


@dataclass
class WSState:
    """What the server has seen, for assertions."""

    connections: dict[str, int] = field(default_factory=dict)
    drop_progress: dict[str, int] = field(default_factory=dict)


def make_handler(state: WSState):
    """The connection handler bound to ``state``."""

    async def handler(ws) -> None:
        parts = urlsplit(ws.request.path)
        path = parts.path
        q = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        state.connections[path] = state.connections.get(path, 0) + 1
        count = int(q.get("count", "5"))
        types = q.get("types", "data_update,status_change").split(",")
        interval = float(q.get("interval", "0"))

        keys = int(q.get("keys", "0"))

        def message(i: int) -> str:
            data = {"seq": i, "value": i * 10, **({"key": f"k{i % keys}"} if keys else {})}
            return json.dumps({"event_type": types[i % len(types)], "data": data, "id": i})

        if path == "/events":
            for i in range(count):
                await ws.send(message(i))
                if interval:
                    await asyncio.sleep(interval)
            await ws.close()
        elif path == "/malformed":
            await ws.send(message(0))
            await ws.send("{broken")
            with contextlib.suppress(TimeoutError):  # leave the client time to read, then end
                await asyncio.wait_for(ws.wait_closed(), 1)
        elif path.startswith("/drop/"):
            key = path[len("/drop/"):]
            start = state.drop_progress.get(key, 0)
            after = int(q.get("after", "2"))
            first = state.connections[path] == 1
            for i in range(start, count):
                if first and i - start >= after:
                    ws.transport.abort()  # drop without a close frame
                    return
                await ws.send(message(i))
                state.drop_progress[key] = i + 1
            await ws.close()
        elif path == "/endless":
            i = 0
            try:
                while True:
                    await ws.send(json.dumps({"event_type": "tick", "data": {"seq": i}}))
                    i += 1
                    try:  # pause, but notice at once when the client goes away
                        await asyncio.wait_for(ws.wait_closed(), float(q.get("interval", "0.05")))
                        return
                    except TimeoutError:
                        pass
            except ConnectionClosed:  # the client went away: that is how this stream ends
                return
        elif path == "/plain":
            for word in ("alpha", "beta", "gamma"):
                await ws.send(word)
            await ws.close()
        else:
            await ws.close(code=4404, reason="unknown path")

    return handler
