"""The one scheduling core: walks a compiled plan and hands node calls to an executor.

Every runtime runs here. A :class:`Run` holds one run's state (results, readiness
counts, failures) and does everything that is not *calling* a node: outputs fixed in
advance (resume, ``TestRuntime`` mocks), gathering inputs (``step.gather``), skipped
branches, recording through :class:`~kailash.runtime.engine.RunRecorder` (the only
writer of run records), failures, and the results in plan order. How a node is
called is the executor's business, behind two small protocols:

* :class:`InlineExecutor` — each call finishes before the next starts, so the plan's
  topological order is the schedule (:func:`run_inline`; ``LocalRuntime``,
  ``TestRuntime`` and sub-workflows).
* :class:`ConcurrentExecutor` — calls are awaitables; a node starts as soon as every
  node it depends on has settled (:func:`run_concurrent`; asyncio + threads for
  ``ParallelRuntime``, Dask futures for ``DaskRuntime``).

How one node is called under its policy is written once too: :func:`call_node` (sync)
and :func:`acall_node` (async). The seams later features build on: every node outcome
of every runtime reaches the :class:`~kailash.runtime.engine.RunRecorder` (``node_done``
/ ``completion_sink``, ``node_reused``, ``node_skipped``, ``node_failed``), where a
durable run log hooks in once; and ``Run(..., fixed=outputs, only=node_ids)`` with
:meth:`Run.downstream` reruns the part of a plan below some nodes (one event of a
stream). Nothing here knows which runtime is running it.
"""

from __future__ import annotations

import contextlib
import contextvars
import math
import threading
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from kailash.errors import KailashError, NodeExecutionError, NodeTimeoutError, RunStoppedError
from kailash.nodes.base import ensure_output_dict
from kailash.nodes.context import RUN_DEADLINE, RunStop
from kailash.runtime import capture
from kailash.runtime.engine import RunContext, RunRecorder, WorkflowResults, fail_run
from kailash.security.secrets import make_current, restore

if TYPE_CHECKING:  # the plan module loads with the first compile, not with `import kailash.runtime`
    from kailash.workflow.plan import ExecutionPlan, Step

__all__ = ["Run", "InlineExecutor", "ConcurrentExecutor", "INLINE", "run_inline", "run_concurrent", "call_node",
           "acall_node", "Outputs", "run_deadline", "stop_run", "lease_run"]

Outputs = dict[str, Any]

@contextlib.contextmanager
def run_deadline(seconds: float = math.inf) -> Iterator[RunStop]:
    """Runs started inside the block start no node after ``seconds`` (a run time limit), nor
    after :func:`stop_run` is called on the value the block yields (``seconds`` infinite:
    only that), nor past a lease given with :func:`lease_run` that cannot be renewed.

    The stop is cooperative: a node already running finishes (network calls through the
    HTTP layer are bounded by the time left, see
    :func:`kailash.nodes.context.bounded_by_run`; sandboxed code by its own limits), and
    the next node fails the run with a
    :class:`~kailash.errors.NodeTimeoutError` naming ``run_timeout``; the record keeps
    what finished, so the run can be resumed. Blocks nest: an inner block shares the
    outer one's stop, and the earlier deadline applies inside it.

    The value is the run's :class:`~kailash.nodes.context.RunStop`: one comparison per
    node, and none for a run outside any block.
    """
    at = time.perf_counter() + seconds
    outer = RUN_DEADLINE.get()
    if outer is not None:  # one stop for the run: the earlier deadline wins while inside
        with _WRITING:
            saved = outer.limit, outer.seconds
            if at < outer.limit:
                outer.limit, outer.seconds = at, seconds
                _arm(outer)
        try:
            yield outer
        finally:
            with _WRITING:  # the outer deadline again
                outer.limit, outer.seconds = saved
                _arm(outer)
        return
    deadline = RunStop(at, seconds)
    token = RUN_DEADLINE.set(deadline)
    try:
        yield deadline
    finally:
        RUN_DEADLINE.reset(token)


_WRITING = threading.Lock()  # writers of a deadline (rare: block entry/exit, stops, lease renewals); readers take none


def _arm(deadline: RunStop) -> None:
    if deadline.why is None:  # (a stopped run stays stopped)
        deadline.at = min(deadline.limit, deadline.lease)


def stop_run(deadline: RunStop, why: str, *, record: bool = False) -> None:
    """Stop the run under ``deadline`` (what :func:`run_deadline` yields) before its next node.

    Safe from any thread. The next node fails the run with a
    :class:`~kailash.errors.RunStoppedError` saying ``why``. ``record=False``: the run
    ends without an outcome in its record (as if its process had stopped: another owner
    continues it, see :class:`kailash.api.queue_worker.QueueWorker`).
    """
    with _WRITING:
        deadline.why, deadline.record = why, record
        deadline.at = -math.inf


def lease_run(deadline: RunStop, until: float, renew: Callable[[], None] | None = None) -> None:
    """The run under ``deadline`` is held on a lease ending at ``until`` (a
    ``time.perf_counter`` instant): it starts no node after that unless the lease is
    renewed. Safe from any thread; call it again with the later end whenever the lease is
    renewed.

    A node due after ``until`` first calls ``renew()`` in the run's thread (this process
    stalled, or its renewals are late): it renews the lease (calling :func:`lease_run`) or
    stops the run (:func:`stop_run`); if it does neither, the run stops without an outcome
    (another owner may hold it by then). The check costs what a time limit costs: one
    comparison per node.
    """
    with _WRITING:
        deadline.lease = until
        if renew is not None:
            deadline.renew = renew
        _arm(deadline)


def _held_to_the_end(deadline: RunStop) -> bool:
    """Whether a run whose nodes all ran may record its outcome: ``False`` when it was stopped
    without one meanwhile, or its lease lapsed and could not be renewed (the time limit does
    not matter once every node ran)."""
    now = time.perf_counter()
    if now > deadline.at and deadline.why is None:
        return _past_deadline(deadline, "", now) is None or deadline.why is None
    return deadline.why is None or bool(deadline.record)


def _past_deadline(deadline: RunStop, sid: str, now: float) -> NodeExecutionError | None:
    """Why the run stops before node ``sid`` (due at ``now``, past ``deadline.at``); ``None``
    when only its lease lapsed and renewing it found the claim still held."""
    if deadline.why is None and now <= deadline.limit and deadline.renew is not None:  # the lease lapsed
        deadline.renew()
        if deadline.why is None and time.perf_counter() <= deadline.at:
            return None  # renewed: go on
        if deadline.why is None:
            stop_run(deadline, "its lease lapsed and was not renewed (another owner may hold it)", record=False)
    if deadline.why is not None:
        return RunStoppedError(f"the run was stopped before node '{sid}': {deadline.why}", node_id=sid,
                               recorded=deadline.record)
    return NodeTimeoutError(f"the run took longer than its run_timeout of {deadline.seconds:g} s and was stopped "
                            f"before node '{sid}'", node_id=sid, parameter="run_timeout",
                            expected=f"at most {deadline.seconds:g} s")


@runtime_checkable
class InlineExecutor(Protocol):
    """Calls a node in the scheduler's thread and returns its outputs (or raises)."""

    def call(self, step: Step, inputs: Outputs, ctx: RunContext) -> Outputs: ...


@runtime_checkable
class ConcurrentExecutor(Protocol):
    """Starts node calls that run concurrently; the scheduler awaits each one.

    Attributes:
        max_concurrency: at most this many calls are in flight at once.
    """

    max_concurrency: int

    def start(self, step: Step, inputs: Outputs, ctx: RunContext) -> Awaitable[Outputs]: ...


def call_node(step: Step, inputs: Outputs, ctx: RunContext) -> Outputs:
    """Call ``step``'s node in this thread: directly, with its context, or under its policy."""
    node = step.node
    if step.direct:
        out = node.run(**inputs)
        return out if type(out) is dict else ensure_output_dict(node, out)
    if step.policy is None:
        return node.call(inputs, ctx.for_node(step.id))
    from kailash.runtime.policies import policy_state

    return policy_state(step.policy).call(node, inputs, ctx.for_node(step.id))


async def acall_node(step: Step, inputs: Outputs, ctx: RunContext, pool: Any) -> Outputs:
    """Await ``step``'s node: async nodes on the running loop, sync ones in ``pool`` (an Executor)."""
    import asyncio  # not at module level: `import kailash.runtime` stays free of asyncio

    node = step.node
    if step.policy is not None:
        from kailash.runtime.policies import policy_state

        return await policy_state(step.policy).acall(node, inputs, ctx.for_node(step.id), pool)
    if node.is_async:
        if step.direct:
            out = await node.async_run(**inputs)  # type: ignore[attr-defined]
            return out if type(out) is dict else ensure_output_dict(node, out)
        return await node.async_call(inputs, ctx.for_node(step.id))  # type: ignore[attr-defined, no-any-return]
    loop = asyncio.get_running_loop()
    cctx = contextvars.copy_context()
    return await loop.run_in_executor(pool, cctx.run, call_node, step, inputs, ctx)


class _Inline:
    """The default :class:`InlineExecutor`: :func:`call_node` in the scheduler's thread."""

    __slots__ = ()

    def call(self, step: Step, inputs: Outputs, ctx: RunContext) -> Outputs:
        return call_node(step, inputs, ctx)


INLINE: InlineExecutor = _Inline()


class Run:
    """The state of one run of a plan, and every bookkeeping step of the schedule.

    Args:
        plan: the compiled plan.
        overrides: per-node runtime parameters (``plan.prepare``).
        ctx: the run's context (run id, runtime, depth).
        recorder: where the run is recorded.
        fixed: outputs to use instead of running those nodes (resume, mocks, stream events).
        only: run only these node ids (others must be ``fixed``); ``None`` = all.
    """

    __slots__ = ("plan", "overrides", "ctx", "recorder", "fixed", "results", "failures", "waiting", "only", "deadline")

    def __init__(self, plan: ExecutionPlan, overrides: dict[str, Outputs], ctx: RunContext, recorder: RunRecorder,
                 fixed: dict[str, Outputs] | None = None, only: frozenset[str] | None = None) -> None:
        if ctx.workflow is None:
            ctx.workflow = plan.workflow
        self.plan = plan
        self.overrides = overrides
        self.ctx = ctx
        self.recorder = recorder
        self.fixed = fixed or None
        self.results: WorkflowResults = WorkflowResults()
        recorder.results = self.results  # what a durable run log reads a finished node's outputs from
        self.failures: list[tuple[KailashError, BaseException, str]] = []
        self.waiting: dict[str, int] | None = None  # readiness counts, for concurrent executors
        self.only = only
        self.deadline = RUN_DEADLINE.get()

    # -- the seams --------------------------------------------------------------------------
    def begin(self, step: Step) -> Outputs | None:
        """The inputs to call ``step`` with, or ``None`` when it is settled without a call
        (fixed outputs, a skipped branch). Raises what gathering raises."""
        sid = step.id
        fixed = self.fixed
        if fixed is not None and sid in fixed:
            self.results[sid] = fixed[sid]
            self.recorder.node_reused(sid)
            return None
        inputs = step.gather(self.results, self.overrides.get(sid))
        if inputs is None:
            self.recorder.node_skipped(sid)
        return inputs  # type: ignore[no-any-return]

    def complete(self, sid: str, outputs: Outputs, start: float, end: float) -> None:
        """Node ``sid`` finished with ``outputs`` (every completion of every runtime passes here)."""
        self.results[sid] = outputs
        self.recorder.node_done(sid, start, end - start)

    def fail(self, sid: str, exc: BaseException, start: float, end: float) -> KailashError:
        """Node ``sid`` failed (or its inputs could not be gathered): record it, keep the error."""
        err = fail_run(exc, sid, self.ctx.run_id, self.results, self.plan.by_id[sid].node)
        if type(exc) is not RunStoppedError or exc.recorded:  # (a node stopped from outside never started)
            self.recorder.node_failed(sid, start, end - start, str(err))
        self.failures.append((err, exc, sid))
        return err

    def interrupted(self, sid: str, exc: BaseException, start: float, end: float) -> None:
        """A KeyboardInterrupt or SystemExit in node ``sid``: record the run as failed; the caller re-raises."""
        self.recorder.node_failed(sid, start, end - start, f"interrupted: {type(exc).__name__}")
        self.recorder.failed(self.results, exc, sid)

    def downstream(self, node_ids: Iterable[str]) -> frozenset[str]:
        """``node_ids`` and every node below them: what to run again when their outputs change."""
        return self.plan.descendants(node_ids)

    # -- readiness (concurrent executors) ---------------------------------------------------
    def initial(self) -> deque[Step]:
        """The steps with no predecessors, in plan order; starts the readiness counts."""
        self.waiting = dict(self.plan.predecessors)
        return deque(s for s in self.plan.steps if self.waiting[s.id] == 0)

    def settle(self, sid: str, ready: deque[Step]) -> None:
        """``sid`` is done (ran, reused or skipped): queue the successors now ready."""
        waiting = self.waiting
        by_id = self.plan.by_id
        for nxt in by_id[sid].successors:
            n = waiting[nxt] - 1  # type: ignore[index]
            waiting[nxt] = n  # type: ignore[index]
            if n == 0:
                ready.append(by_id[nxt])

    # -- the end ----------------------------------------------------------------------------
    def finish(self) -> WorkflowResults:
        """Results in plan order; the run recorded as completed, or its first failure raised."""
        plan = self.plan
        results = self.results
        if self.waiting is not None:  # a concurrent schedule: put everything in plan order
            order = plan.order
            self.recorder.sort(order)
            results = WorkflowResults((s.id, results[s.id]) for s in plan.steps if s.id in results)
        results.run_id = self.ctx.run_id
        results.skipped = tuple(self.recorder.skipped)
        if self.deadline is not None and not self.failures and not _held_to_the_end(self.deadline):
            why = self.deadline.why
            stopped = RunStoppedError(f"the run was stopped before its outcome was recorded: {why}", recorded=False)
            stopped.results = dict(results)
            self.recorder.abandoned()  # its last node ran after its owner lost it: another owner records the run
            raise stopped
        if self.failures:
            err, exc, sid = self.failures[0]
            err.results = dict(results)  # type: ignore[attr-defined]
            if type(err) is RunStoppedError and not err.recorded:
                self.recorder.abandoned()  # stopped from outside: no outcome (another owner continues the run)
            else:
                self.recorder.failed(results, err, sid)
            raise err from (exc.__cause__ if exc is err else exc)
        self.recorder.completed(results)
        return results


def run_inline(run: Run, executor: InlineExecutor = INLINE) -> WorkflowResults:
    """Run every step in plan (topological) order in this thread; raise at the first failure.

    The hot path: a direct node is called here without a further function call.
    """
    token = make_current(run.recorder.secrets)  # the run's secrets, for redacting its errors
    rec = run.recorder  # recorded: nodes' print/log output; observed: agents' calls (kailash.nodes.calls)
    cap = capture.capturing(run) if rec.store is not None else capture.following(run) if rec.observers else None
    try:
        return _walk_inline(run, executor)
    finally:
        if cap is not None:
            capture.stop(cap)
        restore(token)


def _walk_inline(run: Run, executor: InlineExecutor) -> WorkflowResults:
    if executor is INLINE and run.fixed is None and run.only is None:
        return _walk_all(run)
    ctx = run.ctx
    results = run.results
    overrides = run.overrides or None
    fixed = run.fixed
    only = run.only
    recorder = run.recorder
    done = recorder.completion_sink()
    observers = recorder.observers
    inline = executor is INLINE
    perf = time.perf_counter
    deadline = run.deadline
    for step in run.plan.steps:
        sid = step.id
        if fixed is not None or only is not None:
            if fixed is not None and sid in fixed:
                run.begin(step)
                continue
            if only is not None and sid not in only:
                continue  # outside the part being run again
        start = perf()
        try:
            if deadline is not None and start > deadline.at and (
                    late := _past_deadline(deadline, sid, start)) is not None:
                raise late
            inputs = step.gather(results, overrides.get(sid) if overrides else None)
            if inputs is None:
                recorder.node_skipped(sid)
                continue
            if observers:
                recorder.node_started(sid)
            if step.direct and inline:
                out = step.node.run(**inputs)
                if type(out) is not dict:
                    out = ensure_output_dict(step.node, out)
            else:
                out = executor.call(step, inputs, ctx)
        except Exception as exc:
            run.fail(sid, exc, start, perf())
            return run.finish()  # records the failure and raises it
        except BaseException as exc:  # KeyboardInterrupt, SystemExit: record, then let it through
            run.interrupted(sid, exc, start, perf())
            raise
        results[sid] = out
        done((sid, "completed", start, perf() - start, None))
    return run.finish()


def _walk_all(run: Run) -> WorkflowResults:
    """``_walk_inline`` for the commonest run: every node, the inline executor. The same steps
    with less per node: the plan's ``inline`` tuples, and one clock reading per node (a node's
    end is the next one's start)."""
    ctx = run.ctx
    results = run.results
    overrides = run.overrides or None
    recorder = run.recorder
    done = recorder.completion_sink()
    observers = recorder.observers
    perf = time.perf_counter
    deadline = run.deadline
    missing = run.plan.MISSING  # what a step's `take` returns when its node needs `gather`'s inputs
    t = perf()
    for sid, gather, node, step, take in run.plan.inline:
        start = t
        try:
            if deadline is not None and start > deadline.at and (
                    late := _past_deadline(deadline, sid, start)) is not None:
                raise late
            if take is not None and not observers and (overrides is None or sid not in overrides):
                v = take(results)  # the node's one input, checked: node.run(v) binds it as run(**inputs) would
                if v is not missing:
                    out = node.run(v)
                    if type(out) is not dict:
                        out = ensure_output_dict(node, out)
                    results[sid] = out
                    t = perf()
                    done((sid, "completed", start, t - start, None))
                    continue
            inputs = gather(results, overrides.get(sid) if overrides else None)
            if inputs is None:
                recorder.node_skipped(sid)
                t = perf()
                continue
            if observers:
                recorder.node_started(sid)
            if step is None:  # a direct node
                out = node.run(**inputs)
                if type(out) is not dict:
                    out = ensure_output_dict(node, out)
            else:
                out = call_node(step, inputs, ctx)
        except Exception as exc:
            run.fail(sid, exc, start, perf())
            return run.finish()  # records the failure and raises it
        except BaseException as exc:  # KeyboardInterrupt, SystemExit: record, then let it through
            run.interrupted(sid, exc, start, perf())
            raise
        results[sid] = out
        t = perf()
        done((sid, "completed", start, t - start, None))
    return run.finish()


async def run_concurrent(run: Run, executor: ConcurrentExecutor) -> WorkflowResults:
    """Run ``run`` on the running loop: each node as soon as its predecessors have settled.

    After a failure no new node starts; nodes already running finish (their outputs are
    recorded, so a resume does not redo them), then the first failure is raised.
    """
    token = make_current(run.recorder.secrets)  # in this task's context: the run's secrets
    rec = run.recorder  # recorded: nodes' print/log output; observed: agents' calls (kailash.nodes.calls)
    cap = capture.capturing(run) if rec.store is not None else capture.following(run) if rec.observers else None
    try:
        return await _walk_concurrent(run, executor)
    finally:
        if cap is not None:
            capture.stop(cap)
        restore(token)


async def _walk_concurrent(run: Run, executor: ConcurrentExecutor) -> WorkflowResults:
    import asyncio

    loop = asyncio.get_running_loop()
    ready = run.initial()
    ctx = run.ctx
    only = run.only
    perf = time.perf_counter
    recorder = run.recorder
    observers = recorder.observers
    sem = asyncio.Semaphore(executor.max_concurrency)
    running: set[asyncio.Task[None]] = set()
    finished: asyncio.Future[None] = loop.create_future()

    async def one(step: Step, inputs: Outputs) -> None:
        sid = step.id
        try:
            async with sem:
                start = perf()
                if observers:
                    recorder.node_started(sid)
                try:
                    if run.deadline is not None and start > run.deadline.at and (
                            late := _past_deadline(run.deadline, sid, start)) is not None:
                        raise late
                    out = await executor.start(step, inputs, ctx)
                except Exception as exc:
                    run.fail(sid, exc, start, perf())
                else:
                    run.complete(sid, out, start, perf())
                    run.settle(sid, ready)
        finally:
            task = asyncio.current_task()
            if task is not None:
                running.discard(task)
            pump()

    def pump() -> None:
        if finished.done():  # the run was cancelled
            return
        while ready and not run.failures:
            step = ready.popleft()
            if only is not None and step.id not in only and (run.fixed is None or step.id not in run.fixed):
                run.settle(step.id, ready)  # outside the part being rerun, and not given: nothing to do
                continue
            start = perf()
            try:
                inputs = run.begin(step)
            except Exception as exc:
                run.fail(step.id, exc, start, perf())
                break
            if inputs is None:
                run.settle(step.id, ready)
                continue
            running.add(loop.create_task(one(step, inputs)))
        if not running and not finished.done():
            finished.set_result(None)

    pump()
    try:
        await finished
    except asyncio.CancelledError:
        for task in list(running):
            task.cancel()
        recorder.abandoned()  # not finished: a durable record stays `running` (interrupted once we exit)
        raise
    return run.finish()


# the frames that call a node, for telling which node printed (kailash.runtime.capture)
capture.register_node_frames(_walk_inline.__code__, _walk_all.__code__, call_node.__code__, acall_node.__code__,
                             *(c for c in _walk_concurrent.__code__.co_consts if getattr(c, "co_name", "") == "one"))
