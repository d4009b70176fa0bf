"""Stream runs: one run of a workflow consumes a stream, running the nodes below its source once per event.

A workflow whose plan has a node that streams (:mod:`kailash.nodes.data.stream_source`)
is run here by every runtime door, on the one scheduling core
(:class:`~kailash.runtime.scheduler.Run` with ``fixed=`` and ``only=``):

1. the nodes upstream of (or independent from) the source run once;
2. the source is opened (:meth:`StreamSource.open_stream`) and, for each event, the
   part of the plan below it runs with the source's outputs fixed
   (:meth:`StreamSource.event_outputs`); the event is acknowledged after that part
   finished (at-least-once), then the next one is read. An event a window took is
   acknowledged once that window was emitted and its part finished
   (:mod:`kailash.runtime._stream_holds`; nothing to do for runs without one);
   A time window closes on a quiet stream too: a loop timer wakes the run when a
   ticking stage is due and runs its closed window's part beside the source's pending
   read (:mod:`kailash.runtime._stream_ticks`; no timer for runs without one);
3. at the end, nodes that held events back (windows, :class:`StreamStage`) flush, and
   the run is recorded once: the source's result is the stream summary (events,
   failures, dead-lettered, ``stopped_by``, events/s, latency), each node below it one
   row with its summed time. Per-event outputs are not kept: memory stays flat.

A run stops when the stream ends, at ``max_events``, after ``timeout`` idle seconds, when
``stop`` says so, or on SIGINT/SIGTERM (main thread): the event in flight finishes and is
acknowledged, ``stopped_by`` records why. A per-event failure fails the run
(``on_event_error="fail"``) or sends the event with its error to a dead-letter sink and
goes on (``"dead_letter"``). Concurrency (``window`` > 1, ``ParallelRuntime``) keeps the
order of events that share a :attr:`StreamEvent.key`; each event is acknowledged as soon
as its own work is done. Options and the "is this a stream run?" question are in
:mod:`kailash.runtime.stream_options`; dead-letter sinks in :mod:`kailash.runtime._dead_letter`.
"""

from __future__ import annotations

import asyncio
import signal
import threading
import time
from array import array
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, NoReturn

from kailash.errors import KailashError
from kailash.nodes.data.stream_source import StreamEvent, StreamStage, is_no_output
from kailash.runtime.engine import RunContext, RunRecorder, WorkflowResults
from kailash.runtime.scheduler import INLINE, Outputs, Run, call_node
from kailash.runtime.stream_options import StreamOptions, stoppable, stream_job, stream_options, stream_source
from kailash.security.secrets import make_current, restore

if TYPE_CHECKING:
    from kailash.workflow.plan import ExecutionPlan, Step

__all__ = ["StreamOptions", "stream_options", "stream_source", "stream_job", "stoppable", "StreamRun",
           "NoOutputInline", "NoOutputConcurrent", "LoopExecutor", "run_stream_inline", "run_stream_concurrent"]

_LATENCIES = 2048  # latencies kept for the percentiles: the most recent events (constant memory)
_ERRORS = 20  # per-event errors kept in the summary


# -- executors: a node that returns no_output() absorbs the event --------------------------------
class NoOutputInline:
    """The inline executor of stream runs: :func:`call_node`, with ``no_output()`` read as "nothing"."""

    __slots__ = ()

    def call(self, step: Step, inputs: Outputs, ctx: RunContext) -> Outputs:
        out = call_node(step, inputs, ctx)
        return None if is_no_output(out) else out  # type: ignore[return-value]  # None: the nodes below skip


class NoOutputConcurrent:
    """Wraps a concurrent executor the same way."""

    __slots__ = ("inner", "max_concurrency")

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.max_concurrency = inner.max_concurrency

    async def _one(self, step: Step, inputs: Outputs, ctx: RunContext) -> Outputs:
        out = await self.inner.start(step, inputs, ctx)
        return None if is_no_output(out) else out  # type: ignore[return-value]  # None: the nodes below skip

    def start(self, step: Step, inputs: Outputs, ctx: RunContext) -> Awaitable[Outputs]:
        return self._one(step, inputs, ctx)


class LoopExecutor:
    """The executor of ``LocalRuntime`` stream runs with an async node below the source.

    One node at a time (as inline), but async nodes are awaited on the stream run's own
    loop instead of each call getting a fresh loop on a bridge thread: a broker writer
    keeps one connection for the whole run rather than opening one per event.
    """

    __slots__ = ("holds",)
    max_concurrency = 1

    def __init__(self, holds: bool) -> None:
        self.holds = holds

    async def start(self, step: Step, inputs: Outputs, ctx: RunContext) -> Outputs:
        if step.node.is_async:
            from kailash.runtime.scheduler import acall_node

            out = await acall_node(step, inputs, ctx, None)
        else:
            out = call_node(step, inputs, ctx)
        return None if self.holds and is_no_output(out) else out  # type: ignore[return-value]


def _holds_events(plan: ExecutionPlan, source: Step) -> bool:
    """Whether a node below the source may return ``no_output()`` (only :class:`StreamStage` nodes do)."""
    below = plan.descendants([source.id])
    return any(isinstance(s.node, StreamStage) for s in plan.steps if s.id in below and s.id != source.id)


def _awaits(plan: ExecutionPlan, source: Step) -> bool:
    """Whether an async node runs below the source (per event)."""
    below = plan.descendants([source.id])
    return any(s.node.is_async for s in plan.steps if s.id in below and s.id != source.id)


class _PartRecorder(RunRecorder):
    """Records one part of a stream run (the upstream nodes, or one event): rows only, no record."""

    __slots__ = ()

    def completed(self, results: dict[str, Any]) -> None:
        pass

    def failed(self, results: dict[str, Any], error: BaseException, node_id: str | None) -> None:
        pass


Part = Callable[[Run], Awaitable[WorkflowResults]]


class StreamRun:
    """One stream run: the loop over events and its bookkeeping (see the module docstring).

    Args:
        plan, overrides, ctx, recorder: as for :class:`~kailash.runtime.scheduler.Run`.
        source: the streaming step.
        options: :class:`StreamOptions`.
        part: runs one :class:`Run` (a part of the plan) to its results; the runtime's schedule.
    """

    def __init__(self, plan: ExecutionPlan, overrides: dict[str, Outputs], ctx: RunContext, recorder: RunRecorder,
                 source: Step, options: StreamOptions, part: Part) -> None:
        if ctx.workflow is None:
            ctx.workflow = plan.workflow
        self.plan, self.overrides, self.ctx, self.recorder = plan, overrides, ctx, recorder
        self.source, self.options, self.part = source, options, part
        below = plan.descendants([source.id])
        self.upstream = frozenset(s.id for s in plan.steps if s.id not in below)
        self.below = below - {source.id}
        self.stages = [s for s in plan.steps if s.id in self.below and isinstance(s.node, StreamStage)]
        # the counts
        self.events = self.failures = self.dead_lettered = 0
        self.errors: list[dict[str, Any]] = []
        self.node_stats: dict[str, list[float]] = {}  # node id -> [runs, failures, seconds, first start]
        self.latencies = array("d", bytes(8 * _LATENCIES))  # doubles, not float objects
        self.stopped_by: str | None = None
        self.stop_reason: str | None = None  # a stop asked for (signal, stop, timeout), not yet acted on
        self.waiting = False
        self.last_event = 0.0
        self.t_open = 0.0
        self._task: asyncio.Task[Any] | None = None
        self._cursor_stop: Callable[[], None] | None = None  # the cursor's own request_stop(), if it has one
        self._cancelled = False
        self._last_progress = 0.0
        self._sink: Any = None
        self._ticker: asyncio.TimerHandle | None = None
        self._spare: _PartRecorder | None = None
        self._windows: Any = None  # the timed wake-up of time windows (_stream_ticks.WindowTicker), if any
        self.windows_on_time: int | None = None  # windows closed by the timed wake-up (None: no stage ticks)
        self.holds: Any = None  # the events held by windows (_stream_holds.HeldEvents), if a stage holds any
        if self.stages:
            from kailash.runtime._stream_holds import HeldEvents, holding_stages

            holding = holding_stages(self.stages)
            if holding:
                self.holds = HeldEvents(plan, holding, options.window > 1)

    # -- the run --------------------------------------------------------------------------------
    async def run(self) -> WorkflowResults:
        """Run the stream to its end; the results hold the upstream outputs and the stream summary."""
        rec = self.recorder
        if rec.record_outputs != "never":
            rec.record_outputs = "always"  # the summary is the run's output: keep it in the record
        token = make_current(rec.secrets)
        try:
            return await self._run()
        except asyncio.CancelledError:  # the caller gave up on the run: no outcome to record
            rec.abandoned()
            raise
        except (KeyboardInterrupt, SystemExit) as exc:  # stopped the hard way: record, then let it through
            rec.failed(self._results({}, "interrupted"), exc, None)
            raise
        finally:
            restore(token)

    async def _run(self) -> WorkflowResults:
        rec, src = self.recorder, self.source
        up = await self.run_part(None, frozenset(self.upstream - {src.id}))
        if isinstance(up, KailashError):
            self._fail(dict(getattr(up, "results", {}) or {}), up, up.node_id or src.id)
        upstream: dict[str, Outputs] = {k: v for k, v in up.items() if v is not None}
        perf = time.perf_counter
        self.t_open = start = perf()
        try:
            inputs = src.gather(upstream, self.overrides.get(src.id))
            if inputs is None:  # the source's branch was not taken: an empty stream
                return self._finish(upstream, "skipped")
            if self.holds is not None:
                self._check_unacked_limit(inputs)
            cursor = await src.node.open_stream(inputs)  # type: ignore[attr-defined]
            self._cursor_stop = getattr(cursor, "request_stop", None)
        except Exception as exc:
            from kailash.runtime.engine import fail_run

            self._fail(upstream, fail_run(exc, src.id, self.ctx.run_id, upstream, src.node), src.id)
        if self.options.dead_letter is not None:
            from kailash.runtime._dead_letter import dead_letter_sink

            self._sink = dead_letter_sink(self.options.dead_letter)
        for stage in self.stages:
            stage.node.stream_started()  # type: ignore[attr-defined]
        loop = asyncio.get_running_loop()
        self._task = asyncio.current_task()
        restore_signals = self._install_signals(loop)
        self._ticker = loop.call_later(self._tick_every(), self._tick, loop)
        failure: tuple[KailashError, str] | None = None
        rec.emit({"event": "stream_started", "run_id": self.ctx.run_id, "node_id": None, "source": src.id})
        try:
            failure = await self._consume(cursor, upstream)
            if failure is None:  # the last partial windows, while the cursor can still acknowledge their events
                failure = await self._last_windows(cursor, upstream)
        finally:
            if self._ticker is not None:
                self._ticker.cancel()
            if self._windows is not None:  # stopped and settled already unless _consume ended abnormally
                self._windows.abort()
            restore_signals()
            try:
                await cursor.close()
            except Exception:  # closing must not hide the outcome
                pass
            if self._sink is not None:
                self._sink.close()
                closer = getattr(self._sink, "aclose", None)
                if closer is not None:
                    try:
                        await closer()
                    except Exception:  # noqa: S110 - a connection that fails to close must not fail the run
                        pass
        try:
            if failure is not None:
                err, sid = failure
                self._record_rows(sid)
                self._fail(upstream, err, sid)
        finally:  # after the last windows ran (their writers too)
            await self._close_writers()
        rec.node_done(src.id, start, perf() - start)
        self._record_rows()
        return self._finish(upstream, self.stopped_by or "closed")

    def _check_unacked_limit(self, inputs: dict[str, Any]) -> None:
        """Windows must be able to hold their events unacknowledged: fail before the first event when the
        source's limit (NATS ``max_ack_pending``, AMQP ``prefetch``) is below what the count windows hold."""
        limit = self.source.node.stream_unacked_limit(inputs)  # type: ignore[attr-defined]
        if limit is None:
            return
        most, held = 0, []
        for step in self.holds.stages:
            node: Any = step.node
            n = node.stream_holds_at_most({**step.base, **node.config, **(self.overrides.get(step.id) or {})})
            if n is not None:
                most += n
                held.append(f"'{step.id}' holds up to {n}")
        if most >= limit[0]:
            from kailash.errors import NodeConfigurationError

            src = self.source
            raise NodeConfigurationError(
                f"node '{src.id}' ({type(src.node).__name__}): parameter '{limit[1]}' is {limit[0]}, but the windows "
                f"below it hold events unacknowledged until each window is done ({', '.join(held)}): the broker would "
                f"stop delivering before a window fills. Set '{limit[1]}' above {most} or make the windows smaller",
                node_id=src.id, parameter=limit[1], expected=f"more than {most}", got=limit[0])

    async def _last_windows(self, cursor: Any, upstream: dict[str, Outputs]) -> tuple[KailashError, str] | None:
        """The stream ended without a failure: run the windows still open, then acknowledge their events."""
        holds = self.holds
        for stage in self.stages:
            out = stage.node.stream_ended()  # type: ignore[attr-defined]
            if out is None:
                continue
            res = await self.run_part({**upstream, stage.id: out}, self.plan.descendants([stage.id]) - {stage.id})
            if isinstance(res, KailashError):
                return res, res.node_id or stage.id
            if holds is not None:
                await self.ack_released(cursor, None, res)
        return None

    async def ack_released(self, cursor: Any, event: StreamEvent | None, outcome: Any) -> None:
        """After a part of a run whose windows hold events: acknowledge what it released, in arrival order."""
        for done in self.holds.settle(event, outcome):
            await cursor.ack(done)

    async def _close_writers(self) -> None:
        """Close the connections nodes below the source kept on this run's loop (broker writers' ``aclose``)."""
        for s in self.plan.steps:
            if s.id in self.below and asyncio.iscoroutinefunction(getattr(type(s.node), "aclose", None)):
                try:
                    await s.node.aclose()  # type: ignore[attr-defined]
                except Exception:  # noqa: S110 - a connection that fails to close must not fail the run
                    pass

    async def run_part(self, fixed: dict[str, Outputs] | None, only: frozenset[str]) -> WorkflowResults | KailashError:
        """Run one part of the plan; its rows go to the run's record (upstream) or the stats (events)."""
        main = self.recorder
        spare = self._spare
        if spare is not None:  # one part at a time: reuse the recorder
            self._spare = None
            rec = spare
        else:
            rec = _PartRecorder(self.plan.name, self.ctx.run_id, None, None, None)
            rec.secrets = main.secrets
        run = Run(self.plan, self.overrides, self.ctx, rec, fixed, only)
        try:
            results = await self.part(run)
            err = None
        except KailashError as exc:
            results, err = None, exc
        if fixed is None:  # the upstream part: its rows are the run's own
            for r in rec.rows_after(0):
                if r[1] == "completed":
                    main.node_done(r[0], r[2], r[3])
                elif r[1] == "skipped":
                    main.node_skipped(r[0])
                else:
                    main.node_failed(r[0], r[2], r[3], r[4] or "")
        else:
            stats = self.node_stats
            for sid, status, t, dur, _ in rec.rows_after(0):
                if t == 0.0 or sid not in only:
                    continue
                s = stats.get(sid)
                if s is None:
                    s = stats[sid] = [0, 0, 0.0, t]
                s[0] += 1
                s[2] += dur
                if status == "failed":
                    s[1] += 1
        rec.clear()
        self._spare = rec
        return err if err is not None else results  # type: ignore[return-value]

    async def _consume(self, cursor: Any, upstream: dict[str, Outputs]) -> tuple[KailashError, str] | None:
        opts = self.options
        src = self.source
        node = src.node
        perf = time.perf_counter
        it = cursor.__aiter__()
        sem = asyncio.Semaphore(opts.window) if opts.window > 1 else None
        tails: dict[Any, asyncio.Future[None]] = {}
        inflight: set[asyncio.Task[None]] = set()
        failed: list[tuple[KailashError, str]] = []
        ticker = self._ticker_for(upstream, failed, sem is None, cursor)
        holds = self.holds
        lock = holds.lock if holds is not None else None

        async def one(event: StreamEvent, arrived: float, before: asyncio.Future[None] | None) -> None:
            if before is not None:
                await before
            if failed:  # the run is failing: leave the event unacknowledged
                await cursor.nack(event)
                return
            fixed = dict(upstream)
            fixed[src.id] = node.event_outputs(event)  # type: ignore[attr-defined]
            res = await self.run_part(fixed, self.below)
            if isinstance(res, KailashError):
                stop = await self.event_failed(event, res, cursor if holds is None else None)
                if stop is not None:
                    if holds is not None:
                        await cursor.nack(event)
                    failed.append((stop, stop.node_id or src.id))
                    return
                if holds is not None:  # dead-lettered: settled as a finished part
                    await self.ack_released(cursor, event, res)
            elif holds is None:
                await cursor.ack(event)
            else:  # a window may hold it: acknowledged with its window
                await self.ack_released(cursor, event, res)
            done = perf()
            self.latencies[self.events % _LATENCIES] = done - arrived
            self._maybe_progress(done)
            if ticker is not None and sem is not None:
                ticker.arm()

        async def one_at_a_time(event: StreamEvent, arrived: float, before: asyncio.Future[None] | None) -> None:
            if before is not None:
                await before
            async with lock:  # type: ignore[union-attr]  # concurrent runs whose windows hold events
                await one(event, arrived, None)

        handle = one if lock is None else one_at_a_time
        stop = opts.stop
        stop_asked = None if stop is None else (stop.is_set if hasattr(stop, "is_set") else stop)
        while not failed:
            if stop_asked is not None and self.stop_reason is None and stop_asked():
                self.stop_reason = "stop"
            if self.stop_reason is not None:
                self.stopped_by = self.stop_reason
                break
            if opts.max_events is not None and self.events >= opts.max_events:
                self.stopped_by = "max_events"
                break
            if sem is not None:
                await sem.acquire()
            self.waiting = True
            try:
                event = await it.__anext__()
            except StopAsyncIteration:  # a stop asked of the cursor (request_stop) is the run's reason
                self.stopped_by = self.stop_reason or getattr(cursor, "stopped_by", None) or "closed"
                break
            except asyncio.CancelledError:
                if not self._cancelled:
                    raise
                self._cancelled = False
                task = asyncio.current_task()
                if task is not None:
                    task.uncancel()
                self.stopped_by = self.stop_reason
                break
            except Exception as exc:  # the source failed while reading
                from kailash.runtime.engine import fail_run

                failed.append((fail_run(exc, src.id, self.ctx.run_id, upstream, node), src.id))
                break
            finally:
                self.waiting = False
            arrived = self.last_event = perf()
            self.events += 1
            if ticker is not None:  # a window closing on time goes first
                await ticker.settle()
            if sem is None:
                await handle(event, arrived, None)
                if ticker is not None and not failed:
                    await ticker.after_event()
                continue
            key = event.key
            before = tails.get(key) if key is not None else None
            task = asyncio.ensure_future(handle(event, arrived, before))
            inflight.add(task)
            if key is not None:
                tails[key] = task

            def settled(t: asyncio.Task[None], key: Any = key) -> None:
                inflight.discard(t)
                sem.release()
                if key is not None and tails.get(key) is t:
                    del tails[key]

            task.add_done_callback(settled)
        if inflight:
            await asyncio.gather(*inflight, return_exceptions=True)
        if ticker is not None:
            ticker.stop()
            await ticker.settle()
            self.windows_on_time = ticker.closed
        self._maybe_progress(perf(), force=True)
        return failed[0] if failed else None

    async def event_failed(self, event: StreamEvent, err: KailashError, cursor: Any) -> KailashError | None:
        """Handle one event's failure: None when the run goes on (dead-lettered), else the error to fail with.

        ``cursor`` None: the failure is a window closed on time (nothing to acknowledge).
        """
        self.failures += 1
        text = str(self.recorder.secrets.redact(str(err)))
        if len(self.errors) < _ERRORS:
            self.errors.append({"event_id": event.id, "node_id": err.node_id, "error": text})
        if self.options.on_event_error != "dead_letter":
            if cursor is not None:
                await cursor.nack(event)
            return err
        from kailash.runtime.store import to_json_safe

        record = {"run_id": self.ctx.run_id, "workflow": self.plan.name, "node_id": err.node_id, "error": text,
                  "event": to_json_safe(self.recorder.secrets.redact(
                      {"event_type": event.event_type, "data": event.data, "id": event.id, "key": event.key})),
                  "ts": time.time()}
        try:
            pending = self._sink.write(record)
            if pending is not None:  # an async writer node: on this loop
                await pending
        except Exception as exc:  # nowhere to put it: the run cannot keep its promise
            if cursor is not None:
                await cursor.nack(event)
            from kailash.errors import NodeExecutionError

            failure = NodeExecutionError(
                f"stream run: the dead-letter sink failed for event {event.id!r} (after node '{err.node_id}' failed: "
                f"{text}): {type(exc).__name__}: {exc}", node_id=err.node_id, parameter="dead_letter")
            failure.__cause__ = exc
            return failure
        self.dead_lettered += 1
        if cursor is not None:
            await cursor.ack(event)
        return None

    def _ticker_for(self, upstream: dict[str, Outputs], failed: list[tuple[KailashError, str]],
                    sequential: bool, cursor: Any) -> Any:
        """The timed wake-up for time windows (:mod:`kailash.runtime._stream_ticks`), or None when no stage ticks."""
        if not self.stages:
            return None
        from kailash.runtime._stream_ticks import WindowTicker, ticking_stages

        stages = ticking_stages(self)
        if stages:
            self._windows = WindowTicker(self, stages, upstream, failed, sequential, cursor)
        return self._windows

    # -- stopping and progress -------------------------------------------------------------------
    def request_stop(self, reason: str) -> None:
        """Stop after the event in flight (call on the run's loop)."""
        if self.stop_reason is None:
            self.stop_reason = reason
        if self._cursor_stop is not None:  # the cursor ends its iteration itself, at its next wake-up
            self._cursor_stop()
            return
        if self.waiting and self._task is not None and not self._cancelled:
            self._cancelled = True
            self._task.cancel()

    def _tick_every(self) -> float:
        every = min(self.options.progress_every, 0.25)
        if self.options.timeout is not None:
            every = min(every, self.options.timeout / 4)
        return max(every, 0.005)

    def _tick(self, loop: asyncio.AbstractEventLoop) -> None:
        now = time.perf_counter()
        stop = self.options.stop
        if stop is not None and self.stop_reason is None:
            if (stop.is_set() if hasattr(stop, "is_set") else stop()):
                self.request_stop("stop")
        timeout = self.options.timeout
        if timeout is not None and self.waiting and now - (self.last_event or self.t_open) > timeout:
            self.request_stop("timeout")
        self._maybe_progress(now)
        self._ticker = loop.call_later(self._tick_every(), self._tick, loop)

    def _maybe_progress(self, now: float, force: bool = False) -> None:
        if not self.recorder.observers or (not force and now - self._last_progress < self.options.progress_every):
            return
        self._last_progress = now
        self.recorder.emit({"event": "stream_progress", "run_id": self.ctx.run_id, **self.counts(now)})

    def counts(self, now: float | None = None) -> dict[str, Any]:
        """Events, failures, dead-lettered, events per second so far."""
        elapsed = (now or time.perf_counter()) - self.t_open
        return {"events": self.events, "failures": self.failures, "dead_lettered": self.dead_lettered,
                "elapsed": elapsed, "events_per_s": self.events / elapsed if elapsed > 0 else 0.0}

    def _install_signals(self, loop: asyncio.AbstractEventLoop) -> Callable[[], None]:
        if not self.options.handle_signals or threading.current_thread() is not threading.main_thread():
            return lambda: None
        previous: dict[int, Any] = {}

        def handler(signum: int, frame: Any) -> None:
            if self.stop_reason == "signal":  # asked twice: stop the hard way
                for sig, prev in previous.items():
                    signal.signal(sig, prev)
                raise KeyboardInterrupt
            loop.call_soon_threadsafe(self.request_stop, "signal")

        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                previous[sig] = signal.signal(sig, handler)
            except (ValueError, OSError):  # not allowed here
                pass

        def undo() -> None:
            for sig, prev in previous.items():
                try:
                    signal.signal(sig, prev)
                except (ValueError, OSError):
                    pass

        return undo

    # -- the record ------------------------------------------------------------------------------
    def _record_rows(self, failed: str | None = None) -> None:
        """One row per node below the source: runs summed (failures are in the summary)."""
        rec = self.recorder
        for s in self.plan.steps:
            if s.id not in self.below or s.id == failed:
                continue
            st = self.node_stats.get(s.id)
            if st is None:
                rec.node_skipped(s.id)
            else:
                rec.node_done(s.id, st[3], st[2])

    def summary(self, stopped_by: str) -> dict[str, Any]:
        """The source's result: what the stream run did."""
        now = time.perf_counter()
        counts = self.counts(now)
        lat = sorted(self.latencies[: min(self.events, _LATENCIES)])

        def pct(q: float) -> float | None:
            return lat[min(len(lat) - 1, int(q * len(lat)))] * 1000 if lat else None

        out = {"events": counts["events"], "failures": self.failures, "dead_lettered": self.dead_lettered,
               "stopped_by": stopped_by, "elapsed": counts["elapsed"], "events_per_s": counts["events_per_s"],
               "latency_p50_ms": pct(0.5), "latency_p99_ms": pct(0.99), "errors": list(self.errors),
               "nodes": {k: {"runs": int(v[0]), "failures": int(v[1]), "seconds": v[2]}
                         for k, v in self.node_stats.items()},
               "done": True}
        if self.windows_on_time is not None:
            out["windows_on_time"] = self.windows_on_time
        return out

    def _results(self, upstream: dict[str, Outputs], stopped_by: str) -> WorkflowResults:
        results = WorkflowResults((s.id, upstream[s.id]) for s in self.plan.steps if s.id in upstream)
        results[self.source.id] = self.summary(stopped_by)
        results.run_id = self.ctx.run_id
        results.skipped = tuple(self.recorder.skipped)
        results.stream = results[self.source.id]  # type: ignore[attr-defined]
        return results

    def _finish(self, upstream: dict[str, Outputs], stopped_by: str) -> WorkflowResults:
        results = self._results(upstream, stopped_by)
        self.recorder.results = results
        self.recorder.completed(results)
        return results

    def _fail(self, upstream: dict[str, Outputs], err: KailashError, sid: str) -> NoReturn:
        results = self._results(upstream, "failed")
        err.run_id = self.ctx.run_id
        err.results = dict(results)  # type: ignore[attr-defined]
        self.recorder.results = results
        if sid in self.below or sid == self.source.id:
            self.recorder.node_failed(sid, time.perf_counter(), 0.0, str(err))
        self.recorder.failed(results, err, sid)
        raise err


def run_stream_inline(runtime: Any, plan: ExecutionPlan, overrides: dict[str, Outputs], run_id: Any,
                      recorder: RunRecorder, job: tuple[Step, StreamOptions]) -> WorkflowResults:
    """A stream run for a sync door (``LocalRuntime``): each part walked inline, on this thread's loop."""
    from kailash.nodes.base_async import run_coroutine
    from kailash.runtime.scheduler import run_inline

    holds = _holds_events(plan, job[0])
    if _awaits(plan, job[0]):  # async nodes on the run's loop: their connections last the whole run
        from kailash.runtime.scheduler import run_concurrent

        looped = LoopExecutor(holds)

        async def part(run: Run) -> WorkflowResults:
            return await run_concurrent(run, looped)
    else:
        executor = NoOutputInline() if holds else INLINE  # INLINE: the engine's fast path

        async def part(run: Run) -> WorkflowResults:
            return run_inline(run, executor)

    stream = StreamRun(plan, overrides, RunContext(run_id, runtime), recorder, job[0], job[1], part)
    done: WorkflowResults = run_coroutine(stream.run())
    return done


async def run_stream_concurrent(runtime: Any, plan: ExecutionPlan, overrides: dict[str, Outputs], run_id: Any,
                                recorder: RunRecorder, job: tuple[Step, StreamOptions],
                                executor: Any) -> WorkflowResults:
    """A stream run for a concurrent door (``ParallelRuntime``): each part on the concurrent schedule."""
    from kailash.runtime.scheduler import run_concurrent

    wrapped = NoOutputConcurrent(executor) if _holds_events(plan, job[0]) else executor

    async def part(run: Run) -> WorkflowResults:
        return await run_concurrent(run, wrapped)

    return await StreamRun(plan, overrides, RunContext(run_id, runtime), recorder, job[0], job[1], part).run()
