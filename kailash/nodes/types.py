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
  no number of rows);
* ``Literal["a", "b"]`` accepts those values only.

A parameter may narrow its type with :class:`Constraints` (``choices``, ``minimum``,
``maximum``, ``format``): :func:`compile_parameter_check` compiles type and constraints
into one check, and :func:`json_schema` writes both as JSON Schema for the catalog, the
OpenAPI document and the Studio forms.

This module only describes; it imports nothing above ``security``.
"""

from __future__ import annotations

import datetime
import re
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from kailash.security.secrets import Secret

__all__ = ["TypeCheck", "Constraints", "compile_type_check", "compile_parameter_check", "fits", "type_name",
           "json_schema", "FORMATS"]


def type_name(tp: Any) -> str:
    """How messages and schemas write a declared type (``"int"``, ``"str | None"``, ``"any"``)."""
    if tp is Any or tp is None:
        return "any"
    if isinstance(tp, type):
        return tp.__name__
    if isinstance(tp, tuple):
        return " | ".join(type_name(t) for t in tp)
    return str(tp).replace("typing.", "").replace("kailash.security.secrets.", "")


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
    constraints: Constraints | None = None

    def __call__(self, value: Any) -> bool:
        return type(value) in self.exact or self.fits(value)

    def got(self, value: Any) -> str:
        """How a message names a refused ``value``: its type, or (a constraint refused it) the value itself."""
        c = self.constraints
        if c is None or c.secret or isinstance(value, Secret):
            return type(value).__name__
        text = repr(value)
        return text if len(text) <= 60 else text[:57] + "..."

    def misfit(self, value: Any) -> str:
        """The end of a refusal message: ``got 'oauth'; did you mean 'oauth2'?``."""
        text = f"got {self.got(value)}"
        c = self.constraints
        if c is not None and c.choices is not None and isinstance(value, str) and not c.secret:
            import difflib

            words = [x for x in c.choices if isinstance(x, str)]
            close = difflib.get_close_matches(value, words, n=2)
            if close:
                text += f"; did you mean {' or '.join(repr(x) for x in close)}?"
        return text

    def __reduce__(self) -> tuple[Any, ...]:  # nodes and plans travel to Dask workers: compile again there
        if self.constraints is not None:
            return (compile_parameter_check, (self.declared, self.constraints))
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
    if origin is typing.Literal:
        return tuple(dict.fromkeys(type(a) for a in typing.get_args(tp)))
    if origin is typing.Union or origin is types.UnionType:
        return _classes(tuple(a for a in typing.get_args(tp) if a is not type(None)))
    if isinstance(origin, type):
        return _classes(origin)
    return None


def _compile(tp: Any) -> TypeCheck | None:
    if typing.get_origin(tp) is typing.Literal:
        return compile_parameter_check(tp, Constraints(choices=typing.get_args(tp)))
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


# -- constraints -------------------------------------------------------------------------------

def _is_uri(text: str) -> bool:
    return re.match(r"^[A-Za-z][A-Za-z0-9+.-]*:[^\s]+$", text) is not None


def _is_date(text: str) -> bool:
    try:
        datetime.date.fromisoformat(text)
    except ValueError:
        return False
    return True


def _is_datetime(text: str) -> bool:
    try:
        datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return False
    return "T" in text or " " in text


def _is_regex(text: str) -> bool:
    try:
        re.compile(text)
    except (re.error, RecursionError, OverflowError):
        return False
    return True


FORMATS: dict[str, Callable[[str], bool]] = {
    "uri": _is_uri,
    "email": lambda t: re.match(r"^[^@\s]+@[^@\s]+\.[^@\s]+$", t) is not None,
    "date": _is_date,
    "date-time": _is_datetime,
    "regex": _is_regex,
}
"""Formats checked on string values; other ``format`` names (``path``, ``python``, ``sql``)
describe the value for editors and forms only, as JSON Schema treats unknown formats."""


@dataclass(frozen=True)
class Constraints:
    """What a parameter allows beyond its type (JSON Schema's ``enum``, ``minimum``, ``maximum``, ``format``).

    ``minimum``/``maximum`` bound numbers (inclusive); ``choices`` lists every allowed
    value; ``format`` names a :data:`FORMATS` check for strings (or only describes them).
    ``secret`` keeps refused values out of messages.
    """

    choices: tuple[Any, ...] | None = None
    minimum: float | None = None
    maximum: float | None = None
    format: str | None = None
    secret: bool = False

    @property
    def active(self) -> bool:
        return self.choices is not None or self.minimum is not None or self.maximum is not None \
            or self.format in FORMATS

    def describe(self) -> str:
        parts = []
        if self.choices is not None:
            parts.append("one of " + ", ".join(repr(c) for c in self.choices))
        if self.minimum is not None:
            parts.append(f">= {self.minimum:g}")
        if self.maximum is not None:
            parts.append(f"<= {self.maximum:g}")
        if self.format in FORMATS:
            parts.append(f"a {self.format} string")
        return ", ".join(parts)

    def allows(self, value: Any) -> bool:
        """Whether ``value`` (already of the declared type) meets every constraint."""
        if self.choices is not None:
            try:
                if value not in self.choices or any(type(value) is bool and c == value and type(c) is not bool
                                                    for c in self.choices):
                    return False
            except TypeError:  # an unhashable/uncomparable value: not one of the choices
                return False
        if type(value) in (int, float):
            if self.minimum is not None and not value >= self.minimum:
                return False
            if self.maximum is not None and not value <= self.maximum:
                return False
        if isinstance(value, str) and (check := FORMATS.get(self.format or "")) is not None:
            return check(value)
        return True


def compile_parameter_check(tp: Any, constraints: Constraints | None = None) -> TypeCheck | None:
    """The check for a parameter: its type (:func:`compile_type_check`) and its constraints.

    Example:
        >>> check = compile_parameter_check(int, Constraints(minimum=1))
        >>> check(5), check(-5), check("5"), check.expected
        (True, False, False, 'int >= 1')
        >>> compile_parameter_check(str, Constraints(choices=("read", "write")))("bogus")
        False
    """
    if constraints is None or not constraints.active:
        return compile_type_check(tp)
    type_check = compile_type_check(tp) if typing.get_origin(tp) is not typing.Literal else None
    allows = constraints.allows
    what = constraints.describe()
    # "int >= 1", but "one of 'read', 'write'" and "a uri string" say the type already
    expected = what if type_check is None or not what.startswith(("<", ">")) else f"{type_check.expected} {what}"

    def fits(value: Any) -> bool:
        if value is None or isinstance(value, Secret):
            return True
        if type_check is not None and not type_check(value):
            return False
        return allows(value)

    # no exact classes: every value goes through the constraints (only constrained parameters pay)
    return TypeCheck(declared=tp, expected=expected, exact=frozenset(), fits=fits, constraints=constraints)


_JSON_TYPES: dict[type, str] = {bool: "boolean", int: "integer", float: "number", str: "string",
                                list: "array", tuple: "array", set: "array", frozenset: "array",
                                dict: "object", type(None): "null"}


def json_schema(tp: Any, constraints: Constraints | None = None) -> dict[str, Any]:
    """The JSON Schema of a declared type and its constraints (``{}`` accepts anything).

    Example:
        >>> json_schema(int, Constraints(minimum=1))
        {'type': 'integer', 'minimum': 1}
        >>> json_schema(list[str] | None)
        {'anyOf': [{'type': 'array', 'items': {'type': 'string'}}, {'type': 'null'}]}
    """
    schema = _type_schema(tp)
    c = constraints
    if c is not None:
        if c.choices is not None:
            schema["enum"] = [x if isinstance(x, (str, int, float, bool, type(None))) else repr(x) for x in c.choices]
        if c.minimum is not None:
            schema["minimum"] = c.minimum
        if c.maximum is not None:
            schema["maximum"] = c.maximum
        if c.format is not None:
            schema["format"] = c.format
        if c.secret:
            schema["writeOnly"] = True
    return schema


def _type_schema(tp: Any) -> dict[str, Any]:
    if tp is Any or tp is None or tp is object or isinstance(tp, str):
        return {}
    if isinstance(tp, tuple):
        if Secret in tp and str in tp:  # a string or a secret one: on the wire, a string
            tp = tuple(t for t in tp if t is not Secret)
        return _any_of([_type_schema(t) for t in tp])
    if tp is Secret:
        return {"type": "string", "writeOnly": True}
    if isinstance(tp, type):
        name = next((j for c, j in _JSON_TYPES.items() if c is tp), None)
        if name is None:
            name = next((j for c, j in _JSON_TYPES.items() if issubclass(tp, c) and c is not bool), None)
        return {"type": name} if name else {"x-kailash-type": tp.__name__}
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin is typing.Literal:
        return {"enum": list(args)}
    if origin is typing.Union or origin is types.UnionType:
        return _any_of([_type_schema(a) for a in args])
    if origin in (list, set, frozenset) or (origin is tuple and len(args) == 2 and args[1] is Ellipsis):
        items = _type_schema(args[0]) if args else {}
        return {"type": "array", "items": items} if items else {"type": "array"}
    if origin is tuple:
        return {"type": "array", "prefixItems": [_type_schema(a) for a in args], "items": False}
    if origin is dict:
        values = _type_schema(args[1]) if len(args) == 2 else {}
        return {"type": "object", "additionalProperties": values} if values else {"type": "object"}
    if isinstance(origin, type):
        return _type_schema(origin)
    return {}


def _any_of(parts: list[dict[str, Any]]) -> dict[str, Any]:
    if any(not p for p in parts):
        return {}
    return parts[0] if len(parts) == 1 else {"anyOf": parts}
