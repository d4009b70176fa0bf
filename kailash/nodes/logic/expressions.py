"""Safe, bounded evaluation of the small Python expressions used by routing nodes.

One evaluator serves every condition in the SDK (``SwitchNode`` outputs and conditions,
``EventStreamNode``'s ``stop_condition``). An expression is parsed once and checked
against a whitelist: literals, names, arithmetic, comparisons, boolean logic,
conditional expressions, subscripts, comprehensions, attribute access to public names
(not ``format``/``format_map``/``mro``, nor frame, code or traceback introspection such
as ``gi_frame`` or ``f_globals``), and calls to these builtins only: ``abs all any bool
dict float int len list max min round set sorted str sum tuple``. No dunder names, no
imports, no lambdas; the evaluated code sees no other builtins.

Evaluation is bounded, because a condition can come from a caller of the gateway:
each evaluation has a budget of :data:`MAX_STEPS` steps (one per comprehension item and
call, one per element of a sequence it builds) and :data:`TIME_LIMIT` seconds, and the
operations that make a large value from a small one are checked *before* they run:
``10**10**10`` and ``2**x`` past :data:`MAX_INT_BITS` bits, ``'a'*10**10`` or
``[0]*10**9`` past :data:`MAX_SIZE` items, ``str.center``/``ljust``/``zfill``/
``replace``/``join``/``translate``/``expandtabs``, ``int.to_bytes``, ``round`` with a
huge digit count, format widths or precisions above :data:`MAX_FORMAT_WIDTH` in
f-strings and ``%`` formatting, and the text of a container (``str([big] * 1000)``, each
shared reference counted); ``key=`` functions given to ``sorted``/``min``/``max`` are metered too. A bounded expression fails with
:class:`~kailash.errors.NodeExecutionError` naming the node, the parameter and the limit.
"""

from __future__ import annotations

import ast
import re
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from kailash import _ast as safe_ast
from kailash.errors import NodeConfigurationError, NodeExecutionError

__all__ = ["compile_expression", "SAFE_BUILTINS", "MAX_STEPS", "MAX_SIZE", "MAX_INT_BITS", "TIME_LIMIT"]

SAFE_BUILTINS: dict[str, Any] = {
    name: __builtins__[name] if isinstance(__builtins__, dict) else getattr(__builtins__, name)  # type: ignore[index]
    for name in ("abs", "all", "any", "bool", "dict", "float", "int", "len", "list", "max", "min",
                 "round", "set", "sorted", "str", "sum", "tuple")
}
SAFE_BUILTINS.update({"True": True, "False": False, "None": None})

MAX_STEPS = 1_000_000  # work units per evaluation
MAX_SIZE = 1_000_000  # items or characters of one value the expression builds
MAX_INT_BITS = 100_000  # about 30,000 decimal digits
MAX_FORMAT_WIDTH = 10_000
MAX_EXPRESSION_LENGTH = 10_000
TIME_LIMIT = 1.0  # seconds per evaluation

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
_BUILTINS = SAFE_BUILTINS["len"].__self__  # the builtins module: its functions are no methods
_METER = "__kailash_meter"  # the per-evaluation meter; user names may not start with "__"
_SEQUENCES = (str, bytes, bytearray, list, tuple)
_CONTAINERS = (list, tuple, dict, set, frozenset)
_PRINTF = re.compile(rb"%(?:\([^)]*\))?[-#0 +]*(\*|\d+)?(?:\.(\*|\d+))?")
_SPEC_NUMBERS = re.compile(r"\d+")


class _Exceeded(Exception):
    """An evaluation went past a limit; turned into NodeExecutionError by the evaluator."""


def _check(ok: bool, what: str) -> None:
    if not ok:
        raise _Exceeded(what)


def _len(x: Any) -> int:
    return len(x) if isinstance(x, (*_SEQUENCES, dict, set, frozenset)) else 0


def _width_check(spec: str) -> None:
    _check(all(len(n) <= 6 and int(n) <= MAX_FORMAT_WIDTH for n in _SPEC_NUMBERS.findall(spec)),
           f"a format width or precision above {MAX_FORMAT_WIDTH}")


class _Meter:
    """The budget of one evaluation; the rewritten expression calls its methods."""

    __slots__ = ("steps", "next_clock", "deadline")

    def __init__(self) -> None:
        self.steps = 0
        self.next_clock = 4096
        self.deadline = 0.0  # read on the first clock check: the first 4096 steps take microseconds

    def charge(self, n: int) -> None:
        self.steps += n
        if self.steps > MAX_STEPS:
            raise _Exceeded(f"more than {MAX_STEPS} steps")
        if self.steps >= self.next_clock:  # the clock is read every 4096 steps
            self.next_clock = self.steps + 4096
            now = time.monotonic()
            if not self.deadline:
                self.deadline = now + TIME_LIMIT
            _check(now < self.deadline, f"more than {TIME_LIMIT} s")

    def iterate(self, items: Iterable[Any]) -> Iterator[Any]:
        for item in items:
            self.charge(1)
            yield item

    def binop(self, op: str, a: Any, b: Any) -> Any:
        if op == "+":
            result = a + b
            self.charge(_len(result))
            return result
        if op == "*":
            if isinstance(a, int) and isinstance(b, int):
                _check(a.bit_length() + b.bit_length() <= MAX_INT_BITS, f"an integer over {MAX_INT_BITS} bits")
            elif isinstance(a, _SEQUENCES) or isinstance(b, _SEQUENCES):
                seq, n = (a, b) if isinstance(a, _SEQUENCES) else (b, a)
                if isinstance(n, int):
                    size = len(seq) * max(int(n), 0)
                    _check(size <= MAX_SIZE, f"a value of {size} items (limit {MAX_SIZE})")
                    self.charge(size)
            return a * b
        if op == "**":
            if isinstance(a, int) and isinstance(b, int) and b > 0 and abs(a) > 1:
                _check(b <= MAX_INT_BITS and b * a.bit_length() <= MAX_INT_BITS,
                       f"an integer over {MAX_INT_BITS} bits")
            return a**b
        # "%": printf-style formatting can pad to any width
        if isinstance(a, (str, bytes, bytearray)):
            self.text_size(b)
            raw = a.encode("utf-8", "surrogatepass") if isinstance(a, str) else bytes(a)
            for m in _PRINTF.finditer(raw):
                for n in m.groups():
                    _check(n is None or (n != b"*" and len(n) <= 6 and int(n) <= MAX_FORMAT_WIDTH),
                           f"a format width or precision above {MAX_FORMAT_WIDTH}")
            result = a % b
            self.charge(_len(result))
            return result
        return a % b

    def call(self, f: Any, *args: Any, **kwargs: Any) -> Any:
        self.charge(1)
        key = kwargs.get("key")
        if callable(key):  # sorted/min/max call it themselves: each call goes through the meter too
            kwargs = {**kwargs, "key": lambda item: self.call(key, item)}
        if f is str and args:  # str([big] * 1000) is as large as the text of every shared reference
            self.text_size(args[0])
        if f is round and len(args) > 1 and isinstance(args[1], int):
            _check(abs(args[1]) <= MAX_FORMAT_WIDTH, f"round() to more than {MAX_FORMAT_WIDTH} digits")
        elif f is sum and (len(args) > 1 or "start" in kwargs):
            start = args[1] if len(args) > 1 else kwargs["start"]
            _check(isinstance(start, (int, float, complex)), "sum() of sequences (quadratic copying)")
        owner = getattr(f, "__self__", None)
        if owner is not None and owner is not _BUILTINS and type(owner).__module__ == "builtins":
            args = self._method(owner, getattr(f, "__name__", ""), args, kwargs)
        elif getattr(f, "__objclass__", None) is not None and args:  # unbound: str.center('a', 10**9)
            args = (args[0], *self._method(args[0], getattr(f, "__name__", ""), args[1:], kwargs))
        result = f(*args, **kwargs)
        if isinstance(result, (str, bytes, bytearray)):  # text built call by call counts against the budget
            self.charge(len(result))
        return result

    def text_size(self, value: Any) -> None:
        """Refuse, before it is built, the text of a container longer than MAX_SIZE (shared items count each time)."""
        if not isinstance(value, _CONTAINERS):
            return
        total, stack = 0, [value]
        while stack:
            item = stack.pop()
            self.charge(1)
            if isinstance(item, (str, bytes, bytearray)):
                total += len(item) + 4
            elif isinstance(item, dict):
                stack += [*item.keys(), *item.values()]
                total += 2
            elif isinstance(item, _CONTAINERS):
                stack += list(item)
                total += 2
            elif isinstance(item, int):
                total += item.bit_length() // 3 + 2
            else:
                total += 32
            _check(total <= MAX_SIZE, f"a text of more than {MAX_SIZE} characters")

    def _method(self, owner: Any, name: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[Any, ...]:
        """Check the methods that can make a large value from small arguments, before they run."""
        ints = [x for x in (*args, *kwargs.values()) if isinstance(x, int)]
        if name in ("center", "ljust", "rjust", "zfill", "to_bytes"):
            _check(all(abs(x) <= MAX_SIZE for x in ints), f"{name}() of more than {MAX_SIZE} items")
        if not isinstance(owner, (str, bytes, bytearray)):
            return args
        n = len(owner)
        if name == "expandtabs":
            tab = ints[0] if ints else 8
            _check(n * max(tab, 1) <= MAX_SIZE, f"expandtabs() over {MAX_SIZE} characters")
        elif name == "replace" and len(args) >= 2:
            new = args[1]
            count = args[2] if len(args) > 2 and isinstance(args[2], int) and args[2] >= 0 else n + 1
            size = n + min(count, n + 1) * _len(new)
            _check(size <= MAX_SIZE, f"replace() making {size} characters (limit {MAX_SIZE})")
        elif name == "join" and args:
            parts = list(self.iterate(args[0]))
            size = sum(_len(p) for p in parts) + n * len(parts)
            _check(size <= MAX_SIZE, f"join() making {size} characters (limit {MAX_SIZE})")
            return (parts,)
        elif name == "translate" and args and isinstance(args[0], dict):
            longest = max((_len(v) for v in args[0].values()), default=1)
            _check(n * max(longest, 1) <= MAX_SIZE, f"translate() over {MAX_SIZE} characters")
        return args

    def fmt(self, value: Any, conversion: int, spec: str) -> str:
        self.text_size(value)
        if conversion == ord("r"):
            value = repr(value)
        elif conversion == ord("s"):
            value = str(value)
        elif conversion == ord("a"):
            value = ascii(value)
        _width_check(spec)
        text = format(value, spec)
        self.charge(len(text))
        return text


class _Bound(ast.NodeTransformer):
    """Rewrites a checked expression so its costly operations go through the meter."""

    _OPS = {ast.Add: "+", ast.Mult: "*", ast.Pow: "**", ast.Mod: "%"}
    changed = False  # set when any operation was routed through the meter

    @staticmethod
    def _meter(attr: str) -> ast.Attribute:
        return ast.Attribute(value=ast.Name(id=_METER, ctx=ast.Load()), attr=attr, ctx=ast.Load())

    def visit_BinOp(self, node: ast.BinOp) -> Any:
        self.generic_visit(node)
        op = self._OPS.get(type(node.op))
        if op is None:
            return node
        self.changed = True
        return ast.Call(func=self._meter("binop"), args=[ast.Constant(op), node.left, node.right], keywords=[])

    def visit_Call(self, node: ast.Call) -> Any:
        self.generic_visit(node)
        self.changed = True
        return ast.Call(func=self._meter("call"), args=[node.func, *node.args], keywords=node.keywords)

    def visit_comprehension(self, node: ast.comprehension) -> Any:
        self.generic_visit(node)
        self.changed = True
        node.iter = ast.Call(func=self._meter("iterate"), args=[node.iter], keywords=[])
        return node

    def visit_FormattedValue(self, node: ast.FormattedValue) -> Any:
        self.generic_visit(node)
        self.changed = True
        spec: ast.expr = node.format_spec if node.format_spec is not None else ast.Constant("")
        call = ast.Call(func=self._meter("fmt"), args=[node.value, ast.Constant(node.conversion), spec], keywords=[])
        return ast.FormattedValue(value=call, conversion=-1, format_spec=None)


def compile_expression(expr: str, *, node_id: str | None = None, parameter: str = "condition") -> Callable[[dict[str, Any]], Any]:
    """Check ``expr`` and return a function evaluating it, bounded, against a namespace dict.

    Example:
        >>> check = compile_expression("status == 'done' and len(items) > 1")
        >>> check({"status": "done", "items": [1, 2]})
        True
    """
    where = f"node '{node_id}': " if node_id else ""
    if type(expr) is not str:
        raise NodeConfigurationError(f"{where}expression must be a string, got {type(expr).__name__}",
                                     node_id=node_id, parameter=parameter, expected="str")
    if len(expr) > MAX_EXPRESSION_LENGTH:
        raise NodeConfigurationError(f"{where}expression is {len(expr)} characters long, over the "
                                     f"{MAX_EXPRESSION_LENGTH}-character limit", node_id=node_id,
                                     parameter=parameter, expected=f"<= {MAX_EXPRESSION_LENGTH} characters")
    try:
        tree = safe_ast.parse(expr.strip(), mode="eval")
    except (SyntaxError, RecursionError, MemoryError) as exc:
        reason = exc.msg if isinstance(exc, SyntaxError) else "nested too deeply"
        raise NodeConfigurationError(f"{where}invalid expression {expr!r}: {reason}", node_id=node_id,
                                     parameter=parameter, expected="a Python expression") from None
    _check_tree(tree, expr, where, node_id, parameter)
    bound = _Bound()
    tree = ast.fix_missing_locations(bound.visit(tree))
    code = safe_ast.compile_ast(tree, f"<condition {expr!r}>", "eval")
    if not bound.changed:  # only comparisons, logic, subscripts and cheap arithmetic: nothing to meter
        builtins = {"__builtins__": SAFE_BUILTINS}

        def evaluate_plain(namespace: dict[str, Any]) -> Any:
            return eval(code, builtins, namespace)  # noqa: S307 - checked against the whitelist

        return evaluate_plain

    def evaluate(namespace: dict[str, Any]) -> Any:
        # one globals dict: comprehensions (nested scopes) see the namespace like the top level does
        scope = dict(namespace)
        scope["__builtins__"] = SAFE_BUILTINS
        scope[_METER] = _Meter()
        try:
            return eval(code, scope)  # noqa: S307 - checked against the whitelist, costly operations metered
        except _Exceeded as exc:
            raise NodeExecutionError(
                f"{where}expression {expr!r} ({parameter}) was stopped: it would need {exc}; "
                "conditions must be small computations over the record",
                node_id=node_id, parameter=parameter, expected="a bounded expression",
            ) from None

    return evaluate


def _check_tree(tree: ast.AST, expr: str, where: str, node_id: str | None, parameter: str) -> None:
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
