"""ParallelRuntime: run independent nodes concurrently on an asyncio event loop.

A thin door onto :mod:`kailash.runtime.scheduler`: the concurrent schedule (a node
starts as soon as every node it depends on has finished or been skipped) with the
:class:`AsyncioExecutor` — ``AsyncNode`` instances are awaited on the loop, sync nodes
run in a bounded thread pool. Results, skipped branches, errors and run records match
``LocalRuntime``.

After a node fails no new node starts; nodes already running finish (their outputs
are recorded, so a resume does not redo them), then the first failure is raised.
"""

from __future__ import annotations

import threading
from collections.abc import Awaitable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from kailash.errors import NodeConfigurationError
from kailash.runtime.engine import (
    Observer,
    RunContext,
    RuntimeDoor,
    WorkflowResults,
    check_durability,
    new_run_id,
    resolve_store,
)
from kailash.runtime.scheduler import Outputs, Run, acall_node, run_concurrent
from kailash.runtime.types import RunId
from kailash.workflow.plan import Step

__all__ = ["ParallelRuntime", "AsyncLocalRuntime", "AsyncioExecutor"]


class AsyncioExecutor:
    """The :class:`~kailash.runtime.scheduler.ConcurrentExecutor` of ``ParallelRuntime``:
    async nodes on the running loop, sync nodes in ``pool``."""

    __slots__ = ("max_concurrency", "pool")

    def __init__(self, max_concurrency: int, pool: ThreadPoolExecutor) -> None:
        self.max_concurrency = max_concurrency
        self.pool = pool

    def start(self, step: Step, inputs: Outputs, ctx: RunContext) -> Awaitable[Outputs]:
        return acall_node(step, inputs, ctx, self.pool)


class ParallelRuntime(RuntimeDoor):
    """Runs independent nodes concurrently: async nodes on the event loop, sync nodes in threads.

    Args:
        max_concurrency: at most this many nodes run at once.
        max_workers: threads for sync nodes (default ``min(max_concurrency, 32)``).
        store, record_outputs, observers, tenant, durability: as for :class:`~kailash.runtime.LocalRuntime`.

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
                 tenant: str | None = None, debug: bool = False, durability: str = "default") -> None:
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
        self.durability = check_durability(durability, type(self).__name__)
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

    async def execute(self, workflow: Any, parameters: dict[str, Any] | None = None, *, run_id: str | None = None,
                      observers: list[Observer] | None = None, stream: Any = None) -> tuple[WorkflowResults, str]:
        """Validate and run ``workflow`` concurrently; return ``(results, run_id)``.

        A workflow whose source streams runs as a stream run (see docs/streams.md); with
        ``stream={"window": N}`` up to N events are processed at once, events sharing a
        key in order.

        Raises:
            WorkflowValidationError: the graph or ``parameters`` are invalid (nothing ran).
            KailashError: a node failed; it carries ``run_id``, ``node_id`` and ``results``.
        """
        plan = workflow.compile()
        overrides = plan.prepare(parameters)
        run_id = RunId(run_id) if run_id else new_run_id()
        job = None
        if plan.stream_sources or stream is not None:
            from kailash.runtime.stream_options import stream_job

            job = stream_job(plan, overrides, stream)
        recorder = self._recorder(plan, run_id, parameters, observers)
        if job is not None:
            from kailash.runtime.streaming import run_stream_concurrent

            executor = AsyncioExecutor(self.max_concurrency, self._pool())
            return await run_stream_concurrent(self, plan, overrides, run_id, recorder, job, executor), run_id
        run = Run(plan, overrides, RunContext(run_id, self), recorder)
        return await run_concurrent(run, AsyncioExecutor(self.max_concurrency, self._pool())), run_id

    def execute_sync(self, workflow: Any, parameters: dict[str, Any] | None = None,
                     **kwargs: Any) -> tuple[WorkflowResults, str]:
        """:meth:`execute` from sync code (works inside a running event loop too)."""
        from kailash.nodes.base_async import run_coroutine

        done: tuple[WorkflowResults, str] = run_coroutine(self.execute(workflow, parameters, **kwargs))
        return done

    async def resume(self, run_id: str, workflow: Any, *, parameters: dict[str, Any] | None = None,
                     rerun: list[str] | None = None) -> tuple[WorkflowResults, str]:
        """Re-run failed run ``run_id`` from where it failed; see :mod:`kailash.runtime.resume`."""
        from kailash.runtime.resume import prepare_resume

        job = prepare_resume(self.store, run_id, workflow, parameters=parameters, rerun=rerun)
        new_id = new_run_id()
        recorder = self._recorder(job.plan, new_id, job.parameters, None, parent_run_id=job.parent_run_id)
        run = Run(job.plan, job.overrides, RunContext(new_id, self), recorder, job.fixed)
        return await run_concurrent(run, AsyncioExecutor(self.max_concurrency, self._pool())), new_id

    def resume_sync(self, run_id: str, workflow: Any, **kwargs: Any) -> tuple[WorkflowResults, str]:
        """:meth:`resume` from sync code."""
        from kailash.nodes.base_async import run_coroutine

        done: tuple[WorkflowResults, str] = run_coroutine(self.resume(run_id, workflow, **kwargs))
        return done

    # -- run history and lifetime -------------------------------------------------------------
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
