"""Routing and merging: SwitchNode and MergeNode.

A SwitchNode sends a record (or each record of a list) to the first branch whose
condition holds; branches not taken produce no output, so the engine skips the nodes
reachable only through them. A MergeNode combines whatever arrived from the branches
that ran, in connection order.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from kailash.errors import NodeConfigurationError, NodeExecutionError, Problem
from kailash.nodes.base import Node, NodeParameter, register_node
from kailash.nodes.logic.expressions import compile_expression

__all__ = ["SwitchNode", "MergeNode", "merge_values", "check_strategy", "MERGE_STRATEGIES"]

logger = logging.getLogger(__name__)


@register_node(category="logic")
class SwitchNode(Node):
    """Route data to named output ports.

    Forms:
        * ``condition="status", outputs={"done": "status == 'done'", ...}``: each port's
          expression is evaluated with the record's fields as variables (and ``value`` =
          the record's ``condition`` field, ``record`` = the record);
        * ``condition="tier", outputs=["gold", "silver"]``: port ``v`` takes records whose
          ``tier`` equals ``v``;
        * ``condition="amount > 100"`` with no outputs: ports ``true`` and ``false``.

    A dict goes to the first matching port; a list is partitioned record by record.
    What matches nothing goes to port ``default``.

    Example:
        >>> switch = SwitchNode(condition="tier", outputs=["gold", "silver"])
        >>> switch.execute(data=[{"tier": "gold"}, {"tier": "bronze"}])
        {'gold': [{'tier': 'gold'}], 'default': [{'tier': 'bronze'}]}
    """

    capabilities = frozenset()

    primary_input = "data"
    conditional_outputs = True

    def __init__(self, config: dict[str, Any] | None = None, *, name: str | None = None, **params: Any) -> None:
        super().__init__(config, name=name, **params)
        self._routes: list[tuple[str, Callable[[Any], bool]]] | None = None
        self._routes_key: Any = None

    def get_parameters(self) -> dict[str, NodeParameter]:
        return {
            "data": NodeParameter(required=True, description="a record (dict) or a list of records"),
            "condition": NodeParameter(type=str, required=True,
                                       description="the field to route on, or a boolean expression"),
            "outputs": NodeParameter(type=(dict, list), default=None,
                                     description="{port: expression} or [value, ...]"),
        }

    def get_outputs(self) -> dict[str, NodeParameter]:
        outputs = self.config.get("outputs")
        names = list(outputs) if isinstance(outputs, (dict, list)) else ["true", "false"]
        return {str(n): NodeParameter(name=str(n)) for n in [*names, "default"]}

    def validate_config(self) -> list[str | Problem]:
        try:
            self._build(self.config.get("condition"), self.config.get("outputs"))
        except NodeConfigurationError as exc:
            return [Problem(parameter=exc.parameter, message=str(exc).split(": ", 1)[-1])]
        return []

    def _build(self, condition: Any, outputs: Any) -> list[tuple[str, Callable[[Any], bool]]]:
        key = (condition, repr(outputs))
        if self._routes is not None and self._routes_key == key:
            return self._routes
        if condition is None:
            return []
        routes: list[tuple[str, Callable[[Any], bool]]] = []
        field = str(condition)
        if isinstance(outputs, dict):
            for port, expr in outputs.items():
                fn = compile_expression(expr, node_id=self.name, parameter=f"outputs.{port}")
                routes.append((str(port), _expression_test(fn, field)))
        elif isinstance(outputs, list):
            for value in outputs:
                routes.append((str(value), _equality_test(field, value)))
        elif outputs is None:
            fn = compile_expression(field, node_id=self.name, parameter="condition")
            test = _expression_test(fn, None)
            routes = [("true", test), ("false", _negate(test))]
        self._routes, self._routes_key = routes, key
        return routes

    def run(self, data: Any, condition: str, outputs: Any = None, **_: Any) -> dict[str, Any]:
        routes = self._build(condition, outputs)
        if isinstance(data, list):
            parts: dict[str, list[Any]] = {}
            for record in data:
                port = _first_port(routes, record)
                parts.setdefault(port, []).append(record)
            if "default" in parts:
                logger.info("node %s: %d record(s) matched no branch; sent to port 'default'",
                            self.label, len(parts["default"]))
            return parts
        port = _first_port(routes, data)
        if port == "default":
            logger.info("node %s: the record matched no branch; sent to port 'default'", self.label)
        return {port: data}


def _negate(test: Callable[[Any], bool]) -> Callable[[Any], bool]:
    return lambda record: not test(record)


def _first_port(routes: list[tuple[str, Callable[[Any], bool]]], record: Any) -> str:
    for port, test in routes:
        if test(record):
            return port
    return "default"


def _namespace(record: Any, field: str | None) -> dict[str, Any]:
    if isinstance(record, dict):
        ns = {"record": record, "data": record, "value": record.get(field) if field else None}
        ns.update((k, v) for k, v in record.items() if isinstance(k, str))
        return ns
    return {"record": record, "data": record, "value": record, **({field: record} if field else {})}


def _expression_test(fn: Callable[[dict[str, Any]], Any], field: str | None) -> Callable[[Any], bool]:
    def test(record: Any) -> bool:
        try:
            return bool(fn(_namespace(record, field)))
        except (NameError, KeyError, TypeError, AttributeError):  # a field this record lacks: no match
            return False

    return test


def _equality_test(field: str, value: Any) -> Callable[[Any], bool]:
    text = str(value)

    def test(record: Any) -> bool:
        got = record.get(field) if isinstance(record, dict) else record
        return got == value or (got is not None and str(got) == text)

    return test


def _concat(values: list[Any]) -> list[Any]:
    out: list[Any] = []
    for v in values:
        if isinstance(v, (list, tuple)):
            out.extend(v)
        else:
            out.append(v)
    return out


ON_CONFLICT = ("error", "last", "first")


class MergeConflict(ValueError):
    """Two inputs of ``dict_merge`` gave different values for one key (``on_conflict='error'``)."""

    def __init__(self, key: Any, first: int, second: int) -> None:
        super().__init__(
            f"dict_merge: inputs {first} and {second} both set key {key!r} to different values; "
            "rename the key upstream, or set on_conflict='last' or 'first' to keep one of them")
        self.key = key


def _dict_merge(values: list[Any], on_conflict: str = "error") -> dict[str, Any]:
    out: dict[str, Any] = {}
    origin: dict[Any, int] = {}
    for i, v in enumerate(values):
        if not isinstance(v, dict):
            raise TypeError(f"dict_merge needs dicts, input {i + 1} is a {type(v).__name__}")
        for k, item in v.items():
            if k in out:
                if on_conflict == "first":
                    continue
                if on_conflict == "error" and out[k] != item:
                    raise MergeConflict(k, origin[k] + 1, i + 1)
            out[k] = item
            origin[k] = i
    return out


def _zip(values: list[Any]) -> list[list[Any]]:
    return [list(t) for t in zip(*values, strict=False)]  # shortest input wins, like zip()


MERGE_STRATEGIES: dict[str, Callable[[list[Any]], Any]] = {
    "concat": _concat,
    "dict_merge": _dict_merge,
    "merge_dict": _dict_merge,
    "zip": _zip,
    "list": list,
    "first": lambda vs: vs[0] if vs else None,
}


def merge_values(node: Node, values: list[Any], strategy: str, key: str | None = None,
                 on_conflict: str = "error") -> Any:
    """Combine ``values`` by ``strategy``; errors name the node.

    ``dict_merge`` refuses two inputs that give one key different values unless
    ``on_conflict`` is ``"last"`` (the later input wins) or ``"first"``.
    """
    if strategy == "join":
        if not key:
            raise NodeConfigurationError(f"node {node.label}: merge_strategy 'join' needs a 'key'",
                                         node_id=node.name, parameter="key", expected="a field name")
        joined: dict[Any, dict[str, Any]] = {}
        for rows in values:
            for row in rows or []:
                joined.setdefault(row.get(key), {}).update(row)
        return list(joined.values())
    fn = MERGE_STRATEGIES.get(strategy)
    if fn is None:
        raise NodeConfigurationError(
            f"node {node.label}: unknown merge_strategy '{strategy}' "
            f"(expected one of: {', '.join([*MERGE_STRATEGIES, 'join'])})",
            node_id=node.name, parameter="merge_strategy", expected=" | ".join([*MERGE_STRATEGIES, "join"]), got=strategy,
        )
    try:
        if fn is _dict_merge:
            if on_conflict not in ON_CONFLICT:
                raise NodeConfigurationError(
                    f"node {node.label}: unknown on_conflict '{on_conflict}' (expected one of: {', '.join(ON_CONFLICT)})",
                    node_id=node.name, parameter="on_conflict", expected=" | ".join(ON_CONFLICT), got=str(on_conflict))
            return _dict_merge(values, on_conflict)
        return fn(values)
    except MergeConflict as exc:
        raise NodeExecutionError(f"node {node.label} ({type(node).__name__}): {exc}", node_id=node.name,
                                 parameter="on_conflict", expected="inputs with distinct keys",
                                 got=repr(exc.key)) from None
    except TypeError as exc:
        raise NodeExecutionError(f"node {node.label} ({type(node).__name__}): {exc}", node_id=node.name,
                                 parameter="data", expected=strategy) from None


def check_strategy(strategy: Any) -> list[str | Problem]:
    """Problems with a configured ``merge_strategy`` (for ``validate_config``)."""
    known = [*MERGE_STRATEGIES, "join"]
    if strategy is None or not isinstance(strategy, str) or strategy in known:
        return []
    return [Problem(parameter="merge_strategy", expected=" | ".join(known), got=strategy,
                    message=f"unknown merge_strategy '{strategy}' (expected one of: {', '.join(known)})")]


_MERGE_PARAMS = {
    "data": NodeParameter(type=list, required=False, default=None,
                          description="every value that arrived, in connection order"),
    "merge_strategy": NodeParameter(type=str, default="concat", choices=(*MERGE_STRATEGIES, "join"),
                                    description="how to combine the values that arrived"),
    "key": NodeParameter(type=str, default=None, description="field to join on (join)"),
    "skip_none": NodeParameter(type=bool, default=True, description="ignore inputs that are None"),
    "on_conflict": NodeParameter(type=str, default="error", choices=ON_CONFLICT,
                                 description="dict_merge, when inputs give one key different values: fail, "
                                             "or keep the last or the first"),
    **{f"data{i}": NodeParameter(default=None, description=f"explicit input {i}") for i in range(1, 6)},
}


@register_node(category="logic")
class MergeNode(Node):
    """Combine the values that arrived from upstream branches (only those that ran).

    Example:
        >>> MergeNode(merge_strategy="concat").execute(data=[[1, 2], [3]])
        {'merged_data': [1, 2, 3]}
    """

    capabilities = frozenset()

    primary_input = "data"
    primary_output = "merged_data"
    collects_inputs = True

    def get_parameters(self) -> dict[str, NodeParameter]:
        return dict(_MERGE_PARAMS)

    def get_outputs(self) -> dict[str, NodeParameter]:
        return {"merged_data": NodeParameter(name="merged_data", description="the merged value")}

    def validate_config(self) -> list[str | Problem]:
        return check_strategy(self.config.get("merge_strategy"))

    def run(self, data: list[Any] | None = None, merge_strategy: str = "concat", key: str | None = None,
            skip_none: bool = True, on_conflict: str = "error", **explicit: Any) -> dict[str, Any]:
        values = list(data or [])
        values += [explicit[f"data{i}"] for i in range(1, 6) if explicit.get(f"data{i}") is not None]
        if skip_none:
            values = [v for v in values if v is not None]
        return {"merged_data": merge_values(self, values, merge_strategy, key, on_conflict)}
