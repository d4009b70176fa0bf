"""WorkflowAPI: one workflow served on its own, with short routes.

A :class:`WorkflowAPI` is a :class:`~kailash.api.gateway.WorkflowGateway` with exactly
one registered workflow and two extra routes: ``POST /execute`` (the workflow's
execute endpoint) and ``GET /workflow`` (its description). Everything else — keys,
limits, runs, live events, OpenAPI — is the gateway's.
"""

from __future__ import annotations

from typing import Any

from kailash.api.gateway import WorkflowGateway

__all__ = ["WorkflowAPI"]


class WorkflowAPI(WorkflowGateway):
    """Serve a single workflow.

    Args:
        workflow: the workflow to serve.
        name: its URL name (default: the workflow's name).
        port, host, **options: as for :class:`~kailash.api.gateway.WorkflowGateway`.

    Example:
        >>> from kailash.workflow import Workflow
        >>> from kailash.nodes.code.python import PythonCodeNode
        >>> wf = Workflow("square")
        >>> _ = wf.add_node("sq", PythonCodeNode(code="result = x * x"))
        >>> api = WorkflowAPI(wf, port=0, api_keys=["k-1"])
        >>> from starlette.testclient import TestClient
        >>> with TestClient(api.app) as client:
        ...     client.post("/execute", json={"parameters": {"sq": {"x": 7}}},
        ...                 headers={"X-API-Key": "k-1"}).json()["results"]
        {'sq': {'result': 49}}
    """

    def __init__(self, workflow: Any, *, name: str | None = None, port: int = 8000, host: str = "127.0.0.1",
                 **options: Any) -> None:
        super().__init__(port=port, host=host, title=options.pop("title", f"Kailash workflow '{workflow.name}'"),
                         **options)
        self.name = name or workflow.name
        self.workflow = workflow
        self.register_workflow(self.name, workflow)

    def _build_app(self) -> Any:
        app = super()._build_app()
        from fastapi import Request

        name = self.name
        execute = next(r.endpoint for r in app.routes if getattr(r, "path", "") == "/workflows/{name}/execute")
        describe = next(r.endpoint for r in app.routes if getattr(r, "path", "") == "/workflows/{name}"
                        and "GET" in getattr(r, "methods", ()))

        async def execute_one(request: Request) -> Any:
            return await execute(name, request)

        def describe_one(request: Request) -> Any:
            return describe(name, request)

        execute_one.__annotations__ = {"request": Request, "return": Any}
        describe_one.__annotations__ = {"request": Request, "return": Any}
        app.add_api_route("/execute", execute_one, methods=["POST"], tags=["workflow"],
                          summary=f"Run workflow '{name}'")
        app.add_api_route("/workflow", describe_one, methods=["GET"], tags=["workflow"],
                          summary=f"Describe workflow '{name}'")
        return app
