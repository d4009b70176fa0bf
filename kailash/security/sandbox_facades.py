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
           "type_name", "guard_copy_module"]


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
    """Refuse class dicts that smuggle in hooks the class statement checks would reject.

    Only an exact ``dict`` with exact ``str`` keys is accepted: ``type()`` copies a dict
    subclass's real entries, whatever its ``__iter__`` or ``keys`` claim.
    """
    if type(namespace) is not dict:
        raise refuse(f"a class namespace must be a plain dict in sandboxed code, got {type_name(namespace)}")
    for key in namespace:
        if type(key) is not str:
            raise refuse("class attribute names must be plain str in sandboxed code")
        if key.startswith("__") and key not in _CLASS_KEYS:
            raise refuse(f"creating a class with '{key}' is not allowed in sandboxed code")
    check_annotations(namespace.get("__annotations__", {}), refuse)


def check_annotations(annotations: Any, refuse: Callable[[str], Exception]) -> None:
    """Field names end up in generated source (dataclasses): they must be plain identifiers."""
    if type(annotations) is not dict:
        raise refuse("class annotations must be a plain dict in sandboxed code")
    for name in annotations:
        if type(name) is not str or not name.isidentifier() or keyword.iskeyword(name) or name.startswith("__"):
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
                return guarded if found is real_type or found is _GuardedTypeMeta else found
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
            # dataclasses writes field names into source it compiles, reading them through
            # ``c.__dict__``: that must be the class's real dict (no metaclass property), of a
            # class the code defined, holding a plain annotations dict of identifiers.
            from kailash.security.sandbox_guards import is_user_class

            if not is_user_class(c) or not _real_dict_attribute(type(c)):
                raise env.refuse("dataclasses.dataclass() may only decorate plain classes defined in sandboxed code")
            check_annotations(_TYPE_DICT(c).get("__annotations__", {}), env.refuse)
            return value(c, **kwargs)

        return wrap if cls is None else wrap(cls)

    dataclass.__doc__ = value.__doc__
    return dataclass


_TYPE_DICT = type.__dict__["__dict__"].__get__
_TYPE_MRO = type.__dict__["__mro__"].__get__


def _real_dict_attribute(meta: type) -> bool:
    """Whether ``cls.__dict__`` on a class of metaclass ``meta`` is the real class dict."""
    for klass in _TYPE_MRO(meta):
        if "__dict__" in _TYPE_DICT(klass) or "__getattribute__" in _TYPE_DICT(klass):
            return klass is type
    return False


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
        if not (_made_by_user(wrapped) and not isinstance(wrapped, type)):
            # ``wrapper.__dict__`` may be the code's own property: it would be handed the
            # ``__dict__`` of a class or builtin (``type.__dict__['__subclasses__']``)
            dicts = ()
        return functools.update_wrapper(wrapper, wrapped, names, dicts)

    def wraps(wrapped: Any, assigned: Any = assigned_ok, updated: Any = updated_ok) -> Any:
        names = _names(assigned, assigned_ok, "wraps()", env)
        dicts = _names(updated, updated_ok, "wraps()", env)
        return functools.partial(update_wrapper, wrapped=wrapped, assigned=names, updated=dicts)

    update_wrapper.__doc__, wraps.__doc__ = value.__doc__, functools.wraps.__doc__
    return update_wrapper if value is functools.update_wrapper else wraps


def _made_by_user(obj: Any) -> bool:
    from kailash.security.sandbox_guards import is_user_class

    if issubclass(type(obj), type):
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


_COPY_TARGETS = frozenset({list, dict, set, bytearray, types.SimpleNamespace})


def guard_copy_module(refuse: Callable[[str], Exception]) -> None:
    """Make ``copy`` stop acting as a deputy (worker processes only: it patches the module).

    ``copy.copy``/``deepcopy`` rebuild an object from what its ``__reduce_ex__`` returns: a
    callable, and state that is then written with ``setattr`` under any name. A class given
    ``__reduce_ex__`` through a metaclass call could aim that at a built-in class. Here the
    rebuilt object must be an instance of a class defined in sandboxed code (or a plain
    container), and state names must be plain, public attribute names.
    """
    import collections
    import copy

    from kailash.security.sandbox_guards import is_user_class

    original = copy._reconstruct  # type: ignore[attr-defined]
    if getattr(original, "kailash_guarded", False):
        return
    targets = _COPY_TARGETS | {collections.OrderedDict, collections.Counter, collections.defaultdict,
                               collections.deque}

    def _reconstruct(x: Any, memo: Any, func: Any, args: Any, state: Any = None, listiter: Any = None,
                     dictiter: Any = None, **kwargs: Any) -> Any:
        if state is not None:
            state = _checked_state(state, refuse)

        def make(*a: Any) -> Any:
            y = func(*a)
            kind = type(y)
            fresh = any(kind is t for t in targets) or (not issubclass(kind, type) and is_user_class(kind))
            if not fresh and (state is not None or listiter is not None or dictiter is not None):
                raise refuse(f"copy of an object whose __reduce_ex__ rebuilds {type_name(y)} is not allowed "
                             "in sandboxed code")
            return y

        return original(x, memo, make, args, state, listiter, dictiter, **kwargs)

    _reconstruct.kailash_guarded = True  # type: ignore[attr-defined]
    copy._reconstruct = _reconstruct  # type: ignore[attr-defined]


def _checked_state(state: Any, refuse: Callable[[str], Exception]) -> Any:
    def names(mapping: Any) -> Any:
        if mapping is None:
            return None
        if type(mapping) is not dict:
            raise refuse("copy state must be a plain dict in sandboxed code")
        for key in mapping:
            if type(key) is not str or attribute_refused(key):
                raise refuse(f"copy state naming attribute {key!r} is not allowed in sandboxed code")
        return dict(mapping)

    if type(state) is tuple and len(state) == 2:
        return (names(state[0]) if type(state[0]) is dict else state[0], names(state[1]))
    return names(state) if type(state) is dict else state
