"""The transport side of :mod:`kailash.nodes.data.streaming`: websocket and SSE readers.

SSE is HTTP, so it is sent through the one outbound HTTP layer
(:mod:`kailash.nodes.api._transport` and :mod:`~kailash.nodes.api._response`): the same
request building, Secret handling and cross-origin credential stripping as every
other outbound call; the event parser here caps each event.

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

__all__ = ["StreamRefused", "EventTooLarge", "DEFAULT_MAX_EVENT_BYTES", "ws_messages", "sse_messages", "retryable_errors", "Subscription", "BUFFER"]

BUFFER = 1000  # events a per-event subscription holds before it stops reading (backpressure)
DEFAULT_MAX_EVENT_BYTES = 16 * 1024 * 1024  # one message (websocket) or event (SSE)


class StreamRefused(Exception):
    """The server answered the stream request with a non-retryable status."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(f"{status} {reason}")
        self.status, self.reason = status, reason


class EventTooLarge(Exception):
    """An SSE event (or a line of one) went past the node's ``max_event_bytes``."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"an event larger than {limit} bytes")
        self.limit = limit


async def ws_messages(url: str, headers: dict[str, Any], timeout: float, verify: Any,
                      limit: int = DEFAULT_MAX_EVENT_BYTES) -> AsyncGenerator[tuple[str, Any, None, None], None]:
    """The messages of one websocket connection; ends on a normal close, raises on an abnormal one."""
    connect = _websockets_connect()
    plain = {str(k): str(reveal(v)) for k, v in headers.items()}
    kwargs: dict[str, Any] = {"additional_headers": plain, "open_timeout": min(timeout, 30.0),
                              "max_size": limit, "close_timeout": 2}
    if url.startswith("wss://"):
        kwargs["ssl"] = _ssl_context(verify)
    async with connect(url, **kwargs) as ws:
        try:
            async for message in ws:
                yield "ws", message, None, None
        finally:  # stopped early (max_events, timeout, close): say goodbye with a normal close
            with contextlib.suppress(Exception):
                await _close(ws)


async def _close(ws: Any) -> None:
    """Close handshake, reading what the server still sends meanwhile: a client that stopped
    reading (flow control) would otherwise never see the server's close frame and wait the
    whole ``close_timeout``."""
    closing = asyncio.ensure_future(ws.close())
    try:
        async with asyncio.timeout(2):
            async for _ in ws:
                pass
    except Exception:  # closed (the usual end) or too slow: the close below settles it
        pass
    except BaseException:
        closing.cancel()
        raise
    await closing


async def sse_messages(url: str, headers: dict[str, Any], timeout: float, verify: Any, resume: dict[str, Any],
                       limit: int = DEFAULT_MAX_EVENT_BYTES) -> AsyncGenerator[tuple[str, Any, Any, Any], None]:
    """The events of one server-sent-events response, resuming after ``resume["last_id"]``.

    ``resume`` is the stream's state across connections, kept as the SSE spec says:
    ``last_id`` (the last event id: set by an ``id:`` field, kept until the next one,
    cleared by an empty one; sent as ``Last-Event-ID`` when not empty) and ``retry``
    (the reconnection time in milliseconds a ``retry:`` field set, else ``None``). This
    reader updates both as it parses; each event carries the last event id.

    The request goes through the one outbound HTTP layer (:mod:`kailash.nodes.api._transport`):
    Secret header values are revealed only into it, a redirect to another origin drops
    the credential headers. No event (nor a line still without its end) grows past
    ``limit`` bytes: :class:`EventTooLarge` instead.
    """
    from kailash.nodes.api._response import client_class, open_stream_async
    from kailash.nodes.api._transport import build_request, make_verify, require_httpx

    httpx = require_httpx()
    plain = dict(headers)
    if not any(str(k).lower() == "accept" for k in plain):
        plain["Accept"] = "text/event-stream"
    plain.setdefault("Accept-Encoding", "identity")  # a stream is read raw, never inflated
    if resume.get("last_id"):
        plain["Last-Event-ID"] = str(resume["last_id"])
    limits = httpx.Timeout(min(timeout, 30.0), read=None)
    async with client_class(True)(verify=make_verify(verify), timeout=limits, follow_redirects=False) as client:
        response = await open_stream_async(client, build_request(client, "GET", url, headers=plain, timeout=limits),
                                           follow=True)
        try:
            if response.status_code >= 500:  # worth another try
                raise httpx.RemoteProtocolError(f"server answered {response.status_code}")
            if response.status_code != 200:
                raise StreamRefused(response.status_code, response.reason_phrase)
            coding = response.headers.get("content-encoding", "identity").strip().lower()
            if coding not in ("", "identity"):
                raise StreamRefused(response.status_code, f"compressed stream ({coding}) not accepted")
            async for etype, data, event_id in _sse_events(response.aiter_raw(), limit, resume):
                yield "sse", data, etype, event_id
        finally:
            await response.aclose()


async def _sse_events(chunks: Any, limit: int,
                      resume: dict[str, Any]) -> AsyncGenerator[tuple[str | None, str, str | None], None]:
    """``(event type, data, last event id)`` per dispatched event; the pending bytes never
    exceed ``limit``. ``id:`` and ``retry:`` fields update ``resume`` as they arrive."""
    etype: str | None = None
    data: list[str] = []
    size = 0
    pending: list[bytes] = []  # the line not yet ended, in pieces (joined once it ends)
    waiting = 0
    cr = False  # the last chunk ended with CR: an LF opening this one belongs to it
    async for chunk in chunks:
        if cr and chunk.startswith(b"\n"):
            chunk = chunk[1:]
        cr = chunk.endswith(b"\r")
        parts = chunk.replace(b"\r\n", b"\n").replace(b"\r", b"\n").split(b"\n")
        if len(parts) > 1:
            lines = [b"".join(pending) + parts[0], *parts[1:-1]]
            pending, waiting = [], 0
        else:
            lines = []
        pending.append(parts[-1])
        waiting += len(parts[-1])
        if waiting + size > limit:
            raise EventTooLarge(limit)
        for raw in lines:
            line = raw.decode("utf-8", "replace")
            if line == "":
                if data:
                    yield etype, "\n".join(data), resume.get("last_id")
                etype, data, size = None, [], 0
                continue
            if line.startswith(":"):
                continue
            name, _, value = line.partition(":")
            value = value[1:] if value.startswith(" ") else value
            if name == "event":
                etype = value
            elif name == "data":
                size += len(raw)
                if size > limit:
                    raise EventTooLarge(limit)
                data.append(value)
            elif name == "id":
                if "\0" not in value:
                    resume["last_id"] = value
            elif name == "retry":
                if value.isascii() and value.isdigit():
                    resume["retry"] = int(value)


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
        raise ImportError("websocket streams need websockets>=13.1: pip install -U 'websockets>=13.1'") from exc
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
