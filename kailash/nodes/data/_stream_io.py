"""The transport side of :mod:`kailash.nodes.data.streaming`: websocket and SSE readers.

Each reader is an async generator of raw messages ``(kind, payload, sse_type, sse_id)``
for one connection; reconnecting, parsing and the stop rules belong to the node. A
:class:`Subscription` runs a stream on a background thread for per-event delivery.
Nothing here knows about nodes; nothing here may log a header value.
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import ssl
import threading
from collections.abc import AsyncGenerator, Callable
from typing import Any

from kailash.security.secrets import reveal

__all__ = ["StreamRefused", "ws_messages", "sse_messages", "retryable_errors", "Subscription", "BUFFER"]

BUFFER = 1000  # events a per-event subscription holds before it stops reading (backpressure)


class StreamRefused(Exception):
    """The server answered the stream request with a non-retryable status."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(f"{status} {reason}")
        self.status, self.reason = status, reason


async def ws_messages(url: str, headers: dict[str, Any], timeout: float,
                      verify: Any) -> AsyncGenerator[tuple[str, Any, None, None], None]:
    """The messages of one websocket connection; ends on a normal close, raises on an abnormal one."""
    connect = _websockets_connect()
    plain = {str(k): str(reveal(v)) for k, v in headers.items()}
    kwargs: dict[str, Any] = {"additional_headers": plain, "open_timeout": min(timeout, 30.0),
                              "max_size": 16 * 1024 * 1024, "close_timeout": 2}
    if url.startswith("wss://"):
        kwargs["ssl"] = _ssl_context(verify)
    async with connect(url, **kwargs) as ws:
        try:
            async for message in ws:
                yield "ws", message, None, None
        finally:  # stopped early (max_events, timeout, close): say goodbye with a normal close
            with contextlib.suppress(Exception):
                await ws.close()


async def sse_messages(url: str, headers: dict[str, Any], timeout: float, verify: Any,
                       last_id: Any) -> AsyncGenerator[tuple[str, Any, Any, Any], None]:
    """The events of one server-sent-events response (resuming after ``last_id`` when given)."""
    from kailash.nodes.api._transport import make_verify, require_httpx

    httpx = require_httpx()
    plain = {str(k): str(reveal(v)) for k, v in headers.items()}
    plain.setdefault("Accept", "text/event-stream")
    if last_id is not None:
        plain["Last-Event-ID"] = str(last_id)
    limits = httpx.Timeout(min(timeout, 30.0), read=None)
    async with httpx.AsyncClient(verify=make_verify(verify), timeout=limits) as client:
        async with client.stream("GET", url, headers=plain) as response:
            if response.status_code >= 500:  # worth another try
                raise httpx.RemoteProtocolError(f"server answered {response.status_code}")
            if response.status_code != 200:
                raise StreamRefused(response.status_code, response.reason_phrase)
            etype: str | None = None
            data: list[str] = []
            event_id: str | None = None
            async for line in response.aiter_lines():
                if line == "":
                    if data:
                        yield "sse", "\n".join(data), etype, event_id
                    etype, data, event_id = None, [], None
                    continue
                if line.startswith(":"):
                    continue
                name, _, value = line.partition(":")
                value = value[1:] if value.startswith(" ") else value
                if name == "event":
                    etype = value
                elif name == "data":
                    data.append(value)
                elif name == "id":
                    event_id = value


class Subscription:
    """A per-event subscription: the stream read on a background thread into a bounded queue."""

    def __init__(self, key: Any, events: Callable[[], AsyncGenerator[dict[str, Any], None]],
                 finished: list[str], label: str) -> None:
        self.key = key
        self.items: queue.Queue[tuple[str, Any]] = queue.Queue(maxsize=BUFFER)
        self.closing = threading.Event()
        self.ended: tuple[str, Any] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task[None] | None = None
        self._thread = threading.Thread(target=self._main, args=(events, finished), daemon=True,
                                        name=f"kailash-stream-{label}")
        self._thread.start()

    def _main(self, events: Callable[[], AsyncGenerator[dict[str, Any], None]], finished: list[str]) -> None:
        loop = self._loop = asyncio.new_event_loop()
        try:
            self._task = loop.create_task(self._pump(events, finished))
            loop.run_until_complete(self._task)
        except asyncio.CancelledError:
            pass
        finally:
            loop.close()

    async def _pump(self, events: Callable[[], AsyncGenerator[dict[str, Any], None]], finished: list[str]) -> None:
        try:
            async with contextlib.aclosing(events()) as stream:
                async for event in stream:
                    await self._put(("event", event))
            await self._put(("end", finished[0] if finished else "closed"))
        except asyncio.CancelledError:
            raise
        except BaseException as exc:  # handed to the next run, which raises it
            await self._put(("error", exc))

    async def _put(self, item: tuple[str, Any]) -> None:
        while not self.closing.is_set():
            try:
                self.items.put_nowait(item)
                return
            except queue.Full:
                await asyncio.sleep(0.01)

    def next(self, timeout: float) -> tuple[str, Any]:
        """``("event", e)``, ``("end", why)``, ``("error", exc)`` or ``("timeout", ...)`` after ``timeout`` s."""
        if self.ended is not None:
            return self.ended
        try:
            item = self.items.get(timeout=timeout)
        except queue.Empty:
            return ("timeout", "timeout")
        if item[0] in ("end", "error"):
            self.ended = item
        return item

    def close(self) -> None:
        self.closing.set()
        loop, task = self._loop, self._task
        if loop is not None and task is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(task.cancel)
        self._thread.join(timeout=5)


def _websockets_connect() -> Any:
    try:
        from websockets.asyncio.client import connect
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError("websocket streams need websockets>=13: pip install 'kailash[http]'") from exc
    return connect


def retryable_errors() -> tuple[type[BaseException], ...]:
    errors: list[type[BaseException]] = [OSError, asyncio.TimeoutError, EOFError]
    try:
        from websockets.exceptions import ConnectionClosedError, InvalidMessage

        errors += [ConnectionClosedError, InvalidMessage]
    except ImportError:  # pragma: no cover
        pass
    try:
        import httpx

        errors.append(httpx.TransportError)
    except ImportError:  # pragma: no cover
        pass
    return tuple(errors)


def _ssl_context(verify: Any) -> ssl.SSLContext:
    if isinstance(verify, str):
        return ssl.create_default_context(cafile=verify)
    ctx = ssl.create_default_context()
    if verify is False:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    return ctx
