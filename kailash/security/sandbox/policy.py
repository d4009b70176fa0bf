"""Static checks and rewriting of sandboxed code (the first of the sandbox's layers).

:func:`prepare_code` turns a PythonCodeNode code string into a code object for a
function ``__kx_main__(self, *, <inputs>)`` whose body is the user's code, after
refusing, all at once and with line numbers, everything the sandbox does not allow:

* names and attributes that reach interpreter internals: any ``__dunder__`` name, any
  attribute starting with ``_``, and frame/code/generator attributes (``gi_frame``,
  ``f_back``, ``tb_frame``, ``mro``...) that lead from an object to its globals;
* imports outside the allow-list, relative and ``*`` imports;
* ``eval``/``exec``/``compile``/``globals``/``vars``/``breakpoint``... (also absent at run time);
* dunder methods other than the ordinary protocol ones in ``class`` bodies,
  ``match`` class patterns with positional sub-patterns on non-builtin classes
  (``__match_args__`` would read arbitrary attributes), and top-level ``yield``.

``str.format`` reads attributes named in the format string, so every ``.format`` /
``.format_map`` attribute is rewritten into a call to the guard ``__kx_attr__``.
The runtime guards in :mod:`kailash.security.sandbox.guards` back these checks up.
This module only parses and compiles; it never executes user code.
"""

from __future__ import annotations

import ast
import keyword
import textwrap
from collections.abc import Iterable
from types import CodeType

__all__ = ["prepare_code", "CodeRejected", "SANDBOX_FILENAME", "BLOCKED_ATTRIBUTES", "FORBIDDEN_BUILTINS",
           "SAFE_DUNDER_METHODS", "import_allowed", "attribute_refused"]

SANDBOX_FILENAME = "<sandboxed code>"

BLOCKED_ATTRIBUTES = frozenset({
    "gi_frame", "gi_code", "gi_yieldfrom", "gi_running", "gi_suspended", "cr_frame", "cr_code", "cr_await",
    "cr_origin", "cr_running", "cr_suspended", "ag_frame", "ag_code", "ag_await", "ag_running",
    "f_back", "f_builtins", "f_code", "f_globals", "f_locals", "f_trace", "f_trace_lines", "f_trace_opcodes",
    "f_lasti", "tb_frame", "tb_next", "tb_lasti", "func_globals", "func_code", "func_closure", "im_func",
    "im_self", "im_class", "mro", "co_code", "co_consts", "co_names", "co_varnames", "co_filename",
    "cell_contents", "f_lineno", "tb_lineno", "with_traceback",
})

# The public API of namedtuples is spelled with a leading underscore.
NAMEDTUPLE_ATTRIBUTES = frozenset({"_asdict", "_replace", "_fields", "_make", "_field_defaults"})


def attribute_refused(name: str) -> bool:
    """Whether sandboxed code may not read or write attribute ``name``."""
    return (name.startswith("_") and name not in NAMEDTUPLE_ATTRIBUTES) or name in BLOCKED_ATTRIBUTES


FORBIDDEN_BUILTINS = frozenset({
    "eval", "exec", "compile", "globals", "locals", "vars", "breakpoint", "input", "help", "exit", "quit",
    "copyright", "credits", "license",
})

SAFE_DUNDER_METHODS = frozenset({
    "__init__", "__post_init__", "__repr__", "__str__", "__format__", "__hash__", "__bool__", "__len__",
    "__eq__", "__ne__", "__lt__", "__le__", "__gt__", "__ge__", "__iter__", "__next__", "__reversed__",
    "__contains__", "__getitem__", "__setitem__", "__delitem__", "__missing__", "__call__",
    "__enter__", "__exit__", "__add__", "__radd__", "__iadd__", "__sub__", "__rsub__", "__isub__",
    "__mul__", "__rmul__", "__imul__", "__matmul__", "__truediv__", "__rtruediv__", "__floordiv__",
    "__rfloordiv__", "__mod__", "__rmod__", "__pow__", "__rpow__", "__neg__", "__pos__", "__abs__",
    "__invert__", "__and__", "__or__", "__xor__", "__rand__", "__ror__", "__rxor__", "__lshift__",
    "__rshift__", "__int__", "__float__", "__complex__", "__index__", "__round__", "__trunc__",
    "__floor__", "__ceil__", "__divmod__", "__getattr__", "__setattr__", "__delattr__", "__new__",
})

_SAFE_MATCH_CLASSES = frozenset({"bool", "bytearray", "bytes", "dict", "float", "frozenset", "int", "list",
                                 "set", "str", "tuple"})


class CodeRejected(Exception):
    """The code does not compile or breaks the sandbox rules. ``problems`` are ``(line, text)`` pairs."""

    def __init__(self, problems: list[tuple[int, str]], *, syntax: bool = False) -> None:
        self.problems = sorted(problems)
        self.syntax = syntax
        super().__init__("; ".join(f"line {ln}: {msg}" for ln, msg in self.problems))

    @property
    def line(self) -> int:
        return self.problems[0][0] if self.problems else 0


def import_allowed(name: str, allowed: Iterable[str]) -> bool:
    """Whether module ``name`` is allowed: listed itself, or a submodule of a listed module."""
    return any(name == a or name.startswith(a + ".") for a in allowed)


class _Checker(ast.NodeVisitor):
    def __init__(self, allowed_imports: frozenset[str]) -> None:
        self.allowed = allowed_imports
        self.problems: list[tuple[int, str]] = []
        self.bound: set[str] = set()
        self._depth = 0  # nesting in function/lambda/class scopes

    def bad(self, node: ast.AST, message: str) -> None:
        self.problems.append((getattr(node, "lineno", 0), message))

    def check_name(self, node: ast.AST, name: str | None, what: str = "name") -> None:
        if name and name.startswith("__"):
            self.bad(node, f"{what} '{name}' is not allowed in sandboxed code (names starting with '__' reach "
                           "interpreter internals)")

    def visit_Name(self, node: ast.Name) -> None:
        self.check_name(node, node.id)
        if isinstance(node.ctx, ast.Load) and node.id in FORBIDDEN_BUILTINS and node.id not in self.bound:
            self.bad(node, f"{node.id}() is not allowed in sandboxed code")

    def visit_Attribute(self, node: ast.Attribute) -> None:
        if node.attr.startswith("_") and node.attr not in NAMEDTUPLE_ATTRIBUTES:
            self.bad(node, f"attribute '{node.attr}' is not allowed in sandboxed code (attributes starting "
                           "with '_' are private or interpreter internals)")
        elif node.attr in BLOCKED_ATTRIBUTES:
            self.bad(node, f"attribute '{node.attr}' is not allowed in sandboxed code (it exposes frames, code "
                           "or class internals)")
        self.generic_visit(node)

    def _scope(self, node: ast.AST) -> None:
        self._depth += 1
        self.generic_visit(node)
        self._depth -= 1

    def visit_FunctionDef(self, node: ast.FunctionDef | ast.AsyncFunctionDef) -> None:
        parent = getattr(node, "_kx_parent", None)
        if node.name.startswith("__"):
            if not (isinstance(parent, ast.ClassDef) and node.name in SAFE_DUNDER_METHODS):
                self.bad(node, f"defining '{node.name}' is not allowed in sandboxed code")
        self._scope(node)

    visit_AsyncFunctionDef = visit_FunctionDef

    def visit_ClassDef(self, node: ast.ClassDef) -> None:
        self.check_name(node, node.name, "class name")
        for stmt in node.body:
            stmt._kx_parent = node  # type: ignore[attr-defined]
        self._scope(node)

    def visit_Lambda(self, node: ast.Lambda) -> None:
        self._scope(node)

    def visit_arg(self, node: ast.arg) -> None:
        self.check_name(node, node.arg, "argument")
        self.generic_visit(node)

    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            self._check_module(node, alias.name)
            self.check_name(node, alias.asname)

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        if node.level:
            self.bad(node, "relative imports are not allowed in sandboxed code")
            return
        self._check_module(node, node.module or "")
        for alias in node.names:
            if alias.name == "*":
                self.bad(node, f"'from {node.module} import *' is not allowed in sandboxed code; import names")
            elif alias.name.startswith("_"):
                self.bad(node, f"importing '{alias.name}' is not allowed in sandboxed code (private name)")
            self.check_name(node, alias.asname)

    def _check_module(self, node: ast.AST, name: str) -> None:
        if not import_allowed(name, self.allowed) or any(part.startswith("_") for part in name.split(".")):
            allowed = ", ".join(sorted(self.allowed))
            self.bad(node, f"import of '{name}' is not allowed in sandboxed code (allowed modules: {allowed})")

    def visit_Global(self, node: ast.Global | ast.Nonlocal) -> None:
        for name in node.names:
            self.check_name(node, name)

    visit_Nonlocal = visit_Global

    def visit_ExceptHandler(self, node: ast.ExceptHandler) -> None:
        self.check_name(node, node.name)
        self.generic_visit(node)

    def visit_MatchClass(self, node: ast.MatchClass) -> None:
        for attr in node.kwd_attrs:
            if attribute_refused(attr) or attr in ("format", "format_map"):  # str.format reads attributes
                self.bad(node, f"attribute '{attr}' is not allowed in sandboxed code")
        # Positional sub-patterns read the attributes named by the class's __match_args__; only
        # the builtins (which match the subject itself) are safe, and only when not rebound.
        if node.patterns and not (isinstance(node.cls, ast.Name) and node.cls.id in _SAFE_MATCH_CLASSES
                                  and node.cls.id not in self.bound):
            self.bad(node, "class patterns with positional sub-patterns are not allowed in sandboxed code; "
                           "use keyword patterns such as Point(x=a, y=b)")
        self.generic_visit(node)

    def visit_MatchAs(self, node: ast.MatchAs) -> None:
        self.check_name(node, node.name)
        self.generic_visit(node)

    def visit_MatchStar(self, node: ast.MatchStar) -> None:
        self.check_name(node, node.name)

    def visit_MatchMapping(self, node: ast.MatchMapping) -> None:
        self.check_name(node, node.rest)
        self.generic_visit(node)

    def visit_Yield(self, node: ast.AST) -> None:
        if self._depth == 0:
            self.bad(node, "'yield' is not allowed at the top level of code (define a generator function)")
        self.generic_visit(node)

    visit_YieldFrom = visit_Yield

    def visit_Await(self, node: ast.Await) -> None:
        if self._depth == 0:
            self.bad(node, "'await' is not allowed at the top level of code")
        self.generic_visit(node)


class _Rewriter(ast.NodeTransformer):
    """``x.format`` -> ``__kx_attr__(x, 'format')`` so format strings cannot read private attributes."""

    def visit_Attribute(self, node: ast.Attribute) -> ast.AST:
        self.generic_visit(node)
        if node.attr in ("format", "format_map") and isinstance(node.ctx, ast.Load):
            call = ast.Call(func=ast.Name(id="__kx_attr__", ctx=ast.Load()),
                            args=[node.value, ast.Constant(node.attr)], keywords=[])
            return ast.copy_location(call, node)
        return node


def _bound_names(tree: ast.AST) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Name) and isinstance(node.ctx, (ast.Store, ast.Del)):
            names.add(node.id)
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, ast.arg):
            names.add(node.arg)
        elif isinstance(node, ast.alias):
            names.add((node.asname or node.name).split(".")[0])
    return names


def bindable(name: str) -> bool:
    """Whether an input name can become a variable of the code."""
    return name.isidentifier() and not keyword.iskeyword(name) and not name.startswith("__") and name != "self"


def prepare_code(code: str, input_names: Iterable[str], allowed_imports: Iterable[str]) -> CodeType:
    """Check ``code`` and compile it as the body of ``__kx_main__(self, *, <inputs>)``.

    Raises:
        CodeRejected: the code has a syntax error (``syntax=True``) or breaks the rules.
    """
    source = textwrap.dedent(code)
    try:
        tree = ast.parse(source, filename=SANDBOX_FILENAME)
    except SyntaxError as exc:
        raise CodeRejected([(exc.lineno or 0, f"SyntaxError: {exc.msg}")], syntax=True) from None
    checker = _Checker(frozenset(allowed_imports))
    checker.bound = _bound_names(tree) | set(input_names)
    checker.visit(tree)
    if checker.problems:
        raise CodeRejected(checker.problems)
    tree = _Rewriter().visit(tree)
    last = max((getattr(n, "end_lineno", 1) or 1 for n in tree.body), default=1)
    tail = ast.parse("try:\n    return result\nexcept NameError:\n    return __kx_unset__\n").body
    for node in tail:
        for sub in ast.walk(node):
            if isinstance(sub, (ast.stmt, ast.expr, ast.excepthandler)):
                sub.lineno = sub.end_lineno = last
                sub.col_offset = sub.end_col_offset = 0
    names = [n for n in dict.fromkeys(input_names) if bindable(n)]
    func = ast.FunctionDef(
        name="__kx_main__",
        args=ast.arguments(posonlyargs=[], args=[ast.arg(arg="self")], vararg=None,
                           kwonlyargs=[ast.arg(arg=n) for n in names], kw_defaults=[None] * len(names),
                           kwarg=None, defaults=[]),
        body=list(tree.body) + tail, decorator_list=[], returns=None, lineno=1, col_offset=0,
    )
    module = ast.Module(body=[func], type_ignores=[])
    ast.fix_missing_locations(module)
    try:
        compiled = compile(module, SANDBOX_FILENAME, "exec", dont_inherit=True)
    except SyntaxError as exc:  # e.g. 'return' inside a class body, nonlocal at top level
        raise CodeRejected([(exc.lineno or 0, f"SyntaxError: {exc.msg}")], syntax=True) from None
    for const in compiled.co_consts:
        if isinstance(const, CodeType) and const.co_name == "__kx_main__":
            return const
    raise CodeRejected([(0, "internal error: compiled code has no body")])  # pragma: no cover
