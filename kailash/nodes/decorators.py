"""Nodes from plain functions: :func:`node` (a decorator) and :func:`from_function`.

The function's signature is the node's contract, as Prefect and Hamilton users expect:

* each parameter is a :class:`~kailash.nodes.base.NodeParameter`: its annotation is the
  type (``Literal["a", "b"]`` lists the allowed values), a parameter without a default is
  required, and the docstring's ``Args:`` section gives the descriptions;
  ``Annotated[int, NodeParameter(minimum=1)]`` adds constraints (choices, minimum,
  maximum, format) or marks a parameter secret;
* the return annotation is the output: a ``TypedDict`` names several outputs (the function
  returns that dict), anything else is the single output ``result`` (or ``output=``);
* ``async def`` functions become async nodes; ``**kwargs`` accepts undeclared inputs.

``@node`` turns the function into a node *class* (registered under the function's name,
so a saved workflow can name it); call it with config to get a node. The function itself
stays reachable as ``.function``.

Example:
    >>> from typing import Literal
    >>> @node
    ... def scale(values: list[float], factor: float = 2.0, mode: Literal["mul", "div"] = "mul") -> list[float]:
    ...     '''Scale every value.
    ...
    ...     Args:
    ...         values: the numbers to scale
    ...         factor: by how much
    ...     '''
    ...     return [v * factor if mode == "mul" else v / factor for v in values]
    >>> scale(factor=3.0).execute(values=[1.0, 2.0])
    {'result': [3.0, 6.0]}
    >>> scale.function([1.0], 10.0)
    [10.0]
    >>> p = scale().parameters
    >>> p["values"].required, p["factor"].description, p["mode"].json_schema()["enum"]
    (True, 'by how much', ['mul', 'div'])
"""

from __future__ import annotations

import dataclasses
import inspect
import re
import typing
from collections.abc import Callable
from typing import Any, TypeVar, overload

from kailash.errors import NodeConfigurationError, NodeExecutionError
from kailash.nodes.base import Node, NodeParameter
from kailash.nodes.base_async import AsyncNode
from kailash.nodes.registry import register_node

__all__ = ["node", "from_function", "FunctionNode", "function_parameters", "function_outputs"]

F = TypeVar("F", bound=Callable[..., Any])


class FunctionNode(Node):
    """Base of the node classes :func:`node` makes: calls ``function`` with its declared inputs."""

    _abstract_node = True
    function: staticmethod[..., Any]
    _parameters_spec: dict[str, NodeParameter] = {}
    _outputs_spec: dict[str, NodeParameter] | None = None
    _single_output: str | None = "result"

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "_abstract_node" not in cls.__dict__:
            cls._abstract_node = False

    @classmethod
    def _declared_names(cls) -> frozenset[str]:
        return frozenset(cls._parameters_spec)

    def get_parameters(self) -> dict[str, NodeParameter]:
        return dict(self._parameters_spec)

    def get_outputs(self) -> dict[str, NodeParameter] | None:
        return dict(self._outputs_spec) if self._outputs_spec is not None else None

    def _arguments(self, inputs: dict[str, Any]) -> dict[str, Any]:
        if self.extra_inputs:
            return inputs
        return {k: v for k, v in inputs.items() if k in self._parameters_spec}

    def _wrap(self, value: Any) -> dict[str, Any]:
        if self._single_output is not None:
            return {self._single_output: value}
        if not isinstance(value, dict):
            raise NodeExecutionError(
                f"node {self.label} ({type(self).__name__}): the function is annotated to return a TypedDict "
                f"of outputs but returned {type(value).__name__}",
                node_id=self.name, expected="dict", got=type(value).__name__)
        return value

    def run(self, **inputs: Any) -> dict[str, Any]:
        return self._wrap(type(self).function(**self._arguments(inputs)))


class AsyncFunctionNode(FunctionNode, AsyncNode):
    """:class:`FunctionNode` for ``async def`` functions (runs on the event loop)."""

    _abstract_node = True

    async def async_run(self, **inputs: Any) -> dict[str, Any]:
        return self._wrap(await type(self).function(**self._arguments(inputs)))

    def run(self, **inputs: Any) -> dict[str, Any]:
        return AsyncNode.run(self, **inputs)


def _docstring_args(fn: Callable[..., Any]) -> dict[str, str]:
    """``{name: description}`` from a Google-style ``Args:`` section."""
    doc = inspect.getdoc(fn) or ""
    out: dict[str, str] = {}
    in_args = False
    for line in doc.splitlines():
        stripped = line.strip()
        if re.match(r"^(Args|Arguments|Parameters):\s*$", stripped):
            in_args = True
            continue
        if in_args:
            if stripped and not line.startswith((" ", "\t")):
                break  # the next section
            m = re.match(r"^\s+(\*{0,2}\w+)\s*(?:\([^)]*\))?\s*:\s*(.*)$", line)
            if m:
                out[m.group(1).lstrip("*")] = m.group(2).strip()
    return out


def _hints(fn: Callable[..., Any]) -> dict[str, Any]:
    try:
        return typing.get_type_hints(fn, include_extras=True)
    except Exception as exc:  # a forward reference that does not resolve
        raise NodeConfigurationError(
            f"cannot read the type hints of {getattr(fn, '__qualname__', fn)!r}: {type(exc).__name__}: {exc}",
            parameter="function", expected="resolvable type hints") from None


def _split_annotated(tp: Any) -> tuple[Any, NodeParameter | None]:
    if typing.get_origin(tp) is typing.Annotated:
        base, *meta = typing.get_args(tp)
        extra = next((m for m in meta if isinstance(m, NodeParameter)), None)
        return base, extra
    return tp, None


def function_parameters(fn: Callable[..., Any]) -> tuple[dict[str, NodeParameter], bool]:
    """The parameters a function's signature declares, and whether it takes ``**kwargs``."""
    hints = _hints(fn)
    docs = _docstring_args(fn)
    params: dict[str, NodeParameter] = {}
    extra = False
    for p in inspect.signature(fn).parameters.values():
        if p.kind is p.VAR_KEYWORD:
            extra = True
            continue
        if p.kind in (p.VAR_POSITIONAL, p.POSITIONAL_ONLY):
            raise NodeConfigurationError(
                f"{fn.__qualname__}: parameter '{p.name}' cannot be passed by name; a node's inputs are keywords",
                parameter=p.name, expected="a keyword parameter")
        tp, spec = _split_annotated(hints.get(p.name, Any))
        required = p.default is p.empty
        param = NodeParameter(name=p.name, type=tp, required=required,
                              default=None if required else p.default, description=docs.get(p.name, ""))
        if spec is not None:  # Annotated[..., NodeParameter(minimum=1, description=...)]
            param = dataclasses.replace(
                param, secret=spec.secret, choices=spec.choices, minimum=spec.minimum, maximum=spec.maximum,
                format=spec.format, description=spec.description or param.description)
        params[p.name] = param
    return params, extra


def function_outputs(fn: Callable[..., Any], output: str = "result") -> tuple[dict[str, NodeParameter], str | None]:
    """The outputs a function's return annotation declares, and the single output's name (or ``None``)."""
    ret = _hints(fn).get("return", Any)
    if inspect.iscoroutinefunction(fn) and typing.get_origin(ret) is not None \
            and getattr(typing.get_origin(ret), "__name__", "") == "Coroutine":
        ret = typing.get_args(ret)[-1]
    if typing.is_typeddict(ret):
        fields = typing.get_type_hints(ret)
        return {k: NodeParameter(name=k, type=t) for k, t in fields.items()}, None
    if ret is type(None) or ret is None:
        return {output: NodeParameter(name=output, type=Any, description="None")}, output
    return {output: NodeParameter(name=output, type=ret)}, output


def _make_class(fn: Callable[..., Any], name: str | None, output: str, category: str | None,
                register: bool) -> type[FunctionNode]:
    if not callable(fn):
        raise NodeConfigurationError(f"@node expects a function, got {type(fn).__name__}",
                                     parameter="function", expected="callable", got=type(fn).__name__)
    params, extra = function_parameters(fn)
    outputs, single = function_outputs(fn, output)
    base: type[FunctionNode] = AsyncFunctionNode if inspect.iscoroutinefunction(fn) else FunctionNode
    class_name = name or fn.__name__
    doc = inspect.getdoc(fn) or f"Calls {fn.__qualname__}."
    namespace = {
        "__doc__": doc,
        "__module__": fn.__module__,
        "__qualname__": class_name,
        "function": staticmethod(fn),
        "_parameters_spec": params,
        "_outputs_spec": outputs,
        "_single_output": single,
        "extra_inputs": extra,
        "primary_output": single,
    }
    cls = typing.cast("type[FunctionNode]", type(class_name, (base,), namespace))
    if register:
        register_node(class_name, category=category or "custom")(cls)
    return cls


@overload
def node(fn: F, /) -> type[FunctionNode]: ...


@overload
def node(*, name: str | None = None, output: str = "result", category: str | None = None,
         register: bool = True) -> Callable[[F], type[FunctionNode]]: ...


def node(fn: Any = None, /, *, name: str | None = None, output: str = "result", category: str | None = None,
         register: bool = True) -> Any:
    """Make a node class from a function (``@node`` or ``@node(name=..., output=...)``).

    Args:
        fn: the function (when used as ``@node`` without arguments).
        name: the node type's name (default: the function's name); saved workflows use it.
        output: the single output's name when the return annotation is not a TypedDict.
        category: the catalog category (default ``custom``).
        register: add the type to the node registry (so saved workflows can load it).
    """
    if fn is not None:
        return _make_class(fn, name, output, category, register)
    return lambda f: _make_class(f, name, output, category, register)


def from_function(fn: Callable[..., Any], *, name: str | None = None, output: str = "result",
                  register: bool = False, **config: Any) -> FunctionNode:
    """A node (instance) from ``fn``, typed like :func:`node`; ``config`` sets parameter values.

    Example:
        >>> def total(data: list[int], start: int = 0) -> int:
        ...     return start + sum(data)
        >>> from_function(total, start=10).execute(data=[1, 2])
        {'result': 13}
    """
    cls = _make_class(fn, None, output, None, register)
    return cls(config=config, name=name)
