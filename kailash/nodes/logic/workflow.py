"""WorkflowNode: run a whole workflow as one node.

The runtime hands the node an execution context (``needs_context``, see
:mod:`kailash.nodes.context`) through which the inner workflow is loaded and runs with
the same runtime settings; validation hands it a loader, and run on its own it takes a
context from :mod:`kailash.nodes.standalone`. The node imports neither the runtime nor
the workflow package. Mappings (SPEC §4): the key is the WorkflowNode's own port, the
value the inner side — ``input_mapping={"raw_data": "data"}`` sends input ``raw_data``
to the inner entry nodes that take ``data`` (or to ``node_id.param``);
``output_mapping={"cleaned_data": "clean.result"}`` exposes inner ``clean``'s
``result`` as ``cleaned_data`` (a bare name means that output of the single exit node).

For a gateway tenant, ``workflow_path`` resolves inside the tenant's own directory
(relative paths from there; anything outside is refused with one message, whether or
not the host file exists), and every inner workflow — from config, a file or a run
parameter — is checked against the tenant's capabilities before it runs.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Mapping
from typing import Any

from kailash.errors import KailashError, NodeConfigurationError, NodeExecutionError, Problem, SecurityError
from kailash.nodes.base import Node, NodeParameter, register_node
from kailash.nodes.capabilities import current_tenant, tenant_file, workflow_problems
from kailash.nodes.context import ExecutionContext
from kailash.nodes.standalone import WorkflowLoader, standalone_context

__all__ = ["WorkflowNode"]

_OWN = ("workflow", "workflow_path", "input_mapping", "output_mapping")
_validating = threading.local()


@register_node(category="logic")
class WorkflowNode(Node):
    """A sub-workflow as a node (inline ``workflow=`` or a saved ``workflow_path``).

    Example:
        >>> from kailash.workflow import Workflow
        >>> from kailash.runtime import LocalRuntime  # runs the inner workflow of execute()
        >>> from kailash.nodes.code.python import PythonCodeNode
        >>> inner = Workflow("inner")
        >>> _ = inner.add_node("clean", PythonCodeNode(code="result = [x for x in data if x]"))
        >>> node = WorkflowNode(workflow=inner, input_mapping={"raw": "data"},
        ...                     output_mapping={"cleaned": "clean.result"})
        >>> node.execute(raw=[0, 1, 2])
        {'cleaned': [1, 2]}
    """

    capabilities = frozenset()

    extra_inputs = True
    needs_context = True

    def __init__(self, config: dict[str, Any] | None = None, *, name: str | None = None, **params: Any) -> None:
        super().__init__(config, name=name, **params)
        self._loaded: Any = None
        self._loaded_from: Any = None

    def get_parameters(self) -> dict[str, NodeParameter]:
        return {
            "workflow": NodeParameter(default=None, description="the inner Workflow (or its dict form)"),
            "workflow_path": NodeParameter(type=str, default=None, description="a saved workflow (.yaml/.json)"),
            "input_mapping": NodeParameter(type=dict, default=None, description="{own input: inner input}"),
            "output_mapping": NodeParameter(type=dict, default=None, description="{own output: inner node.output}"),
        }

    def get_outputs(self) -> dict[str, NodeParameter] | None:
        mapping = self.config.get("output_mapping")
        if isinstance(mapping, dict):
            return {k: NodeParameter(name=k) for k in mapping}
        return None

    def input_name(self) -> str | None:
        mapping = self.config.get("input_mapping")
        if isinstance(mapping, dict) and len(mapping) == 1:
            return next(iter(mapping))
        return "data"

    def output_name(self, outputs: dict[str, Any] | None = None) -> str | None:
        mapping = self.config.get("output_mapping")
        if isinstance(mapping, dict) and len(mapping) == 1:
            return next(iter(mapping))
        return super().output_name(outputs)

    def validate_config(self) -> list[str | Problem]:
        wf, path = self.config.get("workflow"), self.config.get("workflow_path")
        if wf is None and path is None:
            return [Problem(parameter="workflow", expected="Workflow | path",
                            message="give the inner workflow as workflow=... or workflow_path='x.yaml'")]
        if path is not None and wf is None:
            try:
                resolved = self._path(path)
            except SecurityError as exc:
                return [Problem(parameter="workflow_path", expected="a file in the tenant's directory",
                                got=str(path), message=exc.message)]
            if not os.path.exists(resolved):
                return [Problem(parameter="workflow_path", expected="an existing .yaml/.json file", got=str(path),
                                message=f"parameter 'workflow_path': file '{path}' does not exist")]
        return []

    def validate_with(self, loader: WorkflowLoader) -> list[str | Problem]:
        problems = self.validate_config()
        if problems:
            return problems
        wf, path = self.config.get("workflow"), self.config.get("workflow_path")
        # The inner workflow's validation comes back here if it includes itself, directly
        # or through a file: track what is being validated on this thread.
        key = id(wf) if wf is not None else os.path.realpath(str(path))
        active = _validating.__dict__.setdefault("keys", set())
        if key in active:
            return ["the inner workflow includes itself (a workflow cannot contain itself)"]
        active.add(key)
        try:
            self.inner_workflow(loader, wf, path).compile()
        except KailashError as exc:
            inner = getattr(exc, "problems", None) or [Problem(message=str(exc))]
            return [Problem(parameter="workflow_path" if wf is None else "workflow", expected="a valid workflow",
                            message=f"inner workflow: {p.message}") for p in inner]
        finally:
            active.discard(key)
        return []

    def to_dict(self) -> dict[str, Any]:
        """The node for saving; an inline inner workflow is saved as its dict form."""
        d = super().to_dict()
        inner = d["config"].get("workflow")
        if inner is not None and not isinstance(inner, dict) and hasattr(inner, "to_dict"):
            d["config"]["workflow"] = inner.to_dict()
        return d

    def inner_workflow(self, loader: WorkflowLoader, workflow: Any = None, workflow_path: str | None = None) -> Any:
        """The inner workflow, loaded through ``loader`` (the run's context, or validation's loader)."""
        source = workflow if workflow is not None else workflow_path
        if self._loaded is not None and self._loaded_from is source:
            return self._loaded
        if workflow is not None:
            wf = loader.load_workflow(workflow)
        elif workflow_path:
            path = self._path(workflow_path)
            if not os.path.exists(path):
                raise NodeConfigurationError(
                    f"node {self.label} (WorkflowNode): workflow_path '{workflow_path}' does not exist",
                    node_id=self.name, parameter="workflow_path", expected="an existing .yaml/.json file",
                    got=workflow_path,
                )
            wf = loader.load_workflow(path)
        else:
            raise NodeConfigurationError(
                f"node {self.label} (WorkflowNode): give the inner workflow as workflow=... or workflow_path=...",
                node_id=self.name, parameter="workflow", expected="Workflow | path",
            )
        self._loaded, self._loaded_from = wf, source
        return wf

    def _path(self, workflow_path: Any) -> str:
        """The file to load: for a gateway tenant, inside its own directory (same error whether or not it exists)."""
        return tenant_file(workflow_path, who=f"node {self.label} (WorkflowNode)", parameter="workflow_path",
                           node_id=self.name)

    def tenant_inner_workflow(self) -> Any:
        """The inner workflow known from the configuration, for the tenant capability check (else ``None``)."""
        wf, path = self.config.get("workflow"), self.config.get("workflow_path")
        if wf is None and path is None:
            return None
        try:
            return self.inner_workflow(standalone_context(f"node {self.label} (WorkflowNode)"), wf, path)
        except SecurityError:
            raise
        except KailashError:
            return None  # reported by validate_config

    def _check_tenant(self, wf: Any) -> None:
        scope = current_tenant()
        if scope is None:
            return
        problems = workflow_problems(wf, scope.capabilities, tenant_id=scope.tenant_id)
        if problems:
            raise SecurityError(f"node {self.label} (WorkflowNode): inner workflow '{wf.name}' is refused: "
                                + "; ".join(problems), node_id=self.name, parameter="workflow")

    def run(self, **inputs: Any) -> dict[str, Any]:
        # Direct execution outside a workflow: the loaded runtime provides a fresh, unrecorded run.
        return self.run_in_context(standalone_context(f"node {self.label} (WorkflowNode)"), **inputs)

    def run_in_context(self, context: ExecutionContext | None, /, **inputs: Any) -> dict[str, Any]:
        if context is None:
            return self.run(**inputs)
        own = {k: inputs.pop(k, None) for k in _OWN}
        wf = self.inner_workflow(context, own["workflow"], own["workflow_path"])
        self._check_tenant(wf)  # an inner workflow may come from a run parameter: check what it holds
        plan = wf.compile()
        params = self._inner_parameters(plan, inputs, own["input_mapping"])
        try:
            results = context.run_workflow(wf, params)
        except KailashError as exc:
            inner = exc.node_id
            err = NodeExecutionError(
                f"node {self.label} (WorkflowNode): inner node '{inner}' of workflow '{wf.name}' failed: {exc.message}",
                node_id=self.name, parameter=exc.parameter,
            )
            err.inner_node_id = inner  # type: ignore[attr-defined]
            raise err from exc
        return self._outputs(plan, results, own["output_mapping"])

    def _inner_parameters(self, plan: Any, inputs: dict[str, Any], mapping: dict[str, str] | None) -> dict[str, Any]:
        params: dict[str, dict[str, Any]] = {}
        pairs = mapping.items() if mapping else ((k, k) for k in inputs)
        for port, inner in pairs:
            if port not in inputs:
                continue
            value = inputs[port]
            if "." in inner and inner.split(".", 1)[0] in plan.by_id:
                node_id, param = inner.split(".", 1)
                params.setdefault(node_id, {})[param] = value
                continue
            takers = [s for s in plan.entries if s.accepts is None or inner in s.accepts]
            if not takers and mapping:
                raise NodeConfigurationError(
                    f"node {self.label} (WorkflowNode): input_mapping sends '{port}' to '{inner}', but no entry node "
                    f"of workflow '{plan.name}' takes an input '{inner}' (entry nodes: "
                    f"{', '.join(s.id for s in plan.entries)}); use 'node_id.param'",
                    node_id=self.name, parameter="input_mapping",
                )
            for s in takers:
                params.setdefault(s.id, {})[inner] = value
        return params

    def _outputs(self, plan: Any, results: Mapping[str, dict[str, Any]], mapping: dict[str, str] | None,
                 ) -> dict[str, Any]:
        exits = [e for e in plan.exits if e in results]
        if not mapping:
            if len(exits) == 1:
                return dict(results[exits[0]])
            return {e: results[e] for e in exits}
        out = {}
        for port, inner in mapping.items():
            node_id, _, name = inner.partition(".")
            if name and node_id in results:
                source = results[node_id]
            elif len(exits) == 1:
                source, name = results[exits[0]], inner
            else:
                raise NodeConfigurationError(
                    f"node {self.label} (WorkflowNode): output_mapping '{port}': '{inner}' is ambiguous; "
                    f"the inner workflow has exit nodes {', '.join(exits)} — write 'node_id.output'",
                    node_id=self.name, parameter="output_mapping",
                )
            if name not in source:
                raise NodeExecutionError(
                    f"node {self.label} (WorkflowNode): output_mapping '{port}': inner output '{inner}' was not "
                    f"produced (available: {', '.join(source)})",
                    node_id=self.name, parameter="output_mapping",
                )
            out[port] = source[name]
        return out
