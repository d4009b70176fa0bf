"""The one rule for "does this value fit the declared parameter type".

Every place that checks a value against ``NodeParameter.type`` — ``node.execute()``,
a workflow's node config, runtime ``parameters`` and values arriving over connections —
asks :func:`compile_type_check` once per parameter and calls what it returns, so a value
is accepted or refused the same way wherever it comes from. The rule:

* ``None`` fits (an absent value; whether one is *required* is a separate check);
* a :class:`~kailash.security.secrets.Secret` fits (it is resolved when the node runs);
* ``Any``, ``object``, ``None`` and string annotations accept everything;
* ``float`` also accepts ``int``; ``X | Y`` and ``Optional[X]`` accept either;
  a generic (``list[int]``) is checked by its container (``list``);
* ``bool`` fits ``int`` and ``float`` only when ``bool`` is declared too (``True`` is
  no number of rows).

This module only describes; it imports nothing above ``security``.
"""

from __future__ import annotations

import types
import typing
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from kailash.security.secrets import Secret

__all__ = ["TypeCheck", "compile_type_check", "fits", "type_name"]


def type_name(tp: Any) -> str:
    """How messages and schemas write a declared type (``"int"``, ``"str | None"``, ``"any"``)."""
    if tp is Any or tp is None:
        return "any"
    if isinstance(tp, type):
        return tp.__name__
    if isinstance(tp, tuple):
        return " | ".join(type_name(t) for t in tp)
    return str(tp).replace("typing.", "")


@dataclass(frozen=True, slots=True)
class TypeCheck:
    """A declared type, compiled: ``check(value)`` says whether ``value`` fits.

    Attributes:
        declared: the type as the parameter declares it.
        expected: the declared type as messages write it.
        exact: classes whose exact instances fit without further work (``type(v) in
            exact``): the engine's hot path tries this before calling ``fits``.
        fits: the whole rule for this type (``None`` and secrets included).
    """

    declared: Any
    expected: str
    exact: frozenset[type]
    fits: Callable[[Any], bool]

    def __call__(self, value: Any) -> bool:
        return type(value) in self.exact or self.fits(value)

    def __reduce__(self) -> tuple[Any, ...]:  # nodes and plans travel to Dask workers: compile again there
        return (compile_type_check, (self.declared,))


def _classes(tp: Any) -> tuple[type, ...] | None:
    """The classes ``isinstance`` should test for ``tp`` (``None`` = anything fits)."""
    if tp is Any or tp is None or tp is object or isinstance(tp, str):
        return None
    if isinstance(tp, type):
        return (float, int) if tp is float else (tp,)
    if isinstance(tp, tuple):
        flat: list[type] = []
        for part in tp:
            got = _classes(part)
            if got is None:
                return None
            flat.extend(c for c in got if c not in flat)
        return tuple(flat)
    origin = typing.get_origin(tp)
    if origin is typing.Union or origin is types.UnionType:
        return _classes(tuple(a for a in typing.get_args(tp) if a is not type(None)))
    if isinstance(origin, type):
        return _classes(origin)
    return None


def _compile(tp: Any) -> TypeCheck | None:
    classes = _classes(tp)
    if classes is None:
        return None
    expected = type_name(tp)
    numeric = (int in classes or float in classes) and bool not in classes
    # bool subclasses int, so only classes that are not numbers may take True/False here
    bool_ok = tuple(c for c in classes if c not in (int, float)) if numeric else classes

    def fits(value: Any) -> bool:
        if value is None or isinstance(value, Secret):
            return True
        if type(value) is bool:
            return isinstance(value, bool_ok)
        return isinstance(value, classes)

    return TypeCheck(declared=tp, expected=expected, exact=frozenset(classes), fits=fits)


_CACHE: dict[Any, TypeCheck | None] = {}


def compile_type_check(tp: Any) -> TypeCheck | None:
    """The check for declared type ``tp``, or ``None`` when every value fits.

    Compile once (per step, per node) and call the result per value.

    Example:
        >>> check = compile_type_check(int)
        >>> check(3), check(True), check("3"), check(None)
        (True, False, False, True)
        >>> compile_type_check(bool | int)(True), compile_type_check(float)(2)
        (True, True)
    """
    try:
        return _CACHE[tp]
    except KeyError:
        pass
    except TypeError:  # an unhashable annotation: compile it every time
        return _compile(tp)
    check = _CACHE[tp] = _compile(tp)
    return check


def fits(value: Any, tp: Any) -> bool:
    """Whether ``value`` fits the declared type ``tp`` (see the module docstring)."""
    check = compile_type_check(tp)
    return check is None or check(value)
