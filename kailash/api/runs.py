"""Runs started through the gateway: execution, live state, events and limits.

A run executes in a worker thread (a dedicated pool, so long workflows never starve
the web server's own threads) under :class:`~kailash.runtime.LocalRuntime`, recording
into its workspace's run store. The runtime's observer feeds a :class:`LiveRun`,
which keeps the run's per-node status and its event log, and forwards each event to
subscribers (SSE and websocket clients) on the event loop. Subscribers that arrive
late get the log replayed first, so nothing is missed. Concurrent-run limits are
counted here, per namespace; what a tenant's run may do is settled in
:mod:`kailash.api.tenant_runs`.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import random
import threading
import time
import weakref
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from kailash.api.responses import ApiError
from kailash.api.tenant_runs import check_tenant_run, scope_of, tenant_security
from kailash.runtime.engine import CALL_LIMIT
from kailash.runtime.store import RunRecord, to_json_safe
from kailash.security.secrets import plain_secret_values, redact, wrap_secrets

__all__ = ["LiveRun", "RunManager", "TERMINAL_EVENTS", "events_from_record", "new_run_id", "tenant_security"]

logger = logging.getLogger("kailash.api")
TERMINAL_EVENTS = frozenset({"run_completed", "run_failed"})
_CALL_EVENTS = frozenset({"model_call", "tool_call"})  # an agent's call (kailash.nodes.calls)
_ids = random.Random(os.urandom(32))


loop_now = asyncio.get_running_loop


def new_run_id() -> str:
    """A 128-bit random run id, like ``uuid4().hex``.

    Drawn from a generator seeded once from ``os.urandom``: the event loop must not
    make a system call that releases the GIL (under load, taking it back costs a
    scheduler switch). Run ids identify runs; access is checked per namespace, never
    by the id being hard to guess.
    """
    return f"{_ids.getrandbits(128):032x}"
_MAX_EVENTS = 20_000
#: events a subscriber may fall behind by; then it loses its backlog (one ``events_dropped`` event says so)
_QUEUE_LIMIT = 10_000


class LiveRun:
    """What the gateway knows about a run while (and shortly after) it runs."""

    def __init__(self, run_id: str, workflow: str, tenant_id: str | None, loop: asyncio.AbstractEventLoop | None,
                 secrets: frozenset[str], status: str = "running") -> None:
        self.run_id = run_id
        self.workflow = workflow
        self.tenant_id = tenant_id
        self.loop = loop
        self.secrets = secrets
        self.status = status
        self.started_at = time.time()
        self.ended_at: float | None = None
        self.nodes: dict[str, dict[str, Any]] = {}
        self.events: list[dict[str, Any]] = []
        self.results: dict[str, Any] | None = None
        self.error: dict[str, Any] | None = None
        self.skipped: list[str] = []
        self.extra: dict[str, Any] | None = None  # e.g. {"queue": ...} of a run taken over from a dead gateway
        # stream runs: POST /runs/{id}/stop sets this; the live counts of the last stream_progress event
        self.stop_requested = threading.Event()
        self.streaming = False
        self.stream: dict[str, Any] | None = None
        self._subscribers: set[asyncio.Queue[dict[str, Any]]] = set()
        self._lock = threading.Lock()
        self.metrics: Any = None  # the gateway's GatewayMetrics (kailash.api.metrics): fed each event
        self.calls: list[dict[str, Any]] = []  # the agents' model and tool calls so far (the record keeps them too)
        self.calls_truncated = 0

    def observe(self, event: dict[str, Any]) -> None:
        """The runtime observer (called in the worker thread).

        The runtime's own ``run_completed``/``run_failed`` are held back: :meth:`finish`
        publishes the terminal event once the results are in place, so a client that
        reacts to it by fetching the run always finds them.
        """
        if event.get("event") in TERMINAL_EVENTS:
            return
        self._publish(event)

    def finish(self, results: dict[str, Any], error: dict[str, Any] | None, skipped: list[str]) -> None:
        """Record the outcome and publish the terminal event (worker thread)."""
        self.results = results
        self.error = error
        self.skipped = skipped
        if error is None:
            self._publish({"event": "run_completed", "run_id": self.run_id, "workflow": self.workflow})
        else:
            logger.warning("run %s of workflow '%s' failed%s: %s: %s", self.run_id, self.workflow,
                           f" at node '{error['node_id']}'" if error.get("node_id") else "", error.get("type"),
                           redact(str(error.get("message")), self.secrets))
            self._publish({"event": "run_failed", "run_id": self.run_id, "workflow": self.workflow,
                           "error": error["message"], "error_node": error["node_id"]})

    def _publish(self, event: dict[str, Any]) -> None:
        ev = dict(event)
        ev["ts"] = time.time()
        if ev.get("error"):
            ev["error"] = redact(str(ev["error"]), self.secrets)
        kind = ev.get("event")
        if kind in _CALL_EVENTS and self.secrets:  # an agent's call: its arguments too
            ev = redact(ev, self.secrets)
        node_id = ev.get("node_id")
        with self._lock:
            if node_id is not None:
                state = self.nodes.setdefault(node_id, {"node_id": node_id, "status": "pending"})
                if kind == "node_started":
                    state.update(status="running", started_at=ev["ts"])
                elif kind == "node_completed":
                    state.update(status="completed", duration=ev.get("duration"))
                elif kind == "node_failed":
                    state.update(status="failed", error=ev.get("error"))
                elif kind == "node_skipped":
                    state.update(status="skipped")
            if kind in _CALL_EVENTS:
                if len(self.calls) < CALL_LIMIT:
                    self.calls.append({k: v for k, v in ev.items() if k not in ("run_id", "ts")})
                else:
                    self.calls_truncated += 1
            if kind == "stream_progress":
                self.stream = {k: ev.get(k) for k in ("events", "failures", "dead_lettered", "events_per_s", "elapsed")}
            if kind in TERMINAL_EVENTS:
                self.status = "completed" if kind == "run_completed" else "failed"
                self.ended_at = ev["ts"]
            ev["seq"] = len(self.events)
            if len(self.events) < _MAX_EVENTS or kind in TERMINAL_EVENTS:
                self.events.append(ev)
            subscribers = tuple(self._subscribers)
        if self.metrics is not None:
            self.metrics.event(self.workflow, ev)
        for q in subscribers:
            self.loop.call_soon_threadsafe(self._deliver, q, ev)  # type: ignore[union-attr]  # subscribers imply a loop

    def _deliver(self, q: asyncio.Queue[dict[str, Any]], ev: dict[str, Any]) -> None:
        """``ev`` into a subscriber's queue (on the event loop). A subscriber that has fallen
        :data:`_QUEUE_LIMIT` events behind (a client that stopped reading) loses the events it
        has not read: one ``events_dropped`` event counts them, and the run's record keeps them all."""
        if q.qsize() >= _QUEUE_LIMIT:
            dropped, last = 0, ev
            while not q.empty():
                last = q.get_nowait()
                dropped += int(last.get("dropped") or 0) if last.get("event") == "events_dropped" else 1
            q.put_nowait({"event": "events_dropped", "run_id": self.run_id, "dropped": dropped, "seq": last["seq"],
                          "ts": ev["ts"]})
        q.put_nowait(ev)

    def subscribe(self) -> tuple[list[dict[str, Any]], asyncio.Queue[dict[str, Any]]]:
        """The events so far, and a queue receiving every later one (call on the event loop)."""
        q: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        with self._lock:
            past = list(self.events)
            self._subscribers.add(q)
        return past, q

    def unsubscribe(self, q: asyncio.Queue[dict[str, Any]]) -> None:
        with self._lock:
            self._subscribers.discard(q)

    def to_dict(self) -> dict[str, Any]:
        with self._lock:
            nodes = [dict(n) for n in self.nodes.values()]
        out = {"run_id": self.run_id, "workflow": self.workflow, "status": self.status,
               "started_at": self.started_at, "ended_at": self.ended_at,
               "duration": None if self.ended_at is None else self.ended_at - self.started_at,
               "nodes": nodes, "error": self.error, "skipped": list(self.skipped)}
        with self._lock:
            out["calls"] = list(self.calls)
            if self.calls_truncated:
                out["calls_truncated"] = self.calls_truncated
        if self.streaming:
            out["stream"] = self.stream
        if self.results is not None:
            out["results"] = self.results
        if self.extra:
            out["extra"] = self.extra
        return out


def events_from_record(record: RunRecord) -> list[dict[str, Any]]:
    """The events of a finished run, rebuilt from its record (for late subscribers)."""
    events: list[dict[str, Any]] = [{"event": "run_started", "run_id": record.run_id, "workflow": record.workflow,
                                     "ts": record.started_at}]
    calls: dict[Any, list[dict[str, Any]]] = {}  # node -> its agents' calls, replayed before the node's end
    for call in record.calls:
        calls.setdefault(call.get("node_id"), []).append({**call, "run_id": record.run_id})
    events.extend(calls.pop(None, []))
    for n in record.nodes:
        kind = {"completed": "node_completed", "failed": "node_failed", "skipped": "node_skipped"}.get(n.status)
        if kind is None:
            continue
        events.extend(calls.pop(n.node_id, []))
        ev: dict[str, Any] = {"event": kind, "run_id": record.run_id, "node_id": n.node_id}
        if n.duration is not None:
            ev["duration"] = n.duration
        if n.error:
            ev["error"] = n.error
        events.append(ev)
    for rest in calls.values():  # calls of nodes without a final status
        events.extend(rest)
    status = "run_completed" if record.status == "completed" else "run_failed"
    events.append({"event": status, "run_id": record.run_id, "workflow": record.workflow, "error": record.error,
                   "error_node": record.error_node, "ts": record.ended_at})
    for i, ev in enumerate(events):
        ev["seq"] = i
    return events


def error_info(exc: BaseException, secrets: frozenset[str]) -> dict[str, Any]:
    """A failed run's error for the API: type, message (redacted), node and parameter."""
    return {"type": type(exc).__name__, "message": redact(str(exc), secrets),
            "node_id": getattr(exc, "node_id", None), "parameter": getattr(exc, "parameter", None)}


class RunManager:
    """Starts runs in a worker pool and keeps the live ones.

    Args:
        max_workers: threads running workflows at once (more runs wait in a queue).
        retain: finished runs kept in memory for status and event replay.
    """

    def __init__(self, *, max_workers: int = 32, retain: int = 1000) -> None:
        self.max_workers = max_workers
        self.retain = retain
        self._executor: ThreadPoolExecutor | None = None
        self.live: OrderedDict[str, LiveRun] = OrderedDict()
        self.active: dict[str | None, int] = {}
        self.metrics: Any = None  # handed to each LiveRun (the gateway sets it)
        self._count_lock = threading.Lock()
        self.worker: Any = None  # the gateway's QueueWorker: async runs go through the durable queue
        self.worker_factory: Any = None  # makes it on first use (WorkflowGateway.queue_worker)
        #: ``(store=, observers=, tenant=, record_outputs=) -> runtime`` for the gateway's runs; ``None``: LocalRuntime
        self.runtime_factory: Any = None

    @property
    def executor(self) -> ThreadPoolExecutor:
        if self._executor is None:
            self._executor = ThreadPoolExecutor(self.max_workers, thread_name_prefix="kailash-run")
        return self._executor

    def shutdown(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)
            self._executor = None

    def find(self, run_id: str, tenant_id: str | None) -> LiveRun | None:
        run = self.live.get(run_id)
        return run if run is not None and run.tenant_id == tenant_id else None

    def running(self, tenant_id: str | None) -> list[LiveRun]:
        return [r for r in list(self.live.values()) if r.tenant_id == tenant_id and r.status == "running"]

    async def start(self, *, workspace: Any, name: str, workflow: Any, parameters: dict[str, Any],
                    limit: int | None, wait: bool, secrets: frozenset[str], run_id: str,
                    allowed: dict[str, frozenset[str]] | None = None) -> LiveRun:
        """Validate ``parameters``, start the run, and (with ``wait``) wait for it to finish.

        ``allowed`` names the protected parameters (see :mod:`kailash.api.overrides`) the
        workflow lets a run replace, ``{node_id: names}``; ``None`` checks nothing (an
        uploaded workflow, which its caller could replace outright).
        """
        from kailash.api.documents import problem
        from kailash.api.overrides import refuse_overrides
        from kailash.errors import WorkflowValidationError

        tenant = workspace.tenant_id
        try:  # bad parameters are the caller's mistake: 422 before anything runs
            plan = workflow.compile()
            secrets = secrets | plan.config_secrets  # credentials in node configs (${ENV} of an upload too)
            per_node = plan.prepare(parameters)
        except WorkflowValidationError as exc:
            raise ApiError(422, "invalid_parameters", redact(str(exc), secrets),
                           problems=[redact(problem(p), secrets) for p in exc.problems]) from None
        if allowed is not None:
            refuse_overrides(workflow, per_node, allowed)
        if tenant is not None:
            check_tenant_run(scope_of(workspace), workflow, parameters, secrets)
        if not wait and self.worker_factory is not None and self.worker is None:
            await loop_now().run_in_executor(None, self.worker_factory)
        if not wait and self.worker is not None:
            return await self._enqueue(workspace=workspace, name=name, workflow=workflow, parameters=parameters,
                                       limit=limit, secrets=secrets, run_id=run_id)
        if limit is not None and self.active.get(tenant, 0) >= limit:
            raise ApiError(429, "too_many_runs", f"at most {limit} runs may run at once here; retry when one "
                           "finishes", headers={"Retry-After": "1"}, limit=limit)
        loop = asyncio.get_running_loop()
        secret_names = _secret_parameters(workflow)
        if secret_names:
            params = {k: (wrap_secrets(dict(v), secret_names[k]) if k in secret_names and isinstance(v, dict) else v)
                      for k, v in parameters.items()}
            secrets = secrets | plain_secret_values(params)
        else:
            params = parameters
        run = LiveRun(run_id, name, tenant, loop, secrets)
        run.metrics = self.metrics
        self._remember(run)
        self.count(tenant, +1)
        future = loop.run_in_executor(self.executor, _execute, run, workspace, workflow, params, not wait,
                                      self.runtime_factory)

        def finished(_: Any) -> None:
            self.count(tenant, -1)

        future.add_done_callback(finished)
        if wait:  # shielded: a client that hangs up must not make the run look finished to the limiter
            await asyncio.shield(future)
        return run

    async def _enqueue(self, *, workspace: Any, name: str, workflow: Any, parameters: dict[str, Any],
                       limit: int | None, secrets: frozenset[str], run_id: str) -> LiveRun:
        """An async run: written to the durable queue, started here at once if a slot is free.

        Returns the run's :class:`LiveRun` (``status`` ``"queued"`` when it waits for a slot
        on whichever gateway frees one first; that one is not kept here).
        """
        from kailash.errors import SecurityError
        from kailash.runtime.queue import QueuedRun, queueable_parameters, resolve_references

        worker = self.worker
        assert worker is not None
        tenant = workspace.tenant_id
        try:
            queueable_parameters(workflow, parameters, allow_env=tenant is None)
            resolved = resolve_references(workflow, parameters, allow_env=tenant is None)  # what runs here
        except SecurityError as exc:
            raise ApiError(422, "secret_not_queueable", exc.message, node_id=exc.node_id,
                           parameter=exc.parameter) from None
        loop = asyncio.get_running_loop()
        worker.loop = loop
        queue = worker.queue
        if limit is not None and await loop.run_in_executor(None, queue.pending, tenant) >= limit:
            raise ApiError(429, "too_many_runs", f"at most {limit} runs may run at once here; retry when one "
                           "finishes", headers={"Retry-After": "1"}, limit=limit)
        mine = worker.reserve()
        options = {"record_outputs": "always"}

        def put() -> bool:
            return bool(queue.enqueue(run_id=run_id, workflow=name, parameters=parameters, tenant_id=tenant,
                                      options=options, owner=worker.id if mine else None, lease=worker.lease))

        since = time.perf_counter()  # its lease (if claimed here) runs from later than this
        try:
            added = await loop.run_in_executor(None, put)
        except BaseException:
            if mine:
                worker.release_slot()
            raise
        if not added:  # the run id is in the queue already (a retried or second schedule fire): never run it twice
            if mine:
                worker.release_slot()
            return self.find(run_id, tenant) or LiveRun(run_id, name, tenant, loop, secrets, status="queued")
        worker.start()
        if not mine:
            worker.wake()
            return LiveRun(run_id, name, tenant, loop, secrets, status="queued")
        item = QueuedRun(run_id=run_id, workflow=name, parameters=parameters, tenant_id=tenant, options=options,
                         status="running", owner=worker.id, attempts=1)
        secret_names = _secret_parameters(workflow)
        if secret_names:
            params = {k: (wrap_secrets(dict(v), secret_names[k]) if k in secret_names and isinstance(v, dict) else v)
                      for k, v in resolved.items()}
            secrets = secrets | plain_secret_values(params)
        else:
            params = resolved
        run = LiveRun(run_id, name, tenant, loop, secrets)
        self._remember(run)
        worker.adopt(item, since=since)
        try:
            self.executor.submit(worker.run_item, item, (workspace, workflow, params, run))
        except RuntimeError:  # the pool is shut down: another gateway takes it over
            worker.queue.release(worker.id, [run_id])
        return run

    def queued_live_run(self, item: Any, secrets: frozenset[str], loop: Any) -> LiveRun:
        """The :class:`LiveRun` of a run claimed from the queue (kept for status and live events)."""
        run = LiveRun(item.run_id, item.workflow, item.tenant_id, loop, secrets)
        self._remember(run)
        return run

    def count(self, tenant: str | None, delta: int) -> None:
        """A run of ``tenant`` started (+1) or ended (-1) in this process (the concurrency limit's count)."""
        with self._count_lock:
            self.active[tenant] = max(0, self.active.get(tenant, 0) + delta)

    def _remember(self, run: LiveRun) -> None:
        live = self.live
        live[run.run_id] = run
        excess = len(live) - self.retain
        if excess > 0:  # forget the oldest finished runs; look only at the front, never the whole map
            for run_id in list(itertools.islice(live, 2 * excess + 16)):
                if live[run_id].status != "running":
                    del live[run_id]
                    excess -= 1
                    if excess <= 0:
                        break


_SECRET_NAMES: weakref.WeakKeyDictionary[Any, tuple[int, dict[str, set[str]]]] = weakref.WeakKeyDictionary()


def _secret_parameters(workflow: Any) -> dict[str, set[str]]:
    """``{node_id: names of its secret parameters}`` (cached per workflow version)."""
    version = getattr(workflow, "_version", None)
    try:
        hit = _SECRET_NAMES.get(workflow)
    except TypeError:
        hit = None
    if hit is not None and hit[0] == version:
        return hit[1]
    out: dict[str, set[str]] = {}
    for node_id, node in workflow.nodes.items():
        try:
            names = {n for n, p in node.parameters.items() if p.secret}
        except Exception:
            continue
        if names:
            out[node_id] = names
    try:
        _SECRET_NAMES[workflow] = (version, out)  # type: ignore[assignment]
    except TypeError:
        pass
    return out


class _RedactingStore:
    """Writes a run's record with its secret values blanked out of error texts and outputs.

    A node may quote a credential in its error message; the record must not keep it.
    """

    def __init__(self, inner: Any, secrets: frozenset[str]) -> None:
        self.inner = inner
        self.secrets = secrets

    def record(self, run: RunRecord) -> None:
        import dataclasses

        s = self.secrets
        nodes = tuple(dataclasses.replace(n, error=redact(n.error, s)) if n.error else n for n in run.nodes)
        self.inner.record(dataclasses.replace(run, error=redact(run.error, s), nodes=nodes,
                                              outputs=redact(run.outputs, s), parameters=redact(run.parameters, s),
                                              extra=redact(run.extra, s)))  # extra: the nodes' printed output

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def run_runtime(factory: Any, *, store: Any, observers: list[Any], tenant: str | None, record_outputs: str,
                stream: bool = False) -> Any:
    """The runtime one gateway run executes on: the one place the gateway makes it.

    ``factory`` (``WorkflowGateway(runtime_factory=...)`` or ``dask_address=``) makes it;
    ``None`` means :class:`~kailash.runtime.LocalRuntime` in this process. A stream run
    (``stream=True``) always runs here: only LocalRuntime runs streams.
    """
    if factory is None or stream:
        from kailash.runtime import LocalRuntime

        return LocalRuntime(store=store, observers=observers, tenant=tenant, record_outputs=record_outputs)
    return factory(store=store, observers=observers, tenant=tenant, record_outputs=record_outputs)


class DaskRuntimeFactory:
    """Makes a :class:`~kailash.runtime.distributed.DaskRuntime` per run, all sharing one client.

    The client connects to the scheduler at ``address`` on first use (or :meth:`connect`)
    and is closed by :meth:`close` (the gateway's shutdown).
    """

    def __init__(self, address: str, *, connect_timeout: float = 5.0) -> None:
        self.address = address
        self.connect_timeout = connect_timeout
        self._client: Any = None
        self._lock = threading.Lock()

    def connect(self) -> Any:
        """The shared client; raises ClusterConnectionError naming the address if it cannot connect."""
        with self._lock:
            if self._client is None:
                from kailash.runtime.distributed import DaskRuntime

                probe = DaskRuntime(self.address, connect_timeout=self.connect_timeout, store=None)
                probe._owns_client = False  # the factory owns and closes it
                self._client = probe.client
            return self._client

    def __call__(self, **options: Any) -> Any:
        from kailash.runtime.distributed import DaskRuntime

        return DaskRuntime(client=self.connect(), **options)

    def close(self) -> None:
        with self._lock:
            client, self._client = self._client, None
        if client is not None:
            client.close()

    def __repr__(self) -> str:
        return f"DaskRuntimeFactory({self.address})"


def _execute(run: LiveRun, workspace: Any, workflow: Any, parameters: dict[str, Any], keep_outputs: bool,
             runtime_factory: Any = None) -> None:
    """Run the workflow (worker thread) on ``run_runtime(runtime_factory, ...)``; the outcome lands on ``run``."""
    from kailash.errors import KailashError

    store = _RedactingStore(workspace.runs, run.secrets) if run.secrets and workspace.runs is not None else workspace.runs
    timeout = getattr(getattr(workspace, "tenant", None), "run_timeout", None)
    try:
        from kailash.runtime.stream_options import stoppable

        stream = stoppable(workflow, parameters, run.stop_requested)  # a stream run: stoppable through the API
        run.streaming = stream is not None
        runtime = run_runtime(runtime_factory, store=store, observers=[run.observe], tenant=workspace.tenant_id,
                              record_outputs="always" if keep_outputs else "failed", stream=stream is not None)
        with tenant_security(workspace.tenant_id, workspace):
            if timeout is None:
                results, _ = _run_on(runtime, workflow, parameters, run.run_id, stream)
            else:
                results, _ = _execute_within(runtime, workflow, parameters, run.run_id, timeout, stream)
    except KailashError as exc:
        partial = getattr(exc, "results", None) or {}
        run.finish(redact(to_json_safe(dict(partial)), run.secrets), error_info(exc, run.secrets), [])
        return
    except Exception as exc:  # a bug outside any node: still end the run visibly
        run.finish({}, error_info(exc, run.secrets), [])
        return
    safe = to_json_safe(dict(results))
    run.finish(redact(safe, run.secrets) if run.secrets else safe, None, list(getattr(results, "skipped", ()) or ()))


def _run_on(runtime: Any, workflow: Any, parameters: dict[str, Any], run_id: str, stream: Any) -> Any:
    if stream is None:  # DaskRuntime.execute takes no stream options
        return runtime.execute(workflow, parameters=parameters, run_id=run_id)
    return runtime.execute(workflow, parameters=parameters, run_id=run_id, stream=stream)


def _execute_within(runtime: Any, workflow: Any, parameters: dict[str, Any], run_id: str, timeout: float,
                    stream: Any = None) -> Any:
    """Run the workflow under a run time limit (a tenant's ``run_timeout``).

    The scheduler starts no node past the deadline and records the run as failed; a node
    still running then (a call blocked in C) is abandoned in its thread.
    """
    from concurrent.futures import TimeoutError as FutureTimeout

    from kailash.errors import NodeTimeoutError
    from kailash.runtime._attempts import start_thread
    from kailash.runtime.scheduler import run_deadline

    def limited() -> Any:
        with run_deadline(timeout):
            return _run_on(runtime, workflow, parameters, run_id, stream)

    future = start_thread(limited)  # the thread copies this context: the tenant's scope and policy
    try:
        return future.result(timeout + 5.0)  # the run stops itself at the next node after the deadline
    except FutureTimeout:
        raise NodeTimeoutError(f"the run took longer than the tenant's run_timeout of {timeout:g} s and was stopped",
                               parameter="run_timeout", expected=f"at most {timeout:g} s") from None
