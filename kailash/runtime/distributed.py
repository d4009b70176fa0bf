"""DaskRuntime: run a workflow's nodes as Dask distributed tasks.

A thin door onto :mod:`kailash.runtime.scheduler`: the concurrent schedule runs on the
Dask client's event loop with the :class:`DaskExecutor`, which submits one task per
node as soon as the node is ready and awaits its future. The core gathers each
node's inputs, handles skipped branches and records the run, exactly as for every
other runtime, so results, skipped branches, errors and run records match
``LocalRuntime``; observers receive events live.

Each run serialises the compiled plan once with cloudpickle (node classes from
``__main__`` travel by value; others must be importable on the workers) and sends the
bytes along (with every task while small, so no task is tied to the worker holding
them; else broadcast to every worker once); a task (``_run_task``, on
the worker) loads the plan once per run and calls the node with the inputs the core
gathered. Upstream outputs therefore travel through the client, which returns them
to the caller anyway.

Policies run on the worker: a node with a policy gets a snapshot of its breaker and
cache state, and what changed there is replayed into the client's state, so it stays
shared across runs in the client process. The active ``SecurityConfig`` is sent
along and applied on the worker. After a node fails no new node starts; tasks
already running finish, then the failure is raised.

Running on a real cluster: start ``dask scheduler`` on one machine and
``dask worker tcp://SCHEDULER:8786`` on each worker machine, in environments where
``kailash`` and the modules defining your node classes are installed (or call
``cloudpickle.register_pickle_by_value(module)``); then
``DaskRuntime(address="tcp://SCHEDULER:8786")``. Files named in node config must be
readable on the workers. A worker that cannot import a node's module fails the run
with a :class:`NodeExecutionError` naming the node, its class and the module. See
``docs/deploy.md`` ("Dask across hosts") for what to install where and the scheduler
settings that bound how long a lost worker host goes unnoticed.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from collections.abc import Awaitable
from typing import Any

from kailash.errors import (
    ClusterConnectionError,
    KailashError,
    NodeConfigurationError,
    NodeExecutionError,
    SerializationError,
)
from kailash.runtime.engine import (
    Observer,
    RunContext,
    RunRecorder,
    RuntimeDoor,
    WorkflowResults,
    fail_run,
    new_run_id,
    resolve_store,
)
from kailash.runtime.scheduler import Outputs, Run, call_node, run_concurrent
from kailash.runtime.types import RunId
from kailash.workflow.plan import Step

__all__ = ["DaskRuntime", "DaskExecutor", "ClusterConnectionError"]


def _require_distributed() -> Any:
    try:
        import cloudpickle  # noqa: F401
        import distributed
    except ImportError as exc:
        raise ImportError(f"DaskRuntime needs Dask distributed ({exc.name} is missing): "
                          "pip install 'kailash[dask]'") from None
    return distributed


# -- on the worker ---------------------------------------------------------------------------

class _NodeFailure(Exception):
    """Carries a node's error from a worker by class and state.

    Rebuilding through the class's constructor works for every KailashError
    (``cls.__new__`` is refused for ones that also derive from ``TimeoutError``).
    """

    def __init__(self, cls: type, message: str, state: dict[str, Any]) -> None:
        super().__init__(cls, message, state)

    def __str__(self) -> str:
        return str(self.args[1])

    def restore(self) -> KailashError:
        cls, message, state = self.args
        try:
            err = cls(message)
        except Exception:  # a user subclass with another signature
            err = NodeExecutionError(message)
        err.__dict__.update(state)
        restored: KailashError = err
        return restored


class _LoadFailure(Exception):
    """A worker could not import a module the plan needs: ``(message, module, worker address)``."""

    def __init__(self, message: str, module: str, worker: str) -> None:
        super().__init__(message, module, worker)


def _worker_address() -> str:
    try:
        from distributed import get_worker

        return str(get_worker().address)
    except Exception:  # not on a worker (a test calling the task directly)
        return "?"


_PLANS: OrderedDict[str, Any] = OrderedDict()
_PLANS_LOCK = threading.Lock()
_KEEP_PLANS = 16  # plans of runs in flight on this worker


_ABORTED = "kailash-no-workers"  # DaskRuntime cancelled the run's futures: no worker for no_workers_timeout
_LOST = "scheduler-connection-lost"  # why the Dask client cancels every future when its scheduler is gone
_INLINE_PAYLOAD = 16 << 10  # up to this size the plan rides along with every task message


def _load(token: str, payload: bytes) -> tuple[Any, Any]:
    with _PLANS_LOCK:
        entry = _PLANS.get(token)
    if entry is None:
        import cloudpickle

        entry = cloudpickle.loads(payload)
        with _PLANS_LOCK:
            _PLANS[token] = entry
            while len(_PLANS) > _KEEP_PLANS:
                _PLANS.popitem(last=False)
    loaded: tuple[Any, Any] = entry
    return loaded


def _run_task(token: str, payload: bytes, sid: str, inputs: Outputs, run_id: str, state: Any) -> tuple[Any, ...]:
    """One node, on a worker: ``(outputs, policy events)``; a failure travels as :class:`_NodeFailure`."""
    try:
        plan, security = _load(token, payload)
    except ImportError as exc:  # a node's module is not installed on this worker: the client names the node
        raise _LoadFailure(f"{type(exc).__name__}: {exc}", exc.name or "", _worker_address()) from None
    except Exception as exc:
        raise NodeExecutionError(
            f"node '{sid}': the Dask worker could not load the workflow: {type(exc).__name__}: {exc}; install "
            "kailash and the modules defining your node classes on every worker",
            node_id=sid, run_id=run_id,
        ) from None
    from kailash.security.config import set_security_config

    set_security_config(security)
    step = plan.by_id[sid]
    ctx = RunContext(RunId(run_id), None, node_id=sid, workflow=plan.workflow)
    events: list[tuple[Any, ...]] | None = None
    try:
        if state is None:
            out = call_node(step, inputs, ctx)
        else:
            events = []
            out = state.call(step.node, inputs, ctx, events)
    except Exception as exc:
        err = fail_run(exc, sid, run_id, {}, step.node)
        err.kailash_events = events  # type: ignore[attr-defined]
        failure = _NodeFailure(type(err), err.message, dict(err.__dict__))
    else:
        return (out, events)
    raise failure  # outside the except block: no __context__ for Dask to pickle


class DaskExecutor:
    """The :class:`~kailash.runtime.scheduler.ConcurrentExecutor` of ``DaskRuntime``: one
    Dask task per node call, awaited on the client's event loop.

    Finished tasks are collected in batches: the outputs of every task that finished
    while the previous batch was being fetched come back in one ``gather``. Outputs of
    nodes nothing depends on are fetched only once no other task is running (nothing
    waits for them earlier), so a wide fan comes back in a few round trips.
    """

    __slots__ = ("client", "token", "data", "run_id", "plan", "max_concurrency", "_finished", "_collecting",
                 "_running", "_live", "_abort")

    def __init__(self, client: Any, token: str, data: Any, run_id: str, plan: Any = None) -> None:
        self.client = client
        self.plan = plan
        self.token = token
        self.data = data
        self.run_id = run_id
        self.max_concurrency = 1 << 30  # the cluster queues what it cannot run yet
        self._live: set[Any] = set()  # the futures of this run not yet settled
        self._abort: str | None = None  # why the run's futures were cancelled (see abort())
        self._finished: list[tuple[Any, Any, Any]] = []
        self._collecting = False
        self._running = 0

    def start(self, step: Step, inputs: Outputs, ctx: RunContext) -> Awaitable[Outputs]:
        state = None
        if step.policy is not None:
            from kailash.runtime.policies import policy_state

            state = policy_state(step.policy)
        fut = self.client.submit(_run_task, self.token, self.data, step.id, inputs, self.run_id, state,
                                 key=f"kailash-{step.id}-{self.run_id}", pure=False)
        self._running += 1
        self._live.add(fut)
        return self._wait(fut, state, bool(step.successors))

    async def abort(self, why: str) -> None:
        """Fail every node of the run still waiting on the cluster with a ClusterConnectionError saying ``why``."""
        self._abort = why
        if self._live:
            await self.client._cancel(list(self._live), reason=_ABORTED, msg=why)

    async def _wait(self, fut: Any, state: Any, needed: bool) -> Outputs:
        import asyncio

        from distributed.client import _wait as settled  # waits on the loop: no callback thread per task

        waiter: asyncio.Future[Outputs] = asyncio.get_running_loop().create_future()
        try:
            try:
                await settled([fut])  # type: ignore[no-untyped-call]
            except Exception:  # FuturesCancelledError: the future was cancelled; _failed tells why
                pass
            finally:
                self._running -= 1
                self._live.discard(fut)
            self._done(fut, waiter, state, needed or fut.status != "finished")
            return await waiter
        except asyncio.CancelledError:
            fut.cancel()
            raise
        finally:
            fut.release()

    def _done(self, fut: Any, waiter: Any, state: Any, urgent: bool) -> None:
        self._finished.append((fut, waiter, state))
        if not self._collecting and (urgent or self._running == 0):
            import asyncio

            self._collecting = True
            asyncio.get_running_loop().create_task(self._collect())

    async def _collect(self) -> None:
        try:
            while self._finished:
                batch, self._finished = self._finished, []
                ok = [b for b in batch if b[0].status == "finished"]
                if ok:
                    try:
                        values = await self.client.gather([b[0] for b in ok])
                    except Exception as exc:  # e.g. a worker holding the data died, or the scheduler
                        for fut, waiter, _ in ok:
                            if not waiter.done():
                                waiter.set_exception(self._foreign(fut, exc))
                    else:
                        for (_, waiter, state), (out, events) in zip(ok, values, strict=True):
                            if events and state is not None:
                                state.replay(events)
                            if not waiter.done():
                                waiter.set_result(out)
                for fut, waiter, state in batch:
                    if fut.status != "finished" and not waiter.done():
                        await self._failed(fut, waiter, state)
        finally:
            self._collecting = False

    async def _failed(self, fut: Any, waiter: Any, state: Any) -> None:
        if fut.status == "cancelled":
            reason = getattr(getattr(getattr(fut, "_state", None), "exception", None), "reason", None)
            if reason == _ABORTED and self._abort is not None:
                waiter.set_exception(self._aborted(fut))
            elif reason == _LOST or self._scheduler_lost():  # the client cancels every future when its scheduler is gone
                waiter.set_exception(self._foreign(fut, ConnectionError("the scheduler connection was lost")))
            else:
                waiter.cancel()
            return
        try:
            await fut
        except _LoadFailure as failure:
            waiter.set_exception(self._missing(*failure.args))
        except _NodeFailure as failure:
            err = failure.restore()
            events = err.__dict__.pop("kailash_events", None)
            if events and state is not None:
                state.replay(events)
            err.__traceback__ = None
            waiter.set_exception(err)
        except BaseException as exc:  # a foreign error: a worker died, the task could not be unpickled
            waiter.set_exception(self._foreign(fut, exc))
        else:  # finished after all
            waiter.set_exception(NodeExecutionError("a Dask task finished in an unexpected state"))

    def _scheduler_lost(self) -> bool:
        return getattr(self.client, "status", "running") not in ("running", "newly-created")

    def _sid(self, fut: Any) -> str:
        key = str(fut.key)
        return key[len("kailash-"):-(len(self.run_id) + 1)] if key.startswith("kailash-") else key

    def _aborted(self, fut: Any) -> ClusterConnectionError:
        sid = self._sid(fut)
        return ClusterConnectionError(
            f"DaskRuntime: node '{sid}' did not finish: {self._abort}; the nodes that finished are recorded: "
            "resume the run (runtime.resume(run_id, workflow), or `kailash resume`) once workers are back",
            node_id=sid, run_id=self.run_id,
        )

    def _foreign(self, fut: Any, exc: BaseException) -> BaseException:
        """A task's error that no node raised; losing the scheduler becomes a ClusterConnectionError."""
        if not (isinstance(exc, OSError) or _LOST in str(exc) or self._scheduler_lost()):
            return exc
        sid = self._sid(fut)
        address = getattr(getattr(self.client, "scheduler", None), "address", None) or "?"
        return ClusterConnectionError(
            f"DaskRuntime: lost the Dask scheduler at {address} while node '{sid}' was running "
            f"({type(exc).__name__}: {exc}); the nodes that finished are recorded: resume the run "
            f"(runtime.resume(run_id, workflow), or `kailash resume`) once a scheduler and workers are back",
            node_id=sid, run_id=self.run_id, parameter="address", got=address,
        )

    def _missing(self, message: str, module: str, worker: str) -> NodeExecutionError:
        """The worker at ``worker`` lacks ``module``: name the nodes whose class (or function) lives there."""
        users: list[tuple[str, str]] = []
        if self.plan is not None and module:
            for node_id, node in self.plan.workflow.nodes.items():
                fn = getattr(node, "_function", None)
                for where in {type(node).__module__, getattr(fn, "__module__", None) or ""}:
                    if where == module or where.startswith(module + "."):
                        users.append((node_id, f"{where}.{type(node).__qualname__}" if where == type(node).__module__
                                      else f"{where}.{getattr(fn, '__qualname__', '?')}"))
        if users:
            node_id = users[0][0]
            named = ", ".join(f"node '{n}' ({what})" for n, what in users)
            text = (f"{named} cannot run on the Dask worker {worker}: it cannot import module '{module}' "
                    f"({message}); install the module on every worker, or call "
                    f"cloudpickle.register_pickle_by_value({module}) before running to ship it with the workflow")
        else:
            node_id = None
            text = (f"the Dask worker {worker} could not load the workflow: {message}; install kailash and the "
                    "modules defining your node classes on every worker")
        return NodeExecutionError(text, node_id=node_id, run_id=self.run_id, parameter="module", got=module)


# -- on the client ---------------------------------------------------------------------------

async def _watch_workers(client: Any, executor: DaskExecutor, timeout: float) -> None:
    """Abort the run once the cluster has had no worker for ``timeout`` s while nodes wait on it
    (Dask itself would keep them queued until a worker joins: a run that never ends)."""
    import asyncio
    import time

    since: float | None = None
    while True:
        await asyncio.sleep(min(1.0, timeout / 4))
        if not executor._live:
            since = None
            continue
        try:
            workers = len(await client.scheduler.ncores())
        except Exception:  # the scheduler itself is gone: the futures fail on their own
            continue
        if workers:
            since = None
            continue
        now = time.monotonic()
        since = now if since is None else since
        if now - since >= timeout:
            await executor.abort(f"the Dask cluster at {client.scheduler.address} has had no workers for "
                                 f"{timeout:g} s (no_workers_timeout)")
            return


class DaskRuntime(RuntimeDoor):
    """Runs each node as a task on a Dask cluster; results and run records match LocalRuntime.

    Args:
        address: a running scheduler (``"tcp://host:8786"``); ``None`` starts an embedded
            ``LocalCluster`` of ``n_workers`` worker processes on this machine.
        n_workers, threads_per_worker, processes: the embedded cluster's shape.
        connect_timeout: seconds to wait for the scheduler before giving up.
        no_workers_timeout: a run whose nodes wait on a cluster that has had no worker for
            this many seconds fails with :class:`ClusterConnectionError` naming the node (the
            finished nodes are recorded: resume it); ``None`` waits for a worker forever.
        client: an existing ``distributed.Client`` to use instead (not closed by :meth:`close`).
        store, record_outputs, observers, tenant: as for :class:`~kailash.runtime.LocalRuntime`.

    Raises:
        ClusterConnectionError: the scheduler at ``address`` cannot be reached.
        ImportError: Dask distributed is not installed (``pip install 'kailash[dask]'``).

    Example::

        with DaskRuntime() as runtime:                   # embedded 2-worker cluster
            results, run_id = runtime.execute(workflow)
        DaskRuntime(address="tcp://10.0.0.5:8786")       # an existing cluster
    """

    name = "dask"

    def __init__(self, address: str | None = None, *, n_workers: int = 2, threads_per_worker: int | None = None,
                 processes: bool = True, connect_timeout: float = 5.0, client: Any = None,
                 store: Any = "default", record_outputs: str = "failed", observers: list[Observer] | None = None,
                 tenant: str | None = None, no_workers_timeout: float | None = 60.0) -> None:
        if record_outputs not in ("failed", "always", "never"):
            raise NodeConfigurationError(
                f"DaskRuntime: record_outputs must be 'failed', 'always' or 'never', got {record_outputs!r}",
                parameter="record_outputs", expected="'failed' | 'always' | 'never'", got=record_outputs,
            )
        if address is not None and (not isinstance(address, str) or "://" not in address):
            raise NodeConfigurationError(
                f"DaskRuntime: address must be a scheduler address like 'tcp://host:8786', got {address!r}",
                parameter="address", expected="'tcp://host:port'", got=address,
            )
        if no_workers_timeout is not None and (isinstance(no_workers_timeout, bool)
                                               or not isinstance(no_workers_timeout, (int, float))
                                               or not no_workers_timeout > 0):
            raise NodeConfigurationError(
                f"DaskRuntime: no_workers_timeout must be a positive number of seconds or None, got "
                f"{no_workers_timeout!r}", parameter="no_workers_timeout", expected="seconds > 0 or None",
                got=repr(no_workers_timeout))
        distributed = _require_distributed()
        self.no_workers_timeout = no_workers_timeout
        self.address = address
        self.store = resolve_store(store)
        self.record_outputs = record_outputs
        self.observers = list(observers or [])
        self.tenant = tenant
        self.cluster: Any = None
        self._owns_client = client is None
        if client is not None:
            self.client = client
        elif address is None:
            self.cluster = distributed.LocalCluster(
                n_workers=n_workers, threads_per_worker=threads_per_worker, processes=processes,
                dashboard_address=None, silence_logs=logging.CRITICAL,  # node failures are reported by the run
            )
            self.client = distributed.Client(self.cluster, set_as_default=False)
        else:
            try:
                self.client = distributed.Client(address, timeout=connect_timeout, set_as_default=False)
            except (OSError, TimeoutError) as exc:
                raise ClusterConnectionError(
                    f"DaskRuntime: cannot reach the Dask scheduler at {address} within {connect_timeout:g} s "
                    f"({type(exc).__name__}); start one with `dask scheduler` and `dask worker {address}`, "
                    "or use DaskRuntime() for an embedded local cluster",
                    parameter="address", got=address,
                ) from None

    # -- running ---------------------------------------------------------------------------------
    def execute(self, workflow: Any, parameters: dict[str, Any] | None = None, *, run_id: str | None = None,
                observers: list[Observer] | None = None) -> tuple[WorkflowResults, str]:
        """Validate ``workflow``, run it on the cluster and return ``(results, run_id)``.

        Raises:
            WorkflowValidationError: the graph or ``parameters`` are invalid (nothing ran).
            SerializationError: a node cannot be sent to the workers (names the node).
            KailashError: a node failed; it carries ``run_id``, ``node_id`` and ``results``.
        """
        plan = workflow.compile()
        overrides = plan.prepare(parameters)
        run_id = RunId(run_id) if run_id else new_run_id()
        recorder = self._recorder(plan, run_id, parameters, observers)
        return self._run(plan, overrides, recorder, None), run_id

    def resume(self, run_id: str, workflow: Any, *, parameters: dict[str, Any] | None = None,
               rerun: list[str] | None = None) -> tuple[WorkflowResults, str]:
        """Re-run failed run ``run_id`` from where it failed; see :mod:`kailash.runtime.resume`."""
        from kailash.runtime.resume import prepare_resume

        job = prepare_resume(self.store, run_id, workflow, parameters=parameters, rerun=rerun)
        new_id = new_run_id()
        recorder = self._recorder(job.plan, new_id, job.parameters, None, job.parent_run_id)
        return self._run(job.plan, job.overrides, recorder, job.fixed), new_id

    def _payload(self, plan: Any) -> bytes:
        import cloudpickle

        from kailash.security.config import get_security_config

        try:
            payload: bytes = cloudpickle.dumps((plan, get_security_config()))
            return payload
        except Exception as exc:
            for node_id, node in plan.workflow.nodes.items():
                try:
                    cloudpickle.dumps(node)
                except Exception as inner:
                    raise SerializationError(
                        f"DaskRuntime: node '{node_id}' ({type(node).__name__}) cannot be sent to the workers: "
                        f"{type(inner).__name__}: {inner}; keep open connections, locks and files out of the "
                        "node's attributes (create them in run())",
                        node_id=node_id, expected="a picklable node", got=type(node).__name__,
                    ) from inner
            raise SerializationError(
                f"DaskRuntime: workflow '{plan.name}' cannot be sent to the workers: {type(exc).__name__}: {exc}"
            ) from exc

    def _run(self, plan: Any, overrides: dict[str, dict[str, Any]], recorder: RunRecorder,
             fixed: dict[str, dict[str, Any]] | None) -> WorkflowResults:
        client = self.client
        if client is None:
            raise KailashError("DaskRuntime is closed; create a new DaskRuntime to run workflows")
        run_id = recorder.run_id
        payload = self._payload(plan)
        if len(payload) <= _INLINE_PAYLOAD:  # rides along with every task: no extra round trip, no data to lose
            data: Any = payload
        else:  # large: to every worker once, straight (not through the scheduler); no task is tied to one worker
            [data] = client.scatter([payload], broadcast=True, hash=False)
        run = Run(plan, overrides, RunContext(run_id, self), recorder, fixed)
        executor = DaskExecutor(client, run_id, data, run_id, plan)
        timeout = self.no_workers_timeout

        async def schedule() -> WorkflowResults:
            import asyncio

            watch = asyncio.get_running_loop().create_task(_watch_workers(client, executor, timeout)) if timeout \
                else None
            try:
                return await run_concurrent(run, executor)
            finally:
                if watch is not None:
                    watch.cancel()

        return client.sync(schedule)  # type: ignore[no-any-return]

    # -- run history and lifetime ----------------------------------------------------------------
    def close(self) -> None:
        """Close the client (if this runtime made it) and the embedded cluster (if any)."""
        if self._owns_client and self.client is not None:
            self.client.close()
        self.client = None
        if self.cluster is not None:
            self.cluster.close()
            self.cluster = None

    def __enter__(self) -> DaskRuntime:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        where = self.address or ("embedded LocalCluster" if self.cluster is not None else "given client")
        return f"DaskRuntime({where}{', closed' if self.client is None else ''})"
