"""ParallelRuntime: run independent nodes concurrently on an asyncio event loop.

Scheduling is by readiness, not by level: a node starts as soon as every node it
depends on has finished or been skipped. ``AsyncNode`` instances are awaited on the
loop; sync nodes run in a bounded thread pool. Inputs come from ``plan.gather`` and
the run is recorded through :class:`~kailash.runtime.engine.RunRecorder`, exactly as
``LocalRuntime`` does, so results, skipped branches, errors and run records match.

After a node fails no new node starts; nodes already running finish (their outputs
are recorded, so a resume does not redo them), then the first failure is raised.
"""

from __future__ import annotations

import asyncio
import contextvars
import threading
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from kailash.errors import NodeConfigurationError
from kailash.nodes.base import ensure_output_dict
from kailash.runtime.engine import (
    Observer,
    RunContext,
    RunRecorder,
    WorkflowResults,
    fail_run,
    new_run_id,
    resolve_store,
)

__all__ = ["ParallelRuntime", "AsyncLocalRuntime", "run_plan_async"]


def _direct(node: Any, inputs: dict[str, Any]) -> dict[str, Any]:
    out = node.run(**inputs)
    return out if type(out) is dict else ensure_output_dict(node, out)


def _predecessor_counts(plan: Any) -> dict[str, int]:
    counts = plan.__dict__.get("_kailash_pred_counts")
    if counts is None:  # the plan is immutable: compute once per plan
        counts = {s.id: len({e.source for e in s.edges}) for s in plan.steps}
        plan.__dict__["_kailash_pred_counts"] = counts
    return counts


def in_plan_order(plan: Any, results: dict[str, Any], recorder: RunRecorder) -> WorkflowResults:
    """``results``, rows and skipped ids reordered as ``LocalRuntime`` would have produced them."""
    order = {s.id: i for i, s in enumerate(plan.steps)}
    recorder.rows.sort(key=lambda r: order.get(r[0], 0))
    recorder.skipped.sort(key=lambda n: order.get(n, 0))
    out = WorkflowResults()
    for s in plan.steps:
        if s.id in results:
            out[s.id] = results[s.id]
    return out


async def run_plan_async(plan: Any, overrides: dict[str, dict[str, Any]], ctx: RunContext, recorder: RunRecorder,
                         *, max_concurrency: int, executor: Any,
                         fixed: dict[str, dict[str, Any]] | None = None) -> WorkflowResults:
    """Run ``plan`` on the running loop, each node as soon as its predecessors are done."""
    loop = asyncio.get_running_loop()
    if ctx.workflow is None:
        ctx.workflow = plan.workflow
    results: dict[str, dict[str, Any]] = {}
    by_id = plan.by_id
    gather = plan.gather
    waiting = dict(_predecessor_counts(plan))
    ready = deque(s for s in plan.steps if waiting[s.id] == 0)
    perf = time.perf_counter
    t0 = recorder.t0
    rows = recorder.rows
    observers = recorder.observers
    sem = asyncio.Semaphore(max_concurrency)
    running: set[asyncio.Task[None]] = set()
    failures: list[tuple[BaseException, BaseException, str]] = []
    finished = loop.create_future()
    run_id = ctx.run_id

    def settle(sid: str) -> None:
        for nxt in by_id[sid].successors:
            n = waiting[nxt] - 1
            waiting[nxt] = n
            if n == 0:
                ready.append(by_id[nxt])

    def failed(sid: str, exc: BaseException, start: float) -> None:
        end = perf()
        err = fail_run(exc, sid, run_id, results, by_id[sid].node)
        recorder.node_failed(sid, start - t0, end - start, str(err))
        failures.append((err, exc, sid))

    async def invoke(step: Any, inputs: dict[str, Any]) -> dict[str, Any]:
        node = step.node
        if step.policy is not None:
            return await step.policy.acall(node, inputs, ctx, executor)
        if node.is_async:
            if step.direct:
                out = await node.async_run(**inputs)
                return out if type(out) is dict else ensure_output_dict(node, out)
            return await node.async_call(inputs, ctx)
        cctx = contextvars.copy_context()
        if step.direct:
            return await loop.run_in_executor(executor, cctx.run, _direct, node, inputs)
        return await loop.run_in_executor(executor, cctx.run, node.call, inputs, ctx)

    async def run_one(step: Any, inputs: dict[str, Any]) -> None:
        sid = step.id
        try:
            async with sem:
                start = perf()
                if observers:
                    recorder.node_started(sid)
                try:
                    out = await invoke(step, inputs)
                except Exception as exc:
                    failed(sid, exc, start)
                else:
                    results[sid] = out
                    end = perf()
                    rows.append((sid, "completed", start - t0, end - start, None))
                    if observers:
                        recorder.emit({"event": "node_completed", "run_id": run_id, "node_id": sid,
                                       "duration": end - start})
                    settle(sid)
        finally:
            running.discard(asyncio.current_task())  # type: ignore[arg-type]
            pump()

    def pump() -> None:
        if finished.done():  # the run was cancelled
            return
        while ready and not failures:
            step = ready.popleft()
            sid = step.id
            if fixed is not None and sid in fixed:
                results[sid] = fixed[sid]
                rows.append((sid, "completed", perf() - t0, 0.0, None))
                settle(sid)
                continue
            start = perf()
            try:
                inputs = gather(step, results, overrides.get(sid))
            except Exception as exc:
                failed(sid, exc, start)
                break
            if inputs is None:
                recorder.node_skipped(sid)
                settle(sid)
                continue
            running.add(loop.create_task(run_one(step, inputs)))
        if not running and not finished.done():
            finished.set_result(None)

    pump()
    try:
        await finished
    except asyncio.CancelledError:
        for task in list(running):
            task.cancel()
        raise
    out = in_plan_order(plan, results, recorder)
    out.run_id = run_id
    out.skipped = tuple(recorder.skipped)
    if failures:
        err, exc, sid = failures[0]
        err.results = dict(out)  # type: ignore[attr-defined]
        recorder.failed(out, err, sid)
        raise err from (exc.__cause__ if exc is err else exc)
    recorder.completed(out)
    return out


class ParallelRuntime:
    """Runs independent nodes concurrently: async nodes on the event loop, sync nodes in threads.

    Args:
        max_concurrency: at most this many nodes run at once.
        max_workers: threads for sync nodes (default ``min(max_concurrency, 32)``).
        store, record_outputs, observers, tenant: as for :class:`~kailash.runtime.LocalRuntime`.

    Example:
        >>> import asyncio
        >>> from kailash.workflow import Workflow
        >>> from kailash.nodes.code.python import PythonCodeNode
        >>> wf = Workflow("fan")
        >>> for i in range(3):
        ...     _ = wf.add_node(f"n{i}", PythonCodeNode(code=f"result = {i} * 10"))
        >>> results, run_id = asyncio.run(ParallelRuntime(max_concurrency=4, store=None).execute(wf))
        >>> [results[f"n{i}"]["result"] for i in range(3)]
        [0, 10, 20]
    """

    name = "parallel"

    def __init__(self, max_concurrency: int = 32, *, max_workers: int | None = None, store: Any = "default",
                 record_outputs: str = "failed", observers: list[Observer] | None = None,
                 tenant: str | None = None, debug: bool = False) -> None:
        problems = []
        if isinstance(max_concurrency, bool) or not isinstance(max_concurrency, int) or max_concurrency < 1:
            problems.append(("max_concurrency", f"must be an integer >= 1, got {max_concurrency!r}"))
        if max_workers is not None and (isinstance(max_workers, bool) or not isinstance(max_workers, int)
                                        or max_workers < 1):
            problems.append(("max_workers", f"must be an integer >= 1, got {max_workers!r}"))
        if record_outputs not in ("failed", "always", "never"):
            problems.append(("record_outputs", f"must be 'failed', 'always' or 'never', got {record_outputs!r}"))
        if problems:
            raise NodeConfigurationError(
                f"{type(self).__name__}: " + "; ".join(f"{p} {m}" for p, m in problems), parameter=problems[0][0],
            )
        self.max_concurrency = max_concurrency
        self.max_workers = max_workers or min(max_concurrency, 32)
        self.store = resolve_store(store)
        self.record_outputs = record_outputs
        self.observers = list(observers or [])
        self.tenant = tenant
        self.debug = debug
        self._executor: ThreadPoolExecutor | None = None
        self._lock = threading.Lock()

    def _pool(self) -> ThreadPoolExecutor:
        pool = self._executor
        if pool is None:
            with self._lock:
                if self._executor is None:
                    self._executor = ThreadPoolExecutor(self.max_workers, thread_name_prefix="kailash-parallel")
                pool = self._executor
        return pool

    def _recorder(self, plan: Any, run_id: str, parameters: Any, observers: list[Observer] | None,
                  parent_run_id: str | None = None) -> RunRecorder:
        obs = self.observers + list(observers) if observers else self.observers
        return RunRecorder(plan.name, run_id, self.store, obs, plan.redact_parameters(parameters), record_outputs=self.record_outputs,
                           runtime_name=self.name, tenant=self.tenant, parent_run_id=parent_run_id)

    async def execute(self, workflow: Any, parameters: dict[str, Any] | None = None, *, run_id: str | None = None,
                      observers: list[Observer] | None = None) -> tuple[WorkflowResults, str]:
        """Validate and run ``workflow`` concurrently; return ``(results, run_id)``.

        Raises:
            WorkflowValidationError: the graph or ``parameters`` are invalid (nothing ran).
            KailashError: a node failed; it carries ``run_id``, ``node_id`` and ``results``.
        """
        plan = workflow.compile()
        overrides = plan.prepare(parameters)
        run_id = run_id or new_run_id()
        recorder = self._recorder(plan, run_id, parameters, observers)
        results = await run_plan_async(plan, overrides, RunContext(run_id, self), recorder,
                                       max_concurrency=self.max_concurrency, executor=self._pool())
        return results, run_id

    def execute_sync(self, workflow: Any, parameters: dict[str, Any] | None = None,
                     **kwargs: Any) -> tuple[WorkflowResults, str]:
        """:meth:`execute` from sync code (works inside a running event loop too)."""
        from kailash.nodes.base_async import run_coroutine

        return run_coroutine(self.execute(workflow, parameters, **kwargs))

    async def resume(self, run_id: str, workflow: Any, *, parameters: dict[str, Any] | None = None,
                     rerun: list[str] | None = None) -> tuple[WorkflowResults, str]:
        """Re-run failed run ``run_id`` from where it failed; see :mod:`kailash.runtime.resume`."""
        from kailash.runtime.resume import prepare_resume

        job = prepare_resume(self.store, run_id, workflow, parameters=parameters, rerun=rerun)
        new_id = new_run_id()
        recorder = self._recorder(job.plan, new_id, job.parameters, None, parent_run_id=job.parent_run_id)
        results = await run_plan_async(job.plan, job.overrides, RunContext(new_id, self), recorder,
                                       max_concurrency=self.max_concurrency, executor=self._pool(), fixed=job.fixed)
        return results, new_id

    def resume_sync(self, run_id: str, workflow: Any, **kwargs: Any) -> tuple[WorkflowResults, str]:
        """:meth:`resume` from sync code."""
        from kailash.nodes.base_async import run_coroutine

        return run_coroutine(self.resume(run_id, workflow, **kwargs))

    # -- run history and lifetime -------------------------------------------------------------
    def get_run(self, run_id: str) -> Any:
        """The :class:`~kailash.runtime.store.RunRecord` of ``run_id`` (None if unknown)."""
        return self.store.get_run(run_id) if self.store is not None else None

    def list_runs(self, **filters: Any) -> list[Any]:
        return self.store.list_runs(**filters) if self.store is not None else []

    def close(self) -> None:
        """Stop the thread pool (idle threads exit; a later run starts a new pool)."""
        with self._lock:
            pool, self._executor = self._executor, None
        if pool is not None:
            pool.shutdown(wait=False, cancel_futures=True)

    def __enter__(self) -> ParallelRuntime:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    async def __aenter__(self) -> ParallelRuntime:
        return self

    async def __aexit__(self, *exc: Any) -> None:
        self.close()


AsyncLocalRuntime = ParallelRuntime
"""The name some Kailash code uses for :class:`ParallelRuntime`."""
