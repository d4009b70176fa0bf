"""WindowNode: group the events of a stream run into tumbling windows and emit one aggregate per window.

A window is either ``size`` events (by count) or ``duration`` seconds (by time). Time
is the event's own (``timestamp_field`` of its data: seconds since the epoch, or an ISO
8601 string; *event time*) or, without one, its arrival time on the node's clock
(*processing time*). Windows are aligned to multiples of ``duration`` since the epoch.
A time window closes when the first event of a later window arrives, or, on a quiet
stream, when the stream run's tick finds it due (:meth:`WindowNode.stream_tick`): in
processing time when the clock passes its end; in event time when the *watermark* does
(the latest event time seen, which advances with the monotonic clock once the stream has
been quiet ``idle`` seconds). An event whose window has already closed (*late*) counts
in the earliest window still open, and in that window's ``late``; a window is never
emitted twice.

For an event that does not close a window the node returns
:func:`~kailash.nodes.data.stream_source.no_output`: in a stream run the nodes below it
run only when a window closes. When the stream ends, the last partial window is
emitted (:class:`~kailash.nodes.data.stream_source.StreamStage`). Memory is constant
per window, except the ``list`` aggregate, which keeps the window's values.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any

from kailash.errors import NodeConfigurationError, NodeExecutionError
from kailash.nodes.base import Node, NodeParameter, register_node
from kailash.nodes.data.stream_source import StreamStage, no_output

__all__ = ["WindowNode", "ManualClock"]

AGGREGATES = ("count", "sum", "avg", "min", "max", "list")
_EARLY = 0.002  # seconds: a tick this close to a window's due time closes it (timers may fire a little early)


class ManualClock:
    """A clock that moves only when told (for tests): ``clock()`` is the time, ``advance(s)`` moves it.

    Example:
        >>> clock = ManualClock(100.0)
        >>> clock.advance(1.5)
        >>> clock()
        101.5
    """

    def __init__(self, start: float = 0.0) -> None:
        self.now = float(start)

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@register_node(category="data")
class WindowNode(Node, StreamStage):
    """Tumbling windows over a stream's events: one aggregate out per closed window.

    ``size`` (events per window) or ``duration`` (seconds per window); ``field`` names the
    value aggregated (a key of the event's ``data``, dots for nested keys; none: ``data``
    itself); ``aggregates`` picks ``count``, ``sum``, ``avg``, ``min``, ``max``, ``list``.
    Outputs ``result`` (``{window_start, window_end, count, ...}``; time windows add
    ``late``, the events counted here whose own window had already closed or passed) and
    each aggregate by name. ``timestamp_field`` makes time windows event-time; ``idle``
    (event time only, seconds, default 0) is how long a quiet stream waits before its
    watermark follows the clock. ``clock=`` (a callable returning seconds, e.g.
    :class:`ManualClock`) replaces the wall clock for arrival times; the tick that closes
    a window on a quiet stream projects from the last arrival with the monotonic clock.

    Example:
        >>> w = WindowNode(size=2, field="v", aggregates=["count", "sum"])
        >>> w.execute(data={"v": 1})
        {'kailash_no_output': True}
        >>> w.execute(data={"v": 2})["result"]
        {'window_start': None, 'window_end': None, 'count': 2, 'sum': 3}
    """

    capabilities = frozenset()  # computes only: no files, network or processes

    primary_input = "data"
    primary_output = "result"

    def __init__(self, config: dict[str, Any] | None = None, *, clock: Callable[[], float] | None = None,
                 **kwargs: Any) -> None:
        super().__init__(config, **kwargs)
        self._clock = clock or time.time
        self._lock = threading.Lock()
        self._aggs: tuple[str, ...] = ("count",)
        self._start: float | None = None
        self._end: float | None = None
        self._count = 0
        self._sum: float = 0
        self._min: Any = None
        self._max: Any = None
        self._items: list[Any] = []
        self._late = 0
        self._width: float | None = None  # a time window's duration, once an event set it
        self._grace = 0.0  # event time: idle seconds before the watermark follows the clock
        self._mark: float | None = None  # the latest time seen (event time, or arrival time)
        self._mark_mono = 0.0  # time.monotonic() when _mark was seen
        self._closed_until: float | None = None  # the end of the last time window emitted

    def get_parameters(self) -> dict[str, NodeParameter]:
        return {
            "data": NodeParameter(default=None, description="the event's payload (connect the stream source)"),
            "size": NodeParameter(type=int, default=None, description="events per window (a count window)"),
            "duration": NodeParameter(type=float, default=None, description="seconds per window (a time window)"),
            "timestamp_field": NodeParameter(type=str, default=None,
                                             description="field of data holding the event time; else arrival time"),
            "field": NodeParameter(type=str, default=None, description="field of data to aggregate (none: data)"),
            "aggregates": NodeParameter(type=list, default=["count"],
                                        description="count, sum, avg, min, max, list"),
            "idle": NodeParameter(type=float, default=None,
                                  description="event time: seconds a quiet stream waits before its watermark "
                                              "follows the clock (default 0)"),
        }

    def get_outputs(self) -> dict[str, NodeParameter]:
        out = {"result": NodeParameter(type=dict, description="{window_start, window_end, and each aggregate}")}
        for name in ("window_start", "window_end", *AGGREGATES, "late"):
            out[name] = NodeParameter(description=f"the window's {name}")
        return out

    # -- the stream-stage protocol ---------------------------------------------------------------
    def stream_started(self) -> None:
        with self._lock:
            self._reset(None)
            self._width = self._mark = self._closed_until = None
            self._grace = 0.0

    def stream_ended(self) -> dict[str, Any] | None:
        with self._lock:
            if not self._count:
                return None
            out = self._emit()
            self._closed_until = self._end
            self._reset(None)
            return out

    def stream_held(self) -> int:
        """The events in the open window: a stream run acknowledges them once the window is emitted and done."""
        with self._lock:
            return self._count

    def stream_holds_at_most(self, inputs: dict[str, Any]) -> int | None:
        """A count window holds ``size`` - 1 events before the one that closes it; a time window: no bound."""
        size = inputs.get("size")
        return size - 1 if type(size) is int and size > 0 else None

    def stream_ticks(self, inputs: dict[str, Any]) -> bool:
        """A time window (no ``size``) closes on time: the stream run gives it ticks."""
        return inputs.get("size") is None

    def stream_due(self) -> float | None:
        """Seconds until the open time window is due to close if no event comes (<= 0: due now), or None."""
        with self._lock:
            return self._due_in()

    def stream_tick(self) -> dict[str, Any] | None:
        """Close the open time window if it is due (see the module docstring): its aggregate, or None."""
        with self._lock:
            due = self._due_in()
            if due is None or due > _EARLY:
                return None
            out = self._emit()
            self._closed_until = self._end
            self._reset(None)
            return out

    def _due_in(self) -> float | None:
        # The watermark is _mark, moving with the monotonic clock once the stream was quiet _grace seconds
        # (processing time: _grace is 0, so it is the node's clock projected from the last arrival).
        if self._end is None or not self._count or self._mark is None:
            return None
        return (self._end - self._mark) + self._grace - (time.monotonic() - self._mark_mono)

    # -- one event ---------------------------------------------------------------------------------
    def run(self, **inputs: Any) -> dict[str, Any]:
        size, duration, aggregates = self._settings(inputs)
        data = inputs.get("data")
        field = inputs.get("field")
        value = self._value(data, field) if field else data
        with self._lock:
            self._aggs = aggregates
            self._check(value, field)
            if size is not None:
                self._add(value, field)
                if self._count >= size:
                    out = self._emit()
                    self._reset(None)
                    return out
                return no_output()
            width = float(duration or 0.0)  # set: _settings made sure one of size/duration is
            stamp = inputs.get("timestamp_field")
            ts = self._time(data, stamp)
            self._width = width
            self._grace = float(inputs.get("idle") or 0.0) if stamp else 0.0
            if self._mark is None or ts >= self._mark:
                self._mark, self._mark_mono = ts, time.monotonic()
            start = math.floor(ts / width) * width
            end = self._end
            if end is None:
                closed = self._closed_until
                if closed is not None and start < closed:  # late: its window was emitted; open the next one
                    self._start, self._end = closed, closed + width
                    self._late += 1
                else:
                    self._start, self._end = start, start + width
            elif start >= end:  # a later window: close the open one, this event opens the next
                out = self._emit()
                self._closed_until = end
                self._reset(start)
                self._end = start + width
                self._add(value, field)
                return out
            elif self._start is not None and start < self._start:  # older than the open window: counted in it
                self._late += 1
            self._add(value, field)
            return no_output()

    # -- internals ---------------------------------------------------------------------------------
    def _bad(self, param: str, expected: str, got: Any) -> NodeConfigurationError:
        return NodeConfigurationError(f"node {self.label} (WindowNode): parameter '{param}' must be {expected}, "
                                      f"got {got!r}", node_id=self.name, parameter=param, expected=expected, got=got)

    def _settings(self, inputs: dict[str, Any]) -> tuple[int | None, float | None, tuple[str, ...]]:
        size, duration = inputs.get("size"), inputs.get("duration")
        if (size is None) == (duration is None):
            raise self._bad("size", "set, or 'duration' set (exactly one of them)", size)
        if size is not None and (type(size) is not int or size < 1):
            raise self._bad("size", "a positive number of events", size)
        if duration is not None and (isinstance(duration, bool) or not isinstance(duration, (int, float))
                                     or duration <= 0):
            raise self._bad("duration", "a positive number of seconds", duration)
        aggs = inputs.get("aggregates") or ["count"]
        unknown = [a for a in aggs if a not in AGGREGATES]
        if unknown:
            raise self._bad("aggregates", f"a list of {', '.join(AGGREGATES)}", unknown[0])
        idle = inputs.get("idle")
        if idle is not None:
            if isinstance(idle, bool) or not isinstance(idle, (int, float)) or idle < 0:
                raise self._bad("idle", "a number of seconds >= 0", idle)
            if duration is None or not inputs.get("timestamp_field"):
                raise self._bad("idle", "unset unless the window is an event-time window (duration and "
                                "timestamp_field set)", idle)
        return size, float(duration) if duration is not None else None, tuple(aggs)

    def _reset(self, start: float | None) -> None:
        self._start = start
        self._end = None
        self._count = 0
        self._sum = 0
        self._min = None
        self._max = None
        self._items = []
        self._late = 0

    def _check(self, value: Any, field: str | None) -> None:
        """Fail before any state changes (a window emitted and then lost, or an event held that failed)."""
        aggs = self._aggs
        if not any(a in aggs for a in ("sum", "avg", "min", "max")):
            return
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            where = f"field '{field}'" if field else "data"
            raise NodeExecutionError(f"node {self.label} (WindowNode): {where} of the event must be a number for "
                                     f"{'/'.join(a for a in aggs if a not in ('count', 'list'))}, got {value!r}",
                                     node_id=self.name, parameter="field", expected="a number", got=repr(value))

    def _add(self, value: Any, field: str | None) -> None:
        self._count += 1
        aggs = self._aggs
        if "list" in aggs:
            self._items.append(value)
        if not any(a in aggs for a in ("sum", "avg", "min", "max")):
            return
        self._sum += value
        self._min = value if self._min is None or value < self._min else self._min
        self._max = value if self._max is None or value > self._max else self._max

    def _emit(self) -> dict[str, Any]:
        result: dict[str, Any] = {"window_start": self._start, "window_end": self._end}
        for a in self._aggs:
            if a == "count":
                result["count"] = self._count
            elif a == "sum":
                result["sum"] = self._sum
            elif a == "avg":
                result["avg"] = self._sum / self._count if self._count else None
            elif a == "min":
                result["min"] = self._min
            elif a == "max":
                result["max"] = self._max
            else:
                result["list"] = self._items
        if self._width is not None:
            result["late"] = self._late
        return {"result": result, **result}

    def _value(self, data: Any, path: str) -> Any:
        cur = data
        for part in path.split("."):
            if not isinstance(cur, dict) or part not in cur:
                raise NodeExecutionError(f"node {self.label} (WindowNode): the event has no field '{path}' "
                                         f"(data: {str(data)[:80]})", node_id=self.name, parameter="field",
                                         expected=f"events with a '{path}' field")
            cur = cur[part]
        return cur

    def _time(self, data: Any, field: str | None) -> float:
        if not field:
            return float(self._clock())
        value = self._value(data, field)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):
            try:
                return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
            except ValueError:
                pass
        raise NodeExecutionError(f"node {self.label} (WindowNode): timestamp field '{field}' must hold seconds since "
                                 f"the epoch or an ISO 8601 time, got {value!r}", node_id=self.name,
                                 parameter="timestamp_field", expected="a number or ISO 8601 string")
