"""LocalRuntime: run a workflow in this thread, in topological order, recording the run.

A thin door onto :mod:`kailash.runtime.scheduler` with the inline executor.
"""

from __future__ import annotations

from typing import Any

from kailash.runtime.engine import (
    Observer,
    RunContext,
    RuntimeDoor,
    WorkflowResults,
    check_durability,
    new_run_id,
    resolve_store,
)
from kailash.runtime.scheduler import Run, run_inline
from kailash.runtime.types import RunId

__all__ = ["LocalRuntime"]


class LocalRuntime(RuntimeDoor):
    """Runs nodes one after another in this thread.

    Args:
        store: where runs are recorded: ``"default"`` (SQLite under ``$KAILASH_HOME``),
            a path, a :class:`~kailash.runtime.store.RunStore`, or ``None`` to record nothing.
        record_outputs: keep node outputs in the record ``"failed"`` (default: enough to
            resume a failed run), ``"always"`` or ``"never"``.
        observers: callables receiving live events (``node_started``, ``node_completed``, ...).
        debug: accepted for compatibility; errors always carry full context.
        durability: how soon a run's progress reaches the store: ``"default"`` (written ahead
            by a writer thread within ~10 ms), ``"strict"`` (each completion committed before
            the next node starts) or ``"off"`` (recorded when the run ends). A workflow's
            ``metadata["durability"]`` overrides it. See docs/runtimes.md.

    Example:
        >>> from kailash.workflow import Workflow
        >>> from kailash.nodes.code.python import PythonCodeNode
        >>> wf = Workflow("hello")
        >>> _ = wf.add_node("greet", PythonCodeNode(code="result = 'hello ' + who"))
        >>> results, run_id = LocalRuntime(store=None).execute(wf, parameters={"greet": {"who": "world"}})
        >>> results["greet"]["result"]
        'hello world'
    """

    name = "local"

    def __init__(self, *, store: Any = "default", record_outputs: str = "failed",
                 observers: list[Observer] | None = None, debug: bool = False, tenant: str | None = None,
                 durability: str = "default") -> None:
        if record_outputs not in ("failed", "always", "never"):
            from kailash.errors import NodeConfigurationError

            raise NodeConfigurationError(
                f"LocalRuntime: record_outputs must be 'failed', 'always' or 'never', got {record_outputs!r}",
                parameter="record_outputs", expected="'failed' | 'always' | 'never'", got=record_outputs,
            )
        self.durability = check_durability(durability, "LocalRuntime")
        self.store = resolve_store(store)
        self.record_outputs = record_outputs
        self.observers = list(observers or [])
        self.debug = debug
        self.tenant = tenant

    def execute(self, workflow: Any, parameters: dict[str, Any] | None = None, *, run_id: str | None = None,
                observers: list[Observer] | None = None, stream: Any = None) -> tuple[WorkflowResults, str]:
        """Validate and run ``workflow``; return ``(results, run_id)``.

        A workflow whose source streams (``EventStreamNode``, broker sources) runs as a
        stream run: the nodes below the source run once per event until the stream ends;
        ``stream`` sets its options (:class:`~kailash.runtime.streaming.StreamOptions` or a
        dict: ``max_events``, ``timeout``, ``stop``, ``on_event_error``, ``dead_letter``).
        See docs/streams.md.

        Raises:
            WorkflowValidationError: the graph or ``parameters`` are invalid (nothing ran).
            KailashError: a node failed; the error carries ``run_id``, ``node_id`` and the
                ``results`` of the nodes that finished, and the run is recorded as failed.
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
            from kailash.runtime.streaming import run_stream_inline

            return run_stream_inline(self, plan, overrides, run_id, recorder, job), run_id
        return run_inline(Run(plan, overrides, RunContext(run_id, self), recorder)), run_id

    def resume(self, run_id: str, workflow: Any, *, parameters: dict[str, Any] | None = None,
               rerun: list[str] | None = None) -> tuple[WorkflowResults, str]:
        """Re-run failed or interrupted run ``run_id``: the failed (or unfinished) node and what depends on it, reusing finished outputs.

        Returns ``(results, new_run_id)``; the new record's ``parent_run_id`` is ``run_id``.
        ``parameters`` default to the failed run's; ``rerun`` forces nodes to run again.
        See :mod:`kailash.runtime.resume` for the errors (unknown or successful run, ...).
        """
        from kailash.runtime.resume import resume_inline

        return resume_inline(self, run_id, workflow, parameters=parameters, rerun=rerun)
