"""The gateway's queue workers: async runs from the durable queue, at most ``slots`` at once.

An async run (``?async=true``) is written to the run queue of the gateway's storage
(:mod:`kailash.runtime.queue`): claimed at once by the gateway that took the request
when it has a free slot, else left ``queued`` for whichever gateway on the same
storage frees a slot first. Each gateway runs a dispatcher thread (claims runs while it
has free slots) and a heartbeat thread (renews its leases every third of the lease, and
ends the leases of workers on this host whose process is gone). A run is executed under
:class:`~kailash.runtime.LocalRuntime` with its record written ahead in the namespace's
run store under the queue's run id, so ``GET /runs/{id}`` answers from any gateway.

A run whose worker died is claimed again once its lease expires. Its record then says
``running`` (or ``interrupted``) with the nodes that finished: with
``on_interrupted="resume"`` (the default) the run continues under the same run id,
reusing those nodes' recorded outputs (:func:`kailash.runtime.resume.prepare_resume`)
— a node that was running when the worker died runs again (at least once per node); the
final record's ``extra["queue"]`` names the attempt and the reused nodes. With
``"mark"`` the run is recorded as ``interrupted`` and not run again.

``POST /runs/{id}/stop`` reaches a stream run executing on another gateway through its
queue row (``stop_requested``): the heartbeat thread looks for such requests every tick
(at most 2 s) while a stream run executes here, and stops the run as a local stop would.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import random
import threading
import time
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

from kailash.nodes.context import RunStop
from kailash.runtime.queue import QueuedRun, default_lease, worker_id
from kailash.runtime.runlog import record_of
from kailash.runtime.scheduler import lease_run, run_deadline, stop_run

__all__ = ["QueueWorker", "ON_INTERRUPTED"]

logger = logging.getLogger("kailash.api")
ON_INTERRUPTED = ("resume", "mark")


class _Interrupted:
    """A run store whose record of one run reads as ``interrupted`` (its lease expired: its owner is gone)."""

    def __init__(self, inner: Any, run_id: str) -> None:
        self.inner = inner
        self.run_id = run_id

    def get_run(self, run_id: str) -> Any:
        record = self.inner.get_run(run_id)
        if record is not None and record.run_id == self.run_id and record.status == "running":
            record = dataclasses.replace(record, status="interrupted")
        return record


class _TaggingLog:
    """A run log whose final records carry ``extra["queue"]`` (the attempt, the reused nodes)."""

    def __init__(self, inner: Any, info: dict[str, Any]) -> None:
        self.inner = inner
        self.info = info

    def end(self, record: Any, *, now: bool = False) -> None:
        if type(record) is tuple:  # the recorder's compact final row
            record = record_of(record)
        self.inner.end(dataclasses.replace(record, extra={**record.extra, "queue": self.info}), now=now)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


class _TaggingStore:
    """A run store writing a taken-over run's record with ``extra["queue"]``."""

    def __init__(self, inner: Any, info: dict[str, Any]) -> None:
        self.inner = inner
        self.info = info
        log = getattr(inner, "run_log", None)
        self.run_log = _TaggingLog(log, info) if log is not None else None

    def record(self, run: Any) -> None:
        self.inner.record(dataclasses.replace(run, extra={**run.extra, "queue": self.info}))

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


class QueueWorker:
    """Claims and runs one gateway's share of the queue.

    Args:
        gateway: the :class:`~kailash.api.gateway.WorkflowGateway`.
        queue: its run queue (:class:`~kailash.runtime.queue.SQLiteRunQueue` or ``PostgresRunQueue``).
        slots: runs executing here at once.
        lease: seconds a claim lasts without renewal (default ``KAILASH_QUEUE_LEASE`` or 30).
        poll: seconds between looks at an idle queue (local enqueues wake the dispatcher at once).
        on_interrupted: ``"resume"`` or ``"mark"`` a run whose previous worker died.
        expire_dead: end at once the leases of workers on this host whose process is gone.
    """

    UNKNOWN_RETRY = 5.0  # s before a run of a workflow not served here is offered again
    UNKNOWN_GIVE_UP = 600.0  # s after which a run whose workflow no gateway serves is failed

    def __init__(self, gateway: Any, queue: Any, *, slots: int = 8, lease: float | None = None, poll: float = 0.5,
                 on_interrupted: str = "resume", expire_dead: bool = True) -> None:
        if on_interrupted not in ON_INTERRUPTED:
            raise ValueError(f"on_interrupted must be 'resume' or 'mark', got {on_interrupted!r}")
        if slots < 1:
            raise ValueError(f"queue slots must be at least 1, got {slots}")
        self.gateway = gateway
        self.queue = queue
        self.slots = slots
        self.lease = lease if lease is not None else default_lease()
        self.poll = poll
        self.on_interrupted = on_interrupted
        self.expire_dead = expire_dead
        self.id = worker_id()
        self.loop: Any = None  # the server's event loop (live events), once serving
        self.inflight: dict[str, QueuedRun] = {}
        self._finishing: set[str] = set()
        self._fences: dict[str, RunStop] = {}  # run id -> its stop (see _fenced)
        self._held_at: dict[str, float] = {}  # run id -> when its claim was last made or renewed (perf_counter)
        self._renewing = threading.Lock()
        self._reserved = 0
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    # -- lifecycle ------------------------------------------------------------------------------
    def start(self) -> None:
        """Start the dispatcher and heartbeat threads (once)."""
        with self._lock:
            if self._threads or self._stop.is_set():
                return
            for target, name in ((self._dispatch, "kailash-queue"), (self._heartbeat, "kailash-queue-lease")):
                t = threading.Thread(target=target, name=name, daemon=True)
                t.start()
                self._threads.append(t)

    def stop(self, timeout: float = 30.0) -> None:
        """Claim nothing more; wait up to ``timeout`` s for the runs executing here, then
        release what is still running (another gateway takes it over at once)."""
        self._stop.set()
        self._wake.set()
        deadline = time.monotonic() + timeout
        while self.inflight and time.monotonic() < deadline:
            time.sleep(0.05)
        left = list(self.inflight)
        if left:
            try:
                self.queue.release(self.id, left)
            except Exception:
                logger.warning("could not release %d queued run(s) on shutdown", len(left), exc_info=True)
        for t in self._threads:
            t.join(1.0)

    def close(self) -> None:
        """Close the queue's connection (unless runs are still finishing here)."""
        if not self.inflight:
            self.queue.close()

    def wake(self) -> None:
        self._wake.set()

    # -- slots ----------------------------------------------------------------------------------
    def reserve(self) -> bool:
        """Take a slot for a run about to be enqueued already claimed (``release_slot`` if not used)."""
        with self._lock:
            if self._stop.is_set() or len(self.inflight) + self._reserved >= self.slots:
                return False
            self._reserved += 1
            return True

    def release_slot(self) -> None:
        with self._lock:
            self._reserved = max(0, self._reserved - 1)

    def adopt(self, item: QueuedRun, *, since: float | None = None) -> None:
        """A run enqueued claimed by this worker is now executing (its reserved slot becomes in-flight).

        ``since``: the ``time.perf_counter()`` before it was enqueued (its lease runs from then at the latest).
        """
        self._held_at[item.run_id] = time.perf_counter() if since is None else since
        with self._lock:
            self._reserved = max(0, self._reserved - 1)
            self.inflight[item.run_id] = item

    def _free(self) -> int:
        with self._lock:
            return self.slots - len(self.inflight) - self._reserved

    # -- threads --------------------------------------------------------------------------------
    def _dispatch(self) -> None:
        idle = self.poll
        while not self._stop.is_set():
            free = self._free()
            claimed: list[QueuedRun] = []
            asked = time.perf_counter()  # the leases of what it claims run from later than this
            if free > 0:
                try:
                    claimed = self.queue.claim(self.id, limit=free, lease=self.lease)
                except Exception:
                    logger.warning("queue claim failed; retrying", exc_info=True)
            for item in claimed:
                self._held_at[item.run_id] = asked
                with self._lock:
                    self.inflight[item.run_id] = item
                try:
                    self.gateway.runs.executor.submit(self.run_item, item)
                except RuntimeError:  # the pool is shut down: the gateway is stopping
                    with self._lock:
                        self.inflight.pop(item.run_id, None)
                    self.queue.release(self.id, [item.run_id])
            if claimed and self._free() > 0:
                continue
            self._wake.wait(idle * (0.5 + random.random()))  # jittered: gateways do not poll in lockstep
            self._wake.clear()

    def _heartbeat(self) -> None:
        tick = min(self.lease / 3, 2.0)  # dead workers on this host are noticed within a tick
        renewed = time.monotonic()
        self._expire_dead()
        while not self._stop.wait(tick):
            if time.monotonic() - renewed >= self.lease / 3 - tick / 2:
                self.beat()
                renewed = time.monotonic()
            else:
                self._expire_dead()
            self.check_stops()
        # stopping: keep the leases of runs still finishing here alive until they end
        while self.inflight:
            self.beat()
            time.sleep(min(1.0, self.lease / 3))

    def beat(self) -> None:
        """Renew this worker's leases; end the leases of dead workers on this host."""
        self._renew()
        self._expire_dead()

    def _renew(self) -> None:
        """Renew the leases of the runs executing here (only those: a run that ended here without
        an outcome is left to expire); stop the runs whose claim another worker holds now."""
        with self._renewing:
            try:
                with self._lock:
                    mine = list(self.inflight)
                before = set(mine) - self._finishing
                asked = time.perf_counter()  # the renewed leases run from later than this
                held = self.queue.renew(self.id, lease=self.lease, run_ids=mine)
                for run_id in held:
                    self._held_at[run_id] = asked
                    fence = self._fences.get(run_id)
                    if fence is not None:
                        lease_run(fence, asked + self.lease)
                lost = [r for r in before if r not in held and r in self.inflight and r not in self._finishing]
                for run_id in lost:
                    fence = self._fences.get(run_id)
                    if fence is not None and fence.why is not None:
                        continue  # stopped already (another thread's renewal found it lost)
                    logger.warning("queued run %s: this gateway lost its claim (lease expired); stopping it before "
                                   "its next node (another gateway continues it)", run_id)
                    if fence is not None:
                        stop_run(fence, "this gateway lost its claim on the queued run (its lease expired); "
                                        "another gateway continues it", record=False)
            except Exception:
                logger.warning("queue lease renewal failed; retrying", exc_info=True)

    @contextlib.contextmanager
    def _fenced(self, run_id: str) -> Iterator[RunStop]:
        """Run ``run_id``'s nodes under a stop that :meth:`beat` pulls when this worker loses its
        claim, and under its lease as this host's clock sees it: no node starts here once another
        worker may be running the run (a node already running finishes; the run ends without an
        outcome in its record, which the other worker writes).

        The lease check closes the gap a stalled process would otherwise have on waking: its
        heartbeat has not yet found the claim gone, but the lease it last renewed has run out
        (this clock runs on while the process is stopped), so the run's next node first renews
        it in the run's thread (:meth:`_lapsed`) and starts only if the claim is still held.
        Runs on a Dask-backed gateway are not stopped this way."""
        with run_deadline() as fence:
            self._fences[run_id] = fence
            lease_run(fence, self._held_at.get(run_id, time.perf_counter()) + self.lease,
                      lambda: self._lapsed(fence))
            try:
                yield fence
            finally:
                self._fences.pop(run_id, None)
                if fence.why is not None:  # stopped: what this gateway saw is not the run's outcome; read the record
                    self.gateway.runs.live.pop(run_id, None)

    def _lapsed(self, fence: RunStop) -> None:
        """A run's next node is due after its lease ran out by this host's clock (this process
        stalled, or renewals are late): renew now, unless another thread just did."""
        if fence.at < time.perf_counter():
            self._renew()

    def check_stops(self) -> None:
        """Stop the stream runs executing here whose stop another gateway asked for (``POST /runs/{id}/stop``
        there sets the queue row's ``stop_requested``): like a stop through this gateway."""
        live = self.gateway.runs.live
        if not any(getattr(live.get(r), "streaming", False) for r in list(self.inflight)):
            return  # only stream runs can be stopped: nothing to look for
        try:
            wanted = self.queue.stop_requests(self.id)
        except Exception:
            logger.warning("looking for stop requests failed; retrying", exc_info=True)
            return
        for run_id in wanted:
            run = live.get(run_id)
            if run is not None and run.streaming and not run.stop_requested.is_set():
                run.stop_requested.set()
                run.observe({"event": "stream_stop_requested", "run_id": run_id})

    def _expire_dead(self) -> None:
        if not self.expire_dead or self._stop.is_set():
            return
        try:
            if self.queue.expire_dead_owners():
                self._wake.set()
        except Exception:
            logger.warning("looking for dead queue workers failed; retrying", exc_info=True)

    # -- running one ----------------------------------------------------------------------------
    def run_item(self, item: QueuedRun, prepared: Any = None) -> None:
        """Execute claimed run ``item`` (a pool thread) and settle its queue row.

        ``prepared``: ``(workspace, workflow, parameters, live_run)`` when the gateway that
        took the request starts it itself.
        """
        from kailash.api.runs import _execute

        gw = self.gateway
        manager = gw.runs
        tenant = item.tenant_id
        counted = False
        try:
            if prepared is not None:
                workspace, workflow, params, run = prepared
            else:
                try:
                    workspace, workflow, params, secrets = self._prepare(item)
                except Exception as exc:
                    if self._not_served_here(item, exc):  # another gateway on this storage may serve it
                        self.queue.unclaim(item.run_id, self.id, attempt=item.attempts, delay=self.UNKNOWN_RETRY)
                        return
                    self._refuse(item, exc)
                    return
                record = workspace.runs.get_run(item.run_id) if item.attempts > 1 else None
                if record is not None and record.status in ("completed", "failed"):  # it ended; only the queue lagged
                    self._finish(item, status=record.status,
                                      error=record.error)
                    return
                job = None
                if record is not None:
                    if self.on_interrupted == "mark":
                        self._mark(item, workspace, record)
                        return
                    job = self._resume_job(item, workspace, workflow, params)
                run = manager.queued_live_run(item, secrets, self.loop)
                if item.attempts > 1:  # taken over: the record says so, and what it reused
                    info = {"attempt": item.attempts, "previous_worker": item.previous_owner,
                            "reused": sorted(job.fixed) if job is not None else []}
                    workspace = dataclasses.replace(workspace, runs=_TaggingStore(workspace.runs, info))
                    run.extra = {"queue": info}
                if job is not None:
                    manager.count(tenant, +1)
                    counted = True
                    with self._fenced(item.run_id) as fence:
                        self._execute_resumed(run, workspace, job)
                    self._settle(item, run, workspace.runs, fence)
                    return
            manager.count(tenant, +1)
            counted = True
            with self._fenced(item.run_id) as fence:
                _execute(run, workspace, workflow, params, True, manager.runtime_factory)
            self._settle(item, run, workspace.runs, fence)
        except Exception:
            logger.exception("queued run %s: the worker failed", item.run_id)
        finally:
            if counted:
                manager.count(tenant, -1)
            with self._lock:
                self.inflight.pop(item.run_id, None)
            self._held_at.pop(item.run_id, None)
            self._finishing.discard(item.run_id)
            self._wake.set()

    def _prepare(self, item: QueuedRun) -> tuple[Any, Any, dict[str, Any], frozenset[str]]:
        from kailash.api.runs import _secret_parameters
        from kailash.runtime.queue import resolve_references
        from kailash.security.secrets import plain_secret_values, wrap_secrets

        gw = self.gateway
        principal: Any = SimpleNamespace(tenant_id=item.tenant_id)
        workspace = gw.workspace(principal)
        workflow, _, reg, _ = gw.resolve(principal, item.workflow)
        secrets: frozenset[str] = (reg.secrets if reg is not None else frozenset()) | workflow.compile().config_secrets
        if item.tenant_id is not None:  # checked when it starts, not only when queued: its grants may have changed
            from kailash.api.tenant_runs import check_tenant_run, scope_of

            check_tenant_run(scope_of(workspace), workflow, item.parameters, secrets)
        params = resolve_references(workflow, item.parameters, allow_env=item.tenant_id is None)
        names = _secret_parameters(workflow)
        if names:
            params = {k: (wrap_secrets(dict(v), names[k]) if k in names and isinstance(v, dict) else v)
                      for k, v in params.items()}
            secrets = secrets | plain_secret_values(params)
        return workspace, workflow, params, secrets

    def _not_served_here(self, item: QueuedRun, exc: BaseException) -> bool:
        """A gateway-namespace run of a workflow this gateway does not have (another gateway on the same
        storage registered it), queued less than :attr:`UNKNOWN_GIVE_UP` s ago."""
        return (item.tenant_id is None and getattr(exc, "code", None) == "workflow_not_found"
                and time.time() - item.enqueued_at < self.UNKNOWN_GIVE_UP)

    def _refuse(self, item: QueuedRun, exc: BaseException) -> None:
        """The run cannot start here (its workflow is gone, a secret is missing): record it failed."""
        from kailash.runtime.store import RunRecord

        message = getattr(exc, "message", None) or str(exc)
        logger.warning("queued run %s of '%s' cannot start: %s", item.run_id, item.workflow, message)
        try:
            workspace = self.gateway.workspace(SimpleNamespace(tenant_id=item.tenant_id))
            now = time.time()
            workspace.runs.record(RunRecord(run_id=item.run_id, workflow=item.workflow, status="failed",
                                            started_at=now, ended_at=now, error=message, tenant=item.tenant_id,
                                            extra={"queue": {"attempt": item.attempts, "worker": self.id}}))
        finally:
            self._finish(item, status="failed", error=message)

    def _mark(self, item: QueuedRun, workspace: Any, record: Any) -> None:
        error = (f"the gateway running it stopped (attempt {item.attempts - 1}, worker {item.previous_owner}); "
                 "not resumed (on_interrupted='mark')")
        workspace.runs.record(dataclasses.replace(
            record, status="interrupted", ended_at=time.time(), error=error,
            extra={**record.extra, "queue": {"attempt": item.attempts, "marked": True,
                                             "previous_worker": item.previous_owner}}))
        self._finish(item, status="interrupted", error=error)

    def _resume_job(self, item: QueuedRun, workspace: Any, workflow: Any, params: dict[str, Any]) -> Any:
        """What to reuse of the interrupted attempt; ``None`` (run it all again) if nothing can be."""
        from kailash.errors import KailashError
        from kailash.runtime.resume import prepare_resume

        try:
            return prepare_resume(_Interrupted(workspace.runs, item.run_id), item.run_id, workflow, parameters=params)
        except KailashError as exc:
            logger.warning("queued run %s: cannot reuse the interrupted attempt (%s); running every node again",
                           item.run_id, exc)
            return None

    def _execute_resumed(self, run: Any, workspace: Any, job: Any) -> None:
        """Continue the interrupted run under its own run id (the nodes in ``job.fixed`` are reused).

        Always on LocalRuntime in this process, also on a gateway whose runs go to Dask:
        continuing a run under its own id needs the in-process scheduler (``run_inline``).
        """
        from kailash.api.runs import _RedactingStore, error_info
        from kailash.api.tenant_runs import tenant_security
        from kailash.errors import KailashError
        from kailash.runtime import LocalRuntime
        from kailash.runtime.engine import RunContext
        from kailash.runtime.scheduler import Run, run_deadline, run_inline
        from kailash.runtime.store import to_json_safe
        from kailash.security.secrets import redact

        store = _RedactingStore(workspace.runs, run.secrets) if run.secrets else workspace.runs
        runtime = LocalRuntime(store=store, observers=[run.observe], tenant=workspace.tenant_id,
                               record_outputs="always")
        recorder = runtime._recorder(job.plan, run.run_id, job.parameters)
        timeout = getattr(getattr(workspace, "tenant", None), "run_timeout", None)
        try:
            with tenant_security(workspace.tenant_id, workspace), (
                    run_deadline(timeout) if timeout is not None else contextlib.nullcontext()):
                results = run_inline(Run(job.plan, job.overrides, RunContext(run.run_id, runtime), recorder,
                                         job.fixed))
        except KailashError as exc:
            partial = getattr(exc, "results", None) or {}
            run.finish(redact(to_json_safe(dict(partial)), run.secrets), error_info(exc, run.secrets), [])
            return
        except Exception as exc:
            run.finish({}, error_info(exc, run.secrets), [])
            return
        safe = to_json_safe(dict(results))
        run.finish(redact(safe, run.secrets) if run.secrets else safe, None,
                   list(getattr(results, "skipped", ()) or ()))

    def _finish(self, item: QueuedRun, *, status: str, error: str | None = None) -> bool:
        self._finishing.add(item.run_id)  # from now on its row may leave 'running': not a lost claim
        return bool(self.queue.finish(item.run_id, self.id, attempt=item.attempts, status=status, error=error))

    def _settle(self, item: QueuedRun, run: Any, store: Any, fence: RunStop) -> None:
        if fence.why is not None and not fence.record:  # stopped without an outcome: the run is not over
            try:  # another worker holds it; or, if the lease lapsed and could not be renewed, any may take it now
                self.queue.release(self.id, [item.run_id])
            except Exception:
                logger.warning("queued run %s: could not release it (its lease expires)", item.run_id, exc_info=True)
            return
        try:  # the record is durable before the queue says the run ended (else a kill between would lose it)
            store.flush()
        except Exception:
            logger.warning("queued run %s: could not flush its record", item.run_id, exc_info=True)
        status = "completed" if run.error is None else "failed"
        error = None if run.error is None else run.error.get("message")
        if not self._finish(item, status=status, error=error):
            logger.warning("queued run %s finished here after its claim passed to another worker", item.run_id)
