"""TestRuntime: run a workflow in tests, with any node's output replaced by a fixed value.

A thin door onto :mod:`kailash.runtime.scheduler` with the inline executor; the mocked
outputs go through the core's ``fixed`` outputs, the door resume uses too.
"""

from __future__ import annotations

from typing import Any

from kailash.errors import WorkflowValidationError
from kailash.runtime.engine import Observer, RunContext, RuntimeDoor, WorkflowResults, new_run_id
from kailash.runtime.scheduler import Run, run_inline
from kailash.workflow.plan import ExecutionPlan

__all__ = ["TestRuntime"]


class TestRuntime(RuntimeDoor):
    """Runs like :class:`~kailash.runtime.LocalRuntime` but returns ``results`` alone.

    ``mock_outputs={node_id: {output: value}}`` (given here or to ``execute``) replaces
    those nodes' outputs: they are not run, and what they feed sees the fixed values.
    Nothing is recorded unless ``store=`` is given.

    Example:
        >>> from kailash.workflow import Workflow
        >>> from kailash.nodes.code.python import PythonCodeNode
        >>> wf = Workflow()
        >>> _ = wf.add_node("fetch", PythonCodeNode(code="result = call_the_real_api()"))
        >>> _ = wf.add_node("count", PythonCodeNode(code="result = len(data)"))
        >>> wf.connect("fetch", "count")
        >>> TestRuntime(mock_outputs={"fetch": {"result": [1, 2, 3]}}).execute(wf)["count"]
        {'result': 3}
    """

    __test__ = False  # not a pytest test class
    name = "testing"

    def __init__(self, mock_outputs: dict[str, dict[str, Any]] | None = None, *, store: Any = None,
                 observers: list[Observer] | None = None) -> None:
        from kailash.runtime.engine import resolve_store

        self.mock_outputs = dict(mock_outputs or {})
        self.store = resolve_store(store)
        self.observers = list(observers or [])

    def mock(self, node_id: str, outputs: dict[str, Any]) -> TestRuntime:
        """Replace ``node_id``'s output with ``outputs`` in later runs."""
        self.mock_outputs[node_id] = outputs
        return self

    def execute(self, workflow: Any, parameters: dict[str, Any] | None = None, *,
                mock_outputs: dict[str, dict[str, Any]] | None = None,
                observers: list[Observer] | None = None) -> WorkflowResults:
        """Run ``workflow`` with the mocked outputs; return its results (``results.run_id`` is set)."""
        plan = workflow.compile()
        fixed = {**self.mock_outputs, **(mock_outputs or {})}
        unknown = [n for n in fixed if n not in plan.by_id]
        if unknown:
            raise WorkflowValidationError(
                f"TestRuntime: mock_outputs name unknown node(s) {', '.join(map(repr, unknown))} "
                f"(nodes: {', '.join(plan.by_id)})", node_id=unknown[0],
            )
        for node_id, out in fixed.items():
            if not isinstance(out, dict):
                raise WorkflowValidationError(
                    f"TestRuntime: mock_outputs['{node_id}'] must be a dict of outputs, got {type(out).__name__}",
                    node_id=node_id, expected="dict",
                )
        overrides = _prepare_with_mocks(plan, parameters, fixed)
        run_id = new_run_id()
        recorder = self._recorder(plan, run_id, parameters, observers)
        return run_inline(Run(plan, overrides, RunContext(run_id, self), recorder, fixed or None))


    def resume(self, run_id: str, workflow: Any, *, parameters: dict[str, Any] | None = None,
               rerun: list[str] | None = None) -> tuple[WorkflowResults, str]:
        """Re-run failed run ``run_id`` (needs ``store=``); mocked outputs still apply.

        Returns ``(results, new_run_id)``; see :mod:`kailash.runtime.resume`.
        """
        from kailash.runtime.resume import resume_inline

        return resume_inline(self, run_id, workflow, parameters=parameters, rerun=rerun, mocks=self.mock_outputs)


def _prepare_with_mocks(plan: ExecutionPlan, parameters: dict[str, Any] | None, fixed: dict[str, Any]) -> dict[str, Any]:
    if not fixed:
        return plan.prepare(parameters)
    try:
        return plan.prepare(parameters)
    except WorkflowValidationError as exc:
        # Required inputs of mocked nodes do not matter: they do not run.
        left = [p for p in exc.problems if p.node_id not in fixed or p.parameter is None]
        if left:
            raise
        return {k: v for k, v in (parameters or {}).items() if isinstance(v, dict) and k in plan.by_id}
