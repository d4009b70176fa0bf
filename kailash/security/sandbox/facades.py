"""Sandbox views of allowed modules and of ``type``: what is hidden, what is wrapped.

Snapshots of allowed modules (see :mod:`kailash.security.sandbox.guards`) take their
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

from kailash.security.sandbox.policy import SAFE_DUNDER_METHODS, SANDBOX_FILENAME, attribute_refused

__all__ = ["ONLY", "DROP", "GUARDED", "check_class_namespace", "check_annotations", "make_type", "plain_str",
           "type_name", "guard_copy_module", "guard_enum_module", "is_user_class"]


_TYPE_DICT = type.__dict__["__dict__"].__get__  # a class's real dict, past any metaclass property
_TYPE_MRO = type.__dict__["__mro__"].__get__


def plain_str(value: str) -> str:
    """An exact ``str`` with the characters of ``value`` (a subclass's methods are never called)."""
    return value if type(value) is str else "".join((value,))


def is_user_class(obj: Any) -> bool:
    """Whether ``obj`` is a class created by sandboxed code (read from the class's own dict).

    Runs no user code (it is called from the audit hook): ``isinstance`` would consult a
    ``__class__`` property, and a lookup in a class dict holding a ``str``-subclass key
    would call that key's ``__eq__``, so such dicts are not looked into.
    """
    if not issubclass(type(obj), type):
        return False
    namespace = _TYPE_DICT(obj)
    if any(type(key) is not str for key in namespace):
        return False
    module = namespace.get("__module__")
    return type(module) is str and module == "__sandbox__"


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
    """The sandbox's ``type``: ``type(x)`` as usual; ``type(name, bases, ns)`` with ``ns`` checked.

    ``type(x)`` of a class whose metaclass is a standard-library one (``ABCMeta``,
    ``EnumType``) returns a stand-in for that metaclass that checks ``ns`` the same way:
    calling a metaclass directly would otherwise create classes carrying any hook
    (``__dict__`` properties, ``__reduce_ex__``, ``__del__``). ``isinstance`` and
    ``issubclass`` against a stand-in answer as for the real metaclass. Also sets
    ``env.guard_metaclass``, used for the metaclasses modules export by name.
    """
    real_type = type
    stand_ins: dict[int, type] = {}
    own_metas: list[type] = []

    def guard(real: type) -> type:
        found = stand_ins.get(id(real))
        if found is not None:
            return found
        if any(real is m for m in own_metas):  # the stand-ins' own metaclasses: `type(type)` is `type`
            return stand_ins[id(real_type)]
        if real is not real_type and (type(real) is not real_type or not issubclass(real, real_type)
                                      or is_user_class(real)):
            return real  # not a metaclass, or one the code defined itself

        class _GuardedMeta(real_type):  # type: ignore[valid-type,misc]  # a metaclass found at run time
            def __instancecheck__(cls, obj: Any) -> bool:
                return isinstance(obj, real) if cls is stand_in else real_type.__instancecheck__(cls, obj)

            def __subclasscheck__(cls, sub: Any) -> bool:
                return issubclass(sub, real) if cls is stand_in else real_type.__subclasscheck__(cls, sub)

            def __call__(cls, *args: Any, **kwargs: Any) -> Any:
                if cls is stand_in and real is real_type and len(args) == 1 and not kwargs:
                    return guard(real_type(args[0]))
                if len(args) == 3:
                    check_class_namespace(args[2], env.refuse)
                if cls is stand_in:
                    return real(*args, **kwargs)
                return real_type.__call__(cls, *args, **kwargs)

        stand_in = _GuardedMeta(real.__name__, (real,), {"__module__": real.__module__,
                                                         "__qualname__": real.__qualname__})
        own_metas.append(_GuardedMeta)
        stand_ins[id(real)] = stand_in
        stand_ins[id(stand_in)] = stand_in
        return stand_in

    env.guard_metaclass = guard
    return guard(real_type)


def _guard_dataclass(value: Any, env: Any) -> Any:
    def dataclass(cls: Any = None, /, **kwargs: Any) -> Any:
        def wrap(c: Any) -> Any:
            # dataclasses writes field names into source it compiles, reading them through
            # ``c.__dict__``: that must be the class's real dict (no metaclass property), of a
            # class the code defined, holding a plain annotations dict of identifiers.
            if not is_user_class(c) or not _real_dict_attribute(type(c)):
                raise env.refuse("dataclasses.dataclass() may only decorate plain classes defined in sandboxed code")
            check_annotations(_TYPE_DICT(c).get("__annotations__", {}), env.refuse)
            return value(c, **kwargs)

        return wrap if cls is None else wrap(cls)

    dataclass.__doc__ = value.__doc__
    return dataclass


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


def _guard_metaclass(value: Any, env: Any) -> Any:
    return env.guard_metaclass(value)


GUARDED: dict[tuple[str, str], Callable[[Any, Any], Any]] = {
    ("enum", "EnumType"): _guard_metaclass,
    ("enum", "EnumMeta"): _guard_metaclass,
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


def guard_enum_module(refuse: Callable[[str], Exception]) -> None:
    """Refuse interpreter hooks given as member names to the functional enum API (worker only).

    ``enum.Enum('E', [('__getattribute__', f)])`` makes ``f`` a class attribute, not a
    member: a class with any hook, which the ``type()`` checks would have refused.
    """
    import enum

    original = enum.EnumType._create_  # type: ignore[attr-defined]
    if getattr(original, "kailash_guarded", False):
        return
    usual: set[str] = set()
    for kind in (enum.Enum, enum.IntEnum, enum.StrEnum, enum.Flag, enum.IntFlag):
        usual.update(k for k in _TYPE_DICT(original(kind, "Sample", "a")) if k.startswith("__"))

    def _create_(cls: Any, class_name: Any, names: Any, **kwargs: Any) -> Any:
        created = original(cls, class_name, names, **kwargs)
        for key in _TYPE_DICT(created):
            if type(key) is not str or (key.startswith("__") and key not in usual):
                raise refuse(f"an enum member named {key!r} is not allowed in sandboxed code")
        return created

    _create_.kailash_guarded = True  # type: ignore[attr-defined]
    enum.EnumType._create_ = _create_  # type: ignore[attr-defined]
