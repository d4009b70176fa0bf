"""Sandbox views of allowed modules and of ``type``: what is hidden, what is wrapped.

Snapshots of allowed modules (see :mod:`kailash.security.sandbox_guards`) take their
names from here: a few modules are reduced to a short list of names, some names are
dropped, and some functions are replaced by guarded versions. Each guarded function is
a standard-library helper that reads or writes attributes *named by its arguments* (a
confused deputy): ``operator.attrgetter``/``methodcaller`` and ``functools.update_wrapper``
/``wraps`` refuse private names; ``collections.UserString.format`` checks its format
string; ``dataclasses.dataclass`` refuses field names that are not plain identifiers
(they go into generated source); ``type`` refuses class dictionaries carrying hooks a
``class`` statement could not define; ``enum.global_enum`` (which writes into the
globals of any module by name) is dropped. Every name a guard inspects must be an exact
``str``: a subclass's methods are user code. Used only inside sandbox workers.
"""

from __future__ import annotations

import functools
import keyword
import operator
import types
from collections.abc import Callable
from typing import Any

from kailash.security.sandbox_policy import SAFE_DUNDER_METHODS, SANDBOX_FILENAME, attribute_refused

__all__ = ["ONLY", "DROP", "GUARDED", "check_class_namespace", "check_annotations", "make_type", "plain_str",
           "type_name"]


def plain_str(value: str) -> str:
    """An exact ``str`` with the characters of ``value`` (a subclass's methods are never called)."""
    return value if type(value) is str else "".join((value,))


def type_name(value: Any, is_type: bool = False) -> str:
    """A name for ``value``'s type for messages, read without running user code."""
    cls = value if is_type else type(value)
    name = type.__dict__["__name__"].__get__(cls)
    return f"'{name}'" if type(name) is str else "an object"

# Modules whose sandbox view is restricted to a few names (None = drop the name).
ONLY = {
    "io": {"StringIO", "BytesIO"},
    "types": {"SimpleNamespace", "MappingProxyType"},
    "string": {"ascii_letters", "ascii_lowercase", "ascii_uppercase", "digits", "hexdigits", "octdigits",
               "punctuation", "printable", "whitespace", "capwords", "Template"},
}
DROP = {"dataclasses": {"make_dataclass"}, "typing": {"get_type_hints"}, "enum": {"global_enum"}}

_CLASS_KEYS = frozenset({"__module__", "__qualname__", "__doc__", "__slots__", "__annotations__", "__classcell__",
                         "__orig_bases__"}) | SAFE_DUNDER_METHODS


def check_class_namespace(namespace: Any, refuse: Callable[[str], Exception]) -> None:
    """Refuse class dicts that smuggle in hooks the class statement checks would reject."""
    if not isinstance(namespace, dict):
        return
    for key in namespace:
        if isinstance(key, str) and key.startswith("__") and key not in _CLASS_KEYS:
            raise refuse(f"creating a class with '{key}' is not allowed in sandboxed code")
    check_annotations(namespace.get("__annotations__", {}), refuse)


def check_annotations(annotations: Any, refuse: Callable[[str], Exception]) -> None:
    """Field names end up in generated source (dataclasses): they must be plain identifiers."""
    if not isinstance(annotations, dict):
        raise refuse("class annotations must be a dict in sandboxed code")
    for name in annotations:
        if not isinstance(name, str) or not name.isidentifier() or keyword.iskeyword(name) or name.startswith("__"):
            raise refuse(f"field name {name!r} is not allowed in sandboxed code")


def make_type(env: Any) -> type:
    """The sandbox's ``type``: ``type(x)`` as usual; ``type(name, bases, ns)`` with ``ns`` checked."""
    real_type = type

    class _GuardedTypeMeta(type):
        def __instancecheck__(cls, obj: Any) -> bool:
            return isinstance(obj, real_type) if cls is guarded else real_type.__instancecheck__(cls, obj)

        def __subclasscheck__(cls, sub: Any) -> bool:
            return issubclass(sub, real_type) if cls is guarded else real_type.__subclasscheck__(cls, sub)

        def __call__(cls, *args: Any, **kwargs: Any) -> Any:
            if len(args) == 1 and not kwargs and cls is guarded:
                found = real_type(args[0])
                return guarded if found is real_type else found
            if len(args) == 3:
                check_class_namespace(args[2], env.refuse)
            if cls is guarded:
                return real_type(*args, **kwargs)
            return real_type.__call__(cls, *args, **kwargs)

    class guarded(type, metaclass=_GuardedTypeMeta):  # noqa: N801 - it is `type` in the sandbox
        pass

    guarded.__name__ = guarded.__qualname__ = "type"
    return guarded


def _guard_dataclass(value: Any, env: Any) -> Any:
    def dataclass(cls: Any = None, /, **kwargs: Any) -> Any:
        def wrap(c: Any) -> Any:
            check_annotations(c.__dict__.get("__annotations__", {}), env.refuse)
            return value(c, **kwargs)

        return wrap if cls is None else wrap(cls)

    dataclass.__doc__ = value.__doc__
    return dataclass


def _guard_getter(factory: Callable[..., Any]) -> Callable[[Any, Any], Any]:
    def wrap(_value: Any, env: Any) -> Any:
        def guarded(*names: Any, **kwargs: Any) -> Any:
            checked = names[:1] if factory is operator.methodcaller else names
            for n in checked:
                if type(n) is not str:
                    raise env.refuse(f"{factory.__name__}() needs plain str attribute names in sandboxed code, "
                                     f"got {type_name(n)}")
                for part in n.split("."):
                    if attribute_refused(part):
                        raise env.refuse(f"{factory.__name__}() of attribute '{part}' is not allowed in "
                                         "sandboxed code")
                    if part in ("format", "format_map"):
                        raise env.refuse(f"{factory.__name__}() of '{part}' is not allowed in sandboxed code")
            return factory(*names, **kwargs)
        guarded.__name__ = factory.__name__
        return guarded
    return wrap


def _names(value: Any, allowed: tuple[str, ...], what: str, env: Any) -> tuple[str, ...]:
    names = tuple(value)
    for name in names:
        if type(name) is not str or name not in allowed:
            raise env.refuse(f"functools.{what} may only copy {', '.join(allowed)} in sandboxed code")
    return names


def _guard_update_wrapper(value: Any, env: Any) -> Any:
    assigned_ok, updated_ok = functools.WRAPPER_ASSIGNMENTS, functools.WRAPPER_UPDATES

    def update_wrapper(wrapper: Any, wrapped: Any, assigned: Any = assigned_ok, updated: Any = updated_ok) -> Any:
        names = _names(assigned, assigned_ok, "update_wrapper()", env)
        dicts = _names(updated, updated_ok, "update_wrapper()", env)
        if not _made_by_user(wrapper):
            raise env.refuse("functools.update_wrapper() may only change functions and objects defined in "
                             "sandboxed code")
        return functools.update_wrapper(wrapper, wrapped, names, dicts)

    def wraps(wrapped: Any, assigned: Any = assigned_ok, updated: Any = updated_ok) -> Any:
        names = _names(assigned, assigned_ok, "wraps()", env)
        dicts = _names(updated, updated_ok, "wraps()", env)
        return functools.partial(update_wrapper, wrapped=wrapped, assigned=names, updated=dicts)

    update_wrapper.__doc__, wraps.__doc__ = value.__doc__, functools.wraps.__doc__
    return update_wrapper if value is functools.update_wrapper else wraps


def _made_by_user(obj: Any) -> bool:
    from kailash.security.sandbox_guards import is_user_class

    if isinstance(obj, type):
        return is_user_class(obj)
    if type(obj) is types.FunctionType:
        return obj.__code__.co_filename == SANDBOX_FILENAME
    if type(obj) in (types.BuiltinFunctionType, types.MethodType, types.ModuleType):
        return False
    return is_user_class(type(obj)) or type(obj) is functools.partial


def _guard_userstring(value: Any, env: Any) -> Any:
    class UserString(value):  # type: ignore[misc, valid-type]
        """``collections.UserString`` whose ``format``/``format_map`` check the format string."""

        def format(self, /, *args: Any, **kwds: Any) -> Any:
            return env.guard_value(str.format)(self.data, *args, **kwds)

        def format_map(self, mapping: Any) -> Any:
            return env.guard_value(str.format_map)(self.data, mapping)

    UserString.__module__ = value.__module__
    return UserString


GUARDED: dict[tuple[str, str], Callable[[Any, Any], Any]] = {
    ("functools", "update_wrapper"): _guard_update_wrapper,
    ("functools", "wraps"): _guard_update_wrapper,
    ("collections", "UserString"): _guard_userstring,
    ("operator", "attrgetter"): _guard_getter(operator.attrgetter),
    ("operator", "methodcaller"): _guard_getter(operator.methodcaller),
    ("dataclasses", "dataclass"): _guard_dataclass,
}
