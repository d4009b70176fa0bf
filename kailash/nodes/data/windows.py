"""WindowNode: group the events of a stream run into tumbling windows and emit one aggregate per window.

A window is either ``size`` events (by count) or ``duration`` seconds (by time). Time
is the event's own (``timestamp_field`` of its data: seconds since the epoch, or an ISO
8601 string) or, without one, its arrival time on the node's clock. Windows are aligned
to multiples of ``duration`` since the epoch; a time window closes when the first event
of a later window arrives (or the stream ends), so a quiet stream closes its window late,
never early. An event older than the open window is counted in the open window.

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
    Outputs ``result`` (``{window_start, window_end, count, ...}``) and each aggregate by
    name. ``clock=`` (a callable returning seconds, e.g. :class:`ManualClock`) replaces the
    wall clock for arrival times.

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
        }

    def get_outputs(self) -> dict[str, NodeParameter]:
        out = {"result": NodeParameter(type=dict, description="{window_start, window_end, and each aggregate}")}
        for name in ("window_start", "window_end", *AGGREGATES):
            out[name] = NodeParameter(description=f"the window's {name}")
        return out

    # -- the stream-stage protocol ---------------------------------------------------------------
    def stream_started(self) -> None:
        with self._lock:
            self._reset(None)

    def stream_ended(self) -> dict[str, Any] | None:
        with self._lock:
            if not self._count:
                return None
            out = self._emit()
            self._reset(None)
            return out

    # -- one event ---------------------------------------------------------------------------------
    def run(self, **inputs: Any) -> dict[str, Any]:
        size, duration, aggregates = self._settings(inputs)
        data = inputs.get("data")
        field = inputs.get("field")
        value = self._value(data, field) if field else data
        with self._lock:
            self._aggs = aggregates
            if size is not None:
                self._add(value, field)
                if self._count >= size:
                    out = self._emit()
                    self._reset(None)
                    return out
                return no_output()
            width = float(duration or 0.0)  # set: _settings made sure one of size/duration is
            ts = self._time(data, inputs.get("timestamp_field"))
            start = math.floor(ts / width) * width
            end = self._end
            if end is None:
                self._start, self._end = start, start + width
            elif start >= end:  # a later window: close the open one, this event opens the next
                out = self._emit()
                self._reset(start)
                self._end = start + width
                self._add(value, field)
                return out
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
        return size, float(duration) if duration is not None else None, tuple(aggs)

    def _reset(self, start: float | None) -> None:
        self._start = start
        self._end = None
        self._count = 0
        self._sum = 0
        self._min = None
        self._max = None
        self._items = []

    def _add(self, value: Any, field: str | None) -> None:
        self._count += 1
        aggs = self._aggs
        if "list" in aggs:
            self._items.append(value)
        if not any(a in aggs for a in ("sum", "avg", "min", "max")):
            return
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            where = f"field '{field}'" if field else "data"
            raise NodeExecutionError(f"node {self.label} (WindowNode): {where} of the event must be a number for "
                                     f"{'/'.join(a for a in aggs if a not in ('count', 'list'))}, got {value!r}",
                                     node_id=self.name, parameter="field", expected="a number", got=repr(value))
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
