"""Resuming a failed or interrupted run: re-run what did not finish, reuse the rest.

An interrupted run (its process died; see :mod:`kailash.runtime.runlog`) is resumed
like a failed one: the nodes its log recorded as completed are reused, every other node
runs (a node that was running when the process died runs again: at-least-once).
A failed run's record holds the outputs of the nodes that finished (``record_outputs``
is ``"failed"`` by default). :func:`prepare_resume` reads that record and works out
what the new run reuses; every runtime then runs the plan with those outputs fixed,
through the same ``fixed=`` door that ``TestRuntime`` uses for mocked nodes. The new
run is recorded with ``parent_run_id`` pointing at the failed one.

Recorded outputs went through JSON: tuples come back as lists, and values that JSON
cannot hold (bytes, arbitrary objects, secrets) were not kept. Such an output is
reported at resume time, naming the node; ``rerun=[node_id]`` runs that node again
instead of reusing it. This module never runs a node itself.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from kailash.errors import SerializationError, WorkflowValidationError
from kailash.runtime.engine import RuntimeDoor, WorkflowResults
from kailash.runtime.types import RunId
from kailash.security.secrets import REDACTED, Secret

__all__ = ["ResumeJob", "prepare_resume", "resume", "resume_inline"]


@dataclass(frozen=True, kw_only=True, slots=True)
class ResumeJob:
    """What a runtime needs to continue a failed run."""

    plan: Any
    overrides: dict[str, dict[str, Any]]
    fixed: dict[str, dict[str, Any]]
    parameters: dict[str, Any] | None
    parent_run_id: str


def _error(run_id: str, why: str, **context: Any) -> WorkflowValidationError:
    return WorkflowValidationError(f"cannot resume run '{run_id}': {why}", parameter="run_id", **context)


def _descendants(plan: Any, roots: set[str]) -> set[str]:
    out, stack = set(roots), list(roots)
    while stack:
        for nxt in plan.by_id[stack.pop()].successors:
            if nxt not in out:
                out.add(nxt)
                stack.append(nxt)
    return out


def _lost(value: Any, path: str) -> tuple[str, str] | None:
    """Where in a recorded value something was not kept, and what it was."""
    if isinstance(value, dict):
        if "$unserializable" in value and len(value) <= 2:
            return path, f"a {value['$unserializable']} (not JSON-serialisable)"
        if "$bytes" in value and len(value) == 1:
            return path, f"bytes ({value['$bytes']} bytes)"
        for k, v in value.items():
            found = _lost(v, f"{path}.{k}")
            if found:
                return found
    elif isinstance(value, list):
        for i, v in enumerate(value):
            found = _lost(v, f"{path}[{i}]")
            if found:
                return found
    elif value == REDACTED or (isinstance(value, str) and value.startswith("${") and value.endswith("}")):
        return path, "a secret (run records never store secret values)"
    return None


def _env_secrets(value: Any) -> Any:
    if isinstance(value, str) and value.startswith("${") and value.endswith("}"):
        env = os.environ.get(value[2:-1])
        return Secret(env, env=value[2:-1]) if env is not None else value
    if isinstance(value, dict):
        return {k: _env_secrets(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_env_secrets(v) for v in value]
    return value


def prepare_resume(store: Any, run_id: str, workflow: Any, *, parameters: dict[str, Any] | None = None,
                   rerun: list[str] | tuple[str, ...] | None = None) -> ResumeJob:
    """Check that ``run_id`` can be resumed with ``workflow`` and work out what to reuse.

    Args:
        store: the run store the failed run was recorded in.
        run_id: the failed run (a unique prefix is accepted).
        workflow: the workflow to run (usually the one that failed, possibly fixed).
        parameters: the run's parameters; default: those recorded with the failed run.
        rerun: node ids to run again even though they finished (and what depends on them).

    Raises:
        WorkflowValidationError: unknown run id, a run that did not fail, another
            workflow's run, a run without recorded outputs, or unknown ``rerun`` ids.
        SerializationError: an output to reuse (or a recorded parameter) was not recorded
            faithfully; the message names the node and suggests ``rerun=``.
    """
    if not isinstance(run_id, str) or not run_id:
        raise WorkflowValidationError(f"resume: run_id must be a run id string, got {run_id!r}",
                                      parameter="run_id", expected="str")
    if store is None:
        raise _error(run_id, "this runtime records no runs (store=None); use a runtime with a run store")
    record = store.get_run(run_id)
    if record is None:
        where = getattr(store, "path", None)
        raise _error(run_id, f"no such run in the run store{f' {where}' if where else ''}; "
                             "list runs with `kailash runs` or runtime.list_runs()")
    full_id = record.run_id
    if record.status == "completed":
        raise _error(full_id, f"it completed successfully (workflow '{record.workflow}'); there is nothing to "
                              "resume — run the workflow again with execute()")
    if record.status == "running":
        raise _error(full_id, "it is still running (its owner process is alive); resume it once it has "
                              "failed or been interrupted")
    if record.status not in ("failed", "interrupted"):
        raise _error(full_id, f"its status is '{record.status}'; only failed or interrupted runs can be resumed")
    plan = workflow.compile()
    if record.workflow != plan.name:
        raise _error(full_id, f"it is a run of workflow '{record.workflow}', not of '{plan.name}'")
    if record.outputs is None:
        raise _error(full_id, "the run recorded no node outputs (its runtime had record_outputs='never'); "
                              "run the workflow again with execute()")
    again = set(rerun or ())
    unknown = sorted(again - set(plan.by_id))
    if unknown:
        raise WorkflowValidationError(
            f"cannot resume run '{full_id}': rerun names unknown node(s) {', '.join(map(repr, unknown))} "
            f"(nodes: {', '.join(plan.by_id)})", parameter="rerun", node_id=unknown[0],
        )
    again = _descendants(plan, again)
    fixed: dict[str, dict[str, Any]] = {}
    for node_id, outputs in record.outputs.items():
        if node_id not in plan.by_id or node_id in again or not isinstance(outputs, dict):
            continue
        outputs = _env_secrets(outputs)
        lost = _lost(outputs, node_id)
        if lost:
            raise SerializationError(
                f"cannot resume run '{full_id}': output '{lost[0]}' of node '{node_id}' was {lost[1]}, so it was "
                f"not recorded and cannot be reused; pass rerun=['{node_id}'] to run node '{node_id}' again",
                node_id=node_id, parameter=lost[0].split(".", 2)[1] if "." in lost[0] else None,
            )
        fixed[node_id] = outputs
    if parameters is None and record.parameters:
        params = _env_secrets(record.parameters)
        lost = _lost(params, "parameters")
        if lost:
            raise SerializationError(
                f"cannot resume run '{full_id}': recorded {lost[0]} was {lost[1]}; "
                "pass the run's parameters again with resume(..., parameters=...)",
                parameter="parameters",
            )
        parameters = params
    overrides = plan.prepare(parameters)
    return ResumeJob(plan=plan, overrides=overrides, fixed=fixed, parameters=parameters, parent_run_id=full_id)


def resume_inline(door: RuntimeDoor, run_id: str, workflow: Any, *, parameters: dict[str, Any] | None = None,
                  rerun: list[str] | None = None,
                  mocks: dict[str, dict[str, Any]] | None = None) -> tuple[WorkflowResults, RunId]:
    """Resume failed run ``run_id`` in this thread, recorded as ``door`` records runs
    (``LocalRuntime.resume``, ``TestRuntime.resume`` and :func:`resume` without a runtime).

    ``mocks`` are outputs that replace nodes on top of the reused ones (``TestRuntime``).
    """
    from kailash.runtime.engine import RunContext, new_run_id
    from kailash.runtime.scheduler import Run, run_inline

    job = prepare_resume(door.store, run_id, workflow, parameters=parameters, rerun=rerun)
    new_id = new_run_id()
    recorder = door._recorder(job.plan, new_id, job.parameters, parent_run_id=job.parent_run_id)
    fixed = {**job.fixed, **mocks} if mocks else job.fixed
    return run_inline(Run(job.plan, job.overrides, RunContext(new_id, door), recorder, fixed)), new_id


def resume(run_id: str, workflow: Any, *, runtime: Any = None, parameters: dict[str, Any] | None = None,
           rerun: list[str] | None = None) -> tuple[Any, str]:
    """Resume failed run ``run_id`` of ``workflow`` with ``runtime`` (default: a LocalRuntime).

    Returns ``(results, new_run_id)``; the new run's record has ``parent_run_id=run_id``.

    Example:
        >>> from kailash.workflow import Workflow
        >>> from kailash.nodes.code.python import PythonCodeNode
        >>> from kailash.runtime import LocalRuntime
        >>> wf = Workflow("flaky")
        >>> _ = wf.add_node("load", PythonCodeNode(code="result = [1, 2, 3]"))
        >>> _ = wf.add_node("total", PythonCodeNode(code="result = sum(data) / divisor"))
        >>> wf.connect("load", "total")
        >>> try:
        ...     LocalRuntime().execute(wf, parameters={"total": {"divisor": 0}})
        ... except Exception as exc:
        ...     failed = exc.run_id
        >>> results, new_id = resume(failed, wf, parameters={"total": {"divisor": 2}})
        >>> results["total"]
        {'result': 3.0}
    """
    if runtime is None:  # what LocalRuntime() would do, without importing the runtimes above this module
        from kailash.runtime.engine import resolve_store

        default = RuntimeDoor()
        default.store = resolve_store("default")
        return resume_inline(default, run_id, workflow, parameters=parameters, rerun=rerun)
    door = getattr(runtime, "resume_sync", None) or runtime.resume
    done: tuple[Any, str] = door(run_id, workflow, parameters=parameters, rerun=rerun)
    return done
