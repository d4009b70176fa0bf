"""PythonCodeNode: run a snippet of Python as a node.

The code is the body of a function. Its inputs are local variables, ``result`` is its
output (a top-level ``return value`` works too), modules listed in ``imports`` are
pre-imported, and ``self`` is a state object that persists between executions of the
same node. The code is compiled once per set of input names and cached, so a call
costs a function call. Errors name the node and the line of the user's code.

Under a :class:`~kailash.security.SecurityConfig` (given to the node or set globally)
the code runs in the isolated sandbox of :mod:`kailash.security.sandbox` instead.
"""

from __future__ import annotations

import ast
import builtins
import importlib
import inspect
import keyword
import linecache
import sys
import textwrap
import traceback
import uuid
import weakref
from collections.abc import Callable
from typing import Any

from kailash import _ast as safe_ast
from kailash.errors import KailashError, NodeConfigurationError, NodeExecutionError, Problem
from kailash.nodes.base import Node, NodeParameter, register_node
from kailash.security.config import SecurityConfig, get_security_config

__all__ = ["PythonCodeNode"]

_MISSING = object()
_OWN = frozenset({"code", "imports", "security_config", "function"})


class _Missing:
    def __repr__(self) -> str:
        return "<result not set>"


_UNSET = _Missing()


@register_node(category="code")
class PythonCodeNode(Node):
    """Run Python code; inputs are variables, ``result`` is the output.

    Example:
        >>> node = PythonCodeNode(code='''
        ... if not hasattr(self, "calls"):
        ...     self.calls = 0
        ... self.calls += 1
        ... result = [x * 2 for x in data][: self.calls]
        ... ''')
        >>> node.execute(data=[1, 2, 3])
        {'result': [2]}
        >>> node.execute(data=[1, 2, 3])
        {'result': [2, 4]}
    """

    capabilities = frozenset({"code"})

    extra_inputs = True
    primary_input = "data"
    primary_output = "result"

    def __init__(self, config: dict[str, Any] | None = None, *, name: str | None = None, **params: Any) -> None:
        super().__init__(config, name=name, **params)
        self._compiled: dict[tuple[Any, ...], tuple[Callable[..., Any], tuple[str, ...] | None]] = {}
        self._globals: dict[str, Any] | None = None
        self._function: Callable[..., Any] | None = self.config.pop("function", None)
        self._sandbox_key: str | None = None  # a unique key for this node's sandbox worker (its `self` state)

    def __getstate__(self) -> dict[str, Any]:
        # Compiled code and imported modules are rebuilt where the node lands (a Dask
        # worker); shipping them would lose the code's filename and so its line numbers.
        state = dict(self.__dict__)
        state["_compiled"] = {}
        state["_globals"] = None
        return state

    def get_parameters(self) -> dict[str, NodeParameter]:
        return {
            "code": NodeParameter(type=str, required=False, format="python", description="Python code; inputs are variables, set `result`"),
            "imports": NodeParameter(type=list, required=False, default=None, description="modules to pre-import"),
            "security_config": NodeParameter(required=False, default=None,
                                             description="a SecurityConfig: run the code in the sandbox"),
        }

    def get_outputs(self) -> dict[str, NodeParameter]:
        return {"result": NodeParameter(name="result", description="the value of `result`")}

    # -- construction from a function --------------------------------------------------
    @classmethod
    def from_function(cls, fn: Callable[..., Any], *, name: str | None = None, **config: Any) -> PythonCodeNode:
        """A node that calls ``fn`` with the inputs its signature names; ``result`` = its return value.

        Example:
            >>> def total(data, start=0):
            ...     return start + sum(data)
            >>> PythonCodeNode.from_function(total).execute(data=[1, 2])
            {'result': 3}
        """
        if not callable(fn):
            raise NodeConfigurationError("from_function expects a callable", parameter="function", expected="callable")
        node = cls(config=config, name=name or getattr(fn, "__name__", None))
        node._function = fn
        return node

    def _function_code(self) -> str:
        fn = self._function
        assert fn is not None
        try:
            src = textwrap.dedent(inspect.getsource(fn))
        except (OSError, TypeError) as exc:
            raise NodeConfigurationError(
                f"node {self.label}: the source of {fn!r} is not available, so it cannot be saved", node_id=self.name
            ) from exc
        names = list(inspect.signature(fn).parameters)
        return (f"{src}\nresult = {fn.__name__}(**{{k: v for k, v in locals().items() "
                f"if k in {tuple(names)!r}}})\n")

    def to_dict(self) -> dict[str, Any]:
        d = super().to_dict()
        if self._function is not None and "code" not in d["config"]:
            d["config"] = {**d["config"], "code": self._function_code()}
        d["config"].pop("security_config", None)
        return d

    # -- checking and compiling ----------------------------------------------------------
    def validate_config(self) -> list[str | Problem]:
        code = self.config.get("code")
        if self._function is not None:
            return []
        if code is None:
            return [Problem(parameter="code", expected="str",
                            message="parameter 'code' is required (Python source; set `result`)")]
        if not isinstance(code, str):
            return []  # the type check reports it
        try:
            safe_ast.parse(textwrap.dedent(code))
        except SyntaxError as exc:
            return [Problem(parameter="code", expected="valid Python", got="a syntax error",
                            message=f"syntax error in code at line {exc.lineno}: {exc.msg}")]
        return []

    def _filename(self) -> str:
        return f"<kailash node {self.name or 'PythonCodeNode'}>"

    def _module_globals(self, imports: list[str] | None) -> dict[str, Any]:
        g = self._globals
        if g is None:
            g = {"__builtins__": builtins, "__name__": "kailash_code", "__kailash_unset__": _UNSET}
            for spec in imports or ():
                mod_name, _, alias = str(spec).partition(" as ")
                mod_name = mod_name.strip()
                try:
                    mod = importlib.import_module(mod_name)
                except ImportError as exc:
                    raise NodeConfigurationError(
                        f"node {self.label} (PythonCodeNode): cannot import '{mod_name}' listed in imports: {exc}",
                        node_id=self.name, parameter="imports", expected="an importable module", got=mod_name,
                    ) from exc
                if alias.strip():
                    g[alias.strip()] = mod
                else:
                    top = mod_name.split(".")[0]
                    g[top] = importlib.import_module(top)
            self._globals = g
        return g

    def _compile(self, code: str, names: tuple[str, ...], imports: list[str] | None) -> Callable[..., Any]:
        source = textwrap.dedent(code)
        filename = self._filename()
        try:
            tree = safe_ast.parse(source, filename=filename)
        except SyntaxError as exc:
            raise NodeConfigurationError(
                f"node {self.label} (PythonCodeNode): syntax error in code at line {exc.lineno}: {exc.msg}"
                + (f"\n    {exc.lineno} | {exc.text.rstrip()}" if exc.text else ""),
                node_id=self.name, parameter="code", expected="valid Python",
            ) from None
        body: list[ast.stmt] = list(tree.body) or [ast.Pass()]
        prologue = [] if "result" in names else safe_ast.parse("result = __kailash_unset__").body
        epilogue = safe_ast.parse("return result").body
        for stmt in prologue:
            ast.copy_location(stmt, body[0])
        for stmt in epilogue:
            ast.copy_location(stmt, body[-1])
        args = ast.arguments(
            posonlyargs=[], args=[ast.arg(arg="self")] + [ast.arg(arg=n) for n in names],
            vararg=None, kwonlyargs=[], kw_defaults=[], kwarg=None, defaults=[],
        )
        extra: dict[str, Any] = {"type_params": []} if sys.version_info >= (3, 12) else {}
        fn_def = ast.FunctionDef(name="__kailash_code__", args=args, body=prologue + body + epilogue,
                                 decorator_list=[], returns=None, type_comment=None, **extra)
        ast.copy_location(fn_def, body[0])
        module = ast.Module(body=[fn_def], type_ignores=[])
        ast.fix_missing_locations(module)
        linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
        namespace = self._module_globals(imports)
        exec(safe_ast.compile_ast(module, filename, "exec"), namespace)  # noqa: S102 - the user's own code, by design
        return namespace.pop("__kailash_code__")

    # -- running ---------------------------------------------------------------------------
    def run(self, **inputs: Any) -> dict[str, Any]:
        code = inputs.pop("code", None)
        imports = inputs.pop("imports", None)
        security = inputs.pop("security_config", None)
        inputs.pop("function", None)
        if self._function is not None and code is None:
            return {"result": self._call_function(inputs)}
        if code is None:
            raise NodeConfigurationError(
                f"node {self.label} (PythonCodeNode): parameter 'code' is required", node_id=self.name,
                parameter="code", expected="Python source",
            )
        if security is not None and not isinstance(security, SecurityConfig):
            raise NodeConfigurationError(
                f"node {self.label} (PythonCodeNode): parameter 'security_config' must be a SecurityConfig, "
                f"got {type(security).__name__}", node_id=self.name, parameter="security_config",
                expected="SecurityConfig", got=type(security).__name__,
            )
        active = get_security_config()
        if active is not None and active.tenant is not None:
            security = active  # a tenant's policy is never replaced by the node's own
        elif security is None and active is not None and active.sandbox:
            security = active
        if security is not None:
            from kailash.security.sandbox import run_sandboxed

            key = self._sandbox_key
            if key is None:
                # ids are reused after garbage collection: a fresh uuid keeps nodes' states apart,
                # and the finalizer frees the worker with the node.
                from kailash.security.sandbox import release_sandbox_later

                key = self._sandbox_key = uuid.uuid4().hex
                weakref.finalize(self, release_sandbox_later, key)
            return {"result": run_sandboxed(key, code, list(imports or []), inputs, security, self.name)}
        cache_key = (code, *inputs)
        entry = self._compiled.get(cache_key)
        if entry is None:
            usable = tuple(k for k in inputs if k.isidentifier() and not keyword.iskeyword(k) and k != "self")
            fn = self._compile(code, usable, imports)
            entry = self._compiled[cache_key] = (fn, None if len(usable) == len(inputs) else usable)
        fn, names = entry
        try:
            if names is None:
                result = fn(self.state, **inputs)
            else:
                result = fn(self.state, **{k: inputs[k] for k in names})
        except KailashError:
            raise
        except (Exception, SystemExit) as exc:  # sys.exit() in user code fails the node, not the process
            raise self._user_error(exc) from exc
        if result is _UNSET:
            raise NodeExecutionError(
                f"node {self.label} (PythonCodeNode): the code did not set `result` "
                "(assign `result = ...` or `return value`)",
                node_id=self.name, parameter="code", expected="the code to set `result`",
            )
        return {"result": result}

    def _call_function(self, inputs: dict[str, Any]) -> Any:
        fn = self._function
        assert fn is not None
        sig = inspect.signature(fn)
        takes_all = any(p.kind is p.VAR_KEYWORD for p in sig.parameters.values())
        kwargs = inputs if takes_all else {k: v for k, v in inputs.items() if k in sig.parameters}
        try:
            return fn(**kwargs)
        except KailashError:
            raise
        except (Exception, SystemExit) as exc:
            raise NodeExecutionError(
                f"node {self.label} (PythonCodeNode from {getattr(fn, '__name__', 'function')}) failed: "
                f"{type(exc).__name__}: {exc}", node_id=self.name,
            ) from exc

    def _user_error(self, exc: BaseException) -> NodeExecutionError:
        filename = self._filename()
        line = None
        for frame in traceback.extract_tb(exc.__traceback__):
            if frame.filename == filename:
                line = frame.lineno
        where = f" at line {line} of its code" if line else ""
        text = ""
        if line:
            src = linecache.getline(filename, line).rstrip()
            text = f"\n    {line} | {src.strip()}" if src else ""
        err = NodeExecutionError(
            f"node {self.label} (PythonCodeNode) failed{where}: {type(exc).__name__}: {exc}{text}",
            node_id=self.name, parameter="code",
        )
        err.line = line  # type: ignore[attr-defined]
        return err
