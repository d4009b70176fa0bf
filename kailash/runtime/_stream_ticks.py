"""The timed wake-up of stream runs: time windows close on a quiet stream.

A :class:`~kailash.nodes.data.stream_source.StreamStage` that closes on time (a time
``WindowNode``; :meth:`~StreamStage.stream_ticks`) is asked after each event when it is
next due (:meth:`~StreamStage.stream_due`), and one loop timer is set for the earliest.
When it fires and no event is being processed (the source is quiet: the run is awaiting
the cursor's ``__anext__``, whichever source it is), the close runs at once beside that
pending read: the stage's :meth:`~StreamStage.stream_tick` outputs run the nodes below it
as one part of the plan, recorded like an event's (node stats; a failure fails the run or
is dead-lettered). When an event is in flight at that time, the close runs right after
it. The next event waits for a close in progress, so a window's outputs come before the
next event's. A run with no ticking stage never builds a :class:`WindowTicker`.

This module owns the timer only: it never reads the source. When the run's windows hold
events (:mod:`kailash.runtime._stream_holds`), a close acknowledges, through the run, the
events of the window it emitted once the nodes below finished with it.
"""

from __future__ import annotations

import asyncio
import math
from typing import TYPE_CHECKING, Any

from kailash.errors import KailashError
from kailash.nodes.data.stream_source import StreamEvent

if TYPE_CHECKING:
    from kailash.runtime.streaming import StreamRun
    from kailash.workflow.plan import Step

__all__ = ["WindowTicker", "ticking_stages"]

_IDLE_RETRY = 0.01  # seconds: the soonest wake-up again after a tick that closed nothing (never a busy loop)


def ticking_stages(run: StreamRun) -> list[Step]:
    """The stages of ``run`` that close on time, asked with their configuration and run parameters."""
    found = []
    for step in run.stages:
        node: Any = step.node
        guess = {**step.base, **node.config, **(run.overrides.get(step.id) or {})}
        if node.stream_ticks(guess):
            found.append(step)
    return found


class WindowTicker:
    """Closes the due windows of one stream run (see the module docstring).

    Args:
        run: the stream run (its ``waiting`` flag, ``run_part``, ``event_failed``, ``request_stop``).
        stages: the stages that tick (:func:`ticking_stages`).
        upstream: the outputs of the nodes upstream of the source (fixed for every part).
        failed: the run's failure list; a close that fails the run appends to it.
        sequential: one event at a time (a close then never overlaps an event's part).
        cursor: the source's cursor (acknowledges the events of a window closed here, when they are held).
    """

    __slots__ = ("run", "stages", "upstream", "failed", "sequential", "cursor", "loop", "closed", "_handle", "_at",
                 "_closing", "_stopped")

    def __init__(self, run: StreamRun, stages: list[Step], upstream: dict[str, Any],
                 failed: list[tuple[KailashError, str]], sequential: bool, cursor: Any = None) -> None:
        self.run = run
        self.stages = [(s, frozenset(run.plan.descendants([s.id]) - {s.id})) for s in stages]
        self.upstream = upstream
        self.failed = failed
        self.sequential = sequential
        self.cursor = cursor
        self.loop = asyncio.get_running_loop()
        self.closed = 0  # windows closed by a tick
        self._handle: asyncio.TimerHandle | None = None
        self._at = math.inf
        self._closing: asyncio.Task[None] | None = None
        self._stopped = False

    def _due(self) -> float | None:
        due: float | None = None
        for step, _ in self.stages:
            d = step.node.stream_due()  # type: ignore[attr-defined]
            if d is not None and (due is None or d < due):
                due = d
        return due

    def _arm(self, due: float, soonest: float = 0.0) -> None:
        """Wake at ``due`` seconds from now (at least ``soonest``), unless the timer is already
        set sooner (a timer that fires before a stage is due sets itself again)."""
        at = self.loop.time() + max(due, soonest)
        if self._stopped or (self._handle is not None and self._at <= at + 0.001):
            return
        if self._handle is not None:
            self._handle.cancel()
        self._handle = self.loop.call_at(at, self._wake)
        self._at = at

    def arm(self, soonest: float = 0.0) -> None:
        """After an event (concurrent runs): set the timer for the next due close."""
        due = self._due()
        if due is not None:
            self._arm(due, soonest)

    async def after_event(self) -> None:
        """After an event (sequential runs): close what is due now, else set the timer."""
        due = self._due()
        if due is None or self._closing is not None:
            return
        if due <= 0:
            await self._close()
        else:
            self._arm(due)

    def _wake(self) -> None:
        self._handle, self._at = None, math.inf
        if self._stopped or self._closing is not None or self.failed:
            return
        if self.sequential and not self.run.waiting:  # an event in flight: after_event closes when it is done
            return
        self._closing = self.loop.create_task(self._close())  # a stage not due yet returns None and re-arms

    async def _close(self) -> None:
        lock = self.run.holds.lock if self.run.holds is not None else None
        if lock is None:
            await self._close_due()
            return
        async with lock:  # one part at a time while windows hold events
            await self._close_due()

    async def _close_due(self) -> None:
        emitted = 0
        holds = self.run.holds
        try:
            for step, below in self.stages:
                out = step.node.stream_tick()  # type: ignore[attr-defined]
                if out is None:
                    continue
                emitted += 1
                self.closed += 1
                res = await self.run.run_part({**self.upstream, step.id: out}, below)
                if isinstance(res, KailashError):
                    window = StreamEvent(out.get("result", out), "window_closed")
                    stop = await self.run.event_failed(window, res, None)
                    if stop is not None:
                        self.failed.append((stop, stop.node_id or step.id))
                        self.run.request_stop("failed")
                        return
                if holds is not None and self.cursor is not None:  # done (or dead-lettered): its events
                    await self.run.ack_released(self.cursor, None, res)
        finally:
            self._closing = None
            if not self.failed:
                self.arm(0.0 if emitted else _IDLE_RETRY)

    async def settle(self) -> None:
        """Wait for a close in progress (before the next event, and at the end of the stream)."""
        task = self._closing
        if task is not None:
            await task

    def stop(self) -> None:
        """No more wake-ups (the stream ended)."""
        self._stopped = True
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None

    def abort(self) -> None:
        """The run is ending abnormally (cancelled, interrupted): no wake-up, and no close left running."""
        self.stop()
        task, self._closing = self._closing, None
        if task is not None and not task.done():
            task.cancel()
