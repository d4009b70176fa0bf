"""Sandbox views of allowed modules and of ``type``: what is hidden, what is wrapped.

Snapshots of allowed modules (see :mod:`kailash.security.sandbox_guards`) take their
names from here: a few modules are reduced to a short list of names, some names are
dropped, and some functions are replaced by guarded versions that refuse private
attribute names (``operator.attrgetter``), refuse field names that are not plain
identifiers (``dataclasses.dataclass`` puts them into generated source), or refuse
class dictionaries carrying hooks a ``class`` statement could not define (``type``).
Used only inside sandbox workers.
"""

from __future__ import annotations

import keyword
import operator
from collections.abc import Callable
from typing import Any

from kailash.security.sandbox_policy import SAFE_DUNDER_METHODS, attribute_refused

__all__ = ["ONLY", "DROP", "GUARDED", "check_class_namespace", "check_annotations", "make_type"]

# Modules whose sandbox view is restricted to a few names (None = drop the name).
ONLY = {
    "io": {"StringIO", "BytesIO"},
    "types": {"SimpleNamespace", "MappingProxyType"},
    "string": {"ascii_letters", "ascii_lowercase", "ascii_uppercase", "digits", "hexdigits", "octdigits",
               "punctuation", "printable", "whitespace", "capwords", "Template"},
}
DROP = {"dataclasses": {"make_dataclass"}, "typing": {"get_type_hints"}}

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
                for part in str(n).split("."):
                    if attribute_refused(part):
                        raise env.refuse(f"{factory.__name__}() of attribute '{part}' is not allowed in "
                                         "sandboxed code")
                    if part in ("format", "format_map"):
                        raise env.refuse(f"{factory.__name__}() of '{part}' is not allowed in sandboxed code")
            return factory(*names, **kwargs)
        guarded.__name__ = factory.__name__
        return guarded
    return wrap


GUARDED: dict[tuple[str, str], Callable[[Any, Any], Any]] = {
    ("operator", "attrgetter"): _guard_getter(operator.attrgetter),
    ("operator", "methodcaller"): _guard_getter(operator.methodcaller),
    ("dataclasses", "dataclass"): _guard_dataclass,
}
