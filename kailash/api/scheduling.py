"""The gateway's side of schedules: the store it opens, the tick loop of its lifespan, and how a fire starts a run.

Schedules live with the gateway's storage (:meth:`SQLiteStorage.schedule_store` /
:meth:`PostgresStorage.schedule_store`), so every gateway on one PostgreSQL database
sees the same schedules, and the store's per-schedule transaction makes each fire
happen once among them (:mod:`kailash.runtime.schedule_store`). While serving, the
gateway ticks its :class:`~kailash.runtime.schedules.Scheduler` every
``schedule_tick`` seconds in a worker thread. A fire is handed to
``gateway.schedule_enqueue`` when one is set; otherwise, with the gateway's durable run
queue (``queue=True``, the default), :class:`QueueScheduledRun` writes it to that queue
under the fire's run id — any gateway on the same storage with a free slot runs it, once
(:mod:`kailash.api.queue_worker`); with ``queue=False``, :class:`StartScheduledRun`
starts it at once in this gateway, like ``POST /workflows/{name}/execute?async=true``
by the schedule's namespace. Who may create which schedule is checked in
:mod:`kailash.api.schedule_routes`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any

from kailash.api.middleware import Principal
from kailash.api.responses import ApiError

__all__ = ["QueueScheduledRun", "StartScheduledRun", "schedule_loop", "check_schedule_run"]

logger = logging.getLogger("kailash.api")


def schedule_principal(tenant_id: str | None) -> Principal:
    """The principal a schedule's run is started as: its namespace, no key."""
    return Principal(tenant_id=tenant_id, key_id="schedule")


def check_schedule_run(gw: Any, principal: Principal | None, name: str, parameters: dict[str, Any]) -> None:
    """Refuse (422/403) a schedule whose workflow is missing here or whose parameters a run would refuse (blocking)."""
    from kailash.api.documents import problem
    from kailash.api.overrides import refuse_overrides, workflow_allowed
    from kailash.api.tenant_runs import check_tenant_run, scope_of
    from kailash.errors import SecurityError, WorkflowValidationError

    try:
        workflow, _, reg, _ = gw.resolve(principal, name)
    except ApiError as exc:
        if exc.code != "workflow_not_found":
            raise
        raise ApiError(422, "invalid_schedule", f"no workflow '{name}' here to schedule; GET /workflows lists them",
                       parameter="workflow", problems=[problem(f"no workflow '{name}'", parameter="workflow")]) from None
    try:
        per_node = workflow.compile().prepare(parameters)
    except WorkflowValidationError as exc:
        raise ApiError(422, "invalid_parameters", str(exc), parameter="parameters",
                       problems=[problem(p) for p in exc.problems]) from None
    if reg is not None:
        refuse_overrides(workflow, per_node, workflow_allowed(workflow, reg.allow_overrides))
    tenant_id = principal.tenant_id if principal is not None else None
    try:  # a schedule is stored like a queued run: no secret value in its parameters
        from kailash.runtime.queue import queueable_parameters

        queueable_parameters(workflow, parameters, allow_env=tenant_id is None)
    except SecurityError as exc:
        raise ApiError(422, "secret_not_queueable", exc.message, node_id=exc.node_id,
                       parameter=exc.parameter) from None
    if principal is not None and principal.tenant_id is not None:
        check_tenant_run(scope_of(gw.workspace(principal)), workflow, parameters, frozenset())


class QueueScheduledRun:
    """An ``enqueue`` that writes each fire's run to the gateway's durable run queue (the default).

    Called from the tick's worker thread (the queue blocks). The parameters are checked
    first with :func:`~kailash.runtime.queue.queueable_parameters`: a plain secret value is
    never written to the queue; that fire is recorded as a failed run under its run id
    instead, so ``GET /runs`` says why. A workflow this gateway does not serve is queued
    anyway: another gateway on the same storage may serve it. The run is started by
    whichever gateway's worker claims it first; this gateway's worker is woken at once.
    """

    def __init__(self, gw: Any, worker: Any) -> None:
        self.gw = gw
        self.worker = worker

    def __call__(self, *, run_id: str, workflow: str, parameters: dict[str, Any], tenant_id: str | None = None,
                 options: dict[str, Any] | None = None) -> bool:
        from kailash.errors import SecurityError
        from kailash.runtime.queue import queueable_parameters

        gw, worker = self.gw, self.worker
        try:
            resolved, _, _, _ = gw.resolve(schedule_principal(tenant_id), workflow)
        except ApiError as exc:
            if exc.code != "workflow_not_found" or tenant_id is not None:
                return self._refused(run_id, workflow, tenant_id, exc)
            resolved = None  # served by another gateway on this storage, perhaps: its worker takes it
        if resolved is not None:
            try:
                queueable_parameters(resolved, parameters, allow_env=tenant_id is None)
            except SecurityError as exc:
                return self._refused(run_id, workflow, tenant_id,
                                     ApiError(422, "secret_not_queueable", exc.message))
        # the namespace's concurrent-run limit, as for a request: a fire beyond it waits for a later tick (the
        # scheduler retries it) instead of piling up in the queue every tenant shares
        if tenant_id is not None:
            limit = gw.workspace(schedule_principal(tenant_id)).max_concurrent_runs
        else:
            limit = gw.max_concurrent_runs
        if limit is not None and worker.queue.get(run_id) is None and worker.queue.pending(tenant_id) >= limit:
            raise ApiError(429, "too_many_runs", f"at most {limit} runs may run at once here; the fire waits",
                           limit=limit)
        added = bool(worker.queue.enqueue(run_id=run_id, workflow=workflow, parameters=parameters,
                                          tenant_id=tenant_id,
                                          options={"record_outputs": "always", "scheduled": True, **(options or {})}))
        worker.wake()
        return added

    def _refused(self, run_id: str, workflow: str, tenant_id: str | None, exc: ApiError) -> bool:
        logger.warning("scheduled run %s of '%s' refused: %s", run_id, workflow, exc.code)
        workspace = self.gw.workspace(schedule_principal(tenant_id))
        if workspace.runs is not None and workspace.runs.get_run(run_id) is None:
            _record_refused(workspace, run_id, workflow, exc)
        return True


class StartScheduledRun:
    """An ``enqueue`` that starts each fire's run in this gateway at once (gateways with ``queue=False``).

    Called from the tick's worker thread; the run is started on the gateway's event loop.
    A run refused for the namespace's concurrency limit raises, so the fire is retried on
    the next tick; any other refusal (workflow deleted, parameters no longer valid) is
    recorded as a failed run under the fire's run id, so ``GET /runs`` shows why.
    """

    def __init__(self, gw: Any, loop: asyncio.AbstractEventLoop, timeout: float = 30.0) -> None:
        self.gw = gw
        self.loop = loop
        self.timeout = timeout

    def __call__(self, *, run_id: str, workflow: str, parameters: dict[str, Any], tenant_id: str | None = None,
                 options: dict[str, Any] | None = None) -> bool:
        future = asyncio.run_coroutine_threadsafe(self.start(run_id, workflow, parameters, tenant_id), self.loop)
        return future.result(self.timeout)

    async def start(self, run_id: str, name: str, parameters: dict[str, Any], tenant_id: str | None) -> bool:
        from starlette.concurrency import run_in_threadpool

        from kailash.api.overrides import workflow_allowed

        gw = self.gw
        if gw.runs.find(run_id, tenant_id) is not None:
            return False
        principal = schedule_principal(tenant_id)
        workspace = None
        try:
            workspace = gw.open_workspace(tenant_id) or await run_in_threadpool(gw.workspace, principal)
            reg = gw.registered.get(name) if tenant_id is None else None
            if reg is not None:
                workflow = reg.workflow
            else:
                workflow, _, reg, _ = await run_in_threadpool(gw.resolve, principal, name)
            limit = workspace.max_concurrent_runs if tenant_id is not None else gw.max_concurrent_runs
            allowed = workflow_allowed(workflow, reg.allow_overrides) if reg is not None else None
            await gw.runs.start(workspace=workspace, name=name, workflow=workflow, parameters=parameters, limit=limit,
                                wait=False, run_id=run_id, secrets=reg.secrets if reg is not None else frozenset(),
                                allowed=allowed)
        except ApiError as exc:
            if exc.status == 429:  # at the namespace's run limit: the fire waits for the next tick
                raise
            logger.warning("scheduled run %s of '%s' refused: %s", run_id, name, exc.code)
            if workspace is not None and workspace.runs is not None:
                await run_in_threadpool(_record_refused, workspace, run_id, name, exc)
        return True


def _record_refused(workspace: Any, run_id: str, name: str, exc: ApiError) -> None:
    from kailash.runtime.store import RunRecord

    now = time.time()
    workspace.runs.record(RunRecord(run_id=run_id, workflow=name, status="failed", started_at=now, ended_at=now,
                                    error=f"scheduled run refused ({exc.code}): {exc.message}",
                                    tenant=workspace.tenant_id, extra={"scheduled": True}))


def fire_target(gw: Any, loop: asyncio.AbstractEventLoop) -> Any:
    """Where this gateway's fires go (blocking: opens the run queue on first use): ``gw.schedule_enqueue``
    if set, else the durable run queue (:class:`QueueScheduledRun`), else :class:`StartScheduledRun`."""
    if gw.schedule_enqueue is not None:
        return gw.schedule_enqueue
    worker = gw.queue_worker()
    if worker is not None:
        return QueueScheduledRun(gw, worker)
    return StartScheduledRun(gw, loop)


async def schedule_loop(gw: Any) -> None:
    """Tick the gateway's scheduler every ``gw.schedule_tick`` seconds until cancelled."""
    from kailash.runtime.schedules import Scheduler

    loop = asyncio.get_running_loop()
    scheduler: Scheduler | None = None
    while True:
        try:
            if scheduler is None:
                store = await asyncio.to_thread(lambda: gw.schedules)
                scheduler = Scheduler(store, await asyncio.to_thread(fire_target, gw, loop))
            ticking = asyncio.ensure_future(asyncio.to_thread(scheduler.tick))
            try:
                report = await asyncio.shield(ticking)
            except asyncio.CancelledError:  # shutting down: let the tick's transaction end before storage closes
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(ticking, 10)
                raise
            if report.fires:
                logger.info("schedules: %d run(s) enqueued", len(report.fires))
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # the database is away, say: keep ticking
            logger.warning("schedule tick failed: %s: %s", type(exc).__name__, exc)
        await asyncio.sleep(gw.schedule_tick)
