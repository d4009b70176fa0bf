"""The scheduling core every runtime shares.

A runtime turns a compiled :class:`~kailash.workflow.plan.ExecutionPlan` into a run:
it asks the plan for each node's inputs (``plan.gather``), calls the node (through
its failure policy when one is set), and keeps a :class:`RunRecorder` of what
happened. The sync and async entry points are thin doors onto these pieces; the
hot path allocates one dict per node and calls no logging.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from typing import Any

from kailash.errors import KailashError, NodeExecutionError
from kailash.nodes.base import ensure_output_dict
from kailash.runtime.store import RunRecord, RunStore, default_store, to_json_safe
from kailash.security.secrets import known_secret_values, redact

__all__ = ["RunContext", "RunRecorder", "WorkflowResults", "Observer", "resolve_store", "new_run_id", "call_step",
           "run_plan_sync"]

Observer = Callable[[dict[str, Any]], None]


class WorkflowResults(dict):
    """``{node_id: outputs}`` for every node that ran, plus what the run was.

    Attributes:
        run_id: the run's id.
        skipped: ids of nodes not run because their branch was not taken.
    """

    run_id: str | None = None
    skipped: tuple[str, ...] = ()


def new_run_id() -> str:
    return uuid.uuid4().hex


def resolve_store(store: Any) -> RunStore | None:
    """``"default"`` → the SQLite store under KAILASH_HOME; a path → a store there; None → no recording."""
    if store == "default":
        return default_store()
    if store is None or store is False:
        return None
    if isinstance(store, str) or hasattr(store, "__fspath__"):
        from kailash.runtime.store import store_at

        return store_at(store)
    return store


class RunContext:
    """What a node that needs the runtime (e.g. ``WorkflowNode``) gets when it is called.

    Implements :class:`kailash.nodes.context.ExecutionContext`.
    """

    __slots__ = ("run_id", "runtime", "depth", "node_id", "workflow")

    def __init__(self, run_id: str, runtime: Any, depth: int = 0, node_id: str | None = None,
                 workflow: Any = None) -> None:
        self.run_id = run_id
        self.runtime = runtime
        self.depth = depth
        self.node_id = node_id
        self.workflow = workflow  # the workflow being run (nodes may look up their siblings)

    def for_node(self, node_id: str) -> RunContext:
        """This context as seen by node ``node_id``."""
        return RunContext(self.run_id, self.runtime, self.depth, node_id, self.workflow)

    def load_workflow(self, source: Any) -> Any:
        """A workflow from a workflow object (returned as is), its dict form, or a .yaml/.json path."""
        from kailash.workflow.graph import Workflow

        if isinstance(source, Workflow):
            return source
        if isinstance(source, dict):
            return Workflow.from_dict(source)
        path = str(source)
        import os

        if not os.path.exists(path):
            from kailash.errors import NodeConfigurationError

            raise NodeConfigurationError(f"workflow file '{path}' does not exist", node_id=self.node_id,
                                         parameter="workflow_path", expected="an existing .yaml/.json file", got=path)
        return Workflow.load(path)

    def run_workflow(self, workflow: Any, parameters: dict[str, Any] | None = None) -> dict[str, Any]:
        """Run ``workflow`` inside this run (same runtime settings, not recorded separately)."""
        if self.depth >= 32:
            raise NodeExecutionError("sub-workflows nested more than 32 levels deep", node_id=self.node_id)
        plan = workflow.compile()
        overrides = plan.prepare(parameters)
        ctx = RunContext(self.run_id, self.runtime, self.depth + 1, self.node_id, workflow)
        recorder = RunRecorder(plan.name, self.run_id, None, None, None)
        return run_plan_sync(plan, overrides, ctx, recorder, raise_inner=True)


class RunRecorder:
    """Collects per-node timing and status for one run; builds the :class:`RunRecord`."""

    __slots__ = ("workflow", "run_id", "store", "observers", "parameters", "started_at", "t0", "rows", "skipped",
                 "record_outputs", "runtime_name", "tenant", "parent_run_id")

    def __init__(self, workflow: str, run_id: str, store: RunStore | None, observers: list[Observer] | None,
                 parameters: dict[str, Any] | None, *, record_outputs: str = "failed", runtime_name: str = "local",
                 tenant: str | None = None, parent_run_id: str | None = None) -> None:
        self.workflow = workflow
        self.run_id = run_id
        self.store = store
        self.observers = observers or None
        self.parameters = parameters
        self.started_at = time.time()
        self.t0 = time.perf_counter()
        self.rows: list[tuple[str, str, float, float, str | None]] = []
        self.skipped: list[str] = []
        self.record_outputs = record_outputs
        self.runtime_name = runtime_name
        self.tenant = tenant
        self.parent_run_id = parent_run_id  # set for a resumed run: the failed run it continues
        if self.observers:
            self.emit({"event": "run_started", "run_id": run_id, "workflow": workflow})

    def emit(self, event: dict[str, Any]) -> None:
        for obs in self.observers or ():
            try:
                obs(event)
            except Exception:  # an observer must never break a run
                pass

    def node_started(self, node_id: str) -> None:
        if self.observers:
            self.emit({"event": "node_started", "run_id": self.run_id, "node_id": node_id})

    def node_done(self, node_id: str, start: float, duration: float) -> None:
        self.rows.append((node_id, "completed", start, duration, None))
        if self.observers:
            self.emit({"event": "node_completed", "run_id": self.run_id, "node_id": node_id, "duration": duration})

    def node_skipped(self, node_id: str) -> None:
        self.rows.append((node_id, "skipped", 0.0, 0.0, None))
        self.skipped.append(node_id)
        if self.observers:
            self.emit({"event": "node_skipped", "run_id": self.run_id, "node_id": node_id})

    def node_failed(self, node_id: str, start: float, duration: float, error: str) -> None:
        self.rows.append((node_id, "failed", start, duration, error))
        if self.observers:
            self.emit({"event": "node_failed", "run_id": self.run_id, "node_id": node_id, "error": error})

    def _record(self, status: str, results: dict[str, Any], error: str | None, error_node: str | None) -> None:
        ended = time.time()
        if self.observers:
            self.emit({"event": f"run_{status}", "run_id": self.run_id, "workflow": self.workflow,
                       "error": error, "error_node": error_node})
        store = self.store
        if store is None:
            return
        nodes: Any = tuple(self.rows)  # (id, status, start offset, duration, error): see store.node_rows
        keep = self.record_outputs == "always" or (self.record_outputs == "failed" and status == "failed")
        store.record(RunRecord(
            run_id=self.run_id, workflow=self.workflow, status=status, started_at=self.started_at, ended_at=ended,
            nodes=nodes, error=error, error_node=error_node,
            outputs=to_json_safe(dict(results)) if keep else None,
            parameters=to_json_safe(redact(self.parameters)) if self.parameters else None,
            runtime=self.runtime_name, tenant=self.tenant, parent_run_id=self.parent_run_id,
        ))

    def completed(self, results: dict[str, Any]) -> None:
        self._record("completed", results, None, None)

    def failed(self, results: dict[str, Any], error: BaseException, node_id: str | None) -> None:
        known = known_secret_values()
        if known:  # error texts are free text: scrub any credential a node quoted
            self.rows = [r if r[4] is None else (*r[:4], redact(r[4], known)) for r in self.rows]
            self._record("failed", redact(dict(results), known), redact(_describe(error), known), node_id)
            return
        self._record("failed", results, _describe(error), node_id)


def _describe(error: BaseException) -> str:
    text = str(error)
    return text if isinstance(error, KailashError) else f"{type(error).__name__}: {text}"


def call_step(step: Any, inputs: dict[str, Any], ctx: RunContext) -> dict[str, Any]:
    """Call one node, through its failure policy when it has one."""
    policy = step.policy
    if policy is not None:
        return policy.call(step.node, inputs, ctx)
    return step.node.call(inputs, ctx)


def fail_run(exc: BaseException, node_id: str, run_id: str, results: dict[str, Any], node: Any = None) -> KailashError:
    """The error a runtime raises for a node failure: a KailashError carrying run and node ids."""
    if isinstance(exc, KailashError):
        err = exc
        if err.node_id is None:
            err.node_id = node_id
    else:
        kind = f" ({type(node).__name__})" if node is not None else ""
        err = NodeExecutionError(f"node '{node_id}'{kind} failed: {type(exc).__name__}: {exc}", node_id=node_id)
        err.__traceback__ = exc.__traceback__
        err.__cause__ = exc
    err.run_id = run_id
    err.results = dict(results)  # type: ignore[attr-defined]
    known = known_secret_values()
    if known and any(k in err.message for k in known):  # a node quoted a credential: scrub it
        err.message = redact(err.message, known)
        err.args = (err.message,)
    return err


def run_plan_sync(plan: Any, overrides: dict[str, dict[str, Any]], ctx: RunContext, recorder: RunRecorder,
                  *, raise_inner: bool = False, fixed: dict[str, dict[str, Any]] | None = None) -> WorkflowResults:
    """Run every step in topological order in this thread (LocalRuntime, TestRuntime, sub-workflows)."""
    results = WorkflowResults()
    if ctx.workflow is None:
        ctx.workflow = plan.workflow
    perf = time.perf_counter
    t0 = recorder.t0
    observers = recorder.observers
    rows = recorder.rows
    add_row = rows.append
    for step in plan.steps:
        sid = step.id
        if fixed and sid in fixed:
            results[sid] = fixed[sid]
            add_row((sid, "completed", perf() - t0, 0.0, None))
            continue
        start = perf()
        try:
            inputs = step.gather(results, overrides.get(sid) if overrides else None)
            if inputs is None:
                recorder.node_skipped(sid)
                continue
            if observers:
                recorder.node_started(sid)
            if step.direct:
                out = step.node.run(**inputs)
                if type(out) is not dict:
                    out = ensure_output_dict(step.node, out)
            elif step.policy is None:
                out = step.node.call(inputs, ctx.for_node(sid))
            else:
                out = step.policy.call(step.node, inputs, ctx.for_node(sid))
        except BaseException as exc:
            end = perf()
            if not isinstance(exc, Exception):  # KeyboardInterrupt, SystemExit: record, then let it through
                recorder.node_failed(sid, start - t0, end - start, f"interrupted: {type(exc).__name__}")
                if not raise_inner:
                    recorder.failed(results, exc, sid)
                raise
            err = fail_run(exc, sid, ctx.run_id, results, step.node)
            recorder.node_failed(sid, start - t0, end - start, str(err))
            if not raise_inner:
                recorder.failed(results, err, sid)
            raise err from (exc.__cause__ if exc is err else exc)
        results[sid] = out
        end = perf()
        add_row((sid, "completed", start - t0, end - start, None))
        if observers:
            recorder.emit({"event": "node_completed", "run_id": ctx.run_id, "node_id": sid, "duration": end - start})
    results.run_id = ctx.run_id
    results.skipped = tuple(recorder.skipped)
    if not raise_inner:
        recorder.completed(results)
    return results
