"""What every broker source and writer shares: parameters, parsing, the cursor loop, errors.

A broker source is an :class:`~kailash.nodes.base_async.AsyncNode` and a
:class:`~kailash.nodes.data.stream_source.StreamSource`. Its cursor
(:class:`BrokerCursor`) receives raw messages in batches from the system's client,
parses each into a :class:`StreamEvent` and applies the stop rules (``max_events``,
the idle ``timeout``); the system module supplies only receive, ack, nack and close.
Nothing here imports a broker client.
"""

from __future__ import annotations

import importlib
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import datetime
from typing import Any, ClassVar, NamedTuple

from kailash.errors import NodeConfigurationError, NodeExecutionError
from kailash.nodes.base import NodeParameter
from kailash.nodes.base_async import AsyncNode
from kailash.nodes.data.stream_source import StreamEvent, StreamSource
from kailash.security.secrets import Secret, plain_secret_values, redact, reveal

__all__ = ["Broker", "BrokerSourceNode", "BrokerWriterNode", "BrokerCursor", "Malformed", "require", "display",
           "MESSAGE_FORMAT", "PAYLOAD"]

EXTRA = "pip install 'kailash[streams]'"
FORMATS = ("json", "text")
MESSAGE_FORMAT = NodeParameter(type=str, default="json", description="'json' or 'text'")
PAYLOAD = NodeParameter(required=True, description="the payload")


class Broker(NamedTuple):
    """A system's ``url`` (its source's and writer's): the default, the schemes accepted, the forms described."""

    default_url: str
    schemes: tuple[str, ...]
    forms: str  # e.g. "redis:// or rediss://"

    @property
    def url(self) -> NodeParameter:
        return NodeParameter(type=(str, Secret), default=self.default_url, description=f"{self.forms} URL")


def require(module: str, client: str) -> Any:
    """Import ``module`` (a broker client) or fail naming the extra that installs it."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise ImportError(f"this node needs the {client} client: {EXTRA}") from exc


def display(url: str) -> str:
    """``url`` safe to show: no user info, no query string."""
    from kailash.nodes.api._transport import display_url

    return display_url(url)


class Malformed(ValueError):
    """A message whose payload does not parse as the node's ``message_format``."""


def decode(raw: Any, message_format: str) -> Any:
    """Payload bytes/str → data (parsed JSON, or text); raises :class:`Malformed`."""
    if isinstance(raw, (bytes, bytearray, memoryview)):
        try:
            raw = bytes(raw).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise Malformed(f"not UTF-8 ({exc})") from None
    if message_format == "text":
        return raw
    try:
        return json.loads(raw)
    except ValueError as exc:
        snippet = raw if len(raw) <= 80 else raw[:80] + "..."
        raise Malformed(f"not valid JSON ({exc}): {snippet!r}") from None


def encode(data: Any, message_format: str) -> bytes:
    """Data → payload bytes (JSON, or text/bytes as given)."""
    if isinstance(data, bytes):
        return data
    if message_format == "text":
        return str(data).encode("utf-8")
    return json.dumps(data, separators=(",", ":"), default=str).encode("utf-8")


def _event_time(value: Any) -> float | None:
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            try:
                return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
            except ValueError:
                return None
    return None


class _Named:
    """Errors that name the node, the parameter and what was expected; secrets scrubbed."""

    name: str | None
    broker: ClassVar[Broker]
    _secrets: frozenset[str] = frozenset()

    def values(self, inputs: dict[str, Any]) -> dict[str, Any]:
        """Parameter defaults, then the node's config, then ``inputs`` (a stream run passes validated inputs)."""
        params = self.get_parameters()  # type: ignore[attr-defined]
        config = self.config  # type: ignore[attr-defined]
        out = {k: p.default for k, p in params.items()}
        out.update({k: v for k, v in config.items() if k in params})
        out.update(inputs)
        return out

    def _where(self) -> str:
        kind = type(self).__name__
        return f"node '{self.name}' ({kind})" if self.name else kind

    def _bad(self, param: str, expected: str, got: Any) -> NodeConfigurationError:
        got = redact(got, self._secrets, urls=True) if isinstance(got, str) else got
        return NodeConfigurationError(f"{self._where()}: parameter '{param}' must be {expected}, got {got!r}",
                                      node_id=self.name, parameter=param, expected=expected, got=got)

    def _error(self, text: str, **context: Any) -> NodeExecutionError:
        return NodeExecutionError(redact(f"{self._where()}: {text}", self._secrets, urls=True),
                                  node_id=self.name, **context)

    def _url(self, v: dict[str, Any], param: str = "url") -> str:
        schemes = self.broker.schemes
        value = v.get(param)
        if type(value) is not str and not isinstance(value, Secret):
            raise self._bad(param, f"a {'/'.join(s + '://' for s in schemes)} URL (str or Secret)", type(value).__name__)
        url = str(reveal(value))
        self._secrets = self._secrets | plain_secret_values(value) | frozenset(
            c for c in _url_secrets(url) if len(c) >= 3)
        scheme = url.split("://", 1)[0].lower() if "://" in url else ""
        if scheme not in schemes:
            raise self._bad(param, f"a {'/'.join(s + '://' for s in schemes)} URL", display(url))
        return url

    def _choice(self, v: dict[str, Any], param: str, options: tuple[str, ...]) -> str:
        value = v.get(param) or options[0]
        if value not in options:
            raise self._bad(param, " or ".join(repr(o) for o in options), value)
        return str(value)

    def _positive(self, v: dict[str, Any], param: str, *, allow_none: bool = True, number: bool = False) -> Any:
        value: Any = v.get(param)
        if value is None and allow_none:
            return None
        ok = (isinstance(value, (int, float)) if number else type(value) is int) and not isinstance(value, bool)
        if not ok or value <= 0:
            raise self._bad(param, "a positive number" + ("" if number else " (int)"), value)
        return value

    def _name(self, v: dict[str, Any], param: str) -> str:
        value = v.get(param)
        if type(value) is not str or not value.strip():
            raise self._bad(param, "a non-empty name", value)
        return value


def _url_secrets(url: str) -> list[str]:
    from kailash.security.credentials import url_credentials

    return url_credentials(url)


SOURCE_PARAMETERS = {
    "delivery": NodeParameter(type=str, default="per_event", choices=("per_event", "batch"),
                              description="'per_event': a workflow run is a stream run; 'batch': one list of events"),
    "max_events": NodeParameter(type=int, default=None, description="stop after this many events (no limit)"),
    "timeout": NodeParameter(type=float, default=30.0,
                             description="idle seconds: the stream ends when no event arrives for this long"),
    "message_format": MESSAGE_FORMAT,
    "on_malformed": NodeParameter(type=str, default="error",
                                  description="'error' (fail, event stays unacknowledged) or 'skip' (ack and drop)"),
    "key_field": NodeParameter(type=str, default=None, description="payload field whose value is the event key"),
    "timestamp_field": NodeParameter(type=str, default=None,
                                     description="payload field holding the event time (epoch seconds or ISO 8601)"),
}


class BrokerSourceNode(_Named, StreamSource, AsyncNode):
    """Base of the broker sources: common parameters, batch run, event outputs."""

    _abstract_node = True
    capabilities = frozenset({"network"})
    primary_output = "data"

    def system_parameters(self) -> dict[str, NodeParameter]:
        """The system's own parameters (stream/queue names, consumer options), after ``url``."""
        raise NotImplementedError

    def get_parameters(self) -> dict[str, NodeParameter]:
        return {"url": self.broker.url, **self.system_parameters(), **SOURCE_PARAMETERS}

    def get_outputs(self) -> dict[str, NodeParameter]:
        return {
            "data": NodeParameter(description="the event's payload (a list of events in a batch run)"),
            "event_type": NodeParameter(type=str, description="the event's stream/subject/topic/routing key"),
            "id": NodeParameter(description="the event's id or position"),
            "key": NodeParameter(type=str, description="the event's key (key_field)"),
            "timestamp": NodeParameter(type=float, description="the event time, seconds since the epoch"),
            "event": NodeParameter(type=dict, description="{event_type, data, id}"),
            "done": NodeParameter(type=bool, description="the stream has ended"),
            "stopped_by": NodeParameter(type=str, description="max_events, timeout or closed"),
            "count": NodeParameter(type=int, description="how many events (batch run)"),
        }

    def streams(self, inputs: dict[str, Any]) -> bool:
        """``delivery="per_event"`` (default): a run of the workflow is a stream run; ``"batch"``: an ordinary run."""
        return self._choice(inputs, "delivery", ("per_event", "batch")) == "per_event"

    def event_outputs(self, event: StreamEvent) -> dict[str, Any]:
        return {"data": event.data, "event_type": event.event_type, "id": event.id, "key": event.key,
                "timestamp": event.timestamp, "event": event.as_dict(), "done": False, "stopped_by": None}

    def common(self, v: dict[str, Any]) -> dict[str, Any]:
        """The validated common source options, ``url`` first."""
        url = self._url(v)
        timeout = v.get("timeout", 30.0)
        if timeout is not None:
            timeout = self._positive(v, "timeout", number=True)
        for p in ("key_field", "timestamp_field"):
            if v.get(p) is not None and type(v.get(p)) is not str:
                raise self._bad(p, "a field name (str)", v.get(p))
        return {"url": url, "max_events": self._positive(v, "max_events"), "timeout": timeout,
                "message_format": self._choice(v, "message_format", FORMATS),
                "skip_malformed": self._choice(v, "on_malformed", ("error", "skip")) == "skip",
                "key_field": v.get("key_field"), "timestamp_field": v.get("timestamp_field")}

    async def async_run(self, **inputs: Any) -> dict[str, Any]:
        """A run outside a stream run: collect events until a stop rule, acknowledge them, output the list.

        The events are acknowledged when read, before any downstream node ran: use a
        stream run for at-least-once processing.
        """
        cursor = await self.open_stream(inputs)
        events: list[dict[str, Any]] = []
        try:
            async for event in cursor:
                events.append(self.event_outputs(event)["event"] | {"key": event.key, "timestamp": event.timestamp})
                await cursor.ack(event)
        finally:
            await cursor.close()
        return {"data": events, "count": len(events), "stopped_by": cursor.stopped_by or "closed",
                "done": True, "event_type": None, "id": None, "key": None, "timestamp": None, "event": None}


class BrokerWriterNode(_Named, AsyncNode):
    """Base of the broker writers: one connection kept per event loop between runs."""

    _abstract_node = True
    capabilities = frozenset({"network"})
    primary_output = "id"

    def outgoing(self, inputs: dict[str, Any], target: str) -> tuple[dict[str, Any], str, str, str, bytes]:
        """How every writer run starts: (values, url, the name in parameter ``target``, message_format, payload)."""
        v = self.values(inputs)
        url, name, fmt = self._url(v), self._name(v, target), self._choice(v, "message_format", FORMATS)
        return v, url, name, fmt, encode(v.get("data"), fmt)

    async def connection(self, key: Any, connect: Callable[[], Awaitable[Any]]) -> Any:
        """The client kept for ``key`` on this event loop, else a new one from ``connect()``, kept."""
        client = self._client_for(key)
        if client is None:
            client = await connect()
            self._keep_client(key, client)
        return client

    def _client_for(self, key: Any) -> Any:
        import asyncio

        held = self.__dict__.get("_broker_client")
        if held is None:
            return None
        if held[0] is asyncio.get_running_loop() and held[1] == key:
            return held[2]
        self.__dict__.pop("_broker_client", None)  # made on another (finished) event loop, or another URL
        self.discard(held[2])
        return None

    def discard(self, client: Any) -> None:
        """Let go of a client kept from another event loop (sync; its loop may be closed)."""

    def _keep_client(self, key: Any, client: Any) -> None:
        import asyncio

        self.__dict__["_broker_client"] = (asyncio.get_running_loop(), key, client)

    def _drop_client(self) -> Any:
        held = self.__dict__.pop("_broker_client", None)
        return None if held is None else held[2]

    async def aclose(self) -> None:
        """Close the kept connection (call from the event loop that used the writer)."""
        client = self._drop_client()
        if client is not None:
            await self.shutdown(client)

    async def shutdown(self, client: Any) -> None:
        """Close one kept client (each writer knows its own)."""

    def close(self) -> None:
        """Forget the kept connection (it belongs to the event loop that made it)."""
        self._drop_client()

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state.pop("_broker_client", None)
        return state


class BrokerCursor:
    """The loop over a broker's messages: parse, stop rules, malformed handling.

    Subclasses implement :meth:`receive` (a batch of raw messages, empty when ``wait``
    seconds passed without one), :meth:`parse` (raw → StreamEvent), :meth:`ack_token`,
    :meth:`nack_token` and :meth:`release`. Messages received but not yet yielded when
    the iteration stops are handed to :meth:`unread` (default: nack) so the broker
    redelivers them.
    """

    def __init__(self, node: BrokerSourceNode, options: dict[str, Any], where: str) -> None:
        self.node = node
        self.options = options
        self.where = where  # the stream/queue/topic, for messages
        self.stopped_by: str | None = None
        self.closed = False
        self.stopping = False  # request_stop(): end at the next wake-up, reading nothing more
        self.delivered = 0
        self._gen: Any = None

    async def receive(self, wait: float | None) -> list[Any]:
        raise NotImplementedError

    def parse(self, raw: Any) -> StreamEvent:
        raise NotImplementedError

    async def ack_token(self, token: Any) -> None:
        raise NotImplementedError

    async def nack_token(self, token: Any) -> None:
        raise NotImplementedError

    async def release(self) -> None:
        raise NotImplementedError

    async def unread(self, raws: list[Any]) -> None:
        for raw in raws:
            await self.nack_token(self.token_of(raw))

    def token_of(self, raw: Any) -> Any:
        return raw

    def fill(self, event: StreamEvent) -> StreamEvent:
        """Set key and timestamp from the payload fields named by key_field/timestamp_field."""
        data = event.data
        if isinstance(data, dict):
            kf, tf = self.options["key_field"], self.options["timestamp_field"]
            if kf is not None and data.get(kf) is not None:
                event.key = str(data[kf])
            if tf is not None:
                ts = _event_time(data.get(tf))
                if ts is not None:
                    event.timestamp = ts
        return event

    def __aiter__(self) -> AsyncIterator[StreamEvent]:
        self._gen = self._events()
        return self._gen

    def request_stop(self) -> None:
        """End the iteration at the next wake-up (at most a second), without cancelling a receive.

        A stream run calls this (instead of cancelling ``__anext__``) to stop on a signal,
        ``stop`` or its idle ``timeout``: a receive cut off mid-way could leave messages
        delivered by the broker but never seen here (NATS then holds them for ``ack_wait``).
        """
        self.stopping = True

    async def _events(self) -> AsyncIterator[StreamEvent]:
        timeout = self.options["timeout"]
        max_events = self.options["max_events"]
        last = time.monotonic()
        while not self.closed:
            wait = None if timeout is None else timeout - (time.monotonic() - last)
            if wait is not None and wait <= 0:
                self.stopped_by = "timeout"
                return
            batch = await self.receive(wait)
            if self.stopping or self.closed:
                await self.unread(batch)
                break
            for i, raw in enumerate(batch):
                try:
                    event = self.fill(self.parse(raw))
                except Malformed as exc:
                    if self.options["skip_malformed"]:
                        await self.ack_token(self.token_of(raw))
                        continue
                    await self.unread(batch[i + 1:])
                    raise self.node._error(
                        f"a message from {self.where} is malformed: {exc}; set on_malformed='skip' to acknowledge "
                        "and drop such messages or message_format='text' to take them as text (the message stays "
                        "unacknowledged and is delivered again)",
                        parameter="message_format", expected=f"{self.options['message_format']} messages",
                    ) from None
                try:
                    yield event
                except BaseException:
                    await self.unread(batch[i + 1:])
                    raise
                self.delivered += 1
                last = time.monotonic()
                if self.closed or self.stopping or (max_events is not None and self.delivered >= max_events):
                    self.stopped_by = self.stopped_by or (
                        "max_events" if not (self.closed or self.stopping) else "closed")
                    await self.unread(batch[i + 1:])
                    return
        self.stopped_by = self.stopped_by or "closed"

    async def ack(self, event: StreamEvent) -> None:
        await self.ack_token(event.token)

    async def nack(self, event: StreamEvent) -> None:
        await self.nack_token(event.token)

    async def close(self) -> None:
        if not self.closed:
            self.closed = True
            gen, self._gen = self._gen, None
            if gen is not None:  # left suspended at an event (the consumer stopped early): hand back the rest
                try:
                    await gen.aclose()
                except Exception:  # noqa: S110 - releasing the connection below matters more
                    pass
            await self.release()
