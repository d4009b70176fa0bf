"""EventStreamNode: consume a websocket (``ws://``, ``wss://``) or server-sent-events stream.

One async reader (the ``websockets`` library, httpx for SSE; see :mod:`._stream_io`)
yields events, reconnecting with exponential backoff when the connection drops;
parsing, filtering and the stop rules (``max_events``, ``timeout``, ``stop_condition``)
sit on top of it. Two deliveries:

* ``per_event`` (default): the node is a stream source
  (:class:`~kailash.nodes.data.stream_source.StreamSource`): one run of its workflow
  is a stream run, running the nodes below it once per event until the stream ends
  (see docs/streams.md). Called on its own (``node.execute()``), each call outputs the
  next event from a subscription kept open between calls.
* ``batch``: one run collects events until a stop rule fires and outputs them as a list.

Optional dependencies are imported when a stream is opened (``pip install 'kailash[http]'``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncGenerator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from kailash._backoff import backoff_delay
from kailash.errors import NodeConfigurationError, NodeExecutionError
from kailash.nodes.base import NodeParameter, register_node
from kailash.nodes.base_async import AsyncNode, run_coroutine
from kailash.nodes.data._stream_io import (
    DEFAULT_MAX_EVENT_BYTES,
    EventTooLarge,
    StreamRefused,
    Subscription,
    retryable_errors,
    sse_messages,
    ws_messages,
)
from kailash.nodes.data.stream_source import StreamEvent, StreamSource
from kailash.nodes.logic.expressions import compile_expression
from kailash.security.secrets import Secret, plain_secret_values, redact, reveal

__all__ = ["EventStreamNode"]


@dataclass(kw_only=True)
class _Spec:
    url: str
    event_types: frozenset[str] | None
    max_events: int | None
    timeout: float
    stop: Any
    stop_text: str | None
    message_format: str
    skip_malformed: bool
    headers: dict[str, Any]
    reconnects: int
    backoff: float
    verify: Any
    max_event_bytes: int = DEFAULT_MAX_EVENT_BYTES
    url_secrets: tuple[str, ...] = ()  # query values of a secret stream_url (e.g. ?token=...)
    finished: list[str] = field(default_factory=list)  # why the stream ended, once it has

    def key(self) -> tuple[Any, ...]:
        return (self.url, self.event_types, self.max_events, self.stop_text, self.message_format,
                self.skip_malformed, repr(sorted(self.headers)), self.reconnects)


def _display(url: str) -> str:
    from kailash.nodes.api._transport import display_url

    return display_url(url)


@register_node(category="data")
class EventStreamNode(AsyncNode, StreamSource):
    """Consume a websocket or server-sent-events stream and feed its events downstream.

    ``stream_url`` ``ws://``/``wss://`` opens a websocket (JSON messages such as
    ``{"event_type": "data_update", "data": {...}}``; the type may also be under
    ``type`` or ``event``), ``http://``/``https://`` an SSE stream (``event:`` is the
    type, ``data:`` the payload). ``event_types`` keeps only those types. A stream that
    drops is reopened up to ``reconnect_attempts`` times with exponential backoff (SSE
    resumes from ``Last-Event-ID``). A message that is not valid JSON fails the node
    unless ``on_malformed="skip"`` or ``message_format="text"``.

    ``delivery="per_event"`` (default) makes a run of the workflow a stream run: the nodes
    below run once per event with its ``event_type``, ``data``, ``id`` and ``event``, in
    order, until the stream ends, ``max_events`` or ``stop_condition``. Executed on its
    own, the node outputs one event per call, plus ``done`` (True once the stream has
    ended); ``timeout`` bounds the wait for it (in a stream run it bounds only opening
    the connection: the run's own ``timeout`` option is the idle limit).
    ``key_field`` names a field of the events' data: in a concurrent stream run, events
    with the same value keep their order. ``delivery="batch"`` outputs ``data`` (the list of events), ``count`` and
    ``stopped_by`` (``max_events``, ``timeout``, ``stop_condition`` or ``closed``);
    ``timeout`` bounds the whole collection. ``stop_condition`` is a safe expression over
    ``event_type``, ``data`` and ``id``; the event that meets it is the last delivered.

    Example:
        >>> node = EventStreamNode(stream_url="ws://127.0.0.1:9/feed", event_types=["data_update"])
        >>> sorted(node.get_outputs())
        ['data', 'done', 'event', 'event_type', 'id', 'stopped_by']
    """

    capabilities = frozenset({"network"})

    primary_output = "data"

    def get_parameters(self) -> dict[str, NodeParameter]:
        return {
            "stream_url": NodeParameter(type=(str, Secret), required=True, description="ws(s):// or http(s):// (SSE)"),
            "event_types": NodeParameter(type=list, default=None, description="keep only these event types"),
            "delivery": NodeParameter(type=str, default="per_event", choices=("per_event", "batch"), description="'per_event' or 'batch'"),
            "max_events": NodeParameter(type=int, default=None, minimum=1, description="stop after this many events (no limit)"),
            "timeout": NodeParameter(
                type=float, default=30.0, description="seconds: per event (per_event) or in total (batch)"
            ),
            "stop_condition": NodeParameter(
                type=str, default=None, description="stop after an event for which this expression is true"
            ),
            "message_format": NodeParameter(type=str, default="json", choices=("json", "text"), description="'json' or 'text'"),
            "on_malformed": NodeParameter(type=str, default="error", description="'error' or 'skip'"),
            "headers": NodeParameter(type=dict, default=None, description="headers for the connection"),
            "reconnect_attempts": NodeParameter(type=int, default=3, description="reopen a dropped stream this often"),
            "reconnect_backoff": NodeParameter(
                type=float, default=0.5, description="first reconnect wait in seconds (an SSE server's retry: replaces it); doubles each time"
            ),
            "verify_ssl": NodeParameter(type=(bool, str), default=True, description="verify TLS (or a CA bundle)"),
            "max_event_bytes": NodeParameter(
                type=int, default=DEFAULT_MAX_EVENT_BYTES, description="largest single message or event, in bytes"
            ),
            "key_field": NodeParameter(
                type=str, default=None, description="field of data whose value keys events (per-key order in a stream run)"
            ),
        }

    def get_outputs(self) -> dict[str, NodeParameter]:
        if self.config.get("delivery") == "batch":
            return {
                "data": NodeParameter(type=list, description="the events: {event_type, data, id}"),
                "count": NodeParameter(type=int, description="how many events"),
                "stopped_by": NodeParameter(type=str, description="max_events, timeout, stop_condition or closed"),
            }
        return {
            "data": NodeParameter(description="the event's payload"),
            "event_type": NodeParameter(type=str, description="the event's type"),
            "id": NodeParameter(description="the event's id, if it has one"),
            "event": NodeParameter(type=dict, description="{event_type, data, id}"),
            "done": NodeParameter(type=bool, description="the stream has ended; no event this time"),
            "stopped_by": NodeParameter(type=str, description="why the stream ended, or 'timeout'"),
        }

    # -- entry points ------------------------------------------------------------------------
    def run(self, **inputs: Any) -> dict[str, Any]:
        spec = self._spec(inputs)
        if self._delivery(inputs) == "batch":
            return run_coroutine(self._batch(spec))
        sub = self._subscription(spec)
        return self._per_event(sub.next(spec.timeout), spec)

    async def async_run(self, **inputs: Any) -> dict[str, Any]:
        spec = self._spec(inputs)
        if self._delivery(inputs) == "batch":
            return await self._batch(spec)
        sub = self._subscription(spec)
        return self._per_event(await asyncio.to_thread(sub.next, spec.timeout), spec)

    def close(self) -> None:
        """End this node's per-event subscription, if it has one."""
        sub = self.__dict__.pop("_stream_subscription", None)
        if sub is not None:
            sub.close()

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state.pop("_stream_subscription", None)
        return state

    # -- the stream-source protocol ----------------------------------------------------------------
    def streams(self, inputs: dict[str, Any]) -> bool:
        """A per-event node is a stream source; a batch node runs once like any node."""
        return self._delivery(inputs) == "per_event"

    async def open_stream(self, inputs: dict[str, Any]) -> _Cursor:
        """A cursor over the selected events (websockets and SSE have no acknowledgement)."""
        spec = self._spec(inputs)
        key = inputs.get("key_field")
        if key is not None and (type(key) is not str or not key):
            raise self._bad("key_field", "the name of a field of the events' data", key)
        return _Cursor(self._selected(spec), spec.finished, key)

    # -- configuration -----------------------------------------------------------------------
    def _delivery(self, v: dict[str, Any]) -> str:
        delivery = v.get("delivery") or "per_event"
        if delivery not in ("per_event", "batch"):
            raise self._bad("delivery", "'per_event' or 'batch'", delivery)
        return delivery

    def _bad(self, param: str, expected: str, got: Any) -> NodeConfigurationError:
        where = f"node '{self.name}' (EventStreamNode)" if self.name else "EventStreamNode"
        return NodeConfigurationError(f"{where}: parameter '{param}' must be {expected}, got {got!r}",
                                      node_id=self.name, parameter=param, expected=expected, got=got)

    def _spec(self, v: dict[str, Any]) -> _Spec:
        url = str(reveal(v["stream_url"]))
        scheme = url.split("://", 1)[0].lower() if "://" in url else ""
        if scheme not in ("ws", "wss", "http", "https"):
            raise self._bad("stream_url", "a ws://, wss://, http:// or https:// URL", _display(url))
        fmt = v.get("message_format") or "json"
        if fmt not in ("json", "text"):
            raise self._bad("message_format", "'json' or 'text'", fmt)
        malformed = v.get("on_malformed") or "error"
        if malformed not in ("error", "skip"):
            raise self._bad("on_malformed", "'error' or 'skip'", malformed)
        max_events = v.get("max_events")
        if max_events is not None and max_events < 1:
            raise self._bad("max_events", "a positive number", max_events)
        types = v.get("event_types")
        cond = v.get("stop_condition")
        cap = v.get("max_event_bytes")
        cap = DEFAULT_MAX_EVENT_BYTES if cap is None else cap
        if type(cap) is not int or cap <= 0:
            raise self._bad("max_event_bytes", "a positive number of bytes", cap)
        return _Spec(
            url=url,
            event_types=frozenset(str(t) for t in types) if types else None,
            max_events=max_events,
            timeout=_number(v, "timeout", 30.0),
            stop=self._condition(cond) if cond else None,
            stop_text=cond,
            message_format=fmt,
            skip_malformed=malformed == "skip",
            headers=dict(v.get("headers") or {}),
            reconnects=int(_number(v, "reconnect_attempts", 3)),
            backoff=_number(v, "reconnect_backoff", 0.5),
            verify=v.get("verify_ssl") if v.get("verify_ssl") is not None else True,
            max_event_bytes=cap,
            url_secrets=tuple(x for _, x in parse_qsl(urlsplit(url).query)) if isinstance(v["stream_url"], Secret) else (),
        )

    def _condition(self, text: str) -> Any:
        try:
            return compile_expression(text, parameter="stop_condition")
        except NodeConfigurationError as exc:
            where = f"node '{self.name}' (EventStreamNode)" if self.name else "EventStreamNode"
            raise NodeConfigurationError(f"{where}: parameter 'stop_condition': {exc}", node_id=self.name,
                                         parameter="stop_condition", expected="a safe expression") from None

    def _error(self, text: str, spec: _Spec, **context: Any) -> NodeExecutionError:
        where = f"node '{self.name}' (EventStreamNode)" if self.name else "EventStreamNode"
        secrets = plain_secret_values(spec.headers) | frozenset(v for v in spec.url_secrets if len(v) >= 4)
        return NodeExecutionError(redact(f"{where}: {text}", secrets), node_id=self.name, **context)

    # -- deliveries --------------------------------------------------------------------------
    async def _batch(self, spec: _Spec) -> dict[str, Any]:
        events: list[dict[str, Any]] = []
        try:
            async with asyncio.timeout(spec.timeout):
                async with contextlib.aclosing(self._selected(spec)) as stream:
                    async for event in stream:
                        events.append(event)
        except TimeoutError:
            return {"data": events, "count": len(events), "stopped_by": "timeout"}
        return {"data": events, "count": len(events), "stopped_by": spec.finished[0] if spec.finished else "closed"}

    def _per_event(self, item: tuple[str, Any], spec: _Spec) -> dict[str, Any]:
        kind, value = item
        if kind == "error":
            raise value
        if kind == "event":
            return {"data": value["data"], "event_type": value["event_type"], "id": value["id"],
                    "event": value, "done": False, "stopped_by": None}
        return {"data": None, "event_type": None, "id": None, "event": None,
                "done": kind == "end", "stopped_by": value}

    def _subscription(self, spec: _Spec) -> Subscription:
        sub = self.__dict__.get("_stream_subscription")
        if sub is not None and sub.key != spec.key():
            sub.close()
            sub = None
        if sub is None:
            sub = Subscription(spec.key(), lambda: self._selected(spec), spec.finished, self.name or "node")
            self.__dict__["_stream_subscription"] = sub
        return sub

    # -- the stream ----------------------------------------------------------------------------
    async def _selected(self, spec: _Spec) -> AsyncGenerator[dict[str, Any], None]:
        """Events that pass ``event_types``, ending on ``max_events``, the stop condition or the stream's end."""
        delivered = 0
        async with contextlib.aclosing(self._events(spec)) as events:
            async for event in events:
                stop = self._meets(spec, event)
                if spec.event_types is None or event["event_type"] in spec.event_types:
                    yield event
                    delivered += 1
                if stop:
                    spec.finished.append("stop_condition")
                    return
                if spec.max_events is not None and delivered >= spec.max_events:
                    spec.finished.append("max_events")
                    return
        spec.finished.append("closed")

    def _meets(self, spec: _Spec, event: dict[str, Any]) -> bool:
        if spec.stop is None:
            return False
        try:
            return bool(spec.stop({"event_type": event["event_type"], "data": event["data"], "id": event["id"],
                                   "event": event}))
        except Exception as exc:
            raise self._error(
                f"stop_condition {spec.stop_text!r} failed on event {event['event_type']!r}: "
                f"{type(exc).__name__}: {exc} (use data.get('field') for fields some events lack)",
                spec, parameter="stop_condition",
            ) from None

    async def _events(self, spec: _Spec) -> AsyncGenerator[dict[str, Any], None]:
        """Every event of the stream, reconnecting with backoff when the connection drops."""
        ws = spec.url.startswith(("ws://", "wss://"))
        retryable = retryable_errors()
        failures, index = 0, 0
        state: dict[str, Any] = {"last_id": None, "retry": None}  # SSE: kept across reconnects
        while True:
            try:
                source = (ws_messages(spec.url, spec.headers, spec.timeout, spec.verify, spec.max_event_bytes) if ws else
                          sse_messages(spec.url, spec.headers, spec.timeout, spec.verify, state,
                                       spec.max_event_bytes))
                async with contextlib.aclosing(source) as messages:
                    async for kind, raw, sse_type, sse_id in messages:
                        failures = 0
                        index += 1
                        event = self._parse(spec, kind, raw, sse_type, sse_id, index)
                        if event is None:
                            continue
                        yield event
                return
            except EventTooLarge as exc:  # the same server would send it again: no reconnect
                raise self._error(
                    f"the stream {_display(spec.url)} sent an event larger than max_event_bytes={exc.limit}; "
                    "raise 'max_event_bytes' if such events are expected",
                    spec, parameter="max_event_bytes", expected=f"events of at most {exc.limit} bytes",
                ) from None
            except StreamRefused as exc:
                raise self._error(
                    f"the SSE endpoint {_display(spec.url)} answered {exc.status} {exc.reason}; "
                    "expected 200 with text/event-stream",
                    spec, parameter="stream_url", expected="an SSE endpoint", got=exc.status,
                ) from None
            except retryable as exc:
                if _is_tls(exc):  # a certificate will not fix itself: no point reconnecting
                    raise self._error(
                        f"TLS error opening the stream {_display(spec.url)}: {exc}; the server's certificate is not "
                        "trusted (pass verify_ssl='/path/to/ca.pem' to trust a private CA)",
                        spec, parameter="verify_ssl", expected="a certificate the client trusts",
                    ) from exc
                failures += 1
                if failures > spec.reconnects:
                    tries = f" after {failures} attempts" if failures > 1 else ""
                    raise self._error(
                        f"cannot read the stream {_display(spec.url)}{tries}: {type(exc).__name__}: {exc}; "
                        "check that the server is reachable (reconnect_attempts sets how often to retry)",
                        spec, parameter="stream_url", expected="a reachable stream",
                    ) from exc
                await asyncio.sleep(_reconnect_delay(failures, spec.backoff, state["retry"]))

    def _parse(self, spec: _Spec, kind: str, raw: Any, sse_type: str | None, sse_id: Any,
               index: int) -> dict[str, Any] | None:
        if isinstance(raw, bytes):
            raw = raw.decode("utf-8", "replace")
        if spec.message_format == "text":
            return {"event_type": sse_type or "message", "data": raw, "id": sse_id}
        try:
            value = json.loads(raw)
        except ValueError as exc:
            if spec.skip_malformed:
                return None
            snippet = raw if len(raw) <= 80 else raw[:80] + "..."
            raise self._error(
                f"message #{index} from {_display(spec.url)} is not valid JSON ({exc}): {snippet!r}; "
                "set on_malformed='skip' to drop such messages or message_format='text' to take them as text",
                spec, parameter="message_format", expected="JSON messages",
            ) from None
        if kind == "sse":
            return {"event_type": sse_type or "message", "data": value, "id": sse_id}
        if isinstance(value, dict):
            etype = next((value[k] for k in ("event_type", "type", "event") if k in value), "message")
            data = value["data"] if "data" in value else value
            return {"event_type": str(etype), "data": data, "id": value.get("id")}
        return {"event_type": "message", "data": value, "id": None}


class _Cursor:
    """:class:`~kailash.nodes.data.stream_source.StreamCursor` over a node's selected events."""

    __slots__ = ("_events", "_finished", "_key", "stopped_by")

    def __init__(self, events: AsyncGenerator[dict[str, Any], None], finished: list[str], key: str | None) -> None:
        self._events = events
        self._key = key
        self._finished = finished  # the spec's: why the stream ended
        self.stopped_by: str | None = None

    def __aiter__(self) -> _Cursor:
        return self

    async def __anext__(self) -> StreamEvent:
        try:
            e = await self._events.__anext__()
        except StopAsyncIteration:
            self.stopped_by = self._finished[0] if self._finished else "closed"
            raise
        data = e["data"]
        key = self._key
        if key is not None:
            value = data.get(key) if isinstance(data, dict) else None
            return StreamEvent(data, e["event_type"], e["id"], None if value is None else str(value))
        return StreamEvent(data, e["event_type"], e["id"])

    async def ack(self, event: StreamEvent) -> None:
        """Nothing to tell a websocket or SSE server."""

    async def nack(self, event: StreamEvent) -> None:
        """Nothing to tell a websocket or SSE server (no redelivery)."""

    async def close(self) -> None:
        await self._events.aclose()


MAX_SERVER_RETRY = 60.0  # seconds: the most a server's ``retry:`` field may set the delay to


def _reconnect_delay(failures: int, backoff: float, server_retry_ms: int | None) -> float:
    """Seconds before reconnect number ``failures``: exponential from ``backoff``, or from the
    server's ``retry:`` (capped at :data:`MAX_SERVER_RETRY`) once it sent one; at most 30 s,
    or the server's own delay when that is longer."""
    if server_retry_ms is None:
        return backoff_delay(failures, backoff=backoff, max_backoff=30.0, jitter=False)
    base = min(server_retry_ms / 1000.0, MAX_SERVER_RETRY)
    return backoff_delay(failures, backoff=base, max_backoff=max(30.0, base), jitter=False)


def _is_tls(exc: BaseException) -> bool:
    from kailash.nodes.api._transport import is_tls_error

    return is_tls_error(exc)


def _number(values: dict[str, Any], name: str, default: float) -> float:
    value = values.get(name)
    return float(value) if value is not None else default
