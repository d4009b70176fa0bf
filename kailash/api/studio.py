"""StudioClient: the Studio's workflow API from Python.

This module owns the client side of the calls the Studio makes to a gateway: upload
(save) a workflow, download one as a :class:`~kailash.workflow.Workflow`, list them,
validate one, and run one. It speaks plain HTTP through ``httpx`` (imported when a
client is created, never at ``import kailash``) and turns the gateway's error bodies
into the SDK's exceptions. It never imports FastAPI or the gateway itself.

The Studio web UI itself is plain HTML/JS under ``kailash/api/static/studio`` and is
served by :class:`~kailash.api.gateway.WorkflowGateway` at ``/studio``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from kailash.errors import KailashError, NodeExecutionError, Problem, SecurityError, WorkflowValidationError

if TYPE_CHECKING:
    from kailash.workflow.graph import Workflow

__all__ = ["StudioClient", "DEFAULT_BASE_URL"]

DEFAULT_BASE_URL = "http://127.0.0.1:8000"


class StudioClient:
    """Upload, download, list and run workflows on a Kailash gateway.

    Args:
        base_url: the gateway's address. Default: ``$KAILASH_GATEWAY_URL`` if set, else
            ``http://127.0.0.1:8000`` (what ``kailash serve`` listens on).
        api_key: the API key, sent as ``Authorization: Bearer``. Default: ``$KAILASH_API_KEY``.
        timeout: seconds to wait for each request (a synchronous run may take long).

    Example:
        >>> from kailash.api.studio import StudioClient
        >>> client = StudioClient("http://127.0.0.1:8000", api_key="your-api-key")  # doctest: +SKIP
        >>> client.upload_workflow(workflow)  # doctest: +SKIP
        {'name': 'etl', ...}
        >>> client.run("etl", {"reader": {"file_path": "in.csv"}})["status"]  # doctest: +SKIP
        'completed'
    """

    def __init__(self, base_url: str | None = None, api_key: str | None = None, *, timeout: float = 60.0) -> None:
        try:
            import httpx
        except ImportError:  # pragma: no cover - depends on the environment
            raise ImportError("StudioClient needs httpx: pip install 'kailash[api]'") from None
        self.base_url = (base_url or os.environ.get("KAILASH_GATEWAY_URL") or DEFAULT_BASE_URL).rstrip("/")
        self._api_key = api_key if api_key is not None else os.environ.get("KAILASH_API_KEY")
        headers = {"Accept": "application/json"}
        if self._api_key:
            headers["Authorization"] = f"Bearer {self._api_key}"
        self._http = httpx.Client(base_url=self.base_url, headers=headers, timeout=timeout)

    def __repr__(self) -> str:  # never shows the key
        return f"StudioClient(base_url={self.base_url!r}, api_key={'***' if self._api_key else None})"

    # -- lifecycle ---------------------------------------------------------------------------
    def close(self) -> None:
        """Close the underlying HTTP connections."""
        self._http.close()

    def __enter__(self) -> StudioClient:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # -- workflows ---------------------------------------------------------------------------
    def upload_workflow(self, workflow_or_path: Workflow | str | os.PathLike[str] | dict[str, Any],
                        name: str | None = None) -> dict[str, Any]:
        """Save a workflow on the server (replacing one of the same name).

        Args:
            workflow_or_path: a :class:`Workflow`, a saved workflow file (YAML or JSON,
                read safely here first so problems show before anything is sent), or the
                ``Workflow.to_dict()`` form.
            name: the name to store it under (default: the workflow's own name).

        Returns:
            The server's answer (the stored workflow's name and summary).

        Raises:
            WorkflowValidationError: the server refused the workflow; ``problems`` lists
                every problem it found.
            SecurityError: the API key is missing or refused.
        """
        document = self._document(workflow_or_path)
        name = name or str(document.get("name") or "workflow")
        return self._request("POST", "/workflows", json={"name": name, "workflow": document},
                             what=f"upload workflow '{name}'")

    def download_workflow(self, name: str) -> Workflow:
        """The workflow stored on the server as ``name``, rebuilt as a :class:`Workflow`."""
        from kailash.workflow.graph import Workflow

        body = self._request("GET", f"/workflows/{quote(name, safe='')}", what=f"download workflow '{name}'")
        document = body.get("definition") if isinstance(body.get("definition"), dict) else body
        return Workflow.from_dict(document)

    def list_workflows(self) -> list[dict[str, Any]]:
        """The workflows stored on the server: one summary dict (``name``, ...) each."""
        body = self._request("GET", "/workflows", what="list workflows")
        if isinstance(body, dict):
            body = body.get("workflows", [])
        return [w if isinstance(w, dict) else {"name": w} for w in body]

    def validate(self, workflow_or_path: Workflow | str | os.PathLike[str] | dict[str, Any]) -> dict[str, Any]:
        """Ask the server to check a workflow: ``{"valid": bool, "problems": [...]}``."""
        document = self._document(workflow_or_path)
        return self._request("POST", "/validate", json={"workflow": document}, what="validate a workflow")

    # -- runs --------------------------------------------------------------------------------
    def run(self, name: str, parameters: dict[str, Any] | None = None) -> dict[str, Any]:
        """Run the stored workflow ``name`` and wait for it.

        Args:
            name: the stored workflow.
            parameters: run-time inputs, ``{node_id: {param: value}}``.

        Returns:
            ``{"run_id", "status", "results"}``; ``results[node_id]`` is that node's outputs.

        Raises:
            WorkflowValidationError: the parameters are wrong (nothing ran).
            NodeExecutionError: a node failed; ``node_id`` and ``run_id`` say which and where.
        """
        what = f"run workflow '{name}'"
        status, body = self._send("POST", f"/workflows/{quote(name, safe='')}/execute",
                                  json={"parameters": parameters or {}}, what=what)
        if isinstance(body, dict) and body.get("code") == "run_failed" and body.get("run_id"):
            raise _run_failure(name, body)  # the run started and a node failed (HTTP 422, a problem document)
        if not 200 <= status < 300:
            raise _http_error(status, body, what, self.base_url)
        return body

    def get_run(self, run_id: str) -> dict[str, Any]:
        """A run's record: status, per-node status and timing, errors."""
        return self._request("GET", f"/runs/{quote(run_id, safe='')}", what=f"read run '{run_id}'")

    # -- plumbing ----------------------------------------------------------------------------
    def _document(self, workflow_or_path: Any) -> dict[str, Any]:
        from kailash.workflow.graph import Workflow

        if isinstance(workflow_or_path, Workflow):
            return workflow_or_path.to_dict()
        if isinstance(workflow_or_path, dict):
            return workflow_or_path
        if isinstance(workflow_or_path, (str, os.PathLike)):
            return Workflow.load(Path(workflow_or_path)).to_dict()
        raise TypeError(
            f"upload_workflow expects a Workflow, a path to a saved workflow or a dict, got {type(workflow_or_path).__name__}"
        )

    def _send(self, method: str, path: str, *, what: str, json: Any = None) -> tuple[int, Any]:
        import httpx

        try:
            response = self._http.request(method, path, json=json)
        except httpx.HTTPError as exc:
            raise KailashError(f"cannot {what}: the gateway at {self.base_url} did not answer ({exc})") from exc
        try:
            body = response.json() if response.content else None
        except ValueError:
            body = response.text
        return response.status_code, body

    def _request(self, method: str, path: str, *, what: str, json: Any = None) -> Any:
        status, body = self._send(method, path, what=what, json=json)
        if 200 <= status < 300:
            return body
        raise _http_error(status, body, what, self.base_url)


def _error_fields(body: Any) -> dict[str, Any]:
    if isinstance(body, dict):
        err = body.get("error")
        if isinstance(err, dict):
            return err
        detail = body.get("detail")
        if isinstance(detail, dict):
            return detail
        return {"message": err if isinstance(err, str) else detail if isinstance(detail, str) else None,
                "problems": body.get("problems") or (detail if isinstance(detail, list) else None)}
    return {"message": body if isinstance(body, str) and body else None}


def _problem_text(p: Any) -> str:
    if isinstance(p, dict):
        if p.get("message"):
            return str(p["message"])
        if p.get("msg"):  # FastAPI's own 422 items
            loc = ".".join(str(x) for x in p.get("loc", []))
            return f"{loc}: {p['msg']}" if loc else str(p["msg"])
    return str(p)


def _problem(p: Any) -> Problem:
    """A problem of a gateway error body as the :class:`Problem` the server built."""
    fields = p if isinstance(p, dict) else {}

    def text(key: str) -> str | None:
        value = fields.get(key)
        return None if value is None else str(value)

    return Problem(node_id=text("node_id"), parameter=text("parameter"), expected=text("expected"),
                   got=text("got"), message=_problem_text(p))


def _http_error(status: int, body: Any, what: str, base_url: str) -> KailashError:
    fields = _error_fields(body)
    message = fields.get("message") or f"HTTP {status}"
    found = [_problem(p) for p in (fields.get("problems") or [])]
    problems = [p.message for p in found]
    text = f"cannot {what}: {message}"
    extra = [p for p in problems if p not in message]
    if extra:
        text += "\n  - " + "\n  - ".join(extra)
    context = {"node_id": fields.get("node_id"), "parameter": fields.get("parameter"), "run_id": fields.get("run_id")}
    if status in (401, 403):
        return SecurityError(f"{text} (give StudioClient a valid api_key, or set KAILASH_API_KEY)", **context)
    if status in (400, 413, 422):
        only = Problem(node_id=context["node_id"], parameter=context["parameter"], message=str(message))
        return WorkflowValidationError(text, problems=found or [only], **context)
    if status == 404:
        return KailashError(f"{text} (gateway {base_url})", **context)
    if fields.get("node_id"):
        return NodeExecutionError(text, **context)
    return KailashError(f"{text} (HTTP {status})", **context)


def _run_failure(name: str, body: dict[str, Any]) -> NodeExecutionError:
    err = body.get("error")
    fields = err if isinstance(err, dict) else {"message": err}
    node_id = fields.get("node_id")
    message = str(fields.get("message") or "no details")
    if not message.startswith(f"workflow '{name}' failed"):
        message = f"workflow '{name}' failed{f' at node {node_id!r}' if node_id else ''}: {message}"
    exc = NodeExecutionError(message, node_id=node_id, parameter=fields.get("parameter"), run_id=body.get("run_id"))
    exc.results = body.get("results") or {}
    return exc
