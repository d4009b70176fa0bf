"""The pieces of a run that every runtime shares: its context, its recorder, its results.

:class:`RunContext` is what a node receives from the runtime
(:class:`kailash.nodes.context.ExecutionContext`); :class:`RunRecorder` is the only
writer of a run's :class:`~kailash.runtime.store.RunRecord`; :func:`fail_run` turns a
node's exception into the error a runtime raises. The schedule itself is in
:mod:`kailash.runtime.scheduler`. The hot path allocates one dict per node and calls
no logging.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections import deque
from collections.abc import Callable
from os import urandom
from typing import Any

from kailash.errors import KailashError, NodeExecutionError
from kailash.nodes.calls import shorten
from kailash.runtime import tracing
from kailash.runtime.store import (
    NodeRecords,
    NodeStatus,
    RunRecord,
    RunStatus,
    RunStore,
    SQLiteRunStore,
    _json_default,
    default_store,
    to_json_safe,
)
from kailash.runtime.types import RecordOutputs, RunId
from kailash.security.secrets import known_secret_values, note_secrets, redact, secrets_for_run

__all__ = ["CALL_LIMIT", "RunContext", "RunRecorder", "RuntimeDoor", "WorkflowResults", "Observer", "resolve_store", "new_run_id",
           "fail_run", "check_durability"]

Observer = Callable[[dict[str, Any]], None]

#: agent calls (model and tool calls, :mod:`kailash.nodes.calls`) kept in one run's record; more are counted
CALL_LIMIT = 1000
_calls_lock = threading.Lock()


class WorkflowResults(dict[str, dict[str, Any]]):
    """``{node_id: outputs}`` for every node that ran, plus what the run was.

    Attributes:
        run_id: the run's id.
        skipped: ids of nodes not run because their branch was not taken.
    """

    run_id: RunId | None = None
    skipped: tuple[str, ...] = ()


_ids: deque[str] = deque()  # run ids made ahead, in batches: one urandom call per 256 runs


_BATCH = 256
# version 4 and the RFC 4122 variant, set in all ids of a batch at once: (bytes & AND) | OR
_AND = int.from_bytes(bytes([0xFF] * 6 + [0x0F, 0xFF, 0x3F] + [0xFF] * 7) * _BATCH, "big")
_OR = int.from_bytes(bytes([0] * 6 + [0x40, 0, 0x80] + [0] * 7) * _BATCH, "big")


def _more_ids() -> None:
    """Make a batch of run ids at once (a ``urandom`` call releases the GIL: once per run it
    would hand the interpreter to the run log's writer thread and wait to get it back)."""
    n = 16 * _BATCH
    h = ((int.from_bytes(urandom(n), "big") & _AND) | _OR).to_bytes(n, "big").hex()
    _ids.extend([h[i:i + 32] for i in range(0, 2 * n, 32)])


def new_run_id() -> RunId:
    """A fresh run id: a random (version 4) UUID as 32 hex digits, made without ``uuid.UUID``'s
    Python-level checks (this runs once per run). Ids are made ahead in batches from
    ``os.urandom``; a forked child drops the parent's batch."""
    try:
        run_id: RunId = _ids.popleft()  # type: ignore[assignment]  # atomic: no two threads get the same id
    except IndexError:
        _more_ids()
        return new_run_id()
    return run_id


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_ids.clear)


def resolve_store(store: Any) -> RunStore | None:
    """``"default"`` → the SQLite store under KAILASH_HOME; a path → a store there; None → no recording."""
    if store == "default":
        return default_store()
    if store is None or store is False:
        return None
    if isinstance(store, str) or hasattr(store, "__fspath__"):
        from kailash.runtime.store import store_at

        return store_at(store)
    if not isinstance(store, RunStore):
        from kailash.errors import NodeConfigurationError

        raise NodeConfigurationError(
            f"store must be 'default', a path, a RunStore or None, got {type(store).__name__}",
            parameter="store", expected="'default' | path | RunStore | None", got=type(store).__name__,
        )
    return store


def check_durability(value: Any, where: str) -> str:
    """``value`` if it is a durability mode ("default", "strict", "off"); else a clear error."""
    if value not in ("default", "strict", "off"):
        from kailash.errors import NodeConfigurationError

        raise NodeConfigurationError(
            f"{where}: durability must be 'default', 'strict' or 'off', got {value!r}",
            parameter="durability", expected="'default' | 'strict' | 'off'", got=repr(value),
        )
    return str(value)


class RunContext:
    """What a node that needs the runtime (e.g. ``WorkflowNode``) gets when it is called.

    Implements :class:`kailash.nodes.context.ExecutionContext`.
    """

    __slots__ = ("run_id", "runtime", "depth", "node_id", "workflow")

    run_id: RunId
    node_id: str | None

    def __init__(self, run_id: RunId, runtime: Any, depth: int = 0, node_id: str | None = None,
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
        from kailash.workflow.serialization import workflow_from

        return workflow_from(source, node_id=self.node_id)

    def run_workflow(self, workflow: Any, parameters: dict[str, Any] | None = None) -> dict[str, Any]:
        """Run ``workflow`` inside this run (same runtime settings, not recorded separately)."""
        if self.depth >= 32:
            raise NodeExecutionError("sub-workflows nested more than 32 levels deep", node_id=self.node_id)
        from kailash.runtime.scheduler import Run, run_inline

        plan = workflow.compile()
        overrides = plan.prepare(parameters)
        ctx = RunContext(self.run_id, self.runtime, self.depth + 1, self.node_id, workflow)
        recorder = RunRecorder(plan.name, self.run_id, None, None, None)  # not recorded: part of the outer run
        if plan.config_secrets:  # the outer run's secrets (shared object): scrub the inner nodes' credentials too
            recorder.secrets.add_values(plan.config_secrets)
        return run_inline(Run(plan, overrides, ctx, recorder))


class RunRecorder:
    """Collects per-node timing and status for one run; builds and stores the :class:`RunRecord`.

    The only writer of a run's record: the scheduler reports each node through
    ``node_done`` / ``node_reused`` / ``node_skipped`` / ``node_failed`` and the run
    through ``completed`` / ``failed``. Times passed in are ``time.perf_counter()``
    values; the record turns them into wall-clock times.
    """

    __slots__ = ("workflow", "run_id", "store", "observers", "parameters", "started_at", "t0", "_rows", "skipped",
                 "record_outputs", "runtime_name", "tenant", "parent_run_id", "secrets", "results", "log", "strict",
                 "output", "plan", "final", "ended_at", "calls")

    def __init__(self, workflow: str, run_id: RunId, store: RunStore | None, observers: list[Observer] | None,
                 parameters: dict[str, Any] | None, *, record_outputs: RecordOutputs | str = "failed",
                 runtime_name: str = "local", tenant: str | None = None, parent_run_id: str | None = None,
                 durability: str = "off", secret_values: frozenset[str] = frozenset()) -> None:
        self.workflow = workflow
        self.run_id = run_id
        self.store = store
        self.observers = observers or None
        self.parameters = parameters
        self.started_at = time.time()
        self.t0 = time.perf_counter()
        self.ended_at: float | None = None  # set when the run ends (the run log reads it)
        self._rows: list[tuple[str, NodeStatus, float, float, str | None]] = []
        self.skipped: list[str] = []
        self.record_outputs = record_outputs
        self.runtime_name = runtime_name
        self.tenant = tenant
        self.parent_run_id = parent_run_id  # set for a resumed run: the failed run it continues
        # this run's secrets (current while the scheduler walks it): redaction at record, raised error, live event
        self.secrets = secrets_for_run(run_id, parameters)
        if secret_values:  # credentials in the nodes' configs: scrubbed before anything is written
            self.secrets.add_values(secret_values)
        self.results: dict[str, Any] | None = None  # the run's outputs (the scheduler's Run sets it): for the log
        self.output: Any = None  # what nodes printed and logged (kailash.runtime.capture, on the first write)
        self.plan: Any = None  # the compiled plan, when the runtime gives it: node types for observers
        self.calls: list[Any] | None = None  # the agents' model and tool calls: [entries, dropped] (agent_call)
        # durable runs are written ahead (kailash.runtime.runlog): running row, then node by node;
        # a SQLite store's runs, durable or not, end through its log's writer thread too
        log = getattr(store, "run_log", None)
        self.strict = False
        if durability == "off":
            self.final = log if type(store) is SQLiteRunStore else None
            self.log = None
        else:
            self.final = self.log = log
            if log is not None:
                log.begin(self)
                if durability == "strict":
                    self.strict = True
                    log.drain(sync=True)
        if self.observers:
            self.emit({"event": "run_started", "run_id": run_id, "workflow": workflow})

    def emit(self, event: dict[str, Any]) -> None:
        if event.get("error") is not None:
            event = self.secrets.redact(event)
        for obs in self.observers or ():
            try:
                obs(event)
            except Exception:  # an observer must never break a run
                pass

    def agent_call(self, event: dict[str, Any]) -> None:
        """A model or tool call made by one of the run's nodes (:mod:`kailash.nodes.calls`): a run
        event for the observers and an entry of the record (the first :data:`CALL_LIMIT`; the
        rest are counted), with the run's secrets masked and long arguments cut."""
        event = shorten(self.secrets.redact(event))
        calls = self.calls
        if calls is None:
            with _calls_lock:
                calls = self.calls
                if calls is None:
                    calls = self.calls = [[], 0]
        entry = {k: v for k, v in event.items() if k != "run_id"}
        with _calls_lock:  # the nodes of a parallel run call from several threads
            if len(calls[0]) < CALL_LIMIT:
                calls[0].append(entry)
            else:
                calls[1] += 1
        if self.observers:
            self.emit(event)

    def _calls_extra(self, entries: list[dict[str, Any]] | None = None, dropped: int = 0) -> dict[str, Any]:
        """The record's ``calls`` (and ``calls_truncated``: how many more were made), redacted again
        with every secret the run has come to know (``entries``, ``dropped``: a copy taken already)."""
        if entries is None:
            entries, dropped = self.calls  # type: ignore[misc]
        out: dict[str, Any] = {"calls": to_json_safe(self.secrets.redact(list(entries)))}
        if dropped:
            out["calls_truncated"] = dropped
        return out

    @property
    def nodes(self) -> NodeRecords:
        """What has been recorded so far, as :class:`NodeRecord` objects."""
        return NodeRecords(tuple(self._rows), self.started_at, self.t0)

    def rows_after(self, written: int) -> list[tuple[str, NodeStatus, float, float, str | None]]:
        """The rows recorded after the first ``written`` (what the run log has not written yet).

        Safe from the log's writer thread: slicing a list is atomic.
        """
        return self._rows[written:]

    def clear(self) -> None:
        """Forget the rows recorded so far (a recorder reused for each event of a stream run)."""
        self._rows.clear()  # in place: a completion sink handed out earlier still appends here
        self.skipped.clear()

    def node_started(self, node_id: str) -> None:
        if self.observers:
            event = {"event": "node_started", "run_id": self.run_id, "node_id": node_id}
            step = self.plan.by_id.get(node_id) if self.plan is not None else None
            if step is not None:
                event["node_type"] = type(step.node).__name__
            self.emit(event)

    def completion_sink(self) -> Callable[[tuple[str, NodeStatus, float, float, None]], None]:
        """A fast way to report completions: call it with ``(node_id, "completed", start, duration, None)``.

        Without observers this is the row list's own ``append`` (no Python call per node
        on the engine's hot path); with observers, :meth:`node_done`. Either way the
        recorder decides what a completion does: a durable run log hooks in here.
        """
        if self.observers or self.strict:
            return lambda row: self.node_done(row[0], row[2], row[3])
        return self._rows.append  # default durability: the log's writer thread drains this list

    def node_done(self, node_id: str, start: float, duration: float) -> None:
        """Node ``node_id`` completed (``start``: its ``perf_counter`` start)."""
        self._rows.append((node_id, "completed", start, duration, None))
        if self.strict:  # committed before the next node starts
            self.log.drain(sync=True)  # type: ignore[union-attr]
        if self.observers:
            self.emit({"event": "node_completed", "run_id": self.run_id, "node_id": node_id, "duration": duration})

    def node_reused(self, node_id: str) -> None:
        """Node ``node_id`` was not run: its outputs were given (resume, mocks)."""
        self._rows.append((node_id, "completed", time.perf_counter(), 0.0, None))

    def node_skipped(self, node_id: str) -> None:
        self._rows.append((node_id, "skipped", 0.0, 0.0, None))  # start 0.0: none
        self.skipped.append(node_id)
        if self.observers:
            self.emit({"event": "node_skipped", "run_id": self.run_id, "node_id": node_id})

    def node_failed(self, node_id: str, start: float, duration: float, error: str) -> None:
        self._rows.append((node_id, "failed", start, duration, error))
        if self.observers:
            self.emit({"event": "node_failed", "run_id": self.run_id, "node_id": node_id, "error": error})

    def sort(self, order: dict[str, int]) -> None:
        """Put rows and skipped ids in plan order (``order``: ``{node_id: position}``)."""
        self._rows.sort(key=lambda r: order.get(r[0], 0))
        self.skipped.sort(key=lambda n: order.get(n, 0))

    def _record(self, status: RunStatus, results: dict[str, Any], error: str | None, error_node: str | None) -> None:
        self.ended_at = ended = time.time()
        if self.observers:
            self.emit({"event": f"run_{status}", "run_id": self.run_id, "workflow": self.workflow,
                       "error": error, "error_node": error_node})
        store = self.store
        if store is None:
            return
        keep = self.record_outputs == "always" or (self.record_outputs == "failed" and status == "failed")
        log = self.final
        if log is not None and self.output is None and self.calls is None:  # compact: the log's writer packs the node rows and writes the row
            if not (keep or self.parameters) and error is None and self.tenant is None and self.parent_run_id is None:
                log.end((self.run_id, self.workflow, status, self.started_at, ended, self._rows, self.t0,
                         self.runtime_name), now=self.strict)
                return
            outputs = params = None
            if keep:
                outputs = json.dumps(self.secrets.redact(dict(results)), default=_json_default)
            if self.parameters:
                params = json.dumps(self.secrets.redact(self.parameters), default=_json_default)
            log.end((self.run_id, self.workflow, status, self.started_at, ended, self._rows, self.t0, error,
                     error_node, outputs, params, self.tenant, self.runtime_name, self.parent_run_id),
                    now=self.strict or status == "failed")
            return
        record = RunRecord(
            run_id=self.run_id, workflow=self.workflow, status=status, started_at=self.started_at, ended_at=ended,
            nodes=NodeRecords(tuple(self._rows), self.started_at, self.t0), error=error, error_node=error_node,
            outputs=to_json_safe(self.secrets.redact(dict(results))) if keep else None,
            parameters=to_json_safe(self.secrets.redact(self.parameters)) if self.parameters else None,
            runtime=self.runtime_name, tenant=self.tenant, parent_run_id=self.parent_run_id,
            extra={**({"output": self.output.finish(self.secrets)} if self.output is not None else {}),
                   **(self._calls_extra() if self.calls is not None else {})},
        )
        if log is not None:  # durable, or a SQLite store's run: through the log's writer
            log.end(record, now=self.strict or status == "failed")
        else:
            store.record(record)

    def abandoned(self) -> None:
        """The run stops without an outcome (its task was cancelled): the log writes what it has
        and stops following it; the record stays ``running`` and reads ``interrupted`` once this
        process is gone."""
        if self.log is not None:
            self.log.forget(self)

    def completed(self, results: dict[str, Any]) -> None:
        self._record("completed", results, None, None)

    def failed(self, results: dict[str, Any], error: BaseException, node_id: str | None) -> None:
        known = self.secrets.add(results).values()  # with what the run's nodes produced (tokens)
        if known:  # error texts are free text: scrub any credential a node quoted
            self._rows = [r if r[4] is None else (*r[:4], redact(r[4], known)) for r in self._rows]
            self._record("failed", redact(dict(results), known), redact(_describe(error), known), node_id)
            return
        self._record("failed", results, _describe(error), node_id)


def _describe(error: BaseException) -> str:
    text = str(error)
    return text if isinstance(error, KailashError) else f"{type(error).__name__}: {text}"


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
    if node is not None:
        note_secrets(getattr(node, "config", None), results)
    known = known_secret_values()
    scrubbed = redact(err.message, known, urls=True)  # a node quoted a credential or a URL with a password
    if scrubbed != err.message:
        err.message = scrubbed
        err.args = (err.message,)
    return err


class RuntimeDoor:
    """What every runtime shares besides the schedule: its recorder settings and run history.

    A runtime sets ``name``, ``store``, ``record_outputs``, ``observers`` and ``tenant``
    and then needs only to pick an executor (see :mod:`kailash.runtime.scheduler`).
    """

    name: str = "local"
    store: RunStore | None = None
    durability: str = "default"
    record_outputs: str = "failed"
    observers: list[Observer] = []
    tenant: str | None = None

    def _recorder(self, plan: Any, run_id: RunId, parameters: dict[str, Any] | None,
                  observers: list[Observer] | None = None, parent_run_id: str | None = None) -> RunRecorder:
        obs = self.observers + list(observers) if observers else self.observers
        traced = tracing.enabled()  # KAILASH_OTEL=1 or tracing.enable(): spans for every run
        if traced is not None:
            obs = [*obs, traced]
        durability = self.durability
        meta = getattr(plan.workflow, "metadata", None)
        if meta and "durability" in meta:  # the workflow's own setting wins
            durability = check_durability(meta["durability"], f"workflow '{plan.name}' metadata")
        recorder = RunRecorder(plan.name, run_id, self.store, obs, plan.redact_parameters(parameters),
                               record_outputs=self.record_outputs, runtime_name=self.name, tenant=self.tenant,
                               parent_run_id=parent_run_id, durability=durability,
                               secret_values=plan.config_secrets)
        recorder.plan = plan
        return recorder

    def get_run(self, run_id: str) -> RunRecord | None:
        """The :class:`~kailash.runtime.store.RunRecord` of ``run_id`` (None if unknown or not recording)."""
        return self.store.get_run(run_id) if self.store is not None else None

    def list_runs(self, **filters: Any) -> list[RunRecord]:
        """Recorded runs, newest first (``limit``, ``workflow``, ``status``, ``tenant`` filter them)."""
        return self.store.list_runs(**filters) if self.store is not None else []
