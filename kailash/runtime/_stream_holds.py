"""Events held by windows: acknowledged only when the window they went into is done.

A :class:`~kailash.nodes.data.stream_source.StreamStage` that holds events back (a
``WindowNode``) says after each part of a stream run how many of the events it was
given are still in its open window (:meth:`~StreamStage.stream_held`). The runner keeps,
per stage, the events whose part reached it, in arrival order; after each part (an
event's, a window closed on time, the last window at the end) every event beyond the
newest ``stream_held()`` of a stage is released by it: the window it went into was
emitted and the nodes below finished with it (or it was dead-lettered). An event is
acknowledged when every stage it reached released it; the events released together are
acknowledged in arrival order. A crash before then leaves them unacknowledged: the
broker redelivers them and the next run builds the window again.

A stage below another stage (a window of windows) counts windows, not events: then
the events that reached any stage are released together, when no stage holds anything.

In a concurrent run (``window`` > 1) the parts of events run one at a time while the
run has such a stage (the bookkeeping is exact only then); the nodes below a window run
once per window. Held events do not count against ``window``: an absorbed event's part
is over when the window takes it. A run with no such stage never builds
:class:`HeldEvents`: its events are acknowledged as before, at no extra cost.
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import TYPE_CHECKING, Any

from kailash.errors import KailashError
from kailash.nodes.data.stream_source import StreamEvent

if TYPE_CHECKING:
    from kailash.workflow.plan import ExecutionPlan, Step

__all__ = ["HeldEvents", "holding_stages"]


def holding_stages(stages: list[Step]) -> list[Step]:
    """The stages that report what they hold (their ``stream_held`` is not the protocol's default)."""
    from kailash.nodes.data.stream_source import StreamStage

    return [s for s in stages if getattr(type(s.node), "stream_held", None) is not StreamStage.stream_held]


class HeldEvents:
    """The events of one stream run held by its windows (see the module docstring).

    Args:
        plan: the run's plan.
        stages: the stages that hold events (:func:`holding_stages`).
        concurrent: parts may overlap (``window`` > 1): they then take :attr:`lock`.
    """

    __slots__ = ("stages", "nested", "reached", "seq", "lock", "any_held")

    def __init__(self, plan: ExecutionPlan, stages: list[Step], concurrent: bool) -> None:
        self.stages = stages
        ids = {s.id for s in stages}
        self.nested = any(ids & (plan.descendants([s.id]) - {s.id}) for s in stages)
        self.reached: dict[str, deque[list[Any]]] = {s.id: deque() for s in stages}
        self.any_held: deque[list[Any]] = deque()  # nested: the events that reached any stage
        self.seq = 0
        self.lock = asyncio.Lock() if concurrent else None

    def settle(self, event: StreamEvent | None, outcome: Any) -> list[StreamEvent]:
        """After a part (``event`` None: a window closed on time, or the last ones): the events to acknowledge now.

        ``outcome``: the part's results, or its :class:`KailashError` (a dead-lettered part).
        """
        entry: list[Any] | None = None
        if event is not None:
            self.seq += 1
            entry = [event, 0, self.seq]  # the event, the stages still holding it, its arrival
            results = getattr(outcome, "results", None) if isinstance(outcome, KailashError) else outcome
            results = results or {}
            for s in self.stages:
                if s.id in results:  # the stage ran for this event (a stage that failed on it holds nothing)
                    if self.nested:
                        if not entry[1]:
                            entry[1] = 1
                            self.any_held.append(entry)
                    else:
                        entry[1] += 1
                        self.reached[s.id].append(entry)
        out: list[list[Any]] = []
        if self.nested:
            if all(not s.node.stream_held() for s in self.stages):  # type: ignore[attr-defined]
                out = list(self.any_held)
                self.any_held.clear()
        else:
            for s in self.stages:
                dq = self.reached[s.id]
                if not dq:
                    continue
                keep = s.node.stream_held()  # type: ignore[attr-defined]
                while len(dq) > keep:
                    e = dq.popleft()
                    e[1] -= 1
                    if e[1] == 0:
                        out.append(e)
        if entry is not None and entry[1] == 0 and entry not in self.any_held and not any(e is entry for e in out):
            out.append(entry)  # reached no holding stage: its own part is all its work
        if len(out) > 1:
            out.sort(key=lambda e: e[2])
        return [e[0] for e in out]

    def held(self) -> int:
        """How many events are held now."""
        if self.nested:
            return len(self.any_held)
        return len({id(e) for dq in self.reached.values() for e in dq})
