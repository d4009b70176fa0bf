"""Safe evaluation of the small Python expressions used by routing nodes.

An expression is parsed once and checked against a whitelist: literals, names,
arithmetic, comparisons, boolean logic, conditional expressions, subscripts,
comprehensions, attribute access to public names (not ``format``/``format_map``/``mro``,
nor frame, code or traceback introspection such as ``gi_frame`` or ``f_globals``),
and calls to these builtins only: ``abs all any bool dict float int len list max min
round set sorted str sum tuple``. No dunder names, no imports, no lambdas; the
evaluated code sees no other builtins.
"""

from __future__ import annotations

import ast
from collections.abc import Callable
from typing import Any

from kailash import _ast as safe_ast
from kailash.errors import NodeConfigurationError

__all__ = ["compile_expression", "SAFE_BUILTINS"]

SAFE_BUILTINS: dict[str, Any] = {
    name: __builtins__[name] if isinstance(__builtins__, dict) else getattr(__builtins__, name)  # type: ignore[index]
    for name in ("abs", "all", "any", "bool", "dict", "float", "int", "len", "list", "max", "min",
                 "round", "set", "sorted", "str", "sum", "tuple")
}
SAFE_BUILTINS.update({"True": True, "False": False, "None": None})

_ALLOWED = (
    ast.Expression, ast.BoolOp, ast.BinOp, ast.UnaryOp, ast.Compare, ast.IfExp, ast.Call, ast.Name,
    ast.Constant, ast.Attribute, ast.Subscript, ast.Slice, ast.List, ast.Tuple, ast.Dict, ast.Set,
    ast.ListComp, ast.SetComp, ast.DictComp, ast.GeneratorExp, ast.comprehension, ast.Load, ast.Store,
    ast.And, ast.Or, ast.Not, ast.Invert, ast.UAdd, ast.USub, ast.Add, ast.Sub, ast.Mult, ast.Div,
    ast.FloorDiv, ast.Mod, ast.Pow, ast.Eq, ast.NotEq, ast.Lt, ast.LtE, ast.Gt, ast.GtE, ast.In, ast.NotIn,
    ast.Is, ast.IsNot, ast.keyword, ast.JoinedStr, ast.FormattedValue,
)
_BLOCKED_ATTRS = frozenset({"format", "format_map", "mro"})
# Frame, code and traceback introspection (``gen.gi_frame.f_back.f_globals`` ...) would
# reach the real builtins from inside an expression, so those attributes are refused too.
_BLOCKED_PREFIXES = ("gi_", "cr_", "ag_", "f_", "tb_", "co_", "func_")


def compile_expression(expr: str, *, node_id: str | None = None, parameter: str = "condition") -> Callable[[dict[str, Any]], Any]:
    """Check ``expr`` and return a function evaluating it against a namespace dict.

    Example:
        >>> check = compile_expression("status == 'done' and len(items) > 1")
        >>> check({"status": "done", "items": [1, 2]})
        True
    """
    where = f"node '{node_id}': " if node_id else ""
    if not isinstance(expr, str):
        raise NodeConfigurationError(f"{where}expression must be a string, got {type(expr).__name__}",
                                     node_id=node_id, parameter=parameter, expected="str")
    try:
        tree = safe_ast.parse(expr.strip(), mode="eval")
    except SyntaxError as exc:
        raise NodeConfigurationError(f"{where}invalid expression {expr!r}: {exc.msg}", node_id=node_id,
                                     parameter=parameter, expected="a Python expression") from None
    for node in ast.walk(tree):
        if not isinstance(node, _ALLOWED):
            raise NodeConfigurationError(
                f"{where}expression {expr!r} uses {type(node).__name__}, which is not allowed in conditions",
                node_id=node_id, parameter=parameter, expected="a safe expression",
            )
        if isinstance(node, ast.Name) and node.id.startswith("__"):
            raise NodeConfigurationError(f"{where}expression {expr!r} uses the private name {node.id!r}",
                                         node_id=node_id, parameter=parameter, expected="a safe expression")
        if isinstance(node, ast.Attribute) and (
            node.attr.startswith("_") or node.attr in _BLOCKED_ATTRS or node.attr.startswith(_BLOCKED_PREFIXES)
        ):
            raise NodeConfigurationError(f"{where}expression {expr!r} uses the attribute {node.attr!r}",
                                         node_id=node_id, parameter=parameter, expected="a safe expression")
    code = safe_ast.compile_ast(tree, f"<condition {expr!r}>", "eval")
    builtins = {"__builtins__": SAFE_BUILTINS}

    def evaluate(namespace: dict[str, Any]) -> Any:
        return eval(code, builtins, namespace)  # noqa: S307 - checked against the whitelist above

    return evaluate
