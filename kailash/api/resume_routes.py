"""``POST /runs/{id}/resume``: re-run a failed or interrupted run from the node that failed.

The nodes the run finished are reused from its record (their recorded outputs); the
failed node and everything after it run again, as :func:`kailash.runtime.resume.prepare_resume`
works out. The new run gets a new run id, its record points at the old one
(``parent_run_id``), and it is followed like any other run (``/runs/{id}``,
``/runs/{id}/events``). Like every run route, a run of another namespace is a 404.
"""

from __future__ import annotations

from typing import Any

from fastapi import Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from kailash.api.bodies import read_json
from kailash.api.middleware import principal_of
from kailash.api.responses import ApiError
from kailash.api.runs import LiveRun, new_run_id

__all__ = ["install", "ResumedRun"]


class ResumedRun(LiveRun):
    """A :class:`~kailash.api.runs.LiveRun` that resumes another: its description names that run."""

    def __init__(self, run_id: str, parent_run_id: str, reused: list[str], *args: Any) -> None:
        super().__init__(run_id, *args)
        self.parent_run_id = parent_run_id
        self.reused = reused

    def to_dict(self) -> dict[str, Any]:
        return {**super().to_dict(), "parent_run_id": self.parent_run_id, "reused": self.reused}


def _execute_resumed(run: Any, workspace: Any, job: Any, secrets: frozenset[str]) -> None:
    """Run the resumed plan (worker thread); the outcome lands on ``run``."""
    from kailash.api.runs import _RedactingStore, error_info
    from kailash.api.tenant_runs import tenant_security
    from kailash.errors import KailashError
    from kailash.runtime import LocalRuntime
    from kailash.runtime.engine import RunContext
    from kailash.runtime.scheduler import Run, run_inline
    from kailash.runtime.store import to_json_safe
    from kailash.security.secrets import redact

    store = _RedactingStore(workspace.runs, secrets) if secrets else workspace.runs
    runtime = LocalRuntime(store=store, observers=[run.observe], tenant=workspace.tenant_id, record_outputs="failed")
    recorder = runtime._recorder(job.plan, run.run_id, job.parameters, parent_run_id=job.parent_run_id)
    # what the run answers is masked like its record: the plan's config credentials, its parameters' secrets
    secrets = run.secrets = secrets | job.plan.config_secrets | recorder.secrets.values()
    try:
        with tenant_security(workspace.tenant_id, workspace):
            results = run_inline(Run(job.plan, job.overrides, RunContext(run.run_id, runtime), recorder, job.fixed))
    except KailashError as exc:
        partial = getattr(exc, "results", None) or {}
        run.finish(redact(to_json_safe(dict(partial)), secrets), error_info(exc, secrets), [])
        return
    except Exception as exc:  # a bug outside any node: still end the run visibly
        run.finish({}, error_info(exc, secrets), [])
        return
    safe = to_json_safe(dict(results))
    run.finish(redact(safe, secrets) if secrets else safe, None, list(getattr(results, "skipped", ()) or ()))


def install(app: Any, gw: Any) -> None:
    """Add ``POST /runs/{run_id}/resume`` to ``app``."""

    @app.post("/runs/{run_id}/resume", tags=["runs"], status_code=202,
              summary="Re-run a failed or interrupted run from the node that failed (finished nodes are reused)",
              description="Body (optional): `{\"rerun\": [node_id, ...]}` runs those nodes again too. The new run "
                          "has its own run id (`parent_run_id` names the old one) and the recorded parameters.")
    async def resume_run(run_id: str, request: Request) -> JSONResponse:
        from kailash.api.documents import problem
        from kailash.api.run_routes import find_record
        from kailash.errors import KailashError
        from kailash.runtime.resume import prepare_resume

        principal = principal_of(request.scope)
        tenant_id = principal.tenant_id if principal is not None else None
        body = await read_json(request, required=False) or {}
        rerun = body.get("rerun") if isinstance(body, dict) else None
        if rerun is not None and (not isinstance(rerun, list) or not all(isinstance(r, str) for r in rerun)):
            raise ApiError(422, "invalid_request", "'rerun' must be a list of node ids", parameter="rerun",
                           expected="list of node ids", got=type(rerun).__name__)
        record = await run_in_threadpool(find_record, gw, principal, run_id)
        if record is None:
            raise ApiError(404, "run_not_found", f"no run '{run_id}' here; GET /runs lists them", run_id=run_id)
        if record.status not in ("failed", "interrupted"):
            raise ApiError(409, "run_not_resumable", f"run '{run_id}' is {record.status}; only a failed or "
                           "interrupted run can be resumed", run_id=run_id, got=record.status)
        workflow, _, reg, _ = await run_in_threadpool(gw.resolve, principal, record.workflow)
        workspace = gw.open_workspace(tenant_id) or await run_in_threadpool(gw.workspace, principal)
        secrets = reg.secrets if reg is not None else frozenset()
        try:
            job = await run_in_threadpool(prepare_resume, workspace.runs, record.run_id, workflow, rerun=rerun)
        except KailashError as exc:
            raise ApiError(422, "run_not_resumable", str(exc), run_id=run_id, node_id=exc.node_id,
                           problems=[problem(str(exc), node_id=exc.node_id, parameter=exc.parameter)]) from None
        limit = gw.concurrency_limit(principal)
        if limit is not None and gw.runs.active.get(tenant_id, 0) >= limit:
            raise ApiError(429, "too_many_runs", f"at most {limit} runs may run at once here; retry when one "
                           "finishes", headers={"Retry-After": "1"}, limit=limit)
        import asyncio

        loop = asyncio.get_running_loop()
        run = ResumedRun(new_run_id(), record.run_id, sorted(job.fixed), record.workflow, tenant_id, loop, secrets)
        run.metrics = gw.runs.metrics
        gw.runs._remember(run)
        gw.runs.count(tenant_id, +1)
        future = loop.run_in_executor(gw.runs.executor, _execute_resumed, run, workspace, job, secrets)
        future.add_done_callback(lambda _: gw.runs.count(tenant_id, -1))
        links = {"run": f"/runs/{run.run_id}", "events": f"/runs/{run.run_id}/events",
                 "parent": f"/runs/{record.run_id}"}
        return JSONResponse({"run_id": run.run_id, "workflow": record.workflow, "status": run.status,
                             "parent_run_id": record.run_id, "reused": sorted(job.fixed), "links": links}, 202,
                            headers={"Location": links["run"]})
