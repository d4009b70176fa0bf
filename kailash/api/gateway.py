"""WorkflowGateway: serve workflows over HTTP with authentication, limits, live runs and the Studio.

The gateway owns the FastAPI application (``gateway.app``, an ASGI app for tests),
the registered workflows, the run manager and the storage of each namespace (its own
and, with tenancy, every tenant's). Requests pass, outermost first: the cross-site
guard (:mod:`kailash.api.crosssite`, which also settles the client address), authentication
(which attaches the caller's :class:`~kailash.api.middleware.Principal`), rate limits
(added ``RateLimitingMiddleware`` and the tenant's own limit), the body-size cap,
then the routes (:mod:`kailash.api.routes` lists the installers, one per resource).
The gateway is the one object holding the serving state; the pipeline, the routes and
the lifespan use its public methods only. Every exception leaving a route is answered
from the one table of :mod:`kailash.api.failures`. The application is assembled in
:mod:`kailash.api.app`. The REST contract is documented in ``docs/api.md``.
Requires ``pip install 'kailash[api]'``.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from kailash.api.crosssite import OriginPolicy, check_keyless_exposure
from kailash.api.limits import TrustedProxies
from kailash.api.middleware import (
    AuthenticationMiddleware,
    BodySizeLimitMiddleware,
    Principal,
    RateLimitingMiddleware,
)
from kailash.api.registration import RegisteredWorkflow, registered_entry
from kailash.api.responses import ApiError
from kailash.api.storage import Workspace

__all__ = ["WorkflowGateway", "AuthenticationMiddleware", "RateLimitingMiddleware", "RegisteredWorkflow"]

logger = logging.getLogger("kailash.api")


def require_fastapi() -> Any:
    try:
        import fastapi
        import uvicorn  # noqa: F401
    except ImportError:
        raise ImportError("the workflow gateway needs FastAPI and uvicorn: pip install 'kailash[api]'") from None
    return fastapi


class WorkflowGateway:
    """Serve registered and uploaded workflows as a REST API (plus the Studio web UI).

    Args:
        port: the TCP port (``0``: any free port).
        host: the interface to listen on (loopback by default).
        title: the API title in OpenAPI.
        auth: require API keys on workflow and run endpoints (the default). When no
            ``AuthenticationMiddleware`` is added, one with the keys of
            ``KAILASH_API_KEYS`` (or a generated key) is used. ``False`` serves
            everything without keys — only for local experiments: anyone who can reach
            the port runs code as this process, so the host must be a loopback address
            and only requests naming a localhost ``Host`` are answered.
        tenants: a :class:`~kailash.api.tenancy.TenantRegistry` (or ``True`` for the
            default one) to serve tenants: each tenant key sees only its tenant.
        database_url: PostgreSQL URL for storage (default ``KAILASH_DATABASE_URL``; else SQLite).
        max_body_size: larger request bodies get 413.
        max_concurrent_runs: runs of the gateway's own namespace at once (``None``: no limit).
        max_workers: threads running workflows.
        redis_url: Redis for tenants' shared rate-limit counters (default ``KAILASH_REDIS_URL``).
        cors_origins: origins allowed to call the API from a browser on another origin
            (also the only other origins whose pages may upload, run or delete).
        trusted_proxies: addresses or networks (``"10.0.0.0/8"``) of reverse proxies whose
            ``X-Forwarded-For`` names the client; from anyone else it is ignored.
        insecure_no_auth_on_network: serve ``auth=False`` on a host other than loopback
            anyway (everyone who can reach it can run code as this process).
        storage: the storage backend of the gateway's own namespace (default: the tenant
            registry's, else :func:`kailash.api.storage.open_storage`).
        schedule_tick: seconds between two looks for due schedules while serving (``None``:
            this gateway fires no schedules). See ``docs/schedules.md``.
        schedule_enqueue: where a due schedule's run goes, ``enqueue(*, run_id, workflow, parameters,
            tenant_id, options)`` (default: the durable run queue, any gateway on the storage runs it;
            with ``queue=False`` started at once in this gateway).
        queue: run async runs (``?async=true``) through the durable run queue in the
            storage (the default; see :mod:`kailash.api.queue_worker`). ``False`` runs them
            in memory, lost if the gateway stops.
        queue_slots: queued runs executing in this gateway at once.
        queue_lease: seconds a claimed run's lease lasts (default ``KAILASH_QUEUE_LEASE`` or 30);
            a run whose gateway died is taken over by another once it expires.
        on_interrupted: ``"resume"`` (default) a taken-over run, reusing the nodes it finished,
            or ``"mark"`` it ``interrupted`` without running it again.
        shutdown_grace: seconds a stopping gateway waits for its queued runs to finish.
        dask_address: run sync and queued runs on the Dask cluster at this scheduler
            (``"tcp://host:8786"``) with :class:`~kailash.runtime.distributed.DaskRuntime`, one
            client shared by all runs. Stream runs and taken-over queued runs that resume
            (``on_interrupted="resume"``) still run in this process on LocalRuntime.
        runtime_factory: ``(store=, observers=, tenant=, record_outputs=) -> runtime`` making the
            runtime of each run instead (default: LocalRuntime); not with ``dask_address``.

    Example:
        >>> from kailash.workflow import Workflow
        >>> from kailash.nodes.code.python import PythonCodeNode
        >>> wf = Workflow("double")
        >>> _ = wf.add_node("twice", PythonCodeNode(code="result = x * 2"))
        >>> gateway = WorkflowGateway(port=0)
        >>> gateway.register_workflow("double", wf)
        >>> sorted(gateway.workflows)
        ['double']
    """

    def __init__(self, port: int = 8000, host: str = "127.0.0.1", *, title: str = "Kailash Workflow Gateway",
                 description: str = "", auth: bool = True, api_keys: list[Any] | None = None, tenants: Any = None,
                 database_url: str | None = None, max_body_size: int = 10 * 1024 * 1024,
                 max_concurrent_runs: int | None = None, max_workers: int = 32, redis_url: str | None = None,
                 cors_origins: list[str] | None = None, log_level: str = "info", storage: Any = None,
                 trusted_proxies: list[str] | None = None, insecure_no_auth_on_network: bool = False,
                 schedule_tick: float | None = 1.0, schedule_enqueue: Any = None,
                 queue: bool = True, queue_slots: int = 8, queue_lease: float | None = None,
                 on_interrupted: str = "resume", shutdown_grace: float = 10.0, runtime_factory: Any = None,
                 dask_address: str | None = None) -> None:
        from kailash.api.runs import RunManager

        self.port = port
        self.host = host
        self.title = title
        self.description = description
        self.log_level = log_level
        self.auth_required = auth
        self.max_concurrent_runs = max_concurrent_runs
        self.redis_url = redis_url
        self.cors_origins = cors_origins
        self.trusted_proxies = TrustedProxies.parse(trusted_proxies)
        self.insecure_no_auth_on_network = insecure_no_auth_on_network
        self._policies: dict[tuple[Any, ...], OriginPolicy] = {}
        self.database_url = database_url
        if tenants is True:
            from kailash.api.tenancy import TenantRegistry

            tenants = TenantRegistry(database_url=database_url)
        self.tenants = tenants
        self._storage = storage if storage is not None else (tenants.storage if tenants is not None else None)
        self._owns_storage = False
        self.schedule_tick = schedule_tick
        self.schedule_enqueue = schedule_enqueue
        self._schedules: Any = None
        self.registered: dict[str, RegisteredWorkflow] = {}
        self.runs = RunManager(max_workers=max_workers)
        from kailash.api.metrics import GatewayMetrics

        #: what GET /metrics reports; ``metrics.queue_depth`` may be set to a ``() -> int``
        self.metrics = GatewayMetrics(in_progress=lambda: sum(self.runs.active.values()), max_workers=max_workers)
        self.runs.metrics = self.metrics
        self.metrics.queue_depth = self._queue_depth
        from kailash.api.queue_worker import ON_INTERRUPTED

        if not isinstance(queue_slots, int) or queue_slots < 1:
            raise ValueError(f"queue_slots must be a whole number >= 1, got {queue_slots!r}")
        if on_interrupted not in ON_INTERRUPTED:
            raise ValueError(f"on_interrupted must be 'resume' or 'mark', got {on_interrupted!r}")
        self.queue_enabled = queue
        self.queue_options: dict[str, Any] = {"slots": min(queue_slots, max_workers), "lease": queue_lease,
                                              "on_interrupted": on_interrupted}
        self.shutdown_grace = shutdown_grace
        self.runs.worker_factory = self.queue_worker
        if dask_address is not None and runtime_factory is not None:
            raise ValueError("give runtime_factory or dask_address, not both")
        if dask_address is not None:
            from kailash.api.runs import DaskRuntimeFactory

            runtime_factory = DaskRuntimeFactory(dask_address)
        self.runs.runtime_factory = runtime_factory
        self._auth: AuthenticationMiddleware | None = (
            AuthenticationMiddleware(api_keys=api_keys) if api_keys is not None else None)
        self._limiters: list[RateLimitingMiddleware] = []
        self._tenant_limiter: RateLimitingMiddleware | None = None
        self.body_limit = BodySizeLimitMiddleware(max_body_size=max_body_size)  # the pipeline's last slot
        self._workspaces: dict[str | None, Workspace] = {}
        self._workspace_born: dict[str | None, float] = {}
        self.tenant_refresh = 30.0  # seconds before a tenant's policy is read again (changes by other processes)
        self._parsed: dict[tuple[str | None, str], tuple[int, Any]] = {}
        self._lock = threading.Lock()
        self._app: Any = None
        self._openapi: dict[str, Any] | None = None
        self._server: Any = None
        if not auth and api_keys is None:
            self.check_exposure()

    # -- registration --------------------------------------------------------------------
    def register_workflow(self, name: str, workflow: Any, mcp_config: dict[str, Any] | None = None, *,
                          description: str | None = None, allow_overrides: dict[str, Any] | None = None,
                          **options: Any) -> None:
        """Serve ``workflow`` as ``/workflows/{name}`` (checked now: an invalid graph is refused).

        Args:
            name: the URL name (letters, digits, ``_ . -``).
            workflow: a :class:`~kailash.workflow.Workflow`.
            mcp_config: MCP servers the workflow's nodes may name, ``{name: {command, args, ...}}``;
                they are registered with :func:`kailash.nodes.mcp.register_mcp_servers`.
            description: shown in the API (default: the workflow's description).
            allow_overrides: ``{node_id: [parameter, ...]}``: protected parameters (code, SQL,
                URLs, files, commands; see :mod:`kailash.api.overrides`) that a run may replace.
                Without it a run that tries gets 422 ``parameter_not_overridable``.
        """
        self.registered[name] = registered_entry(name, workflow, mcp_config, description=description,
                                                 allow_overrides=allow_overrides, options=options)
        self._openapi = None

    def unregister_workflow(self, name: str) -> None:
        """Stop serving a registered workflow (no error if unknown)."""
        self.registered.pop(name, None)
        self._openapi = None

    @property
    def workflows(self) -> dict[str, Any]:
        """The registered workflows by name."""
        return {n: r.workflow for n, r in self.registered.items()}

    # -- middleware ------------------------------------------------------------------------
    def add_middleware(self, middleware: Any, **options: Any) -> None:
        """Add middleware: an ``AuthenticationMiddleware`` or ``RateLimitingMiddleware`` instance,
        or any ASGI middleware class with its options (``add_middleware(CORSMiddleware, allow_origins=[...])``).

        Authentication always runs first and rate limits next, whatever the order of the calls.
        """
        if isinstance(middleware, AuthenticationMiddleware):
            self._auth = middleware
        elif isinstance(middleware, RateLimitingMiddleware):
            self._limiters.append(middleware)
        elif isinstance(middleware, type) and issubclass(middleware, (AuthenticationMiddleware, RateLimitingMiddleware)):
            self.add_middleware(middleware(**options))
        elif isinstance(middleware, type) or callable(middleware):
            self.app.add_middleware(middleware, **options)
        else:
            raise TypeError(f"add_middleware: expected a middleware instance or class, got {type(middleware).__name__}")

    @property
    def authentication(self) -> AuthenticationMiddleware | None:
        """The authentication in force (a default one when none was added and ``auth`` is on)."""
        if self._auth is None and self.auth_required:
            self._auth = AuthenticationMiddleware()
        if self._auth is not None and self._auth.tenants is None and self.tenants is not None:
            self._auth.tenants = self.tenants
            self.tenants.on_change(self._tenant_changed)
        return self._auth

    def _tenant_changed(self, tenant_id: str) -> None:
        """A tenant's keys, limits or existence changed here: drop what was cached about it."""
        if self._auth is not None:
            self._auth.forget_cached()
        self._workspaces.pop(tenant_id, None)

    # -- who may ask -----------------------------------------------------------------------
    @property
    def keyless(self) -> bool:
        """Whether requests are served without API keys (``auth=False`` and no authentication added)."""
        return self._auth is None and not self.auth_required

    def check_exposure(self) -> None:
        """Refuse to serve without keys on anything but loopback, unless explicitly overridden.

        Raises:
            ValueError: ``auth=False`` on a non-loopback host, or with ``cors_origins=["*"]``.
        """
        if self.keyless:
            check_keyless_exposure(str(self.host), self.cors_origins, override=self.insecure_no_auth_on_network)

    @property
    def rate_limiters(self) -> tuple[RateLimitingMiddleware, ...]:
        """The rate limits added with :meth:`add_middleware`, in the order added."""
        return tuple(self._limiters)

    def tenant_limiter(self, requests_per_minute: int) -> RateLimitingMiddleware:
        """The limiter counting tenants' own ``requests_per_minute`` (created on first use)."""
        if self._tenant_limiter is None:
            self._tenant_limiter = RateLimitingMiddleware(requests_per_minute=requests_per_minute,
                                                          redis_url=self.redis_url, key_prefix="kailash:tenant")
        return self._tenant_limiter

    @property
    def max_body_size(self) -> int:
        """Request bodies larger than this many bytes get 413 (may be changed while serving)."""
        return self.body_limit.max_body_size

    @max_body_size.setter
    def max_body_size(self, value: int) -> None:
        self.body_limit.max_body_size = value

    def origin_policy(self) -> OriginPolicy:
        """The :class:`~kailash.api.crosssite.OriginPolicy` for the current settings (cached per settings)."""
        keyless = self.keyless
        key = (keyless, tuple(self.cors_origins or ()), self.host)
        policy = self._policies.get(key)
        if policy is None:
            policy = self._policies[key] = OriginPolicy.build(self.cors_origins, keyless=keyless, host=str(self.host))
        return policy

    # -- namespaces --------------------------------------------------------------------------
    @property
    def storage(self) -> Any:
        if self._storage is None:
            from kailash.api.storage import open_storage

            self._storage = open_storage(self.database_url)
            self._owns_storage = True
        return self._storage

    @property
    def schedules(self) -> Any:
        """The schedule store of every namespace (opened on first use, blocking)."""
        if self._schedules is None:
            with self._lock:
                if self._schedules is None:
                    self._schedules = self.storage.schedule_store()
        return self._schedules

    def workspace(self, principal: Principal | None) -> Workspace:
        """The workspace a request may use (blocking on first use of a namespace)."""
        tenant_id = principal.tenant_id if principal is not None else None
        ws = self._workspaces.get(tenant_id)
        if ws is None:
            with self._lock:
                ws = self._workspaces.get(tenant_id)
                if ws is None:
                    if tenant_id is None:
                        workflows, runs = self.storage.workspace_stores(None)
                        ws = Workspace(tenant_id=None, workflows=workflows, runs=runs,
                                       max_concurrent_runs=self.max_concurrent_runs)
                    else:
                        from kailash.api.tenancy import TenantError

                        try:
                            ws = self.tenants.workspace(tenant_id)
                        except TenantError:  # deleted while its key was still cached
                            raise ApiError(401, "invalid_api_key", "the API key is not valid (its tenant no "
                                           "longer exists)") from None
                    self._workspaces[tenant_id] = ws
                    self._workspace_born[tenant_id] = time.monotonic()
        return ws

    def open_workspace(self, tenant_id: str | None) -> Workspace | None:
        """The namespace's workspace if already open (never blocks), else ``None``."""
        return self._workspaces.get(tenant_id)

    def refresh_tenant(self, tenant_id: str) -> None:
        """Forget a tenant's workspace read over ``tenant_refresh`` s ago (its policy may have changed elsewhere)."""
        born = self._workspace_born.get(tenant_id)
        if born is not None and time.monotonic() - born > self.tenant_refresh:
            self._workspaces.pop(tenant_id, None)
            self._workspace_born.pop(tenant_id, None)

    def concurrency_limit(self, principal: Principal | None) -> int | None:
        if principal is not None and principal.tenant_id is not None:
            return principal.max_concurrent_runs
        return self.max_concurrent_runs

    def resolve(self, principal: Principal | None, name: str) -> tuple[Any, str, RegisteredWorkflow | None, Any]:
        """``(workflow, source, registered entry, stored entry)`` for ``name`` in the caller's namespace.

        Raises ApiError 404 when the namespace has no such workflow — also when another
        tenant has one, so existence never leaks.
        """
        tenant_id = principal.tenant_id if principal is not None else None
        if tenant_id is None:
            reg = self.registered.get(name)
            if reg is not None:
                return reg.workflow, "registered", reg, None
        stored = self.workspace(principal).workflows.get(name)
        if stored is None:
            raise ApiError(404, "workflow_not_found", f"no workflow '{name}' here; GET /workflows lists them",
                           workflow=name)
        key = (tenant_id, name)
        cached = self._parsed.get(key)
        if cached is not None and cached[0] == stored.revision:
            return cached[1], "uploaded", None, stored
        from kailash.api.documents import check_document

        workflow, problems = check_document(stored.document, allow_env=tenant_id is None,
                                            scope=self.workspace(principal).scope)  # the tenant's policy now
        if workflow is None:
            raise ApiError(409, "stored_workflow_invalid", f"the stored workflow '{name}' no longer loads "
                           "(a node type may be missing); upload it again", problems=problems)
        self._parsed[key] = (stored.revision, workflow)
        return workflow, "uploaded", None, stored

    # -- the run queue ------------------------------------------------------------------------
    def queue_worker(self) -> Any:
        """The :class:`~kailash.api.queue_worker.QueueWorker` of this gateway (created on first use,
        blocking), or ``None`` when async runs run in memory (``queue=False``, or a storage without a queue)."""
        if not self.queue_enabled:
            return None
        worker = self.runs.worker
        if worker is None:
            with self._lock:
                worker = self.runs.worker
                if worker is None:
                    make = getattr(self.storage, "run_queue", None)
                    if make is None:
                        self.queue_enabled = False
                        return None
                    from kailash.api.queue_worker import QueueWorker

                    worker = self.runs.worker = QueueWorker(self, make(), **self.queue_options)
        return worker

    def _queue_depth(self) -> int:
        """``kailash_queue_depth``: runs waiting in the durable queue (every gateway's, on shared storage);
        without a queue, runs beyond the worker threads. Blocking: ``GET /metrics`` renders in a thread."""
        worker = self.runs.worker
        if worker is not None:
            try:
                return int(worker.queue.depth())
            except Exception as exc:  # the database is away: say so in the log, not as a 500 of /metrics
                logging.getLogger("kailash.api").warning("queue depth unavailable: %s", type(exc).__name__)
        return max(0, sum(self.runs.active.values()) - self.runs.max_workers)

    @property
    def run_queue(self) -> Any:
        """The run queue (``depth()``: runs waiting for a worker), or ``None`` (blocking on first use)."""
        worker = self.queue_worker()
        return None if worker is None else worker.queue

    def forget_parsed(self, tenant_id: str | None, name: str) -> None:
        self._parsed.pop((tenant_id, name), None)

    # -- the application --------------------------------------------------------------------
    @property
    def app(self) -> Any:
        """The FastAPI application (an ASGI app: hand it to uvicorn or an httpx ASGITransport)."""
        if self._app is None:
            with self._lock:
                if self._app is None:
                    self._app = self._build_app()
        return self._app

    def _build_app(self) -> Any:  # WorkflowAPI adds its own routes here
        from kailash.api.app import build_app

        return build_app(self)

    def openapi_schema(self, app: Any) -> dict[str, Any]:
        """The OpenAPI document, with one execute operation per registered workflow."""
        if self._openapi is None:
            from kailash.api.openapi import openapi_document

            self._openapi = openapi_document(self, app)
        return self._openapi

    async def aclose(self) -> None:
        """Release what serving opened: the queue worker (its runs finish first, up to
        ``shutdown_grace`` s), the run pool, Redis connections and storage the gateway opened itself."""
        worker = self.runs.worker
        if worker is not None:
            import asyncio

            await asyncio.to_thread(worker.stop, self.shutdown_grace)
            self.runs.worker = None
            worker.close()
        self.runs.shutdown()
        close = getattr(self.runs.runtime_factory, "close", None)
        if close is not None:
            close()
        for limiter in [*self._limiters, self._tenant_limiter]:
            if limiter is not None:
                await limiter.aclose()
        schedules, self._schedules = self._schedules, None
        if schedules is not None:
            schedules.close()  # a PostgreSQL store leaves the shared pool to the storage
        storage = self._storage
        if self._owns_storage and storage is not None and hasattr(storage, "close"):  # a PostgreSQL pool
            storage.close()
            self._storage, self._owns_storage = None, False
            self._workspaces.clear()

    # -- serving ------------------------------------------------------------------------------
    def start(self, *, sockets: list[Any] | None = None, **uvicorn_options: Any) -> None:
        """Serve until interrupted (blocking). Extra keywords go to ``uvicorn.Config``.
        ``sockets``: bound sockets to serve on instead of binding ``host:port`` (``kailash
        serve`` binds first, so a port in use fails before anything says it serves).

        Raises:
            ValueError: keyless serving on an exposed host (see :meth:`check_exposure`).
        """
        from kailash.api.serving import uvicorn_server

        names = ", ".join(sorted(self.registered)) or "none yet"
        logger.info("Kailash gateway: workflows %s; Studio at /studio; API docs at /docs", names)
        from kailash.api.serving import announce_when_started

        server = uvicorn_server(self, **uvicorn_options)
        if sockets:
            announce_when_started(server, sockets)
        server.run(sockets=sockets)

    def serve_in_thread(self, timeout: float = 15.0, **uvicorn_options: Any) -> Any:
        """Serve from a background thread; return a :class:`~kailash.api.serving.RunningGateway`
        once it accepts connections (``.url``, ``.port``, ``.stop()``).

        Example:
            >>> gw = WorkflowGateway(port=0, auth=False)
            >>> running = gw.serve_in_thread(log_level="warning")
            >>> import httpx; httpx.get(running.url + "/health").json()["status"]
            'ok'
            >>> running.stop()
        """
        from kailash.api.serving import serve_in_thread

        return serve_in_thread(self, timeout, **uvicorn_options)


def _version() -> str:
    from kailash._version import __version__

    return __version__
