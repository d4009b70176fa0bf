"""The gateway's live run events: Server-Sent Events and a websocket per run.

A subscriber gets the run's events so far, then each later one, until the terminal
event; a finished run's events are rebuilt from its record. A run of another namespace
is refused exactly like one that does not exist (404; a websocket is refused before it opens).
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from fastapi import Request, WebSocket
from fastapi.responses import StreamingResponse
from starlette.concurrency import run_in_threadpool
from starlette.websockets import WebSocketDisconnect

from kailash.api.middleware import principal_of
from kailash.api.responses import ApiError, deny_websocket
from kailash.api.run_routes import _redacted, find_record
from kailash.api.runs import TERMINAL_EVENTS, events_from_record

__all__ = ["install", "KEEPALIVE_SECONDS"]

KEEPALIVE_SECONDS = 15.0


def install(app: Any, gw: Any) -> None:
    """Add ``GET /runs/{run_id}/events`` (SSE) and ``/ws/runs/{run_id}`` (websocket) to ``app``."""

    async def subscribe(principal: Any, run_id: str) -> tuple[list[dict[str, Any]], Any, Any]:
        tenant_id = principal.tenant_id if principal is not None else None
        live = gw.runs.find(run_id, tenant_id)
        if live is not None:
            past, queue = live.subscribe()
            return past, queue, live
        record = await run_in_threadpool(find_record, gw, principal, run_id)
        if record is None or record.status in ("running", "interrupted"):  # queued, or run by another gateway
            remote = await run_in_threadpool(_queued, gw, tenant_id, run_id) if gw.runs.worker is not None else False
            if remote:
                follower = _RecordFollower(gw, principal, run_id)
                return [], follower.queue, follower
        if record is None:
            raise ApiError(404, "run_not_found", f"no run '{run_id}' here", run_id=run_id)
        return _redacted(gw, tenant_id, record.workflow, events_from_record(record)), None, None

    async def follow(past: list[dict[str, Any]], queue: Any) -> Any:
        """Yield the run's events until the terminal one (``None`` = nothing for a while)."""
        for ev in past:
            yield ev
            if ev.get("event") in TERMINAL_EVENTS:
                return
        if queue is None:
            return
        seen = past[-1]["seq"] if past else -1
        while True:
            try:
                ev = await asyncio.wait_for(queue.get(), KEEPALIVE_SECONDS)
            except TimeoutError:
                yield None
                continue
            if ev["seq"] <= seen:
                continue
            yield ev
            if ev.get("event") in TERMINAL_EVENTS:
                return

    @app.get("/runs/{run_id}/events", tags=["runs"], summary="A run's live events (Server-Sent Events)")
    async def run_events(run_id: str, request: Request) -> StreamingResponse:
        past, queue, live = await subscribe(principal_of(request.scope), run_id)

        async def stream() -> Any:
            try:
                async for ev in follow(past, queue):
                    if ev is None:
                        yield ": keepalive\n\n"
                        continue
                    yield f"id: {ev['seq']}\nevent: {ev['event']}\ndata: {json.dumps(ev, default=str)}\n\n"
            finally:
                if live is not None:
                    live.unsubscribe(queue)

        return StreamingResponse(stream(), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})

    @app.websocket("/ws/runs/{run_id}")
    async def run_socket(websocket: WebSocket, run_id: str) -> None:
        try:
            past, queue, live = await subscribe(principal_of(websocket.scope), run_id)
        except ApiError as exc:
            await deny_websocket(websocket.scope, websocket._send, exc.status, exc.body())
            return
        await websocket.accept()
        try:
            async for ev in follow(past, queue):
                if ev is not None:
                    await websocket.send_text(json.dumps(ev, default=str))
            await websocket.close(1000)
        except (WebSocketDisconnect, RuntimeError, OSError):  # the client went away first
            pass
        finally:
            if live is not None:
                live.unsubscribe(queue)


def _queued(gw: Any, tenant_id: str | None, run_id: str) -> bool:
    """Whether ``run_id`` is a run of the caller's namespace in the durable queue (blocking)."""
    item = gw.runs.worker.queue.get(run_id)
    return item is not None and item.tenant_id == tenant_id


class _RecordFollower:
    """The events of a run executing in another gateway (or still queued), read from its
    record every :attr:`POLL` s: one event per node as it finishes, then the terminal one."""

    POLL = 0.25

    def __init__(self, gw: Any, principal: Any, run_id: str) -> None:
        self.queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self._task = asyncio.get_running_loop().create_task(self._poll(gw, principal, run_id))

    async def _poll(self, gw: Any, principal: Any, run_id: str) -> None:
        seen: set[str] = set()
        seq = 0
        started = False
        while True:
            record = await run_in_threadpool(find_record, gw, principal, run_id)
            events: list[dict[str, Any]] = []
            if record is not None:
                finished = record.status in ("completed", "failed")
                rebuilt = events_from_record(record)[:-1] if not finished else events_from_record(record)
                rebuilt = _redacted(gw, record.tenant, record.workflow, rebuilt)
                for ev in rebuilt:
                    key = ev.get("node_id") or ev["event"]
                    if ev["event"] == "run_started":
                        if started:
                            continue
                        started = True
                    elif key in seen:
                        continue
                    else:
                        seen.add(key)
                    events.append(ev)
            for ev in events:
                self.queue.put_nowait({**ev, "seq": seq})
                seq += 1
                if ev["event"] in TERMINAL_EVENTS:
                    return
            await asyncio.sleep(self.POLL)

    def unsubscribe(self, _queue: Any) -> None:
        self._task.cancel()
