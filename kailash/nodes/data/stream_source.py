"""The stream-source protocol: how a node hands a runtime a stream, event by event.

A node that is a *stream source* (websocket/SSE :class:`~kailash.nodes.data.streaming.EventStreamNode`,
Redis Streams, NATS JetStream, MQTT, AMQP) lets a runtime run a workflow as a stream
run: the runtime opens the source once (:meth:`StreamSource.open_stream`), and for each
:class:`StreamEvent` the cursor yields it runs the nodes downstream of the source with
:meth:`StreamSource.event_outputs` as the source's outputs, then acknowledges the event
(:meth:`StreamCursor.ack`) only after those nodes finished. A crash therefore loses
nothing a broker has not been told is done (at-least-once).

Nothing here imports a broker client; each source imports its own when opened.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

__all__ = ["StreamEvent", "StreamCursor", "StreamSource", "is_stream_source", "StreamStage", "NO_OUTPUT_KEY",
           "no_output", "is_no_output"]

NO_OUTPUT_KEY = "kailash_no_output"
"""The one output of a node that has nothing for this event (see :func:`no_output`)."""


@dataclass(slots=True)
class StreamEvent:
    """One event of a stream.

    Attributes:
        data: the payload (parsed JSON, or text/bytes when the source is told so).
        event_type: the event's type or subject/topic/routing key, if the system has one.
        id: the event's id or position (stream entry id, sequence number, delivery tag).
        key: events with the same key are processed in order (per-key order); None: no key.
        timestamp: event time in seconds since the epoch, when the event carries one.
        token: opaque, for the source's own :meth:`StreamCursor.ack`.
    """

    data: Any
    event_type: str | None = None
    id: Any = None
    key: str | None = None
    timestamp: float | None = None
    token: Any = None

    def as_dict(self) -> dict[str, Any]:
        """``{event_type, data, id}``: the ``event`` output of a source node."""
        return {"event_type": self.event_type, "data": self.data, "id": self.id}


@runtime_checkable
class StreamCursor(Protocol):
    """An open stream: iterate it for events, acknowledge each one when its work is done.

    Iteration ends when the stream ends or a stop rule of the source fires
    (``max_events``, ``stop_condition``); :attr:`stopped_by` then says which. A cursor
    may also offer ``request_stop()`` (sync): end the iteration at its next wake-up; a
    stream run calls it to stop instead of cancelling a pending ``__anext__``.
    """

    stopped_by: str | None

    def __aiter__(self) -> AsyncIterator[StreamEvent]: ...

    async def ack(self, event: StreamEvent) -> None:
        """The event's downstream work finished: the broker may forget it."""

    async def nack(self, event: StreamEvent) -> None:
        """The event's work failed and the event was not dead-lettered: the broker may redeliver it."""

    async def close(self) -> None:
        """Stop reading and release the connection (unacknowledged events are redelivered later)."""


class StreamSource:
    """Mixin for nodes that can be the source of a stream run.

    Subclasses implement :meth:`open_stream` and :meth:`event_outputs`;
    :meth:`streams` says whether this configuration streams (a node with a batch mode
    returns False for it, and then runs as an ordinary node).
    """

    def streams(self, inputs: dict[str, Any]) -> bool:
        """True when a run with these inputs should be a stream run."""
        return True

    async def open_stream(self, inputs: dict[str, Any]) -> StreamCursor:
        """Connect and return a cursor over the events (``inputs``: the node's validated parameters)."""
        raise NotImplementedError

    def stream_unacked_limit(self, inputs: dict[str, Any]) -> tuple[int, str] | None:
        """How many delivered events may be unacknowledged at once (the broker stops delivering beyond it)
        and the parameter that sets it, or None: no limit. Windows that hold more than this fail the run
        before the first event (they would wait forever for events the broker holds back)."""
        return None

    def event_outputs(self, event: StreamEvent) -> dict[str, Any]:
        """The node's outputs for one event, as its downstream connections see them."""
        return {"data": event.data, "event_type": event.event_type, "id": event.id, "event": event.as_dict(),
                "done": False, "stopped_by": None}


def is_stream_source(node: Any) -> bool:
    """True when ``node`` implements the stream-source protocol."""
    return isinstance(node, StreamSource)


def no_output() -> dict[str, Any]:
    """What a :class:`StreamStage` node returns for an event it only absorbs (a window not yet closed).

    In a stream run the nodes below it do not run for that event (they are skipped, as
    for a branch not taken). Only nodes that are a :class:`StreamStage` are checked for
    it (the others keep the engine's fast path). Outside a stream run it is an ordinary
    output dict.
    """
    return {NO_OUTPUT_KEY: True}


def is_no_output(outputs: Any) -> bool:
    """True when ``outputs`` is :func:`no_output`'s signal."""
    return type(outputs) is dict and len(outputs) == 1 and outputs.get(NO_OUTPUT_KEY) is True


class StreamStage:
    """Mixin for nodes that keep state across the events of a stream run (windows), and
    may return :func:`no_output` for an event.

    The runtime calls :meth:`stream_started` before the first event and, when the
    stream ends without a failure, :meth:`stream_ended`: outputs returned then (the
    last partial window) run the nodes below this one once more.

    A stage that closes on time (a time window) says so in :meth:`stream_ticks`; the
    runtime then asks :meth:`stream_due` after each event and, when that time comes and
    no event is being processed (the source is quiet), calls :meth:`stream_tick`:
    outputs returned run the nodes below this one, as for an event. Stages that do not
    tick cost nothing per event.

    A stage that holds events back reports how many in :meth:`stream_held`; the runtime
    then acknowledges those events only when the window they went into was emitted and
    the nodes below it finished with it (:mod:`kailash.runtime._stream_holds`). A stage
    that keeps the default has its events acknowledged after their own part.
    """

    def stream_started(self) -> None:
        """A stream run begins: forget state left by an earlier run."""

    def stream_ended(self) -> dict[str, Any] | None:
        """The stream ended: the outputs still held back, or None."""
        return None

    def stream_held(self) -> int:
        """How many of the events given to this stage are held in its open window (not yet emitted)."""
        return 0

    def stream_holds_at_most(self, inputs: dict[str, Any]) -> int | None:
        """The most events this stage holds unacknowledged before it emits (a count window's size), or None: no bound."""
        return None

    def stream_ticks(self, inputs: dict[str, Any]) -> bool:
        """Whether this stage closes on time (``inputs``: its configuration and run parameters)."""
        return False

    def stream_due(self) -> float | None:
        """Seconds from now until :meth:`stream_tick` has something to emit (<= 0: now); None: nothing pending."""
        return None

    def stream_tick(self) -> dict[str, Any] | None:
        """Time has passed with no event: the outputs now due (a closed window), or None."""
        return None
