"""Validating a workflow and compiling it into an :class:`~kailash.workflow.plan.ExecutionPlan`.

``compile_workflow`` checks the whole graph — unknown ids, ports and parameters, wrong
types, inputs fed twice, node configuration, cycles — gathering every problem and
raising one :class:`WorkflowValidationError`, then precomputes what the engine needs per
node. It runs once per graph change (``Workflow.compile`` caches the plan).
"""

from __future__ import annotations

import difflib
from collections import deque
from typing import TYPE_CHECKING, Any

from kailash.errors import Problem, WorkflowValidationError
from kailash.nodes.base import Node, unknown_parameter_message
from kailash.workflow.plan import Edge, ExecutionPlan, Step
from kailash.workflow.serialization import WORKFLOW_LOADER

if TYPE_CHECKING:
    from kailash.workflow.graph import Workflow

__all__ = ["compile_workflow"]


def compile_workflow(workflow: Workflow) -> ExecutionPlan:
    """Validate ``workflow`` and build its plan; raise one error listing every problem."""
    nodes = workflow.nodes
    problems: list[Problem] = []
    incoming: dict[str, list[Edge]] = {n: [] for n in nodes}
    feeds: dict[tuple[str, str], list[str]] = {}
    maybe_fed: dict[str, set[str] | None] = {n: set() for n in nodes}

    for node_id, node in nodes.items():
        where = f"node '{node_id}' ({type(node).__name__})"
        try:
            params = node.parameters
        except Exception as exc:
            problems.append(Problem(node_id=node_id, message=f"{where}: get_parameters() failed: {exc}"))
            continue
        for key, value in node.config.items():
            if not node.accepts(key):
                problems.append(Problem(node_id=node_id, parameter=key, expected="a declared parameter",
                                        message=f"{where}: " + unknown_parameter_message(key, params)))
            elif key in params and (check := params[key].check()) is not None and not check(value):
                problems.append(Problem(
                    node_id=node_id, parameter=key, expected=check.expected, got=check.got(value),
                    message=f"{where}: parameter '{key}' expects {check.expected}, {check.misfit(value)}",
                ))
        for found in node.validate_with(WORKFLOW_LOADER):
            if isinstance(found, Problem):
                problems.append(Problem(node_id=node_id, parameter=found.parameter, expected=found.expected,
                                        got=found.got, message=f"{where}: {found.message}"))
            else:
                problems.append(Problem(node_id=node_id, message=f"{where}: {found}"))

    for c in workflow.connections:
        bad = False
        for end in (c.source, c.target):
            if end not in nodes:
                close = difflib.get_close_matches(end, list(nodes), n=3)
                hint = f"; did you mean {', '.join(repr(x) for x in close)}?" if close else ""
                other = c.target if end == c.source else c.source  # point at the end that exists
                problems.append(Problem(
                    node_id=other if other in nodes else None, expected="an existing node id", got=end,
                    connection=(c.source, c.target),
                    message=f"connection {c.source} -> {c.target}: no node '{end}' in the workflow "
                            f"(nodes: {', '.join(nodes) or 'none'}){hint}",
                ))
                bad = True
        if bad:
            continue
        src, dst = nodes[c.source], nodes[c.target]
        declared = src.get_outputs()
        where = f"connection {c.source} -> {c.target}"
        if c.port is not None or c.mapping is not None:
            pairs: tuple[tuple[str, str | None], ...] = (
                c.mapping if c.mapping is not None else ((str(c.port), dst.input_name()),)
            )
            for out_name, in_name in pairs:
                if declared is not None and out_name.split(".")[0] not in declared:
                    close = difflib.get_close_matches(out_name, list(declared), n=3)
                    hint = f"; did you mean {', '.join(repr(x) for x in close)}?" if close else ""
                    problems.append(Problem(
                        node_id=c.source, expected="a declared output", got=out_name, connection=(c.source, c.target),
                        message=f"{where}: node '{c.source}' ({type(src).__name__}) has no output '{out_name}' "
                                f"(outputs: {', '.join(declared) or 'none'}){hint}",
                    ))
                if in_name is None:
                    problems.append(Problem(
                        node_id=c.target, expected="a mapping to a named input", connection=(c.source, c.target),
                        message=f"{where}: node '{c.target}' ({type(dst).__name__}) has no primary input for port "
                                f"'{out_name}'; use mapping={{'{out_name}': '<input name>'}}",
                    ))
                    continue
                if not dst.accepts(in_name):
                    problems.append(Problem(
                        node_id=c.target, parameter=in_name, expected="a declared parameter",
                        connection=(c.source, c.target),
                        message=f"{where}: node '{c.target}' ({type(dst).__name__}): "
                                + unknown_parameter_message(in_name, dst.parameters),
                    ))
                feeds.setdefault((c.target, in_name), []).append(c.source)
                fed = maybe_fed[c.target]
                if fed is not None:
                    fed.add(in_name)
            edge = Edge(c.source, src, tuple(pairs), None, None, src.conditional_outputs)  # type: ignore[arg-type]
        else:
            primary_to = dst.input_name()
            primary_from = src.output_name() if (src.primary_output or declared) else None
            if declared and primary_from is None:
                # The source names its outputs but none is primary (an auth node's token and
                # headers): it offers them by name only and feeds no primary input.
                primary_to = None
            if primary_to is not None:
                feeds.setdefault((c.target, primary_to), []).append(c.source)
            if declared is None:
                maybe_fed[c.target] = None
            elif maybe_fed[c.target] is not None:
                maybe_fed[c.target].update(declared)  # type: ignore[union-attr]
                if primary_to:
                    maybe_fed[c.target].add(primary_to)  # type: ignore[union-attr]
            edge = Edge(c.source, src, None, primary_to, primary_from, src.conditional_outputs)
        incoming[c.target].append(edge)

    for (target, input_name), sources in feeds.items():
        if len(sources) > 1 and not (nodes[target].collects_inputs and input_name == nodes[target].input_name()):
            problems.append(Problem(
                node_id=target, parameter=input_name, expected="one connection", got=f"{len(sources)} connections",
                message=f"node '{target}': input '{input_name}' is fed by {len(sources)} connections "
                        f"({', '.join(sources)}); feed it once, map the others to other inputs, or use a MergeNode",
            ))

    order = _topological_order(nodes, workflow.connections, problems)
    steps: list[Step] = []
    if not problems:
        successors: dict[str, list[str]] = {n: [] for n in nodes}
        for c in workflow.connections:
            if c.target not in successors[c.source]:
                successors[c.source].append(c.target)
        for node_id in order:
            node = nodes[node_id]
            params = node.parameters
            fed = maybe_fed[node_id]
            static_missing = tuple(
                n for n, p in params.items()
                if p.required and p.default is None and node.config.get(n) is None
                and (fed is not None and n not in fed)
            )
            checks = tuple(
                (n, check) for n, p in params.items() if (check := p.check()) is not None
            )
            collect = node.input_name() if node.collects_inputs else None
            steps.append(Step(
                id=node_id,
                node=node,
                edges=tuple(incoming[node_id]),
                base={n: p.default for n, p in params.items()},
                accepts=None if node.extra_inputs else frozenset(params),
                checks=checks,
                required=tuple(n for n, p in params.items() if p.required),
                static_missing=static_missing,
                collect=collect,
                successors=tuple(successors[node_id]),
                policy=workflow.policies.get(node_id),
                direct=not node.needs_context and node_id not in workflow.policies,
            ))
    if problems:
        raise WorkflowValidationError.listing(f"workflow '{workflow.name}' is invalid", problems)
    return ExecutionPlan(workflow, steps)


def _topological_order(nodes: dict[str, Node], connections: list[Any], problems: list[Problem]) -> list[str]:
    indegree = {n: 0 for n in nodes}
    succ: dict[str, list[str]] = {n: [] for n in nodes}
    for c in connections:
        if c.source in nodes and c.target in nodes:
            succ[c.source].append(c.target)
            indegree[c.target] += 1
    queue = deque(n for n in nodes if indegree[n] == 0)
    order = []
    while queue:
        n = queue.popleft()
        order.append(n)
        for m in succ[n]:
            indegree[m] -= 1
            if indegree[m] == 0:
                queue.append(m)
    if len(order) < len(nodes):
        remaining = {n for n in nodes if indegree[n] > 0}
        cycle = _find_cycle(remaining, succ)
        problems.append(Problem(expected="no cycle",
                                message=f"the workflow has a cycle: {' -> '.join(cycle)}"))
    return order


def _find_cycle(remaining: set[str], succ: dict[str, list[str]]) -> list[str]:
    # Every node left over still has an unprocessed predecessor, so walking
    # predecessors inside ``remaining`` must close a loop.
    pred: dict[str, list[str]] = {n: [] for n in remaining}
    for n in remaining:
        for m in succ[n]:
            if m in remaining:
                pred[m].append(n)
    cur = sorted(remaining)[0]
    path, seen = [cur], {cur: 0}
    while True:
        cur = pred[cur][0]
        if cur in seen:
            cycle = path[seen[cur]:] + [cur]
            return list(reversed(cycle))
        seen[cur] = len(path)
        path.append(cur)
