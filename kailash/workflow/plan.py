"""The immutable execution plan and the data-flow rules.

A plan (built by :func:`kailash.workflow.validation.compile_workflow`) holds, per node,
what the engine needs on the hot path: its incoming edges in connection order, its
defaults, the type checks worth doing. ``ExecutionPlan.prepare`` checks runtime
parameters; ``ExecutionPlan.gather`` applies the data-flow rules of SPEC §3 for one
node. Every runtime calls them, so the rules live here once. Nothing here runs a node.

A plan is immutable: its steps are frozen, each step's gather function is compiled
when the plan is built (:func:`compile_gather`), and the plan refuses attribute
writes. Per-run state lives in the run (``kailash.runtime.scheduler``), and the state
of failure policies in the runtime (``kailash.runtime.policies``).
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, replace
from functools import partial
from types import FunctionType
from typing import TYPE_CHECKING, Any

from kailash.errors import NodeConfigurationError, NodeExecutionError, Problem, WorkflowValidationError
from kailash.nodes.base import Node, type_name, unknown_parameter_message
from kailash.nodes.data.stream_source import is_stream_source

if TYPE_CHECKING:
    from kailash.workflow.graph import Workflow

__all__ = ["ExecutionPlan", "Step", "Edge", "MISSING"]

class _Missing:
    """The "no value" sentinel; pickles by reference, so a plan sent to another process
    (cloudpickle: DaskRuntime) still compares its ``take`` results with this module's."""

    __slots__ = ()

    def __reduce__(self) -> str:
        return "_MISSING"

    def __repr__(self) -> str:
        return "MISSING"


_MISSING = _Missing()
MISSING = _MISSING  # what a step's ``take`` returns when its node must be called with ``gather``'s inputs


@dataclass(frozen=True, slots=True)
class Edge:
    """An incoming connection as the engine uses it."""

    source: str
    source_node: Node
    pairs: tuple[tuple[str, str], ...] | None  # explicit (output, input); None = default rule
    primary_to: str | None  # default rule: the target's primary input
    primary_from: str | None  # default rule: the source's declared primary output
    conditional: bool  # a missing port means "branch not taken"


@dataclass(frozen=True, slots=True)
class Step:
    """One node of the plan (frozen; its ``gather`` is compiled when the plan is built)."""

    id: str
    node: Node
    edges: tuple[Edge, ...]
    base: dict[str, Any]
    accepts: frozenset[str] | None  # None = accepts any input name
    checks: tuple[tuple[str, Any], ...]  # (name, TypeCheck): kailash.nodes.types' rule, compiled
    required: tuple[str, ...]
    static_missing: tuple[str, ...]
    collect: str | None
    successors: tuple[str, ...] = ()
    policy: Any = None  # a failure policy (retries, timeout, breaker, cache), if one is set
    direct: bool = False  # the engine may call node.run(**inputs) itself (no context, no policy)
    gather: Any = None  # (results, overrides) -> inputs | None; compiled by ExecutionPlan


class ExecutionPlan:
    """A validated, immutable view of a workflow, ready to run.

    Attributes:
        steps: the nodes in topological order.
        by_id: ``{node_id: Step}``.
        entries: steps without incoming connections.
        exits: ids of nodes nothing depends on.
        predecessors: ``{node_id: number of distinct upstream nodes}`` (for readiness).
        order: ``{node_id: position in steps}``.
        stream_sources: ids of nodes that can be a stream source
            (:mod:`kailash.nodes.data.stream_source`); a runtime asks them whether they stream.
        inline: the steps as the inline scheduler walks them, ``(id, gather, node, step, take)``
            each: ``step`` is ``None`` for a direct node (the scheduler calls ``node.run``);
            ``take``, if not ``None``, gives the node's one input value for ``node.run(value)``
            (:func:`positional_take`), or ``MISSING`` when ``gather`` must be used.
    """

    __slots__ = ("workflow", "version", "name", "steps", "by_id", "entries", "exits", "needs_inputs",
                 "secret_names", "predecessors", "order", "stream_sources", "inline", "config_secrets")

    workflow: Workflow
    version: int
    name: str
    steps: tuple[Step, ...]
    by_id: dict[str, Step]
    entries: tuple[Step, ...]
    exits: tuple[str, ...]
    needs_inputs: bool
    secret_names: dict[str, frozenset[str]]
    predecessors: dict[str, int]
    order: dict[str, int]
    stream_sources: tuple[str, ...]
    inline: tuple[tuple[str, Any, Node, Step | None, Any], ...]
    config_secrets: frozenset[str]  # the plain values of the Secrets in the nodes' configs (never show them)
    MISSING: Any = _MISSING  # what a step's ``take`` returns when its node needs ``gather``'s inputs

    def __init__(self, workflow: Workflow, steps: list[Step]) -> None:
        steps = [s if s.gather is not None else replace(s, gather=compile_gather(s)) for s in steps]
        targets = {e.source for s in steps for e in s.edges}
        init = object.__setattr__
        init(self, "workflow", workflow)
        init(self, "version", workflow._version)
        init(self, "name", workflow.name)
        init(self, "steps", tuple(steps))
        init(self, "by_id", {s.id: s for s in steps})
        init(self, "entries", tuple(s for s in steps if not s.edges))
        init(self, "exits", tuple(s.id for s in steps if s.id not in targets))
        init(self, "needs_inputs", any(s.static_missing for s in steps))
        init(self, "secret_names", {
            s.id: names for s in steps
            if (names := frozenset(n for n, p in s.node.parameters.items() if p.secret))
        })
        init(self, "predecessors", {s.id: len({e.source for e in s.edges}) for s in steps})
        init(self, "order", {s.id: i for i, s in enumerate(steps)})
        init(self, "stream_sources", tuple(s.id for s in steps if is_stream_source(s.node)))
        init(self, "inline", tuple((s.id, s.gather, s.node, None if s.direct else s, positional_take(s))
                                   for s in steps))
        # a node may echo its configured credential (a service answering with it, a print): every run of
        # the plan scrubs these from what it records, raises and publishes
        from kailash.security.secrets import plain_secret_values

        init(self, "config_secrets", plain_secret_values(*[getattr(s.node, "config", None) for s in steps]))

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError(f"ExecutionPlan is immutable: cannot set '{name}' (keep per-run state in the run)")

    def __delattr__(self, name: str) -> None:
        raise AttributeError(f"ExecutionPlan is immutable: cannot delete '{name}'")

    def __getstate__(self) -> dict[str, Any]:  # pickled to Dask workers
        return {k: getattr(self, k) for k in self.__slots__}

    def __setstate__(self, state: dict[str, Any]) -> None:
        for k, v in state.items():
            object.__setattr__(self, k, v)

    def descendants(self, node_ids: Any) -> frozenset[str]:
        """``node_ids`` and every node downstream of them."""
        out, stack = set(node_ids), list(node_ids)
        while stack:
            for nxt in self.by_id[stack.pop()].successors:
                if nxt not in out:
                    out.add(nxt)
                    stack.append(nxt)
        return frozenset(out)

    # -- before a run ----------------------------------------------------------------------
    def prepare(self, parameters: dict[str, Any] | None) -> dict[str, dict[str, Any]]:
        """Split runtime ``parameters`` into per-node overrides; raise if anything is wrong.

        Keys that are node ids give that node's inputs; any other key is a workflow
        input, offered to every entry node (no incoming connection) that accepts it.
        """
        if not parameters:
            if self.needs_inputs:
                self._raise(self._missing_problems({}))
            return {}
        if not isinstance(parameters, dict):
            raise WorkflowValidationError(
                f"parameters must be a dict of {{node_id: {{name: value}}}}, got {type(parameters).__name__}",
                parameter="parameters", expected="dict",
            )
        problems: list[Problem] = []
        per_node: dict[str, dict[str, Any]] = {}
        for key, value in parameters.items():
            step = self.by_id.get(key)
            if step is None and isinstance(value, dict):
                close = difflib.get_close_matches(key, list(self.by_id), n=1, cutoff=0.75)
                if close:  # {"ech": {...}} is almost surely a typo for node 'echo', not a workflow input
                    problems.append(Problem(parameter=key, expected="a node id", got=key,
                                            message=f"parameter '{key}' names no node; did you mean node '{close[0]}'?"))
                    continue
            if step is None:
                takers = [s for s in self.entries if s.accepts is None or key in s.accepts]
                if not takers:
                    close = difflib.get_close_matches(key, list(self.by_id), n=3)
                    hint = f"; did you mean node {', '.join(repr(c) for c in close)}?" if close else ""
                    problems.append(Problem(
                        parameter=key, expected="a node id or an entry node's input", got=key,
                        message=f"parameter '{key}' names no node and no entry node takes an input '{key}' "
                                f"(nodes: {', '.join(self.by_id)}){hint}",
                    ))
                for s in takers:
                    per_node.setdefault(s.id, {}).setdefault(key, value)
                continue
            if not isinstance(value, dict):
                problems.append(Problem(
                    node_id=key, expected="dict", got=type(value).__name__,
                    message=f"parameters['{key}'] must be a dict of input values for node '{key}', "
                            f"got {type(value).__name__}",
                ))
                continue
            mine = per_node.setdefault(key, {})
            for name, v in value.items():
                if step.accepts is not None and name not in step.accepts:
                    problems.append(Problem(node_id=key, parameter=name, expected="a declared parameter",
                                            message=f"node '{key}': "
                                            + unknown_parameter_message(name, step.node.parameters)))
                    continue
                p = step.node.parameters.get(name)
                if p is not None and (check := p.check()) is not None and not check(v):
                    problems.append(Problem(
                        node_id=key, parameter=name, expected=check.expected, got=check.got(v),
                        message=f"node '{key}': parameter '{name}' expects {check.expected}, {check.misfit(v)}",
                    ))
                mine[name] = v
        problems.extend(self._missing_problems(per_node))
        if problems:
            self._raise(problems)
        return per_node

    def redact_parameters(self, parameters: dict[str, Any] | None) -> dict[str, Any] | None:
        """``parameters`` with the values of secret parameters wrapped as :class:`Secret`,
        so run records store a reference instead of the value."""
        if not parameters or not self.secret_names:
            return parameters
        from kailash.security.secrets import Secret

        out: dict[str, Any] = {}
        entry_secret = {n for s in self.entries for n in self.secret_names.get(s.id, ())}
        for key, value in parameters.items():
            names = self.secret_names.get(key)
            if names and isinstance(value, dict):
                out[key] = {k: (Secret(v) if k in names and v is not None and not isinstance(v, Secret) else v)
                            for k, v in value.items()}
            elif key in entry_secret and not isinstance(value, Secret) and value is not None:
                out[key] = Secret(value)
            else:
                out[key] = value
        return out

    def _missing_problems(self, per_node: dict[str, dict[str, Any]]) -> list[Problem]:
        out = []
        for s in self.steps:
            for name in s.static_missing:
                if per_node.get(s.id, {}).get(name) is None:
                    p = s.node.parameters[name]
                    out.append(Problem(
                        node_id=s.id, parameter=name, expected=type_name(p.type), got="no value",
                        message=f"node '{s.id}' ({type(s.node).__name__}) requires parameter '{name}' "
                                f"({type_name(p.type)}): set it in the node's config, connect an upstream node, "
                                f"or pass parameters={{'{s.id}': {{'{name}': ...}}}}",
                    ))
        return out

    def _raise(self, problems: list[Problem]) -> None:
        raise WorkflowValidationError.listing(f"workflow '{self.name}' is invalid", problems)

    # -- during a run ----------------------------------------------------------------------
    def gather(self, step: Step, results: dict[str, dict[str, Any]], overrides: dict[str, Any] | None) -> dict[str, Any] | None:
        """The inputs for ``step`` from what has run, or ``None`` when the node is skipped.

        A node runs when every incoming connection is active (its source ran and, for
        a branch port, that branch was taken); a merge node runs when any is.
        Precedence, later wins: defaults, values offered by name, config, connected
        values, runtime parameters.
        """
        inputs: dict[str, Any] | None = step.gather(results, overrides)
        return inputs



def gather_step(step: Step, results: dict[str, dict[str, Any]], overrides: dict[str, Any] | None) -> dict[str, Any] | None:
    """The inputs for ``step`` from what has run, or ``None`` when the node is skipped.

    A node runs when every incoming connection is active (its source ran and, for
    a branch port, that branch was taken); a merge node runs when any is.
    Precedence, later wins: defaults, values offered by name, config, connected
    values, runtime parameters.
    """
    node = step.node
    inputs = dict(step.base)
    cfg = node.config
    edges = step.edges
    if edges:
        late: list[tuple[str, Any]] = []  # connected values: they beat config, applied after it
        collect = step.collect
        collected: list[Any] | None = [] if collect else None
        accepts = step.accepts
        for e in edges:
            out = results.get(e.source)
            if out is None:
                if collect:
                    continue
                return None
            if e.pairs is None:
                for k, v in out.items():
                    if accepts is None or k in accepts:
                        inputs[k] = v
                to = e.primary_to
                if to is not None:
                    p = e.primary_from
                    if p is None:
                        p = next(iter(out)) if len(out) == 1 else ("result" if "result" in out else "data")
                    if p in out:
                        if to == collect:
                            collected.append(out[p])  # type: ignore[union-attr]
                        else:
                            late.append((to, out[p]))
                continue
            vals: list[tuple[str, Any]] | None = []
            for o, i in e.pairs:
                v = out.get(o, _MISSING)
                if v is _MISSING and "." in o:
                    v = _dig(out, o)
                if v is _MISSING:
                    if e.conditional:  # a branch port not taken: the edge is inactive
                        vals = None
                        break
                    raise NodeExecutionError(
                        f"node '{e.source}' produced no output '{o}' for input '{i}' of node '{step.id}' "
                        f"(it produced: {', '.join(out) or 'nothing'})",
                        node_id=step.id, parameter=i, expected=f"output '{o}' of '{e.source}'",
                    )
                vals.append((i, v))  # type: ignore[union-attr]  # None only after the break above
            if vals is None:
                if collect:
                    continue
                return None
            for i, v in vals:
                if i == collect:
                    collected.append(v)  # type: ignore[union-attr]
                else:
                    late.append((i, v))
        if collected is not None:
            if not collected:
                return None
            late.append((collect, collected))  # type: ignore[arg-type]
        if cfg:
            inputs.update(cfg)
        for k, v in late:
            inputs[k] = v
    elif cfg:
        inputs.update(cfg)
    if overrides:
        inputs.update(overrides)
    if step.checks or step.required:
        _check_inputs(step, inputs)
    return inputs


def _check_inputs(step: Step, inputs: dict[str, Any]) -> None:
    """Type and presence checks of one node's final inputs (raises NodeConfigurationError)."""
    node = step.node
    for name, check in step.checks:
        v = inputs.get(name)
        if v is not None and not check(v):
            raise NodeConfigurationError(
                f"node '{step.id}' ({type(node).__name__}): parameter '{name}' expects "
                f"{check.expected}, {check.misfit(v)}",
                node_id=step.id, parameter=name, expected=check.expected, got=check.got(v),
            )
    for name in step.required:
        if inputs.get(name) is None:
            raise NodeConfigurationError(
                f"node '{step.id}' ({type(node).__name__}): required parameter '{name}' received no value",
                node_id=step.id, parameter=name, expected=type_name(node.parameters[name].type),
            )


def _single_edge_gather(step: Step, edge: Edge) -> Any:
    """``gather_step`` specialised for the commonest shape — one plain ``connect(a, b)`` —
    with everything it reads bound once (the engine's hot path: a chain of nodes).

    Its fast path is the commonest run of that shape: the source produced one output that
    goes to the target's primary input, no config and no runtime parameters. The defaults
    (``step.base``) are checked once, here, so only the connected value is checked per
    call; anything else takes the general path (same rules as :func:`gather_step`).
    """
    source, base, node, accepts = edge.source, step.base, step.node, step.accepts
    to, primary = edge.primary_to, edge.primary_from
    checks = tuple((n, c.exact, c.fits) for n, c in step.checks)
    required = step.required

    def general(results: dict[str, dict[str, Any]], overrides: dict[str, Any] | None) -> dict[str, Any] | None:
        out = results.get(source)
        if out is None:
            return None
        inputs = base.copy()
        if accepts is None:
            inputs.update(out)
        else:
            for k in out:
                if k in accepts:
                    inputs[k] = out[k]
        cfg = node.config
        if cfg:
            inputs.update(cfg)
        if to is not None:
            p = primary
            if p is None:
                p = next(iter(out)) if len(out) == 1 else ("result" if "result" in out else "data")
            if p in out:
                inputs[to] = out[p]
        if overrides:
            inputs.update(overrides)
        for name, exact, fits in checks:  # inlined: an exact type needs no call
            v = inputs.get(name)
            if v is not None and type(v) not in exact and not fits(v):
                _check_inputs(step, inputs)  # raises, naming the parameter
        for name in required:
            if inputs.get(name) is None:
                _check_inputs(step, inputs)
        return inputs

    if to is None or not _base_fits(step, to):
        return general
    to_check = next(((exact, fits) for n, exact, fits in checks if n == to), None)
    to_exact, to_fits = to_check if to_check is not None else (frozenset(), None)
    to_required = to in required

    def clean(k: str) -> bool:  # the one output `k` goes to `to` only (it is not offered by name too)
        return (k == to or (accepts is not None and k not in accepts)) and (primary is None or k == primary)

    # the name of the source's one output, learnt from the first run (a hint: any value is safe)
    key: Any = primary if primary is not None and clean(primary) else None

    def learn(results: dict[str, dict[str, Any]], overrides: dict[str, Any] | None) -> dict[str, Any] | None:
        nonlocal key
        out = results[source]
        if primary is None:
            k = next(iter(out))
            if clean(k):
                key = k
        return general(results, overrides)

    missing = _MISSING
    solo = set(base) <= {to}  # the inputs are the connected value alone

    def gather(results: dict[str, dict[str, Any]], overrides: dict[str, Any] | None) -> dict[str, Any] | None:
        out = results.get(source)
        if out is None:
            return None
        if overrides or len(out) != 1 or node.config:
            return general(results, overrides)
        v = out.get(key, missing)
        if v is missing:
            return learn(results, overrides)
        if solo:
            inputs = {to: v}
        else:
            inputs = base.copy()
            inputs[to] = v
        if v is None:
            if to_required:
                _check_inputs(step, inputs)
        elif to_fits is not None and type(v) not in to_exact and not to_fits(v):
            _check_inputs(step, inputs)
        return inputs

    if solo:
        def take(results: dict[str, dict[str, Any]]) -> Any:
            """The connected value when it is the node's only input and passes its check (the
            gather fast path without the inputs dict); ``_MISSING`` otherwise (then ``gather``)."""
            out = results.get(source)
            if out is None or len(out) != 1 or node.config:
                return missing
            v = out.get(key, missing)
            if v is None:
                return missing if to_required else v
            if to_fits is not None and type(v) not in to_exact and not to_fits(v):
                return missing
            return v

        gather.take = take  # type: ignore[attr-defined]  # the scheduler calls node.run(v) with it
    return gather


def positional_take(step: Step) -> Any:
    """``step``'s ``take`` (see :func:`_single_edge_gather`) when its node's ``run`` is a plain
    function whose first parameter is the connected input: ``node.run(v)`` then binds exactly
    as ``node.run(**{input: v})`` does, without building the keyword dict. ``None`` otherwise."""
    take = getattr(step.gather, "take", None)
    if take is None or not step.direct or not step.edges:
        return None
    node = step.node
    run = next((k.__dict__["run"] for k in type(node).__mro__ if "run" in k.__dict__), None)  # as defined:
    # a plain method (not a staticmethod, classmethod or decorated function), not replaced on the node
    if type(run) is not FunctionType or hasattr(run, "__wrapped__") or "run" in getattr(node, "__dict__", {}):
        return None
    code = run.__code__
    if code.co_posonlyargcount or code.co_argcount < 2 or code.co_varnames[1] != step.edges[0].primary_to:
        return None
    return take


def _base_fits(step: Step, to: str) -> bool:
    """Whether ``step``'s defaults pass its checks, ``to`` aside (then only ``to`` is checked per call)."""
    base = step.base
    for name, check in step.checks:
        v = base.get(name)
        if name != to and v is not None and not check(v):
            return False
    return all(name == to or base.get(name) is not None for name in step.required)


def compile_gather(step: Step) -> Any:
    """The input-gathering function of ``step`` (specialised where the shape allows).

    ``step`` is not changed: the plan stores a copy of it holding the function.
    """
    edges = step.edges
    if len(edges) == 1 and edges[0].pairs is None and not step.collect:
        return _single_edge_gather(step, edges[0])
    return partial(gather_step, step)


def _dig(out: dict[str, Any], path: str) -> Any:
    cur: Any = out
    for part in path.split("."):
        if isinstance(cur, dict) and part in cur:
            cur = cur[part]
        else:
            return _MISSING
    return cur

